"""The long-running "keep the library current" service behind ``photosense watch`` (and the
GUI): watch folders, scan what changes, score what is new.

Scanning and checks never wait for the model: the model loads on its own thread, and when its
weights are unavailable the service keeps scanning and reports the problem once.

The initial scan, every watcher batch and every scoring run is a ``photosense.jobs.Job``: an
error (expected or not) ends that job, reaches ``ServiceEvents.error`` (or ``model_error``)
with its traceback logged, and the next batch or run still happens: the threads never die.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from photosense.ingest.scan import Scanner, ScanReport
from photosense.ingest.watch import FolderWatcher
from photosense.jobs import Job, JobControl
from photosense.library import Library
from photosense.pipeline import Progress, ScoreReport, ScoringJob
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig

log = logging.getLogger("photosense.service")


@dataclass
class ServiceEvents:
    """Callbacks (called from worker threads); all optional."""

    scanned: Callable[[ScanReport], None] | None = None
    scored: Callable[[ScoreReport], None] | None = None
    progress: Callable[[Progress], None] | None = None
    model_error: Callable[[str], None] | None = None
    error: Callable[[str], None] | None = None  # anything else that went wrong in a thread
    job: Callable[[Job], None] | None = None  # each job, before it runs (to show its progress)
    resolved: Callable[[str], None] | None = None  # a kind of problem ("scan", "model") is gone


class WatchService:
    def __init__(self, library: Library, config: EngineConfig, events: ServiceEvents | None = None,
                 debounce: float = 2.0, score: bool = True, engine: ClipIQAEngine | None = None):
        self.library = library
        self.config = config
        self.events = events or ServiceEvents()
        self.debounce = debounce
        self.score_enabled = score
        self.engine = engine or ClipIQAEngine(config)
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self.model_ready = threading.Event()
        self.model_failed: str | None = None
        self.scanner = Scanner(library, processes=True)
        self.watcher: FolderWatcher | None = None
        self._threads: list[threading.Thread] = []
        self.current: Job | None = None  # the job the watch thread runs now (cancelled on stop)

    def start(self) -> None:
        """Watch every library folder, then scan them all and score in the background."""
        self.watcher = FolderWatcher([f.path for f in self.library.folders()], self.debounce)
        self.watcher.start()  # first, so nothing changed during the initial scan is lost
        self._spawn(self._scan_loop, "photosense-watch")
        if self.score_enabled:
            self._spawn(self._score_loop, "photosense-score")

    def _spawn(self, target, name) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop watching, scanning and scoring; wait at most ``timeout`` for the threads (a
        daemon still busy past it is abandoned). True when every thread ended."""
        deadline = time.monotonic() + timeout
        self.stop_event.set()
        if self.current is not None:
            self.current.cancel()
        self._wake.set()
        if self.watcher is not None:
            self.watcher.stop()
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def add_folder(self, path: str) -> None:
        folder = self.library.add_folder(path)
        if self.watcher is not None:
            self.watcher.add(folder.path)
            self.watcher.pending.touch(folder.path)  # scanned by the watch thread

    def _run(self, job: Job) -> Job:
        """Run a job on this thread; its error goes to the events (it never escapes)."""
        if self.events.job:
            self.events.job(job)
        self.current = job
        if self.stop_event.is_set():
            job.cancel()
        job.run()
        if job.error is not None:
            what = {"scan": "scan failed", "scoring": "scoring failed"}.get(job.kind, job.name)
            if self.events.error:
                self.events.error(f"{what}: {job.error}")
        elif job.kind == "scan" and self.events.resolved:
            self.events.resolved("scan")
        return job

    def _scan_loop(self) -> None:
        def scan(ctl: JobControl):
            def progress(*args) -> None:
                self._wake.set()  # scoring follows the scan as it writes (pipeline.ScoringJob)
                ctl.scan_progress(*args)

            return self.scanner.scan_all(progress, ctl.cancel)

        job = self._run(Job(scan, "Scanning folders", "scan"))
        if job.error is None and job.result is not None:
            self._emit_scan(job.result)
        self._wake.set()
        assert self.watcher is not None
        self.watcher.run(self._on_paths, self.stop_event, interval=min(0.5, self.debounce / 2))

    def _on_paths(self, paths: list[str]) -> None:
        job = self._run(Job(lambda ctl: self.scanner.scan_paths(paths),
                            f"Checking {len(paths)} changed path{'s' if len(paths) != 1 else ''}", "scan",
                            cancellable=False))
        if job.error is not None or job.result is None:
            return
        report = job.result
        self._emit_scan(report)
        if report.added or report.updated or report.moved:
            self._wake.set()

    def _emit_scan(self, report: ScanReport) -> None:
        if self.events.scanned:
            self.events.scanned(report)

    def _score_loop(self) -> None:
        scoring = ScoringJob(self.library, self.config, engine=self.engine)
        self._prepare(scoring)  # while the first scan runs
        while not self.stop_event.is_set():
            self._wake.wait()
            self._wake.clear()
            if self.stop_event.is_set():
                break
            if not self.model_ready.is_set() and not self._prepare(scoring):
                continue  # tried again when new photos arrive

            def work(ctl: JobControl):
                return scoring.run(ctl.progress, self.stop_event, ctl.checkpoint)

            job = Job(work, "Scoring", "scoring", pausable=True)
            if self.events.progress:
                job.on_progress.append(lambda _job, p: self.events.progress(p))
            self._run(job)
            if job.error is None and self.events.scored:
                self.events.scored(job.result)

    def _prepare(self, scoring: ScoringJob) -> bool:
        """Load the model; a failure is reported once per message and retried later."""
        job = Job(lambda ctl: scoring.prepare(), "Loading the model", "model", cancellable=False)
        job.run()
        if job.error is None:
            self.model_failed = None
            self.model_ready.set()
            if self.events.resolved:
                self.events.resolved("model")
            return True
        if job.error != self.model_failed:
            self.model_failed = job.error
            if self.events.model_error:
                self.events.model_error(job.error)
        return False
