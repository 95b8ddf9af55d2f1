"""The background-job contract (photosense.jobs) and the model scheduler, without Qt."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from photosense.errors import PhotosenseError
from photosense.jobs import (
    CANCELLED,
    DONE,
    FAILED,
    Job,
    JobCancelled,
    JobThread,
    ModelScheduler,
    Progress,
    format_rate,
)


def test_a_job_reports_progress_result_and_finished():
    seen = []
    job = Job(lambda ctl: (ctl.progress(Progress("encoding", 1, 2)), 42)[1], "Counting", "count")
    job.on_progress.append(lambda j, p: seen.append(p))
    finished = []
    job.on_finished.append(lambda j: finished.append(j.state))
    job.run()
    assert job.result == 42 and job.state == DONE and job.finished
    assert seen == [Progress("encoding", 1, 2)] and finished == [DONE]


def test_expected_error_is_one_line_and_unexpected_keeps_its_traceback(caplog):
    def expected(ctl):
        raise PhotosenseError("the folder is gone: /x")

    def bug(ctl):
        raise RuntimeError("CUDA out of memory\nmore detail")

    with caplog.at_level(logging.WARNING, logger="photosense.jobs"):
        a, b = Job(expected, "scan", "scan"), Job(bug, "scoring", "scoring")
        a.run()
        b.run()
    assert a.state == FAILED and a.expected and a.error == "the folder is gone: /x"
    assert b.state == FAILED and not b.expected
    assert b.error == "unexpected error (RuntimeError): CUDA out of memory"
    assert "Traceback" in caplog.text and "in bug" in caplog.text
    assert isinstance(b.exception, RuntimeError)


def test_cancel_is_cooperative_and_pause_blocks_at_the_next_checkpoint():
    steps = []
    gate = threading.Event()

    def work(ctl):
        for i in range(1000):
            ctl.check()
            steps.append(i)
            gate.set()
            time.sleep(0.005)

    job = Job(work, "loop", pausable=True)
    t = threading.Thread(target=job.run)
    t.start()
    assert gate.wait(5)
    job.pause()
    time.sleep(0.1)
    frozen = len(steps)
    time.sleep(0.2)
    assert len(steps) <= frozen + 1  # at most the step in flight
    job.cancel()  # wakes the paused job, which then stops
    t.join(5)
    assert not t.is_alive() and job.state == CANCELLED and len(steps) < 1000


def test_pause_is_ignored_where_it_means_nothing():
    job = Job(lambda ctl: None, "report", pausable=False)
    job.pause()
    assert not job.paused


def test_a_thread_survives_a_failing_job_and_runs_the_next():
    runner = JobThread("test-jobs")
    try:
        bad = runner.submit(Job(lambda ctl: 1 / 0, "bad"))
        good = runner.submit(Job(lambda ctl: "ok", "good"))
        assert good.wait(5) and bad.finished
        assert bad.state == FAILED and "ZeroDivisionError" in bad.error
        assert good.result == "ok"
    finally:
        assert runner.shutdown(2)


def test_shutdown_waits_at_most_its_timeout_and_cancels_what_is_queued():
    runner = JobThread("test-stuck")
    release = threading.Event()
    stuck = runner.submit(Job(lambda ctl: release.wait(30), "stuck", cancellable=False))
    queued = runner.submit(Job(lambda ctl: "never", "queued"))
    time.sleep(0.05)
    t0 = time.monotonic()
    stopped = runner.shutdown(0.3)
    assert time.monotonic() - t0 < 1.0 and not stopped
    assert queued.cancel_event.is_set() and stuck.cancel_event.is_set()
    release.set()
    assert queued.wait(5) and queued.state == CANCELLED and queued.result is None


def test_interactive_requests_run_between_two_batches_of_a_long_job():
    scheduler = ModelScheduler("test-model")
    order: list[str] = []
    started = threading.Event()

    def long_run(ctl):
        for batch in range(40):
            ctl.checkpoint()
            order.append(f"batch{batch}")
            started.set()
            time.sleep(0.02)  # one batch of "inference"
        return "scored"

    try:
        run = scheduler.submit(Job(long_run, "Scoring", "scoring", pausable=True))
        assert started.wait(5)
        t0 = time.monotonic()
        search = scheduler.submit(Job(lambda ctl: order.append("search") or "hits", "search"), interactive=True)
        assert search.wait(5)
        waited = time.monotonic() - t0
        assert search.result == "hits" and not run.finished
        assert waited < 0.3  # about one batch, not the rest of the run (0.8 s)
        assert run.wait(10) and run.result == "scored"
        i = order.index("search")
        assert 0 < i < len(order) - 1  # between two batches, and the run went on afterwards
        assert len([o for o in order if o.startswith("batch")]) == 40
    finally:
        scheduler.shutdown(2)


def test_interactive_requests_are_served_while_the_long_job_is_paused():
    scheduler = ModelScheduler("test-model-paused")
    started = threading.Event()

    def long_run(ctl):
        for _ in range(1000):
            ctl.check()
            started.set()
            time.sleep(0.01)

    try:
        run = scheduler.submit(Job(long_run, "Scoring", "scoring", pausable=True))
        assert started.wait(5)
        run.pause()
        search = scheduler.submit(Job(lambda ctl: "hits", "search"), interactive=True)
        assert search.wait(3) and search.result == "hits"
        assert not run.finished and run.paused
        run.cancel()
        assert run.wait(3)
    finally:
        scheduler.shutdown(2)


def test_rate_below_one_per_second_reads_as_time_per_photo():
    assert format_rate(0.04) == "one photo every 25s"
    assert format_rate(3.25) == "3.2 photos/s"
    assert format_rate(0.0) == ""
    assert Progress("encoding", 12, 60, 0.04, 1200).text() == "12 of 60 scored — one photo every 25s, 20m00s left"
    assert "0.0" not in Progress("encoding", 1, 60, 0.01, None).line()


def test_job_cancelled_before_it_starts_does_not_run():
    ran = []
    job = Job(lambda ctl: ran.append(1), "x")
    job.cancel()
    job.run()
    assert job.state == CANCELLED and not ran


def test_check_raises_job_cancelled():
    job = Job(lambda ctl: None, "x")
    from photosense.jobs import JobControl

    ctl = JobControl(job)
    job.cancel()
    with pytest.raises(JobCancelled):
        ctl.check()


def test_watch_scoring_thread_survives_an_unexpected_error(tmp_path, photo_folder, tiny_config, real_photos,
                                                           monkeypatch):
    """A RuntimeError (CUDA out of memory, say) ends that run, is reported, and the next batch
    of new photos is scored: the scoring thread does not die."""
    from photosense import service as service_module
    from photosense.library import Library, PhotoQuery
    from photosense.service import ServiceEvents, WatchService

    original = service_module.ScoringJob.run
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(service_module.ScoringJob, "run", flaky)
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(photo_folder)
    errors, scored = [], []
    service = WatchService(lib, tiny_config, ServiceEvents(error=errors.append, scored=scored.append),
                           debounce=0.3)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert errors == ["scoring failed: unexpected error (RuntimeError): CUDA out of memory"]
        real_photos["coffee"].save(photo_folder / "later.jpg")  # new work wakes the scorer again
        # The next runs (more of the first scan's photos, or later.jpg) score everything.
        while sum(r.encoded for r in scored) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(r.encoded for r in scored) == 16 and len(errors) == 1
        assert all(len(r.scores) == 12 for r in lib.query(PhotoQuery()))
    finally:
        service.stop()
        lib.close()


def test_a_failure_after_cancel_is_the_cancels_consequence(caplog):
    """Closing the window cancels jobs and closes the library under them: what fails then is
    not reported as a bug (no traceback, no Problems entry)."""
    from photosense.jobs import CANCELLED, Job

    def work(ctl):
        ctl.cancel.set()  # what Job.cancel() does, from the window's shutdown
        raise RuntimeError("Internal C++ object already deleted")

    job = Job(work, "Histogram", "query")
    with caplog.at_level("INFO", logger="photosense.jobs"):
        job.run()
    assert job.state == CANCELLED and job.error is None
    assert "Traceback" not in caplog.text and "cancelled (then" in caplog.text
