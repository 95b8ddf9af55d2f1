"""Start the desktop window: ``run(library_path) -> exit code``."""

from __future__ import annotations

import logging
import os
import sys

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QStyleFactory

from photosense.errors import LibraryError, PhotosenseError
from photosense.gui.startup import SignalQuit, check_platform, fatal_platform_errors

log = logging.getLogger("photosense.gui")


def dark_palette() -> QPalette:
    """A neutral dark palette: photos are judged against grey, not against white."""
    p = QPalette()
    base, window, text = QColor("#1e1e1e"), QColor("#262626"), QColor("#dcdcdc")
    disabled = QColor("#6e6e6e")
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, QColor("#2a2a2a"))
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor("#333333"))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, disabled)
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor("#303030"))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor("#ff6b6b"))
    p.setColor(QPalette.ColorRole.Link, QColor("#6aa9e9"))
    p.setColor(QPalette.ColorRole.Highlight, QColor("#3d6ea5"))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    p.setColor(QPalette.ColorRole.Light, QColor("#3a3a3a"))
    p.setColor(QPalette.ColorRole.Mid, QColor("#2c2c2c"))
    p.setColor(QPalette.ColorRole.Dark, QColor("#181818"))
    p.setColor(QPalette.ColorRole.Shadow, QColor("#000000"))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with photosense's look (reuses an existing one, e.g. in tests)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    apply_theme(app)
    app.setApplicationName("photosense")
    app.setOrganizationName("photosense")
    return app


def apply_theme(app: QApplication) -> None:
    style = QStyleFactory.create("Fusion")
    if style is not None:
        app.setStyle(style)
    app.setPalette(dark_palette())
    app.setStyleSheet("QToolTip { color: #dcdcdc; background: #333; border: 1px solid #555; }"
                      "QDockWidget::title { padding: 4px; background: #2b2b2b; }")


def run(library_path: str | None, paths: list[str] | tuple[str, ...] = ()) -> int:
    """Open the library (default location when None) in the main window; the exit code.

    ``paths`` (folders, or photos whose folders are meant; e.g. from a file manager's "Open
    with") are added to the library and scanned in the background."""
    from photosense.gui.main_window import MainWindow
    from photosense.library import Library

    if QApplication.instance() is None:
        problem = check_platform()
        if problem:
            raise PhotosenseError(problem)
    with fatal_platform_errors():
        app = make_application()
    app.setAttribute(Qt.ApplicationAttribute.AA_DontShowIconsInMenus, False)
    try:
        library = Library(library_path)
    except LibraryError as exc:
        QMessageBox.critical(None, "photosense", f"The library cannot be opened:\n\n{exc}")
        return 1
    window = MainWindow(library)
    window.show()
    log.info("window shown: %s", window.windowTitle())
    for path in paths:
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        window.add_folder(folder)
    quit_on_signal = SignalQuit(window.close)  # SIGTERM (logout, kill) saves and closes
    code = 1
    try:
        code = app.exec()
        return code
    finally:
        quit_on_signal.restore()
        if not window.shutdown():
            # A job past the 2 s budget (a model load cannot be interrupted) still runs on a
            # thread that Qt and the interpreter would tear down under it at exit (a crash).
            # Everything the user did is committed and every file write is atomic, so end
            # the process here; SQLite rolls back a transaction that never committed.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        library.close()
