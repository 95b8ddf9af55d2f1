"""A report of the library: every photo's path, flag, rating, label, scores and checks.

The format follows the file extension: ``.csv`` (one row per photo, one column per check and
per attribute) or ``.json`` (a list of objects, as ``photosense list --format json``). The file
is written to a temporary name next to it and renamed into place, so a reader never sees half
a report and a failed write leaves any previous report intact. Paths that are not valid UTF-8
are written with U+FFFD in place of the undecodable bytes.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from photosense.errors import PhotosenseError
from photosense.fsutil import atomic_write
from photosense.library import CHECK_NAMES, FACE_CHECK_NAMES, Library, PhotoQuery, PhotoRow

FORMATS = {".csv": "csv", ".json": "json"}
_TEMP_PREFIX = ".photosense-report-"


def report_format(path: str | os.PathLike) -> str:
    """"csv" or "json" from the file extension; PhotosenseError for anything else."""
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise PhotosenseError(
            f"unknown report format {suffix or '(no extension)'!r}: name the file .csv or .json") from None


def display_path(path: str) -> str:
    """A path as valid text (undecodable bytes shown as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def _row_object(row: PhotoRow) -> dict:
    return {
        "path": display_path(row.path),
        "flag": row.flag_name,
        "rating": row.rating,
        "label": row.color_label,
        "scores": dict(row.scores),
        "checks": {**{name: row.checks.get(name) for name in CHECK_NAMES}, **row.face_checks},
        "faces": public_faces(row.faces),
        "missing": row.missing,
        "error": row.error,
    }


def public_faces(faces: list[dict] | None) -> list[dict] | None:
    """A photo's faces as reports show them: box, eyes and eye sharpness of each."""
    if faces is None:
        return None
    return [{"box": list(f["box"]), "eyes": f["eyes"], "eye_sharpness": f["eye_sharpness"]}
            for f in faces]


# A cell beginning with one of these is a formula to Excel, LibreOffice and Google Sheets
# ("=HYPERLINK(...)" in a file or attribute name); OWASP's advice: quote it with "'".
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def spreadsheet_safe(value):
    """A CSV cell that a spreadsheet shows as text, never runs: strings that start like a
    formula get a leading apostrophe; numbers and empty cells are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _each(rows: list[PhotoRow], progress, cancel):
    """The rows, reporting ``progress(done, total)`` now and then; JobCancelled once
    ``cancel`` is set (the report being written is then dropped: the old one stays)."""
    from photosense.jobs import JobCancelled

    total = len(rows)
    for done, row in enumerate(rows, 1):
        if done % 500 == 1 or done == total:
            if cancel is not None and cancel.is_set():
                raise JobCancelled()
            if progress is not None:
                progress(done, total)
        yield row


def write_csv(f, rows: list[PhotoRow], attributes: list[str], progress=None, cancel=None) -> None:
    """One row per photo: path, culling, checks, one column per attribute, missing, error.
    Every cell a user or a file name controls is spreadsheet-safe."""
    w = csv.writer(f, lineterminator="\n")
    header = ["path", "flag", "rating", "label", *CHECK_NAMES, *FACE_CHECK_NAMES, *attributes,
              "missing", "error"]
    w.writerow([spreadsheet_safe(h) for h in header])
    for r in _each(rows, progress, cancel):
        checks = ["" if r.checks.get(c) is None else r.checks[c] for c in CHECK_NAMES]
        face_checks = r.face_checks
        checks += ["" if face_checks[c] is None else face_checks[c] for c in FACE_CHECK_NAMES]
        scores = [r.scores.get(a, "") for a in attributes]
        w.writerow([spreadsheet_safe(display_path(r.path)), r.flag_name, r.rating,
                    spreadsheet_safe(r.color_label or ""), *checks, *scores, int(r.missing),
                    spreadsheet_safe(r.error or "")])


def write_report(library: Library, path: str | os.PathLike, query: PhotoQuery | None = None, *,
                 progress=None, cancel=None) -> int:
    """Write a report of the photos ``query`` selects (default: every photo, by name) to
    ``path``; the format follows the extension. Returns the number of photos written.
    ``progress(done, total)`` now and then; ``cancel`` (a threading.Event) stops it with
    JobCancelled, leaving any previous report at ``path`` as it was."""
    fmt = report_format(path)
    target = Path(path).expanduser()
    rows = library.query(query or PhotoQuery(sort="name"))
    attributes = [a.name for a in library.attributes()]
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise PhotosenseError(f"cannot write the report: folder not found: {display_path(str(directory))}")
    try:
        with atomic_write(target, "w", encoding="utf-8", newline="", prefix=_TEMP_PREFIX) as f:
            if fmt == "csv":
                write_csv(f, rows, attributes, progress, cancel)
            else:
                json.dump([_row_object(r) for r in _each(rows, progress, cancel)], f, indent=2,
                          ensure_ascii=False)
                f.write("\n")
    except OSError as exc:
        raise PhotosenseError(
            f"cannot write the report {display_path(str(target))}: {exc.strerror or exc}") from exc
    return len(rows)

