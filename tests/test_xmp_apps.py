"""Round trips through sidecars written the way Lightroom Classic, darktable, digiKam, Capture One
and Bridge write them (``tests/data/sidecars/``, see its README): photosense flags, labels,
rejects and clears a photo, and every other field stays exactly as ``exiftool -X`` read it
before, while each app reads back what photosense meant.

How the apps read a sidecar, emulated below from their sources:

- darktable, ``src/common/exif.cc`` (``dt_exif_decode_xmp_data``): ``xmp:Rating`` (-1 is the
  reject, ``dt_image_set_xmp_rating`` in ``src/common/image.c``); the colour labels from
  ``xmp:Label`` when it is present (exactly "Red", "Yellow", "Green", "Blue", "Purple"; any
  other text: no label at all), else from the ``darktable:colorlabels`` list (0 red .. 4 purple).
- digiKam, ``core/libs/metadataengine/dmetadata/dmetadata_labels.cpp``:
  ``getImagePickLabel`` (``digiKam:PickLabel`` 0–3), ``getImageColorLabel``
  (``digiKam:ColorLabel``, else ``photoshop:Urgency``, 0–9; else ``xmp:Label``'s Lightroom names,
  "Purple" as magenta 6), ``getImageRating`` (``xmp:Rating`` 0–5, and where that is missing or
  unusable, -1 included, ``MicrosoftPhoto:Rating`` percent 0 1 25 50 75 99).
- Lightroom Classic, Capture One, Bridge (closed source; their documented behaviour):
  ``xmp:Rating`` and the ``xmp:Label`` text, which each app matches against its own label set
  (Bridge's default set: Select, Second, Approved, Review, To Do).

exiftool is required (as in tests/test_xmp.py): without it these tests fail.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from photosense.curation import xmp
from photosense.ingest.scan import Scanner
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT, Library, PhotoQuery

SAMPLES = Path(__file__).parent / "data" / "sidecars"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
ET_NS = "http://ns.exiftool.org/XMP/"

# The tags photosense may change, as exiftool names them.
RATING, LABEL, PICK = "XMP-xmp:Rating", "XMP-xmp:Label", "XMP-digiKam:PickLabel"
COLOR, URGENCY = "XMP-digiKam:ColorLabel", "XMP-photoshop:Urgency"
MS_RATING, DT_LABELS = "XMP-microsoft:RatingPercent", "XMP-darktable:Colorlabels"
BEFORE_REJECT = "XMP-photosense:RatingBeforeReject"
LABEL_TAGS = {LABEL, COLOR, URGENCY, DT_LABELS}

DT_NAMES = ("Red", "Yellow", "Green", "Blue", "Purple")
DIGIKAM_NAMES = {"Red": 1, "Yellow": 3, "Green": 4, "Blue": 5, "Purple": 6}
MS_PERCENT = (0, 1, 25, 50, 75, 99)


def exiftool_x(exiftool: str, path: Path) -> dict[str, object]:
    """Every XMP tag exiftool reads (``exiftool -X -n -XMP:all``): "Group:Tag" -> raw value,
    a tuple for a list (exiftool shows a one-item list as a plain value)."""
    out = subprocess.run([exiftool, "-X", "-n", "-XMP:all", str(path)], capture_output=True,
                         check=True).stdout
    desc = ET.fromstring(out).find(f"{RDF}Description")
    tags: dict[str, object] = {}
    for el in desc:
        uri, name = el.tag[1:].split("}")
        group = uri[len(ET_NS):].split("/")[0] if uri.startswith(ET_NS) else uri
        container = next((c for c in el if c.tag in (f"{RDF}Bag", f"{RDF}Seq", f"{RDF}Alt")), None)
        tags[f"{group}:{name}"] = (tuple(li.text or "" for li in container.iter(f"{RDF}li"))
                                   if container is not None else el.text or "")
    return tags


def _list(value) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else () if value is None else (value,)


def darktable_reads(tags: dict) -> tuple[str, set[int]]:
    """(stars or "rejected", colour numbers) as darktable's exif.cc reads them."""
    rating = int(tags.get(RATING, 0) or 0)
    stars = "rejected" if rating == -1 else str(rating)
    if LABEL in tags:  # xmp:Label present: darktable's own list is not consulted
        label = tags[LABEL]
        return stars, {DT_NAMES.index(label)} if label in DT_NAMES else set()
    return stars, {int(n) for n in _list(tags.get(DT_LABELS))}


def digikam_reads(tags: dict) -> tuple[int, int, int]:
    """(pick label, colour label, rating) as digiKam's dmetadata_labels.cpp reads them (-1:
    none found)."""
    pick = int(tags[PICK]) if PICK in tags and 0 <= int(tags[PICK]) <= 3 else -1
    color = -1
    value = tags.get(COLOR, tags.get(URGENCY))
    if value not in (None, "") and 0 <= int(value) <= 9:
        color = int(value)
    elif tags.get(LABEL) in DIGIKAM_NAMES:
        color = DIGIKAM_NAMES[tags[LABEL]]
    rating = -1
    if RATING in tags and 0 <= int(tags[RATING]) <= 5:
        rating = int(tags[RATING])
    elif MS_RATING in tags:
        percent = int(tags[MS_RATING])
        rating = MS_PERCENT.index(percent) if percent in MS_PERCENT else \
            max(i for i, p in enumerate(MS_PERCENT) if percent > p)
    return pick, color, rating


def adobe_reads(tags: dict) -> tuple[str, str | None]:
    """(xmp:Rating, xmp:Label text): what Lightroom, Capture One and Bridge read."""
    return str(tags.get(RATING)), tags.get(LABEL)


# app -> (sample, sidecar name for "shot.jpg", what photosense imports: flag, rating, label)
APPS = {
    "lightroom": ("lightroom.xmp", "shot.xmp", (FLAG_NONE, 3, "yellow")),
    "darktable": ("darktable.xmp", "shot.jpg.xmp", (FLAG_NONE, 1, "yellow")),
    "digikam": ("digikam.xmp", "shot.jpg.xmp", (FLAG_PICK, 4, "green")),
    "captureone": ("captureone.xmp", "shot.xmp", (FLAG_NONE, 2, None)),  # "Orange": not ours
    "bridge": ("bridge.xmp", "shot.xmp", (FLAG_NONE, 5, "red")),  # "Select": Bridge's red
}


@pytest.fixture
def shot(tmp_path, real_photos) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    img = real_photos["coffee"]
    img.resize((img.width // 4, img.height // 4)).save(folder / "shot.jpg", quality=90)
    return folder / "shot.jpg"


def _scan(lib: Library, folder: Path) -> int:
    lib.add_folder(folder)
    Scanner(lib, workers=1).scan_all()
    return lib.query(PhotoQuery())[0].id


def _state(lib: Library, pid: int) -> tuple:
    row = lib.rows([pid])[0]
    return row.flag, row.rating, row.color_label


def _others(tags: dict, changeable: set[str]) -> dict:
    return {k: v for k, v in tags.items()
            if k not in changeable and not k.startswith("XMP-photosense:")}


@pytest.mark.parametrize("app", sorted(APPS))
def test_round_trip_keeps_every_other_field(app, lib, shot, exiftool):
    sample, name, imported = APPS[app]
    sidecar = shot.parent / name
    shutil.copy(SAMPLES / sample, sidecar)
    original = exiftool_x(exiftool, sidecar)
    stars = int(original[RATING])
    pid = _scan(lib, shot.parent)
    assert _state(lib, pid) == imported

    def step(changeable: set[str], **culling) -> dict:
        before = exiftool_x(exiftool, sidecar)
        lib.set_culling([pid], **culling)
        report = xmp.write_sidecars(lib, [pid])
        assert report.errors == [] and report.photos == 1
        after = exiftool_x(exiftool, sidecar)
        # Every field photosense did not mean to change is exactly as it was.
        assert _others(after, changeable) == _others(before, changeable)
        # ... and every field that is not photosense's at all is as the app wrote it.
        ours = LABEL_TAGS | {RATING, PICK, MS_RATING}
        assert _others(after, ours) == _others(original, ours)
        # photosense reads back what it wrote.
        flag, rating, label = _state(lib, pid)
        assert xmp.read_sidecar(sidecar) == xmp.SidecarState(rating, label, flag)
        return after

    # 1. Pick: only the pick label changes; the stars and every colour label stay verbatim.
    tags = step({PICK}, flag=FLAG_PICK)
    assert tags[PICK] == "3" and tags[RATING] == original[RATING]
    assert {k: tags.get(k) for k in LABEL_TAGS} == {k: original.get(k) for k in LABEL_TAGS}
    assert digikam_reads(tags)[0] == 3

    # 2. Blue: every label field already there says blue, in its own vocabulary.
    tags = step(LABEL_TAGS, color_label="blue")
    # darktable and digiKam match xmp:Label against Lightroom's names only: in Bridge's own
    # sidecar, Bridge's "Review" is none for them (they read photo.ext.xmp anyway).
    assert darktable_reads(tags)[1] == (set() if app == "bridge" else {3})
    assert digikam_reads(tags)[1] == (-1 if app == "bridge" else 5)
    assert adobe_reads(tags)[1] == ("Review" if app == "bridge" else "Blue")
    assert (COLOR in tags, URGENCY in tags) == (COLOR in original, URGENCY in original)
    assert (DT_LABELS in tags) == (DT_LABELS in original)

    # 3. Reject: xmp:Rating -1 (darktable, Bridge), PickLabel 1 (digiKam); the stars are kept.
    tags = step({RATING, PICK}, flag=FLAG_REJECT)
    assert darktable_reads(tags)[0] == "rejected" and adobe_reads(tags)[0] == "-1"
    assert digikam_reads(tags)[0] == 1
    assert tags[BEFORE_REJECT] == str(stars)
    if MS_RATING in original:  # digiKam falls back to MicrosoftPhoto:Rating: still its stars
        assert digikam_reads(tags)[2] == stars

    # 4. Clear: the stars come back, no pick, no label in any app.
    tags = step({RATING, PICK} | LABEL_TAGS, flag=FLAG_NONE, color_label=None)
    assert adobe_reads(tags) == (str(stars), None)
    assert darktable_reads(tags) == (str(stars), set())
    assert digikam_reads(tags)[:2] == (0, -1 if COLOR not in original else 0)
    assert BEFORE_REJECT not in tags
    # Still the app's one sidecar: no second one under photosense's default name.
    assert sorted(p.name for p in shot.parent.glob("*.xmp")) == [name]


@pytest.mark.parametrize("label", ["Orange", "Pink", "Client picks", "Rot"])
def test_a_label_photosense_does_not_have_is_kept_verbatim(label, lib, shot, exiftool):
    sidecar = shot.parent / "shot.xmp"
    text = (SAMPLES / "captureone.xmp").read_text(encoding="utf-8")
    sidecar.write_text(text.replace('xmp:Label="Orange"', f'xmp:Label="{label}"'), encoding="utf-8")
    pid = _scan(lib, shot.parent)
    for culling in ({"flag": FLAG_PICK}, {"rating": 5}, {"flag": FLAG_REJECT}, {"flag": FLAG_NONE}):
        lib.set_culling([pid], **culling)
        xmp.write_sidecars(lib, [pid])
        assert exiftool_x(exiftool, sidecar)[LABEL] == label
    # Until photosense changes the label itself.
    lib.set_culling([pid], color_label="green")
    xmp.write_sidecars(lib, [pid])
    assert exiftool_x(exiftool, sidecar)[LABEL] == "Green"


def test_a_reject_keeps_lightrooms_stars_for_a_fresh_library(lib, shot, exiftool, tmp_path):
    sidecar = shot.parent / "shot.xmp"
    shutil.copy(SAMPLES / "lightroom.xmp", sidecar)
    pid = _scan(lib, shot.parent)
    lib.set_culling([pid], flag=FLAG_REJECT)
    xmp.write_sidecars(lib, [pid])
    assert exiftool_x(exiftool, sidecar)[RATING] == "-1"
    # Another library (another machine, a rebuilt catalogue) reads the reject and the 3 stars.
    other = Library(tmp_path / "other.sqlite3")
    try:
        opid = _scan(other, shot.parent)
        assert _state(other, opid) == (FLAG_REJECT, 3, "yellow")
        other.set_culling([opid], flag=FLAG_NONE)
        xmp.write_sidecars(other, [opid])
    finally:
        other.close()
    tags = exiftool_x(exiftool, sidecar)
    assert tags[RATING] == "3" and BEFORE_REJECT not in tags


def test_digikam_only_labels_and_a_photoshop_urgency_that_is_not_a_label(lib, shot, exiftool):
    sidecar = shot.parent / "shot.jpg.xmp"
    sidecar.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:digiKam="http://www.digikam.org/ns/1.0/" '
        'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" digiKam:ColorLabel="1" '
        'photoshop:Urgency="1"/></rdf:RDF></x:xmpmeta>')
    pid = _scan(lib, shot.parent)
    assert _state(lib, pid) == (FLAG_NONE, 0, "red")
    lib.set_culling([pid], color_label="purple")
    xmp.write_sidecars(lib, [pid])
    tags = exiftool_x(exiftool, sidecar)
    assert (tags[COLOR], tags[URGENCY], tags[LABEL]) == ("6", "6", "Purple")
    assert digikam_reads(tags)[1] == 6 and darktable_reads(tags)[1] == {4}
    lib.set_culling([pid], color_label=None)
    xmp.write_sidecars(lib, [pid])
    tags = exiftool_x(exiftool, sidecar)
    assert (tags[COLOR], tags[URGENCY], LABEL in tags) == ("0", "0", False)

    # Without digiKam, photoshop:Urgency is Photoshop's priority, not a colour: never touched.
    sidecar.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
        'photoshop:Urgency="3"/></rdf:RDF></x:xmpmeta>')
    assert xmp.read_sidecar(sidecar) is None
    lib.set_culling([pid], color_label="blue")
    xmp.write_sidecars(lib, [pid])
    tags = exiftool_x(exiftool, sidecar)
    assert (tags[URGENCY], tags[LABEL]) == ("3", "Blue")


def test_darktable_keeps_its_other_colour_labels(lib, shot, exiftool):
    sidecar = shot.parent / "shot.jpg.xmp"
    shutil.copy(SAMPLES / "darktable.xmp", sidecar)  # labels 1 (yellow) and 3 (blue)
    pid = _scan(lib, shot.parent)
    lib.set_culling([pid], color_label="green")
    xmp.write_sidecars(lib, [pid])
    tags = exiftool_x(exiftool, sidecar)
    assert tags[DT_LABELS] == ("2", "3")  # the new colour first, darktable's blue kept
    assert darktable_reads(tags)[1] == {2}  # xmp:Label now present: darktable reads it
    lib.set_culling([pid], color_label=None)
    xmp.write_sidecars(lib, [pid])
    tags = exiftool_x(exiftool, sidecar)
    assert DT_LABELS not in tags and LABEL not in tags
    assert darktable_reads(tags)[1] == set()


def test_both_sidecar_names_are_kept_in_agreement(lib, shot, exiftool):
    stem, ext = shot.parent / "shot.xmp", shot.parent / "shot.jpg.xmp"
    shutil.copy(SAMPLES / "lightroom.xmp", stem)
    shutil.copy(SAMPLES / "darktable.xmp", ext)
    pid = _scan(lib, shot.parent)
    # The configured style's name is read first; both are written.
    assert _state(lib, pid) == (FLAG_NONE, 1, "yellow")
    lib.set_culling([pid], flag=FLAG_PICK, rating=4, color_label="blue")
    report = xmp.write_sidecars(lib, [pid])
    assert report.written == 2 and report.photos == 1
    for path in (stem, ext):
        tags = exiftool_x(exiftool, path)
        assert (tags[RATING], tags[LABEL], tags[PICK]) == ("4", "Blue", "3")
        assert darktable_reads(tags) == ("4", {3})
    assert _list(exiftool_x(exiftool, ext)[DT_LABELS]) == ("3",)
    # A write with the other style configured still lands in the same two files.
    lib.set_culling([pid], rating=2)
    assert xmp.write_sidecars(lib, [pid], style="stem").written == 2
    assert sorted(p.name for p in shot.parent.glob("*.xmp")) == ["shot.jpg.xmp", "shot.xmp"]
    assert {exiftool_x(exiftool, p)[RATING] for p in (stem, ext)} == {"2"}


def test_no_sidecar_for_a_photo_that_could_not_be_read(lib, shot, tmp_path):
    broken = shot.parent / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    lib.add_folder(shot.parent)
    Scanner(lib, workers=1).scan_all()
    rows = {r.name: r for r in lib.query(PhotoQuery())}
    assert rows["broken.jpg"].error
    ids = [r.id for r in rows.values()]
    lib.set_culling(ids, flag=FLAG_PICK, rating=4)

    report = xmp.write_sidecars(lib, ids)
    assert report.photos == 1 and report.errors == []
    assert [p for p, _ in report.skipped] == [str(broken)]
    assert "could not be read" in report.skipped[0][1]
    assert sorted(p.name for p in shot.parent.glob("*.xmp")) == ["shot.jpg.xmp"]
    with pytest.raises(xmp.SidecarError, match="could not be read"):
        xmp.write_sidecar(rows["broken.jpg"])
    # Nor on every change (auto-write).
    lib.set_setting(xmp.SETTING_AUTO_WRITE, True)
    lib.set_culling(ids, flag=FLAG_REJECT)
    assert not list(shot.parent.glob("broken*.xmp"))


def test_digikams_pending_pick_stays_while_photosense_has_no_flag(lib, shot, exiftool):
    sidecar = shot.parent / "shot.jpg.xmp"
    text = (SAMPLES / "digikam.xmp").read_text(encoding="utf-8")
    sidecar.write_text(text.replace('digiKam:PickLabel="3"', 'digiKam:PickLabel="2"'))
    pid = _scan(lib, shot.parent)
    assert _state(lib, pid) == (FLAG_NONE, 4, "green")  # "pending" is no flag in photosense
    lib.set_culling([pid], rating=2)
    xmp.write_sidecars(lib, [pid])
    tags = exiftool_x(exiftool, sidecar)
    assert (tags[PICK], tags[RATING], tags[MS_RATING]) == ("2", "2", "25")
    lib.set_culling([pid], flag=FLAG_PICK)
    xmp.write_sidecars(lib, [pid])
    assert exiftool_x(exiftool, sidecar)[PICK] == "3"


def test_a_stem_sidecar_two_images_share_is_nobodys(lib, shot, exiftool):
    shutil.copy(shot, shot.parent / "shot.png")  # not a RAW+JPEG pair: two photos
    shared = shot.parent / "shot.xmp"
    shutil.copy(SAMPLES / "captureone.xmp", shared)
    before = shared.read_bytes()
    lib.add_folder(shot.parent)
    Scanner(lib, workers=1).scan_all()
    rows = lib.query(PhotoQuery())
    assert {_state(lib, r.id) for r in rows} == {(FLAG_NONE, 0, None)}  # read for neither
    lib.set_culling([r.id for r in rows], rating=5)
    report = xmp.write_sidecars(lib, [r.id for r in rows])
    assert report.photos == 2 and report.errors == []
    assert shared.read_bytes() == before
    assert sorted(p.name for p in shot.parent.glob("*.xmp")) == [
        "shot.jpg.xmp", "shot.png.xmp", "shot.xmp"]
