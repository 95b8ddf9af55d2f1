"""Panels and the window's layout: which docks show on each page (the ones the person closed
stay closed), and the size, position and dock layout saved in the preferences.

A part of ``MainWindow`` (photosense.gui.main_window): the methods use the widgets and
state the window builds."""

from __future__ import annotations

import base64
import logging

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QDockWidget

from photosense.gui.window_common import PAGE_GRID

log = logging.getLogger("photosense.gui")


class PanelsAndLayout:
    """Mixed into ``MainWindow``; see the module docstring."""

    def _docks(self) -> tuple[QDockWidget, ...]:
        return (self.sidebar_dock, self.info_dock, self.histogram_dock)

    def _remember_docks(self) -> None:
        """Note which panels the person has open, when what shows is theirs to choose (a
        library's grid), before photosense changes the page."""
        if self.folders and self.pages.currentIndex() == PAGE_GRID:
            self._docks_wanted = {d: not d.isHidden() for d in self._docks()}

    def _place_docks(self) -> None:
        """The panels that belong to what is on screen, each only if the person has it open:
        all three on a library's grid, the info panel in the loupe and compare, the library
        panel alone on the welcome page. A closed panel stays closed until reopened."""
        grid = self.pages.currentIndex() == PAGE_GRID
        library = bool(self.folders)
        wanted = self._docks_wanted
        self.sidebar_dock.setVisible(wanted[self.sidebar_dock] and grid)
        self.info_dock.setVisible(wanted[self.info_dock] and library)
        self.histogram_dock.setVisible(wanted[self.histogram_dock] and grid and library)

    def restore_window_layout(self) -> None:
        """Size, position, docks and toolbar as they were when the window last closed."""
        for saved, restore in ((self.prefs.window_geometry, self.restoreGeometry),
                               (self.prefs.window_state, self.restoreState)):
            if not saved:
                continue
            try:
                data = base64.b64decode(saved, validate=True)
            except (ValueError, TypeError):
                data = b""
            if not data or not restore(QByteArray(data)):
                log.warning("ignoring an unreadable saved window layout")

    def remember_window_layout(self) -> None:
        """Put the window's size, position and dock layout into the preferences."""
        if self.pages.currentIndex() != PAGE_GRID:
            self._set_page(PAGE_GRID)  # loupe and compare hide docks; keep the grid's layout
        self._remember_docks()
        for dock in self._docks():  # as the person left them, not as the welcome page hides them
            dock.setVisible(self._docks_wanted[dock])
        self.prefs.window_geometry = base64.b64encode(bytes(self.saveGeometry())).decode("ascii")
        self.prefs.window_state = base64.b64encode(bytes(self.saveState())).decode("ascii")
