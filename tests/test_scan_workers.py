"""A big scan's worker processes: the same records as threads, their log lines here, a dead
worker costs nothing, cancel stops them, and a new shoot's folder is walked first."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import threading

import pytest

from photosense.ingest import workers
from photosense.ingest.analysis import analyse
from photosense.ingest.scan import Scanner, walk_folders, walk_images
from photosense.library import Library, PhotoQuery
from tests.test_raw import half_white, left_bright_scene, mosaic, write_dng


def crash_on_marked_file(path, size, mtime, companion_path=None):
    """A worker's target that dies the way a crashing decoder does, on one file."""
    if os.path.basename(path).startswith("crash"):
        os._exit(3)
    return analyse(path, size, mtime, companion_path)


def killed_once_on_marked_file(path, size, mtime, companion_path=None):
    """A worker's target that is killed once while reading one file (as the system's
    out-of-memory killer would), and reads it the next time."""
    mark = os.path.join(os.environ["PHOTOSENSE_TEST_MARKS"], os.path.basename(path))
    if os.path.basename(path).startswith("once") and not os.path.exists(mark):
        open(mark, "w").close()
        os._exit(9)
    return analyse(path, size, mtime, companion_path)


@pytest.fixture
def big_shoot(tmp_path, real_photos):
    """Two folders of real photos, a RAW+JPEG pair whose JPEG is broken, a corrupt JPEG."""
    shoot = tmp_path / "shoot"
    for day, names in (("day1", ("astronaut", "coffee", "chelsea")), ("day2", ("rocket", "motorcycle_left"))):
        folder = shoot / day
        folder.mkdir(parents=True)
        for name in names:
            for quality in (70, 90):
                real_photos[name].save(folder / f"{name}_{quality}.jpg", quality=quality)
    write_dng(shoot / "day2" / "IMG_9.dng", mosaic(left_bright_scene()), preview=half_white(600, 400))
    (shoot / "day2" / "IMG_9.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (shoot / "day1" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xdb" + b"\0" * 200)
    return shoot


def _rows(lib: Library) -> dict[str, dict]:
    out = {}
    for row in lib.query(PhotoQuery()):
        values = dataclasses.asdict(row)
        for volatile in ("id", "scanned_at"):
            values.pop(volatile, None)
        out[row.path] = values
    return out


def _scan(tmp_path, shoot, name: str, **scanner_args):
    lib = Library(tmp_path / f"{name}.sqlite3")
    lib.add_folder(shoot)
    scanner = Scanner(lib, **scanner_args)
    return lib, scanner


def test_processes_give_the_records_threads_give(tmp_path, big_shoot, monkeypatch, caplog):
    monkeypatch.setattr(workers, "PROCESS_MIN", 3)
    started = []
    real_start = workers.start_processes
    monkeypatch.setattr(workers, "start_processes",
                        lambda *a: started.append(real_start(*a)) or started[-1])
    threads_lib, threads = _scan(tmp_path, big_shoot, "threads")
    by_threads = threads.scan_all()
    assert not started
    procs_lib, procs = _scan(tmp_path, big_shoot, "procs", processes=True)
    progress = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="photosense.ingest"):
        by_procs = procs.scan_all(progress=lambda *a: progress.append(a))
    assert len(started) == 1 and started[0] is not None, "the scan ran in worker processes"
    assert by_procs.added == by_threads.added == 12
    assert sorted(by_procs.errors) == sorted(by_threads.errors)
    assert [p for p, _ in by_procs.errors] == [str(big_shoot / "day1" / "corrupt.jpg")]
    rows = _rows(procs_lib)
    assert rows == _rows(threads_lib)
    pair = rows[str(big_shoot / "day2" / "IMG_9.dng")]
    assert pair["companion_path"] == str(big_shoot / "day2" / "IMG_9.jpg")
    assert (pair["width"], pair["height"]) == (600, 400)  # the RAW, its JPEG being broken
    # A worker's log line (the broken JPEG of the pair) reaches this process's loggers, once.
    lines = [r.getMessage() for r in caplog.records if "IMG_9.jpg" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(str(big_shoot / "day2" / "IMG_9.jpg"))
    assert progress[-1] == (12, 12)
    assert not multiprocessing.active_children(), "the processes end with the scan"
    # Nothing changed: nothing read again (and no process started for it).
    again = Scanner(procs_lib, processes=True).scan_all()
    assert again.unchanged == 12 and again.added == 0 and len(started) == 1
    threads_lib.close()
    procs_lib.close()


def test_a_file_that_crashes_its_reader_is_recorded_unreadable(tmp_path, big_shoot, real_photos,
                                                               monkeypatch, caplog):
    """The file is read again alone in a process of its own, crashes that one too, and gets
    an error; it is never read in this process (a crash here would end the scan, or the
    window). Every other photo is read in worker processes, none in threads."""
    from photosense.ingest.scan import READER_CRASHED

    real_photos["coffee"].save(big_shoot / "day1" / "crash.jpg")
    lib, report = _scan_in_processes_only(tmp_path, big_shoot, monkeypatch, caplog,
                                          crash_on_marked_file)
    crash = str(big_shoot / "day1" / "crash.jpg")
    assert report.added == 13
    assert sorted(report.errors) == sorted([(str(big_shoot / "day1" / "corrupt.jpg"), _corrupt_error(report)),
                                            (crash, READER_CRASHED)])
    messages = [r.getMessage() for r in caplog.records]
    assert any("stopped unexpectedly: reading" in m and "crash.jpg" in m for m in messages)
    assert f"{crash}: {READER_CRASHED}" in messages
    rows = _rows(lib)
    assert rows[crash]["error"] == READER_CRASHED
    assert all(r["width"] for path, r in rows.items() if not path.endswith(("corrupt.jpg", "crash.jpg")))
    assert not multiprocessing.active_children()
    again = Scanner(lib, processes=True)  # not read again until the file changes
    again.process_target = crash_on_marked_file
    assert again.scan_all().unchanged == 13
    lib.close()
    # Nor by any other reader of this process (the window's thumbnails, scoring).
    from photosense.errors import DecodeError
    from photosense.ingest.decode import open_image

    with pytest.raises(DecodeError, match="crashed the process"):
        open_image(crash, max_side=64)


def _corrupt_error(report) -> str:
    """The corrupt JPEG's own error, whatever its wording."""
    return next(msg for path, msg in report.errors if path.endswith("corrupt.jpg"))


def _scan_in_processes_only(tmp_path, shoot, monkeypatch, caplog, target):
    """A worker-process scan of ``shoot`` whose workers run ``target``; reading a photo in
    this process fails the test. Returns the library and the report."""
    monkeypatch.setattr(workers, "PROCESS_MIN", 3)
    lib, scanner = _scan(tmp_path, shoot, "lib", processes=True)
    scanner.process_target = target
    monkeypatch.setattr(scanner, "_analyse", lambda *a: pytest.fail("read in this process"))
    with caplog.at_level(logging.WARNING, logger="photosense.ingest"):
        return lib, scanner.scan_all()


def test_a_worker_killed_once_costs_no_photo(tmp_path, big_shoot, real_photos, monkeypatch,
                                             caplog):
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("PHOTOSENSE_TEST_MARKS", str(marks))
    real_photos["coffee"].save(big_shoot / "day1" / "once.jpg")
    real_photos["rocket"].save(big_shoot / "day2" / "once_more.jpg")
    lib, report = _scan_in_processes_only(tmp_path, big_shoot, monkeypatch, caplog,
                                          killed_once_on_marked_file)
    assert sorted(os.listdir(marks)) == ["once.jpg", "once_more.jpg"]  # each killed a worker
    assert report.added == 14
    assert [p for p, _ in report.errors] == [str(big_shoot / "day1" / "corrupt.jpg")]
    rows = _rows(lib)
    assert rows[str(big_shoot / "day1" / "once.jpg")]["width"] == real_photos["coffee"].width
    assert rows[str(big_shoot / "day2" / "once_more.jpg")]["error"] is None
    assert sum("each in a process of its own" in r.getMessage() for r in caplog.records) == 2
    assert not multiprocessing.active_children()
    lib.close()


def quick_error(path, size, mtime, companion_path=None):
    """A worker's target that reads nothing: each file's record says so, at once."""
    return {"path": path, "size": size, "mtime": mtime, "companion_path": companion_path,
            "content_hash": None, "error": "not read by this test"}


@pytest.mark.timeout(300)
def test_thousands_of_photos_go_through_the_processes(tmp_path, monkeypatch):
    """Many quick photos, far more than any pipe between the processes holds at once: the
    scan finishes (a worker once waited forever on a pipe this process did not read)."""
    shoot = tmp_path / "big"
    shoot.mkdir()
    for i in range(3000):
        (shoot / f"IMG_{i:05d}.jpg").write_bytes(b"")
    monkeypatch.setattr(workers, "PROCESS_MIN", 3)
    lib, scanner = _scan(tmp_path, shoot, "lib", processes=True)
    scanner.process_target = quick_error
    report = scanner.scan_all()
    assert len(report.errors) == 3000 and {e for _p, e in report.errors} == {"not read by this test"}
    assert not multiprocessing.active_children()
    lib.close()


class _BreaksOnSubmit:
    """A pool that reads ``ok`` photos (here, at once) and then is found broken on submit, as
    when a worker died while the walk was still handing out photos."""

    def __init__(self, ok: int):
        self.ok, self.closed = ok, False

    def submit(self, unit):
        from concurrent.futures import Future
        from concurrent.futures.process import BrokenProcessPool

        if self.ok == 0:
            raise BrokenProcessPool("a worker died")
        self.ok -= 1
        fut = Future()
        fut.set_result(analyse(*unit))
        return fut

    def close(self):
        self.closed = True


@pytest.mark.parametrize("ok", [0, 2, 5])
def test_a_pool_found_broken_on_submit_leaves_the_rest_to_the_threads(tmp_path, big_shoot,
                                                                       monkeypatch, caplog, ok):
    monkeypatch.setattr(workers, "PROCESS_MIN", 3)
    pools = []
    monkeypatch.setattr(workers, "start_processes",
                        lambda *a: pools.append(_BreaksOnSubmit(ok)) or pools[-1])
    lib, scanner = _scan(tmp_path, big_shoot, "lib", processes=True)
    with caplog.at_level(logging.WARNING, logger="photosense.ingest"):
        report = scanner.scan_all()
    assert pools and all(p.closed for p in pools)
    assert report.added == 12 and len(_rows(lib)) == 12 and not report.errors[1:]
    assert any("worker process stopped unexpectedly" in r.getMessage() for r in caplog.records)
    lib.close()


def test_cancel_stops_the_processes(tmp_path, big_shoot, monkeypatch):
    monkeypatch.setattr(workers, "PROCESS_MIN", 3)
    lib, scanner = _scan(tmp_path, big_shoot, "lib", processes=True)
    cancel = threading.Event()

    def progress(done, total, *stage):
        if done >= 2:
            cancel.set()

    report = scanner.scan_all(progress, cancel)
    assert report.cancelled and 2 <= len(_rows(lib)) < 12
    assert not multiprocessing.active_children()
    again = Scanner(lib, processes=True).scan_all()  # the next scan reads the rest
    assert not again.cancelled and len(_rows(lib)) == 12
    lib.close()


def test_newest_folder_is_walked_first(tmp_path, real_photos):
    root = tmp_path / "photos"
    for i, name in enumerate(("2024", "2025", "2026", "archive")):
        (root / name).mkdir(parents=True)
        real_photos["coffee"].save(root / name / f"p{i}.jpg")
        os.utime(root / name, (1_000_000 + i, 1_000_000 + i))
    os.utime(root / "2025", (2_000_000, 2_000_000))  # a new shoot just copied in
    newest = [os.path.basename(os.path.dirname(f[0][0]))
              for f in walk_folders(str(root), newest_first=True)]
    assert newest == ["2025", "archive", "2026", "2024"]
    by_name = [os.path.basename(os.path.dirname(f[0][0])) for f in walk_folders(str(root))]
    assert by_name == ["2024", "2025", "2026", "archive"]
    flat = [p for p, _, _ in walk_images(str(root))]
    assert flat == [f[0] for files in walk_folders(str(root)) for f in files]
