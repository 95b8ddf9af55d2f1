"""Folder scanning: incremental, rename-aware, mark-and-sweep for deleted files.

A file is re-read only when its (size, mtime) changed. New or changed files are hashed, their
metadata read and the model-free checks computed (a thread pool: Pillow releases the GIL while
decoding). Results are written in batches. A new path whose content hash matches a photo whose
file is gone is the same photo moved or renamed (see ``Library.upsert_scanned``). Files that
disappear are marked missing, never forgotten: their flags stay.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from photosense.errors import DecodeError
from photosense.ingest.decode import file_digest, is_image_path, open_image
from photosense.ingest.metadata import read_metadata
from photosense.library import FolderInfo, Library, ScanRecord

log = logging.getLogger("photosense.ingest")

CHECK_SIDE = 1024  # checks run on a copy at most this large (they normalise size themselves)
WRITE_BATCH = 64

ProgressFn = Callable[[int, int], None]


@dataclass
class ScanReport:
    added: int = 0
    updated: int = 0
    moved: int = 0
    missing: int = 0
    restored: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False

    def merge(self, other: ScanReport) -> None:
        for name in ("added", "updated", "moved", "missing", "restored", "unchanged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.cancelled = self.cancelled or other.cancelled

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} updated", f"{self.moved} moved",
                 f"{self.missing} missing", f"{self.unchanged} unchanged"]
        if self.restored:
            parts.append(f"{self.restored} back")
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable")
        return ", ".join(parts)


def walk_images(root: str) -> Iterator[tuple[str, int, float]]:
    """Yield (path, size, mtime) of image files under ``root``, recursively.

    Follows symlinked folders but never the same folder twice (no symlink loops); skips hidden
    files and folders; files that vanish while walking are skipped.
    """
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            st = os.stat(directory)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            log.warning("cannot read folder %s: %s", directory, exc.strerror)
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():  # follows symlinks; loops stopped by `seen`
                    subdirs.append(entry.path)
                    continue
                if not is_image_path(entry.name):
                    continue
                st = entry.stat()
            except OSError:
                continue  # vanished or a dangling link
            if stat.S_ISREG(st.st_mode):
                yield entry.path, st.st_size, st.st_mtime
        stack.extend(sorted(subdirs, reverse=True))


def analyse_file(path: str, size: int, mtime: float) -> ScanRecord:
    """Hash, metadata and checks for one file. Never raises for a bad file: the problem is
    returned as the record's ``error``."""
    from photosense.scoring.checks import compute_checks

    digest = None
    try:
        digest = file_digest(path)
        image = open_image(path, max_side=CHECK_SIDE)
        meta = read_metadata(image)  # open_image keeps the source size and EXIF it needs
        checks = compute_checks(image).as_dict()
        return ScanRecord(path=path, size=size, mtime=mtime, content_hash=digest,
                          width=meta.width, height=meta.height, capture_time=meta.capture_time,
                          camera=meta.camera, checks=checks)
    except DecodeError as exc:
        return ScanRecord(path=path, size=size, mtime=mtime, content_hash=digest, error=str(exc))
    except MemoryError:
        return ScanRecord(path=path, size=size, mtime=mtime, content_hash=digest,
                          error="not enough memory to decode this image")


class Scanner:
    """Scans library folders into a Library. One instance may be reused."""

    def __init__(self, library: Library, workers: int | None = None):
        self.library = library
        self.workers = workers or min(4, os.cpu_count() or 2)

    def scan_all(self, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> ScanReport:
        report = ScanReport()
        for folder in self.library.folders():
            report.merge(self.scan_folder(folder, progress, cancel))
            if report.cancelled:
                break
        return report

    def scan_folder(self, folder: FolderInfo, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None) -> ScanReport:
        report = ScanReport()
        known = self.library.known_files(folder.id)
        if not os.path.isdir(folder.path):
            # Unmounted drive or deleted folder: keep everything, mark it missing.
            self.library.set_folder_missing(folder.id, True)
            report.missing = self.library.set_missing(known.keys(), True)
            return report
        if folder.missing:
            self.library.set_folder_missing(folder.id, False)
        todo: list[tuple[str, int, float]] = []
        restored: list[str] = []
        seen: set[str] = set()
        for path, size, mtime in walk_images(folder.path):
            seen.add(path)
            old = known.get(path)
            if old is not None and old[1] == size and old[2] == mtime:
                report.unchanged += 1
                if old[3]:
                    restored.append(path)
                continue
            todo.append((path, size, mtime))
        if restored:
            report.restored = self.library.set_missing(restored, False)
        self._analyse(folder.id, todo, report, progress, cancel)
        if not report.cancelled:
            gone = [p for p, info in known.items() if p not in seen and not info[3]]
            # A photo that moved within this scan was re-pointed already; only mark the rest.
            report.missing += self.library.set_missing(gone, True)
        return report

    def scan_paths(self, paths: Iterable[str]) -> ScanReport:
        """Re-examine specific paths (from the folder watcher): new, changed or deleted files
        and folders."""
        report = ScanReport()
        by_folder: dict[int, list[tuple[str, int, float]]] = {}
        gone: list[str] = []
        for path in paths:
            folder = self.library.folder_for_path(path)
            if folder is None:
                continue
            if os.path.isdir(path):
                known = set(self.library.paths_under(path))
                found = set()
                for p, size, mtime in walk_images(path):
                    found.add(p)
                    by_folder.setdefault(folder.id, []).append((p, size, mtime))
                gone.extend(known - found)
                continue
            try:
                st = os.stat(path)
            except OSError:
                gone.append(path)
                gone.extend(self.library.paths_under(path))  # a folder that was removed
                continue
            if stat.S_ISREG(st.st_mode) and is_image_path(path):
                by_folder.setdefault(folder.id, []).append((path, st.st_size, st.st_mtime))
        for folder_id, items in by_folder.items():
            known = self.library.known_files(folder_id)
            todo = []
            for path, size, mtime in items:
                old = known.get(path)
                if old is not None and old[1] == size and old[2] == mtime and not old[3]:
                    report.unchanged += 1
                else:
                    todo.append((path, size, mtime))
            self._analyse(folder_id, todo, report, None, None)
        if gone:
            report.missing += self.library.set_missing(gone, True)
        return report

    def _analyse(self, folder_id: int, todo: list[tuple[str, int, float]], report: ScanReport,
                 progress: ProgressFn | None, cancel: threading.Event | None) -> None:
        total = len(todo)
        if progress:
            progress(0, total)
        if not todo:
            return
        batch: list[ScanRecord] = []
        done = 0
        with ThreadPoolExecutor(self.workers, thread_name_prefix="photosense-scan") as pool:
            # Bounded look-ahead keeps memory flat on huge folders.
            window = self.workers * 4
            pending = []
            items = iter(todo)
            for item in items:
                pending.append(pool.submit(analyse_file, *item))
                if len(pending) < window:
                    continue
                done = self._drain(pending.pop(0).result(), batch, folder_id, report, done)
                if progress:
                    progress(done, total)
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                    break
            for fut in pending:
                if report.cancelled:
                    fut.cancel()
                    continue
                done = self._drain(fut.result(), batch, folder_id, report, done)
                if progress:
                    progress(done, total)
        self._flush(batch, folder_id, report)

    def _drain(self, rec: ScanRecord, batch: list[ScanRecord], folder_id: int,
               report: ScanReport, done: int) -> int:
        batch.append(rec)
        if rec.error:
            report.errors.append((rec.path, rec.error))
            log.warning("%s: %s", rec.path, rec.error)
        if len(batch) >= WRITE_BATCH:
            self._flush(batch, folder_id, report)
        return done + 1

    def _flush(self, batch: list[ScanRecord], folder_id: int, report: ScanReport) -> None:
        if not batch:
            return
        outcome = self.library.upsert_scanned(folder_id, batch)
        for kind in outcome.values():
            setattr(report, kind, getattr(report, kind) + 1)
        batch.clear()
        self._import_sidecars(list(outcome))

    def _import_sidecars(self, paths: list[str]) -> None:
        """Read existing XMP sidecars of new or changed photos (a bad one never stops a scan)."""
        from photosense.curation.xmp import import_sidecars

        try:
            import_sidecars(self.library, paths)
        except Exception:
            log.exception("reading XMP sidecars failed")
