"""Watching folders: new, changed, moved and deleted files are picked up while running."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from photosense.ingest.watch import PendingPaths
from photosense.library import Library, PhotoQuery
from photosense.service import ServiceEvents, WatchService


def _wait(predicate, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_pending_paths_release_only_settled_files(tmp_path):
    pending = PendingPaths(debounce=0.2)
    f = tmp_path / "growing.jpg"
    f.write_bytes(b"x" * 10)
    pending.touch(str(f))
    assert pending.take_settled() == []  # too recent
    time.sleep(0.25)
    assert pending.take_settled() == []  # first look: remember size
    with open(f, "ab") as fh:  # still being copied
        fh.write(b"y" * 10)
    time.sleep(0.25)
    assert pending.take_settled() == []
    time.sleep(0.25)
    assert pending.take_settled() == [str(f)]
    assert len(pending) == 0


@pytest.fixture
def service_lib(tmp_path, photo_folder):
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(photo_folder)
    yield lib
    lib.close()


def test_watch_picks_up_new_moved_and_deleted_files_and_scores_them(service_lib, photo_folder, tiny_config,
                                                                    real_photos):
    scored = []
    service = WatchService(service_lib, tiny_config, ServiceEvents(scored=scored.append), debounce=0.3)
    sizes_read: list[int] = []  # the size of new.jpg each time the watcher handed it to the scanner
    scan_paths = service.scanner.scan_paths

    def spy(paths):
        paths = list(paths)
        sizes_read.extend(os.path.getsize(p) for p in paths if p.endswith("new.jpg") and os.path.exists(p))
        return scan_paths(paths)

    service.scanner.scan_paths = spy
    service.start()
    try:
        assert _wait(lambda: len(service_lib.query_ids(PhotoQuery())) == 15)
        assert _wait(lambda: all(len(r.scores) == 12 for r in service_lib.query(PhotoQuery())))
        # New file, written slowly in two parts (a copy in progress).
        new = photo_folder / "new.jpg"
        real_photos["astronaut"].rotate(90).save(photo_folder / "tmp.bin", format="JPEG")
        data = (photo_folder / "tmp.bin").read_bytes()
        (photo_folder / "tmp.bin").unlink()
        with open(new, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            time.sleep(0.2)
            fh.write(data[len(data) // 2:])

        def row(name):
            rows = [r for r in service_lib.query(PhotoQuery()) if os.path.basename(r.path) == name]
            return rows[0] if rows else None

        assert _wait(lambda: row("new.jpg") is not None and len(row("new.jpg").scores) == 12)
        assert row("new.jpg").error is None
        assert sizes_read and set(sizes_read) == {len(data)}, "a half-copied file must not be read"
        # Move into a new subfolder: same photo, new path.
        pid = row("rocket.jpg").id
        (photo_folder / "sub").mkdir()
        shutil.move(photo_folder / "rocket.jpg", photo_folder / "sub" / "rocket2.jpg")
        assert _wait(lambda: service_lib.rows([pid])[0].path.endswith("rocket2.jpg"))
        assert not service_lib.rows([pid])[0].missing
        # Delete: marked missing.
        cid = row("coffee.jpg").id
        (photo_folder / "coffee.jpg").unlink()
        assert _wait(lambda: service_lib.rows([cid])[0].missing)
    finally:
        service.stop()
    assert scored


def test_watch_keeps_scanning_without_weights(service_lib, photo_folder, tmp_path, real_photos):
    from photosense.scoring.clipiqa import EngineConfig

    errors = []
    cfg = EngineConfig(weights=str(tmp_path / "missing.safetensors"), device="cpu")
    service = WatchService(service_lib, cfg, ServiceEvents(model_error=errors.append), debounce=0.3)
    service.start()
    try:
        assert _wait(lambda: errors)
        assert "--weights" in errors[0] or "not found" in errors[0]
        real_photos["coffee"].save(photo_folder / "later.jpg")
        assert _wait(lambda: any(r.path.endswith("later.jpg") and r.checks["sharpness"] is not None
                                 for r in service_lib.query(PhotoQuery())))
    finally:
        service.stop()
    model_rows = service_lib.query(PhotoQuery())
    assert all(r.scores == {} for r in model_rows)


def test_watch_reads_a_sidecar_edited_in_another_app(service_lib, photo_folder, tmp_path):
    from photosense.scoring.clipiqa import EngineConfig

    cfg = EngineConfig(weights=str(tmp_path / "missing.safetensors"), device="cpu")
    service = WatchService(service_lib, cfg, ServiceEvents(), debounce=0.3)
    service.start()
    try:
        assert _wait(lambda: len(service_lib.query_ids(PhotoQuery())) == 15)
        (row,) = [r for r in service_lib.query(PhotoQuery()) if r.name == "rocket.jpg"]
        (photo_folder / "rocket.xmp").write_text(  # a Lightroom-style name, image untouched
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>')
        assert _wait(lambda: service_lib.rows([row.id])[0].rating == 4, timeout=30)
    finally:
        service.stop()


def test_a_failed_watch_scan_is_reported_and_resolved_by_the_next_that_works(service_lib, photo_folder,
                                                                              tiny_config, real_photos):
    """A scan that fails in the service's thread (a locked library) reaches the error event,
    the thread goes on watching, and the next scan that works says the problem is gone."""
    from photosense.errors import LibraryError

    errors, resolved = [], []
    service = WatchService(service_lib, tiny_config, ServiceEvents(error=errors.append, resolved=resolved.append),
                           debounce=0.3, score=False)
    real_scan_all = service.scanner.scan_all

    def locked(*args, **kwargs):
        raise LibraryError(f"library {service_lib.path} is locked by another program or process")

    service.scanner.scan_all = locked
    service.start()
    try:
        assert _wait(lambda: errors)
        assert errors == [f"scan failed: library {service_lib.path} is locked by another program or process"]
        assert "scan" not in resolved
        service.scanner.scan_all = real_scan_all
        real_photos["coffee"].save(photo_folder / "later.jpg", quality=90)
        assert _wait(lambda: "scan" in resolved)
        assert _wait(lambda: any(r.path.endswith("later.jpg") for r in service_lib.query(PhotoQuery())))
    finally:
        service.stop()
