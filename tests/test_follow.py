"""Scoring follows a scan: a scan writes as it reads, and a scoring run in the same process
encodes what it writes until the scan ends (photosense.ingest.activity)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from photosense.ingest import activity
from photosense.ingest import scan as scan_module
from photosense.ingest.scan import Scanner
from photosense.library import Library, PhotoQuery
from photosense.pipeline import ScoringJob
from photosense.scoring.clipiqa import ClipIQAEngine
from photosense.service import ServiceEvents, WatchService


@pytest.fixture(scope="module")
def engine(tiny_engine):
    return tiny_engine


@pytest.fixture
def lib(lib, photo_folder):
    """The shared fresh library, with the photo folder added (not scanned)."""
    lib.add_folder(photo_folder)
    return lib


def _photos(folder) -> list[str]:
    return sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png", ".tif", ".tiff"))


def _scored(lib: Library) -> int:
    return sum(1 for row in lib.query(PhotoQuery()) if len(row.scores) == 12)


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _run_in_thread(job: ScoringJob, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(report=job.run(**kwargs)), daemon=True)
    thread.start()
    return thread, out


def test_a_scoring_run_encodes_what_a_running_scan_writes_until_it_ends(lib, photo_folder, tiny_config, engine):
    photos = _photos(photo_folder)
    assert len(photos) == 15
    scanner = Scanner(lib)
    with activity.for_library(lib).scanning():  # a scan going on, writing in two parts
        # Without following, a run over a library with nothing read yet has nothing to do.
        assert ScoringJob(lib, tiny_config, engine=engine).run(follow=False).encoded == 0
        thread, out = _run_in_thread(ScoringJob(lib, tiny_config, engine=engine))
        scanner.scan_paths(photos[:5])
        assert _wait(lambda: _scored(lib) == 5)
        time.sleep(0.3)
        assert thread.is_alive() and _scored(lib) == 5  # waiting for more, not done
        scanner.scan_paths(photos[5:])
        assert _wait(lambda: _scored(lib) == 15)
        assert thread.is_alive()
    thread.join(30)
    assert not thread.is_alive()
    assert out["report"].encoded == 15 and not out["report"].cancelled


def test_a_run_with_nothing_to_do_waits_for_the_scan_without_loading_the_model(lib, tiny_config, engine):
    Scanner(lib).scan_all()
    ScoringJob(lib, tiny_config, engine=engine).run()
    fresh = ClipIQAEngine(tiny_config)
    cancel = threading.Event()
    with activity.for_library(lib).scanning():
        thread, out = _run_in_thread(ScoringJob(lib, tiny_config, engine=fresh), cancel=cancel)
        time.sleep(0.5)
        assert thread.is_alive() and not fresh.loaded  # up to date: it waits, model not loaded
        cancel.set()
        thread.join(5)
        assert not thread.is_alive()  # cancel is heard while it waits
    assert out["report"].cancelled and out["report"].encoded == 0
    # Once the scan is over, the same run returns at once.
    assert ScoringJob(lib, tiny_config, engine=fresh).run().encoded == 0 and not fresh.loaded


def test_a_scan_writes_its_first_photo_at_once_then_at_least_every_write_seconds(lib, monkeypatch):
    sizes: list[int] = []
    upsert = lib.upsert_scanned

    def spy(folder_id, records):
        sizes.append(len(records))
        return upsert(folder_id, records)

    monkeypatch.setattr(lib, "upsert_scanned", spy)
    writes = activity.for_library(lib).writes
    monkeypatch.setattr(scan_module, "WRITE_SECONDS", 3600.0)
    Scanner(lib).scan_all()
    assert sizes == [1, 14]  # the first photo at once, the rest when the folder is read
    assert activity.for_library(lib).writes == writes + 15

    sizes.clear()
    for path in _photos(lib.folders()[0].path):
        os.utime(path, (time.time() + 10, time.time() + 10))  # changed: read again
    monkeypatch.setattr(scan_module, "WRITE_SECONDS", 0.0)
    report = Scanner(lib).scan_all()
    assert report.updated == 15 and sizes == [1] * 15  # each photo as it comes


def test_the_watch_service_scores_the_first_scan_as_it_goes(lib, tiny_config, engine, monkeypatch):
    read = scan_module.analyse_file

    def slow(*args, **kwargs):
        time.sleep(0.15)  # a scan of big files: long enough for scoring to start within it
        return read(*args, **kwargs)

    monkeypatch.setattr(scan_module, "analyse_file", slow)
    scanned, scored, first_score = [], [], []

    def on_progress(p):
        if p.stage == "encoding" and p.done and not first_score:
            first_score.append(time.monotonic())

    events = ServiceEvents(scanned=lambda r: scanned.append(time.monotonic()), scored=scored.append,
                           progress=on_progress)
    service = WatchService(lib, tiny_config, events, debounce=0.3, engine=engine)
    service.start()
    try:
        assert _wait(lambda: scanned and _scored(lib) == 15)
    finally:
        service.stop()
    assert first_score and first_score[0] < scanned[0]  # scores came while the scan read
