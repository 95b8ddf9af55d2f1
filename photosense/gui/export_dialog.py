"""``ExportDialog``: where to export, which photos, copy or hard link."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from photosense.curation.export import ExportOptions
from photosense.library import CHECK_NAMES, PhotoQuery

# "From" choices for the ranked modes: label -> ExportOptions.flag
RANK_POOLS = {"all photos": None, "picks": "pick", "unflagged photos": "none"}


class ExportDialog(QDialog):
    """Choose destination and selection; ``options()`` gives the ExportOptions.

    ``query``: the current view's filters; when given, a check box offers to export only
    photos in that view."""

    def __init__(self, parent: QWidget | None = None, attribute_names: list[str] | None = None,
                 query: PhotoQuery | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export photos")
        self.setMinimumWidth(480)
        self._query = query

        self.dest = QLineEdit()
        self.dest.setPlaceholderText("Folder to copy the photos into")
        self._touched = False  # no red text before the person did anything
        self.dest.textEdited.connect(self._touch)
        self.dest.textChanged.connect(self._validate)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        dest_row = QHBoxLayout()
        dest_row.addWidget(self.dest, 1)
        dest_row.addWidget(browse)

        self.mode_picks = QRadioButton("Picks")
        self.mode_rejects = QRadioButton("Rejects")
        self.mode_top = QRadioButton("The best")
        self.mode_percent = QRadioButton("The best")
        self.mode_picks.setChecked(True)
        self._modes = QButtonGroup(self)
        for b in (self.mode_picks, self.mode_rejects, self.mode_top, self.mode_percent):
            self._modes.addButton(b)
        self._modes.buttonToggled.connect(lambda *_: self._validate())
        self.top = QSpinBox()
        self.top.setRange(1, 1_000_000)
        self.top.setValue(50)
        self.top.setSuffix(" photos")
        self.percent = QDoubleSpinBox()
        self.percent.setRange(0.1, 100.0)
        self.percent.setDecimals(1)
        self.percent.setValue(10.0)
        self.percent.setSuffix(" %")
        self.by = QComboBox()
        names = [n for n in (attribute_names or []) if n not in CHECK_NAMES]
        self.by.addItems(names)
        if names:
            self.by.insertSeparator(len(names))
        self.by.addItems(list(CHECK_NAMES))
        self.pool = QComboBox()
        self.pool.addItems(list(RANK_POOLS))
        for w in (self.top, self.percent):
            w.valueChanged.connect(self._validate)

        which = QGroupBox("Which photos")
        grid = QVBoxLayout(which)
        grid.addWidget(self.mode_picks)
        grid.addWidget(self.mode_rejects)
        top_row = QHBoxLayout()
        top_row.addWidget(self.mode_top)
        top_row.addWidget(self.top)
        top_row.addStretch(1)
        grid.addLayout(top_row)
        pct_row = QHBoxLayout()
        pct_row.addWidget(self.mode_percent)
        pct_row.addWidget(self.percent)
        pct_row.addStretch(1)
        grid.addLayout(pct_row)
        rank = QFormLayout()
        rank.addRow("ranked by:", self.by)
        rank.addRow("from:", self.pool)
        self._rank_box = QWidget()
        self._rank_box.setLayout(rank)
        rank.setContentsMargins(24, 0, 0, 0)
        grid.addWidget(self._rank_box)
        self.in_view = QCheckBox("Only photos in the current view (its filters)")
        self.in_view.setVisible(query is not None)
        self.in_view.setChecked(query is not None)
        grid.addWidget(self.in_view)

        how = QGroupBox("How")
        how_layout = QVBoxLayout(how)
        self.copy = QRadioButton("Copy files")
        self.link = QRadioButton("Hard links (no extra disk space; same drive only, "
                                 "copies otherwise)")
        self.copy.setChecked(True)
        how_layout.addWidget(self.copy)
        how_layout.addWidget(self.link)
        self.missing = QCheckBox("Also try photos marked missing (e.g. a drive plugged back in)")
        how_layout.addWidget(self.missing)

        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #d04040;")
        self.error_label.setWordWrap(True)
        note = QLabel("Originals are never changed; files already in the folder are never "
                      "overwritten (name clashes get “-1”, identical files are skipped).")
        note.setWordWrap(True)
        note.setStyleSheet("color: palette(placeholder-text);")

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Destination:", dest_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(which)
        layout.addWidget(how)
        layout.addWidget(note)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self._validate()

    def set_destination(self, path: str | os.PathLike) -> None:
        self.dest.setText(os.fspath(path))

    def _browse(self) -> None:
        start = self.dest.text().strip() or str(Path.home())
        chosen = QFileDialog.getExistingDirectory(self, "Export to folder", start)
        if chosen:
            self.dest.setText(chosen)

    def _ranking(self) -> bool:
        return self.mode_top.isChecked() or self.mode_percent.isChecked()

    def _error(self) -> str | None:
        text = self.dest.text().strip()
        if not text:
            return "Choose a destination folder."
        path = Path(text).expanduser()
        if path.exists() and not path.is_dir():
            return "The destination is a file, not a folder."
        if self._ranking() and not self.by.currentText():
            return "Choose what to rank the photos by."
        return None

    def _validate(self) -> None:
        ranking = self._ranking()
        self._rank_box.setEnabled(ranking)
        self.top.setEnabled(self.mode_top.isChecked())
        self.percent.setEnabled(self.mode_percent.isChecked())
        error = self._error()
        self.error_label.setText(error or "")
        self.error_label.setVisible(error is not None and self._touched)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(error is None)

    def _touch(self, *_args) -> None:
        self._touched = True

    def is_valid(self) -> bool:
        return self._error() is None

    def accept(self) -> None:
        if self._error() is None:
            super().accept()
        else:
            self._touched = True
            self._validate()

    def options(self) -> ExportOptions:
        """The export as chosen (``query`` set when limited to the current view)."""
        opts = ExportOptions(
            dest=Path(self.dest.text().strip()).expanduser(),
            link=self.link.isChecked(),
            include_missing=self.missing.isChecked(),
            query=self._query if (self._query is not None and self.in_view.isChecked()) else None,
        )
        if self.mode_rejects.isChecked():
            opts.flag = "reject"
        elif self._ranking():
            opts.flag = RANK_POOLS[self.pool.currentText()]
            opts.by = self.by.currentText()
            if self.mode_top.isChecked():
                opts.top = self.top.value()
            else:
                opts.top_percent = self.percent.value()
        return opts
