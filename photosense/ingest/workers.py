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
to this process's loggers. The pool lives for one scan. Photos are read in the order they are
submitted, so when a worker dies the photos it and the others were reading are among the
first ``workers + 1`` not returned (what the scan then does: photosense.ingest.scan).
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
    :func:`photosense.ingest.analysis.analyse`) for the units submitted."""

    def __init__(self, workers: int, target=None):
        from photosense.ingest.analysis import analyse

        self.target = target or analyse
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._listener = logging.handlers.QueueListener(self._queue, _Forward())
        self._listener.start()
        level = logging.getLogger("photosense").getEffectiveLevel()
        try:
            self._pool = ProcessPoolExecutor(max(1, workers), mp_context=ctx,
                                             initializer=_start_worker, initargs=(self._queue, level))
        except BaseException:
            self._listener.stop()
            raise

    def submit(self, unit: tuple) -> Future:
        return self._pool.submit(self.target, *unit)

    def close(self) -> None:
        """Stop the processes (what has not started is cancelled) and the log forwarding."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._listener.stop()
        self._queue.close()


def start_processes(workers: int, target=None) -> AnalysisProcesses | None:
    """An :class:`AnalysisProcesses`, or None (one logged line) when processes cannot be
    started here: the scan then analyses in threads."""
    try:
        return AnalysisProcesses(workers, target)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("scan worker processes cannot start (%s): analysing in threads", exc)
        return None


def processes_run() -> bool:
    """Whether a worker process can start and do work here at all: asked when one died on a
    photo, to tell a photo that kills its reader from processes that cannot run."""
    try:
        probe = AnalysisProcesses(1, target=os.getpid)
    except (OSError, RuntimeError, ValueError):
        return False
    try:
        return probe.submit(()).result(timeout=120) > 0
    except Exception:  # broken, timed out: no
        return False
    finally:
        probe.close()


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


def _start_worker(queue, level: int) -> None:
    """A worker process's start: the allocator as the main process has it, log records to
    the main process, and the face models loaded before the first photo."""
    from photosense.allocator import tune

    tune()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    logging.getLogger("photosense").setLevel(level)
    from PIL import Image

    from photosense.scoring.faces import faces_or_none

    faces_or_none(Image.new("RGB", (32, 32)))
