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
import re
import threading
import weakref
from collections import OrderedDict

import numpy as np

from photosense.errors import NothingScored, PhotosenseError
from photosense.library import Library, PhotoQuery

#: A filtered search with fewer candidates than this, and no cached matrix, reads just their
#: rows (``features_for``) instead of loading every feature into the cache.
SMALL_CANDIDATE_SET = 2000
#: Feature matrices kept in memory (one per library and model; 100k x 1024 float32 = 400 MB).
CACHED_MATRICES = 2

# Statements through a Library's engine that may change its features: any write naming the
# features table, or a delete that can cascade to it (photos, folders, models).
_FEATURE_WRITE = re.compile(
    r"^\s*(?:(?:INSERT|REPLACE|UPDATE)\b.*\bfeatures\b|DELETE\b.*\b(?:features|photos|folders|models)\b)",
    re.IGNORECASE | re.DOTALL)


class FeatureMatrixCache:
    """(photo ids, feature matrix) per (library file, model id), shared by searches.

    Validity is checked per use with one cheap query, ``count(*), max(rowid)`` of the model's
    features (catches other processes adding or removing features), together with a counter of
    feature writes seen through the engines of the libraries searched here (catches in-place
    updates, which that query cannot see). The arrays are read-only, so threads share them."""

    def __init__(self, capacity: int = CACHED_MATRICES):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, int], tuple[tuple, np.ndarray, np.ndarray]] = OrderedDict()
        self._writes: dict[str, int] = {}
        self._watched: weakref.WeakSet = weakref.WeakSet()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, library: Library, model_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The cached (ids, matrix) if still current, else None (nothing is read but the stamp)."""
        key = self._key(library, model_id)
        stamp = self._stamp(library, model_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != stamp:
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def load(self, library: Library, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The current (ids, matrix), read from the library only when the cached one is stale."""
        key = self._key(library, model_id)
        with self._lock:  # one reader at a time: a second search waits for the first load
            stamp = self._stamp(library, model_id)
            entry = self._entries.get(key)
            if entry is not None and entry[0] == stamp:
                self._entries.move_to_end(key)
                return entry[1], entry[2]
            ids, matrix = library.feature_matrix(model_id)
            ids.setflags(write=False)
            matrix.setflags(write=False)
            # A write between the stamp and the read makes the stamp older than the data:
            # the next use then reloads once, never the other way round.
            self._entries[key] = (stamp, ids, matrix)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return ids, matrix

    def _key(self, library: Library, model_id: int) -> tuple[str, int]:
        path = str(library.path.resolve())
        if library.engine not in self._watched:
            self._watch(library.engine, path)
        return path, model_id

    def _watch(self, engine, path: str) -> None:
        from sqlalchemy import event

        writes = self._writes

        def note_feature_write(conn, cursor, statement, parameters, context, executemany):
            if _FEATURE_WRITE.match(statement):
                conn.info["photosense_feature_write"] = True

        def count_after_transaction(dbapi_connection, record):
            # Counted once the connection is back in the pool, i.e. after its commit, so a
            # stamp taken before a load is never newer than the data loaded.
            if record is not None and record.info.pop("photosense_feature_write", False):
                writes[path] = writes.get(path, 0) + 1

        event.listen(engine, "after_cursor_execute", note_feature_write)
        event.listen(engine.pool, "checkin", count_after_transaction)
        self._watched.add(engine)

    def _stamp(self, library: Library, model_id: int) -> tuple:
        path = str(library.path.resolve())
        with library.session(write=False) as s:
            count, last = s.connection().exec_driver_sql(
                "SELECT count(*), max(rowid) FROM features WHERE model_id = ?", (model_id,)).one()
        return self._writes.get(path, 0), count, last


feature_cache = FeatureMatrixCache()


def candidate_features(library: Library, model_id: int,
                       wanted: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, matrix) of the stored features of ``wanted`` (None: all), in id order, from the
    in-memory cache when it is current. Same arrays as ``feature_matrix``/``features_for``."""
    if wanted is not None and len(wanted) < SMALL_CANDIDATE_SET:
        cached = feature_cache.get(library, model_id)
        if cached is None:
            return library.features_for(model_id, wanted)
        ids, matrix = cached
    else:
        ids, matrix = feature_cache.load(library, model_id)
    if wanted is None:
        return ids, matrix
    want = np.unique(np.asarray(wanted, dtype=np.int64))
    pos = np.searchsorted(ids, want)
    hit = pos < len(ids)
    hit[hit] = ids[pos[hit]] == want[hit]
    pos = pos[hit]
    return ids[pos], matrix[pos]


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
    return rank_similarities(ids, matrix @ np.asarray(vector, dtype=np.float32), limit)


def streamed_similarities(library: Library, model_id: int, vector: np.ndarray,
                          wanted: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, cosines) of the stored features of ``wanted`` (None: all), read chunk by chunk:
    the feature matrix is never whole in memory (400 MB at 100k photos), for a one-off search."""
    vector = np.asarray(vector, dtype=np.float32)
    want = None if wanted is None else np.unique(np.asarray(wanted, dtype=np.int64))
    all_ids, all_sims = [], []
    for ids, matrix in library.iter_features(model_id):
        if want is not None:
            keep = np.isin(ids, want, assume_unique=True)
            ids, matrix = ids[keep], matrix[keep]
        all_ids.append(ids)
        all_sims.append(matrix @ vector)
    if not all_ids:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return np.concatenate(all_ids), np.concatenate(all_sims)


def rank_similarities(ids: np.ndarray, sims: np.ndarray,
                      limit: int | None = None) -> list[tuple[int, float]]:
    """(id, cosine) by decreasing cosine (ties: lower id first); at most ``limit``."""
    if len(ids) == 0:
        return []
    if limit is not None and limit < len(ids):
        top = np.argpartition(-sims, limit - 1)[:limit] if limit > 0 else np.zeros(0, dtype=np.int64)
    else:
        top = np.arange(len(ids))
    order = top[np.lexsort((ids[top], -sims[top]))]
    return [(int(ids[i]), float(sims[i])) for i in order]


def search(library: Library, engine, text: str, query: PhotoQuery | None = None,
           limit: int | None = None, keep_in_memory: bool = True) -> list[tuple[int, float]]:
    """Photos ranked by similarity to ``text``: [(photo id, cosine)], best first.

    ``engine``: a ClipIQAEngine for the library's active model (its weights are loaded here;
    WeightsUnavailable propagates). ``query``: only photos it selects are candidates (its sort
    and limit are ignored). Photos without a feature for the active model are not ranked.
    ``keep_in_memory``: load the features into the process's cache, so that the next search
    (in the window) is quick; False for a one-off search (the command line), which reads them
    chunk by chunk instead of holding them all."""
    text = text.strip()
    if not text:
        raise PhotosenseError("give some text to search for")
    if limit is not None and limit < 0:
        raise PhotosenseError("the limit must be at least 0")
    model = library.active_model()
    if model is None:
        raise NothingScored()
    if engine.id != model.base:
        raise PhotosenseError(
            f"the library was scored with {model.base}, but the configured model is {engine.id}")
    vector = text_feature(library, engine, model.id, text)
    wanted = None
    if query is not None:
        wanted = library.query_ids(dataclasses.replace(query, sort="added", descending=None,
                                                       limit=None, model=model.key))
    if not keep_in_memory and feature_cache.get(library, model.id) is None:
        return rank_similarities(*streamed_similarities(library, model.id, vector, wanted), limit)
    ids, matrix = candidate_features(library, model.id, wanted)
    return rank_by_similarity(ids, matrix, vector, limit)
