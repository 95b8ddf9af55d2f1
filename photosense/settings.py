"""Where photosense keeps its files. Declared once; every path can be overridden.

Environment overrides (used by tests and by people with unusual setups):

- ``PHOTOSENSE_LIBRARY``: the library database file.
- ``PHOTOSENSE_DATA_DIR``: the per-user data folder (library, learned prompts, settings).
- ``PHOTOSENSE_CACHE_DIR``: the per-user cache folder (thumbnails, downloaded model weights).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "photosense"


def data_dir() -> Path:
    env = os.environ.get("PHOTOSENSE_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    env = os.environ.get("PHOTOSENSE_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def default_library_path() -> Path:
    env = os.environ.get("PHOTOSENSE_LIBRARY")
    return Path(env) if env else data_dir() / "library.sqlite3"


def thumbnail_dir() -> Path:
    return cache_dir() / "thumbnails"


def config_path() -> Path:
    return data_dir() / "settings.json"


def model_config_dirs() -> list[Path]:
    """Folders of extra open_clip model configs (``*.json``, name = file stem) to register.

    ``data_dir()/model_configs`` plus any folders in ``PHOTOSENSE_MODEL_CONFIGS`` (os.pathsep
    separated). Lets people (and the tests) use architectures open_clip does not ship.
    """
    dirs = [data_dir() / "model_configs"]
    env = os.environ.get("PHOTOSENSE_MODEL_CONFIGS")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    return dirs


_SHARE_DIRS = {
    ".desktop": "applications",
    ".svg": "icons/hicolor/scalable/apps",
    ".png": "icons/hicolor/256x256/apps",
}


def resource_path(name: str) -> Path | None:
    """A file from the repository's ``resources/`` (source checkout or editable install), or
    where an installed wheel put it (``<prefix>/share/...``); None when neither has it."""
    import sys

    checkout = Path(__file__).resolve().parent.parent / "resources" / name
    if checkout.is_file():
        return checkout
    sub = _SHARE_DIRS.get(Path(name).suffix)
    if sub:
        installed = Path(sys.prefix) / "share" / sub / name
        if installed.is_file():
            return installed
    return None
