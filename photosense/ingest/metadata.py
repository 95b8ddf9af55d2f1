"""What a photo's header says: displayed size, capture time, camera, orientation.

Capture time, first found of (see :func:`capture_time_of`):

1. EXIF DateTimeOriginal, with SubSecTimeOriginal and OffsetTimeOriginal;
2. EXIF DateTimeDigitized (CreateDate), with its sub-seconds and offset: the camera writes it
   with DateTimeOriginal, a scanner writes the scan time;
3. the embedded XMP packet's ``exif:DateTimeOriginal``, then its ``photoshop:DateCreated``;
4. IPTC DateCreated (2:55) with TimeCreated (2:60);
5. the XMP packet's ``xmp:CreateDate`` (when the document was made: Photoshop writes it);
6. only then IFD0 DateTime, which is the time the file was last changed (a Photoshop save).

Sub-seconds and UTC offsets are kept wherever the file has them. A date without a time (XMP or
IPTC may hold just the day) counts only when no source has a time.

Malformed EXIF never raises here: the field it spoils is ``None`` (logged at debug level).
A file that is not a readable image at all still raises :class:`~photosense.errors.DecodeError`.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from PIL import Image, IptcImagePlugin

from photosense.ingest import decode

log = logging.getLogger("photosense.ingest.metadata")

_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD = 0x8769
# (time tag, where it lives, its offset tag, its sub-second tag), in order of preference.
_EXIF_TIME_SOURCES = (
    (0x9003, _EXIF_IFD, 0x9011, 0x9291),  # DateTimeOriginal
    (0x9004, _EXIF_IFD, 0x9012, 0x9292),  # DateTimeDigitized
)
_MODIFY_TIME_SOURCE = (_DATETIME, None, 0x9010, 0x9290)  # DateTime (last modified, in IFD0)
# Embedded XMP: (namespace, property), in order of preference.
_XMP_TIME_PROPERTIES = (
    ("http://ns.adobe.com/exif/1.0/", "DateTimeOriginal"),
    ("http://ns.adobe.com/photoshop/1.0/", "DateCreated"),
)
_XMP_CREATE_DATE = ("http://ns.adobe.com/xap/1.0/", "CreateDate")  # after IPTC
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_MAX_XMP = 4 << 20  # bytes; a larger packet is not searched for a date
_XMP_DATE_RE = re.compile(
    r"^\s*(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?)?)?)?\s*$"
)
_IPTC_DATE, _IPTC_TIME = (2, 55), (2, 60)

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
        orientation = decode.reported_orientation(img)
        width, height = decode.displayed_size(img)
    main, sub = _exif_dirs(img)
    embedded = img.info.get(decode.INFO_EMBEDDED_TIMES)
    if embedded is None:
        embedded = embedded_times(img)
    return PhotoMetadata(
        width=int(width),
        height=int(height),
        capture_time=_capture_time(main, sub, embedded),
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


#: (time, has a time of day) from a photo's embedded XMP and IPTC, in order of preference.
EmbeddedTimes = tuple[tuple[datetime, bool], ...]


def capture_time_of(img: Image.Image) -> datetime | None:
    """The capture time of an image from ``Image.open`` (see the module doc for the order)."""
    main, sub = _exif_dirs(img)
    return _capture_time(main, sub, embedded_times(img))


def _capture_time(main: dict, sub: dict, embedded: EmbeddedTimes = ()) -> datetime | None:
    for source in _EXIF_TIME_SOURCES:
        when = _exif_time(main, sub, source)
        if when is not None:
            return when
    for when, has_time in embedded:
        if has_time:
            return when
    for when, _ in embedded:  # a day without a time still beats the last-edit time
        return when
    return _exif_time(main, sub, _MODIFY_TIME_SOURCE)


def _exif_time(main: dict, sub: dict, source: tuple) -> datetime | None:
    tag, where, offset_tag, subsec_tag = source
    directory = sub if where == _EXIF_IFD else main
    when = _parse_datetime(_text(directory.get(tag)))
    if when is None:
        return None
    micro = _parse_subsec(_text(sub.get(subsec_tag)))
    if micro:
        when = when.replace(microsecond=micro)
    tz = _parse_offset(_text(sub.get(offset_tag)))
    return when.replace(tzinfo=tz) if tz else when


def embedded_times(img: Image.Image) -> EmbeddedTimes:
    """Capture times from the image's embedded XMP packet and IPTC block, best first; read
    from the header (:func:`~photosense.ingest.decode.open_image` keeps them in ``info``)."""
    packet = _xmp_packet(img)
    xmp = _xmp_times(packet) if packet else {}
    found = [xmp[prop] for prop in _XMP_TIME_PROPERTIES if prop in xmp]
    iptc = _iptc_time(img)
    if iptc is not None:
        found.append(iptc)
    if _XMP_CREATE_DATE in xmp:
        found.append(xmp[_XMP_CREATE_DATE])
    return tuple(found)


def _xmp_packet(img: Image.Image) -> bytes | None:
    info = img.info
    value = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if value is None and img.format == "TIFF":
        value = getattr(img, "tag_v2", {}).get(700)  # XMLPacket
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return value if isinstance(value, bytes) and len(value) <= _MAX_XMP else None


def _xmp_times(packet: bytes) -> dict[tuple[str, str], tuple[datetime, bool]]:
    start = packet.find(b"<x:xmpmeta")
    if start < 0:
        start = packet.find(b"<rdf:RDF")
    end_tag = b"</x:xmpmeta>" if packet.startswith(b"<x:xmpmeta", max(start, 0)) else b"</rdf:RDF>"
    end = packet.find(end_tag, max(start, 0))
    if start < 0 or end < 0:
        return {}
    try:
        root = ET.fromstring(packet[start:end + len(end_tag)])
    except ET.ParseError as e:
        log.debug("unreadable XMP packet: %s", e)
        return {}
    found = {}
    for namespace, name in (*_XMP_TIME_PROPERTIES, _XMP_CREATE_DATE):
        key = f"{{{namespace}}}{name}"
        for desc in root.iter(f"{{{_RDF}}}Description"):
            text = desc.get(key)
            if text is None:
                element = desc.find(key)
                text = element.text if element is not None else None
            parsed = _parse_xmp_date(text)
            if parsed is not None:
                found[(namespace, name)] = parsed
                break
    return found


def _parse_xmp_date(text: str | None) -> tuple[datetime, bool] | None:
    """An XMP date ("2021-04-11T15:47:53.054-05:00", or just "2021-04-11") as (datetime,
    has a time of day)."""
    match = _XMP_DATE_RE.match(text or "")
    if not match or match.group(2) is None:
        return None  # a year alone orders nothing
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        when = datetime(int(year), int(month), int(day or 1), int(hour or 0), int(minute or 0),
                        int(second or 0), int((fraction or "0")[:6].ljust(6, "0")))
    except ValueError:
        log.debug("invalid XMP date %r", text)
        return None
    if zone:
        tz = UTC if zone == "Z" else _parse_offset(zone)
        if tz is not None:
            when = when.replace(tzinfo=tz)
    return when, hour is not None


def _iptc_time(img: Image.Image) -> tuple[datetime, bool] | None:
    if img.format not in ("JPEG", "MPO", "TIFF"):
        return None
    try:
        iptc = IptcImagePlugin.getiptcinfo(img)
    except Exception as e:  # noqa: BLE001 - a malformed IPTC block in a user's file
        log.debug("unreadable IPTC: %s", e)
        return None
    if not iptc:
        return None
    day = _text(iptc.get(_IPTC_DATE))
    if not day or not re.fullmatch(r"\d{8}", day):
        return None
    try:
        when = datetime.combine(date(int(day[:4]), int(day[4:6]), int(day[6:])), datetime.min.time())
    except ValueError:
        log.debug("invalid IPTC date %r", day)
        return None
    clock = _text(iptc.get(_IPTC_TIME)) or ""
    match = re.fullmatch(r"(\d{2})(\d{2})(\d{2})([+-]\d{4})?", clock)
    if not match:
        return when, False
    try:
        when = when.replace(hour=int(match.group(1)), minute=int(match.group(2)),
                            second=int(match.group(3)))
    except ValueError:
        return when, False
    tz = _parse_offset(match.group(4)) if match.group(4) else None
    return (when.replace(tzinfo=tz) if tz else when), True


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
