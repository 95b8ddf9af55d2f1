"""Thumbnails: made on worker threads, cached on disk, converted to QPixmap in the GUI thread.

Disk cache: ``settings.thumbnail_dir()/<side>/<key>.jpg`` where the key hashes (path, mtime,
size), so an edited file gets a new thumbnail and stale ones are never shown. Writes are
atomic (temporary file + ``os.replace``). Files that cannot be decoded leave a ``.fail``
marker with the reason, so they are not decoded again on every scroll.

Requests are served newest first (what the user looks at now), and ``drop_pending()`` forgets
queued requests when the view scrolls or changes: only what is painted is re-requested.

Each thumbnail is made by a job (``photosense.jobs.Job``, kind ``thumbnail``) on the loader's
own ``JobThread`` (not listed in the status bar: there are hundreds, each a few milliseconds).
An unreadable file is the cell's "!" and its reason; an unexpected error (a bug) fails the job,
is logged with its traceback and reaches the Problems list through ``crashed``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from photosense import settings
from photosense.errors import DecodeError
from photosense.fsutil import write_bytes_atomically
from photosense.jobs import DONE, FAILED, Job, JobControl, JobThread

log = logging.getLogger("photosense.gui")

# Thumbnails are made at one of these sizes (the smallest that covers the grid's cell) and
# scaled down while painting.
BUCKETS = (160, 320, 480)
MEMORY_ITEMS = 1500


def bucket_for(side: int) -> int:
    for b in BUCKETS:
        if side <= b:
            return b
    return BUCKETS[-1]


def cache_key(path: str, mtime: float, size: int) -> str:
    return hashlib.sha1(f"{path}\0{mtime!r}\0{size}".encode()).hexdigest()


def pil_to_qimage(image) -> QImage:
    """An RGB Pillow image as a QImage that owns its pixels (safe to pass between threads)."""
    image = image.convert("RGB")
    data = image.tobytes("raw", "RGB")
    qimage = QImage(data, image.width, image.height, 3 * image.width, QImage.Format.Format_RGB888)
    return qimage.copy()  # detach from the Python bytes


class ThumbnailStore:
    """The on-disk cache (no Qt objects beyond QImage; safe on any thread)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else settings.thumbnail_dir()

    def _paths(self, key: str, side: int) -> tuple[Path, Path]:
        folder = self.root / str(side) / key[:2]
        return folder / f"{key}.jpg", folder / f"{key}.fail"

    def load_or_make(self, path: str, mtime: float, size: int, side: int) -> QImage:
        """The cached thumbnail, or a new one (decoded with Pillow, saved atomically).

        Raises DecodeError for an unreadable file (also when a failure is cached)."""
        from photosense.ingest.decode import open_image

        key = cache_key(path, mtime, size)
        thumb, fail = self._paths(key, side)
        if thumb.exists():
            image = QImage(str(thumb))
            if not image.isNull():
                return image
        if fail.exists():
            raise DecodeError(fail.read_text(encoding="utf-8", errors="replace") or "unreadable")
        try:
            pil = open_image(path, max_side=side)
        except DecodeError as exc:
            if not exc.transient:  # a file that cannot be read now is tried again later
                write_bytes_atomically(fail, str(exc).encode(), fsync=False)
            raise
        except OSError as exc:  # vanished file, unplugged drive: worth retrying later
            raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
        image = pil_to_qimage(pil)
        try:
            buf = _jpeg_bytes(pil)
            # A cache, not user data: no fsync (a torn write just means a new thumbnail).
            write_bytes_atomically(thumb, buf, fsync=False)
        except OSError as exc:
            log.warning("cannot write thumbnail cache %s: %s", thumb, exc)
        return image


def _jpeg_bytes(pil) -> bytes:
    import io

    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=88)
    return out.getvalue()


class ThumbnailLoader(QObject):
    """Serves thumbnails to the model: ``pixmap(id)`` or None plus a request in the background;
    ``ready(photo_id)`` when one arrives."""

    ready = Signal(int)
    failed = Signal(int, str)
    crashed = Signal(str)  # an unexpected error (a bug, not an unreadable file): for Problems
    _made = Signal(int, int, object)  # generation, photo id, QImage | str (error)

    def __init__(self, parent: QObject | None = None, workers: int = 2, side: int = 160,
                 store: ThumbnailStore | None = None):
        super().__init__(parent)
        self.store = store or ThumbnailStore()
        self._pool = JobThread("photosense-thumb", workers)
        self._lock = threading.Lock()
        # photo id -> (path, mtime, size, side, generation), newest last
        self._queue: OrderedDict[int, tuple[str, float, int, int, int]] = OrderedDict()
        self._in_flight: set[int] = set()
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._errors: dict[int, str] = {}
        self._generation = 0
        self.side = bucket_for(side)
        self._closed = False
        self._made.connect(self._on_made)

    # -- GUI thread ---------------------------------------------------------------------

    def set_side(self, side: int) -> None:
        """Cell size changed: thumbnails of another bucket are needed from now on."""
        b = bucket_for(side)
        if b != self.side:
            self.side = b
            self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._pixmaps.clear()
        self._errors.clear()
        self.drop_pending()

    def pixmap(self, photo_id: int) -> QPixmap | None:
        pm = self._pixmaps.get(photo_id)
        if pm is not None:
            self._pixmaps.move_to_end(photo_id)
        return pm

    def error(self, photo_id: int) -> str | None:
        return self._errors.get(photo_id)

    def request(self, photo_id: int, path: str, mtime: float, size: int) -> None:
        if self._closed or photo_id in self._pixmaps or photo_id in self._errors:
            return
        with self._lock:
            if photo_id in self._in_flight:
                return
            fresh = photo_id not in self._queue
            self._queue[photo_id] = (path, mtime, size, self.side, self._generation)
            self._queue.move_to_end(photo_id)
        if fresh:
            job = Job(self._work, "Making a thumbnail", "thumbnail")
            job.on_finished.append(self._job_finished)
            self._pool.submit(job)

    def drop_pending(self) -> None:
        """Forget queued (not started) requests: the view moved on."""
        with self._lock:
            self._queue.clear()

    def invalidate(self, photo_id: int) -> None:
        self._pixmaps.pop(photo_id, None)
        self._errors.pop(photo_id, None)

    @Slot(int, int, object)
    def _on_made(self, generation: int, photo_id: int, image) -> None:
        if generation != self._generation:
            return  # made for a cleared view or another size
        if isinstance(image, str):
            self._errors[photo_id] = image
            self.failed.emit(photo_id, image)
            self.ready.emit(photo_id)
            return
        self._pixmaps[photo_id] = QPixmap.fromImage(image)  # QPixmap only in the GUI thread
        while len(self._pixmaps) > MEMORY_ITEMS:
            self._pixmaps.popitem(last=False)
        self.ready.emit(photo_id)

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Drop what is queued and wait at most ``timeout`` for thumbnails being made (their
        cache writes are atomic: an abandoned one leaves no partial file)."""
        self._closed = True
        self.drop_pending()
        return self._pool.shutdown(timeout)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._queue or self._in_flight)

    # -- worker threads -------------------------------------------------------------------

    def _work(self, ctl: JobControl):
        """One job: the newest request still queued; (generation, photo id, QImage | reason),
        or None when the view moved on. Unexpected errors fail the job (``_job_finished``)."""
        with self._lock:
            if not self._queue or ctl.cancelled:
                return None  # dropped: the view moved on
            photo_id, (path, mtime, size, side, generation) = self._queue.popitem(last=True)
            self._in_flight.add(photo_id)
        job = ctl.job
        job.subject, job.photo = path, (generation, photo_id)
        try:
            return generation, photo_id, self.store.load_or_make(path, mtime, size, side)
        except DecodeError as exc:
            return generation, photo_id, str(exc)
        finally:
            with self._lock:
                self._in_flight.discard(photo_id)

    def _job_finished(self, job: Job) -> None:
        if self._closed:
            return
        if job.state == DONE and job.result is not None:
            self._made.emit(*job.result)
        elif job.state == FAILED and getattr(job, "photo", None) is not None:
            # shown on the cell; the traceback is in the log (photosense.jobs)
            self._made.emit(*job.photo, f"thumbnail failed: {job.error}")
            self.crashed.emit(f"thumbnail of {job.subject} failed: {job.error}")
