"""Faces and eyes (photosense.scoring.faces): found at scan time, stored, listed, filtered."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from PIL import Image

from photosense.library.records import summarise_faces as summarise
from photosense.scoring import faces as faces_mod
from photosense.scoring.faces import Face, find_faces
from tests.fixtures.cli import run_cli
from tests.fixtures.photos import blur, load_photo

# The astronaut's face in scikit-image's sample, as fractions (x, y, w, h), by eye.
ASTRONAUT_FACE = (0.34, 0.13, 0.20, 0.20)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return load_photo("astronaut")


def _group(photo: Image.Image, face_px: float, copies: int = 4) -> Image.Image:
    """``copies`` of the astronaut, scaled so that her face is ``face_px`` wide, on a
    1024 x 683 grey frame: a group photo with small faces."""
    scale = face_px / (ASTRONAUT_FACE[2] * photo.width)
    small = photo.resize((round(photo.width * scale), round(photo.height * scale)),
                         Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1024, 683), (90, 110, 120))
    for k in range(copies):
        canvas.paste(small, (40 + k * 240, 300))
    return canvas


def test_the_astronaut_has_one_face_with_open_sharp_eyes(astronaut):
    found = find_faces(astronaut)
    assert len(found) == 1
    face = found[0]
    for got, want in zip(face.box, ASTRONAUT_FACE):
        assert got == pytest.approx(want, abs=0.03)
    assert face.eyes == "open"
    assert face.openness > faces_mod.OPEN_ABOVE
    assert face.eye_sharpness > faces_mod.IN_FOCUS


def test_small_faces_of_a_group_are_found(astronaut):
    group = _group(astronaut, 40)
    found = find_faces(group)
    assert len(found) == 4
    for face in found:
        assert face.box[2] * group.width == pytest.approx(40, abs=8)
        assert face.box[1] * group.height > 290  # where they were pasted, not elsewhere


@pytest.mark.parametrize("frame", ["landscape", "portrait", "panorama"])
def test_tiles_cut_from_one_resized_copy_find_what_tiles_resized_alone_find(astronaut, frame):
    # The small-face tiles are cut from one copy of the frame at the tiles' scale: the
    # detections must be those of each tile cropped from the frame and resized on its own,
    # at the same places (a face on a tile edge included), in analysed pixels.
    group = _group(astronaut, 40, copies=5)
    if frame == "portrait":
        portrait = Image.new("RGB", (683, 1024), (90, 110, 120))
        portrait.paste(group.crop((0, 0, 683, 683)), (0, 200))
        group = portrait
    elif frame == "panorama":  # tiles as tall as the frame, not 512 px
        group = group.crop((0, 260, 1024, 560))
    models = faces_mod._models()
    alone = faces_mod._detect_in(models, group, 0, 0)
    for left, top, right, bottom in faces_mod._tiles(*group.size):
        alone += faces_mod._detect_in(models, group.crop((left, top, right, bottom)), left, top)
    want = faces_mod._suppress(alone)
    got = faces_mod._detections(models, group)
    assert len(want) >= 3
    assert len(got) == len(want)
    for g, w in zip(sorted(got, key=lambda d: tuple(d.box)), sorted(want, key=lambda d: tuple(d.box))):
        assert g.box == pytest.approx(w.box, abs=2.0)
        assert g.keypoints == pytest.approx(w.keypoints, abs=2.0)
        assert g.score == pytest.approx(w.score, abs=0.03)


def test_a_frame_without_people_has_no_faces(real_photos):
    for name in ("coffee", "rocket", "motorcycle_left"):
        assert find_faces(real_photos[name]) == [], name
    assert find_faces(Image.new("RGB", (640, 480), (128, 128, 128))) == []
    assert find_faces(Image.new("RGB", (8, 8))) == []


def test_eye_sharpness_falls_with_blur_and_ignores_the_face_size(astronaut):
    sharp = find_faces(astronaut)[0].eye_sharpness
    soft = find_faces(blur(astronaut, 3))[0].eye_sharpness
    assert soft < sharp - 0.2
    # The same face twice as large in pixels (upsampled: no new detail) reads about the same:
    # sharpness is measured at a scale normalised by face width.
    large = astronaut.resize((1024, 1024), Image.Resampling.LANCZOS)
    assert find_faces(large)[0].eye_sharpness == pytest.approx(sharp, abs=0.12)


def test_eye_state_bands():
    width = [30.0, 30.0]
    assert faces_mod._eye_state([0.05, 0.06], width, 120, 0.9) == "closed"
    assert faces_mod._eye_state([0.30, 0.28], width, 120, 0.9) == "open"
    # Between the bands, one eye each side (a wink), or one half-closed: never a guess.
    assert faces_mod._eye_state([0.15, 0.15], width, 120, 0.9) == "unclear"
    assert faces_mod._eye_state([0.05, 0.30], width, 120, 0.9) == "unclear"
    # Too small, turned away (one eye foreshortened), or not clearly a face: unclear.
    assert faces_mod._eye_state([0.05, 0.05], width, faces_mod.MIN_FACE_PX - 1, 0.9) == "unclear"
    assert faces_mod._eye_state([0.05, 0.05], [30.0, 12.0], 120, 0.9) == "unclear"
    assert faces_mod._eye_state([0.30, 0.30], width, 120, 0.2) == "unclear"


def test_summary_counts_closed_eyes_and_takes_the_sharpest():
    faces = [Face((0, 0, 0.1, 0.1), "closed", 0.3).as_dict(),
             Face((0.5, 0, 0.1, 0.1), "open", 0.7).as_dict(),
             Face((0.2, 0, 0.1, 0.1), "unclear", 0.5).as_dict()]
    assert summarise(faces) == {"faces": 3, "eyes_closed": 1, "eye_sharpness": 0.7}
    assert summarise([]) == {"faces": 0, "eyes_closed": 0, "eye_sharpness": None}
    assert summarise(None) == {"faces": None, "eyes_closed": None, "eye_sharpness": None}


@pytest.fixture
def face_shoot(tmp_path, astronaut, real_photos):
    folder = tmp_path / "shoot"
    folder.mkdir()
    astronaut.save(folder / "astronaut.jpg", quality=92)
    blur(astronaut, 3).save(folder / "astronaut_soft.jpg", quality=92)
    _group(astronaut, 48).save(folder / "group.jpg", quality=92)
    real_photos["coffee"].save(folder / "coffee.jpg", quality=92)
    return folder


def _listed(capsys, lib, *args):
    code, out, err = run_cli(capsys, "--library", lib, "list", "--format", "json", *args)
    assert code == 0, err
    return {row["path"].rsplit("/", 1)[-1]: row for row in json.loads(out)}


def test_add_finds_faces_and_list_shows_them(tmp_path, capsys, face_shoot):
    lib = tmp_path / "lib.sqlite3"
    code, _out, err = run_cli(capsys, "--library", lib, "add", face_shoot)
    assert code == 0, err
    rows = _listed(capsys, lib, "--sort", "name")
    astro = rows["astronaut.jpg"]
    assert astro["checks"]["faces"] == 1
    assert astro["checks"]["eyes_closed"] == 0
    [face] = astro["faces"]
    assert set(face) == {"box", "eyes", "eye_sharpness"}
    assert face["eyes"] == "open"
    assert face["box"][0] == pytest.approx(ASTRONAUT_FACE[0], abs=0.03)
    assert astro["checks"]["eye_sharpness"] == face["eye_sharpness"]
    assert rows["group.jpg"]["checks"]["faces"] == 4
    assert rows["coffee.jpg"]["faces"] == []
    assert rows["coffee.jpg"]["checks"]["faces"] == 0
    assert rows["coffee.jpg"]["checks"]["eye_sharpness"] is None

    # Sorted by eye sharpness: the sharp astronaut before her blurred copy; no faces last.
    code, out, _err = run_cli(capsys, "--library", lib, "list", "--sort", "eye_sharpness")
    names = [line.rsplit("/", 1)[-1] for line in out.splitlines()[1:]]
    assert names.index("astronaut.jpg") < names.index("astronaut_soft.jpg")
    assert names[-1] == "coffee.jpg"
    # The table shows the counts (faces, closed eyes).
    line = next(ln for ln in out.splitlines() if ln.endswith("/group.jpg"))
    assert line.split()[-3:-1] == ["4", "0"]

    assert set(_listed(capsys, lib, "--max", "faces=0")) == {"coffee.jpg"}
    assert _listed(capsys, lib, "--min", "eyes_closed=1") == {}
    in_focus = _listed(capsys, lib, "--min", f"eye_sharpness={faces_mod.IN_FOCUS}")
    assert "astronaut.jpg" in in_focus and "astronaut_soft.jpg" not in in_focus

    code, out, _err = run_cli(capsys, "--library", lib, "list", "--format", "csv",
                              "--sort", "name")
    header, first = out.splitlines()[:2]
    cols = header.split(",")
    assert cols[cols.index("faces")] == "faces" and "eyes_closed" in cols
    assert first.split(",")[cols.index("faces")] == "1"


def test_a_scan_looks_for_faces_in_photos_known_from_before(tmp_path, capsys, face_shoot):
    lib = tmp_path / "lib.sqlite3"
    assert run_cli(capsys, "--library", lib, "add", face_shoot)[0] == 0
    with sqlite3.connect(lib) as db:  # a library from before faces: no table at all
        db.execute("DROP TABLE face_checks")
    rows = _listed(capsys, lib)  # reopened: the table comes back, empty
    assert rows["astronaut.jpg"]["faces"] is None
    assert rows["astronaut.jpg"]["checks"]["faces"] is None
    code, out, err = run_cli(capsys, "--library", lib, "scan")
    assert code == 0, err
    assert "4 unchanged" in out + err
    rows = _listed(capsys, lib)
    assert rows["astronaut.jpg"]["checks"]["faces"] == 1
    assert rows["group.jpg"]["checks"]["faces"] == 4


def test_the_face_pass_of_a_scan_names_its_stage_in_the_job_row(tmp_path, capsys, face_shoot):
    """A library from before faces: the scan's face pass restarts the counter, so its progress
    says what it is ("finding faces"), in the job's progress and in the window's job row."""
    from photosense.gui.status import progress_text
    from photosense.ingest.scan import Scanner
    from photosense.jobs import Job
    from photosense.library import Library

    lib_path = tmp_path / "lib.sqlite3"
    assert run_cli(capsys, "--library", lib_path, "add", face_shoot)[0] == 0
    with sqlite3.connect(lib_path) as db:
        db.execute("DROP TABLE face_checks")
    seen = []
    with Library(lib_path) as lib:
        job = Job(lambda ctl: Scanner(lib).scan_all(ctl.scan_progress, ctl.cancel), "scan", kind="scan")
        job.on_progress.append(lambda _job, value: seen.append(value))
        job.run()
    assert job.error is None
    assert (4, 4, "finding faces") in seen
    job.label = "Scanning folders"
    label, done, total, _ = progress_text(job, (2, 4, "finding faces"))
    assert (label, done, total) == ("Scanning folders: finding faces", 2, 4)
    assert progress_text(job, (2, 4))[0] == "Scanning folders"


def test_a_known_photo_found_unreadable_by_the_face_pass_is_not_retried_on_every_scan(
        tmp_path, capsys, face_shoot, monkeypatch):
    import photosense.ingest.faces_scan as faces_scan

    lib = tmp_path / "lib.sqlite3"
    assert run_cli(capsys, "--library", lib, "add", face_shoot)[0] == 0
    with sqlite3.connect(lib) as db:  # a library from before faces
        db.execute("DROP TABLE face_checks")
    coffee = face_shoot / "coffee.jpg"
    st = coffee.stat()  # damaged in place, size and time kept: the scan sees no change
    coffee.write_bytes(b"\0" * st.st_size)
    os.utime(coffee, ns=(st.st_atime_ns, st.st_mtime_ns))
    tried = []
    real = faces_scan.faces_of_file
    monkeypatch.setattr(faces_scan, "faces_of_file",
                        lambda path, companion: tried.append(path) or real(path, companion))
    code, out, err = run_cli(capsys, "--library", lib, "scan")
    assert code == 0, err
    assert sorted(os.path.basename(p) for p in tried) == [
        "astronaut.jpg", "astronaut_soft.jpg", "coffee.jpg", "group.jpg"]
    rows = _listed(capsys, lib)
    assert rows["coffee.jpg"]["error"] and rows["coffee.jpg"]["faces"] is None
    assert rows["group.jpg"]["checks"]["faces"] == 4
    tried.clear()
    assert run_cli(capsys, "--library", lib, "scan")[0] == 0
    assert tried == []  # known to be unreadable: reported, not decoded again


def test_a_changed_photo_gets_its_faces_again(tmp_path, capsys, face_shoot, real_photos):
    lib = tmp_path / "lib.sqlite3"
    assert run_cli(capsys, "--library", lib, "add", face_shoot)[0] == 0
    real_photos["rocket"].save(face_shoot / "astronaut.jpg", quality=90)
    assert run_cli(capsys, "--library", lib, "scan")[0] == 0
    assert _listed(capsys, lib)["astronaut.jpg"]["faces"] == []


def test_without_the_face_runtime_a_scan_still_records_the_rest(tmp_path, capsys, face_shoot,
                                                                 monkeypatch, caplog):
    def broken():
        raise ImportError("No module named 'ai_edge_litert'")

    monkeypatch.setattr(faces_mod, "_models", broken)
    monkeypatch.setattr(faces_mod, "_unavailable", None)
    lib = tmp_path / "lib.sqlite3"
    code, _out, err = run_cli(capsys, "--library", lib, "add", face_shoot)
    assert code == 0, err
    rows = _listed(capsys, lib)
    assert rows["astronaut.jpg"]["faces"] is None
    assert rows["astronaut.jpg"]["checks"]["sharpness"] is not None
    messages = [r.getMessage() for r in caplog.records if "face models" in r.getMessage()]
    assert len(messages) == 1 and "ai_edge_litert" in messages[0]


def test_face_check_names_are_not_attribute_names(tmp_path, capsys):
    lib = tmp_path / "lib.sqlite3"
    code, _out, err = run_cli(capsys, "--library", lib, "attr", "add", "eyes_closed",
                              "closed eyes", "open eyes")
    assert code != 0
    assert "name of a check" in err
