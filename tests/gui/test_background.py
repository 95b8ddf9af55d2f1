"""Background work: scoring with progress while the event loop keeps running, live folder
watching, thumbnails cache, settings persistence, the model's lazy fetching."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
from PySide6.QtCore import QTimer

from photosense.errors import DecodeError
from photosense.library import Library
from tests.gui.conftest import open_window, wait_finished, wait_idle

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def unscored_library(tmp_path, shoot_folder):
    from photosense.ingest.scan import Scanner

    lib = Library(tmp_path / "unscored.sqlite3")
    lib.add_folder(shoot_folder)
    Scanner(lib).scan_all()
    yield lib
    lib.close()


def test_scoring_reports_progress_while_the_event_loop_keeps_ticking(qtbot, unscored_library, tiny_config,
                                                                    record_property):
    from photosense.pipeline import Progress

    window = open_window(qtbot, unscored_library, tiny_config)
    try:
        assert all(not r.scores for r in unscored_library.rows(window.model.ids))
        gaps: list[float] = []
        last = [time.perf_counter()]

        def tick():
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(tick)
        timer.start()
        progress: list[Progress] = []
        job = window.start_scoring()
        job.progress.connect(progress.append)
        seen_bar = []
        job.progress.connect(lambda _p: seen_bar.append(window.job_bar.row(job) is not None
                                                        and window.job_bar.row(job).isVisible()))
        wait_finished(qtbot, job, timeout=90000)
        wait_idle(qtbot, window)
        timer.stop()
        stall_ms = max(gaps) * 1000
        print(f"\nevent loop during scoring: {len(gaps)} ticks, max gap {stall_ms:.1f} ms, "
              f"median {sorted(gaps)[len(gaps) // 2] * 1000:.1f} ms")
        record_property("max_event_loop_stall_ms", round(stall_ms, 1))
        assert any(p.stage == "encoding" and p.done > 0 for p in progress)
        assert progress[-1].stage == "done"
        assert len(gaps) > 20 and all(seen_bar)
        assert window.job_bar.row(job) is None and not window.job_bar.isVisible()  # gone with the job
        rows = unscored_library.rows(window.model.ids)
        assert all("quality" in r.scores for r in rows)
        qtbot.waitUntil(lambda: window.model.photo_row(window.model.ids[0]) is not None
                        and bool(window.model.photo_row(window.model.ids[0]).scores))
    finally:
        window.shutdown()


def test_scoring_can_be_cancelled(qtbot, unscored_library, tiny_config):
    """Cancel in the status bar stops a run part-way: what was scored stays, the rest waits.
    Deterministic: the run pauses itself (on its worker thread) after its first photo, so the
    click lands mid-run; a Cancel that did nothing would leave it paused (timeout) or, if the
    run ignored the cancel, score all 15."""
    from dataclasses import replace

    window = open_window(qtbot, unscored_library, replace(tiny_config, batch_size=1))
    try:
        job = window.start_scoring()
        row = window.job_bar.row(job)
        assert row is not None and row.cancel_button.isVisibleTo(window) and row.pause_button.isVisibleTo(window)
        paused = []

        def pause_after_first_photo(core_job, p):
            if p.stage == "encoding" and p.done >= 1 and not paused:
                paused.append(p.done)
                core_job.pause()  # takes hold at the run's next checkpoint

        job.core.on_progress.append(pause_after_first_photo)
        results = []
        job.result.connect(results.append)
        qtbot.waitUntil(lambda: bool(paused) and job.paused, timeout=60000)
        with qtbot.waitSignal(job.finished, timeout=60000):
            row.cancel_button.click()
        report = results[0]
        assert report.cancelled and 1 <= report.encoded < 15
        model = unscored_library.active_model()
        assert len(unscored_library.photos_needing_features(model.id)) == 15 - report.encoded
        qtbot.waitUntil(lambda: window.job_bar.row(job) is None)
    finally:
        window.shutdown()


def test_watched_folder_adds_new_photos_live(qtbot, tmp_path, real_photos, tiny_config):
    folder = tmp_path / "live"
    folder.mkdir()
    real_photos["coffee"].save(folder / "coffee.jpg", quality=90)
    lib = Library(tmp_path / "live.sqlite3")
    lib.add_folder(folder)
    window = open_window(qtbot, lib, tiny_config, start_services=True, watch_debounce=0.3)
    try:
        qtbot.waitUntil(lambda: window.model.total() == 1, timeout=30000)
        real_photos["chelsea"].save(folder / "tmp.part", quality=90, format="JPEG")
        shutil.move(folder / "tmp.part", folder / "chelsea.jpg")
        qtbot.waitUntil(lambda: window.model.total() == 2, timeout=30000)
        # The folder counts are re-read when the watch batch's scan ends, which can be a
        # moment after the grid's own refresh during the scan already showed the photo.
        qtbot.waitUntil(lambda: "(2)" in window.sidebar.folder_list.item(1).text(), timeout=30000)
    finally:
        window.shutdown()
        lib.close()


def test_thumbnail_store_caches_atomically_and_remembers_failures(tmp_path, real_photos):
    from photosense.gui.thumbnails import ThumbnailStore

    src = tmp_path / "a.jpg"
    real_photos["astronaut"].save(src, quality=90)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    store = ThumbnailStore(tmp_path / "thumbs")
    st = src.stat()
    image = store.load_or_make(str(src), st.st_mtime, st.st_size, 160)
    assert max(image.width(), image.height()) == 160
    cached = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1 and not list((tmp_path / "thumbs").rglob(".tmp-*"))
    again = store.load_or_make(str(src), st.st_mtime, st.st_size, 160)
    assert again.size() == image.size()
    # another mtime is another key: an edited file gets a fresh thumbnail
    store.load_or_make(str(src), st.st_mtime + 1, st.st_size, 160)
    assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == 2
    bst = bad.stat()
    with pytest.raises(DecodeError):
        store.load_or_make(str(bad), bst.st_mtime, bst.st_size, 160)
    assert len(list((tmp_path / "thumbs").rglob("*.fail"))) == 1
    with pytest.raises(DecodeError):  # from the failure cache
        store.load_or_make(str(bad), bst.st_mtime, bst.st_size, 160)


def test_settings_are_persisted(qtbot, scored_library, tiny_config):
    from dataclasses import replace

    from photosense.gui.settings_dialog import SettingsDialog, UiPrefs
    from photosense.pipeline import load_engine_config

    window = open_window(qtbot, scored_library, tiny_config)
    try:
        dlg = SettingsDialog(window, window.engine_config, window.prefs)
        dlg.max_side.setValue(512)
        dlg.thumb_size.setValue(240)
        dlg.auto_advance.setChecked(True)
        window.apply_settings(dlg.engine_config(), dlg.prefs())
        if window._score_job is not None:
            window._score_job.cancel()
        wait_idle(qtbot, window, timeout=60000)
        assert load_engine_config(scored_library).max_side == 512
        prefs = UiPrefs.load()
        assert prefs.thumb_size == 240 and prefs.auto_advance
        assert window.view.gridSize().width() > 240
        assert replace(prefs) == window.prefs
    finally:
        window.shutdown()


def test_model_fetches_rows_lazily(qtbot, qtmodeltester, scored_library, monkeypatch):
    """With small pages and batches the model exposes rows in steps and reads pages on demand."""
    from photosense.gui import photo_model
    from photosense.gui.jobs import SerialExecutor
    from photosense.gui.photo_model import PhotoListModel, RowRole
    from photosense.gui.thumbnails import ThumbnailLoader
    from photosense.library import PhotoQuery

    monkeypatch.setattr(photo_model, "FETCH_BATCH", 4)
    monkeypatch.setattr(photo_model, "PAGE_SIZE", 3)
    db = SerialExecutor("test")
    thumbs = ThumbnailLoader()
    model = PhotoListModel(scored_library, db, thumbs)
    try:
        with qtbot.waitSignal(model.queryFinished):
            model.set_query(PhotoQuery(sort="quality"))
        assert model.total() == 15 and model.rowCount() == 4
        assert model.canFetchMore(model.index(-1))
        model.fetchMore(model.index(-1))
        assert model.rowCount() == 8
        assert model.index(7).data(RowRole) is None  # page not read yet
        qtbot.waitUntil(lambda: model.index(7).data(RowRole) is not None)
        assert model.index(7).data(RowRole).id == model.ids[7]
        qtmodeltester.check(model)
    finally:
        thumbs.shutdown()
        db.shutdown()


def test_a_search_before_anything_is_scored_says_so_and_is_no_problem(qtbot, unscored_library, tiny_config,
                                                                     caplog):
    """A state of the library, in the window's words: no CLI command, nothing in Problems,
    no warning in the log."""
    window = open_window(qtbot, unscored_library, tiny_config)
    try:
        with caplog.at_level(logging.INFO, logger="photosense.jobs"):
            job = window.run_search("a red rocket")
            wait_finished(qtbot, job)
        assert [r.levelno for r in caplog.records if "nothing scored" in r.getMessage()] == [logging.INFO]
        message = window.statusBar().currentMessage()
        assert message.startswith("Nothing to search yet") and "photosense score" not in message
        assert window.problems == [] and window.model.arrangement.ranking is None
    finally:
        window.shutdown()


def test_problems_are_listed_once_clear_when_fixed_and_the_dialog_copies_and_closes(
        qtbot, unscored_library, tiny_config, tmp_path):
    """Missing weights: one problem however often scoring is tried; setting a weights file
    that loads clears it; the dialog's text can be copied and the dialog closed."""
    from dataclasses import replace

    from PySide6.QtGui import QGuiApplication

    missing = replace(tiny_config, weights=str(tmp_path / "missing.safetensors"))
    window = open_window(qtbot, unscored_library, missing)
    try:
        attempts = []
        for _ in range(2):
            job = window.start_scoring()
            attempts.append(job)
            qtbot.waitUntil(lambda job=job: job.core.finished and window._score_job is None, timeout=30000)
        assert attempts[0] is not attempts[1]
        assert len(window.problems) == 1 and window.problems[0].startswith("Scoring is off")
        assert window.problems_button.isVisible() and window.problems_button.text() == "⚠ 1 problem"
        dialog = window.show_problems()
        assert "missing.safetensors" in dialog.text.toPlainText()
        dialog.copy_button.click()
        assert QGuiApplication.clipboard().text() == window.problem_log.text()
        dialog.close_button.click()
        assert not dialog.isVisible()

        window.apply_settings(tiny_config, window.prefs)  # Settings: a weights file that loads
        qtbot.waitUntil(lambda: window.problems == [], timeout=60000)
        qtbot.waitUntil(lambda: not window.problems_button.isVisible(), timeout=5000)
    finally:
        window.shutdown()


def test_adding_a_folder_scores_its_photos_while_the_scan_reads_it(qtbot, tmp_path, shoot_folder, tiny_config,
                                                                   monkeypatch):
    """The scan's first write starts scoring, which follows the scan: the first scores are
    stored before the scan of the folder ends (each photo is slow to read here)."""
    from photosense.ingest import scan as scan_module

    read = scan_module.analyse_file

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return read(*args, **kwargs)

    from photosense.scoring.clipiqa import ClipIQAEngine

    engine = ClipIQAEngine(tiny_config).load()  # as after the window's first scoring run
    monkeypatch.setattr(scan_module, "analyse_file", slow)
    lib = Library(tmp_path / "new.sqlite3")
    window = open_window(qtbot, lib, tiny_config)
    window.engine = engine
    try:
        scored_during_scan = []
        job = window.add_folder(str(shoot_folder))
        job.progress.connect(lambda _p: scored_during_scan.append(
            (time.monotonic(), window._score_job is not None, any(r.scores for r in lib.rows(lib.query_ids(_all()))))))
        wait_finished(qtbot, job, timeout=60000)
        qtbot.waitUntil(lambda: window._score_job is None and window.model.total() == 15, timeout=60000)
        assert any(s[2] for s in scored_during_scan)  # scores were there while the scan still read
        assert all(len(r.scores) == 12 for r in lib.rows(lib.query_ids(_all())))
    finally:
        window.shutdown()
        lib.close()


def _all():
    from photosense.library import PhotoQuery

    return PhotoQuery()
