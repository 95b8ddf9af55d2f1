"""Keep freed memory for reuse instead of handing it back to the OS after every photo (glibc).

Analysing a photo allocates and frees a few megabytes of arrays (luma planes, pyramids,
residuals, decode buffers), photo after photo. With glibc's defaults that memory goes back to
the OS as soon as it is freed: blocks over the mmap threshold are unmapped, and free space at
the top of the heap beyond the trim threshold is released. The next photo then faults every
page in again: ~1,400 page faults per 640x480 photo's checks, nearly half of their time, and
twice that in a VM where each fault is slow. glibc adapts the mmap threshold to what was
freed, but the trim threshold stays at twice it, so a photo's worth of temporaries is still
trimmed away.

:func:`tune` fixes both thresholds: allocations under :data:`MMAP_THRESHOLD` come from the
heap, and up to :data:`TRIM_THRESHOLD` of free space is kept at the heap's top of each arena.
Larger blocks (a model's weights, a 100k feature matrix) are still mapped and unmapped whole,
so what is kept is bounded per arena, not by the largest thing ever allocated. Measured on 2
cores: :func:`photosense.ingest.scan.analyse_file` of a 640x480 JPEG 21 -> 14 ms on one core;
``photosense add`` of 1,000 such photos into a new library ~1,000,000 -> 30,000 page faults,
11.5 -> 9.1 s; a 1024 px photo's analysis ~10-15 % faster. (A process that once freed a big
block, as a scan of a 100k library does after reading its index, has raised glibc's adaptive
thresholds by itself: there it changes little.) The cost: peak memory of ``attr add`` at 100k
~470 -> ~520 MB (heap kept for reuse); 64/32 MB thresholds kept ~550 MB for no more speed.

Linux with glibc only (``mallopt``); elsewhere, or when the user set glibc's own malloc
variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``), it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("photosense")

#: Blocks at least this large are mapped on their own (and unmapped when freed).
MMAP_THRESHOLD = 16 * 1024 * 1024  # a 1024 px photo's arrays are ~3 MB each
#: Free space at the top of a heap beyond this goes back to the OS.
TRIM_THRESHOLD = 32 * 1024 * 1024

# mallopt parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_tuned = False


def tune(environ: dict[str, str] | None = None) -> bool:
    """Set the thresholds once per process; True when they are set (now or before)."""
    global _tuned
    if _tuned:
        return True
    environ = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or any(name in environ for name in _USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success, 0 on error.
    if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or \
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        log.debug("mallopt refused photosense's malloc thresholds")
        return False
    _tuned = True
    return True


def _glibc():
    """The C library when it is glibc (musl has no mallopt), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc
