"""Before the window opens: can Qt's platform plugin load? And a clean exit on SIGTERM/SIGINT.

On Linux, Qt's xcb (or Wayland) plugin needs system libraries that PySide6 does not bring; when
one is missing Qt prints a misleading message and aborts the process. ``check_platform`` reads
the plugin's library dependencies (``ldd``, about 15 ms; remembered once they were all found, per
plugin file and Qt version) and returns one line naming the missing libraries and the packages
that provide them. ``fatal_platform_errors`` catches whatever else stops Qt's platform from
starting (no X server on DISPLAY, an unknown QT_QPA_PLATFORM) and turns Qt's abort into that one
line and exit status 1.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QLibraryInfo, QObject, QSocketNotifier, QtMsgType, qInstallMessageHandler, qVersion

from photosense.system_libs import missing_libraries, missing_libraries_message

log = logging.getLogger("photosense.gui")

# Platforms with no system dependencies beyond Qt's own: nothing to check.
_SELF_CONTAINED = frozenset({"offscreen", "minimal"})
_CACHE_FILE = "platform-check.json"
_CACHE_ENTRIES = 8


def platform_candidates(env: Mapping[str, str] | None = None) -> list[str]:
    """The platform plugins Qt will try, in order; [] where nothing needs checking (macOS,
    Windows, or a self-contained platform such as ``offscreen``)."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return []
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        names = [part.split(":", 1)[0].strip() for part in requested.split(";")]
    elif env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE") == "wayland":
        names = ["wayland", "xcb"]  # what Qt itself prefers in a Wayland session
    else:
        names = ["xcb"]
    names = [n for n in names if n]
    if not names or any(n in _SELF_CONTAINED for n in names):
        return []
    return names


def plugin_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where Qt looks for platform plugins, in its order."""
    env = os.environ if env is None else env
    dirs = []
    if env.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        dirs.append(Path(env["QT_QPA_PLATFORM_PLUGIN_PATH"]))
    dirs += [Path(p) / "platforms" for p in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms")
    return dirs


def find_plugin(name: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The plugin file Qt loads for platform ``name`` (libqwayland.so serves wayland-egl etc.)."""
    files = [f"libq{name}.so"]
    if name.startswith("wayland-"):
        files.append("libqwayland.so")
    for folder in plugin_dirs(env):
        for file in files:
            if (folder / file).is_file():
                return folder / file
    return None


def _cache_key(name: str, plugin: Path, env: Mapping[str, str]) -> str:
    stat = plugin.stat()
    return "|".join([qVersion(), name, str(plugin), str(stat.st_mtime_ns), str(stat.st_size),
                     env.get("LD_LIBRARY_PATH", "")])


def _read_cache(path: Path) -> list[str]:
    try:
        keys = json.loads(path.read_text(encoding="utf-8")).get("loadable", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def _remember(path: Path, key: str) -> None:
    keys = [key] + [k for k in _read_cache(path) if k != key]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"loadable": keys[:_CACHE_ENTRIES]}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs the check next time
        log.debug("cannot remember the platform check: %s", exc)


def check_platform(env: Mapping[str, str] | None = None,
                   cache: Path | None = None) -> str | None:
    """None when Qt's platform plugin can load (or it cannot be told); otherwise one line
    naming the missing system libraries and how to install them."""
    env = os.environ if env is None else env
    if cache is None:
        from photosense.settings import cache_dir

        cache = cache_dir() / _CACHE_FILE
    names = platform_candidates(env)
    missing: dict[str, None] = {}
    for name in names:
        plugin = find_plugin(name, env)
        if plugin is None:
            return None  # not found by its file name: Qt decides, fatal_platform_errors explains
        key = _cache_key(name, plugin, env)
        if key in _read_cache(cache):
            return None
        found = missing_libraries(plugin, env)
        if found is None:
            return None  # no ldd: cannot tell
        if not found:
            _remember(cache, key)
            return None
        missing.update(dict.fromkeys(found))
    if not missing:
        return None
    plugins = " and ".join(names)
    return missing_libraries_message(f"the window cannot open: Qt's {plugins} platform plugin",
                                     list(missing))


def explain_platform_failure(messages: list[str], env: Mapping[str, str] | None = None) -> str:
    """One line for Qt's messages when its platform could not start."""
    env = os.environ if env is None else env
    missing: dict[str, None] = {}
    names = platform_candidates(env)
    for name in names:
        plugin = find_plugin(name, env)
        if plugin is not None:
            missing.update(dict.fromkeys(missing_libraries(plugin, env) or []))
    if missing:
        return missing_libraries_message(
            f"the window cannot open: Qt's {' and '.join(names)} platform plugin", list(missing))
    text = " ".join(messages)
    display = re.search(r"could not connect to display\s*(\S*)", text)
    if display:
        shown = display.group(1) or env.get("DISPLAY", "")
        return (f"the window cannot open: no X server answers on display {shown} "
                "(check DISPLAY, or run 'xhost' on the display's machine)")
    unknown = re.search(r'Could not find the Qt platform plugin "([^"]*)"', text)
    available = re.search(r"Available platform plugins are: ([^\n]*?)\.?\s*$", text)
    if unknown:
        hint = f"; available: {available.group(1)}" if available else ""
        return (f"the window cannot open: Qt has no platform plugin '{unknown.group(1)}' "
                f"(QT_QPA_PLATFORM={env.get('QT_QPA_PLATFORM', '')!r}){hint}")
    first = " ".join(text.split())[:300]
    return f"the window cannot open: Qt's platform could not start: {first}"


@contextmanager
def fatal_platform_errors(env: Mapping[str, str] | None = None,
                          exit: Callable[[int], None] = os._exit) -> Iterator[None]:
    """While the QApplication is created: Qt's fatal platform error becomes one line on stderr
    and exit status 1 instead of an abort. Qt's other messages are passed on afterwards."""
    held: list[tuple[str, str]] = []

    def handler(kind, context, message):
        if kind == QtMsgType.QtFatalMsg:
            line = explain_platform_failure([m for _c, m in held] + [message], env)
            sys.stderr.write(f"photosense: {line}\n")
            sys.stderr.flush()
            exit(1)
            return
        held.append((context.category or "default", message))

    previous = qInstallMessageHandler(handler)
    try:
        yield
    finally:
        qInstallMessageHandler(previous)
        for category, message in held:
            prefix = "" if category == "default" else f"{category}: "
            sys.stderr.write(f"{prefix}{message}\n")


class SignalQuit(QObject):
    """SIGTERM and SIGINT call ``on_signal`` from the event loop (Python signal handlers only
    run when Python code does; a socket wakes the loop). ``restore()`` puts the old ones back."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)

    def __init__(self, on_signal: Callable[[], None], parent: QObject | None = None):
        super().__init__(parent)
        self._on_signal = on_signal
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old_handlers = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        self._notifier = QSocketNotifier(self._reader.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)

    def _handle(self, signum, _frame) -> None:
        log.info("signal %s: closing the window", signum)
        self._on_signal()

    def _drain(self, *_args) -> None:
        try:
            while self._reader.recv(64):
                pass
        except OSError:
            pass

    def restore(self) -> None:
        self._notifier.setEnabled(False)
        for signum, old in self._old_handlers.items():
            signal.signal(signum, old)
        signal.set_wakeup_fd(self._old_wakeup)
        self._reader.close()
        self._writer.close()
