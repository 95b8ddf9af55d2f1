"""Reports: every photo with path, flag, rating, label, scores and checks, as CSV or JSON."""

from __future__ import annotations

import csv
import json
import os

import pytest

from photosense.curation.report import write_report
from photosense.errors import PhotosenseError
from photosense.library import FLAG_PICK, FLAG_REJECT, Library, PhotoQuery
from tests.fixtures.cli import run_cli as run

WEIRD = b"caf\xe9 \xff.jpg"  # not valid UTF-8



NAMES = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def scored_library(tmp_path_factory, real_photos, tiny_weights, model_configs_dir):
    """A scored library of 6 photos (one with a non-UTF-8 name): a pick and a reject."""
    from photosense.ingest.scan import Scanner
    from photosense.pipeline import ScoringJob
    from photosense.scoring.clipiqa import EngineConfig
    from tests.fixtures.photos import blur

    root = tmp_path_factory.mktemp("report")
    folder = root / "shoot"
    folder.mkdir()
    for name in NAMES:
        real_photos[name].save(folder / f"{name}.jpg", quality=90)
    blur(real_photos["coffee"], 4).save(folder / "coffee_blur.jpg", quality=90)
    real_photos["rocket"].save(os.path.join(os.fsencode(folder), WEIRD), format="JPEG")
    lib_path = root / "lib.sqlite3"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOSENSE_MODEL_CONFIGS", str(model_configs_dir))
        with Library(lib_path) as lib:
            Scanner(lib).scan_folder(lib.add_folder(folder))
            config = EngineConfig(model="photosense-tiny", weights=str(tiny_weights), device="cpu", max_side=128)
            assert ScoringJob(lib, config).run().encoded == 6
            ids = lib.resolve_paths([str(folder / "astronaut.jpg"), str(folder / "coffee_blur.jpg")])
            lib.set_culling([ids[str(folder / "astronaut.jpg")]], flag=FLAG_PICK, rating=5, color_label="red")
            lib.set_culling([ids[str(folder / "coffee_blur.jpg")]], flag=FLAG_REJECT, rating=1)
    return lib_path


def test_csv_and_json_reports_hold_every_photo(scored_library, tmp_path):
    with Library(scored_library) as lib:
        total = lib.photo_count()
        attrs = [a.name for a in lib.attributes()]
        n_csv = write_report(lib, tmp_path / "report.csv")
        n_json = write_report(lib, tmp_path / "report.JSON")
    assert total == 6 and n_csv == n_json == total

    with open(tmp_path / "report.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == total
    assert list(rows[0])[:7] == ["path", "flag", "rating", "label", "sharpness", "exposure", "noise"]
    assert set(attrs) <= set(rows[0]) and len(attrs) >= 12
    by_name = {os.path.basename(r["path"]): r for r in rows}
    astro = by_name["astronaut.jpg"]
    assert (astro["flag"], astro["rating"], astro["label"]) == ("pick", "5", "red")
    assert by_name["coffee_blur.jpg"]["flag"] == "reject" and by_name["chelsea.jpg"]["flag"] == "none"
    assert all(0 < float(r["quality"]) < 1 and float(r["sharpness"]) >= 0 for r in rows)
    # The non-UTF-8 name is shown with replacement characters, never dropped or crashing.
    assert "caf\ufffd \ufffd.jpg" in by_name

    data = json.loads((tmp_path / "report.JSON").read_text(encoding="utf-8"))
    assert len(data) == total
    item = next(d for d in data if d["path"].endswith("astronaut.jpg"))
    assert {"path", "flag", "rating", "label", "scores", "checks"} <= item.keys()
    assert item["flag"] == "pick" and item["rating"] == 5 and item["label"] == "red"
    assert set(item["checks"]) == {"sharpness", "exposure", "noise", "faces", "eyes_closed",
                                   "eye_sharpness"}
    assert set(item["scores"]) == set(attrs)
    assert any(d["path"].endswith("caf\ufffd \ufffd.jpg") for d in data)


def test_report_with_query_and_atomic_replace(scored_library, tmp_path):
    target = tmp_path / "picks.json"
    target.write_text("old report")
    with Library(scored_library) as lib:
        assert write_report(lib, target, PhotoQuery(flag="pick")) == 1
        with pytest.raises(PhotosenseError, match="csv or .json"):
            write_report(lib, tmp_path / "report.txt")
        with pytest.raises(PhotosenseError, match="folder not found"):
            write_report(lib, tmp_path / "nowhere" / "r.csv")
    assert [d["flag"] for d in json.loads(target.read_text())] == ["pick"]
    assert not any(p.name.startswith(".photosense-report-") for p in tmp_path.iterdir())
    assert not (tmp_path / "report.txt").exists()


def test_export_command_report_alone_and_with_dest(scored_library, tmp_path, capsys):
    report = tmp_path / "all.csv"
    code, _, err = run(capsys, "export", "--report", report, "--library", scored_library)
    assert code == 0 and "report of 6 photos" in err
    assert len(report.read_text(encoding="utf-8").strip().splitlines()) == 1 + 6

    dest = tmp_path / "picks"
    code, _, err = run(capsys, "export", dest, "--report", tmp_path / "all.json", "--library", scored_library)
    assert code == 0 and "1 copied" in err
    assert [p.name for p in dest.iterdir()] == ["astronaut.jpg"]
    assert len(json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))) == 6


@pytest.mark.parametrize("argv, fragment", [
    ([], "a destination folder DEST, --report FILE, or both"),
    (["--report", "r.txt"], "name the file .csv or .json"),
    (["--report", "r.csv", "--top", "3", "--by", "quality"], "give a destination folder DEST"),
])
def test_export_command_errors_are_one_line(capsys, tmp_path, argv, fragment):
    code, _, err = run(capsys, "export", *argv, "--library", tmp_path / "lib.sqlite3")
    lines = [line for line in err.splitlines() if line.startswith("photosense:")]
    assert code == 1 and len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "r.csv").exists()
