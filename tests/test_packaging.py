"""The desktop entry, the icons and the Linux install script."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
INSTALL = ROOT / "packaging" / "install-linux.sh"


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # desktop entry keys are case-sensitive
    parser.read(RESOURCES / "photosense.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_has_the_required_keys():
    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Name"] == "photosense"
    assert entry["GenericName"] == "Photo Culling"
    assert entry["Comment"]
    assert entry["Exec"] == "photosense %F"
    assert entry["Icon"] == "photosense"
    assert entry["Terminal"] == "false"
    categories = entry["Categories"].split(";")
    assert {"Graphics", "Photography"} <= set(categories) and entry["Categories"].endswith(";")
    mime = entry["MimeType"].rstrip(";").split(";")
    assert {"image/jpeg", "image/png", "image/tiff"} <= set(mime)


def test_icons_exist_and_are_valid():
    svg = ET.parse(RESOURCES / "photosense.svg").getroot()
    assert svg.tag.endswith("svg") and svg.get("viewBox") == "0 0 256 256"
    with Image.open(RESOURCES / "photosense.png") as png:
        assert png.size == (256, 256) and png.mode == "RGBA"
        assert png.getpixel((0, 0))[3] == 0  # transparent corners (rounded tile)
        assert png.getpixel((128, 128))[3] == 255


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_install_script_is_idempotent_and_uninstalls(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "HOME": str(tmp_path)}
    for _ in range(2):
        done = subprocess.run(["sh", str(INSTALL)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    desktop = tmp_path / "applications" / "photosense.desktop"
    assert desktop.is_file()
    assert (tmp_path / "icons/hicolor/scalable/apps/photosense.svg").is_file()
    assert (tmp_path / "icons/hicolor/256x256/apps/photosense.png").is_file()
    done = subprocess.run(["sh", str(INSTALL), "--uninstall"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not desktop.exists()
    assert not list(tmp_path.rglob("photosense.*"))
    bad = subprocess.run(["sh", str(INSTALL), "--bogus"], env=env, capture_output=True, timeout=60)
    assert bad.returncode == 2
