"""Text search over stored features. With the tiny random-weight model the *ranking* is checked
against the cosine computed by hand; semantic quality cannot be tested with random weights."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from photosense.cli import main
from photosense.errors import PhotosenseError
from photosense.ingest.scan import Scanner
from photosense.library import FLAG_PICK, Library, PhotoQuery
from photosense.pipeline import ScoringJob
from photosense.scoring import search as search_module
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
from photosense.scoring.search import feature_cache, rank_by_similarity, search


@pytest.fixture(scope="module")
def engine(tiny_engine):
    return tiny_engine


@pytest.fixture
def scored(tmp_path, photo_folder, tiny_config, engine):
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    ScoringJob(lib, tiny_config, engine=engine).run()
    yield lib
    lib.close()


def by_hand(lib, engine, text, ids=None):
    feat_ids, matrix = lib.feature_matrix(lib.active_model().id)
    t = engine.encode_texts([text])[0].astype(np.float64)
    sims = matrix.astype(np.float64) @ t
    pairs = [(int(i), float(s)) for i, s in zip(feat_ids, sims) if ids is None or int(i) in ids]
    return sorted(pairs, key=lambda p: (-p[1], p[0]))


def test_ranking_is_the_cosine_with_the_text_feature(scored, engine):
    hits = search(scored, engine, "a cat sleeping on a sofa")
    expected = by_hand(scored, engine, "a cat sleeping on a sofa")
    assert [i for i, _ in hits] == [i for i, _ in expected]
    assert np.allclose([s for _, s in hits], [s for _, s in expected], atol=1e-5)
    assert len(hits) == 15 and all(-1 <= s <= 1 for _, s in hits)
    assert search(scored, engine, "a cat sleeping on a sofa", limit=4) == hits[:4]
    assert search(scored, engine, "a cat sleeping on a sofa", limit=0) == []


def test_no_image_is_encoded_and_the_text_is_cached(scored, engine, monkeypatch):
    monkeypatch.setattr(engine, "encode_images", lambda t: pytest.fail("encoded an image"))
    first = search(scored, engine, "red rocket")
    assert "red rocket" in scored.text_features(scored.active_model().id, ["red rocket"])
    monkeypatch.setattr(engine, "encode_texts", lambda t: pytest.fail("encoded the text again"))
    assert search(scored, engine, "red rocket") == first


def test_filters_restrict_the_candidates(scored, engine):
    rows = scored.query(PhotoQuery(sort="name"))
    picked = [r.id for r in rows[::3]]
    scored.set_culling(picked, flag=FLAG_PICK)
    hits = search(scored, engine, "coffee", PhotoQuery(flag="pick", sort="quality", limit=1))
    assert [i for i, _ in hits] == [i for i, _ in by_hand(scored, engine, "coffee", set(picked))]
    # A range on a score and an explicit id list combine with it.
    q = sorted(r.scores["quality"] for r in rows)[7]
    allowed = {r.id for r in rows if r.scores["quality"] >= q}
    hits = search(scored, engine, "coffee", PhotoQuery(ranges={"quality": (q, None)}))
    assert {i for i, _ in hits} == allowed
    few = [rows[0].id, rows[1].id]
    assert {i for i, _ in search(scored, engine, "coffee", PhotoQuery(ids=few))} == set(few)


def test_rank_by_similarity_with_ties_and_limits():
    ids = np.array([5, 3, 9, 1])
    matrix = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    hits = rank_by_similarity(ids, matrix, np.array([1.0, 0.0]))
    assert [i for i, _ in hits] == [5, 9, 1, 3]  # tie between 5 and 9: lower id first
    assert [i for i, _ in rank_by_similarity(ids, matrix, np.array([1.0, 0.0]), limit=2)] == [5, 9]
    assert rank_by_similarity(ids[:0], matrix[:0], np.array([1.0, 0.0])) == []


def test_search_needs_a_scored_library_and_the_same_model(tmp_path, engine, scored):
    empty = Library(tmp_path / "empty.sqlite3")
    with pytest.raises(PhotosenseError, match="nothing scored"):
        search(empty, engine, "dog")
    empty.close()
    with pytest.raises(PhotosenseError, match="give some text"):
        search(scored, engine, "   ")
    other = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=None, device="cpu"))
    with pytest.raises(PhotosenseError, match="scored with"):
        search(scored, other, "dog")


def uncached_search(lib, engine, text, query=None, limit=None):
    """What ``search`` computed before the cache: every feature or the candidates' rows read
    from SQLite for this one query."""
    import dataclasses

    model = lib.active_model()
    vector = search_module.text_feature(lib, engine, model.id, text)
    if query is None:
        ids, matrix = lib.feature_matrix(model.id)
    else:
        wanted = lib.query_ids(dataclasses.replace(query, sort="added", descending=None,
                                                   limit=None, model=model.key))
        ids, matrix = lib.features_for(model.id, wanted)
    return rank_by_similarity(ids, matrix, vector, limit)


@pytest.fixture
def counted_reads(monkeypatch):
    """Calls of Library.feature_matrix / features_for, from an empty feature cache."""
    feature_cache.clear()
    calls = []
    for name in ("feature_matrix", "features_for"):
        original = getattr(Library, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(Library, name, counting)
    yield calls
    feature_cache.clear()


def test_cached_results_are_identical_to_the_uncached_computation(scored, engine, counted_reads,
                                                                 monkeypatch):
    rows = scored.query(PhotoQuery(sort="name"))
    scored.set_culling([r.id for r in rows[::2]], flag=FLAG_PICK)
    cases = [("a dog", None, None), ("a dog", None, 3), ("coffee", PhotoQuery(flag="pick"), None),
             ("coffee", PhotoQuery(ids=[rows[0].id, rows[5].id, 10**9]), None),
             ("coffee", PhotoQuery(ids=[]), None), ("a dog", PhotoQuery(flag="pick"), 2)]
    expected = [uncached_search(scored, engine, *case) for case in cases]
    # Through the cache: once filled by an unfiltered search, and with every filtered search
    # sliced from the whole matrix (as at 100k photos).
    monkeypatch.setattr(search_module, "SMALL_CANDIDATE_SET", 0)
    for _ in range(2):
        assert [search(scored, engine, *case) for case in cases] == expected
    monkeypatch.setattr(search_module, "SMALL_CANDIDATE_SET", 10**6)
    feature_cache.clear()
    assert [search(scored, engine, *case) for case in cases[2:]] == expected[2:]


def test_a_one_off_search_streams_the_features_and_ranks_the_same(scored, engine, counted_reads,
                                                                  monkeypatch):
    """The command line's search reads the features chunk by chunk (never the whole matrix,
    nor the process cache) and gives exactly the cached search's result."""
    rows = scored.query(PhotoQuery(sort="name"))
    scored.set_culling([r.id for r in rows[::3]], flag=FLAG_PICK)
    cases = [("a dog", None, None), ("a dog", None, 4), ("coffee", PhotoQuery(flag="pick"), None),
             ("coffee", PhotoQuery(ids=[rows[1].id, 10**9]), None), ("coffee", PhotoQuery(ids=[]), None),
             ("a dog", PhotoQuery(flag="pick"), 2), ("a dog", None, 0)]
    expected = [uncached_search(scored, engine, *case) for case in cases]
    monkeypatch.setattr(Library, "FEATURE_CHUNK", 4)  # several chunks of the 15 photos
    before = list(counted_reads)  # uncached_search's own reads
    got = [search(scored, engine, *case, keep_in_memory=False) for case in cases]
    assert counted_reads == before
    assert feature_cache.get(scored, scored.active_model().id) is None
    for mine, theirs in zip(got, expected):
        assert [i for i, _ in mine] == [i for i, _ in theirs]
        assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], abs=1e-6)


def test_a_second_search_does_not_read_the_features_again(scored, engine, counted_reads):
    first = search(scored, engine, "a red rocket")
    assert counted_reads == ["feature_matrix"]
    assert search(scored, engine, "a red rocket") == first
    search(scored, engine, "coffee", PhotoQuery(flag="none"))
    search(scored, engine, "coffee", PhotoQuery(ids=[1, 2]))
    assert counted_reads == ["feature_matrix"]


def test_a_small_filtered_search_reads_only_its_rows_until_the_cache_is_filled(scored, engine,
                                                                                counted_reads):
    search(scored, engine, "coffee", PhotoQuery(ids=[1, 2]))
    assert counted_reads == ["features_for"]
    assert feature_cache.get(scored, scored.active_model().id) is None


def test_stored_features_invalidate_the_cache(scored, engine, counted_reads, tmp_path):
    model = scored.active_model()
    before = search(scored, engine, "coffee")
    ids, matrix = scored.feature_matrix(model.id)
    counted_reads.clear()
    # An in-place update (same rows, same count): only the write counter can see it.
    scored.store_features(model.id, 256, [(int(ids[0]), -matrix[0], {})])
    after = search(scored, engine, "coffee")
    assert counted_reads == ["feature_matrix"]
    assert after == uncached_search(scored, engine, "coffee") != before
    counted_reads.clear()
    # Another Library object (another process, say) adding a feature: the stamp sees it.
    new_id = _add_photo(tmp_path, scored)
    with Library(scored.path) as other:
        other.store_features(model.id, 256, [(new_id, matrix[1], {})])
    hits = search(scored, engine, "coffee")
    assert new_id in {i for i, _ in hits} and len(hits) == len(after) + 1
    assert counted_reads == ["feature_matrix"]
    # And deleting that photo (its feature goes by cascade; the largest rowid is reused by the
    # next insert, so count and max(rowid) alone could come back to an old stamp).
    with scored.session() as s:
        s.connection().exec_driver_sql("DELETE FROM photos WHERE id = ?", (new_id,))
    assert search(scored, engine, "coffee") == after


def _add_photo(tmp_path, lib):
    from sqlalchemy import insert

    from photosense.library.models import Photo

    with lib.session() as s:
        folder_id = s.connection().exec_driver_sql("SELECT min(id) FROM folders").scalar()
        return s.execute(insert(Photo).values(folder_id=folder_id, path=str(tmp_path / "new.jpg"),
                                              size=1, mtime=0.0, content_hash="new")
                         .returning(Photo.id)).scalar_one()


def test_concurrent_searches_share_one_load(scored, engine, counted_reads):
    from concurrent.futures import ThreadPoolExecutor

    expected = uncached_search(scored, engine, "coffee")
    search(scored, engine, "coffee")  # the text feature, cached before the threads race
    feature_cache.clear()
    counted_reads.clear()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: search(scored, engine, "coffee"), range(8)))
    assert all(r == expected for r in results)
    assert counted_reads == ["feature_matrix"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_command(capsys, tmp_path, photo_folder, tiny_weights):
    lib_path = str(tmp_path / "cli.sqlite3")
    weights = tmp_path / "weights.safetensors"
    shutil.copy(tiny_weights, weights)
    code, _, err = run_cli(capsys, "search", "dog", "--library", lib_path)
    assert code == 1 and "nothing scored" in err
    run_cli(capsys, "add", str(photo_folder), "--library", lib_path)
    assert run_cli(capsys, "score", "--model", "photosense-tiny", "--weights", str(weights), "--device",
                   "cpu", "--max-side", "256", "--library", lib_path)[0] == 0
    code, out, err = run_cli(capsys, "search", "dog on the beach", "--format", "json", "--limit", "5",
                             "--library", lib_path)
    assert code == 0 and "5 photos" in err
    hits = json.loads(out)
    sims = [h["similarity"] for h in hits]
    assert len(hits) == 5 and sims == sorted(sims, reverse=True)
    with Library(lib_path) as lib:
        engine = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(weights), device="cpu"))
        expected = by_hand(lib, engine, "dog on the beach")[:5]
        paths = {r.id: r.path for r in lib.query(PhotoQuery())}
        assert [h["path"] for h in hits] == [paths[i] for i, _ in expected]
        lib.set_culling([expected[-1][0]], flag=FLAG_PICK)
    code, out, _ = run_cli(capsys, "search", "dog on the beach", "--flag", "pick", "--library", lib_path)
    assert code == 0 and out.splitlines()[1].startswith("P") and len(out.splitlines()) == 2
    assert os.path.basename(paths[expected[-1][0]]) in out
    # The remembered weights are gone: one line, no traceback.
    weights.unlink()
    code, _, err = run_cli(capsys, "search", "dog", "--library", lib_path)
    assert code == 1 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("photosense:")]) == 1
