"""The worker processes of a big scan.

A scan with many photos to read (a new shoot, a first import) analyses them in processes of
their own (:data:`PROCESS_MIN` or more): the walk of the folder, the database writes and the
window then never wait for the analysis's Python code to let go of the interpreter lock, and
the analysis starts while the walk is still finding files. Measured on 2 cores: 1,000 new
640x480 JPEGs in a 100k-photo folder, the walk with the analysis in processes 6.2-6.6 s, the
walk then the analysis in threads 7.4-8.2 s. Smaller scans (a watcher's few files) stay on
threads: a process costs about 0.3 s to start.

Processes are started with "spawn" on every platform (never forked from a process that holds
database connections, Qt or model threads) and import no database code. Their log records go
to this process's loggers. The pool lives for one scan. Each worker says which photo it starts
before reading it, so that a photo that kills its reader is found (what the scan then does:
photosense.ingest.scan._FolderAnalysis).
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor

log = logging.getLogger("photosense.ingest")

#: A scan analyses its photos in worker processes once it has found this many to read.
PROCESS_MIN = 200


class AnalysisProcesses:
    """``workers`` processes running ``target(*unit)`` (default
    :func:`photosense.ingest.analysis.analyse`) for the units submitted. Each worker says
    which unit (by its first item, the path) it starts, before starting it, so that when one
    dies :meth:`in_flight` names the units being read at that moment."""

    def __init__(self, workers: int, target=None):
        from photosense.ingest.analysis import analyse

        self.target = target or analyse
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        # Written by each worker before it reads a unit: a SimpleQueue's put is in the pipe
        # when it returns (a Queue's is sent later by a thread, lost if the process dies).
        self._starts = ctx.SimpleQueue()
        self._reading: dict[int, str] = {}  # worker pid -> the unit it started last
        self._returned: set[str] = set()
        self._listener = logging.handlers.QueueListener(self._queue, _Forward())
        self._listener.start()
        level = logging.getLogger("photosense").getEffectiveLevel()
        try:
            self._pool = ProcessPoolExecutor(max(1, workers), mp_context=ctx,
                                             initializer=_start_worker,
                                             initargs=(self._queue, level, self._starts))
        except BaseException:
            self._listener.stop()
            raise

    def submit(self, unit: tuple) -> Future:
        fut = self._pool.submit(_run, self.target, *unit)
        key = unit[0]

        def returned(f: Future) -> None:
            if not f.cancelled() and f.exception() is None:
                self._returned.add(key)

        fut.add_done_callback(returned)
        return fut

    def in_flight(self) -> list[str]:
        """The units (paths) a worker had started and not returned: after the pool broke,
        those that were being read when a worker died (one of them killed it, or the system
        did). Empty when no worker ever started reading (processes do not run here)."""
        while not self._starts.empty():
            pid, key = self._starts.get()
            self._reading[pid] = key
        return [key for key in self._reading.values() if key not in self._returned]

    def close(self) -> None:
        """Stop the processes (what has not started is cancelled) and the log forwarding."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._listener.stop()
        self._queue.close()
        self._starts.close()


def start_processes(workers: int, target=None) -> AnalysisProcesses | None:
    """An :class:`AnalysisProcesses`, or None (one logged line) when processes cannot be
    started here: the scan then analyses in threads."""
    try:
        return AnalysisProcesses(workers, target)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("scan worker processes cannot start (%s): analysing in threads", exc)
        return None


class _Forward(logging.Handler):
    """Hands a worker's log record to this process's logger of the same name, as if logged
    here (its levels and handlers decide). A line every worker logs once (face models that
    cannot run) is passed on once."""

    def __init__(self):
        super().__init__()
        self._once: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if not logger.isEnabledFor(record.levelno):
            return
        key = (record.name, record.getMessage())
        with self._lock:
            if key in self._once:
                return
            self._once.add(key)
        logger.handle(record)


_starts = None  # in a worker: where it says which unit it starts (AnalysisProcesses.in_flight)


def _run(target, *unit):
    if _starts is not None:
        _starts.put((os.getpid(), unit[0]))
    return target(*unit)


def _start_worker(queue, level: int, starts=None) -> None:
    """A worker process's start: the allocator as the main process has it, log records to
    the main process, and the face models loaded before the first photo."""
    global _starts
    from photosense.allocator import tune

    _starts = starts
    tune()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    logging.getLogger("photosense").setLevel(level)
    from PIL import Image

    from photosense.scoring.faces import faces_or_none

    faces_or_none(Image.new("RGB", (32, 32)))
