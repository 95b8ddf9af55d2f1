"""What a scan learns from one photo's pixels and bytes: hash, metadata, checks and faces.

This module imports no database code, so that the scan's worker *processes*
(:mod:`photosense.ingest.workers`) start quickly; :func:`analyse` returns plain values (the
fields of a :class:`~photosense.library.ScanRecord`) that cross a process boundary as they are.
"""

from __future__ import annotations

import hashlib
import logging
import os

from photosense.errors import DecodeError
from photosense.ingest.decode import file_digest, is_raw_path, open_image
from photosense.ingest.metadata import read_metadata
from photosense.ingest.raw import check_raw

log = logging.getLogger("photosense.ingest")

CHECK_SIDE = 1024  # checks run on a copy at most this large (they normalise size themselves)


def pair_digest(raw_digest: str, companion_digest: str) -> str:
    """The content hash of a RAW+JPEG pair: a digest over both files' digests."""
    return hashlib.blake2b(f"{raw_digest}+{companion_digest}".encode("ascii"),
                           digest_size=16).hexdigest()


def analyse(path: str, size: int, mtime: float, companion_path: str | None = None,
            handoff: bool = False) -> dict:
    """Hash, metadata, checks and faces of one photo (one file, or a RAW with its JPEG
    companion), as the keyword arguments of its ``ScanRecord``. Never raises for a bad file:
    the problem is the record's ``error``. With ``handoff``, the decoded image is kept for
    scoring (:mod:`photosense.ingest.handoff`)."""
    from photosense.scoring.checks import compute_checks
    from photosense.scoring.faces import faces_or_none

    digest = None
    base = {"path": path, "size": size, "mtime": mtime, "companion_path": companion_path}
    try:
        digest = file_digest(path)
        if companion_path is not None:
            try:
                base["companion_hash"] = file_digest(companion_path)
                digest = pair_digest(digest, base["companion_hash"])
            except DecodeError as exc:  # unreadable JPEG: the RAW alone identifies the shot
                log.warning("%s: %s", companion_path, exc)
        image = None
        warning = None
        if companion_path is not None:
            try:
                image = _open(companion_path, handoff)
            except DecodeError as exc:  # a broken JPEG: the RAW still stands for the shot
                log.warning("%s: %s", companion_path, exc)
            else:
                try:  # its pixels are not needed, but a broken RAW must not go unnoticed
                    check_raw(path)
                except DecodeError as exc:
                    warning = (f"{exc} (the RAW; its JPEG {os.path.basename(companion_path)} "
                               "is shown)")
        if image is None:
            try:
                image = _open(path, handoff)
            except DecodeError as exc:
                if not is_raw_path(path):
                    raise
                return _unreadable_raw(base, digest, exc)
        meta = read_metadata(image)  # open_image keeps the source size and EXIF it needs
        capture_time, camera = meta.capture_time, meta.camera
        if companion_path is not None and (capture_time is None or camera is None):
            try:  # the JPEG has no EXIF (an edit, an export): ask the RAW
                raw_meta = read_metadata(path)
                capture_time = capture_time or raw_meta.capture_time
                camera = camera or raw_meta.camera
            except DecodeError as exc:  # the JPEG still stands for the shot
                log.warning("%s: %s", path, exc)
        checks = compute_checks(image).as_dict()
        faces = faces_or_none(image, checks["noise"])
        return {**base, "content_hash": digest, "width": meta.width, "height": meta.height,
                "capture_time": capture_time, "camera": camera, "checks": checks,
                "warning": warning, "faces": faces}
    except DecodeError as exc:
        return {**base, "content_hash": digest, "error": str(exc), "transient": exc.transient}
    except MemoryError:
        return {**base, "content_hash": digest, "error": "not enough memory to decode this image"}


def _open(path: str, handoff: bool):
    """``path`` decoded at CHECK_SIDE, kept for scoring with ``handoff``."""
    if not handoff:
        return open_image(path, max_side=CHECK_SIDE)
    from photosense.ingest import handoff as kept

    key = kept.stat_key(path)
    image = open_image(path, max_side=CHECK_SIDE)
    kept.put(path, CHECK_SIDE, image, key)
    return image


def _unreadable_raw(base: dict, digest: str | None, error: DecodeError) -> dict:
    """The record of a RAW whose pixels cannot be decoded: the error, and what its metadata
    says all the same (camera, time and size are read without LibRaw)."""
    try:
        meta = read_metadata(base["path"])
    except DecodeError:
        return {**base, "content_hash": digest, "error": str(error)}
    return {**base, "content_hash": digest, "width": meta.width, "height": meta.height,
            "capture_time": meta.capture_time, "camera": meta.camera, "error": str(error)}
