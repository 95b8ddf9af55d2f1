"""Real files from real cameras and phones (tests/data/real/, see its LICENSES.md), read by
photosense and compared with what exiftool reads from the same files.

What is compared, per file: the camera (exiftool's Make and Model, put together the way
photosense names a camera), the capture time with its sub-seconds and UTC offset (exiftool's
SubSecDateTimeOriginal, else DateTimeOriginal, else XMP CreateDate), the displayed size and the
orientation. The RAW files have their image data stripped (exiftool's test files): their
metadata must be read all the same.

exiftool is required, as for tests/test_xmp.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from photosense.errors import DecodeError
from photosense.ingest import metadata as metadata_mod
from photosense.ingest.decode import is_image_path, open_image
from photosense.ingest.metadata import read_metadata
from photosense.ingest.raw import raw_layout

REAL = Path(__file__).parent / "data" / "real"
FILES = sorted(p.name for p in REAL.iterdir() if is_image_path(p.name))
RAWS = ["CanonRaw.cr2", "CanonRaw.cr3", "DNG.dng", "FujiFilm.raf", "Nikon.nef", "Panasonic.rw2"]
HEIFS = ["IMG_5195.HEIC", "L_exif_xmp_iptc.heic", "arrow.heic", "cat.hif"]

# Where photosense's size differs from exiftool's Composite:ImageSize on purpose, and why.
SIZE_EXCEPTIONS = {
    # exiftool's ImageSize of a DNG is the stored raw area; the image is DefaultCropSize.
    "DNG.dng": "DefaultCropSize",
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
    if isinstance(exception, tuple):
        return exception
    key = exception or "ImageSize"
    width, height = (int(round(float(v))) for v in str(truth[key]).split())
    if int(truth.get("Orientation", 1)) >= 5:  # exiftool gives the size as stored
        width, height = height, width
    return width, height


def test_the_set_has_every_kind():
    assert len(FILES) >= 15
    kinds = {Path(n).suffix.lower() for n in FILES}
    assert {".jpg", ".heic", ".hif", ".cr2", ".cr3", ".dng", ".nef", ".raf", ".rw2"} <= kinds


@pytest.mark.parametrize("name", FILES)
def test_metadata_matches_exiftool(name, exif_truth):
    truth = exif_truth[name]
    meta = read_metadata(REAL / name)
    # Camera: exiftool's Make and Model, named the way photosense names cameras.
    assert meta.camera == metadata_mod._camera(truth.get("Make"), truth.get("Model"))
    # Capture time, with sub-seconds and the UTC offset where the file has them.
    when = (truth.get("SubSecDateTimeOriginal") or truth.get("DateTimeOriginal")
            or truth.get("CreateDate"))
    assert meta.capture_time == _exiftool_time(when)
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
