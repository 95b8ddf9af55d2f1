"""XMP auto-write off the library's write path (no Qt).

With the setting ``xmp_auto_write`` on, photosense rewrites a photo's sidecar when its flag,
rating or colour label changes. The library only commits the change and tells its culling
listeners which photos changed; ``SidecarWriter`` collects those ids on a background thread,
coalesces repeated changes of one photo (flagging, then rating, then undoing writes once),
and writes each batch with ``photosense.curation.xmp.write_sidecars`` as one job. Errors go
to ``on_report`` with the job, never into the culling write. ``write_changed_sidecars`` does
the same at once, for short-lived callers (the CLI).

Each sidecar write is atomic (a temporary file, synced, renamed over the old one), so a write
that is abandoned at shutdown leaves the previous sidecar intact. A batch syncs each folder it
wrote into once, at its end (``photosense.fsutil.fsync_batch``), not once per sidecar.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from photosense.fsutil import fsync_batch
from photosense.jobs import Job, JobControl
from photosense.library import Library

log = logging.getLogger("photosense.curation")

SETTING_AUTO_WRITE = "xmp_auto_write"  # the same key as photosense.curation.xmp's


def write_changed_sidecars(library: Library, ids: Sequence[int], cancel: threading.Event | None = None):
    """Write these photos' sidecars when auto-write is on; the SidecarReport, or None (off)."""
    if not ids or not library.get_setting(SETTING_AUTO_WRITE, False):
        return None
    from photosense.curation.xmp import write_sidecars

    with fsync_batch():  # each sidecar synced before its rename; each folder once per batch
        return write_sidecars(library, list(ids), cancel=cancel)


def attach_immediate_writer(library: Library) -> Callable[[list[int]], None]:
    """Write sidecars as part of each culling change, on the caller's thread (the CLI: one
    command, one change). Returns the listener (to remove it)."""
    def listener(ids: list[int]) -> None:
        report = write_changed_sidecars(library, ids)
        if report is not None:
            for path, message in report.errors:
                log.warning("XMP sidecar %s: %s", path, message)
            library.sidecar_report = report

    library.culling_listeners.append(listener)
    return listener


class SidecarWriter:
    """Coalesces culling changes and writes their sidecars in the background.

    ``delay``: how long a change waits for more (a held-down key, a batch of flags), at most
    ``max_wait`` from the first one. ``on_report(job)`` gets each finished write job (its
    ``result`` a SidecarReport, or its ``error``), on the writer's thread."""

    def __init__(self, library: Library, on_report: Callable[[Job], None] | None = None,
                 delay: float = 0.15, max_wait: float = 1.0):
        self.library = library
        self.on_report = on_report
        self.delay, self.max_wait = delay, max_wait
        self._cond = threading.Condition()
        self._pending: dict[int, None] = {}  # ordered set of photo ids
        self._first_at: float | None = None
        self._last_at = 0.0
        self._closing = False
        self._busy = False
        self._cancel = threading.Event()
        self.jobs_run = 0
        self._thread = threading.Thread(target=self._loop, name="photosense-sidecars", daemon=True)
        self._thread.start()
        library.culling_listeners.append(self.enqueue)

    def enqueue(self, ids: Iterable[int]) -> None:
        """Photos whose culling state changed (any thread; returns at once)."""
        ids = list(ids)
        if not ids:
            return
        with self._cond:
            if self._closing:
                return
            now = time.monotonic()
            for i in ids:
                self._pending[int(i)] = None
            if self._first_at is None:
                self._first_at = now
            self._last_at = now
            self._cond.notify()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._busy

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is pending now and wait for it (tests, export); True when idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._first_at = self._first_at and self._first_at - self.max_wait
            self._cond.notify()
            while (self._pending or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._pending and not self._busy

    def _take(self) -> list[int] | None:
        """The next batch once it settled (None: closed and nothing left); lock held."""
        while True:
            if self._pending:
                now = time.monotonic()
                settled = now - self._last_at >= self.delay
                overdue = self._first_at is not None and now - self._first_at >= self.max_wait
                if settled or overdue or self._closing:
                    ids = list(self._pending)
                    self._pending.clear()
                    self._first_at = None
                    self._busy = True
                    return ids
                wait = min(self.delay - (now - self._last_at),
                           self.max_wait - (now - (self._first_at or now)))
                self._cond.wait(max(0.01, wait))
            elif self._closing:
                return None
            else:
                self._cond.wait()

    def _loop(self) -> None:
        while True:
            with self._cond:
                ids = self._take()
            if ids is None:
                return
            try:
                def work(ctl: JobControl, ids=ids):
                    return write_changed_sidecars(self.library, ids, cancel=self._cancel)

                job = Job(work, f"Writing XMP sidecars of {len(ids)} photo{'s' if len(ids) != 1 else ''}",
                          "xmp", cancellable=False)
                job.photo_ids = ids
                job.run()
                self.jobs_run += 1
                if self.on_report is not None and (job.error is not None or job.result is not None):
                    try:
                        self.on_report(job)
                    except Exception:  # noqa: BLE001 - a listener's bug must not stop the writer
                        log.exception("sidecar report listener failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is pending, then stop; past ``timeout`` the write in flight is told to
        stop (its finished sidecars stand, the one being written is left as it was)."""
        deadline = time.monotonic() + timeout
        if self.enqueue in self.library.culling_listeners:
            self.library.culling_listeners.remove(self.enqueue)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic() - 0.2))
        if self._thread.is_alive():
            self._cancel.set()
            self._thread.join(max(0.05, deadline - time.monotonic()))
        return not self._thread.is_alive()
