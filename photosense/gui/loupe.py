"""``LoupeView``: one photo filling the view, fit or at 100 %, with pan and zoom.

The photo itself (decoding it off the GUI thread, a quick preview first, the preloaded
neighbours, the smooth downscale drawn below 100 %) is a ``LoupeImages``
(photosense.gui.loupe_images) the view owns; the view keeps what is drawn over it and how.

View geometry is kept in full-image pixels, so the preview and the full image line up.
``scale`` is device pixels per image pixel (1.0 = 100 %: one image pixel per screen pixel);
``0.0`` means "fit to the window" wherever a scale is passed around (``viewChanged``,
``set_view``), so synchronised panes showing images of different sizes all fit.

The photo's culling state (flag, stars, colour label) is drawn next to the title chip; the
window passes it in (``set_culling``) from rows it already holds, so painting reads no database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QFont,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QApplication, QSizePolicy, QWidget

from photosense.gui.loupe_images import LoupeImages, loader_pool, scaled_image  # noqa: F401 - re-exported
from photosense.library import FLAG_PICK, FLAG_REJECT

MIN_SCALE, MAX_SCALE = 0.02, 16.0
WHEEL_STEP = 1.25
BACKGROUND = QColor(30, 30, 30)


@dataclass(frozen=True)
class CullingState:
    """What the loupe shows of a photo's culling: flag (FLAG_*), stars 0-5, colour label."""

    flag: int = 0
    rating: int = 0
    color_label: str | None = None

    def text(self) -> str:
        """E.g. "Pick ★★★☆☆ red"; "" when nothing is set."""
        parts = []
        if self.flag == FLAG_PICK:
            parts.append("Pick")
        elif self.flag == FLAG_REJECT:
            parts.append("Reject")
        if self.rating:
            parts.append("★" * self.rating + "☆" * (5 - self.rating))
        if self.color_label:
            parts.append(self.color_label)
        return " ".join(parts)

    def chip_width(self, chip_h: float) -> float:
        """Width of the culling chip (0: nothing to show): flag, five stars, label dot."""
        if not (self.flag in (FLAG_PICK, FLAG_REJECT) or self.rating or self.color_label):
            return 0.0
        icon = chip_h - 8
        items = [icon] if self.flag in (FLAG_PICK, FLAG_REJECT) else []
        if self.rating:
            items.append(5 * icon)
        if self.color_label:
            items.append(icon)
        return 8 + sum(items) + 6 * (len(items) - 1) + 8

    def paint_chip(self, p: QPainter, box: QRectF) -> None:
        """The chip drawn in ``box``: flag, stars, label dot."""
        from photosense.gui.delegate import LABEL_COLORS, PICK_COLOR, REJECT_COLOR, star_polygon

        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.drawRoundedRect(box, 4, 4)
        icon = box.height() - 8
        x, top, mid = box.left() + 8, box.top() + 4, box.center().y()
        if self.flag == FLAG_PICK:
            # pole and pennant, as on the grid
            p.setPen(QPen(PICK_COLOR, 1.8))
            p.drawLine(QPointF(x + icon * 0.25, top + 1), QPointF(x + icon * 0.25, top + icon))
            pennant = QPainterPath(QPointF(x + icon * 0.25, top + 1))
            pennant.lineTo(x + icon * 0.95, top + icon * 0.3)
            pennant.lineTo(x + icon * 0.25, top + icon * 0.6)
            pennant.closeSubpath()
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(PICK_COLOR)
            p.drawPath(pennant)
            x += icon + 6
        elif self.flag == FLAG_REJECT:
            p.setPen(QPen(REJECT_COLOR, 2.4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            inset = icon * 0.2
            p.drawLine(QPointF(x + inset, top + inset), QPointF(x + icon - inset, top + icon - inset))
            p.drawLine(QPointF(x + icon - inset, top + inset), QPointF(x + inset, top + icon - inset))
            x += icon + 6
        if self.rating:
            p.setPen(Qt.PenStyle.NoPen)
            for i in range(5):
                p.setBrush(QColor("#f0c24b") if i < self.rating else QColor("#5a5a5a"))
                p.drawPolygon(star_polygon(QPointF(x + icon / 2, mid), icon / 2))
                x += icon
            x += 6
        if self.color_label:
            p.setPen(QPen(QColor(0, 0, 0, 200), 1))
            p.setBrush(LABEL_COLORS.get(self.color_label, QColor(200, 200, 200)))
            p.drawEllipse(QRectF(x + 1, top + 1, icon - 2, icon - 2))


class LoupeView(QWidget):
    """A single photo, fit to the window or zoomed; drag pans, click toggles zoom there,
    the wheel zooms around the cursor."""

    #: (scale, cx, cy): scale in device pixels per image pixel, 0.0 = fit; centre normalised.
    viewChanged = Signal(float, float, float)
    #: the full image of ``path`` is shown
    loaded = Signal(str)
    #: (path, message) decoding failed; the message is shown in the view as well
    failed = Signal(str, str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 90)
        self.setMouseTracking(False)
        self._title = ""
        self._faces: list[dict] = []
        self._face_index = -1
        self._face_note = ""
        self._culling: CullingState | None = None
        self._fit = True
        self._scale = 1.0  # used when not fit
        self._cx = 0.5
        self._cy = 0.5
        self._press: QPointF | None = None
        self._press_center = (0.5, 0.5)
        self._dragging = False
        self._images = LoupeImages(self)
        self._images.changed.connect(self.update)
        self._images.imageChanged.connect(self._on_image_changed)
        self._images.loaded.connect(self.loaded)
        self._images.failed.connect(self.failed)

    # -- loading ------------------------------------------------------------------------------

    def set_photo(self, path: str, title: str = "", companion: str | None = None) -> None:
        """Show ``path`` (decoded in the background); ``title`` defaults to the file name.
        ``companion``: the JPEG of a RAW+JPEG pair, shown instead of the RAW while it exists.
        The zoom level and centre are kept, so a burst can be checked at the same spot."""
        path = os.fspath(path)
        self._title = title or os.path.basename(path)
        self._culling = None
        self._images.set_photo(path, companion)

    def preload(self, items: list[tuple[str, str | None]]) -> None:
        """Decode these photos ((path, companion): the shown photo's neighbours) in the
        background and keep them, so ``set_photo`` of one shows it at once. Photos neither
        shown nor asked for are forgotten."""
        self._images.preload(items)

    def preloaded(self) -> list[str]:
        """The paths decoded and kept (shown or preloaded)."""
        return self._images.preloaded()

    def clear(self) -> None:
        self._title = ""
        self._culling = None
        self._images.clear()

    def _on_image_changed(self) -> None:
        self._clamp_center()
        self.update()

    def is_sharp(self) -> bool:
        """Whether what is drawn is final: the full image at 100 % and above, or its smooth
        downscale for this zoom level below (False while that is being made)."""
        if self._images.pixmap is None or not self._images.final:
            return False
        if self.scale() >= 1.0:
            return True
        return self._images.is_scaled_to(self._wanted_size())

    # -- state --------------------------------------------------------------------------------

    def path(self) -> str:
        return self._images.path

    def source_path(self) -> str:
        """The file decoded for the photo (a RAW+JPEG pair's JPEG); "" until known."""
        return self._images.source

    def title(self) -> str:
        return self._title

    def set_culling(self, flag: int, rating: int, color_label: str | None) -> None:
        """Show the photo's flag, stars and colour label next to the title (after set_photo,
        which clears them)."""
        state = CullingState(int(flag or 0), int(rating or 0), color_label or None)
        if state != self._culling:
            self._culling = state
            self.update()

    def culling(self) -> CullingState | None:
        """The culling state shown; None when none was given for this photo."""
        return self._culling

    def culling_text(self) -> str:
        """The shown culling state in words (see ``CullingState.text``)."""
        return self._culling.text() if self._culling is not None else ""

    def error(self) -> str | None:
        """The decoding error shown, if any."""
        return self._images.error

    def is_loaded(self) -> bool:
        """Whether the full image (not just the preview) is shown."""
        return self._images.final and self._images.pixmap is not None

    def image_size(self) -> QSize:
        return QSize(self._images.width, self._images.height)

    def is_fit(self) -> bool:
        return self._fit

    def scale(self) -> float:
        """The effective scale now (device pixels per image pixel), also when fit."""
        return self._fit_scale() if self._fit else self._scale

    def center(self) -> tuple[float, float]:
        return self._cx, self._cy

    def view(self) -> tuple[float, float, float]:
        """(scale or 0.0 when fit, cx, cy): what ``viewChanged`` emits."""
        return (0.0 if self._fit else self._scale), self._cx, self._cy

    # -- zoom ---------------------------------------------------------------------------------

    def set_faces(self, faces: list[dict] | None) -> None:
        """The photo's faces (boxes as fractions of the upright image), for ``next_face``."""
        self._faces = sorted(faces or [], key=lambda f: (f["box"][0], f["box"][1]))
        self._face_index = -1
        self._face_note = ""
        self.update()

    def face_note(self) -> str:
        return self._face_note

    def next_face(self, step: int = 1) -> bool:
        """Zoom to 100 % on the next (``step`` 1) or previous (-1) face, left to right, in
        turn; its eyes' state shows beside the title. False when the photo has no faces."""
        if not self._faces:
            return False
        n = len(self._faces)
        self._face_index = (self._face_index + step) % n if self._face_index >= 0 else \
            (0 if step > 0 else n - 1)
        face = self._faces[self._face_index]
        x, y, w, h = face["box"]
        self._cx, self._cy = x + w / 2, y + h / 2
        self._fit = False
        self._scale = 1.0
        eyes = {"open": "eyes open", "closed": "eyes closed"}.get(face["eyes"], "eyes unclear")
        self._face_note = f"face {self._face_index + 1}/{n}: {eyes}"
        self._changed()
        return True

    def zoom_fit(self) -> None:
        self._fit = True
        self._cx = self._cy = 0.5
        self._changed()

    def zoom_actual(self, at: QPointF | None = None) -> None:
        """100 %: one image pixel per device pixel, centred on ``at`` (a point in the widget)
        or on the current centre."""
        if at is not None:
            self._cx, self._cy = self._image_point(at)
        self._fit = False
        self._scale = 1.0
        self._changed()

    def toggle_zoom(self, at: QPointF | None = None) -> None:
        if self._fit:
            self.zoom_actual(at)
        else:
            self.zoom_fit()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Multiply the scale, keeping the image point under ``anchor`` where it is."""
        old = self.scale()
        new = min(MAX_SCALE, max(MIN_SCALE, old * factor))
        if anchor is None or not self._images.width:
            self._scale, self._fit = new, False
        else:
            ix, iy = self._image_point(anchor)
            self._scale, self._fit = new, False
            dx, dy = self._image_delta(anchor, new)
            self._cx, self._cy = ix - dx, iy - dy
        if self._images.width and new <= self._fit_scale():
            self._fit = True  # zooming out past fit snaps to fit
        self._changed()

    @Slot(float, float, float)
    def set_view(self, scale: float, cx: float, cy: float) -> None:
        """Apply a view from another pane; never emits ``viewChanged`` (no feedback loops)."""
        if scale <= 0:
            self._fit, self._cx, self._cy = True, 0.5, 0.5
        else:
            self._fit = False
            self._scale = min(MAX_SCALE, max(MIN_SCALE, scale))
            self._cx, self._cy = cx, cy
            self._clamp_center()
        self.update()

    def _changed(self) -> None:
        self._clamp_center()
        self.update()
        self.viewChanged.emit(*self.view())

    # -- geometry (logical widget pixels; image pixels in full-image units) -------------------

    def _dpr(self) -> float:
        return self.devicePixelRatioF() or 1.0

    def _fit_scale(self) -> float:
        if not self._images.width or not self._images.height:
            return 1.0
        dpr = self._dpr()
        fit = min(self.width() * dpr / self._images.width, self.height() * dpr / self._images.height)
        # Never enlarge a small photo to fit: an upscaled photo looks soft, and culling is
        # about judging sharpness.
        return min(1.0, fit)

    def _display_size(self, scale: float | None = None) -> tuple[float, float]:
        s = (self.scale() if scale is None else scale) / self._dpr()
        return self._images.width * s, self._images.height * s

    def _target_rect(self) -> QRectF:
        dw, dh = self._display_size()
        return QRectF(self.width() / 2 - self._cx * dw, self.height() / 2 - self._cy * dh, dw, dh)

    def _image_point(self, pos: QPointF) -> tuple[float, float]:
        """The normalised image point under widget position ``pos``."""
        if not self._images.width:
            return 0.5, 0.5
        rect = self._target_rect()
        return ((pos.x() - rect.x()) / rect.width(), (pos.y() - rect.y()) / rect.height())

    def _image_delta(self, pos: QPointF, scale: float) -> tuple[float, float]:
        dw, dh = self._display_size(scale)
        return (pos.x() - self.width() / 2) / dw, (pos.y() - self.height() / 2) / dh

    def _clamp_center(self) -> None:
        if self._fit or not self._images.width:
            if self._fit:
                self._cx = self._cy = 0.5
            return
        dw, dh = self._display_size()
        self._cx = _clamp_axis(self._cx, self.width(), dw)
        self._cy = _clamp_axis(self._cy, self.height(), dh)

    # -- events -------------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._clamp_center()
        super().resizeEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
            self._press_center = (self._cx, self._cy)
            self._dragging = False
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press is None or not event.buttons() & Qt.MouseButton.LeftButton:
            return super().mouseMoveEvent(event)
        delta = event.position() - self._press
        if not self._dragging and delta.manhattanLength() < QApplication.startDragDistance():
            return
        self._dragging = True
        if self._fit or not self._images.width:
            return
        self.setCursor(Qt.CursorShape.ClosedHandCursor)
        dw, dh = self._display_size()
        self._cx = self._press_center[0] - delta.x() / dw
        self._cy = self._press_center[1] - delta.y() / dh
        self._changed()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._press is None:
            return super().mouseReleaseEvent(event)
        was_drag = self._dragging
        self._press = None
        self._dragging = False
        self.unsetCursor()
        if not was_drag and self._images.width:
            self.toggle_zoom(event.position())
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if not steps or not self._images.width:
            return super().wheelEvent(event)
        self.zoom_by(WHEEL_STEP ** steps, event.position())
        event.accept()

    # -- painting -----------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), BACKGROUND)
        if self._images.pixmap is not None and self._images.width:
            self._draw_image(p)
        elif self._images.error:
            self._draw_message(p, f"Cannot show this photo\n{self._images.error}", QColor(255, 140, 120))
        elif self._images.path:
            self._draw_message(p, "Loading…", QColor(170, 170, 170))
        self._draw_title(p)
        p.end()

    def _draw_image(self, p: QPainter) -> None:
        target = self._target_rect()
        scale = self.scale()
        pm = self._images.pixmap
        if scale < 1.0 and target.width() * target.height() < 4e7:
            # Smooth downscaling once per zoom level, in the background; meanwhile the last
            # downscale (stretched) or the image itself (unsmoothed: fast) stands in.
            pm, smooth = self._images.drawable(self._wanted_size())
            if not smooth:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        else:
            # At 100 % and above show the real pixels, unsmoothed.
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        p.drawPixmap(target, pm, QRectF(pm.rect()))

    def _wanted_size(self) -> QSize:
        """The device-pixel size the photo is drawn at."""
        target, dpr = self._target_rect(), self._dpr()
        return QSize(max(1, round(target.width() * dpr)), max(1, round(target.height() * dpr)))

    def _draw_message(self, p: QPainter, text: str, color: QColor) -> None:
        p.setPen(color)
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.1)
        p.setFont(font)
        rect = self.rect().adjusted(20, 20, -20, -20)
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    def _draw_title(self, p: QPainter) -> None:
        if not self._title:
            return
        zoom = "" if not self._images.width else (
            f"Fit ({self.scale() * 100:.0f} %)" if self._fit else f"{self._scale * 100:.0f} %")
        text = f"{self._title}   {zoom}".rstrip()
        if self._face_note and not self._fit:
            text += f"   {self._face_note}"
        fm = p.fontMetrics()
        chip_h = fm.height() + 8
        culling_w = self._culling.chip_width(chip_h) if self._culling is not None else 0.0
        # Beside the title when the whole title still fits, else below it (narrow panes).
        beside = culling_w and self.width() - 24 - culling_w - 6 >= fm.horizontalAdvance(text)
        room = self.width() - 24 - (culling_w + 6 if beside else 0)
        text = fm.elidedText(text, Qt.TextElideMode.ElideMiddle, max(40, room))
        box = QRectF(6, 6, fm.horizontalAdvance(text) + 14, chip_h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 150))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.drawRoundedRect(box, 4, 4)
        p.setPen(QColor(235, 235, 235))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        if beside:
            self._culling.paint_chip(p, QRectF(box.right() + 6, box.top(), culling_w, chip_h))
        elif culling_w:
            self._culling.paint_chip(p, QRectF(box.left(), box.bottom() + 4, culling_w, chip_h))


def _clamp_axis(center: float, view: float, shown: float) -> float:
    """Keep the image covering the view along one axis (centred when it is smaller)."""
    if shown <= view or shown <= 0:
        return 0.5
    half = view / 2 / shown
    return min(1.0 - half, max(half, center))
