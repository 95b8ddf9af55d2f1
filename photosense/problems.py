"""The Problems list: every job error from every thread, each distinct problem once (no Qt).

A problem has a ``kind`` (what failed: ``scan``, ``model``, ``xmp``, ``export``…), an optional
``subject`` (the file or folder it concerns), a one-line message and when it was last seen.
Reporting the same (kind, subject, message) again only updates its time and count. When the
cause is gone (the weights load now, the folder is back, the sidecar was written) the code that
noticed calls ``resolve(kind, subject)`` and the problem leaves the list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Problem:
    kind: str
    message: str
    subject: str | None = None
    first_seen: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    count: int = 1

    @property
    def key(self) -> tuple[str, str | None, str]:
        return self.kind, self.subject, self.message

    def line(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.last_seen))
        times = f" (×{self.count})" if self.count > 1 else ""
        return f"{when}  {self.message}{times}"


class ProblemLog:
    """Thread-safe; ``listeners`` are called (on the reporting thread) after every change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str | None, str], Problem] = {}
        self.listeners: list[Callable[[], None]] = []

    def report(self, message: str, kind: str = "", subject: str | None = None) -> Problem:
        message = " ".join(str(message).split())  # one line
        with self._lock:
            key = (kind, subject, message)
            problem = self._items.get(key)
            if problem is None:
                problem = self._items[key] = Problem(kind, message, subject)
            else:
                problem.count += 1
                problem.last_seen = time.time()
        self._changed()
        return problem

    def resolve(self, kind: str, subject: str | None = None) -> int:
        """Forget the problems of ``kind`` (only those about ``subject`` when given)."""
        with self._lock:
            gone = [k for k in self._items if k[0] == kind and (subject is None or k[1] == subject)]
            for k in gone:
                del self._items[k]
        if gone:
            self._changed()
        return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
        self._changed()

    def items(self) -> list[Problem]:
        with self._lock:
            return sorted(self._items.values(), key=lambda p: p.first_seen)

    def messages(self) -> list[str]:
        return [p.message for p in self.items()]

    def text(self) -> str:
        """Every problem on its own line, for copying."""
        return "\n".join(p.line() for p in self.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _changed(self) -> None:
        for fn in list(self.listeners):
            fn()
