"""The culling window as a new user meets it (issue 10): a toolbar that fits, keys that stay
with the photos, views that never show a stale or mixed state, which way is better."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from photosense.gui.settings_dialog import UiPrefs
from photosense.library import FLAG_PICK, FLAG_REJECT
from photosense.pipeline import Progress
from tests.gui.conftest import open_window, wait_idle
from tests.gui.test_main_window import key, select_row

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("width", [1280, 1440, 1920])
def test_the_toolbar_fits_and_undo_is_an_icon_with_the_step_in_its_tooltip(window, qtbot, width):
    window.resize(width, 800)
    qtbot.waitUntil(lambda: window.width() == width)
    main, search = window.main_toolbar, window.search_toolbar
    assert not window.toolBarBreak(search)  # one row: the search field beside the culling controls
    assert search.geometry().top() == main.geometry().top()
    for w in (window.search_box, window.size_slider, window.undo_button, window.redo_button,
              search.widgetForAction(window.help_action)):
        assert w.isVisible() and w.geometry().right() <= w.parentWidget().width(), w
    select_row(window, qtbot, 0)
    key(window, qtbot, Qt.Key.Key_P)
    assert window.undo_button.isEnabled() and window.undo_button.width() == 30
    assert window.undo_button.text() in ("↶", "")  # an icon, never the step's text
    assert "Pick 1 photo" in window.undo_button.toolTip()
    assert window.undo_action.text() == "Undo Pick 1 photo"  # the Edit menu names the step
    window.undo_button.click()
    wait_idle(qtbot, window)
    assert "Pick 1 photo" in window.redo_button.toolTip() and not window.undo_button.isEnabled()


def test_in_a_narrow_window_the_search_field_moves_to_a_second_row_and_ctrl_f_reaches_it(window, qtbot):
    window.show()
    window.activateWindow()
    window.resize(1024, 700)  # a 1920 px laptop screen at 175 % scaling is 1097 px wide
    qtbot.waitUntil(lambda: window.width() == 1024)
    main, search = window.main_toolbar, window.search_toolbar
    qtbot.waitUntil(lambda: window.toolBarBreak(search))
    qtbot.waitUntil(lambda: search.geometry().top() >= main.geometry().bottom())
    for w in (window.search_box, window.size_slider, search.widgetForAction(window.help_action)):
        assert w.isVisible() and w.geometry().right() <= search.width(), w
    qtbot.keyClick(window.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.search_box.hasFocus()
    window.resize(1600, 800)  # wide again: back to one row
    qtbot.waitUntil(lambda: not window.toolBarBreak(search))
    qtbot.waitUntil(lambda: search.geometry().top() == main.geometry().top())


def test_after_a_choice_in_a_combo_the_arrow_keys_move_between_photos(window, qtbot):
    window.activateWindow()
    select_row(window, qtbot, 0)
    combo = window.sort_combo
    combo.setCurrentIndex(combo.findData("sharpness"))
    combo.activated.emit(combo.currentIndex())
    wait_idle(qtbot, window)
    assert window.model.query.sort == "sharpness"
    assert window.view.hasFocus() and not combo.hasFocus()
    row = window.model.row_of(window.current_id())  # the current photo is kept by a re-sort
    key(window, qtbot, Qt.Key.Key_Right)
    assert window.current_id() == window.model.ids[row + 1]
    assert window.model.query.sort == "sharpness"  # the key did not change the sort

    flag = window.sidebar.flag_combo
    flag.setFocus()
    flag.setCurrentIndex(flag.findData("none"))
    flag.activated.emit(flag.currentIndex())
    wait_idle(qtbot, window)
    assert window.view.hasFocus()


def test_sort_combo_offers_rating_flag_label_capture_time_and_name(window, qtbot):
    keys = [window.sort_combo.itemData(i) for i in range(window.sort_combo.count())]
    assert {"rating", "flag", "label", "capture_time", "name"} <= set(keys)
    pid = select_row(window, qtbot, 5)
    key(window, qtbot, Qt.Key.Key_4)
    window.set_sort("rating")
    wait_idle(qtbot, window)
    assert window.model.ids[0] == pid and window.direction_button.text() == "Most stars"


def test_a_search_is_a_sort_the_combo_and_histogram_show_similarity(window, qtbot):
    window.set_sort("quality")
    wait_idle(qtbot, window)
    window.run_search("a cat on a sofa")
    qtbot.waitUntil(lambda: window.model.arrangement.ranking is not None, timeout=30000)
    wait_idle(qtbot, window)
    assert window.sort_combo.currentText() == "Similarity to “a cat on a sofa”"
    qtbot.waitUntil(lambda: "similarity" in window.histogram.label())
    sims = window.model.arrangement.similarity
    assert sorted(window.histogram.values()) == pytest.approx(sorted(sims[i] for i in window.model.ids))
    window.clear_search()
    wait_idle(qtbot, window)
    assert window.sort_combo.currentData() == "quality"
    assert window.sort_combo.findData("\x00search") < 0
    qtbot.waitUntil(lambda: window.histogram.label().startswith("quality"))


def test_histogram_of_a_lower_is_better_check_picks_the_low_side(window, qtbot):
    window.set_sort("noise")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.histogram.label().startswith("noise"))
    panel = window.histogram
    assert panel.pick_button.text() == "Pick below" and not panel.higher_better()
    values = {int(i): float(v) for i, v in zip(*window._histogram_data)}
    t = float(np.median(list(values.values())))
    panel.set_threshold(t)
    panel.pick_button.click()
    wait_idle(qtbot, window)
    states = {s.photo_id: s.flag for s in window.library.states(list(values))}
    assert {pid for pid, f in states.items() if f == FLAG_PICK} == {pid for pid, v in values.items() if v <= t}
    panel.reject_button.click()
    wait_idle(qtbot, window)
    states = {s.photo_id: s.flag for s in window.library.states(list(values))}
    assert {pid for pid, f in states.items() if f == FLAG_REJECT} == {pid for pid, v in values.items() if v > t}
    # exposure: the distance from 0, lower is better
    window.set_sort("exposure")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.histogram.label().startswith("exposure"))
    assert "distance from 0" in panel.label() and min(panel.values()) >= 0


def test_resort_as_scores_arrive_keeps_the_current_photo(qtbot, scored_library, tiny_config):
    window = open_window(qtbot, scored_library, tiny_config, prefs=UiPrefs(sort="quality"),
                         resort_debounce=0.05)
    try:
        lib = window.library
        pid = select_row(window, qtbot, 3)
        before = list(window.model.ids)
        # New scores arrive (as a scoring batch would write them): the order reverses.
        model = lib.ensure_model(lib.active_model().key, 1, 100.0)
        ids = np.array(before)
        lib.replace_scores(model.id, lib.attribute("quality").id, ids, np.linspace(0.0, 1.0, len(ids)))
        window._on_scoring_progress(Progress("encoding", 5, 15, 1.0, None))
        qtbot.waitUntil(lambda: window.model.ids == before[::-1], timeout=5000)
        wait_idle(qtbot, window)
        assert window.current_id() == pid
    finally:
        window.shutdown()


def test_quit_is_in_the_file_menu_with_ctrl_q(window):
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    file_menu = window.menuBar().actions()[0].menu()
    assert window.quit_action in file_menu.actions()


def test_score_now_says_everything_is_already_scored(window, qtbot):
    window.score_now()
    wait_idle(qtbot, window, timeout=30000)
    assert window.statusBar().currentMessage() == "Everything is already scored"


def test_attribute_dialog_opens_without_errors_and_sets_which_way_is_better(window, qtbot):
    from photosense.gui.attribute_dialog import AttributeDialog
    from photosense.library.direction import LOWER

    dlg = AttributeDialog(window, None, {"quality"})
    qtbot.addWidget(dlg)
    dlg.show()
    assert not dlg.error_label.isVisible() and not dlg.is_valid()  # nothing typed yet
    qtbot.keyClicks(dlg.name, "quality")
    assert dlg.error_label.isVisible() and "already exists" in dlg.errors()
    dlg.close()

    info = window.library.attribute("noisy")
    edit = AttributeDialog(window, info.spec, set(), direction=info.direction)
    qtbot.addWidget(edit)
    assert edit.direction() == LOWER  # "noisy": less noise is better
    scored = {r.id: r.scores["quality"] for r in window.library.rows(window.model.ids)}
    window.set_sort("quality")
    wait_idle(qtbot, window)
    window.edit_attribute("quality", window.library.attribute("quality").spec, LOWER)
    wait_idle(qtbot, window)
    assert window.library.attribute("quality").direction == LOWER
    assert window.model.ids == sorted(scored, key=lambda i: (scored[i], i))  # best (lowest) first now
    assert window.direction_button.text() == "Best first"
    assert {r.id: r.scores["quality"] for r in window.library.rows(window.model.ids)} == scored  # kept


def test_grammar_and_my_taste_counts_every_flag_of_the_library():
    from photosense.gui.window_common import photos, plural, taste_summary
    from photosense.scoring.taste import TasteStatus

    assert (photos(1), photos(2), plural(1, "pick"), plural(0, "reject")) == ("1 photo", "2 photos", "1 pick",
                                                                            "0 rejects")
    status = TasteStatus(model="m", picks=1, rejects=0, min_per_class=5, fitted=False, up_to_date=False)
    text = taste_summary(status, (5, 2))
    assert text == ("Needs 4 more picks and 5 more rejects to learn your taste (1 pick, 0 rejects so far; "
                    "5 picks and 2 rejects in the library, 1 of them scored)")
    assert "1 picks" not in taste_summary(status)


def test_my_taste_line_follows_the_flags_at_once(window, qtbot):
    window._taste_timer.setInterval(600_000)  # not the refit: the line itself follows
    select_row(window, qtbot, 0)
    window.view.selectAll()
    key(window, qtbot, Qt.Key.Key_X)
    select_row(window, qtbot, 1)
    key(window, qtbot, Qt.Key.Key_P)
    qtbot.waitUntil(lambda: "1 pick," in window.sidebar.taste_label.text())
    assert "14 rejects" in window.sidebar.taste_label.text()


def test_empty_stars_differ_from_the_selected_background():
    from photosense.gui.delegate import CELL_BG, CELL_BG_SELECTED, STAR_OFF, STAR_OFF_SELECTED

    def contrast(a, b):
        return abs(a.lightness() - b.lightness())

    assert contrast(STAR_OFF_SELECTED, CELL_BG_SELECTED) >= 30 and contrast(STAR_OFF, CELL_BG) >= 30


def test_first_start_on_an_empty_library_loads_no_model_and_raises_no_problem(qtbot, tmp_path, tiny_config):
    from dataclasses import replace

    from photosense.library import Library

    config = replace(tiny_config, weights=str(tmp_path / "nowhere.safetensors"))  # would fail to load
    with Library(tmp_path / "empty.sqlite3") as lib:
        window = open_window(qtbot, lib, config)
        try:
            window.start_scoring()
            wait_idle(qtbot, window, timeout=30000)
            assert window.central.currentWidget() is window.welcome
            assert not window.engine.loaded and not window.problems and not window.banner.isVisible()
            # The weights notice, when there is one, is short and shows over the welcome screen.
            window.banner.show_problem("no file at /x/nowhere.safetensors")
            assert window.banner.isVisible() and "Settings" in window.banner.text.text()
            assert "--weights" not in window.banner.text.text() and window.banner.text.text().count("\n") <= 1
        finally:
            window.shutdown()


def test_a_read_only_library_says_so_once_in_the_status_bar(qtbot, scored_library, tiny_config):
    from photosense.library import Library

    path = scored_library.path
    scored_library.close()
    with Library(path, read_only=True) as lib:
        window = open_window(qtbot, lib, tiny_config)
        try:
            assert window.read_only_label.isVisible() and "cannot" in window.read_only_label.toolTip()
            labels = [w for w in window.statusBar().findChildren(QLabel) if w.text() == "Read-only library"]
            assert labels == [window.read_only_label]
        finally:
            window.shutdown()
    with Library(path) as lib:
        window = open_window(qtbot, lib, tiny_config)
        try:
            assert not window.read_only_label.isVisible()
        finally:
            window.shutdown()


def test_loupe_rescales_in_the_background_and_shows_a_preloaded_neighbour_at_once(qtbot, tmp_path):
    """A 24 MP photo: a zoom step below 100 % paints at once (a stand-in) and turns sharp
    when the background downscale arrives; a preloaded neighbour is shown without decoding.
    Prints the measured times (no timing assertions)."""
    import time

    from PIL import Image

    from photosense.gui.loupe import LoupeView

    paths = []
    for i, color in enumerate([(180, 40, 40), (40, 160, 60)]):
        img = Image.linear_gradient("L").resize((6000, 4000)).convert("RGB")
        img.paste(color, (0, 0, 3000, 2000))
        path = tmp_path / f"big{i}.jpg"
        img.save(path, quality=85)
        paths.append(str(path))
    loupe = LoupeView()
    qtbot.addWidget(loupe)
    loupe.resize(1400, 900)
    loupe.show()
    qtbot.waitExposed(loupe)
    with qtbot.waitSignal(loupe.loaded, timeout=30000):
        loupe.set_photo(paths[0])
    qtbot.waitUntil(loupe.is_sharp, timeout=10000)

    loupe.zoom_by(1.25)  # a wheel notch, still below 100 %
    t0 = time.perf_counter()
    loupe.repaint()
    notch_ms = (time.perf_counter() - t0) * 1000
    assert not loupe.is_sharp()  # the downscale for this level is on its way, not in paint
    qtbot.waitUntil(loupe.is_sharp, timeout=10000)

    loupe.preload([(paths[1], None)])
    qtbot.waitUntil(lambda: paths[1] in loupe.preloaded(), timeout=30000)
    t0 = time.perf_counter()
    loupe.set_photo(paths[1])
    loupe.repaint()
    next_ms = (time.perf_counter() - t0) * 1000
    assert loupe.is_loaded() and loupe.path() == paths[1]  # shown from the preload, no decoding
    assert loupe.image_size().width() == 6000
    qtbot.waitUntil(loupe.is_sharp, timeout=10000)
    t0 = time.perf_counter()
    loupe.set_photo(paths[0])  # back: still kept
    loupe.repaint()
    back_ms = (time.perf_counter() - t0) * 1000
    assert loupe.is_loaded()
    print(f"\nloupe, 24 MP: wheel notch paint {notch_ms:.0f} ms; next photo (preloaded) shown in "
          f"{next_ms:.0f} ms; previous photo in {back_ms:.0f} ms")


def test_the_background_downscale_keeps_size_and_colours(qtbot):
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QColor, QImage

    from photosense.gui.loupe import scaled_image

    img = QImage(600, 400, QImage.Format.Format_RGB32)
    img.fill(QColor(200, 30, 90))
    out = scaled_image(img, QSize(150, 100))
    c = out.pixelColor(70, 50)
    assert out.size() == QSize(150, 100) and (c.red(), c.green(), c.blue()) == (200, 30, 90)


def test_photos_appear_while_a_folder_is_still_being_read(qtbot, tmp_path, real_photos, tiny_config,
                                                         monkeypatch):
    """Issue 10.7: thumbnails come as the scan reads the folder, not only when it ends."""
    import time

    import photosense.ingest.scan as scan
    from photosense.library import Library
    from tests.gui.conftest import open_window

    folder = tmp_path / "card"
    folder.mkdir()
    for i in range(16):
        real_photos["coffee"].resize((64 + i, 48)).save(folder / f"img{i:02d}.jpg")
    real = scan.analyse_file
    monkeypatch.setattr(scan, "WRITE_BATCH", 2)  # written as it goes (64 at a time in use)
    monkeypatch.setattr(scan, "analyse_file", lambda *a, **k: (time.sleep(0.25), real(*a, **k))[1])
    lib = Library(tmp_path / "lib.sqlite3")
    window = open_window(qtbot, lib, tiny_config)
    try:
        job = window.add_folder(str(folder))
        qtbot.waitUntil(lambda: len(window.model.ids) > 0, timeout=15000)
        shown_while_reading = len(window.model.ids)
        assert not job.done and 0 < shown_while_reading < 16
        qtbot.waitUntil(lambda: len(window.model.ids) == 16, timeout=30000)
    finally:
        window.shutdown()
        lib.close()


@pytest.mark.parametrize("width", [1024, 1440])
def test_the_library_panel_is_never_narrower_than_its_contents(window, qtbot, width):
    from PySide6.QtWidgets import QScrollArea

    window.show()
    window.resize(width, 760)
    qtbot.waitUntil(lambda: window.width() == width)  # the panel's width must not stop that
    scroll = window.sidebar.findChild(QScrollArea)
    content = scroll.widget()
    qtbot.waitUntil(lambda: scroll.viewport().width() >= content.minimumSizeHint().width())
    assert scroll.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    window.resizeDocks([window.sidebar_dock], [60], Qt.Orientation.Horizontal)  # dragged narrow
    qtbot.wait(50)
    assert scroll.viewport().width() >= content.minimumSizeHint().width()
    for button in (window.sidebar.add_folder_button, window.sidebar.remove_folder_button,
                   window.sidebar.remove_attr_button, window.sidebar.reset_button):
        right = button.mapTo(scroll.viewport(), button.rect().topRight()).x()
        assert button.isVisible() and right < scroll.viewport().width(), button.toolTip()
