"""Camera RAW files: preview or half-size pixels, EXIF from the RAW, RAW+JPEG pairs as one photo.

The RAW files are real DNGs, written here byte by byte (DNG is TIFF with a colour filter array):
an RGGB mosaic with the DNG colour tags LibRaw needs, EXIF (make, model, capture time) and, as
cameras write it, an embedded JPEG preview in IFD0 with the mosaic in a SubIFD.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from photosense.cli import main
from photosense.errors import DecodeError
from photosense.ingest.decode import file_digest, image_size, is_image_path, open_image
from photosense.ingest.metadata import read_metadata
from photosense.ingest.raw import (
    RAW_EXTENSIONS,
    best_image_path,
    open_raw,
    read_raw_metadata,
)
from photosense.ingest.scan import Scanner, pair_digest, pair_files
from photosense.library import FLAG_PICK, Library, PhotoQuery

# -- a DNG writer ---------------------------------------------------------------------------

_PACK = {1: "B", 3: "H", 4: "I", 5: "II", 10: "ii"}


def _ifd(entries: dict[int, tuple[int, object]], offset: int) -> bytes:
    """One little-endian IFD at ``offset``, its long values right after it."""
    table, extra = b"", b""
    data_at = offset + 2 + 12 * len(entries) + 4
    for tag in sorted(entries):
        typ, values = entries[tag]
        if typ == 2:  # ASCII
            raw = values.encode("latin-1") + b"\0"
            count = len(raw)
        elif typ in (5, 10):  # (S)RATIONAL pairs
            raw = b"".join(struct.pack("<" + _PACK[typ], *v) for v in values)
            count = len(values)
        else:
            count = len(values)
            raw = struct.pack(f"<{count}{_PACK[typ]}", *values)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", data_at + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
        table += struct.pack("<HHI", tag, typ, count) + field
    return struct.pack("<H", len(entries)) + table + struct.pack("<I", 0) + extra


def mosaic(scene: np.ndarray) -> np.ndarray:
    """A 16-bit RGGB mosaic of a grey ``scene`` (floats 0..1): every site sees the same light."""
    return np.round(1000 + scene * 60000).astype(np.uint16)


def write_dng(path, cfa: np.ndarray, preview: Image.Image | None = None, orientation: int = 1,
              make: str = "Testmaker", model: str = "Testmaker DNG-1",
              taken: str = "2023:04:05 06:07:08", subsec: str = "250",
              pixel_bytes: int | None = None, raw_tags: dict | None = None) -> None:
    """``pixel_bytes``: keep only this many bytes of the mosaic (a strip shorter than the
    image, its byte count honest: the file's structure looks whole, LibRaw runs out of data).
    ``raw_tags``: more tags for the raw image's IFD (DefaultCropSize, say)."""
    height, width = cfa.shape
    pixels = cfa.astype("<u2").tobytes()[:pixel_bytes]
    jpeg = b""
    if preview is not None:
        buf = io.BytesIO()
        preview.save(buf, "JPEG", quality=90)
        jpeg = buf.getvalue() + b"\0" * (len(buf.getvalue()) % 2)
    data = pixels + jpeg
    common = {
        271: (2, make), 272: (2, model), 274: (3, [orientation]), 306: (2, "2023:04:05 09:00:00"),
        50706: (1, [1, 4, 0, 0]), 50707: (1, [1, 1, 0, 0]), 50708: (2, model),
        50721: (10, [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]),
        50778: (3, [21]), 50728: (5, [(1, 1), (1, 1), (1, 1)]),
    }
    cfa_tags = {
        254: (4, [0]), 256: (4, [width]), 257: (4, [height]), 258: (3, [16]), 259: (3, [1]),
        262: (3, [32803]), 273: (4, [8]), 277: (3, [1]), 278: (4, [height]),
        279: (4, [len(pixels)]), 284: (3, [1]), 33421: (3, [2, 2]), 33422: (1, [0, 1, 1, 2]),
        50717: (4, [65535]), **(raw_tags or {}),
    }
    exif = {36867: (2, taken), 37521: (2, subsec)}
    ifd0_at = 8 + len(data)

    def layout(sub_at: int, exif_at: int) -> list[bytes]:
        if preview is None:
            ifd0 = {**common, **cfa_tags, 34665: (4, [exif_at])}
            return [_ifd(ifd0, ifd0_at), _ifd(exif, exif_at)]
        ifd0 = {**common, 254: (4, [1]), 256: (4, [preview.width]), 257: (4, [preview.height]),
                258: (3, [8, 8, 8]), 259: (3, [7]), 262: (3, [6]), 273: (4, [8 + len(pixels)]),
                277: (3, [3]), 278: (4, [preview.height]), 279: (4, [len(jpeg)]), 284: (3, [1]),
                330: (4, [sub_at]), 34665: (4, [exif_at])}
        return [_ifd(ifd0, ifd0_at), _ifd(cfa_tags, sub_at), _ifd(exif, exif_at)]

    # Sizes do not depend on the offsets: lay out once to learn where each IFD goes.
    sizes = [len(b) for b in layout(0, 0)]
    if preview is None:
        blocks = layout(0, ifd0_at + sizes[0])
    else:
        blocks = layout(ifd0_at + sizes[0], ifd0_at + sizes[0] + sizes[1])
    with open(path, "wb") as fp:
        fp.write(b"II*\0" + struct.pack("<I", ifd0_at) + data + b"".join(blocks))


def half_white(width: int, height: int) -> Image.Image:
    """Left half white, right half black: shows which way an image was turned."""
    img = Image.new("RGB", (width, height), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, width // 2, height))
    return img


def left_bright_scene(height: int = 400, width: int = 600) -> np.ndarray:
    scene = np.full((height, width), 0.05)
    scene[:, : width // 2] = 0.9
    return scene


def brightest_side(img: Image.Image) -> str:
    a = np.asarray(img.convert("L"), dtype=np.float64)
    h, w = a.shape
    sides = {"top": a[: h // 4].mean(), "bottom": a[-h // 4:].mean(),
             "left": a[:, : w // 4].mean(), "right": a[:, -w // 4:].mean()}
    return max(sides, key=sides.get)


@pytest.fixture
def shoot(tmp_path):
    folder = tmp_path / "shoot"
    folder.mkdir()
    return folder


def _rows(lib) -> dict[str, object]:
    return {os.path.basename(r.path): r for r in lib.query(PhotoQuery())}


def _pair(folder, real_photos, stem="IMG_1", raw_ext=".dng", jpeg_ext=".jpg"):
    """A RAW (600x400 sensor, upright) and the camera's JPEG of it (the astronaut, no EXIF)."""
    raw = folder / f"{stem}{raw_ext}"
    write_dng(raw, mosaic(left_bright_scene()), preview=half_white(600, 400))
    jpeg = folder / f"{stem}{jpeg_ext}"
    real_photos["astronaut"].save(jpeg, quality=90)
    return str(raw), str(jpeg)


# -- decoding -------------------------------------------------------------------------------


def test_raw_extensions_are_image_paths():
    assert {".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".dng", ".pef", ".srw"} \
        == RAW_EXTENSIONS
    assert is_image_path("a/IMG_0001.CR3") and is_image_path("x.NeF")


def test_preview_is_used_and_turned_upright_once(tmp_path):
    path = tmp_path / "portrait.dng"
    # Sensor data landscape, camera held upright (rotate 90 CW): the preview is stored as the
    # sensor saw it, white on the left, so upright its white is on top.
    write_dng(path, mosaic(left_bright_scene()), preview=half_white(600, 400), orientation=6)
    img = open_raw(path, 0)
    assert img.mode == "RGB" and img.size == (400, 600)
    assert brightest_side(img) == "top"
    assert np.asarray(img)[:250].min() > 200  # the preview's pixels, not a demosaic
    small = open_image(path, max_side=256)
    assert small.size == (171, 256) and brightest_side(small) == "top"
    assert small.info["photosense.source_size"] == (400, 600)
    assert small.info["photosense.orientation"] == 6
    assert image_size(path) == (400, 600)


def test_preview_the_camera_turned_already_is_not_turned_again(tmp_path):
    path = tmp_path / "turned.dng"
    upright = half_white(600, 400).transpose(Image.Transpose.ROTATE_270)  # white on top
    write_dng(path, mosaic(left_bright_scene()), preview=upright, orientation=6)
    img = open_image(path)
    assert img.size == (400, 600) and brightest_side(img) == "top"


@pytest.mark.parametrize(("orientation", "size", "side"),
                         [(1, (300, 200), "left"), (6, (200, 300), "top"), (8, (200, 300), "bottom")])
def test_half_size_decode_without_preview(tmp_path, orientation, size, side):
    path = tmp_path / "nopreview.dng"
    write_dng(path, mosaic(left_bright_scene()), preview=None, orientation=orientation)
    img = open_image(path)
    assert img.mode == "RGB" and img.size == size  # half of 600x400, upright
    assert brightest_side(img) == side
    assert open_image(path, max_side=150).size == tuple(s // 2 for s in size)
    assert img.info["photosense.source_size"] == (size[0] * 2, size[1] * 2)


def test_tiny_preview_falls_back_to_half_size_decode(tmp_path):
    path = tmp_path / "thumbonly.dng"
    write_dng(path, mosaic(left_bright_scene()), preview=Image.new("RGB", (160, 107), (255, 0, 0)))
    img = open_image(path, max_side=256)
    assert img.size == (256, 171)
    r, g, b = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert not (r > 200 and g < 60)  # not the red thumbnail
    assert brightest_side(img) == "left"
    # A small target is covered by the small preview.
    assert np.asarray(open_image(path, max_side=100))[..., 0].mean() > 200


def test_raw_metadata_comes_from_the_raw(tmp_path):
    path = tmp_path / "meta.dng"
    write_dng(path, mosaic(left_bright_scene()), preview=half_white(600, 400), orientation=6,
              make="NIKON CORPORATION", model="NIKON Z 6", taken="2021:12:31 23:59:58", subsec="5")
    meta = read_metadata(str(path))
    assert meta == read_raw_metadata(path)
    assert (meta.width, meta.height, meta.orientation) == (400, 600, 6)
    assert meta.capture_time == datetime(2021, 12, 31, 23, 59, 58, 500000)
    assert meta.camera == "NIKON Z 6"
    # The same from a decoded image (what scanning uses), with or without the preview.
    assert read_metadata(open_image(path, max_side=64)) == meta
    bare = tmp_path / "bare.dng"
    write_dng(bare, mosaic(left_bright_scene()), orientation=6, make="Canon", model="EOS R5")
    decoded = read_metadata(open_image(bare, max_side=64))
    assert decoded.camera == "Canon EOS R5" and decoded.capture_time.year == 2023


@pytest.mark.parametrize("content", [b"", b"not a raw file at all" * 100, "truncated"])
def test_bad_raw_files_are_one_line_decode_errors(tmp_path, content):
    path = tmp_path / "bad.cr2"
    if content == "truncated":
        good = tmp_path / "good.dng"
        write_dng(good, mosaic(left_bright_scene()), preview=half_white(600, 400))
        path = tmp_path / "bad.dng"
        path.write_bytes(good.read_bytes()[:2000])
    else:
        path.write_bytes(content)
    for call in (lambda: open_image(path, 256), lambda: read_metadata(str(path)),
                 lambda: image_size(path)):
        with pytest.raises(DecodeError) as err:
            call()
        message = str(err.value)
        assert message and "\n" not in message and str(path) not in message
    with pytest.raises(DecodeError, match="file disappeared"):
        open_image(tmp_path / "gone.nef")


def test_best_image_path_prefers_an_existing_companion(tmp_path):
    raw, jpeg = tmp_path / "a.cr2", tmp_path / "a.jpg"
    raw.write_bytes(b"x")
    assert best_image_path(str(raw), None) == str(raw)
    assert best_image_path(str(raw), str(jpeg)) == str(raw)  # the JPEG is gone
    jpeg.write_bytes(b"y")
    assert best_image_path(str(raw), str(jpeg)) == str(jpeg)


# -- pairs ----------------------------------------------------------------------------------


def test_pair_files_groups_by_folder_and_stem():
    files = [("/a/IMG_1.CR2", 10, 1.0), ("/a/img_1.jpg", 3, 2.0), ("/a/IMG_1.tif", 5, 1.0),
             ("/b/IMG_1.jpg", 4, 1.0), ("/a/IMG_2.nef", 7, 1.0), ("/a/IMG_3.jpg", 2, 1.0)]
    units = sorted(pair_files(files))
    assert units == sorted([
        ("/a/IMG_1.CR2", 13, 2.0, "/a/img_1.jpg"),  # the JPEG is preferred to the TIFF
        ("/a/IMG_1.tif", 5, 1.0, None), ("/b/IMG_1.jpg", 4, 1.0, None),
        ("/a/IMG_2.nef", 7, 1.0, None), ("/a/IMG_3.jpg", 2, 1.0, None),
    ])


@pytest.mark.parametrize("name", ["IMG_1.CR2", "img_1.jpg", "a.b.JPG", "noext", "trail.",
                                  "x.tar.gz", ".hidden.jpg", "..jpg", "...", "Ünï.JPEG",
                                  "DSC 0001 (2).nef"])
def test_the_walk_s_quick_name_splits_agree_with_os_path(name):
    from photosense.ingest.scan import _extension, _folder_and_stem

    path = os.path.join(os.sep + "photos", "Day 1", name)
    assert _folder_and_stem(path)[1] == os.path.splitext(name)[0].lower()
    assert _folder_and_stem(path)[0].rstrip(os.sep) == os.path.dirname(path)
    if not name.startswith("."):  # the walk skips hidden files before it asks
        assert _extension(name) == os.path.splitext(name)[1].lower()


def test_raw_and_jpeg_scan_as_one_photo(lib, shoot, real_photos):
    raw, jpeg = _pair(shoot, real_photos)
    write_dng(shoot / "IMG_2.DNG", mosaic(left_bright_scene()), preview=half_white(600, 400))
    real_photos["coffee"].save(shoot / "IMG_3.jpg")
    lib.add_folder(shoot)
    report = Scanner(lib).scan_all()
    assert report.added == 3 and not report.errors
    rows = _rows(lib)
    assert set(rows) == {"IMG_1.dng", "IMG_2.DNG", "IMG_3.jpg"}
    pair = rows["IMG_1.dng"]
    assert pair.companion_path == jpeg and rows["IMG_2.DNG"].companion_path is None
    # Size and checks from the JPEG, capture time and camera from the RAW (the JPEG has none).
    assert (pair.width, pair.height) == real_photos["astronaut"].size
    assert pair.capture_time == datetime(2023, 4, 5, 6, 7, 8, 250000)
    assert pair.camera == "Testmaker DNG-1" and pair.checks["sharpness"] is not None
    alone = rows["IMG_2.DNG"]
    assert (alone.width, alone.height) == (600, 400) and alone.checks["exposure"] is not None
    assert pair.size == os.path.getsize(raw) + os.path.getsize(jpeg)
    with lib.session(write=False) as s:
        from photosense.library.models import Photo

        # Both files make the pair's identity: a re-saved JPEG is new content.
        assert s.get(Photo, pair.id).content_hash == pair_digest(file_digest(raw),
                                                                 file_digest(jpeg))
    # Nothing changed: nothing is read again.
    again = Scanner(lib).scan_all()
    assert again.unchanged == 3 and again.updated == again.added == again.missing == 0


def test_flags_apply_to_the_pair_and_show_in_json(lib, shoot, real_photos, capsys, tmp_path):
    raw, jpeg = _pair(shoot, real_photos)
    lib_path = str(tmp_path / "cli.sqlite3")
    assert main(["add", str(shoot), "--library", lib_path]) == 0
    # Flagging either file of the pair flags the one photo.
    assert main(["flag", jpeg, "--pick", "--rating", "3", "--library", lib_path]) == 0
    capsys.readouterr()
    assert main(["list", "--format", "json", "--library", lib_path]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    assert rows[0]["path"] == raw and rows[0]["companion"] == jpeg
    assert rows[0]["flag"] == "pick" and rows[0]["rating"] == 3
    with Library(lib_path) as cli_lib:
        (pid,) = cli_lib.query_ids(PhotoQuery())
        cli_lib.set_culling([pid], color_label="red")
        assert cli_lib.resolve_paths([raw, jpeg]) == {raw: pid, jpeg: pid}
        assert cli_lib.rows([pid])[0].color_label == "red"


def test_jpeg_first_then_raw_merges_keeping_flags_and_features(lib, shoot, real_photos):
    jpeg = shoot / "IMG_1.jpg"
    real_photos["astronaut"].save(jpeg, quality=90)
    lib.add_folder(shoot)
    Scanner(lib).scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK, rating=5)
    model = lib.ensure_model("m", 4, 100.0)
    lib.store_features(model.id, 224, [(pid, np.ones(4, np.float32) / 2, {})])

    raw = shoot / "IMG_1.CR2"
    write_dng(raw, mosaic(left_bright_scene()), preview=half_white(600, 400))  # a DNG, named .CR2
    report = Scanner(lib).scan_all()
    assert report.updated == 1 and report.added == 0 and report.missing == 0
    (row,) = lib.query(PhotoQuery())
    assert row.id == pid and row.path == str(raw) and row.companion_path == str(jpeg)
    assert row.flag == FLAG_PICK and row.rating == 5
    assert lib.photos_needing_features(model.id) == []  # the JPEG's feature still holds


def test_editing_only_the_jpeg_of_a_pair_needs_new_features(lib, shoot, real_photos):
    raw, jpeg = _pair(shoot, real_photos)
    lib.add_folder(shoot)
    Scanner(lib).scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK, rating=3)
    model = lib.ensure_model("m", 4, 100.0)
    lib.store_features(model.id, 224, [(pid, np.ones(4, np.float32) / 2, {})])
    real_photos["coffee"].save(jpeg, quality=90)  # edited in another app; the RAW untouched
    report = Scanner(lib).scan_all()
    assert report.updated == 1 and report.added == report.moved == 0
    assert lib.photos_needing_features(model.id) == [(pid, raw)]
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.companion_path, row.flag, row.rating) == (pid, jpeg, FLAG_PICK, 3)


def test_raw_beside_a_jpeg_edited_meanwhile_needs_new_features(lib, shoot, real_photos):
    jpeg = shoot / "IMG_1.jpg"
    real_photos["astronaut"].save(jpeg, quality=90)
    lib.add_folder(shoot)
    Scanner(lib).scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK)
    model = lib.ensure_model("m", 4, 100.0)
    lib.store_features(model.id, 224, [(pid, np.ones(4, np.float32) / 2, {})])
    real_photos["coffee"].save(jpeg, quality=90)
    write_dng(shoot / "IMG_1.dng", mosaic(left_bright_scene()), preview=half_white(600, 400))
    Scanner(lib).scan_all()
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.flag) == (pid, FLAG_PICK)
    assert lib.photos_needing_features(model.id) == [(pid, row.path)]


def test_two_photos_of_one_shot_become_one(lib, shoot, real_photos):
    """A library that knew the RAW and the JPEG as two photos: one, with both's decisions."""
    raw, jpeg = _pair(shoot, real_photos)
    lib.add_folder(shoot)
    from photosense.library import ScanRecord

    folder = lib.folders()[0]
    lib.upsert_scanned(folder.id, [ScanRecord(raw, 1, 1.0, "h1"), ScanRecord(jpeg, 1, 1.0, "h2")])
    ids = {r.path: r.id for r in lib.query(PhotoQuery())}
    lib.set_culling([ids[jpeg]], flag=FLAG_PICK)
    lib.set_culling([ids[raw]], rating=2)
    Scanner(lib).scan_all()
    (row,) = lib.query(PhotoQuery())
    assert row.id == ids[raw] and row.companion_path == jpeg
    assert (row.flag, row.rating) == (FLAG_PICK, 2)


def test_deleting_the_jpeg_keeps_the_raw_photo(lib, shoot, real_photos):
    raw, jpeg = _pair(shoot, real_photos)
    lib.add_folder(shoot)
    Scanner(lib).scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK)
    os.unlink(jpeg)
    report = Scanner(lib).scan_all()
    assert report.updated == 1 and report.missing == 0
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.path, row.companion_path, row.flag) == (pid, raw, None, FLAG_PICK)
    assert not row.missing and (row.width, row.height) == (600, 400)  # now from the RAW


def test_deleting_the_raw_keeps_the_photo_as_the_jpeg(lib, shoot, real_photos):
    raw, jpeg = _pair(shoot, real_photos)
    lib.add_folder(shoot)
    Scanner(lib).scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK, rating=4)
    os.unlink(raw)
    report = Scanner(lib).scan_all()
    assert report.updated == 1 and report.missing == 0 and report.added == 0
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.path, row.companion_path) == (pid, jpeg, None)
    assert (row.flag, row.rating, row.missing) == (FLAG_PICK, 4, False)


def test_renaming_a_pair_keeps_the_photo(lib, shoot, real_photos):
    raw, jpeg = _pair(shoot, real_photos)
    lib.add_folder(shoot)
    Scanner(lib).scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK)
    os.rename(raw, shoot / "Wedding_1.dng")
    os.rename(jpeg, shoot / "Wedding_1.jpg")
    report = Scanner(lib).scan_all()
    assert report.moved == 1 and report.added == 0 and report.missing == 0
    (row,) = lib.query(PhotoQuery())
    assert row.id == pid and row.flag == FLAG_PICK
    assert (row.name, row.companion_path) == ("Wedding_1.dng", str(shoot / "Wedding_1.jpg"))


def test_watcher_events_pair_and_part(lib, shoot, real_photos):
    """scan_paths (the folder watcher) sees the other half of a pair as well."""
    jpeg = shoot / "IMG_1.jpg"
    real_photos["astronaut"].save(jpeg, quality=90)
    lib.add_folder(shoot)
    scanner = Scanner(lib)
    scanner.scan_all()
    (pid,) = lib.query_ids(PhotoQuery())
    lib.set_culling([pid], flag=FLAG_PICK)
    raw = shoot / "IMG_1.nef"
    write_dng(raw, mosaic(left_bright_scene()), preview=half_white(600, 400))
    scanner.scan_paths([str(raw)])
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.path, row.companion_path) == (pid, str(raw), str(jpeg))
    os.unlink(jpeg)
    scanner.scan_paths([str(jpeg)])
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.path, row.companion_path, row.missing) == (pid, str(raw), None, False)
    real_photos["astronaut"].save(jpeg, quality=90)
    scanner.scan_paths([str(jpeg)])
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.companion_path) == (pid, str(jpeg))
    os.unlink(raw)
    scanner.scan_paths([str(raw)])
    (row,) = lib.query(PhotoQuery())
    assert (row.id, row.path, row.companion_path, row.missing, row.flag) == \
        (pid, str(jpeg), None, False, FLAG_PICK)


def test_corrupt_raw_alone_is_a_one_line_scan_error(lib, shoot, real_photos):
    (shoot / "broken.arw").write_bytes(b"\0\1garbage" * 300)
    real_photos["coffee"].save(shoot / "fine.jpg")
    lib.add_folder(shoot)
    report = Scanner(lib).scan_all()
    assert report.added == 2
    ((path, message),) = report.errors
    assert path == str(shoot / "broken.arw") and "\n" not in message and "RAW" in message
    assert _rows(lib)["broken.arw"].error == message


def test_scoring_and_export_use_both_files_of_a_pair(lib, shoot, real_photos, tiny_config,
                                                     tmp_path):
    from photosense.curation.export import ExportOptions, export_photos
    from photosense.pipeline import ScoringJob

    # The RAW of this pair is unreadable to LibRaw: only its JPEG can be scored, and the
    # scan says so rather than hiding the broken RAW behind its JPEG.
    (shoot / "IMG_1.orf").write_bytes(b"\0\1garbage" * 300)
    real_photos["astronaut"].save(shoot / "IMG_1.jpg", quality=90)
    write_dng(shoot / "IMG_2.dng", mosaic(left_bright_scene()), preview=half_white(600, 400))
    lib.add_folder(shoot)
    ((path, message),) = Scanner(lib).scan_all().errors
    assert path == str(shoot / "IMG_1.orf")
    assert message == ("unsupported or corrupt RAW file (LibRaw cannot read this camera's "
                       "format) (the RAW; its JPEG IMG_1.jpg is shown)")
    assert _rows(lib)["IMG_1.orf"].error is None  # the photo itself is fine
    report = ScoringJob(lib, tiny_config).run()
    assert report.encoded == 2 and report.failed == 0

    lib.set_culling(lib.query_ids(PhotoQuery()), flag=FLAG_PICK)
    dest = tmp_path / "out"
    exported = export_photos(lib, ExportOptions(dest=dest))
    assert sorted(p.name for p in dest.iterdir()) == ["IMG_1.jpg", "IMG_1.orf", "IMG_2.dng"]
    assert exported.exported == 3 and not exported.errors
    assert (dest / "IMG_1.orf").read_bytes() == (shoot / "IMG_1.orf").read_bytes()
    shutil.rmtree(dest)


def test_cr3_exif_boxes_are_found():
    """A CR3 keeps IFD0 (CMT1) and the EXIF IFD (CMT2) as small TIFFs in a Canon uuid box."""
    from photosense.ingest import raw as raw_mod

    def box(name: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), name) + payload

    def tiff(entries) -> bytes:
        return b"II*\0" + struct.pack("<I", 8) + _ifd(entries, 8)

    cmt1 = tiff({271: (2, "Canon"), 272: (2, "Canon EOS R6"), 306: (2, "2024:01:02 03:04:05")})
    cmt2 = tiff({36867: (2, "2024:01:02 03:04:00"), 36881: (2, "+02:00")})
    canon = box(b"uuid", raw_mod._CR3_UUID + box(b"CNCV", b"CanonCR3_001/00.09.00/00.00.00")
                + box(b"CMT1", cmt1) + box(b"CMT2", cmt2))
    data = box(b"ftyp", b"crx \0\0\0\1crx isom") + box(b"moov", canon) + box(b"mdat", b"\0" * 64)
    main_tags, sub_tags = {}, {}
    raw_mod._cr3_into(io.BytesIO(data), main_tags, sub_tags)
    assert main_tags == {271: "Canon", 272: "Canon EOS R6", 306: "2024:01:02 03:04:05"}
    assert sub_tags == {0x9003: "2024:01:02 03:04:00", 0x9011: "+02:00"}


# -- the camera's dimensions, metadata without pixels, truncated files, LibRaw's stderr ----


def test_dimensions_are_the_cameras_default_crop(tmp_path):
    """A DNG's DefaultCropSize is the image (LibRaw's active area keeps the border pixels)."""
    path = tmp_path / "crop.dng"
    write_dng(path, mosaic(left_bright_scene()), preview=half_white(600, 400), orientation=6,
              raw_tags={50720: (3, [588, 392])})
    meta = read_metadata(str(path))
    assert (meta.width, meta.height) == (392, 588)
    assert image_size(path) == (392, 588)
    assert read_metadata(open_image(path, max_side=64)) == meta


def test_libraw_stderr_becomes_the_files_message(tmp_path, capfd):
    """LibRaw prints "Unexpected end of file" on fd 2 from C: nothing reaches the terminal,
    and the message says what happened."""
    path = tmp_path / "short.dng"
    write_dng(path, mosaic(left_bright_scene()), pixel_bytes=100_000)  # the strip ends early
    with pytest.raises(DecodeError) as err:
        open_image(path, max_side=64)
    assert str(err.value) == "truncated RAW file (LibRaw: unexpected end of file)"
    out, printed = capfd.readouterr()
    assert "end of file" not in printed.lower() and not out
    # Its metadata is read all the same.
    meta = read_metadata(str(path))
    assert (meta.camera, meta.width, meta.height) == ("Testmaker DNG-1", 600, 400)


def test_stderr_capture_is_per_file_and_keeps_other_output(tmp_path, capfd):
    """Concurrent LibRaw calls each get their own lines; anything else written to fd 2
    meanwhile still reaches stderr."""
    import threading
    import time

    from photosense.ingest.raw import _LibRawStderr

    results: dict[int, list[str]] = {}

    def one(i: int) -> None:
        path = f"/photos/IMG_{i}.CR2"
        with _LibRawStderr(path) as caught:
            os.write(2, f"{path}: Unexpected end of file\n".encode())
            time.sleep(0.01)
            os.write(2, f"{path}: data corrupted at {i}\n".encode())
            os.write(2, f"someone else's line {i}\n".encode())
        results[i] = caught.messages

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: ["Unexpected end of file", f"data corrupted at {i}"] for i in range(8)}
    printed = capfd.readouterr().err
    assert sorted(printed.splitlines()) == sorted(f"someone else's line {i}" for i in range(8))


def test_truncated_raw_says_truncated_not_unsupported(tmp_path):
    good = tmp_path / "good.dng"
    write_dng(good, mosaic(left_bright_scene()), preview=half_white(600, 400))
    data = good.read_bytes()
    for keep in (2000, len(data) - 100):  # the IFDs (at the end) are cut
        cut = tmp_path / f"cut{keep}.dng"
        cut.write_bytes(data[:keep])
        with pytest.raises(DecodeError, match=r"^truncated RAW file \("):
            open_image(cut, max_side=64)


def test_raw_alone_that_cannot_be_decoded_keeps_its_metadata(lib, shoot):
    write_dng(shoot / "IMG_7.dng", mosaic(left_bright_scene()), pixel_bytes=100_000,
              make="SONY", model="ILCE-7M3", taken="2022:08:09 10:11:12", subsec="345")
    lib.add_folder(shoot)
    ((path, message),) = Scanner(lib).scan_all().errors
    row = _rows(lib)["IMG_7.dng"]
    assert row.error == message == "truncated RAW file (LibRaw: unexpected end of file)"
    assert (row.camera, row.width, row.height) == ("SONY ILCE-7M3", 600, 400)
    assert row.capture_time == datetime(2022, 8, 9, 10, 11, 12, 345000)


def test_unreadable_raw_of_a_pair_is_reported_not_hidden(lib, shoot, real_photos):
    """Only the JPEG of a pair is decoded, but a RAW cut short (or one LibRaw cannot open) is
    reported by the scan; the photo goes on with its JPEG."""
    good = shoot / "tmp.dng"
    write_dng(good, mosaic(left_bright_scene()))
    (shoot / "IMG_1.dng").write_bytes(good.read_bytes()[:3000])
    good.unlink()
    (shoot / "IMG_2.cr3").write_bytes(b"\0\0\0\x18ftypcrx " + b"\0" * 3000)
    write_dng(shoot / "IMG_3.dng", mosaic(left_bright_scene()))
    for stem in ("IMG_1", "IMG_2", "IMG_3"):
        real_photos["coffee"].save(shoot / f"{stem}.jpg")
    lib.add_folder(shoot)
    report = Scanner(lib).scan_all()
    assert report.added == 3
    assert sorted((os.path.basename(p), m) for p, m in report.errors) == [
        ("IMG_1.dng", "truncated RAW file (3,000 of at least 480,010 bytes) (the RAW; its JPEG "
                      "IMG_1.jpg is shown)"),
        ("IMG_2.cr3", "unsupported or corrupt RAW file (LibRaw cannot read this camera's "
                      "format) (the RAW; its JPEG IMG_2.jpg is shown)")]
    rows = _rows(lib)
    assert rows["IMG_1.dng"].error is None and rows["IMG_1.dng"].companion_path
    assert all(v is not None for v in rows["IMG_1.dng"].checks.values())  # from the JPEG
