"""The first-run view: an empty library explains itself and offers to add a folder."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class WelcomeView(QWidget):
    addFolderRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        title = QLabel("Welcome to photosense")
        f = title.font()
        f.setPointSizeF(f.pointSizeF() * 2.0)
        f.setBold(True)
        title.setFont(f)
        text = QLabel(
            "Add a folder of photos to start. photosense indexes it (your files are never "
            "changed), checks sharpness, exposure and noise right away, and scores every photo "
            "for quality and look in the background.\n\n"
            "Then sort by any attribute, flag picks with P and rejects with X, and export the best."
        )
        text.setWordWrap(True)
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # 380..560 px wide: it must not hold a narrow window (a laptop at 175 % scaling is
        # ~1100 px) wider than the screen. A word-wrapped label under an alignment gets its
        # one-line height: give it the height it needs at its narrowest.
        text.setMinimumWidth(380)
        text.setMaximumWidth(560)
        text.setMinimumHeight(text.heightForWidth(380) + 4)
        text.setStyleSheet("color: #b8b8b8;")
        self.add_button = QPushButton("Add folder…")
        self.add_button.setObjectName("welcomeAddFolder")
        self.add_button.setMinimumHeight(36)
        self.add_button.setMinimumWidth(180)
        self.add_button.setDefault(True)
        self.add_button.clicked.connect(self.addFolderRequested)
        lay = QVBoxLayout(self)
        lay.addStretch(2)
        lay.addWidget(title, alignment=Qt.AlignmentFlag.AlignHCenter)
        lay.addSpacing(12)
        lay.addWidget(text, alignment=Qt.AlignmentFlag.AlignHCenter)
        lay.addSpacing(20)
        lay.addWidget(self.add_button, alignment=Qt.AlignmentFlag.AlignHCenter)
        lay.addStretch(3)
