"""Bursts and near-duplicates: grouping by time + feature similarity, exact copies by hash,
collapse to the best photo, pick-best-reject-rest as one undoable action, the CLI."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from photosense.cli import main
from photosense.curation.groups import (
    Group,
    best_of,
    best_of_groups,
    collapse,
    find_groups,
    pick_best_of_groups,
)
from photosense.ingest.scan import Scanner
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT, Library, PhotoQuery, ScanRecord

BASE = datetime(2024, 6, 1, 12, 0, 0)
DIM = 16


@dataclass
class Shot:
    """A synthetic photo: capture time (seconds after BASE; None = none, mtime is used),
    image feature (None = not encoded), content hash (None = a unique one), checks."""

    name: str
    t: float | None
    vec: np.ndarray | None
    hash: str | None = None
    mtime: float = 1_700_000_000.0
    checks: dict | None = None


def synthetic_library(tmp_path: Path, shots: list[Shot], model_key: str = "synthetic",
                      ) -> tuple[Library, dict[str, int]]:
    """A library of empty files (never decoded) with controlled times, hashes and features."""
    folder = tmp_path / "shots"
    folder.mkdir(exist_ok=True)
    lib = Library(tmp_path / "lib.sqlite3")
    info = lib.add_folder(folder)
    for s in shots:  # present on disk, so equal hashes read as copies rather than moves
        (folder / s.name).write_bytes(b"")
    lib.upsert_scanned(info.id, [
        ScanRecord(path=os.path.join(info.path, s.name), size=1, mtime=s.mtime,
                   content_hash=s.hash or f"unique-{s.name}",
                   capture_time=None if s.t is None else BASE + timedelta(seconds=s.t),
                   checks=s.checks)
        for s in shots
    ])
    ids = {os.path.basename(r.path): r.id for r in lib.query(PhotoQuery())}
    vecs = [s for s in shots if s.vec is not None]
    if vecs:
        dim = len(vecs[0].vec)
        model = lib.ensure_model(model_key, dim, 100.0)
        lib.set_setting("active_model", model_key)
        lib.store_features(model.id, 0, [
            (ids[s.name], (s.vec / np.linalg.norm(s.vec)).astype(np.float32), {}) for s in vecs])
    return lib, ids


def unit(rng, dim=DIM) -> np.ndarray:
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, rng, eps=0.02) -> np.ndarray:
    """A vector at cosine ~0.99+ from ``v`` (another frame of the same burst)."""
    w = v + eps * rng.normal(size=v.shape)
    return w / np.linalg.norm(w)


def at_cosine(v: np.ndarray, cos: float, rng) -> np.ndarray:
    """A unit vector at exactly cosine ``cos`` from unit ``v``."""
    r = rng.normal(size=v.shape)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    return cos * v + np.sqrt(1 - cos * cos) * r


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def burst_library(tmp_path, rng):
    a, b, c = unit(rng), unit(rng), unit(rng)
    shots = [
        Shot("a1.jpg", 0.0, a, checks={"sharpness": 10, "exposure": 0.5, "noise": 3}),
        Shot("a2.jpg", 1.0, near(a, rng), checks={"sharpness": 30, "exposure": 0.5, "noise": 9}),
        Shot("a3.jpg", 2.5, near(a, rng), checks={"sharpness": 20, "exposure": 0.5, "noise": 1}),
        Shot("b.jpg", 100.0, b),  # alone
        Shot("c1.jpg", 200.0, c),
        Shot("c2.jpg", 201.5, near(c, rng)),
        Shot("d.jpg", 202.0, unit(rng)),  # right after c2, but looks different
    ]
    lib, ids = synthetic_library(tmp_path, shots)
    yield lib, ids
    lib.close()


def names(groups, ids):
    by_id = {v: k for k, v in ids.items()}
    return [[by_id[i] for i in g.ids] for g in groups]


def test_bursts_are_close_in_time_and_in_looks(burst_library):
    lib, ids = burst_library
    groups = find_groups(lib)
    assert names(groups, ids) == [["a1.jpg", "a2.jpg", "a3.jpg"], ["c1.jpg", "c2.jpg"]]
    assert [g.kind for g in groups] == ["burst", "burst"]


def test_window_is_between_consecutive_shots(tmp_path, rng):
    v = unit(rng)
    shots = [Shot("x1.jpg", 0.0, v), Shot("x2.jpg", 5.0, near(v, rng)), Shot("x3.jpg", 9.0, near(v, rng))]
    lib, ids = synthetic_library(tmp_path, shots)
    assert find_groups(lib, window_s=3.0) == []
    assert names(find_groups(lib, window_s=4.0), ids) == [["x2.jpg", "x3.jpg"]]
    # A chain: 5 s then 4 s apart joins all three although first and last are 9 s apart.
    assert names(find_groups(lib, window_s=5.0), ids) == [["x1.jpg", "x2.jpg", "x3.jpg"]]
    lib.close()


def test_threshold_is_the_cosine_of_consecutive_features(tmp_path, rng):
    v = unit(rng)
    lib, ids = synthetic_library(tmp_path, [Shot("p.jpg", 0.0, v), Shot("q.jpg", 1.0, at_cosine(v, 0.90, rng))])
    assert find_groups(lib, threshold=0.92) == []
    assert names(find_groups(lib, threshold=0.89), ids) == [["p.jpg", "q.jpg"]]
    assert find_groups(lib, threshold=0.91) == []
    lib.close()


def test_exact_duplicates_by_hash_whatever_their_times(tmp_path, rng):
    v, w = unit(rng), unit(rng)
    shots = [
        Shot("orig.jpg", None, None, hash="same", mtime=1000.0),
        Shot("copy.jpg", None, None, hash="same", mtime=9_000_000.0),  # copied months later
        Shot("other.jpg", None, None, mtime=1001.0),
        # A burst holding a copy of one of its frames.
        Shot("s1.jpg", 50.0, w, hash="frame"),
        Shot("s2.jpg", 51.0, near(w, rng)),
        Shot("s1 copy.jpg", 52.0, w, hash="frame"),
        Shot("lonely.jpg", 500.0, v),
    ]
    lib, ids = synthetic_library(tmp_path, shots)
    groups = find_groups(lib)
    by_kind = {g.kind: names([g], ids)[0] for g in groups}
    assert by_kind == {"duplicate": ["orig.jpg", "copy.jpg"],
                       "burst+duplicate": ["s1.jpg", "s2.jpg", "s1 copy.jpg"]}
    lib.close()


def test_photos_without_features_group_only_as_duplicates(tmp_path, rng):
    v = unit(rng)
    shots = [Shot("f1.jpg", 0.0, v), Shot("nofeat.jpg", 0.5, None), Shot("f2.jpg", 1.0, near(v, rng)),
             Shot("nofeat copy.jpg", 90.0, None, hash="nf"), Shot("nofeat 2.jpg", 91.0, None, hash="nf")]
    lib, ids = synthetic_library(tmp_path, shots)
    groups = find_groups(lib)
    assert names(groups, ids) == [["f1.jpg", "f2.jpg"], ["nofeat copy.jpg", "nofeat 2.jpg"]]
    assert [g.kind for g in groups] == ["burst", "duplicate"]
    lib.close()


def test_without_a_model_only_duplicates(tmp_path):
    shots = [Shot("a.jpg", 0.0, None, hash="h"), Shot("b.jpg", 0.5, None, hash="h"), Shot("c.jpg", 1.0, None)]
    lib, ids = synthetic_library(tmp_path, shots)
    assert lib.active_model() is None
    assert names(find_groups(lib), ids) == [["a.jpg", "b.jpg"]]
    lib.close()


def test_missing_photos_are_left_out(burst_library):
    lib, ids = burst_library
    lib.set_missing([r.path for r in lib.rows([ids["a2.jpg"], ids["c2.jpg"]])])
    assert names(find_groups(lib), ids) == [["a1.jpg", "a3.jpg"]]


def test_real_scan_finds_a_copied_file_and_real_features_group(tmp_path, photo_folder, tiny_config):
    from photosense.pipeline import ScoringJob

    shutil.copy2(photo_folder / "coffee.jpg", photo_folder / "coffee copy.jpg")
    lib = Library(tmp_path / "real.sqlite3")
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    ids = {os.path.basename(r.path): r.id for r in lib.query(PhotoQuery())}
    groups = find_groups(lib)  # not scored yet: copies only
    assert [sorted(n) for n in names(groups, ids)] == [["coffee copy.jpg", "coffee.jpg"]]
    assert groups[0].kind == "duplicate"
    ScoringJob(lib, tiny_config).run()
    # The files were written within seconds and carry no EXIF time: with any similarity all
    # 16 form one burst; with an impossible threshold only the copy remains.
    everything = find_groups(lib, window_s=3600, threshold=-1.0)
    assert len(everything) == 1 and len(everything[0].ids) == 16
    assert everything[0].kind == "burst+duplicate"
    copies = find_groups(lib, window_s=3600, threshold=1.01)
    assert [sorted(g.ids) for g in copies] == [sorted([ids["coffee.jpg"], ids["coffee copy.jpg"]])]
    # The copy's stored feature equals the original's.
    feat_ids, matrix = lib.feature_matrix(lib.active_model().id)
    rows = {int(i): k for k, i in enumerate(feat_ids)}
    assert float(matrix[rows[ids["coffee.jpg"]]] @ matrix[rows[ids["coffee copy.jpg"]]]) == pytest.approx(1.0, abs=1e-5)
    lib.close()


def test_best_of_follows_each_measure_in_its_natural_order(burst_library):
    lib, ids = burst_library
    burst = find_groups(lib)[0]
    assert best_of(burst, lib, "sharpness") == ids["a2.jpg"]  # sharpest
    assert best_of(burst, lib, "noise") == ids["a3.jpg"]  # least noisy
    # An attribute score, one member unscored: it cannot win.
    attr = lib.attribute("quality")
    model = lib.active_model()
    lib.replace_scores(model.id, attr.id, np.array([ids["a1.jpg"], ids["a3.jpg"]]), np.array([0.4, 0.7]))
    assert best_of(burst, lib, "quality") == ids["a3.jpg"]
    # Nothing scored at all in a group: the earliest shot.
    assert best_of_groups(find_groups(lib), lib, "bright") == [ids["a1.jpg"], ids["c1.jpg"]]


def test_collapse_keeps_each_groups_best_in_view_order(burst_library):
    lib, ids = burst_library
    groups = find_groups(lib)
    view = lib.query_ids(PhotoQuery(sort="name"))  # a1 a2 a3 b c1 c2 d
    best = lambda g: best_of(g, lib, "sharpness")  # noqa: E731
    shown, expand = collapse(view, groups, best)
    # c1/c2 have no sharpness: the earliest (c1) stands for them.
    assert shown == [ids["a2.jpg"], ids["b.jpg"], ids["c1.jpg"], ids["d.jpg"]]
    assert expand == {ids["a2.jpg"]: [ids["a1.jpg"], ids["a2.jpg"], ids["a3.jpg"]],
                      ids["c1.jpg"]: [ids["c1.jpg"], ids["c2.jpg"]]}
    # Same with precomputed bests.
    assert collapse(view, groups, best_of_groups(groups, lib, "sharpness")) == (shown, expand)
    # The best filtered out of the view: the best of what is visible stands for the group.
    view2 = [i for i in lib.query_ids(PhotoQuery(sort="name", descending=True)) if i != ids["a2.jpg"]]
    shown2, expand2 = collapse(view2, groups, best)
    assert shown2 == [ids["d.jpg"], ids["c1.jpg"], ids["b.jpg"], ids["a3.jpg"]]
    assert expand2[ids["a3.jpg"]] == [ids["a3.jpg"], ids["a1.jpg"]]
    # One visible member: nothing to collapse.
    assert collapse([ids["a1.jpg"], ids["b.jpg"]], groups, best) == ([ids["a1.jpg"], ids["b.jpg"]], {})


def test_pick_best_rejects_the_rest_in_one_undoable_action(burst_library):
    lib, ids = burst_library
    lib.set_culling([ids["a1.jpg"]], flag=FLAG_PICK, rating=3, color_label="red")
    lib.set_culling([ids["b.jpg"]], flag=FLAG_REJECT)
    before_all = lib.states(ids.values())
    groups = find_groups(lib)
    previous = pick_best_of_groups(lib, groups, "sharpness")
    assert sorted(s.photo_id for s in previous) == sorted(i for g in groups for i in g.ids)
    flags = {s.photo_id: s.flag for s in lib.states(ids.values())}
    assert flags[ids["a2.jpg"]] == FLAG_PICK and flags[ids["c1.jpg"]] == FLAG_PICK
    assert flags[ids["a1.jpg"]] == flags[ids["a3.jpg"]] == flags[ids["c2.jpg"]] == FLAG_REJECT
    assert flags[ids["b.jpg"]] == FLAG_REJECT and flags[ids["d.jpg"]] == FLAG_NONE  # not in a group
    a1 = lib.states([ids["a1.jpg"]])[0]
    assert (a1.rating, a1.color_label) == (3, "red")  # only flags change
    lib.set_states(previous)
    assert lib.states(ids.values()) == before_all
    assert pick_best_of_groups(lib, [], "sharpness") == []


def test_group_is_a_plain_value():
    g = Group([3, 1, 2], "burst")
    assert len(g) == 3 and g.kind == "burst"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_groups_command(capsys, burst_library, tmp_path):
    lib, ids = burst_library
    path = str(lib.path)
    code, out, err = run_cli(capsys, "groups", "--by", "sharpness", "--library", path)
    assert code == 0 and "2 groups, 5 photos" in err
    lines = out.splitlines()
    assert lines[0] == "group 1: burst, 3 photos"
    starred = [line for line in lines if line.lstrip().startswith("*")]
    assert len(starred) == 2 and starred[0].endswith("a2.jpg")

    code, out, _ = run_cli(capsys, "groups", "--by", "noise", "--window", "1.2", "--format", "json",
                           "--library", path)
    data = json.loads(out)
    assert [len(g["members"]) for g in data] == [2]  # a2 -> a3 is 1.5 s: only a1 a2, c1 c2 is 1.5 s too
    assert data[0]["kind"] == "burst" and data[0]["best"].endswith("a1.jpg")
    assert [m["best"] for m in data[0]["members"]] == [True, False]

    code, _, err = run_cli(capsys, "groups", "--by", "sharpness", "--apply", "--library", path)
    assert code == 0 and "picked 2, rejected 3" in err
    assert {r.name for r in lib.query(PhotoQuery(flag="pick"))} == {"a2.jpg", "c1.jpg"}

    code, _, err = run_cli(capsys, "groups", "--threshold", "3", "--library", path)
    assert code == 1 and err.count("photosense:") == 1
    code, _, err = run_cli(capsys, "groups", "--by", "nope", "--library", path)
    assert code == 1 and "unknown attribute or check: nope" in err


def _burst_path(rng, n: int) -> list[np.ndarray]:
    """Features of ``n`` frames drifting slowly: neighbours alike, the ends not."""
    start, end = unit(rng), unit(rng)
    return [near((1 - k / (n - 1)) * start + k / (n - 1) * end, rng, eps=0.005) for k in range(n)]


def test_a_20_fps_burst_is_ordered_and_split_by_sub_second_time(tmp_path):
    """20 frames inside one second of the camera's clock: they are told apart only by their
    sub-second time (SubSecTimeOriginal), which must survive the library and order them."""
    rng = np.random.default_rng(20)
    vecs = _burst_path(rng, 20)
    # Frames 0-9 at 50 ms steps; a 300 ms pause; frames 10-19. Stored in reverse (ids run
    # against the clock), all in the same whole second but the last ones.
    times = [0.05 * k for k in range(10)] + [0.75 + 0.05 * k for k in range(10)]
    shots = [Shot(f"f{19 - k:02d}.jpg", times[k], vecs[k]) for k in range(20)]
    lib, ids = synthetic_library(tmp_path, list(reversed(shots)))
    by_id = {v: k for k, v in ids.items()}
    stored = {os.path.basename(r.path): r.capture_time for r in lib.query(PhotoQuery())}
    assert stored["f18.jpg"] - stored["f19.jpg"] == timedelta(milliseconds=50)

    (group,) = find_groups(lib, window_s=0.5, threshold=0.9)
    assert [by_id[i] for i in group.ids] == [f"f{19 - k:02d}.jpg" for k in range(20)]
    assert group.kind == "burst"
    # A window shorter than the pause splits the burst there, and only there.
    first, second = find_groups(lib, window_s=0.1, threshold=0.9)
    assert [by_id[i] for i in first.ids] == [f"f{19 - k:02d}.jpg" for k in range(10)]
    assert [by_id[i] for i in second.ids] == [f"f{19 - k:02d}.jpg" for k in range(10, 20)]
    lib.close()


def test_sub_second_capture_times_come_from_the_files(tmp_path, real_photos):
    """Scanned JPEGs with the same DateTimeOriginal and different SubSecTimeOriginal keep
    their order in the library, whatever their names."""
    from PIL import Image

    folder = tmp_path / "burst"
    folder.mkdir()
    for name, subsec in (("a.jpg", "95"), ("b.jpg", "05"), ("c.jpg", "5")):
        exif = Image.Exif()
        exif.get_ifd(0x8769).update({0x9003: "2024:06:01 12:00:00", 0x9291: subsec})
        real_photos["coffee"].save(folder / name, exif=exif.tobytes())
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(folder)
    Scanner(lib).scan_all()
    rows = sorted(lib.query(PhotoQuery()), key=lambda r: r.capture_time)
    assert [(r.name, r.capture_time.microsecond) for r in rows] == [
        ("b.jpg", 50000), ("c.jpg", 500000), ("a.jpg", 950000)]
    lib.close()


def _face(eyes: str, sharp: float) -> dict:
    return {"box": [0.4, 0.3, 0.1, 0.1], "eyes": eyes, "eye_sharpness": sharp, "openness": 0.3}


def test_best_of_a_burst_prefers_open_then_sharpest_eyes_then_the_measure(burst_library):
    from photosense.curation.groups import best_reason

    lib, ids = burst_library
    burst = find_groups(lib)[0]  # a1 a2 a3; by sharpness a2 > a3 > a1
    assert best_of(burst, lib, "sharpness") == ids["a2.jpg"]
    assert best_reason(burst, ids["a2.jpg"], lib, "sharpness") == "best sharpness of 3"
    # Someone blinked in a2: it loses, though the sharpest frame overall.
    lib.store_faces([(ids["a1.jpg"], [_face("open", 0.60), _face("open", 0.50)]),
                     (ids["a2.jpg"], [_face("closed", 0.70), _face("open", 0.50)]),
                     (ids["a3.jpg"], [_face("open", 0.40), _face("unclear", 0.30)])])
    assert best_of(burst, lib, "sharpness") == ids["a1.jpg"]  # open, and sharpest open eyes
    assert best_reason(burst, ids["a1.jpg"], lib, "sharpness") == \
        "no closed eyes (1 of 3 with closed eyes), sharpest eyes of 3"
    # Eyes as sharp (within the tie) in a1 and a3: the measure decides between them.
    lib.store_faces([(ids["a3.jpg"], [_face("open", 0.58)])])
    assert best_of(burst, lib, "sharpness") == ids["a3.jpg"]
    assert best_of_groups([burst], lib, "noise") == [ids["a3.jpg"]]
    assert best_reason(burst, ids["a3.jpg"], lib, "sharpness") == \
        "no closed eyes (1 of 3 with closed eyes), eyes as sharp as the sharpest, best sharpness"
    # Everyone blinked somewhere: fewest is not asked, the sharpest of them wins.
    lib.store_faces([(ids["a1.jpg"], [_face("closed", 0.6)]), (ids["a3.jpg"], [_face("closed", 0.2)])])
    assert best_of(burst, lib, "sharpness") == ids["a2.jpg"]
    assert best_reason(burst, ids["a2.jpg"], lib, "sharpness").startswith("closed eyes in every frame")
