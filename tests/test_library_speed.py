"""A large library stays quick: scan batches read their photos with a few queries, rows are
streamed from plain selects, one score's values come from one (id, value) query (issue 12.6)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import event

from photosense.errors import PhotosenseError
from photosense.library import Library, PhotoQuery, ScanRecord


def _rec(path, h, **kw) -> ScanRecord:
    return ScanRecord(path=str(path), size=10, mtime=1.0, content_hash=h, **kw)


class _Selects:
    """Counts the SELECT statements a library runs."""

    def __init__(self, lib: Library):
        self.n = 0
        event.listen(lib.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            self.n += 1


def test_a_scan_batch_reads_its_photos_with_a_few_queries_not_three_a_record(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "photos"
    folder.mkdir()
    f = lib.add_folder(folder)
    lib.upsert_scanned(f.id, [_rec(folder / f"old{i}.jpg", f"h{i}") for i in range(50)])
    selects = _Selects(lib)
    records = [_rec(folder / f"new{i}.jpg", f"n{i}") for i in range(200)]
    records += [_rec(folder / f"old{i}.jpg", f"h{i}") for i in range(50)]  # unchanged ones
    outcome = lib.upsert_scanned(f.id, records)
    assert sorted(outcome.values()).count("added") == 200
    assert sorted(outcome.values()).count("updated") == 50
    assert selects.n <= 6  # by path, by companion, by hash (one IN query of up to 500 each)
    assert lib.photo_count() == 250


def test_moves_pairs_and_duplicates_within_one_batch_match_record_by_record(tmp_path):
    """The batch's lookups follow the changes earlier records of the batch made."""
    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "photos"
    folder.mkdir()
    f = lib.add_folder(folder)
    for name in ("moved_to.jpg", "new_at_old.jpg", "dup_a.jpg", "dup_b.jpg", "IMG_1.CR2", "IMG_1.JPG"):
        (folder / name).write_bytes(b"x")
    lib.upsert_scanned(f.id, [_rec(folder / "gone.jpg", "m"), _rec(folder / "IMG_1.JPG", "j")])
    (first_id, jpeg_id) = lib.query_ids(PhotoQuery(sort="added"))
    lib.set_culling([jpeg_id], rating=4)
    outcome = lib.upsert_scanned(f.id, [
        _rec(folder / "moved_to.jpg", "m"),  # the photo at gone.jpg (no file) moved here
        _rec(folder / "gone.jpg", "m"),  # a new file at the old path, same content: its own photo
        _rec(folder / "dup_a.jpg", "d"),
        _rec(folder / "dup_b.jpg", "d"),  # a second copy: not a move of the first
        _rec(folder / "IMG_1.CR2", "pair", companion_path=str(folder / "IMG_1.JPG"), companion_hash="j"),
    ])
    assert outcome == {str(folder / "moved_to.jpg"): "moved", str(folder / "gone.jpg"): "added",
                       str(folder / "dup_a.jpg"): "added", str(folder / "dup_b.jpg"): "added",
                       str(folder / "IMG_1.CR2"): "updated"}
    rows = {r.name: r for r in lib.rows(lib.query_ids(PhotoQuery(sort="added")))}
    assert rows["moved_to.jpg"].id == first_id
    assert rows["IMG_1.CR2"].id == jpeg_id and rows["IMG_1.CR2"].rating == 4
    assert rows["IMG_1.CR2"].companion_path == str(folder / "IMG_1.JPG")
    assert "IMG_1.JPG" not in rows and len(rows) == 5


def _scored_library(tmp_path, n=7) -> tuple[Library, list[int]]:
    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "photos"
    folder.mkdir()
    f = lib.add_folder(folder)
    lib.upsert_scanned(f.id, [
        _rec(folder / f"p{i}.jpg", f"h{i}", checks={"sharpness": None if i == 2 else i / 10})
        for i in range(n)])
    ids = lib.query_ids(PhotoQuery(sort="name"))
    model = lib.ensure_model("m", 4, 100.0)
    lib.set_setting("active_model", model.key)
    by_name = {a.name: a.id for a in lib.attributes()}
    lib.replace_scores(model.id, by_name["quality"], np.array(ids[:-1]), np.linspace(0, 1, n - 1))
    lib.replace_scores(model.id, by_name["bright"], np.array(ids), np.full(n, 0.25))
    return lib, ids


@pytest.mark.parametrize("chunk", [2, 2000])
def test_sort_values_are_one_query_in_the_given_order_without_missing_values(tmp_path, monkeypatch, chunk):
    lib, ids = _scored_library(tmp_path)
    monkeypatch.setattr(Library, "ROWS_CHUNK", chunk)  # 2: the whole-library pass
    shown = ids[::-1]
    got_ids, values = lib.sort_values("Quality", shown)
    assert got_ids.tolist() == shown[1:]  # the last photo has no quality score
    assert values.tolist() == pytest.approx(np.linspace(0, 1, len(ids) - 1)[::-1].tolist())
    got_ids, values = lib.sort_values("sharpness", shown[:4])
    assert got_ids.tolist() == [i for i in shown[:4] if i != ids[2]]
    assert values.dtype == np.float64
    rows = {r.id: r for r in lib.rows(ids)}
    assert values.tolist() == [rows[i].checks["sharpness"] for i in got_ids]
    assert lib.sort_values("quality", [])[0].size == 0
    # Face checks come from their own table (the histogram when sorting by eye sharpness).
    lib.store_faces([(ids[0], [{"box": [0.1, 0.1, 0.2, 0.2], "eyes": "open", "eye_sharpness": 0.7}]),
                     (ids[1], [])])
    got_ids, values = lib.sort_values("eye_sharpness", shown)
    assert got_ids.tolist() == [ids[0]] and values.tolist() == pytest.approx([0.7])
    assert lib.sort_values("faces", ids[:2])[1].tolist() == [1.0, 0.0]
    with pytest.raises(PhotosenseError, match="unknown attribute or check: nope"):
        lib.sort_values("nope", ids)


@pytest.mark.parametrize("chunk", [1, 3])  # 1: many ids, scores read in one pass (_ScoreTable)
def test_streamed_rows_are_the_rows_in_order_with_scores_by_name(tmp_path, monkeypatch, chunk):
    lib, ids = _scored_library(tmp_path)
    monkeypatch.setattr(Library, "ROWS_CHUNK", chunk)
    order = [ids[4], ids[0], ids[6], ids[2], ids[5], 999_999, ids[1]]
    rows = list(lib.iter_rows(order))
    assert [r.id for r in rows] == [i for i in order if i != 999_999]
    assert list(rows[0].scores) == ["bright", "quality"]  # by name, as before
    assert rows[2].scores == {"bright": 0.25}  # the last photo: no quality score
    assert rows[3].checks["sharpness"] is None and rows[1].checks["sharpness"] == 0.0
    assert rows[0].path == os.fspath(tmp_path / "photos" / "p4.jpg") and not rows[0].missing
    assert [r.id for r in lib.query(PhotoQuery(sort="quality"))] == \
        [r.id for r in lib.iter_query(PhotoQuery(sort="quality"))]


def test_features_stream_in_chunks_and_prompt_scores_never_need_the_whole_matrix(tmp_path, monkeypatch):
    from photosense.pipeline import AttributeScorer
    from photosense.scoring.maths import attribute_scores

    lib, ids = _scored_library(tmp_path)
    model = lib.model("m")
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((len(ids), 4)).astype(np.float32)
    lib.store_features(model.id, 256, [(i, f, {}) for i, f in zip(ids, feats)])
    monkeypatch.setattr(Library, "FEATURE_CHUNK", 3)
    chunks = list(lib.iter_features(model.id))
    assert [len(c[0]) for c in chunks] == [3, 3, 1]
    got_ids, matrix = lib.feature_matrix(model.id)
    assert got_ids.tolist() == sorted(ids) and np.array_equal(matrix, feats[np.argsort(ids)])
    warm = next(a for a in lib.attributes() if a.name == "sharp")
    texts = [t for side in warm.spec.prompt_texts() for t in side]
    lib.store_text_features(model.id, {t: rng.standard_normal(4).astype(np.float32) for t in texts})

    def whole_matrix(*args):
        raise AssertionError("prompt scores read every feature at once")

    monkeypatch.setattr(Library, "feature_matrix", whole_matrix)
    assert AttributeScorer(lib, engine=None, model=model).rescore([warm]) == len(ids)
    tf = lib.text_features(model.id, texts)
    pos, neg = warm.spec.prompt_texts()
    expected = attribute_scores(feats, np.stack([tf[t] for t in pos]), np.stack([tf[t] for t in neg]),
                                model.logit_scale)
    got_ids, values = lib.sort_values("sharp", ids)
    assert got_ids.tolist() == ids and values == pytest.approx(expected.tolist(), rel=1e-6)


def test_streamed_rows_read_through_the_driver_are_what_the_orm_reads(tmp_path):
    """Rows come from plain cursor tuples converted by hand: every field must be what the
    columns' own types give (paths that are not UTF-8, datetimes, booleans, faces JSON)."""
    from datetime import datetime

    from photosense.library.models import FaceCheck, Photo

    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "photos"
    folder.mkdir()
    f = lib.add_folder(folder)
    weird = os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9 \xff.jpg"))
    face = {"box": [0.1, 0.2, 0.3, 0.4], "eyes": "closed", "eye_sharpness": 0.5, "openness": 0.05}
    lib.upsert_scanned(f.id, [
        _rec(weird, "h0", width=6000, height=4000, camera="Canon EOS R5",
             capture_time=datetime(2024, 5, 6, 7, 8, 9, 123456), checks={"sharpness": 0.5},
             faces=[face]),
        _rec(folder / "IMG_2.CR3", "h1", companion_path=str(folder / "IMG_2.JPG"), faces=[]),
        _rec(folder / "broken.jpg", "h2", error="not a JPEG"),
    ])
    ids = lib.query_ids(PhotoQuery(sort="name"))
    lib.set_missing([str(folder / "broken.jpg")], True)
    lib.set_culling(ids[:1], flag=1, rating=4, color_label="red")
    rows = {r.id: r for r in lib.iter_rows(ids)}
    with lib.session(write=False) as s:
        photos = {p.id: p for p in s.query(Photo)}
        faces = {c.photo_id: c.faces for c in s.query(FaceCheck)}
    assert len(rows) == len(photos) == 3
    for pid, p in photos.items():
        r = rows[pid]
        for name in ("path", "folder_id", "size", "mtime", "width", "height", "capture_time",
                     "camera", "missing", "error", "flag", "rating", "color_label",
                     "companion_path"):
            assert getattr(r, name) == getattr(p, name), name
            assert type(getattr(r, name)) is type(getattr(p, name)), name
        assert r.faces == faces.get(pid)
    by_path = {r.path: r for r in rows.values()}
    assert by_path[weird].capture_time == datetime(2024, 5, 6, 7, 8, 9, 123456)
    assert by_path[weird].faces == [face] and by_path[str(folder / "IMG_2.CR3")].faces == []
    assert by_path[str(folder / "broken.jpg")].faces is None
    assert by_path[str(folder / "broken.jpg")].missing is True
    assert by_path[str(folder / "IMG_2.CR3")].companion_path == str(folder / "IMG_2.JPG")


def test_a_scans_known_files_and_pairs_read_through_the_driver_are_the_stored_ones(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "photos"
    folder.mkdir()
    f = lib.add_folder(folder)
    weird = os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9 \xff.CR3"))
    jpeg = os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9 \xff.JPG"))
    lib.upsert_scanned(f.id, [_rec(weird, "h0", companion_path=jpeg),
                              _rec(folder / "b.jpg", "h1", error="not a JPEG")])
    lib.set_missing([str(folder / "b.jpg")], True)
    known = lib.known_files(f.id)
    assert set(known) == {weird, str(folder / "b.jpg")}
    assert known[weird][1:] == (10, 1.0, False, None) and known[weird][3] is False
    assert known[str(folder / "b.jpg")][3:] == (True, "not a JPEG")
    assert lib.companion_paths(f.id) == {weird: jpeg}
