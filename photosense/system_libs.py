"""The system libraries the desktop window needs on Linux, and the packages that provide them.

Qt's wheels (PySide6) bring Qt itself but not the X11/Wayland client libraries: on a fresh
Debian or Fedora machine some are missing, and Qt then aborts with a message that often blames
the wrong one. This module finds what is missing (``ldd`` of a library) and says which packages
to install. It never imports Qt, so the command line can use it when Qt itself cannot load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping

# soname stem (the name before ".so") -> (Debian/Ubuntu package, Fedora package).
# Keyed by stem so that a soname bump still names the right package family.
PACKAGES: dict[str, tuple[str, str]] = {
    # Qt's xcb platform plugin (libqxcb.so and libQt6XcbQpa.so.6)
    "libxcb": ("libxcb1", "libxcb"),
    "libxcb-cursor": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-image": ("libxcb-image0", "xcb-util-image"),
    "libxcb-keysyms": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-randr": ("libxcb-randr0", "libxcb"),
    "libxcb-render": ("libxcb-render0", "libxcb"),
    "libxcb-render-util": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-shape": ("libxcb-shape0", "libxcb"),
    "libxcb-shm": ("libxcb-shm0", "libxcb"),
    "libxcb-sync": ("libxcb-sync1", "libxcb"),
    "libxcb-util": ("libxcb-util1", "xcb-util"),
    "libxcb-xfixes": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb": ("libxcb-xkb1", "libxcb"),
    "libxcb-xinput": ("libxcb-xinput0", "libxcb"),
    "libxkbcommon": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11": ("libx11-6", "libX11"),
    "libX11-xcb": ("libx11-xcb1", "libX11-xcb"),
    # Wayland platform plugin
    "libwayland-client": ("libwayland-client0", "libwayland-client"),
    "libwayland-cursor": ("libwayland-cursor0", "libwayland-cursor"),
    "libwayland-egl": ("libwayland-egl1", "libwayland-egl"),
    # QtGui / QtWidgets themselves
    "libGL": ("libgl1", "libglvnd-glx"),
    "libGLX": ("libglx0", "libglvnd-glx"),
    "libOpenGL": ("libopengl0", "libglvnd-opengl"),
    "libEGL": ("libegl1", "libglvnd-egl"),
    "libfontconfig": ("libfontconfig1", "fontconfig"),
    "libfreetype": ("libfreetype6", "freetype"),
    "libglib-2.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0": ("libglib2.0-0", "glib2"),
    "libdbus-1": ("libdbus-1-3", "dbus-libs"),
    "libpng16": ("libpng16-16", "libpng"),
    "libz": ("zlib1g", "zlib"),
}

# What a Linux desktop needs for the window: packaging/install-linux.sh installs these lists,
# the README names them (a test keeps the three in step).
DEBIAN_DESKTOP_PACKAGES = (
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
    "libxcb-render-util0", "libxcb-shape0", "libxcb-xkb1",
    "libxkbcommon-x11-0", "libegl1", "libgl1", "libfontconfig1", "libdbus-1-3",
)
FEDORA_DESKTOP_PACKAGES = (
    "xcb-util-cursor", "xcb-util-wm", "xcb-util-image", "xcb-util-keysyms",
    "xcb-util-renderutil", "libxkbcommon-x11", "libglvnd-egl", "libglvnd-glx", "fontconfig",
    "dbus-libs",
)

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)
_SHARED_OBJECT_ERROR = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def soname_stem(soname: str) -> str:
    """``libxcb-icccm.so.4`` -> ``libxcb-icccm``."""
    return soname.split(".so", 1)[0]


def parse_ldd(output: str) -> list[str]:
    """The libraries ``ldd`` reports as "not found", once each, in its order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def missing_libraries(library: str | os.PathLike, env: Mapping[str, str] | None = None,
                      timeout: float = 10.0) -> list[str] | None:
    """The sonames ``library`` needs that the dynamic loader cannot find; None when unknown
    (no ``ldd`` on this system, or it failed)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        done = subprocess.run([ldd, os.fspath(library)], capture_output=True, text=True,
                              timeout=timeout, env=dict(env) if env is not None else None)
    except (OSError, subprocess.SubprocessError):
        return None
    missing = parse_ldd(done.stdout)
    if done.returncode != 0 and not missing:
        return None
    return missing


def packages_for(sonames: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """(Debian/Ubuntu packages, Fedora packages, sonames no package is known for)."""
    debian: dict[str, None] = {}
    fedora: dict[str, None] = {}
    unknown: list[str] = []
    for soname in sonames:
        known = PACKAGES.get(soname_stem(soname))
        if known is None:
            unknown.append(soname)
            continue
        debian[known[0]] = None
        fedora[known[1]] = None
    return list(debian), list(fedora), unknown


def install_hint(sonames: Iterable[str]) -> str:
    """How to install ``sonames``, on one line: apt-get and dnf commands for the known ones."""
    debian, fedora, unknown = packages_for(sonames)
    parts = []
    if debian:
        parts.append(f"install them with 'sudo apt-get install {' '.join(debian)}' "
                     f"(Debian/Ubuntu) or 'sudo dnf install {' '.join(fedora)}' (Fedora)")
    if unknown:
        first = unknown[0]
        parts.append(f"find the package providing {', '.join(unknown)} with "
                     f"'apt-file search {first}' or 'dnf provides \"*/{first}\"'")
    return "; ".join(parts)


def missing_libraries_message(what: str, sonames: list[str]) -> str:
    """One line: ``what`` needs ``sonames``, which are missing, and how to install them."""
    return (f"{what} needs system libraries that are missing ({', '.join(sonames)}); "
            f"{install_hint(sonames)}")


def explain_import_error(exc: BaseException) -> str | None:
    """For "libEGL.so.1: cannot open shared object file" (Qt's own libraries cannot load): a
    line naming the library and its packages; None for any other import error."""
    match = _SHARED_OBJECT_ERROR.search(str(exc))
    if match is None:
        return None
    return missing_libraries_message("the desktop window (Qt)", [match.group(1)])
