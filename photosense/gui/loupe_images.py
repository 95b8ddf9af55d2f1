"""``LoupeImages``: the photo a ``LoupeView`` shows, decoded, preloaded and downscaled off the
GUI thread.

Decoding happens on a worker thread (``open_image``), which also converts the pixels to a
``QImage``; the GUI thread only turns that into a ``QPixmap``. A quick downscaled preview is
shown first, then the full image. Each ``set_photo`` supersedes the previous load: stale
results are dropped and queued stale jobs never decode.

Below 100 % the photo is drawn from a smoothly downscaled copy made on the same worker pool
(a 24 MP rescale takes ~200 ms): until it is ready, the previous copy or the full image
(unsmoothed) stands in, so a wheel notch or a resize never waits for it. ``preload`` decodes
the neighbours of the shown photo in the background; moving to one shows it at once.
"""

from __future__ import annotations

import logging
import os
import threading

from PySide6.QtCore import QObject, QSize, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap

from photosense.errors import DecodeError

log = logging.getLogger("photosense.gui.loupe")

PREVIEW_SIDE = 1600  # quick first image (JPEG draft decoding makes this cheap)

_pool_lock = threading.Lock()
_pool: QThreadPool | None = None


def loader_pool() -> QThreadPool:
    """The thread pool full-size photo decoding runs on (two threads: decoding is memory-hungry)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = QThreadPool()
            _pool.setMaxThreadCount(2)
            _pool.setObjectName("photosense-loupe")
        return _pool


def pil_to_qimage(img) -> QImage:
    """An RGB Pillow image as a QImage that owns its pixels (safe on any thread)."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    data = rgb.tobytes()
    qimg = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    # convertToFormat copies (the bytes object can go) and spares the GUI thread the conversion.
    return qimg.convertToFormat(QImage.Format.Format_RGB32)


class _LoadSignals(QObject):
    # token, image, full image (width, height) as displayed, final (False: preview)
    loaded = Signal(int, QImage, int, int, bool)
    failed = Signal(int, str)
    source = Signal(int, str)  # token, the file actually decoded (a pair's JPEG, say)


class _ScaleSignals(QObject):
    scaled = Signal(int, QImage)  # request number, the image scaled for drawing


class _ScaleJob:
    """A smooth downscale of the shown image, off the GUI thread. Pillow does the resampling
    on the QImage's own pixels (no copy): it releases the GIL while it works, where
    ``QImage.scaled`` holds it and would stall the GUI thread as much as scaling there."""

    def __init__(self, request: int, image: QImage, size: QSize, signals: _ScaleSignals):
        self.request, self.image, self.size, self.signals = request, image, size, signals
        self.cancelled = threading.Event()

    def __call__(self) -> None:
        if self.cancelled.is_set():
            return
        try:
            out = scaled_image(self.image, self.size)
        except Exception:  # a bug: the unsmoothed stand-in stays; say why in the log
            log.exception("downscaling the loupe's photo failed")
            return
        if not self.cancelled.is_set():
            self.signals.scaled.emit(self.request, out)


def scaled_image(image: QImage, size: QSize) -> QImage:
    """``image`` smoothly resized to ``size`` (Pillow, GIL released while it resamples)."""
    from PIL import Image

    if image.format() not in (QImage.Format.Format_RGB32, QImage.Format.Format_ARGB32):
        image = image.convertToFormat(QImage.Format.Format_RGB32)
    w, h = image.width(), image.height()
    # 0xffRRGGBB words are B, G, R, A bytes: resampled per channel, the order does not matter.
    src = Image.frombuffer("RGBA", (w, h), image.constBits(), "raw", "RGBA", image.bytesPerLine(), 1)
    out = src.resize((size.width(), size.height()), Image.Resampling.BICUBIC, reducing_gap=3.0)
    data = out.tobytes()
    return QImage(data, out.width, out.height, 4 * out.width, QImage.Format.Format_RGB32).copy()


PRELOAD_KEEP = 3  # decoded photos kept: the shown one and its two neighbours


class _LoadJob:
    def __init__(self, token: int, path: str, signals: _LoadSignals, companion: str | None = None):
        self.token, self.path, self.signals = token, path, signals
        self.companion = companion
        self.cancelled = threading.Event()

    def __call__(self) -> None:
        from photosense.ingest.decode import open_image
        from photosense.ingest.raw import best_image_path

        try:
            if self.cancelled.is_set():
                return
            self.path = best_image_path(self.path, self.companion)  # checks the file: not on the GUI thread
            self.signals.source.emit(self.token, self.path)
            preview = open_image(self.path, PREVIEW_SIDE)
            width, height = _source_size(preview)
            if (width, height) == preview.size:  # small photo: the preview is the full image
                self._emit(preview, width, height, True)
                return
            self._emit(preview, width, height, False)
            del preview
            if self.cancelled.is_set():
                return
            self._emit(open_image(self.path, 0), width, height, True)
        except DecodeError as exc:
            self.signals.failed.emit(self.token, str(exc))
        except MemoryError:
            self.signals.failed.emit(self.token, "not enough memory to show this photo")
        except Exception as exc:  # a bug, but the user must still see that the photo failed
            log.exception("loading %s failed", self.path)
            self.signals.failed.emit(self.token, f"unexpected error: {exc}")

    def _emit(self, img, width: int, height: int, final: bool) -> None:
        if not self.cancelled.is_set():
            self.signals.loaded.emit(self.token, pil_to_qimage(img), width, height, final)


def _source_size(img) -> tuple[int, int]:
    try:
        from photosense.ingest.decode import INFO_SOURCE_SIZE
    except ImportError:  # pragma: no cover - older decode module
        return img.size
    size = img.info.get(INFO_SOURCE_SIZE)
    return tuple(size) if size else img.size


class LoupeImages(QObject):
    """The shown photo and the decoded neighbours kept for it. What is shown: ``pixmap``
    (None until a first image arrives), the full image's ``width`` and ``height`` (also while
    the preview is shown), ``final`` (the full image, not the preview), ``error`` (decoding
    failed), ``path`` and ``source`` (the file actually decoded; "" until known)."""

    #: what is drawn changed (a downscale is ready, decoding failed, another photo)
    changed = Signal()
    #: an image of the photo arrived (the preview or the full one): the view's geometry follows
    imageChanged = Signal()
    #: the full image of ``path`` is shown
    loaded = Signal(str)
    #: (path, message) decoding failed
    failed = Signal(str, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.path = ""
        self.source = ""
        self.pixmap: QPixmap | None = None
        self.width = 0
        self.height = 0
        self.final = False
        self.error: str | None = None
        self._token = 0
        self._job: _LoadJob | None = None
        self._scaled: QPixmap | None = None  # cache of the pixmap scaled for drawing below 100 %
        self._image: QImage | None = None  # what pixmap shows, for the background rescale
        self._scale_request = 0
        self._scale_want: QSize | None = None  # the size being scaled to in the background
        self._scale_job: _ScaleJob | None = None
        # Decoded photos by path (the shown one and the preloaded neighbours), newest last.
        self._decoded: dict[str, tuple[QImage, int, int, str]] = {}
        self._preloads: dict[int, tuple[str, _LoadJob]] = {}  # token -> (path, job)
        self._preload_token = 0

    # -- loading ------------------------------------------------------------------------------

    def set_photo(self, path: str, companion: str | None = None) -> None:
        """Show ``path``: at once when it was preloaded, else decoded in the background."""
        if self._job is not None:
            self._job.cancelled.set()
            self._job = None
        self._token += 1
        self.path = path
        self.source = ""
        self.pixmap = self._scaled = None
        self._image = None
        self._cancel_scale()
        self.final = False
        self.error = None
        self.width = self.height = 0
        decoded = self._decoded.get(self.path)
        if decoded is not None:  # preloaded: shown now, no decoding
            image, width, height, source = decoded
            self.source = source
            self._on_loaded(self._token, image, width, height, True)
            return
        signals = _LoadSignals()
        signals.loaded.connect(self._on_loaded)
        signals.failed.connect(self._on_failed)
        signals.source.connect(self._on_source)
        self._job = _LoadJob(self._token, self.path, signals, companion)
        loader_pool().start(self._job)
        self.changed.emit()

    def preload(self, items: list[tuple[str, str | None]]) -> None:
        """Decode these photos ((path, companion): the shown photo's neighbours) in the
        background and keep them, so ``set_photo`` of one shows it at once. Photos neither
        shown nor asked for are forgotten."""
        wanted = {os.fspath(p) for p, _c in items} | {self.path}
        for token, (path, job) in list(self._preloads.items()):
            if path not in wanted:
                job.cancelled.set()
                del self._preloads[token]
        for path in [p for p in self._decoded if p not in wanted]:
            del self._decoded[path]
        loading = {path for path, _job in self._preloads.values()}
        for path, companion in items:
            path = os.fspath(path)
            if path in self._decoded or path in loading or path == self.path:
                continue
            self._preload_token -= 1  # negative: never a token of the shown photo
            signals = _LoadSignals()
            signals.loaded.connect(self._on_preloaded)
            signals.source.connect(self._on_preload_source)
            job = _LoadJob(self._preload_token, path, signals, companion)
            self._preloads[self._preload_token] = (path, job)
            loader_pool().start(job)

    @Slot(int, str)
    def _on_preload_source(self, token: int, source: str) -> None:
        entry = self._preloads.get(token)
        if entry is not None:
            entry[1].source = source

    @Slot(int, QImage, int, int, bool)
    def _on_preloaded(self, token: int, image: QImage, width: int, height: int, final: bool) -> None:
        entry = self._preloads.get(token)
        if entry is None or not final:
            return
        del self._preloads[token]
        path, job = entry
        self._keep_decoded(path, image, width, height, getattr(job, "source", path))

    def _keep_decoded(self, path: str, image: QImage, width: int, height: int, source: str) -> None:
        self._decoded.pop(path, None)
        self._decoded[path] = (image, width, height, source)
        while len(self._decoded) > PRELOAD_KEEP:
            oldest = next(iter(self._decoded))
            if oldest == self.path and len(self._decoded) > 1:
                self._decoded[oldest] = self._decoded.pop(oldest)  # the shown one stays
                oldest = next(iter(self._decoded))
            del self._decoded[oldest]

    def preloaded(self) -> list[str]:
        """The paths decoded and kept (shown or preloaded)."""
        return list(self._decoded)

    def clear(self) -> None:
        if self._job is not None:
            self._job.cancelled.set()
            self._job = None
        self._token += 1
        self.path = self.source = ""
        self._image = None
        self._cancel_scale()
        self.pixmap = self._scaled = None
        self.error = None
        self.width = self.height = 0
        self.changed.emit()

    @Slot(int, QImage, int, int, bool)
    def _on_loaded(self, token: int, image: QImage, width: int, height: int, final: bool) -> None:
        if token != self._token or (self.final and not final):
            return  # a stale load, or a preview arriving after the full image
        self.pixmap = QPixmap.fromImage(image)
        self._image = image
        self._scaled = None
        self._cancel_scale()
        self.width, self.height = width, height
        self.final = final
        self.imageChanged.emit()
        if final:
            self._job = None
            self._keep_decoded(self.path, image, width, height, self.source or self.path)
            self.loaded.emit(self.path)

    @Slot(int, str)
    def _on_source(self, token: int, path: str) -> None:
        if token == self._token:
            self.source = path

    @Slot(int, str)
    def _on_failed(self, token: int, message: str) -> None:
        if token != self._token:
            return
        self._job = None
        self.error = message
        self.pixmap = self._scaled = None
        self.changed.emit()
        self.failed.emit(self.path, message)

    # -- background rescaling -----------------------------------------------------------------

    def drawable(self, size: QSize) -> tuple[QPixmap, bool]:
        """The pixmap to draw at ``size`` (device pixels, below 100 %) and whether it is the
        smooth downscale for that size. When it is not, that downscale is made in the
        background (``changed`` follows) and the last one (stretched) or the full image stands
        in."""
        if self.is_scaled_to(size):
            return self._scaled, True
        self._request_scale(size)
        return (self._scaled if self._scaled is not None else self.pixmap), False

    def is_scaled_to(self, size: QSize) -> bool:
        """Whether the smooth downscale to ``size`` is ready."""
        return self._scaled is not None and self._scaled.size() == size

    def _cancel_scale(self) -> None:
        if self._scale_job is not None:
            self._scale_job.cancelled.set()
            self._scale_job = None
        self._scale_request += 1
        self._scale_want = None

    def _request_scale(self, size: QSize) -> None:
        """Scale the shown image to ``size`` in the background (the latest request wins)."""
        if self._scale_want == size or self._image is None:
            return
        self._cancel_scale()
        self._scale_want = size
        signals = _ScaleSignals()  # owned by the job: it outlives a closed view
        signals.scaled.connect(self._on_scaled)
        self._scale_job = _ScaleJob(self._scale_request, self._image, size, signals)
        loader_pool().start(self._scale_job)

    @Slot(int, QImage)
    def _on_scaled(self, request: int, image: QImage) -> None:
        if request != self._scale_request:
            return  # an older zoom level or another photo
        self._scale_job = None
        self._scale_want = None
        self._scaled = QPixmap.fromImage(image)
        self.changed.emit()
