"""Faces for photos already in the library that were never looked at for faces: a library
from before faces were found at scan time, or results of an older face pipeline
(:data:`photosense.scoring.faces.FACES_VERSION`). A scan calls :func:`backfill_faces` after
it has read new and changed files, so ``photosense scan`` returns with every photo's faces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from photosense.errors import DecodeError
from photosense.ingest.decode import open_image
from photosense.library import Library

log = logging.getLogger("photosense.ingest")

WRITE_BATCH = 64


def faces_of_file(path: str, companion_path: str | None) -> tuple[list[dict] | None, str | None]:
    """(faces, error) of one photo, read as a scan reads it (the JPEG of a RAW+JPEG pair, at
    the checks' size). Faces are None when the photo cannot be read or the face models cannot
    run; the error is the photo's own when it cannot be read for good (not for a passing
    failure such as an unplugged drive, nor for a RAW whose JPEG stands for it)."""
    from photosense.ingest.analysis import CHECK_SIDE
    from photosense.scoring.faces import faces_or_none

    error = None
    for candidate in (companion_path, path):
        if candidate is None:
            continue
        try:
            image = open_image(candidate, max_side=CHECK_SIDE)
        except DecodeError as exc:
            log.warning("%s: %s", candidate, exc)
            if candidate == path and companion_path is None and not exc.transient:
                error = str(exc)
            continue
        except MemoryError:
            continue
        return faces_or_none(image), None
    return None, error


def backfill_faces(library: Library, folder_id: int | None, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None) -> bool:
    """Find and store the faces of every photo (of one folder, or all) that has none stored.
    Returns False when cancelled (what was done is kept)."""
    from photosense.scoring.faces import faces_or_none

    todo = library.photos_needing_faces(folder_id)
    if not todo:
        return True
    from PIL import Image

    if faces_or_none(Image.new("RGB", (32, 32))) is None:
        return True  # no face models here: one line was logged, nothing to do
    from photosense.ingest.scan import FACES_STAGE

    if progress:
        progress(0, len(todo), FACES_STAGE)
    from photosense.ingest.scan import analysis_pool

    done, batch = 0, []
    pool = analysis_pool(max(1, workers))  # the scan's threads: their face models are loaded
    for start in range(0, len(todo), WRITE_BATCH):
        if cancel is not None and cancel.is_set():
            if batch:
                library.store_faces(batch)
            return False
        part = todo[start:start + WRITE_BATCH]
        results = pool.map(lambda item: faces_of_file(item[1], item[2]), part)
        errors = []
        for (photo_id, _path, _companion), (faces, error) in zip(part, results):
            done += 1
            if faces is not None:
                batch.append((photo_id, faces))
            elif error is not None:  # recorded as a scan would: not tried on every scan
                errors.append((photo_id, error))
        library.store_faces(batch)
        if errors:
            library.set_photo_errors(errors)
        batch = []
        if progress:
            progress(done, len(todo), FACES_STAGE)
    return True
