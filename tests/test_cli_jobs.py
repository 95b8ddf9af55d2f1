"""The CLI's long commands run as jobs (issue 9.1): progress goes through the job, and an
unexpected error in one (a bug, a failing disk) ends the command with a one-line message and
exit code 1, its traceback in the log — never a Python traceback on the terminal."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from photosense.cli import main


@pytest.fixture
def library_with_a_photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 120, 40)).save(folder / "one.jpg")
    lib = str(tmp_path / "lib.sqlite3")
    assert main(["add", str(folder), "--library", lib]) == 0
    return lib, folder


def _break(monkeypatch, target: str) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(target, broken)


@pytest.mark.parametrize("target, argv", [
    ("photosense.curation.export.export_photos", ["export", "{tmp}/out"]),
    ("photosense.curation.report.write_report", ["export", "--report", "{tmp}/r.csv"]),
    ("photosense.curation.xmp.write_sidecars", ["xmp", "write"]),
    ("photosense.curation.xmp.import_sidecars", ["xmp", "read"]),
    ("photosense.ingest.scan.Scanner.scan_folder", ["bench", "{tmp}/mos.csv", "--root", "{photos}"]),
    ("photosense.commands.bench.write_variants", ["bench", "--synthetic", "{photos}"]),
])
def test_an_unexpected_error_in_a_long_command_is_one_line(capsys, caplog, monkeypatch, tmp_path,
                                                          library_with_a_photo, target, argv):
    lib, folder = library_with_a_photo
    (tmp_path / "mos.csv").write_text("one.jpg,3.5\n")
    _break(monkeypatch, target)
    argv = [a.format(tmp=tmp_path, photos=folder) for a in argv]
    capsys.readouterr()
    with caplog.at_level(logging.ERROR, logger="photosense.jobs"):
        code = main([*argv, "--library", lib])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1] == "photosense: unexpected error (RuntimeError): disk on fire"
    assert "Traceback" in caplog.text and "disk on fire" in caplog.text  # the bug is in the log


def test_prompt_training_is_a_job(capsys, caplog, monkeypatch, library_with_a_photo):
    from photosense.commands import prompts
    from photosense.scoring import coop

    lib, _folder = library_with_a_photo
    monkeypatch.setattr(prompts, "_flag_data", lambda args: (np.zeros((2, 4), np.float32),
                                                             np.array([1.0, 0.0], np.float32), object(), "2 flags"))
    _break(monkeypatch, "photosense.scoring.coop.train_prompts")
    assert coop.train_prompts is not None
    with caplog.at_level(logging.ERROR, logger="photosense.jobs"):
        code = main(["prompts", "train", "--from-flags", "--library", lib])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "photosense: unexpected error (RuntimeError): disk on fire"


def test_a_commands_progress_goes_through_its_job(monkeypatch, tmp_path, library_with_a_photo):
    """``xmp write``'s per-photo progress reaches the job's listeners (what the terminal bar
    and the window's status bar show)."""
    from photosense import jobs

    lib, _folder = library_with_a_photo
    seen = []
    original = jobs.Job._emit_progress

    def recording(self, value):
        seen.append((self.kind, value))
        original(self, value)

    monkeypatch.setattr(jobs.Job, "_emit_progress", recording)
    assert main(["xmp", "write", "--library", lib]) == 0
    assert ("xmp", (1, 1)) in seen
