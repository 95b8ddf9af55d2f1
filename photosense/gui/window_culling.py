"""Culling: flags, ratings, colour labels, auto-advance, threshold picks from the histogram, the
grid's context menu, and the XMP auto-write reports that follow a change.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

from PySide6.QtCore import (
    QItemSelectionModel,
    Slot,
)
from PySide6.QtWidgets import (
    QMenu,
)

from photosense.gui.photo_model import PhotoIdRole
from photosense.gui.window_common import PAGE_COMPARE, _photos
from photosense.library import (
    FLAG_NONE,
    FLAG_PICK,
    FLAG_REJECT,
)


class CullingActions:
    """Mixed into ``MainWindow``; see the module docstring."""

    def _on_culling_changed(self, ids: list[int]) -> None:
        self._refresh_culling_overlays(ids, fetch=True)
        if self.current_id() in ids:
            self._update_info()
        self.statusBar().showMessage(self.culling.stack.undoText() or "Saved", 2500)
        if ids:
            self._taste_timer.start()  # refit "my taste" once the flags settle
            self.refresh_flag_counts()

    @Slot(object)
    def _on_sidecars_written(self, job) -> None:
        """An XMP auto-write batch finished: its failures are problems, its successes clear
        earlier problems of the same photos."""
        if job.error is not None:
            self.report_error(f"XMP sidecars: {job.error}", quiet=True, kind="xmp")
            return
        report = job.result
        failed = {path for path, _m in report.errors}
        for path, message in report.errors[:50]:
            self.report_error(f"XMP sidecar {path}: {message}", quiet=True, kind="xmp", subject=path)
        for pid in job.photo_ids:
            row = self.model.photo_row(pid)
            if row is not None and row.path not in failed:
                self.problem_log.resolve("xmp", row.path)

    def set_flag(self, flag: int) -> None:
        ids = self.target_ids()
        names = {FLAG_PICK: "Pick", FLAG_REJECT: "Reject", FLAG_NONE: "Unflag"}
        if self.culling.apply(ids, f"{names[flag]} {_photos(len(ids))}", flag=flag):
            self._auto_advance(ids)

    def set_rating(self, rating: int) -> None:
        ids = self.target_ids()
        text = f"Rate {_photos(len(ids))} {rating}★" if rating else f"Clear rating of {_photos(len(ids))}"
        if self.culling.apply(ids, text, rating=rating):
            self._auto_advance(ids)

    def toggle_label(self, label: str) -> None:
        """Set a colour label; pressing the same label again on a labelled photo removes it."""
        ids = self.target_ids()
        rows = [self.model.photo_row(i) for i in ids]
        all_have = bool(rows) and all(r is not None and r.color_label == label for r in rows)
        value = None if all_have else label
        text = f"Label {_photos(len(ids))} {label}" if value else f"Remove label of {_photos(len(ids))}"
        if self.culling.apply(ids, text, color_label=value):
            self._auto_advance(ids)

    def _auto_advance(self, ids: list[int]) -> None:
        if self.prefs.auto_advance and len(ids) == 1:
            self.move_current(1)

    def move_current(self, step: int) -> None:
        if self.pages.currentIndex() == PAGE_COMPARE:
            self.compare.set_current((self.compare.current_index() + step) % max(1, self.compare.count()))
            return
        cur = self.view.currentIndex()
        row = (cur.row() if cur.isValid() else -1) + step
        if 0 <= row < self.model.total():
            self.model.ensure_exposed(row)
            idx = self.model.index(row)
            self.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.view.scrollTo(idx)

    def pick_above(self, threshold: float) -> None:
        ids, values = self._histogram_data
        chosen = [int(i) for i in ids[values >= threshold]]
        self.culling.apply(chosen, f"Pick {_photos(len(chosen))} at or above {threshold:.2f}", flag=FLAG_PICK)

    def reject_below(self, threshold: float) -> None:
        ids, values = self._histogram_data
        chosen = [int(i) for i in ids[values < threshold]]
        self.culling.apply(chosen, f"Reject {_photos(len(chosen))} below {threshold:.2f}", flag=FLAG_REJECT)

    def pick_below(self, threshold: float) -> None:
        """Lower is better (noise, a distance from 0): pick at or below the line."""
        ids, values = self._histogram_data
        chosen = [int(i) for i in ids[values <= threshold]]
        self.culling.apply(chosen, f"Pick {_photos(len(chosen))} at or below {threshold:.2f}", flag=FLAG_PICK)

    def reject_above(self, threshold: float) -> None:
        ids, values = self._histogram_data
        chosen = [int(i) for i in ids[values > threshold]]
        self.culling.apply(chosen, f"Reject {_photos(len(chosen))} above {threshold:.2f}", flag=FLAG_REJECT)

    def _context_menu(self, pos) -> None:
        if not self.view.indexAt(pos).isValid():
            return
        menu = QMenu(self)
        for action in (self.pick_action, self.reject_action, self.unflag_action):
            menu.addAction(action)
        rating = menu.addMenu("Rating")
        for action in self.rating_actions:
            rating.addAction(action)
        label = menu.addMenu("Colour label")
        for action in self.label_actions:
            label.addAction(action)
        menu.addSeparator()
        menu.addAction(self.loupe_action)
        menu.addAction(self.compare_action)
        pid = self.view.indexAt(pos).data(PhotoIdRole)
        if self.model.group_of(pid) is not None:
            menu.addSeparator()
            n = len(self.model.group_members(pid))
            text = (f"Collapse burst ({_photos(n)})" if self.model.is_expanded(pid)
                    else f"Expand burst ({_photos(n)})")
            menu.addAction(text, lambda: self.toggle_group(pid))
            menu.addAction(self.pick_best_action)
        menu.exec(self.view.viewport().mapToGlobal(pos))
