"""attribute_scores against an explicit softmax, ensembles, symmetry, range, speed."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from photosense.scoring.maths import attribute_scores, l2_normalize


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(x, pos, neg, scale):
    """The paper's formula written out: per image, per pair, a 2-way softmax; then the mean."""
    out = []
    for xi in x.astype(np.float64):
        probs = []
        for tp, tn in zip(pos.astype(np.float64), neg.astype(np.float64)):
            lp, ln = scale * float(xi @ tp), scale * float(xi @ tn)
            m = max(lp, ln)
            probs.append(math.exp(lp - m) / (math.exp(lp - m) + math.exp(ln - m)))
        out.append(sum(probs) / len(probs))
    return np.array(out)


def test_l2_normalize_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    y = l2_normalize(x)
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], atol=1e-7)
    assert y.dtype == np.float32


@pytest.mark.parametrize("n_pairs", [1, 3])
@pytest.mark.parametrize("scale", [1.0, 14.3, 100.0])
def test_matches_explicit_softmax(n_pairs, scale):
    rng = np.random.default_rng(n_pairs)
    x, pos, neg = _unit(rng, 50, 64), _unit(rng, n_pairs, 64), _unit(rng, n_pairs, 64)
    got = attribute_scores(x, pos, neg, scale)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, _reference(x, pos, neg, scale), atol=1e-5)


def test_ensemble_is_mean_of_single_pairs():
    rng = np.random.default_rng(7)
    x, pos, neg = _unit(rng, 20, 32), _unit(rng, 4, 32), _unit(rng, 4, 32)
    singles = [attribute_scores(x, pos[i : i + 1], neg[i : i + 1], 100.0) for i in range(4)]
    np.testing.assert_allclose(attribute_scores(x, pos, neg, 100.0), np.mean(singles, axis=0), atol=1e-6)
    # A single pair can also be passed as 1-D vectors.
    np.testing.assert_allclose(attribute_scores(x, pos[0], neg[0], 100.0), singles[0], atol=1e-6)


def test_swapping_the_pair_gives_one_minus_score():
    rng = np.random.default_rng(3)
    x, pos, neg = _unit(rng, 30, 16), _unit(rng, 2, 16), _unit(rng, 2, 16)
    s = attribute_scores(x, pos, neg, 100.0)
    np.testing.assert_allclose(attribute_scores(x, neg, pos, 100.0), 1.0 - s, atol=1e-7)


def test_range_and_stability_at_extreme_logits():
    rng = np.random.default_rng(5)
    x, pos, neg = _unit(rng, 200, 1024), _unit(rng, 1, 1024), _unit(rng, 1, 1024)
    s = attribute_scores(x, pos, neg, 100.0)
    assert np.all((s > 0) & (s < 1))
    assert np.ptp(s) > 0.5  # λ = 100 spreads even nearly orthogonal vectors widely
    huge = attribute_scores(x, pos, neg, 1e6)  # exp() would overflow if computed naively
    assert np.all(np.isfinite(huge)) and np.all((huge >= 0) & (huge <= 1))
    same = attribute_scores(x, pos, pos, 100.0)
    np.testing.assert_allclose(same, 0.5)


def test_positive_direction_scores_higher():
    t = np.eye(4, dtype=np.float32)
    x = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32)
    s = attribute_scores(x, t[:1], t[1:2], 100.0)
    assert s[0] > 0.99 and s[1] < 0.01


def test_shape_errors():
    x = np.zeros((3, 8), np.float32)
    with pytest.raises(ValueError, match="mismatch"):
        attribute_scores(x, np.zeros((1, 4)), np.zeros((1, 4)), 100.0)
    with pytest.raises(ValueError):
        attribute_scores(x, np.zeros((2, 8)), np.zeros((1, 8)), 100.0)
    with pytest.raises(ValueError):
        attribute_scores(x[0], np.zeros((1, 8)), np.zeros((1, 8)), 100.0)


def test_hundred_thousand_images_is_fast():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100_000, 1024), dtype=np.float32)
    pos, neg = _unit(rng, 3, 1024), _unit(rng, 3, 1024)
    attribute_scores(x[:10], pos, neg, 100.0)
    start = time.perf_counter()
    s = attribute_scores(x, pos, neg, 100.0)
    elapsed = time.perf_counter() - start
    assert s.shape == (100_000,)
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
