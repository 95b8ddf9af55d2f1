"""Correlation metrics of image-quality benchmarks: SROCC and PLCC. numpy only.

- :func:`srocc`: Spearman's rank-order correlation, ties given their average rank (as
  ``scipy.stats.spearmanr``).
- :func:`plcc`: Pearson's linear correlation after the 4-parameter logistic mapping IQA papers
  (VQEG; the CLIP-IQA paper's Table 1) fit from predictions to MOS. The fit is a small
  Levenberg–Marquardt in numpy; when it fails (too few points, no convergence, a flat
  prediction) the raw Pearson correlation is returned instead.

Both drop pairs where either value is not finite, and return NaN when fewer than two pairs are
left or a side is constant (no correlation is defined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Below this many points the logistic (4 parameters) is not fitted: raw Pearson instead.
MIN_POINTS_FOR_FIT = 5


def _finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def rankdata(values) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the average of their ranks."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # Start index of each run of equal values, and the run each sorted position belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    run = np.cumsum(np.r_[True, sorted_v[1:] != sorted_v[:-1]]) - 1
    ends = np.r_[starts[1:], n]  # exclusive
    average = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = average[run]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2:
        return float("nan")
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt(float(da @ da) * float(db @ db))
    if denom == 0 or not np.isfinite(denom):
        return float("nan")
    return float(np.clip((da @ db) / denom, -1.0, 1.0))


def pearson(x, y) -> float:
    """Pearson's linear correlation of the finite pairs of ``x`` and ``y`` (NaN if undefined)."""
    a, b = _finite_pairs(x, y)
    return _pearson(a, b)


def srocc(x, y) -> float:
    """Spearman's rank-order correlation (average ranks for ties; NaN if undefined)."""
    a, b = _finite_pairs(x, y)
    if a.size < 2:
        return float("nan")
    return _pearson(rankdata(a), rankdata(b))


# --------------------------------------------------------------------------- logistic fit


@dataclass(frozen=True)
class Logistic4:
    """``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / b4))``: monotone, from b2 to b1."""

    b1: float
    b2: float
    b3: float
    b4: float

    def __call__(self, x) -> np.ndarray:
        z = np.clip((np.asarray(x, dtype=np.float64) - self.b3) / self.b4, -60.0, 60.0)
        return self.b2 + (self.b1 - self.b2) / (1.0 + np.exp(-z))

    @property
    def increasing(self) -> bool:
        return (self.b1 - self.b2) / self.b4 > 0


def _logistic_and_jacobian(p: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b1, b2, b3, b4 = p
    z = np.clip((x - b3) / b4, -60.0, 60.0)
    s = 1.0 / (1.0 + np.exp(-z))
    f = b2 + (b1 - b2) * s
    ds = (b1 - b2) * s * (1.0 - s)
    jac = np.column_stack([s, 1.0 - s, -ds / b4, -ds * (x - b3) / (b4 * b4)])
    return f, jac


def fit_logistic4(x, y, max_iter: int = 200) -> Logistic4 | None:
    """Least-squares 4-parameter logistic from ``x`` (predictions) to ``y`` (MOS), or None
    when the fit is impossible or does not converge to something usable.

    Levenberg–Marquardt with Marquardt's diagonal scaling, on standardised x and y (so the
    same starting point suits any score scale); the result is mapped back to raw units.
    """
    a, b = _finite_pairs(x, y)
    if a.size < MIN_POINTS_FOR_FIT:
        return None
    ax, sx = a.mean(), a.std()
    by, sy = b.mean(), b.std()
    if sx == 0 or sy == 0:
        return None
    u, v = (a - ax) / sx, (b - by) / sy
    direction = 1.0 if _pearson(u, v) >= 0 else -1.0
    p = np.array([v.max(), v.min(), float(np.median(u)), direction * 0.5])
    f, jac = _logistic_and_jacobian(p, u)
    r = f - v
    sse = float(r @ r)
    damping = 1e-3
    for _ in range(max_iter):
        jtj = jac.T @ jac
        grad = jac.T @ r
        improved = False
        while damping < 1e12:
            lhs = jtj + damping * np.diag(np.diag(jtj) + 1e-12)
            try:
                step = np.linalg.solve(lhs, -grad)
            except np.linalg.LinAlgError:
                damping *= 10.0
                continue
            trial = p + step
            if not np.all(np.isfinite(trial)) or abs(trial[3]) < 1e-9:
                damping *= 10.0
                continue
            f_t, jac_t = _logistic_and_jacobian(trial, u)
            r_t = f_t - v
            sse_t = float(r_t @ r_t)
            if sse_t < sse:
                gain = sse - sse_t
                p, jac, r, sse = trial, jac_t, r_t, sse_t
                damping = max(damping / 10.0, 1e-12)
                improved = True
                break
            damping *= 10.0
        if not improved or gain <= 1e-12 * max(sse, 1e-30):
            break
    if not np.all(np.isfinite(p)) or sse >= float(v @ v):  # no better than a constant
        return None
    b1, b2, b3, b4 = p
    return Logistic4(b1=by + sy * b1, b2=by + sy * b2, b3=ax + sx * b3, b4=sx * b4)


def plcc(x, y, fit: bool = True) -> float:
    """Pearson correlation between MOS ``y`` and predictions ``x`` mapped by the fitted
    4-parameter logistic (``fit=False``, or a failed fit: raw Pearson).

    The sign says the direction of the mapping (negative when higher predictions mean lower
    MOS), so it reads like :func:`srocc`.
    """
    a, b = _finite_pairs(x, y)
    raw = _pearson(a, b)
    if not fit or not np.isfinite(raw):
        return raw
    model = fit_logistic4(a, b)
    if model is None:
        return raw
    mapped = _pearson(model(a), b)
    if not np.isfinite(mapped):
        return raw
    return abs(mapped) if model.increasing else -abs(mapped)
