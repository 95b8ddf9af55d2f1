"""Real files from real cameras and phones (tests/data/real/, see its LICENSES.md), read by
photosense and compared with what exiftool reads from the same files.

What is compared, per file: the camera (exiftool's Make and Model, put together the way
photosense names a camera), the capture time with its sub-seconds and UTC offset (exiftool's
SubSecDateTimeOriginal, else DateTimeOriginal, else XMP CreateDate), the displayed size and the
orientation. Most RAW files have their image data stripped (exiftool's test files): their
metadata must be read all the same. One RAW is whole (a Sony ILCE-7RM3 ARW): its pixels are
decoded, turned, made into a thumbnail and scored through ``photosense add``/``score``.

exiftool is required, as for tests/test_xmp.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photosense.errors import DecodeError
from photosense.ingest import metadata as metadata_mod
from photosense.ingest.decode import is_image_path, open_image
from photosense.ingest.metadata import read_metadata
from photosense.ingest.raw import raw_layout
from tests.fixtures.cli import run_cli

REAL = Path(__file__).parent / "data" / "real"
FILES = sorted(p.name for p in REAL.iterdir() if is_image_path(p.name))
# RAWs whose image data exiftool's author stripped (headers, EXIF and maker notes kept).
RAWS = ["CanonRaw.cr2", "CanonRaw.cr3", "DNG.dng", "FujiFilm.raf", "Nikon.nef", "Panasonic.rw2"]
HEIFS = ["L_exif_xmp_iptc.heic", "arrow.heic", "cat.hif"]
# A whole RAW: Sony ILCE-7RM3 (APS-C crop mode), 5216x3464 stored, DefaultCropSize 5168x3448.
ARW = "_DSC2164.ARW"
ARW_SIZE = (5168, 3448)

# Where photosense's size differs from exiftool's Composite:ImageSize on purpose, and why.
# (exiftool's ImageSize of a DNG, or of an ARW that has the DNG tag, is the stored raw area;
# the image is its DefaultCropSize: _expected_size takes that wherever exiftool reads one.)
SIZE_EXCEPTIONS = {
    # A FinePix S5Pro's SuperCCD is stored at 45 degrees: exiftool gives the sensor's stored
    # geometry (4256x1424); what is displayed is LibRaw's rotated image.
    "FujiFilm.raf": (3552, 3551),
}


def _exiftool(paths: list[Path]) -> dict[str, dict]:
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.fail("exiftool is required (Debian: libimage-exiftool-perl; .ci/run installs it)",
                    pytrace=False)
    out = subprocess.run(
        [exe, "-j", "-n", "-Make", "-Model", "-SubSecDateTimeOriginal", "-DateTimeOriginal",
         "-XMP-xmp:CreateDate", "-Orientation", "-ImageSize", "-DefaultCropSize",
         *map(str, paths)], capture_output=True, text=True, check=True, timeout=120).stdout
    return {Path(d["SourceFile"]).name: d for d in json.loads(out)}


@pytest.fixture(scope="module")
def exif_truth() -> dict[str, dict]:
    return _exiftool([REAL / name for name in FILES])


def _exiftool_time(text: str) -> datetime:
    """exiftool's "2021:04:11 15:47:53.054-05:00" as a datetime."""
    day, clock = text.split(" ", 1)
    return datetime.fromisoformat(day.replace(":", "-") + "T" + clock)


def _expected_size(name: str, truth: dict) -> tuple[int, int]:
    exception = SIZE_EXCEPTIONS.get(name)
    if exception is not None:
        return exception
    key = "DefaultCropSize" if "DefaultCropSize" in truth else "ImageSize"
    width, height = (int(round(float(v))) for v in str(truth[key]).split())
    if int(truth.get("Orientation", 1)) >= 5:  # exiftool gives the size as stored
        width, height = height, width
    return width, height


def test_the_set_has_every_kind():
    assert len(FILES) >= 15
    kinds = {Path(n).suffix.lower() for n in FILES}
    assert {".jpg", ".heic", ".hif", ".avif", ".cr2", ".cr3", ".dng", ".nef", ".raf", ".rw2",
            ".arw"} <= kinds


@pytest.mark.parametrize("name", FILES)
def test_metadata_matches_exiftool(name, exif_truth):
    truth = exif_truth[name]
    meta = read_metadata(REAL / name)
    # Camera: exiftool's Make and Model, named the way photosense names cameras.
    assert meta.camera == metadata_mod._camera(truth.get("Make"), truth.get("Model"))
    # Capture time, with sub-seconds and the UTC offset where the file has them.
    when = (truth.get("SubSecDateTimeOriginal") or truth.get("DateTimeOriginal")
            or truth.get("CreateDate"))
    assert meta.capture_time == (_exiftool_time(when) if when else None)
    assert (meta.width, meta.height) == _expected_size(name, truth)
    assert meta.orientation == int(truth.get("Orientation", 1))


@pytest.mark.parametrize("name", [n for n in FILES if n not in RAWS])
def test_decoded_image_carries_the_same_metadata(name):
    """Scanning reads the metadata from the decoded image: it must say the same."""
    assert read_metadata(open_image(REAL / name, max_side=128)) == read_metadata(REAL / name)


def test_photoshop_save_time_is_not_the_capture_time(exif_truth):
    """BlueSquare.jpg has no DateTimeOriginal; its IFD0 DateTime is Photoshop's save time."""
    truth = _exiftool([REAL / "BlueSquare.jpg"])["BlueSquare.jpg"]
    assert "DateTimeOriginal" not in truth
    meta = read_metadata(REAL / "BlueSquare.jpg")
    assert meta.capture_time.isoformat() == "2005-09-07T15:07:40-07:00"  # xmp:CreateDate
    assert meta.capture_time.replace(tzinfo=None) != datetime(2005, 9, 7, 15, 9, 51)  # DateTime


def test_iphone_heic_is_decoded_upright():
    """arrow.heic (iPhone 8 Plus) is stored landscape with orientation 6: a drawn arrow that
    points up once turned. The widest row (the arrowhead's base) is then in the upper half."""
    img = open_image(REAL / "arrow.heic", max_side=200)
    assert img.size == (150, 200)
    dark = np.asarray(img.convert("L")) < 90
    extents = [np.ptp(np.nonzero(row)[0]) if row.any() else 0 for row in dark]
    assert int(np.argmax(extents)) < dark.shape[0] * 0.5


@pytest.mark.parametrize("name", HEIFS)
def test_heif_files_are_photos(name):
    assert is_image_path(name)
    img = open_image(REAL / name, max_side=64)
    assert img.mode == "RGB" and max(img.size) == 64


@pytest.mark.parametrize("name", RAWS)
def test_raw_metadata_without_image_data(name, exif_truth):
    """The image data of these RAWs is gone (LibRaw cannot decode the CR2 at all): the
    camera, time and size still come from the file."""
    meta = read_metadata(REAL / name)
    assert meta.camera and meta.capture_time is not None
    if name == "CanonRaw.cr2":
        with pytest.raises(DecodeError, match="LibRaw cannot read"):
            open_image(REAL / name, max_side=64)


def test_truncated_real_cr3_says_truncated(tmp_path):
    """A CR3 cut short (a card pulled out while writing) is reported as truncated, with the
    camera and time still read."""
    cut = tmp_path / "IMG_0001.CR3"
    data = (REAL / "CanonRaw.cr3").read_bytes()
    cut.write_bytes(data[: len(data) - 4000])
    assert raw_layout(cut).truncated_message()
    expected = r"^truncated RAW file \(48,502 of at least 52,502 bytes\)$"
    with pytest.raises(DecodeError, match=expected):
        open_image(cut, max_side=64)
    meta = read_metadata(cut)
    assert meta.camera == "Canon EOS M50" and (meta.width, meta.height) == (6000, 4000)


# -- a whole RAW from a real camera, and a real AVIF ----------------------------------------


def _gray(img, width: int = 300) -> np.ndarray:
    """An image as a float grey array ``width`` pixels wide, for comparing two renderings."""
    img = img.convert("L")
    return np.asarray(img.resize((width, round(width * img.height / img.width))), np.float64)


def test_real_arw_is_the_size_the_camera_says(exif_truth):
    """The ARW stores 5216x3464 pixels (exiftool's ImageSize, and what photosense said before
    it read ARWs' DefaultCropSize); the camera's image is 5168x3448: its DefaultCropSize, its
    EXIF image size and Sony's FullImageSize all say so."""
    truth = exif_truth[ARW]
    assert truth["ImageSize"] == "5216 3464" and truth["DefaultCropSize"] == "5168 3448"
    meta = read_metadata(REAL / ARW)
    assert (meta.width, meta.height) == ARW_SIZE
    assert raw_layout(REAL / ARW).size == ARW_SIZE
    assert open_image(REAL / ARW, max_side=64).info["photosense.source_size"] == ARW_SIZE


def test_real_arw_pixels_are_decoded_from_the_sensor_data():
    """At native size (max_side 0) the embedded preview (1616x1080) is too small: the sensor
    data is demosaiced (half size). The result is the picture the camera's own JPEG preview
    shows: the same scene, in the blue stage light the camera's white balance kept."""
    import rawpy

    decoded = open_image(REAL / ARW, max_side=0)
    assert decoded.mode == "RGB" and decoded.size == (2592, 1732)  # LibRaw's 5184x3464 / 2
    with rawpy.imread(str(REAL / ARW)) as raw:
        thumb = raw.extract_thumb()
    assert thumb.format == rawpy.ThumbFormat.JPEG
    preview = Image.open(BytesIO(thumb.data))
    assert preview.size == (1616, 1080)
    # The sensor decode keeps 8 more columns each side than the preview: near enough at 300 px.
    a, b = _gray(decoded), _gray(preview)
    assert a.shape == b.shape
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    rgb = np.asarray(decoded, np.float64).reshape(-1, 3).mean(axis=0)
    assert rgb[2] > 1.5 * rgb[0] and rgb[2] > 1.5 * rgb[1]  # blue light, channels in order


def test_real_arw_orientation_is_applied(tmp_path, exiftool):
    """The same ARW with its orientation tag set to 6 (as exiftool writes it, in a copy):
    portrait size, portrait pixels, and exiftool agrees about the tag."""
    turned = tmp_path / "turned.ARW"
    shutil.copyfile(REAL / ARW, turned)
    subprocess.run([exiftool, "-q", "-n", "-IFD0:Orientation=6", "-overwrite_original",
                    str(turned)], check=True, timeout=120)
    assert int(_exiftool([turned])["turned.ARW"]["Orientation"]) == 6
    meta = read_metadata(turned)
    assert meta.orientation == 6 and (meta.width, meta.height) == ARW_SIZE[::-1]
    upright = open_image(REAL / ARW, max_side=300)
    img = open_image(turned, max_side=300)
    assert img.size == upright.size[::-1]
    # Orientation 6: the stored image turned 90 degrees clockwise.
    expected = np.rot90(np.asarray(upright.convert("L"), np.float64), k=-1)
    got = np.asarray(img.convert("L"), np.float64)
    assert np.abs(got - expected).mean() < 3 < np.abs(got[::-1, ::-1] - expected).mean()


def test_real_arw_and_avif_make_thumbnails(tmp_path):
    """The grid's thumbnail store makes (and caches) a thumbnail of each."""
    from photosense.gui.thumbnails import ThumbnailStore

    store = ThumbnailStore(tmp_path / "thumbs")
    for name, size in ((ARW, (160, 107)), ("hopper.avif", (128, 128))):  # never enlarged
        path = REAL / name
        st = path.stat()
        qimage = store.load_or_make(str(path), st.st_mtime, st.st_size, 160)
        assert not qimage.isNull() and (qimage.width(), qimage.height()) == size
    assert len(list((tmp_path / "thumbs").rglob("*.jpg"))) == 2


def test_real_avif_is_read():
    """hopper.avif (Pillow's test suite, a US Navy photograph of Grace Hopper): decoded by
    Pillow's own AVIF reader; no EXIF, so no camera, time or orientation."""
    img = open_image(REAL / "hopper.avif")
    assert img.mode == "RGB" and img.size == (128, 128)
    meta = read_metadata(REAL / "hopper.avif")
    assert (meta.width, meta.height, meta.orientation) == (128, 128, 1)
    assert meta.camera is None and meta.capture_time is None
    gray = np.asarray(img.convert("L"), np.float64)
    assert gray.std() > 20  # the photograph, not a blank frame


def test_truncated_real_arw_says_truncated(tmp_path):
    """The whole ARW cut short at 9 MB (a card pulled out while writing): one line saying
    "truncated", and the camera, time and size still read from what is left."""
    cut = tmp_path / "DSC00001.ARW"
    with open(REAL / ARW, "rb") as src:
        cut.write_bytes(src.read(9_000_000))
    expected = r"^truncated RAW file \(9,000,000 of at least 18,649,856 bytes\)$"
    with pytest.raises(DecodeError, match=expected):
        open_image(cut, max_side=64)
    meta = read_metadata(cut)
    assert meta.camera == "SONY ILCE-7RM3" and (meta.width, meta.height) == ARW_SIZE
    assert meta.capture_time == _exiftool_time("2018:07:11 01:18:47+00:00")


def test_real_files_are_added_and_scored(tmp_path, capsys, tiny_weights):
    """``photosense add`` then ``score`` (the tiny test model) on copies of the whole ARW, the
    AVIF, a phone JPEG (orientation 6) and the truncated ARW: three scored photos with the
    camera's metadata, and the cut one listed with its one-line reason."""
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    for name in (ARW, "hopper.avif", "empty_gps_ifd.jpg"):
        shutil.copyfile(REAL / name, shoot / name)
    with open(REAL / ARW, "rb") as src:
        (shoot / "DSC00001.ARW").write_bytes(src.read(9_000_000))
    lib_path = str(tmp_path / "library.sqlite3")
    code, _, err = run_cli(capsys, "add", shoot, "--library", lib_path)
    assert code == 0 and "4 added" in err, err
    code, _, err = run_cli(capsys, "score", "--model", "photosense-tiny", "--weights",
                           tiny_weights, "--device", "cpu", "--max-side", "256",
                           "--library", lib_path)
    assert code == 0 and "scored 3 photos" in err, err
    code, out, _ = run_cli(capsys, "list", "--format", "json", "--library", lib_path)
    rows = {Path(r["path"]).name: r for r in json.loads(out)}
    assert set(rows) == {ARW, "hopper.avif", "empty_gps_ifd.jpg", "DSC00001.ARW"}
    for name in (ARW, "hopper.avif", "empty_gps_ifd.jpg"):
        row = rows[name]
        assert row["error"] is None and 0 < row["scores"]["quality"] < 1, row
    assert (rows[ARW]["width"], rows[ARW]["height"]) == ARW_SIZE
    assert rows[ARW]["camera"] == "SONY ILCE-7RM3"
    # The library keeps the camera's wall-clock time (its UTC offset is not stored).
    assert rows[ARW]["capture_time"] == "2018-07-11T01:18:47"
    assert (rows["hopper.avif"]["width"], rows["hopper.avif"]["height"]) == (128, 128)
    phone = rows["empty_gps_ifd.jpg"]
    assert phone["camera"] == "Xiaomi Redmi Note 9S"
    assert phone["capture_time"] == "2020-07-27T14:46:48.780685"
    cut = rows["DSC00001.ARW"]
    assert cut["error"] == "truncated RAW file (9,000,000 of at least 18,649,856 bytes)"
    assert cut["scores"] == {} and cut["camera"] == "SONY ILCE-7RM3"
