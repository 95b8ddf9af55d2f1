"""``my taste``: logistic regression on the photographer's picks/rejects over stored features."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from photosense.cli import main
from photosense.errors import PhotosenseError
from photosense.library import FLAG_NONE, FLAG_PICK, FLAG_REJECT, PhotoQuery
from photosense.pipeline import AttributeScorer
from photosense.scoring import taste
from photosense.scoring.prompts import AntonymPair, AttributeSpec
from tests.test_groups import Shot, synthetic_library

DIM = 32


def ranks(x):
    return np.argsort(np.argsort(x))


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1])


@pytest.fixture
def direction():
    rng = np.random.default_rng(3)
    u = rng.normal(size=DIM)
    return u / np.linalg.norm(u)


def shots_along(direction, n, seed=0):
    """``n`` photos whose features lean along ±direction by a known amount (their 'taste')."""
    rng = np.random.default_rng(seed)
    amounts = np.linspace(-1, 1, n)
    rng.shuffle(amounts)
    shots = []
    for k, a in enumerate(amounts):
        v = 0.25 * rng.normal(size=DIM) + a * direction
        shots.append(Shot(f"p{k:03d}.jpg", float(k * 60), v,
                          checks={"sharpness": float(rng.uniform(1, 100)), "exposure": 0.5,
                                  "noise": None if k % 7 == 0 else float(rng.uniform(0, 5))}))
    return shots, dict(zip((s.name for s in shots), amounts))


@pytest.fixture
def taste_library(tmp_path, direction):
    shots, amounts = shots_along(direction, 80)
    lib, ids = synthetic_library(tmp_path, shots)
    yield lib, ids, amounts
    lib.close()


def flag_extremes(lib, ids, amounts, n_picks, n_rejects):
    """Pick the n most 'positive' photos, reject the n most 'negative'; return the unflagged."""
    order = sorted(amounts, key=amounts.get)
    rejects, picks = order[:n_rejects], order[len(order) - n_picks:]
    lib.set_culling([ids[n] for n in picks], flag=FLAG_PICK)
    lib.set_culling([ids[n] for n in rejects], flag=FLAG_REJECT)
    return [n for n in order if n not in picks and n not in rejects]


def taste_scores(lib) -> dict[int, float]:
    return {r.id: r.scores[taste.TASTE_ATTRIBUTE] for r in lib.query(PhotoQuery())
            if taste.TASTE_ATTRIBUTE in r.scores}


def test_separable_flags_give_high_accuracy_and_rank_unseen_photos(taste_library, direction):
    lib, ids, amounts = taste_library
    unseen = flag_extremes(lib, ids, amounts, 15, 15)
    attr = taste.fit(lib)
    assert attr.kind == "taste" and attr.name == "my taste"
    extra = attr.extra
    assert extra["cv_accuracy"] > 0.9 and extra["cv_folds"] == 5
    assert (extra["n_picks"], extra["n_rejects"]) == (15, 15) and extra["model"] == "synthetic"
    assert len(extra["weights"]) == DIM and extra["check_names"] == ["sharpness", "exposure", "noise"]
    scores = taste_scores(lib)
    assert len(scores) == 80 and all(0 < v < 1 for v in scores.values())
    # The 50 photos never flagged are ranked along the hidden direction: by how far their
    # stored feature leans along it.
    feat_ids, matrix = lib.feature_matrix(lib.active_model().id)
    lean = dict(zip(feat_ids.tolist(), (matrix @ direction).tolist()))
    unseen_ids = [ids[n] for n in unseen]
    rho = spearman([scores[i] for i in unseen_ids], [lean[i] for i in unseen_ids])
    assert rho > 0.8
    # It sorts and filters like any attribute.
    sorted_ids = lib.query_ids(PhotoQuery(sort="my taste"))
    assert [scores[i] for i in sorted_ids] == sorted(scores.values(), reverse=True)
    high = lib.query_ids(PhotoQuery(sort="name", ranges={"my taste": (0.5, None)}))
    assert set(high) == {i for i, v in scores.items() if v >= 0.5} and 0 < len(high) < 80


def test_random_labels_give_chance_accuracy(tmp_path):
    rng = np.random.default_rng(11)
    shots = [Shot(f"r{k:03d}.jpg", float(k * 60), rng.normal(size=DIM)) for k in range(120)]
    lib, ids = synthetic_library(tmp_path, shots)
    labels = rng.permutation(np.r_[np.ones(60), np.zeros(60)])
    all_ids = [ids[s.name] for s in shots]
    lib.set_culling([i for i, y in zip(all_ids, labels) if y], flag=FLAG_PICK)
    lib.set_culling([i for i, y in zip(all_ids, labels) if not y], flag=FLAG_REJECT)
    extra = taste.fit(lib).extra
    assert 0.3 < extra["cv_accuracy"] < 0.7
    assert extra["baseline_accuracy"] == 0.5
    lib.close()


def test_too_few_flags_no_attribute_then_removed_when_flags_drop(taste_library):
    lib, ids, amounts = taste_library
    flag_extremes(lib, ids, amounts, 10, 9)
    assert taste.maybe_refit(lib) is False
    assert "my taste" not in [a.name for a in lib.attributes()]
    with pytest.raises(taste.NotEnoughFlags, match="now 10 picks, 9 rejects"):
        taste.fit(lib)
    status = taste.taste_status(lib)
    assert not status.fitted and (status.picks, status.rejects) == (10, 9)
    assert "not fitted" in status.describe()

    flag_extremes(lib, ids, amounts, 10, 10)
    assert taste.maybe_refit(lib) is True
    assert lib.attribute("my taste").kind == "taste"
    # A pick cleared: below the minimum again, the attribute and its scores go away.
    some_pick = lib.query_ids(PhotoQuery(flag="pick"))[0]
    lib.set_culling([some_pick], flag=FLAG_NONE)
    assert taste.maybe_refit(lib) is True
    assert "my taste" not in [a.name for a in lib.attributes()]
    assert taste_scores(lib) == {}
    assert taste.maybe_refit(lib) is False


def test_refit_only_when_flags_changed(taste_library, monkeypatch):
    lib, ids, amounts = taste_library
    flag_extremes(lib, ids, amounts, 12, 12)
    assert taste.maybe_refit(lib) is True
    first = lib.attribute("my taste").extra
    monkeypatch.setattr(taste, "_fit_and_store", lambda *a: pytest.fail("refitted without new flags"))
    assert taste.maybe_refit(lib) is False
    assert taste.taste_status(lib).up_to_date
    monkeypatch.undo()
    # Ratings and labels are not flags: still no refit.
    lib.set_culling([ids["p000.jpg"]], rating=5)
    assert taste.maybe_refit(lib) is False
    flag_extremes(lib, ids, amounts, 14, 13)
    assert not taste.taste_status(lib).up_to_date
    assert taste.maybe_refit(lib) is True
    second = lib.attribute("my taste").extra
    assert (second["n_picks"], second["n_rejects"]) == (14, 13)
    assert second["flags_signature"] != first["flags_signature"] and second["weights"] != first["weights"]
    assert taste.taste_status(lib).up_to_date


def test_new_photos_are_scored_from_extra_by_the_scoring_path(taste_library, direction):
    lib, ids, amounts = taste_library
    flag_extremes(lib, ids, amounts, 15, 15)
    attr = taste.fit(lib)
    model = lib.active_model()
    # A new photo gets a feature (as a scoring job would store it) but no taste score yet.
    folder = lib.folders()[0]
    (open(os.path.join(folder.path, "new.jpg"), "wb")).close()
    from photosense.library import ScanRecord

    lib.upsert_scanned(folder.id, [ScanRecord(os.path.join(folder.path, "new.jpg"), 1, 0.0, "new",
                                              checks={"sharpness": 50.0})])
    new_id = lib.query_ids(PhotoQuery(ids=None, sort="added", descending=True, limit=1))[0]
    vec = direction + 0.1 * np.random.default_rng(5).normal(size=DIM)
    vec = (vec / np.linalg.norm(vec)).astype(np.float32)
    lib.store_features(model.id, 0, [(new_id, vec, {})])
    stale = lib.attributes_missing_scores(model.id)
    assert attr.id in [a.id for a in stale]
    # The pipeline's scorer dispatches kind "taste" to taste.score_attribute; no engine needed.
    AttributeScorer(lib, None, model).rescore([lib.attribute("my taste")])
    score = taste_scores(lib)[new_id]
    m = taste._model_from_extra(attr.extra)
    expected = m.scores(vec[None, :], lib.check_values([new_id]))[0]
    assert score == pytest.approx(expected) and score > 0.9  # it leans the picks' way


def test_features_of_another_model_score_undecided(taste_library):
    lib, ids, amounts = taste_library
    flag_extremes(lib, ids, amounts, 10, 10)
    attr = taste.fit(lib)
    from photosense.scoring.kinds import ScoringContext

    other = lib.ensure_model("other-model", DIM, 100.0)
    ctx = ScoringContext(lib, None, other)
    out = taste.score_attribute(ctx, attr, np.ones((3, DIM), dtype=np.float32), np.array([1, 2, 3]))
    assert out.tolist() == [0.5, 0.5, 0.5]
    # Switching the active model makes maybe_refit refit for it once it has flagged features.
    lib.set_setting("active_model", "other-model")
    assert taste.maybe_refit(lib) is True  # fewer than 10 flagged features there: removed
    assert "my taste" not in [a.name for a in lib.attributes()]


def test_name_taken_by_a_prompts_attribute(taste_library):
    lib, ids, amounts = taste_library
    lib.add_attribute(AttributeSpec("my taste", (AntonymPair("Good", "Bad"),)))
    flag_extremes(lib, ids, amounts, 10, 10)
    assert taste.maybe_refit(lib) is False
    with pytest.raises(PhotosenseError, match="already exists"):
        taste.fit(lib)
    assert lib.attribute("my taste").kind == "prompts"


def test_nothing_scored_yet(tmp_path):
    lib, _ = synthetic_library(tmp_path, [Shot("a.jpg", 0.0, None)])
    assert taste.maybe_refit(lib) is False
    with pytest.raises(PhotosenseError, match="nothing scored"):
        taste.fit(lib)
    assert "nothing scored" in taste.taste_status(lib).describe()
    lib.close()


def test_fit_logistic_matches_the_optimum():
    """The Newton solver (both the primal and the n×n form) reaches the penalised optimum:
    the gradient vanishes."""
    rng = np.random.default_rng(1)
    for n, k in ((60, 8), (12, 40)):
        x = rng.normal(size=(n, k))
        y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
        sw = rng.uniform(0.5, 2, size=n)
        w, b = taste.fit_logistic(x, y, l2=0.7, sample_weight=sw)
        p = 1 / (1 + np.exp(-(x @ w + b)))
        assert np.abs(x.T @ (sw * (p - y)) + 0.7 * w).max() < 1e-6
        assert abs(np.sum(sw * (p - y)) + 1e-6 * b) < 1e-6


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_taste_commands_and_refit_after_flagging(capsys, taste_library):
    lib, ids, amounts = taste_library
    path = str(lib.path)
    code, out, _ = run_cli(capsys, "taste", "status", "--library", path)
    assert code == 0 and "not fitted" in out and "picks: 0, rejects: 0" in out
    code, _, err = run_cli(capsys, "taste", "fit", "--library", path)
    assert code == 1 and "needs at least 10 picks" in err and err.count("\n") == 1
    order = sorted(amounts, key=amounts.get)
    folder = lib.folders()[0].path
    code, _, err = run_cli(capsys, "flag", *(os.path.join(folder, n) for n in order[-10:]), "--pick",
                           "--library", path)
    assert code == 0 and "my taste" not in err
    code, _, err = run_cli(capsys, "flag", *(os.path.join(folder, n) for n in order[:10]), "--reject",
                           "--library", path)
    assert code == 0 and "'my taste'" in err  # fitted right after the flags that made it possible
    code, out, _ = run_cli(capsys, "taste", "status", "--library", path)
    assert "up to date" in out and "cross-validated accuracy" in out and "5-fold" in out
    code, out, _ = run_cli(capsys, "list", "--sort", "my taste", "--limit", "1", "--format", "json",
                           "--library", path)
    assert os.path.basename(json.loads(out)[0]["path"]) in order[-15:]
    code, out, err = run_cli(capsys, "taste", "fit", "--library", path)
    assert code == 0 and "fitted" in err and "up to date" in out

