"""Architecture rules that must hold mechanically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_qt():
    """import-linter contract in pyproject.toml: only photosense.gui may import PySide6."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The core never imports Qt KEPT" in result.stdout
    assert "The library does not import curation KEPT" in result.stdout  # sidecars via a listener


def test_core_modules_import_without_qt_loaded():
    code = ("import sys; import photosense.cli, photosense.pipeline, photosense.service, "
            "photosense.ingest.scan, photosense.library, photosense.scoring.clipiqa; "
            "print(any(m.startswith('PySide6') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_code_passes_ruff():
    """pyflakes, pycodestyle, import order, bugbear and pyupgrade, as configured in
    pyproject.toml: unused names, undefined names and late-binding closures fail CI."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "photosense", "tests",
                             "benchmarks", "packaging"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
