"""Freed memory is kept for the next photo instead of being faulted in again (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from photosense import allocator

# A photo's worth of temporaries, allocated and freed photo after photo: how many pages does
# the process fault in again for them once it is warm?
_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from photosense import allocator
    assert allocator.tune()
def photo():
    luma = np.ones((683, 1024), np.float32)
    parts = [luma[1:] + luma[:-1] for _ in range(4)]
    return float(sum(p.sum() for p in parts))
photo()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    photo()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or allocator._glibc() is None,
                           reason="mallopt is glibc's (Linux); elsewhere tune() does nothing")


def _faults_per_photo(mode: str, **env) -> float:
    clean = {k: v for k, v in os.environ.items() if k not in allocator._USER_SETTINGS}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         env={**clean, **env}, check=True)
    return float(out.stdout.strip())


@glibc
def test_tuned_process_reuses_a_photos_freed_memory_instead_of_faulting_it_in_again():
    untuned = _faults_per_photo("plain")
    tuned = _faults_per_photo("tuned")
    # ~11 MB of arrays a photo: glibc's defaults return them, ~2,700 pages faulted again.
    assert untuned > 1000
    assert tuned < 50


@pytest.mark.parametrize("setting", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"])
def test_tune_leaves_glibcs_own_settings_to_the_user(monkeypatch, setting):
    monkeypatch.setattr(allocator, "_tuned", False)
    monkeypatch.setattr(allocator, "_glibc", lambda: pytest.fail("mallopt called"))
    assert allocator.tune({setting: "1000"}) is False


def test_tune_does_nothing_off_linux(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    monkeypatch.setattr(allocator, "_glibc", lambda: pytest.fail("mallopt called"))
    assert allocator.tune({}) is False


def test_the_command_line_tunes_before_it_reads_a_photo(monkeypatch):
    from photosense import cli

    calls = []
    monkeypatch.setattr(allocator, "tune", lambda: calls.append("tune") or True)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls == ["tune"]
