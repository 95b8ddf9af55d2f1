"""Selection, the info panel, loupe, compare, help overlay and thumbnail size: what is shown where.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

from PySide6.QtCore import (
    QModelIndex,
)

from photosense.gui.delegate import cell_size
from photosense.gui.photo_model import PhotoIdRole, RowRole, ThumbnailRole, value_of
from photosense.gui.settings_dialog import THUMB_MAX, THUMB_MIN
from photosense.gui.window_common import (
    PAGE_COMPARE,
    PAGE_GRID,
    PAGE_LOUPE,
    SHORTCUTS,
)
from photosense.library import (
    PhotoRow,
)


class ViewActions:
    """Mixed into ``MainWindow``; see the module docstring."""

    def current_id(self) -> int | None:
        if self.pages.currentIndex() == PAGE_COMPARE and self._compare_ids:
            return self._compare_ids[min(self.compare.current_index(), len(self._compare_ids) - 1)]
        idx = self.view.currentIndex()
        return idx.data(PhotoIdRole) if idx.isValid() else None

    def selected_rows(self) -> list[int]:
        """Selected rows in order, read from the selection's ranges (fast for 100,000)."""
        rows: list[int] = []
        for r in self.view.selectionModel().selection():
            rows.extend(range(r.top(), r.bottom() + 1))
        return sorted(set(rows))

    def selected_count(self) -> int:
        return sum(r.height() for r in self.view.selectionModel().selection())

    def selected_ids(self) -> list[int]:
        ids = self.model.ids
        return [ids[r] for r in self.selected_rows() if r < len(ids)]

    def target_ids(self) -> list[int]:
        """The photos a culling key acts on: the shown one in loupe/compare, else the selection."""
        if self.pages.currentIndex() != PAGE_GRID:
            cid = self.current_id()
            return [cid] if cid is not None else []
        ids = self.selected_ids()
        if not ids and self.current_id() is not None:
            ids = [self.current_id()]
        return ids

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._update_info()
        if self.pages.currentIndex() == PAGE_LOUPE:
            self._show_in_loupe()

    def _on_selection_changed(self, *_args) -> None:
        self._update_info()

    def _on_data_changed(self, top: QModelIndex, bottom: QModelIndex, roles=()) -> None:
        if roles and list(roles) == [ThumbnailRole]:
            return
        if self.pages.currentIndex() != PAGE_GRID:
            ids = self.model.ids
            self._refresh_culling_overlays(ids[top.row():bottom.row() + 1])
        cur = self.view.currentIndex()
        if cur.isValid() and top.row() <= cur.row() <= bottom.row():
            self._update_info()

    def _update_info(self) -> None:
        cid = self.current_id()
        count = self.selected_count()
        row = self.model.photo_row(cid) if cid is not None else None
        if row is None and cid is not None:
            # not loaded yet: fetch it (the info panel waits, the GUI does not)
            self.db.submit(lambda: self.library.rows([cid]),
                           lambda rows: rows and self.current_id() == cid and self.info.set_row(rows[0], count))
            return
        self.info.set_row(row, max(count, 1) if row is not None else count)
        if row is not None and self.model.group_of(cid) == cid and not self.model.is_expanded(cid):
            self._show_burst_reason(cid)

    def _show_burst_reason(self, cid: int) -> None:
        """Why this photo stands for its burst, in the info panel ("no closed eyes, ...")."""
        from photosense.curation.groups import Group, best_reason

        members = self.model.group_members(cid)
        by = self.model.arrangement.best_by
        self.db.submit(lambda: best_reason(Group(members, "burst"), cid, self.library, by),
                       lambda text: self.current_id() == cid and self.info.set_burst_reason(
                           f"best of {len(members)}: {text}"))

    def _shown_ids(self) -> list[tuple[object, int]]:
        """(loupe or compare pane, photo id) for the photos on screen outside the grid."""
        if self.pages.currentIndex() == PAGE_LOUPE and self._loupe_id is not None:
            return [(self.loupe, self._loupe_id)]
        if self.pages.currentIndex() == PAGE_COMPARE:
            return list(zip(self.compare.panes(), self._compare_ids))
        return []

    def _refresh_culling_overlays(self, ids, fetch: bool = False) -> None:
        """Show the current flag/stars/label of those of ``ids`` in the loupe or compare, from
        the model's rows; ``fetch``: rows the model does not hold are read on the db thread."""
        wanted = set(ids)
        missing = []
        for pane, pid in self._shown_ids():
            if pid not in wanted:
                continue
            row = self.model.photo_row(pid)
            if row is not None:
                pane.set_culling(row.flag, row.rating, row.color_label)
            else:
                missing.append(pid)
        if fetch and missing:
            self.db.submit(lambda: self.library.states(missing), self._show_culling_states)

    def _show_culling_states(self, states) -> None:
        by_id = {st.photo_id: st for st in states or []}
        for pane, pid in self._shown_ids():
            st = by_id.get(pid)
            if st is not None:
                pane.set_culling(st.flag, st.rating, st.color_label)

    def return_focus(self) -> None:
        """Give the keys back to the photos (the grid, or the loupe/compare on show) after a
        choice in a control: arrow keys move between photos, not through a combo's items."""
        if self.pages.currentIndex() == PAGE_GRID:
            self.view.setFocus()
        else:
            self.pages.currentWidget().setFocus()

    def _set_page(self, page: int) -> None:
        self._remember_docks()
        self.pages.setCurrentIndex(page)
        in_grid = page == PAGE_GRID
        self.next_action.setEnabled(not in_grid)
        self.prev_action.setEnabled(not in_grid)
        self.zoom_action.setEnabled(not in_grid)
        self._place_docks()
        if in_grid:
            self.view.setFocus()
        else:
            self.pages.currentWidget().setFocus()
        self._update_info()

    def toggle_loupe(self) -> None:
        if self.pages.currentIndex() == PAGE_GRID:
            self.show_loupe()
        else:
            self.show_grid()

    def show_loupe(self) -> None:
        if self.current_id() is None:
            return
        self._set_page(PAGE_LOUPE)
        self._show_in_loupe()

    def _show_in_loupe(self) -> None:
        row = self.view.currentIndex().data(RowRole)
        if row is not None:
            self._loupe_row(row)
        else:
            cid = self.current_id()
            self.db.submit(lambda: self.library.rows([cid]), lambda rows: rows and self._loupe_row(rows[0]))

    def _loupe_row(self, row: PhotoRow) -> None:
        self._loupe_id = row.id
        self.loupe.set_photo(row.path, self._title(row), row.companion_path)
        self.loupe.set_faces(row.faces)
        self.loupe.set_culling(row.flag, row.rating, row.color_label)
        self._preload_neighbours(row.id)

    def _preload_neighbours(self, pid: int) -> None:
        """Decode the photos before and after the one in the loupe, so → and ← are instant."""
        row = self.model.row_of(pid)
        if row is None:
            return
        items = []
        for r in (row + 1, row - 1):
            if 0 <= r < self.model.total():
                neighbour = self.model.photo_row(self.model.ids[r])
                if neighbour is not None:
                    items.append((neighbour.path, neighbour.companion_path))
        self.loupe.preload(items)

    def _title(self, row: PhotoRow) -> str:
        key = self.model.query.sort
        value = value_of(row, key)
        return row.name if value is None else f"{row.name}   {key} {value:.2f}"

    def show_grid(self) -> None:
        if self.help_overlay_visible():
            self.toggle_help()
            return
        if self.pages.currentIndex() != PAGE_GRID:
            self._set_page(PAGE_GRID)
            cur = self.view.currentIndex()
            if cur.isValid():
                self.view.scrollTo(cur)

    def show_compare(self) -> None:
        from photosense.gui.compare import MAX_PANES

        ids = self.selected_ids()[:MAX_PANES]
        if len(ids) < 2:
            self.statusBar().showMessage("Select 2 to 4 photos to compare (Ctrl+click or Shift+click)", 4000)
            return

        def done(rows: list[PhotoRow]) -> None:
            self._compare_ids = [r.id for r in rows]
            self.compare.set_photos([(r.path, self._title(r), r.companion_path) for r in rows])
            for pane, r in zip(self.compare.panes(), rows):
                pane.set_faces(r.faces)
                current = self.model.photo_row(r.id) or r  # the model may have newer culling
                pane.set_culling(current.flag, current.rating, current.color_label)
            self._set_page(PAGE_COMPARE)

        self.db.submit(lambda: self.library.rows(ids), done)

    def jump_to_face(self, step: int) -> None:
        """F / Shift+F: the next or previous face at 100 % (every compare pane at once)."""
        if self.pages.currentIndex() == PAGE_LOUPE:
            found = self.loupe.next_face(step)
        elif self.pages.currentIndex() == PAGE_COMPARE:
            found = self.compare.next_face(step)
        else:
            return
        if not found:
            self.statusBar().showMessage("No faces found in this photo", 3000)

    def toggle_zoom(self) -> None:
        if self.pages.currentIndex() == PAGE_LOUPE:
            self.loupe.toggle_zoom()
        elif self.pages.currentIndex() == PAGE_COMPARE:
            self.compare.toggle_zoom()

    def help_overlay_visible(self) -> bool:
        return getattr(self, "help_overlay", None) is not None and self.help_overlay.isVisible()

    def toggle_help(self) -> None:
        from photosense.gui.help_overlay import HelpOverlay

        if getattr(self, "help_overlay", None) is None:
            self.help_overlay = HelpOverlay(self, SHORTCUTS)
        if self.help_overlay.isVisible():
            self.help_overlay.hide()
        else:
            self.help_overlay.show()
            self.help_overlay.raise_()

    def set_thumb_size(self, side: int) -> None:
        side = max(THUMB_MIN, min(THUMB_MAX, int(side)))
        self.prefs.thumb_size = side
        if self.size_slider.value() != side:
            self.size_slider.blockSignals(True)
            self.size_slider.setValue(side)
            self.size_slider.blockSignals(False)
        self.delegate.thumb_side = side
        self.view.set_cell_size(cell_size(side))
        self.thumbnails.set_side(side)
        self.view.scheduleDelayedItemsLayout()
        self.view.viewport().update()
