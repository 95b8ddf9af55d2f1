"""What the main window's parts share: shortcuts, page numbers, the service bridge, small
text helpers."""

from __future__ import annotations

from PySide6.QtCore import (
    QObject,
    Signal,
)

LABEL_KEYS = {"6": "red", "7": "yellow", "8": "green", "9": "blue"}


SHORTCUTS = [
    ("← → ↑ ↓", "Move between photos"),
    ("P", "Flag as pick"),
    ("X", "Flag as reject"),
    ("U", "Remove flag"),
    ("0 – 5", "Set star rating"),
    ("6 7 8 9", "Colour label red, yellow, green, blue (again to remove)"),
    ("Space / Enter", "Loupe: view the photo full size"),
    ("Z or click", "Zoom to 100 % and back (loupe, compare)"),
    ("F / Shift+F", "Next / previous face at 100 %, with its eyes' state (loupe, compare)"),
    ("C", "Compare the selected photos side by side"),
    ("G", "Collapse bursts to their best photo, and back"),
    ("Shift+G", "Expand or collapse the current photo's burst"),
    ("Ctrl+F", "Search the photos by a description (Enter runs, Esc clears)"),
    ("Esc", "Back to the grid"),
    ("Ctrl+Z", "Undo"),
    ("Ctrl+Shift+Z", "Redo"),
    ("Ctrl+A", "Select all"),
    ("? or F1", "Show this help"),
]


PAGE_GRID, PAGE_LOUPE, PAGE_COMPARE = 0, 1, 2


SHUTDOWN_SECONDS = 2.0  # closing the window waits at most this long for background work


class ServiceBridge(QObject):
    """Turns WatchService callbacks (worker threads) into queued Qt signals."""

    scanned = Signal(object)
    job = Signal(object)  # a photosense.jobs.Job the service is about to run (a scan, a watch batch)
    error = Signal(str)  # a watcher job failed (a locked library, a vanished folder)
    sidecars = Signal(object)  # a finished XMP auto-write job (photosense.jobs.Job)
    resolved = Signal(str)  # a kind of problem is gone (a later scan worked)


def plural(n: int, word: str) -> str:
    """"1 pick", "2 picks", "0 rejects"."""
    return f"{n} {word}{'s' if n != 1 else ''}"


def taste_summary(status, flagged: tuple[int, int] | None = None) -> str:
    """One or two lines on the "my taste" model for the sidebar (a ``TasteStatus``);
    ``flagged``: the library's (picks, rejects), all of them, when they are known: "my taste"
    learns only from the scored ones, and says so when some are not scored yet."""
    if status.model is None:
        return "Score the photos, then pick and reject: “my taste” learns from your flags."
    unscored = ""
    if flagged is not None and flagged != (status.picks, status.rejects):
        unscored = (f"; {plural(flagged[0], 'pick')} and {plural(flagged[1], 'reject')} in the library, "
                    f"{status.picks + status.rejects} of them scored")
    if status.fitted:
        accuracy = "" if status.cv_accuracy is None else f": {status.cv_accuracy:.0%} accurate (cross-validated)"
        text = (f"Learned from {plural(status.fitted_picks or 0, 'pick')} and "
                f"{plural(status.fitted_rejects or 0, 'reject')}{accuracy}")
        up_to_date = status.up_to_date and (flagged is None or flagged == (status.picks, status.rejects))
        return text if up_to_date else text + "; flags changed since" + unscored
    need = [(max(0, status.min_per_class - n), what) for n, what in
            ((status.picks, "pick"), (status.rejects, "reject"))]
    parts = [f"{n} more {what}{'s' if n != 1 else ''}" for n, what in need if n]
    if parts:
        return (f"Needs {' and '.join(parts)} to learn your taste "
                f"({plural(status.picks, 'pick')}, {plural(status.rejects, 'reject')} so far{unscored})")
    return "Enough picks and rejects: learning shortly…"


def photos(n: int) -> str:
    return plural(n, "photo")


_photos = photos
