"""Hostile and broken sidecars, and writes killed half-way: a bad sidecar is reported and skipped
without losing any other sidecar's culling, a huge one never hangs, a killed write never leaves a
partial sidecar, and the temporary files it leaves are swept (only photosense's own)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photosense import fsutil
from photosense.cli import main
from photosense.curation import xmp
from photosense.ingest.scan import Scanner
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT, Library, PhotoQuery

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(__file__).parent / "data" / "sidecars"


def sidecar_text(attrs: str = "", body: str = "") -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:digiKam="http://www.digikam.org/ns/1.0/" '
        'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
        'xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/" '
        'xmlns:darktable="http://darktable.sf.net/" xmlns:photosense="https://photosense.app/ns/1.0/" '
        f'{attrs}>{body}</rdf:Description></rdf:RDF></x:xmpmeta>')


def dt_labels(*items: str) -> str:
    lis = "".join(f"<rdf:li>{i}</rdf:li>" for i in items)
    return f"<darktable:colorlabels><rdf:Seq>{lis}</rdf:Seq></darktable:colorlabels>"


@pytest.fixture
def shoot(tmp_path, real_photos) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = real_photos[name]
        img.resize((img.width // 8, img.height // 8)).save(folder / f"{name}.jpg", quality=85)
    return folder


def _state(lib: Library, pid: int) -> tuple:
    row = lib.rows([pid])[0]
    return row.flag, row.rating, row.color_label


def _ids(lib: Library) -> dict[str, int]:
    return {r.name: r.id for r in lib.query(PhotoQuery())}


# -- values -------------------------------------------------------------------------------

BAD_VALUES = [
    *((f'xmp:Rating="{v}"', "xmp:Rating", "") for v in
      ("inf", "-inf", "nan", "NaN", "1e999", "999", "6", "-7", "-0.5", "abc", "0x3", "3,5", "１",
       "9" * 40)),
    *((f'digiKam:PickLabel="{v}"', "digiKam:PickLabel", "") for v in
      ("inf", "nan", "4", "-1", "1.5", "99999999999999999999", "yes")),
    *((f'digiKam:ColorLabel="{v}"', "digiKam:ColorLabel", "") for v in ("inf", "10", "-1", "red")),
    *((f'photoshop:Urgency="{v}"', "photoshop:Urgency", "") for v in ("inf", "12", "-3")),
    *((f'MicrosoftPhoto:Rating="{v}"', "MicrosoftPhoto:Rating", "") for v in
      ("inf", "101", "-5", "50.5")),
    *(("", "darktable:colorlabels", dt_labels("1", v)) for v in ("inf", "-1", "10", "x", "1e3")),
    *((f'photosense:ratingBeforeReject="{v}"', "photosense:ratingBeforeReject", "") for v in
      ("inf", "6", "-1")),
    # the wrong type: a list where a value belongs
    ("", "xmp:Rating", "<xmp:Rating><rdf:Bag><rdf:li>3</rdf:li></rdf:Bag></xmp:Rating>"),
    ("", "digiKam:PickLabel", "<digiKam:PickLabel><rdf:Seq><rdf:li>1</rdf:li></rdf:Seq>"
                              "</digiKam:PickLabel>"),
]


@pytest.mark.parametrize("attrs,field,body", BAD_VALUES)
def test_every_bad_value_is_refused_with_its_field(tmp_path, attrs, field, body):
    path = tmp_path / "bad.xmp"
    path.write_text(sidecar_text(attrs, body), encoding="utf-8")
    with pytest.raises(xmp.SidecarError) as caught:
        xmp.read_sidecar(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {field} ") and "\n" not in message


@pytest.mark.parametrize("attrs,body,state", [
    ('xmp:Rating="3.0"', "", xmp.SidecarState(3, None, FLAG_NONE)),
    ('xmp:Rating=" 4 "', "", xmp.SidecarState(4, None, FLAG_NONE)),
    ('xmp:Rating="2.5"', "", xmp.SidecarState(3, None, FLAG_NONE)),
    ('xmp:Rating="+5"', "", xmp.SidecarState(5, None, FLAG_NONE)),
    ('xmp:Rating="-1"', "", xmp.SidecarState(None, None, FLAG_REJECT)),
    ('xmp:Rating="-1" photosense:ratingBeforeReject="4"', "", xmp.SidecarState(4, None, FLAG_REJECT)),
    ('xmp:Rating="-1" MicrosoftPhoto:Rating="50"', "", xmp.SidecarState(3, None, FLAG_REJECT)),
    ('MicrosoftPhoto:Rating="99"', "", xmp.SidecarState(5, None, FLAG_NONE)),
    ('xmp:Rating="" digiKam:PickLabel="2" digiKam:ColorLabel="9"', "",
     xmp.SidecarState(0, None, FLAG_NONE)),  # pending, white: none that photosense has
    ('digiKam:ColorLabel="6"', "", xmp.SidecarState(0, "purple", FLAG_NONE)),
    ('photoshop:Urgency="5"', "", xmp.SidecarState(0, "blue", FLAG_NONE)),  # digiKam's ns is there
    ('xmp:Label="To Do"', "", xmp.SidecarState(0, "purple", FLAG_NONE)),  # Bridge's purple
    ("", dt_labels("7", "2"), xmp.SidecarState(0, "green", FLAG_NONE)),
])
def test_valid_values(tmp_path, attrs, body, state):
    path = tmp_path / "ok.xmp"
    path.write_text(sidecar_text(attrs, body), encoding="utf-8")
    assert xmp.read_sidecar(path) == state


def test_one_bad_sidecar_loses_no_other_sidecars_culling(lib, shoot):
    """Issue 7.2: ``xmp:Rating="inf"`` used to abort the whole batch, and mark every sidecar
    read, so that none was ever imported."""
    (shoot / "astronaut.jpg.xmp").write_text(sidecar_text('xmp:Rating="inf"'))
    (shoot / "coffee.jpg.xmp").write_text((SAMPLES / "darktable.xmp").read_text())
    (shoot / "chelsea.jpg.xmp").write_text(sidecar_text('xmp:Rating="4" digiKam:PickLabel="3"'))
    lib.add_folder(shoot)
    report = Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    assert report.added == 4
    assert _state(lib, ids["coffee.jpg"]) == (FLAG_NONE, 1, "yellow")
    assert _state(lib, ids["chelsea.jpg"]) == (FLAG_PICK, 4, None)
    assert _state(lib, ids["astronaut.jpg"]) == (FLAG_NONE, 0, None)
    bad = str(shoot / "astronaut.jpg.xmp")
    assert report.errors == [(bad, "xmp:Rating is 'inf', not a rating from 0 to 5 or -1 "
                                   "(rejected); the sidecar is not used")]
    marks = lib.sidecar_marks(lib.folders()[0].id)
    assert bad not in marks and str(shoot / "coffee.jpg.xmp") in marks

    # Fixed in another app: the next scan reads it (the photo itself did not change).
    (shoot / "astronaut.jpg.xmp").write_text(sidecar_text('xmp:Rating="5" xmp:Label="Red"'))
    report = Scanner(lib, workers=1).scan_all()
    assert report.errors == [] and report.unchanged == 4
    assert _state(lib, ids["astronaut.jpg"]) == (FLAG_NONE, 5, "red")
    assert bad in lib.sidecar_marks(lib.folders()[0].id)


def test_a_bad_edit_of_a_known_sidecar_is_retried_until_fixed(lib, shoot):
    lib.add_folder(shoot)
    Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    # Edited elsewhere after the first scan: one bad, one good.
    (shoot / "rocket.xmp").write_text(sidecar_text('digiKam:PickLabel="inf"'))
    (shoot / "coffee.jpg.xmp").write_text(sidecar_text('xmp:Rating="-1"'))
    report = Scanner(lib, workers=1).scan_all()
    assert [p for p, _ in report.errors] == [str(shoot / "rocket.xmp")]
    assert "digiKam:PickLabel is 'inf'" in report.errors[0][1]
    assert _state(lib, ids["coffee.jpg"]) == (FLAG_REJECT, 0, None)
    # Still bad: reported again (never silently marked read).
    assert len(Scanner(lib, workers=1).scan_all().errors) == 1
    # The watcher's path reports it too.
    report = Scanner(lib).scan_paths([str(shoot / "rocket.xmp")])
    assert [p for p, _ in report.errors] == [str(shoot / "rocket.xmp")]
    (shoot / "rocket.xmp").write_text(sidecar_text('digiKam:PickLabel="1"'))
    report = Scanner(lib).scan_paths([str(shoot / "rocket.xmp")])
    assert report.errors == [] and _state(lib, ids["rocket.jpg"])[0] == FLAG_REJECT
    # Removed instead: nothing to report.
    (shoot / "rocket.xmp").unlink()
    assert Scanner(lib, workers=1).scan_all().errors == []


def test_xmp_read_command_reports_bad_sidecars_and_imports_the_rest(lib, shoot, capsys):
    lib.add_folder(shoot)
    Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    (shoot / "astronaut.jpg.xmp").write_text(sidecar_text('xmp:Rating="nan"'))
    (shoot / "coffee.jpg.xmp").write_text(sidecar_text('xmp:Rating="2"'))
    code = main(["xmp", "read", "--library", str(lib.path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "skipped" in err and "astronaut.jpg.xmp: xmp:Rating is 'nan'" in err
    assert "1 photo updated from sidecars, 1 sidecar skipped" in err
    assert _state(lib, ids["coffee.jpg"]) == (FLAG_NONE, 2, None)


def test_a_sidecar_with_a_bad_value_is_never_overwritten(lib, shoot):
    lib.add_folder(shoot)
    Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    bad = shoot / "coffee.jpg.xmp"
    bad.write_text(sidecar_text('xmp:Rating="2" digiKam:ColorLabel="inf"'))
    before = bad.read_bytes()
    lib.set_culling([ids["coffee.jpg"], ids["rocket.jpg"]], flag=FLAG_PICK)
    report = xmp.write_sidecars(lib, [ids["coffee.jpg"], ids["rocket.jpg"]])
    assert report.photos == 1 and [p for p, _ in report.errors] == [str(shoot / "coffee.jpg")]
    assert "digiKam:ColorLabel is 'inf'" in report.errors[0][1]
    assert bad.read_bytes() == before


# -- size ---------------------------------------------------------------------------------

def test_a_16_mb_sidecar_is_refused_at_once(lib, shoot):
    """Issue 7.3: parse time grew with the square of the size (16 MB: 84 s)."""
    lib.add_folder(shoot)
    Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    huge = shoot / "chelsea.jpg.xmp"
    huge.write_text(sidecar_text('xmp:Rating="5" xmp:Junk="' + "a" * (16 * 1024 * 1024) + '"'))
    size = huge.stat().st_size
    started = time.perf_counter()
    with pytest.raises(xmp.SidecarError, match=r"16\.0 MB is too large for an XMP sidecar "
                                                r"\(the limit is 4 MB\); not read"):
        xmp.read_sidecar(huge)
    print(f"16 MB sidecar refused in {time.perf_counter() - started:.4f} s")
    # On scan: one per-file message; on write: not overwritten.
    report = Scanner(lib, workers=1).scan_all()
    assert [p for p, _ in report.errors] == [str(huge)] and "too large" in report.errors[0][1]
    lib.set_culling([ids["chelsea.jpg"]], rating=1)
    report = xmp.write_sidecars(lib, [ids["chelsea.jpg"]])
    assert "too large" in report.errors[0][1] and huge.stat().st_size == size


def test_a_large_sidecar_under_the_limit_is_parsed_in_one_feed(tmp_path, monkeypatch):
    """Chunked expat feeding re-scans an unfinished token: a 3.9 MB attribute took seconds.
    One feed reads it linearly (checked by counting feeds, not by timing)."""
    path = tmp_path / "big.xmp"
    path.write_text(sidecar_text('xmp:Rating="2" xmp:Junk="' + "b" * (3_900_000) + '"'))
    feeds = []
    real = xmp.ET.XMLParser

    class Counting(real):
        def feed(self, data):
            feeds.append(len(data))
            return super().feed(data)

    monkeypatch.setattr(xmp.ET, "XMLParser", Counting)
    started = time.perf_counter()
    assert xmp.read_sidecar(path) == xmp.SidecarState(2, None, FLAG_NONE)
    print(f"3.9 MB sidecar parsed in {time.perf_counter() - started:.3f} s")
    assert feeds == [path.stat().st_size]


def test_deep_nesting_and_special_files_are_refused(tmp_path):
    deep = tmp_path / "deep.xmp"
    deep.write_text('<x:xmpmeta xmlns:x="adobe:ns:meta/">' + "<a>" * 20000 + "</a>" * 20000
                    + "</x:xmpmeta>")
    with pytest.raises(xmp.SidecarError, match="nested more than 100 deep"):
        xmp.read_sidecar(deep)
    fifo = tmp_path / "fifo.xmp"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(xmp.SidecarError, match="not a regular file"):
        xmp.read_sidecar(fifo)


# -- temporary files of killed writes -----------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_only_photosenses_own_stale_temporaries_are_swept(tmp_path):
    suffix = fsutil._temp_suffix()  # ".ps-HOST-PID.tmp" of this process
    host = suffix.split("-")[1]
    dead = _dead_pid()
    minute, days = 120, 3 * 24 * 3600
    files = {  # name -> (age in seconds, content, swept?)
        f".a.jpg.xmp.k3j5h2g1.ps-{host}-{dead}.tmp": (minute, "<x:xmpmeta", True),
        f".b.jpg.xmp.k3j5h2g1.ps-{host}-{dead}.tmp": (5, "<x:x", False),  # too fresh
        f".c.jpg.xmp.k3j5h2g1{suffix}": (minute, "", False),  # its writer (us) still runs
        f".d.jpg.xmp.k3j5h2g1{suffix}": (days, "", True),  # abandoned
        f".e.xmp.k3j5h2g1.ps-abcdef-{dead}.tmp": (minute, "", False),  # another machine's
        f".f.xmp.k3j5h2g1.ps-abcdef-{dead}.tmp": (days, "", True),
        ".g.jpg.xmp.q8w7e6r5.tmp": (days, "<?xpacket", True),  # an older photosense's
        ".h.jpg.xmp.q8w7e6r5.tmp": (minute, "<?xpacket", False),
        ".i.jpg.xmp.q8w7e6r5.tmp": (days, "\x00\x01binary", False),  # not XML: not ours
        f".settings-k3j5h2g1.ps-{host}-{dead}.tmp": (days, "", False),  # not a sidecar's
        ".j.jpg.xmp.tmp": (days, "", False),
        "k.jpg.xmp.k3j5h2g1.tmp": (days, "", False),
        f".l.jpg.xmp.k3j5h2g1.ps-{host}-{dead}.tmp.bak": (days, "", False),
        f".m.jpg.xmp.toolong99.ps-{host}-{dead}.tmp": (days, "", False),
    }
    for name, (age, content, _) in files.items():
        (tmp_path / name).write_text(content)
        _age(tmp_path / name, age)
    directory = tmp_path / f".n.jpg.xmp.k3j5h2g1.ps-{host}-{dead}.tmp"
    directory.mkdir()
    _age(directory, days)

    removed = fsutil.sweep_folder(str(tmp_path))

    expected = sorted(n for n, (_, _, swept) in files.items() if swept)
    assert sorted(os.path.basename(p) for p in removed) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [n for n in files if n not in expected] + [directory.name])


_BLOCKED_WRITER = """
import os, sys, time
from photosense.curation import xmp
from photosense.library import Library

def blocked(src, dst):  # the temporary file is complete: hang before it replaces the sidecar
    with open(sys.argv[2], "w") as f:
        f.write(src)
    time.sleep(600)

os.replace = blocked
xmp.write_sidecars(Library(sys.argv[1]))
"""

_LOOPING_WRITER = """
import sys
from photosense.curation import xmp
from photosense.library import Library, PhotoQuery

lib = Library(sys.argv[1])
ids = lib.query_ids(PhotoQuery())
for i in range(100000):
    lib.set_culling(ids, rating=i % 6, color_label=("red", "blue", None)[i % 3])
    xmp.write_sidecars(lib, ids)
    if i == 0:
        open(sys.argv[2], "w").close()
"""


def _spawn(script: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the writer ended before it got there"
        assert time.monotonic() < deadline, "the writer never got there"
        time.sleep(0.02)


def test_kill_9_during_xmp_write_leaves_no_partial_sidecar_and_its_temporary_is_swept(lib, shoot):
    """Issue 7.6: a killed ``xmp write`` left ``.NAME.xmp.XXXX.tmp`` for good."""
    lib.add_folder(shoot)
    Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    lib.set_culling(list(ids.values()), flag=FLAG_PICK, rating=4)
    existing = shoot / "coffee.jpg.xmp"
    existing.write_text((SAMPLES / "darktable.xmp").read_text())
    before = existing.read_bytes()
    marker = shoot.parent / "temporary-path"
    proc = _spawn(_BLOCKED_WRITER, str(lib.path), str(marker))
    try:
        _wait_for(marker, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = Path(marker.read_text())
    assert left.exists() and left.parent == shoot and left.name.endswith(f"-{proc.pid}.tmp")
    # The sidecar is the old one or none, never part of one.
    assert existing.read_bytes() == before
    sidecars = sorted(p.name for p in shoot.glob("*.xmp"))
    assert sidecars in (["coffee.jpg.xmp"], ["astronaut.jpg.xmp", "coffee.jpg.xmp"])
    for p in shoot.glob("*.xmp"):
        xmp.read_sidecar(p)  # complete, valid XMP

    # Right after the kill it is too fresh to judge; a minute later the next write sweeps it.
    xmp.write_sidecars(lib, [ids["rocket.jpg"]])
    assert left.exists()
    _age(left, 120)
    report = xmp.write_sidecars(lib, [ids["rocket.jpg"]])
    assert report.errors == [] and not left.exists()
    assert not [p for p in shoot.iterdir() if p.name.endswith(".tmp")]


def test_a_scan_sweeps_stale_temporaries_of_its_folders(lib, shoot):
    lib.add_folder(shoot)
    sub = shoot / "day2"
    sub.mkdir()
    stale = sub / f".x.jpg.xmp.abcdefgh.ps-{fsutil._temp_suffix().split('-')[1]}-{_dead_pid()}.tmp"
    stale.write_text("<x:xmpmeta")
    _age(stale, 300)
    foreign = sub / ".x.jpg.xmp.tmp"
    foreign.write_text("someone else's")
    _age(foreign, 10 * 24 * 3600)
    Scanner(lib, workers=1).scan_all()
    assert not stale.exists() and foreign.exists()


def test_kill_9_at_random_points_of_repeated_writes_never_leaves_a_partial_sidecar(lib, shoot):
    lib.add_folder(shoot)
    Scanner(lib, workers=1).scan_all()
    ids = _ids(lib)
    rng = random.Random(7)
    for attempt in range(3):
        marker = shoot.parent / f"started-{attempt}"
        proc = _spawn(_LOOPING_WRITER, str(lib.path), str(marker))
        try:
            _wait_for(marker, proc)
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        sidecars = sorted(shoot.glob("*.xmp"))
        assert [p.name for p in sidecars] == sorted(f"{n}.xmp" for n in ids)
        for p in sidecars:
            state = xmp.read_sidecar(p)  # raises for a partial file
            assert state is not None and state.flag == FLAG_NONE
        for p in shoot.iterdir():  # what a kill leaves, if anything: our own temporaries only
            assert p.suffix in (".jpg", ".xmp") or fsutil.is_own_temporary(p.name), p.name
