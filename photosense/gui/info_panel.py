"""The info panel: facts about the current photo, and every score and check as a small bar."""

from __future__ import annotations

import os

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QFormLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from photosense.gui.photo_model import file_kind, format_value
from photosense.library import FLAG_BY_VALUE, PhotoRow

BAR_COLOR = QColor("#5b9bd5")
CHECK_COLOR = QColor("#7fb77e")
BAR_BG = QColor("#3a3a3a")


class ValueBar(QWidget):
    """A thin horizontal bar with the value written at its right. ``signed`` bars grow from
    the middle (exposure: left = under-exposed, right = over-exposed)."""

    def __init__(self, parent: QWidget | None = None, color: QColor = BAR_COLOR):
        super().__init__(parent)
        self.fraction: float | None = None
        self.signed = False
        self.text = "–"
        self.color = color
        self.setMinimumWidth(80)

    def sizeHint(self) -> QSize:
        return QSize(140, self.fontMetrics().height() + 2)

    def set_value(self, fraction: float | None, text: str, signed: bool = False) -> None:
        self.fraction, self.text, self.signed = fraction, text, signed
        self.setToolTip(text)
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_w = self.fontMetrics().horizontalAdvance("+0.00") + 6
        bar = QRectF(0, self.height() / 2 - 3, max(10, self.width() - text_w), 6)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(BAR_BG)
        p.drawRoundedRect(bar, 3, 3)
        if self.fraction is not None:
            p.setBrush(self.color)
            if self.signed:
                mid = bar.center().x()
                w = bar.width() / 2 * max(-1.0, min(1.0, self.fraction))
                p.drawRoundedRect(QRectF(min(mid, mid + w), bar.top(), abs(w), bar.height()), 3, 3)
                p.setBrush(QColor("#888"))
                p.drawRect(QRectF(mid - 0.5, bar.top() - 2, 1, bar.height() + 4))
            else:
                w = bar.width() * max(0.0, min(1.0, self.fraction))
                p.drawRoundedRect(QRectF(bar.left(), bar.top(), w, bar.height()), 3, 3)
        p.setPen(self.palette().text().color())
        p.drawText(QRectF(bar.right() + 4, 0, text_w - 4, self.height()),
                   Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, self.text)
        p.end()


def check_fraction(name: str, value: float | None) -> tuple[float | None, bool]:
    """(fraction for the bar, signed) for a check value."""
    if value is None:
        return None, False
    if name == "exposure":
        return value, True
    if name == "noise":
        return min(1.0, value / 10.0), False
    return value, False


def faces_text(row: PhotoRow) -> str:
    """"2 faces, 1 with closed eyes", "no faces", or "not looked for yet"."""
    if row.faces is None:
        return "not looked for yet"
    if not row.faces:
        return "no faces"
    n = len(row.faces)
    closed = sum(1 for f in row.faces if f.get("eyes") == "closed")
    unclear = sum(1 for f in row.faces if f.get("eyes") == "unclear")
    text = f"{n} face{'s' if n != 1 else ''}"
    if closed:
        text += f", {closed} with closed eyes"
    if unclear:
        text += f", {unclear} unclear"
    return text


class InfoPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumWidth(240)
        self.title = QLabel("No photo selected")
        self.title.setWordWrap(True)
        f = self.title.font()
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.1)
        self.title.setFont(f)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts = QFormLayout()
        self.facts.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff8a7a;")
        self.error.hide()
        self.bars = QFormLayout()
        self.bars.setVerticalSpacing(3)
        self._bar_widgets: dict[str, ValueBar] = {}

        content = QWidget()
        lay = QVBoxLayout(content)
        lay.setContentsMargins(10, 8, 10, 8)
        lay.addWidget(self.title)
        lay.addLayout(self.facts)
        lay.addWidget(self.error)
        self.scores_header = QLabel("SCORES")
        self.scores_header.setStyleSheet("color: #9aa4b1; font-weight: bold; padding-top: 6px;")
        lay.addWidget(self.scores_header)
        lay.addLayout(self.bars)
        lay.addStretch()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.row: PhotoRow | None = None
        self.order: list[str] = []  # attribute order of the library (built-ins first)
        self.set_row(None)

    def _clear(self, form: QFormLayout) -> None:
        while form.rowCount():
            form.removeRow(0)

    def set_row(self, row: PhotoRow | None, selected: int = 1) -> None:
        self.row = row
        self._clear(self.facts)
        self._clear(self.bars)
        self._bar_widgets.clear()
        if row is None:
            self.title.setText("No photo selected" if selected == 0 else f"{selected} photos selected")
            self.error.hide()
            self.scores_header.hide()
            return
        self.title.setText(row.name)
        self.title.setToolTip(row.path)

        def fact(label: str, value: str) -> None:
            v = QLabel(value)
            v.setWordWrap(True)
            v.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.facts.addRow(QLabel(label), v)

        kind = file_kind(row)
        if kind == "RAW+JPG":
            fact("Files", f"RAW + JPEG\n{row.name}\n{os.path.basename(row.companion_path)}")
        elif kind == "RAW":
            fact("File", "RAW")
        fact("Folder", os.path.dirname(row.path))
        fact("Taken", row.capture_time.strftime("%Y-%m-%d %H:%M:%S") if row.capture_time else "unknown")
        fact("Camera", row.camera or "unknown")
        fact("Size", f"{row.width} × {row.height}" if row.width and row.height else "unknown")
        stars = "★" * row.rating + "☆" * (5 - row.rating)
        fact("Culling", f"{FLAG_BY_VALUE.get(row.flag, 'none')}  {stars}"
                        + (f"  {row.color_label}" if row.color_label else ""))
        if selected > 1:
            fact("Selected", f"{selected} photos")
        fact("Faces", faces_text(row))
        problems = []
        if row.missing:
            problems.append("The file is missing (moved, deleted, or its drive is not connected).")
        if row.error:
            problems.append(row.error)
        self.error.setText("\n".join(problems))
        self.error.setVisible(bool(problems))

        self.scores_header.show()
        rank = {n: i for i, n in enumerate(self.order)}
        for name, value in sorted(row.scores.items(), key=lambda kv: rank.get(kv[0], len(rank))):
            bar = ValueBar()
            bar.set_value(value, format_value(name, value))
            self.bars.addRow(QLabel(name), bar)
            self._bar_widgets[name] = bar
        if not row.scores:
            hint = QLabel("not scored yet")
            hint.setStyleSheet("color: #8a8a8a;")
            self.bars.addRow(hint)
        checks = dict(row.checks)
        if row.face_checks["eye_sharpness"] is not None:
            checks["eye sharpness"] = row.face_checks["eye_sharpness"]
        for name, value in checks.items():
            bar = ValueBar(color=CHECK_COLOR)
            frac, signed = check_fraction(name, value)
            bar.set_value(frac, format_value(name, value), signed)
            self.bars.addRow(QLabel(name), bar)
            self._bar_widgets[name] = bar

    def set_burst_reason(self, text: str) -> None:
        """Why the photo shown won its burst (one line, under the facts)."""
        label = QLabel(text)
        label.setWordWrap(True)
        label.setObjectName("burst_reason")
        self.facts.addRow(QLabel("Burst"), label)

    def bar(self, name: str) -> ValueBar | None:
        return self._bar_widgets.get(name)
