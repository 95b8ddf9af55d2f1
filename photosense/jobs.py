"""Background work, one contract for the CLI and the GUI (no Qt here).

A ``Job`` runs a function ``fn(ctl: JobControl) -> result`` once. Every job has a name (for
the person: "Scoring", "Searching for “dog”"), a kind (what it is: ``scoring``, ``search``,
``scan``…), progress (``Progress``: stage text, done, total, rate, ETA), cooperative cancel,
pause where it means something, a result, an error and a finished state. An error is either
expected (a ``PhotosenseError``: its one-line message is shown as written) or unexpected (any
other exception: the job stops, its traceback goes to the log, the person sees its type and
message). ``Job.run`` never raises, so the thread that runs it never dies of a job's error and
the next job still runs.

Listeners (``on_progress``, ``on_finished``) are plain callbacks called on the thread that runs
the job; the Qt adapter (``photosense.gui.jobs``) turns them into queued signals.

``ModelScheduler`` owns the CLIP engine's thread: one model per process, shared. A long job
(a scoring run) calls ``ctl.checkpoint()`` between two batches; interactive requests (a text
search, a new or edited attribute, a taste refit) submitted meanwhile run right there, on the
same thread, then the run resumes. With no long job going they run at once.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from photosense.errors import PhotosenseError

log = logging.getLogger("photosense.jobs")

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


class JobCancelled(Exception):
    """Raised by ``JobControl.check()`` once the job was cancelled."""


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def format_rate(rate: float, unit: str = "photo") -> str:
    """Items per second as a person reads it: "3.2 photos/s", or below one per second the time
    per item ("one photo every 25 s"); never "0.0 photos/s"."""
    if rate <= 0:
        return ""
    if rate >= 1:
        return f"{rate:.1f} {unit}s/s"
    return f"one {unit} every {format_duration(1 / rate)}".replace("every 1s", "every second")


@dataclass(frozen=True)
class Progress:
    """Where a job is: ``stage`` ("loading", "encoding", "rescoring", "scanning", "done" or any
    short text), ``done`` of ``total`` items (total 0: unknown), ``rate`` items per second over
    the job so far, ``eta`` seconds left when known."""

    stage: str
    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    max_side: int | None = None  # scoring: the size this pass encodes at (a preview's is smaller)
    note: str = ""  # what this pass is, when it is not the plain one ("384 px preview")

    def line(self) -> str:
        eta = "" if self.eta is None else f", ETA {format_duration(self.eta)}"
        rate = format_rate(self.rate)
        extra = f" ({rate}{eta})" if rate or eta else ""
        return f"{self.stage}: {self.done}/{self.total}{extra}"

    def text(self, verb: str = "scored") -> str:
        """ "12 of 60 scored — 3.2 photos/s, 15s left" (no counts while the total is unknown)."""
        if not self.total:
            return ""
        parts = [f"{self.done} of {self.total} {verb}" + (f" ({self.note})" if self.note else "")]
        extra = [p for p in (format_rate(self.rate),
                             "" if self.eta is None or self.done >= self.total
                             else f"{format_duration(self.eta)} left") if p]
        if extra:
            parts.append(", ".join(extra))
        return " — ".join(parts)


def describe_error(exc: BaseException) -> str:
    """A one-line message for the person: expected errors as written, bugs with their type."""
    if isinstance(exc, PhotosenseError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"unexpected error ({type(exc).__name__})" + (f": {text[0]}" if text else "")


class JobControl:
    """What a job's function gets: progress, cancel, pause and the scheduler's checkpoint."""

    def __init__(self, job: Job):
        self._job = job
        self.cancel = job.cancel_event  # a threading.Event, for core functions taking one

    def progress(self, value: Any) -> None:
        """Report progress (a ``Progress``, a ``(done, total)`` pair); waits here while paused."""
        self.checkpoint()
        self._job._emit_progress(value)

    def check(self) -> None:
        """A checkpoint that raises JobCancelled once the job was cancelled."""
        self.checkpoint()
        if self.cancel.is_set():
            raise JobCancelled()

    def checkpoint(self) -> None:
        """Between two units of work: run interactive requests waiting for the model (a
        scoring run's batches), and wait while the job is paused (still serving them)."""
        job = self._job
        while True:
            if job.between is not None:
                job.between()
            if job._resume_event.is_set() or job.cancel_event.is_set():
                return
            job._resume_event.wait(0.1 if job.between is not None else None)

    def scan_progress(self, done: int, total: int, stage: str = "") -> None:
        """A ``(done, total)`` progress callback for the core's per-file loops; a scan's later
        pass names itself (``stage``: "finding faces")."""
        self.progress((done, total, stage) if stage else (done, total))

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    @property
    def job(self) -> Job:
        """The job itself (to name what it turned out to work on: ``job.subject``)."""
        return self._job


class Job:
    """One unit of background work (see the module docstring)."""

    def __init__(self, fn: Callable[[JobControl], Any], name: str, kind: str = "", *,
                 cancellable: bool = True, pausable: bool = False):
        self.fn = fn
        self.name = name
        self.kind = kind or name
        self.cancellable = cancellable
        self.pausable = pausable
        self.cancel_event = threading.Event()
        self._resume_event = threading.Event()
        self._resume_event.set()
        self._finished_event = threading.Event()
        self.state = PENDING
        self.progress: Any = None  # the last reported progress
        self.result: Any = None
        self.exception: BaseException | None = None
        self.error: str | None = None  # the one-line message, when it failed
        self.expected: bool = True  # the error was a PhotosenseError
        self.between: Callable[[], None] | None = None  # set by a ModelScheduler
        self.on_progress: list[Callable[[Job, Any], None]] = []
        self.on_started: list[Callable[[Job], None]] = []
        self.on_finished: list[Callable[[Job], None]] = []
        self.subject: str | None = None  # the file or folder it concerns, once known
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def __repr__(self) -> str:
        return f"<Job {self.kind} {self.name!r} {self.state}>"

    # -- control (any thread) -----------------------------------------------------------

    def cancel(self) -> None:
        self.cancel_event.set()
        self._resume_event.set()  # a paused job wakes up to notice

    def pause(self) -> None:
        if self.pausable:
            self._resume_event.clear()

    def resume(self) -> None:
        self._resume_event.set()

    @property
    def paused(self) -> bool:
        return not self._resume_event.is_set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def finished(self) -> bool:
        return self._finished_event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the job finished (True) or ``timeout`` passed (False)."""
        return self._finished_event.wait(timeout)

    # -- running (the worker thread) ------------------------------------------------------

    def _emit_progress(self, value: Any) -> None:
        self.progress = value
        for fn in list(self.on_progress):
            _call_listener(fn, self, value)

    def run(self) -> None:
        """Run the job here; never raises (a job's error is its state, not the thread's)."""
        if self.finished:
            return
        self.started_at = time.monotonic()
        if self.cancel_event.is_set():
            self.state = CANCELLED
        else:
            self.state = RUNNING
            for fn in list(self.on_started):
                _call_listener(fn, self)
            try:
                self.result = self.fn(JobControl(self))
            except JobCancelled:
                self.state = CANCELLED
                log.info("%s: cancelled", self.name)
            except Exception as exc:  # noqa: BLE001 - becomes the job's error, never swallowed
                if self.cancel_event.is_set():
                    # Cancelled first (closing the window closes the library under a job that
                    # is still finishing): the failure is the cancel's consequence, not news.
                    self.state = CANCELLED
                    log.info("%s: cancelled (then %s)", self.name, describe_error(exc))
                else:
                    self._failed(exc)
            else:
                self.state = DONE  # a cancelled run that returned (a partial report) is done
        self.finished_at = time.monotonic()
        self._finished_event.set()
        for fn in list(self.on_finished):
            _call_listener(fn, self)


    def _failed(self, exc: Exception) -> None:
        self.exception = exc
        self.expected = isinstance(exc, PhotosenseError)
        self.error = describe_error(exc)
        self.state = FAILED
        if self.expected:
            log.log(exc.log_level, "%s: %s", self.name, exc)
        else:
            log.error("%s failed:\n%s", self.name, traceback.format_exc())


def _call_listener(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - a listener's bug must not hide the job's outcome
        log.exception("job listener failed")


class JobThread:
    """Runs jobs one after another on ``threads`` daemon threads (a pool of one keeps them in
    order). An unexpected error ends that job, never the thread."""

    def __init__(self, name: str, threads: int = 1):
        self.name = name
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.running: set[Job] = set()
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}" if threads > 1 else name,
                                          daemon=True) for i in range(max(1, threads))]
        for t in self._threads:
            t.start()

    @property
    def current(self) -> Job | None:
        with self._cond:
            return next(iter(self.running), None)

    def submit(self, job: Job) -> Job:
        with self._cond:
            if not self._closed:
                self._queue.append(job)
                self._cond.notify()
                return job
        job.cancel()
        job.run()  # finishes at once as cancelled: its listeners still hear of it
        return job

    def pending(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def _next(self) -> Job | None:
        """The next job to run (None: closed and drained); called with the lock held."""
        while not self._queue and not self._closed:
            self._cond.wait()
        return self._queue.popleft() if self._queue else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                if job is None:
                    return
                self.running.add(job)
            try:
                self._execute(job)
            finally:
                with self._cond:
                    self.running.discard(job)

    def _execute(self, job: Job) -> None:
        job.run()

    def close(self) -> None:
        """Cancel what is queued and running; threads end once their job noticed."""
        with self._cond:
            self._closed = True
            jobs = list(self._queue) + list(self.running)
            self._cond.notify_all()
        for job in jobs:
            job.cancel()

    def join(self, deadline: float) -> bool:
        """Wait for the threads until ``deadline`` (time.monotonic()); True when all ended."""
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Cancel what is queued and running, wait at most ``timeout``; True when it stopped."""
        self.close()
        return self.join(time.monotonic() + timeout)


class ModelScheduler(JobThread):
    """The one thread that uses the model. ``submit(job, interactive=True)``: the job runs
    before any waiting long job and, while a long job runs, at its next checkpoint (between two
    scoring batches). Interactive jobs run in the order they came."""

    def __init__(self, name: str = "photosense-model"):
        self._interactive: deque[Job] = deque()
        super().__init__(name, 1)

    def submit(self, job: Job, interactive: bool = False) -> Job:
        if not interactive:
            job.between = self._run_interactive
            return super().submit(job)
        with self._cond:
            if not self._closed:
                self._interactive.append(job)
                self._cond.notify()
                return job
        job.cancel()
        job.run()
        return job

    def pending(self) -> list[Job]:
        with self._cond:
            return list(self._interactive) + list(self._queue)

    def _run_interactive(self) -> None:
        """Run every waiting interactive job (the scheduler's thread only)."""
        while True:
            with self._cond:
                if not self._interactive:
                    return
                job = self._interactive.popleft()
                self.running.add(job)
            try:
                job.run()
            finally:
                with self._cond:
                    self.running.discard(job)

    def _next(self) -> Job | None:
        while not self._queue and not self._interactive and not self._closed:
            self._cond.wait()
        if self._interactive:
            return _INTERACTIVE
        return self._queue.popleft() if self._queue else None

    def _execute(self, job: Job) -> None:
        if job is _INTERACTIVE:
            self._run_interactive()
        else:
            job.run()

    def close(self) -> None:
        with self._cond:
            waiting = list(self._interactive)
        for job in waiting:
            job.cancel()
        super().close()


_INTERACTIVE = Job(lambda ctl: None, "interactive requests", "marker")


def run_inline(job: Job) -> Job:
    """Run a job on this thread (the CLI's foreground commands); returns it, finished."""
    job.run()
    return job


__all__ = [
    "CANCELLED", "DONE", "FAILED", "Job", "JobCancelled", "JobControl", "JobThread", "ModelScheduler",
    "PENDING", "Progress", "RUNNING", "describe_error", "format_duration", "format_rate", "run_inline",
]
