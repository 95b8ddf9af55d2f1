"""The loupe, compare view, histogram, dialogs and help overlay, offscreen with pytest-qt."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QWidget

from photosense.gui.attribute_dialog import AttributeDialog
from photosense.gui.compare import CompareView, grid_shape
from photosense.gui.export_dialog import ExportDialog
from photosense.gui.help_overlay import HelpOverlay
from photosense.gui.histogram import HistogramPanel
from photosense.gui.loupe import LoupeView, loader_pool
from photosense.library import PhotoQuery
from photosense.scoring.prompts import AntonymPair, AttributeSpec


@pytest.fixture
def photos(tmp_path, real_photos):
    """Three real JPEGs and one file that is not an image."""
    paths = {}
    for name in ("astronaut", "chelsea", "coffee"):
        paths[name] = str(tmp_path / f"{name}.jpg")
        real_photos[name].save(paths[name], quality=90)
    paths["bad"] = str(tmp_path / "bad.jpg")
    with open(paths["bad"], "wb") as fp:
        fp.write(b"this is not a jpeg")
    yield paths
    assert loader_pool().waitForDone(10_000)


def _send_mouse(widget: QWidget, kind: QEvent.Type, pos: QPointF, buttons) -> None:
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def _drag(widget: QWidget, start: QPointF, end: QPointF) -> None:
    left = Qt.MouseButton.LeftButton
    _send_mouse(widget, QEvent.Type.MouseButtonPress, start, left)
    mid = (start + end) / 2
    _send_mouse(widget, QEvent.Type.MouseMove, mid, left)
    _send_mouse(widget, QEvent.Type.MouseMove, end, left)
    _send_mouse(widget, QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


# -- loupe ------------------------------------------------------------------------------------


def test_loupe_loads_a_real_photo_and_zooms(qtbot, photos, real_photos):
    view = LoupeView()
    qtbot.addWidget(view)
    view.resize(256, 200)
    view.show()
    with qtbot.waitSignal(view.loaded, timeout=10_000) as blocker:
        view.set_photo(photos["astronaut"], "Astronaut")
    assert blocker.args == [photos["astronaut"]]
    assert view.is_loaded() and view.error() is None and view.title() == "Astronaut"
    w, h = real_photos["astronaut"].size
    assert (view.image_size().width(), view.image_size().height()) == (w, h)
    dpr = view.devicePixelRatioF()
    fit = view.scale()
    assert view.is_fit() and fit == pytest.approx(min(256 * dpr / w, 200 * dpr / h))
    assert fit < 1.0

    with qtbot.waitSignal(view.viewChanged) as blocker:
        view.zoom_actual()
    assert view.scale() == 1.0 and not view.is_fit()
    assert blocker.args == [1.0, 0.5, 0.5]

    with qtbot.waitSignal(view.viewChanged) as blocker:
        view.zoom_fit()
    assert blocker.args[0] == 0.0 and view.scale() == pytest.approx(fit)

    # A click zooms to 100 % around the clicked point (upper left here), the next one fits.
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(80, 60))
    assert view.scale() == 1.0
    cx, cy = view.center()
    assert cx < 0.5 and cy < 0.5
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(80, 60))
    assert view.is_fit()

    # Dragging at 100 % pans: dragging left shows more of the right side.
    view.zoom_actual()
    _drag(view, QPointF(150, 100), QPointF(90, 100))
    assert view.scale() == 1.0 and view.center()[0] > 0.5
    assert view.center()[0] == pytest.approx(0.5 + 60 / (w / dpr), abs=1e-6)

    # The wheel zooms in around the cursor, and out again back to fit.
    view.zoom_fit()
    view.zoom_by(2.0, QPointF(128, 100))
    assert view.scale() == pytest.approx(2 * fit)
    view.zoom_by(0.25, QPointF(128, 100))
    assert view.is_fit()
    view.grab()  # paints without error at every stage


def test_loupe_drops_stale_loads(qtbot, photos, real_photos):
    view = LoupeView()
    qtbot.addWidget(view)
    view.resize(200, 150)
    loaded = []
    view.loaded.connect(loaded.append)
    view.set_photo(photos["astronaut"])
    view.set_photo(photos["bad"])
    view.set_photo(photos["chelsea"])
    qtbot.waitUntil(view.is_loaded, timeout=10_000)
    assert loader_pool().waitForDone(10_000)
    qtbot.wait(20)  # deliver whatever the workers emitted
    assert loaded == [photos["chelsea"]]
    assert view.error() is None and view.title() == "chelsea.jpg"
    assert view.image_size().width() == real_photos["chelsea"].size[0]


def test_loupe_shows_decode_errors(qtbot, photos):
    view = LoupeView()
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.failed, timeout=10_000) as blocker:
        view.set_photo(photos["bad"])
    assert blocker.args[0] == photos["bad"]
    assert view.error() == blocker.args[1] and "not an image" in view.error()
    assert not view.is_loaded()
    view.grab()


def test_loupe_keeps_view_from_set_view_without_emitting(qtbot, photos):
    view = LoupeView()
    qtbot.addWidget(view)
    view.resize(200, 150)
    emitted = []
    view.viewChanged.connect(lambda *a: emitted.append(a))
    view.set_photo(photos["coffee"])
    qtbot.waitUntil(view.is_loaded, timeout=10_000)
    view.set_view(2.0, 0.3, 0.6)
    assert view.view() == (2.0, 0.3, 0.6) and emitted == []
    view.set_view(0.0, 0.9, 0.9)
    assert view.is_fit() and view.center() == (0.5, 0.5) and emitted == []


# -- compare ----------------------------------------------------------------------------------


def _compare(qtbot, first, second):
    """A shown 640x300 compare view of two photos, and its two panes."""
    compare = CompareView()
    qtbot.addWidget(compare)
    compare.resize(640, 300)
    compare.show()
    compare.set_photos([(first, "a"), (second, "b")])
    return compare, compare.panes()


def test_compare_synchronises_zoom_and_pan(qtbot, photos):
    compare, (a, b) = _compare(qtbot, photos["astronaut"], photos["coffee"])
    assert compare.count() == 2 and grid_shape(2) == (1, 2)
    qtbot.waitUntil(lambda: a.is_loaded() and b.is_loaded(), timeout=10_000)
    from_b = []
    b.viewChanged.connect(lambda *args: from_b.append(args))

    a.zoom_actual()
    assert b.view() == a.view() and b.scale() == 1.0
    _drag(a, QPointF(150, 150), QPointF(100, 120))
    # (each pane clamps the centre to its own image; both photos are large enough here)
    assert a.center() != (0.5, 0.5) and b.center() == pytest.approx(a.center())
    assert from_b == []  # set_view never echoes back: no feedback loop

    compare.toggle_zoom()
    assert a.is_fit() and b.is_fit()
    compare.toggle_zoom()
    assert a.scale() == b.scale() == 1.0

    compare.set_photos([(photos[n], n) for n in ("astronaut", "chelsea", "coffee", "bad")])
    assert compare.count() == 4 and grid_shape(4) == (2, 2)
    panes = compare.panes()
    qtbot.waitUntil(lambda: all(p.is_loaded() or p.error() for p in panes), timeout=10_000)
    assert all(p.scale() == 1.0 for p in panes[:3])  # the zoom carried over
    assert panes[3].error()
    compare.set_photos([(photos["coffee"], "c"), (photos["chelsea"], "d")])
    assert compare.count() == 2 and not panes[2].isVisible()
    with pytest.raises(ValueError):
        compare.set_photos([(photos["coffee"], "")] * 5)
    compare.grab()


# -- histogram --------------------------------------------------------------------------------


def test_histogram_counts_and_threshold_signals(qtbot):
    panel = HistogramPanel()
    qtbot.addWidget(panel)
    panel.resize(360, 200)
    panel.show()
    values = np.array([0.1, 0.2, 0.2, 0.5, 0.7, 0.9, np.nan, np.nan])
    panel.set_values(values, "sharp")
    assert panel.counts().sum() == 6 and len(panel.counts()) == 40
    assert panel.value_range() == (0.1, 0.9)
    assert panel.threshold() == pytest.approx(0.35)  # the median to start with

    with qtbot.waitSignal(panel.thresholdChanged) as blocker:
        panel.set_threshold(0.5)
    assert blocker.args == [0.5]
    assert panel.above_below() == (3, 3)
    assert "3 above / 3 below" in panel._counts.text()
    panel.set_threshold(5.0)  # clamped to the range
    assert panel.threshold() == 0.9 and panel.above_below() == (1, 5)

    # Dragging the line with the mouse.
    canvas = panel.canvas
    x = canvas.x_for(0.3)
    with qtbot.waitSignal(panel.thresholdChanged):
        _drag(canvas, QPointF(canvas.x_for(0.8), 40), QPointF(x, 40))
    assert panel.threshold() == pytest.approx(0.3, abs=0.01)
    assert panel.above_below() == (3, 3)

    panel.set_threshold(0.2)
    with qtbot.waitSignal(panel.pickAbove) as blocker:
        qtbot.mouseClick(panel.pick_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [0.2]
    with qtbot.waitSignal(panel.rejectBelow) as blocker:
        qtbot.mouseClick(panel.reject_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [0.2]
    panel.grab()

    panel.set_values(np.array([np.nan]), "empty")
    assert panel.counts().size == 0 and not panel.pick_button.isEnabled()
    assert panel.above_below() == (0, 0)
    panel.set_values(np.full(4, 0.5), "constant")  # a zero-width range still draws
    assert panel.counts().sum() == 4 and math.isfinite(panel.threshold())
    panel.grab()


def test_histogram_direction_one_value_and_threshold_per_key(qtbot):
    """Lower is better: Pick below / Reject above; a single value is shown as itself; an
    empty histogram says "No values" once; a threshold does not carry over between keys."""
    panel = HistogramPanel()
    qtbot.addWidget(panel)
    panel.resize(360, 200)
    panel.show()
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    panel.set_values(values, "noise", key="noise", higher_better=False)
    panel.set_threshold(2.0)
    assert panel.pick_button.text() == "Pick below" and panel.reject_button.text() == "Reject above"
    assert panel.better_worse() == (2, 3)
    with qtbot.waitSignal(panel.pickBelow) as blocker:
        qtbot.mouseClick(panel.pick_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [2.0]
    with qtbot.waitSignal(panel.rejectAbove) as blocker:
        qtbot.mouseClick(panel.reject_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [2.0]

    panel.set_values(values, "sharpness", key="sharpness")  # same range, another key
    assert panel.threshold() == 3.0 and panel.pick_button.text() == "Pick above"
    panel.set_threshold(4.0)
    panel.set_values(values, "sharpness", key="sharpness")  # the same key keeps its line
    assert panel.threshold() == 4.0

    panel.set_values(np.array([0.7, 0.7]), "quality", key="quality")
    assert panel.value_range() == (0.7, 0.7) and panel.threshold() == 0.7
    assert panel.counts().tolist() == [2] and panel.better_worse() == (2, 0)
    panel.grab()
    panel.set_values(np.zeros(0), "empty", key="quality")
    assert panel._counts.text() == "" and not panel.pick_button.isEnabled()
    panel.grab()


# -- attribute dialog -------------------------------------------------------------------------


def _ok(dialog) -> bool:
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def test_attribute_dialog_validation_and_spec(qtbot):
    dialog = AttributeDialog(None, existing_names={"sharp", "quality"})
    qtbot.addWidget(dialog)
    assert not _ok(dialog) and "empty" in dialog.errors()

    dialog.name.setText("sharpness")
    pos, neg = dialog.pair_edits(0)
    pos.setText("crisp")
    neg.setText("soft")
    assert not _ok(dialog) and "check" in dialog.errors()
    dialog.name.setText("Sharp")
    assert not _ok(dialog) and "already exists" in dialog.errors()
    dialog.name.setText("crispness")
    assert _ok(dialog) and dialog.errors() == ""
    assert "Crisp photo." in dialog.preview.text() and "Soft photo." in dialog.preview.text()

    dialog.add_pair()
    assert dialog.pair_count() == 2 and not _ok(dialog)
    p2, n2 = dialog.pair_edits(1)
    p2.setText("The photo is tack sharp.")
    assert not _ok(dialog) and "negative" in dialog.errors()
    n2.setText("The photo is out of focus.")
    assert _ok(dialog)
    dialog.accept()
    spec = dialog.spec()
    assert spec.name == "crispness"
    assert spec.pairs == (AntonymPair("crisp", "soft"),
                          AntonymPair("The photo is tack sharp.", "The photo is out of focus."))
    assert spec.prompt_texts()[0] == ["Crisp photo.", "The photo is tack sharp."]


def test_attribute_dialog_presets_and_editing(qtbot):
    dialog = AttributeDialog(None, existing_names={"sharp"})
    qtbot.addWidget(dialog)
    index = dialog.presets.findText("sharp / blurry")
    dialog.presets.setCurrentIndex(index)
    dialog.presets.activated.emit(index)
    assert dialog.name.text() == "sharp 2"  # "sharp" is taken
    assert _ok(dialog) and "Blurry photo." in dialog.preview.text()
    index = dialog.presets.findText("warm / cold")
    dialog.presets.activated.emit(index)
    assert dialog.name.text() == "warm" and dialog.spec().pairs == (AntonymPair("Warm", "Cold"),)

    spec = AttributeSpec("sharp", (AntonymPair("Sharp", "Blurry"),), builtin=True)
    edit = AttributeDialog(None, spec, existing_names={"sharp", "happy"})
    qtbot.addWidget(edit)
    assert _ok(edit) and edit.spec() == spec  # its own name is not a clash
    edit.name.setText("happy")
    assert not _ok(edit)
    with pytest.raises(ValueError):
        edit.spec()


# -- export dialog ----------------------------------------------------------------------------


def test_export_dialog_options(qtbot, tmp_path):
    dialog = ExportDialog(None, ["quality", "sharp", "sharpness"])
    qtbot.addWidget(dialog)
    assert not dialog.is_valid() and not _ok(dialog)
    items = [dialog.by.itemText(i) for i in range(dialog.by.count()) if dialog.by.itemText(i)]
    assert items == ["quality", "sharp", "sharpness", "exposure", "noise"]

    dialog.set_destination(tmp_path / "out")
    assert dialog.is_valid() and _ok(dialog)
    opts = dialog.options()
    assert opts.dest == tmp_path / "out" and opts.flag == "pick"
    assert opts.top is None and opts.top_percent is None and not opts.link and opts.query is None

    dialog.mode_top.setChecked(True)
    dialog.top.setValue(25)
    dialog.by.setCurrentText("sharp")
    dialog.link.setChecked(True)
    opts = dialog.options()
    assert (opts.flag, opts.top, opts.by, opts.link) == (None, 25, "sharp", True)
    opts.validate()

    dialog.mode_percent.setChecked(True)
    dialog.percent.setValue(12.5)
    dialog.pool.setCurrentText("picks")
    opts = dialog.options()
    assert (opts.flag, opts.top, opts.top_percent, opts.by) == ("pick", None, 12.5, "sharp")

    dialog.mode_rejects.setChecked(True)
    assert dialog.options().flag == "reject" and dialog.options().by is None

    (tmp_path / "file").write_text("x")
    dialog.set_destination(tmp_path / "file")
    assert not dialog.is_valid() and "file" in dialog.error_label.text()

    query = PhotoQuery(min_rating=3)
    in_view = ExportDialog(None, [], query=query)
    qtbot.addWidget(in_view)
    in_view.set_destination(tmp_path)
    assert in_view.options().query is query
    in_view.in_view.setChecked(False)
    assert in_view.options().query is None


# -- help overlay -----------------------------------------------------------------------------


def test_help_overlay_shows_follows_and_closes(qtbot):
    window = QWidget()
    qtbot.addWidget(window)
    window.resize(600, 400)
    window.show()
    overlay = HelpOverlay(window, [("P", "Pick"), ("X", "Reject"), ("Space", "Toggle zoom")])
    assert not overlay.isVisible()
    overlay.show_overlay()
    assert overlay.isVisible() and overlay.geometry() == window.rect()
    window.resize(800, 500)
    assert overlay.geometry() == window.rect()
    overlay.grab()
    with qtbot.waitSignal(overlay.closed):
        qtbot.keyClick(overlay, Qt.Key.Key_A)
    assert not overlay.isVisible()
    overlay.show()  # a plain show() also covers the parent and takes the keyboard
    assert overlay.isVisible() and overlay.geometry() == window.rect()
    assert window.focusWidget() is overlay
    with qtbot.waitSignal(overlay.closed):
        qtbot.mouseClick(overlay, Qt.MouseButton.LeftButton, pos=QPoint(10, 10))
    assert not overlay.isVisible()


def test_loupe_jumps_to_each_face_at_100_percent(qtbot, photos):
    view = LoupeView()
    qtbot.addWidget(view)
    view.resize(256, 200)
    view.show()
    with qtbot.waitSignal(view.loaded, timeout=10_000):
        view.set_photo(photos["astronaut"], "Astronaut")
    assert not view.next_face(1)  # no faces known: nothing happens
    assert view.is_fit()
    view.set_faces([{"box": [0.40, 0.20, 0.10, 0.10], "eyes": "closed", "eye_sharpness": 0.5},
                    {"box": [0.30, 0.10, 0.20, 0.20], "eyes": "open", "eye_sharpness": 0.7}])
    assert view.next_face(1)
    assert view.scale() == 1.0 and view.center() == pytest.approx((0.40, 0.20))  # leftmost
    assert view.face_note() == "face 1/2: eyes open"
    view.next_face(1)
    assert view.center() == pytest.approx((0.45, 0.25))
    assert view.face_note() == "face 2/2: eyes closed"
    view.next_face(1)  # round again
    assert view.face_note() == "face 1/2: eyes open"
    view.next_face(-1)  # Shift+F: backwards
    assert view.face_note() == "face 2/2: eyes closed"


def test_compare_jumps_every_pane_to_its_own_face(qtbot, photos):
    compare, (a, b) = _compare(qtbot, photos["astronaut"], photos["chelsea"])
    qtbot.waitUntil(lambda: a.is_loaded() and b.is_loaded(), timeout=10_000)
    a.set_faces([{"box": [0.35, 0.45, 0.10, 0.10], "eyes": "open", "eye_sharpness": 0.5}])
    b.set_faces([{"box": [0.50, 0.45, 0.10, 0.10], "eyes": "closed", "eye_sharpness": 0.5}])
    assert compare.next_face(1)  # not synced: each pane centres its own face
    assert a.center() == pytest.approx((0.40, 0.50)) and a.scale() == 1.0
    assert b.center() == pytest.approx((0.55, 0.50)) and b.scale() == 1.0


def test_sidebar_face_filters_become_ranges(qtbot):
    from photosense.gui.sidebar import Sidebar
    from photosense.scoring.faces import IN_FOCUS

    bar = Sidebar()
    qtbot.addWidget(bar)
    expected = {None: {}, "eyes_closed": {"eyes_closed": (1, None)},
                "no_faces": {"faces": (None, 0)}, "in_focus": {"eye_sharpness": (IN_FOCUS, None)}}
    for i in range(bar.faces_combo.count()):
        with qtbot.waitSignal(bar.filtersChanged, timeout=1000, raising=i != 0):
            bar.faces_combo.setCurrentIndex(i)
        assert bar.apply_to(PhotoQuery()).ranges == expected[bar.faces_combo.currentData()]


def test_sidebar_says_what_a_folder_scan_skipped(qtbot):
    """'Where are my photos?': a folder shows how many files it skipped, and which kinds."""
    from photosense.gui.sidebar import Sidebar
    from photosense.library import FolderInfo

    bar = Sidebar()
    qtbot.addWidget(bar)
    bar.set_folders([FolderInfo(1, "/photos/shoot", 12, False, {".mov": 3, ".psd": 1}),
                     FolderInfo(2, "/photos/clean", 5, False, {})])
    shoot, clean = bar.folder_list.item(1), bar.folder_list.item(2)
    assert shoot.text() == "shoot  (12)  · 4 skipped"
    assert "3 .mov, 1 .psd" in shoot.toolTip()
    assert clean.text() == "clean  (5)" and "skipped" not in clean.toolTip()


def test_dialogs_open_without_red_error_text(qtbot):
    """Issue 10.10: a dialog says nothing is wrong before anything was typed; what is wrong
    shows once the person acts (types, or presses OK)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel

    from photosense.gui.settings_dialog import SettingsDialog, UiPrefs
    from photosense.scoring.clipiqa import EngineConfig

    dialog = ExportDialog(None, ["quality"])
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.error_label.isVisible() and not _ok(dialog)  # OK waits, silently
    qtbot.keyClicks(dialog.dest, "x")
    qtbot.keyClick(dialog.dest, Qt.Key.Key_Backspace)
    assert dialog.error_label.isVisible() and "destination" in dialog.error_label.text()

    settings = SettingsDialog(None, EngineConfig(), UiPrefs())
    qtbot.addWidget(settings)
    settings.show()
    red = [w.text() for w in settings.findChildren(QLabel)
           if w.isVisible() and "#d04040" in w.styleSheet() and w.text()]
    assert red == []
