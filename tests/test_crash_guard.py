"""A file that crashes photosense while it reads it (photosense.ingest.crash_guard): noted while
it is read, found by the next process, read again alone, and never read again if it crashes
that one too; the other photos lose nothing."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from photosense.errors import DecodeError
from photosense.ingest import crash_guard
from photosense.ingest.decode import open_image
from tests.fixtures.photos import load_photo

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the crash is simulated with SIGKILL")

# Imported by every Python process of a test below (the command, its spawned children): a
# read of a file whose name holds $PHOTOSENSE_TEST_CRASH_ON ends the process at once, as a
# decoder's segmentation fault would. Nothing else is changed.
CRASH_HOOK = """
import os
if os.environ.get("PHOTOSENSE_TEST_CRASH_ON"):
    import signal
    import photosense.ingest.decode as decode

    _open_image = decode._open_image

    def _crashing(path, max_side):
        if os.environ["PHOTOSENSE_TEST_CRASH_ON"] in os.path.basename(os.fspath(path)):
            os.kill(os.getpid(), signal.SIGKILL)
        return _open_image(path, max_side)

    decode._open_image = _crashing
"""


@pytest.fixture
def shoot(tmp_path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i, name in enumerate(["astronaut", "coffee", "chelsea"]):
        prefix = "bad_" if i == 1 else ""
        load_photo(name).convert("RGB").save(folder / f"{prefix}{name}.jpg", quality=90)
    return folder


def _photosense(tmp_path: Path, *argv, crash_on: str | None = None) -> subprocess.CompletedProcess:
    """``photosense ARGV`` in a process of its own, with the crash hook loaded."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(textwrap.dedent(CRASH_HOOK))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hook), str(ROOT)]))
    env.pop("PHOTOSENSE_TEST_CRASH_ON", None)
    if crash_on:
        env["PHOTOSENSE_TEST_CRASH_ON"] = crash_on
    return subprocess.run([sys.executable, "-m", "photosense", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=300)


def _rows(tmp_path: Path) -> dict[str, dict]:
    done = _photosense(tmp_path, "list", "--format", "json")
    assert done.returncode == 0, done.stderr
    return {Path(r["path"]).name: r for r in json.loads(done.stdout)}


def test_a_file_that_crashes_a_scan_is_found_next_time_and_never_read_again(tmp_path, shoot):
    crashed = _photosense(tmp_path, "add", shoot, crash_on="bad_")
    assert crashed.returncode == -signal.SIGKILL  # a small scan reads in its own process
    journals = list((Path(os.environ["PHOTOSENSE_DATA_DIR"]) / crash_guard.JOURNAL_DIR).iterdir())
    assert len(journals) == 1  # left behind, naming the file being read

    again = _photosense(tmp_path, "scan", crash_on="bad_")
    assert again.returncode == 0, again.stderr
    bad = str(shoot / "bad_coffee.jpg")
    assert f"{bad}: {crash_guard.READER_CRASHED}" in again.stderr
    rows = _rows(tmp_path)
    assert sorted(rows) == ["astronaut.jpg", "bad_coffee.jpg", "chelsea.jpg"]
    assert rows["bad_coffee.jpg"]["error"] == crash_guard.READER_CRASHED
    assert rows["astronaut.jpg"]["error"] is None and rows["chelsea.jpg"]["error"] is None
    assert not list((Path(os.environ["PHOTOSENSE_DATA_DIR"]) / crash_guard.JOURNAL_DIR).glob(
        "*.journal"))  # taken, and the scan's own removed at its exit

    # In this process too (the window's thumbnails, scoring): refused without being decoded.
    with pytest.raises(DecodeError, match="crashed the process"):
        open_image(bad, max_side=256)
    # Until the file changes: then it is read again.
    st = os.stat(bad)
    os.utime(bad, (st.st_atime, st.st_mtime + 10))
    assert open_image(bad, max_side=256).size[0] == 256


def test_an_indexed_photo_that_crashes_another_reader_gets_the_error_and_keeps_its_flags(
        tmp_path, shoot):
    # Indexed without trouble, then the window crashes drawing its thumbnail (a process that
    # notes the read and dies in it). The next command checks it, quarantines it, and the
    # scan reads it again though it did not change, so that its record says why.
    added = _photosense(tmp_path, "add", shoot)
    assert added.returncode == 0, added.stderr
    bad = str(shoot / "bad_coffee.jpg")
    assert _photosense(tmp_path, "flag", "--pick", "--rating", "4", bad).returncode == 0
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    release.set()
    window = ctx.Process(target=_note_and_wait,
                         args=(os.environ["PHOTOSENSE_DATA_DIR"], bad, ready, release))
    window.start()
    window.join(60)
    assert window.exitcode == -signal.SIGKILL

    again = _photosense(tmp_path, "scan", crash_on="bad_")
    assert again.returncode == 0, again.stderr
    said = again.stdout + again.stderr
    assert "1 updated" in said and "2 unchanged" in said, said
    rows = _rows(tmp_path)
    assert rows["bad_coffee.jpg"]["error"] == crash_guard.READER_CRASHED
    assert (rows["bad_coffee.jpg"]["flag"], rows["bad_coffee.jpg"]["rating"]) == ("pick", 4)
    assert rows["astronaut.jpg"]["error"] is None and rows["chelsea.jpg"]["error"] is None
    # Recorded: not read again by later scans.
    third = _photosense(tmp_path, "scan", crash_on="bad_")
    said = third.stdout + third.stderr
    assert third.returncode == 0 and "0 updated" in said and "3 unchanged" in said, said


def test_a_scan_waits_for_the_check_of_suspects(tmp_path, shoot, monkeypatch):
    # The window checks suspects beside its first scan: the scan waits for the verdict, so
    # that a file found to crash photosense is recorded by this scan, not the next.
    from photosense.ingest.scan import Scanner
    from photosense.library import Library

    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(shoot)
    assert Scanner(lib).scan_all().added == 3
    bad = str(shoot / "bad_coffee.jpg")
    entry = {"op": "open_image", "path": bad, "max_side": 0}
    monkeypatch.setattr(crash_guard, "abandoned", lambda: [entry])
    slow_verdict = lambda e: time.sleep(1.0) or True  # noqa: E731 - crashes alone, later
    monkeypatch.setattr(crash_guard, "_crashes_alone", slow_verdict)
    checking = crash_guard.recover(wait=False)
    assert checking is not None and checking.is_alive()
    try:
        report = Scanner(lib).scan_all()
        assert not checking.is_alive()
    finally:
        checking.join()  # never into the next test's data folder
    assert report.updated == 1 and report.unchanged == 2
    assert lib.known_files(lib.folders()[0].id)[bad][4] == crash_guard.READER_CRASHED
    lib.close()


def test_a_file_that_reads_fine_alone_was_not_the_cause_and_is_read(tmp_path, shoot):
    # The process was killed while it read the file (the system, out of memory), but the
    # file itself is fine: read again alone, it is kept out of nothing.
    crashed = _photosense(tmp_path, "add", shoot, crash_on="bad_")
    assert crashed.returncode == -signal.SIGKILL
    again = _photosense(tmp_path, "scan")
    assert again.returncode == 0, again.stderr
    rows = _rows(tmp_path)
    assert sorted(rows) == ["astronaut.jpg", "bad_coffee.jpg", "chelsea.jpg"]
    assert all(r["error"] is None for r in rows.values())
    assert crash_guard.quarantined_paths() == []


def _note_and_wait(data_dir: str, path: str, ready, release) -> None:
    os.environ["PHOTOSENSE_DATA_DIR"] = data_dir
    crash_guard.start()
    with crash_guard.guard(path, "open_image", max_side=64):
        ready.set()
        release.wait(60)
        os.kill(os.getpid(), signal.SIGKILL)


def test_the_journal_of_a_running_process_is_left_alone(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    path = str(tmp_path / "some photo é.jpg")
    proc = ctx.Process(target=_note_and_wait,
                       args=(os.environ["PHOTOSENSE_DATA_DIR"], path, ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        assert crash_guard.abandoned() == []  # its process still holds the lock
        release.set()
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL
        assert crash_guard.abandoned() == [{"op": "open_image", "path": path, "max_side": 64}]
        assert crash_guard.abandoned() == []  # taken once
    finally:
        proc.kill()


def test_a_read_is_noted_while_it_lasts_and_by_one_slot_per_thread(tmp_path):
    crash_guard.start()
    journal = crash_guard._journal
    assert journal is not None and journal.path.parent == Path(
        os.environ["PHOTOSENSE_DATA_DIR"]) / crash_guard.JOURNAL_DIR
    outer, inner = str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")
    with crash_guard.guard(outer, "open_image", max_side=128):
        with crash_guard.guard(inner, "check_raw"):  # nested: the outer read stays noted
            data = journal.path.read_bytes()
        assert outer.encode() in data and inner.encode() not in data
    assert outer.encode() not in journal.path.read_bytes().split(b"\0")[0]
    crash_guard.stop()
    assert not journal.path.exists()


def test_a_suspect_is_not_read_until_it_is_checked(tmp_path):
    path = tmp_path / "x.jpg"
    load_photo("coffee").save(path)
    crash_guard._suspects.add(str(path))
    try:
        with pytest.raises(DecodeError) as caught:
            open_image(path, max_side=64)
        assert caught.value.transient  # not stored as the photo's error
    finally:
        crash_guard._suspects.discard(str(path))
    assert open_image(path, max_side=64).size[0] == 64


def test_a_quarantine_written_by_another_process_is_seen(tmp_path, monkeypatch):
    path = tmp_path / "y.jpg"
    load_photo("coffee").save(path)
    assert open_image(path, max_side=64)
    st = os.stat(path)
    target = Path(os.environ["PHOTOSENSE_DATA_DIR"]) / crash_guard.QUARANTINE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"files": [{"path": str(path), "size": st.st_size,
                                             "mtime": st.st_mtime}]}))
    monkeypatch.setattr(crash_guard, "_quarantine_seen", None)  # as after a second
    time.sleep(0.01)
    with pytest.raises(DecodeError, match="crashed the process"):
        open_image(path, max_side=64)


def test_a_thumbnail_of_a_suspect_is_not_remembered_as_failed(tmp_path):
    from photosense.gui.thumbnails import ThumbnailStore

    path = tmp_path / "z.jpg"
    load_photo("coffee").save(path)
    st = os.stat(path)
    store = ThumbnailStore(tmp_path / "thumbs")
    crash_guard._suspects.add(str(path))
    try:
        with pytest.raises(DecodeError):
            store.load_or_make(str(path), st.st_mtime, st.st_size, 128)
    finally:
        crash_guard._suspects.discard(str(path))
    # Cleared: the thumbnail is made (a failure remembered would be raised again here).
    assert not store.load_or_make(str(path), st.st_mtime, st.st_size, 128).isNull()
