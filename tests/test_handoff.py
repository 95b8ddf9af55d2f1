"""A scan hands its decoded images to scoring: a new photo is decoded once, scores exactly as
if it were decoded again, a file changed in between is decoded again, and the cache stays a
cache (bounded, swept, never trusted blindly)."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
from PIL import Image

import photosense.pipeline as pipeline_mod
from photosense.ingest import handoff, workers
from photosense.ingest.analysis import CHECK_SIDE
from photosense.ingest.decode import open_image
from photosense.ingest.scan import Scanner
from photosense.library import Library, PhotoQuery
from photosense.pipeline import ScoringJob, save_engine_config
from tests.test_raw import half_white, left_bright_scene, mosaic, write_dng


@pytest.fixture
def big_shoot(tmp_path, real_photos):
    """Camera-sized JPEGs (decoded with draft mode and a downscale), one of them stored
    sideways with an EXIF orientation, and a RAW+JPEG pair: 5 photos."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        real_photos[name].resize((2400, 1600), Image.Resampling.BICUBIC).save(folder / f"{name}.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    real_photos["rocket"].resize((2000, 1500)).save(folder / "sideways.jpg", quality=90, exif=exif)
    write_dng(folder / "IMG_7.dng", mosaic(left_bright_scene()), preview=half_white(600, 400))
    real_photos["motorcycle_left"].resize((2200, 1500)).save(folder / "IMG_7.jpg", quality=90)
    return folder


@pytest.fixture
def config_1024(tiny_config):
    return dataclasses.replace(tiny_config, max_side=CHECK_SIDE)


def _score(tmp_path, folder, name, config, engine=None, handoff_on=None):
    lib = Library(tmp_path / f"{name}.sqlite3")
    lib.add_folder(folder)
    scanner = Scanner(lib)
    scanner.handoff = handoff_on
    scanner.scan_all()
    job = ScoringJob(lib, config, engine=engine)
    report = job.run()
    ids, matrix = lib.feature_matrix(lib.active_model().id)
    paths = {r.id: r.path for r in lib.query(PhotoQuery())}
    features = {paths[i]: matrix[k] for k, i in enumerate(ids)}
    lib.close()
    return report, job, features


def _entries() -> list[str]:
    base = handoff.folder()
    return sorted(os.listdir(base)) if base.is_dir() else []


def test_a_scanned_photo_is_decoded_once_and_scores_exactly_the_same(tmp_path, big_shoot, config_1024,
                                                                     monkeypatch):
    report, job, decoded_twice = _score(tmp_path, big_shoot, "off", config_1024, handoff_on=False)
    assert report.encoded == 5 and job.handed_off == 0 and _entries() == []

    decodes = []
    real_open = pipeline_mod.open_image
    monkeypatch.setattr(pipeline_mod, "open_image", lambda *a, **k: decodes.append(a[0]) or real_open(*a, **k))
    lib = Library(tmp_path / "on.sqlite3")
    lib.add_folder(big_shoot)
    Scanner(lib).scan_all()  # a library that scores at 1024 px (the default) keeps them
    assert len(_entries()) == 5
    lib.close()
    report, job, decoded_once = _score(tmp_path, big_shoot, "on", config_1024, engine=job.engine)
    assert report.encoded == 5 and job.handed_off == 5 and decodes == []
    assert _entries() == []  # each taken once
    assert decoded_once.keys() == decoded_twice.keys()
    for path, feature in decoded_once.items():
        assert np.array_equal(feature, decoded_twice[path]), path


def test_a_file_changed_after_the_scan_is_decoded_again(tmp_path, big_shoot, config_1024, real_photos):
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(big_shoot)
    Scanner(lib).scan_all()
    victim = big_shoot / "coffee.jpg"  # a test fixture, not a user's photo
    real_photos["chelsea"].resize((2400, 1600)).save(victim, quality=80)
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    job = ScoringJob(lib, config_1024)
    assert job.run().encoded == 5 and job.handed_off == 4
    ids, matrix = lib.feature_matrix(lib.active_model().id)
    pid = next(r.id for r in lib.query(PhotoQuery()) if r.path == str(victim))
    expected = job.engine.encode_images([job.engine.preprocess(open_image(victim, max_side=CHECK_SIDE))])[0]
    assert np.allclose(matrix[list(ids).index(pid)], expected, atol=1e-5)
    assert len(_entries()) == 1  # the stale one: left to the age sweep
    (stale,) = handoff.folder().iterdir()
    os.utime(stale, (time.time() - handoff.MAX_AGE_S - 60,) * 2)
    assert ScoringJob(lib, config_1024, engine=job.engine).run().encoded == 0
    assert _entries() == []  # the next scoring run, even with nothing to do, sweeps it
    lib.close()


def test_a_library_scoring_at_another_size_keeps_nothing(tmp_path, big_shoot, config_1024):
    lib = Library(tmp_path / "lib.sqlite3")
    save_engine_config(lib, dataclasses.replace(config_1024, max_side=800))
    lib.add_folder(big_shoot)
    Scanner(lib).scan_all()
    assert _entries() == []
    lib.close()


def test_worker_processes_keep_them_too(tmp_path, big_shoot, monkeypatch):
    monkeypatch.setattr(workers, "PROCESS_MIN", 3)
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(big_shoot)
    report = Scanner(lib, processes=True).scan_all()
    assert report.added == 5 and not report.errors
    assert len(_entries()) == 5
    image = handoff.take(str(big_shoot / "sideways.jpg"), CHECK_SIDE)
    assert image is not None and image.size == (768, 1024)  # upright, as open_image gives it
    # The workers resize with Pillow, this process (torch loaded) with torch's kernel for the
    # same filter: a level or two apart on a few pixels (photosense.ingest.decode.resize_bicubic).
    here = open_image(big_shoot / "sideways.jpg", CHECK_SIDE)
    diff = np.abs(np.asarray(image, np.int16) - np.asarray(here, np.int16))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01
    lib.close()


def test_the_cache_is_bounded_swept_and_checked(tmp_path, real_photos, monkeypatch):
    base = tmp_path / "decoded"
    paths = []
    for i in range(3):
        p = tmp_path / f"p{i}.jpg"
        real_photos["coffee"].save(p, quality=90)
        paths.append(str(p))
    image = open_image(paths[0], CHECK_SIDE)
    # A file that changed while it was decoded is not kept.
    assert not handoff.put(paths[2], CHECK_SIDE, image, (1, 2), base)
    assert not base.exists() or not list(base.iterdir())
    monkeypatch.setattr(handoff, "MAX_FILES", 2)
    assert [handoff.put(p, CHECK_SIDE, image, handoff.stat_key(p), base) for p in paths] == [True, True, False]
    assert handoff.take(paths[2], CHECK_SIDE, base) is None
    assert handoff.take(paths[0], 800, base) is None  # another size
    # A damaged entry is deleted and the photo decoded from its file.
    entry = next(base.iterdir())
    entry.write_bytes(b"\x93NUMPY garbage")
    taken = [handoff.take(p, CHECK_SIDE, base) for p in paths[:2]]
    assert sum(t is None for t in taken) == 1 and len(list(base.iterdir())) == 0
    # Pixels that cannot be what the scan wrote (wrong type, too big) are not used.
    for bad in (np.zeros((10, 10, 3), np.float32), np.zeros((2000, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)):
        target = handoff._entry(base, paths[0], handoff.stat_key(paths[0]), CHECK_SIDE)
        np.save(target, bad)
        assert handoff.take(paths[0], CHECK_SIDE, base) is None and not target.exists()
    # Old entries go with the sweep, fresh ones stay.
    assert handoff.put(paths[0], CHECK_SIDE, image, handoff.stat_key(paths[0]), base)
    assert handoff.put(paths[1], CHECK_SIDE, image, handoff.stat_key(paths[1]), base)
    old = handoff._entry(base, paths[0], handoff.stat_key(paths[0]), CHECK_SIDE)
    os.utime(old, (time.time() - handoff.MAX_AGE_S - 60,) * 2)
    assert handoff.sweep(base) == 1 and len(list(base.iterdir())) == 1
    # Nothing is kept on a disk that is nearly full.
    monkeypatch.setattr(handoff, "MIN_FREE_BYTES", 1 << 62)
    assert not handoff.put(paths[2], CHECK_SIDE, image, handoff.stat_key(paths[2]), base)
