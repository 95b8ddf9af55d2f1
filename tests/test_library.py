"""The library: schema versions, migrations, attributes, culling state, queries."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from photosense.errors import LibraryError, PhotosenseError
from photosense.library import (
    FLAG_PICK,
    FLAG_REJECT,
    Library,
    PhotoQuery,
    ScanRecord,
)
from photosense.library import db as dbmod
from photosense.scoring.prompts import AntonymPair, AttributeSpec

FIXTURES = Path(__file__).parent / "fixtures" / "libraries"


def _lib_with_photos(tmp_path, n=5) -> tuple[Library, list[int]]:
    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    f = lib.add_folder(folder)
    recs = [
        ScanRecord(path=str(folder / f"img{i}.jpg"), size=100 + i, mtime=1000.0 + i,
                   content_hash=f"h{i}", checks={"sharpness": i / 10, "exposure": 0.1 * (i - 2),
                                                "noise": 5.0 - i})
        for i in range(n)
    ]
    lib.upsert_scanned(f.id, recs)
    ids = lib.query_ids(PhotoQuery(sort="name"))
    return lib, ids


def test_new_library_is_versioned_with_wal_and_foreign_keys(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    with lib.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA user_version").scalar() == dbmod.SCHEMA_VERSION
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert [a.name for a in lib.attributes()][:3] == ["quality", "bright", "sharp"]
    assert len(lib.attributes()) == 12


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "lib.sqlite3"
    Library(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {dbmod.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(LibraryError, match="newer photosense"):
        Library(path)


def test_not_a_library_is_refused(tmp_path):
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LibraryError, match="not a photosense library"):
        Library(junk)
    other = tmp_path / "other.sqlite3"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE x (a)")
    con.commit()
    con.close()
    with pytest.raises(LibraryError, match="not a photosense library"):
        Library(other)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_saved_libraries_open_with_flags_intact(tmp_path, version):
    """Checked-in databases of every past schema version must open with the user's work."""
    copy = tmp_path / f"v{version}.sqlite3"
    shutil.copy(FIXTURES / f"v{version}.sqlite3", copy)
    lib = Library(copy)
    with lib.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA user_version").scalar() == dbmod.SCHEMA_VERSION
    assert all(a.kind == "prompts" for a in lib.attributes())
    rows = lib.query(PhotoQuery(sort="name"))
    assert [(r.name, r.flag_name, r.rating, r.color_label) for r in rows] == [
        ("a.jpg", "pick", 5, "red"), ("b.jpg", "reject", 0, None), ("c.jpg", "none", 3, "green")]
    # Schema 4: what a folder's scan skipped (nothing known before it).
    (folder,) = lib.folders()
    assert folder.skipped == ({".mov": 2, ".psd": 1} if version >= 4 else {})
    lib.set_skipped_files(folder.id, {".heic": 1})
    assert lib.skipped_files(folder.id) == {".heic": 1}


def test_migration_runs_in_one_transaction_and_keeps_flags(tmp_path, monkeypatch):
    lib, ids = _lib_with_photos(tmp_path)
    lib.set_culling(ids[:2], flag=FLAG_PICK, rating=4)
    lib.close()
    path = tmp_path / "lib.sqlite3"

    def step(conn):
        conn.exec_driver_sql("ALTER TABLE photos ADD COLUMN extra INTEGER DEFAULT 7")

    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", dbmod.SCHEMA_VERSION + 1)
    monkeypatch.setitem(dbmod.MIGRATIONS, dbmod.SCHEMA_VERSION - 1, step)
    lib = Library(path)
    with lib.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA user_version").scalar() == dbmod.SCHEMA_VERSION
        assert conn.exec_driver_sql("SELECT count(*) FROM photos WHERE extra = 7").scalar() == 5
    assert [r.flag for r in lib.rows(ids)][:2] == [FLAG_PICK, FLAG_PICK]
    lib.close()


def test_failed_migration_leaves_database_untouched(tmp_path, monkeypatch):
    lib, ids = _lib_with_photos(tmp_path)
    lib.set_culling(ids[:1], flag=FLAG_REJECT)
    lib.close()
    path = tmp_path / "lib.sqlite3"
    old_version = dbmod.SCHEMA_VERSION

    def bad_step(conn):
        conn.exec_driver_sql("ALTER TABLE photos ADD COLUMN extra INTEGER")
        conn.exec_driver_sql("UPDATE photos SET flag = 0")
        raise RuntimeError("boom")

    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", old_version + 1)
    monkeypatch.setitem(dbmod.MIGRATIONS, old_version, bad_step)
    with pytest.raises(RuntimeError):
        Library(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == old_version
    cols = [r[1] for r in con.execute("PRAGMA table_info(photos)")]
    assert "extra" not in cols
    assert con.execute("SELECT flag FROM photos WHERE id = ?", (ids[0],)).fetchone()[0] == FLAG_REJECT
    con.close()


def test_locked_library_is_a_clear_error(tmp_path, monkeypatch):
    lib, ids = _lib_with_photos(tmp_path)
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.2)
    other = Library(tmp_path / "lib.sqlite3")
    con = sqlite3.connect(tmp_path / "lib.sqlite3", timeout=0.1)
    con.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LibraryError, match="locked"):
            other.set_culling(ids, flag=FLAG_PICK)
    finally:
        con.rollback()
        con.close()
    assert lib.rows(ids[:1])[0].flag == 0


def test_library_path_that_is_a_folder(tmp_path):
    with pytest.raises(LibraryError, match="folder"):
        Library(tmp_path)


def test_attributes_add_edit_remove(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    spec = AttributeSpec("warm", (AntonymPair("Warm", "Cold"),))
    info = lib.add_attribute(spec)
    assert info.spec.prompt_texts() == (["Warm photo."], ["Cold photo."])
    with pytest.raises(PhotosenseError, match="already exists"):
        lib.add_attribute(spec)
    with pytest.raises(PhotosenseError, match="check"):
        lib.add_attribute(AttributeSpec("noise", (AntonymPair("a", "b"),)))
    edited = lib.update_attribute("warm", AttributeSpec(
        "warmth", (AntonymPair("Warm", "Cold"), AntonymPair("A warm sunny photo.", "A cold grey photo."))))
    assert edited.id == info.id and len(edited.spec.pairs) == 2
    lib.remove_attribute("quality")  # built-ins are removable too
    names = [a.name for a in lib.attributes()]
    assert "quality" not in names and "warmth" in names and "warm" not in names
    with pytest.raises(PhotosenseError, match="unknown attribute"):
        lib.remove_attribute("nope")
    lib.close()
    # Removed built-ins stay removed after reopening.
    assert "quality" not in [a.name for a in Library(tmp_path / "lib.sqlite3").attributes()]


def test_culling_states_and_undo_restore(tmp_path):
    lib, ids = _lib_with_photos(tmp_path)
    before = lib.set_culling(ids[:3], flag=FLAG_PICK, rating=5, color_label="red")
    assert all(s.flag == 0 and s.rating == 0 and s.color_label is None for s in before)
    rows = lib.rows(ids[:3])
    assert all(r.flag_name == "pick" and r.rating == 5 and r.color_label == "red" for r in rows)
    lib.set_culling(ids[:1], color_label=None)
    assert lib.rows(ids[:1])[0].color_label is None and lib.rows(ids[:1])[0].rating == 5
    lib.set_states(before)
    assert all(r.flag == 0 and r.rating == 0 for r in lib.rows(ids))
    with pytest.raises(PhotosenseError):
        lib.set_culling(ids, rating=6)
    with pytest.raises(PhotosenseError):
        lib.set_culling(ids, color_label="pink")


def _add_scores(lib, ids, values: dict[str, list[float]]):
    model = lib.ensure_model("test-model", 4, 100.0)
    lib.set_setting("active_model", model.key)
    by_name = {a.name: a.id for a in lib.attributes()}
    for name, vals in values.items():
        lib.replace_scores(model.id, by_name[name], np.array(ids), np.array(vals))
    return model


def test_query_sort_filter_and_ranges(tmp_path):
    lib, ids = _lib_with_photos(tmp_path)
    _add_scores(lib, ids[:4], {"quality": [0.2, 0.9, 0.5, 0.7]})
    # Scores: best first by default; unscored photos last in both directions.
    assert lib.query_ids(PhotoQuery(sort="quality")) == [ids[1], ids[3], ids[2], ids[0], ids[4]]
    assert lib.query_ids(PhotoQuery(sort="quality", descending=False)) == [ids[0], ids[2], ids[3], ids[1], ids[4]]
    # Checks: sharpness best first; noise least noisy first.
    assert lib.query_ids(PhotoQuery(sort="sharpness")) == ids[::-1]
    assert lib.query_ids(PhotoQuery(sort="noise")) == ids[::-1]
    assert lib.query_ids(PhotoQuery(sort="quality", ranges={"quality": (0.5, None)})) == [ids[1], ids[3], ids[2]]
    assert lib.query_ids(PhotoQuery(ranges={"exposure": (-0.05, 0.15), "quality": (None, 0.6)})) == [ids[2]]
    lib.set_culling([ids[0], ids[3]], flag=FLAG_PICK)
    lib.set_culling([ids[1]], flag=FLAG_REJECT, rating=2)
    assert lib.query_ids(PhotoQuery(flag="pick")) == [ids[0], ids[3]]
    assert lib.query_ids(PhotoQuery(flag="none")) == [ids[2], ids[4]]
    assert lib.query_ids(PhotoQuery(flag="flagged")) == [ids[0], ids[1], ids[3]]
    assert lib.query_ids(PhotoQuery(min_rating=1)) == [ids[1]]
    assert lib.query_ids(PhotoQuery(sort="quality", limit=2)) == [ids[1], ids[3]]
    rows = lib.query(PhotoQuery(sort="quality", limit=1))
    assert rows[0].scores == {"quality": pytest.approx(0.9)}
    with pytest.raises(PhotosenseError, match="unknown attribute"):
        lib.query_ids(PhotoQuery(sort="nope"))


def test_feature_store_roundtrip_and_atomic_batches(tmp_path):
    lib, ids = _lib_with_photos(tmp_path)
    model = lib.ensure_model("m", 4, 100.0)
    attr = lib.attributes()[0]
    vecs = np.eye(4, dtype=np.float32)
    n = lib.store_features(model.id, 512, [(pid, vecs[i], {attr.id: 0.5}) for i, pid in enumerate(ids[:4])])
    assert n == 4
    got_ids, mat = lib.feature_matrix(model.id)
    assert list(got_ids) == ids[:4]
    np.testing.assert_array_equal(mat, vecs)
    assert [p for p, _ in lib.photos_needing_features(model.id)] == [ids[4]]
    # A failure after the features were inserted (the disk fills while the scores are written)
    # rolls the whole batch back: no photo has a feature without its scores.
    import sqlite3

    from sqlalchemy import event

    statements = []

    def fail_on_scores(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.split("(")[0].strip())
        if statement.startswith("INSERT INTO scores"):
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(lib.engine, "before_cursor_execute", fail_on_scores)
    try:
        with pytest.raises(Exception, match="full"):
            lib.store_features(model.id, 512, [(ids[4], vecs[0], {attr.id: 0.1})])
    finally:
        event.remove(lib.engine, "before_cursor_execute", fail_on_scores)
    assert "INSERT INTO features" in statements  # the feature row was written, then undone
    assert [p for p, _ in lib.photos_needing_features(model.id)] == [ids[4]]
    assert ids[4] not in list(lib.feature_matrix(model.id)[0])


def test_scores_of_attributes_and_photos_removed_meanwhile_are_skipped(tmp_path):
    # The GUI may remove an attribute or a folder while a scoring run holds scores for them:
    # the run's writes skip those instead of failing on the foreign key.
    lib, ids = _lib_with_photos(tmp_path)
    model = lib.ensure_model("m", 4, 100.0)
    keep, gone = lib.attributes()[:2]
    lib.remove_attribute(gone.name)
    vecs = np.eye(4, dtype=np.float32)
    n = lib.store_features(model.id, 512, [(ids[0], vecs[0], {keep.id: 0.5, gone.id: 0.7})])
    assert n == 1
    assert lib.rows([ids[0]], "m")[0].scores == {keep.name: pytest.approx(0.5)}
    lib.remove_folder(lib.folders()[0].id)
    lib.replace_scores(model.id, keep.id, np.array(ids[:2]), np.array([0.1, 0.2]))
    lib.replace_scores(model.id, gone.id, np.array(ids[:2]), np.array([0.1, 0.2]))
    assert lib.photo_count() == 0


def test_non_utf8_paths_roundtrip(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    folder = tmp_path / "p"
    folder.mkdir()
    f = lib.add_folder(folder)
    import os

    weird = os.path.join(str(folder), os.fsdecode(b"caf\xe9.jpg"))
    lib.upsert_scanned(f.id, [ScanRecord(path=weird, size=1, mtime=1.0, content_hash="x")])
    assert lib.rows(lib.query_ids(PhotoQuery()))[0].path == weird


def test_nested_folders_merge(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    (tmp_path / "a" / "b").mkdir(parents=True)
    inner = lib.add_folder(tmp_path / "a" / "b")
    outer = lib.add_folder(tmp_path / "a")
    assert [f.id for f in lib.folders()] == [outer.id]
    again = lib.add_folder(tmp_path / "a" / "b")
    assert again.id == outer.id and inner.id != outer.id
    with pytest.raises(PhotosenseError, match="not found"):
        lib.add_folder(tmp_path / "nope")


def test_paths_under_is_a_prefix_range_not_a_substring(tmp_path):
    lib = Library(tmp_path / "lib.sqlite3")
    root = tmp_path / "p"
    root.mkdir()
    f = lib.add_folder(root)
    import os

    names = ["a/x.jpg", "a/b/y.jpg", "a0/z.jpg", "a.jpg", "ab/w.jpg", os.fsdecode(b"a/caf\xe9.jpg")]
    lib.upsert_scanned(f.id, [ScanRecord(path=os.path.join(str(root), n), size=1, mtime=1.0,
                                         content_hash=str(i)) for i, n in enumerate(names)])
    got = sorted(os.path.relpath(p, root) for p in lib.paths_under(str(root / "a")))
    assert got == sorted(["a/x.jpg", "a/b/y.jpg", os.fsdecode(b"a/caf\xe9.jpg")])
    assert lib.paths_under(str(root / "a") + "/") == lib.paths_under(str(root / "a"))
