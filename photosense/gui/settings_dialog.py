"""Settings: engine and XMP sidecar options (stored in the library) and window preferences,
bursts included (a JSON file)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from PySide6.QtWidgets import (
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
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from photosense import settings
from photosense.fsutil import atomic_write
from photosense.scoring.clipiqa import DEFAULT_MODEL, EngineConfig

log = logging.getLogger("photosense.gui")

THUMB_MIN, THUMB_MAX = 96, 400


@dataclass
class UiPrefs:
    """Window preferences, kept in ``settings.config_path()`` (JSON, section "gui")."""

    thumb_size: int = 180
    auto_advance: bool = False
    sort: str = "name"
    descending: bool | None = None
    show_info: bool = True
    show_histogram: bool = True
    collapse_bursts: bool = False
    best_by: str = ""  # attribute or check deciding a burst's best; "" = the sort key
    burst_window_s: float = 3.0
    burst_threshold: float = 0.92
    window_geometry: str = ""  # QMainWindow.saveGeometry(), base64
    window_state: str = ""  # QMainWindow.saveState(): docks and toolbar, base64

    @classmethod
    def load(cls, path: Path | None = None) -> UiPrefs:
        path = path or settings.config_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8")).get("gui", {})
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable settings %s: %s", path, exc)
            return cls()
        known = {f.name for f in fields(cls)}
        prefs = cls(**{k: v for k, v in data.items() if k in known})
        prefs.thumb_size = max(THUMB_MIN, min(THUMB_MAX, int(prefs.thumb_size)))
        return prefs

    def save(self, path: Path | None = None) -> None:
        """Write atomically, keeping other sections of the file."""
        path = path or settings.config_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data["gui"] = asdict(self)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8", prefix=".settings-") as f:
            json.dump(data, f, indent=2)


@dataclass(frozen=True)
class SidecarSettings:
    """The library's XMP sidecar settings (``xmp_auto_write``, ``xmp_sidecar_style``,
    ``xmp_conflict``)."""

    auto_write: bool = False
    style: str = "ext"  # "ext": photo.jpg.xmp, "stem": photo.xmp
    conflict: str = "library"  # on import: "library" or "sidecar" wins

    @classmethod
    def read(cls, library) -> SidecarSettings:
        """Library thread."""
        from photosense.curation.xmp import conflict_policy, sidecar_style

        return cls(bool(library.get_setting("xmp_auto_write", False)), sidecar_style(library),
                   conflict_policy(library))

    def write(self, library) -> None:
        """Library thread."""
        library.set_setting("xmp_auto_write", self.auto_write)
        library.set_setting("xmp_sidecar_style", self.style)
        library.set_setting("xmp_conflict", self.conflict)


DEVICES = [("Automatic (GPU when available)", "auto"), ("CPU", "cpu"), ("NVIDIA GPU (cuda)", "cuda"),
           ("Apple GPU (mps)", "mps")]


class SettingsDialog(QDialog):
    def __init__(self, parent: QWidget | None, engine: EngineConfig, prefs: UiPrefs,
                 sidecars: SidecarSettings | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self._engine = engine
        self._prefs = prefs
        self._sidecars = sidecars or SidecarSettings()

        form = QFormLayout()
        self.device = QComboBox()
        for text, value in DEVICES:
            self.device.addItem(text, value)
        idx = self.device.findData(engine.device)
        self.device.setCurrentIndex(max(0, idx))
        form.addRow("Device", self.device)

        self.max_side = QSpinBox()
        self.max_side.setRange(224, 4096)
        self.max_side.setSingleStep(64)
        self.max_side.setSuffix(" px")
        self.max_side.setValue(engine.max_side)
        self.max_side.setToolTip("Photos are scored at most this large (longer side). "
                                 "Larger is slower and sees finer detail.")
        form.addRow("Scoring size", self.max_side)

        self.model = QLineEdit(engine.model)
        self.model.setPlaceholderText(DEFAULT_MODEL)
        form.addRow("Model", self.model)

        weights_row = QHBoxLayout()
        self.weights = QLineEdit(engine.weights or "")
        self.weights.setPlaceholderText("download the OpenAI weights on first use")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        weights_row.addWidget(self.weights)
        weights_row.addWidget(browse)
        form.addRow("Weights file", weights_row)
        note = QLabel("Leave empty to download the model's weights once, the first "
                      "time photos are scored, or choose a local weights file (.safetensors). "
                      "Changing the model re-scores the library.")
        note.setWordWrap(True)
        note.setStyleSheet("color: #9a9a9a;")
        form.addRow(note)

        self.thumb_size = QSpinBox()
        self.thumb_size.setRange(THUMB_MIN, THUMB_MAX)
        self.thumb_size.setSuffix(" px")
        self.thumb_size.setValue(prefs.thumb_size)
        form.addRow("Thumbnail size", self.thumb_size)
        self.auto_advance = QCheckBox("Move to the next photo after flagging or rating")
        self.auto_advance.setChecked(prefs.auto_advance)
        form.addRow("Culling", self.auto_advance)

        bursts = QGroupBox("Bursts")
        bform = QFormLayout(bursts)
        self.burst_window = QDoubleSpinBox()
        self.burst_window.setRange(0.0, 600.0)
        self.burst_window.setDecimals(1)
        self.burst_window.setSingleStep(0.5)
        self.burst_window.setSuffix(" s")
        self.burst_window.setValue(prefs.burst_window_s)
        self.burst_window.setToolTip("Photos taken at most this long after the previous one can "
                                     "belong to its burst")
        bform.addRow("Time between frames", self.burst_window)
        self.burst_threshold = QDoubleSpinBox()
        self.burst_threshold.setRange(0.5, 1.0)
        self.burst_threshold.setDecimals(2)
        self.burst_threshold.setSingleStep(0.01)
        self.burst_threshold.setValue(prefs.burst_threshold)
        self.burst_threshold.setToolTip("How alike two frames must look (cosine similarity of their "
                                        "image features; higher = only near-identical frames)")
        bform.addRow("Similarity", self.burst_threshold)

        xmp = QGroupBox("XMP sidecars")
        xform = QFormLayout(xmp)
        self.xmp_auto = QCheckBox("Write sidecars on every change")
        self.xmp_auto.setChecked(self._sidecars.auto_write)
        self.xmp_auto.setToolTip("Flags, ratings, labels and scores go to the photos' .xmp files at "
                                 "once, for Lightroom, darktable, digiKam…")
        xform.addRow(self.xmp_auto)
        self.xmp_style = QComboBox()
        self.xmp_style.addItem("photo.jpg.xmp (darktable, digiKam)", "ext")
        self.xmp_style.addItem("photo.xmp (Lightroom, Capture One)", "stem")
        self.xmp_style.setCurrentIndex(max(0, self.xmp_style.findData(self._sidecars.style)))
        xform.addRow("Sidecar names", self.xmp_style)
        self.xmp_conflict = QComboBox()
        self.xmp_conflict.addItem("The library wins", "library")
        self.xmp_conflict.addItem("The sidecar wins", "sidecar")
        self.xmp_conflict.setCurrentIndex(max(0, self.xmp_conflict.findData(self._sidecars.conflict)))
        self.xmp_conflict.setToolTip("When a scan finds a sidecar that disagrees with flags or ratings "
                                     "already set here")
        xform.addRow("On conflict", self.xmp_conflict)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(bursts)
        lay.addWidget(xmp)
        lay.addStretch(1)  # extra height goes below the groups, not into them
        lay.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model weights", "",
                                              "Weights (*.safetensors *.pt *.bin);;All files (*)")
        if path:
            self.weights.setText(path)

    def engine_config(self) -> EngineConfig:
        return replace(self._engine, device=self.device.currentData(), max_side=self.max_side.value(),
                       model=self.model.text().strip() or DEFAULT_MODEL,
                       weights=self.weights.text().strip() or None)

    def prefs(self) -> UiPrefs:
        return replace(self._prefs, thumb_size=self.thumb_size.value(),
                       auto_advance=self.auto_advance.isChecked(),
                       burst_window_s=self.burst_window.value(),
                       burst_threshold=self.burst_threshold.value())

    def sidecar_settings(self) -> SidecarSettings:
        return SidecarSettings(self.xmp_auto.isChecked(), self.xmp_style.currentData(),
                               self.xmp_conflict.currentData())
