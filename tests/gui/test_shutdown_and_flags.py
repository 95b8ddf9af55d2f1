"""Closing the window with slow jobs running (issue 9.6) and flagging 500 photos with XMP
auto-write on (issue 9.5)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from PIL import Image

from photosense.fsutil import atomic_write
from photosense.gui.jobs import Job
from photosense.ingest.scan import Scanner
from photosense.library import FLAG_PICK, Library
from tests.gui.conftest import open_window, wait_idle

pytestmark = pytest.mark.timeout(180)


def test_closing_the_window_cancels_every_job_within_two_seconds(qtbot, scored_library, tiny_config, tmp_path):
    """A deliberately slow job writing a file, one that never looks at its cancel (a stuck
    read), on both pools: close() cancels them all, returns within the 2 s budget, and the
    file being written keeps its previous content (no half-written file, no temporary)."""
    window = open_window(qtbot, scored_library, tiny_config)
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    writing = threading.Event()

    def slow_write(ctl):
        with atomic_write(target, "wb") as f:
            for _ in range(10_000):  # 100 s unless cancelled
                f.write(b"x" * 1000)
                writing.set()
                ctl.check()  # raises JobCancelled once cancelled: the temporary is removed
                time.sleep(0.01)
        return "finished"

    def stuck(ctl):
        time.sleep(6)  # ignores its cancel: abandoned at shutdown (its thread is a daemon)

    writer = window.jobs.start(Job(slow_write, "slow write"), "background")
    stuck_job = window.jobs.start(Job(stuck, "stuck"), "background")
    model_job = window.jobs.start(Job(slow_write, "slow model job"), "model")
    assert writing.wait(5)
    t0 = time.monotonic()
    window.close()
    closed_s = time.monotonic() - t0
    print(f"closing the window took {closed_s * 1000:.0f} ms")
    assert closed_s < 2.5, f"closing took {closed_s:.1f} s"
    assert writer.core.cancelled and stuck_job.core.cancelled and model_job.core.cancelled
    assert writer.core.wait(1) and writer.core.state == "cancelled"
    assert target.read_bytes() == b"previous"
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


@pytest.fixture
def five_hundred(tmp_path):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(500):
        Image.new("RGB", (8, 8), (i % 256, (i * 7) % 256, 90)).save(folder / f"p{i:03d}.jpg")
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(folder)
    Scanner(lib, workers=2).scan_all()
    yield lib, folder
    lib.close()


def test_flagging_500_photos_with_auto_write_writes_no_sidecar_on_the_gui_thread(qtbot, five_hundred,
                                                                                tiny_config, monkeypatch):
    from photosense.curation import xmp

    lib, folder = five_hundred
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    window = open_window(qtbot, lib, tiny_config)
    try:
        assert window.model.total() == 500
        gui = threading.current_thread()
        on_gui: list[str] = []
        writes: list[str] = []  # the thread of each sidecar write
        original = xmp._write_one

        def spy(path, *args, **kwargs):
            writes.append(threading.current_thread().name)
            if threading.current_thread() is gui:
                on_gui.append(path)
            return original(path, *args, **kwargs)

        monkeypatch.setattr(xmp, "_write_one", spy)
        window.view.selectAll()
        t0 = time.perf_counter()
        window.set_flag(FLAG_PICK)
        gui_ms = (time.perf_counter() - t0) * 1000
        qtbot.waitUntil(lambda: len(writes) == 500 and window.sidecar_writer.idle, timeout=30000)
        landed_s = time.perf_counter() - t0
        print(f"flagging 500 photos: {gui_ms:.1f} ms of GUI time; sidecars landed after {landed_s:.2f} s")
        assert on_gui == []  # no sidecar is written on the GUI thread…
        assert set(writes) == {"photosense-sidecars"}  # …nor inside the library's write: in the background
        wait_idle(qtbot, window)
        assert all(xmp.read_sidecar(str(folder / f"p{i:03d}.jpg.xmp")).flag == FLAG_PICK for i in range(500))
        assert not window.problems
    finally:
        window.shutdown()


def test_a_thumbnail_bug_fails_its_job_and_reaches_problems(qtbot, tmp_path, caplog):
    """Thumbnails are jobs: an unexpected error stops that one (logged with its traceback),
    is reported through ``crashed`` (the window's Problems), and the next one still comes."""
    import logging

    from photosense.gui.thumbnails import ThumbnailLoader, ThumbnailStore

    class Flaky(ThumbnailStore):
        def load_or_make(self, path, mtime, size, side):
            if path.endswith("bad.jpg"):
                raise RuntimeError("decoder exploded")
            return super().load_or_make(path, mtime, size, side)

    good = tmp_path / "good.jpg"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(good)
    loader = ThumbnailLoader(workers=1, store=Flaky(tmp_path / "cache"))
    crashes: list[str] = []
    loader.crashed.connect(crashes.append)
    try:
        with caplog.at_level(logging.ERROR, logger="photosense.jobs"):
            loader.request(1, str(tmp_path / "bad.jpg"), 1.0, 10)
            qtbot.waitUntil(lambda: loader.error(1) is not None, timeout=10000)
            loader.request(2, str(good), good.stat().st_mtime, good.stat().st_size)
            qtbot.waitUntil(lambda: loader.pixmap(2) is not None, timeout=10000)
        assert crashes == [f"thumbnail of {tmp_path / 'bad.jpg'} failed: "
                           "unexpected error (RuntimeError): decoder exploded"]
        assert loader.error(1) == "thumbnail failed: unexpected error (RuntimeError): decoder exploded"
        assert "Traceback" in caplog.text
    finally:
        assert loader.shutdown(2.0)
