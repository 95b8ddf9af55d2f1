"""Render screenshots of the photosense window from a sample library (offscreen).

    python tools/screenshots.py OUT_DIR

Builds a throw-away library in a temporary folder (never the user's): real photos bundled with
scikit-image plus blurred, darkened and noisy copies, scored with a tiny *random-weight* CLIP
model (no download; its scores are meaningless, so the grid is sorted by the sharpness check,
whose values are real). Each photo's degraded copies are dated a second apart, so they form
bursts; a RAW+JPEG pair is added when the test suite's DNG writer is importable. Writes
main_window.png, bursts.png, search.png, settings.png, loupe.png, compare.png,
attribute_dialog.png, welcome.png, weights_banner.png, help.png, window_1280.png,
window_1920.png (the toolbar at those widths), noise_histogram.png (a lower-is-better check:
Pick below), welcome_banner.png (the weights notice over the welcome screen) and
read_only.png into OUT_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TINY_MODEL = "photosense-tiny"
TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 64, "patch_size": None},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "immunohistochemistry",
          "hubble_deep_field", "retina", "camera", "coins", "moon")
DEGRADED = ("astronaut", "coffee", "chelsea", "rocket")
# The random-weight model sees little alike: a low similarity bar lets the demo's bursts form
# (they are separated by time anyway).
BURST_THRESHOLD = 0.5


def sample_photo(name: str):
    import numpy as np
    from PIL import Image
    from skimage import data

    array = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8))


def write_photos(folder: Path) -> None:
    import numpy as np
    from PIL import ImageEnhance, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(PHOTOS):
        img = sample_photo(name)
        img.save(folder / f"{name}.jpg", quality=92)
        if name in DEGRADED:
            img.filter(ImageFilter.GaussianBlur(4)).save(folder / f"{name}_blur.jpg", quality=92)
            ImageEnhance.Brightness(img).enhance(0.3).save(folder / f"{name}_dark.jpg", quality=92)
            arr = np.asarray(img, dtype=np.float32)
            noisy = arr + np.random.default_rng(0).normal(0, 25, arr.shape)
            from PIL import Image

            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"{name}_noisy.jpg", quality=92)
        # Ten minutes between subjects, a second between the frames of one subject: bursts.
        t = 1_717_236_000 + 600 * i
        for k, suffix in enumerate(("", "_blur", "_dark", "_noisy")):
            path = folder / f"{name}{suffix}.jpg"
            if path.exists():
                os.utime(path, (t + k, t + k))
    write_raw_pair(folder, 1_717_236_000 + 600 * len(PHOTOS))


def write_raw_pair(folder: Path, t: float) -> None:
    """IMG_0042.dng + IMG_0042.jpg (the camera's JPEG), using the tests' tiny DNG writer."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.test_raw import half_white, left_bright_scene, mosaic, write_dng
    except ImportError:  # an installed copy without the tests: no pair
        return
    write_dng(folder / "IMG_0042.dng", mosaic(left_bright_scene()), preview=half_white(600, 400))
    sample_photo("coffee").rotate(180).save(folder / "IMG_0042.jpg", quality=90)


def spin(app, condition, timeout: float = 30.0) -> bool:
    """Run the event loop until ``condition()`` or the timeout."""
    from PySide6.QtCore import QEventLoop, QTimer

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        loop = QEventLoop()
        QTimer.singleShot(20, loop.quit)
        loop.exec()
    return True


def settle(app, seconds: float) -> None:
    spin(app, lambda: False, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="photosense-shots-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["PHOTOSENSE_DATA_DIR"] = str(work / "data")
    os.environ["PHOTOSENSE_CACHE_DIR"] = str(work / "cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    configs = work / "model_configs"
    configs.mkdir()
    (configs / f"{TINY_MODEL}.json").write_text(json.dumps(TINY_CONFIG))
    os.environ["PHOTOSENSE_MODEL_CONFIGS"] = str(configs)

    from photosense.ingest.scan import Scanner
    from photosense.library import FLAG_PICK, FLAG_REJECT, Library
    from photosense.pipeline import ScoringJob
    from photosense.scoring.clipiqa import EngineConfig, make_random_checkpoint

    shoot = work / "Iceland 2024"
    write_photos(shoot)
    weights = make_random_checkpoint(TINY_MODEL, work / "tiny.safetensors")
    config = EngineConfig(model=TINY_MODEL, weights=str(weights), device="cpu", max_side=256)
    library = Library(work / "library.sqlite3")
    library.add_folder(shoot)
    Scanner(library).scan_all()
    ScoringJob(library, config).run()
    by_name = {os.path.basename(r.path): r.id for r in library.rows(library.query_ids(
        __import__("photosense.library", fromlist=["PhotoQuery"]).PhotoQuery()))}
    library.set_culling([by_name["astronaut.jpg"], by_name["coffee.jpg"], by_name["chelsea.jpg"]],
                        flag=FLAG_PICK, rating=4)
    library.set_culling([by_name["astronaut_blur.jpg"], by_name["coffee_blur.jpg"]], flag=FLAG_REJECT)
    library.set_culling([by_name["rocket.jpg"]], rating=5, color_label="green")
    library.set_culling([by_name["motorcycle_left.jpg"]], rating=3, color_label="red")

    from photosense.gui.app import make_application
    from photosense.gui.attribute_dialog import AttributeDialog
    from photosense.gui.main_window import MainWindow
    from photosense.gui.settings_dialog import UiPrefs

    app = make_application()
    window = MainWindow(library, engine_config=config,
                        prefs=UiPrefs(sort="sharpness", thumb_size=170, burst_threshold=BURST_THRESHOLD),
                        start_services=False)
    window.setWindowTitle("photosense — demo library (scores from a tiny random-weight model)")
    window.resize(1440, 900)
    window.show()
    idle = lambda: window.db.idle and not window.model.busy and not window.jobs.jobs  # noqa: E731
    spin(app, idle)
    spin(app, lambda: not window.thumbnails.busy and all(
        window.thumbnails.pixmap(i) is not None or window.thumbnails.error(i)
        for i in window.model.ids[:12]), 60)
    window.statusBar().showMessage("Demo: sorted by the sharpness check; attribute scores come from "
                                   "random weights", 60000)
    settle(app, 0.5)
    shots = []

    def save(widget, name: str) -> None:
        path = out / name
        widget.grab().save(str(path))
        shots.append(path)

    save(window, "main_window.png")

    # bursts collapsed to their best frame, one of them expanded
    window.set_collapse_bursts(True)
    spin(app, lambda: window.model.arrangement.groups is not None and idle(), 30)
    spin(app, lambda: not window.thumbnails.busy, 30)
    burst = next((pid for pid in window.model.ids if window.model.group_of(pid) is not None), None)
    if burst is not None:
        window.toggle_group(burst)
        window._select_ids([burst], burst)
    spin(app, idle)
    spin(app, lambda: not window.thumbnails.busy, 30)
    window.statusBar().showMessage("Bursts collapsed to their sharpest frame (G); Shift+G or a "
                                   "double-click on ×N shows the whole burst", 60000)
    settle(app, 0.5)
    save(window, "bursts.png")
    window.set_collapse_bursts(False)
    spin(app, idle)

    # a text search
    window.search_box.setText("a cat sleeping on a sofa")
    window.run_search(window.search_box.text())
    spin(app, lambda: window.model.arrangement.ranking is not None and idle(), 60)
    spin(app, lambda: not window.thumbnails.busy, 30)
    window.statusBar().showMessage("Demo: similarities come from random weights, so the order is "
                                   "arbitrary here", 60000)
    settle(app, 0.5)
    save(window, "search.png")
    window.clear_search()
    spin(app, idle)
    window._select_ids([window.model.ids[0]], window.model.ids[0])
    window.statusBar().showMessage("Demo: sorted by the sharpness check; attribute scores come from "
                                   "random weights", 60000)

    from photosense.gui.settings_dialog import SettingsDialog

    dlg = SettingsDialog(window, window.engine_config, window.prefs, window.sidecar_settings)
    dlg.show()
    settle(app, 0.3)
    save(dlg, "settings.png")
    dlg.close()

    # loupe on the sharpest photo
    window.move_current(0)
    window.show_loupe()
    spin(app, lambda: window.loupe.is_loaded(), 30)
    settle(app, 0.3)
    save(window, "loupe.png")
    window.show_grid()

    # compare: a photo and two degraded copies
    from PySide6.QtCore import QItemSelection, QItemSelectionModel

    sel = QItemSelection()
    for name in ("chelsea.jpg", "chelsea_noisy.jpg", "chelsea_blur.jpg"):
        row = window.model.row_of(by_name[name])
        sel.select(window.model.index(row), window.model.index(row))
    window.view.selectionModel().select(sel, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    window.show_compare()
    spin(app, lambda: window.compare.count() == 3 and all(p.is_loaded() for p in window.compare.panes()), 30)
    settle(app, 0.3)
    save(window, "compare.png")
    window.show_grid()

    window.toggle_help()
    settle(app, 0.3)
    save(window, "help.png")
    window.toggle_help()

    dlg = AttributeDialog(window, None, {a.name for a in window.attributes})
    dlg.show()
    settle(app, 0.3)
    save(dlg, "attribute_dialog.png")
    dlg.close()

    window.banner.show_problem("no weights file at /home/me/models/RN50.safetensors")
    settle(app, 0.3)
    save(window, "weights_banner.png")
    window.banner.hide()

    # a lower-is-better check: the histogram picks below its line
    window.set_sort("noise")
    spin(app, lambda: idle() and window.histogram.label().startswith("noise"), 30)
    window._select_ids(window.model.ids[:2], window.model.ids[0])  # selected cells: empty stars
    window.set_flag(FLAG_PICK)
    spin(app, idle)
    spin(app, lambda: not window.thumbnails.busy, 30)
    settle(app, 0.5)
    save(window, "noise_histogram.png")
    for width in (1280, 1920):
        window.resize(width, 900 if width == 1280 else 1040)
        settle(app, 0.5)
        save(window, f"window_{width}.png")
    window.shutdown()
    window.close()

    library.close()
    read_only = Library(work / "library.sqlite3", read_only=True)
    ro = MainWindow(read_only, engine_config=config, prefs=UiPrefs(sort="sharpness", thumb_size=170),
                    start_services=False)
    ro.resize(1440, 900)
    ro.show()
    spin(app, lambda: ro.db.idle and not ro.model.busy)
    spin(app, lambda: not ro.thumbnails.busy, 30)
    settle(app, 0.5)
    save(ro, "read_only.png")
    ro.shutdown()
    ro.close()

    empty = Library(work / "empty.sqlite3")
    welcome = MainWindow(empty, engine_config=config, prefs=UiPrefs(), start_services=False)
    welcome.resize(1200, 760)
    welcome.show()
    spin(app, lambda: welcome.db.idle)
    settle(app, 0.3)
    save(welcome, "welcome.png")
    welcome.banner.show_problem("no weights file at /home/me/models/RN50.safetensors")
    settle(app, 0.3)
    save(welcome, "welcome_banner.png")
    welcome.shutdown()
    welcome.close()
    library.close()
    empty.close()
    for path in shots:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
