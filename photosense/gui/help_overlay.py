"""``HelpOverlay``: the keyboard shortcuts, drawn over the window; any key or click closes it."""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

_SHADE = QColor(0, 0, 0, 170)
_PANEL = QColor(32, 32, 36)
_KEY_BG = QColor(70, 70, 78)
_KEY_TEXT = QColor(250, 250, 250)
_TEXT = QColor(220, 220, 220)
_DIM = QColor(150, 150, 150)


class HelpOverlay(QWidget):
    """Covers its parent; ``show_overlay()`` shows it and takes the keyboard focus."""

    closed = Signal()

    def __init__(self, parent: QWidget, shortcuts: list[tuple[str, str]]):
        super().__init__(parent)
        self._shortcuts = list(shortcuts)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground, True)
        parent.installEventFilter(self)
        self.hide()
        self.setGeometry(parent.rect())

    def set_shortcuts(self, shortcuts: list[tuple[str, str]]) -> None:
        self._shortcuts = list(shortcuts)
        self.update()

    def shortcuts(self) -> list[tuple[str, str]]:
        return list(self._shortcuts)

    def show_overlay(self) -> None:
        """Show over the whole parent and take the keyboard (plain ``show()`` does the same)."""
        self.show()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.setFocus(Qt.FocusReason.PopupFocusReason)

    def toggle(self) -> None:
        if self.isVisible():
            self.close_overlay()
        else:
            self.show_overlay()

    def close_overlay(self) -> None:
        if self.isVisible():
            self.hide()
            self.closed.emit()

    # -- events -------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.parentWidget().rect())
        return super().eventFilter(watched, event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride:
            # While shown, every key closes the overlay, even one bound to a shortcut: taking
            # the override makes Qt deliver it here as a key press instead of firing the action.
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        event.accept()
        self.close_overlay()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        event.accept()
        self.close_overlay()

    def focusOutEvent(self, event) -> None:
        # Another window or widget took the keyboard: the overlay would no longer see the key
        # that is supposed to close it.
        super().focusOutEvent(event)
        if event.reason() in (Qt.FocusReason.ActiveWindowFocusReason,
                              Qt.FocusReason.MouseFocusReason, Qt.FocusReason.TabFocusReason):
            self.close_overlay()

    # -- painting -----------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.fillRect(self.rect(), _SHADE)

        base = QFont(self.font())
        title_font = QFont(base)
        title_font.setPointSizeF(base.pointSizeF() * 1.4)
        title_font.setBold(True)
        key_font = QFont(base)
        key_font.setBold(True)
        fm = QFontMetricsF(base)
        kfm = QFontMetricsF(key_font)
        tfm = QFontMetricsF(title_font)

        items = self._shortcuts
        row_h = max(fm.height(), kfm.height()) + 10
        key_w = max((kfm.horizontalAdvance(k) for k, _ in items), default=0) + 16
        text_w = max((fm.horizontalAdvance(t) for _, t in items), default=0)
        col_w = key_w + 12 + text_w
        gap = 36
        pad = 24
        # Two columns for a long list, if they fit side by side.
        columns = 2 if len(items) > 6 and 2 * col_w + gap + 2 * pad <= self.width() - 20 else 1
        per_col = math.ceil(len(items) / columns) if items else 0
        chrome = tfm.height() + 16 + fm.height() + 2 * pad + 12
        if per_col and chrome + per_col * row_h > self.height() - 20:
            # A small window: tighten the rows before anything has to be left out.
            row_h = max(max(fm.height(), kfm.height()) + 2, (self.height() - 20 - chrome) / per_col)
        width = min(self.width() - 20, columns * col_w + (columns - 1) * gap + 2 * pad)
        height = min(self.height() - 20, chrome + per_col * row_h)
        panel = QRectF((self.width() - width) / 2, (self.height() - height) / 2, width, height)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(_PANEL)
        p.drawRoundedRect(panel, 10, 10)

        p.setFont(title_font)
        p.setPen(_TEXT)
        title_rect = QRectF(panel.left() + pad, panel.top() + pad, panel.width() - 2 * pad, tfm.height())
        p.drawText(title_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   "Keyboard shortcuts")

        top = title_rect.bottom() + 16
        col_w = (panel.width() - 2 * pad - (columns - 1) * gap) / columns
        for i, (key, action) in enumerate(items):
            col, row = divmod(i, per_col)
            x = panel.left() + pad + col * (col_w + gap)
            y = top + row * row_h
            if y + row_h > panel.bottom() - pad - fm.height() - 4:
                continue  # no room left (a tiny window)
            key_rect = QRectF(x, y + 2, kfm.horizontalAdvance(key) + 16, row_h - 6)
            p.setPen(QPen(QColor(110, 110, 120), 1))
            p.setBrush(_KEY_BG)
            p.drawRoundedRect(key_rect, 4, 4)
            p.setFont(key_font)
            p.setPen(_KEY_TEXT)
            p.drawText(key_rect, Qt.AlignmentFlag.AlignCenter, key)
            p.setFont(base)
            p.setPen(_TEXT)
            text_rect = QRectF(x + key_w + 12, y, col_w - key_w - 12, row_h)
            p.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       fm.elidedText(action, Qt.TextElideMode.ElideRight, text_rect.width()))

        p.setFont(base)
        p.setPen(_DIM)
        foot = QRectF(panel.left() + pad, panel.bottom() - pad - fm.height(), panel.width() - 2 * pad,
                      fm.height())
        p.drawText(foot, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                   "Press any key or click to close")
        p.end()
