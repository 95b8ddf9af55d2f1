"""XMP auto-write batches: each sidecar synced before its rename, each folder synced once per
batch (issue 9.5), and a write abandoned mid-way leaves the previous sidecar intact (9.6)."""

from __future__ import annotations

import os
import stat

import pytest
from PIL import Image

from photosense import fsutil
from photosense.curation import xmp
from photosense.curation.sidecar_job import SidecarWriter
from photosense.ingest.scan import Scanner
from photosense.library import FLAG_PICK, FLAG_REJECT, Library, PhotoQuery


@pytest.fixture
def two_folders(tmp_path):
    """A library of 12 tiny photos in two folders, auto-write on."""
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        folder.mkdir()
        for i in range(6):
            Image.new("RGB", (16, 16), (i * 40, 90, 200)).save(folder / f"p{i}.jpg")
    lib = Library(tmp_path / "lib.sqlite3")
    for folder in folders:
        lib.add_folder(folder)
    Scanner(lib, workers=1).scan_all()
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    yield lib, folders
    lib.close()


def _count_fsyncs(monkeypatch) -> list[str]:
    """Patch os.fsync to record what each call synced: "dir:PATH" or "file" (Linux: /proc names the folder)."""
    calls: list[str] = []
    real = os.fsync

    def counting(fd):
        mode = os.fstat(fd).st_mode
        calls.append(f"dir:{os.readlink(f'/proc/self/fd/{fd}')}" if stat.S_ISDIR(mode) else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_a_batch_syncs_every_sidecar_and_each_folder_once(two_folders, monkeypatch):
    lib, folders = two_folders
    writer = SidecarWriter(lib, delay=0.05, max_wait=5)
    calls = _count_fsyncs(monkeypatch)
    try:
        lib.set_culling(lib.query_ids(PhotoQuery()), flag=FLAG_PICK)
        assert writer.flush()
    finally:
        writer.close()
    files = [c for c in calls if c == "file"]
    dirs = sorted(c[4:] for c in calls if c.startswith("dir:"))
    assert len(files) == 12  # each sidecar on disk before it replaces the old one
    assert dirs == sorted(os.path.realpath(f) for f in folders)  # one per folder, not one per file
    assert all(xmp.read_sidecar(str(f / f"p{i}.jpg.xmp")).flag == FLAG_PICK for f in folders for i in range(6))


def test_a_single_atomic_write_syncs_its_folder(tmp_path, monkeypatch):
    calls = _count_fsyncs(monkeypatch)
    fsutil.write_bytes_atomically(tmp_path / "x.bin", b"data")
    assert calls == ["file", f"dir:{os.path.realpath(tmp_path)}"]
    calls.clear()
    fsutil.write_bytes_atomically(tmp_path / "cache.bin", b"data", fsync=False)  # a cache: none
    assert calls == []


def test_an_abandoned_sidecar_write_leaves_the_previous_sidecar(two_folders, monkeypatch):
    """A write killed between writing the temporary file and renaming it (the window closed,
    the process died) leaves the old sidecar as it was and no temporary under its name."""
    lib, folders = two_folders
    writer = SidecarWriter(lib, delay=0.05, max_wait=5)
    ids = lib.query_ids(PhotoQuery())
    try:
        lib.set_culling(ids, flag=FLAG_PICK)
        assert writer.flush()
    finally:
        writer.close()
    sidecar = folders[0] / "p0.jpg.xmp"
    before = sidecar.read_bytes()
    lib.set_culling(ids, flag=FLAG_REJECT)  # the writer is closed: the sidecars are now stale
    try:

        def killed(*_args):
            raise KeyboardInterrupt  # as abrupt as it gets inside a job: not an Exception

        monkeypatch.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            with fsutil.fsync_batch():
                xmp.write_sidecars(lib, ids)
    finally:
        monkeypatch.undo()
    assert sidecar.read_bytes() == before
    assert xmp.read_sidecar(str(sidecar)).flag == FLAG_PICK
    assert not [n for n in os.listdir(folders[0]) if n.endswith(".tmp")]
