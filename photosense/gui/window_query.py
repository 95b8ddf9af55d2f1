"""Sort, filters and text search: the sort combo and direction, queries that keep the selection, the search box and its ranking.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
)

from photosense.errors import WeightsUnavailable
from photosense.gui.jobs import Job, JobContext
from photosense.library import (
    CHECK_NAMES,
    PhotoQuery,
)
from photosense.library.queries import ASCENDING_BY_DEFAULT, BASIC_SORTS


class SortFilterSearch:
    """Mixed into ``MainWindow``; see the module docstring."""

    def sort_keys(self) -> list[tuple[str, str]]:
        keys = [("name", "File name"), ("capture_time", "Capture time")]
        keys += [(a.name, a.name) for a in self.attributes]
        keys += [(c, f"{c} (check)") for c in CHECK_NAMES]
        keys += [("eye_sharpness", "eye sharpness (faces)"), ("faces", "faces (count)")]
        return keys

    def _fill_sort_combo(self) -> None:
        current = self.model.query.sort
        self.sort_combo.blockSignals(True)
        self.sort_combo.clear()
        for key, text in self.sort_keys():
            self.sort_combo.addItem(text, key)
        idx = self.sort_combo.findData(current)
        if idx < 0:  # the sort attribute was removed
            idx = 0
            self.model.query = replace(self.model.query, sort="name", descending=None)
        self.sort_combo.setCurrentIndex(idx)
        self.sort_combo.blockSignals(False)
        self.best_combo.clear()
        self.best_combo.addItem("Best by sort", "")
        for key, text in self.sort_keys():
            if key not in BASIC_SORTS:
                self.best_combo.addItem(f"Best by {text}", key)
        self.best_combo.setCurrentIndex(max(0, self.best_combo.findData(self.prefs.best_by)))
        self._update_direction_button()

    def natural_descending(self, key: str) -> bool:
        if key in BASIC_SORTS:
            return BASIC_SORTS[key]
        return key not in ASCENDING_BY_DEFAULT

    def _update_direction_button(self) -> None:
        if self.model.arrangement.ranking is not None:
            self.direction_button.setText("Most similar first")
            self.direction_button.setToolTip("Ordered by the search; click to go back to the sort order")
            return
        self.direction_button.setToolTip("Reverse the order")
        q = self.model.query
        desc = self.natural_descending(q.sort) if q.descending is None else q.descending
        if q.sort in BASIC_SORTS:
            self.direction_button.setText("A→Z" if not desc else "Z→A")
            if q.sort == "capture_time":
                self.direction_button.setText("Oldest first" if not desc else "Newest first")
        else:
            self.direction_button.setText("Highest first" if desc else "Lowest first")

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        if key not in dict(self.sort_keys()):
            return
        self.sort_combo.setCurrentIndex(max(0, self.sort_combo.findData(key)))
        self._drop_search()  # a chosen sort replaces the search order
        self.requery(replace(self.model.query, sort=key, descending=descending))

    def reverse_order(self) -> None:
        if self.model.arrangement.ranking is not None:  # the button reads "Most similar first"
            self.clear_search()
            return
        q = self.model.query
        desc = self.natural_descending(q.sort) if q.descending is None else q.descending
        self.requery(replace(q, descending=not desc))

    def apply_filters(self) -> None:
        self.requery(self.sidebar.apply_to(self.model.query))

    def requery(self, query: PhotoQuery | None = None) -> None:
        """Run a query, keeping the selection and the current photo when they are still shown."""
        query = self.sidebar.apply_to(query or self.model.query)
        if self._restore_selection is None:
            self._restore_selection = (self.selected_ids(), self.current_id())
        self.model.arrangement = replace(self.model.arrangement, best_by=self.best_by(query.sort))
        self.model.set_query(query)
        self._update_direction_button()
        self.prefs.sort, self.prefs.descending = query.sort, query.descending

    @Slot(int)
    def _on_query_finished(self, count: int) -> None:
        total = sum(f.photo_count for f in self.folders or [])
        self.count_label.setText(f"{count} of {total} photos" if count != total else f"{count} photos")
        self.view.setVisible(count > 0)
        self.empty_label.setVisible(count == 0 and bool(self.folders))
        selected, current = self._restore_selection or ([], None)
        self._restore_selection = None
        self._select_ids(selected, current)
        self.update_histogram()
        self._update_info()

    def _select_ids(self, ids: list[int], current: int | None) -> None:
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

    def _on_search_error(self, job: Job, message: str) -> None:
        self._drop_search()
        self.requery()
        if isinstance(getattr(job, "exception", None), WeightsUnavailable):
            self.banner.show_problem(message)
            self.report_error(f"Search needs the model's weights: {message}", kind="model")
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

    def _drop_search(self) -> None:
        self._search_request.cancel()
        self.search_bar.hide()
        if self.model.arrangement.ranking is not None:
            self.model.arrangement = replace(self.model.arrangement, ranking=None, similarity={}, search_text="")

    def update_histogram(self) -> None:
        """Values of the sort key over the shown photos (background), then the histogram."""
        key = self.model.query.sort
        self._histogram_request.cancel()
        if key in BASIC_SORTS:
            self._histogram_data = (np.zeros(0, np.int64), np.zeros(0))
            self.histogram.set_values(np.zeros(0), "Sort by a score or check to see its histogram")
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
        self._histogram_data = data
        key = job.property("key")
        self.histogram.set_values(data[1], f"{key} — {len(data[1])} photos")
