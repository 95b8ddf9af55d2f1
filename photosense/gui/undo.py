"""Culling actions (flag, rating, colour label) as undoable commands.

Each command remembers the photos' previous ``PhotoState``s, which ``Library.set_culling``
returns when the change is written. Writes run on the library thread (``SerialExecutor``), in
order, so an undo queued right after its change always finds the previous states recorded.
The grid shows a change at once (``PhotoListModel.apply_states``), before the write lands.
"Pick the best of each burst, reject the rest" is one command too (``PickBestCommand``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from photosense.curation.groups import Group
from photosense.gui.jobs import SerialExecutor
from photosense.gui.photo_model import PhotoListModel
from photosense.library import Library, PhotoState

log = logging.getLogger("photosense.gui")

_UNSET = object()


class CullCommand(QUndoCommand):
    """Set flag / rating / colour label of some photos; undo restores each photo's state."""

    def __init__(self, controller: CullingController, ids: Sequence[int], changes: dict, text: str):
        super().__init__(text)
        self.controller = controller
        self.ids = list(ids)
        self.changes = dict(changes)
        self.before: list[PhotoState] | None = None  # set on the library thread by redo

    def redo(self) -> None:
        self.controller._write(self)

    def undo(self) -> None:
        self.controller._restore(self)


class PickBestCommand(QUndoCommand):
    """Flag each burst's best photo pick and the rest reject; undo restores every member."""

    def __init__(self, controller: CullingController, groups: Sequence[Group], by: str, text: str):
        super().__init__(text)
        self.controller = controller
        self.groups = list(groups)
        self.by = by
        self.before: list[PhotoState] | None = None  # set on the library thread by redo
        self.after: list[PhotoState] | None = None

    def redo(self) -> None:
        self.controller._pick_best(self)

    def undo(self) -> None:
        self.controller._restore(self)


class CullingController(QObject):
    """Applies culling changes through an undo stack; the one way the GUI changes flags."""

    changed = Signal(list)  # photo ids whose culling state changed (after the write)
    failed = Signal(str)

    def __init__(self, library: Library, db: SerialExecutor, model: PhotoListModel,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.db = db
        self.model = model
        self.stack = QUndoStack(self)
        self.stack.setUndoLimit(500)

    def apply(self, ids: Sequence[int], text: str, *, flag: int | None = None,
              rating: int | None = None, color_label=_UNSET) -> CullCommand | None:
        """Change ``ids`` as one undoable step (e.g. "Pick 3 photos")."""
        ids = list(ids)
        if not ids:
            return None
        changes: dict = {}
        if flag is not None:
            changes["flag"] = flag
        if rating is not None:
            changes["rating"] = rating
        if color_label is not _UNSET:
            changes["color_label"] = color_label
        cmd = CullCommand(self, ids, changes, text)
        self.stack.push(cmd)  # calls redo()
        return cmd

    def pick_best(self, groups: Sequence[Group], by: str, text: str) -> PickBestCommand | None:
        """Pick the best of each group by ``by`` and reject the others, as one undoable step."""
        groups = [g for g in groups if len(g) > 1]
        if not groups:
            return None
        cmd = PickBestCommand(self, groups, by, text)
        self.stack.push(cmd)
        return cmd

    def _pick_best(self, cmd: PickBestCommand) -> None:
        def write():
            if cmd.after is None:  # first time: decide the bests now
                from photosense.curation.groups import pick_best_of_groups

                cmd.before = pick_best_of_groups(self.library, cmd.groups, cmd.by)
                cmd.after = self.library.states([s.photo_id for s in cmd.before])
            else:  # redo after undo: the same decisions again
                self.library.set_states(cmd.after)
            return cmd.after

        def done(states: list[PhotoState]) -> None:
            self.model.apply_states(states)
            self.changed.emit([s.photo_id for s in states])

        self.db.submit(write, done, self._on_error)

    def _write(self, cmd: CullCommand) -> None:
        optimistic = []
        for pid in cmd.ids:
            row = self.model.photo_row(pid)
            if row is not None:
                optimistic.append(PhotoState(
                    pid, cmd.changes.get("flag", row.flag), cmd.changes.get("rating", row.rating),
                    cmd.changes.get("color_label", row.color_label)))
        self.model.apply_states(optimistic)

        def write():
            before = self.library.set_culling(cmd.ids, **cmd.changes)
            if cmd.before is None:  # keep the states from before the first application
                cmd.before = before
            return cmd.ids

        self.db.submit(write, self.changed.emit, self._on_error)

    def _restore(self, cmd: CullCommand | PickBestCommand) -> None:
        def write():
            if cmd.before is None:  # the change itself failed: nothing to restore
                return []
            self.library.set_states(cmd.before)
            return cmd.before

        def done(states: list[PhotoState]) -> None:
            self.model.apply_states(states)
            self.changed.emit([s.photo_id for s in states])

        self.db.submit(write, done, self._on_error)

    def _on_error(self, message: str) -> None:
        log.error("culling change failed: %s", message)
        self.failed.emit(f"Could not save the change: {message}")
        self.model.refresh_rows()  # show what the library really holds
