"""Watching library folders (watchdog): the handler only records paths; a debouncer hands
settled paths to the scanner.

A path is "settled" when no event arrived for it for ``debounce`` seconds and its size and
mtime did not change between two looks, so a file still being copied is read once, complete.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("photosense.ingest")


class _Recorder(FileSystemEventHandler):
    def __init__(self, pending: PendingPaths):
        self.pending = pending

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for p in (event.src_path, getattr(event, "dest_path", "")):
            if p:
                self.pending.touch(os.fsdecode(p))


class PendingPaths:
    """Paths with recent events, coalesced per path, released once settled."""

    def __init__(self, debounce: float = 2.0):
        self.debounce = debounce
        self._lock = threading.Lock()
        self._last_event: dict[str, float] = {}
        self._last_stat: dict[str, tuple[int, float] | None] = {}

    def touch(self, path: str) -> None:
        with self._lock:
            self._last_event[path] = time.monotonic()

    def __len__(self) -> int:
        with self._lock:
            return len(self._last_event)

    def take_settled(self) -> list[str]:
        now = time.monotonic()
        ready = []
        with self._lock:
            for path, t in list(self._last_event.items()):
                if now - t < self.debounce:
                    continue
                st = _stat(path)
                if path in self._last_stat and self._last_stat[path] == st:
                    ready.append(path)
                    del self._last_event[path]
                    self._last_stat.pop(path, None)
                else:
                    # First look, or still growing: look again after another debounce period.
                    self._last_stat[path] = st
                    self._last_event[path] = now
        return ready


def _stat(path: str) -> tuple[int, float] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime)


class FolderWatcher:
    """Watches folders recursively; ``poll()`` returns settled paths to rescan."""

    def __init__(self, folders: Iterable[str], debounce: float = 2.0):
        self.pending = PendingPaths(debounce)
        self._observer = Observer()
        self._handler = _Recorder(self.pending)
        self._watched: set[str] = set()
        for folder in folders:
            self.add(folder)

    def add(self, folder: str) -> None:
        if folder in self._watched or not os.path.isdir(folder):
            return
        self._observer.schedule(self._handler, folder, recursive=True)
        self._watched.add(folder)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=5)

    def poll(self) -> list[str]:
        return self.pending.take_settled()

    def run(self, on_paths: Callable[[list[str]], None], stop: threading.Event,
            interval: float = 0.5) -> None:
        """Block until ``stop`` is set, calling ``on_paths`` with each batch of settled paths."""
        while not stop.wait(interval):
            paths = self.poll()
            if paths:
                on_paths(paths)
