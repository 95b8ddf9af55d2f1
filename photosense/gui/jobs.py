"""The Qt side of background work: one thin adapter around ``photosense.jobs``.

``Job`` wraps a core ``photosense.jobs.Job`` (a function ``fn(ctx) -> result``; ``ctx`` is a
``JobControl``: progress, cancel event, pause, checkpoint) and turns its callbacks into the
same signals for every job: started, progress(object), result(object), error(str), finished.
They are emitted on the worker thread from a QObject that lives in the GUI thread, so Qt
delivers them queued: slots always run in the GUI thread.

``JobRunner`` owns the threads: ``model`` is the ``ModelScheduler`` (the one CLIP engine;
interactive requests run between two batches of a scoring run), ``background`` a small pool.
Every started job is announced (``added``), so the status bar shows each running job.
``shutdown`` cancels them all and waits at most its timeout.

``SerialExecutor`` runs small functions (page reads, culling writes) one at a time, in
submission order, on one thread, and calls back in the GUI thread. One executor for reads and
writes keeps them ordered: a read submitted after a write sees it.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from photosense import jobs as core
from photosense.errors import PhotosenseError
from photosense.jobs import JobCancelled, JobControl, describe_error  # noqa: F401 - re-exported

log = logging.getLogger("photosense.gui")

JobContext = JobControl  # what a job's function gets


class Job(QObject):
    """One unit of background work with the standard signals (see the module docstring)."""

    started = Signal()
    progress = Signal(object)
    result = Signal(object)
    error = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[[JobControl], Any] | None, name: str, parent: QObject | None = None, *,
                 kind: str = "", label: str = "", cancellable: bool = True, pausable: bool = False,
                 core_job: core.Job | None = None):
        super().__init__(parent)
        self.core = core_job if core_job is not None else \
            core.Job(fn, name, kind or name, cancellable=cancellable, pausable=pausable)
        self.label = label or self.core.name  # what the status bar says
        self.shown = False  # whether the status bar lists it
        self._finish_lock = threading.Lock()
        self._finish_sent = False
        self.signalled = False  # True once finished (and result or error) has been emitted
        self.core.on_started.append(lambda _j: self.started.emit())
        self.core.on_progress.append(lambda _j, value: self.progress.emit(value))
        self.core.on_finished.append(self._finished)

    @classmethod
    def adopt(cls, job: core.Job, label: str = "") -> Job:
        """The Qt side of a core job that another thread runs (the folder watcher's scans):
        call in the GUI thread, even after the job started or finished — its ``finished``
        (and result or error) is still emitted, once."""
        wrapper = cls(None, job.name, label=label, core_job=job)
        if job.finished:  # it ended before the listeners were attached: tell the slots soon
            QTimer.singleShot(0, wrapper, lambda: wrapper._finished(job))
        return wrapper

    name = property(lambda self: self.core.name)
    kind = property(lambda self: self.core.kind)
    cancellable = property(lambda self: self.core.cancellable)
    pausable = property(lambda self: self.core.pausable)
    exception = property(lambda self: self.core.exception)  # set before ``error`` is emitted
    done = property(lambda self: self.core.finished)
    running = property(lambda self: self.core.state == core.RUNNING)
    paused = property(lambda self: self.core.paused)
    last_progress = property(lambda self: self.core.progress)

    def cancel(self) -> None:
        self.core.cancel()

    def pause(self) -> None:
        self.core.pause()

    def resume(self) -> None:
        self.core.resume()

    def _finished(self, job: core.Job) -> None:
        with self._finish_lock:
            if self._finish_sent:
                return
            self._finish_sent = True
        if job.state == core.FAILED:
            self.error.emit(job.error or "failed")
        elif job.state == core.DONE:
            self.result.emit(job.result)
        self.finished.emit()
        self.signalled = True


class LatestRequest:
    """"Replace the previous request, drop stale results", written once: a new search, a
    histogram of another sort key, bursts found again. ``start`` cancels the request before
    it; ``slot`` wraps a result/error handler so it runs (as ``fn(job, value)``) only for the
    current request, which is then done."""

    def __init__(self) -> None:
        self.job: Job | None = None

    def start(self, job: Job) -> Job:
        self.cancel()
        self.job = job
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None

    def slot(self, job: Job, fn: Callable[[Job, Any], None]) -> Callable[[Any], None]:
        def deliver(value) -> None:
            if job is self.job:
                self.job = None
                fn(job, value)
        return deliver

    @property
    def pending(self) -> bool:
        return self.job is not None


class JobRunner(QObject):
    """The window's job threads: ``model`` (one thread, the CLIP engine, scheduled) and
    ``background`` (a small pool). ``jobs`` are those started and not finished."""

    added = Signal(object)  # a Job just started (queued)
    removed = Signal(object)  # a Job finished

    def __init__(self, parent: QObject | None = None, background_threads: int = 2):
        super().__init__(parent)
        self.model = core.ModelScheduler("photosense-model")
        self.background = core.JobThread("photosense-bg", background_threads)
        self.jobs: list[Job] = []

    def track(self, job: Job) -> Job:
        """List a job that runs elsewhere (``Job.adopt``: the watcher's scans) with the others:
        in ``jobs`` and announced, until it finishes; cancelled with them at shutdown."""
        job.setParent(self)
        self.jobs.append(job)
        job.finished.connect(self._forget)
        self.added.emit(job)
        if job.core.finished:  # finished (on its thread) before ``_forget`` was connected
            QTimer.singleShot(0, self, lambda: self._drop(job))
        return job

    def start(self, job: Job, pool: str = "background", *, interactive: bool = False) -> Job:
        self.track(job)
        if pool == "model":
            self.model.submit(job.core, interactive=interactive)
        else:
            self.background.submit(job.core)
        return job

    @Slot()
    def _forget(self) -> None:
        self._drop(self.sender())

    def _drop(self, job: Job) -> None:
        if job in self.jobs:
            self.jobs.remove(job)
            self.removed.emit(job)

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Cancel every job and wait at most ``timeout`` seconds for the threads; True when
        they all ended (a job still busy past it is abandoned: its thread is a daemon)."""
        deadline = time.monotonic() + timeout
        for job in list(self.jobs):
            job.cancel()
        self.model.close()
        self.background.close()
        stopped = self.model.join(deadline) & self.background.join(deadline)
        if not stopped:
            log.warning("background jobs still running after %.1f s: %s", timeout,
                        ", ".join(j.name for j in self.jobs if not j.done) or "?")
        return stopped


class SerialExecutor(QObject):
    """Runs functions one at a time on one thread; results come back in the GUI thread."""

    _delivered = Signal(object)
    error = Signal(str)  # failures without their own on_error (shown in the status bar)

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"photosense-{name}")
        self._pending = 0
        self._lock = threading.Lock()
        self._delivered.connect(self._deliver)
        self._closed = False

    def submit(self, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[str], None] | None = None) -> Future | None:
        if self._closed:
            return None
        with self._lock:
            self._pending += 1
        return self._pool.submit(self._call, fn, on_done, on_error)

    def _call(self, fn, on_done, on_error) -> None:
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - delivered to the GUI thread
            if not isinstance(exc, PhotosenseError):
                log.error("%s task failed:\n%s", self.name, traceback.format_exc())
            self._delivered.emit((None, on_error, describe_error(exc), False))
        else:
            self._delivered.emit((on_done, None, value, True))

    @Slot(object)
    def _deliver(self, packet) -> None:
        on_done, on_error, value, ok = packet
        with self._lock:
            self._pending -= 1
        if ok:
            if on_done is not None:
                on_done(value)
        elif on_error is not None:
            on_error(value)
        else:
            self.error.emit(value)

    @property
    def idle(self) -> bool:
        """No task queued, running, or waiting for its callback."""
        with self._lock:
            return self._pending == 0

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Stop taking work; wait at most ``timeout`` for the task in flight (a library write
        is one short transaction: SQLite rolls back one that never committed)."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        threads = list(getattr(self._pool, "_threads", ()))
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)
