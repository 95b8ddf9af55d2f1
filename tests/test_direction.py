"""Which way is better: sorting best first, best of a burst and ``export --top --by`` follow
each attribute's and check's direction (noise and "noisy": lower, exposure: closest to 0, a
user attribute: its positive prompt unless set otherwise)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from photosense.curation.export import ExportOptions, select_photos
from photosense.curation.groups import Group, best_of_groups
from photosense.errors import PhotosenseError
from photosense.library import Library, PhotoQuery, ScanRecord
from photosense.library.direction import HIGHER, LOWER, NEAR_ZERO, direction_of, goodness
from photosense.scoring.prompts import AntonymPair, AttributeSpec

# name: (noisy score, user attribute score, checks)
PHOTOS = {
    "a.jpg": (0.9, 0.1, {"sharpness": 10.0, "noise": 5.0, "exposure": -0.8}),
    "b.jpg": (0.1, 0.9, {"sharpness": 30.0, "noise": 1.0, "exposure": 0.05}),
    "c.jpg": (0.5, 0.5, {"sharpness": 20.0, "noise": 3.0, "exposure": 0.5}),
}


@pytest.fixture
def lib(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    lib = Library(tmp_path / "lib.sqlite3")
    info = lib.add_folder(folder)
    for name in PHOTOS:
        (folder / name).write_bytes(b"")
    lib.upsert_scanned(info.id, [ScanRecord(path=os.path.join(info.path, n), size=1, mtime=1.7e9,
                                            content_hash=n, checks=c) for n, (_a, _b, c) in PHOTOS.items()])
    ids = {os.path.basename(r.path): r.id for r in lib.query(PhotoQuery())}
    model = lib.ensure_model("synthetic", 4, 100.0)
    lib.set_setting("active_model", "synthetic")
    user = lib.add_attribute(AttributeSpec("cluttered", (AntonymPair("Cluttered", "Tidy"),)))
    order = np.array([ids[n] for n in PHOTOS])
    lib.replace_scores(model.id, lib.attribute("noisy").id, order, np.array([v[0] for v in PHOTOS.values()]))
    lib.replace_scores(model.id, user.id, order, np.array([v[1] for v in PHOTOS.values()]))
    yield lib, ids
    lib.close()


def names(lib, ids, ranked):
    by_id = {v: k for k, v in ids.items()}
    return [by_id[i] for i in ranked]


def test_directions_of_checks_and_attributes():
    assert direction_of("noise") == LOWER and direction_of("noisy") == LOWER
    assert direction_of("eyes_closed") == LOWER and direction_of("eye_sharpness") == HIGHER
    assert direction_of("exposure") == NEAR_ZERO and direction_of("sharpness") == HIGHER
    assert direction_of("quality") == HIGHER and direction_of("my attribute") == HIGHER
    assert direction_of("my attribute", {"better": "lower"}) == LOWER
    assert goodness(-0.1, NEAR_ZERO) > goodness(0.5, NEAR_ZERO) and goodness(1, LOWER) > goodness(2, LOWER)


def test_best_first_sorting_follows_each_direction(lib):
    lib, ids = lib
    q = lambda sort, desc=None: names(lib, ids, lib.query_ids(PhotoQuery(sort=sort, descending=desc)))  # noqa: E731
    assert q("noisy") == ["b.jpg", "c.jpg", "a.jpg"]  # least noisy first, not the noisiest
    assert q("noise") == ["b.jpg", "c.jpg", "a.jpg"]
    assert q("exposure") == ["b.jpg", "c.jpg", "a.jpg"]  # 0.05, 0.5, -0.8: closest to 0 first
    assert q("exposure", True) == ["a.jpg", "c.jpg", "b.jpg"]  # farthest from 0 first
    assert q("sharpness") == ["b.jpg", "c.jpg", "a.jpg"]
    assert q("cluttered") == ["b.jpg", "c.jpg", "a.jpg"]  # its positive prompt by default


def test_a_user_attribute_direction_is_stored_and_keeps_scores(lib):
    lib, ids = lib
    info = lib.set_attribute_direction("Cluttered", LOWER)
    assert info.direction == LOWER and lib.attribute("cluttered").direction == LOWER
    assert names(lib, ids, lib.query_ids(PhotoQuery(sort="cluttered"))) == ["a.jpg", "c.jpg", "b.jpg"]
    assert len([r for r in lib.query(PhotoQuery()) if "cluttered" in r.scores]) == 3
    with pytest.raises(PhotosenseError, match="higher or lower"):
        lib.set_attribute_direction("cluttered", "sideways")


def test_best_of_a_burst_and_export_top_use_the_direction(lib, tmp_path):
    lib, ids = lib
    group = Group(tuple(sorted(ids.values())), "burst")
    assert names(lib, ids, best_of_groups([group], lib, "noisy")) == ["b.jpg"]
    assert names(lib, ids, best_of_groups([group], lib, "exposure")) == ["b.jpg"]
    rows, _unranked, _missing = select_photos(lib, ExportOptions(dest=tmp_path / "out", flag=None, top=1,
                                                                 by="noisy"))
    assert [os.path.basename(r.path) for r in rows] == ["b.jpg"]
    rows, _u, _m = select_photos(lib, ExportOptions(dest=tmp_path / "out", flag=None, top=2, by="exposure"))
    assert [os.path.basename(r.path) for r in rows] == ["b.jpg", "c.jpg"]


def test_sorts_by_rating_flag_and_label(lib):
    lib, ids = lib
    lib.set_culling([ids["c.jpg"]], rating=4, flag=1, color_label="red")
    lib.set_culling([ids["a.jpg"]], rating=2, flag=-1, color_label="blue")
    q = lambda sort: names(lib, ids, lib.query_ids(PhotoQuery(sort=sort)))  # noqa: E731
    assert q("rating") == ["c.jpg", "a.jpg", "b.jpg"]
    assert q("flag") == ["c.jpg", "b.jpg", "a.jpg"]  # picks, unflagged, rejects
    assert q("label") == ["a.jpg", "c.jpg", "b.jpg"]  # by label name, unlabelled last
