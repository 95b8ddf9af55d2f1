"""SROCC and PLCC against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from photosense.scoring.metrics import Logistic4, fit_logistic4, pearson, plcc, rankdata, srocc


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert rankdata([3, 1, 2]).tolist() == [3.0, 1.0, 2.0]
    assert rankdata([5, 5, 5]).tolist() == [2.0, 2.0, 2.0]
    assert rankdata([2, 1, 2, 1, 3]).tolist() == [3.5, 1.5, 3.5, 1.5, 5.0]


def test_srocc_hand_computed():
    # Perfectly monotone (not linear): 1; reversed: -1.
    assert srocc([1, 2, 3, 4, 5], [1, 4, 9, 16, 25]) == pytest.approx(1.0)
    assert srocc([1, 2, 3, 4, 5], [5, 3, 2, 1, 0]) == pytest.approx(-1.0)
    # Ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]:
    # sum dx*dy = 4.5, sum dx^2 = 4.5, sum dy^2 = 5  ->  4.5 / sqrt(22.5) = 3 / sqrt(10).
    assert srocc([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    # Classic textbook case: d = [0, -1, 1, 0, 0]... 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 12/120 = 0.9.
    assert srocc([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == pytest.approx(0.9)


def test_pearson_and_undefined_cases():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # x = [1, 2, 3, 4], y = [2, 1, 4, 3]: sum dxdy = 3, sum dx^2 = sum dy^2 = 5 -> 0.6.
    assert pearson([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert math.isnan(srocc([1, 1, 1], [1, 2, 3]))  # constant side
    assert math.isnan(plcc([1], [2]))
    # Non-finite pairs are dropped, not propagated.
    assert srocc([1, 2, np.nan, 3], [1, 2, 100, 3]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        srocc([1, 2], [1, 2, 3])


def test_plcc_fits_the_logistic():
    x = np.linspace(-3, 3, 40)
    y = 1.0 + 4.0 / (1.0 + np.exp(-(x - 0.5) / 0.7))  # exactly a 4-parameter logistic
    raw = pearson(x, y)
    assert raw < 0.98
    assert plcc(x, y) == pytest.approx(1.0, abs=1e-6)
    assert plcc(x, y, fit=False) == pytest.approx(raw)
    model = fit_logistic4(x, y)
    assert isinstance(model, Logistic4) and model.increasing
    assert np.allclose(model(x), y, atol=1e-4)
    # Anti-correlated predictions keep their sign.
    assert plcc(-x, y) == pytest.approx(-1.0, abs=1e-6)
    assert srocc(-x, y) == pytest.approx(-1.0)


def test_plcc_falls_back_to_pearson():
    # Too few points for a 4-parameter fit: the raw Pearson correlation.
    assert plcc([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert fit_logistic4([1, 2, 3], [1, 2, 3]) is None
    assert fit_logistic4([1, 1, 1, 1, 1, 1], [1, 2, 3, 4, 5, 6]) is None


def test_plcc_on_noisy_data_is_at_least_linear():
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    y = 5.0 / (1.0 + np.exp(-2.5 * x)) + rng.normal(scale=0.3, size=300)
    assert plcc(x, y) >= pearson(x, y)
    assert 0.9 < plcc(x, y) <= 1.0
