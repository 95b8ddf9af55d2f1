"""The scoring worker: features once per model, scores from stored features, resume, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from photosense.errors import WeightsUnavailable
from photosense.ingest.decode import open_image
from photosense.ingest.scan import Scanner
from photosense.library import Library, PhotoQuery
from photosense.pipeline import ScoringJob, load_engine_config, rescore_attributes
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
from photosense.scoring.prompts import AntonymPair, AttributeSpec
from tests.fixtures.library import scanned_shoot


@pytest.fixture
def scanned(tmp_path, photo_folder):
    lib = Library(tmp_path / "lib.sqlite3")
    lib.add_folder(photo_folder)
    Scanner(lib).scan_all()
    yield lib
    lib.close()


@pytest.fixture(scope="module")
def shared_engine(tiny_engine):
    return tiny_engine


def test_scores_match_an_independent_computation(scanned, tiny_config, shared_engine):
    progress = []
    report = ScoringJob(scanned, tiny_config, engine=shared_engine).run(progress.append)
    assert report.encoded == 15 and report.failed == 0
    encoding = [p for p in progress if p.stage == "encoding"]
    assert encoding[-1].done == encoding[-1].total == 15 and encoding[-1].rate > 0
    assert [p.done for p in encoding] == sorted(p.done for p in encoding)

    rows = scanned.query(PhotoQuery(sort="quality"))
    assert len(rows) == 15 and all(len(r.scores) == 12 for r in rows)
    values = [r.scores["quality"] for r in rows]
    assert values == sorted(values, reverse=True) and len(set(values)) > 1

    # Recompute one photo from scratch: decode, encode, text features, softmax by hand.
    row = rows[3]
    img = open_image(row.path, max_side=tiny_config.max_side)
    x = shared_engine.encode_images([shared_engine.preprocess(img)])[0].astype(np.float64)
    t = shared_engine.encode_texts(["Good photo.", "Bad photo."]).astype(np.float64)
    lam = shared_engine.logit_scale
    logits = lam * (t @ x)
    expected = np.exp(logits[0]) / np.exp(logits).sum()
    assert row.scores["quality"] == pytest.approx(expected, abs=1e-4)


def test_each_photo_is_encoded_once_per_model(scanned, tiny_config, shared_engine, monkeypatch):
    job = ScoringJob(scanned, tiny_config, engine=shared_engine)
    job.run()
    calls = []
    monkeypatch.setattr(shared_engine, "encode_images", lambda t: calls.append(len(t)))
    report = ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    assert report.encoded == 0 and calls == []


def test_new_attribute_is_scored_from_stored_features_without_decoding(scanned, tiny_config, shared_engine,
                                                                       monkeypatch):
    ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    import photosense.pipeline as pipeline_mod

    monkeypatch.setattr(pipeline_mod, "open_image", lambda *a, **k: pytest.fail("decoded an image"))
    monkeypatch.setattr(shared_engine, "encode_images", lambda t: pytest.fail("encoded an image"))
    attr = scanned.add_attribute(AttributeSpec("warm", (AntonymPair("Warm", "Cold"),)))
    n = rescore_attributes(scanned, [attr], shared_engine)
    assert n == 15
    rows = scanned.query(PhotoQuery(sort="warm"))
    assert all("warm" in r.scores for r in rows)
    # The scores equal the direct matrix computation.
    ids, mat = scanned.feature_matrix(scanned.active_model().id)
    t = shared_engine.encode_texts(["Warm photo.", "Cold photo."])
    lam = shared_engine.logit_scale
    direct = 1 / (1 + np.exp(-lam * (mat @ (t[0] - t[1]))))
    got = {r.id: r.scores["warm"] for r in rows}
    np.testing.assert_allclose([got[i] for i in ids], direct, atol=1e-5)


def test_edited_attribute_is_rescored_by_the_next_run(scanned, tiny_config, shared_engine):
    ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    before = {r.id: r.scores["happy"] for r in scanned.query(PhotoQuery())}
    scanned.update_attribute("happy", AttributeSpec("happy", (AntonymPair("Joyful", "Gloomy"),)))
    assert all("happy" not in r.scores for r in scanned.query(PhotoQuery()))
    report = ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    assert report.encoded == 0 and report.rescored_attributes == 1
    after = {r.id: r.scores["happy"] for r in scanned.query(PhotoQuery())}
    assert after.keys() == before.keys() and after != before


def test_cancel_and_resume_after_a_kill(scanned, tiny_config, shared_engine):
    cancel = threading.Event()
    cfg = EngineConfig(**{**tiny_config.__dict__, "batch_size": 4})
    seen = []

    def on_progress(p):
        seen.append(p.done)
        if p.stage == "encoding" and p.done >= 4:
            cancel.set()

    report = ScoringJob(scanned, cfg, engine=shared_engine).run(on_progress, cancel)
    assert report.cancelled and 4 <= report.encoded < 15
    model = scanned.active_model()
    # Every photo is either fully scored (feature + all 12 scores) or not at all.
    for row in scanned.query(PhotoQuery()):
        assert len(row.scores) in (0, 12)
    assert len(scanned.photos_needing_features(model.id)) == 15 - report.encoded

    # A "kill" in the middle of storing a batch (the real store_features: its feature rows
    # already inserted, the scores being written) leaves nothing half-written.
    from sqlalchemy import event

    statements = []

    def kill_while_storing_scores(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)
        if statement.startswith("INSERT INTO scores"):
            raise KeyboardInterrupt

    event.listen(scanned.engine, "before_cursor_execute", kill_while_storing_scores)
    try:
        with pytest.raises(KeyboardInterrupt):
            ScoringJob(scanned, cfg, engine=shared_engine).run()
    finally:
        event.remove(scanned.engine, "before_cursor_execute", kill_while_storing_scores)
    assert any(st.startswith("INSERT INTO features") for st in statements)
    assert len(scanned.photos_needing_features(model.id)) == 15 - report.encoded
    assert len(scanned.feature_matrix(model.id)[0]) == report.encoded

    resumed = ScoringJob(scanned, cfg, engine=shared_engine).run()
    assert resumed.encoded == 15 - report.encoded
    assert all(len(r.scores) == 12 for r in scanned.query(PhotoQuery()))


def test_unreadable_at_scoring_time_is_recorded_and_the_rest_continue(scanned, tiny_config, shared_engine):
    victim = scanned.query(PhotoQuery(sort="name"))[0]
    with open(victim.path, "r+b") as f:  # test fixture file, not a user's photo
        f.truncate(100)
    report = ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    assert report.failed == 1 and report.encoded == 14
    row = scanned.rows([victim.id])[0]
    assert row.error and "\n" not in row.error and row.scores == {}


def test_engine_config_is_remembered(scanned, tiny_config, shared_engine):
    ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    cfg = load_engine_config(scanned)
    assert (cfg.model, cfg.weights, cfg.max_side) == (tiny_config.model, tiny_config.weights, 256)
    assert load_engine_config(scanned, max_side=512).max_side == 512


def test_missing_weights_leave_photos_queued(scanned, tmp_path):
    cfg = EngineConfig(weights=str(tmp_path / "nope.safetensors"), device="cpu")
    with pytest.raises(WeightsUnavailable):
        ScoringJob(scanned, cfg).run()
    assert all(r.error is None for r in scanned.query(PhotoQuery()))
    assert scanned.active_model() is None


def test_nothing_to_do_does_not_load_the_model(scanned, tiny_config, shared_engine):
    ScoringJob(scanned, tiny_config, engine=shared_engine).run()
    fresh = ClipIQAEngine(tiny_config)
    report = ScoringJob(scanned, tiny_config, engine=fresh).run()
    assert report.encoded == 0 and not fresh.loaded
    # A new attribute is work again: then the model loads and scores it.
    scanned.add_attribute(AttributeSpec("calm", (AntonymPair("Calm", "Busy"),)))
    report = ScoringJob(scanned, tiny_config, engine=fresh).run()
    assert fresh.loaded and report.rescored_attributes == 1


def test_first_scoring_encodes_every_builtin_prompt_in_one_call(tmp_path, real_photos, tiny_config):
    lib = scanned_shoot(tmp_path, real_photos, 1)
    engine = ClipIQAEngine(tiny_config)
    calls = []
    real = engine.encode_texts
    engine.encode_texts = lambda prompts: calls.append(list(prompts)) or real(prompts)
    ScoringJob(lib, tiny_config, engine=engine).run()
    assert len(calls) == 1 and len(calls[0]) == 2 * len(lib.attributes())


def test_text_work_builds_only_the_text_tower(rn50_weights):
    """attr add, search and taste refits need the text tower only: no image tower is built or
    read, and the text features are those of the whole model."""
    from photosense.scoring.clipiqa import DEFAULT_MODEL

    config = EngineConfig(model=DEFAULT_MODEL, weights=str(rn50_weights), device="cpu")
    text_only = ClipIQAEngine(config).load_text()
    assert text_only.text_model.visual is None and not text_only.loaded
    full = ClipIQAEngine(config).load()
    prompts = ["Good photo.", "Bad photo."]
    assert np.allclose(text_only.encode_texts(prompts), full.encode_texts(prompts), atol=1e-6)
    assert text_only.logit_scale == pytest.approx(full.logit_scale)
    # Image work later builds the rest.
    image = torch.rand(3, 64, 80)
    assert np.allclose(text_only.encode_images([image]), full.encode_images([image]), atol=1e-5)
    assert text_only.loaded


# -- features know their resolution; the preview pass ----------------------------------------

def test_changing_max_side_reencodes_and_views_never_mix_sizes(tmp_path, real_photos, tiny_config):
    import dataclasses

    lib = scanned_shoot(tmp_path, real_photos, 5)
    small = dataclasses.replace(tiny_config, max_side=64)
    assert ScoringJob(lib, small).run().encoded == 5
    first = lib.active_model()
    assert first.max_side == 64 and first.key.endswith("@64px/fp32")
    large = dataclasses.replace(small, max_side=96)
    # A run cancelled after two photos: the view keeps the complete 64 px set.
    cancel = threading.Event()

    def stop_after_two(p):
        if p.stage == "encoding" and p.done >= 2:
            cancel.set()

    job = ScoringJob(lib, dataclasses.replace(large, batch_size=1))
    report = job.run(stop_after_two, cancel)
    assert report.cancelled and 0 < report.encoded < 5
    assert lib.active_model().key == first.key
    rows = lib.query(PhotoQuery(sort="quality"))
    assert all(r.scores for r in rows)  # every photo has a score of one size
    # Finishing the new size encodes the rest (not "already scored") and switches the view.
    already = _encoded_at(lib, large)
    assert already == report.encoded
    report = ScoringJob(lib, large).run()
    assert report.encoded == 5 - already
    assert lib.active_model().max_side == 96
    assert {m.max_side for m in lib.models()} == {64, 96}


def _encoded_at(lib, config):
    model = lib.model(ClipIQAEngine(config).feature_key())
    return 0 if model is None else lib.feature_count(model.id)


def test_a_new_shoot_is_previewed_then_refined(tmp_path, real_photos, tiny_config, monkeypatch):
    import dataclasses

    import photosense.pipeline as pipeline

    monkeypatch.setattr(pipeline, "PREVIEW_MIN_PHOTOS", 4)
    lib = scanned_shoot(tmp_path, real_photos, 6)
    config = dataclasses.replace(tiny_config, max_side=128, preview_side=64)
    passes: list[tuple[int, str]] = []

    def seen(p):
        if p.stage == "encoding" and p.done == 0:
            active = lib.active_model()
            passes.append((p.max_side, active.key if active else None))

    notes = []
    report = ScoringJob(lib, config).run(lambda p: (seen(p), notes.append(p.text())))
    assert report.previewed == 6 and report.encoded == 6
    assert [side for side, _ in passes] == [64, 128]
    assert "6 of 6 scored (64 px preview)" in " | ".join(notes)  # what the status bar reads
    # While the full pass started, the view showed the complete preview.
    assert passes[1][1].endswith("@64px/fp32")
    assert lib.active_model().key.endswith("@128px/fp32")
    # A small run (fewer photos than the threshold) has no preview pass.
    assert ScoringJob(lib, dataclasses.replace(config, max_side=96)).preview_side(3) == 0
    assert ScoringJob(lib, dataclasses.replace(config, preview_side=0)).preview_side(100) == 0


def test_schema_5_gives_each_size_its_own_feature_set(tmp_path):
    import json
    import shutil
    import sqlite3
    from pathlib import Path

    path = tmp_path / "v4.sqlite3"
    shutil.copy(Path(__file__).parent / "fixtures" / "libraries" / "v4.sqlite3", path)
    db = sqlite3.connect(path)
    ids = [r[0] for r in db.execute("SELECT id FROM photos ORDER BY id")]
    db.execute("INSERT INTO models (id, key, dim, logit_scale) VALUES (7, 'RN50-quickgelu/openai', 4, 100.0)")
    vec = np.ones(4, dtype=np.float32).tobytes()
    for pid, side in zip(ids, (1024, 1024, 256)):
        db.execute("INSERT INTO features VALUES (?, 7, ?, ?)", (pid, vec, side))
        db.execute("INSERT INTO scores VALUES (?, 1, 7, 0.5)", (pid,))
    db.execute("INSERT INTO text_features VALUES (7, 'Good photo.', ?)", (vec,))
    db.execute("INSERT OR REPLACE INTO settings VALUES ('active_model', ?)", (json.dumps("RN50-quickgelu/openai"),))
    db.commit()
    db.close()
    lib = Library(path)
    keys = {m.key: m for m in lib.models()}
    assert set(keys) == {"RN50-quickgelu/openai@1024px/fp32", "RN50-quickgelu/openai@256px/fp32"}
    assert lib.active_model().key == "RN50-quickgelu/openai@1024px/fp32"
    assert lib.feature_count(keys["RN50-quickgelu/openai@1024px/fp32"].id) == 2
    small = keys["RN50-quickgelu/openai@256px/fp32"]
    assert lib.feature_count(small.id) == 1
    assert lib.text_features(small.id, ["Good photo."])
    with lib.session(write=False) as s:
        n = s.connection().exec_driver_sql(
            "SELECT count(*) FROM scores WHERE model_id = ?", (small.id,)).scalar()
        index = s.connection().exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE name = 'ix_photos_companion_path'").scalar()
    assert n == 1 and index
