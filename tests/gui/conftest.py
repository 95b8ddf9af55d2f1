"""GUI test fixtures: one scored library of real photos per session, copied for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fixtures.models import TINY_MODEL
from tests.fixtures.photos import write_shoot


@pytest.fixture(scope="session")
def scored_template(tmp_path_factory, real_photos, tiny_weights, model_configs_dir):
    """(library file, photo folder): the shoot scanned and scored with the tiny model, once."""
    from photosense.ingest.scan import Scanner
    from photosense.library import Library
    from photosense.pipeline import ScoringJob
    from photosense.scoring.clipiqa import EngineConfig

    root = tmp_path_factory.mktemp("gui-template")
    folder = write_shoot(root / "shoot", real_photos)
    db = root / "template.sqlite3"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOSENSE_MODEL_CONFIGS", str(model_configs_dir))
        mp.setenv("PHOTOSENSE_CACHE_DIR", str(root / "cache"))
        config = EngineConfig(model=TINY_MODEL, weights=str(tiny_weights), device="cpu", max_side=256)
        lib = Library(db)
        lib.add_folder(folder)
        Scanner(lib).scan_all()
        report = ScoringJob(lib, config).run()
        assert report.encoded == 15
        lib.close()
    return db, folder


@pytest.fixture
def scored_library(scored_template, tmp_path):
    """A fresh copy of the scored library for one test."""
    from photosense.library import Library

    db, _folder = scored_template
    target = tmp_path / "library.sqlite3"
    shutil.copy(db, target)
    lib = Library(target)
    yield lib
    lib.close()


@pytest.fixture
def shoot_folder(scored_template) -> Path:
    return scored_template[1]


def wait_idle(qtbot, window, timeout: int = 15000) -> None:
    """Until every query, page read, write and job of the window has finished."""
    qtbot.waitUntil(lambda: window.db.idle and not window.model.busy and not window.jobs.jobs
                    and window.sidecar_writer.idle, timeout=timeout)


def wait_finished(qtbot, job, timeout: int = 30000) -> None:
    """Until ``job`` has finished and the GUI thread has run the slots of its last signals.
    (``qtbot.waitSignal(job.finished)`` after starting a job misses a job that ends first.)"""
    from PySide6.QtCore import QCoreApplication

    qtbot.waitUntil(lambda: job.signalled, timeout=timeout)
    QCoreApplication.processEvents()  # the queued result/error/finished slots


def open_window(qtbot, library, config, **kwargs):
    from PySide6.QtWidgets import QApplication

    from photosense.gui.app import apply_theme
    from photosense.gui.main_window import MainWindow
    from photosense.gui.settings_dialog import UiPrefs

    apply_theme(QApplication.instance())
    window = MainWindow(library, engine_config=config, prefs=kwargs.pop("prefs", UiPrefs()),
                        start_services=kwargs.pop("start_services", False), **kwargs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    wait_idle(qtbot, window)
    return window


@pytest.fixture
def window(qtbot, scored_library, tiny_config):
    w = open_window(qtbot, scored_library, tiny_config)
    yield w
    w.shutdown()
