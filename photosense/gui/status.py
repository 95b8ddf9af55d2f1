"""The status bar's job list and the Problems button and dialog.

``JobsBar`` shows every running job of a ``JobRunner`` on its own row: its label, a progress
bar, and Pause / Cancel where the job has them, so starting a search or an export never hides
a scoring run's progress or controls. ``ProblemsButton`` counts the window's ``ProblemLog``
and opens a closable dialog whose text can be copied.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from photosense.gui.jobs import Job, JobRunner
from photosense.jobs import Progress
from photosense.problems import ProblemLog

STAGES = {"loading": "Loading the model…", "encoding": "Scoring", "rescoring": "Scoring new attributes",
          "done": "Scored"}


def progress_text(job: Job, value) -> tuple[str, int, int, str]:
    """(label, done, total, bar text) for a job's progress value; total 0: busy."""
    if isinstance(value, Progress):
        stage = STAGES.get(value.stage, value.stage) if job.kind == "scoring" else job.label
        if value.total:
            detail = value.text("scored" if job.kind == "scoring" else "done")
            return (f"{stage}: {detail}" if value.stage == "encoding" else stage,
                    value.done, value.total, f"{value.done} / {value.total}")
        return stage, 0, 0, ""
    if isinstance(value, tuple) and len(value) in (2, 3):
        done, total = value[:2]
        label = f"{job.label}: {value[2]}" if len(value) == 3 and value[2] else job.label
        return label, done, max(1, total), f"{done} / {total}"
    return job.label, 0, 0, ""


class JobRow(QWidget):
    """One running job: label, progress, Pause (when it pauses), Cancel (when it cancels)."""

    def __init__(self, job: Job, parent: QWidget | None = None):
        super().__init__(parent)
        self.job = job
        # Children get their parent before any setVisible: a parentless widget shown would
        # become a window of its own (and take the focus from the main window).
        self.label = QLabel(job.label, self)
        self.bar = QProgressBar(self)
        self.bar.setFixedWidth(160)
        self.bar.setRange(0, 0)
        self.bar.setTextVisible(True)
        self.pause_button = QToolButton(self)
        self.pause_button.setText("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button = QToolButton(self)
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 0, 0, 0)
        lay.setSpacing(4)
        for w in (self.label, self.bar, self.pause_button, self.cancel_button):
            lay.addWidget(w)
        self.pause_button.setVisible(job.pausable)
        self.cancel_button.setVisible(job.cancellable)
        job.progress.connect(self.show_progress)
        if job.last_progress is not None:
            self.show_progress(job.last_progress)

    @Slot(object)
    def show_progress(self, value) -> None:
        text, done, total, fmt = progress_text(self.job, value)
        if not self.job.core.cancelled:
            self.label.setText(text)
        self.bar.setRange(0, total)
        if total:
            self.bar.setValue(min(done, total))
            self.bar.setFormat(fmt)

    def toggle_pause(self) -> None:
        if self.job.paused:
            self.job.resume()
            self.pause_button.setText("Pause")
        else:
            self.job.pause()
            self.pause_button.setText("Resume")

    def cancel(self) -> None:
        self.job.cancel()
        self.label.setText(f"{self.job.label}: cancelling…")
        self.pause_button.hide()


class JobsBar(QWidget):
    """Every shown job of ``runner``, one row each, newest last."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.runner = runner
        self.rows: dict[Job, JobRow] = {}
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(8)
        runner.added.connect(self._on_added)
        runner.removed.connect(self._on_removed)
        self.hide()

    @Slot(object)
    def _on_added(self, job: Job) -> None:
        if not job.shown or job in self.rows:
            return
        row = JobRow(job, self)
        self.rows[job] = row
        self._layout.addWidget(row)
        self.show()

    @Slot(object)
    def _on_removed(self, job: Job) -> None:
        row = self.rows.pop(job, None)
        if row is not None:
            self._layout.removeWidget(row)
            row.deleteLater()
        self.setVisible(bool(self.rows))

    def row(self, job: Job | None) -> JobRow | None:
        return self.rows.get(job) if job is not None else None

    def shown_jobs(self) -> list[Job]:
        return list(self.rows)


class _ProblemsRelay(QObject):
    changed = Signal()


class ProblemsButton(QToolButton):
    """"⚠ 2 problems" while there are any; opens the Problems dialog."""

    def __init__(self, problems: ProblemLog, parent: QWidget | None = None):
        super().__init__(parent)
        self.problems = problems
        self.dialog: ProblemsDialog | None = None
        self.setAutoRaise(True)
        self.setStyleSheet("color: #ff8a7a;")
        self._relay = _ProblemsRelay(self)
        self._relay.changed.connect(self.refresh, Qt.ConnectionType.QueuedConnection)
        problems.listeners.append(self._relay.changed.emit)  # any thread: queued to the GUI
        self.clicked.connect(self.open_dialog)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        n = len(self.problems)
        self.setText(f"⚠ {n} problem{'s' if n != 1 else ''}")
        self.setVisible(n > 0)
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.refresh()

    def open_dialog(self) -> ProblemsDialog:
        if self.dialog is None:
            self.dialog = ProblemsDialog(self.problems, self.window())
        self.dialog.refresh()
        self.dialog.open()
        return self.dialog


class ProblemsDialog(QDialog):
    """The problems, one a line with the time last seen; Copy, Clear and Close."""

    def __init__(self, problems: ProblemLog, parent: QWidget | None = None):
        super().__init__(parent)
        self.problems = problems
        self.setWindowTitle("Problems")
        self.resize(720, 360)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy")
        self.clear_button = QPushButton("Clear")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.clear_button, QDialogButtonBox.ButtonRole.ResetRole)
        buttons.rejected.connect(self.reject)
        self.close_button = buttons.button(QDialogButtonBox.StandardButton.Close)
        self.copy_button.clicked.connect(self.copy)
        self.clear_button.clicked.connect(lambda: (self.problems.clear(), self.refresh()))
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(buttons)

    def refresh(self) -> None:
        self.text.setPlainText(self.problems.text() or "No problems.")

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.problems.text())
