"""Actions, menus and the toolbar: every toolbar button, menu item and key is a ``QAction``
made in ``_build_actions``, connected to the method of that name in one of the window's parts
(the table in photosense.gui.main_window says which module each is in).

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QLineEdit,
    QSlider,
    QToolButton,
    QWidget,
)

from photosense.gui.settings_dialog import THUMB_MAX, THUMB_MIN
from photosense.gui.window_common import LABEL_KEYS
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT


class HistoryButton(QToolButton):
    """The toolbar's Undo or Redo: a fixed-width icon; the step it would undo or redo is in
    its tooltip (and in the Edit menu)."""

    def __init__(self, stack, undo: bool, keys: str, theme: str, fallback: str,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.stack, self.undo, self.keys = stack, undo, keys
        self.setAutoRaise(True)
        icon = QIcon.fromTheme(theme)
        if icon.isNull():
            self.setText(fallback)
            font = self.font()
            font.setPointSizeF(font.pointSizeF() * 1.4)
            self.setFont(font)
        else:
            self.setIcon(icon)
        self.setFixedWidth(30)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        if undo:
            stack.canUndoChanged.connect(self.refresh)
            stack.undoTextChanged.connect(self.refresh)
        else:
            stack.canRedoChanged.connect(self.refresh)
            stack.redoTextChanged.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args) -> None:
        if not shiboken6.isValid(self.stack) or not shiboken6.isValid(self):
            return  # the window is closing: the stack goes first
        verb = "Undo" if self.undo else "Redo"
        can = self.stack.canUndo() if self.undo else self.stack.canRedo()
        step = self.stack.undoText() if self.undo else self.stack.redoText()
        self.setEnabled(can)
        self.setToolTip(f"{verb} {step} ({self.keys})" if can and step else f"Nothing to {verb.lower()}")


class SearchBox(QLineEdit):
    """The toolbar's search field: Enter runs the search, Esc clears it."""

    cleared = Signal()

    def event(self, event) -> bool:
        # Esc and Enter are window shortcuts (grid, loupe): here they clear and run the search.
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in (
                Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.clear()
            self.cleared.emit()
            return
        super().keyPressEvent(event)


class MenusAndToolbar:
    """Mixed into ``MainWindow``; see the module docstring."""

    def _action(self, text: str, slot, shortcuts=(), tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.pick_action = a("Pick", lambda: self.set_flag(FLAG_PICK), ["P"], "Flag as pick (P)")
        self.reject_action = a("Reject", lambda: self.set_flag(FLAG_REJECT), ["X"], "Flag as reject (X)")
        self.unflag_action = a("Unflag", lambda: self.set_flag(FLAG_NONE), ["U"], "Remove the flag (U)")
        self.rating_actions = [a(f"{n} star{'s' if n != 1 else ''}" if n else "No rating",
                                 lambda n=n: self.set_rating(n), [str(n)]) for n in range(6)]
        self.label_actions = [a(name.capitalize(), lambda name=name: self.toggle_label(name), [key])
                              for key, name in LABEL_KEYS.items()]
        self.loupe_action = a("Loupe", self.toggle_loupe, ["Space", "Return", "Enter"],
                              "View the photo full size (Space)")
        self.compare_action = a("Compare", self.show_compare, ["C"], "Compare the selected photos (C)")
        self.grid_action = a("Grid", self.show_grid, ["Escape"], "Back to the grid (Esc)")
        self.zoom_action = a("Zoom", self.toggle_zoom, ["Z"], "Zoom to 100 % and back (Z)")
        self.next_face_action = a("Next face", lambda: self.jump_to_face(1), ["F"],
                                  "Zoom to the next face at 100 % (F)")
        self.prev_face_action = a("Previous face", lambda: self.jump_to_face(-1), ["Shift+F"],
                                  "Zoom to the previous face at 100 % (Shift+F)")
        self.next_action = a("Next photo", lambda: self.move_current(1), ["Right"])
        self.prev_action = a("Previous photo", lambda: self.move_current(-1), ["Left"])
        self.help_action = a("Keyboard shortcuts", self.toggle_help, ["?", "Shift+?", "F1"])
        self.undo_action = self.culling.stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcuts([QKeySequence.StandardKey.Undo])
        self.redo_action = self.culling.stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.undo_action)
        self.addAction(self.redo_action)
        self.add_folder_action = a("Add folder…", self.choose_folder, [], "Add a folder of photos")
        self.score_action = a("Score now", self.score_now, [], "Score photos that have no scores yet")
        self.export_action = a("Export…", self.show_export_dialog, ["Ctrl+E"], "Export the best picks")
        self.settings_action = a("Settings…", self.show_settings, ["Ctrl+,"])
        self.problems_action = a("Problems…", self.show_problems, [], "Errors reported so far")
        self.quit_action = a("Quit", self.close, ["Ctrl+Q"], "Close the window (Ctrl+Q)")
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.collapse_action = a("Collapse bursts", lambda: self.set_collapse_bursts(self.collapse_action.isChecked()),
                                 ["G"], "Show each burst as its best photo (G)")
        self.collapse_action.setCheckable(True)
        self.collapse_action.setIconText("Bursts")  # the toolbar's short label
        self.add_folder_action.setIconText("+ Folder")
        self.help_action.setIconText("?")
        self.expand_action = a("Expand or collapse burst", self.toggle_group, ["Shift+G"],
                               "Show every photo of the current burst, or only its best (Shift+G)")
        self.pick_best_action = a("Pick best of each burst, reject the rest", self.pick_best_of_groups, [],
                                  "For every burst in view: pick its best photo, reject the others")
        self.find_action = a("Search…", self.focus_search, ["Ctrl+F"], "Search photos by a description (Ctrl+F)")
        self.refit_taste_action = a("Refit my taste", lambda: self.refit_taste(force=True), [],
                                    "Learn “my taste” again from your picks and rejects")
        self.xmp_action = a("Write XMP sidecars", self.write_xmp, [],
                            "Write flags, ratings and scores to .xmp sidecar files: of the selected "
                            "photos when several are selected, else of every photo")
        self.read_xmp_action = a("Read XMP sidecars", self.read_xmp, [],
                                 "Import flags, ratings and labels that other apps wrote into sidecars")
        self.report_action = a("Export report…", self.choose_report, [],
                               "Save a CSV or JSON report of the photos the filters show")
        # Left/Right only navigate in loupe and compare; the grid's own keys work in the grid.
        self.next_action.setEnabled(False)
        self.prev_action.setEnabled(False)
        self.zoom_action.setEnabled(False)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        for action in (self.add_folder_action, None, self.export_action, self.report_action, self.xmp_action,
                       self.read_xmp_action, None, self.settings_action, self.problems_action, None,
                       self.quit_action):
            file.addSeparator() if action is None else file.addAction(action)
        edit = bar.addMenu("&Edit")
        for action in (self.undo_action, self.redo_action, None, self.find_action):
            edit.addSeparator() if action is None else edit.addAction(action)
        view = bar.addMenu("&View")
        for action in (self.collapse_action, self.expand_action, None, self.loupe_action, self.compare_action,
                       self.grid_action, None, self.help_action, None):
            view.addSeparator() if action is None else view.addAction(action)
        panels = view.addMenu("Panels")  # a closed dock stays closed across restarts: reopen it here
        for dock in (self.sidebar_dock, self.info_dock, self.histogram_dock):
            panels.addAction(dock.toggleViewAction())
        photo = bar.addMenu("&Photo")
        for action in (self.pick_action, self.reject_action, self.unflag_action, None, self.pick_best_action):
            photo.addSeparator() if action is None else photo.addAction(action)
        scores = bar.addMenu("&Scores")
        for action in (self.score_action, self.refit_taste_action):
            scores.addAction(action)

    def _build_toolbar(self) -> None:
        """Two toolbars in one row: the culling controls, then the search field, thumbnail
        size and help. Fixed-width controls, so the row fits a 1280 px window: Undo/Redo are
        icons (the step is in their tooltip and the Edit menu), the combos do not grow with
        their items, and only the search field takes keyboard focus. In a narrower window the
        search toolbar moves to a second row (:meth:`fit_toolbars`) instead of disappearing
        into the toolbar's overflow menu, where Ctrl+F could not reach it."""
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.addAction(self.add_folder_action)
        tb.addSeparator()
        tb.addWidget(QLabel(" Sort "))
        self.sort_combo = QComboBox()
        self.sort_combo.setMinimumContentsLength(12)
        self.sort_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sort_combo.setToolTip("Sort photos by an attribute, a check, rating, flag, label, capture time "
                                   "or file name")
        tb.addWidget(self.sort_combo)
        self.direction_button = QToolButton()
        self.direction_button.setToolTip("Reverse the order")
        fm = self.direction_button.fontMetrics()
        self.direction_button.setFixedWidth(max(fm.horizontalAdvance(t) for t in (
            "Most similar first", "Rejects first", "Oldest first", "Fewest stars")) + 16)
        tb.addWidget(self.direction_button)
        tb.addSeparator()
        tb.addAction(self.collapse_action)
        self.best_combo = QComboBox()
        self.best_combo.setToolTip("What decides the best photo of a burst")
        self.best_combo.setMinimumContentsLength(9)
        self.best_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        tb.addWidget(self.best_combo)
        tb.addSeparator()
        tb.addAction(self.pick_action)
        tb.addAction(self.reject_action)
        tb.addAction(self.unflag_action)
        tb.addSeparator()
        tb.addAction(self.loupe_action)
        tb.addAction(self.compare_action)
        self.undo_button = self._history_button(tb, self.undo_action, "edit-undo", "↶")
        self.redo_button = self._history_button(tb, self.redo_action, "edit-redo", "↷")
        self.main_toolbar = tb
        tb = self.search_toolbar = self.addToolBar("Search")
        tb.setObjectName("searchToolbar")
        tb.setMovable(False)
        spacer = QWidget()  # the row's spare width: the search field sits on the right
        spacer.setSizePolicy(spacer.sizePolicy().Policy.Expanding, spacer.sizePolicy().Policy.Preferred)
        tb.addWidget(spacer)
        self.search_box = SearchBox()
        self.search_box.setPlaceholderText("Search, e.g. “dog on a beach”")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setFixedWidth(180)
        self.search_box.setToolTip("Rank the photos in view by how well they match a description "
                                   "(Enter runs, Esc clears)")
        tb.addWidget(self.search_box)
        tb.addSeparator()
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(THUMB_MIN, THUMB_MAX)
        self.size_slider.setFixedWidth(100)
        self.size_slider.setToolTip("Thumbnail size")
        self.size_slider.setAccessibleName("Thumbnail size")
        tb.addWidget(self.size_slider)
        tb.addAction(self.help_action)
        # Arrow keys move between photos: only the search field keeps the keyboard.
        for w in (self.sort_combo, self.best_combo, self.direction_button, self.size_slider):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    def fit_toolbars(self) -> None:
        """One toolbar row when both toolbars fit the window's width, two when they do not."""
        main, search = getattr(self, "main_toolbar", None), getattr(self, "search_toolbar", None)
        if main is None or search is None:
            return
        needed = main.sizeHint().width() + search.sizeHint().width()
        wrapped = self.toolBarBreak(search)
        if needed > self.width() and not wrapped:
            self.insertToolBarBreak(search)
        elif needed <= self.width() and wrapped:
            self.removeToolBarBreak(search)

    def _history_button(self, tb, action: QAction, theme: str, fallback: str) -> QToolButton:
        """An Undo or Redo icon for the toolbar: its tooltip names the step, the Edit menu's
        action keeps the full text ("Undo Pick 3 photos")."""
        button = HistoryButton(self.culling.stack, action is self.undo_action,
                               action.shortcut().toString(QKeySequence.SequenceFormat.NativeText), theme, fallback)
        button.clicked.connect(action.trigger)
        tb.addWidget(button)
        return button
