"""Atomic file writes: a temporary file in the target's folder, renamed into place only when
complete, so a crash or a full disk never leaves half a file under the real name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
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
