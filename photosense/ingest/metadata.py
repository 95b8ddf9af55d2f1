"""What a photo's header says: displayed size, capture time, camera, orientation.

Malformed EXIF never raises here: the field it spoils is ``None`` (logged at debug level).
A file that is not a readable image at all still raises :class:`~photosense.errors.DecodeError`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from PIL import Image

from photosense.ingest import decode

log = logging.getLogger("photosense.ingest.metadata")

_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD = 0x8769
# (time tag, where it lives, its offset tag, its sub-second tag), in order of preference.
_TIME_SOURCES = (
    (0x9003, _EXIF_IFD, 0x9011, 0x9291),  # DateTimeOriginal
    (0x9004, _EXIF_IFD, 0x9012, 0x9292),  # DateTimeDigitized
    (_DATETIME, None, 0x9010, 0x9290),  # DateTime (last modified, in IFD0)
)

_DATETIME_RE = re.compile(
    r"^\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})[ T]+(\d{1,2}):(\d{1,2}):(\d{1,2})"
)
_OFFSET_RE = re.compile(r"^\s*([+-])(\d{1,2}):?(\d{2})\s*$")
# Trailing words of a maker's legal name that nobody says when naming a camera.
_COMPANY_WORDS = frozenset(
    {"corporation", "corp", "co", "ltd", "co.,ltd", "company", "inc", "imaging", "optical"}
    | {"ag", "gmbh"}
)


@dataclass(frozen=True)
class PhotoMetadata:
    """A photo's metadata; ``width``/``height`` are as displayed (EXIF orientation applied)."""

    width: int
    height: int
    capture_time: datetime | None
    camera: str | None
    orientation: int


def read_metadata(img_or_path: Image.Image | str | os.PathLike[str]) -> PhotoMetadata:
    """Read the metadata of a photo, given its path or an image already open.

    The image may be one from ``PIL.Image.open`` (its header is read, pixels are not decoded)
    or one returned by :func:`~photosense.ingest.decode.open_image`, which keeps the file's
    native size and EXIF, so a file decoded once need not be opened again. A camera RAW path
    is read by :func:`~photosense.ingest.raw.read_raw_metadata`.
    """
    if isinstance(img_or_path, Image.Image):
        return _from_image(img_or_path)
    if decode.is_raw_path(img_or_path):
        from photosense.ingest.raw import read_raw_metadata

        return read_raw_metadata(img_or_path)
    with decode.open_header(img_or_path) as img:
        return _from_image(img)


def _from_image(img: Image.Image) -> PhotoMetadata:
    if decode.INFO_SOURCE_SIZE in img.info:  # decoded by open_image: pixels already upright
        width, height = img.info[decode.INFO_SOURCE_SIZE]
        orientation = int(img.info.get(decode.INFO_ORIENTATION, 1))
    else:
        orientation = decode.file_orientation(img)
        width, height = decode.displayed_size(img)
    main, sub = _exif_dirs(img)
    return PhotoMetadata(
        width=int(width),
        height=int(height),
        capture_time=_capture_time(main, sub),
        camera=_camera(main.get(_MAKE), main.get(_MODEL)),
        orientation=orientation,
    )


def _exif_dirs(img: Image.Image) -> tuple[dict, dict]:
    """IFD0 and the EXIF sub-directory as plain dicts; empty where missing or unreadable."""
    if img.format == "PNG" and "exif" not in img.info:
        return {}, {}  # PngImageFile.getexif() would decode every pixel looking for eXIf
    try:
        exif = img.getexif()
    except Exception as e:  # noqa: BLE001 - malformed EXIF in a user's file is not our bug
        log.debug("unreadable EXIF: %s", e)
        return {}, {}
    main = dict(exif)
    try:
        sub = dict(exif.get_ifd(_EXIF_IFD)) if _EXIF_IFD in exif else {}
    except Exception as e:  # noqa: BLE001 - as above
        log.debug("unreadable EXIF sub-directory: %s", e)
        sub = {}
    return main, sub


def _text(value: object) -> str | None:
    """An EXIF ASCII value as clean text: NULs and surrounding whitespace removed."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("\x00", " ").split())
    return text or None


def _capture_time(main: dict, sub: dict) -> datetime | None:
    for tag, where, offset_tag, subsec_tag in _TIME_SOURCES:
        directory = sub if where == _EXIF_IFD else main
        when = _parse_datetime(_text(directory.get(tag)))
        if when is None:
            continue
        micro = _parse_subsec(_text(sub.get(subsec_tag)))
        if micro:
            when = when.replace(microsecond=micro)
        tz = _parse_offset(_text(sub.get(offset_tag)))
        return when.replace(tzinfo=tz) if tz else when
    return None


def _parse_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    match = _DATETIME_RE.match(text)
    if not match:
        log.debug("unparseable EXIF date %r", text)
        return None
    try:
        return datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00" and friends
        log.debug("invalid EXIF date %r", text)
        return None


def _parse_subsec(text: str | None) -> int:
    """EXIF SubSecTime ("5", "05", "123456") as microseconds."""
    digits = (text or "").strip()
    if not digits.isdigit():
        return 0
    return int(digits[:6].ljust(6, "0"))


def _parse_offset(text: str | None) -> timezone | None:
    match = _OFFSET_RE.match(text or "")
    if not match:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24):
        return None
    return timezone(-delta if sign == "-" else delta)


def _camera(make_value: object, model_value: object) -> str | None:
    """ "Make Model" without the maker twice: ("Canon", "Canon EOS R5") -> "Canon EOS R5"."""
    make, model = _text(make_value), _text(model_value)
    if make:
        words = make.split()
        while len(words) > 1 and words[-1].lower().strip(".,") in _COMPANY_WORDS:
            words.pop()
        make = " ".join(words).rstrip(",")
    if not make or not model:
        return model or make
    if model.lower().startswith(make.split()[0].lower()):
        return model
    return f"{make} {model}"
