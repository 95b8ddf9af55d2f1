"""Atomic file writes: a temporary file in the target's folder, renamed into place only when
complete, so a crash or a full disk never leaves half a file under the real name.

Temporary files are named ``PREFIX`` + 8 random characters + ``.ps-HOST-PID.tmp`` (HOST: a
short hash of the machine's name, PID: the writing process), so that one left behind by a
killed writer can be recognised as photosense's own and swept later
(:func:`sweep_temporaries`), without touching any other program's files."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger("photosense.fsutil")

#: A temporary file of photosense's own whose writer is gone is swept once it is this old (s).
STALE_AFTER = 60.0
#: Any temporary file of photosense's own (another machine's, a reused process id, or one
#: written before temporary names said who wrote them) is swept once it is this old (s).
ABANDONED_AFTER = 24 * 3600.0

_HOST = hashlib.blake2b(socket.gethostname().encode("utf-8", "replace"), digest_size=3).hexdigest()
# tempfile.mkstemp's random part: 8 characters of this alphabet.
_RANDOM = r"[a-z0-9_]{8}"
_OWN_TEMP = re.compile(rf"\A(?P<base>.+)\.{_RANDOM}\.ps-(?P<host>[0-9a-f]{{6}})-(?P<pid>\d{{1,10}})\.tmp\Z")
# What photosense's XMP writes left before their names said who wrote them: ".NAME.xmp.RANDOM.tmp".
_LEGACY_SIDECAR_TEMP = re.compile(rf"\A\.(?P<base>.+\.(?i:xmp))\.{_RANDOM}\.tmp\Z")


def _temp_suffix() -> str:
    return f".ps-{_HOST}-{os.getpid()}.tmp"


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_batch = threading.local()  # .folders: the folders to fsync when this thread's batch ends


def fsync_folder(directory: str) -> None:
    """Make the renames in ``directory`` durable (a no-op where folders cannot be opened)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse: the files themselves are synced
        log.debug("cannot fsync folder %s: %s", directory, exc)
    finally:
        os.close(fd)


@contextmanager
def fsync_batch() -> Iterator[None]:
    """Many atomic writes as one batch (a run of XMP sidecars): each file is still synced
    before it is renamed into place, so a crash leaves the old file or the new one, never half;
    the folders' renames are synced once per folder when the batch ends, not once per file."""
    outer = getattr(_batch, "folders", None)
    if outer is not None:
        yield  # nested: the outer batch syncs
        return
    _batch.folders = folders = {}
    try:
        yield
    finally:
        _batch.folders = None
        for directory in folders:
            fsync_folder(directory)


@contextmanager
def atomic_path(target: str | os.PathLike, *, prefix: str = ".photosense-",
                fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path next to ``target``; on success it replaces ``target``.

    The new file keeps an existing target's permissions (else the umask's default); a
    symlinked target stays a symlink (its destination is replaced)."""
    real = os.path.realpath(os.fspath(target))
    directory = os.path.dirname(real) or "."
    try:
        mode = os.stat(real).st_mode & 0o7777
    except FileNotFoundError:
        mode = _default_mode()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=_temp_suffix())
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        folders = getattr(_batch, "folders", None)
        if folders is None:
            fsync_folder(directory)
        else:
            folders[directory] = None


@contextmanager
def atomic_write(target: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 newline: str | None = None, prefix: str = ".photosense-",
                 fsync: bool = True) -> Iterator[IO]:
    """``with atomic_write(path, "w", encoding="utf-8") as f: ...`` — see ``atomic_path``."""
    with atomic_path(target, prefix=prefix, fsync=fsync) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f


def write_bytes_atomically(target: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, "wb", fsync=fsync) as f:
        f.write(data)


# -- temporary files left behind ----------------------------------------------------------

def is_own_temporary(name: str, target_suffix: str = ".xmp") -> bool:
    """Whether a file name is one of photosense's atomic-write temporaries (this version's or
    an older XMP write's) for a target whose name ends with ``target_suffix``."""
    m = _OWN_TEMP.match(name)
    if m is not None:
        return m["base"].lower().endswith(target_suffix.lower())
    m = _LEGACY_SIDECAR_TEMP.match(name)
    return m is not None and m["base"].lower().endswith(target_suffix.lower())


def _writer_gone(host: str, pid: int) -> bool:
    """True only when the writer certainly no longer runs: same machine, no such process."""
    if host != _HOST or os.name != "posix" or pid <= 0:
        return False  # another machine's (a shared folder), or no safe way to ask
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _looks_like_xml(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head == b"" or head.startswith(b"<")


def is_stale_temporary(path: str, now: float | None = None, target_suffix: str = ".xmp") -> bool:
    """Whether ``path`` is a temporary file of photosense's own that no writer will finish:
    its writer is gone (this machine, no such process) and it is older than STALE_AFTER, or it
    is older than ABANDONED_AFTER. Anything else (another program's file, a write in progress)
    is never stale."""
    name = os.path.basename(path)
    if not is_own_temporary(name, target_suffix):
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    age = (time.time() if now is None else now) - st.st_mtime
    m = _OWN_TEMP.match(name)
    if m is None:  # an older version's name, which says nothing about its writer
        return age > ABANDONED_AFTER and _looks_like_xml(path)
    if age > ABANDONED_AFTER:
        return True
    return age > STALE_AFTER and _writer_gone(m["host"], int(m["pid"]))


def sweep_temporaries(paths: Iterable[str], now: float | None = None,
                      target_suffix: str = ".xmp") -> list[str]:
    """Delete those of ``paths`` that are stale temporaries of photosense's own
    (:func:`is_stale_temporary`); returns the paths deleted. Never raises for a file."""
    removed = []
    for path in paths:
        if not is_stale_temporary(path, now, target_suffix):
            continue
        try:
            os.unlink(path)
        except OSError as exc:
            log.warning("cannot remove the stale temporary file %s: %s", path, exc.strerror)
            continue
        log.info("removed a temporary file left by an interrupted write: %s", path)
        removed.append(path)
    return removed


def sweep_folder(directory: str, now: float | None = None, target_suffix: str = ".xmp") -> list[str]:
    """:func:`sweep_temporaries` over one folder's hidden files."""
    try:
        with os.scandir(directory or ".") as entries:
            names = [e.path for e in entries if e.name.startswith(".")
                     and is_own_temporary(e.name, target_suffix)]
    except OSError:
        return []
    return sweep_temporaries(names, now, target_suffix)
