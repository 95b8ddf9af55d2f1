"""Scanning progress in the status bar, the window's layout across restarts, and the
confirmed removal of folders and attributes."""

from __future__ import annotations

import re
import shutil
import threading

import pytest
from PySide6.QtWidgets import QMessageBox

from photosense.library import Library
from tests.gui.conftest import open_window, wait_finished, wait_idle

pytestmark = pytest.mark.timeout(120)


def answer(monkeypatch, button: QMessageBox.StandardButton) -> list[str]:
    """Make the confirmation questions answer ``button``; returns the questions' titles."""
    asked: list[str] = []

    def question(_parent, title, _text, *_args, **_kwargs):
        asked.append(title)
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def test_watch_scans_and_added_folders_show_progress_then_clear(qtbot, tmp_path, real_photos, tiny_config):
    """Every scan is a job with its own status-bar row (issue 9.2): the service's first full
    scan (with done/total), each watch batch, and "Add folder"; each row goes when it ends."""
    first = tmp_path / "first"
    first.mkdir()
    for name in ("coffee", "chelsea"):
        real_photos[name].save(first / f"{name}.jpg", quality=90)
    lib = Library(tmp_path / "live.sqlite3")
    lib.add_folder(first)  # not scanned yet: the service's first full scan reads it
    window = open_window(qtbot, lib, tiny_config, start_services=False, watch_debounce=0.3)
    rows: list[tuple[str, str, bool]] = []  # (kind, label, has a row) of each job announced
    progress: list[str] = []

    def announced(job) -> None:
        row = window.job_bar.row(job)
        rows.append((job.kind, job.label, row is not None))
        if row is not None:
            job.progress.connect(lambda _v, row=row: progress.append(row.bar.format()))

    window.jobs.added.connect(announced)
    try:
        window.start_services()
        qtbot.waitUntil(lambda: window.model.total() == 2, timeout=30000)
        qtbot.waitUntil(lambda: not window.jobs.of_kind("scan"), timeout=30000)
        assert ("scan", "Scanning folders", True) in rows
        assert "2 / 2" in progress
        assert not [j for j in window.job_bar.shown_jobs() if j.kind == "scan"]  # its row is gone

        # a file appearing in a watched folder: the watch batch is a job row too
        rows.clear()
        real_photos["astronaut"].save(tmp_path / "tmp.part", quality=90, format="JPEG")
        shutil.move(tmp_path / "tmp.part", first / "astronaut.jpg")
        qtbot.waitUntil(lambda: window.model.total() == 3, timeout=30000)
        qtbot.waitUntil(lambda: not window.jobs.of_kind("scan"), timeout=30000)
        scans = [(label, shown) for kind, label, shown in rows if kind == "scan"]
        assert scans and all(shown for _label, shown in scans)
        assert re.fullmatch(r"Checking \d+ changed paths?", scans[0][0])
        assert not window.problems

        # "Add folder" scans in a job whose done/total shows in the progress bar
        second = tmp_path / "second"
        second.mkdir()
        real_photos["rocket"].save(second / "rocket.jpg", quality=90)
        formats: list[str] = []
        job = window.add_folder(str(second))
        row = window.job_bar.row(job)
        assert row is not None and row.label.text() == f"Scanning {second}"
        job.progress.connect(lambda _v: formats.append(row.bar.format()))
        wait_finished(qtbot, job)
        qtbot.waitUntil(lambda: window.model.total() == 4, timeout=30000)
        assert formats and formats[-1] == "1 / 1"
        assert window.job_bar.row(job) is None  # gone with the job
        # the new folder is watched
        real_photos["coffee"].save(tmp_path / "tmp.part", quality=90, format="JPEG")
        shutil.move(tmp_path / "tmp.part", second / "coffee.jpg")
        qtbot.waitUntil(lambda: window.model.total() == 5, timeout=30000)
    finally:
        window.shutdown()
        lib.close()


def test_window_size_and_docks_are_restored(qtbot, scored_library, tiny_config):
    from photosense.gui.settings_dialog import UiPrefs

    window = open_window(qtbot, scored_library, tiny_config)
    window.sidebar_dock.close()
    window.resize(1000, 640)
    qtbot.waitUntil(lambda: window.height() == 640 and not window.sidebar_dock.isVisible())
    window.close()  # saves the layout with the preferences
    window.shutdown()
    prefs = UiPrefs.load()
    assert prefs.window_geometry and prefs.window_state

    again = open_window(qtbot, scored_library, tiny_config, prefs=prefs)
    try:
        # restoreGeometry keeps a window on its screen (800 x 800 offscreen), so the width
        # comes back clamped to it (then to the window's minimum width); the height fits.
        assert again.height() == 640 and again.width() < 1000
        assert not again.sidebar_dock.isVisible()
        assert again.info_dock.isVisible()
        again.sidebar_dock.toggleViewAction().trigger()  # View ▸ Panels brings it back
        assert again.sidebar_dock.isVisible()
    finally:
        again.shutdown()


def test_unreadable_saved_layout_is_ignored(qtbot, scored_library, tiny_config):
    from photosense.gui.settings_dialog import UiPrefs

    prefs = UiPrefs(window_geometry="not base64!", window_state="AAAA")
    window = open_window(qtbot, scored_library, tiny_config, prefs=prefs)
    try:
        assert (window.width(), window.height()) == (1400, 880)
    finally:
        window.shutdown()


def on_library_thread(window, monkeypatch, name: str) -> list[str]:
    """Record the thread each call of ``window.library.<name>`` runs on."""
    threads: list[str] = []
    original = getattr(window.library, name)

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(window.library, name, spy)
    return threads


def test_remove_folder_asks_first(window, qtbot, monkeypatch):
    folder = window.folders[0]
    threads = on_library_thread(window, monkeypatch, "remove_folder")
    asked = answer(monkeypatch, QMessageBox.StandardButton.No)
    window.sidebar.folder_list.setCurrentRow(1)
    window.sidebar.remove_folder_button.click()
    wait_idle(qtbot, window)
    assert asked == ["Remove folder"] and not threads
    assert [f.id for f in window.library.folders()] == [folder.id]
    assert window.sidebar.folder_list.count() == 2 and window.model.total() == 15

    asked = answer(monkeypatch, QMessageBox.StandardButton.Yes)
    window.sidebar.folder_list.setCurrentRow(1)
    window.sidebar.remove_folder_button.click()
    wait_idle(qtbot, window)
    assert asked == ["Remove folder"]
    assert threads and threads[0].startswith("photosense-library")
    assert window.library.folders() == []
    assert window.sidebar.folder_list.count() == 1  # "All photos" only
    assert window.central.currentWidget() is window.welcome


def sidebar_attributes(window) -> list[str]:
    from PySide6.QtCore import Qt

    items = (window.sidebar.attribute_list.item(i) for i in range(window.sidebar.attribute_list.count()))
    return [item.data(Qt.ItemDataRole.UserRole) for item in items]


def test_remove_attribute_asks_first(window, qtbot, monkeypatch):
    assert "quality" in sidebar_attributes(window)
    window.set_sort("quality")
    wait_idle(qtbot, window)
    threads = on_library_thread(window, monkeypatch, "remove_attribute")
    asked = answer(monkeypatch, QMessageBox.StandardButton.No)
    window.sidebar.removeAttributeRequested.emit("quality")
    wait_idle(qtbot, window)
    assert asked == ["Remove attribute"] and not threads
    assert "quality" in [a.name for a in window.library.attributes()]
    assert "quality" in sidebar_attributes(window)

    asked = answer(monkeypatch, QMessageBox.StandardButton.Yes)
    window.sidebar.removeAttributeRequested.emit("quality")
    wait_idle(qtbot, window)
    assert asked == ["Remove attribute"]
    assert threads and threads[0].startswith("photosense-library")
    assert "quality" not in [a.name for a in window.library.attributes()]
    assert "quality" not in sidebar_attributes(window)
    assert window.model.query.sort == "name"  # the removed sort falls back to the file name
    assert window.model.total() == 15


def test_closed_panels_stay_closed_through_scans_and_the_loupe(qtbot, scored_library, tiny_config):
    from tests.gui.test_main_window import select_row

    window = open_window(qtbot, scored_library, tiny_config)
    try:
        window.info_dock.close()
        window.histogram_dock.close()
        window.reload_library_info(requery=True)  # what every scan and watch batch ends with
        wait_idle(qtbot, window)
        assert not window.info_dock.isVisible() and not window.histogram_dock.isVisible()
        assert window.sidebar_dock.isVisible()
        select_row(window, qtbot, 0)
        window.show_loupe()  # the loupe hides the library panel, and keeps the info closed
        assert not window.sidebar_dock.isVisible() and not window.info_dock.isVisible()
        window.show_grid()
        assert window.sidebar_dock.isVisible() and not window.histogram_dock.isVisible()
        assert not window.info_dock.isVisible()
        window.info_dock.toggleViewAction().trigger()  # View ▸ Panels ▸ Info
        window.show_loupe()
        assert window.info_dock.isVisible() and not window.histogram_dock.isVisible()
        window.show_grid()
        window.reload_library_info()
        wait_idle(qtbot, window)
        assert window.info_dock.isVisible() and not window.histogram_dock.isVisible()
    finally:
        window.shutdown()
