"""Folder scanning: incremental, rename-aware, mark-and-sweep for deleted files.

A file is re-read only when its (size, mtime) changed. New or changed files are hashed, their
metadata read, the model-free checks computed and faces found (:mod:`photosense.ingest.
analysis`): on a thread pool, or, for a big scan of the command line or the window, in worker
processes that start reading while the walk goes on (:mod:`photosense.ingest.workers`; the most
recently changed folders are walked first, so a new shoot is found first). Results are written
in batches. When the library scores at the size the checks decode at (the default), the
decoded pixels are kept for scoring (:mod:`photosense.ingest.handoff`). A new path whose
content hash matches a photo whose
file is gone is the same photo moved or renamed (see ``Library.upsert_scanned``). Files that
disappear are marked missing, never forgotten: their flags stay.

A RAW file and a JPEG (or other image) of the same shot, side by side with the same stem
(``IMG_1.CR2`` + ``IMG_1.JPG``), are one photo: its path is the RAW, the JPEG its companion.
Checks and metadata come from the JPEG (as the camera rendered it, and faster to decode); the
content hash is a digest over both files' digests (:func:`pair_digest`), so that re-saving only
the JPEG, which scoring decodes, is a content change too. A JPEG known alone whose RAW appears
becomes the pair; a pair whose RAW is deleted goes on as the JPEG alone; one whose JPEG is
deleted as the RAW alone.

XMP sidecars (``photo.jpg.xmp``, ``photo.xmp``) are stat'ed during the walk. Those of new or
changed photos are read; those of unchanged photos only when their (size, mtime) differs from
when photosense last read or wrote them (an edit in Lightroom or darktable): see
:func:`photosense.curation.xmp.import_sidecars` for who wins. A bad sidecar is one of the
report's errors and is tried again next scan; the others are imported. Temporary files that a
killed sidecar write left in a scanned folder (photosense's own, stale) are deleted.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import stat
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from photosense.errors import is_transient_error
from photosense.fsutil import is_own_temporary, sweep_temporaries
from photosense.ingest import activity, workers
from photosense.ingest.analysis import CHECK_SIDE, analyse, pair_digest  # noqa: F401 - re-exported
from photosense.ingest.crash_guard import READER_CRASHED
from photosense.ingest.decode import IMAGE_EXTENSIONS, is_image_path, is_raw_path
from photosense.library import FolderInfo, Library, ScanRecord

log = logging.getLogger("photosense.ingest")

WRITE_BATCH = 64
#: A scan writes what it has read at least this often (and its first photo at once): new photos
#: appear in the window as they are read, and scoring in the same process follows the scan
#: (photosense.ingest.activity) instead of waiting for its end.
WRITE_SECONDS = 1.0

#: ``progress(done, total)`` for a scan's files; a later pass of the same scan adds what it is as
#: a third argument (``progress(done, total, "finding faces")``).
ProgressFn = Callable[..., None]
FACES_STAGE = "finding faces"

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def default_workers() -> int:
    return min(4, os.cpu_count() or 2)


def analysis_pool(workers: int) -> ThreadPoolExecutor:
    """The process's scan workers (one pool per size, kept while the process lives). The face
    models are loaded once per worker thread (LiteRT interpreters are per thread): kept
    threads keep them loaded from one scan or watch batch to the next, instead of loading
    them again (about 0.1-0.2 s) for every scan."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="photosense-scan")
        return pool


def finish(futures: list[Future]) -> None:
    """Cancel what has not started of ``futures`` and wait for the rest: nothing of a scan
    runs on after it returned."""
    for fut in futures:
        fut.cancel()
    wait(futures)


def warm_up(workers: int | None = None) -> float:
    """Load the analysis models (faces) in every scan worker thread now, so that the first
    photos of the next scan do not wait for them. Returns the seconds it took."""
    import time

    from PIL import Image

    from photosense.scoring.faces import faces_or_none

    n = max(1, workers or default_workers())
    started = time.perf_counter()
    barrier = threading.Barrier(n)

    def load() -> None:
        try:
            barrier.wait(timeout=30)  # one of these per thread, not two in one
        except threading.BrokenBarrierError:
            pass
        faces_or_none(Image.new("RGB", (32, 32)))

    pool = analysis_pool(n)
    for fut in [pool.submit(load) for _ in range(n)]:
        fut.result()
    return time.perf_counter() - started

# Which image beside a RAW is its companion, when there are several: the first of these.
_COMPANION_PREFERENCE = (".jpg", ".jpeg", ".jpe", ".heic", ".heif", ".tif", ".tiff", ".png",
                         ".webp")

#: (path, size, mtime, companion path): one photo to scan. For a RAW+JPEG pair, ``path`` is the
#: RAW, size both files' sizes added and mtime the newer of the two.
ScanUnit = tuple[str, int, float, str | None]


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
    # Files of kinds photosense does not read: {lower-case extension ("" for none): count}.
    skipped: dict[str, int] = field(default_factory=dict)

    def merge(self, other: ScanReport) -> None:
        for name in ("added", "updated", "moved", "missing", "restored", "unchanged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.cancelled = self.cancelled or other.cancelled
        for ext, count in other.skipped.items():
            self.skipped[ext] = self.skipped.get(ext, 0) + count

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} updated", f"{self.moved} moved",
                 f"{self.missing} missing", f"{self.unchanged} unchanged"]
        if self.restored:
            parts.append(f"{self.restored} back")
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable")
        if self.skipped:
            parts.append(f"{sum(self.skipped.values())} skipped ({describe_skipped(self.skipped)})")
        return ", ".join(parts)


def describe_skipped(skipped: dict[str, int]) -> str:
    """ "3 .mov, 1 .psd, 1 without extension": most first, then by name."""
    items = sorted(skipped.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{count} {ext or 'without extension'}" for ext, count in items)


def _same_stem(path: str) -> list[tuple[str, int, float]]:
    """(path, size, mtime) of the image files beside ``path`` with its stem, itself included."""
    directory, name = os.path.split(path)
    stem = os.path.splitext(name)[0].lower()
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or os.path.splitext(entry.name)[0].lower() != stem:
            continue
        if not is_image_path(entry.name):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((entry.path, st.st_size, st.st_mtime))
    return found


SidecarStats = dict[str, tuple[int, int]]  # sidecar path -> (size, mtime_ns)


def is_sidecar_path(path: str) -> bool:
    return path.lower().endswith(".xmp")


# Other apps' edit files beside photos (not photos, and not worth reporting as skipped):
# RawTherapee, DxO, ON1, Capture One, Apple Photos edits, ACDSee.
_OTHER_SIDECARS = frozenset({".pp3", ".dop", ".on1", ".cos", ".cot", ".cof", ".comask", ".aae"})


def walk_images(root: str, sidecars: SidecarStats | None = None,
                skipped: Counter[str] | None = None,
                temporaries: list[str] | None = None) -> Iterator[tuple[str, int, float]]:
    """Yield (path, size, mtime) of image files under ``root``, recursively; XMP sidecars
    found on the way go into ``sidecars`` when given, the lower-case extension ("" for none)
    of every other file, which photosense does not read, is counted in ``skipped``, and the
    temporary files of photosense's own sidecar writes (:func:`photosense.fsutil.
    is_own_temporary`) go into ``temporaries``.

    Follows symlinked folders but never the same folder twice (no symlink loops); skips hidden
    files and folders (not counted); files that vanish while walking are skipped.
    """
    for files in walk_folders(root, sidecars, skipped, temporaries):
        yield from files


def walk_folders(root: str, sidecars: SidecarStats | None = None,
                 skipped: Counter[str] | None = None,
                 temporaries: list[str] | None = None,
                 newest_first: bool = False) -> Iterator[list[tuple[str, int, float]]]:
    """:func:`walk_images` a folder at a time: the (path, size, mtime) of each folder's image
    files as one list (folders without images give none), each folder once. Subfolders in
    name order, or with ``newest_first`` the most recently changed first (a folder's time
    changes when files are added to it or removed: a new shoot is then found first)."""
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
        files = []
        for entry in entries:
            if entry.name.startswith("."):
                if temporaries is not None and is_own_temporary(entry.name):
                    temporaries.append(entry.path)
                continue
            try:
                if entry.is_dir():  # follows symlinks; loops stopped by `seen`
                    subdirs.append((entry.stat().st_mtime if newest_first else 0.0, entry.path))
                    continue
                ext = _extension(entry.name)
                if ext == ".xmp":
                    if sidecars is not None:
                        st = entry.stat()
                        if stat.S_ISREG(st.st_mode):
                            sidecars[entry.path] = (st.st_size, st.st_mtime_ns)
                    continue
                if ext not in IMAGE_EXTENSIONS:
                    if skipped is not None and ext not in _OTHER_SIDECARS \
                            and stat.S_ISREG(entry.stat().st_mode):
                        skipped[ext] += 1
                    continue
                st = entry.stat()
            except OSError:
                continue  # vanished or a dangling link
            if stat.S_ISREG(st.st_mode):
                files.append((entry.path, st.st_size, st.st_mtime))
        if files:
            yield files
        # Taken from the end: the first in name order (of the newest) last.
        subdirs.sort(key=lambda d: d[1], reverse=True)
        subdirs.sort(key=lambda d: d[0])
        stack.extend(d[1] for d in subdirs)


def pair_files(files: Iterable[tuple[str, int, float]]) -> list[ScanUnit]:
    """Group files into photos: a RAW and an image with the same stem (case-insensitive) in
    the same folder are one pair; everything else is a photo of its own."""
    # A file alone (most files: a 100k rescan) is its group itself, a list only where
    # several share a stem.
    groups: dict[tuple[str, str], tuple[str, int, float] | list[tuple[str, int, float]]] = {}
    for item in files:
        key = _folder_and_stem(item[0])
        found = groups.get(key)
        if found is None:
            groups[key] = item
        elif isinstance(found, list):
            found.append(item)
        else:
            groups[key] = [found, item]
    units: list[ScanUnit] = []
    for members in groups.values():
        if not isinstance(members, list):
            path, size, mtime = members
            units.append((path, size, mtime, None))
            continue
        raws = sorted((m for m in members if is_raw_path(m[0])), key=lambda m: m[0])
        others = sorted((m for m in members if not is_raw_path(m[0])), key=_companion_rank)
        if raws and others:
            (raw, raw_size, raw_mtime), (jpeg, jpeg_size, jpeg_mtime) = raws[0], others[0]
            units.append((raw, raw_size + jpeg_size, max(raw_mtime, jpeg_mtime), jpeg))
            raws, others = raws[1:], others[1:]
        units.extend((p, size, mtime, None) for p, size, mtime in raws + others)
    return units


def _extension(name: str) -> str:
    """``os.path.splitext(name)[1].lower()`` of a file name that does not start with a dot
    (the walk skips those), without splitext's cost: it runs for every file of a 100k rescan."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _folder_and_stem(path: str) -> tuple[str, str]:
    """(folder, lower-case stem) of a path, as ``os.path.split`` and ``os.path.splitext``
    give them for the paths a scan finds (joined by ``os.scandir``, so normalised), but at a
    fraction of their cost: a rescan groups every file of the library."""
    cut = path.rfind(os.sep)
    if os.altsep:
        cut = max(cut, path.rfind(os.altsep))
    folder, name = path[:cut + 1], path[cut + 1:]
    dot = name.rfind(".")
    if dot > 0 and name[0] != ".":
        name = name[:dot]
    elif name.startswith("."):
        name = os.path.splitext(name)[0]
    return folder, name.lower()


def _companion_rank(item: tuple[str, int, float]) -> tuple[int, str]:
    ext = os.path.splitext(item[0])[1].lower()
    rank = _COMPANION_PREFERENCE.index(ext) if ext in _COMPANION_PREFERENCE else 99
    return rank, item[0]


def analyse_file(path: str, size: int, mtime: float,
                 companion_path: str | None = None, handoff: bool = False) -> ScanRecord:
    """Hash, metadata, checks and faces for one photo (see
    :func:`photosense.ingest.analysis.analyse`). Never raises for a bad file: the problem is
    returned as the record's ``error``."""
    return ScanRecord(**analyse(path, size, mtime, companion_path, handoff=handoff))


def _newly_crashed(path: str, companion: str | None, error: str | None) -> bool:
    """Whether an unchanged photo's file crashed a reader since it was read (the window's
    thumbnails, scoring): it is read again, so that its record gets the error."""
    from photosense.ingest import crash_guard

    return error != READER_CRASHED and any(
        crash_guard.is_quarantined(p) for p in (path, companion) if p)


def _quarantine(paths: list[str]) -> None:
    from photosense.ingest import crash_guard

    try:
        crash_guard.quarantine(paths)
    except OSError as exc:
        log.warning("cannot write the list of files that crash photosense: %s", exc)


class _FolderAnalysis:
    """The photos of one folder scan that need reading, analysed as the walk finds them.

    Once :data:`~photosense.ingest.workers.PROCESS_MIN` are found, worker processes start
    and every photo found goes to them at once; their records are written as they come in
    (the walk waits only when :attr:`PENDING_MAX` are outstanding). A smaller scan is read in
    the scan's threads when the walk is done.

    Should a worker die (a decoder crashed on a file, or the system killed it), the photos
    the workers were reading at that moment are read again one at a time, each in a process
    of its own: one that kills that process too is recorded as unreadable
    (:data:`READER_CRASHED`), never read in this process, where it would take the scan and
    the window down with it. The rest go to new processes. Should processes not run at all
    (a probe process fails too), or break :attr:`BREAKS_MAX` times, what is left is read in
    threads.
    """

    PENDING_MAX = 1024
    BREAKS_MAX = 8

    def __init__(self, scanner: Scanner, folder_id: int, report: ScanReport,
                 progress: ProgressFn | None, cancel: threading.Event | None):
        self.scanner, self.folder_id, self.report = scanner, folder_id, report
        self.progress, self.cancel = progress, cancel
        self.use_processes = scanner.processes
        self.processes = None
        self.waiting: list[ScanUnit] = []  # for the threads
        self.pending: deque[tuple[ScanUnit, Future]] = deque()  # in the processes
        self.batch: list[ScanRecord] = []
        self.found = self.done = self.breaks = 0

    def add(self, unit: ScanUnit) -> None:
        self.found += 1
        if self.processes is None:
            self.waiting.append(unit)
            if self.use_processes and len(self.waiting) >= workers.PROCESS_MIN:
                if self.progress:
                    self.progress(0, self.found)
                units, self.waiting = self.waiting, []
                self._start(units)
            return
        if self.report.cancelled:
            return
        self._submit(unit)
        while self.pending and (self.pending[0][1].done() or len(self.pending) > self.PENDING_MAX):
            self._take()

    def finish(self) -> None:
        """After the walk: wait for the processes' records, or read the photos in threads."""
        in_processes = self.processes is not None
        while self.pending and not self.report.cancelled:
            self._take()
        self.scanner._flush(self.batch, self.folder_id, self.report)
        if self.report.cancelled:
            return
        if not in_processes or self.waiting:  # a thread scan (or what failed processes left)
            self.scanner._analyse(self.folder_id, self.waiting, self.report, self.progress,
                                  self.cancel)

    def close(self) -> None:
        if self.processes is not None:
            self.processes.close()
            self.processes = None

    def _start(self, units: list[ScanUnit]) -> None:
        self.processes = workers.start_processes(self.scanner.workers, self.scanner.target())
        if self.processes is None:
            self.use_processes = False
            self.waiting.extend(units)
            return
        for unit in units:
            self._submit(unit)

    @staticmethod
    def _args(unit: ScanUnit) -> tuple:
        return unit if unit[3] is not None else unit[:3]  # a file alone: (path, size, mtime)

    def _submit(self, unit: ScanUnit) -> None:
        if self.processes is None:  # they failed on the way: to the threads
            self.waiting.append(unit)
            return
        try:
            fut = self.processes.submit(self._args(unit))
        except (BrokenProcessPool, OSError, RuntimeError):  # broke meanwhile, or cannot spawn
            self._broken([u for u, _ in self.pending] + [unit])
            return
        self.pending.append((unit, fut))

    def _take(self) -> None:
        unit, fut = self.pending.popleft()
        try:
            rec = ScanRecord(**fut.result())
        except BrokenProcessPool:
            self._broken([unit] + [u for u, _ in self.pending])
            return
        self._record(rec)

    def _record(self, rec: ScanRecord) -> None:
        self.done = self.scanner._drain(rec, self.batch, self.folder_id, self.report, self.done)
        if self.progress:
            self.progress(self.done, self.found)
        if self.cancel is not None and self.cancel.is_set():
            self.report.cancelled = True

    def _broken(self, unreturned: list[ScanUnit]) -> None:
        """A worker died: ``unreturned`` are all the units the pool had not returned, in the
        order they were handed out, so those being read are among the first ``workers + 1``
        (a photo a worker had finished but not yet sent is one more). Those are read again one
        at a time; a culprit missed here is first in line in the next pool, and found then."""
        self.pending.clear()
        self.close()
        self.breaks += 1
        if self.breaks > self.BREAKS_MAX:
            self._to_threads(unreturned)
            return
        suspects = unreturned[:self.scanner.workers + 1]
        log.warning("a scan worker process stopped unexpectedly: reading %s again, each in a "
                    "process of its own", ", ".join(os.path.basename(u[0]) for u in suspects))
        for unit in suspects:
            self._read_alone(unit)
        rest = unreturned[len(suspects):]
        if not self.use_processes:
            self.waiting.extend(rest)
        elif not self.report.cancelled:
            self._start(rest)

    def _to_threads(self, units: list[ScanUnit]) -> None:
        log.warning("scan worker processes stopped unexpectedly: reading the %d photos the "
                    "workers had not read in this process", len(units))
        self.use_processes = False
        self.waiting.extend(units)

    def _read_alone(self, unit: ScanUnit) -> None:
        """``unit`` in a worker process of its own: recorded as unreadable if it kills that
        one too and processes do run here; in the threads if processes cannot be used."""
        alone = workers.start_processes(1, self.scanner.target()) if self.use_processes else None
        if alone is None:
            self.use_processes = False
            self.waiting.append(unit)
            return
        try:
            try:
                fut = alone.submit(self._args(unit))
            except (BrokenProcessPool, OSError, RuntimeError):  # broken before it was read
                self._to_threads([unit])
                return
            try:
                fields = fut.result()
            except BrokenProcessPool:
                if not workers.processes_run():  # not this photo's doing
                    self._to_threads([unit])
                    return
                fields = {"path": unit[0], "size": unit[1], "mtime": unit[2],
                          "companion_path": unit[3], "content_hash": None, "error": READER_CRASHED}
                # Nor in any other reader (thumbnails, scoring, a small scan) in this process.
                _quarantine([p for p in (unit[0], unit[3]) if p])
        finally:
            alone.close()
        self._record(ScanRecord(**fields))


class Scanner:
    """Scans library folders into a Library. One instance may be reused."""

    def __init__(self, library: Library, workers: int | None = None, processes: bool = False):
        self.library = library
        self.workers = workers or default_workers()
        # With ``processes``, a folder scan with many photos to read analyses them in worker
        # processes (see photosense.ingest.workers). They are started with "spawn", which
        # imports the program's main script again in each: only a program whose main script
        # runs nothing on import (``if __name__ == "__main__":``) may ask for them, as
        # photosense's command line and window do.
        self.processes = processes
        self.process_target = None  # what the processes run (default: analysis.analyse)
        # Keep the decoded images of the photos read for scoring (photosense.ingest.handoff):
        # None = when the library scores at the scan's decode size.
        self.handoff: bool | None = None
        self._handoff = False
        self._listing = None  # a folder scan's listings for sidecar lookups (each folder once)
        self.activity = activity.for_library(library)
        self._last_write = -math.inf  # time.monotonic() of the last write: the first goes at once

    def target(self):
        """What the worker processes run for a photo."""
        if self.process_target is not None:
            return self.process_target
        return functools.partial(analyse, handoff=True) if self._handoff else analyse

    def _begin(self) -> None:
        """Before a scan: whether it keeps decoded images, and the stale ones swept."""
        from photosense.ingest import handoff

        self._handoff = self.handoff if self.handoff is not None else handoff.wanted(self.library)
        if self._handoff:
            handoff.sweep()

    def scan_all(self, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> ScanReport:
        report = ScanReport()
        with self.activity.scanning():  # one scan from the first folder to the last
            for folder in self.library.folders():
                report.merge(self.scan_folder(folder, progress, cancel))
                if report.cancelled:
                    break
        return report

    def scan_folder(self, folder: FolderInfo, progress: ProgressFn | None = None,
                    cancel: threading.Event | None = None) -> ScanReport:
        with self.activity.scanning():
            return self._scan_folder(folder, progress, cancel)

    def _scan_folder(self, folder: FolderInfo, progress: ProgressFn | None,
                     cancel: threading.Event | None) -> ScanReport:
        report = ScanReport()
        from photosense.ingest import crash_guard

        crash_guard.wait_for_checks(cancel)  # files that crashed photosense are known first
        self._begin()
        known = self.library.known_files(folder.id)
        companions = self.library.companion_paths(folder.id)
        if not os.path.isdir(folder.path):
            # Unmounted drive or deleted folder: keep everything, mark it missing.
            self.library.set_folder_missing(folder.id, True)
            report.missing = self.library.set_missing(known.keys(), True)
            return report
        if folder.missing:
            self.library.set_folder_missing(folder.id, False)
        todo: list[ScanUnit] = []
        restored: list[str] = []
        seen: set[str] = set()
        sidecars: SidecarStats = {}
        skipped: Counter[str] = Counter()
        temporaries: list[str] = []
        from photosense.curation.xmp import FolderListing

        analysis = _FolderAnalysis(self, folder.id, report, progress, cancel)
        self._listing = FolderListing()
        try:
            # A folder at a time: a RAW and its JPEG are always in the same folder, so its
            # pairs are known once it is listed, and the photos to read go to the analysis
            # (worker processes in a big scan) while the walk goes on.
            for files in walk_folders(folder.path, sidecars, skipped, temporaries,
                                      newest_first=True):
                quarantined = crash_guard.quarantined_files()
                for path, size, mtime, companion in pair_files(files):
                    seen.add(path)
                    if companion is not None:
                        seen.add(companion)
                    old = known.get(path)
                    if (old is not None and old[1] == size and old[2] == mtime
                            and companions.get(path) == companion
                            and not is_transient_error(old[4])
                            and not ((path in quarantined or companion in quarantined)
                                     and _newly_crashed(path, companion, old[4]))):
                        report.unchanged += 1
                        if old[3]:
                            restored.append(path)
                        continue
                    unit = (path, size, mtime, companion)
                    todo.append(unit)
                    self.activity.found()
                    analysis.add(unit)
            report.skipped = dict(skipped)
            self.library.set_skipped_files(folder.id, report.skipped)
            if skipped:
                log.info("%s: skipped %s (not photos photosense reads)", folder.path,
                         describe_skipped(report.skipped))
            if restored:
                report.restored = self.library.set_missing(restored, False)
            analysis.finish()
        finally:
            analysis.close()
            self._listing = None
        if not report.cancelled:
            # Photos known from before faces were looked for (or from an older face model).
            from photosense.ingest.faces_scan import backfill_faces

            report.cancelled = not backfill_faces(self.library, folder.id, self.workers,
                                                  progress, cancel)
        if not report.cancelled:
            gone = [p for p, info in known.items() if p not in seen and not info[3]]
            # A photo that moved within this scan was re-pointed already; only mark the rest.
            report.missing += self.library.set_missing(gone, True)
            marks = self.library.sidecar_marks(folder.id)
            self._reimport_sidecars(folder.id, {p: st for p, st in sidecars.items()
                                                if marks.get(p) != st},
                                    skip={unit[0] for unit in todo}, report=report)
        # Temporary files a killed sidecar write left behind (only photosense's own, stale).
        sweep_temporaries(temporaries)
        return report

    def _reimport_sidecars(self, folder_id: int, changed: SidecarStats, skip: set[str],
                           report: ScanReport) -> None:
        """Read sidecars edited by another app since photosense last read or wrote them, for
        the photos they belong to (those in ``skip`` were just read with their photo). Each
        sidecar is remembered as read only once it was imported: a bad one is tried again."""
        if not changed:
            return
        # lower-case sidecar name -> (photo path, id); None where several photos share it
        owners: dict[str, tuple[str, int] | None] = {}
        companions = self.library.companion_paths(folder_id)
        for path, info in self.library.known_files(folder_id).items():
            names = set()
            for f in (path, companions.get(path)):
                if f:
                    names.update((f.lower() + ".xmp", os.path.splitext(f)[0].lower() + ".xmp"))
            for name in names:
                owners[name] = (path, info[0]) if name not in owners else None
        photos: list[str] = []
        prefer: dict[str, str] = {}
        for sidecar in changed:
            owner = owners.get(sidecar.lower())
            if owner is None or owner[0] in skip:
                continue  # a sidecar of no known photo (or of several), or just read
            if owner[0] not in prefer:
                photos.append(owner[0])
                prefer[owner[0]] = sidecar  # the edited one gives the values
        self._import_sidecars(photos, report, prefer)

    def scan_paths(self, paths: Iterable[str]) -> ScanReport:
        """Re-examine specific paths (from the folder watcher): new, changed or deleted files
        and folders."""
        with self.activity.scanning():
            return self._scan_paths(paths)

    def _scan_paths(self, paths: Iterable[str]) -> ScanReport:
        report = ScanReport()
        self._begin()
        by_folder: dict[int, dict[str, tuple[str, int, float]]] = {}
        sidecars: dict[int, SidecarStats] = {}
        gone: list[str] = []
        folders = self.library.folders()
        for path in paths:
            folder = self.library.folder_for_path(path, folders)
            if folder is None:
                continue
            if is_sidecar_path(path):
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # a deleted sidecar changes nothing in the library
                if stat.S_ISREG(st.st_mode):
                    sidecars.setdefault(folder.id, {})[path] = (st.st_size, st.st_mtime_ns)
                continue
            if os.path.isdir(path):
                known = set(self.library.paths_under(path))
                found = set()
                for p, size, mtime in walk_images(path):
                    found.add(p)
                    by_folder.setdefault(folder.id, {})[p] = (p, size, mtime)
                gone.extend(known - found)
                continue
            try:
                os.stat(path)
            except OSError:
                gone.append(path)
                gone.extend(self.library.paths_under(path))  # a folder that was removed
            # The other half of a RAW+JPEG pair is scanned with it (it may pair or part now).
            if is_image_path(path):
                for item in _same_stem(path):
                    by_folder.setdefault(folder.id, {})[item[0]] = item
        analysed: set[str] = set()
        for folder_id, items in by_folder.items():
            known = self.library.known_files(folder_id)
            companions = self.library.companion_paths(folder_id)
            todo = []
            for path, size, mtime, companion in pair_files(items.values()):
                old = known.get(path)
                if (old is not None and old[1] == size and old[2] == mtime and not old[3]
                        and companions.get(path) == companion
                        and not _newly_crashed(path, companion, old[4])):
                    report.unchanged += 1
                else:
                    todo.append((path, size, mtime, companion))
            analysed.update(unit[0] for unit in todo)
            self.activity.found(len(todo))
            self._analyse(folder_id, todo, report, None, None)
        if gone:
            report.missing += self.library.set_missing(gone, True)
        for folder_id, found in sidecars.items():
            marks = self.library.sidecar_marks(paths=found)
            # Our own writes match their marks; only edits by other apps are read.
            self._reimport_sidecars(folder_id, {p: st for p, st in found.items()
                                                if marks.get(p) != st},
                                    skip=analysed, report=report)
        return report

    def _analyse(self, folder_id: int, todo: list[ScanUnit], report: ScanReport,
                 progress: ProgressFn | None, cancel: threading.Event | None) -> None:
        total = len(todo)
        if progress:
            progress(0, total)
        if not todo:
            return
        batch: list[ScanRecord] = []
        done = 0
        pool = analysis_pool(self.workers)
        pending: list[Future] = []
        try:
            # Bounded look-ahead keeps memory flat on huge folders.
            window = self.workers * 4
            items = iter(todo)
            read = functools.partial(analyse_file, handoff=True) if self._handoff else analyse_file
            for item in items:
                args = item if item[3] is not None else item[:3]  # a file alone: (path, size, mtime)
                pending.append(pool.submit(read, *args))
                if len(pending) < window:
                    continue
                done = self._drain(pending.pop(0).result(), batch, folder_id, report, done)
                if progress:
                    progress(done, total)
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                    break
            for fut in pending:
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                if report.cancelled:
                    fut.cancel()
                    continue
                done = self._drain(fut.result(), batch, folder_id, report, done)
                if progress:
                    progress(done, total)
        finally:
            finish(pending)
        self._flush(batch, folder_id, report)

    def _drain(self, rec: ScanRecord, batch: list[ScanRecord], folder_id: int,
               report: ScanReport, done: int) -> int:
        if rec.error:
            report.errors.append((rec.path, rec.error))
            log.warning("%s: %s", rec.path, rec.error)
            if rec.transient:  # vanished or unreadable now: not recorded, seen again next scan
                self.activity.found(-1)
                return done + 1
        elif rec.warning:
            report.errors.append((rec.path, rec.warning))
            log.warning("%s: %s", rec.path, rec.warning)
        batch.append(rec)
        if len(batch) >= WRITE_BATCH or time.monotonic() - self._last_write >= WRITE_SECONDS:
            self._flush(batch, folder_id, report)
        return done + 1

    def _flush(self, batch: list[ScanRecord], folder_id: int, report: ScanReport) -> None:
        if not batch:
            return
        outcome = self.library.upsert_scanned(folder_id, batch)
        for kind in outcome.values():
            setattr(report, kind, getattr(report, kind) + 1)
        written = len(batch)
        batch.clear()
        self._import_sidecars(list(outcome), report)
        self._last_write = time.monotonic()
        self.activity.wrote(written)

    def _import_sidecars(self, paths: list[str], report: ScanReport,
                         prefer: dict[str, str] | None = None) -> None:
        """Read existing XMP sidecars of these photos. A bad sidecar never stops a scan: it
        is one of the report's errors (sidecar path, reason) and the others are imported."""
        from photosense.curation.xmp import import_sidecars

        if not paths:
            return
        errors: list[tuple[str, str]] = []
        try:
            import_sidecars(self.library, paths, errors=errors, prefer=prefer, listing=self._listing)
        except Exception:
            log.exception("reading XMP sidecars failed")
        report.errors.extend(errors)
