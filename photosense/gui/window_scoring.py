"""Scoring, attribute rescoring, “my taste”, folder scans and the status bar's jobs and problems.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import (
    QTimer,
    Slot,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QMessageBox,
)

from photosense.errors import WeightsUnavailable
from photosense.gui.jobs import Job, JobContext
from photosense.gui.window_common import _photos, taste_summary
from photosense.library import (
    AttributeInfo,
)
from photosense.library.queries import BASIC_SORTS
from photosense.pipeline import Progress, ScoreReport, ScoringJob, format_duration
from photosense.scoring.clipiqa import ClipIQAEngine

log = logging.getLogger("photosense.gui")


class ScoringAndStatus:
    """Mixed into ``MainWindow``; see the module docstring."""

    def start_services(self) -> None:
        """Watch and scan the library's folders in the background, then score what is new.
        Each of the service's scans (the first full one, every watch batch) is a job with its
        own status-bar row, like the window's own jobs."""
        from photosense.service import ServiceEvents, WatchService

        self.bridge.scanned.connect(self._on_scanned)
        self.bridge.job.connect(self._on_service_job)
        self.bridge.error.connect(lambda message: self.report_error(message, kind="scan"))
        self.bridge.resolved.connect(self.problem_log.resolve)
        events = ServiceEvents(scanned=self.bridge.scanned.emit, error=self.bridge.error.emit,
                               resolved=self.bridge.resolved.emit, job=self.bridge.job.emit)
        self.service = WatchService(self.library, self.engine_config, events,
                                    debounce=self.watch_debounce, score=False)
        self.service.start()
        self.statusBar().showMessage("Looking for new and changed photos…", 5000)
        self.start_scoring()

    @Slot(object)
    def _on_service_job(self, core_job) -> None:
        """A job the watch service runs on its thread: listed in the status bar until it ends
        (its result arrives as ``scanned``, its error as ``error``)."""
        job = Job.adopt(core_job)
        self._track(job, core_job.name, cancellable=core_job.cancellable)
        job.progress.connect(self._scan_progressed)  # photos appear while it reads
        self.jobs.track(job)

    def _refresh_during_scan(self) -> None:
        """While a folder is being read: show the photos read so far (throttled)."""
        if self.model.busy or not self.db.idle:
            self._scan_refresh_timer.start()
            return
        self.reload_library_info(requery=True)

    def _scan_progressed(self, _value=None) -> None:
        """A scan read more photos: they appear in a moment (not only when it ends), and
        scoring starts on them (a scoring run follows the scan until it ends)."""
        if not self._scan_refresh_timer.isActive():
            self._scan_refresh_timer.start()
        # Not after a failed run (no weights, say): the scan's end tries again, once.
        if (self._score_job is None and not getattr(self, "_scoring_failed", False)
                and not getattr(self, "_shut_down", False)):
            self.start_scoring()

    @Slot(object)
    def _on_scanned(self, report) -> None:
        changed = report.added or report.updated or report.moved or report.missing or report.restored
        for path, error in report.errors[:20]:
            self.report_error(f"{path}: {error}", quiet=True)
        if changed:
            self.statusBar().showMessage(f"Scan: {report.summary()}", 8000)
            self._bursts_changed()
            self.reload_library_info(requery=True)
        if report.added or report.updated or report.moved:
            self.start_scoring()

    def _track(self, job: Job, label: str, cancellable: bool = True, pausable: bool = False) -> None:
        """List a job in the status bar (with Cancel / Pause where they apply) until it ends;
        call before starting it. Every tracked job has its own row."""
        job.label = label
        job.core.cancellable = cancellable
        job.core.pausable = pausable
        job.shown = True

    @Slot(object)
    def _on_scoring_progress(self, value) -> None:
        if isinstance(value, Progress) and value.stage == "encoding":
            if self._order_depends_on_scores():
                # Newly scored photos move to their place: re-sort, at most every few
                # seconds, keeping the current photo where it is on screen.
                if not self._resort_timer.isActive():
                    self._resort_timer.start()
                return
            now = time.monotonic()
            if now - self._last_row_refresh > 1.0:
                self._last_row_refresh = now
                self.model.refresh_rows()  # show new scores in place

    def _order_depends_on_scores(self) -> bool:
        q = self.model.query
        return self.model.arrangement.ranking is None and (q.sort not in BASIC_SORTS or bool(q.ranges))

    def _resort_while_scoring(self) -> None:
        """The debounced re-sort as scores arrive: same current photo, same place on screen."""
        if self.model.busy:
            self._resort_timer.start()  # a query or page read is on its way: a moment later
            return
        self.requery(keep_scroll=True)

    def score_now(self) -> Job | None:
        """Scores ▸ Score now: score what has no scores; says so when nothing needs it."""
        self._score_requested = True
        return self.start_scoring()

    def start_scoring(self) -> Job | None:
        """Score photos that lack scores for the configured model (one job at a time)."""
        if self._score_job is not None:
            self._score_again = True
            return self._score_job
        self._score_again = False
        library, config, engine = self.library, self.engine_config, self.engine

        def work(ctx: JobContext):
            from photosense.ingest import activity

            if not activity.for_library(library).active and not any(f.photo_count for f in library.folders()):
                return ScoreReport()  # an empty library: the model is not even loaded
            return ScoringJob(library, config, engine=engine).run(ctx.progress, ctx.cancel)

        job = Job(work, "scoring", kind="scoring")
        job.progress.connect(self._on_scoring_progress)
        job.result.connect(self._on_scored)
        job.error.connect(lambda message, job=job: self._on_scoring_error(job, message))
        job.finished.connect(self._on_scoring_finished)
        self._score_job = job
        self._track(job, "Scoring", pausable=True)
        self.jobs.start(job, "model")
        return job

    @Slot(object)
    def _on_scored(self, report) -> None:
        self._scoring_failed = False
        self.banner.hide()
        self.problem_log.resolve("model")  # the weights load now
        requested, self._score_requested = getattr(self, "_score_requested", False), False
        if requested and not (report.cancelled or report.encoded or report.rescored_attributes or report.failed):
            self.statusBar().showMessage("Everything is already scored", 8000)
        elif report.cancelled:
            self.statusBar().showMessage(f"Scoring cancelled after {_photos(report.encoded)}", 6000)
        elif report.encoded or report.rescored_attributes:
            failed = f", {report.failed} unreadable" if report.failed else ""
            self.statusBar().showMessage(
                f"Scored {_photos(report.encoded)} in {format_duration(report.seconds)}{failed}", 8000)
        if report.failed:
            self.report_error(f"{_photos(report.failed)} could not be read for scoring "
                              "(see the files marked with “!”)", quiet=True)
        if report.encoded:
            self._bursts_changed()  # new features: bursts may have grown
        if report.encoded or report.rescored_attributes:
            self._after_new_scores()

    def _after_new_scores(self) -> None:
        self._resort_timer.stop()
        if not self._order_depends_on_scores():
            self.model.refresh_rows()  # order unchanged: update in place
            self.update_histogram()
        else:
            self.requery(keep_scroll=True)  # the order depends on the scores; selection is kept

    def _on_scoring_error(self, job: Job, message: str) -> None:
        self._scoring_failed = True
        if isinstance(getattr(job, "exception", None), WeightsUnavailable):
            self.banner.show_problem(message)
            self.report_error(f"Scoring is off: {message}", quiet=True, kind="model")
        else:
            self.report_error(f"Scoring failed: {message}", kind="scoring")

    @Slot()
    def _on_scoring_finished(self) -> None:
        self._score_job = None
        if self._score_again and not getattr(self, "_shut_down", False):
            QTimer.singleShot(0, self, self.start_scoring)  # not after the window is gone

    def _retry_scoring(self) -> None:
        self.banner.hide()
        self.engine = ClipIQAEngine(self.engine_config)
        self.start_scoring()

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if path:
            self.add_folder(path)

    def add_folder(self, path: str) -> Job:
        """Add a folder; it is scanned in the background and its photos appear as they come."""
        library, watcher = self.library, self.service.watcher if self.service is not None else None

        def work(ctx: JobContext):
            from photosense.ingest.scan import Scanner

            folder = library.add_folder(path)
            if watcher is not None:
                watcher.add(folder.path)  # watched from now on; this job reads what is there
            return Scanner(library, processes=True).scan_folder(folder, ctx.scan_progress, ctx.cancel)

        return self.run_scan_job(work, f"Scanning {path}")

    def rescan(self) -> None:
        if self.service is not None and self.service.watcher is not None:
            for f in self.folders or []:
                self.service.watcher.pending.touch(f.path)
            self.statusBar().showMessage("Looking for new and changed photos…", 5000)
            return
        library = self.library

        def work(ctx: JobContext):
            from photosense.ingest.scan import Scanner

            return Scanner(library, processes=True).scan_all(ctx.scan_progress, ctx.cancel)

        self.run_scan_job(work, "Scanning folders")

    def run_scan_job(self, work, label: str) -> Job:
        job = Job(work, "scan", kind="scan")
        # Photos appear as they are read, not only when the whole folder is done.
        job.progress.connect(self._scan_progressed)
        job.result.connect(self._on_scanned)
        job.error.connect(self.report_error)
        job.finished.connect(lambda: self.reload_library_info(requery=True))
        self._track(job, label)
        self.jobs.start(job, "background")
        return job

    def remove_folder(self, folder_id: int) -> None:
        folder = next((f for f in self.folders or [] if f.id == folder_id), None)
        if folder is None:
            return
        answer = QMessageBox.question(
            self, "Remove folder",
            f"Remove {folder.path} from the library?\n\nIts {folder.photo_count} photos, their "
            "scores, flags and ratings are forgotten. The files themselves are not touched.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.db.submit(lambda: self.library.remove_folder(folder_id),
                       lambda _r: self.reload_library_info(requery=True), self.report_error)

    def add_attribute(self, spec, direction: str | None = None) -> None:
        """Add an attribute; its scores for the whole library come from stored features.
        ``direction``: which way is better (photosense.library.direction; default higher)."""
        def work():
            info = self.library.add_attribute(spec)
            if direction is not None:
                info = self.library.set_attribute_direction(info.name, direction)
            return info

        self.db.submit(work, self._rescore_attribute, self.report_error)

    def edit_attribute(self, name: str, spec, direction: str | None = None) -> None:
        """Change an attribute's name or prompts, and (``direction``) which way is better:
        a new direction alone keeps the scores and re-sorts."""
        library = self.library

        def work():
            before = library.attribute(name)
            info = library.update_attribute(name, spec)
            if direction is not None:
                info = library.set_attribute_direction(info.name, direction)
            return info, before.spec.prompt_texts() != info.spec.prompt_texts()

        def done(result) -> None:
            info, rescore = result
            if rescore:
                self._rescore_attribute(info)
            else:
                self.reload_library_info(requery=True)

        self.db.submit(work, done, self.report_error)

    def _rescore_attribute(self, attr: AttributeInfo) -> Job:
        from photosense.pipeline import rescore_attributes

        self.reload_library_info()
        self.statusBar().showMessage(f"Scoring “{attr.name}” for the whole library…", 5000)
        library, engine, config = self.library, self.engine, self.engine_config

        def work(ctx: JobContext):
            if library.active_model() is None:  # nothing scored yet: score everything
                return ScoringJob(library, config, engine=engine).run(ctx.progress, ctx.cancel)
            ctx.progress(Progress("rescoring", 0, 1, 0.0, None))
            n = rescore_attributes(library, [library.attribute(attr.name)], engine)
            return n

        job = Job(work, f"rescore {attr.name}", kind="rescore")
        job.result.connect(lambda _r: (self.statusBar().showMessage(f"“{attr.name}” scored", 5000),
                                       self._after_new_scores()))
        job.error.connect(lambda message, job=job: self._on_scoring_error(job, message))
        self._track(job, f"Scoring “{attr.name}”")
        self.jobs.start(job, "model", interactive=True)  # between two scoring batches
        return job

    def remove_attribute(self, name: str) -> None:
        answer = QMessageBox.question(self, "Remove attribute",
                                      f"Remove the attribute “{name}” and its scores?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.db.submit(lambda: self.library.remove_attribute(name),
                       lambda _r: self.reload_library_info(requery=self.model.query.sort == name
                                                           or name in self.model.query.ranges),
                       self.report_error)

    def refit_taste(self, force: bool = True) -> Job | None:
        """Fit "my taste" again (``force``), or only when the flags changed since the last fit
        (the automatic refit, a few seconds after the last flag). Background pool."""
        if self._taste_job is not None:
            self._taste_again = True
            return self._taste_job
        self._taste_again = False
        library = self.library

        def work(ctx: JobContext):
            from photosense.scoring import taste

            message = ""
            if force:
                try:
                    taste.fit(library)
                    changed = True
                except taste.NotEnoughFlags as exc:
                    changed, message = True, str(exc)  # a stale attribute may have been removed
            else:
                changed = taste.maybe_refit(library)
            return changed, taste.taste_status(library), message

        job = Job(work, "taste")
        job.setProperty("force", force)
        job.result.connect(lambda result, job=job: self._on_taste_fitted(job, result))
        job.error.connect(lambda msg: self.report_error(f"“my taste” could not be fitted: {msg}"))
        job.finished.connect(self._on_taste_finished)
        self._taste_job = job
        if force:
            self.sidebar.set_taste_status("Learning your taste…", "")
        self.jobs.start(job, "background")
        return job

    def _on_taste_fitted(self, job: Job, result) -> None:
        changed, status, message = result
        self._show_taste_status(status)
        if message:
            self.statusBar().showMessage(f"my taste: {message}", 8000)
        elif job.property("force") or changed:
            self.statusBar().showMessage(taste_summary(status), 6000)
        if changed:  # new scores (or the attribute came or went): refresh in place
            from photosense.scoring.taste import TASTE_ATTRIBUTE

            q = self.model.query
            self.reload_library_info(requery=q.sort == TASTE_ATTRIBUTE or TASTE_ATTRIBUTE in q.ranges)
            self.model.refresh_rows()

    @Slot()
    def _on_taste_finished(self) -> None:
        self._taste_job = None
        if self._taste_again:
            self._taste_timer.start()

    def _show_taste_status(self, status, flagged: tuple[int, int] | None = None) -> None:
        self.taste_status = status
        if flagged is not None:
            self._flag_counts = flagged
        self.sidebar.set_taste_status(taste_summary(status, getattr(self, "_flag_counts", None)),
                                      status.describe())

    def refresh_flag_counts(self) -> None:
        """Re-read where "my taste" stands and the library's picks and rejects (library
        thread, a moment after the last flag), so its line never lags behind the flags."""
        if not self._taste_status_timer.isActive():
            self._taste_status_timer.start()

    def _read_taste_status(self) -> None:
        library = self.library

        def read():
            from photosense.library import PhotoQuery
            from photosense.scoring.taste import taste_status

            return taste_status(library), (len(library.query_ids(PhotoQuery(flag="pick"))),
                                           len(library.query_ids(PhotoQuery(flag="reject"))))

        self.db.submit(read, lambda result: self._show_taste_status(*result))

    def report_error(self, message: str, quiet: bool = False, kind: str = "",
                     subject: str | None = None) -> None:
        """Show a problem in the status bar and keep it in the Problems list (once)."""
        log.warning("%s", message)
        self.problem_log.report(message, kind, subject)
        if not quiet:
            self.statusBar().showMessage(message, 10000)

    @property
    def problems(self) -> list[str]:
        """The problems now listed, oldest first."""
        return self.problem_log.messages()

    def show_problems(self):
        return self.problems_button.open_dialog()
