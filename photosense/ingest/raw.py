"""Camera RAW files: pixels from the embedded preview (or a half-size decode), EXIF from the RAW.

Pixels come from LibRaw (through ``rawpy``): the camera's embedded JPEG preview when there is
one large enough, otherwise a half-size demosaic with the camera's white balance (slower, but
every file LibRaw supports has one). The preview is stored as the sensor saw it; the RAW's
orientation is applied to it here, once (the preview's own EXIF orientation, when it has one,
is ignored). A half-size decode is turned upright by LibRaw itself.

EXIF (capture time, camera) is read with ``exifread`` (pure Python): straight from the file for
the TIFF-based formats (CR2, NEF, ARW, DNG, PEF, SRW, ORF, RW2), from the CMT1/CMT2 boxes of a
CR3, and from the embedded JPEG preview otherwise (RAF). rawpy does not expose the camera's
make and model; its capture timestamp is the last resort. This needs no LibRaw, so a file whose
image data LibRaw cannot decode (truncated, or a camera it does not know) still has its camera
and time.

Dimensions are the camera's, not LibRaw's active area (which keeps a few border pixels the
camera crops): the raw image's DefaultCropSize (every DNG; Sony ARWs have it too), a Canon
file's EXIF image size, a Panasonic RW2's sensor borders, else the full-resolution image of the
TIFF structure; LibRaw's size only when the file says none of these (RAF, and formats not
parsed here).

The file's structure (TIFF IFDs and their strips or tiles, CR3 boxes, the RAF header) is also
checked against the file's size: image data that would lie past the end is reported as
"truncated RAW file", whatever LibRaw says about it. LibRaw prints its own complaints
("Unexpected end of file") on the process's stderr from C; they are caught around each LibRaw
call (fd 2 redirected, one file at a time) and become the file's one-line message instead.

A RAW and a JPEG of the same shot (same folder, same stem) are one photo; the JPEG is its
``companion``, and :func:`best_image_path` picks it for anything that only needs pixels.
Every failure is a :class:`~photosense.errors.DecodeError` with a one-line message.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from PIL import Image

from photosense.errors import DecodeError
from photosense.ingest import decode
from photosense.ingest.decode import RAW_EXTENSIONS, is_raw_path

log = logging.getLogger("photosense.ingest.raw")

__all__ = ["RAW_EXTENSIONS", "RawLayout", "best_image_path", "check_raw", "is_raw_path",
           "open_raw", "raw_image_size", "raw_layout", "read_raw_metadata"]

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


# LibRaw writes to fd 2 from C; only one thread at a time may have fd 2 redirected.
_stderr_lock = threading.RLock()


class _LibRawStderr:
    """Catches what C code writes to fd 2 while it is active (``with`` block, one at a time):
    LibRaw's lines about ``path`` become :attr:`messages`; anything else is written back."""

    def __init__(self, path: str):
        self.path = path
        self.messages: list[str] = []
        self._saved: int | None = None
        self._tmp: IO[bytes] | None = None
        self._read = 0

    def __enter__(self) -> _LibRawStderr:
        _stderr_lock.acquire()
        try:
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except OSError as e:  # no usable fd 2 (a detached process): nothing to catch
            log.debug("LibRaw's stderr not redirected: %s", e)
            self._restore()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._restore()
        finally:
            _stderr_lock.release()

    def _restore(self) -> None:
        self._collect()
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None

    def _collect(self) -> None:
        """Sort what was written to fd 2 so far: LibRaw's lines into :attr:`messages`, the rest
        back to the real stderr."""
        if self._tmp is None:
            return
        self._tmp.seek(self._read)
        data = self._tmp.read(1 << 16)
        self._tmp.seek(0, os.SEEK_END)
        end = data.rfind(b"\n") + 1
        if not end:
            return
        self._read += end
        prefixes = (f"{self.path}: ", "unknown file: ", "(null): ")
        others = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            for prefix in prefixes:
                if line.startswith(prefix):
                    self.messages.append(line[len(prefix):].strip())
                    break
            else:
                others.append(line)
        if others and self._saved is not None:  # another thread's output that landed here
            try:
                os.write(self._saved, ("\n".join(others) + "\n").encode("utf-8", "replace"))
            except OSError:
                pass

    def message(self) -> str | None:
        """LibRaw's complaint as one line ("unexpected end of file"), if it printed any."""
        self._collect()
        if not self.messages:
            return None
        first = self.messages[0]
        more = len(self.messages) - 1
        text = first[:1].lower() + first[1:]
        return f"{text} (and {more} more)" if more else text


class _Raw:
    """An open LibRaw handle (``with`` block), its failures turned into DecodeErrors.

    LibRaw's stderr is caught for as long as the handle is open (see :class:`_LibRawStderr`);
    :attr:`stderr` holds what it said. A file whose structure says it is cut short is reported
    as truncated whatever LibRaw makes of it.
    """

    def __init__(self, path: str | os.PathLike[str], layout: RawLayout | None = None):
        self.path = os.fspath(path)
        self.raw: Any = None
        self.layout = layout
        self.stderr = _LibRawStderr(self.path)

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
        if self.layout is None:
            self.layout = raw_layout(self.path)
        self.stderr.__enter__()
        self.raw = rawpy.RawPy()
        try:
            try:
                self.raw.open_file(self.path)
            except UnicodeError:  # a file name LibRaw cannot be handed: give it the bytes
                with decode._open_readonly(self.path) as fp:
                    self.raw.open_buffer(fp.read())
        except BaseException as e:
            self.raw.close()
            self.stderr.__exit__(None, None, None)
            raise self.error(e) from None
        return self.raw

    def __exit__(self, *exc) -> None:
        try:
            self.raw.close()
        finally:
            self.stderr.__exit__(None, None, None)

    def error(self, error: BaseException) -> BaseException:
        """``error`` (from LibRaw) as the one-line DecodeError to report for this file."""
        truncated = self.layout.truncated_message() if self.layout else None
        if truncated and not isinstance(error, MemoryError):
            return DecodeError(truncated)
        said = self.stderr.message()
        converted = _libraw_error(error)
        if said and isinstance(converted, DecodeError):
            return _complaint(said)
        return converted

    def check(self) -> None:
        """Raise what LibRaw complained about while decoding (it goes on after a data error,
        leaving the rest of the image black): a truncated file, or corrupt data."""
        said = self.stderr.message()
        if said is not None:
            raise _complaint(said)


def _complaint(said: str) -> DecodeError:
    """What LibRaw printed about a file, as its one-line DecodeError."""
    if "end of file" in said.lower():
        return DecodeError(f"truncated RAW file (LibRaw: {said})")
    return DecodeError(f"corrupt RAW file (LibRaw: {said})")


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


def _displayed_size(raw, layout: RawLayout | None) -> tuple[int, int]:
    """The camera's image size (else LibRaw's) as displayed."""
    sizes = raw.sizes
    stored = layout.size if layout is not None and layout.size else (int(sizes.width),
                                                                     int(sizes.height))
    return decode.oriented_size(stored, _orientation(raw))


def raw_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of a RAW photo as displayed (orientation applied), from its header:
    the camera's size (see the module doc), else LibRaw's."""
    meta = read_raw_metadata(path)
    return meta.width, meta.height


def check_raw(path: str | os.PathLike[str]) -> None:
    """Raise :class:`DecodeError` when a RAW file is cut short or LibRaw cannot open it
    (its header only: nothing is decoded). For the RAW of a RAW+JPEG pair, whose pixels
    come from the JPEG."""
    from photosense.ingest import crash_guard

    with crash_guard.guard(path, "check_raw"):
        _check_raw(path)


def _check_raw(path: str | os.PathLike[str]) -> None:
    handle = _Raw(path)
    with handle:
        truncated = handle.layout.truncated_message()
        if truncated:
            raise DecodeError(truncated)
    handle.check()


# -- the file's structure: the camera's image size, and whether the file is cut short ------

_TIFF_MAGIC = (42, 0x55, 0x4F52, 0x5352)  # TIFF; Panasonic RW2; Olympus ORF ("IIRO", "IIRS")
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
               16: 8}
_TYPE_FORMATS = {1: "B", 3: "H", 4: "I", 5: "II", 6: "b", 8: "h", 9: "i", 10: "ii", 13: "I",
                 16: "Q"}
_SUBFILE, _WIDTH, _HEIGHT, _ORIENTATION = 254, 256, 257, 274
_STRIP_OFFSETS, _STRIP_COUNTS, _TILE_OFFSETS, _TILE_COUNTS = 273, 279, 324, 325
_SUB_IFDS, _EXIF_POINTER, _DNG_VERSION, _DEFAULT_CROP = 330, 34665, 50706, 50720
_EXIF_WIDTH, _EXIF_HEIGHT = 40962, 40963
_RW2_BORDERS = (4, 5, 6, 7)  # SensorTopBorder, SensorLeftBorder, SensorBottomBorder, ...Right
_LAYOUT_TAGS = frozenset({_SUBFILE, _WIDTH, _HEIGHT, _ORIENTATION, _STRIP_OFFSETS, _STRIP_COUNTS,
                          _TILE_OFFSETS, _TILE_COUNTS, _SUB_IFDS, _EXIF_POINTER, _DNG_VERSION,
                          _DEFAULT_CROP, _EXIF_WIDTH, _EXIF_HEIGHT, *_RW2_BORDERS})
_MAX_IFDS = 64
_MAX_VALUES = 1 << 18  # strips or tiles per image


@dataclass
class RawLayout:
    """What a RAW file's structure says, without decoding anything: the camera's image size
    (stored, before orientation), its orientation tag, and how far its data should reach."""

    file_size: int
    data_end: int = 0
    size: tuple[int, int] | None = None
    orientation: int | None = None

    def truncated_message(self) -> str | None:
        if self.data_end <= self.file_size:
            return None
        return f"truncated RAW file ({self.file_size:,} of at least {self.data_end:,} bytes)"


def raw_layout(path: str | os.PathLike[str]) -> RawLayout:
    """The :class:`RawLayout` of a RAW file (TIFF-based formats, CR3, RAF; others: only the
    file size). A malformed structure is no error: what could not be read is left out."""
    with decode._open_readonly(path) as fp:
        try:
            size = os.fstat(fp.fileno()).st_size
            layout = RawLayout(size)
            head = fp.read(16)
            if head[:2] in (b"II", b"MM"):
                _tiff_layout(fp, layout, head)
            elif head[4:12] == b"ftypcrx ":
                _cr3_layout(fp, layout)
            elif head.startswith(b"FUJIFILMCCD-RAW"):
                fp.seek(84)
                fields = fp.read(24)
                if len(fields) < 24:
                    layout.data_end = max(layout.data_end, 108)
                else:
                    values = struct.unpack(">6I", fields)
                    layout.data_end = max(o + n for o, n in zip(values[::2], values[1::2]))
        except (OSError, struct.error, ValueError) as e:
            log.debug("unreadable RAW structure: %s", e)
    return layout


def _tiff_layout(fp: IO[bytes], layout: RawLayout, head: bytes, base: int = 0) -> None:
    order = "<" if head[:2] == b"II" else ">"
    magic, first = struct.unpack(order + "HI", head[2:8])
    if magic not in _TIFF_MAGIC:
        return
    ifds = _read_ifds(fp, layout, order, first, base)
    if not ifds:
        return
    ifd0 = ifds[0][1]
    value = _first(ifd0.get(_ORIENTATION))
    if isinstance(value, int) and 1 <= value <= 8:
        layout.orientation = value
    layout.size = _camera_size(ifds, magic, head)


def _camera_size(ifds: list[tuple[str, dict]], magic: int,
                 head: bytes) -> tuple[int, int] | None:
    ifd0 = ifds[0][1]
    images = [tags for kind, tags in ifds if kind != "exif"]
    # DefaultCropSize of the raw image (NewSubfileType 0): every DNG, and the cameras that
    # write the DNG tag in their own format (Sony's ARW since the A7R III: 5168x3448 of
    # 5216x3464 stored pixels).
    for tags in images:
        crop = tags.get(_DEFAULT_CROP)
        if crop and _first(tags.get(_SUBFILE)) in (0, None) and len(crop) == 2:
            found = _positive(round(_number(crop[0])), round(_number(crop[1])))
            if found:
                return found
    if magic == 0x55:  # Panasonic RW2: the sensor area inside its borders
        top, left, bottom, right = (_first(ifd0.get(t)) for t in _RW2_BORDERS)
        if all(isinstance(v, int) for v in (top, left, bottom, right)):
            found = _positive(right - left, bottom - top)
            if found:
                return found
    if head[8:10] == b"CR":  # Canon CR2: the EXIF image size
        for kind, tags in ifds:
            if kind == "exif":
                found = _positive(_first(tags.get(_EXIF_WIDTH)), _first(tags.get(_EXIF_HEIGHT)))
                if found:
                    return found
    best = None
    for tags in images:  # else the largest full-resolution image
        if _first(tags.get(_SUBFILE)) not in (0, None):
            continue
        if _STRIP_OFFSETS not in tags and _TILE_OFFSETS not in tags:
            continue
        found = _positive(_first(tags.get(_WIDTH)), _first(tags.get(_HEIGHT)))
        if found and (best is None or found[0] * found[1] > best[0] * best[1]):
            best = found
    return best


def _positive(width: object, height: object) -> tuple[int, int] | None:
    if isinstance(width, int) and isinstance(height, int) and 0 < width < 1 << 17 \
            and 0 < height < 1 << 17:
        return width, height
    return None


def _first(values: object) -> object:
    return values[0] if isinstance(values, (list, tuple)) and values else None


def _number(value: object) -> float:
    if isinstance(value, tuple):  # a rational
        return value[0] / value[1] if value[1] else 0.0
    return float(value) if isinstance(value, (int, float)) else 0.0


def _read_ifds(fp: IO[bytes], layout: RawLayout, order: str, first: int,
               base: int) -> list[tuple[str, dict]]:
    """Every IFD reachable from ``first`` (the IFD chain, SubIFDs, the EXIF IFD) as (kind,
    {tag: values}) for the tags the layout needs; image data and IFDs past the end of the file
    raise ``layout.data_end``."""
    found: list[tuple[str, dict]] = []
    queue = [("ifd", first)]
    seen: set[int] = set()
    while queue and len(found) < _MAX_IFDS:
        kind, offset = queue.pop(0)
        if offset == 0 or offset in seen:
            continue
        seen.add(offset)
        where = base + offset
        fp.seek(where)
        raw_count = fp.read(2)
        if len(raw_count) < 2:
            layout.data_end = max(layout.data_end, where + 2)
            continue
        (count,) = struct.unpack(order + "H", raw_count)
        table = fp.read(12 * count + 4)
        if len(table) < 12 * count + 4:
            layout.data_end = max(layout.data_end, where + 2 + 12 * count + 4)
            continue
        tags: dict[int, Any] = {}
        for i in range(count):
            tag, typ, n = struct.unpack(order + "HHI", table[12 * i:12 * i + 8])
            if tag not in _LAYOUT_TAGS or typ not in _TYPE_FORMATS or n > _MAX_VALUES:
                continue
            length = _TYPE_SIZES[typ] * n
            if length <= 4:
                data = table[12 * i + 8:12 * i + 8 + length]
            else:
                (at,) = struct.unpack(order + "I", table[12 * i + 8:12 * i + 12])
                fp.seek(base + at)
                data = fp.read(length)
                if len(data) < length:
                    layout.data_end = max(layout.data_end, base + at + length)
                    continue
            fmt = _TYPE_FORMATS[typ]
            values = struct.unpack(order + fmt * n, data)
            if len(fmt) == 2:  # rationals as (numerator, denominator) pairs
                values = tuple(zip(values[::2], values[1::2]))
            tags[tag] = values
        found.append((kind, tags))
        for offsets_tag, counts_tag in ((_STRIP_OFFSETS, _STRIP_COUNTS),
                                        (_TILE_OFFSETS, _TILE_COUNTS)):
            offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
            if offsets and counts and len(offsets) == len(counts):
                ends = [base + o + n for o, n in zip(offsets, counts) if o != 0xFFFFFFFF]
                layout.data_end = max(layout.data_end, *ends) if ends else layout.data_end
        for sub in tags.get(_SUB_IFDS, ()):
            queue.append(("ifd", sub))
        for exif in tags.get(_EXIF_POINTER, ())[:1]:
            queue.append(("exif", exif))
        if kind == "ifd":
            (next_ifd,) = struct.unpack(order + "I", table[12 * count:12 * count + 4])
            queue.append(("ifd", next_ifd))
    return found


def _cr3_layout(fp: IO[bytes], layout: RawLayout) -> None:
    """A CR3 (ISO base media): its top-level boxes must fit in the file; the image size is
    the EXIF one, from the CMT2 box."""
    pos = 0
    while pos + 8 <= layout.file_size:
        fp.seek(pos)
        size, _name = struct.unpack(">I4s", fp.read(8))
        if size == 1:
            size = struct.unpack(">Q", fp.read(8))[0]
        elif size == 0:
            break  # to the end of the file
        if size < 8:
            break
        layout.data_end = max(layout.data_end, pos + size)
        pos += size
    for name, payload in _cr3_boxes(fp):
        if name in (b"CMT1", b"CMT2") and payload[:2] in (b"II", b"MM"):
            sub = RawLayout(len(payload))
            buf = io.BytesIO(payload)
            order = "<" if payload[:2] == b"II" else ">"
            ifds = _read_ifds(buf, sub, order, struct.unpack(order + "I", payload[4:8])[0], 0)
            for _kind, tags in ifds:
                if name == b"CMT2":
                    found = _positive(_first(tags.get(_EXIF_WIDTH)),
                                      _first(tags.get(_EXIF_HEIGHT)))
                    if found:
                        layout.size = found
                else:
                    value = _first(tags.get(_ORIENTATION))
                    if isinstance(value, int) and 1 <= value <= 8:
                        layout.orientation = value


# -- pixels ---------------------------------------------------------------------------------


def open_raw(path: str | os.PathLike[str], max_side: int = 0) -> Image.Image:
    """Decode a RAW file into an upright 8-bit RGB image whose longer side is at most
    ``max_side`` (0: the preview's or the half-size decode's own size).

    Like :func:`~photosense.ingest.decode.open_image`, the image's ``info`` carries the RAW's
    displayed size, its orientation and the EXIF read_metadata() needs.
    """
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0, got {max_side}")
    handle = _Raw(path)
    with handle as raw:
        truncated = handle.layout.truncated_message()
        if truncated:
            raise DecodeError(truncated)
        orientation = _orientation(raw)
        native = _displayed_size(raw, handle.layout)
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
            raise handle.error(e) from None
        handle.check()
        exif = _exif(_file_exif(path), raw, thumb_exif)
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
    decoded, unless the only EXIF is in a JPEG preview).

    Camera and capture time come from the file's own EXIF, read without LibRaw, so they are
    there even when LibRaw cannot open the file; then the size and orientation come from the
    file's structure. Raises :class:`DecodeError` only when neither can say anything."""
    from photosense.ingest.metadata import read_metadata

    layout = raw_layout(path)
    tags = _file_exif(path)
    handle = _Raw(path, layout)
    try:
        with handle as raw:
            native = _displayed_size(raw, layout)
            orientation = _orientation(raw)
            exif = _exif(tags, raw, None, preview_fallback=True)
    except DecodeError as e:
        if layout.size is None or not (tags[0] or tags[1]):
            raise
        log.debug("%s: metadata without LibRaw (%s)", path, e)
        orientation = layout.orientation or 1
        native = decode.oriented_size(layout.size, orientation)
        exif = _exif(tags, None, None)
    carrier = Image.new("RGB", (1, 1))
    carrier.info = {decode.INFO_SOURCE_SIZE: native, decode.INFO_ORIENTATION: orientation,
                    decode.INFO_EMBEDDED_TIMES: ()}
    if exif:
        carrier.info["exif"] = exif.tobytes()
    return read_metadata(carrier)


def _file_exif(path: str | os.PathLike[str]) -> tuple[dict[int, Any], dict[int, Any]]:
    """(IFD0, EXIF IFD) tags read_metadata() uses, straight from the file (no LibRaw)."""
    main: dict[int, Any] = {}
    sub: dict[int, Any] = {}
    try:
        with decode._open_readonly(path) as fp:
            head = fp.read(16)
            if head[:2] in (b"II", b"MM"):
                _exifread_into(fp, main, sub)
            elif head[4:12] == b"ftypcrx ":
                _cr3_into(fp, main, sub)
            elif head.startswith(b"FUJIFILMCCD-RAW"):
                _raf_into(fp, main, sub)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed EXIF in a user's file is not our bug
        log.debug("unreadable RAW EXIF: %s", e)
    return main, sub


def _raf_into(fp: IO[bytes], main: dict, sub: dict) -> None:
    """Fujifilm RAF: the camera's EXIF is in the embedded JPEG, whose offset and length the
    RAF header gives. (LibRaw's own preview of it carries an EXIF that LibRaw writes, with
    its own names for the camera.)"""
    fp.seek(84)
    offset, length = struct.unpack(">II", fp.read(8))
    if not 0 < length <= 64 << 20:
        return
    fp.seek(offset)
    data = fp.read(length)
    with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
        exif_bytes = img.info.get("exif")
    if not exif_bytes:
        return
    exif = Image.Exif()
    exif.load(exif_bytes)
    main.update({t: exif[t] for t in _MAIN_TAGS if t in exif})
    ifd = exif.get_ifd(_EXIF_IFD)
    sub.update({t: ifd[t] for t in _EXIF_TAGS if t in ifd})


def _exif(tags: tuple[dict[int, Any], dict[int, Any]], raw, thumb_exif: bytes | None,
          preview_fallback: bool = False) -> Image.Exif | None:
    """The EXIF tags read_metadata() uses, as a Pillow Exif (orientation left out): the
    file's own (``tags``), else the preview's, else LibRaw's timestamp (``raw`` may be None)."""
    main, sub = dict(tags[0]), dict(tags[1])
    if not main and not sub and raw is not None:
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
    if raw is not None and not any(t in sub for t in (0x9003, 0x9004)) and 0x0132 not in main:
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
