"""``AttributeDialog``: create or edit a look/feel attribute as antonym prompt pairs."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from photosense.library import CHECK_NAMES
from photosense.library.direction import HIGHER, LOWER
from photosense.scoring.prompts import AntonymPair, AttributeSpec, make_prompt, validate_attribute_name

MAX_PAIRS = 8

#: label -> (suggested name, pairs). An adjective becomes "Adjective photo."; a sentence is kept.
PRESETS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "sharp / blurry": ("sharp", (("Sharp", "Blurry"),)),
    "happy / sad": ("happy", (("Happy", "Sad"),)),
    "warm / cold": ("warm", (("Warm", "Cold"),)),
    "beautiful / ugly": ("beautiful", (("Beautiful", "Ugly"),)),
    "well lit (ensemble)": ("well lit", (("Well lit", "Poorly lit"), ("Bright", "Dark"))),
    "eyes open (sentences)": (
        "eyes open",
        (("A photo of a person with their eyes open.", "A photo of a person with their eyes closed."),),
    ),
}
_CUSTOM = "Choose a preset…"


class _PairRow:
    def __init__(self, dialog: AttributeDialog, positive: str = "", negative: str = ""):
        self.positive = QLineEdit(positive)
        self.positive.setPlaceholderText("positive, e.g. sharp")
        self.negative = QLineEdit(negative)
        self.negative.setPlaceholderText("negative, e.g. blurry")
        self.versus = QLabel("vs")
        self.remove = QToolButton()
        self.remove.setText("−")
        self.remove.setToolTip("Remove this pair")
        self.positive.textChanged.connect(dialog._validate)
        self.negative.textChanged.connect(dialog._validate)
        self.positive.textEdited.connect(dialog._touch)
        self.negative.textEdited.connect(dialog._touch)
        self.remove.clicked.connect(lambda: dialog._remove_row(self))

    def widgets(self) -> list[QWidget]:
        return [self.positive, self.versus, self.negative, self.remove]

    def texts(self) -> tuple[str, str]:
        return self.positive.text().strip(), self.negative.text().strip()


class AttributeDialog(QDialog):
    """Name plus one or more positive/negative pairs (several pairs are averaged: an
    ensemble). Shows the exact prompts the model will see; OK only when everything is valid."""

    def __init__(self, parent: QWidget | None = None, spec: AttributeSpec | None = None,
                 existing_names: set[str] | frozenset[str] = frozenset(), direction: str = HIGHER):
        super().__init__(parent)
        self._editing = spec
        self._touched = False  # errors are shown once something was typed or chosen
        self._existing = {n.strip().lower() for n in existing_names}
        self._spec: AttributeSpec | None = None
        self._auto_name: str | None = None  # the name a preset filled in (replaced by the next)
        self.setWindowTitle("Edit attribute" if spec else "New attribute")
        self.setMinimumWidth(520)

        self.presets = QComboBox()
        self.presets.addItem(_CUSTOM)
        self.presets.addItems(list(PRESETS))
        self.presets.activated.connect(self._apply_preset)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. sharp")
        self.name.setMaxLength(64)
        self.name.textEdited.connect(self._name_edited)
        self.name.textEdited.connect(self._touch)
        self.name.textChanged.connect(self._validate)

        self._rows: list[_PairRow] = []
        self._grid = QGridLayout()
        self._grid.setColumnStretch(0, 1)
        self._grid.setColumnStretch(2, 1)
        self.add_button = QPushButton("Add pair")
        self.add_button.setToolTip("Several pairs are scored separately and averaged")
        self.add_button.clicked.connect(lambda: self.add_pair())
        self.better = QComboBox()
        self.better.addItem("More like the positive side is better", HIGHER)
        self.better.addItem("More like the negative side is better", LOWER)
        self.better.setCurrentIndex(max(0, self.better.findData(direction)))
        self.better.setToolTip("Which way “best first” sorting, the best photo of a burst, the "
                               "histogram's Pick and export's top photos go")

        self.preview = QLabel()
        self.preview.setTextFormat(Qt.TextFormat.RichText)
        self.preview.setWordWrap(True)
        self.preview.setStyleSheet("color: palette(text); padding: 4px;")
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d04040;")

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        if spec is None:
            form.addRow("Preset:", self.presets)
        else:
            self.presets.hide()
        form.addRow("Name:", self.name)
        hint = QLabel("Describe the look with opposite words (“sharp” vs “blurry”) or with "
                      "two full sentences. Each becomes a prompt for the model.")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addLayout(self._grid)
        layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignLeft)
        better = QFormLayout()
        better.addRow("Better:", self.better)
        layout.addLayout(better)
        layout.addWidget(QLabel("Prompts:"))
        layout.addWidget(self.preview)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        layout.addWidget(self.buttons)

        if spec is not None:
            self.name.setText(spec.name)
            for pair in spec.pairs:
                self.add_pair(pair.positive, pair.negative)
        else:
            self.add_pair()
        self._validate()

    # -- rows ---------------------------------------------------------------------------------

    def add_pair(self, positive: str = "", negative: str = "") -> None:
        if len(self._rows) >= MAX_PAIRS:
            return
        row = _PairRow(self, positive, negative)
        self._rows.append(row)
        self._relayout()
        self._validate()

    def pair_count(self) -> int:
        return len(self._rows)

    def pair_edits(self, index: int) -> tuple[QLineEdit, QLineEdit]:
        row = self._rows[index]
        return row.positive, row.negative

    def _remove_row(self, row: _PairRow) -> None:
        if len(self._rows) <= 1:
            return
        self._rows.remove(row)
        for w in row.widgets():
            self._grid.removeWidget(w)
            w.deleteLater()
        self._relayout()
        self._validate()

    def _relayout(self) -> None:
        for i, row in enumerate(self._rows):
            for col, w in enumerate(row.widgets()):
                self._grid.addWidget(w, i, col)
            row.remove.setEnabled(len(self._rows) > 1)
        self.add_button.setEnabled(len(self._rows) < MAX_PAIRS)

    # -- presets ------------------------------------------------------------------------------

    def _name_edited(self, _text: str) -> None:
        self._auto_name = None  # the user typed a name: presets no longer replace it

    def _apply_preset(self, index: int) -> None:
        label = self.presets.itemText(index)
        if label not in PRESETS:
            return
        name, pairs = PRESETS[label]
        while len(self._rows) > 1:
            self._remove_row(self._rows[-1])
        for i, (pos, neg) in enumerate(pairs):
            if i >= len(self._rows):
                self.add_pair()
            self._rows[i].positive.setText(pos)
            self._rows[i].negative.setText(neg)
        if not self.name.text().strip() or self.name.text() == self._auto_name:
            free = self._free_name(name)
            self.name.setText(free)
            self._auto_name = free
        self._validate()

    def _free_name(self, name: str) -> str:
        taken = self._existing | set(CHECK_NAMES)
        if name not in taken:
            return name
        k = 2
        while f"{name} {k}" in taken:
            k += 1
        return f"{name} {k}"

    # -- validation ---------------------------------------------------------------------------

    def _name_error(self) -> str | None:
        try:
            name = validate_attribute_name(self.name.text())
        except ValueError as exc:
            return str(exc)
        if name in CHECK_NAMES:
            return f"“{name}” is the name of a built-in check; choose another name"
        editing_same = self._editing is not None and name == self._editing.name
        if name in self._existing and not editing_same:
            return f"an attribute called “{name}” already exists"
        return None

    def _validate(self) -> None:
        errors: list[str] = []
        name_error = self._name_error()
        if name_error:
            errors.append(name_error)
        pairs: list[AntonymPair] = []
        lines: list[str] = []
        for i, row in enumerate(self._rows, 1):
            pos, neg = row.texts()
            where = f"Pair {i}: " if len(self._rows) > 1 else ""
            if not pos and not neg:
                errors.append(f"{where}type a positive and a negative description")
                continue
            if not pos or not neg:
                errors.append(f"{where}type the {'positive' if not pos else 'negative'} side too")
            if pos and neg and make_prompt(pos) == make_prompt(neg):
                errors.append(f"{where}the two sides are the same")
            p_text = html.escape(make_prompt(pos)) if pos else "…"
            n_text = html.escape(make_prompt(neg)) if neg else "…"
            lines.append(f"<b>“{p_text}”</b> &nbsp;vs&nbsp; “{n_text}”")
            if pos and neg:
                pairs.append(AntonymPair(pos, neg))
        self.preview.setText("<br>".join(lines) if lines else "<i>(no prompts yet)</i>")
        if not self._rows:
            errors.append("add at least one positive/negative pair")
        self._spec = None
        if not errors:
            builtin = bool(self._editing and self._editing.builtin)
            try:
                self._spec = AttributeSpec(self.name.text(), tuple(pairs), builtin=builtin)
            except ValueError as exc:  # whatever the checks above did not foresee
                errors.append(str(exc))
        self.error_label.setText("\n".join(e[:1].upper() + e[1:] for e in errors))
        self.error_label.setVisible(bool(errors) and self._touched)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(self._spec is not None)

    def _touch(self, *_args) -> None:
        if not self._touched:
            self._touched = True
            self._validate()

    def direction(self) -> str:
        """Which way is better (photosense.library.direction HIGHER or LOWER)."""
        return self.better.currentData()

    def is_valid(self) -> bool:
        return self._spec is not None

    def errors(self) -> str:
        return self.error_label.text()

    def accept(self) -> None:
        self._touched = True
        self._validate()
        if self._spec is None:
            return
        super().accept()

    def spec(self) -> AttributeSpec:
        """The attribute as entered (valid once the dialog was accepted)."""
        if self._spec is None:
            raise ValueError(self.errors() or "the attribute is not valid")
        return self._spec
