"""CLIP-IQA score arithmetic on stored feature vectors. numpy only (no torch)."""

from __future__ import annotations

import numpy as np

# Rows per matrix product: bounds temporaries to ~CHUNK_ROWS * P floats.
CHUNK_ROWS = 65536


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (all-zero rows stay zero). 1-D input = one row."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.where(norms > 0, norms, 1).astype(arr.dtype)


def attribute_scores(
    image_features: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    logit_scale: float,
) -> np.ndarray:
    """CLIP-IQA score of each image for one attribute, in (0, 1); shape (N,).

    For each antonym pair p: ``softmax([λ·x·t+_p, λ·x·t-_p])[0]``, which equals
    ``sigmoid(λ·x·(t+_p − t-_p))``; the scores of the P pairs are averaged (an ensemble).
    Features are expected L2-normalised (as stored); ``λ`` is ``logit_scale.exp()`` of the model.
    """
    x = np.asarray(image_features, dtype=np.float32)
    pos = np.atleast_2d(np.asarray(positive, dtype=np.float32))
    neg = np.atleast_2d(np.asarray(negative, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"image_features must be (N, D), got shape {x.shape}")
    if pos.shape != neg.shape:
        raise ValueError(f"positive {pos.shape} and negative {neg.shape} prompts differ in shape")
    if pos.shape[0] == 0:
        raise ValueError("an attribute needs at least one antonym pair")
    if pos.shape[1] != x.shape[1]:
        raise ValueError(
            f"feature size mismatch: images have {x.shape[1]}, prompts have {pos.shape[1]} "
            "(features from another model?)"
        )
    # (D, P) direction matrix, pre-scaled by λ: one product gives every pair's logit difference.
    direction = (np.float32(logit_scale) * (pos - neg)).T.astype(np.float32, copy=False)
    n_pairs = pos.shape[0]
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        diff = x[start : start + CHUNK_ROWS] @ direction  # (n, P) float32
        # Stable sigmoid: 1/(1+exp(-d)) for d >= 0, exp(d)/(1+exp(d)) for d < 0.
        e = np.exp(-np.abs(diff, dtype=np.float64))
        prob = np.where(diff >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        out[start : start + CHUNK_ROWS] = prob.sum(axis=1) / n_pairs
    return out
