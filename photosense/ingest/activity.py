"""Scans in progress, per library, for the scoring runs of the same process that follow them.

A scan writes its records a small batch at a time (the first photo at once, then about every
second) and says so here. A scoring run that has encoded every photo it knew of while a scan
of its library goes on waits for the scan's next write and goes on with the photos it added,
so a new shoot's first scores come seconds after it is added, not once the whole folder is
read, and the model never waits for the scan's end with nothing to do.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator


class ScanActivity:
    """The scans of one library running now: how many, their writes, their photos to read."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._writes = 0  # records written by any scan so far (a version number)
        self._to_read = 0  # photos the running scans found to read and have not written yet

    @contextlib.contextmanager
    def scanning(self) -> Iterator[None]:
        """Around a scan (nested scans count once each)."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._to_read = 0
                self._cond.notify_all()

    @property
    def active(self) -> bool:
        return self._active > 0

    @property
    def writes(self) -> int:
        return self._writes

    @property
    def to_read(self) -> int:
        """Photos the running scans found and will write: a scoring run's work to come."""
        return self._to_read

    def found(self, n: int = 1) -> None:
        with self._cond:
            self._to_read += n

    def wrote(self, n: int, read: int | None = None) -> None:
        """A scan wrote ``n`` records of the ``read`` photos it had found (default ``n``)."""
        with self._cond:
            self._writes += n
            self._to_read = max(0, self._to_read - (n if read is None else read))
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a write after the ``seen``-th or for the last
        scan to end. True when there may be more to score (a write came, or scans still run)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._writes == seen and self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)
            return self._writes != seen or bool(self._active)


_lock = threading.Lock()
_by_library: dict[str, ScanActivity] = {}


def for_library(library) -> ScanActivity:
    """The activity of ``library``'s file (every Library object open on it shares one)."""
    key = os.path.realpath(str(library.path))
    with _lock:
        activity = _by_library.get(key)
        if activity is None:
            activity = _by_library[key] = ScanActivity()
        return activity
