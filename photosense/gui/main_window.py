"""The main window: sidebar, thumbnail grid, loupe/compare, info and histogram panels,
background scoring with progress, keyboard culling with undo; bursts collapsed to their best
photo, text search, the "my taste" model refitted as flags change, XMP sidecars, reports.

Threads: the GUI thread only paints and reacts. Library reads and culling writes go through
one serial "library" thread (``SerialExecutor``), so they stay ordered; the CLIP engine runs
on one "model" thread (scoring, re-scoring new attributes, text search: the engine is loaded
once and reused); exports, reports, sidecars, finding bursts, fitting "my taste" and histogram
values on the background pool; thumbnails on their own pool; folder watching and scanning on the
``WatchService``'s threads.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import replace

import numpy as np
from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QRegion
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from photosense.errors import WeightsUnavailable
from photosense.library import (
    CHECK_NAMES,
    COLOR_LABELS,
    FLAG_NONE,
    FLAG_PICK,
    FLAG_REJECT,
    AttributeInfo,
    FolderInfo,
    Library,
    PhotoQuery,
    PhotoRow,
)
from photosense.library.queries import ASCENDING_BY_DEFAULT, BASIC_SORTS
from photosense.pipeline import Progress, ScoringJob, format_duration, load_engine_config, save_engine_config
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
from photosense.gui.delegate import PhotoDelegate, cell_size
from photosense.gui.info_panel import InfoPanel
from photosense.gui.jobs import Job, JobContext, JobRunner, SerialExecutor
from photosense.gui.status import JobsBar, ProblemsButton
from photosense.problems import ProblemLog
from photosense.gui.photo_model import PhotoIdRole, PhotoListModel, RowRole, ThumbnailRole, value_of
from photosense.gui.settings_dialog import THUMB_MAX, THUMB_MIN, SettingsDialog, SidecarSettings, UiPrefs
from photosense.gui.sidebar import Sidebar
from photosense.gui.thumbnails import ThumbnailLoader
from photosense.gui.undo import CullingController
from photosense.gui.welcome import WelcomeView

log = logging.getLogger("photosense.gui")

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
    scanStarted = Signal(int)  # changed paths (files, folders) from the watcher; 0: every folder
    scanProgress = Signal(int, int)  # files read, files to read
    scanEnded = Signal()  # also after a failed scan
    error = Signal(str)  # a watcher job failed (a locked library, a vanished folder)
    sidecars = Signal(object)  # a finished XMP auto-write job (photosense.jobs.Job)
    resolved = Signal(str)  # a kind of problem is gone (a later scan worked)


def reporting_scanner(library: Library, bridge: ServiceBridge):
    """A ``Scanner`` for the ``WatchService`` that tells ``bridge`` what it is reading (its
    public methods only: a full scan reports done/total, a watcher batch its path count)."""
    from photosense.ingest.scan import Scanner

    class ReportingScanner(Scanner):
        def scan_all(self, progress=None, cancel=None):
            bridge.scanStarted.emit(0)

            def report(done: int, total: int) -> None:
                bridge.scanProgress.emit(done, total)
                if progress is not None:
                    progress(done, total)

            try:
                return super().scan_all(report, cancel)
            finally:
                bridge.scanEnded.emit()

        def scan_paths(self, paths):
            paths = list(paths)
            bridge.scanStarted.emit(len(paths))
            try:
                return super().scan_paths(paths)
            finally:
                bridge.scanEnded.emit()

    return ReportingScanner(library)


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
        self.text.setText(
            "Scoring is off: the model weights are not available.\n"
            f"({message})\n"
            "photosense downloads the weights on first use when this computer is online, or you "
            "can choose a local weights file in Settings. Sharpness, exposure and noise checks, "
            "flags, ratings and export already work.")
        self.show()


def taste_summary(status) -> str:
    """One or two lines on the "my taste" model for the sidebar (a ``TasteStatus``)."""
    if status.model is None:
        return "Score the photos, then pick and reject: “my taste” learns from your flags."
    if status.fitted:
        accuracy = "" if status.cv_accuracy is None else f": {status.cv_accuracy:.0%} accurate (cross-validated)"
        text = f"Learned from {status.fitted_picks} picks and {status.fitted_rejects} rejects{accuracy}"
        return text if status.up_to_date else text + "; flags changed since"
    need = [(max(0, status.min_per_class - n), what) for n, what in
            ((status.picks, "pick"), (status.rejects, "reject"))]
    parts = [f"{n} more {what}{'s' if n != 1 else ''}" for n, what in need if n]
    if parts:
        return (f"Needs {' and '.join(parts)} to learn your taste "
                f"({status.picks} picks, {status.rejects} rejects so far)")
    return "Enough picks and rejects: learning shortly…"


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


class MainWindow(QMainWindow):
    def __init__(self, library: Library, *, engine_config: EngineConfig | None = None,
                 prefs: UiPrefs | None = None, start_services: bool = True,
                 watch_debounce: float = 2.0, taste_debounce: float = 3.0):
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
        self._histogram_job: Job | None = None
        self._histogram_data: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))
        self._compare_ids: list[int] = []
        self._loupe_id: int | None = None  # the photo the loupe shows
        self.watch_debounce = watch_debounce
        self.groups: list | None = None  # bursts of the library (None: not found yet)
        self._groups_job: Job | None = None
        self._search_job: Job | None = None
        self._taste_job: Job | None = None
        self._taste_again = False
        self.sidecar_settings = SidecarSettings()
        self._taste_timer = QTimer(self)
        self._taste_timer.setSingleShot(True)
        self._taste_timer.setInterval(int(taste_debounce * 1000))
        self._taste_timer.timeout.connect(lambda: self.refit_taste(force=False))

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
        lay.addWidget(self.banner)
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
        self.setCentralWidget(self.central)

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
        self.score_action = a("Score now", self.start_scoring, [], "Score photos that have no scores yet")
        self.export_action = a("Export…", self.show_export_dialog, ["Ctrl+E"], "Export the best picks")
        self.settings_action = a("Settings…", self.show_settings, ["Ctrl+,"])
        self.problems_action = a("Problems…", self.show_problems, [], "Errors reported so far")
        self.collapse_action = a("Collapse bursts", lambda: self.set_collapse_bursts(self.collapse_action.isChecked()),
                                 ["G"], "Show each burst as its best photo (G)")
        self.collapse_action.setCheckable(True)
        self.collapse_action.setIconText("Bursts")  # the toolbar's short label
        self.help_action.setIconText("?")
        self.expand_action = a("Expand or collapse burst", self.toggle_group, ["Shift+G"],
                               "Show every photo of the current burst, or only its best (Shift+G)")
        self.pick_best_action = a("Pick best of each burst, reject the rest", self.pick_best_of_groups, [],
                                  "For every burst in view: pick its best photo, reject the others")
        self.find_action = a("Search…", self.focus_search, ["Ctrl+F"], "Search photos by a description (Ctrl+F)")
        self.refit_taste_action = a("Refit my taste", lambda: self.refit_taste(force=True), [],
                                    "Learn “my taste” again from your picks and rejects")
        self.xmp_action = a("Write XMP sidecars", self.write_xmp, [],
                            "Write flags, ratings and scores of the selected photos (all when none "
                            "is selected) to .xmp sidecar files")
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
                       None, self.settings_action, self.problems_action):
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
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.addAction(self.add_folder_action)
        tb.addSeparator()
        tb.addWidget(QLabel(" Sort "))
        self.sort_combo = QComboBox()
        self.sort_combo.setMinimumContentsLength(14)
        self.sort_combo.setToolTip("Sort photos by an attribute, a check, capture time or file name")
        tb.addWidget(self.sort_combo)
        self.direction_button = QToolButton()
        self.direction_button.setToolTip("Reverse the order")
        tb.addWidget(self.direction_button)
        tb.addSeparator()
        tb.addAction(self.collapse_action)
        self.best_combo = QComboBox()
        self.best_combo.setToolTip("What decides the best photo of a burst")
        self.best_combo.setMinimumContentsLength(10)
        tb.addWidget(self.best_combo)
        tb.addSeparator()
        tb.addAction(self.pick_action)
        tb.addAction(self.reject_action)
        tb.addAction(self.unflag_action)
        tb.addSeparator()
        tb.addAction(self.loupe_action)
        tb.addAction(self.compare_action)
        tb.addAction(self.undo_action)
        tb.addAction(self.redo_action)
        tb.addSeparator()
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().Policy.Expanding, spacer.sizePolicy().Policy.Preferred)
        tb.addWidget(spacer)
        self.search_box = SearchBox()
        self.search_box.setPlaceholderText("Search, e.g. “dog on a beach”")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setFixedWidth(230)
        self.search_box.setToolTip("Rank the photos in view by how well they match a description "
                                   "(Enter runs, Esc clears)")
        tb.addWidget(self.search_box)
        tb.addSeparator()
        tb.addWidget(QLabel("Size "))
        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(THUMB_MIN, THUMB_MAX)
        self.size_slider.setFixedWidth(140)
        self.size_slider.setToolTip("Thumbnail size")
        tb.addWidget(self.size_slider)
        tb.addAction(self.help_action)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.count_label = QLabel()
        self.job_bar = JobsBar(self.jobs)  # every running job, with its own controls
        self.problems_button = ProblemsButton(self.problem_log)
        # The watcher's scans have their own indicator: they run while scoring shows its progress.
        self.scan_label = QLabel()
        self.scan_bar = QProgressBar()
        self.scan_bar.setFixedWidth(120)
        self.scan_bar.setTextVisible(False)
        for w in (self.scan_label, self.scan_bar):
            sb.addPermanentWidget(w)
            w.hide()
        sb.addPermanentWidget(self.job_bar)
        sb.addPermanentWidget(self.problems_button)
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
        self.sidebar.addFolderRequested.connect(self.choose_folder)
        self.sidebar.removeFolderRequested.connect(self.remove_folder)
        self.sidebar.rescanRequested.connect(self.rescan)
        self.sidebar.addAttributeRequested.connect(self.show_add_attribute)
        self.sidebar.editAttributeRequested.connect(self.show_edit_attribute)
        self.sidebar.removeAttributeRequested.connect(self.remove_attribute)
        self.sidebar.sortRequested.connect(self.set_sort)
        self.sidebar.refitTasteRequested.connect(lambda: self.refit_taste(force=True))
        self.view.groupBadgeActivated.connect(self.toggle_group)
        self.best_combo.activated.connect(lambda _i: self.set_best_by(self.best_combo.currentData()))
        self.search_box.returnPressed.connect(lambda: self.run_search(self.search_box.text()))
        self.search_box.cleared.connect(self._search_box_cleared)
        self.welcome.addFolderRequested.connect(self.choose_folder)
        self.sort_combo.activated.connect(lambda _i: self.set_sort(self.sort_combo.currentData()))
        self.direction_button.clicked.connect(self.reverse_order)
        self.size_slider.valueChanged.connect(self.set_thumb_size)
        self.histogram.pickAbove.connect(self.pick_above)
        self.histogram.rejectBelow.connect(self.reject_below)
        self.banner.settingsRequested.connect(self.show_settings)
        self.banner.retryRequested.connect(self._retry_scoring)
        self.compare.currentChanged.connect(lambda _i: self._update_info())

    # ------------------------------------------------------------------ services

    def start_services(self) -> None:
        """Watch and scan the library's folders in the background, then score what is new."""
        from photosense.service import ServiceEvents, WatchService

        self.bridge.scanned.connect(self._on_scanned)
        self.bridge.scanStarted.connect(self._on_watch_scan_started)
        self.bridge.scanProgress.connect(self._on_watch_scan_progress)
        self.bridge.scanEnded.connect(self._on_watch_scan_ended)
        self.bridge.error.connect(lambda message: self.report_error(message, kind="scan"))
        self.bridge.resolved.connect(self.problem_log.resolve)
        events = ServiceEvents(scanned=self.bridge.scanned.emit, error=self.bridge.error.emit,
                               resolved=self.bridge.resolved.emit)
        self.service = WatchService(self.library, self.engine_config, events,
                                    debounce=self.watch_debounce, score=False)
        self.service.scanner = reporting_scanner(self.library, self.bridge)
        self.service.start()
        self.statusBar().showMessage("Looking for new and changed photos…", 5000)
        self.start_scoring()

    @Slot(int)
    def _on_watch_scan_started(self, paths: int) -> None:
        self.scan_label.setText("Scanning folders…" if paths == 0 else
                                f"Checking {paths} change{'s' if paths != 1 else ''} in watched folders…")
        self.scan_bar.setRange(0, 0)  # busy until the scanner says how many files
        self.scan_label.show()
        self.scan_bar.show()

    @Slot(int, int)
    def _on_watch_scan_progress(self, done: int, total: int) -> None:
        if not self.scan_label.isVisible():
            return  # a late signal of a finished scan
        self.scan_label.setText(f"Scanning {done}/{total}")
        self.scan_bar.setRange(0, max(1, total))
        self.scan_bar.setValue(done)

    @Slot()
    def _on_watch_scan_ended(self) -> None:
        self.scan_label.hide()
        self.scan_bar.hide()

    @Slot(object)
    def _on_scanned(self, report) -> None:
        changed = report.added or report.updated or report.moved or report.missing or report.restored
        for path, error in report.errors[:20]:
            self.report_error(f"{path}: {error}", quiet=True)
        if changed:
            self.statusBar().showMessage(f"Scan: {report.summary()}", 8000)
            self._bursts_changed()
            self.reload_library_info(requery=True)
        if report.added or report.updated or report.moved:
            self.start_scoring()

    # ------------------------------------------------------------------ library info, queries

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
            self.folders = folders
            self.attributes = attributes
            self.sidebar.set_folders(folders)
            self.sidebar.set_attributes(attributes)
            self.info.order = [a.name for a in attributes]
            self._fill_sort_combo()
            self.central.setCurrentWidget(self.pages if folders else self.welcome)
            if self.pages.currentIndex() == PAGE_GRID:
                self.info_dock.setVisible(bool(folders))
                self.histogram_dock.setVisible(bool(folders))
            if requery:
                self.requery()

        self.db.submit(read, done)

    def sort_keys(self) -> list[tuple[str, str]]:
        keys = [("name", "File name"), ("capture_time", "Capture time")]
        keys += [(a.name, a.name) for a in self.attributes]
        keys += [(c, f"{c} (check)") for c in CHECK_NAMES]
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

    # ------------------------------------------------------------------ selection & info

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

    def _on_culling_changed(self, ids: list[int]) -> None:
        self._refresh_culling_overlays(ids, fetch=True)
        if self.current_id() in ids:
            self._update_info()
        self.statusBar().showMessage(self.culling.stack.undoText() or "Saved", 2500)
        if ids:
            self._taste_timer.start()  # refit "my taste" once the flags settle

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

    # ------------------------------------------------------------------ culling

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
            text = f"Collapse burst ({n} photos)" if self.model.is_expanded(pid) else f"Expand burst ({n} photos)"
            menu.addAction(text, lambda: self.toggle_group(pid))
            menu.addAction(self.pick_best_action)
        menu.exec(self.view.viewport().mapToGlobal(pos))

    # ------------------------------------------------------------------ loupe, compare, help

    def _set_page(self, page: int) -> None:
        self.pages.setCurrentIndex(page)
        in_grid = page == PAGE_GRID
        self.next_action.setEnabled(not in_grid)
        self.prev_action.setEnabled(not in_grid)
        self.zoom_action.setEnabled(not in_grid)
        self.sidebar_dock.setVisible(in_grid)
        self.histogram_dock.setVisible(in_grid)
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
        self.loupe.set_culling(row.flag, row.rating, row.color_label)

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
                current = self.model.photo_row(r.id) or r  # the model may have newer culling
                pane.set_culling(current.flag, current.rating, current.color_label)
            self._set_page(PAGE_COMPARE)

        self.db.submit(lambda: self.library.rows(ids), done)

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

    # ------------------------------------------------------------------ thumbnails

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

    # ------------------------------------------------------------------ background jobs

    def _track(self, job: Job, label: str, cancellable: bool = True, pausable: bool = False) -> None:
        """List a job in the status bar (with Cancel / Pause where they apply) until it ends;
        call before starting it. Every tracked job has its own row."""
        job.label = label
        job.core.cancellable = cancellable
        job.core.pausable = pausable
        job.shown = True

    @Slot(object)
    def _on_scoring_progress(self, value) -> None:
        if isinstance(value, Progress) and value.stage == "encoding":
            now = time.monotonic()
            if now - self._last_row_refresh > 1.0:
                self._last_row_refresh = now
                self.model.refresh_rows()  # show new scores in place

    def start_scoring(self) -> Job | None:
        """Score photos that lack scores for the configured model (one job at a time)."""
        if self._score_job is not None:
            self._score_again = True
            return self._score_job
        self._score_again = False
        library, config, engine = self.library, self.engine_config, self.engine

        def work(ctx: JobContext):
            return ScoringJob(library, config, engine=engine).run(ctx.progress, ctx.cancel)

        job = Job(work, "scoring", kind="scoring")
        job.progress.connect(self._on_scoring_progress)
        job.result.connect(self._on_scored)
        job.error.connect(self._on_scoring_error)
        job.finished.connect(self._on_scoring_finished)
        self._score_job = job
        self._track(job, "Scoring", pausable=True)
        self.jobs.start(job, "model")
        return job

    @Slot(object)
    def _on_scored(self, report) -> None:
        self.banner.hide()
        self.problem_log.resolve("model")  # the weights load now
        if report.cancelled:
            self.statusBar().showMessage(f"Scoring cancelled after {report.encoded} photos", 6000)
        elif report.encoded or report.rescored_attributes:
            failed = f", {report.failed} unreadable" if report.failed else ""
            self.statusBar().showMessage(
                f"Scored {report.encoded} photos in {format_duration(report.seconds)}{failed}", 8000)
        if report.failed:
            self.report_error(f"{report.failed} photos could not be read for scoring "
                              "(see the files marked with “!”)", quiet=True)
        if report.encoded:
            self._bursts_changed()  # new features: bursts may have grown
        if report.encoded or report.rescored_attributes:
            self._after_new_scores()

    def _after_new_scores(self) -> None:
        q = self.model.query
        if q.sort in BASIC_SORTS and not q.ranges:
            self.model.refresh_rows()  # order unchanged: update in place
            self.update_histogram()
        else:
            self.requery()  # the order depends on the scores; selection is kept

    @Slot(str)
    def _on_scoring_error(self, message: str) -> None:
        job = self.sender()
        if isinstance(getattr(job, "exception", None), WeightsUnavailable):
            self.banner.show_problem(message)
            self.report_error(f"Scoring is off: {message}", quiet=True, kind="model")
        else:
            self.report_error(f"Scoring failed: {message}", kind="scoring")

    @Slot()
    def _on_scoring_finished(self) -> None:
        self._score_job = None
        if self._score_again:
            QTimer.singleShot(0, self.start_scoring)

    def _retry_scoring(self) -> None:
        self.banner.hide()
        self.engine = ClipIQAEngine(self.engine_config)
        self.start_scoring()

    # ------------------------------------------------------------------ histogram

    def update_histogram(self) -> None:
        """Values of the sort key over the shown photos (background), then the histogram."""
        key = self.model.query.sort
        if self._histogram_job is not None:
            self._histogram_job.cancel()
        if key in BASIC_SORTS:
            self._histogram_data = (np.zeros(0, np.int64), np.zeros(0))
            self.histogram.set_values(np.zeros(0), "Sort by a score or check to see its histogram")
            return
        ids = list(self.model.ids)
        library = self.library

        def work(ctx: JobContext):
            out_ids, out_values = [], []
            for start in range(0, len(ids), 2000):
                ctx.check()
                for row in library.rows(ids[start:start + 2000]):
                    v = value_of(row, key)
                    if v is not None:
                        out_ids.append(row.id)
                        out_values.append(v)
            return np.asarray(out_ids, dtype=np.int64), np.asarray(out_values, dtype=np.float64)

        job = Job(work, "histogram")
        job.result.connect(self._on_histogram_values)
        job.error.connect(self.report_error)
        job.setProperty("key", key)
        self._histogram_job = job
        self.jobs.start(job, "background")

    @Slot(object)
    def _on_histogram_values(self, data) -> None:
        job = self.sender()
        if job is not self._histogram_job:
            return
        self._histogram_job = None
        self._histogram_data = data
        key = job.property("key")
        self.histogram.set_values(data[1], f"{key} — {len(data[1])} photos")

    # ------------------------------------------------------------------ folders

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if path:
            self.add_folder(path)

    def add_folder(self, path: str) -> Job:
        """Add a folder; it is scanned in the background and its photos appear as they come."""
        library, watcher = self.library, self.service.watcher if self.service is not None else None

        def work(ctx: JobContext):
            from photosense.ingest.scan import Scanner

            folder = library.add_folder(path)
            if watcher is not None:
                watcher.add(folder.path)  # watched from now on; this job reads what is there
            return Scanner(library).scan_folder(folder, lambda d, t: ctx.progress((d, t)), ctx.cancel)

        return self.run_scan_job(work, f"Scanning {path}")

    def rescan(self) -> None:
        if self.service is not None and self.service.watcher is not None:
            for f in self.folders or []:
                self.service.watcher.pending.touch(f.path)
            self.statusBar().showMessage("Looking for new and changed photos…", 5000)
            return
        library = self.library

        def work(ctx: JobContext):
            from photosense.ingest.scan import Scanner

            return Scanner(library).scan_all(lambda d, t: ctx.progress((d, t)), ctx.cancel)

        self.run_scan_job(work, "Scanning folders")

    def run_scan_job(self, work, label: str) -> Job:
        job = Job(work, "scan", kind="scan")
        job.result.connect(self._on_scanned)
        job.error.connect(self.report_error)
        job.finished.connect(lambda: self.reload_library_info(requery=True))
        self._track(job, label)
        self.jobs.start(job, "background")
        return job

    def remove_folder(self, folder_id: int) -> None:
        folder = next((f for f in self.folders or [] if f.id == folder_id), None)
        if folder is None:
            return
        answer = QMessageBox.question(
            self, "Remove folder",
            f"Remove {folder.path} from the library?\n\nIts {folder.photo_count} photos, their "
            "scores, flags and ratings are forgotten. The files themselves are not touched.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.db.submit(lambda: self.library.remove_folder(folder_id),
                       lambda _r: self.reload_library_info(requery=True), self.report_error)

    # ------------------------------------------------------------------ attributes

    def show_add_attribute(self) -> None:
        from photosense.gui.attribute_dialog import AttributeDialog

        dlg = AttributeDialog(self, None, {a.name for a in self.attributes})
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.add_attribute(dlg.spec())

    def show_edit_attribute(self, name: str) -> None:
        from photosense.gui.attribute_dialog import AttributeDialog

        info = next((a for a in self.attributes if a.name == name), None)
        if info is None:
            return
        dlg = AttributeDialog(self, info.spec, {a.name for a in self.attributes if a.name != name})
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.edit_attribute(name, dlg.spec())

    def add_attribute(self, spec) -> None:
        """Add an attribute; its scores for the whole library come from stored features."""
        self.db.submit(lambda: self.library.add_attribute(spec), self._rescore_attribute, self.report_error)

    def edit_attribute(self, name: str, spec) -> None:
        self.db.submit(lambda: self.library.update_attribute(name, spec), self._rescore_attribute,
                       self.report_error)

    def _rescore_attribute(self, attr: AttributeInfo) -> Job:
        from photosense.pipeline import rescore_attributes

        self.reload_library_info()
        self.statusBar().showMessage(f"Scoring “{attr.name}” for the whole library…", 5000)
        library, engine, config = self.library, self.engine, self.engine_config

        def work(ctx: JobContext):
            if library.active_model() is None:  # nothing scored yet: score everything
                return ScoringJob(library, config, engine=engine).run(ctx.progress, ctx.cancel)
            ctx.progress(Progress("rescoring", 0, 1, 0.0, None))
            n = rescore_attributes(library, [library.attribute(attr.name)], engine)
            return n

        job = Job(work, f"rescore {attr.name}", kind="rescore")
        job.result.connect(lambda _r: (self.statusBar().showMessage(f"“{attr.name}” scored", 5000),
                                       self._after_new_scores()))
        job.error.connect(self._on_scoring_error)
        self._track(job, f"Scoring “{attr.name}”")
        self.jobs.start(job, "model", interactive=True)  # between two scoring batches
        return job

    def remove_attribute(self, name: str) -> None:
        answer = QMessageBox.question(self, "Remove attribute",
                                      f"Remove the attribute “{name}” and its scores?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.db.submit(lambda: self.library.remove_attribute(name),
                       lambda _r: self.reload_library_info(requery=self.model.query.sort == name
                                                           or name in self.model.query.ranges),
                       self.report_error)

    # ------------------------------------------------------------------ bursts

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
            if self._groups_job is not None:
                self._groups_job.cancel()
                self._groups_job = None
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

        if self._groups_job is not None:
            self._groups_job.cancel()
        library = self.library
        window_s, threshold = self.prefs.burst_window_s, self.prefs.burst_threshold

        def work(ctx: JobContext):
            return find_groups(library, window_s=window_s, threshold=threshold)

        job = Job(work, "bursts")
        job.result.connect(self._on_bursts)
        job.error.connect(lambda msg: self.report_error(f"Finding bursts failed: {msg}"))
        self._groups_job = job
        self.statusBar().showMessage("Looking for bursts…", 5000)
        self.jobs.start(job, "background")
        return job

    @Slot(object)
    def _on_bursts(self, groups) -> None:
        if self.sender() is not self._groups_job:
            return  # superseded
        self._groups_job = None
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

    # ------------------------------------------------------------------ search

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
        if self._search_job is not None:
            self._search_job.cancel()
        library, engine = self.library, self.engine

        def work(ctx: JobContext):
            from photosense.scoring.search import search

            return search(library, engine, text)

        job = Job(work, "search", kind="search")
        job.setProperty("text", text)
        job.result.connect(self._on_search_results)
        job.error.connect(self._on_search_error)
        self._search_job = job
        self.search_label.setText(f"Searching for “{text}”…")
        self.search_bar.show()
        self._track(job, f"Searching for “{text}”")
        self.jobs.start(job, "model", interactive=True)  # between two scoring batches
        return job

    @Slot(object)
    def _on_search_results(self, hits) -> None:
        job = self.sender()
        if job is not self._search_job:
            return
        self._search_job = None
        text = job.property("text")
        self.model.arrangement = replace(self.model.arrangement, ranking=tuple(i for i, _ in hits),
                                         similarity=dict(hits), search_text=text)
        self.search_label.setText(f"search: “{text}” — most similar first; filters still apply")
        self.search_bar.show()
        self._restore_selection = ([], None)  # start at the best match
        self.requery()

    @Slot(str)
    def _on_search_error(self, message: str) -> None:
        job = self.sender()
        if job is self._search_job:
            self._search_job = None
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
        searching = self.model.arrangement.ranking is not None or self._search_job is not None
        self.search_box.clear()
        self._drop_search()
        if searching:
            self.requery()

    def _drop_search(self) -> None:
        if self._search_job is not None:
            self._search_job.cancel()
            self._search_job = None
        self.search_bar.hide()
        if self.model.arrangement.ranking is not None:
            self.model.arrangement = replace(self.model.arrangement, ranking=None, similarity={}, search_text="")

    # ------------------------------------------------------------------ my taste

    def refit_taste(self, force: bool = True) -> Job | None:
        """Fit "my taste" again (``force``), or only when the flags changed since the last fit
        (the automatic refit, a few seconds after the last flag). Background pool."""
        if self._taste_job is not None:
            self._taste_again = True
            return self._taste_job
        self._taste_again = False
        library = self.library

        def work(ctx: JobContext):
            from photosense.scoring import taste

            message = ""
            if force:
                try:
                    taste.fit(library)
                    changed = True
                except taste.NotEnoughFlags as exc:
                    changed, message = True, str(exc)  # a stale attribute may have been removed
            else:
                changed = taste.maybe_refit(library)
            return changed, taste.taste_status(library), message

        job = Job(work, "taste")
        job.setProperty("force", force)
        job.result.connect(self._on_taste_fitted)
        job.error.connect(lambda msg: self.report_error(f"“my taste” could not be fitted: {msg}"))
        job.finished.connect(self._on_taste_finished)
        self._taste_job = job
        if force:
            self.sidebar.set_taste_status("Learning your taste…", "")
        self.jobs.start(job, "background")
        return job

    @Slot(object)
    def _on_taste_fitted(self, result) -> None:
        changed, status, message = result
        self._show_taste_status(status)
        if message:
            self.statusBar().showMessage(f"my taste: {message}", 8000)
        elif self.sender().property("force") or changed:
            self.statusBar().showMessage(taste_summary(status), 6000)
        if changed:  # new scores (or the attribute came or went): refresh in place
            from photosense.scoring.taste import TASTE_ATTRIBUTE

            q = self.model.query
            self.reload_library_info(requery=q.sort == TASTE_ATTRIBUTE or TASTE_ATTRIBUTE in q.ranges)
            self.model.refresh_rows()

    @Slot()
    def _on_taste_finished(self) -> None:
        self._taste_job = None
        if self._taste_again:
            self._taste_timer.start()

    def _show_taste_status(self, status) -> None:
        self.taste_status = status
        self.sidebar.set_taste_status(taste_summary(status), status.describe())

    # ------------------------------------------------------------------ sidecars, report

    def write_xmp(self, ids: list[int] | None = None) -> Job:
        """Write XMP sidecars of ``ids`` (default: the selection, or every photo)."""
        from photosense.curation.xmp import write_sidecars

        ids = ids if ids is not None else (self.selected_ids() or None)
        library = self.library

        def work(ctx: JobContext):
            return write_sidecars(library, ids, progress=lambda d, t: ctx.progress((d, t)), cancel=ctx.cancel)

        job = Job(work, "xmp")
        job.result.connect(self._on_xmp_written)
        job.error.connect(lambda msg: self.report_error(f"Writing XMP sidecars failed: {msg}"))
        self._track(job, "Writing XMP sidecars" + (f" of {_photos(len(ids))}" if ids else ""))
        self.jobs.start(job, "background")
        return job

    @Slot(object)
    def _on_xmp_written(self, report) -> None:
        self.statusBar().showMessage(f"XMP sidecars: {report.summary()}", 8000)
        for path, message in report.errors[:50]:
            self.report_error(f"XMP sidecar {path}: {message}", quiet=True)
        self.notify("XMP sidecars", report.summary())

    def choose_report(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export report", "photosense-report.csv",
                                                   "CSV (*.csv);;JSON (*.json)")
        if not path:
            return
        if not path.lower().endswith((".csv", ".json")):
            path += ".json" if "json" in chosen.lower() else ".csv"
        self.export_report(path)

    def export_report(self, path: str) -> Job:
        """A CSV or JSON report (by extension) of the photos the filters show, in view order."""
        from photosense.curation.report import write_report

        library, query = self.library, replace(self.model.query)

        def work(ctx: JobContext):
            return write_report(library, path, query)

        job = Job(work, "report")
        job.result.connect(lambda n: (self.statusBar().showMessage(f"Report of {_photos(n)} saved to {path}", 8000),
                                      self.notify("Report saved", f"{_photos(n)} written to\n{path}")))
        job.error.connect(lambda msg: self.report_error(f"Report failed: {msg}"))
        self._track(job, "Writing the report", cancellable=False)
        self.jobs.start(job, "background")
        return job

    # ------------------------------------------------------------------ export

    def show_export_dialog(self) -> None:
        from photosense.gui.export_dialog import ExportDialog

        dlg = ExportDialog(self, [a.name for a in self.attributes] + list(CHECK_NAMES))
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.export(dlg.options())

    def export(self, options) -> Job:
        from photosense.curation.export import export_photos

        library = self.library

        def work(ctx: JobContext):
            return export_photos(library, options, progress=lambda d, t: ctx.progress((d, t)),
                                 cancel=ctx.cancel)

        job = Job(work, "export")
        job.result.connect(self._on_exported)
        job.error.connect(lambda msg: self.report_error(f"Export failed: {msg}"))
        self._track(job, "Exporting")
        self.jobs.start(job, "background")
        return job

    @Slot(object)
    def _on_exported(self, report) -> None:
        self.statusBar().showMessage(f"Export: {report.summary().splitlines()[0]}", 8000)
        for path, message in report.errors:
            self.report_error(f"export {path}: {message}", quiet=True)
        self.notify("Export finished", report.summary())

    # ------------------------------------------------------------------ settings

    def show_settings(self) -> None:
        dlg = SettingsDialog(self, self.engine_config, self.prefs, self.sidecar_settings)
        if dlg.exec() == QDialog.DialogCode.Accepted:
            self.apply_settings(dlg.engine_config(), dlg.prefs(), dlg.sidecar_settings())

    def apply_settings(self, engine_config: EngineConfig, prefs: UiPrefs,
                       sidecars: SidecarSettings | None = None) -> None:
        engine_changed = engine_config != self.engine_config
        bursts_changed = (prefs.burst_window_s, prefs.burst_threshold) != (self.prefs.burst_window_s,
                                                                          self.prefs.burst_threshold)
        self.prefs = prefs
        if sidecars is not None and sidecars != self.sidecar_settings:
            self.sidecar_settings = sidecars
            self.db.submit(lambda: sidecars.write(self.library), None, self.report_error)
        if bursts_changed:
            self._bursts_changed()
        self.set_thumb_size(prefs.thumb_size)
        try:
            prefs.save()
        except OSError as exc:
            self.report_error(f"Cannot save settings: {exc}")
        if engine_changed:
            self.engine_config = engine_config
            self.engine = ClipIQAEngine(engine_config)
            self.db.submit(lambda: save_engine_config(self.library, engine_config), None, self.report_error)
            self.banner.hide()
            if self._score_job is not None:
                self._score_job.cancel()
            self.start_scoring()

    # ------------------------------------------------------------------ messages

    def report_error(self, message: str, quiet: bool = False, kind: str = "",
                     subject: str | None = None) -> None:
        """Show a problem in the status bar and keep it in the Problems list (once)."""
        log.warning("%s", message)
        self.problem_log.report(message, kind, subject)
        if not quiet:
            self.statusBar().showMessage(message, 10000)

    @property
    def problems(self) -> list[str]:
        """The problems now listed, oldest first."""
        return self.problem_log.messages()

    def show_problems(self):
        return self.problems_button.open_dialog()

    def notify(self, title: str, text: str) -> QMessageBox:
        """A non-blocking message box (the window stays usable)."""
        box = QMessageBox(QMessageBox.Icon.Information, title, text, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.last_message = box
        return box

    # ------------------------------------------------------------------ shutdown

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
        self.prefs.window_geometry = base64.b64encode(bytes(self.saveGeometry())).decode("ascii")
        self.prefs.window_state = base64.b64encode(bytes(self.saveState())).decode("ascii")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.remember_window_layout()
        try:
            self.prefs.save()
        except OSError as exc:
            log.warning("cannot save settings: %s", exc)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop every background thread (idempotent)."""
        if getattr(self, "_shut_down", False):
            return
        self._shut_down = True
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        if self.service is not None:
            self.service.stop(timeout=SHUTDOWN_SECONDS / 2)
        left = lambda: max(0.05, deadline - time.monotonic())  # noqa: E731
        self.sidecar_writer.close(left())  # pending sidecars written first, within the budget
        self.jobs.shutdown(left())
        self.thumbnails.shutdown(left())
        self.db.shutdown(left())

    def sizeHint(self) -> QSize:
        return QSize(1400, 880)


def _photos(n: int) -> str:
    return f"{n} photo{'s' if n != 1 else ''}"


__all__ = ["MainWindow", "SHORTCUTS", "COLOR_LABELS"]
