"""Paints one grid cell: thumbnail, flag, stars, colour label, the sort key's score badge,
a burst's "×N" badge, and a "RAW" / "RAW+JPG" tag."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from photosense.gui.photo_model import (
    BadgeRole,
    FileKindRole,
    GroupExpandedRole,
    GroupMemberRole,
    GroupSizeRole,
    RowRole,
    ThumbErrorRole,
    ThumbnailRole,
)
from photosense.library import FLAG_PICK, FLAG_REJECT

LABEL_COLORS = {
    "red": QColor("#d9534f"), "yellow": QColor("#e8c547"), "green": QColor("#5cb85c"),
    "blue": QColor("#4a90d9"), "purple": QColor("#9b59b6"),
}
PICK_COLOR = QColor("#f4f4f4")
REJECT_COLOR = QColor("#e0533d")
CELL_BG = QColor("#2a2a2a")
CELL_BG_SELECTED = QColor("#3d4654")
SELECT_BORDER = QColor("#5b9bd5")
TEXT = QColor("#d8d8d8")
TEXT_DIM = QColor("#8a8a8a")
STAR_ON = QColor("#f0c24b")
STAR_OFF = QColor("#4a4a4a")
STAR_OFF_SELECTED = QColor("#6f7b8e")  # against CELL_BG_SELECTED
GROUP_BADGE = QColor("#e8a33d")
BLINK_COLOR = QColor("#ffd54f")  # someone's eyes are closed
GROUP_MEMBER = QColor("#e8a33d")
STRIP = 38  # height of the caption strip below the thumbnail
PAD = 6


def cell_size(thumb_side: int) -> QSize:
    return QSize(thumb_side + 2 * PAD, thumb_side + 2 * PAD + STRIP)


def star_polygon(center: QPointF, radius: float) -> QPolygonF:
    import math

    points = []
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        a = -math.pi / 2 + i * math.pi / 5
        points.append(QPointF(center.x() + r * math.cos(a), center.y() + r * math.sin(a)))
    return QPolygonF(points)


class PhotoDelegate(QStyledItemDelegate):
    def __init__(self, parent=None, thumb_side: int = 160):
        super().__init__(parent)
        self.thumb_side = thumb_side

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return cell_size(self.thumb_side)

    @staticmethod
    def _thumb_area(rect: QRect) -> tuple[QRect, QRect]:
        """(the cell, the square the thumbnail is fitted in) for a cell rectangle."""
        cell = rect.adjusted(2, 2, -2, -2)
        side = min(cell.width() - 2 * (PAD - 2), cell.height() - STRIP - 2 * (PAD - 2))
        area = QRect(cell.left() + (cell.width() - side) // 2, cell.top() + PAD - 2, side, side)
        return cell, area

    def group_badge_rect(self, rect: QRect, index: QModelIndex | QPersistentModelIndex,
                         font: QFont) -> QRectF | None:
        """Where the "×N" badge of a burst is painted in a cell (None: no badge)."""
        size = index.data(GroupSizeRole)
        if not size:
            return None
        _cell, area = self._thumb_area(rect)
        return self._group_badge_geometry(font, self._group_text(size, index.data(GroupExpandedRole)), area)

    @staticmethod
    def _group_text(size: int, expanded: bool) -> str:
        return f"×{size} {'▴' if expanded else '▾'}"

    @staticmethod
    def _group_badge_font(base_font: QFont) -> QFont:
        f = QFont(base_font)
        f.setBold(True)
        f.setPointSizeF(max(7.5, base_font.pointSizeF() * 0.9))
        return f

    def _group_badge_geometry(self, base_font: QFont, text: str, area: QRect) -> QRectF:
        fm = QFontMetrics(self._group_badge_font(base_font))
        w, h = fm.horizontalAdvance(text) + 12, fm.height() + 4
        return QRectF(area.right() - w - 4, area.bottom() - h - 4, w, h)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        cell, area = self._thumb_area(option.rect)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(CELL_BG_SELECTED if selected else CELL_BG)
        painter.drawRoundedRect(cell, 4, 4)
        if selected:
            painter.setPen(QPen(SELECT_BORDER, 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(cell).adjusted(1, 1, -1, -1), 4, 4)

        row = index.data(RowRole)
        if index.data(GroupMemberRole):  # another frame of an expanded burst: a side stripe
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(GROUP_MEMBER)
            painter.drawRoundedRect(QRectF(cell.left() + 1, cell.top() + 8, 3, cell.height() - 16), 1.5, 1.5)
        if row is None:
            painter.fillRect(area, QColor("#333333"))
            painter.restore()
            return

        pixmap = index.data(ThumbnailRole)
        thumb_rect = area
        if pixmap is not None and not pixmap.isNull():
            size = pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
            thumb_rect = QRect(area.left() + (area.width() - size.width()) // 2,
                               area.top() + (area.height() - size.height()) // 2,
                               size.width(), size.height())
            painter.drawPixmap(thumb_rect, pixmap)
            if row.flag == FLAG_REJECT:
                painter.fillRect(thumb_rect, QColor(20, 20, 20, 150))
        else:
            painter.fillRect(area, QColor("#333333"))
            error = index.data(ThumbErrorRole)
            if error:
                painter.setPen(REJECT_COLOR)
                f = QFont(option.font)
                f.setPointSizeF(max(7.0, f.pointSizeF() * 0.85))
                painter.setFont(f)
                painter.drawText(area.adjusted(6, 6, -6, -6),
                                 Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                                 "⚠ " + error)

        self._paint_flag(painter, row.flag, area)
        badge = index.data(BadgeRole)
        if badge:
            self._paint_badge(painter, option.font, badge, area)
        if row.error:
            self._paint_error_mark(painter, area)
        closed = row.face_checks["eyes_closed"]
        if closed:
            self._paint_blink_badge(painter, option.font, closed, thumb_rect)
        size = index.data(GroupSizeRole)
        if size:
            text = self._group_text(size, bool(index.data(GroupExpandedRole)))
            self._paint_group_badge(painter, option.font, text, self._group_badge_geometry(option.font, text, area))

        strip = QRect(cell.left() + PAD, area.bottom() + 4, cell.width() - 2 * PAD, STRIP - 6)
        self._paint_caption(painter, option.font, row, strip, selected, index.data(FileKindRole))
        painter.restore()

    @staticmethod
    def _paint_flag(painter: QPainter, flag: int, area: QRect) -> None:
        if flag not in (FLAG_PICK, FLAG_REJECT):
            return
        r = QRectF(area.left() + 5, area.top() + 5, 20, 20)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawEllipse(r)
        if flag == FLAG_PICK:
            # a small flag: pole and pennant
            painter.setPen(QPen(PICK_COLOR, 1.6))
            painter.drawLine(QPointF(r.left() + 7, r.top() + 4.5), QPointF(r.left() + 7, r.bottom() - 4))
            path = QPainterPath(QPointF(r.left() + 7, r.top() + 4.5))
            path.lineTo(r.right() - 4.5, r.top() + 7.5)
            path.lineTo(r.left() + 7, r.top() + 10.5)
            path.closeSubpath()
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(PICK_COLOR)
            painter.drawPath(path)
        else:
            painter.setPen(QPen(REJECT_COLOR, 2.4, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            painter.drawLine(r.topLeft() + QPointF(6, 6), r.bottomRight() - QPointF(6, 6))
            painter.drawLine(QPointF(r.right() - 6, r.top() + 6), QPointF(r.left() + 6, r.bottom() - 6))

    @staticmethod
    def _paint_badge(painter: QPainter, base_font: QFont, text: str, area: QRect) -> None:
        f = QFont(base_font)
        f.setBold(True)
        f.setPointSizeF(max(7.5, base_font.pointSizeF() * 0.9))
        fm = QFontMetrics(f)
        w = fm.horizontalAdvance(text) + 10
        h = fm.height() + 2
        r = QRectF(area.right() - w - 4, area.top() + 5, w, h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 175))
        painter.drawRoundedRect(r, 4, 4)
        painter.setFont(f)
        painter.setPen(QColor("#ffffff"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_group_badge(self, painter: QPainter, base_font: QFont, text: str, r: QRectF) -> None:
        painter.setPen(QPen(QColor(0, 0, 0, 120), 1))
        painter.setBrush(GROUP_BADGE)
        painter.drawRoundedRect(r, 5, 5)
        painter.setFont(self._group_badge_font(base_font))
        painter.setPen(QColor("#1e1e1e"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, text)

    @staticmethod
    def blink_text(closed: int) -> str:
        return "blink" if closed == 1 else f"blink ×{closed}"

    def _paint_blink_badge(self, painter: QPainter, base_font: QFont, closed: int,
                           area: QRect) -> None:
        """Someone's eyes are closed: an amber tag at the thumbnail's bottom right."""
        f = QFont(base_font)
        f.setBold(True)
        f.setPointSizeF(max(7.0, base_font.pointSizeF() * 0.8))
        fm = QFontMetrics(f)
        text = self.blink_text(closed)
        w, h = fm.horizontalAdvance(text) + 10, fm.height() + 2
        r = QRectF(area.right() - w - 4, area.bottom() - h - 4, w, h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BLINK_COLOR)
        painter.drawRoundedRect(r, 4, 4)
        painter.setFont(f)
        painter.setPen(QColor("#1e1e1e"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, text)

    @staticmethod
    def _paint_error_mark(painter: QPainter, area: QRect) -> None:
        r = QRectF(area.left() + 5, area.bottom() - 23, 18, 18)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(REJECT_COLOR)
        painter.drawEllipse(r)
        painter.setPen(QColor("white"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, "!")

    @staticmethod
    def _paint_caption(painter: QPainter, base_font: QFont, row, strip: QRect, selected: bool,
                       kind: str | None = None) -> None:
        f = QFont(base_font)
        f.setPointSizeF(max(7.5, base_font.pointSizeF() * 0.9))
        painter.setFont(f)
        fm = QFontMetrics(f)
        line1 = QRect(strip.left(), strip.top(), strip.width(), fm.height())
        label_w = 0
        if row.color_label in LABEL_COLORS:
            label_w = 12
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(LABEL_COLORS[row.color_label])
            painter.drawRoundedRect(QRectF(line1.left(), line1.center().y() - 4, 8, 8), 2, 2)
        name = fm.elidedText(row.name, Qt.TextElideMode.ElideMiddle, line1.width() - label_w)
        painter.setPen(TEXT if (selected or not row.missing) else TEXT_DIM)
        painter.drawText(line1.adjusted(label_w, 0, 0, 0),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        # stars on the second line
        y = line1.bottom() + 9
        radius = 5.0
        painter.setPen(Qt.PenStyle.NoPen)
        for i in range(5):
            # Empty stars stay visible on the selected cell's lighter background.
            painter.setBrush(STAR_ON if i < row.rating else (STAR_OFF_SELECTED if selected else STAR_OFF))
            painter.drawPolygon(star_polygon(QPointF(strip.left() + radius + i * 13, y), radius))
        line2 = QRect(strip.left() + 70, line1.bottom() + 1, strip.width() - 70, fm.height())
        if row.missing:
            painter.setPen(TEXT_DIM)
            painter.drawText(line2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, "missing")
        elif kind:
            tag = QFont(f)
            tag.setBold(True)
            tag.setPointSizeF(max(6.5, f.pointSizeF() * 0.85))
            tfm = QFontMetrics(tag)
            w = tfm.horizontalAdvance(kind) + 8
            r = QRectF(line2.right() - w, line2.center().y() - tfm.height() / 2, w, tfm.height())
            painter.setPen(QPen(TEXT_DIM, 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(r, 3, 3)
            painter.setFont(tag)
            painter.setPen(TEXT)
            painter.drawText(r, Qt.AlignmentFlag.AlignCenter, kind)
