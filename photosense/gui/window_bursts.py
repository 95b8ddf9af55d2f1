"""Bursts: finding them, collapsing each to its best photo, expanding one, picking the best of each.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

from dataclasses import replace

from photosense.gui.jobs import Job, JobContext
from photosense.gui.window_common import _photos
from photosense.library import (
    CHECK_NAMES,
)


class BurstActions:
    """Mixed into ``MainWindow``; see the module docstring."""

    def best_by(self, sort: str | None = None) -> str:
        """The attribute or check that decides a burst's best photo: the chosen one, else the
        sort key when it is a score or check, else quality (sharpness before any scoring)."""
        names = {a.name for a in self.attributes}
        valid = names | set(CHECK_NAMES)
        sort = self.model.query.sort if sort is None else sort
        for key in (self.prefs.best_by, sort):
            if key and key in valid:
                return key
        return "quality" if "quality" in names else "sharpness"

    def set_best_by(self, key: str) -> None:
        self.prefs.best_by = key or ""
        if self.collapse_action.isChecked():
            self.requery()

    def set_collapse_bursts(self, on: bool, requery: bool = True) -> None:
        """Show each burst as its best photo (finding the bursts first, in the background)."""
        self.collapse_action.setChecked(on)
        self.prefs.collapse_bursts = on
        if not on:
            self._groups_request.cancel()
            self.model.arrangement = replace(self.model.arrangement, groups=None, expanded=frozenset())
            if requery:
                self.requery()
        elif self.groups is None:
            self.find_bursts()
        else:
            self._apply_groups(requery)

    def find_bursts(self) -> Job:
        """Find the library's bursts (background); a collapsed view then shows them."""
        from photosense.curation.groups import find_groups

        library = self.library
        window_s, threshold = self.prefs.burst_window_s, self.prefs.burst_threshold

        def work(ctx: JobContext):
            return find_groups(library, window_s=window_s, threshold=threshold)

        job = Job(work, "bursts")
        self._groups_request.start(job)
        job.result.connect(self._groups_request.slot(job, self._on_bursts))
        job.error.connect(lambda msg: self.report_error(f"Finding bursts failed: {msg}"))
        self.statusBar().showMessage("Looking for bursts…", 5000)
        self.jobs.start(job, "background")
        return job

    def _on_bursts(self, _job, groups) -> None:
        self.groups = groups
        photos = sum(len(g) for g in groups)
        self.statusBar().showMessage(f"{len(groups)} burst{'s' if len(groups) != 1 else ''} "
                                     f"({_photos(photos)})", 6000)
        if self.collapse_action.isChecked():
            self._apply_groups()

    def _apply_groups(self, requery: bool = True) -> None:
        self.model.arrangement = replace(self.model.arrangement, groups=tuple(self.groups or ()))
        if requery:
            self.requery()

    def _bursts_changed(self) -> None:
        """New photos, features or burst settings: find the bursts again when they are shown."""
        self.groups = None
        if self.collapse_action.isChecked():
            self.find_bursts()

    def toggle_group(self, photo_id: int | None = None) -> None:
        """Expand the burst of ``photo_id`` (default: the current photo), or collapse it."""
        pid = self.current_id() if photo_id is None else photo_id
        if pid is None:
            return
        shown = self.model.group_of(pid)
        if shown is None:
            hint = "" if self.collapse_action.isChecked() else " (collapse bursts with G first)"
            self.statusBar().showMessage(f"This photo is not part of a burst{hint}", 4000)
            return
        expand = not self.model.is_expanded(pid)
        self.model.set_expanded(pid, expand)
        self._update_count()  # "51 of 60 photos": the burst's rows came or went
        if not expand and self.model.row_of(self.current_id() or -1) is None:
            self._select_ids([shown], shown)  # the current photo went back into its burst

    def pick_best_of_groups(self) -> None:
        """In every burst in view: pick the best photo, reject the others (one undo step)."""
        groups = self.model.groups_in_view()
        if not groups:
            self.statusBar().showMessage(
                "No bursts in view" if self.collapse_action.isChecked()
                else "Collapse bursts first (G) to see the best of each", 5000)
            return
        by = self.best_by()
        n = sum(len(g) for g in groups)
        self.culling.pick_best(groups, by, f"Pick the best of {len(groups)} burst{'s' if len(groups) != 1 else ''} "
                                           f"by {by}, reject {_photos(n - len(groups))}")
