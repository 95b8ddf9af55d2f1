"""Root test configuration: offscreen Qt, isolated per-user folders, never any download."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests must never reach a model hub; open_clip fails fast with these set.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest

pytest_plugins = [
    "tests.fixtures.photos",
    "tests.fixtures.models",
    "tests.fixtures.cli",
    "tests.fixtures.library",
]


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory):
    """Exported image towers (photosense.scoring.backends), shared by the session: each
    model is exported once, as on a user's machine, not once per test."""
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch, export_cache):
    """Point every per-user folder at a fresh temporary one: tests never touch real folders."""
    root = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("PHOTOSENSE_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("PHOTOSENSE_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("PHOTOSENSE_LIBRARY", str(root / "data" / "library.sqlite3"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("PHOTOSENSE_EXPORT_DIR", str(export_cache))
    return root
