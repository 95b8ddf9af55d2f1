"""Metadata: capture time, camera, displayed size; malformed EXIF never raises."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from photosense.errors import DecodeError
from photosense.ingest.decode import open_image
from photosense.ingest.metadata import PhotoMetadata, read_metadata

MAKE, MODEL, DATETIME, ORIENTATION = 0x010F, 0x0110, 0x0132, 0x0112
EXIF_IFD = 0x8769
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
OFFSET_TIME_ORIGINAL, SUBSEC_TIME_ORIGINAL = 0x9011, 0x9291


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize((128, 96))


def make_exif(main: dict | None = None, sub: dict | None = None) -> Image.Exif:
    exif = Image.Exif()
    for tag, value in (main or {}).items():
        exif[tag] = value
    if sub:
        exif.get_ifd(EXIF_IFD).update(sub)
    return exif


def save(tmp_path, img: Image.Image, exif: Image.Exif | bytes, name="photo.jpg"):
    path = tmp_path / name
    # As bytes: Pillow's TIFF writer only keeps the EXIF sub-directory when given bytes.
    img.save(path, exif=exif.tobytes() if isinstance(exif, Image.Exif) else exif)
    return path


def test_camera_and_offset_capture_time(tmp_path, astronaut):
    exif = make_exif(
        {MAKE: "Canon", MODEL: "Canon EOS R5\x00", DATETIME: "2024:01:01 00:00:00"},
        {
            DATETIME_ORIGINAL: "2023:07:14 18:30:05",
            OFFSET_TIME_ORIGINAL: "+02:00",
            SUBSEC_TIME_ORIGINAL: "25",
        },
    )
    meta = read_metadata(save(tmp_path, astronaut, exif))
    assert meta == PhotoMetadata(
        width=128,
        height=96,
        capture_time=datetime(2023, 7, 14, 18, 30, 5, 250000, tzinfo=timezone(timedelta(hours=2))),
        camera="Canon EOS R5",
        orientation=1,
    )
    assert meta.capture_time.utcoffset() == timedelta(hours=2)


def test_capture_time_without_offset_is_naive(tmp_path, astronaut):
    exif = make_exif(sub={DATETIME_ORIGINAL: "2021:12:31 23:59:58"})
    meta = read_metadata(save(tmp_path, astronaut, exif))
    assert meta.capture_time == datetime(2021, 12, 31, 23, 59, 58)
    assert meta.capture_time.tzinfo is None
    assert meta.camera is None


def test_negative_offset(tmp_path, astronaut):
    exif = make_exif(sub={DATETIME_ORIGINAL: "2022:03:04 05:06:07", OFFSET_TIME_ORIGINAL: "-05:30"})
    when = read_metadata(save(tmp_path, astronaut, exif)).capture_time
    assert when.utcoffset() == -timedelta(hours=5, minutes=30)


def test_capture_time_falls_back_to_digitized_then_datetime(tmp_path, astronaut):
    digitized = make_exif(
        {DATETIME: "2020:02:02 02:02:02"}, {DATETIME_DIGITIZED: "2019:01:01 01:01:01"}
    )
    assert read_metadata(save(tmp_path, astronaut, digitized, "d.jpg")).capture_time == datetime(
        2019, 1, 1, 1, 1, 1
    )
    only_datetime = make_exif({DATETIME: "2020:02:02 02:02:02"})
    assert read_metadata(save(tmp_path, astronaut, only_datetime, "t.jpg")).capture_time == (
        datetime(2020, 2, 2, 2, 2, 2)
    )


@pytest.mark.parametrize(
    "value", ["0000:00:00 00:00:00", "    :  :     :  :  ", "", "yesterday", "2023:13:45 25:61:00"]
)
def test_invalid_dates_give_none(tmp_path, astronaut, value):
    exif = make_exif({DATETIME: value}, {DATETIME_ORIGINAL: value})
    assert read_metadata(save(tmp_path, astronaut, exif)).capture_time is None


def test_invalid_original_date_falls_back(tmp_path, astronaut):
    exif = make_exif({DATETIME: "2020:02:02 02:02:02"}, {DATETIME_ORIGINAL: "0000:00:00 00:00:00"})
    assert read_metadata(save(tmp_path, astronaut, exif)).capture_time == datetime(
        2020, 2, 2, 2, 2, 2
    )


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("Canon", "Canon EOS R5", "Canon EOS R5"),
        ("NIKON CORPORATION", "NIKON D850", "NIKON D850"),
        ("SONY", "ILCE-7M3", "SONY ILCE-7M3"),
        ("Apple", "iPhone 12 Pro", "Apple iPhone 12 Pro"),
        ("OLYMPUS IMAGING CORP.  ", "E-M1", "OLYMPUS E-M1"),
        ("  FUJIFILM\x00\x00", None, "FUJIFILM"),
        (None, "  X100V ", "X100V"),
        ("\x00\x00", "   ", None),
    ],
)
def test_camera_name(tmp_path, astronaut, make, model, camera):
    main = {tag: value for tag, value in ((MAKE, make), (MODEL, model)) if value is not None}
    assert read_metadata(save(tmp_path, astronaut, make_exif(main))).camera == camera


def test_no_exif_at_all(tmp_path, astronaut):
    for name in ("plain.jpg", "plain.png", "plain.webp", "plain.tif"):
        path = tmp_path / name
        astronaut.save(path)
        assert read_metadata(path) == PhotoMetadata(128, 96, None, None, 1)


@pytest.mark.parametrize("name", ["photo.png", "photo.tif", "photo.webp"])
def test_exif_in_other_formats(tmp_path, astronaut, name):
    exif = make_exif(
        {MAKE: "SONY", MODEL: "ILCE-7M3", ORIENTATION: 6},
        {DATETIME_ORIGINAL: "2023:07:14 18:30:05", OFFSET_TIME_ORIGINAL: "+02:00"},
    )
    path = save(tmp_path, astronaut, exif, name)
    expected = PhotoMetadata(
        96, 128, datetime(2023, 7, 14, 18, 30, 5, tzinfo=timezone(timedelta(hours=2))),
        "SONY ILCE-7M3", 6,
    )
    assert read_metadata(path) == expected
    decoded = open_image(path, max_side=64)
    assert decoded.size == (48, 64)
    assert read_metadata(decoded) == expected  # the decoded image describes the file


def test_open_pil_image_is_accepted(tmp_path, astronaut):
    exif = make_exif({MAKE: "Canon", MODEL: "Canon EOS R6", ORIENTATION: 8})
    path = save(tmp_path, astronaut, exif)
    with Image.open(path) as img:
        meta = read_metadata(img)
        assert img.tile  # header only: no pixel was decoded
    assert (meta.width, meta.height, meta.orientation, meta.camera) == (96, 128, 8, "Canon EOS R6")


@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00" + b"garbage" * 40,
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x01" * 64,
        b"Exif\x00\x00II\x2a\x00\x08\x00\x00\x00\x02\x00\x12\x01\x03\x00\x01\x00",
        b"Exif\x00\x00II\x2a\x00\xff\xff\xff\x7f",
    ],
    ids=["garbage", "huge-entry-count", "cut-short", "offset-past-end"],
)
# Pillow warns about the EXIF it skips; photosense.ingest.decode silences exactly these at
# import, but pytest replaces the warning filters for each test (see the subprocess test below).
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.filterwarnings("ignore:Possibly corrupt EXIF:UserWarning")
def test_malformed_exif_never_raises(tmp_path, astronaut, exif):
    path = save(tmp_path, astronaut, exif)
    meta = read_metadata(path)
    assert (meta.width, meta.height) == (128, 96)
    assert meta.capture_time is None and meta.camera is None and meta.orientation == 1
    assert open_image(path).size == (128, 96)


def test_out_of_range_orientation_is_ignored(tmp_path, astronaut):
    meta = read_metadata(save(tmp_path, astronaut, make_exif({ORIENTATION: 42})))
    assert (meta.width, meta.height, meta.orientation) == (128, 96, 1)


def test_not_an_image_raises_decode_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with pytest.raises(DecodeError, match="^not an image file$"):
        read_metadata(path)


def test_malformed_exif_prints_no_warning_in_a_normal_interpreter(tmp_path, astronaut):
    bad_exif = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x01" * 64
    path = save(tmp_path, astronaut, bad_exif)
    code = (
        "import sys\n"
        "from photosense.ingest.decode import open_image\n"
        "from photosense.ingest.metadata import read_metadata\n"
        "meta = read_metadata(sys.argv[1])\n"
        "img = open_image(sys.argv[1])\n"
        "print(meta.width, meta.height, meta.capture_time, meta.camera, img.size)\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # show every warning once
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["128", "96", "None", "None", "(128,", "96)"]
    assert done.stderr == ""


# --- capture time beyond EXIF: XMP, IPTC; the last-edit time last -----------------------------


def xmp_packet(**props: str) -> bytes:
    """An XMP packet as cameras and Photoshop embed it: ``exif_DateTimeOriginal="..."`` is
    the property exif:DateTimeOriginal, written as an attribute of rdf:Description."""
    namespaces = {"exif": "http://ns.adobe.com/exif/1.0/",
                  "photoshop": "http://ns.adobe.com/photoshop/1.0/",
                  "xmp": "http://ns.adobe.com/xap/1.0/"}
    attrs = " ".join(f'{k.replace("_", ":", 1)}="{v}"' for k, v in props.items())
    xmlns = " ".join(f'xmlns:{p}="{u}"' for p, u in namespaces.items())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" {xmlns} {attrs}/></rdf:RDF></x:xmpmeta>'
        + " " * 200 + '<?xpacket end="w"?>').encode("utf-8")


def iptc_app13(date: str, time: str | None = None) -> bytes:
    """A JPEG APP13 segment (Photoshop 3.0, 8BIM resource 0x0404) holding IPTC 2:55/2:60."""
    records = b""
    for number, value in ((55, date), (60, time)):
        if value is not None:
            data = value.encode("ascii")
            records += b"\x1c\x02" + bytes([number]) + len(data).to_bytes(2, "big") + data
    resource = b"8BIM" + (0x0404).to_bytes(2, "big") + b"\0\0" + len(records).to_bytes(4, "big")
    resource += records + b"\0" * (len(records) % 2)
    payload = b"Photoshop 3.0\0" + resource
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


def save_jpeg(tmp_path, img, exif=None, xmp: bytes | None = None, iptc: bytes | None = None,
              name="photo.jpg"):
    path = tmp_path / name
    options = {}
    if exif is not None:
        options["exif"] = exif.tobytes()
    if xmp is not None:
        options["xmp"] = xmp
    img.save(path, **options)
    if iptc is not None:
        data = path.read_bytes()
        path.write_bytes(data[:2] + iptc + data[2:])  # right after SOI
    return path


EDITED = {DATETIME: "2024:06:01 12:00:00"}  # IFD0 DateTime: the last save, not the shot


@pytest.mark.parametrize("source, expected", [
    # The camera's DateTimeOriginal beats everything, sub-seconds and offset kept.
    ("exif", datetime(2020, 5, 6, 7, 8, 9, 120000, tzinfo=timezone(timedelta(hours=9)))),
    # Without it: XMP exif:DateTimeOriginal, sub-seconds and offset from the XMP date.
    ("xmp-exif", datetime(2021, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=-5)))),
    # Then XMP photoshop:DateCreated.
    ("xmp-photoshop", datetime(2021, 2, 3, 4, 5, 6)),
    # Then IPTC DateCreated + TimeCreated.
    ("iptc", datetime(2019, 12, 31, 23, 59, 58, tzinfo=timezone(timedelta(hours=1)))),
    # Only then IFD0 DateTime.
    ("none", datetime(2024, 6, 1, 12, 0, 0)),
])
def test_capture_time_order(tmp_path, astronaut, source, expected):
    sub = {DATETIME_ORIGINAL: "2020:05:06 07:08:09", SUBSEC_TIME_ORIGINAL: "12",
           OFFSET_TIME_ORIGINAL: "+09:00"} if source == "exif" else {}
    props = {}
    if source in ("exif", "xmp-exif"):
        props["exif_DateTimeOriginal"] = "2021-01-02T03:04:05.678-05:00"
    if source in ("exif", "xmp-exif", "xmp-photoshop"):
        props["photoshop_DateCreated"] = "2021-02-03T04:05:06"
    iptc = iptc_app13("20191231", "235958+0100") if source != "none" else None
    path = save_jpeg(tmp_path, astronaut, make_exif(EDITED, sub),
                     xmp=xmp_packet(**props) if props else None, iptc=iptc)
    assert read_metadata(path).capture_time == expected
    assert read_metadata(open_image(path, max_side=32)).capture_time == expected  # as scanned


def test_xmp_create_date_beats_the_last_edit_time(tmp_path, astronaut):
    path = save_jpeg(tmp_path, astronaut, make_exif(EDITED),
                     xmp=xmp_packet(xmp_CreateDate="2005-09-07T15:07:40-07:00"))
    assert read_metadata(path).capture_time.isoformat() == "2005-09-07T15:07:40-07:00"


def test_a_day_without_a_time_still_beats_the_last_edit_time(tmp_path, astronaut):
    path = save_jpeg(tmp_path, astronaut, make_exif(EDITED), iptc=iptc_app13("20180704"))
    assert read_metadata(path).capture_time == datetime(2018, 7, 4)
    # ... but a source with a time of day beats a day alone, whatever its rank.
    path = save_jpeg(tmp_path, astronaut, make_exif(EDITED), iptc=iptc_app13("20180704"),
                     xmp=xmp_packet(photoshop_DateCreated="2018-07-04"), name="b.jpg")
    assert read_metadata(path).capture_time == datetime(2018, 7, 4)
    path = save_jpeg(tmp_path, astronaut, make_exif(EDITED),
                     iptc=iptc_app13("20180704", "101112"),
                     xmp=xmp_packet(photoshop_DateCreated="2018-07-04"), name="c.jpg")
    assert read_metadata(path).capture_time == datetime(2018, 7, 4, 10, 11, 12)


@pytest.mark.parametrize("packet", [b"<x:xmpmeta>not xml", b"\xff\xfe garbage", b""])
def test_malformed_xmp_is_ignored(tmp_path, astronaut, packet):
    path = save_jpeg(tmp_path, astronaut, make_exif(EDITED), xmp=packet or None)
    assert read_metadata(path).capture_time == datetime(2024, 6, 1, 12, 0, 0)


@pytest.mark.parametrize("name", ["photo.png", "photo.tif", "photo.webp"])
def test_xmp_capture_time_in_other_formats(tmp_path, astronaut, name):
    from PIL.PngImagePlugin import PngInfo

    path = tmp_path / name
    packet = xmp_packet(exif_DateTimeOriginal="2022-03-04T05:06:07.5")
    options = {"exif": make_exif(EDITED).tobytes()}
    if name.endswith(".png"):  # an iTXt chunk, as Photoshop and exiftool write it
        options["pnginfo"] = PngInfo()
        options["pnginfo"].add_itxt("XML:com.adobe.xmp", packet.decode("utf-8"))
    elif name.endswith(".tif"):  # TIFF tag 700, XMLPacket
        options["tiffinfo"] = {700: packet}
    else:
        options["xmp"] = packet
    astronaut.save(path, **options)
    assert read_metadata(path).capture_time == datetime(2022, 3, 4, 5, 6, 7, 500000)
    assert read_metadata(open_image(path, max_side=32)).capture_time == \
        datetime(2022, 3, 4, 5, 6, 7, 500000)
