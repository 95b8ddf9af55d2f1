"""The scoring worker, shared by the CLI and the GUI.

``ScoringJob.run`` encodes every photo that lacks a feature for the model (decoding on a
thread pool, overlapped with inference, a bounded look-ahead), writes each batch's features
and attribute scores in one transaction (a photo is scored completely or not at all, so a
killed run resumes where it stopped), then fills in scores of attributes that are new or
edited from the stored features with one matrix product per attribute. A photo a scan has just
decoded at the same size is not decoded again: its pixels come from :mod:`photosense.ingest.
handoff`.

Progress goes to a callback; cancel is cooperative (a ``threading.Event``); ``checkpoint`` is
called between two batches (a ``ModelScheduler`` runs interactive requests there).

A run follows the scans of its library that run in the same process (``photosense.ingest.
activity``): once it has encoded every photo it knew of, it waits for the scan's next write and
goes on with the photos written, until the scans end. Adding a folder in the window or the
watch service therefore scores its first photos seconds after they are read, and scanning and
scoring overlap.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photosense.errors import DecodeError, PhotosenseError
from photosense.ingest import activity as scan_activity
from photosense.ingest import handoff
from photosense.ingest.decode import open_image
from photosense.ingest.raw import best_image_path
from photosense.jobs import Progress, format_duration  # noqa: F401 - re-exported for callers
from photosense.library import AttributeInfo, Library, ModelInfo
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig, file_sha256
from photosense.scoring.maths import attribute_scores

log = logging.getLogger("photosense.pipeline")

ENGINE_SETTING = "engine"  # last engine configuration used to score this library
# A run with at least this many photos to encode (a new shoot) encodes them at the preview size
# first; smaller runs finish at full size quickly anyway.
PREVIEW_MIN_PHOTOS = 200
# A batch holds at most about this many seconds of inference (measured as the run goes), so an
# interactive request waiting at the next checkpoint waits no longer than that, even on a CPU.
BATCH_SECONDS = 1.0


@dataclass
class ScoreReport:
    encoded: int = 0
    failed: int = 0  # photos that could not be decoded (``unavailable`` of them only for now)
    unavailable: int = 0  # vanished or unreadable now: tried again when their file is back
    previewed: int = 0  # photos encoded by the preview pass (not counted in ``encoded``)
    rescored_attributes: int = 0
    cancelled: bool = False
    seconds: float = 0.0  # the whole run, model loading included
    encode_seconds: float = 0.0  # decoding and encoding only


def save_engine_config(library: Library, config: EngineConfig) -> None:
    """Remember the engine configuration. Consent to unpickle is never stored as such: only
    the SHA-256 of the weights file it was given for, so it covers that exact file alone."""
    pickle_sha256 = config.pickle_sha256
    if config.allow_pickle and config.weights:
        try:
            pickle_sha256 = file_sha256(Path(config.weights))
        except (PhotosenseError, OSError):
            pickle_sha256 = None
    library.set_setting(ENGINE_SETTING, {
        "model": config.model, "weights": config.weights, "device": config.device,
        "max_side": config.max_side, "batch_size": config.batch_size,
        "backend": config.backend, "preview_side": config.preview_side,
        "pickle_sha256": pickle_sha256,
    })


_STORED_FIELDS = ("model", "weights", "device", "max_side", "batch_size", "backend", "preview_side",
                  "pickle_sha256")


def load_engine_config(library: Library, **overrides) -> EngineConfig:
    """The library's last engine configuration, with explicit (non-None) overrides applied.
    A stored ``allow_pickle`` (photosense 0.1 kept one) is ignored: consent never outlives the
    command that gave it, except as the content hash ``pickle_sha256``."""
    stored = library.get_setting(ENGINE_SETTING) or {}
    values = {k: v for k, v in stored.items() if k in _STORED_FIELDS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EngineConfig(**values)


class AttributeScorer:
    """Text features (cached in the library) and scores for attributes under one model."""

    def __init__(self, library: Library, engine: ClipIQAEngine, model: ModelInfo):
        self.library, self.engine, self.model = library, engine, model
        self._prompt_cache: dict[str, np.ndarray] = {}
        # An attribute's stacked prompt features, per spec: a scoring run scores every batch
        # (often one photo) with the same few attributes.
        self._stacked: dict[object, tuple[np.ndarray, np.ndarray]] = {}

    def text_features(self, prompts: list[str]) -> dict[str, np.ndarray]:
        missing = [p for p in prompts if p not in self._prompt_cache]
        if missing:
            stored = self.library.text_features(self.model.id, missing)
            self._prompt_cache.update(stored)
            new = [p for p in missing if p not in stored]
            if new:
                vecs = self.engine.encode_texts(new)
                fresh = dict(zip(new, vecs))
                self.library.store_text_features(self.model.id, fresh)
                self._prompt_cache.update(fresh)
        return {p: self._prompt_cache[p] for p in prompts}

    def score(self, attr: AttributeInfo, features: np.ndarray,
              photo_ids: np.ndarray | None = None) -> np.ndarray:
        if attr.kind != "prompts":
            from photosense.scoring.kinds import ScoringContext, scorer_for

            ctx = ScoringContext(self.library, self.engine, self.model)
            ids = photo_ids if photo_ids is not None else np.zeros(len(features), dtype=np.int64)
            return scorer_for(attr.kind)(ctx, attr, features, ids)
        stacked = self._stacked.get(attr.spec)
        if stacked is None:
            pos, neg = attr.spec.prompt_texts()
            feats = self.text_features(pos + neg)
            stacked = self._stacked[attr.spec] = (np.stack([feats[t] for t in pos]),
                                                  np.stack([feats[t] for t in neg]))
        return attribute_scores(features, *stacked, self.model.logit_scale)

    def score_all(self, attrs: list[AttributeInfo], features: np.ndarray,
                  photo_ids: np.ndarray | None = None) -> dict[int, np.ndarray]:
        self.prepare(attrs)
        return {a.id: self.score(a, features, photo_ids) for a in attrs}

    def prepare(self, attrs: list[AttributeInfo]) -> None:
        """Encode the prompts of all ``attrs`` not cached yet in one text-encoder batch (a new
        library's twelve built-ins: one call instead of twelve)."""
        prompts = [t for a in attrs if a.kind == "prompts" for side in a.spec.prompt_texts() for t in side]
        self.text_features(list(dict.fromkeys(prompts)))

    def rescore(self, attrs: list[AttributeInfo]) -> int:
        """Scores of ``attrs`` for every stored feature: no image is decoded."""
        if not attrs:
            return 0
        self.prepare(attrs)
        if any(a.kind != "prompts" for a in attrs):  # other kinds may need every feature at once
            ids, matrix = self.library.feature_matrix(self.model.id)
            for attr in attrs:
                self.library.replace_scores(self.model.id, attr.id, ids, self.score(attr, matrix, ids))
            return len(ids)
        # Prompt scores go photo by photo: the features are streamed a chunk at a time, never
        # all in memory (100k photos: 400 MB less for 'attr add').
        id_parts: list[np.ndarray] = []
        values: dict[int, list[np.ndarray]] = {a.id: [] for a in attrs}
        for ids, matrix in self.library.iter_features(self.model.id):
            id_parts.append(ids)
            for attr in attrs:
                values[attr.id].append(self.score(attr, matrix, ids))
        all_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
        for attr in attrs:
            scores = np.concatenate(values[attr.id]) if id_parts else np.zeros(0)
            self.library.replace_scores(self.model.id, attr.id, all_ids, scores)
        return len(all_ids)


class ScoringJob:
    """Encode photos lacking features for one model, then score every attribute."""

    def __init__(self, library: Library, config: EngineConfig, engine: ClipIQAEngine | None = None,
                 decode_workers: int | None = None):
        self.library = library
        self.config = config
        self.engine = engine or ClipIQAEngine(config)
        self.decode_workers = decode_workers or max(1, min(4, (os.cpu_count() or 2)))
        self.handed_off = 0  # photos whose pixels came from the scan (not decoded again)
        self._count_lock = threading.Lock()

    def prepare(self, max_side: int | None = None) -> tuple[ModelInfo, AttributeScorer]:
        """Load the model (may raise WeightsUnavailable) and register the features it makes at
        ``max_side`` (default: the configured one) in the library."""
        self.engine.load()
        model = self.library.ensure_model(self.engine.feature_key(max_side), self.engine.dim,
                                          self.engine.logit_scale)
        save_engine_config(self.library, self.config)
        return model, AttributeScorer(self.library, self.engine, model)

    def preview_side(self, photos_to_encode: int) -> int:
        """The preview pass's size for a run with this many photos to encode; 0 = no preview
        (too few photos, preview off, or a max side not above the preview's)."""
        side = self.config.preview_side
        full = self.config.max_side
        if not side or photos_to_encode < PREVIEW_MIN_PHOTOS or (full and full <= side):
            return 0
        return side

    def run(self, progress: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None,
            checkpoint: Callable[[], None] | None = None, follow: bool = True) -> ScoreReport:
        """Encode every photo lacking a feature at the configured size and score it. A run
        with many photos to encode (a new shoot) first encodes them at the preview size, so
        the whole shoot can be sorted in a fraction of the time, then refines at full size;
        the view shows whichever of the two covers more photos (never a mix). With ``follow``,
        photos that scans of the library in this process write meanwhile are encoded too."""
        start = time.monotonic()
        report = ScoreReport()
        emit = progress or (lambda p: None)
        self._checkpoint = checkpoint or (lambda: None)
        self._cancel = cancel
        self._activity = scan_activity.for_library(self.library) if follow else None
        handoff.sweep()  # what scans kept for photos never scored (weights missing, a crash)
        seen = self._writes()  # before the check: a scan's write during it is not missed
        if self._up_to_date() and not self._wait_for_photos(seen):
            report.cancelled = self._cancelled()
            report.seconds = time.monotonic() - start
            emit(Progress("done", 0, 0, 0.0, 0.0))
            return report
        emit(Progress("loading", 0, 0, 0.0, None))
        model, scorer = self.prepare()
        writes = self._writes()
        todo = self.library.photos_needing_features(model.id, with_companion=True)
        attrs = self.library.attributes()
        # A scan still running has more photos for this run: they count for the preview.
        coming = self._activity.to_read if self._following() else 0
        side = self.preview_side(len(todo) + coming)
        self._activate_if_none(model)
        t_encode = time.monotonic()
        if side:
            preview, preview_scorer = self.prepare(side)

            def preview_todo():
                needed = {t[0] for t in self.library.photos_needing_features(model.id)}
                return [t for t in self.library.photos_needing_features(preview.id, with_companion=True)
                        if t[0] in needed]

            first = preview_todo()
            log.info("preview pass: %d photos at %d px before %s px", len(first), side,
                     self.config.max_side or "native")
            self._activate_if_none(preview, replace_empty=True)
            encoded = report.encoded
            self._encode(_Todo(first, preview_todo, self._activity, writes), preview,
                         preview_scorer, attrs, report, emit, cancel, start, side)
            report.previewed, report.encoded = report.encoded - encoded, encoded
            self.library.choose_active_model(self.engine.id)
            if self._activity is not None:  # the scan wrote more while the preview pass ran
                writes = self._writes()
                todo = self.library.photos_needing_features(model.id, with_companion=True)
        photos = _Todo(todo, lambda: self.library.photos_needing_features(model.id, with_companion=True),
                       self._activity, writes)
        if not report.cancelled:
            self._encode(photos, model, scorer, attrs, report, emit, cancel, start, self.config.max_side)
        report.encode_seconds = time.monotonic() - t_encode
        active = self.library.choose_active_model(self.engine.id) or model
        if not report.cancelled:
            stale = self.library.attributes_missing_scores(active.id)
            if stale:
                emit(Progress("rescoring", 0, len(stale), 0.0, None))
                AttributeScorer(self.library, self.engine, active).rescore(stale)
                report.rescored_attributes = len(stale)
        report.seconds = time.monotonic() - start
        emit(Progress("done", report.encoded, photos.total, report.encoded / max(report.seconds, 1e-9), 0.0))
        return report

    def _cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def _following(self) -> bool:
        return self._activity is not None and self._activity.active

    def _writes(self) -> int:
        return self._activity.writes if self._activity is not None else 0

    def _stopped(self) -> bool:
        """Between two waits for a scan: interactive model requests run, cancel is heard."""
        self._checkpoint()
        return self._cancelled()

    def _wait_for_photos(self, seen: int) -> bool:
        """Nothing to do now: while a scan of the library runs, wait until it wrote photos to
        encode (True), or it ends or the run is cancelled with none (False). The model is not
        loaded before there is work for it. ``seen``: the scan writes already looked at."""
        while self._following() or self._writes() != seen:
            if self._writes() == seen:
                self._activity.wait(seen, _WAIT_SECONDS)
            if self._stopped():
                return False
            writes = self._writes()
            if writes != seen:
                if not self._up_to_date():
                    return True
                seen = writes
        return False

    def _activate_if_none(self, model: ModelInfo, replace_empty: bool = False) -> None:
        """Show ``model``'s scores when the view has none of this model yet (nothing scored,
        another model, or with ``replace_empty`` a set still without features)."""
        active = self.library.active_model()
        if (active is None or active.base != model.base
                or (replace_empty and not self.library.feature_count(active.id))):
            self.library.set_setting("active_model", model.key)

    def _up_to_date(self) -> bool:
        """True when this model already scored every photo and attribute at the configured
        size: then the model is not even loaded (its id needs no model, only torch's device
        check)."""
        try:
            key = self.engine.feature_key()
        except PhotosenseError:
            return False  # let loading report the problem in full
        model = self.library.model(key)
        if model is None or self.library.photos_needing_features(model.id):
            return False
        if self.library.attributes_missing_scores(model.id):
            return False
        save_engine_config(self.library, self.config)
        self.library.set_setting("active_model", model.key)
        return True

    def _failed(self, pid: int, path: str, exc: DecodeError | OSError, report: ScoreReport) -> None:
        """A photo that could not be decoded. A bad image keeps its error (not tried again
        until its file changes); a file that vanished or cannot be read now is never marked
        bad: gone, it is marked missing (a rescan brings it back), else it is tried next run."""
        transient = isinstance(exc, OSError) or exc.transient
        msg = str(exc) if isinstance(exc, DecodeError) else f"cannot read file: {exc.strerror or exc}"
        log.warning("%s: %s", path, msg)
        report.failed += 1
        if not transient:
            self.library.set_photo_error(pid, msg)
        elif not os.path.lexists(path) or not os.path.isdir(os.path.dirname(path) or "."):
            self.library.set_missing([path], True)
            report.unavailable += 1
        else:
            report.unavailable += 1

    def _decode(self, path: str, companion: str | None, max_side: int):
        source = best_image_path(path, companion)
        # The pixels a scan just decoded from this file at this size, when it kept them.
        image = handoff.take(source, max_side) if max_side else None
        if image is None:
            image = open_image(source, max_side=max_side)
        else:
            with self._count_lock:
                self.handed_off += 1
        return self.engine.preprocess(image)

    def _encode(self, todo: _Todo, model, scorer, attrs, report, emit, cancel, start,
                max_side: int) -> None:
        if max_side != self.config.max_side:
            base_emit = emit
            note = f"{max_side} px preview"

            def emit(p: Progress) -> None:
                base_emit(dataclasses.replace(p, note=note))
        batch_size = max(1, self.config.batch_size)
        emit(Progress("encoding", 0, todo.expected, 0.0, None, max_side))
        if not todo.total and not todo.following:
            return
        done = 0
        per_photo: float | None = None  # seconds of inference per photo, measured
        t_encode = time.monotonic()
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="photosense-decode") as pool:
            queue: deque[tuple[int, str, Future]] = deque()
            look_ahead = batch_size * 2 + self.decode_workers

            def refill():
                while len(queue) < look_ahead:
                    nxt = todo.next()
                    if nxt is None:
                        return
                    queue.append((nxt[0], nxt[1], pool.submit(self._decode, nxt[1], nxt[2], max_side)))

            while True:
                refill()
                if not queue:
                    # Everything known is encoded: a scan still running writes more.
                    if not todo.wait(self._stopped):
                        report.cancelled = report.cancelled or self._cancelled()
                        break
                    continue
                self._checkpoint()  # between two batches: interactive model requests run here
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                    for _pid, _path, fut in queue:
                        fut.cancel()
                    break
                ids, tensors = [], []
                limit = 1 if per_photo is None else max(1, min(batch_size, int(BATCH_SECONDS / per_photo)))
                while queue and len(ids) < limit:
                    self._checkpoint()
                    pid, path, fut = queue.popleft()
                    try:
                        tensors.append(fut.result())
                        ids.append(pid)
                    except (DecodeError, OSError) as exc:
                        self._failed(pid, path, exc, report)
                        done += 1
                    refill()  # keep decoders busy while the model runs
                if ids:
                    t_batch = time.monotonic()
                    feats = self.engine.encode_images(tensors)
                    per_photo = (time.monotonic() - t_batch) / len(ids)
                    scores = scorer.score_all(attrs, feats, np.asarray(ids, dtype=np.int64))
                    items_out = [
                        (pid, feats[i], {aid: float(v[i]) for aid, v in scores.items()})
                        for i, pid in enumerate(ids)
                    ]
                    report.encoded += self.library.store_features(model.id, max_side, items_out)
                    done += len(ids)
                elapsed = time.monotonic() - t_encode
                rate = done / elapsed if elapsed > 0 else 0.0
                expected = todo.expected
                eta = (expected - done) / rate if rate > 0 else None
                emit(Progress("encoding", done, expected, rate, eta, max_side))


_WAIT_SECONDS = 0.25  # a run waiting for a scan's next write checks cancel and pause this often


class _Todo:
    """The photos one pass encodes, (id, path, companion): those to encode when it started
    and, while a scan of the library runs (``activity``), those the scan writes meanwhile;
    ``writes`` is the scan writes counted before the first list was read."""

    def __init__(self, first: list, query: Callable[[], list], activity: scan_activity.ScanActivity | None,
                 writes: int = 0):
        self._items = deque(first)
        self._seen = {t[0] for t in first}
        self._query, self._activity, self._writes = query, activity, writes
        self.total = len(first)

    @property
    def expected(self) -> int:
        """Photos this pass will have encoded: those known, and those a running scan found
        and has not written yet."""
        coming = self._activity.to_read if self._activity is not None and self._activity.active else 0
        return self.total + coming

    @property
    def following(self) -> bool:
        return self._activity is not None and (self._activity.active or self._activity.writes != self._writes)

    def next(self):
        """The next photo to encode, or None for now (never waits)."""
        if not self._items and self._activity is not None and self._activity.writes != self._writes:
            self._more()
        return self._items.popleft() if self._items else None

    def wait(self, stopped: Callable[[], bool]) -> bool:
        """Wait for a running scan to write photos to encode: True when there are some, False
        when the scans ended without (or ``stopped()`` says to stop)."""
        while self.following:
            seen = self._writes
            if self._activity.writes == seen:
                self._activity.wait(seen, _WAIT_SECONDS)
            if stopped():
                return False
            if self._activity.writes != seen:
                self._more()
                if self._items:
                    return True
        return False

    def _more(self) -> None:
        writes = self._activity.writes  # before the query: a write during it is seen next time
        new = [t for t in self._query() if t[0] not in self._seen]
        self._writes = writes
        self._seen.update(t[0] for t in new)
        self._items.extend(new)
        self.total += len(new)


def rescore_attributes(library: Library, attrs: list[AttributeInfo] | None = None,
                       engine: ClipIQAEngine | None = None) -> int:
    """Score ``attrs`` (default: those missing scores) for the library's active model from
    stored features. Needs the text encoder, so the model's weights. Returns photos scored."""
    model = library.active_model()
    if model is None:
        raise PhotosenseError("nothing scored yet: run 'photosense score' first")
    engine = engine or ClipIQAEngine(load_engine_config(library))
    if engine.id != model.base:  # the id needs no torch: say so before a slow model load
        raise PhotosenseError(
            f"the library was scored with {model.base}, but the configured model is {engine.id}")
    engine.load_text()
    scorer = AttributeScorer(library, engine, model)
    attrs = attrs if attrs is not None else library.attributes_missing_scores(model.id)
    return scorer.rescore(attrs)
