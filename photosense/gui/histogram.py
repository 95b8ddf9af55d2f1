"""``HistogramPanel``: the distribution of one score, with a draggable threshold line.

"Above" means ``value >= threshold`` (the same as a ``(threshold, None)`` range in a
``PhotoQuery``); "below" means ``value < threshold``. NaN values are ignored. Which side is
better follows the key's direction: higher is better by default (Pick above / Reject below);
for a lower-is-better key the buttons are Pick at or below / Reject above. A histogram of a
single value shows that value (one bar, one label), an empty one says "No values" once.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

BINS = 40
_ABOVE = QColor(96, 178, 110)
_BELOW = QColor(200, 96, 88)
_LINE = QColor(250, 210, 80)
_TEXT = QColor(200, 200, 200)
_BG = QColor(38, 38, 38)


def format_value(v: float) -> str:
    if not math.isfinite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-3):
        return f"{v:.3g}"
    return f"{v:.3f}".rstrip("0").rstrip(".") if a < 10 else f"{v:.1f}"


class _HistogramCanvas(QWidget):
    """Bars plus the threshold line; pressing or dragging anywhere moves the line."""

    dragged = Signal(float)

    MARGIN_X = 8
    MARGIN_TOP = 6
    AXIS_H = 18

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setMinimumSize(160, 80)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.counts = np.zeros(0, dtype=np.int64)
        self.lo = 0.0
        self.hi = 1.0
        self.threshold = math.nan
        self.higher_better = True
        self._dragging = False

    def sizeHint(self) -> QSize:
        return QSize(320, 140)

    def plot_rect(self) -> QRectF:
        return QRectF(self.MARGIN_X, self.MARGIN_TOP, max(1, self.width() - 2 * self.MARGIN_X),
                      max(1, self.height() - self.MARGIN_TOP - self.AXIS_H))

    def x_for(self, value: float) -> float:
        r = self.plot_rect()
        if self.hi <= self.lo:  # one value: in the middle
            return r.center().x()
        return r.left() + (value - self.lo) / (self.hi - self.lo) * r.width()

    def value_at(self, x: float) -> float:
        r = self.plot_rect()
        if self.hi <= self.lo:
            return self.lo
        frac = min(1.0, max(0.0, (x - r.left()) / r.width()))
        return self.lo + frac * (self.hi - self.lo)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.counts.size:
            self._dragging = True
            self.dragged.emit(self.value_at(event.position().x()))
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging:
            self.dragged.emit(self.value_at(event.position().x()))
        elif self.counts.size and math.isfinite(self.threshold):
            near = abs(event.position().x() - self.x_for(self.threshold)) < 6
            self.setCursor(Qt.CursorShape.SizeHorCursor if near else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = False
        super().mouseReleaseEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), _BG)
        r = self.plot_rect()
        if not self.counts.size:
            p.setPen(_TEXT)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No values")
            p.end()
            return
        if self.hi <= self.lo:  # every photo has the same value: one bar, one label
            p.setPen(Qt.PenStyle.NoPen)
            x = r.center().x()
            p.fillRect(QRectF(x - 6, r.top() + 4, 12, r.height() - 4), _ABOVE)
            p.setPen(_TEXT)
            axis = QRectF(r.left(), r.bottom() + 2, r.width(), self.AXIS_H - 2)
            p.drawText(axis, Qt.AlignmentFlag.AlignCenter, format_value(self.lo))
            p.end()
            return
        peak = max(1, int(self.counts.max()))
        n = len(self.counts)
        width = r.width() / n
        edges = np.linspace(self.lo, self.hi, n + 1)
        for i, c in enumerate(self.counts):
            if not c:
                continue
            h = max(1.0, c / peak * r.height())
            x0 = r.left() + i * width
            bar = QRectF(x0 + 0.5, r.bottom() - h, max(1.0, width - 1.0), h)
            mid = (edges[i] + edges[i + 1]) / 2
            color = _ABOVE if (mid >= self.threshold) == self.higher_better else _BELOW
            p.fillRect(bar, color)
        p.setPen(QPen(QColor(90, 90, 90), 1))
        p.drawLine(QPointF(r.left(), r.bottom() + 0.5), QPointF(r.right(), r.bottom() + 0.5))
        p.setPen(_TEXT)
        axis = QRectF(r.left(), r.bottom() + 2, r.width(), self.AXIS_H - 2)
        p.drawText(axis, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   format_value(self.lo))
        p.drawText(axis, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                   format_value(self.hi))
        if math.isfinite(self.threshold):
            x = self.x_for(self.threshold)
            p.setPen(QPen(_LINE, 2))
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            label = format_value(self.threshold)
            fm = p.fontMetrics()
            w = fm.horizontalAdvance(label) + 8
            lx = x + 4 if x + 4 + w <= r.right() else max(r.left(), x - 4 - w)
            box = QRectF(lx, r.top(), w, fm.height() + 2)
            p.fillRect(box, QColor(0, 0, 0, 170))
            p.setPen(_LINE)
            p.drawText(box, Qt.AlignmentFlag.AlignCenter, label)
        p.end()


class HistogramPanel(QWidget):
    """Histogram of one attribute or check over the photos in view, with a threshold."""

    thresholdChanged = Signal(float)
    pickAbove = Signal(float)
    rejectBelow = Signal(float)
    pickBelow = Signal(float)  # lower is better: pick at or below the line
    rejectAbove = Signal(float)  # lower is better: reject above it

    def __init__(self, parent: QWidget | None = None, bins: int = BINS):
        super().__init__(parent)
        self._bins = bins
        self._values = np.zeros(0, dtype=np.float64)
        self._label = ""
        self._key: str | None = None
        self._title = QLabel(self)
        self._title.setStyleSheet("font-weight: bold")
        self.canvas = _HistogramCanvas(self)
        self.canvas.dragged.connect(self.set_threshold)
        self._counts = QLabel(self)
        self.pick_button = QPushButton("Pick above", self)
        self.reject_button = QPushButton("Reject below", self)
        self.pick_button.clicked.connect(self._pick_clicked)
        self.reject_button.clicked.connect(self._reject_clicked)

        buttons = QHBoxLayout()
        buttons.addWidget(self._counts, 1)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.pick_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self._title)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(buttons)
        self._refresh()

    # -- data ---------------------------------------------------------------------------------

    def set_values(self, values: np.ndarray, label: str, key: str | None = None,
                   higher_better: bool = True) -> None:
        """Show the distribution of ``values`` (NaN ignored) titled ``label``. The threshold
        is kept if it still lies inside the new range and ``key`` (what the values are of) is
        the same as before, else moved to the median: a threshold never carries over from
        one attribute to another."""
        arr = np.asarray(values, dtype=np.float64).ravel()
        arr = arr[np.isfinite(arr)]
        self._values = arr
        self._label = label
        same_key = key == self._key
        self._key = key
        c = self.canvas
        c.higher_better = higher_better
        if arr.size:
            lo, hi = float(arr.min()), float(arr.max())
            if hi - lo < 1e-12:
                hi = lo
                c.counts = np.array([arr.size], dtype=np.int64)
            else:
                c.counts, _ = np.histogram(arr, bins=self._bins, range=(lo, hi))
            c.lo, c.hi = lo, hi
            old = c.threshold
            if not (same_key and math.isfinite(old) and lo <= old <= hi):
                c.threshold = math.nan
                self.set_threshold(float(np.median(arr)))
        else:
            c.counts = np.zeros(0, dtype=np.int64)
        self._refresh()

    def values(self) -> np.ndarray:
        return self._values

    def higher_better(self) -> bool:
        return self.canvas.higher_better

    def _pick_clicked(self) -> None:
        (self.pickAbove if self.canvas.higher_better else self.pickBelow).emit(self.threshold())

    def _reject_clicked(self) -> None:
        (self.rejectBelow if self.canvas.higher_better else self.rejectAbove).emit(self.threshold())

    def label(self) -> str:
        return self._label

    def counts(self) -> np.ndarray:
        """The bar heights (photos per bin)."""
        return self.canvas.counts

    def value_range(self) -> tuple[float, float]:
        return self.canvas.lo, self.canvas.hi

    def threshold(self) -> float:
        return self.canvas.threshold

    def set_threshold(self, value: float) -> None:
        """Move the line (clamped to the values' range); emits thresholdChanged on change."""
        c = self.canvas
        value = float(value)
        if c.counts.size:
            value = min(c.hi, max(c.lo, value))
        if value == c.threshold:
            return
        c.threshold = value
        self._refresh()
        self.thresholdChanged.emit(value)

    def above_below(self) -> tuple[int, int]:
        t = self.canvas.threshold
        if not self._values.size or not math.isfinite(t):
            return 0, 0
        above = int(np.count_nonzero(self._values >= t))
        return above, int(self._values.size - above)

    def better_worse(self) -> tuple[int, int]:
        """(photos a Pick would flag, photos a Reject would flag) at the threshold."""
        t = self.canvas.threshold
        if not self._values.size or not math.isfinite(t):
            return 0, 0
        if self.canvas.higher_better:
            return self.above_below()
        better = int(np.count_nonzero(self._values <= t))
        return better, int(self._values.size - better)

    def _refresh(self) -> None:
        has = bool(self._values.size)
        self._title.setText(self._label or "Histogram")
        better, worse = self.better_worse()
        if self.canvas.higher_better:
            self.pick_button.setText("Pick above")
            self.pick_button.setToolTip("Flag every photo at or above the line as a pick (higher is better)")
            self.reject_button.setText("Reject below")
            self.reject_button.setToolTip("Flag every photo below the line as a reject")
            counts = f"{better} above / {worse} below"
        else:
            self.pick_button.setText("Pick below")
            self.pick_button.setToolTip("Flag every photo at or below the line as a pick (lower is better)")
            self.reject_button.setText("Reject above")
            self.reject_button.setToolTip("Flag every photo above the line as a reject")
            counts = f"{better} at or below / {worse} above"
        # An empty histogram says "No values" once, in the canvas.
        self._counts.setText(counts if has else "")
        self.pick_button.setEnabled(has and better > 0)
        self.reject_button.setEnabled(has and worse > 0)
        self.canvas.update()
