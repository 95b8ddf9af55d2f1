"""Camera RAW files: pixels from the embedded preview (or a half-size decode), EXIF from the RAW.

Pixels come from LibRaw (through ``rawpy``): the camera's embedded JPEG preview when there is
one large enough, otherwise a half-size demosaic with the camera's white balance (slower, but
every file LibRaw supports has one). The preview is stored as the sensor saw it; the RAW's
orientation is applied to it here, once (the preview's own EXIF orientation, when it has one,
is ignored). A half-size decode is turned upright by LibRaw itself.

EXIF (capture time, camera) is read with ``exifread`` (pure Python): straight from the file for
the TIFF-based formats (CR2, NEF, ARW, DNG, PEF, SRW, ORF, RW2), from the CMT1/CMT2 boxes of a
CR3, and from the embedded JPEG preview otherwise (RAF). rawpy does not expose the camera's
make and model; its capture timestamp is the last resort.

A RAW and a JPEG of the same shot (same folder, same stem) are one photo; the JPEG is its
``companion``, and :func:`best_image_path` picks it for anything that only needs pixels.
Every failure is a :class:`~photosense.errors.DecodeError` with a one-line message.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from datetime import datetime
from typing import IO, Any

from PIL import Image

from photosense.errors import DecodeError
from photosense.ingest import decode
from photosense.ingest.decode import RAW_EXTENSIONS, is_raw_path

log = logging.getLogger("photosense.ingest.raw")

__all__ = ["RAW_EXTENSIONS", "best_image_path", "is_raw_path", "open_raw", "raw_image_size",
           "read_raw_metadata"]

#: A preview at least this large (longer side) is used for any ``max_side`` target.
MIN_PREVIEW_SIDE = 640

# LibRaw's ``flip`` (dcraw's bits: 1 mirror, 2 flip, 4 transpose) as an EXIF orientation.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

_MAIN_TAGS = (0x010F, 0x0110, 0x0132)  # Make, Model, DateTime
_EXIF_IFD = 0x8769
_EXIF_TAGS = (0x9003, 0x9004, 0x9010, 0x9011, 0x9012, 0x9290, 0x9291, 0x9292)
_CR3_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")


def best_image_path(row_path: str, companion_path: str | None) -> str:
    """The file to take a photo's pixels from: the JPEG of a RAW+JPEG pair (decoded faster,
    and as the camera rendered it) when it is still there, else the photo's own file."""
    if companion_path and os.path.isfile(companion_path):
        return companion_path
    return row_path


# -- opening --------------------------------------------------------------------------------


class _Raw:
    """An open LibRaw handle (``with`` block), its failures turned into DecodeErrors."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.raw: Any = None

    def __enter__(self):
        import rawpy

        try:
            st = os.stat(self.path)
        except OSError as e:
            raise decode._os_error(e, self.path) from None
        if st.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        with decode._open_readonly(self.path):  # permission and "is a directory" errors
            pass
        self.raw = rawpy.RawPy()
        try:
            try:
                self.raw.open_file(self.path)
            except UnicodeError:  # a file name LibRaw cannot be handed: give it the bytes
                with decode._open_readonly(self.path) as fp:
                    self.raw.open_buffer(fp.read())
        except BaseException as e:
            self.raw.close()
            raise _libraw_error(e) from None
        return self.raw

    def __exit__(self, *exc) -> None:
        self.raw.close()


def _libraw_error(error: BaseException) -> BaseException:
    """LibRaw's exception as a one-line DecodeError (other exceptions are returned as is)."""
    import rawpy

    if isinstance(error, DecodeError):
        return error
    if isinstance(error, OSError):
        return DecodeError(f"cannot read file: {error.strerror or decode._one_line(error)}",
                           transient=True)
    if isinstance(error, rawpy.LibRawFileUnsupportedError):
        return DecodeError("unsupported or corrupt RAW file (LibRaw cannot read this camera's "
                           "format)")
    if isinstance(error, rawpy.LibRawUnsufficientMemoryError):
        return DecodeError("not enough memory to decode image")
    if isinstance(error, rawpy.LibRawTooBigError):
        return decode._too_large(None)
    if isinstance(error, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
        return DecodeError(f"truncated or corrupt RAW file: {_message(error)}")
    if isinstance(error, rawpy.LibRawError):
        return DecodeError(f"cannot decode RAW file: {_message(error)}")
    if isinstance(error, MemoryError):
        return DecodeError("not enough memory to decode image")
    return error


def _message(error: BaseException) -> str:
    text = error.args[0] if error.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return decode._one_line(Exception(text)) if text else type(error).__name__


def _orientation(raw) -> int:
    return _FLIP_TO_ORIENTATION.get(int(raw.sizes.flip) & 7, 1)


def _displayed_size(raw) -> tuple[int, int]:
    sizes = raw.sizes
    return decode.oriented_size((int(sizes.width), int(sizes.height)), _orientation(raw))


def raw_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of a RAW photo as displayed (orientation applied), from its header."""
    with _Raw(path) as raw:
        return _displayed_size(raw)


# -- pixels ---------------------------------------------------------------------------------


def open_raw(path: str | os.PathLike[str], max_side: int = 0) -> Image.Image:
    """Decode a RAW file into an upright 8-bit RGB image whose longer side is at most
    ``max_side`` (0: the preview's or the half-size decode's own size).

    Like :func:`~photosense.ingest.decode.open_image`, the image's ``info`` carries the RAW's
    displayed size, its orientation and the EXIF read_metadata() needs.
    """
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0, got {max_side}")
    with _Raw(path) as raw:
        orientation = _orientation(raw)
        native = _displayed_size(raw)
        sizes = raw.sizes
        if sizes.raw_width * sizes.raw_height > decode.MAX_PIXELS:
            raise decode._too_large(sizes.raw_width * sizes.raw_height)
        # Any preview that covers max_side, or MIN_PREVIEW_SIDE, or the whole RAW will do;
        # at native size (max_side 0) one at least as large as a half-size decode.
        need = min(max_side, MIN_PREVIEW_SIDE, max(native)) if max_side else max(native) // 2
        thumb_exif: bytes | None = None
        try:
            image, thumb_exif = _preview(raw, need, max_side, orientation)
            if image is None:
                image = _half_size(raw)
        except DecodeError:
            raise
        except Exception as e:  # noqa: BLE001 - LibRaw's errors are sorted out by _libraw_error
            raise _libraw_error(e) from None
        exif = _exif(path, raw, thumb_exif)
    image = decode._downscale(image, max_side)
    image.info = {decode.INFO_SOURCE_SIZE: native, decode.INFO_ORIENTATION: orientation}
    if exif:
        image.info["exif"] = exif.tobytes()
    return image


def _preview(raw, need: int, max_side: int,
             orientation: int) -> tuple[Image.Image | None, bytes | None]:
    """The embedded preview, upright, if it is at least ``need`` pixels on its longer side
    (decoded at a reduced scale that still covers ``max_side``); also the preview's EXIF bytes
    (a JPEG preview may carry the camera's EXIF)."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None, None
    except rawpy.LibRawError as e:  # a damaged preview: the RAW data may still be fine
        log.debug("unusable RAW preview: %s", _message(e))
        return None, None
    exif_bytes = None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            img = Image.open(io.BytesIO(thumb.data), formats=("JPEG",))
            exif_bytes = img.info.get("exif")
            if max(img.size) < need:
                return None, exif_bytes
            if max_side and max(img.size) >= 2 * max_side:
                img.draft("RGB", decode._ceil_target(img.size, max_side))
            img.load()
        elif thumb.format == rawpy.ThumbFormat.BITMAP:
            img = Image.fromarray(thumb.data)
            if max(img.size) < need:
                return None, None
        else:
            return None, None
        img = decode.to_rgb(img)
    except (*decode._CORRUPT_ERRORS, Warning) as e:
        log.debug("unreadable RAW preview: %s", decode._one_line(e))
        return None, exif_bytes
    # Turned upright by the camera already (portrait where the sensor's data is landscape)?
    width, height = int(raw.sizes.width), int(raw.sizes.height)
    if orientation >= 5 and width != height and (img.width < img.height) != (width < height):
        return img, exif_bytes
    transpose = decode._ORIENTATION_TRANSPOSE.get(orientation)
    return (img.transpose(transpose) if transpose is not None else img), exif_bytes


def _half_size(raw) -> Image.Image:
    """A half-size demosaic (camera white balance, 8 bits), already upright."""
    rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    return Image.fromarray(rgb, "RGB")


# -- metadata -------------------------------------------------------------------------------


def read_raw_metadata(path: str | os.PathLike[str]):
    """The :class:`~photosense.ingest.metadata.PhotoMetadata` of a RAW file (no pixels
    decoded, unless the only EXIF is in a JPEG preview)."""
    from photosense.ingest.metadata import read_metadata

    with _Raw(path) as raw:
        native = _displayed_size(raw)
        orientation = _orientation(raw)
        exif = _exif(path, raw, None, preview_fallback=True)
    carrier = Image.new("RGB", (1, 1))
    carrier.info = {decode.INFO_SOURCE_SIZE: native, decode.INFO_ORIENTATION: orientation}
    if exif:
        carrier.info["exif"] = exif.tobytes()
    return read_metadata(carrier)


def _exif(path: str | os.PathLike[str], raw, thumb_exif: bytes | None,
          preview_fallback: bool = False) -> Image.Exif | None:
    """The EXIF tags read_metadata() uses, as a Pillow Exif (orientation left out)."""
    main: dict[int, Any] = {}
    sub: dict[int, Any] = {}
    try:
        with decode._open_readonly(path) as fp:
            head = fp.read(16)
            if head[:2] in (b"II", b"MM"):
                _exifread_into(fp, main, sub)
            elif head[4:12] == b"ftypcrx ":
                _cr3_into(fp, main, sub)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed EXIF in a user's file is not our bug
        log.debug("unreadable RAW EXIF: %s", e)
    if not main and not sub:
        if thumb_exif is None and preview_fallback:
            thumb_exif = _preview_exif(raw)
        if thumb_exif:
            try:
                exif = Image.Exif()
                exif.load(thumb_exif)
                main = {t: exif[t] for t in _MAIN_TAGS if t in exif}
                ifd = exif.get_ifd(_EXIF_IFD)
                sub = {t: ifd[t] for t in _EXIF_TAGS if t in ifd}
            except Exception as e:  # noqa: BLE001 - as above
                log.debug("unreadable RAW preview EXIF: %s", e)
    if not any(t in sub for t in (0x9003, 0x9004)) and 0x0132 not in main:
        when = _libraw_timestamp(raw)
        if when is not None:
            sub[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
    if not main and not sub:
        return None
    out = Image.Exif()
    for tag, value in main.items():
        out[tag] = value
    if sub:
        out.get_ifd(_EXIF_IFD).update(sub)
    return out


def _exifread_into(fp: IO[bytes], main: dict, sub: dict, cmt2: bool = False) -> None:
    """Collect the tags we use from a TIFF-structured stream with exifread."""
    import exifread

    # exifread logs every oddity of a camera's maker tags at WARNING; a user's file is not
    # our bug, and the fields it spoils are reported as missing instead.
    logging.getLogger("exifread").setLevel(logging.ERROR)
    fp.seek(0)
    tags = exifread.process_file(fp, details=False, extract_thumbnail=False)
    for key, tag in tags.items():
        group = key.split(" ", 1)[0]
        number = getattr(tag, "tag", None)
        value = _ascii(getattr(tag, "values", None))
        if value is None:
            continue
        if group == "Image" and number in _EXIF_TAGS and cmt2:
            sub[number] = value
        elif group == "Image" and number in _MAIN_TAGS:
            main[number] = value
        elif group == "EXIF" and number in _EXIF_TAGS:
            sub[number] = value


def _ascii(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, str) and value.strip("\x00 ") else None


def _cr3_into(fp: IO[bytes], main: dict, sub: dict) -> None:
    """Canon CR3 (ISO base media): CMT1 is IFD0 and CMT2 the EXIF IFD, each a small TIFF
    inside the ``moov`` box's Canon ``uuid`` box."""
    for name, payload in _cr3_boxes(fp):
        if name == b"CMT1":
            _exifread_into(io.BytesIO(payload), main, sub)
        elif name == b"CMT2":
            _exifread_into(io.BytesIO(payload), main, sub, cmt2=True)


def _cr3_boxes(fp: IO[bytes]) -> list[tuple[bytes, bytes]]:
    """(name, payload) of the CMT1 and CMT2 boxes of a CR3 file."""
    found = []
    fp.seek(0, os.SEEK_END)
    end = fp.tell()

    def walk(start: int, stop: int, depth: int) -> None:
        pos = start
        while pos + 8 <= stop and depth < 4:
            fp.seek(pos)
            size, name = struct.unpack(">I4s", fp.read(8))
            header = 8
            if size == 1:
                size = struct.unpack(">Q", fp.read(8))[0]
                header = 16
            elif size == 0:
                size = stop - pos
            if size < header or pos + size > stop:
                return
            if name == b"moov":
                walk(pos + header, pos + size, depth + 1)
            elif name == b"uuid" and fp.read(16) == _CR3_UUID:
                walk(pos + header + 16, pos + size, depth + 1)
            elif name in (b"CMT1", b"CMT2") and size - header <= 1 << 20:
                fp.seek(pos + header)
                found.append((name, fp.read(size - header)))
            pos += size

    walk(0, end, 0)
    return found


def _preview_exif(raw) -> bytes | None:
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawError:
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    try:
        with Image.open(io.BytesIO(thumb.data), formats=("JPEG",)) as img:
            return img.info.get("exif")
    except (*decode._CORRUPT_ERRORS, Warning):
        return None


def _libraw_timestamp(raw) -> datetime | None:
    try:
        when = raw.other.timestamp
    except Exception:  # noqa: BLE001 - older rawpy, or LibRaw has no time for this file
        return None
    if not isinstance(when, datetime) or when.year < 1980:
        return None
    return when.replace(tzinfo=None)
