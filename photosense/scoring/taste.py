"""``my taste``: a classifier of the photographer's own picks and rejects, on stored features.

Once at least ``MIN_PER_CLASS`` picks and as many rejects have an image feature under the
active model, an L2-regularised logistic regression (numpy, Newton's method; no scikit-learn)
is fitted on [image feature, standardised checks] and shown as the attribute ``my taste``
(kind "taste"): its score is the modelled probability that the photographer would pick the
photo, in (0, 1), stored like any attribute's so views sort and filter by it. Picks and rejects
weigh equally (class-balanced loss), whatever their counts.

Everything the model needs to score a photo lives in the attribute's ``extra``:
``weights`` apply to the raw stored feature (the image block's centring and scale are folded
into them and into ``bias``), ``check_weights`` to the checks standardised with
``check_mean`` / ``check_std`` (an unknown check counts as average). ``score_attribute`` uses
it, so a scoring job scores newly encoded photos without refitting.

Too few flags: no attribute. If flags drop below the minimum after a fit, ``maybe_refit``
*removes* the attribute (and its scores) rather than leaving a stale model behind; it comes back
at the next refit with enough flags.

The cross-validated accuracy (stratified k-fold on the user's own flags, refitted per fold,
so standardisation never sees the held-out photos) is stored and shown next to the
majority-class baseline: it says how well the model predicts *this* photographer's decisions.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from photosense.errors import PhotosenseError
from photosense.library import CHECK_NAMES, Library, ModelInfo, PhotoQuery, split_feature_key
from photosense.scoring.prompts import AntonymPair, AttributeSpec

log = logging.getLogger("photosense.scoring.taste")

TASTE_ATTRIBUTE = "my taste"
TASTE_KIND = "taste"
# Describes the attribute in lists; never encoded (a taste attribute is scored from ``extra``).
TASTE_SPEC = AttributeSpec(TASTE_ATTRIBUTE, (AntonymPair("A photo I would pick.",
                                                         "A photo I would reject."),))
MIN_PER_CLASS = 10
FOLDS = 5
L2 = 1.0  # penalty on the weights of standardised inputs (the bias is not penalised)
EXTRA_VERSION = 1


class NotEnoughFlags(PhotosenseError):
    """Too few picks or rejects (with features) to fit the taste model."""


# -- the classifier (numpy only) ----------------------------------------------------------

def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


class _NewtonSystem:
    """Solves (diag(d) + xᵀ·diag(h)·x) step = g. With fewer rows than columns (few flags,
    1024-d features) it goes through the n×n Woodbury form, whose x·diag(d)⁻¹·xᵀ is computed
    once per fit rather than once per iteration."""

    def __init__(self, x: np.ndarray, d: np.ndarray):
        self.x, self.d = x, d
        self.dual = x.shape[0] < x.shape[1]
        self.gram = (x / d) @ x.T if self.dual else None

    def solve(self, h: np.ndarray, g: np.ndarray) -> np.ndarray:
        x, d = self.x, self.d
        if not self.dual:
            return np.linalg.solve((x.T * h) @ x + np.diag(d), g)
        s = np.sqrt(h)
        inner = np.eye(len(h)) + s[:, None] * self.gram * s[None, :]
        dg = g / d
        return dg - (x.T @ (s * np.linalg.solve(inner, s * (x @ dg)))) / d


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2,
                 sample_weight: np.ndarray | None = None, max_iter: int = 50,
                 ) -> tuple[np.ndarray, float]:
    """(weights, bias) minimising Σ wᵢ·logloss(yᵢ, xᵢ·w + b) + l2/2·|w|² (Newton, line search)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, k = x.shape
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    xa = np.hstack([x, np.ones((n, 1))])
    d = np.full(k + 1, float(l2))
    d[-1] = 1e-6  # keeps the system regular when the classes separate; the bias is ~free
    beta = np.zeros(k + 1)

    def objective(b: np.ndarray) -> float:
        z = xa @ b
        return float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(d * b * b))

    system = _NewtonSystem(xa, d)
    obj = objective(beta)
    for _ in range(max_iter):
        p = _sigmoid(xa @ beta)
        grad = xa.T @ (sw * (p - y)) + d * beta
        if np.max(np.abs(grad)) < 1e-9 * max(1.0, sw.sum()):
            break
        h = np.maximum(sw * p * (1 - p), 1e-12)
        step = system.solve(h, grad)
        t, decrease = 1.0, float(grad @ step)
        while t > 1e-10:
            candidate = beta - t * step
            new_obj = objective(candidate)
            if new_obj <= obj - 1e-4 * t * decrease:
                break
            t *= 0.5
        else:
            break
        beta, obj = candidate, new_obj
        if t * np.max(np.abs(step)) < 1e-10:
            break
    return beta[:-1], float(beta[-1])


@dataclass(frozen=True)
class TasteModel:
    """A fitted taste model: logit = features·weights + std(checks)·check_weights + bias."""

    weights: np.ndarray  # (dim,), on raw stored features
    bias: float
    check_weights: np.ndarray  # (len(CHECK_NAMES),)
    check_mean: np.ndarray
    check_std: np.ndarray
    feature_scale: float

    def logits(self, features: np.ndarray, checks: np.ndarray) -> np.ndarray:
        std_checks = np.nan_to_num((np.asarray(checks, dtype=np.float64) - self.check_mean)
                                   / self.check_std, nan=0.0)
        return (np.asarray(features, dtype=np.float64) @ self.weights
                + std_checks @ self.check_weights + self.bias)

    def scores(self, features: np.ndarray, checks: np.ndarray) -> np.ndarray:
        """Probability of a pick, in (0, 1)."""
        return _sigmoid(self.logits(features, checks))


def train(features: np.ndarray, checks: np.ndarray, labels: np.ndarray, l2: float = L2) -> TasteModel:
    """Fit on (N, dim) features, (N, 3) checks (NaN = unknown), labels 1 = pick, 0 = reject."""
    feats = np.asarray(features, dtype=np.float64)
    checks = np.asarray(checks, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    # The image block: centred, one scale for all columns (keeps CLIP's geometry; per-column
    # scaling would blow up near-constant dimensions on few samples).
    mean = feats.mean(axis=0)
    centred = feats - mean
    scale = float(np.sqrt(np.mean(centred ** 2))) or 1.0
    known = np.where(np.isnan(checks).all(axis=0), 0.0, checks)  # no all-NaN column: no warning
    cmean = np.nanmean(known, axis=0)
    cstd = np.nanstd(known, axis=0)
    cstd = np.where(cstd > 1e-12, cstd, 1.0)
    std_checks = np.nan_to_num((checks - cmean) / cstd, nan=0.0)
    x = np.hstack([centred / scale, std_checks])
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    sw = np.where(labels > 0, len(labels) / (2 * max(n_pos, 1)), len(labels) / (2 * max(n_neg, 1)))
    w, b = fit_logistic(x, labels, l2, sw)
    dim = feats.shape[1]
    w_img = w[:dim] / scale
    return TasteModel(weights=w_img, bias=b - float(mean @ w_img), check_weights=w[dim:],
                      check_mean=cmean, check_std=cstd, feature_scale=scale)


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold number of each sample: every class spread evenly over ``k`` folds (seeded)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for cls in np.unique(labels):
        idx = np.nonzero(labels == cls)[0]
        rng.shuffle(idx)
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return folds


@dataclass(frozen=True)
class CrossValidation:
    accuracy: float
    balanced_accuracy: float
    folds: int


def cross_validate(features: np.ndarray, checks: np.ndarray, labels: np.ndarray,
                   k: int = FOLDS, l2: float = L2) -> CrossValidation:
    """Stratified k-fold accuracy (k capped by the smaller class), refitting every fold."""
    labels = np.asarray(labels)
    k = max(2, min(k, int(min(labels.sum(), len(labels) - labels.sum()))))
    folds = stratified_folds(labels, k)
    predicted = np.empty(len(labels), dtype=np.int64)
    for f in range(k):
        test = folds == f
        model = train(features[~test], checks[~test], labels[~test], l2)
        predicted[test] = model.logits(features[test], checks[test]) > 0
    correct = predicted == labels
    balanced = float(np.mean([correct[labels == c].mean() for c in (0, 1)]))
    return CrossValidation(float(correct.mean()), balanced, k)


# -- the library side ---------------------------------------------------------------------

def _model_from_extra(extra: dict) -> TasteModel:
    return TasteModel(
        weights=np.asarray(extra["weights"], dtype=np.float64),
        bias=float(extra["bias"]),
        check_weights=np.asarray(extra["check_weights"], dtype=np.float64),
        check_mean=np.asarray(extra["check_mean"], dtype=np.float64),
        check_std=np.asarray(extra["check_std"], dtype=np.float64),
        feature_scale=float(extra.get("feature_scale", 1.0)),
    )


@dataclass(frozen=True)
class _TrainingSet:
    model: ModelInfo
    pick_ids: np.ndarray
    reject_ids: np.ndarray
    ids: np.ndarray  # picks then rejects, as rows of ``features``
    features: np.ndarray
    signature: str

    @property
    def enough(self) -> bool:
        return len(self.pick_ids) >= MIN_PER_CLASS and len(self.reject_ids) >= MIN_PER_CLASS


def _training_set(library: Library, model: ModelInfo) -> _TrainingSet:
    picks = library.query_ids(PhotoQuery(flag="pick", sort="added"))
    rejects = library.query_ids(PhotoQuery(flag="reject", sort="added"))
    ids, matrix = library.features_for(model.id, picks + rejects)
    pick_set = set(picks)
    is_pick = np.fromiter((int(i) in pick_set for i in ids), dtype=bool, count=len(ids))
    order = np.concatenate([np.nonzero(is_pick)[0], np.nonzero(~is_pick)[0]])
    pick_ids, reject_ids = ids[is_pick], ids[~is_pick]
    digest = hashlib.sha1(f"{EXTRA_VERSION}|{model.key}|{L2}|".encode())
    digest.update(pick_ids.tobytes())
    digest.update(b"|")
    digest.update(reject_ids.tobytes())
    return _TrainingSet(model, pick_ids, reject_ids, ids[order], matrix[order], digest.hexdigest())


def _taste_attribute(library: Library):
    for a in library.attributes():
        if a.name == TASTE_ATTRIBUTE:
            if a.kind != TASTE_KIND:
                raise PhotosenseError(
                    f"an attribute named '{TASTE_ATTRIBUTE}' already exists; rename it "
                    "('photosense attr edit') to use the taste model")
            return a
    return None


def _fit_and_store(library: Library, ts: _TrainingSet):
    labels = np.concatenate([np.ones(len(ts.pick_ids)), np.zeros(len(ts.reject_ids))]).astype(np.int64)
    checks = library.check_values(ts.ids)
    cv = cross_validate(ts.features, checks, labels)
    model = train(ts.features, checks, labels)
    n_picks, n_rejects = len(ts.pick_ids), len(ts.reject_ids)
    extra = {
        "version": EXTRA_VERSION,
        "model": ts.model.key,
        "dim": int(ts.features.shape[1]),
        "weights": [float(v) for v in model.weights],
        "bias": model.bias,
        "check_names": list(CHECK_NAMES),
        "check_weights": [float(v) for v in model.check_weights],
        "check_mean": [float(v) for v in model.check_mean],
        "check_std": [float(v) for v in model.check_std],
        "feature_scale": model.feature_scale,
        "l2": L2,
        "cv_accuracy": cv.accuracy,
        "cv_balanced_accuracy": cv.balanced_accuracy,
        "cv_folds": cv.folds,
        "baseline_accuracy": max(n_picks, n_rejects) / (n_picks + n_rejects),
        "n_picks": n_picks,
        "n_rejects": n_rejects,
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "flags_signature": ts.signature,
    }
    if _taste_attribute(library) is None:
        attr = library.add_attribute(TASTE_SPEC, kind=TASTE_KIND, extra=extra)
    else:
        attr = library.update_attribute(TASTE_ATTRIBUTE, TASTE_SPEC, extra=extra)
    ids, matrix = library.feature_matrix(ts.model.id)
    if len(ids):
        library.replace_scores(ts.model.id, attr.id, ids, model.scores(matrix, library.check_values(ids)))
    log.info("taste model fitted on %d picks, %d rejects: CV accuracy %.2f", n_picks, n_rejects,
             cv.accuracy)
    return attr


def _remove_if_present(library: Library) -> bool:
    if _taste_attribute(library) is None:
        return False
    library.remove_attribute(TASTE_ATTRIBUTE)
    log.info("too few picks/rejects: taste attribute removed")
    return True


def fit(library: Library):
    """Fit (or refit) the taste model on the active model's features and store the ``my taste``
    attribute with scores for every photo with a feature. Returns its AttributeInfo.

    Raises PhotosenseError with nothing scored yet, and NotEnoughFlags (after removing a stale
    taste attribute) with fewer than MIN_PER_CLASS picks or rejects with features."""
    model = library.active_model()
    if model is None:
        raise PhotosenseError("nothing scored yet: run 'photosense score' first")
    ts = _training_set(library, model)
    if not ts.enough:
        _remove_if_present(library)
        raise NotEnoughFlags(
            f"the taste model needs at least {MIN_PER_CLASS} picks and {MIN_PER_CLASS} rejects "
            f"among scored photos (now {len(ts.pick_ids)} picks, {len(ts.reject_ids)} rejects)")
    return _fit_and_store(library, ts)


def maybe_refit(library: Library) -> bool:
    """Refit when the flags (or the active model) changed since the last fit; remove the
    attribute when flags dropped below the minimum. True when ``my taste`` changed.

    Never raises for an ordinary situation (nothing scored, too few flags, the name taken by
    a prompts attribute): it then does nothing. When nothing changed it costs two indexed
    queries and reading the flagged photos' features."""
    model = library.active_model()
    if model is None:
        return False
    try:
        attr = _taste_attribute(library)
    except PhotosenseError as exc:
        log.info("taste model not refitted: %s", exc)
        return False
    ts = _training_set(library, model)
    if not ts.enough:
        return _remove_if_present(library)
    if attr is not None and (attr.extra or {}).get("flags_signature") == ts.signature:
        return False
    _fit_and_store(library, ts)
    return True


@dataclass(frozen=True)
class TasteStatus:
    model: str | None
    picks: int  # flagged photos with a feature for the model, now
    rejects: int
    min_per_class: int
    fitted: bool
    up_to_date: bool  # the stored fit used exactly the current flags
    cv_accuracy: float | None = None
    cv_balanced_accuracy: float | None = None
    baseline_accuracy: float | None = None
    cv_folds: int | None = None
    fitted_at: str | None = None
    fitted_picks: int | None = None
    fitted_rejects: int | None = None

    def describe(self) -> str:
        """A few lines for a status bar, a tooltip or the command line."""
        if self.model is None:
            return "my taste: nothing scored yet: score the photos first"
        lines = [f"picks: {self.picks}, rejects: {self.rejects} (scored photos; "
                 f"at least {self.min_per_class} of each needed)"]
        if not self.fitted:
            lines.insert(0, "my taste: not fitted")
            return "\n".join(lines)
        state = "up to date" if self.up_to_date else "flags changed since: refit to update"
        lines.insert(0, f"my taste: fitted {self.fitted_at} on {self.fitted_picks} picks, "
                        f"{self.fitted_rejects} rejects ({state})")
        lines.append(f"cross-validated accuracy: {self.cv_accuracy:.0%} ({self.cv_folds}-fold; "
                     f"balanced {self.cv_balanced_accuracy:.0%}; always guessing the larger "
                     f"class: {self.baseline_accuracy:.0%})")
        return "\n".join(lines)


def taste_status(library: Library) -> TasteStatus:
    """Where the taste model stands (never raises for a missing model or too few flags)."""
    model = library.active_model()
    attr = next((a for a in library.attributes()
                 if a.name == TASTE_ATTRIBUTE and a.kind == TASTE_KIND), None)
    if model is None:
        return TasteStatus(None, 0, 0, MIN_PER_CLASS, attr is not None, False)
    ts = _training_set(library, model)
    extra = (attr.extra or {}) if attr is not None else {}
    return TasteStatus(
        model=model.key, picks=len(ts.pick_ids), rejects=len(ts.reject_ids),
        min_per_class=MIN_PER_CLASS, fitted=attr is not None,
        up_to_date=attr is not None and extra.get("flags_signature") == ts.signature,
        cv_accuracy=extra.get("cv_accuracy"), cv_balanced_accuracy=extra.get("cv_balanced_accuracy"),
        baseline_accuracy=extra.get("baseline_accuracy"), cv_folds=extra.get("cv_folds"),
        fitted_at=extra.get("fitted_at"), fitted_picks=extra.get("n_picks"),
        fitted_rejects=extra.get("n_rejects"),
    )


def score_attribute(ctx, attr, features: np.ndarray, photo_ids: np.ndarray) -> np.ndarray:
    """Scores of a taste attribute for (N, dim) features (the kinds registry's contract).

    Uses the model stored in ``attr.extra``. Features from a model other than the one it was
    fitted on get 0.5 (undecided) until ``maybe_refit`` refits it for that model."""
    extra = attr.extra or {}
    n = len(features)
    # Fitted on one resolution's features, it applies to another's of the same model.
    if (split_feature_key(extra.get("model") or "")[0] != ctx.model.base
            or (n and features.shape[1] != extra.get("dim"))):
        log.warning("taste model was fitted for %s, not %s: scores 0.5 until refitted",
                    extra.get("model"), ctx.model.key)
        return np.full(n, 0.5)
    if n == 0:
        return np.zeros(0)
    checks = ctx.library.check_values([int(i) for i in photo_ids])
    return _model_from_extra(extra).scores(features, checks)
