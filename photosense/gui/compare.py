"""``CompareView``: two to four photos side by side, zoomed and panned together."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QGridLayout, QWidget

from photosense.gui.loupe import LoupeView

MAX_PANES = 4
_HIGHLIGHT = QColor(90, 160, 255)


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) for ``count`` panes: side by side up to three, 2 x 2 for four."""
    return (2, 2) if count == 4 else (1, max(1, count))


class CompareView(QWidget):
    """Photos side by side. Zooming or panning one pane moves all of them (each pane keeps
    its own fit scale). Clicking a pane makes it current (drawn with a blue frame)."""

    currentChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(2, 2, 2, 2)
        self._grid.setSpacing(4)
        self._panes: list[LoupeView] = []
        self._count = 0
        self._current = 0
        self._syncing = False

    def panes(self) -> list[LoupeView]:
        """The visible panes, in order."""
        return self._panes[: self._count]

    def count(self) -> int:
        return self._count

    def current_index(self) -> int:
        return self._current

    def set_current(self, index: int) -> None:
        if 0 <= index < self._count and index != self._current:
            self._current = index
            self.update()
            self.currentChanged.emit(index)

    def set_photos(self, items: list[tuple]) -> None:
        """Show (path, title) or (path, title, companion JPEG) items; 1 to 4 of them (2 to 4
        to compare)."""
        if not 1 <= len(items) <= MAX_PANES:
            raise ValueError(f"compare shows 1 to {MAX_PANES} photos, not {len(items)}")
        while len(self._panes) < len(items):
            self._add_pane()
        view = self._panes[0].view() if self._count else (0.0, 0.5, 0.5)
        for i, pane in enumerate(self._panes):
            self._grid.removeWidget(pane)
            if i >= len(items):
                pane.clear()
                pane.hide()
        self._count = len(items)
        rows, cols = grid_shape(self._count)
        for i, (path, title, *companion) in enumerate(items):
            pane = self._panes[i]
            self._grid.addWidget(pane, i // cols, i % cols)
            pane.set_view(*view)
            pane.set_photo(path, title, companion[0] if companion else None)
            pane.show()
        for r in range(2):
            self._grid.setRowStretch(r, 1 if r < rows else 0)
        for c in range(MAX_PANES):
            self._grid.setColumnStretch(c, 1 if c < cols else 0)
        self._current = min(self._current, self._count - 1)
        self.update()

    def toggle_zoom(self) -> None:
        """Fit <-> 100 % on every pane (at each pane's centre)."""
        if self._count:
            self._panes[self._current].toggle_zoom()

    def next_face(self, step: int = 1) -> bool:
        """Every pane to its own next (or previous) face at 100 %, at once: the panes are
        not synced to each other for this, since each photo's face is where it is."""
        self._syncing = True
        try:
            moved = [pane.next_face(step) for pane in self.panes()]
        finally:
            self._syncing = False
        return any(moved)

    def zoom_fit(self) -> None:
        if self._count:
            self._panes[self._current].zoom_fit()

    def zoom_actual(self) -> None:
        if self._count:
            self._panes[self._current].zoom_actual()

    def _add_pane(self) -> None:
        pane = LoupeView(self)
        pane.viewChanged.connect(self._on_view_changed)
        pane.installEventFilter(self)
        self._panes.append(pane)

    @Slot(float, float, float)
    def _on_view_changed(self, scale: float, cx: float, cy: float) -> None:
        if self._syncing:
            return
        source = self.sender()
        self._syncing = True
        try:
            for pane in self.panes():
                if pane is not source:
                    pane.set_view(scale, cx, cy)
        finally:
            self._syncing = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseButtonPress and watched in self._panes:
            self.set_current(self._panes.index(watched))
        return super().eventFilter(watched, event)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self._count < 2:
            return
        pane = self._panes[self._current]
        p = QPainter(self)
        p.setPen(QPen(_HIGHLIGHT, 2))
        p.drawRect(pane.geometry().adjusted(-1, -1, 0, 0))
        p.end()


__all__ = ["CompareView", "grid_shape"]
