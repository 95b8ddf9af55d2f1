"""Background work for the window: one job contract, and a serial executor for library I/O.

``Job`` wraps a function ``fn(ctx: JobContext) -> result`` run on a worker thread. Every job
has the same signals (started, progress(object), result(object), error(str), finished),
cooperative cancel (``ctx.cancel`` is a ``threading.Event``) and pause (``ctx.progress``
blocks while paused). Signals are emitted from the worker thread on a QObject that lives in
the GUI thread, so Qt delivers them queued: slots always run in the GUI thread.

``SerialExecutor`` runs small functions (page reads, culling writes) one at a time, in
submission order, on one thread, and calls back in the GUI thread. One executor for reads and
writes keeps them ordered: a read submitted after a write sees it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from photosense.errors import PhotosenseError

log = logging.getLogger("photosense.gui")


def describe_error(exc: BaseException) -> str:
    """A one-line message for the user: expected errors as written, bugs with their type."""
    if isinstance(exc, PhotosenseError):
        return str(exc)
    return f"unexpected error ({type(exc).__name__}): {exc}"


class JobCancelled(Exception):
    """Raised by ``JobContext.check()`` when the job was cancelled."""


class JobContext:
    """What a job function gets: progress reporting, the cancel event, pause support."""

    def __init__(self, job: Job):
        self._job = job
        self.cancel = job.cancel_event

    def progress(self, value: Any) -> None:
        """Report progress (any object); blocks here while the job is paused."""
        self._job._resume_event.wait()
        self._job.progress.emit(value)

    def check(self) -> None:
        """Wait while paused; raise JobCancelled once cancelled."""
        self._job._resume_event.wait()
        if self.cancel.is_set():
            raise JobCancelled()

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()


class Job(QObject):
    """One unit of background work with the standard signals."""

    started = Signal()
    progress = Signal(object)
    result = Signal(object)
    error = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[[JobContext], Any], name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.fn = fn
        self.name = name
        self.cancel_event = threading.Event()
        self._resume_event = threading.Event()
        self._resume_event.set()
        self.running = False
        self.done = False
        self.future: Future | None = None
        self.exception: BaseException | None = None  # set before ``error`` is emitted

    def cancel(self) -> None:
        self.cancel_event.set()
        self._resume_event.set()  # a paused job must wake up to notice

    def pause(self) -> None:
        self._resume_event.clear()

    def resume(self) -> None:
        self._resume_event.set()

    @property
    def paused(self) -> bool:
        return not self._resume_event.is_set()

    def _run(self) -> None:
        """Runs on the worker thread."""
        self.running = True
        self.started.emit()
        try:
            value = self.fn(JobContext(self))
        except JobCancelled:
            log.info("%s: cancelled", self.name)
        except Exception as exc:  # noqa: BLE001 - reported to the user, never swallowed
            self.exception = exc
            if not isinstance(exc, PhotosenseError):
                log.error("%s failed:\n%s", self.name, traceback.format_exc())
            else:
                log.warning("%s: %s", self.name, exc)
            self.error.emit(describe_error(exc))
        else:
            self.result.emit(value)
        finally:
            self.running = False
            self.done = True
            self.finished.emit()


class JobRunner(QObject):
    """Named thread pools for jobs: ``model`` (one thread: everything that uses the CLIP
    engine, so it is loaded once and never used twice at a time) and ``background``."""

    def __init__(self, parent: QObject | None = None, background_threads: int = 2):
        super().__init__(parent)
        self._pools = {
            "model": ThreadPoolExecutor(1, thread_name_prefix="photosense-model"),
            "background": ThreadPoolExecutor(background_threads, thread_name_prefix="photosense-bg"),
        }
        self.jobs: list[Job] = []

    def start(self, job: Job, pool: str = "background") -> Job:
        job.setParent(self)
        self.jobs.append(job)
        job.finished.connect(self._forget)
        job.future = self._pools[pool].submit(job._run)
        return job

    @Slot()
    def _forget(self) -> None:
        job = self.sender()
        if job in self.jobs:
            self.jobs.remove(job)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every job and wait for the threads (called when the window closes)."""
        for job in list(self.jobs):
            job.cancel()
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)


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

    def shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True)
