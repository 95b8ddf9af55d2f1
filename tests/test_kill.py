"""kill -9 at random points of flagging, scanning and scoring never loses a flag or leaves the
library inconsistent (XMP writes have their own kill tests in test_xmp_hostile)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from photosense.ingest.scan import Scanner
from photosense.library import Library, PhotoQuery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGGER = textwrap.dedent("""
    import sys
    from photosense.library import Library
    lib = Library(sys.argv[1])
    ids = [int(i) for i in sys.argv[2].split(",")]
    print("ready", flush=True)
    i = 0
    while True:  # every change touches all photos of the batch in one transaction
        i += 1
        lib.set_culling(ids, flag=1 if i % 2 else -1, rating=i % 6, color_label=("red", None)[i % 2])
""")

SCANNER = textwrap.dedent("""
    import os, sys
    from photosense.ingest.scan import Scanner
    from photosense.library import Library
    lib = Library(sys.argv[1])
    folder = sys.argv[2]
    print("ready", flush=True)
    i = 0
    while True:  # files keep changing, so every scan writes
        i += 1
        for name in sorted(os.listdir(folder))[:3]:
            os.utime(os.path.join(folder, name), (i, i))
        Scanner(lib).scan_all()
""")


SCORER = textwrap.dedent("""
    import sys
    from dataclasses import replace
    from photosense.library import Library
    from photosense.pipeline import ScoringJob
    from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
    lib = Library(sys.argv[1])
    config = EngineConfig(model=sys.argv[2], weights=sys.argv[3], device="cpu", max_side=256)
    engine = ClipIQAEngine(config).load()
    print("ready", flush=True)
    while True:  # every run encodes and stores the whole shoot again
        ScoringJob(lib, replace(config, batch_size=4), engine=engine).run()
        with lib.session() as s:
            s.connection().exec_driver_sql("DELETE FROM scores")
            s.connection().exec_driver_sql("DELETE FROM features")
""")


def _kill_at_random(script: str, args: list[str], rounds: int, seed: int,
                    wait: tuple[float, float] = (0.05, 0.8), after_kill=None) -> None:
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": ROOT}
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            raise AssertionError(proc.communicate()[1])
        time.sleep(rng.uniform(*wait))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err
        if after_kill is not None:
            after_kill()


def _integrity(lib: Library) -> str:
    with lib.session(write=False) as s:
        return s.connection().exec_driver_sql("PRAGMA integrity_check").scalar()


def test_kill_9_while_flagging_never_leaves_a_half_applied_change(tmp_path, photo_folder):
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    rows = lib.query(PhotoQuery(sort="name"))
    kept, batch = rows[0], [r.id for r in rows[1:]]
    lib.set_culling([kept.id], flag=1, rating=5, color_label="green")
    lib.close()
    _kill_at_random(FLAGGER, [str(tmp_path / "lib.sqlite3"), ",".join(map(str, batch))], 6, seed=7)
    lib = Library(tmp_path / "lib.sqlite3")
    assert _integrity(lib) == "ok"
    states = {(r.flag_name, r.rating, r.color_label) for r in lib.rows(batch)}
    assert len(states) == 1  # all of one change or none of it
    (keep,) = lib.rows([kept.id])
    assert (keep.flag_name, keep.rating, keep.color_label) == ("pick", 5, "green")


def test_kill_9_while_scanning_keeps_flags_and_a_consistent_index(tmp_path, photo_folder):
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    rows = lib.query(PhotoQuery(sort="name"))
    lib.set_culling([r.id for r in rows[:5]], flag=1, rating=4)
    lib.close()
    _kill_at_random(SCANNER, [str(tmp_path / "lib.sqlite3"), str(photo_folder)], 6, seed=11)
    lib = Library(tmp_path / "lib.sqlite3")
    assert _integrity(lib) == "ok"
    report = Scanner(lib).scan_all()
    assert not report.errors
    after = {r.path: r for r in lib.query(PhotoQuery(sort="name"))}
    assert len(after) == len(rows)  # no photo lost or doubled
    for r in rows[:5]:
        assert (after[r.path].flag_name, after[r.path].rating) == ("pick", 4)


def test_kill_9_while_scoring_never_leaves_a_half_scored_photo(tmp_path, photo_folder, tiny_config):
    path = tmp_path / "lib.sqlite3"
    lib = Library(path)
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    rows = lib.query(PhotoQuery(sort="name"))
    lib.set_culling([r.id for r in rows[:3]], flag=1, rating=5, color_label="green")
    lib.close()
    scored_when_killed = []

    def check() -> None:
        with Library(path) as lib:
            assert _integrity(lib) == "ok"
            with lib.session(write=False) as s:
                conn = s.connection()
                attributes = conn.exec_driver_sql("SELECT COUNT(*) FROM attributes").scalar()
                # Per (photo, model): a feature and a score for every attribute, or neither.
                per_photo = conn.exec_driver_sql(
                    "SELECT (SELECT COUNT(*) FROM scores s WHERE s.photo_id = f.photo_id "
                    "AND s.model_id = f.model_id) FROM features f").scalars().all()
                orphans = conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM scores s WHERE NOT EXISTS (SELECT 1 FROM features f "
                    "WHERE f.photo_id = s.photo_id AND f.model_id = s.model_id)").scalar()
            assert set(per_photo) <= {attributes} and orphans == 0
            scored_when_killed.append(len(per_photo))
            for r in lib.rows([r.id for r in rows[:3]]):
                assert (r.flag_name, r.rating, r.color_label) == ("pick", 5, "green")

    _kill_at_random(SCORER, [str(path), tiny_config.model, tiny_config.weights],
                    8, seed=5, wait=(0.2, 2.5), after_kill=check)
    assert any(scored_when_killed), "every kill came before anything was stored: nothing tested"
