"""The long-running "keep the library current" service behind ``photosense watch`` (and the
GUI): watch folders, scan what changes, score what is new.

Scanning and checks never wait for the model: the model loads on its own thread, and when its
weights are unavailable the service keeps scanning and reports the problem once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from photosense.errors import PhotosenseError
from photosense.ingest.scan import ScanReport, Scanner
from photosense.ingest.watch import FolderWatcher
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
        self.scanner = Scanner(library)
        self.watcher: FolderWatcher | None = None
        self._threads: list[threading.Thread] = []

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

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()
        if self.watcher is not None:
            self.watcher.stop()
        for t in self._threads:
            t.join(timeout=30)

    def add_folder(self, path: str) -> None:
        folder = self.library.add_folder(path)
        if self.watcher is not None:
            self.watcher.add(folder.path)
            self.watcher.pending.touch(folder.path)  # scanned by the watch thread

    def _report_error(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, PhotosenseError):
            log.error("%s: %s", what, exc)
        else:
            log.exception("%s", what)
        if self.events.error:
            self.events.error(f"{what}: {exc}")

    def _scan_loop(self) -> None:
        try:
            self._emit_scan(self.scanner.scan_all(cancel=self.stop_event))
        except Exception as exc:  # reported, and the watcher keeps going
            self._report_error("scan failed", exc)
        self._wake.set()
        assert self.watcher is not None
        self.watcher.run(self._on_paths, self.stop_event, interval=min(0.5, self.debounce / 2))

    def _on_paths(self, paths: list[str]) -> None:
        try:
            report = self.scanner.scan_paths(paths)
        except Exception as exc:
            self._report_error("scan failed", exc)
            return
        self._emit_scan(report)
        if report.added or report.updated or report.moved:
            self._wake.set()

    def _emit_scan(self, report: ScanReport) -> None:
        if self.events.scanned:
            self.events.scanned(report)

    def _score_loop(self) -> None:
        job = ScoringJob(self.library, self.config, engine=self.engine)
        try:
            job.prepare()
        except PhotosenseError as exc:
            self.model_failed = str(exc)
            log.error("%s", exc)
            if self.events.model_error:
                self.events.model_error(str(exc))
            return
        self.model_ready.set()
        while not self.stop_event.is_set():
            self._wake.wait()
            self._wake.clear()
            if self.stop_event.is_set():
                break
            try:
                report = job.run(self.events.progress, self.stop_event)
            except Exception as exc:
                self._report_error("scoring failed", exc)
                continue
            if self.events.scored:
                self.events.scored(report)
