"""Missing system libraries: what ldd says, and the packages that provide them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from photosense import system_libs

ROOT = Path(__file__).resolve().parent.parent

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd0a3f6000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f52daad7000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f52da9ed000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibfoo-unknown.so.3 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f52daba7000)
"""


def test_parse_ldd_lists_each_missing_library_once_in_order():
    assert system_libs.parse_ldd(LDD_OUTPUT) == [
        "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libfoo-unknown.so.3"]
    assert system_libs.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_packages_for_maps_sonames_on_debian_and_fedora():
    debian, fedora, unknown = system_libs.packages_for(
        ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-shm.so.0", "libxcb-randr.so.0",
         "libfoo-unknown.so.3"])
    assert debian == ["libxcb-icccm4", "libxcb-keysyms1", "libxcb-shm0", "libxcb-randr0"]
    assert fedora == ["xcb-util-wm", "xcb-util-keysyms", "libxcb"]  # once each
    assert unknown == ["libfoo-unknown.so.3"]


def test_install_hint_is_one_line_with_both_commands():
    hint = system_libs.missing_libraries_message(
        "the window", ["libxcb-icccm.so.4", "libfoo-unknown.so.3"])
    assert "\n" not in hint
    assert "(libxcb-icccm.so.4, libfoo-unknown.so.3)" in hint
    assert "'sudo apt-get install libxcb-icccm4' (Debian/Ubuntu)" in hint
    assert "'sudo dnf install xcb-util-wm' (Fedora)" in hint
    assert "apt-file search libfoo-unknown.so.3" in hint


def test_missing_libraries_runs_ldd_on_a_real_library():
    import _ctypes  # an extension module: a real shared object with dependencies

    assert system_libs.missing_libraries(_ctypes.__file__) == []
    assert system_libs.missing_libraries(ROOT / "README.md") is None  # not a library


def test_a_qt_library_that_cannot_load_is_explained_on_import():
    exc = ImportError("libEGL.so.1: cannot open shared object file: No such file or directory")
    line = system_libs.explain_import_error(exc)
    assert line and "libEGL.so.1" in line and "apt-get install libegl1" in line
    assert "dnf install libglvnd-egl" in line
    assert system_libs.explain_import_error(ImportError("No module named 'PySide6'")) is None


def test_the_cli_explains_a_qt_library_that_cannot_load(capsys, monkeypatch):
    import importlib

    from tests.fixtures.cli import run_cli

    real = importlib.import_module

    def fake(name, *args):
        if name == "photosense.gui.app":
            raise ImportError("libxkbcommon.so.0: cannot open shared object file: No such file")
        return real(name, *args)

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(importlib, "import_module", fake)
    code, _out, err = run_cli(capsys, "gui")
    assert code == 1
    assert "libxkbcommon.so.0" in err and "apt-get install libxkbcommon0" in err


def test_the_package_lists_agree_with_the_install_script_and_readme():
    script = (ROOT / "packaging" / "install-linux.sh").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    def listed(variable: str) -> tuple[str, ...]:
        line = next(line for line in script.splitlines() if line.startswith(f"{variable}="))
        return tuple(line.split("=", 1)[1].strip('"').split())

    assert listed("DEBIAN_PACKAGES") == system_libs.DEBIAN_DESKTOP_PACKAGES
    assert listed("FEDORA_PACKAGES") == system_libs.FEDORA_DESKTOP_PACKAGES
    assert "apt-get install " + " ".join(system_libs.DEBIAN_DESKTOP_PACKAGES) in readme
    assert "dnf install " + " ".join(system_libs.FEDORA_DESKTOP_PACKAGES) in readme
    # every package the check may name for the xcb plugin is one the script installs
    for stem in ("libxcb-cursor", "libxcb-icccm", "libxcb-keysyms", "libxkbcommon-x11"):
        debian, fedora = system_libs.PACKAGES[stem]
        assert debian in system_libs.DEBIAN_DESKTOP_PACKAGES
        assert fedora in system_libs.FEDORA_DESKTOP_PACKAGES


def test_system_libs_never_imports_qt():
    code = ("import sys, photosense.system_libs; "
            "sys.exit(any(m.startswith(('PySide6', 'shiboken6')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
