"""Exporting picks / top-N photos from a real temporary library."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from photosense.curation import ExportOptions, ExportReport, export_photos
from photosense.errors import PhotosenseError
from photosense.library import FLAG_PICK, FLAG_REJECT, Library, PhotoQuery, ScanRecord


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """name -> (content hash, mtime_ns) of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (_digest(p), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _write(path: Path, data: bytes, mtime: float = 1_600_000_000.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def _add(lib: Library, folder: Path, files: dict[str, tuple[bytes, float]]) -> dict[str, int]:
    """Write files (name -> (content, sharpness)) into ``folder`` and record them as scanned.
    Returns name -> photo id."""
    info = lib.add_folder(folder) if folder.exists() else None
    records = []
    for name, (data, sharpness) in files.items():
        p = _write(folder / name, data)
        st = p.stat()
        records.append(ScanRecord(path=os.path.realpath(p), size=st.st_size, mtime=st.st_mtime,
                                  content_hash=_digest(p),
                                  checks={"sharpness": sharpness, "exposure": 0.0, "noise": 1.0}))
    if info is None:
        info = lib.add_folder(folder)
    lib.upsert_scanned(info.id, records)
    ids = lib.resolve_paths([os.path.realpath(folder / n) for n in files])
    return {os.path.basename(p): i for p, i in ids.items()}


@pytest.fixture
def shoot(tmp_path, lib):
    """Six small files in tmp/shoot with sharpness 1..6; b, d, f picked, a rejected."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    files = {f"{c}.jpg": (f"photo {c} ".encode() * (i + 10), float(i + 1))
             for i, c in enumerate("abcdef")}
    ids = _add(lib, folder, files)
    lib.set_culling([ids["b.jpg"], ids["d.jpg"], ids["f.jpg"]], flag=FLAG_PICK)
    lib.set_culling([ids["a.jpg"]], flag=FLAG_REJECT)
    return folder, ids


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_exports_exactly_the_picks_and_keeps_originals(tmp_path, lib, shoot):
    folder, _ = shoot
    before = _snapshot(folder)
    dest = tmp_path / "out" / "nested"
    report = export_photos(lib, ExportOptions(dest=dest))
    assert _names(dest) == {"b.jpg", "d.jpg", "f.jpg"}
    assert (report.copied, report.linked, report.renamed) == (3, 0, 0)
    assert report.skipped == [] and report.errors == [] and not report.cancelled
    assert _snapshot(folder) == before  # originals byte-identical, mtimes unchanged
    for name in ("b.jpg", "d.jpg", "f.jpg"):
        assert (dest / name).read_bytes() == (folder / name).read_bytes()
        # copy2 keeps the modification time
        assert (dest / name).stat().st_mtime == pytest.approx((folder / name).stat().st_mtime)
    assert "3 copied" in report.summary() and "\n" not in report.summary()


def test_flag_choices(tmp_path, lib, shoot):
    rejects = export_photos(lib, ExportOptions(dest=tmp_path / "r", flag="reject"))
    assert _names(tmp_path / "r") == {"a.jpg"} and rejects.copied == 1
    unflagged = export_photos(lib, ExportOptions(dest=tmp_path / "n", flag="none"))
    assert _names(tmp_path / "n") == {"c.jpg", "e.jpg"} and unflagged.copied == 2
    everything = export_photos(lib, ExportOptions(dest=tmp_path / "all", flag=None))
    assert everything.copied == 6


def test_top_n_and_top_percent_by_a_check(tmp_path, lib, shoot):
    report = export_photos(lib, ExportOptions(dest=tmp_path / "t2", flag=None, top=2, by="sharpness"))
    assert _names(tmp_path / "t2") == {"e.jpg", "f.jpg"} and report.copied == 2
    # Top 2 among the picks (b=2, d=4, f=6)
    export_photos(lib, ExportOptions(dest=tmp_path / "p2", flag="pick", top=2, by="sharpness"))
    assert _names(tmp_path / "p2") == {"d.jpg", "f.jpg"}
    # 50 % of six photos = three
    export_photos(lib, ExportOptions(dest=tmp_path / "half", flag=None, top_percent=50, by="sharpness"))
    assert _names(tmp_path / "half") == {"d.jpg", "e.jpg", "f.jpg"}
    # noise is ranked least-noisy first; all equal here, so any two, but exactly two
    export_photos(lib, ExportOptions(dest=tmp_path / "noise", flag=None, top=2, by="noise"))
    assert len(_names(tmp_path / "noise")) == 2


def test_query_filters_combine_with_the_flag(tmp_path, lib, shoot):
    query = PhotoQuery(ranges={"sharpness": (3.5, None)})
    export_photos(lib, ExportOptions(dest=tmp_path / "q", flag="pick", query=query))
    assert _names(tmp_path / "q") == {"d.jpg", "f.jpg"}


def test_invalid_options_are_refused(tmp_path, lib, shoot):
    with pytest.raises(PhotosenseError, match="rank"):
        export_photos(lib, ExportOptions(dest=tmp_path / "x", top=3))
    with pytest.raises(PhotosenseError, match="not both"):
        export_photos(lib, ExportOptions(dest=tmp_path / "x", top=3, top_percent=5, by="sharpness"))
    with pytest.raises(PhotosenseError, match="unknown attribute"):
        export_photos(lib, ExportOptions(dest=tmp_path / "x", top=3, by="nonsense"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(PhotosenseError, match="not a folder"):
        export_photos(lib, ExportOptions(dest=tmp_path / "file"))
    assert not (tmp_path / "x").exists()


def test_link_mode_makes_hard_links(tmp_path, lib, shoot):
    folder, _ = shoot
    dest = tmp_path / "linked"
    report = export_photos(lib, ExportOptions(dest=dest, link=True))
    assert report.linked == 3 and report.copied == 0
    for name in ("b.jpg", "d.jpg", "f.jpg"):
        assert (dest / name).stat().st_ino == (folder / name).stat().st_ino
    again = export_photos(lib, ExportOptions(dest=dest, link=True))
    assert again.linked == 0 and len(again.skipped) == 3
    assert _names(dest) == {"b.jpg", "d.jpg", "f.jpg"}


def test_name_collisions_between_folders_and_with_existing_files(tmp_path, lib):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    ids = _add(lib, one, {"IMG_0001.jpg": (b"first photo", 1.0)})
    ids2 = _add(lib, two, {"IMG_0001.jpg": (b"second photo, different", 2.0)})
    lib.set_culling([*ids.values(), *ids2.values()], flag=FLAG_PICK)
    dest = tmp_path / "dest"
    _write(dest / "IMG_0001.jpg", b"something the user already had")
    existing_before = _snapshot(dest)

    report = export_photos(lib, ExportOptions(dest=dest))
    assert report.copied == 2 and report.renamed == 2
    assert _names(dest) == {"IMG_0001.jpg", "IMG_0001-1.jpg", "IMG_0001-2.jpg"}
    assert (dest / "IMG_0001.jpg").read_bytes() == b"something the user already had"
    assert _snapshot(dest)["IMG_0001.jpg"] == existing_before["IMG_0001.jpg"]
    exported = {(dest / n).read_bytes() for n in ("IMG_0001-1.jpg", "IMG_0001-2.jpg")}
    assert exported == {b"first photo", b"second photo, different"}

    # Re-running the same export adds nothing and reports both as already there.
    again = export_photos(lib, ExportOptions(dest=dest))
    assert (again.copied, again.renamed) == (0, 0)
    assert len(again.skipped) == 2 and all("identical" in r for _, r in again.skipped)
    assert _names(dest) == {"IMG_0001.jpg", "IMG_0001-1.jpg", "IMG_0001-2.jpg"}
    assert not [n for n in _names(dest) if n.startswith(".")]  # no temporary files left


def test_rerun_is_idempotent(tmp_path, lib, shoot):
    dest = tmp_path / "out"
    first = export_photos(lib, ExportOptions(dest=dest))
    snap = _snapshot(dest)
    second = export_photos(lib, ExportOptions(dest=dest))
    assert first.copied == 3 and second.copied == 0 and len(second.skipped) == 3
    assert _snapshot(dest) == snap


def test_sidecars_follow_their_photo(tmp_path, lib):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _write(one / "IMG_0001.xmp", b"<xmp one/>")
    _write(two / "IMG_0001.JPG.xmp", b"<xmp two/>")
    _write(two / "IMG_0001.xmp.bak", b"not a sidecar")
    ids = _add(lib, one, {"IMG_0001.JPG": (b"one", 1.0)})
    ids2 = _add(lib, two, {"IMG_0001.JPG": (b"two", 1.0)})
    lib.set_culling([*ids.values(), *ids2.values()], flag=FLAG_PICK)
    dest = tmp_path / "dest"
    report = export_photos(lib, ExportOptions(dest=dest))
    assert report.sidecars == 2
    assert _names(dest) == {"IMG_0001.JPG", "IMG_0001.xmp", "IMG_0001-1.JPG", "IMG_0001-1.JPG.xmp"}
    assert (dest / "IMG_0001.xmp").read_bytes() == b"<xmp one/>"
    assert (dest / "IMG_0001-1.JPG.xmp").read_bytes() == b"<xmp two/>"
    again = export_photos(lib, ExportOptions(dest=dest))
    assert again.sidecars == 0 and again.errors == []


def test_missing_source_is_reported_and_skipped(tmp_path, lib, shoot):
    folder, ids = shoot
    (folder / "d.jpg").unlink()  # gone since the last scan, the library does not know yet
    lib.set_missing([os.path.realpath(folder / "f.jpg")], True)  # known to be missing
    dest = tmp_path / "out"
    report = export_photos(lib, ExportOptions(dest=dest))
    assert _names(dest) == {"b.jpg"}
    reasons = dict(report.skipped)
    assert "missing" in reasons[os.path.realpath(folder / "d.jpg")]
    assert "missing" in reasons[os.path.realpath(folder / "f.jpg")]
    assert report.copied == 1 and report.errors == []
    # include_missing tries photos marked missing: f.jpg is still on disk, so it comes back.
    report = export_photos(lib, ExportOptions(dest=dest, include_missing=True))
    assert report.copied == 1 and _names(dest) == {"b.jpg", "f.jpg"}


def test_cancel_and_progress(tmp_path, lib, shoot):
    cancel = threading.Event()
    calls = []

    def progress(done, total):
        calls.append((done, total))
        if done == 1:
            cancel.set()

    dest = tmp_path / "out"
    report = export_photos(lib, ExportOptions(dest=dest, flag=None), progress, cancel)
    assert report.cancelled and report.copied == 1
    assert calls == [(0, 6), (1, 6)]
    assert len(_names(dest)) == 1
    assert "cancelled" in report.summary()


def _failing_copy(fail_name: str, err: int):
    import shutil

    real_copy2 = shutil.copy2

    def copy2(src, dst, *a, **kw):
        if os.path.basename(src) == fail_name:
            real_copy2(src, dst, *a, **kw)  # a partial temporary file exists when it fails
            raise OSError(err, os.strerror(err))
        return real_copy2(src, dst, *a, **kw)

    return copy2


def test_copy_failure_is_an_error_and_leaves_no_partial_file(tmp_path, lib, shoot, monkeypatch):
    import errno

    monkeypatch.setattr("shutil.copy2", _failing_copy("b.jpg", errno.EIO))
    report = export_photos(lib, ExportOptions(dest=tmp_path / "out"))
    assert report.copied == 2 and len(report.errors) == 1
    assert report.errors[0][0].endswith("b.jpg") and "error" in report.errors[0][1].lower()
    assert _names(tmp_path / "out") == {"d.jpg", "f.jpg"}  # no temporary file, no half b.jpg


def test_full_disk_stops_the_export(tmp_path, lib, shoot, monkeypatch):
    import errno

    monkeypatch.setattr("shutil.copy2", _failing_copy("d.jpg", errno.ENOSPC))
    report = export_photos(lib, ExportOptions(dest=tmp_path / "out"))
    assert report.copied == 1 and len(report.errors) == 1 and "full" in report.errors[0][1]
    assert _names(tmp_path / "out") == {"b.jpg"}


def test_real_scan_top_sharpness(tmp_path, lib, photo_folder):
    """With a real scan, the top photos by sharpness are never the blurred copies."""
    from photosense.ingest.scan import Scanner

    lib.add_folder(photo_folder)
    Scanner(lib, workers=2).scan_all()
    before = _snapshot(photo_folder)
    report = export_photos(lib, ExportOptions(dest=tmp_path / "sharp", flag=None, top=3, by="sharpness"))
    names = _names(tmp_path / "sharp")
    assert report.copied == 3 and len(names) == 3
    assert not any("_blur" in n for n in names)
    bottom = sorted(lib.query(PhotoQuery(sort="sharpness", descending=False)),
                    key=lambda r: r.checks["sharpness"])[:3]
    assert any("_blur" in r.name for r in bottom)
    assert _snapshot(photo_folder) == before


def test_report_summary_is_one_line():
    report = ExportReport(copied=2, linked=1, renamed=1, skipped=[("a", "b")], dest=Path("/x"))
    text = report.summary()
    assert "\n" not in text and "2 copied" in text and "1 linked" in text and "1 skipped" in text


def test_export_module_does_not_import_qt():
    import subprocess
    import sys

    code = ("import sys, photosense.curation.export; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'photosense.gui'))]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
