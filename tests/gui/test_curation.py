"""Curation in the window: bursts collapsed to their best photo, text search, the "my taste"
model refitted in the background, XMP sidecars, RAW+JPEG pairs, reports."""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer

from photosense.gui.photo_model import FileKindRole, GroupExpandedRole, GroupSizeRole, SimilarityRole
from photosense.gui.settings_dialog import UiPrefs
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT, Library
from tests.gui.conftest import open_window, wait_finished, wait_idle

pytestmark = pytest.mark.timeout(120)


def shown_names(window) -> list[str]:
    return [os.path.basename(r.path) for r in window.library.rows(window.model.ids)]


def flags(lib: Library, ids: dict[str, int]) -> dict[str, int]:
    by_id = {s.photo_id: s.flag for s in lib.states(list(ids.values()))}
    return {name: by_id[pid] for name, pid in ids.items()}


# -- bursts ---------------------------------------------------------------------------------

@pytest.fixture
def burst_library(tmp_path):
    """Two bursts (4 and 3 frames, a second apart, alike) and three lone photos."""
    from tests.test_groups import Shot, near, synthetic_library, unit

    rng = np.random.default_rng(1)
    a, b = unit(rng), unit(rng)

    def checks(sharpness: float) -> dict:
        return {"sharpness": sharpness, "exposure": 0.0, "noise": 1.0}

    shots = [Shot(f"a{k}.jpg", float(k), near(a, rng), checks=checks(s)) for k, s in enumerate([10, 50, 30, 20])]
    shots += [Shot(f"b{k}.jpg", 100.0 + k, near(b, rng), checks=checks(s)) for k, s in enumerate([5, 1, 9])]
    shots += [Shot(f"s{k}.jpg", 300.0 + 100 * k, unit(rng), checks=checks(2.0)) for k in range(3)]
    lib, ids = synthetic_library(tmp_path, shots)
    yield lib, ids
    lib.close()


def test_bursts_collapse_expand_and_pick_best_as_one_undo_step(qtbot, qtmodeltester, burst_library,
                                                               tiny_config):
    lib, ids = burst_library
    window = open_window(qtbot, lib, tiny_config, prefs=UiPrefs(sort="sharpness"))
    try:
        assert window.model.total() == 10
        qtbot.keyClick(window.view, Qt.Key.Key_G)  # collapse bursts: found in the background
        qtbot.waitUntil(lambda: window.model.total() == 5, timeout=15000)
        wait_idle(qtbot, window)
        # each burst is shown as its sharpest frame, with the number of frames it stands for
        assert shown_names(window) == ["a1.jpg", "b2.jpg", "s0.jpg", "s1.jpg", "s2.jpg"]
        sizes = {name: window.model.index(r).data(GroupSizeRole) for r, name in enumerate(shown_names(window))}
        assert sizes == {"a1.jpg": 4, "b2.jpg": 3, "s0.jpg": None, "s1.jpg": None, "s2.jpg": None}
        qtmodeltester.check(window.model)

        # expand one burst: its other frames are inserted after it, nothing else moves
        window.toggle_group(ids["a1.jpg"])
        assert window.model.total() == 8
        assert shown_names(window)[:4] == ["a1.jpg", "a2.jpg", "a3.jpg", "a0.jpg"]  # in view order
        assert window.model.index(0).data(GroupExpandedRole) is True
        qtmodeltester.check(window.model)
        window.toggle_group(ids["a2.jpg"])  # from any frame of the burst
        assert window.model.total() == 5
        # Shift+G on the current photo, and a double-click on the "×N" badge
        window._select_ids([ids["b2.jpg"]], ids["b2.jpg"])
        window.view.setFocus()
        qtbot.keyClick(window.view, Qt.Key.Key_G, Qt.KeyboardModifier.ShiftModifier)
        assert window.model.total() == 7 and window.model.is_expanded(ids["b0.jpg"])
        index = window.model.index(window.model.row_of(ids["b2.jpg"]))
        badge = window.delegate.group_badge_rect(window.view.visualRect(index), index, window.view.font())
        qtbot.mouseDClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=badge.center().toPoint())
        assert window.model.total() == 5
        assert window.pages.currentIndex() == 0  # the badge did not open the loupe

        # pick the best of each burst, reject the rest: one undo step
        depth = window.culling.stack.count()
        window.pick_best_of_groups()
        wait_idle(qtbot, window)
        assert window.culling.stack.count() == depth + 1
        expected = {n: FLAG_NONE for n in ids}
        expected.update({n: FLAG_REJECT for n in ("a0.jpg", "a2.jpg", "a3.jpg", "b0.jpg", "b1.jpg")})
        expected.update({"a1.jpg": FLAG_PICK, "b2.jpg": FLAG_PICK})
        assert flags(lib, ids) == expected
        assert window.model.photo_row(ids["a1.jpg"]).flag == FLAG_PICK
        window.culling.stack.undo()
        wait_idle(qtbot, window)
        assert set(flags(lib, ids).values()) == {FLAG_NONE}
        assert window.model.photo_row(ids["a1.jpg"]).flag == FLAG_NONE
        window.culling.stack.redo()
        wait_idle(qtbot, window)
        assert flags(lib, ids) == expected

        # the best can follow another attribute; G again shows every photo
        window.set_best_by("noise")  # all equal: the first frame (time order, then name) wins ties
        wait_idle(qtbot, window)
        assert window.model.total() == 5
        qtbot.keyClick(window.view, Qt.Key.Key_G)
        wait_idle(qtbot, window)
        assert window.model.total() == 10 and window.model.index(0).data(GroupSizeRole) is None
    finally:
        window.shutdown()


# -- search ---------------------------------------------------------------------------------

def test_search_ranks_the_view_and_combines_with_filters(qtbot, window, tiny_config):
    from photosense.scoring.clipiqa import ClipIQAEngine
    from photosense.scoring.search import search

    lib = window.library
    by_name = list(window.model.ids)
    window.show()
    window.activateWindow()
    qtbot.keyClick(window.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.search_box.hasFocus()
    qtbot.keyClicks(window.search_box, "a cat on a sofa")  # letters are text here, not culling keys
    assert window.search_box.text() == "a cat on a sofa"
    assert {s.flag for s in lib.states(by_name)} == {FLAG_NONE}
    qtbot.keyClick(window.search_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.model.arrangement.ranking is not None, timeout=30000)
    wait_idle(qtbot, window)

    engine = ClipIQAEngine(tiny_config)
    hits = search(lib, engine, "a cat on a sofa", query=window.model.query)
    assert window.model.ids == [i for i, _ in hits] and window.model.ids != by_name
    assert window.model.index(0).data(SimilarityRole) == pytest.approx(hits[0][1], abs=1e-6)
    assert window.search_bar.isVisible() and "search: “a cat on a sofa”" in window.search_label.text()
    assert window.direction_button.text() == "Most similar first"

    # filters still apply, in the search's order
    picked = window.model.ids[3:9:2]
    lib.set_culling(picked, flag=FLAG_PICK)
    window.sidebar.flag_combo.setCurrentIndex(window.sidebar.flag_combo.findData("pick"))
    wait_idle(qtbot, window)
    hits = search(lib, engine, "a cat on a sofa", query=window.model.query)
    assert window.model.ids == [i for i, _ in hits] == picked
    window.sidebar.reset()
    wait_idle(qtbot, window)

    # Esc in the field goes back to the sort order
    window.search_box.setFocus()
    qtbot.keyClick(window.search_box, Qt.Key.Key_Escape)
    wait_idle(qtbot, window)
    assert window.model.ids == by_name and not window.search_bar.isVisible()
    assert window.search_box.text() == ""


def test_search_without_weights_says_so_and_the_window_keeps_working(qtbot, scored_library, tiny_config,
                                                                    tmp_path):
    from dataclasses import replace

    config = replace(tiny_config, weights=str(tmp_path / "missing.safetensors"))
    window = open_window(qtbot, scored_library, config)
    try:
        order = list(window.model.ids)
        window.run_search("a red rocket")
        qtbot.waitUntil(lambda: bool(window.problems), timeout=30000)
        wait_idle(qtbot, window)
        assert "Search needs the model's weights" in window.problems[-1]
        assert "missing.safetensors" in window.problems[-1]
        assert window.banner.isVisible()
        assert window.model.ids == order and not window.search_bar.isVisible()
        window.set_sort("sharpness")
        wait_idle(qtbot, window)
        assert window.model.ids != order
    finally:
        window.shutdown()


# -- my taste -------------------------------------------------------------------------------

@pytest.fixture
def taste_library(tmp_path):
    from tests.test_groups import synthetic_library
    from tests.test_taste import DIM, shots_along

    rng = np.random.default_rng(3)
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    shots, amounts = shots_along(direction, 40)
    lib, ids = synthetic_library(tmp_path, shots)
    yield lib, ids, amounts
    lib.close()


def test_taste_is_refitted_in_the_background_after_flags_settle(qtbot, taste_library, tiny_config,
                                                                monkeypatch):
    from photosense.scoring import taste

    lib, ids, amounts = taste_library
    fits: list[tuple[str, float, float]] = []
    real = taste.maybe_refit

    def slow_refit(library):
        start = time.perf_counter()
        time.sleep(0.4)  # a long fit must not freeze the window
        changed = real(library)
        fits.append((threading.current_thread().name, start, time.perf_counter()))
        return changed

    monkeypatch.setattr(taste, "maybe_refit", slow_refit)
    window = open_window(qtbot, lib, tiny_config, taste_debounce=0.3)
    try:
        assert "Needs 10 more picks and 10 more rejects" in window.sidebar.taste_label.text()
        order = sorted(amounts, key=amounts.get)
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        # flags one at a time, as a photographer would: the refit waits for them to settle
        for name in order[-10:]:
            window.culling.apply([ids[name]], "Pick", flag=FLAG_PICK)
        for name in order[:10]:
            window.culling.apply([ids[name]], "Reject", flag=FLAG_REJECT)
        qtbot.waitUntil(lambda: "accurate" in window.sidebar.taste_label.text(), timeout=30000)
        wait_idle(qtbot, window)
        timer.stop()
        assert len(fits) == 1  # debounced: one fit for twenty flags
        thread, start, end = fits[0]
        assert thread != threading.main_thread().name
        assert sum(start <= t <= end for t in ticks) >= 10  # the event loop kept ticking meanwhile
        assert "Learned from 10 picks and 10 rejects" in window.sidebar.taste_label.text()
        assert "cross-validated accuracy" in window.sidebar.taste_label.toolTip()
        # a normal attribute: sortable, and its scores are shown
        assert "my taste" in [a.name for a in window.attributes]
        assert window.sort_combo.findData("my taste") >= 0
        window.set_sort("my taste")
        wait_idle(qtbot, window)
        best = window.library.rows(window.model.ids[:1])[0]
        assert best.scores["my taste"] > 0.5
    finally:
        window.shutdown()


# -- XMP sidecars, reports ------------------------------------------------------------------

@pytest.fixture
def small_library(tmp_path, shoot_folder):
    from photosense.ingest.scan import Scanner

    folder = tmp_path / "three"
    folder.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg", "chelsea.jpg"):
        shutil.copy(shoot_folder / name, folder / name)
    lib = Library(tmp_path / "three.sqlite3")
    lib.add_folder(folder)
    Scanner(lib).scan_all()
    yield lib, folder
    lib.close()


def test_xmp_sidecars_for_the_selection_then_all_and_the_settings(qtbot, small_library, tiny_config):
    from photosense.curation.xmp import read_sidecar
    from photosense.gui.settings_dialog import SettingsDialog

    lib, folder = small_library
    window = open_window(qtbot, lib, tiny_config)
    try:
        window.write_xmp([window.model.ids[0]])  # astronaut
        wait_idle(qtbot, window)
        assert sorted(p.name for p in folder.glob("*.xmp")) == ["astronaut.jpg.xmp"]
        assert "1 photo: 1 sidecar written" in window.last_message.text()
        # one selected photo is the grid's cursor, not a choice: every photo is written
        window._select_ids([window.model.ids[1]], window.model.ids[1])
        window.write_xmp()
        wait_idle(qtbot, window)
        assert len(list(folder.glob("*.jpg.xmp"))) == 3
        assert "3 photos: 2 sidecars written, 1 unchanged" in window.last_message.text()

        dlg = SettingsDialog(window, window.engine_config, window.prefs, window.sidecar_settings)
        assert not dlg.xmp_auto.isChecked()
        dlg.xmp_auto.setChecked(True)
        dlg.xmp_style.setCurrentIndex(dlg.xmp_style.findData("stem"))
        dlg.xmp_conflict.setCurrentIndex(dlg.xmp_conflict.findData("sidecar"))
        window.apply_settings(dlg.engine_config(), dlg.prefs(), dlg.sidecar_settings())
        wait_idle(qtbot, window)
        assert (lib.get_setting("xmp_auto_write"), lib.get_setting("xmp_sidecar_style"),
                lib.get_setting("xmp_conflict")) == (True, "stem", "sidecar")
        window._select_ids([window.model.ids[1]], window.model.ids[1])  # chelsea
        window.set_flag(FLAG_PICK)
        wait_idle(qtbot, window)
        # written on the change itself, into the sidecar chelsea already has (the chosen
        # naming is for new sidecars only: never a second one that could disagree)
        assert read_sidecar(folder / "chelsea.jpg.xmp").flag == FLAG_PICK
        assert not (folder / "chelsea.xmp").exists()
        assert not window.problems
    finally:
        window.shutdown()


def test_auto_written_sidecars_do_not_hold_up_flagging(qtbot, small_library, tiny_config, monkeypatch):
    """With XMP auto-write on, flagging every photo returns at once (the sidecars are written
    by the background writer, in one coalesced batch) and they land soon after."""
    import time
    from pathlib import Path

    from photosense.curation import xmp

    lib, _folder = small_library  # its own copy of the photos: the sidecars land there
    lib.set_setting("xmp_auto_write", True)
    window = open_window(qtbot, lib, tiny_config)
    batches = []
    original = xmp.write_sidecars

    def slow_write(library, ids, **kwargs):  # as slow as fsyncs on a spinning disk
        batches.append(list(ids))
        time.sleep(1.0)
        return original(library, ids, **kwargs)

    monkeypatch.setattr(xmp, "write_sidecars", slow_write)
    window.view.selectAll()
    t0 = time.perf_counter()
    window.set_flag(FLAG_PICK)
    gui_ms = (time.perf_counter() - t0) * 1000
    qtbot.waitUntil(lambda: window.db.idle, timeout=5000)  # the library write is done…
    committed_ms = (time.perf_counter() - t0) * 1000
    assert all(st.flag == FLAG_PICK for st in window.library.states(window.model.ids))
    wait_idle(qtbot, window, timeout=30000)  # …and the sidecars follow
    assert gui_ms < 100, f"flagging took {gui_ms:.0f} ms of GUI time"
    assert committed_ms < 800, f"the flags waited {committed_ms:.0f} ms for their sidecars"
    assert len(batches) == 1 and len(batches[0]) == 3
    rows = window.library.rows(window.model.ids)
    assert all(xmp.read_sidecar(Path(r.path + ".xmp")).flag == FLAG_PICK for r in rows)
    assert not window.problems
    window.shutdown()


def test_report_is_written_in_the_background(qtbot, window, tmp_path):
    import json

    job = window.export_report(str(tmp_path / "report.json"))
    wait_finished(qtbot, job, timeout=15000)
    wait_idle(qtbot, window)
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert len(data) == 15 and "quality" in data[0]["scores"]
    assert not window.problems


# -- RAW + JPEG -----------------------------------------------------------------------------

def test_a_raw_jpeg_pair_is_one_photo_shown_from_its_jpeg(qtbot, tmp_path, real_photos, tiny_config):
    from photosense.ingest.scan import Scanner
    from tests.test_raw import _pair

    folder = tmp_path / "pair"
    folder.mkdir()
    raw, jpeg = _pair(folder, real_photos)
    lib = Library(tmp_path / "pair.sqlite3")
    lib.add_folder(folder)
    Scanner(lib).scan_all()
    window = open_window(qtbot, lib, tiny_config)
    try:
        assert window.model.total() == 1
        qtbot.waitUntil(lambda: window.model.index(0).data(FileKindRole) == "RAW+JPG")
        window._select_ids([window.model.ids[0]], window.model.ids[0])
        wait_idle(qtbot, window)
        facts = [window.info.facts.itemAt(i).widget().text() for i in range(window.info.facts.count())
                 if window.info.facts.itemAt(i).widget() is not None]
        assert any(t.startswith("RAW + JPEG") and "IMG_1.dng" in t and "IMG_1.jpg" in t for t in facts)
        window.show_loupe()
        qtbot.waitUntil(window.loupe.is_loaded, timeout=15000)
        assert window.loupe.path() == raw and window.loupe.source_path() == jpeg
        # the JPEG (the astronaut, 512 × 512), not the RAW's 600 × 400 pixels
        assert (window.loupe.image_size().width(), window.loupe.image_size().height()) == real_photos["astronaut"].size
        window.show_grid()
    finally:
        window.shutdown()
        lib.close()
