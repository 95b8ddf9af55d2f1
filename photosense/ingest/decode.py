"""Read image files into 8-bit RGB pixels, safely and read-only.

Every way a file can fail (missing, unreadable, not an image, truncated, too large) becomes a
:class:`~photosense.errors.DecodeError` with a one-line message that says what is wrong; the
message does not repeat the path, callers that report it add the path themselves.

photosense never writes to a user's photo: files are only ever opened with ``"rb"``.

Process-wide Pillow settings made on import (Pillow has no per-call way to say these):

- Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, 89 megapixels by default)
  would warn on ordinary large panoramas, so it is *raised* to :data:`MAX_PIXELS` (never
  lowered, left alone when disabled), and its bomb warning is made an error, caught here as
  "image too large" rather than printed. Sizes are also checked from the header before any
  pixel is decoded.
- The warnings Pillow prints about damaged EXIF it skips (the pixels are fine) are silenced:
  read_metadata() reports such fields as missing instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import re
import struct
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from photosense.errors import DecodeError

log = logging.getLogger("photosense.ingest.decode")

#: Anything with more pixels than this is refused (250 megapixels, e.g. 20000 x 12500).
MAX_PIXELS = 250_000_000

#: HEIC/HEIF (phones; ``.hif`` is what Sony and Canon cameras write), decoded by pi-heif (the
#: decode-only build of pillow-heif: libheif and libde265, LGPL; no GPL x265 encoder).
HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif", ".hif"})
_HEIF_INSTALLED = importlib.util.find_spec("pi_heif") is not None
#: AVIF, decoded by Pillow itself (its wheels bundle libavif since Pillow 11.2).
AVIF_EXTENSIONS: frozenset[str] = frozenset({".avif"})

#: Camera RAW extensions (lowercase, with the dot), decoded by :mod:`photosense.ingest.raw`.
RAW_EXTENSIONS: frozenset[str] = frozenset(
    {".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".dng", ".pef", ".srw"}
)

#: Extensions (lowercase, with the dot) that scanning treats as photos, RAW included.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp"}
) | HEIF_EXTENSIONS | AVIF_EXTENSIONS | RAW_EXTENSIONS

# Formats Pillow may identify a file as. Restricting the list keeps random bytes from being
# "recognised" by a permissive plugin (TGA, for one) and decoded as garbage.
# (Camera MPO files are identified as JPEG, whose opener returns an MPO image when it is one.)
_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "AVIF", "GIF", "BMP")
_HEIF_FORMATS = ("HEIF",)

# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112

# Keys open_image() leaves in the returned image's ``info`` so that read_metadata() can report
# the file's metadata from the decoded image without opening the file again.
INFO_SOURCE_SIZE = "photosense.source_size"  # (width, height) as displayed, before downscaling
INFO_ORIENTATION = "photosense.orientation"  # the file's EXIF orientation, already applied
INFO_EMBEDDED_TIMES = "photosense.embedded_times"  # capture times from XMP/IPTC (metadata.py)

# Errors Pillow raises on corrupt or truncated data, while identifying or decoding.
_CORRUPT_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
# Pillow warns (rather than raises) about damaged metadata it skips while parsing EXIF and
# friends. The pixels are fine, and read_metadata() reports what it can; don't print these.
_PILLOW_METADATA_WARNINGS = (
    r"(Possibly )?[Cc]orrupt EXIF",
    r"Metadata Warning",
    r"Tag offset too large",
    r"Tag data larger than file",
    r"Image appears to be a malformed MPO file",
    r"Invalid APNG",
)
warnings.filterwarnings(
    "ignore",
    message="|".join(_PILLOW_METADATA_WARNINGS),
    category=UserWarning,
    module=r"PIL\.",
)

_heif_lock = threading.Lock()
_heif_registered = False


def _open_formats() -> tuple[str, ...]:
    """The formats Image.open may try: ours that this Pillow build can read, HEIF included."""
    global _formats
    if _formats is None:
        Image.init()
        _formats = tuple(f for f in _FORMATS if f in Image.OPEN)
    return _formats + _heif_formats()


_formats: tuple[str, ...] | None = None


def _heif_formats() -> tuple[str, ...]:
    """Register pi_heif's opener on first use; the HEIF format names if it is available."""
    global _heif_registered
    if not _HEIF_INSTALLED:
        return ()
    if _heif_registered:
        return _HEIF_FORMATS
    with _heif_lock:
        if not _heif_registered:
            try:
                import pi_heif

                pi_heif.register_heif_opener()
            except Exception as e:  # a broken HEIC library must not break JPEG decoding
                log.warning("HEIC support unavailable: %s", e)
                return ()
            _heif_registered = True
    return _HEIF_FORMATS


def is_image_path(path: str | bytes | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fsdecode(path))[1].lower() in IMAGE_EXTENSIONS


def is_raw_path(path: str | bytes | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`RAW_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(os.fsdecode(path))[1].lower() in RAW_EXTENSIONS


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g}"


def _too_large(pixels: int | None) -> DecodeError:
    limit = _megapixels(MAX_PIXELS)
    if pixels is None:
        return DecodeError(f"image too large (limit {limit} megapixels)")
    return DecodeError(f"image too large ({_megapixels(pixels)} megapixels, limit {limit})")


def _bomb_error(error: BaseException) -> DecodeError:
    """Pillow's DecompressionBombError/Warning as a DecodeError, with the size it reported."""
    match = re.search(r"\((\d+) pixels\)", str(error))
    return _too_large(int(match.group(1)) if match else None)


def _os_error(error: OSError, path: str | os.PathLike[str]) -> DecodeError:
    """A DecodeError for an OSError raised while opening or reading ``path``."""
    if isinstance(error, FileNotFoundError):
        if os.path.islink(path):  # its target may be on a drive that is not mounted now
            return DecodeError("broken symbolic link (target missing)", transient=True)
        return DecodeError("file disappeared", transient=True)
    if isinstance(error, IsADirectoryError):
        return DecodeError("is a directory")
    if isinstance(error, PermissionError):
        return DecodeError("permission denied", transient=True)
    reason = error.strerror or _one_line(error)
    return DecodeError(f"cannot read file: {reason}", transient=True)


def _open_readonly(path: str | os.PathLike[str]) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise _os_error(e, path) from None


@contextmanager
def open_header(path: str | os.PathLike[str]) -> Iterator[ImageFile.ImageFile]:
    """Open ``path`` read-only and parse its header; no pixels are decoded yet.

    The image is only valid inside the ``with`` block. Raises :class:`DecodeError` for a
    missing, unreadable, empty, unrecognised or oversized file.
    """
    fp = _open_readonly(path)
    try:
        try:
            size = os.fstat(fp.fileno()).st_size
        except OSError as e:
            raise _os_error(e, path) from None
        if size == 0:
            raise DecodeError("empty file (0 bytes)")
        try:
            img = Image.open(fp, formats=_open_formats())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb_error(e) from None
        except UnidentifiedImageError:
            raise _unidentified(fp) from None
        except (*_CORRUPT_ERRORS, Warning) as e:  # a Warning only when filters escalate it
            raise DecodeError(f"corrupt image header: {_one_line(e)}") from None
        width, height = img.size
        if width <= 0 or height <= 0:
            raise DecodeError(f"corrupt image header: size {width}x{height}")
        if width * height > MAX_PIXELS:
            raise _too_large(width * height)
        try:
            yield img
        finally:
            img.close()
    finally:
        fp.close()


def _unidentified(fp: IO[bytes]) -> DecodeError:
    try:
        fp.seek(0)
        head = fp.read(16)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis") and "AVIF" not in _open_formats():
        return DecodeError("AVIF image, but this Pillow cannot read AVIF (Pillow >= 11.2 can)")
    if head[4:8] == b"ftyp" and not _heif_formats():
        return DecodeError("HEIF/HEIC image, but HEIC support (pi-heif) is not installed")
    return DecodeError("not an image file")


def file_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an image from ``Image.open``, read from the header only."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1  # PngImageFile.getexif() would decode every pixel to look for a late eXIf chunk
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as e:  # noqa: BLE001 - malformed EXIF in a user's file is not our bug
        log.debug("unreadable EXIF orientation in %s: %s", img.format, e)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def reported_orientation(img: Image.Image) -> int:
    """The orientation the file declares (1-8), for reporting.

    The HEIF opener turns the pixels upright itself (the container's rotation and mirroring)
    and then sets the EXIF orientation to 1, so that it is not applied twice; the file's own
    value is kept in ``info["original_orientation"]``. Every other format: the EXIF value.
    """
    if img.format == "HEIF":
        value = img.info.get("original_orientation")
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    return file_orientation(img)


def oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """A stored (width, height) as displayed under EXIF ``orientation``."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _stored_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of the pixels as stored in the file.

    Pillow reports a TIFF's size already turned by its orientation tag (and turns its pixels
    while loading); every other format's size is as stored.
    """
    if img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        width, height = tags.get(256), tags.get(257)  # ImageWidth, ImageLength
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return img.size


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of an image from ``Image.open`` as displayed, read from the header."""
    return oriented_size(_stored_size(img), file_orientation(img))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of the photo as displayed (EXIF orientation applied), from the header."""
    if is_raw_path(path):
        from photosense.ingest.raw import raw_image_size

        return raw_image_size(path)
    with open_header(path) as img:
        return displayed_size(img)


def _target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is ``max_side`` (never up), aspect kept."""
    width, height = size
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return size
    scale = max_side / longest
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel high-bit-depth array to 0..255."""
    if mode.startswith("I;16") or (
        mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535
    ):
        return np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)
    arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    low, high = float(finite.min()), float(finite.max())
    if mode == "F" and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    span = high - low or 1.0
    scaled = np.nan_to_num((arr - low) / span, nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """A loaded image as 8-bit RGB: transparency flattened onto white, 16-bit and float scaled."""
    mode = img.mode
    if mode == "RGB":
        if "transparency" not in img.info:
            return img
    elif mode.startswith("I") or mode == "F":
        grey = Image.fromarray(_to_uint8(np.asarray(img), mode), "L")
        return grey.convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _downscale(img: Image.Image, max_side: int) -> Image.Image:
    size = _target_size(img.size, max_side)
    if size == img.size:
        return img
    return resize_bicubic(img, size)


def resize_bicubic(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` resized to ``size`` with an antialiased bicubic filter (Pillow's BICUBIC, the
    filter CLIP's own preprocessing uses).

    In a process that has torch loaded already (scoring, the window), 8-bit RGB goes through
    torch's uint8 kernel for this filter, written to match Pillow's (measured here: 0.1-0.4%
    of pixels differ, by at most 2 levels): 5 ms where Pillow takes 17 ms (and its LANCZOS,
    used before, 25 ms) for 1500x1000 -> 1024x683 on one core, most of the decode a scan and
    scoring do per photo. Elsewhere Pillow resizes: importing torch costs a second and about
    285 MB of memory, too much for a command-line scan or a big scan's worker processes."""
    if img.mode == "RGB" and "torch" in sys.modules:
        try:
            return _torch_bicubic(img, size)
        except (ImportError, RuntimeError, AttributeError) as exc:  # Pillow does the same
            log.debug("bicubic resize in torch failed (%s), Pillow resizes", exc)
    return img.resize(size, Image.Resampling.BICUBIC)


def _torch_bicubic(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    import torch
    from torch.nn.functional import interpolate

    # np.array, not asarray: torch wants a writable array (Pillow's export is read-only).
    pixels = torch.from_numpy(np.array(img))  # (H, W, 3) uint8: channels-last NCHW below
    with torch.inference_mode():
        out = interpolate(pixels.permute(2, 0, 1).unsqueeze(0), size=(size[1], size[0]),
                          mode="bicubic", antialias=True)
    # The kernel returns planar (3, H, W) pixels: Pillow interleaves the three planes in a
    # tenth of the time torch's permute copy takes (0.2 ms against 2 ms at 1024x683).
    planes = out[0].numpy()
    return Image.merge("RGB", [Image.fromarray(planes[c]) for c in range(3)])


def open_image(path: str | os.PathLike[str], max_side: int = 0) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image whose longer side is at most ``max_side``.

    ``max_side=0`` keeps the native size. Large JPEGs are decoded at a reduced scale (draft
    mode) that still covers ``max_side``. The file is closed when this returns; the returned
    image carries the file's native displayed size and EXIF orientation in ``info`` (see
    :data:`INFO_SOURCE_SIZE`) so that :func:`~photosense.ingest.metadata.read_metadata` can
    describe the file from it. Raises :class:`DecodeError` for every kind of bad file.
    Camera RAW files (:data:`~photosense.ingest.raw.RAW_EXTENSIONS`) are decoded from their
    embedded preview by :func:`~photosense.ingest.raw.open_raw`. A file that crashed
    photosense while it read it is not read again (:mod:`photosense.ingest.crash_guard`).
    """
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0, got {max_side}")
    from photosense.ingest import crash_guard

    with crash_guard.guard(path, "open_image", max_side=max_side):
        return _open_image(path, max_side)


def _open_image(path: str | os.PathLike[str], max_side: int) -> Image.Image:
    if is_raw_path(path):
        from photosense.ingest.raw import open_raw

        return open_raw(path, max_side)
    with open_header(path) as img:
        orientation = file_orientation(img)
        native = oriented_size(_stored_size(img), orientation)
        exif_bytes = _portable_exif(img)
        embedded = _embedded_times(img)
        if max_side and max(img.size) >= 2 * max_side and img.format in ("JPEG", "MPO"):
            img.draft("RGB", _ceil_target(img.size, max_side))
        try:
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb_error(e) from None
        except MemoryError:
            raise DecodeError("not enough memory to decode image") from None
        except (*_CORRUPT_ERRORS, Warning) as e:  # a Warning only when filters escalate it
            raise DecodeError(f"truncated or corrupt image: {_one_line(e)}") from None
        if img.format == "PNG" and orientation == 1:  # an eXIf chunk after the pixels
            orientation = file_orientation(img)
            native = oriented_size(img.size, orientation)
        # Pillow turns some formats (TIFF) upright itself while loading, and then drops the
        # tag: whatever orientation the loaded image still has is left for us to apply.
        pending = file_orientation(img)
        try:
            rgb = to_rgb(img)
        except ValueError as e:
            raise DecodeError(f"unsupported colour mode {img.mode}: {_one_line(e)}") from None
        rgb = _downscale(rgb, max_side)
        if pending in _ORIENTATION_TRANSPOSE:
            rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[pending])
        if rgb is img:
            rgb = img.copy()  # detach from the file, which is closed on return
        if img.format == "HEIF":  # upright already (see reported_orientation)
            orientation = reported_orientation(img)
    rgb.info = {INFO_SOURCE_SIZE: native, INFO_ORIENTATION: orientation,
                INFO_EMBEDDED_TIMES: embedded}
    if exif_bytes:
        rgb.info["exif"] = exif_bytes
    return rgb


def _embedded_times(img: Image.Image) -> tuple:
    from photosense.ingest.metadata import embedded_times

    return embedded_times(img)


def _ceil_target(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The smallest size draft() may reduce to and still cover the final ``max_side`` target."""
    scale = max_side / max(size)
    return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))


# The tags read_metadata() uses. Only these travel with a decoded image: whole EXIF blocks can
# hold large maker notes, and a TIFF's holds every strip offset of the file.
_MAIN_TAGS = (0x010F, 0x0110, 0x0132)  # Make, Model, DateTime
_EXIF_IFD = 0x8769
_EXIF_IFD_TAGS = (
    0x9003, 0x9004,  # DateTimeOriginal, DateTimeDigitized
    0x9010, 0x9011, 0x9012,  # OffsetTime, OffsetTimeOriginal, OffsetTimeDigitized
    0x9290, 0x9291, 0x9292,  # SubSecTime, SubSecTimeOriginal, SubSecTimeDigitized
)


def _portable_exif(img: Image.Image) -> bytes | None:
    """The EXIF tags read_metadata() needs, as an EXIF block without orientation, if any.

    Taken while the file is open: a TIFF keeps its EXIF sub-directory in the file itself.
    """
    if img.format == "PNG" and "exif" not in img.info:
        return None
    try:
        exif = img.getexif()
        subset = Image.Exif()
        for tag in _MAIN_TAGS:
            if tag in exif:
                subset[tag] = exif[tag]
        sub = exif.get_ifd(_EXIF_IFD) if _EXIF_IFD in exif else {}
        wanted = {tag: sub[tag] for tag in _EXIF_IFD_TAGS if tag in sub}
        if wanted:
            subset.get_ifd(_EXIF_IFD).update(wanted)
        if not subset and not wanted:
            return None
        return subset.tobytes()
    except Exception as e:  # noqa: BLE001 - malformed EXIF in a user's file is not our bug
        log.debug("unreadable EXIF in %s: %s", img.format, e)
        return None


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """BLAKE2b (16-byte) hex digest of the whole file's content, read in ``chunk``-byte pieces.

    Raises :class:`DecodeError` when the file is missing, a directory or unreadable.
    """
    digest = hashlib.blake2b(digest_size=16)
    with _open_readonly(path) as fp:
        try:
            while block := fp.read(chunk):
                digest.update(block)
        except OSError as e:
            raise _os_error(e, path) from None
    return digest.hexdigest()
