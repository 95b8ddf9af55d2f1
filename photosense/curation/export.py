"""Export the chosen photos (picks, or the top N / top % by a score) to a folder.

Guarantees:

- originals are only ever read (``shutil.copy2`` or ``os.link`` from them, nothing else);
- nothing in the destination is ever overwritten: a name that is taken by a different file
  gets a suffix (``IMG_0001-1.jpg``); a file with identical content already there is skipped,
  so re-running the same export adds nothing;
- copies are written to a hidden temporary name in the destination and renamed into place
  only when complete, so a crash or a full disk never leaves half a photo under a real name;
- every photo that is not exported is in the report with the reason.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from photosense.errors import PhotosenseError
from photosense.library import CHECK_NAMES, Library, PhotoQuery, PhotoRow
from photosense.scoring.prompts import normalize_attribute_name

log = logging.getLogger("photosense.curation.export")

#: Sidecar files exported with a photo: ``photo.xmp`` and ``photo.jpg.xmp`` (any case).
SIDECAR_EXTENSIONS = (".xmp",)
FLAG_CHOICES = ("pick", "reject", "none")
_TEMP_PREFIX = ".photosense-export-"

ProgressFn = Callable[[int, int], None]


@dataclass
class ExportOptions:
    """What to export and how.

    ``flag``: only photos with this flag ("pick", "reject", "none"); None: any flag.
    ``top`` / ``top_percent``: of those, only the best N / best N % ranked by ``by`` (an
    attribute or a check; its natural order, e.g. least noisy first). Photos without a value
    for ``by`` are not ranked and so not exported.
    ``link``: hard-link instead of copying (falls back to a copy where the destination is on
    another filesystem, or cannot hold links; the report counts those).
    ``query``: extra filters (e.g. the GUI's current view); ``flag`` above takes precedence
    over the query's own flag when set.
    ``include_missing``: also try photos the library marks as missing (a drive plugged back in).
    """

    dest: Path
    flag: str | None = "pick"
    top: int | None = None
    top_percent: float | None = None
    by: str | None = None
    link: bool = False
    query: PhotoQuery | None = None
    include_missing: bool = False

    def __post_init__(self) -> None:
        if self.by is not None:
            self.by = normalize_attribute_name(self.by)

    def validate(self) -> None:
        """Raise PhotosenseError saying what is wrong with these options."""
        if not str(self.dest).strip():
            raise PhotosenseError("choose a destination folder")
        if self.flag is not None and self.flag not in FLAG_CHOICES:
            raise PhotosenseError(f"unknown flag {self.flag!r} (pick, reject, none, or any)")
        if self.top is not None and self.top_percent is not None:
            raise PhotosenseError("give either a number of photos or a percentage, not both")
        if self.top is not None and self.top < 1:
            raise PhotosenseError("the number of photos to export must be at least 1")
        if self.top_percent is not None and not 0 < self.top_percent <= 100:
            raise PhotosenseError("the percentage must be above 0 and at most 100")
        if (self.top is not None or self.top_percent is not None) and not self.by:
            raise PhotosenseError("choose the attribute or check to rank photos by")


@dataclass
class ExportReport:
    copied: int = 0
    linked: int = 0
    renamed: int = 0  # exported under a new name ("name-1.jpg") because the name was taken
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (source path, message)
    dest: Path = Path()
    cancelled: bool = False
    link_fallbacks: int = 0  # asked to link, copied instead (counted in ``copied``)
    sidecars: int = 0  # .xmp files exported alongside
    unranked: int = 0  # selected photos without a value for ``by``, left out of the ranking

    @property
    def exported(self) -> int:
        return self.copied + self.linked

    def summary(self) -> str:
        """One line for a status bar or the command line."""
        if self.linked and self.copied:
            how = f"{self.linked} linked, {self.copied} copied"
        elif self.linked:
            how = f"{self.linked} linked"
        else:
            how = f"{self.copied} copied"
        parts = [f"{how} to {self.dest}"]
        if self.renamed:
            parts.append(f"{self.renamed} renamed")
        if self.sidecars:
            parts.append(f"{self.sidecars} sidecar{'s' if self.sidecars != 1 else ''}")
        if self.link_fallbacks:
            parts.append(f"{self.link_fallbacks} copied instead of linked (other filesystem)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.unranked:
            parts.append(f"{self.unranked} without a score not ranked")
        if self.errors:
            parts.append(f"{len(self.errors)} failed")
        text = ", ".join(parts)
        return text + " (cancelled)" if self.cancelled else text


def _rank_value(row: PhotoRow, by: str) -> float | None:
    return row.checks.get(by) if by in CHECK_NAMES else row.scores.get(by)


def select_photos(library: Library, options: ExportOptions) -> tuple[list[PhotoRow], int, list[PhotoRow]]:
    """The photos an export would write, in export order.

    Returns (selected, unranked count, photos left out because the library marks them missing
    and ``include_missing`` is off; only reported when no ranking is asked for)."""
    options.validate()
    base = options.query if options.query is not None else PhotoQuery()
    ranking = options.top is not None or options.top_percent is not None
    query = dataclasses.replace(
        base,
        flag=options.flag if options.flag is not None else base.flag,
        include_missing=True,
        sort=options.by if options.by else base.sort,
        descending=None if options.by else base.descending,
        limit=None,
        ranges=dict(base.ranges),
    )
    rows = library.query(query)
    missing: list[PhotoRow] = []
    if not options.include_missing:
        missing = [r for r in rows if r.missing]
        rows = [r for r in rows if not r.missing]
    unranked = 0
    if ranking:
        assert options.by is not None
        ranked = [r for r in rows if _rank_value(r, options.by) is not None]
        unranked = len(rows) - len(ranked)
        if options.top is not None:
            count = options.top
        else:
            count = math.ceil(len(ranked) * options.top_percent / 100 - 1e-9)
        rows = ranked[:count]
        missing = []  # they were never candidates for the top N
    return rows, unranked, missing


def export_photos(
    library: Library,
    options: ExportOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> ExportReport:
    """Copy (or hard-link) the selected photos and their sidecars into ``options.dest``.

    Per-file problems go into the report; a destination that cannot be created, or invalid
    options, raise PhotosenseError. A full disk stops the export (reported as an error).
    """
    dest = Path(options.dest).expanduser()
    report = ExportReport(dest=dest)
    rows, report.unranked, marked_missing = select_photos(library, options)
    for row in marked_missing:
        report.skipped.append((row.path, "missing (not found at the last scan)"))
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PhotosenseError(f"export destination is a file, not a folder: {dest}") from None
    except OSError as exc:
        raise PhotosenseError(f"cannot create export folder {dest}: {_reason(exc)}") from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise PhotosenseError(f"export folder is not writable: {dest}")

    exporter = _Exporter(dest, options.link, report)
    total = len(rows)
    if progress:
        progress(0, total)
    for done, row in enumerate(rows, 1):
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            break
        try:
            exporter.export(row.path)
            if row.companion_path:  # the JPEG of a RAW+JPEG pair goes with it
                exporter.export(row.companion_path)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                report.errors.append((row.path, f"destination is full; export stopped: {_reason(exc)}"))
                break
            report.errors.append((row.path, _reason(exc)))
            log.warning("export of %s failed: %s", row.path, _reason(exc))
        if progress:
            progress(done, total)
    log.info("%s", report.summary())
    return report


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _file_hash(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fp:
        while block := fp.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Source:
    """One source file with lazily computed content hash (compared at most once per file)."""

    def __init__(self, path: str, size: int):
        self.path, self.size = path, size
        self._hash: str | None = None

    def same_content(self, other: str) -> bool:
        try:
            if os.path.samefile(self.path, other):
                return True
            if os.path.getsize(other) != self.size:
                return False
            if self._hash is None:
                self._hash = _file_hash(self.path)
            return _file_hash(other) == self._hash
        except OSError:
            return False


class _Exporter:
    def __init__(self, dest: Path, link: bool, report: ExportReport):
        self.dest = os.fspath(dest)
        self.link = link
        self.report = report
        self._listings: dict[str, list[str]] = {}

    def export(self, src: str) -> None:
        try:
            size = os.stat(src).st_size
        except FileNotFoundError:
            self.report.skipped.append((src, "source file missing"))
            return
        if not os.path.isfile(src):
            self.report.skipped.append((src, "not a regular file"))
            return
        source = _Source(src, size)
        name = os.path.basename(src)
        final_name, written = self._place(source, name)
        if not written:
            self.report.skipped.append((src, f"identical file already in the destination ({final_name})"))
        elif final_name != name:
            self.report.renamed += 1
        self._export_sidecars(src, final_name)

    # -- one file ---------------------------------------------------------------------------

    def _candidates(self, name: str):
        stem, ext = os.path.splitext(name)
        yield name
        k = 1
        while True:
            yield f"{stem}-{k}{ext}"
            k += 1

    def _place(self, source: _Source, name: str) -> tuple[str, bool]:
        """Write ``source`` under the first free name: (name, True); or (name of the
        identical file already there, False)."""
        tmp: str | None = None
        link = self.link
        try:
            for candidate in self._candidates(name):
                target = os.path.join(self.dest, candidate)
                if os.path.lexists(target):
                    if source.same_content(target):
                        return candidate, False
                    continue
                if link:
                    result = self._try_link(source.path, target)
                    if result == "taken":
                        continue
                    if result == "linked":
                        self.report.linked += 1
                        return candidate, True
                    self.report.link_fallbacks += 1
                    link = False
                if tmp is None:
                    tmp = self._copy_to_temp(source.path)
                if self._commit(tmp, target):
                    tmp = None
                    self.report.copied += 1
                    return candidate, True
            raise AssertionError("unreachable")
        finally:
            if tmp is not None:
                _unlink_quietly(tmp)

    def _try_link(self, src: str, target: str) -> str:
        try:
            os.link(src, target)
        except FileExistsError:
            return "taken"
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                log.info("cannot hard-link %s into %s (%s); copying", src, self.dest, _reason(exc))
                return "fallback"
            raise
        return "linked"

    def _copy_to_temp(self, src: str) -> str:
        fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".part", dir=self.dest)
        os.close(fd)
        try:
            shutil.copy2(src, tmp)
            fd = os.open(tmp, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    @staticmethod
    def _commit(tmp: str, target: str) -> bool:
        """Move a finished temporary file to ``target`` without ever replacing a file there.

        A hard link is the atomic "create only if absent"; where the destination cannot hold
        links (FAT, some network shares) os.replace after a last check has to do."""
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:
            if os.path.lexists(target):
                return False
            os.replace(tmp, target)
            return True
        _unlink_quietly(tmp)
        return True

    # -- sidecars ---------------------------------------------------------------------------

    def _listing(self, directory: str) -> list[str]:
        if directory not in self._listings:
            try:
                self._listings[directory] = os.listdir(directory)
            except OSError:
                self._listings[directory] = []
        return self._listings[directory]

    def _export_sidecars(self, src: str, final_name: str) -> None:
        directory, name = os.path.split(src)
        stem = os.path.splitext(name)[0]
        final_stem = os.path.splitext(final_name)[0]
        for entry in self._listing(directory):
            lower = entry.lower()
            for ext in SIDECAR_EXTENSIONS:
                if lower == (name + ext).lower():  # photo.jpg.xmp
                    target_name = final_name + entry[len(name):]
                elif lower == (stem + ext).lower():  # photo.xmp
                    target_name = final_stem + entry[len(stem):]
                else:
                    continue
                self._export_sidecar(os.path.join(directory, entry), target_name)

    def _export_sidecar(self, src: str, target_name: str) -> None:
        target = os.path.join(self.dest, target_name)
        try:
            source = _Source(src, os.stat(src).st_size)
            if os.path.lexists(target):
                if not source.same_content(target):
                    self.report.skipped.append(
                        (src, f"sidecar not exported: {target_name} exists with other content"))
                return
            tmp = self._copy_to_temp(src)
            if self._commit(tmp, target):
                self.report.sidecars += 1
            else:
                _unlink_quietly(tmp)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            self.report.errors.append((src, f"sidecar: {_reason(exc)}"))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
