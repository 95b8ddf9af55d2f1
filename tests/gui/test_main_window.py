"""The main window on a library of real photos scored with the tiny random model."""

from __future__ import annotations

import os
import threading

import pytest
from PySide6.QtCore import Qt

from photosense.gui.photo_model import BadgeRole
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT
from tests.gui.conftest import open_window, wait_idle

pytestmark = pytest.mark.timeout(120)


def names(window) -> list[str]:
    return [os.path.basename(r.path) for r in window.library.rows(window.model.ids)]


def select_row(window, qtbot, row: int) -> int:
    from PySide6.QtCore import QItemSelectionModel

    idx = window.model.index(row)
    window.view.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    window.view.setFocus()
    wait_idle(qtbot, window)
    return window.model.ids[row]


def key(window, qtbot, k, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(window.view, k, modifier)
    wait_idle(qtbot, window)


def test_window_shows_the_library(window, qtbot, qtmodeltester):
    assert window.model.total() == 15
    assert window.central.currentWidget() is window.pages
    qtbot.waitUntil(lambda: window.model.photo_row(window.model.ids[0]) is not None)
    first = window.model.photo_row(window.model.ids[0])
    assert first.name == "astronaut.jpg"  # sorted by file name
    assert window.info.title.text() == "astronaut.jpg"
    assert window.info.bar("quality") is not None and window.info.bar("sharpness") is not None
    assert window.sidebar.folder_list.count() == 2  # "All photos" + the shoot
    assert "(15)" in window.sidebar.folder_list.item(1).text()
    qtmodeltester.check(window.model)
    # thumbnails arrive in the background and are cached on disk
    qtbot.waitUntil(lambda: window.thumbnails.pixmap(window.model.ids[0]) is not None, timeout=15000)
    assert any(window.thumbnails.store.root.rglob("*.jpg"))


def test_sorting_changes_the_order(window, qtbot):
    by_name = names(window)
    assert by_name == sorted(by_name)
    window.set_sort("sharpness")
    wait_idle(qtbot, window)
    by_sharpness = names(window)
    assert by_sharpness != by_name
    values = [r.checks["sharpness"] for r in window.library.rows(window.model.ids)]
    assert values == sorted(values, reverse=True)
    # blurred copies are the least sharp of the shoot
    assert {n for n in by_sharpness[-3:]} == {"astronaut_blur.jpg", "coffee_blur.jpg", "chelsea_blur.jpg"}
    window.reverse_order()
    wait_idle(qtbot, window)
    assert names(window) == by_sharpness[::-1]
    # the badge shows the sort key's value
    qtbot.waitUntil(lambda: window.model.index(0).data(BadgeRole) not in (None, "–"))
    window.set_sort("quality")
    wait_idle(qtbot, window)
    scores = [r.scores["quality"] for r in window.library.rows(window.model.ids)]
    assert scores == sorted(scores, reverse=True)


def test_keyboard_culling_reaches_the_library(window, qtbot):
    lib = window.library
    pid = select_row(window, qtbot, 0)
    key(window, qtbot, Qt.Key.Key_P)
    assert lib.states([pid])[0].flag == FLAG_PICK
    assert window.model.photo_row(pid).flag == FLAG_PICK
    key(window, qtbot, Qt.Key.Key_X)
    assert lib.states([pid])[0].flag == FLAG_REJECT
    key(window, qtbot, Qt.Key.Key_U)
    assert lib.states([pid])[0].flag == FLAG_NONE
    key(window, qtbot, Qt.Key.Key_4)
    assert lib.states([pid])[0].rating == 4
    key(window, qtbot, Qt.Key.Key_0)
    assert lib.states([pid])[0].rating == 0
    for k, label in ((Qt.Key.Key_6, "red"), (Qt.Key.Key_7, "yellow"), (Qt.Key.Key_8, "green"),
                     (Qt.Key.Key_9, "blue")):
        key(window, qtbot, k)
        assert lib.states([pid])[0].color_label == label
    key(window, qtbot, Qt.Key.Key_9)  # the same label again removes it
    assert lib.states([pid])[0].color_label is None
    # several selected photos change together
    window.view.selectAll()
    key(window, qtbot, Qt.Key.Key_X)
    assert all(s.flag == FLAG_REJECT for s in lib.states(window.model.ids))


def test_undo_and_redo(window, qtbot):
    lib = window.library
    pid = select_row(window, qtbot, 2)
    key(window, qtbot, Qt.Key.Key_P)
    key(window, qtbot, Qt.Key.Key_3)
    assert (lib.states([pid])[0].flag, lib.states([pid])[0].rating) == (FLAG_PICK, 3)
    key(window, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (lib.states([pid])[0].flag, lib.states([pid])[0].rating) == (FLAG_PICK, 0)
    key(window, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert lib.states([pid])[0].flag == FLAG_NONE
    assert window.model.photo_row(pid).flag == FLAG_NONE
    key(window, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert lib.states([pid])[0].flag == FLAG_PICK
    assert window.model.photo_row(pid).flag == FLAG_PICK


def test_auto_advance_moves_to_the_next_photo(window, qtbot):
    window.prefs.auto_advance = True
    first = select_row(window, qtbot, 0)
    key(window, qtbot, Qt.Key.Key_P)
    assert window.current_id() == window.model.ids[1]
    assert window.library.states([first])[0].flag == FLAG_PICK


def test_filters(window, qtbot):
    lib = window.library
    ids = window.model.ids
    lib.set_culling(ids[:3], flag=FLAG_PICK)
    lib.set_culling(ids[3:5], flag=FLAG_REJECT, rating=4, color_label="green")
    sb = window.sidebar
    sb.flag_combo.setCurrentIndex(sb.flag_combo.findData("pick"))
    wait_idle(qtbot, window)
    assert sorted(window.model.ids) == sorted(ids[:3])
    sb.flag_combo.setCurrentIndex(sb.flag_combo.findData("none"))
    wait_idle(qtbot, window)
    assert window.model.total() == 10
    sb.flag_combo.setCurrentIndex(0)
    sb.rating_combo.setCurrentIndex(sb.rating_combo.findData(3))
    wait_idle(qtbot, window)
    assert sorted(window.model.ids) == sorted(ids[3:5])
    sb.rating_combo.setCurrentIndex(0)
    sb.label_combo.setCurrentIndex(sb.label_combo.findData("green"))
    wait_idle(qtbot, window)
    assert window.model.total() == 2
    sb.reset()
    wait_idle(qtbot, window)
    assert window.model.total() == 15
    sb.set_range("sharpness", 0.5, None)
    wait_idle(qtbot, window)
    shown = set(names(window))
    assert not shown & {"astronaut_blur.jpg", "coffee_blur.jpg", "chelsea_blur.jpg"}
    assert len(shown) < 15
    sb.reset()
    sb.errors_check.setChecked(True)
    wait_idle(qtbot, window)
    assert window.model.total() == 0
    assert window.empty_label.isVisible()
    sb.reset()
    sb.folder_list.setCurrentRow(1)
    wait_idle(qtbot, window)
    assert window.model.total() == 15


def test_loupe_compare_and_help(window, qtbot):
    from photosense.gui.main_window import PAGE_COMPARE, PAGE_GRID, PAGE_LOUPE

    select_row(window, qtbot, 0)
    key(window, qtbot, Qt.Key.Key_Space)
    assert window.pages.currentIndex() == PAGE_LOUPE
    qtbot.waitUntil(lambda: window.loupe.is_loaded(), timeout=10000)
    assert window.loupe.path().endswith("astronaut.jpg")
    qtbot.keyClick(window.loupe, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.loupe.path().endswith("astronaut_blur.jpg"))
    qtbot.keyClick(window.loupe, Qt.Key.Key_Z)
    assert not window.loupe.is_fit()
    qtbot.keyClick(window.loupe, Qt.Key.Key_Escape)
    assert window.pages.currentIndex() == PAGE_GRID
    window.view.selectAll()
    key(window, qtbot, Qt.Key.Key_C)
    qtbot.waitUntil(lambda: window.pages.currentIndex() == PAGE_COMPARE)
    assert window.compare.count() == 4
    qtbot.keyClick(window.compare, Qt.Key.Key_P)  # flags the compare view's current photo
    wait_idle(qtbot, window)
    assert window.library.states([window.model.ids[0]])[0].flag == FLAG_PICK
    qtbot.keyClick(window.compare, Qt.Key.Key_Escape)
    assert window.pages.currentIndex() == PAGE_GRID
    qtbot.keyClick(window.view, Qt.Key.Key_F1)
    assert window.help_overlay.isVisible()


def test_loupe_and_compare_show_the_culling_state(window, qtbot, monkeypatch):
    from photosense.gui.main_window import PAGE_COMPARE, PAGE_LOUPE

    pid = select_row(window, qtbot, 0)
    key(window, qtbot, Qt.Key.Key_Space)
    assert window.pages.currentIndex() == PAGE_LOUPE
    qtbot.waitUntil(window.loupe.is_loaded, timeout=10000)
    assert window.loupe.culling_text() == ""
    # The overlay follows the keys from the model's rows: no database read on the GUI thread.
    reads = []
    gui_thread = threading.current_thread()
    for name in ("states", "rows", "query_ids"):
        original = getattr(window.library, name)

        def counting(*a, _o=original, _n=name, **k):
            if threading.current_thread() is gui_thread:
                reads.append(_n)
            return _o(*a, **k)
        monkeypatch.setattr(window.library, name, counting)
    qtbot.keyClick(window.loupe, Qt.Key.Key_P)
    assert window.loupe.culling().flag == FLAG_PICK  # at once, before the write is done
    qtbot.keyClick(window.loupe, Qt.Key.Key_3)
    qtbot.keyClick(window.loupe, Qt.Key.Key_6)
    assert window.loupe.culling_text() == "Pick ★★★☆☆ red"
    wait_idle(qtbot, window)
    assert reads == []
    state = window.library.states([pid])[0]
    assert (state.flag, state.rating, state.color_label) == (FLAG_PICK, 3, "red")
    qtbot.keyClick(window.loupe, Qt.Key.Key_X)
    qtbot.keyClick(window.loupe, Qt.Key.Key_0)
    qtbot.keyClick(window.loupe, Qt.Key.Key_6)  # the same label again removes it
    assert window.loupe.culling_text() == "Reject"
    key(window, qtbot, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo: the label is back
    wait_idle(qtbot, window)
    assert window.loupe.culling_text() == "Reject red"
    qtbot.keyClick(window.loupe, Qt.Key.Key_U)
    qtbot.keyClick(window.loupe, Qt.Key.Key_0)
    qtbot.keyClick(window.loupe, Qt.Key.Key_6)
    wait_idle(qtbot, window)
    assert window.loupe.culling_text() == ""
    # Compare: each pane shows its own photo; keys act on the current pane only.
    qtbot.keyClick(window.loupe, Qt.Key.Key_Escape)
    window.library.set_culling([window.model.ids[1]], rating=5)  # an earlier write elsewhere
    window.model.refresh_rows()
    wait_idle(qtbot, window)
    window.view.selectAll()
    key(window, qtbot, Qt.Key.Key_C)
    qtbot.waitUntil(lambda: window.pages.currentIndex() == PAGE_COMPARE)
    panes = window.compare.panes()
    assert [p.culling_text() for p in panes] == ["", "★★★★★", "", ""]
    window.compare.set_current(2)
    qtbot.keyClick(window.compare, Qt.Key.Key_X)
    wait_idle(qtbot, window)
    assert [p.culling_text() for p in panes] == ["", "★★★★★", "Reject", ""]
    assert window.library.states([window.model.ids[2]])[0].flag == FLAG_REJECT


def test_loupe_culling_chip_text_and_state(qtbot):
    from photosense.gui.loupe import CullingState, LoupeView

    loupe = LoupeView()
    qtbot.addWidget(loupe)
    assert loupe.culling() is None and loupe.culling_text() == ""
    loupe.set_culling(FLAG_REJECT, 0, "blue")
    assert loupe.culling() == CullingState(FLAG_REJECT, 0, "blue")
    assert loupe.culling_text() == "Reject blue"
    loupe.clear()
    assert loupe.culling() is None
    # Painted beside the title, or below it in a narrow pane (both paths drawn once).
    loupe.set_photo("/nonexistent/IMG_0001.jpg")
    qtbot.waitUntil(lambda: loupe.error() is not None)
    assert loupe.culling() is None  # a new photo starts without a state until one is given
    for width in (800, 160):
        loupe.resize(width, 120)
        loupe.set_culling(FLAG_PICK, 4, "green")
        assert not loupe.grab().isNull()


def test_histogram_pick_above_is_one_undoable_action(window, qtbot):
    window.set_sort("sharpness")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.histogram.values().size == 15)
    window.histogram.set_threshold(0.5)
    window.histogram.pickAbove.emit(0.5)
    wait_idle(qtbot, window)
    rows = window.library.rows(window.model.ids)
    above = {r.id for r in rows if r.checks["sharpness"] >= 0.5}
    assert 0 < len(above) < 15
    assert {r.id for r in window.library.rows(window.model.ids) if r.flag == FLAG_PICK} == above
    window.histogram.rejectBelow.emit(0.5)
    wait_idle(qtbot, window)
    assert all(r.flag == FLAG_REJECT for r in window.library.rows(window.model.ids) if r.id not in above)
    window.culling.stack.undo()
    wait_idle(qtbot, window)
    assert not any(r.flag == FLAG_REJECT for r in window.library.rows(window.model.ids))
    window.culling.stack.undo()
    wait_idle(qtbot, window)
    assert all(r.flag == FLAG_NONE for r in window.library.rows(window.model.ids))


def test_adding_an_attribute_scores_the_whole_library(window, qtbot):
    from photosense.scoring.prompts import AntonymPair, AttributeSpec

    window.add_attribute(AttributeSpec("dramatic", (AntonymPair("Dramatic", "Boring"),)))
    wait_idle(qtbot, window, timeout=60000)
    qtbot.waitUntil(lambda: window.sort_combo.findData("dramatic") >= 0)
    rows = window.library.rows(window.model.ids)
    assert all("dramatic" in r.scores for r in rows)
    window.set_sort("dramatic")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.model.photo_row(window.model.ids[0]) is not None)
    assert "dramatic" in window.model.photo_row(window.model.ids[0]).scores
    assert window.model.index(0).data(BadgeRole) not in (None, "–")  # the badge
    assert not window.problems


def test_export_copies_exactly_the_picks(window, qtbot, tmp_path):
    from photosense.curation.export import ExportOptions

    ids = window.model.ids
    window.culling.apply([ids[1], ids[4], ids[7]], "pick three", flag=FLAG_PICK)
    window.culling.apply([ids[2]], "reject one", flag=FLAG_REJECT)
    wait_idle(qtbot, window)
    dest = tmp_path / "best"
    job = window.export(ExportOptions(dest=dest))
    progress = []
    job.progress.connect(progress.append)
    wait_idle(qtbot, window)
    picked = {os.path.basename(r.path) for r in window.library.rows([ids[1], ids[4], ids[7]])}
    assert {p.name for p in dest.iterdir()} == picked
    assert window.last_message is not None and "3" in window.last_message.text()
    assert not window.problems


def test_weights_unavailable_shows_a_banner_and_checks_still_work(qtbot, scored_library, tiny_config, tmp_path):
    from dataclasses import replace

    config = replace(tiny_config, weights=str(tmp_path / "nowhere.safetensors"))
    window = open_window(qtbot, scored_library, config)
    try:
        window.start_scoring()
        wait_idle(qtbot, window, timeout=30000)
        assert window.banner.isVisible()
        assert "weights" in window.banner.text.text()
        assert window.problems
        window.set_sort("noise")
        wait_idle(qtbot, window)
        assert window.model.total() == 15
        select_row(window, qtbot, 0)
        key(window, qtbot, Qt.Key.Key_P)
        assert window.library.states([window.model.ids[0]])[0].flag == FLAG_PICK
    finally:
        window.shutdown()


def test_empty_library_welcome_then_add_folder(qtbot, tmp_path, shoot_folder, tiny_config):
    from photosense.library import Library

    with Library(tmp_path / "empty.sqlite3") as lib:
        window = open_window(qtbot, lib, tiny_config)
        try:
            assert window.central.currentWidget() is window.welcome
            window.add_folder(str(shoot_folder))
            wait_idle(qtbot, window, timeout=60000)
            assert window.central.currentWidget() is window.pages
            assert window.model.total() == 15
            window.set_sort("sharpness")  # checks work before any scoring
            wait_idle(qtbot, window)
            assert window.model.total() == 15
        finally:
            window.shutdown()


def test_query_keeps_selection(window, qtbot):
    pid = select_row(window, qtbot, 5)
    window.set_sort("exposure")
    wait_idle(qtbot, window)
    assert window.current_id() == pid
    assert window.selected_ids() == [pid]
