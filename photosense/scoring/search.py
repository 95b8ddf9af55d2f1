"""Text search over stored image features: no image is decoded or re-encoded.

The text is encoded once by the model's text tower (and cached in the library, like attribute
prompts); each photo's relevance is the cosine similarity between that text feature and its
stored, L2-normalised image feature under the library's active model. A ``PhotoQuery``
restricts the candidates (flags, ratings, ranges, folder...). Raw CLIP cosines are small
(~0.1-0.35 for the OpenAI weights) and only meaningful as a ranking. numpy only here; the
engine (torch) is passed in.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from photosense.errors import PhotosenseError
from photosense.library import Library, PhotoQuery


def text_feature(library: Library, engine, model_id: int, text: str) -> np.ndarray:
    """The unit text feature of ``text`` as typed, from the library's cache or the engine."""
    cached = library.text_features(model_id, [text])
    if text in cached:
        return cached[text]
    vec = np.asarray(engine.encode_texts([text])[0], dtype=np.float32)
    library.store_text_features(model_id, {text: vec})
    return vec


def rank_by_similarity(ids: np.ndarray, matrix: np.ndarray, vector: np.ndarray,
                       limit: int | None = None) -> list[tuple[int, float]]:
    """(id, cosine) by decreasing cosine (ties: lower id first); at most ``limit``."""
    if len(ids) == 0:
        return []
    sims = matrix @ np.asarray(vector, dtype=np.float32)
    if limit is not None and limit < len(ids):
        top = np.argpartition(-sims, limit - 1)[:limit] if limit > 0 else np.zeros(0, dtype=np.int64)
    else:
        top = np.arange(len(ids))
    order = top[np.lexsort((ids[top], -sims[top]))]
    return [(int(ids[i]), float(sims[i])) for i in order]


def search(library: Library, engine, text: str, query: PhotoQuery | None = None,
           limit: int | None = None) -> list[tuple[int, float]]:
    """Photos ranked by similarity to ``text``: [(photo id, cosine)], best first.

    ``engine``: a ClipIQAEngine for the library's active model (its weights are loaded here;
    WeightsUnavailable propagates). ``query``: only photos it selects are candidates (its sort
    and limit are ignored). Photos without a feature for the active model are not ranked."""
    text = text.strip()
    if not text:
        raise PhotosenseError("give some text to search for")
    if limit is not None and limit < 0:
        raise PhotosenseError("the limit must be at least 0")
    model = library.active_model()
    if model is None:
        raise PhotosenseError("nothing scored yet: run 'photosense score' first")
    if engine.id != model.key:
        raise PhotosenseError(
            f"the library was scored with {model.key}, but the configured model is {engine.id}")
    vector = text_feature(library, engine, model.id, text)
    if query is None:
        ids, matrix = library.feature_matrix(model.id)
    else:
        wanted = library.query_ids(dataclasses.replace(query, sort="added", descending=None,
                                                       limit=None, model=model.key))
        ids, matrix = library.features_for(model.id, wanted)
    return rank_by_similarity(ids, matrix, vector, limit)
