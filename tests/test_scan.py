"""Scanning: incremental, renames keep their data, deletes are marked, bad files isolated."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from photosense.ingest.scan import Scanner, walk_images
from photosense.library import FLAG_PICK, PhotoQuery


def _snapshot(folder: Path) -> dict[str, tuple[bytes, float]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime) for p in folder.rglob("*") if p.is_file()}


def _by_name(lib) -> dict[str, object]:
    return {os.path.basename(r.path): r for r in lib.query(PhotoQuery())}


def test_scan_adds_photos_with_metadata_and_checks(lib, photo_folder):
    before = _snapshot(photo_folder)
    lib.add_folder(photo_folder)
    report = Scanner(lib).scan_all()
    assert report.added == 15 and not report.errors
    rows = _by_name(lib)
    assert len(rows) == 15
    astro = rows["astronaut.jpg"]
    assert (astro.width, astro.height) == (512, 512)
    assert all(v is not None for v in astro.checks.values())
    # The checks move the right way on degraded copies of real photos.
    for name in ("astronaut", "coffee", "chelsea"):
        assert rows[f"{name}_blur.jpg"].checks["sharpness"] < rows[f"{name}.jpg"].checks["sharpness"]
        assert rows[f"{name}_dark.jpg"].checks["exposure"] < rows[f"{name}.jpg"].checks["exposure"]
        assert rows[f"{name}_noisy.jpg"].checks["noise"] > rows[f"{name}.jpg"].checks["noise"]
    assert _snapshot(photo_folder) == before, "scanning must never write to photos"


def test_rescan_is_incremental(lib, photo_folder, monkeypatch):
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    analysed = []
    import photosense.ingest.scan as scan_mod

    real = scan_mod.analyse_file
    monkeypatch.setattr(scan_mod, "analyse_file", lambda *a, **k: analysed.append(a[0]) or real(*a, **k))
    report = Scanner(lib).scan_all()
    assert report.unchanged == 15 and report.added == 0 and analysed == []
    # Touch one file's content: only that one is read again.
    target = photo_folder / "coffee.jpg"
    Image.open(photo_folder / "rocket.jpg").save(target, quality=80)
    report = Scanner(lib).scan_all()
    assert report.updated == 1 and analysed == [str(target)]


def test_rename_and_move_keep_flags_features_and_scores(lib, photo_folder):
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    rows = _by_name(lib)
    pid = rows["chelsea.jpg"].id
    lib.set_culling([pid], flag=FLAG_PICK, rating=4, color_label="blue")
    model = lib.ensure_model("m", 2, 100.0)
    import numpy as np

    lib.store_features(model.id, 0, [(pid, np.array([1, 0], np.float32), {lib.attributes()[0].id: 0.8})])
    (photo_folder / "cats").mkdir()
    shutil.move(photo_folder / "chelsea.jpg", photo_folder / "cats" / "the cat.jpg")
    report = Scanner(lib).scan_all()
    assert report.moved == 1 and report.missing == 0 and report.added == 0
    row = lib.rows([pid])[0]
    assert row.path == str(photo_folder / "cats" / "the cat.jpg")
    assert (row.flag, row.rating, row.color_label, row.missing) == (FLAG_PICK, 4, "blue", False)
    assert lib.photos_needing_features(model.id) and pid not in [p for p, _ in lib.photos_needing_features(model.id)]
    assert lib.rows([pid], model="m")[0].scores == {"quality": pytest.approx(0.8)}


def test_deleted_file_is_marked_missing_with_flags_kept_and_comes_back(lib, photo_folder):
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    pid = _by_name(lib)["rocket.jpg"].id
    lib.set_culling([pid], flag=FLAG_PICK)
    saved = (photo_folder / "rocket.jpg").read_bytes()
    (photo_folder / "rocket.jpg").unlink()
    report = Scanner(lib).scan_all()
    assert report.missing == 1
    row = lib.rows([pid])[0]
    assert row.missing and row.flag == FLAG_PICK
    assert pid not in lib.query_ids(PhotoQuery(include_missing=False))
    (photo_folder / "rocket.jpg").write_bytes(saved)
    Scanner(lib).scan_all()
    row = lib.rows([pid])[0]
    assert not row.missing and row.flag == FLAG_PICK


def test_missing_folder_keeps_everything(lib, photo_folder, tmp_path):
    folder = lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    moved = tmp_path / "unmounted"
    photo_folder.rename(moved)
    report = Scanner(lib).scan_all()
    assert report.missing == 15
    assert lib.folders()[0].missing and lib.folders()[0].photo_count == 15
    moved.rename(photo_folder)
    report = Scanner(lib).scan_all()
    assert report.restored == 15 and not lib.folders()[0].missing
    assert folder.id == lib.folders()[0].id


def _make_bad_files(folder: Path, good_jpeg: bytes) -> dict[str, str]:
    """Create every kind of bad input; return name -> expected error fragment."""
    (folder / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("these are my notes, not a photo\n")
    (folder / "random.png").write_bytes(os.urandom(4096))
    # A decompression bomb: a tiny PNG claiming 40000 x 40000 pixels.
    Image.new("1", (40000, 40000)).save(folder / "bomb.png", optimize=True)
    return {"truncated.jpg": "truncated", "empty.jpg": "empty", "notes.jpg": "not an image",
            "random.png": "", "bomb.png": "too large"}


def test_bad_inputs_are_reported_and_the_rest_is_processed(lib, tmp_path, real_photos):
    folder = tmp_path / "shoot"
    folder.mkdir()
    real_photos["astronaut"].save(folder / "good.jpg", quality=90)
    expected = _make_bad_files(folder, (folder / "good.jpg").read_bytes())
    (folder / "a folder.jpg").mkdir()  # a directory named like an image
    real_photos["coffee"].save(folder / "a folder.jpg" / "inside.jpg")
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a symlink loop
    (folder / "dangling.jpg").symlink_to(folder / "does-not-exist.jpg")
    weird = os.path.join(os.fsencode(folder), b"caf\xe9 \xff.jpg")
    real_photos["chelsea"].save(os.fsdecode(weird), format="JPEG")
    before = _snapshot(folder)

    lib.add_folder(folder)
    report = Scanner(lib).scan_all()
    rows = _by_name(lib)
    errors = {os.path.basename(p): e for p, e in report.errors}
    assert set(errors) == set(expected)
    for name, fragment in expected.items():
        assert fragment in rows[name].error and "\n" not in rows[name].error
    assert rows["good.jpg"].error is None and rows["inside.jpg"].error is None
    assert rows[os.fsdecode(b"caf\xe9 \xff.jpg")].checks["sharpness"] is not None
    assert "a folder.jpg" not in rows and "dangling.jpg" not in rows
    assert len(rows) == len(expected) + 3  # no duplicates through the symlink loop
    assert _snapshot(folder) == before


def test_file_vanishing_mid_scan(lib, photo_folder, monkeypatch):
    import photosense.ingest.scan as scan_mod

    real = scan_mod.analyse_file

    coffee = photo_folder / "coffee.jpg"
    data = coffee.read_bytes()

    def vanish(path, size, mtime, **kwargs):
        if path.endswith("coffee.jpg"):
            os.unlink(path)
        return real(path, size, mtime, **kwargs)

    monkeypatch.setattr(scan_mod, "analyse_file", vanish)
    lib.add_folder(photo_folder)
    report = Scanner(lib).scan_all()
    # Reported, but not recorded as a bad photo: it was gone, not broken.
    assert report.added == 14
    errors = dict(report.errors)
    assert "disappeared" in errors[str(coffee)]
    assert str(coffee) not in lib.known_files(lib.folders()[0].id)
    # When it is back, the next scan adds it like any new photo, with no error.
    monkeypatch.setattr(scan_mod, "analyse_file", real)
    coffee.write_bytes(data)
    report = Scanner(lib).scan_all()
    assert report.added == 1 and not report.errors
    assert lib.known_files(lib.folders()[0].id)[str(coffee)][4] is None


def test_walk_ignores_hidden_and_non_images(tmp_path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.jpg").write_bytes(b"x")
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / "b.txt").write_bytes(b"x")
    (tmp_path / "c.webp").write_bytes(b"x")
    assert sorted(os.path.basename(p) for p, _, _ in walk_images(str(tmp_path))) == ["a.JPG", "c.webp"]


def test_cancel_stops_a_small_scan_too(lib, photo_folder):
    import threading

    cancel = threading.Event()
    cancel.set()
    lib.add_folder(photo_folder)
    report = Scanner(lib, workers=1).scan_all(cancel=cancel)
    assert report.cancelled and report.added < 15


def test_scans_keep_their_worker_threads_and_face_models(lib, photo_folder, tmp_path, monkeypatch):
    """Each scan (and each watch batch) used to start new worker threads, each loading the
    face models again; the process's scan workers are now kept, and warm_up loads them."""
    import threading

    from photosense.ingest import scan
    from photosense.scoring import faces

    loads = []
    real = faces._Models.__init__

    def counting(self):
        loads.append(threading.current_thread().name)
        real(self)

    monkeypatch.setattr(faces._Models, "__init__", counting)
    monkeypatch.setattr(scan, "_pools", {})  # threads of earlier tests have their models
    assert scan.warm_up(2) >= 0 and len(loads) == 2 and len(set(loads)) == 2
    lib.add_folder(photo_folder)
    Scanner(lib, workers=2).scan_all()
    second = tmp_path / "second"
    shutil.copytree(photo_folder, second)
    for p in second.iterdir():  # new files, not copies the scan would recognise by content
        Image.open(p).convert("RGB").rotate(90, expand=True).save(p, quality=85)
    lib.add_folder(second)
    report = Scanner(lib, workers=2).scan_all()
    assert report.added == 15 and len(loads) == 2


def test_a_cancelled_scan_leaves_nothing_running(lib, photo_folder, monkeypatch):
    """The scan workers are kept between scans, so a scan must itself wait for what it
    started: when it returns, none of its files is still being analysed."""
    import threading
    import time

    from photosense.ingest import scan

    active, lock = [0], threading.Lock()
    real = scan.analyse_file

    def slow(*args, **kwargs):
        with lock:
            active[0] += 1
        try:
            time.sleep(0.4)
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(scan, "analyse_file", slow)
    cancel = threading.Event()
    lib.add_folder(photo_folder)
    report = Scanner(lib, workers=2).scan_all(progress=lambda done, total: done >= 2 and cancel.set(),
                                              cancel=cancel)
    assert active[0] == 0
    assert report.cancelled and report.added < 15


# --- files of kinds photosense does not read are counted, not hidden -------------------------


def _shoot_with_other_files(root: Path, jpeg: bytes) -> None:
    (root / "day2" / ".hidden").mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg)
    (root / "day2" / "b.jpg").write_bytes(jpeg)
    for name in ("clip.MOV", "clip2.mov", "day2/clip3.mov", "edit.psd", "README", "notes.txt"):
        (root / name).write_bytes(b"x")
    # Not counted: hidden files and folders, XMP and other apps' sidecars, folders.
    for name in (".DS_Store", "day2/.hidden/x.mov", "a.pp3", "a.dop", "IMG_1.AAE"):
        (root / name).write_bytes(b"x")
    empty_packet = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='  # nothing to import
                    b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>')
    for name in ("a.jpg.xmp", "a.xmp"):
        (root / name).write_bytes(empty_packet)
    (root / "empty.folder").mkdir()


def test_skipped_files_are_counted_per_folder_and_kept(lib, tmp_path, real_photos):
    import io

    buf = io.BytesIO()
    real_photos["coffee"].save(buf, "JPEG")
    shoot, other = tmp_path / "shoot", tmp_path / "other"
    shoot.mkdir()
    other.mkdir()
    _shoot_with_other_files(shoot, buf.getvalue())
    (other / "fine.jpg").write_bytes(buf.getvalue())
    lib.add_folder(shoot)
    lib.add_folder(other)
    report = Scanner(lib).scan_all()
    expected = {".mov": 3, ".psd": 1, ".txt": 1, "": 1}
    assert report.added == 3 and not report.errors
    assert report.skipped == expected
    assert report.summary().endswith(
        ", 6 skipped (3 .mov, 1 without extension, 1 .psd, 1 .txt)")
    folders = {os.path.basename(f.path): f for f in lib.folders()}
    assert folders["shoot"].skipped == expected and folders["shoot"].skipped_count == 6
    assert folders["other"].skipped == {} and folders["other"].skipped_count == 0
    assert lib.skipped_files(folders["shoot"].id) == expected
    # A rescan counts again: the count is the folder's state now, not a running total.
    (shoot / "edit.psd").unlink()
    Scanner(lib).scan_all()
    assert lib.skipped_files(folders["shoot"].id) == {".mov": 3, ".txt": 1, "": 1}


def test_walk_counts_what_it_skips(tmp_path):
    from collections import Counter

    _shoot_with_other_files(tmp_path, b"x")
    skipped: Counter[str] = Counter()
    found = sorted(os.path.basename(p) for p, _, _ in walk_images(str(tmp_path), {}, skipped))
    assert found == ["a.jpg", "b.jpg"]
    assert skipped == {".mov": 3, ".psd": 1, ".txt": 1, "": 1}
