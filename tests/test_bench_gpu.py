"""benchmarks/bench_gpu.py: its arguments, the no-CUDA exit, and its JSON line (on the CPU with
--allow-cpu and a tiny model; the figures themselves are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def _run(tmp_path, *args, cuda_hidden: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PHOTOSENSE_DATA_DIR": str(tmp_path / "d"),
           "PHOTOSENSE_CACHE_DIR": str(tmp_path / "c")}
    if cuda_hidden:  # the same answer on a machine that has a GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU here" in lines[0] and "--allow-cpu" in lines[0]


@pytest.mark.parametrize("bad", [["--batches", "8,x"], ["--batches", "0,4"], ["--photos", "0"],
                                 ["--agreement", "-1"], ["--bogus"]])
def test_bad_arguments_are_refused(tmp_path, bad):
    done = _run(tmp_path, *bad, "--allow-cpu")
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_weights_file_is_one_line(tmp_path):
    done = _run(tmp_path, "--allow-cpu", "--weights", tmp_path / "nope.safetensors")
    assert done.returncode == 1
    assert done.stderr.strip() == f"bench_gpu: weights file not found: {tmp_path / 'nope.safetensors'}"


def test_it_runs_on_the_cpu_with_allow_cpu_and_ends_with_json(tmp_path, tiny_weights, one_torch_thread):
    done = _run(tmp_path, "--allow-cpu", "--model", "photosense-tiny", "--weights", tiny_weights,
                "--photos", 3, "--max-side", 96, "--batches", "2,1,2", "--agreement", 2,
                "--decode-workers", 1)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["device"] == "CPU" and result["random_weights"] is False
    assert result["photos"] == 3 and result["max_side"] == 96 and result["decode_workers"] == 1
    assert set(result["model_photos_per_s"]) == {"fp16", "fp32"}
    assert list(result["model_photos_per_s"]["fp16"]) == ["1", "2"]  # sorted, once each
    assert all(v > 0 for d in result["model_photos_per_s"].values() for v in d.values())
    assert result["decode_photos_per_s"] > 0 and result["end_to_end_photos_per_s"] > 0
    assert result["bound"] in ("decode", "model")
    agreement = result["agreement_with_cpu_fp32"]
    assert result["agreement_photos"] == 2
    assert agreement["fp32"]["cosine_min"] == pytest.approx(1.0, abs=1e-5)  # the same computation
    assert 0.99 < agreement["fp16"]["cosine_min"] <= 1.0 + 1e-6
    assert result["end_to_end_batch"] == 2
