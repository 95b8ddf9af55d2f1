"""XMP sidecars, checked with exiftool: what a Lightroom, darktable or digiKam user would see.

exiftool is required (Debian: libimage-exiftool-perl; ``.ci/run`` installs it): without it
these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from photosense.cli import main
from photosense.curation import xmp
from photosense.curation.sidecar_job import attach_immediate_writer
from photosense.ingest.scan import Scanner
from photosense.library import (
    FLAG_NONE,
    FLAG_PICK,
    FLAG_REJECT,
    Library,
    PhotoQuery,
    ScanRecord,
)
from photosense.library.models import Photo

TAGS = ("-XMP:Rating", "-XMP:Label", "-XMP-digiKam:PickLabel")

DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
    xmp:Rating="2"
    xmp:CreatorTool="darktable 4.6.1"
    xmpMM:DerivedFrom="{name}"
    darktable:xmp_version="5"
    darktable:auto_presets_applied="1">
   <darktable:colorlabels>
    <rdf:Seq>
     <rdf:li>3</rdf:li>
    </rdf:Seq>
   </darktable:colorlabels>
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="exposure" darktable:enabled="1"
      darktable:params="0000000000000000"/>
    </rdf:Seq>
   </darktable:history>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>beach</rdf:li>
     <rdf:li>sunset &amp; sea</rdf:li>
    </rdf:Bag>
   </dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

# Lightroom: an xpacket wrapper, properties both as attributes and as child elements, two
# Descriptions, the old "xap" prefix, a comment and padding before the trailer.
LIGHTROOM_SIDECAR = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xap="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xap:CreatorTool="Adobe Photoshop Lightroom Classic 13.0"
    crs:Exposure2012="+0.35">
   <xap:Rating>3</xap:Rating>
   <xap:Label>Yellow</xap:Label>
   <!-- keep me -->
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>wedding</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">First dance</rdf:li>
    </rdf:Alt>
   </dc:title>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
                                                                                                    
<?xpacket end="w"?>"""


def read_back(exiftool: str, path: Path, *tags: str) -> dict:
    """What exiftool reads from a sidecar (the tags it does not find are absent)."""
    out = subprocess.run([exiftool, "-j", *(tags or TAGS), str(path)], capture_output=True,
                         text=True, check=True)
    found = json.loads(out.stdout)[0]
    found.pop("SourceFile")
    return found


@pytest.fixture
def shoot(tmp_path, real_photos) -> Path:
    """Three small real JPEGs."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        img = real_photos[name]
        img.resize((img.width // 4, img.height // 4)).save(folder / f"{name}.jpg", quality=90)
    return folder


def _scan(lib: Library, folder: Path) -> dict[str, int]:
    lib.add_folder(folder)
    Scanner(lib, workers=2).scan_all()
    return {os.path.basename(r.path): r.id for r in lib.query(PhotoQuery())}


def _images(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()
            if p.suffix.lower() != ".xmp"}


def _state(lib: Library, pid: int) -> tuple:
    row = lib.rows([pid])[0]
    return row.flag, row.rating, row.color_label


# -- writing ------------------------------------------------------------------------------

def test_write_what_lightroom_darktable_and_digikam_see(lib, photo_folder, exiftool):
    ids = _scan(lib, photo_folder)
    model = lib.ensure_model("RN50-quickgelu/openai", 4, 100.0)
    lib.set_setting("active_model", model.key)
    attrs = {a.name: a.id for a in lib.attributes()}
    all_ids = list(ids.values())
    lib.replace_scores(model.id, attrs["quality"], np.array(all_ids), np.linspace(0.1, 0.9, len(all_ids)))
    lib.set_culling([ids["astronaut.jpg"]], flag=FLAG_PICK, rating=4, color_label="red")
    lib.set_culling([ids["coffee.jpg"]], flag=FLAG_REJECT, rating=3, color_label="purple")
    before = _images(photo_folder)

    report = xmp.write_sidecars(lib)

    assert report.errors == [] and report.photos == report.written == 15
    assert read_back(exiftool, photo_folder / "astronaut.jpg.xmp") == {
        "Rating": 4, "Label": "Red", "PickLabel": 3}
    # A reject is Rating -1 (Lightroom, darktable) and PickLabel 1 (digiKam).
    assert read_back(exiftool, photo_folder / "coffee.jpg.xmp") == {
        "Rating": -1, "Label": "Purple", "PickLabel": 1}
    assert read_back(exiftool, photo_folder / "rocket.jpg.xmp") == {"Rating": 0, "PickLabel": 0}
    ours = read_back(exiftool, photo_folder / "astronaut.jpg.xmp", "-XMP-photosense:all")
    row = lib.rows([ids["astronaut.jpg"]])[0]
    assert ours["Model"] == "RN50-quickgelu/openai"
    assert ours["ScoresQuality"] == pytest.approx(row.scores["quality"], abs=1e-5)
    assert ours["ChecksSharpness"] == pytest.approx(row.checks["sharpness"], rel=1e-5)
    assert {"ChecksExposure", "ChecksNoise"} <= ours.keys()
    assert xmp.read_sidecar(photo_folder / "astronaut.jpg.xmp") == xmp.SidecarState(4, "red", FLAG_PICK)
    # Images are never touched: same bytes, same mtime.
    assert _images(photo_folder) == before

    # Writing again changes nothing, not even a file's mtime.
    stamp = (photo_folder / "astronaut.jpg.xmp").stat().st_mtime_ns
    again = xmp.write_sidecars(lib)
    assert again.written == 0 and again.unchanged == 15
    assert (photo_folder / "astronaut.jpg.xmp").stat().st_mtime_ns == stamp


def test_clearing_flag_and_label(lib, shoot, exiftool):
    ids = _scan(lib, shoot)
    pid = ids["chelsea.jpg"]
    sidecar = shoot / "chelsea.jpg.xmp"
    lib.set_culling([pid], flag=FLAG_REJECT, rating=5, color_label="green")
    xmp.write_sidecars(lib, [pid])
    assert read_back(exiftool, sidecar) == {"Rating": -1, "Label": "Green", "PickLabel": 1}
    lib.set_culling([pid], flag=FLAG_NONE, color_label=None)
    xmp.write_sidecars(lib, [pid])
    # The stars come back with the reject gone; no label means no xmp:Label at all.
    assert read_back(exiftool, sidecar) == {"Rating": 5, "PickLabel": 0}
    assert "xmp:Label" not in sidecar.read_text()


def test_merge_keeps_darktable_fields(lib, shoot, exiftool):
    ids = _scan(lib, shoot)
    sidecar = shoot / "coffee.jpg.xmp"
    sidecar.write_text(DARKTABLE_SIDECAR.format(name="coffee.jpg"))
    foreign = ("-XMP:CreatorTool", "-XMP:Subject", "-XMP:DerivedFrom", "-XMP-darktable:all")
    theirs = read_back(exiftool, sidecar, *foreign)
    lib.set_culling([ids["coffee.jpg"]], flag=FLAG_PICK, rating=5, color_label="red")

    xmp.write_sidecars(lib, [ids["coffee.jpg"]])

    assert read_back(exiftool, sidecar) == {"Rating": 5, "Label": "Red", "PickLabel": 3}
    # darktable's own label list follows the change (it was blue: 3); nothing else changed.
    after = read_back(exiftool, sidecar, *foreign)
    assert (theirs.pop("Colorlabels"), after.pop("Colorlabels")) == (3, 0)
    assert after == theirs
    assert theirs["Subject"] == ["beach", "sunset & sea"] and theirs["HistoryOperation"] == "exposure"
    text = sidecar.read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta')
    assert text.count("xmp:Rating") == 1 and 'darktable:xmp_version="5"' in text


def test_merge_keeps_lightroom_fields_element_form_and_xpacket(lib, shoot, exiftool):
    ids = _scan(lib, shoot)
    sidecar = shoot / "astronaut.xmp"
    sidecar.write_text(LIGHTROOM_SIDECAR, encoding="utf-8")
    foreign = ("-XMP:CreatorTool", "-XMP:Subject", "-XMP:Title", "-XMP-crs:Exposure2012")
    theirs = read_back(exiftool, sidecar, *foreign)
    assert theirs["Title"] == "First dance" and theirs["Subject"] == "wedding"
    lib.set_culling([ids["astronaut.jpg"]], flag=FLAG_REJECT, color_label="blue")

    report = xmp.write_sidecars(lib, [ids["astronaut.jpg"]], style="stem")

    assert report.written == 1
    assert read_back(exiftool, sidecar) == {"Rating": -1, "Label": "Blue", "PickLabel": 1}
    assert read_back(exiftool, sidecar, *foreign) == theirs
    text = sidecar.read_text(encoding="utf-8")
    assert text.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta')
    assert text.rstrip().endswith('<?xpacket end="w"?>') and " " * 100 in text
    # Updated where they were (child elements, Lightroom's own prefix), not duplicated.
    assert "<xap:Rating>-1</xap:Rating>" in text and "<xap:Label>Blue</xap:Label>" in text
    assert text.count("<xap:Rating>") == 1 and "xmp:Rating" not in text
    assert "<!-- keep me -->" in text
    assert not (shoot / "astronaut.jpg.xmp").exists()


def test_sidecar_name_styles_and_raw_jpeg_pairs(lib, shoot, exiftool, tmp_path):
    ids = _scan(lib, shoot)
    raw = shoot / "IMG_0001.CR2"
    raw.write_bytes(b"not really a raw file")
    shutil.copy(shoot / "coffee.jpg", shoot / "IMG_0001.JPG")
    folder = lib.folders()[0]
    lib.upsert_scanned(folder.id, [ScanRecord(path=str(raw), size=21, mtime=1.0, content_hash="r")])
    pid = lib.resolve_paths([str(raw)])[str(raw)]
    with lib.session() as s:
        s.execute(update(Photo).where(Photo.id == pid).values(companion_path=str(shoot / "IMG_0001.JPG")))
    lib.set_culling([pid, ids["chelsea.jpg"]], flag=FLAG_PICK, rating=2)
    before = _images(shoot)

    assert xmp.sidecar_paths("/p/IMG_1.CR2", "ext", "/p/IMG_1.JPG") == ["/p/IMG_1.CR2.xmp", "/p/IMG_1.JPG.xmp"]
    assert xmp.sidecar_paths("/p/IMG_1.CR2", "stem", "/p/IMG_1.JPG") == ["/p/IMG_1.xmp"]

    report = xmp.write_sidecars(lib, [pid, ids["chelsea.jpg"]], style="ext")
    assert report.written == 3 and report.photos == 2
    for name in ("IMG_0001.CR2.xmp", "IMG_0001.JPG.xmp", "chelsea.jpg.xmp"):
        assert read_back(exiftool, shoot / name) == {"Rating": 2, "PickLabel": 3}

    # The style names new sidecars only: existing ones are updated where they are, and no
    # second, disagreeing sidecar appears beside them.
    lib.set_setting(xmp.SETTING_STYLE, "stem")
    lib.set_culling([pid, ids["chelsea.jpg"], ids["coffee.jpg"]], rating=4)
    report = xmp.write_sidecars(lib, [pid, ids["chelsea.jpg"], ids["coffee.jpg"]])
    assert report.written == 4 and report.photos == 3
    for name in ("IMG_0001.CR2.xmp", "IMG_0001.JPG.xmp", "chelsea.jpg.xmp"):
        assert read_back(exiftool, shoot / name) == {"Rating": 4, "PickLabel": 3}
    assert not (shoot / "IMG_0001.xmp").exists() and not (shoot / "chelsea.xmp").exists()
    assert read_back(exiftool, shoot / "coffee.xmp") == {"Rating": 4, "PickLabel": 0}
    assert not (shoot / "coffee.jpg.xmp").exists()
    assert _images(shoot) == before


def test_stem_style_refuses_two_photos_sharing_one_sidecar(lib, shoot):
    shutil.copy(shoot / "coffee.jpg", shoot / "chelsea.png")
    ids = _scan(lib, shoot)
    report = xmp.write_sidecars(lib, [ids["chelsea.jpg"], ids["chelsea.png"]], style="stem")
    # chelsea.xmp would belong to neither alone: both are refused, whichever comes first.
    assert report.photos == 0 and len(report.errors) == 2
    assert all("'ext' sidecar style" in message for _, message in report.errors)
    assert not (shoot / "chelsea.xmp").exists()
    # Photos without that problem still get theirs.
    assert xmp.write_sidecars(lib, [ids["coffee.jpg"]], style="stem").photos == 1


def test_malformed_sidecar_is_never_overwritten(lib, shoot):
    ids = _scan(lib, shoot)
    bad = shoot / "coffee.jpg.xmp"
    bad.write_text("<x:xmpmeta><rdf:RDF>not closed")
    report = xmp.write_sidecars(lib, list(ids.values()))
    assert report.photos == 2 and report.errors[0][0].endswith("coffee.jpg")
    assert "not valid XML" in report.errors[0][1]
    assert bad.read_text() == "<x:xmpmeta><rdf:RDF>not closed"


# -- auto-write ---------------------------------------------------------------------------

def test_auto_write_on_set_culling_and_undo(lib, shoot, exiftool):
    from photosense.curation.sidecar_job import SidecarWriter

    ids = _scan(lib, shoot)
    pid = ids["astronaut.jpg"]
    sidecar = shoot / "astronaut.jpg.xmp"
    reports = []
    writer = SidecarWriter(lib, reports.append, delay=0.05)
    try:
        lib.set_culling([pid], flag=FLAG_PICK)
        assert writer.flush() and not sidecar.exists()  # off by default

        lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
        before = lib.set_culling([pid], flag=FLAG_REJECT, rating=3, color_label="yellow")
        assert writer.flush()
        assert read_back(exiftool, sidecar) == {"Rating": -1, "Label": "Yellow", "PickLabel": 1}
        lib.set_states(before)  # what undo does
        assert writer.flush()
        assert read_back(exiftool, sidecar) == {"Rating": 0, "PickLabel": 3}
        assert reports and all(r.result.errors == [] for r in reports)
    finally:
        writer.close()


def test_auto_write_failure_keeps_the_library_change(lib, shoot, caplog):
    from photosense.curation.sidecar_job import SidecarWriter

    ids = _scan(lib, shoot)
    pid = ids["chelsea.jpg"]
    bad = shoot / "chelsea.jpg.xmp"
    bad.write_text("garbage <<<")
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    reports = []
    writer = SidecarWriter(lib, reports.append, delay=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="photosense.curation.xmp"):
            lib.set_culling([pid], flag=FLAG_PICK, rating=5)
            assert _state(lib, pid) == (FLAG_PICK, 5, None)  # committed before any sidecar
            assert writer.flush()
    finally:
        writer.close()
    errors = reports[0].result.errors
    assert len(errors) == 1 and "not valid XML" in errors[0][1]
    assert "chelsea.jpg.xmp" in caplog.text
    assert bad.read_text() == "garbage <<<"


def test_sidecar_writer_coalesces_repeated_changes_into_one_write(lib, shoot, monkeypatch):
    from photosense.curation import sidecar_job

    ids = _scan(lib, shoot)
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    calls = []
    original = xmp.write_sidecars
    monkeypatch.setattr(xmp, "write_sidecars", lambda library, batch, **kw: (calls.append(list(batch)),
                                                                           original(library, batch, **kw))[1])
    writer = sidecar_job.SidecarWriter(lib, delay=0.3, max_wait=5)
    try:
        pid = ids["astronaut.jpg"]
        t0 = time.monotonic()
        for rating in range(1, 6):
            lib.set_culling([pid], rating=rating)
        lib.set_culling(list(ids.values()), flag=FLAG_PICK)
        culling_s = time.monotonic() - t0
        assert writer.flush()
    finally:
        writer.close()
    assert len(calls) == 1 and sorted(calls[0]) == sorted(ids.values())  # one batch, each photo once
    assert culling_s < 1.0  # the writes did not wait for any sidecar
    assert read_xmp_rating(shoot / "astronaut.jpg.xmp") == "5"


def read_xmp_rating(path) -> str | None:
    import re

    m = re.search(r'xmp:Rating="(-?\d+)"|<xmp:Rating>(-?\d+)<', path.read_text())
    return (m.group(1) or m.group(2)) if m else None


# -- reading on scan ----------------------------------------------------------------------

def test_scan_reads_sidecars_of_new_photos(lib, shoot):
    (shoot / "coffee.jpg.xmp").write_text(DARKTABLE_SIDECAR.format(name="coffee.jpg"))
    (shoot / "astronaut.xmp").write_text(LIGHTROOM_SIDECAR, encoding="utf-8")  # Lightroom name
    ids = _scan(lib, shoot)
    assert _state(lib, ids["coffee.jpg"]) == (FLAG_NONE, 2, "blue")  # darktable's colour label
    assert _state(lib, ids["astronaut.jpg"]) == (FLAG_NONE, 3, "yellow")
    assert _state(lib, ids["chelsea.jpg"]) == (FLAG_NONE, 0, None)


def test_a_scan_lists_each_folder_once_for_sidecars(lib, tmp_path, monkeypatch):
    """Sidecar names are looked up in a folder listing taken once a scan, not once a write
    batch (a 20,000-photo folder was listed 300 times, each listing sorted through again)."""
    from PIL import Image

    import photosense.ingest.scan as scan_mod

    monkeypatch.setattr(scan_mod, "WRITE_BATCH", 2)
    shoot = tmp_path / "many"
    shoot.mkdir()
    for i in range(9):
        Image.new("RGB", (16, 16), (i * 25, 90, 200)).save(shoot / f"IMG_{i}.jpg")
    (shoot / "IMG_7.XMP").write_text(LIGHTROOM_SIDECAR, encoding="utf-8")  # found by listing
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda d=".": listed.append(os.fspath(d)) or real(d))
    ids = _scan(lib, shoot)
    assert listed.count(str(shoot)) == 1
    assert _state(lib, ids["IMG_7.jpg"]) == (FLAG_NONE, 3, "yellow")
    assert _state(lib, ids["IMG_6.jpg"]) == (FLAG_NONE, 0, None)


def test_scan_reads_rejects_and_picks(lib, shoot):
    (shoot / "coffee.jpg.xmp").write_text(DARKTABLE_SIDECAR.format(name="coffee.jpg")
                                          .replace('xmp:Rating="2"', 'xmp:Rating="-1"'))
    (shoot / "chelsea.jpg.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        '<digiKam:PickLabel>3</digiKam:PickLabel><xmp:Rating>4</xmp:Rating>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>')
    ids = _scan(lib, shoot)
    assert _state(lib, ids["coffee.jpg"]) == (FLAG_REJECT, 0, "blue")
    assert _state(lib, ids["chelsea.jpg"]) == (FLAG_PICK, 4, None)


@pytest.mark.parametrize("policy", ["library", "sidecar"])
def test_conflict_policy_on_rescan(lib, shoot, policy):
    ids = _scan(lib, shoot)
    picked, plain = ids["astronaut.jpg"], ids["coffee.jpg"]
    lib.set_culling([picked], flag=FLAG_PICK, rating=4)
    if policy == "sidecar":
        lib.set_setting(xmp.SETTING_CONFLICT, "sidecar")
    for name in ("astronaut", "coffee"):  # another app rejected both, then the files changed
        (shoot / f"{name}.jpg.xmp").write_text(DARKTABLE_SIDECAR.format(name=name)
                                               .replace('xmp:Rating="2"', 'xmp:Rating="-1"'))
        os.utime(shoot / f"{name}.jpg", ns=(1_000_000_000, 1_000_000_000))
    report = Scanner(lib).scan_all()
    assert report.updated == 2
    if policy == "library":
        assert _state(lib, picked) == (FLAG_PICK, 4, None)  # the library had user state
    else:
        assert _state(lib, picked) == (FLAG_REJECT, 4, "blue")  # Rating -1 keeps no stars
    assert _state(lib, plain) == (FLAG_REJECT, 0, "blue")  # no user state: sidecar applies


def test_malformed_sidecars_on_scan_are_warnings(lib, shoot, caplog):
    (shoot / "coffee.jpg.xmp").write_text("<x:xmpmeta><rdf:RDF>")
    (shoot / "chelsea.jpg.xmp").write_bytes(b"\x00\xff\xfe garbage")
    (shoot / "astronaut.jpg.xmp").write_text(DARKTABLE_SIDECAR.format(name="astronaut.jpg"))
    with caplog.at_level(logging.WARNING):
        ids = _scan(lib, shoot)
    assert len(ids) == 3
    assert _state(lib, ids["astronaut.jpg"]) == (FLAG_NONE, 2, "blue")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("coffee.jpg.xmp" in m for m in warned) and any("chelsea.jpg.xmp" in m for m in warned)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


def test_read_sidecar_edge_cases(tmp_path):
    assert xmp.read_sidecar(tmp_path / "none.xmp") is None
    empty = tmp_path / "empty.xmp"
    empty.write_text("\n")
    assert xmp.read_sidecar(empty) is None
    keywords_only = tmp_path / "k.xmp"
    keywords_only.write_text(DARKTABLE_SIDECAR.replace('xmp:Rating="2"', "")
                             .replace("<rdf:li>3</rdf:li>", ""))
    assert xmp.read_sidecar(keywords_only) is None
    no_rdf = tmp_path / "n.xmp"
    no_rdf.write_text("<root/>")
    with pytest.raises(xmp.SidecarError, match="no rdf:RDF"):
        xmp.read_sidecar(no_rdf)


# -- command line -------------------------------------------------------------------------

def test_cli_settings_write_and_read(capsys, lib, shoot, exiftool, tmp_path):
    path = str(lib.path)
    ids = _scan(lib, shoot)
    lib.set_culling([ids["astronaut.jpg"]], flag=FLAG_PICK, rating=5)

    def run(*argv):
        code = main(["xmp", *argv, "--library", path])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("auto")[1] == "auto: off\n"
    assert run("auto", "on")[1] == "auto: on\n" and lib.get_setting(xmp.SETTING_AUTO_WRITE) is True
    assert run("auto", "off")[1] == "auto: off\n"
    assert run("style")[1] == "style: ext\n"
    assert run("style", "stem")[1] == "style: stem\n"
    assert run("conflict", "sidecar")[1] == "conflict: sidecar\n"

    code, _, err = run("write", "--flag", "pick", "--style", "ext")
    assert code == 0 and "1 photo: 1 sidecar written" in err
    assert read_back(exiftool, shoot / "astronaut.jpg.xmp") == {"Rating": 5, "PickLabel": 3}
    assert not (shoot / "coffee.jpg.xmp").exists() and not (shoot / "astronaut.xmp").exists()
    code, _, err = run("write")  # the library's style now: stem, for new sidecars only
    assert code == 0 and "3 photos: 2 sidecars written, 1 unchanged" in err
    assert (shoot / "coffee.xmp").exists() and not (shoot / "astronaut.xmp").exists()

    (shoot / "coffee.xmp").write_text(LIGHTROOM_SIDECAR, encoding="utf-8")
    code, _, err = run("read")
    assert code == 0 and "1 photo updated from sidecars" in err
    assert _state(lib, ids["coffee.jpg"]) == (FLAG_NONE, 3, "yellow")


# -- sidecars edited in another app -------------------------------------------------------

def _exiftool_rating(exiftool: str, sidecar: Path, rating: int) -> None:
    subprocess.run([exiftool, "-q", "-overwrite_original", f"-XMP:Rating={rating}", str(sidecar)],
                   check=True)


@pytest.mark.parametrize("policy", ["library", "sidecar"])
def test_rescan_reads_a_sidecar_edited_elsewhere(lib, shoot, exiftool, policy):
    attach_immediate_writer(lib)  # auto-write as the CLI does it: with each change
    lib.set_setting(xmp.SETTING_CONFLICT, policy)
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    ids = _scan(lib, shoot)
    pid = ids["coffee.jpg"]
    lib.set_culling([pid], rating=2)  # written to coffee.jpg.xmp by photosense
    images = _images(shoot)
    _exiftool_rating(exiftool, shoot / "coffee.jpg.xmp", 4)  # rated again in darktable
    report = Scanner(lib).scan_all()
    assert report.unchanged == 3 and report.updated == 0
    # Nothing changed in photosense since it wrote the sidecar: the edit wins either way.
    assert _state(lib, pid) == (FLAG_NONE, 4, None)
    assert _images(shoot) == images
    # Both sides changed: the policy decides.
    lib.set_setting(xmp.SETTING_AUTO_WRITE, False)
    lib.set_culling([pid], rating=1)
    _exiftool_rating(exiftool, shoot / "coffee.jpg.xmp", 5)
    Scanner(lib).scan_all()
    assert _state(lib, pid) == (FLAG_NONE, 1 if policy == "library" else 5, None)
    # Read once: with no new edit, a rescan leaves the library as it is.
    lib.set_culling([pid], rating=3)
    Scanner(lib).scan_all()
    assert _state(lib, pid)[1] == 3


def test_sidecars_photosense_wrote_are_not_read_back(lib, shoot, monkeypatch):
    attach_immediate_writer(lib)  # auto-write as the CLI does it: with each change
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    ids = _scan(lib, shoot)
    lib.set_culling(list(ids.values()), flag=FLAG_PICK, rating=3)
    read = []
    real = xmp.read_sidecar
    monkeypatch.setattr(xmp, "read_sidecar", lambda p: read.append(p) or real(p))
    Scanner(lib).scan_all()
    Scanner(lib).scan_paths([str(shoot / "coffee.jpg.xmp")])  # the watcher sees our own write
    assert read == []


def test_watcher_path_reads_an_edited_sidecar(lib, shoot, exiftool):
    ids = _scan(lib, shoot)
    (shoot / "chelsea.xmp").write_text(LIGHTROOM_SIDECAR, encoding="utf-8")
    report = Scanner(lib).scan_paths([str(shoot / "chelsea.xmp")])
    assert report.updated == report.added == 0
    assert _state(lib, ids["chelsea.jpg"]) == (FLAG_NONE, 3, "yellow")
    _exiftool_rating(exiftool, shoot / "chelsea.xmp", 5)
    Scanner(lib).scan_paths([str(shoot), str(shoot / "chelsea.xmp")])  # the folder changed too
    assert _state(lib, ids["chelsea.jpg"]) == (FLAG_NONE, 5, "yellow")
