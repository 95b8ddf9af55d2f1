"""The window's front door: the real ``photosense`` command opens its window on an X server
(Xvfb, Qt's xcb platform) and closes cleanly; a platform plugin that cannot load gives one line
naming the missing libraries and exit status 1, never Qt's abort."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photosense.gui import startup

XVFB_HINT = ("the test command installs it: apt-get install xvfb xdotool "
             "(and sh packaging/install-linux.sh --system-packages for Qt's xcb libraries)")


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing; {XVFB_HINT}"
    return path


def _entry_point() -> str:
    """The installed ``photosense`` command of this environment (pip install -e .)."""
    exe = Path(sys.executable).with_name("photosense")
    assert exe.is_file(), f"{exe} is missing: install photosense into this environment first"
    return str(exe)


@pytest.fixture(scope="module")
def xvfb():
    """A private X server for this module: its DISPLAY, e.g. ":3"."""
    read, write = os.pipe()
    server = subprocess.Popen([_tool("Xvfb"), "-displayfd", str(write), "-screen", "0",
                               "1440x900x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    os.close(write)
    number = b""
    with os.fdopen(read, "rb") as pipe:
        while not number.endswith(b"\n"):
            chunk = pipe.read(1)
            assert chunk, "Xvfb exited before it chose a display"
            number += chunk
    yield f":{number.decode().strip()}"
    server.terminate()
    server.wait(timeout=10)


def _env(tmp_path: Path, display: str, **extra: str) -> dict[str, str]:
    """The user's environment with a temporary library/settings/cache and Qt's xcb platform."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "LD_LIBRARY_PATH")}
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb",
               PHOTOSENSE_DATA_DIR=str(tmp_path / "data"),
               PHOTOSENSE_CACHE_DIR=str(tmp_path / "cache"),
               PHOTOSENSE_LIBRARY=str(tmp_path / "data" / "library.sqlite3"))
    env.update(extra)
    return env


def _visible_windows(display: str, name: str) -> list[str]:
    done = subprocess.run([_tool("xdotool"), "search", "--onlyvisible", "--name", name],
                          env={**os.environ, "DISPLAY": display}, capture_output=True,
                          text=True, timeout=30)
    return done.stdout.split()


def _window_name(display: str, window: str) -> str:
    return subprocess.run([_tool("xdotool"), "getwindowname", window],
                          env={**os.environ, "DISPLAY": display}, capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()


def test_photosense_opens_its_window_on_x11_and_closes_cleanly_on_sigterm(xvfb, tmp_path):
    env = _env(tmp_path, xvfb)
    proc = subprocess.Popen([_entry_point()], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        windows: list[str] = []
        while not windows and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            windows = _visible_windows(xvfb, "^photosense")
        stderr = proc.stderr.read() if proc.poll() is not None else ''
        assert windows, f"no window appeared (exit {proc.poll()}): {stderr}"
        assert str(tmp_path / "data" / "library.sqlite3") in _window_name(xvfb, windows[0])
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err
    assert not _visible_windows(xvfb, "^photosense")
    # the window's close path ran: its layout and preferences were saved
    assert (tmp_path / "data" / "settings.json").is_file()
    # and the platform check remembered that this plugin loads
    assert startup._read_cache(tmp_path / "cache" / "platform-check.json")


def _plugin_needing_missing_library(tmp_path: Path) -> tuple[Path, str]:
    """A folder for LD_LIBRARY_PATH holding a copy of Qt's xcb support library whose
    dependency on libxcb-icccm.so.4 reads libxcb-icccm.so.0, which no system has: Qt's real
    xcb plugin then fails to load exactly as on a machine without libxcb-icccm4."""
    plugin = startup.find_plugin("xcb", {})
    assert plugin is not None
    qt_lib = plugin.parent.parent.parent / "lib" / "libQt6XcbQpa.so.6"
    data = qt_lib.read_bytes()
    assert data.count(b"libxcb-icccm.so.4\0") == 1
    folder = tmp_path / "ldpath"
    folder.mkdir()
    (folder / qt_lib.name).write_bytes(data.replace(b"libxcb-icccm.so.4\0",
                                                    b"libxcb-icccm.so.0\0"))
    return folder, "libxcb-icccm.so.0"


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr)  # not -6 (SIGABRT)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("photosense: the window cannot open")
    return lines[0]


def test_a_missing_system_library_gives_one_line_naming_the_packages(xvfb, tmp_path):
    folder, soname = _plugin_needing_missing_library(tmp_path)
    env = _env(tmp_path, xvfb, LD_LIBRARY_PATH=str(folder))
    done = subprocess.run([_entry_point()], env=env, capture_output=True, text=True, timeout=120)
    line = _one_line_error(done)
    assert soname in line and "libxcb-icccm.so.4" not in line
    assert "sudo apt-get install libxcb-icccm4'" in line
    assert "sudo dnf install xcb-util-wm'" in line
    assert not (tmp_path / "data" / "library.sqlite3").exists()  # nothing was opened


def test_when_the_check_passed_before_qt_failing_still_gives_the_one_line(xvfb, tmp_path):
    """A remembered "loads" (the libraries were removed since) skips ldd; Qt's own failure is
    then caught, explained the same way, and exits 1 instead of aborting."""
    folder, soname = _plugin_needing_missing_library(tmp_path)
    env = _env(tmp_path, xvfb, LD_LIBRARY_PATH=str(folder))
    plugin = startup.find_plugin("xcb", env)
    startup._remember(tmp_path / "cache" / "platform-check.json",
                      startup._cache_key("xcb", plugin, env))
    assert startup.check_platform(env, tmp_path / "cache" / "platform-check.json") is None
    done = subprocess.run([_entry_point()], env=env, capture_output=True, text=True, timeout=120)
    line = _one_line_error(done)
    assert soname in line and "sudo apt-get install libxcb-icccm4'" in line


def test_no_x_server_on_display_gives_one_line(tmp_path):
    env = _env(tmp_path, ":64999")  # nothing listens there
    done = subprocess.run([_entry_point()], env=env, capture_output=True, text=True, timeout=120)
    line = _one_line_error(done)
    assert "no X server answers on display :64999" in line


def test_an_unknown_platform_plugin_gives_one_line_listing_the_available_ones(tmp_path):
    env = _env(tmp_path, ":64999", QT_QPA_PLATFORM="nosuchplatform")
    done = subprocess.run([_entry_point()], env=env, capture_output=True, text=True, timeout=120)
    line = _one_line_error(done)
    assert "no platform plugin 'nosuchplatform'" in line and "xcb" in line


# -- the check itself, in this process -------------------------------------------------------

def test_check_platform_names_what_ldd_cannot_find(tmp_path):
    folder, soname = _plugin_needing_missing_library(tmp_path)
    env = {"QT_QPA_PLATFORM": "xcb", "LD_LIBRARY_PATH": str(folder)}
    cache = tmp_path / "platform-check.json"
    line = startup.check_platform(env, cache)
    assert line is not None and soname in line and "xcb platform plugin" in line
    assert "apt-get install libxcb-icccm4" in line and "dnf install xcb-util-wm" in line
    assert not cache.exists()  # a failure is never remembered


def test_a_passed_check_is_remembered_per_plugin_and_environment(tmp_path, monkeypatch):
    calls = []
    real = startup.missing_libraries
    monkeypatch.setattr(startup, "missing_libraries",
                        lambda plugin, env: calls.append(plugin) or real(plugin, env))
    cache = tmp_path / "platform-check.json"
    env = {"QT_QPA_PLATFORM": "xcb"}
    assert startup.check_platform(env, cache) is None
    assert startup.check_platform(env, cache) is None
    assert len(calls) == 1  # the second start reads the cache instead of running ldd
    folder, _soname = _plugin_needing_missing_library(tmp_path)
    assert startup.check_platform({**env, "LD_LIBRARY_PATH": str(folder)}, cache) is not None
    assert len(calls) == 2  # another LD_LIBRARY_PATH is another question


def test_an_unreadable_cache_only_costs_the_check(tmp_path):
    cache = tmp_path / "platform-check.json"
    cache.write_text("{not json", encoding="utf-8")
    assert startup.check_platform({"QT_QPA_PLATFORM": "xcb"}, cache) is None
    assert startup._read_cache(cache)  # rewritten with the passed check


@pytest.mark.parametrize(("env", "expected"), [
    ({}, ["xcb"]),
    ({"QT_QPA_PLATFORM": "xcb"}, ["xcb"]),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, ["wayland", "xcb"]),
    ({"QT_QPA_PLATFORM": "xcb:nograb"}, ["xcb"]),
    ({"WAYLAND_DISPLAY": "wayland-0"}, ["wayland", "xcb"]),
    ({"XDG_SESSION_TYPE": "wayland"}, ["wayland", "xcb"]),
    ({"QT_QPA_PLATFORM": "offscreen"}, []),
    ({"QT_QPA_PLATFORM": "minimal", "WAYLAND_DISPLAY": "wayland-0"}, []),
])
def test_platform_candidates_follow_qt(env, expected):
    assert startup.platform_candidates(env) == expected


def test_offscreen_is_not_checked(monkeypatch, tmp_path):
    monkeypatch.setattr(startup, "missing_libraries", lambda *a: pytest.fail("ldd was run"))
    assert startup.check_platform({"QT_QPA_PLATFORM": "offscreen"}, tmp_path / "c.json") is None


def test_qt_plugin_path_is_searched_in_qt_order(tmp_path):
    first = tmp_path / "direct"
    first.mkdir()
    (first / "libqxcb.so").write_bytes(b"")
    env = {"QT_QPA_PLATFORM_PLUGIN_PATH": str(first), "QT_PLUGIN_PATH": str(tmp_path / "p")}
    assert startup.plugin_dirs(env)[:2] == [first, tmp_path / "p" / "platforms"]
    assert startup.find_plugin("xcb", env) == first / "libqxcb.so"
    assert startup.find_plugin("wayland-egl", {}).name == "libqwayland.so"
    assert startup.find_plugin("xcb", {}) != first / "libqxcb.so"


def test_qt_messages_during_start_are_passed_on_when_it_succeeds(capsys):
    from PySide6.QtCore import qWarning

    exits = []
    with startup.fatal_platform_errors({}, exit=exits.append):
        qWarning("a harmless start-up warning")
        assert "harmless" not in capsys.readouterr().err  # held until the start is known
    assert "a harmless start-up warning" in capsys.readouterr().err
    assert not exits
