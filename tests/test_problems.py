"""The Problems list (photosense.problems): each distinct problem once, with its subject and
when it was last seen; a problem whose cause is gone leaves the list (issue 9.3)."""

from __future__ import annotations

import re
import threading

from photosense.problems import ProblemLog


def test_the_same_problem_is_listed_once_with_its_count_and_time():
    log = ProblemLog()
    changes = []
    log.listeners.append(lambda: changes.append(len(log)))
    log.report("/shoot/a.jpg: truncated\nimage", kind="scan", subject="/shoot/a.jpg")
    log.report("/shoot/a.jpg: truncated image", kind="scan", subject="/shoot/a.jpg")
    log.report("/shoot/b.jpg: truncated image", kind="scan", subject="/shoot/b.jpg")
    assert log.messages() == ["/shoot/a.jpg: truncated image", "/shoot/b.jpg: truncated image"]
    first, second = log.text().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d  /shoot/a\.jpg: truncated image \(×2\)", first)
    assert re.fullmatch(r"\d\d:\d\d:\d\d  /shoot/b\.jpg: truncated image", second)
    assert changes == [1, 1, 2]


def test_a_problem_whose_cause_is_gone_leaves_the_list():
    log = ProblemLog()
    log.report("Scoring is off: no weights", kind="model")
    log.report("XMP sidecar /s/a.xmp: read-only", kind="xmp", subject="/s/a.xmp")
    log.report("XMP sidecar /s/b.xmp: read-only", kind="xmp", subject="/s/b.xmp")
    assert log.resolve("xmp", "/s/a.xmp") == 1  # that sidecar was written after all
    assert log.messages() == ["Scoring is off: no weights", "XMP sidecar /s/b.xmp: read-only"]
    assert log.resolve("model") == 1 and log.resolve("model") == 0  # the weights load now
    assert log.messages() == ["XMP sidecar /s/b.xmp: read-only"]


def test_reports_from_many_threads_are_each_kept_once():
    log = ProblemLog()

    def report(n: int) -> None:
        for i in range(200):
            log.report(f"problem {i % 10}", kind="scan")

    threads = [threading.Thread(target=report, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log) == 10 and sum(p.count for p in log.items()) == 800
