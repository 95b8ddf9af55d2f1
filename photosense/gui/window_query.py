"""Sort, filters and text search: the sort combo and direction, queries that keep the selection,
the search box and its ranking.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    Qt,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
)

from photosense.errors import NothingScored, WeightsUnavailable
from photosense.gui.jobs import Job, JobContext
from photosense.gui.window_common import _photos
from photosense.library import (
    CHECK_NAMES,
    PhotoQuery,
)
from photosense.library.direction import HIGHER, NEAR_ZERO, describe, direction_of
from photosense.library.queries import BASIC_SORTS

SEARCH_SORT = "\x00search"  # the Sort combo's item while a text search orders the view
BASIC_SORT_NAMES = [("name", "File name"), ("capture_time", "Capture time"), ("rating", "Rating"),
                    ("flag", "Flag"), ("label", "Colour label")]


class SortFilterSearch:
    """Mixed into ``MainWindow``; see the module docstring."""

    def sort_keys(self) -> list[tuple[str, str]]:
        keys = list(BASIC_SORT_NAMES)
        keys += [(a.name, a.name) for a in self.attributes]
        keys += [(c, f"{c} (check)") for c in CHECK_NAMES]
        keys += [("eye_sharpness", "eye sharpness (faces)"), ("faces", "faces (count)")]
        return keys

    def key_direction(self, key: str) -> str:
        """Which way is better for an attribute or check (photosense.library.direction)."""
        info = next((a for a in self.attributes if a.name == key), None)
        return info.direction if info is not None else direction_of(key)

    def _fill_sort_combo(self) -> None:
        current = self.model.query.sort
        self.sort_combo.blockSignals(True)
        self.sort_combo.clear()
        for key, text in self.sort_keys():
            self.sort_combo.addItem(text, key)
            if key not in BASIC_SORTS:
                self.sort_combo.setItemData(self.sort_combo.count() - 1,
                                            f"{text}: {describe(self.key_direction(key))}",
                                            Qt.ItemDataRole.ToolTipRole)
        idx = self.sort_combo.findData(current)
        if idx < 0:  # the sort attribute was removed
            idx = 0
            self.model.query = replace(self.model.query, sort="name", descending=None)
        self.sort_combo.setCurrentIndex(idx)
        self.sort_combo.blockSignals(False)
        self._show_search_in_sort_combo()
        self.best_combo.clear()
        self.best_combo.addItem("Best by sort", "")
        for key, text in self.sort_keys():
            if key not in BASIC_SORTS:
                self.best_combo.addItem(f"Best by {text}", key)
        self.best_combo.setCurrentIndex(max(0, self.best_combo.findData(self.prefs.best_by)))
        self._update_direction_button()

    def _show_search_in_sort_combo(self) -> None:
        """While a search orders the view, the Sort combo says so (its first item)."""
        combo = self.sort_combo
        combo.blockSignals(True)
        idx = combo.findData(SEARCH_SORT)
        text = self.model.arrangement.search_text if self.model.arrangement.ranking is not None else ""
        if text:
            label = f"Similarity to “{text}”"
            if idx < 0:
                combo.insertItem(0, label, SEARCH_SORT)
                idx = 0
            combo.setItemText(idx, label)
            combo.setCurrentIndex(idx)
        elif idx >= 0:
            combo.removeItem(idx)
            combo.setCurrentIndex(max(0, combo.findData(self.model.query.sort)))
        combo.blockSignals(False)

    def _sort_chosen(self) -> None:
        """An item of the Sort combo was chosen: sort by it; the grid gets the keys back."""
        key = self.sort_combo.currentData()
        if key != SEARCH_SORT:
            self.set_sort(key)
        self.return_focus()

    def natural_descending(self, key: str) -> bool:
        if key in BASIC_SORTS:
            return BASIC_SORTS[key]
        return self.key_direction(key) == HIGHER

    def _update_direction_button(self) -> None:
        if self.model.arrangement.ranking is not None:
            self.direction_button.setText("Most similar first")
            self.direction_button.setToolTip("Ordered by the search; click to go back to the sort order")
            return
        q = self.model.query
        desc = self.natural_descending(q.sort) if q.descending is None else q.descending
        if q.sort in BASIC_SORTS:
            self.direction_button.setText({
                "capture_time": "Newest first" if desc else "Oldest first",
                "rating": "Most stars" if desc else "Fewest stars",
                "flag": "Picks first" if desc else "Rejects first",
            }.get(q.sort, "Z→A" if desc else "A→Z"))
            self.direction_button.setToolTip("Reverse the order")
            return
        direction = self.key_direction(q.sort)
        best = desc == (direction == HIGHER)
        self.direction_button.setText("Best first" if best else "Worst first")
        if direction == NEAR_ZERO:
            order = "farthest from 0 first" if desc else "closest to 0 first"
        else:
            order = "highest first" if desc else "lowest first"
        self.direction_button.setToolTip(f"{q.sort}: {order} ({describe(direction)}); click to reverse")

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        if key not in dict(self.sort_keys()):
            return
        self.sort_combo.setCurrentIndex(max(0, self.sort_combo.findData(key)))
        self._drop_search()  # a chosen sort replaces the search order
        self.requery(replace(self.model.query, sort=key, descending=descending))
        self._show_search_in_sort_combo()

    def reverse_order(self) -> None:
        if self.model.arrangement.ranking is not None:  # the button reads "Most similar first"
            self.clear_search()
            return
        q = self.model.query
        desc = self.natural_descending(q.sort) if q.descending is None else q.descending
        self.requery(replace(q, descending=not desc))

    def apply_filters(self) -> None:
        self.requery(self.sidebar.apply_to(self.model.query))

    def requery(self, query: PhotoQuery | None = None, keep_scroll: bool = False) -> None:
        """Run a query, keeping the selection and the current photo when they are still shown;
        ``keep_scroll``: also at the same height on screen (a re-sort as scores arrive)."""
        query = self.sidebar.apply_to(query or self.model.query)
        if self._restore_selection is None:
            self._restore_selection = (self.selected_ids(), self.current_id())
        if keep_scroll and self._restore_scroll is None:
            cur = self.view.currentIndex()
            rect = self.view.visualRect(cur) if cur.isValid() else None
            if rect is not None and rect.isValid() and self.view.viewport().rect().intersects(rect):
                self._restore_scroll = rect.top()
        self.model.arrangement = replace(self.model.arrangement, best_by=self.best_by(query.sort))
        self.model.set_query(query)
        self._update_direction_button()
        self.prefs.sort, self.prefs.descending = query.sort, query.descending

    def _update_count(self) -> None:
        """"51 of 60 photos" in the status bar: what the view shows of the library."""
        count = self.model.total()
        total = sum(f.photo_count for f in self.folders or [])
        self.count_label.setText(f"{count} of {_photos(total)}" if count != total else _photos(count))

    @Slot(int)
    def _on_query_finished(self, count: int) -> None:
        self._update_count()
        self.view.setVisible(count > 0)
        self.empty_label.setVisible(count == 0 and bool(self.folders))
        selected, current = self._restore_selection or ([], None)
        self._restore_selection = None
        offset, self._restore_scroll = self._restore_scroll, None
        self._select_ids(selected, current, offset)
        self.update_histogram()
        self._update_info()

    def _select_ids(self, ids: list[int], current: int | None, offset: int | None = None) -> None:
        """Select ``ids``, make ``current`` current and show it: centred, or ``offset``
        pixels from the top of the grid (where it was before a re-sort)."""
        sm = self.view.selectionModel()
        rows = [r for r in (self.model.row_of(i) for i in ids) if r is not None]
        cur_row = self.model.row_of(current) if current is not None else None
        if cur_row is None:
            cur_row = rows[0] if rows else (0 if self.model.total() else None)
        if cur_row is None:
            return
        if rows:
            self.model.ensure_exposed(max(rows + [cur_row]))
        else:
            self.model.ensure_exposed(cur_row)
        selection = QItemSelection()
        for r in rows:
            idx = self.model.index(r)
            selection.select(idx, idx)
        cur = self.model.index(cur_row)
        sm.setCurrentIndex(cur, QItemSelectionModel.SelectionFlag.NoUpdate)
        if rows:
            sm.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        else:
            sm.select(cur, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        if offset is not None and cur_row == self.model.row_of(current):
            self.view.scrollTo(cur, QAbstractItemView.ScrollHint.PositionAtTop)
            bar = self.view.verticalScrollBar()
            bar.setValue(bar.value() + self.view.visualRect(cur).top() - offset)
            return
        self.view.scrollTo(cur, QAbstractItemView.ScrollHint.PositionAtCenter if ids else
                           QAbstractItemView.ScrollHint.EnsureVisible)

    def focus_search(self) -> None:
        self.search_box.setFocus()
        self.search_box.selectAll()

    def run_search(self, text: str) -> Job | None:
        """Rank the photos in view by similarity to ``text`` (stored features; the model's
        text tower runs on the model thread, loaded once)."""
        text = text.strip()
        if not text:
            self.clear_search()
            return None
        library, engine = self.library, self.engine

        def work(ctx: JobContext):
            from photosense.scoring.search import search

            return search(library, engine, text)

        job = Job(work, "search", kind="search")
        job.setProperty("text", text)
        self._search_request.start(job)
        job.result.connect(self._search_request.slot(job, self._on_search_results))
        job.error.connect(self._search_request.slot(job, self._on_search_error))
        self.search_label.setText(f"Searching for “{text}”…")
        self.search_bar.show()
        self._track(job, f"Searching for “{text}”")
        self.jobs.start(job, "model", interactive=True)  # between two scoring batches
        return job

    def _on_search_results(self, job: Job, hits) -> None:
        text = job.property("text")
        self.model.arrangement = replace(self.model.arrangement, ranking=tuple(i for i, _ in hits),
                                         similarity=dict(hits), search_text=text)
        self.search_label.setText(f"search: “{text}” — most similar first; filters still apply")
        self.search_bar.show()
        self._restore_selection = ([], None)  # start at the best match
        self.requery()
        self._show_search_in_sort_combo()

    def _on_search_error(self, job: Job, message: str) -> None:
        self._drop_search()
        self.requery()
        exception = getattr(job, "exception", None)
        if isinstance(exception, WeightsUnavailable):
            self.banner.show_problem(message)
            self.report_error(f"Search needs the model's weights: {message}", kind="model")
        elif isinstance(exception, NothingScored):  # a state of the library, not a problem
            self.statusBar().showMessage(
                "Nothing to search yet: a search compares your text with scored photos, "
                "and none is scored", 10000)
        else:
            self.report_error(f"Search failed: {message}")

    def _search_box_cleared(self) -> None:
        self.clear_search()
        self.view.setFocus()

    def clear_search(self) -> None:
        """Back to the sort order."""
        searching = self.model.arrangement.ranking is not None or self._search_request.pending
        self.search_box.clear()
        self._drop_search()
        if searching:
            self.requery()
        self._show_search_in_sort_combo()

    def _drop_search(self) -> None:
        self._search_request.cancel()
        self.search_bar.hide()
        if self.model.arrangement.ranking is not None:
            self.model.arrangement = replace(self.model.arrangement, ranking=None, similarity={}, search_text="")

    def update_histogram(self) -> None:
        """Values of the sort key over the shown photos (background), then the histogram;
        during a search, the similarity to its text."""
        key = self.model.query.sort
        self._histogram_request.cancel()
        arrangement = self.model.arrangement
        if arrangement.ranking is not None:
            sim = arrangement.similarity
            ids = np.asarray([i for i in self.model.ids if i in sim], dtype=np.int64)
            values = np.asarray([sim[i] for i in ids], dtype=np.float64)
            self._histogram_data = (ids, values)
            self.histogram.set_values(values, f"similarity to “{arrangement.search_text}” — "
                                              f"{_photos(len(values))}", key=SEARCH_SORT + arrangement.search_text)
            return
        if key in BASIC_SORTS:
            self._histogram_data = (np.zeros(0, np.int64), np.zeros(0))
            self.histogram.set_values(np.zeros(0), "Sort by a score or check to see its histogram", key=None)
            return
        ids = list(self.model.ids)
        library = self.library

        def work(ctx: JobContext):
            ctx.check()
            # One (id, value) query, not full rows of every shown photo (a 100k library).
            return library.sort_values(key, ids)

        job = Job(work, "histogram")
        job.setProperty("key", key)
        self._histogram_request.start(job)
        job.result.connect(self._histogram_request.slot(job, self._on_histogram_values))
        job.error.connect(self._histogram_request.slot(job, lambda _job, message: self.report_error(message)))
        self.jobs.start(job, "background")

    def _on_histogram_values(self, job: Job, data) -> None:
        key = job.property("key")
        direction = self.key_direction(key)
        ids, values = data
        label = f"{key} — {_photos(len(values))}"
        if direction == NEAR_ZERO:  # the distance from 0: lower is better
            values = np.abs(values)
            label = f"{key}, distance from 0 — {_photos(len(values))}"
        self._histogram_data = (ids, values)
        self.histogram.set_values(values, label, key=key, higher_better=direction == HIGHER)
        self.histogram.setToolTip(f"{key}: {describe(direction)}")
