"""Hostile input (issue 7): untrusted weights, photos that vanish mid-run, read-only libraries,
formula injection, attribute and prompt input, the lock message. Each test reproduces the input
that was reported and fails without its fix."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from photosense.errors import LibraryError, PhotosenseError, WeightsUnavailable
from photosense.library import Library, PhotoQuery
from photosense.pipeline import ScoringJob, load_engine_config, save_engine_config
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
from photosense.scoring.prompts import AntonymPair, AttributeSpec
from tests.fixtures.cli import run_cli as run
from tests.fixtures.library import scanned_shoot
from tests.fixtures.models import TINY_MODEL


class WritesMarker:
    """Unpickling this runs code: it creates the marker file (what an attacker's file does)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled_checkpoint(path: Path, tiny_weights: Path, extra) -> Path:
    """A real checkpoint of the tiny model that needs full unpickling (``extra`` is not a tensor)."""
    torch.save({"state_dict": load_file(str(tiny_weights)), "extra": extra}, path)
    return path


def _one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def lib_path(tmp_path):
    return str(tmp_path / "lib.sqlite3")


@pytest.fixture
def small_folder(tmp_path, real_photos):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        real_photos[name].resize((96, 64)).save(folder / f"{name}.jpg", quality=90)
    return folder


# -- 1. pickle consent never outlives the command, or is bound to the file's content -----------

def test_stored_pickle_consent_does_not_unpickle_another_file(capsys, tmp_path, lib_path, small_folder,
                                                              tiny_weights, one_torch_thread):
    trusted = _pickled_checkpoint(tmp_path / "trusted.pt", tiny_weights, threading.Lock)
    marker = tmp_path / "code-ran"
    evil = _pickled_checkpoint(tmp_path / "other.pt", tiny_weights, WritesMarker(marker))
    run(capsys, "add", small_folder, "--library", lib_path)
    code, _, err = run(capsys, "score", "--model", TINY_MODEL, "--weights", trusted, "--allow-pickle",
                       "--device", "cpu", "--max-side", "64", "--library", lib_path)
    assert code == 0, err
    with Library(lib_path) as lib:
        stored = lib.get_setting("engine")
    assert "allow_pickle" not in stored and stored["pickle_sha256"]

    # Later, without the flag: the other file is refused with the usual line, and no code ran.
    code, _, err = run(capsys, "score", "--weights", evil, "--library", lib_path)
    assert code == 1 and "pickle" in _one_line(err.split("\n", 1)[1] if err.startswith("loading") else err)
    assert not marker.exists()
    # Attribute edits, `watch` and the window build their engine from the same stored config.
    with Library(lib_path) as lib:
        config = load_engine_config(lib, weights=str(evil))
        assert not config.allow_pickle
        with pytest.raises(WeightsUnavailable, match="pickle"):
            ClipIQAEngine(config).load()
    code, _, err = run(capsys, "attr", "add", "warm", "Warm", "Cold", "--weights", evil, "--library", lib_path)
    assert not marker.exists()  # refused before loading anything: another model id
    # The file consent was given for still loads without the flag: consent is bound to it.
    with Library(lib_path) as lib:
        assert ClipIQAEngine(load_engine_config(lib, weights=str(trusted))).load().dim > 0


def test_stored_consent_is_void_when_the_file_content_changes(tmp_path, tiny_weights):
    path = _pickled_checkpoint(tmp_path / "w.pt", tiny_weights, threading.Lock)
    lib = Library(tmp_path / "lib.sqlite3")
    save_engine_config(lib, EngineConfig(model=TINY_MODEL, weights=str(path), device="cpu", allow_pickle=True))
    marker = tmp_path / "code-ran"
    _pickled_checkpoint(path, tiny_weights, WritesMarker(marker))  # same name, new content
    with pytest.raises(WeightsUnavailable, match="pickle"):
        ClipIQAEngine(load_engine_config(lib)).load()
    assert not marker.exists()


def test_consent_stored_by_an_older_photosense_is_ignored(tmp_path, tiny_weights):
    marker = tmp_path / "code-ran"
    evil = _pickled_checkpoint(tmp_path / "evil.pt", tiny_weights, WritesMarker(marker))
    lib = Library(tmp_path / "lib.sqlite3")
    lib.set_setting("engine", {"model": TINY_MODEL, "weights": str(evil), "device": "cpu",
                               "max_side": 64, "batch_size": 8, "allow_pickle": True})
    with pytest.raises(WeightsUnavailable, match="pickle"):
        ClipIQAEngine(load_engine_config(lib)).load()
    assert not marker.exists()


# -- 5. weights that are not a regular file, or absurdly large, fail at once -----------------

@pytest.mark.timeout(60)
def test_weights_that_are_not_regular_files_fail_at_once(capsys, tmp_path, lib_path, small_folder):
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    big = tmp_path / "huge.safetensors"
    with open(big, "wb") as f:  # sparse: 3 GB for a model of a few MB
        f.truncate(3 << 30)
    run(capsys, "add", small_folder, "--library", lib_path)
    for weights, words in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                           (tmp_path, "folder"), (big, "far more than")):
        start = time.monotonic()
        code, _, err = run(capsys, "score", "--model", TINY_MODEL, "--weights", weights, "--device", "cpu",
                           "--library", lib_path)
        assert code == 1 and words in err.strip().splitlines()[-1], err
        assert time.monotonic() - start < 20  # a hash of /dev/zero never ends


# -- 4. photos that vanished during `score` are scored again when they are back -------------

def test_photos_vanished_during_scoring_are_scored_when_back(tmp_path, real_photos, tiny_config):
    from photosense.ingest.scan import Scanner

    folder = tmp_path / "card"
    folder.mkdir()
    for i in range(12):
        real_photos["astronaut"].resize((80 + i, 60)).save(folder / f"img{i:02d}.jpg")
    away = tmp_path / "unplugged"
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(folder)
    Scanner(lib).scan_all()
    config = EngineConfig(**{**tiny_config.__dict__, "batch_size": 2, "max_side": 64})

    def unplug(progress):  # the drive goes away after the first batch
        if progress.stage == "encoding" and progress.done >= 2 and folder.exists():
            folder.rename(away)

    job = ScoringJob(lib, config)
    job.decode_workers = 1
    report = job.run(unplug)
    assert report.unavailable > 0 and report.encoded < 12
    model = lib.active_model()
    # The photos are missing, not broken.
    assert all(row.error is None for row in lib.rows(list(lib.resolve_paths(
        [str(folder / f"img{i:02d}.jpg") for i in range(12)]).values())))
    away.rename(folder)  # plugged in again, unchanged
    scan = Scanner(lib).scan_all()
    assert scan.restored > 0 and not scan.errors
    assert len(lib.photos_needing_features(model.id)) == 12 - report.encoded
    assert ScoringJob(lib, config).run().encoded == 12 - report.encoded
    assert lib.photos_needing_features(model.id) == []


def test_an_old_transient_error_is_retried_by_the_next_scan(tmp_path, real_photos):
    """Libraries written before the fix hold 'file disappeared' as a permanent error."""
    from photosense.ingest.scan import Scanner

    lib = scanned_shoot(tmp_path, real_photos, 1)
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_photo_error(pid, "file disappeared")
    Scanner(lib).scan_all()
    assert lib.rows([pid])[0].error is None


def test_a_bad_image_keeps_its_error(tmp_path, real_photos, tiny_config):
    """The other side: a corrupt file is not retried on every run (until it changes)."""
    from photosense.ingest.scan import Scanner

    folder = tmp_path / "shoot"
    folder.mkdir()
    real_photos["coffee"].resize((64, 48)).save(folder / "good.jpg")
    real_photos["coffee"].resize((64, 48)).save(folder / "bad.jpg")
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(folder)
    Scanner(lib).scan_all()
    # Corrupted after the scan (same size and time, so no rescan notices): decoding fails.
    bad = folder / "bad.jpg"
    st = bad.stat()
    bad.write_bytes(b"\xff\xd8" + b"\x00" * (st.st_size - 2))
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = ScoringJob(lib, tiny_config).run()
    assert report.failed == 1 and report.unavailable == 0
    model = lib.active_model()
    assert lib.photos_needing_features(model.id) == []


# -- 7. a library on read-only media can be read ----------------------------------------------

@contextlib.contextmanager
def _read_only_folder(folder: Path):
    """Make ``folder`` read-only as a user's read-only media is: a read-only mount for root
    (root ignores permission bits), permission bits otherwise."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        try:
            yield folder
        finally:
            os.chmod(folder, 0o755)
        return
    saved = folder.with_name(folder.name + "-saved")
    shutil.copytree(folder, saved)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)
    try:
        shutil.copytree(saved, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_library_on_read_only_media_is_listed_read_only(capsys, tmp_path, small_folder):
    media = tmp_path / "dvd"
    media.mkdir()
    lib_path = media / "lib.sqlite3"
    run(capsys, "add", small_folder, "--library", lib_path)
    run(capsys, "flag", small_folder / "coffee.jpg", "--pick", "--library", lib_path)
    with _read_only_folder(media):
        code, out, err = run(capsys, "list", "--format", "csv", "--library", lib_path)
        assert code == 0, err
        assert "read-only" in _one_line(err)
        rows = list(csv.DictReader(io.StringIO(out)))
        assert {r["path"].rsplit("/", 1)[1]: r["flag"] for r in rows}["coffee.jpg"] == "pick"
        code, _, err = run(capsys, "flag", small_folder / "coffee.jpg", "--reject", "--library", lib_path)
        assert code == 1 and "read-only" in err.strip().splitlines()[-1]
        assert "cannot be saved" in err.strip().splitlines()[-1]
        with Library(lib_path) as lib:
            assert lib.read_only
            assert len(lib.attributes()) >= 12
            with pytest.raises(LibraryError, match="read-only"):
                lib.set_setting("x", 1)


# -- 8. CSV formula injection -------------------------------------------------------------------

def test_csv_cells_a_user_or_file_name_controls_are_spreadsheet_safe(capsys, tmp_path, lib_path, real_photos):
    folder = tmp_path / "shoot"
    folder.mkdir()
    real_photos["coffee"].resize((64, 48)).save(folder / "=HYPERLINK(1).jpg")
    run(capsys, "add", folder, "--library", lib_path)
    code, _, err = run(capsys, "attr", "add", "@cmd|' /C calc'!A0", "Warm", "Cold", "--library", lib_path)
    assert code == 0, err
    run(capsys, "attr", "add", "+sum", "Dark", "Light", "--library", lib_path)
    report = tmp_path / "report.csv"
    for argv in (("list", "--format", "csv"), ("export", "--report", report)):
        code, out, _ = run(capsys, *argv, "--library", lib_path)
        text = report.read_text(encoding="utf-8") if "export" in argv else out
        header, *rows = list(csv.reader(io.StringIO(text)))
        assert "'@cmd|' /c calc'!a0" in header and "'+sum" in header
        assert not any(cell.startswith(("=", "+", "@")) for cell in header)
        assert all(not row[0].startswith("=") for row in rows)
        # Numbers are left alone: a negative exposure is still a number.
        exposure = header.index("exposure")
        assert float(rows[0][exposure]) == pytest.approx(float(rows[0][exposure]))


def test_spreadsheet_safe_cells():
    from photosense.curation.report import spreadsheet_safe

    assert spreadsheet_safe("=1+1") == "'=1+1"
    assert spreadsheet_safe("@SUM(A1)") == "'@SUM(A1)"
    assert spreadsheet_safe("-2+3") == "'-2+3"
    assert spreadsheet_safe("\t=1") == "'\t=1"
    assert spreadsheet_safe("photo.jpg") == "photo.jpg"
    assert spreadsheet_safe(-0.5) == -0.5


# -- 9. one normalisation of attribute names ----------------------------------------------------

def test_attribute_names_are_normalised_on_use(capsys, lib_path, small_folder):
    run(capsys, "add", small_folder, "--library", lib_path)
    code, _, err = run(capsys, "attr", "add", "Warm", "Warm", "Cold", "--library", lib_path)
    assert code == 0 and "attribute warm" in err
    for argv in (("list", "--sort", "Warm"), ("list", "--min", "WARM=0.1"), ("list", "--sort", "Sharpness"),
                 ("export", os.path.join(os.path.dirname(lib_path), "keepers"), "--top", "1", "--by", "Warm")):
        code, _, err = run(capsys, *argv, "--library", lib_path)
        assert code == 0 and "unknown" not in err, (argv, err)
    code, _, err = run(capsys, "attr", "edit", "WARM", "Hot", "Cold", "--library", lib_path)
    assert code == 0, err
    code, _, err = run(capsys, "attr", "remove", " Warm ", "--library", lib_path)
    assert code == 0, err
    with Library(lib_path) as lib:
        assert "warm" not in [a.name for a in lib.attributes()]


# -- 10. prompt validation ----------------------------------------------------------------------

@pytest.mark.parametrize("pair", [("same", "same"), ("Sharp", "sharp photo."), ("Good photo.", " good  photo. ")])
def test_identical_antonyms_are_refused(pair):
    with pytest.raises(ValueError, match="same"):
        AntonymPair(*pair)


@pytest.mark.parametrize("text", ["sharp\x00", "bell\x07 photo", "a\rb", "esc\x1b[31m"])
def test_prompts_with_control_characters_are_refused(text):
    with pytest.raises(ValueError, match="control characters"):
        AntonymPair(text, "blurry")
    with pytest.raises(ValueError, match="control characters"):
        AttributeSpec(f"name{text}", (AntonymPair("sharp", "blurry"),))


def test_a_huge_prompt_is_refused_and_a_long_one_reported_as_truncated(capsys, lib_path, small_folder):
    code, _, err = run(capsys, "attr", "add", "long", "word " * 4000, "cold", "--library", lib_path)
    assert code == 1 and "characters long" in _one_line(err)
    sentence = " ".join(f"word{i}" for i in range(120)) + "."
    code, _, err = run(capsys, "attr", "add", "long", "--prompts", sentence, "A photo.", "--model", TINY_MODEL,
                       "--library", lib_path)
    assert code == 0, err
    note = [ln for ln in err.splitlines() if "longer than" in ln]
    assert len(note) == 1 and "of 120 words are used" in note[0]
    kept = int(note[0].split("only its first ")[1].split()[0])
    assert 10 < kept < 77


def test_truncated_words_finds_the_longest_prefix_that_fits():
    from photosense.scoring.prompts import truncated_words

    def count(text):  # two tokens a word
        return 2 * len(text.split())

    assert truncated_words("a b c", count, 77) is None
    assert truncated_words(" ".join(["w"] * 100), count, 77) == 37  # 37 words = 74 tokens <= 75


# -- 11. the lock message -----------------------------------------------------------------------

def test_the_lock_message_does_not_blame_photosense_alone(capsys, tmp_path, lib_path, small_folder, monkeypatch):
    import photosense.library.db as db

    run(capsys, "add", small_folder, "--library", lib_path)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(lib_path)  # another program holds the write lock
    other.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = run(capsys, "flag", small_folder / "coffee.jpg", "--pick", "--library", lib_path)
    finally:
        other.rollback()
        other.close()
    line = err.strip().splitlines()[-1]
    assert code == 1 and "locked by another program or process" in line


def test_read_only_library_refuses_an_older_schema(tmp_path):
    old = Path(__file__).parent / "fixtures" / "libraries" / "v1.sqlite3"
    media = tmp_path / "ro"
    media.mkdir()
    shutil.copy(old, media / "lib.sqlite3")
    with _read_only_folder(media), pytest.raises(PhotosenseError, match="older photosense"):
        Library(media / "lib.sqlite3")
