"""Files that crash photosense while it reads them: found after the crash, never read again.

Native decoders (libjpeg-turbo, libtiff, libwebp, libheif, LibRaw) can crash on a hostile or
broken file, and a crash ends the whole process. A big scan reads in worker processes and
survives that (:mod:`photosense.ingest.scan`); everything else reads in its own process: small
scans and the watcher, scoring, face backfill, thumbnails and the loupe. Without this, a file
that crashes the window would crash it again at every start, as soon as its thumbnail is drawn.

- While a file is being read (:func:`guard`, around :func:`~photosense.ingest.decode.open_image`
  and the RAW checks), it is written in this process's *reading journal*: one slot per thread
  in a small file under the data folder, one ``pwrite`` when the read starts and one when it
  ends. The kernel keeps what was written when the process dies; nothing is flushed to disk.
  The journal is locked for as long as its process lives.
- The next photosense process (:func:`recover`) finds the journals whose lock is free (their
  process is gone) and reads each file that was still being read again, in a process of its
  own. A file that crashes that process too is *quarantined*: kept with its size and
  modification time in ``crashed-files.json``, so that every read of it, in any photosense
  process, fails at once with :data:`READER_CRASHED` (a scan stores it as the photo's error,
  the window shows it) until the file changes. A file that reads fine there was not the
  cause (the process was killed, or ran out of memory) and is read as before.
- Until that check is done, such a file is a *suspect* in this process: reading it fails as a
  transient error (not stored, tried again later), so it cannot crash this process either.

A process that never calls :func:`start` keeps no journal (the scan's worker processes: a
crash there is the scan's to handle), but honours the quarantine all the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from photosense.errors import DecodeError

log = logging.getLogger("photosense.crashes")

#: The error of a file whose reading crashed the process reading it, twice (alone the second
#: time): it is not read again until the file changes.
READER_CRASHED = ("reading this file crashed the process reading it (a decoder failed on it): "
                  "skipped until the file changes")
SUSPECT = ("photosense stopped while reading this file last time: it is being read again in a "
           "separate process first")

JOURNAL_DIR = "reading"
QUARANTINE_FILE = "crashed-files.json"
QUARANTINE_MAX = 1000  # oldest forgotten first
SLOT = 8192  # bytes per thread in a journal: a JSON line (a path of up to PATH_MAX and more)
SLOTS = 512  # threads that can be noted; reads on more threads go unnoted
_LOCK_AT = 1 << 30  # the byte locked while the journal's process lives (beyond any slot)
PROBE_TIMEOUT = 120.0  # seconds a suspect may take to be read in its own process

_state_lock = threading.Lock()
_local = threading.local()
_checked = threading.Event()  # set while no check of suspects is going on
_checked.set()
_checking = 0  # checks of suspects going on (recover's threads)


class _Journal:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"{os.getpid()}.journal"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                          0o600)
        if not _try_lock(self.fd):
            os.close(self.fd)
            raise OSError(f"cannot lock {self.path}")
        self.next_slot = 0
        self.write_lock = threading.Lock()  # for systems without pwrite (seek + write)

    def write(self, slot: int, data: bytes) -> None:
        offset = slot * SLOT
        if hasattr(os, "pwrite"):
            os.pwrite(self.fd, data, offset)
        else:  # Windows
            with self.write_lock:
                os.lseek(self.fd, offset, os.SEEK_SET)
                os.write(self.fd, data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(OSError):
            self.path.unlink()


_journal: _Journal | None = None
_suspects: set[str] = set()
_quarantine: dict[str, tuple[int, float]] = {}
_quarantine_seen: tuple[float, float] | None = None  # (when checked, file mtime)


def _try_lock(fd: int) -> bool:
    """An exclusive lock on one byte of ``fd``'s file, without waiting: False when another
    process holds it. Released by the system when the process ends, however it ends."""
    try:
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, _LOCK_AT, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _LOCK_AT)
        return True
    except OSError:
        return False


def _journal_dir() -> Path:
    from photosense import settings

    return settings.data_dir() / JOURNAL_DIR


def start() -> None:
    """Keep a reading journal for this process from now on (again in a new data folder when
    it changed). A journal that cannot be made is one logged line: reads go unnoted."""
    global _journal
    directory = _journal_dir()
    with _state_lock:
        if _journal is not None and _journal.directory == directory:
            return
        if _journal is not None:
            _journal.close()
            _journal = None
        try:
            _journal = _Journal(directory)
        except OSError as exc:
            log.warning("files being read are not noted (%s): a file that crashes photosense "
                        "may crash it again", exc)
            return
    import atexit

    atexit.register(stop)


def stop() -> None:
    """Close and remove this process's journal (at exit; a crash leaves it for the next)."""
    global _journal
    with _state_lock:
        if _journal is not None:
            _journal.close()
            _journal = None


def _slot(journal: _Journal) -> int | None:
    slot = getattr(_local, "slot", None)
    if slot is None or getattr(_local, "journal", None) is not journal:
        with _state_lock:
            if journal.next_slot >= SLOTS:
                return None
            slot = journal.next_slot
            journal.next_slot += 1
        _local.slot, _local.journal = slot, journal
    return slot


@contextlib.contextmanager
def guard(path: str | os.PathLike[str], op: str = "open_image", **args) -> Iterator[None]:
    """Around a read of ``path`` by a native decoder: fails at once (DecodeError) for a
    quarantined file or a suspect; otherwise notes the read in this process's journal while
    it lasts. ``op`` and ``args`` say how to read it again (see :func:`_read_again`)."""
    path = os.fspath(path)
    check(path)
    journal = _journal
    if journal is None or getattr(_local, "depth", 0):
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            yield
        finally:
            _local.depth -= 1
        return
    slot = _slot(journal)
    entry = json.dumps({"op": op, "path": path, **args}, ensure_ascii=True).encode() + b"\n"
    noted = slot is not None and len(entry) < SLOT
    if noted:
        try:
            journal.write(slot, entry)
        except OSError:
            noted = False
    _local.depth = 1
    try:
        yield
    finally:
        _local.depth = 0
        if noted:
            with contextlib.suppress(OSError):
                journal.write(slot, b"\0")


def is_quarantined(path: str) -> bool:
    """Whether ``path`` is quarantined and unchanged since (a read of it would fail with
    :data:`READER_CRASHED`)."""
    try:
        check(path)
    except DecodeError as exc:
        return not exc.transient
    return False


def quarantined_files() -> dict[str, tuple[int, float]]:
    """Each quarantined path with the size and time it crashed at, for a loop over many files
    to look paths up in before it asks :func:`is_quarantined` of one (read-only)."""
    return _quarantined()


def wait_for_checks(cancel: threading.Event | None = None) -> None:
    """Return when the suspects :func:`recover` found have been read again (at once when
    there are none), or when ``cancel`` is set. Each check is bounded (:data:`PROBE_TIMEOUT`)."""
    while not _checked.wait(0.25):
        if cancel is not None and cancel.is_set():
            return


def check(path: str) -> None:
    """DecodeError when ``path`` must not be read: quarantined (and unchanged since), or a
    suspect of this process."""
    if path in _suspects:
        raise DecodeError(SUSPECT, transient=True)
    quarantine = _quarantined()
    if path in quarantine:
        try:
            st = os.stat(path)
        except OSError:
            return  # the read itself reports what is wrong
        if (st.st_size, st.st_mtime) == quarantine[path]:
            raise DecodeError(READER_CRASHED)


def _quarantine_path() -> Path:
    from photosense import settings

    return settings.data_dir() / QUARANTINE_FILE


def _quarantined() -> dict[str, tuple[int, float]]:
    """The quarantine, read again when its file changed (another process may add to it),
    looked at no more than once a second."""
    global _quarantine, _quarantine_seen
    now = time.monotonic()
    seen = _quarantine_seen
    if seen is not None and now - seen[0] < 1.0:
        return _quarantine
    path = _quarantine_path()
    try:
        mtime = path.stat().st_mtime
    except OSError:
        _quarantine, _quarantine_seen = {}, (now, -1.0)
        return _quarantine
    if seen is None or seen[1] != mtime:
        _quarantine = {e["path"]: (e["size"], e["mtime"]) for e in _read_quarantine(path)}
    _quarantine_seen = (now, mtime)
    return _quarantine


def _read_quarantine(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("files", [])
        return [e for e in entries if isinstance(e.get("path"), str)
                and isinstance(e.get("size"), int) and isinstance(e.get("mtime"), (int, float))]
    except (OSError, ValueError, AttributeError):
        return []


def quarantine(paths: list[str], why: str = READER_CRASHED) -> None:
    """Never read these files again until they change (in any photosense process)."""
    global _quarantine_seen
    from photosense.fsutil import write_bytes_atomically

    target = _quarantine_path()
    with _state_lock:
        entries = {e["path"]: e for e in _read_quarantine(target)}
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.pop(path, None)
            entries[path] = {"path": path, "size": st.st_size, "mtime": st.st_mtime, "why": why,
                             "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        kept = list(entries.values())[-QUARANTINE_MAX:]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(target, json.dumps({"files": kept}, indent=1).encode())
        _quarantine_seen = None  # read it again


def quarantined_paths() -> list[str]:
    """The files in quarantine (changed ones included, until they are read again)."""
    return list(_quarantined())


# ---------------------------------------------------------------------------------------------
# after a crash


def abandoned() -> list[dict]:
    """The reads that were going on in photosense processes that are gone, taken out of their
    journals (which are removed). This process's own journal is never one of them."""
    directory = _journal_dir()
    own = _journal.path if _journal is not None else None
    found = []
    try:
        names = sorted(p for p in directory.iterdir() if p.suffix == ".journal")
    except OSError:
        return []
    for path in names:
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except OSError:
            continue
        try:
            if not _try_lock(fd):
                continue  # its process is still running
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(SLOT * SLOTS)
        except OSError:
            continue
        finally:
            os.close(fd)
        for start in range(0, len(data), SLOT):
            line = data[start:start + SLOT].split(b"\n", 1)[0].strip(b"\0")
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                found.append(entry)
        with contextlib.suppress(OSError):
            path.unlink()
    return found


def recover(wait: bool = True) -> threading.Thread | None:
    """Deal with the files that were being read when earlier photosense processes stopped:
    each becomes a suspect here at once, then is read again in a process of its own;
    quarantined if that crashes too, cleared if not. ``wait``: return when done; otherwise
    the checks run on a thread of their own (returned), None when there is nothing to do."""
    global _checking
    entries = abandoned()
    if not entries:
        return None
    with _state_lock:
        _suspects.update(e["path"] for e in entries)
        _checking += 1
        _checked.clear()
    names = ", ".join(e["path"] for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
    log.warning("photosense stopped while reading %d file%s (%s): each is read again in a "
                "process of its own before it is read here", len(entries),
                "" if len(entries) == 1 else "s", names)
    worker = threading.Thread(target=_check_suspects, args=(entries,),
                              name="photosense-crash-check", daemon=True)
    worker.start()
    if wait:
        worker.join()
    return worker


def _check_suspects(entries: list[dict]) -> None:
    global _checking
    crashed = []
    for entry in entries:
        try:
            if _crashes_alone(entry):
                crashed.append(entry["path"])
                log.warning("%s: %s", entry["path"], READER_CRASHED)
            else:
                log.info("%s: read fine in a process of its own", entry["path"])
        except Exception:  # noqa: BLE001 - never lose the others over one
            log.exception("checking %s failed", entry["path"])
            crashed.append(entry["path"])
    try:
        if crashed:
            quarantine(crashed)
    except OSError as exc:
        log.warning("cannot write the list of files that crash photosense: %s", exc)
    finally:
        with _state_lock:
            _suspects.difference_update(e["path"] for e in entries)
            _checking -= 1
            if not _checking:
                _checked.set()


def _crashes_alone(entry: dict) -> bool:
    """Whether reading ``entry`` as it was read crashes a process of its own (or does not end
    in :data:`PROBE_TIMEOUT`)."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_read_again, args=(entry,), name="photosense-read-again",
                       daemon=True)
    proc.start()
    proc.join(PROBE_TIMEOUT)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        return True
    return proc.exitcode not in (0, 1)  # 1: a Python error, not a crash


def _read_again(entry: dict) -> None:
    """In the checking process: the read ``entry`` describes. Bad files are fine here (they
    raise DecodeError and are reported as such where they are read); only a crash counts."""
    op, path = entry.get("op"), entry["path"]
    try:
        if op == "check_raw":
            from photosense.ingest.raw import check_raw

            check_raw(path)
        else:
            from photosense.ingest.decode import open_image

            open_image(path, max_side=int(entry.get("max_side", 0) or 0))
    except (DecodeError, OSError, MemoryError, ValueError):
        pass
