"""The command line end to end, on real photos with degraded copies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from photosense.cli import main
from photosense.library import Library
from tests.fixtures.cli import run_cli as run

PY = sys.executable



@pytest.fixture
def lib_path(tmp_path):
    return str(tmp_path / "lib.sqlite3")


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t=time.perf_counter(); "
            "from photosense.cli import main; "
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'open_clip', 'PySide6', 'sqlalchemy') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_dash_m_and_console_script_agree(tmp_path):
    out = subprocess.run([PY, "-m", "photosense", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("photosense ")
    helped = subprocess.run([PY, "-m", "photosense", "list", "--help"], capture_output=True, text=True)
    assert "--sort" in helped.stdout and "--format" in helped.stdout


@pytest.mark.parametrize("per_write", [1, 4, 15])
def test_list_json_written_in_batches_is_one_object_a_line(capsys, monkeypatch, lib_path, photo_folder,
                                                          per_write):
    from photosense import cli

    run(capsys, "add", str(photo_folder), "--library", lib_path)
    code, whole, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    monkeypatch.setattr(cli, "JSON_LINES_A_WRITE", per_write)
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    assert code == 0 and out == whole and len(json.loads(out)) == 15
    lines = out.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 17
    assert all(json.loads(line.rstrip(","))["path"] for line in lines[1:-1])
    code, out, _ = run(capsys, "list", "--format", "json", "--limit", "0", "--library", lib_path)
    assert out == "[\n]\n" and json.loads(out) == []


def test_a_command_puts_the_log_levels_it_quietened_back(capsys, lib_path, photo_folder):
    """Without -v a command hides per-file log lines (it reports them itself), for its own
    run only: a program or test calling main() afterwards gets its loggers as they were."""
    import logging

    ingest = logging.getLogger("photosense.ingest")
    ingest.setLevel(logging.INFO)
    seen = []
    real = ingest.warning
    ingest.warning = lambda *a, **k: seen.append(ingest.getEffectiveLevel()) or real(*a, **k)
    try:
        (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
        code, _, err = run(capsys, "add", str(photo_folder), "--library", lib_path)
        assert "broken.jpg" in err  # reported by the command
        assert seen and set(seen) == {logging.ERROR}  # quiet while it ran
        assert ingest.level == logging.INFO
    finally:
        del ingest.warning
        ingest.setLevel(logging.NOTSET)


def test_list_json_lines_are_encoded_fast_and_never_refused(monkeypatch):
    """Lines come from orjson (compact, the same values as the json module's) and fall back to
    the json module for text orjson refuses (a lone surrogate), or when orjson is missing."""
    import sys as _sys

    from photosense import cli

    row = {"path": "/photos/Café/IMG_0001.jpg", "scores": {"quality": 0.1 + 0.2, "tiny": 6.5e-06},
           "checks": {"faces": 2, "eyes_closed": None}, "missing": False, "faces": []}
    encode = cli._json_line_encoder()
    line = encode(row)
    assert line.startswith('{"path":"/photos/Café/IMG_0001.jpg","scores":{"quality":0.30000000000000004')
    assert json.loads(line) == row
    odd = {**row, "camera": "Nikon \udcff"}  # not valid Unicode: orjson refuses it
    assert encode(odd) == json.dumps(odd, ensure_ascii=False)
    monkeypatch.setitem(_sys.modules, "orjson", None)  # not installed: the json module
    assert cli._json_line_encoder()(row) == json.dumps(row, ensure_ascii=False)


def test_end_to_end_add_score_list_flag(capsys, lib_path, photo_folder, tiny_weights):
    code, _, err = run(capsys, "add", str(photo_folder), "--library", lib_path)
    assert code == 0 and "15 added" in err
    # Checks are listed before any model ran.
    code, out, _ = run(capsys, "list", "--sort", "sharpness", "--format", "json", "--library", lib_path)
    rows = json.loads(out)
    assert len(rows) == 15 and all(r["scores"] == {} for r in rows)
    sharp = [r["checks"]["sharpness"] for r in rows]
    assert sharp == sorted(sharp, reverse=True)
    names = [os.path.basename(r["path"]) for r in rows]
    for base in ("astronaut", "coffee", "chelsea"):
        assert names.index(f"{base}.jpg") < names.index(f"{base}_blur.jpg")

    code, _, err = run(capsys, "score", "--model", "photosense-tiny", "--weights", str(tiny_weights),
                       "--device", "cpu", "--max-side", "256", "--library", lib_path)
    assert code == 0 and "scored 15 photos" in err

    code, out, _ = run(capsys, "list", "--sort", "quality", "--format", "json", "--library", lib_path)
    rows = json.loads(out)
    assert {"path", "flag", "rating", "scores", "checks", "error", "missing"} <= rows[0].keys()
    q = [r["scores"]["quality"] for r in rows]
    assert q == sorted(q, reverse=True) and all(0 < v < 1 for v in q)
    assert len(rows[0]["scores"]) == 12 and set(rows[0]["checks"]) == {
        "sharpness", "exposure", "noise", "faces", "eyes_closed", "eye_sharpness"}
    code, out, _ = run(capsys, "list", "--sort", "quality", "--asc", "--limit", "3", "--format", "json",
                       "--library", lib_path)
    assert [r["scores"]["quality"] for r in json.loads(out)] == sorted(q)[:3]

    # Flag the top two, reject the worst by sharpness; filter on them.
    top = [r["path"] for r in rows[:2]]
    assert run(capsys, "flag", *top, "--pick", "--rating", "4", "--library", lib_path)[0] == 0
    code, out, _ = run(capsys, "list", "--flag", "pick", "--format", "json", "--library", lib_path)
    picks = json.loads(out)
    assert sorted(p["path"] for p in picks) == sorted(top) and all(p["rating"] == 4 for p in picks)
    assert run(capsys, "flag", top[0], "--clear", "--library", lib_path)[0] == 0
    code, out, _ = run(capsys, "list", "--flag", "pick", "--format", "json", "--library", lib_path)
    assert [p["path"] for p in json.loads(out)] == [top[1]]

    # Range filters and CSV / table output.
    code, out, _ = run(capsys, "list", "--min", f"quality={q[4]}", "--format", "csv", "--library", lib_path)
    lines = out.strip().splitlines()
    assert lines[0].startswith("path,flag,rating") and len(lines) == 1 + 5
    code, out, _ = run(capsys, "list", "--sort", "quality", "--library", lib_path)
    assert code == 0 and out.splitlines()[1].endswith(os.path.basename(rows[0]["path"]))


def test_attribute_commands_rescore_from_stored_features(capsys, lib_path, photo_folder, tiny_weights):
    run(capsys, "add", str(photo_folder), "--library", lib_path)
    run(capsys, "score", "--model", "photosense-tiny", "--weights", str(tiny_weights), "--device", "cpu",
        "--max-side", "256", "--library", lib_path)
    code, _, err = run(capsys, "attr", "add", "warm", "warm", "cold", "--library", lib_path)
    assert code == 0 and "'Warm photo.' vs 'Cold photo.'" in err and "scored 15 photos" in err
    code, _, err = run(capsys, "attr", "add", "dog", "--prompts", "A photo of a dog.", "A photo of a cat.",
                       "--library", lib_path)
    assert code == 0 and "'A photo of a dog.'" in err
    code, out, _ = run(capsys, "list", "--sort", "warm", "--format", "json", "--library", lib_path)
    rows = json.loads(out)
    assert all("warm" in r["scores"] and "dog" in r["scores"] for r in rows)
    code, out, _ = run(capsys, "attr", "list", "--library", lib_path)
    assert "warm" in out and "'Happy photo.' vs 'Sad photo.'" in out
    assert run(capsys, "attr", "remove", "warm", "--library", lib_path)[0] == 0
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    assert all("warm" not in r["scores"] for r in json.loads(out))


@pytest.mark.parametrize("argv, fragment", [
    (["add", "/definitely/not/here"], "folder not found"),
    (["list", "--sort", "nope"], "unknown attribute or check: nope"),
    (["attr", "remove", "nope"], "unknown attribute"),
    (["attr", "add", "x", "--prompts", "", "bad"], "empty"),
    (["flag", "/no/such/photo.jpg", "--pick"], "not in the library"),
    (["score", "--weights", "/no/such/weights.safetensors", "--device", "cpu"], "weights file not found"),
    (["scan"], "no folders"),
])
def test_user_errors_are_one_line_without_traceback(capsys, lib_path, argv, fragment):
    code, out, err = run(capsys, *argv, "--library", lib_path)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("photosense:")]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in err


def test_add_with_score_scores_while_the_scan_reads(capsys, monkeypatch, lib_path, photo_folder,
                                                   tiny_weights):
    # Scoring starts on the scan's first records and follows it, as in the window: when the
    # scoring run starts, the scan of the same library is still going.
    from photosense.ingest import activity
    from photosense.pipeline import ScoringJob

    scan_running = []
    real_run = ScoringJob.run

    def run_and_note(self, *args, **kwargs):
        scan_running.append(activity.for_library(self.library).active)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(ScoringJob, "run", run_and_note)
    code, _, err = run(capsys, "add", str(photo_folder), "--score", "--model", "photosense-tiny",
                       "--weights", str(tiny_weights), "--device", "cpu", "--max-side", "256",
                       "--library", lib_path)
    assert code == 0, err
    assert "15 added" in err and "scored 15 photos" in err
    assert scan_running == [True]
    assert "preview" not in err  # 15 photos: under PREVIEW_MIN_PHOTOS
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    rows = json.loads(out)
    assert len(rows) == 15 and all(len(r["scores"]) == 12 for r in rows)
    # A rescan with --score and nothing new: nothing to encode, nothing lost.
    code, _, err = run(capsys, "scan", "--score", "--model", "photosense-tiny", "--weights",
                       str(tiny_weights), "--device", "cpu", "--max-side", "256", "--library", lib_path)
    assert code == 0 and "15 unchanged" in err and "scored 0 photos" in err, err


def test_add_with_score_says_when_a_preview_pass_ran_first(capsys, monkeypatch, lib_path,
                                                          photo_folder, tiny_weights):
    import photosense.pipeline as pipeline

    monkeypatch.setattr(pipeline, "PREVIEW_MIN_PHOTOS", 4)
    code, _, err = run(capsys, "add", str(photo_folder), "--score", "--model", "photosense-tiny",
                       "--weights", str(tiny_weights), "--device", "cpu", "--max-side", "128",
                       "--preview-side", "64", "--library", lib_path)
    assert code == 0, err
    assert "scored 15 photos" in err and "after a preview pass of 15 at a smaller size" in err


def test_model_options_without_score_are_refused_not_ignored(capsys, lib_path, photo_folder):
    code, _, err = run(capsys, "add", str(photo_folder), "--max-side", "512", "--library", lib_path)
    assert code == 1 and "--max-side" in err and "--score" in err and err.count("\n") == 1
    assert Library(lib_path).folders() == []  # refused before anything was added
    code, _, err = run(capsys, "scan", "--weights", "w.safetensors", "--library", lib_path)
    assert code == 1 and "--weights" in err


def test_scan_with_score_still_indexes_when_the_model_cannot_load(capsys, lib_path, tmp_path,
                                                                  photo_folder):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x00garbage" * 100)
    code, _, err = run(capsys, "add", str(photo_folder), "--score", "--weights", str(bad),
                       "--device", "cpu", "--library", lib_path)
    assert code == 1 and "15 added" in err, err
    assert err.strip().splitlines()[-1].startswith("photosense: ")
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    rows = json.loads(out)
    assert len(rows) == 15 and all(r["error"] is None and r["scores"] == {} for r in rows)


def test_interrupting_add_with_score_stops_the_scan_too(capsys, monkeypatch, lib_path,
                                                       photo_folder, tiny_weights):
    from photosense.ingest.scan import Scanner
    from photosense.pipeline import ScoringJob

    cancels = []
    real_scan = Scanner.scan_folder

    def scan_folder(self, folder, progress=None, cancel=None):
        cancels.append(cancel)
        return real_scan(self, folder, progress, cancel)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Scanner, "scan_folder", scan_folder)
    monkeypatch.setattr(ScoringJob, "run", interrupted)
    code, _, err = run(capsys, "add", str(photo_folder), "--score", "--model", "photosense-tiny",
                       "--weights", str(tiny_weights), "--device", "cpu", "--library", lib_path)
    assert code == 130 and "interrupted" in err
    assert len(cancels) == 1 and cancels[0].is_set()


def test_bad_weights_file_is_one_line(capsys, lib_path, tmp_path, photo_folder):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"\x00garbage" * 100)
    run(capsys, "add", str(photo_folder), "--library", lib_path)
    code, _, err = run(capsys, "score", "--weights", str(bad), "--device", "cpu", "--library", lib_path)
    assert code == 1 and err.count("\n") <= 2 and "photosense:" in err
    # Photos stay queued: list still works and shows them unscored, without errors.
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    assert all(r["error"] is None and r["scores"] == {} for r in json.loads(out))


def test_newer_library_is_refused_on_the_command_line(capsys, lib_path):
    import sqlite3

    Library(lib_path).close()
    con = sqlite3.connect(lib_path)
    con.execute("PRAGMA user_version = 999")
    con.close()
    code, _, err = run(capsys, "list", "--library", lib_path)
    assert code == 1 and "newer photosense" in err


def test_library_env_var_and_default_location(capsys, photo_folder, tmp_path, monkeypatch):
    env_lib = tmp_path / "from-env.sqlite3"
    monkeypatch.setenv("PHOTOSENSE_LIBRARY", str(env_lib))
    assert run(capsys, "add", str(photo_folder))[0] == 0
    assert env_lib.exists()
    monkeypatch.delenv("PHOTOSENSE_LIBRARY")
    assert run(capsys, "folders")[0] == 0
    data_dir = os.environ["PHOTOSENSE_DATA_DIR"]
    assert os.path.exists(os.path.join(data_dir, "library.sqlite3"))


def test_errors_and_missing_are_listed(capsys, lib_path, photo_folder):
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    run(capsys, "add", str(photo_folder), "--library", lib_path)
    (photo_folder / "rocket.jpg").unlink()
    code, _, err = run(capsys, "scan", "--library", lib_path)
    assert "1 missing" in err
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    by_name = {os.path.basename(r["path"]): r for r in json.loads(out)}
    assert by_name["rocket.jpg"]["missing"] is True
    assert by_name["broken.jpg"]["error"] and by_name["astronaut.jpg"]["error"] is None
    code, out, _ = run(capsys, "list", "--errors", "--format", "json", "--library", lib_path)
    assert [os.path.basename(r["path"]) for r in json.loads(out)] == ["broken.jpg"]


def test_watch_command_runs_until_interrupted(tmp_path, photo_folder, tiny_weights, model_configs_dir, real_photos):
    lib_path = str(tmp_path / "lib.sqlite3")
    env = {**os.environ, "PHOTOSENSE_MODEL_CONFIGS": str(model_configs_dir)}
    subprocess.run([PY, "-m", "photosense", "add", str(photo_folder), "--library", lib_path], env=env, check=True,
                   capture_output=True)
    proc = subprocess.Popen(
        [PY, "-m", "photosense", "watch", "--library", lib_path, "--model", "photosense-tiny",
         "--weights", str(tiny_weights), "--device", "cpu", "--max-side", "128", "--debounce", "0.3"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        real_photos["coffee"].save(photo_folder / "fresh.jpg")
        deadline = time.monotonic() + 120
        found = False
        while time.monotonic() < deadline and not found:
            time.sleep(0.5)
            with Library(lib_path) as lib:
                found = any(r.path.endswith("fresh.jpg") and r.scores for r in lib.query(
                    __import__("photosense.library", fromlist=["PhotoQuery"]).PhotoQuery()))
        assert found
    finally:
        proc.send_signal(__import__("signal").SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "watching 1 folder" in err


def test_export_command_copies_exactly_the_picks(capsys, lib_path, photo_folder, tmp_path):
    run(capsys, "add", str(photo_folder), "--library", lib_path)
    picks = [photo_folder / "astronaut.jpg", photo_folder / "coffee_dark.jpg"]
    run(capsys, "flag", *map(str, picks), "--pick", "--library", lib_path)
    dest = tmp_path / "out"
    code, _, err = run(capsys, "export", str(dest), "--library", lib_path)
    assert code == 0 and "2 copied" in err
    assert sorted(p.name for p in dest.iterdir()) == ["astronaut.jpg", "coffee_dark.jpg"]
    assert (dest / "astronaut.jpg").read_bytes() == picks[0].read_bytes()
    # Top 3 by sharpness over the whole library, hard-linked.
    code, out, _ = run(capsys, "list", "--sort", "sharpness", "--limit", "3", "--format", "json", "--library", lib_path)
    best = sorted(os.path.basename(r["path"]) for r in json.loads(out))
    dest2 = tmp_path / "sharpest"
    code, _, err = run(capsys, "export", str(dest2), "--top", "3", "--by", "sharpness", "--link", "--library", lib_path)
    assert code == 0
    assert sorted(p.name for p in dest2.iterdir()) == best
    assert all((dest2 / n).stat().st_ino == (photo_folder / n).stat().st_ino for n in best)


def test_gui_without_a_display_is_one_line(capsys, lib_path, monkeypatch):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(capsys, "--library", lib_path)
    assert code == 1 and err.startswith("photosense: no display")


def test_bare_paths_open_the_window_on_them(monkeypatch, tmp_path, photo_folder):
    """A desktop entry's 'Exec=photosense %F' passes folders or photos straight through."""
    import types

    calls = []
    fake = types.SimpleNamespace(run=lambda library, paths: calls.append((library, paths)) or 0)
    monkeypatch.setitem(sys.modules, "photosense.gui.app", fake)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    lib = str(tmp_path / "l.sqlite3")
    assert main(["--library", lib, str(photo_folder), str(photo_folder / "coffee.jpg")]) == 0
    assert main(["gui", str(photo_folder)]) == 0
    assert calls == [(lib, [str(photo_folder), str(photo_folder / "coffee.jpg")]),
                     (None, [str(photo_folder)])]
    with pytest.raises(SystemExit):  # a typo is still an error, not a path
        main(["lsit"])


def test_renaming_an_attribute_keeps_scores_without_loading_the_model(capsys, lib_path, photo_folder, tiny_weights,
                                                                     monkeypatch):
    run(capsys, "add", str(photo_folder), "--library", lib_path)
    run(capsys, "score", "--model", "photosense-tiny", "--weights", str(tiny_weights), "--device", "cpu",
        "--max-side", "128", "--library", lib_path)
    from photosense.scoring.clipiqa import ClipIQAEngine

    monkeypatch.setattr(ClipIQAEngine, "load", lambda self: pytest.fail("loaded the model"))
    code, _, err = run(capsys, "attr", "edit", "happy", "happy", "sad", "--library", lib_path)
    assert code == 0
    code, out, _ = run(capsys, "list", "--format", "json", "--library", lib_path)
    assert all("happy" in r["scores"] for r in json.loads(out))


def test_folders_shows_what_the_scan_skipped(tmp_path, capsys, real_photos):
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    real_photos["coffee"].save(shoot / "a.jpg")
    for name in ("clip.mov", "clip2.MOV", "edit.psd"):
        (shoot / name).write_bytes(b"x")
    lib_path = tmp_path / "lib.sqlite3"
    code, _, err = run(capsys, "add", str(shoot), "--library", lib_path)
    assert code == 0
    assert "3 skipped (2 .mov, 1 .psd)" in err
    code, out, _ = run(capsys, "folders", "--library", lib_path)
    assert code == 0
    assert out.splitlines() == [f"      1  {shoot}  [skipped 3: 2 .mov, 1 .psd]"]
