"""The main window: sidebar, thumbnail grid, loupe/compare, info and histogram panels,
background scoring with progress, keyboard culling with undo; bursts collapsed to their best
photo, text search, the "my taste" model refitted as flags change, XMP sidecars, reports.

``MainWindow`` builds the widgets, wires them (``_connect``) and composes its parts, each a
mixin in its own module. Every toolbar button, menu item and key is a ``QAction`` made in
``window_actions`` that calls one method; the toolbar's combos, slider and search field and
the sidebar's and histogram's requests are wired in ``_connect``. Where each is handled:

    Action (key)                              Method                       Module
    Pick (P), Reject (X), Unflag (U)          set_flag                     window_culling
    Stars (0-5), colour labels (6-9)          set_rating, toggle_label     window_culling
    Next / previous photo (→ ←)               move_current                 window_culling
    Grid context menu, histogram thresholds   _context_menu, pick_above…   window_culling
    Undo (Ctrl+Z), Redo (Ctrl+Shift+Z)        culling.stack                undo
    Loupe (Space), Grid (Esc), Compare (C)    toggle_loupe, show_grid,     window_views
                                              show_compare
    Zoom (Z), next / previous face (F)        toggle_zoom, jump_to_face    window_views
    Keyboard shortcuts (? F1), size slider    toggle_help, set_thumb_size  window_views
    Sort combo, reverse-order button          _sort_chosen, reverse_order  window_query
    Sidebar filters                           apply_filters                window_query
    Search… (Ctrl+F), the search field        focus_search, run_search     window_query
    Collapse bursts (G), expand (Shift+G)     set_collapse_bursts,         window_bursts
                                              toggle_group
    Best-of combo, Pick best of each burst    set_best_by,                 window_bursts
                                              pick_best_of_groups
    + Folder, Score now, Refit my taste       choose_folder, score_now,    window_scoring
                                              refit_taste
    Problems…                                 show_problems                window_scoring
    Export… (Ctrl+E), Export report…          show_export_dialog,          window_dialogs
                                              choose_report
    Write / Read XMP sidecars, Settings…      write_xmp, read_xmp,         window_dialogs
                                              show_settings
    View ▸ Panels                             toggleViewAction (Qt)        window_layout
    Quit (Ctrl+Q)                             close, closeEvent            main_window

Panels shown per page and the saved window layout are in ``window_layout``; scoring, scans,
attributes, "my taste" and the status bar in ``window_scoring``; what the parts share
(shortcut list, page numbers) in ``window_common``.

Threads: the GUI thread only paints and reacts. Library reads and culling writes go through
one serial "library" thread (``SerialExecutor``), so they stay ordered; the CLIP engine runs
on one "model" thread (scoring, re-scoring new attributes, text search: the engine is loaded
once and reused); exports, reports, sidecars, finding bursts, fitting "my taste" and histogram
values on the background pool; thumbnails on their own pool; folder watching and scanning on the
``WatchService``'s threads.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QCloseEvent, QRegion
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from photosense.gui.delegate import PhotoDelegate
from photosense.gui.info_panel import InfoPanel
from photosense.gui.jobs import Job, JobRunner, LatestRequest, SerialExecutor
from photosense.gui.photo_model import PhotoIdRole, PhotoListModel
from photosense.gui.settings_dialog import SidecarSettings, UiPrefs
from photosense.gui.sidebar import Sidebar
from photosense.gui.status import JobsBar, ProblemsButton
from photosense.gui.thumbnails import ThumbnailLoader
from photosense.gui.undo import CullingController
from photosense.gui.welcome import WelcomeView
from photosense.gui.window_actions import MenusAndToolbar
from photosense.gui.window_bursts import BurstActions
from photosense.gui.window_common import (  # noqa: F401 - PAGE_* and SHORTCUTS are re-exported
    PAGE_COMPARE,
    PAGE_GRID,
    PAGE_LOUPE,
    SHORTCUTS,
    SHUTDOWN_SECONDS,
    ServiceBridge,
    _photos,
    taste_summary,
)
from photosense.gui.window_culling import CullingActions
from photosense.gui.window_dialogs import DialogActions
from photosense.gui.window_layout import PanelsAndLayout
from photosense.gui.window_query import SortFilterSearch
from photosense.gui.window_scoring import ScoringAndStatus
from photosense.gui.window_views import ViewActions
from photosense.library import (
    COLOR_LABELS,
    AttributeInfo,
    FolderInfo,
    Library,
    PhotoQuery,
)
from photosense.pipeline import load_engine_config
from photosense.problems import ProblemLog
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig

log = logging.getLogger("photosense.gui")


class WeightsBanner(QFrame):
    """A dismissible note shown while scoring is off because the weights are unavailable."""

    settingsRequested = Signal()
    retryRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("weightsBanner")
        self.setStyleSheet("#weightsBanner { background: #4a3b1c; border: 1px solid #7a6230; border-radius: 4px; }"
                           "#weightsBanner QLabel { color: #f2e3c0; }")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        settings = QPushButton("Settings…")
        retry = QPushButton("Retry")
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        settings.clicked.connect(self.settingsRequested)
        retry.clicked.connect(self.retryRequested)
        close.clicked.connect(self.hide)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.text, 1)
        lay.addWidget(settings)
        lay.addWidget(retry)
        lay.addWidget(close, alignment=Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_problem(self, message: str) -> None:
        """Two short lines in the window's words; the technical detail is in the tooltip (and
        in Problems)."""
        self.text.setText(
            "Scoring is off: the model's weights are not available.\n"
            "Choose a weights file in Settings, or Retry when this computer is online. "
            "Flags, ratings, checks and export work meanwhile.")
        self.text.setToolTip(message)
        self.show()


class GridView(QListView):
    """The thumbnail grid (icon mode, uniform cells, batched layout)."""

    groupBadgeActivated = Signal(int)  # photo id whose "×N" burst badge was double-clicked

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(400)
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setWrapping(True)
        self.setSpacing(0)
        self.setMouseTracking(False)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.verticalScrollBar().setSingleStep(40)
        self._cell = QSize(200, 240)

    def set_cell_size(self, size: QSize) -> None:
        """Cells of at least ``size``; their width grows so the columns fill the view."""
        self._cell = size
        self._fit_grid()

    def _fit_grid(self) -> None:
        width = max(1, self.viewport().width() - 1)
        columns = max(1, width // self._cell.width())
        grid = QSize(max(self._cell.width(), width // columns), self._cell.height())
        if grid != self.gridSize():
            self.setGridSize(grid)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_grid()

    def mouseDoubleClickEvent(self, event) -> None:
        pos = event.position().toPoint()
        index = self.indexAt(pos)
        delegate = self.itemDelegate()
        if index.isValid() and hasattr(delegate, "group_badge_rect"):
            badge = delegate.group_badge_rect(self.visualRect(index), index, self.font())
            if badge is not None and badge.contains(event.position()):
                self.groupBadgeActivated.emit(index.data(PhotoIdRole))
                return
        super().mouseDoubleClickEvent(event)

    def visualRegionForSelection(self, selection: QItemSelection) -> QRegion:
        # Qt computes one rectangle per selected row; repainting the viewport is cheaper.
        return QRegion(self.viewport().rect())

    def selectAll(self) -> None:
        """One selection range (Qt's own selectAll builds one range per row: seconds for
        100,000 photos). Rows not fetched yet are exposed first."""
        model = self.model()
        if model is None:
            return
        while model.canFetchMore(QModelIndex()):
            model.fetchMore(QModelIndex())
        n = model.rowCount()
        if n:
            self.selectionModel().select(QItemSelection(model.index(0, 0), model.index(n - 1, 0)),
                                         QItemSelectionModel.SelectionFlag.Select)


class MainWindow(MenusAndToolbar, PanelsAndLayout, ViewActions, CullingActions, SortFilterSearch, BurstActions,
                 ScoringAndStatus, DialogActions, QMainWindow):
    """The window: builds the widgets and composes its parts, each in its own module —
    actions, menus and toolbar (``window_actions``), panels and the saved layout
    (``window_layout``), selection, loupe, compare and help (``window_views``), culling
    (``window_culling``), sort/filter/search and the histogram (``window_query``), bursts
    (``window_bursts``), scoring, scans, attributes, taste and the status bar
    (``window_scoring``), dialogs and file outputs (``window_dialogs``). The module docstring
    lists which method, in which of them, handles each toolbar or menu action."""

    def __init__(self, library: Library, *, engine_config: EngineConfig | None = None,
                 prefs: UiPrefs | None = None, start_services: bool = True,
                 watch_debounce: float = 2.0, taste_debounce: float = 3.0, resort_debounce: float = 2.0):
        super().__init__()
        self.library = library
        self.prefs = prefs or UiPrefs.load()
        # One small settings read while the window is built (before it shows).
        self.engine_config = engine_config or load_engine_config(library)
        self.engine = ClipIQAEngine(self.engine_config)
        self.attributes: list[AttributeInfo] = []
        self.folders: list[FolderInfo] | None = None
        self.problem_log = ProblemLog()
        self.last_message: QMessageBox | None = None
        self.service = None
        self._score_job: Job | None = None
        self._score_again = False
        self._last_row_refresh = 0.0
        self._restore_selection: tuple[list[int], int | None] | None = None
        self._restore_scroll: int | None = None  # the current photo's height on screen to keep
        self._histogram_request = LatestRequest()
        self._histogram_data: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))
        self._compare_ids: list[int] = []
        self._loupe_id: int | None = None  # the photo the loupe shows
        self.watch_debounce = watch_debounce
        self.groups: list | None = None  # bursts of the library (None: not found yet)
        self._groups_request = LatestRequest()
        self._search_request = LatestRequest()
        self._taste_job: Job | None = None
        self._taste_again = False
        self.sidecar_settings = SidecarSettings()
        self._taste_timer = QTimer(self)
        self._taste_timer.setSingleShot(True)
        self._taste_timer.setInterval(int(taste_debounce * 1000))
        self._taste_timer.timeout.connect(lambda: self.refit_taste(force=False))
        self._resort_timer = QTimer(self)  # re-sort as scores arrive, at most this often
        self._resort_timer.setSingleShot(True)
        self._resort_timer.setInterval(int(resort_debounce * 1000))
        self._resort_timer.timeout.connect(self._resort_while_scoring)
        self._taste_status_timer = QTimer(self)  # the "my taste" line after a flag
        self._taste_status_timer.setSingleShot(True)
        self._taste_status_timer.setInterval(300)
        self._taste_status_timer.timeout.connect(self._read_taste_status)
        self._scan_refresh_timer = QTimer(self)  # photos appear while a folder is read
        self._scan_refresh_timer.setSingleShot(True)
        self._scan_refresh_timer.setInterval(1000)
        self._scan_refresh_timer.timeout.connect(self._refresh_during_scan)

        self.setWindowTitle(f"photosense — {library.path}")
        self.resize(1400, 880)  # until a saved geometry is restored
        self.db = SerialExecutor("library", self)
        self.db.error.connect(self.report_error)
        self.jobs = JobRunner(self)
        self.thumbnails = ThumbnailLoader(self, side=self.prefs.thumb_size)
        self.thumbnails.crashed.connect(lambda message: self.report_error(message, quiet=True, kind="thumbnail"))
        self.model = PhotoListModel(library, self.db, self.thumbnails, self)
        self.culling = CullingController(library, self.db, self.model, self)
        self.culling.failed.connect(self.report_error)
        self.culling.changed.connect(self._on_culling_changed)
        from photosense.curation.sidecar_job import SidecarWriter

        self.bridge = ServiceBridge(self)
        self.bridge.sidecars.connect(self._on_sidecars_written)
        # XMP auto-write: flags commit at once, sidecars follow in the background, coalesced.
        self.sidecar_writer = SidecarWriter(library, self.bridge.sidecars.emit)

        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()
        self.restore_window_layout()
        self.fit_toolbars()  # a saved layout may carry the break of a narrower window
        # The panels the person chose (View ▸ Panels, a dock's close button), kept while
        # photosense hides some for the loupe, compare or the welcome page.
        self._docks_wanted = {d: not d.isHidden() for d in self._docks()}

        self.model.query = PhotoQuery(sort=self.prefs.sort, descending=self.prefs.descending)
        self.set_thumb_size(self.prefs.thumb_size)
        if self.prefs.collapse_bursts:
            self.set_collapse_bursts(True, requery=False)
        self.reload_library_info(requery=True)
        if start_services:
            self.start_services()

    # ------------------------------------------------------------------ building the window

    def _build_central(self) -> None:
        self.view = GridView()
        self.view.setModel(self.model)
        self.delegate = PhotoDelegate(self.view, self.prefs.thumb_size)
        self.view.setItemDelegate(self.delegate)
        self.banner = WeightsBanner()
        self.empty_label = QLabel("No photos match the filters.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: #8a8a8a; font-size: 14pt;")
        self.empty_label.hide()
        self.search_bar = QFrame()
        self.search_bar.setObjectName("searchBar")
        self.search_bar.setStyleSheet("#searchBar { background: #243447; border: 1px solid #3d5a7a; "
                                      "border-radius: 4px; }")
        self.search_label = QLabel()
        self.search_label.setTextFormat(Qt.TextFormat.PlainText)
        clear = QToolButton()
        clear.setText("✕ Clear search")
        clear.setAutoRaise(True)
        clear.setToolTip("Back to the sort order (Esc in the search field)")
        clear.clicked.connect(lambda: self.clear_search())
        bar = QHBoxLayout(self.search_bar)
        bar.setContentsMargins(10, 3, 4, 3)
        bar.addWidget(self.search_label, 1)
        bar.addWidget(clear)
        self.search_bar.hide()

        grid_page = QWidget()
        lay = QVBoxLayout(grid_page)
        lay.setContentsMargins(4, 4, 4, 0)
        lay.addWidget(self.search_bar)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.empty_label, 1)

        from photosense.gui.compare import CompareView
        from photosense.gui.loupe import LoupeView

        self.loupe = LoupeView()
        self.compare = CompareView()
        self.pages = QStackedWidget()
        self.pages.addWidget(grid_page)
        self.pages.addWidget(self.loupe)
        self.pages.addWidget(self.compare)

        self.welcome = WelcomeView()
        self.central = QStackedWidget()
        self.central.addWidget(self.welcome)
        self.central.addWidget(self.pages)
        self.central.setCurrentWidget(self.pages)
        # The weights notice sits above the pages and the welcome screen: never hidden.
        outer = QWidget()
        outer_lay = QVBoxLayout(outer)
        outer_lay.setContentsMargins(4, 4, 4, 0)
        outer_lay.setSpacing(4)
        outer_lay.addWidget(self.banner)
        outer_lay.addWidget(self.central, 1)
        self.setCentralWidget(outer)

    def _build_docks(self) -> None:
        from photosense.gui.histogram import HistogramPanel

        self.sidebar = Sidebar()
        self.sidebar_dock = self._dock("Library", self.sidebar, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.info = InfoPanel()
        self.info_dock = self._dock("Info", self.info, Qt.DockWidgetArea.RightDockWidgetArea)
        self.histogram = HistogramPanel()
        self.histogram.setMinimumHeight(190)
        self.histogram_dock = self._dock("Histogram", self.histogram, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.sidebar_dock, self.info_dock], [260, 290], Qt.Orientation.Horizontal)
        self.resizeDocks([self.info_dock, self.histogram_dock], [520, 230], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.lower() + "Dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.count_label = QLabel()
        self.job_bar = JobsBar(self.jobs)  # every running job, with its own controls
        self.problems_button = ProblemsButton(self.problem_log)
        sb.addPermanentWidget(self.job_bar)
        sb.addPermanentWidget(self.problems_button)
        # Shown once, for as long as the window is open: flags and ratings cannot be saved.
        self.read_only_label = QLabel("Read-only library")
        self.read_only_label.setStyleSheet("color: #e8a33d; padding: 0 6px;")
        self.read_only_label.setToolTip(
            f"{self.library.path} can only be read (its file or folder is not writable): photos can "
            "be viewed, sorted and searched, but flags, ratings, labels and new scores cannot be "
            "saved. Copy it to a writable folder to cull.")
        sb.addPermanentWidget(self.read_only_label)
        self.read_only_label.setVisible(bool(getattr(self.library, "read_only", False)))
        sb.addPermanentWidget(self.count_label)

    def _connect(self) -> None:
        self.model.queryFinished.connect(self._on_query_finished)
        self.model.queryFailed.connect(self.report_error)
        self.model.dataChanged.connect(self._on_data_changed)
        self.view.selectionModel().currentChanged.connect(self._on_current_changed)
        self.view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.doubleClicked.connect(lambda _index: self.show_loupe())
        self.view.verticalScrollBar().valueChanged.connect(lambda _v: self.thumbnails.drop_pending())
        self.sidebar.filtersChanged.connect(self.apply_filters)
        # After a choice in the sidebar the grid has the keys again (the range spin boxes
        # keep them: they are typed in).
        for combo in (self.sidebar.flag_combo, self.sidebar.rating_combo, self.sidebar.label_combo,
                      self.sidebar.faces_combo):
            combo.activated.connect(lambda _i: self.return_focus())
        for button in (self.sidebar.errors_check, self.sidebar.range_add, self.sidebar.reset_button):
            button.clicked.connect(lambda _c=False: self.return_focus())
        self.sidebar.addFolderRequested.connect(self.choose_folder)
        self.sidebar.removeFolderRequested.connect(self.remove_folder)
        self.sidebar.rescanRequested.connect(self.rescan)
        self.sidebar.addAttributeRequested.connect(self.show_add_attribute)
        self.sidebar.editAttributeRequested.connect(self.show_edit_attribute)
        self.sidebar.removeAttributeRequested.connect(self.remove_attribute)
        self.sidebar.sortRequested.connect(self.set_sort)
        self.sidebar.refitTasteRequested.connect(lambda: self.refit_taste(force=True))
        self.view.groupBadgeActivated.connect(self.toggle_group)
        self.best_combo.activated.connect(lambda _i: (self.set_best_by(self.best_combo.currentData()),
                                                      self.return_focus()))
        self.search_box.returnPressed.connect(lambda: self.run_search(self.search_box.text()))
        self.search_box.cleared.connect(self._search_box_cleared)
        self.welcome.addFolderRequested.connect(self.choose_folder)
        self.sort_combo.activated.connect(lambda _i: self._sort_chosen())
        self.direction_button.clicked.connect(self.reverse_order)
        self.size_slider.valueChanged.connect(self.set_thumb_size)
        self.histogram.pickAbove.connect(self.pick_above)
        self.histogram.rejectBelow.connect(self.reject_below)
        self.histogram.pickBelow.connect(self.pick_below)
        self.histogram.rejectAbove.connect(self.reject_above)
        self.banner.settingsRequested.connect(self.show_settings)
        self.banner.retryRequested.connect(self._retry_scoring)
        self.compare.currentChanged.connect(lambda _i: self._update_info())

    # ------------------------------------------------------------------ library info

    def reload_library_info(self, requery: bool = False) -> None:
        """Re-read folders and attributes (library thread), then update sidebar and sorts."""
        def read():
            from photosense.scoring.taste import taste_status

            return (self.library.folders(), self.library.attributes(), SidecarSettings.read(self.library),
                    taste_status(self.library))

        def done(result) -> None:
            folders, attributes, sidecars, taste = result
            self.sidecar_settings = sidecars
            self._show_taste_status(taste)
            self._remember_docks()
            self.folders = folders
            self.attributes = attributes
            self.sidebar.set_folders(folders)
            self.refresh_flag_counts()
            self.sidebar.set_attributes(attributes)
            self.info.order = [a.name for a in attributes]
            self._fill_sort_combo()
            self.central.setCurrentWidget(self.pages if folders else self.welcome)
            self._place_docks()
            if requery:
                self.requery()

        self.db.submit(read, done)

    # ------------------------------------------------------------------ shutdown

    def closeEvent(self, event: QCloseEvent) -> None:
        self.remember_window_layout()
        try:
            self.prefs.save()
        except OSError as exc:
            log.warning("cannot save settings: %s", exc)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> bool:
        """Stop every background thread (idempotent) within SHUTDOWN_SECONDS; True when they
        all ended (False: a job that cannot be interrupted, such as a model load, is still
        running and is abandoned)."""
        if getattr(self, "_shut_down", False):
            return self._stopped
        self._shut_down = True
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        if self.service is not None:
            self.service.stop(timeout=SHUTDOWN_SECONDS / 2)
        left = lambda: max(0.05, deadline - time.monotonic())  # noqa: E731
        self.sidecar_writer.close(left())  # pending sidecars written first, within the budget
        stopped = self.jobs.shutdown(left())
        stopped = self.thumbnails.shutdown(left()) is not False and stopped
        stopped = self.db.shutdown(left()) is not False and stopped
        self._stopped = stopped
        return stopped

    def sizeHint(self) -> QSize:
        return QSize(1400, 880)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_toolbars()  # a narrow window puts the search field on a second row


__all__ = ["MainWindow", "SHORTCUTS", "COLOR_LABELS", "PAGE_GRID", "PAGE_LOUPE", "PAGE_COMPARE", "taste_summary"]
