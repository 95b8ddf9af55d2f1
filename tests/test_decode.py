"""Decoding: real photos in every supported format, orientation, colour modes, bad files."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import sys
import zlib

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps, JpegImagePlugin

from photosense.errors import DecodeError
from photosense.ingest import decode
from photosense.ingest.decode import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    file_digest,
    image_size,
    is_image_path,
    open_image,
)
from photosense.ingest.metadata import read_metadata


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(skimage.data.coffee())  # 600x400 RGB


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(skimage.data.chelsea())  # 451x300 RGB


@pytest.fixture(scope="module")
def chelsea_jpeg(tmp_path_factory, chelsea) -> bytes:
    path = tmp_path_factory.mktemp("jpeg") / "chelsea.jpg"
    chelsea.save(path, quality=92)
    return path.read_bytes()


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory, coffee):
    """A 3600x2400 JPEG made from a real photo."""
    path = tmp_path_factory.mktemp("large") / "large.jpg"
    coffee.resize((3600, 2400), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def decode_error(path, **kwargs) -> str:
    """The message of the DecodeError that open_image raises, checked to be one line."""
    with pytest.raises(DecodeError) as caught:
        open_image(path, **kwargs)
    message = str(caught.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


# --- extensions -------------------------------------------------------------------------------


def test_image_extensions_are_lowercase_with_a_dot():
    assert {".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    heif = {".heic", ".heif"} <= IMAGE_EXTENSIONS
    assert heif == decode._HEIF_INSTALLED


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b/photo.jpg", True),
        ("PHOTO.JPG", True),
        ("x.JpE", True),
        ("scan.TIFF", True),
        ("pic.webp", True),
        ("notes.txt", False),
        ("jpg", False),
        ("archive.jpg.zip", False),
        ("raw.CR2", True),  # camera RAW: decoded by photosense.ingest.raw
        (b"caf\xe9.JPG", True),
    ],
)
def test_is_image_path(name, expected):
    assert is_image_path(name) is expected


# --- real photos ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "save_args", "tolerance"),
    [
        (".jpg", {"quality": 95}, 3.0),
        (".png", {}, 0.0),
        (".tif", {}, 0.0),
        (".webp", {"quality": 90}, 4.0),
    ],
)
def test_round_trip_real_photo(tmp_path, chelsea, suffix, save_args, tolerance):
    path = tmp_path / f"chelsea{suffix}"
    chelsea.save(path, **save_args)
    img = open_image(path)
    assert img.mode == "RGB"
    assert img.size == (451, 300)
    assert mean_abs_diff(img, chelsea) <= tolerance
    assert image_size(path) == (451, 300)


def test_max_side_downscales_keeping_aspect(tmp_path, coffee):
    path = tmp_path / "coffee.png"
    coffee.save(path)
    small = open_image(path, max_side=200)
    assert small.size == (200, 133)
    reference = coffee.resize((200, 133), Image.Resampling.BICUBIC)
    assert mean_abs_diff(small, reference) < 0.05

    portrait = tmp_path / "portrait.png"
    coffee.transpose(Image.Transpose.ROTATE_90).save(portrait)
    assert open_image(portrait, max_side=150).size == (100, 150)


@pytest.mark.parametrize(("source", "target"), [((1500, 1000), (1024, 683)), ((1000, 1500), (683, 1024)),
                                               ((750, 500), (384, 256)), ((3000, 2000), (1024, 683)),
                                               ((1031, 7), (517, 4))])
def test_downscale_is_pillows_bicubic_to_a_level_or_two(coffee, source, target):
    """With torch loaded, its kernel gives Pillow's BICUBIC pixels (a photo's rare rounding
    differences aside), the right way round for landscape and portrait."""
    import torch  # noqa: F401 -- loaded, as in a scoring process

    image = coffee.resize(source, Image.Resampling.BICUBIC)
    fast = decode.resize_bicubic(image, target)
    assert fast.size == target and fast.mode == "RGB"
    diff = np.abs(pixels(fast) - pixels(image.resize(target, Image.Resampling.BICUBIC)))
    assert diff.max() <= 2
    assert (diff > 0).mean() < 0.01


def test_downscale_is_pillows_own_without_torch_loaded_or_working(coffee, monkeypatch):
    import torch  # noqa: F401

    reference = pixels(coffee.resize((300, 200), Image.Resampling.BICUBIC)).tolist()
    calls = []
    real = decode._torch_bicubic
    monkeypatch.setattr(decode, "_torch_bicubic", lambda img, size: calls.append(size) or real(img, size))
    decode.resize_bicubic(coffee, (300, 200))
    assert calls == [(300, 200)]  # torch loaded: its kernel
    with monkeypatch.context() as m:  # a process that never loaded torch does not load it
        m.delitem(sys.modules, "torch")
        assert pixels(decode.resize_bicubic(coffee, (300, 200))).tolist() == reference
    assert calls == [(300, 200)]

    def broken(img, size):
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(decode, "_torch_bicubic", broken)
    assert pixels(decode.resize_bicubic(coffee, (300, 200))).tolist() == reference
    grey = decode.resize_bicubic(coffee.convert("L"), (300, 200))  # only RGB goes to torch
    assert grey.mode == "L" and grey.size == (300, 200)


def test_max_side_zero_or_larger_keeps_native_size(tmp_path, coffee):
    path = tmp_path / "coffee.jpg"
    coffee.save(path)
    assert open_image(path).size == (600, 400)
    assert open_image(path, max_side=0).size == (600, 400)
    assert open_image(path, max_side=5000).size == (600, 400)  # never upscaled
    with pytest.raises(ValueError):
        open_image(path, max_side=-1)


def test_large_jpeg_is_decoded_in_draft_mode(large_jpeg, monkeypatch):
    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafts.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    img = open_image(large_jpeg, max_side=512)
    assert img.size == (512, 341)
    # 3600x2400 reduced by 4 (libjpeg scales by powers of two) still covers 512x341.
    assert drafts == [((512, 342), (900, 600))]

    with Image.open(large_jpeg) as full:
        reference = full.convert("RGB").resize((512, 341), Image.Resampling.BICUBIC)
    assert mean_abs_diff(img, reference) < 2.5


def test_small_target_never_drafts_below_it(large_jpeg, monkeypatch):
    decoded = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    assert open_image(large_jpeg, max_side=1000).size == (1000, 667)
    assert decoded == [(1800, 1200)]  # reduced by 2, not 4 (900 < 1000)
    decoded.clear()
    assert open_image(large_jpeg, max_side=2000).size == (2000, 1333)
    assert decoded == []  # not even twice the target: decoded at full size


# --- orientation ------------------------------------------------------------------------------


def marked_image() -> Image.Image:
    """60x40 grey with a red top-left corner and a blue top-right corner."""
    img = Image.new("RGB", (60, 40), (128, 128, 128))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    img.paste((0, 0, 255), (50, 0, 60, 10))
    return img


def with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_exif_orientation_6_rotates_jpeg(tmp_path):
    path = tmp_path / "rotated.jpg"
    marked_image().save(path, exif=with_orientation(6), quality=95)
    img = open_image(path)
    assert img.size == (40, 60)
    # Orientation 6: the stored image is turned 90 degrees clockwise for display, so the red
    # top-left corner ends up top-right and the blue top-right corner bottom-right.
    assert np.allclose(img.getpixel((35, 5)), (255, 0, 0), atol=40)
    assert np.allclose(img.getpixel((35, 55)), (0, 0, 255), atol=40)
    assert np.allclose(img.getpixel((5, 5)), (128, 128, 128), atol=40)
    assert image_size(path) == (40, 60)
    meta = read_metadata(path)
    assert (meta.width, meta.height, meta.orientation) == (40, 60, 6)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("suffix", "save_args"),
    # Pillow reports TIFF sizes already oriented and turns TIFF pixels itself while loading.
    [(".png", {}), (".tif", {}), (".tif", {"compression": "tiff_lzw"})],
)
def test_every_orientation_matches_exif_transpose(tmp_path, orientation, suffix, save_args):
    source = marked_image()
    source.info["exif"] = with_orientation(orientation).tobytes()
    expected = ImageOps.exif_transpose(source)  # in memory: no file format involved
    path = tmp_path / f"o{orientation}{suffix}"
    marked_image().save(path, exif=with_orientation(orientation), **save_args)
    img = open_image(path)
    assert img.size == expected.size
    assert np.array_equal(pixels(img), pixels(expected))
    meta = read_metadata(img)
    assert (meta.width, meta.height, meta.orientation) == (*expected.size, orientation)
    assert read_metadata(path) == meta
    assert image_size(path) == expected.size


def test_orientation_with_downscale(tmp_path, coffee):
    path = tmp_path / "coffee.jpg"
    coffee.save(path, exif=with_orientation(8))
    img = open_image(path, max_side=300)
    assert img.size == (200, 300)
    meta = read_metadata(img)  # the decoded image still describes the whole file
    assert (meta.width, meta.height, meta.orientation) == (400, 600, 8)


# --- colour modes -----------------------------------------------------------------------------


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    values = np.linspace(0, 65535, 64 * 16).astype(np.uint16).reshape(16, 64)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")  # really a high-bit-depth image
    img = open_image(path)
    out = np.asarray(img)
    assert img.mode == "RGB" and out.shape == (16, 64, 3)
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.abs(out[..., 0].astype(int) - values / 257.0).max() <= 1
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_16_bit_tiff_is_scaled_to_8_bits(tmp_path):
    values = np.full((8, 8), 32768, np.uint16)
    values[0, 0] = 65535
    path = tmp_path / "deep.tif"
    Image.fromarray(values).save(path)
    out = np.asarray(open_image(path))
    assert tuple(out[1, 1]) == (128, 128, 128)
    assert tuple(out[0, 0]) == (255, 255, 255)


def test_float_tiff_in_unit_range(tmp_path):
    values = np.linspace(0.0, 1.0, 16, dtype=np.float32).reshape(4, 4)
    path = tmp_path / "float.tif"
    Image.fromarray(values, "F").save(path)
    out = np.asarray(open_image(path))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and out[1, 1, 1] == round(5 / 15 * 255)


def test_palette_png_with_transparency_on_white(tmp_path):
    img = Image.new("P", (10, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red (transparent), 1 blue
    img.paste(1, (5, 0, 10, 10))
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)
    out = open_image(path)
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((8, 8)) == (0, 0, 255)


def test_rgba_composited_on_white(tmp_path):
    img = Image.new("RGBA", (30, 10), (0, 0, 0, 0))
    img.paste((255, 0, 0, 128), (10, 0, 20, 10))
    img.paste((0, 255, 0, 255), (20, 0, 30, 10))
    path = tmp_path / "alpha.png"
    img.save(path)
    out = open_image(path)
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert np.allclose(out.getpixel((15, 5)), (255, 127, 127), atol=2)
    assert out.getpixel((25, 5)) == (0, 255, 0)


def test_grey_with_alpha(tmp_path):
    img = Image.new("LA", (4, 4), (0, 255))
    img.putpixel((0, 0), (0, 0))
    path = tmp_path / "la.png"
    img.save(path)
    out = open_image(path)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((3, 3)) == (0, 0, 0)


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (16, 8), (0, 0, 0, 0))
    img.paste((0, 255, 255, 0), (8, 0, 16, 8))
    path = tmp_path / "cmyk.jpg"
    img.save(path, quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    out = open_image(path)
    assert out.mode == "RGB"
    assert np.allclose(out.getpixel((2, 4)), (255, 255, 255), atol=6)
    assert np.allclose(out.getpixel((13, 4)), (255, 0, 0), atol=6)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_greyscale_becomes_rgb(tmp_path, chelsea, suffix):
    grey = chelsea.convert("L")
    path = tmp_path / f"grey{suffix}"
    grey.save(path, quality=95)  # ignored by PNG
    out = np.asarray(open_image(path), dtype=np.int16)
    assert out.shape == (300, 451, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.abs(out[..., 0] - np.asarray(grey, dtype=np.int16)).mean() < 2.0


def test_bilevel_png(tmp_path):
    img = Image.new("1", (8, 8), 0)
    img.paste(1, (4, 0, 8, 8))
    path = tmp_path / "bilevel.png"
    img.save(path)
    out = open_image(path)
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((7, 7)) == (255, 255, 255)


# --- bad files --------------------------------------------------------------------------------


def test_truncated_jpeg(tmp_path, chelsea_jpeg):
    path = tmp_path / "truncated.jpg"
    path.write_bytes(chelsea_jpeg[: len(chelsea_jpeg) // 2])
    assert decode_error(path).startswith("truncated or corrupt image: ")


def test_corrupt_png_data(tmp_path, chelsea):
    path = tmp_path / "corrupt.png"
    chelsea.save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 200
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    assert decode_error(path).startswith("truncated or corrupt image: ")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    assert decode_error(path) == "empty file (0 bytes)"


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n" * 20)
    assert decode_error(path) == "not an image file"


def test_random_bytes_named_png(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    assert decode_error(path) == "not an image file"


def test_directory_named_like_a_photo(tmp_path):
    path = tmp_path / "x.jpg"
    path.mkdir()
    assert decode_error(path) == "is a directory"
    with pytest.raises(DecodeError, match="^is a directory$"):
        file_digest(path)


def test_file_removed_before_open(tmp_path, chelsea_jpeg):
    path = tmp_path / "gone.jpg"
    path.write_bytes(chelsea_jpeg)
    path.unlink()
    assert decode_error(path) == "file disappeared"
    for read in (image_size, read_metadata, file_digest):
        with pytest.raises(DecodeError, match="^file disappeared$"):
            read(path)


def test_symlink_to_missing_target(tmp_path):
    link = tmp_path / "link.jpg"
    link.symlink_to(tmp_path / "missing.jpg")
    assert decode_error(link) == "broken symbolic link (target missing)"


def test_symlink_to_photo_opens(tmp_path, chelsea_jpeg):
    target = tmp_path / "real.jpg"
    target.write_bytes(chelsea_jpeg)
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    assert open_image(link).size == (451, 300)


def test_unreadable_file(tmp_path, chelsea_jpeg, monkeypatch):
    path = tmp_path / "secret.jpg"
    path.write_bytes(chelsea_jpeg)
    path.chmod(0)
    try:
        if not os.access(path, os.R_OK):
            assert decode_error(path) == "permission denied"
        else:
            # Running as root: permissions are not enforced, so make opening fail the way it
            # would for anyone else.
            def denied(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(path))

            monkeypatch.setattr(decode, "open", denied, raising=False)
            assert decode_error(path) == "permission denied"
        with pytest.raises(DecodeError, match="^permission denied$"):
            file_digest(path)
    finally:
        path.chmod(0o644)


def test_non_utf8_filename(tmp_path, chelsea_jpeg):
    name = os.fsdecode(b"caf\xe9.jpg")
    path = os.path.join(os.fsdecode(tmp_path), name)
    with open(path, "wb") as fp:
        fp.write(chelsea_jpeg)
    assert open_image(path).size == (451, 300)
    assert read_metadata(path).width == 451
    assert len(file_digest(path)) == 32


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 1-bit pixels (its data is not there)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("side", "megapixels"),
    [(30000, 900), (20000, 400)],  # past Pillow's own error limit; between its warning and ours
)
def test_decompression_bomb(tmp_path, side, megapixels):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(side, side))
    expected = f"image too large ({megapixels} megapixels, limit {MAX_PIXELS // 10**6})"
    assert decode_error(path) == expected
    for read in (image_size, read_metadata):
        with pytest.raises(DecodeError, match=r"^image too large \("):
            read(path)


def test_own_pixel_limit_checked_before_decoding(tmp_path, monkeypatch, coffee):
    path = tmp_path / "coffee.jpg"
    coffee.save(path)
    monkeypatch.setattr(decode, "MAX_PIXELS", 200_000)
    assert decode_error(path) == "image too large (0.24 megapixels, limit 0.2)"


def test_pillow_limit_raised_not_lowered():
    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS >= MAX_PIXELS


def test_heif_without_support(tmp_path, monkeypatch):
    """A broken install (pi-heif missing) says so instead of "not an image file"."""
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    monkeypatch.setattr(decode, "_HEIF_INSTALLED", False)
    assert decode_error(path) == "HEIF/HEIC image, but HEIC support (pi-heif) is not installed"


def test_heif_and_avif_are_in_the_default_install():
    """pi-heif (a dependency, not an extra) reads HEIC/HEIF, Pillow itself AVIF."""
    assert decode._HEIF_INSTALLED and decode._heif_formats() == ("HEIF",)
    assert "AVIF" in decode._open_formats()
    for name in ("a.heic", "a.HEIC", "a.heif", "a.hif", "a.HIF", "a.avif", "a.AVIF"):
        assert is_image_path(name), name


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_avif_is_decoded_upright(tmp_path, orientation):
    """AVIF's EXIF orientation is applied once, as for a JPEG."""
    path = tmp_path / "photo.avif"
    stored = Image.new("RGB", (64, 32), (0, 0, 0))
    stored.paste((255, 255, 255), (0, 0, 32, 32))  # left half white as stored
    stored.save(path, exif=with_orientation(orientation).tobytes(), quality=95)
    img = open_image(path)
    with Image.open(path) as stored_file:
        expected = ImageOps.exif_transpose(stored_file).convert("RGB")
    assert img.size == expected.size == ((32, 64) if orientation in (6, 8) else (64, 32))
    diff = np.abs(np.asarray(img, np.int16) - np.asarray(expected, np.int16))
    assert diff.mean() < 3
    meta = read_metadata(path)
    assert (meta.width, meta.height, meta.orientation) == (*img.size, orientation)
    assert read_metadata(img) == meta


# --- hashing, and never writing ---------------------------------------------------------------


def test_file_digest(tmp_path, chelsea_jpeg):
    a = tmp_path / "a.jpg"
    a.write_bytes(chelsea_jpeg)
    b = tmp_path / "sub" / "renamed.jpg"
    b.parent.mkdir()
    shutil.copy(a, b)
    assert file_digest(a) == file_digest(b)
    assert file_digest(a) == hashlib.blake2b(chelsea_jpeg, digest_size=16).hexdigest()
    assert file_digest(a, chunk=4097) == file_digest(a)
    c = tmp_path / "c.jpg"
    c.write_bytes(chelsea_jpeg[:-1] + bytes([chelsea_jpeg[-1] ^ 1]))
    assert file_digest(c) != file_digest(a)


def test_reading_never_changes_the_file(tmp_path, chelsea):
    path = tmp_path / "precious.jpg"
    chelsea.save(path, exif=with_orientation(6))
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_size

    open_image(path)
    open_image(path, max_side=100)
    image_size(path)
    read_metadata(path)
    file_digest(path)

    after = path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_size
    assert after == before
