"""``photosense bench``: SROCC/PLCC against a MOS dataset, and the synthetic-steps experiment.

Random CLIP weights: only the model-free checks are expected to follow the known orderings;
the attributes' rows are checked for format, never for quality.
"""

from __future__ import annotations

import json

import pytest

from photosense.commands.bench import DISTORTIONS, EXPECTED, PAPER_RESULTS, read_mos_csv
from photosense.errors import PhotosenseError
from tests.fixtures.cli import run_cli as run
from tests.fixtures.photos import blur

RADII = (0, 1, 2, 3, 5, 8)



pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def engine_args(tiny_weights):
    return ["--model", "photosense-tiny", "--weights", tiny_weights, "--device", "cpu", "--max-side", "128"]


@pytest.fixture
def blur_dataset(tmp_path, real_photos):
    """12 images (2 photos x 6 blur radii) with MOS falling with the blur radius."""
    root = tmp_path / "images"
    root.mkdir()
    lines = ["image_name,c1,MOS"]
    for name in ("astronaut", "chelsea"):
        img = real_photos[name].resize((256, 256))
        for r in RADII:
            file = f"{name}_{r}.png"
            blur(img, r).save(root / file) if r else img.save(root / file)
            lines.append(f"{file},0,{5.0 - 0.5 * r}")
    lines.append("not_there.png,0,3.0")
    csv_path = tmp_path / "mos.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path, root


def test_read_mos_csv_variants(tmp_path, blur_dataset):
    csv_path, root = blur_dataset
    data = read_mos_csv(str(csv_path), str(root))
    assert len(data.items) == 12 and data.missing == ["not_there.png"]
    assert data.items[0][0].endswith("astronaut_0.png") and data.items[0][1] == 5.0
    # No header, semicolons.
    plain = tmp_path / "plain.csv"
    plain.write_text("astronaut_1.png;4.5\nchelsea_8.png;1\n")
    assert [m for _, m in read_mos_csv(str(plain), str(root)).items] == [4.5, 1.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("image,MOS\nastronaut_1.png,great\n")
    with pytest.raises(PhotosenseError, match="not a number"):
        read_mos_csv(str(bad), str(root))
    with pytest.raises(PhotosenseError, match="none of the"):
        read_mos_csv(str(csv_path), str(tmp_path))


def test_dataset_bench_reports_srocc_and_plcc(capsys, tmp_path, blur_dataset, engine_args):
    csv_path, root = blur_dataset
    code, out, err = run(capsys, "bench", csv_path, "--root", root, "--attributes", "quality,sharp",
                         "--format", "json", *engine_args)
    assert code == 0, err
    assert "1 listed image(s) not found" in err
    report = json.loads(out)
    assert report["mode"] == "dataset" and report["images"] == 12
    results = {r["name"]: r for r in report["results"]}
    assert list(results) == ["quality", "sharp", "sharpness", "exposure", "noise"]
    assert all(r["n"] == 12 for r in results.values())
    # MOS is a function of the blur: the sharpness check ranks the images almost exactly.
    assert results["sharpness"]["srocc"] > 0.9 and results["sharpness"]["plcc"] > 0.9
    for r in results.values():  # random CLIP weights: format only
        assert r["srocc"] is None or -1 <= r["srocc"] <= 1
    assert report["paper"]["CLIP-IQA (paper)"]["KonIQ-10k"] == [0.695, 0.727]

    # The table, with a kept library: a second run re-encodes nothing.
    lib = tmp_path / "bench.sqlite3"
    code, out, err = run(capsys, "bench", csv_path, "--root", root, "--library", lib, *engine_args)
    assert code == 0 and "scored 12 images" in err
    lines = out.splitlines()
    assert lines[0].split() == ["attribute", "SROCC", "PLCC", "n"]
    by_label = {line[:18].strip(): line[18:].split() for line in lines[1:] if line.strip()}
    assert len([k for k in by_label if k and not k.endswith("(check)")]) >= 12
    srocc_sharp = float(by_label["sharpness (check)"][0])
    assert srocc_sharp > 0.9 and by_label["sharpness (check)"][2] == "12"
    assert any(line.startswith("CLIP-IQA (paper)") and "0.695 / 0.727" in line for line in lines)
    assert len(PAPER_RESULTS) == 4
    code, _, err = run(capsys, "bench", csv_path, "--root", root, "--library", lib, *engine_args)
    assert code == 0 and "scored 0 images" in err


def test_synthetic_bench_checks_follow_their_steps(capsys, tmp_path, real_photos, engine_args):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("coffee", "astronaut"):
        real_photos[name].resize((320, 240)).save(src / f"{name}.jpg", quality=95)
    code, out, err = run(capsys, "bench", "--synthetic", src, "--format", "json", *engine_args)
    assert code == 0, err
    report = json.loads(out)
    assert report["mode"] == "synthetic" and report["images"] == 2
    assert set(report["levels"]) == set(DISTORTIONS) and all(len(v) == 6 for v in report["levels"].values())
    table = report["srocc"]
    assert {"bright", "noisy", "colorful", "sharp", "sharpness", "exposure", "noise"} <= set(table)
    assert table["exposure"]["brightness"] > 0.9
    assert table["noise"]["noise"] > 0.9
    assert table["sharpness"]["blur"] < -0.9
    checks = {(e["row"], e["distortion"]): e for e in report["expected"]}
    assert len(checks) == len(EXPECTED)
    assert all(checks[k]["ok"] for k in (("exposure", "brightness"), ("noise", "noise"), ("sharpness", "blur")))
    for row in table.values():  # random CLIP weights: the attributes' values are format only
        assert set(row) == set(DISTORTIONS)
        assert all(v is None or -1 <= v <= 1 for v in row.values())

    code, out, _ = run(capsys, "bench", "--synthetic", src, "--steps", "4", "--attributes", "bright,sharp",
                       *engine_args)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == list(DISTORTIONS)
    rows = {line[:18].strip(): line[18:].split() for line in lines[2:] if line.strip() and " vs " not in line}
    assert list(rows) == ["bright", "sharp", "sharpness (check)", "exposure (check)", "noise (check)"]
    assert rows["exposure (check)"][0].endswith("*") and float(rows["exposure (check)"][0][:-1]) > 0.9
    assert any(line.startswith("sharpness vs blur:") and "as expected" in line for line in lines)


@pytest.mark.parametrize("argv, fragment", [
    (["bench"], "give a dataset CSV"),
    (["bench", "--synthetic", "/no/such/dir"], "folder not found"),
    (["bench", "x.csv", "--synthetic", "."], "not both"),
])
def test_bench_user_errors_are_one_line(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if line.startswith("photosense:")]
    assert code == 1 and len(lines) == 1 and fragment in lines[0], err


def test_unknown_attribute_is_refused(capsys, blur_dataset, engine_args):
    csv_path, root = blur_dataset
    code, _, err = run(capsys, "bench", csv_path, "--root", root, "--attributes", "quality,nope", *engine_args)
    assert code == 1 and "unknown attribute: nope" in err
