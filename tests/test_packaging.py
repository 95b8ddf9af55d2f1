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
        done = subprocess.run(["sh", str(INSTALL), "--no-system-packages"], env=env, capture_output=True, text=True,
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


def _fake_tools(tmp_path: Path, installed: set[str], manager: str) -> tuple[Path, Path]:
    """A PATH of stand-ins: the package tools of ``manager`` (apt or dnf) that know
    ``installed`` and log every install, a non-root ``id`` and a ``sudo`` that logs; plus the
    few real tools the script uses. (PATH, log file)"""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    known = " ".join(sorted(installed))

    def script(name: str, body: str) -> None:
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
        path.chmod(0o755)

    script("id", 'echo 1000')
    script("sudo", f'echo "sudo $*" >> "{log}"; exec "$@"')
    if manager == "apt":
        script("dpkg-query", f'for p in {known}; do [ "$p" = "$3" ] && '
                             'echo "install ok installed" && exit 0; done; exit 1')
        script("apt-get", f'echo "apt-get $*" >> "{log}"')
    else:
        script("rpm", f'for p in {known}; do [ "$p" = "$2" ] && exit 0; done; exit 1')
        script("dnf", f'echo "dnf $*" >> "{log}"')
    for tool in ("dirname", "grep", "env", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return bin_dir, log


def _package_list(variable: str) -> list[str]:
    line = next(line for line in INSTALL.read_text(encoding="utf-8").splitlines()
                if line.startswith(f"{variable}="))
    return line.split("=", 1)[1].strip('"').split()


@pytest.mark.parametrize("manager", ["apt", "dnf"])
def test_install_script_installs_only_the_missing_system_packages(tmp_path, manager):
    wanted = _package_list("DEBIAN_PACKAGES" if manager == "apt" else "FEDORA_PACKAGES")
    absent = wanted[1:3]
    bin_dir, log = _fake_tools(tmp_path, set(wanted) - set(absent), manager)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    done = subprocess.run([shutil.which("sh"), str(INSTALL), "--system-packages"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    installs = [c for c in calls if c.startswith(("apt-get install", "dnf install"))]
    assert len(installs) == 1 and installs[0].split()[-2:] == absent
    assert all(c.startswith("sudo ") for c in calls if not c.startswith(("apt-get", "dnf")))
    if manager == "apt":
        assert "apt-get update -qq" in calls
    # everything present: nothing is installed, and it says so
    log.unlink()
    bin_dir2, log2 = _fake_tools(tmp_path / "all", set(wanted), manager)
    done = subprocess.run([shutil.which("sh"), str(INSTALL), "--system-packages"],
                          env={**env, "PATH": str(bin_dir2)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "are installed" in done.stdout
    assert not log2.exists()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("command -v exiftool"))
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    # The first command after the preamble; later lines add CI-only checks (open_clip minimum).
    commands = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))]
    assert commands[0] == command
