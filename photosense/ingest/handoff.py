"""Decoded images a scan hands to scoring, so that a new photo is decoded once, not twice.

A scan decodes every new or changed photo at :data:`~photosense.ingest.analysis.CHECK_SIDE`
for its checks and faces; scoring then decodes the same file again at ``max_side``, which is
the same size by default. When the library scores at that size, the scan writes the decoded
pixels here (a ``.npy`` of upright 8-bit RGB, about 2 MB for a 1024x683 frame) and scoring
takes them instead of decoding the file again: the same pixels as
:func:`~photosense.ingest.decode.open_image` gives in the scoring process (to a level or two
on a few pixels when the scan's worker processes resized them with Pillow and scoring would
with torch's kernel for the same filter). Saves about 16 ms of one core per 6 MP
JPEG (a 24 MP one more), some 2% of a CPU scoring run and much more of a GPU one, where
decoding is the limit.

Everything here is a cache, never a source of truth:

- an entry is named after the decoded file's path, size, modification time (ns) and the side,
  so a file changed after the scan is decoded again (its entry goes with the age sweep);
- at most :data:`MAX_FILES` entries (about 850 MB at 3:2) and only while the disk keeps
  :data:`MIN_FREE_BYTES` free: the photos of a bigger shoot beyond those are decoded twice;
- entries older than :data:`MAX_AGE_S` (a scan whose photos were never scored) are deleted by
  the next scan or scoring run; scoring deletes each entry it takes;
- an entry that cannot be read, or does not hold what it should, is deleted and the photo
  decoded from its file. Writes are atomic (a temporary file renamed), so two processes (the
  scan's workers, a scoring run) never see half an entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("photosense.ingest")

MAX_FILES = 400
MIN_FREE_BYTES = 4 << 30
MAX_AGE_S = 2 * 3600
_SUFFIX = ".npy"


def folder() -> Path:
    from photosense.settings import cache_dir

    return cache_dir() / "decoded"


def stat_key(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of ``path``, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _entry(base: Path, path: str, key: tuple[int, int], side: int) -> Path:
    name = f"{os.path.abspath(path)}\0{key[0]}\0{key[1]}\0{side}".encode("utf-8", "surrogatepass")
    return base / (hashlib.blake2b(name, digest_size=16).hexdigest() + _SUFFIX)


def put(path: str, side: int, image: Image.Image, key_before: tuple[int, int] | None,
        base: Path | None = None) -> bool:
    """Keep ``image``, decoded from ``path`` at ``side``, for scoring. ``key_before`` is the
    file's :func:`stat_key` from before it was decoded: a file that changed meanwhile is not
    kept. Returns whether it was kept; never raises (it is only a cache)."""
    base = base or folder()
    tmp = None
    try:
        if key_before is None or stat_key(path) != key_before or image.mode != "RGB":
            return False
        base.mkdir(parents=True, exist_ok=True)
        with os.scandir(base) as entries:
            if sum(1 for e in entries if e.name.endswith(_SUFFIX)) >= MAX_FILES:
                return False
        if shutil.disk_usage(base).free < MIN_FREE_BYTES:
            return False
        target = _entry(base, path, key_before, side)
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(image), allow_pickle=False)
        os.replace(tmp, target)
        return True
    except (OSError, ValueError) as exc:
        log.debug("cannot keep the decoded %s for scoring: %s", path, exc)
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        return False


def take(path: str, side: int, base: Path | None = None) -> Image.Image | None:
    """The image a scan kept for ``path`` at ``side`` as the file is now, or None. The entry
    is deleted: each is taken once."""
    key = stat_key(path)
    if key is None:
        return None
    target = _entry(base or folder(), path, key, side)
    try:
        with open(target, "rb") as f:
            pixels = np.load(f, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:
        log.debug("decoded image of %s unreadable (%s): decoding the file", path, exc)
        pixels = None
    try:
        target.unlink()
    except OSError:
        pass
    if (pixels is None or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3
            or min(pixels.shape[:2]) < 1 or (side and max(pixels.shape[:2]) > side)):
        return None
    return Image.fromarray(pixels, "RGB")


def sweep(base: Path | None = None, max_age_s: float = MAX_AGE_S) -> int:
    """Delete entries (and temporary files) older than ``max_age_s``. Returns how many."""
    base = base or folder()
    removed = 0
    cutoff = time.time() - max_age_s
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.endswith((_SUFFIX, ".tmp")):
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


def wanted(library) -> bool:
    """Whether a scan of ``library`` should keep its decoded images: the library scores at
    the scan's own decode size (``max_side`` 1024, the default)."""
    from photosense.ingest.analysis import CHECK_SIDE
    from photosense.scoring.clipiqa import EngineConfig

    stored = library.get_setting("engine") or {}
    return stored.get("max_side", EngineConfig.max_side) == CHECK_SIDE
