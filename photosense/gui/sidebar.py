"""The left sidebar: library folders, attributes, the "my taste" model's status, and the
filters of the current view."""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from photosense.ingest.scan import describe_skipped
from photosense.library import CHECK_NAMES, COLOR_LABELS, AttributeInfo, FolderInfo, PhotoQuery
from photosense.scoring.faces import IN_FOCUS

FLAG_FILTERS = [("All photos", None), ("Picks", "pick"), ("Rejects", "reject"),
                ("Unflagged", "none"), ("Picks and rejects", "flagged")]
# Typical ranges of the checks, for the range filter's spin boxes (scores are 0..1).
CHECK_RANGES = {"sharpness": (0.0, 1.0), "exposure": (-1.0, 1.0), "noise": (0.0, 50.0)}


# The faces filter: (text, key) and the ranges each key adds to the query.
FACE_FILTERS = (("Any", None), ("Someone's eyes are closed", "eyes_closed"),
                ("No faces", "no_faces"), ("Faces in focus", "in_focus"))
FACE_FILTER_RANGES = {
    "eyes_closed": {"eyes_closed": (1, None)},
    "no_faces": {"faces": (None, 0)},
    "in_focus": {"eye_sharpness": (IN_FOCUS, None)},
}


def _header(text: str) -> QLabel:
    label = QLabel(text.upper())
    f = label.font()
    f.setBold(True)
    f.setPointSizeF(f.pointSizeF() * 0.85)
    label.setFont(f)
    label.setStyleSheet("color: #9aa4b1; padding-top: 8px;")
    return label


def _small_button(text: str, tip: str) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setAutoRaise(True)
    return b


class Sidebar(QWidget):
    filtersChanged = Signal()
    addFolderRequested = Signal()
    removeFolderRequested = Signal(int)
    rescanRequested = Signal()
    addAttributeRequested = Signal()
    editAttributeRequested = Signal(str)
    removeAttributeRequested = Signal(str)
    sortRequested = Signal(str)
    refitTasteRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._ranges: dict[str, tuple[float | None, float | None]] = {}
        self._updating = False

        content = QWidget()
        lay = QVBoxLayout(content)
        lay.setContentsMargins(8, 4, 8, 8)
        lay.setSpacing(4)

        # folders
        head = QHBoxLayout()
        head.addWidget(_header("Folders"))
        head.addStretch()
        self.add_folder_button = _small_button("+", "Add a folder to the library…")
        self.remove_folder_button = _small_button("−", "Remove the selected folder from the library")
        self.rescan_button = _small_button("⟳", "Look for new and changed files in every folder")
        for b in (self.rescan_button, self.add_folder_button, self.remove_folder_button):
            head.addWidget(b)
        lay.addLayout(head)
        self.folder_list = QListWidget()
        self.folder_list.setObjectName("folderList")
        self.folder_list.setMaximumHeight(120)
        lay.addWidget(self.folder_list)

        # attributes
        head = QHBoxLayout()
        head.addWidget(_header("Attributes"))
        head.addStretch()
        self.add_attr_button = _small_button("+", "Describe a new attribute…")
        self.edit_attr_button = _small_button("✎", "Edit the selected attribute…")
        self.remove_attr_button = _small_button("−", "Remove the selected attribute")
        for b in (self.add_attr_button, self.edit_attr_button, self.remove_attr_button):
            head.addWidget(b)
        lay.addLayout(head)
        self.attribute_list = QListWidget()
        self.attribute_list.setObjectName("attributeList")
        self.attribute_list.setMaximumHeight(190)
        self.attribute_list.setToolTip("Double-click to sort by an attribute")
        lay.addWidget(self.attribute_list)

        # my taste
        head = QHBoxLayout()
        head.addWidget(_header("My taste"))
        head.addStretch()
        self.refit_button = _small_button("⟳", "Refit “my taste” on your picks and rejects now")
        head.addWidget(self.refit_button)
        lay.addLayout(head)
        self.taste_label = QLabel("…")
        self.taste_label.setObjectName("tasteStatus")
        self.taste_label.setWordWrap(True)
        self.taste_label.setStyleSheet("color: #b8b8b8;")
        lay.addWidget(self.taste_label)

        # filters
        head = QHBoxLayout()
        head.addWidget(_header("Filters"))
        head.addStretch()
        self.reset_button = _small_button("Reset", "Show every photo")
        head.addWidget(self.reset_button)
        lay.addLayout(head)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.flag_combo = QComboBox()
        for text, value in FLAG_FILTERS:
            self.flag_combo.addItem(text, value)
        form.addRow("Flag", self.flag_combo)
        self.rating_combo = QComboBox()
        self.rating_combo.addItem("Any", 0)
        for n in range(1, 6):
            self.rating_combo.addItem("★" * n + ("" if n == 5 else " or more"), n)
        form.addRow("Rating", self.rating_combo)
        self.label_combo = QComboBox()
        self.label_combo.addItem("Any", None)
        for name in COLOR_LABELS:
            self.label_combo.addItem(name.capitalize(), name)
        form.addRow("Label", self.label_combo)
        self.faces_combo = QComboBox()
        for text, value in FACE_FILTERS:
            self.faces_combo.addItem(text, value)
        self.faces_combo.setToolTip("Filter by the faces found in each photo")
        form.addRow("Faces", self.faces_combo)
        self.errors_check = QCheckBox("Only files with errors")
        form.addRow(self.errors_check)
        lay.addLayout(form)

        lay.addWidget(QLabel("Range of a score or check"))
        self.range_key = QComboBox()
        # A long attribute name must not widen the panel: the combo elides it instead.
        self.range_key.setMinimumContentsLength(16)
        self.range_key.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        lay.addWidget(self.range_key)
        row = QHBoxLayout()
        self.range_min = QDoubleSpinBox()
        self.range_max = QDoubleSpinBox()
        for spin in (self.range_min, self.range_max):
            spin.setDecimals(2)
            spin.setSingleStep(0.05)
        self.range_add = QPushButton("Apply")
        row.addWidget(self.range_min)
        row.addWidget(QLabel("–"))
        row.addWidget(self.range_max)
        row.addWidget(self.range_add)
        lay.addLayout(row)
        self.range_list = QListWidget()
        self.range_list.setObjectName("rangeList")
        self.range_list.setMaximumHeight(64)
        self.range_list.setToolTip("Active ranges; select one and press Delete to remove it")
        lay.addWidget(self.range_list)
        self.range_remove = QPushButton("Remove range")
        lay.addWidget(self.range_remove)
        lay.addStretch()
        self._refresh_range_list()

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        # The panel scrolls up and down, never sideways: it is never narrower than its
        # contents, so the section buttons (+, −, ⟳) and the filters' combos stay in view.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(content.minimumSizeHint().width()
                             + scroll.verticalScrollBar().sizeHint().width())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        for combo in (self.flag_combo, self.rating_combo, self.label_combo):
            combo.currentIndexChanged.connect(self._changed)
        self.errors_check.toggled.connect(self._changed)
        self.faces_combo.currentIndexChanged.connect(self._changed)
        self.folder_list.currentRowChanged.connect(self._changed)
        self.reset_button.clicked.connect(self.reset)
        self.add_folder_button.clicked.connect(self.addFolderRequested)
        self.rescan_button.clicked.connect(self.rescanRequested)
        self.remove_folder_button.clicked.connect(self._remove_folder)
        self.add_attr_button.clicked.connect(self.addAttributeRequested)
        self.refit_button.clicked.connect(self.refitTasteRequested)
        self.edit_attr_button.clicked.connect(self._edit_attribute)
        self.remove_attr_button.clicked.connect(self._remove_attribute)
        self.attribute_list.itemDoubleClicked.connect(
            lambda item: self.sortRequested.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.attribute_list.currentItemChanged.connect(self._update_attr_buttons)
        self.range_key.currentIndexChanged.connect(self._range_key_changed)
        self.range_add.clicked.connect(self._add_range)
        self.range_remove.clicked.connect(self._remove_range)
        self.range_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._update_attr_buttons()

    # -- data in ----------------------------------------------------------------------------

    def set_folders(self, folders: list[FolderInfo]) -> None:
        current = self.folder_id()
        self._updating = True
        self.folder_list.clear()
        total = sum(f.photo_count for f in folders)
        all_item = QListWidgetItem(f"All photos  ({total})")
        all_item.setData(Qt.ItemDataRole.UserRole, None)
        self.folder_list.addItem(all_item)
        select = 0
        for i, f in enumerate(folders, start=1):
            name = os.path.basename(f.path.rstrip(os.sep)) or f.path
            skipped = f"  · {f.skipped_count} skipped" if f.skipped_count else ""
            item = QListWidgetItem(f"{name}  ({f.photo_count}){skipped}"
                                   + ("  — missing" if f.missing else ""))
            item.setData(Qt.ItemDataRole.UserRole, f.id)
            item.setToolTip(f.path + ("\nThis folder cannot be found (unplugged drive? moved?). "
                                      "Its photos and flags are kept." if f.missing else "")
                            + (f"\nNot photos photosense reads, skipped by the last scan: "
                               f"{describe_skipped(f.skipped)}" if f.skipped_count else ""))
            if f.missing:
                font = QFont(item.font())
                font.setItalic(True)
                item.setFont(font)
                item.setForeground(Qt.GlobalColor.gray)
            self.folder_list.addItem(item)
            if f.id == current:
                select = i
        self.folder_list.setCurrentRow(select)
        self._updating = False
        self.remove_folder_button.setEnabled(bool(folders))

    def set_attributes(self, attributes: list[AttributeInfo]) -> None:
        current = self.current_attribute()
        self.attribute_list.clear()
        for a in attributes:
            item = QListWidgetItem(a.name + ("" if a.spec.builtin else "  (yours)"))
            item.setData(Qt.ItemDataRole.UserRole, a.name)
            item.setData(Qt.ItemDataRole.UserRole + 1, a.spec.builtin)
            item.setData(Qt.ItemDataRole.UserRole + 2, a.kind)
            pairs = "; ".join(f"{p.positive} ↔ {p.negative}" for p in a.spec.pairs)
            item.setToolTip(f"{pairs}\nDouble-click to sort by {a.name}")
            self.attribute_list.addItem(item)
            if a.name == current:
                self.attribute_list.setCurrentItem(item)
        keys = [a.name for a in attributes] + list(CHECK_NAMES)
        self._updating = True
        key = self.range_key.currentData()
        self.range_key.clear()
        for k in keys:
            self.range_key.addItem(k + (" (check)" if k in CHECK_NAMES else ""), k)
        if key in keys:
            self.range_key.setCurrentIndex(keys.index(key))
        self._updating = False
        self._range_key_changed()
        # ranges of attributes that no longer exist are dropped
        stale = [k for k in self._ranges if k not in keys]
        for k in stale:
            del self._ranges[k]
        if stale:
            self._refresh_range_list()
            self._changed()
        self._update_attr_buttons()

    def set_taste_status(self, summary: str, details: str) -> None:
        """The taste model's state in a line or two; ``details`` as the tooltip."""
        self.taste_label.setText(summary)
        self.taste_label.setToolTip(details)

    # -- data out ---------------------------------------------------------------------------

    def folder_id(self) -> int | None:
        item = self.folder_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def current_attribute(self) -> str | None:
        item = self.attribute_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def apply_to(self, query: PhotoQuery) -> PhotoQuery:
        """``query`` with this sidebar's filters (sort and order are kept)."""
        return replace(
            query,
            flag=self.flag_combo.currentData(),
            min_rating=self.rating_combo.currentData() or 0,
            color_label=self.label_combo.currentData(),
            folder_id=self.folder_id(),
            errors_only=self.errors_check.isChecked(),
            ranges={**self._ranges, **FACE_FILTER_RANGES.get(self.faces_combo.currentData(), {})},
        )

    def set_range(self, key: str, lo: float | None, hi: float | None) -> None:
        self._ranges[key] = (lo, hi)
        self._refresh_range_list()
        self._changed()

    def reset(self) -> None:
        self._updating = True
        self.flag_combo.setCurrentIndex(0)
        self.rating_combo.setCurrentIndex(0)
        self.label_combo.setCurrentIndex(0)
        self.errors_check.setChecked(False)
        self.faces_combo.setCurrentIndex(0)
        self.folder_list.setCurrentRow(0)
        self._ranges.clear()
        self._refresh_range_list()
        self._updating = False
        self._changed()

    # -- internals --------------------------------------------------------------------------

    def _changed(self, *_args) -> None:
        if not self._updating:
            self.filtersChanged.emit()

    def _remove_folder(self) -> None:
        fid = self.folder_id()
        if fid is not None:
            self.removeFolderRequested.emit(fid)

    def _edit_attribute(self) -> None:
        name = self.current_attribute()
        if name:
            self.editAttributeRequested.emit(name)

    def _remove_attribute(self) -> None:
        name = self.current_attribute()
        if name:
            self.removeAttributeRequested.emit(name)

    def _update_attr_buttons(self, *_args) -> None:
        item = self.attribute_list.currentItem()
        # "my taste" and learned attributes are fitted, not described: nothing to edit
        self.edit_attr_button.setEnabled(item is not None
                                         and item.data(Qt.ItemDataRole.UserRole + 2) in (None, "prompts"))
        self.remove_attr_button.setEnabled(item is not None)

    def _range_key_changed(self, *_args) -> None:
        key = self.range_key.currentData()
        lo, hi = CHECK_RANGES.get(key, (0.0, 1.0))
        for spin in (self.range_min, self.range_max):
            spin.setRange(lo, hi)
        current = self._ranges.get(key, (None, None))
        self.range_min.setValue(lo if current[0] is None else current[0])
        self.range_max.setValue(hi if current[1] is None else current[1])

    def _add_range(self) -> None:
        key = self.range_key.currentData()
        if key is None:
            return
        lo, hi = self.range_min.value(), self.range_max.value()
        if lo > hi:
            lo, hi = hi, lo
        full_lo, full_hi = CHECK_RANGES.get(key, (0.0, 1.0))
        self.set_range(key, None if lo <= full_lo else lo, None if hi >= full_hi else hi)

    def _remove_range(self) -> None:
        item = self.range_list.currentItem()
        if item is None and self.range_list.count() == 1:
            item = self.range_list.item(0)
        if item is not None:
            self._ranges.pop(item.data(Qt.ItemDataRole.UserRole), None)
            self._refresh_range_list()
            self._changed()

    def _refresh_range_list(self) -> None:
        self.range_list.clear()
        for key, (lo, hi) in self._ranges.items():
            text = f"{key}: {'…' if lo is None else f'{lo:.2f}'} – {'…' if hi is None else f'{hi:.2f}'}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.range_list.addItem(item)
        self.range_list.setVisible(bool(self._ranges))
        self.range_remove.setVisible(bool(self._ranges))

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.range_list.hasFocus():
            self._remove_range()
            return
        super().keyPressEvent(event)
