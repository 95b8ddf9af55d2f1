"""The benchmark script runs and ends with its JSON line (figures are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_prints_json_last_line(model_configs_dir, tmp_path):
    env = {**os.environ, "PHOTOSENSE_MODEL_CONFIGS": str(model_configs_dir),
           "PHOTOSENSE_DATA_DIR": str(tmp_path / "d"), "PHOTOSENSE_CACHE_DIR": str(tmp_path / "c")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_scoring.py"), "--model", "photosense-tiny",
         "--photos", "3", "--features", "500", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["photos"] == 3 and result["features"] == 500 and result["max_side"] == 1024
    for key in ("model_only_photos_per_s", "end_to_end_photos_per_s", "end_to_end_over_model_only",
                "scan_ms_per_photo", "first_score_s", "attribute_add_s"):
        assert result[key] > 0
    # Scoring follows the scan: the first score comes before the whole run is over.
    assert result["first_score_s"] <= 3 / result["end_to_end_photos_per_s"]
    # At the default max side scoring takes every photo's pixels from the scan.
    assert result["scan_handoff"] == 1.0
    # Issue 12's figures: the runtime auto picked, torch against the fast one, the preview pass.
    assert result["backend"] in ("torch", "onnxruntime", "openvino")
    assert result["preview_side"] == 384 and result["preview_over_full"] > 0
    assert result["preview_photos_per_s"] > 0 and result["full_photos_per_s"] > 0
    if result["fast_backend_over_torch"] is not None:  # a fast runtime is installed
        assert result["fast_backend_over_torch"] > 0 and result["fast_backend_min_cos"] >= 0.9999


def test_face_benchmark_prints_json_last_line():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_faces.py"),
                          "--repeat", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["faces_ms_per_photo"] > 0 and result["side"] == 1024
    assert result["faces"] >= 2  # the portraits in tests/data/faces were found


def test_library_benchmark_prints_json_last_line(model_configs_dir):
    env = {**os.environ, "PHOTOSENSE_MODEL_CONFIGS": str(model_configs_dir)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_library.py"), "--model", "photosense-tiny",
         "--photos", "300", "--add", "12"], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["photos"] == 300 and result["model"] == "photosense-tiny"
    for key in ("rescan_unchanged_100k_s", "add_1000_into_100k_s", "list_json_100k_s",
                "attribute_add_first_100k_s", "attribute_add_first_100k_rss_mb",
                "attribute_add_100k_s", "attribute_add_100k_rss_mb", "search_100k_s"):
        assert result[key] > 0, key
