"""``Library``: the one object every layer (CLI, worker, GUI) uses to read and write the index.

Each method opens a short session and returns plain data (dataclasses, ids, numpy arrays),
never ORM objects, so callers can hand results to other threads and to the GUI.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from photosense import settings
from photosense.errors import LibraryError, PhotosenseError
from photosense.library.db import (
    WRITE_OPTION,
    decode_path,
    describe_db_error,
    fetch_plain,
    must_open_read_only,
    open_engine,
)
from photosense.library.models import (
    COLOR_LABELS,
    FLAG_NONE,
    FLAG_PICK,
    FLAG_REJECT,
    Attribute,
    FaceCheck,
    Feature,
    Folder,
    Model,
    Photo,
    Score,
    Setting,
    TextFeature,
)
from photosense.library.records import (
    CHECK_NAMES,
    FACE_CHECK_NAMES,
    AttributeInfo,
    FolderInfo,
    ModelInfo,
    PhotoRow,
    PhotoState,
)
from photosense.library.scan_index import ScanIndex
from photosense.scoring.prompts import (
    BUILTIN_ATTRIBUTES,
    AntonymPair,
    AttributeSpec,
    normalize_attribute_name,
    validate_attribute_name,
)

log = logging.getLogger("photosense.library")

def _checked_name(name: str) -> str:
    try:
        return validate_attribute_name(name)
    except ValueError as exc:
        raise PhotosenseError(str(exc)) from exc


def _vector_to_bytes(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class Library(ScanIndex):
    """The photosense index in one SQLite file (what scans read and write is in
    :class:`~photosense.library.scan_index.ScanIndex`)."""

    def __init__(self, path: str | os.PathLike | None = None, *, read_only: bool | None = None):
        """Open (or create) the library. ``read_only=None`` opens it read-only when it cannot
        be written (read-only media, no permission): every read works, every write raises
        LibraryError with one line. ``read_only`` tells whether it was."""
        self.path = Path(path) if path is not None else settings.default_library_path()
        if read_only is None:
            read_only = must_open_read_only(self.path)
        self.read_only = read_only
        self.engine = open_engine(self.path, read_only=read_only)
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
        # Called with the ids of photos whose flag, rating or label changed, after the commit
        # (photosense.curation.sidecar_job writes their XMP sidecars from here).
        self.culling_listeners: list[Callable[[list[int]], None]] = []
        if not read_only:
            self._seed_builtin_attributes()

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A short unit of work: committed on success, rolled back on any error.

        ``write=False`` for pure reads (never waits for writers). Environmental SQLite failures
        (locked, read-only, disk full) become LibraryError."""
        if write and self.read_only:
            raise LibraryError(
                f"library {self.path} is read-only (read-only media or no write permission): "
                "changes cannot be saved; copy it to a writable folder to change it")
        maker = self._write_sessions if write else self._read_sessions
        try:
            with maker() as s, s.begin():
                yield s
        except (OperationalError, DatabaseError) as exc:
            message = describe_db_error(exc, self.path)
            if message is None:
                raise
            raise LibraryError(message) from exc

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- settings -------------------------------------------------------------------------

    def get_setting(self, key: str, default=None):
        with self.session(write=False) as s:
            row = s.get(Setting, key)
            return default if row is None else row.value

    def set_setting(self, key: str, value) -> None:
        with self.session() as s:
            s.merge(Setting(key=key, value=value))

    # -- folders --------------------------------------------------------------------------

    def add_folder(self, path: str | os.PathLike) -> FolderInfo:
        """Add a folder (absolute, symlinks resolved). Folders inside an existing one are
        already covered; an existing folder inside the new one is merged into it."""
        real = os.path.realpath(os.fspath(path))
        if not os.path.exists(real):
            raise PhotosenseError(f"folder not found: {path}")
        if not os.path.isdir(real):
            raise PhotosenseError(f"not a folder: {path}")
        with self.session() as s:
            existing = s.scalars(select(Folder)).all()
            for f in existing:
                if real == f.path or real.startswith(f.path.rstrip(os.sep) + os.sep):
                    f.missing = False
                    return FolderInfo(f.id, f.path, self._count(s, f.id), False)
            folder = Folder(path=real, added_at=time.time(), missing=False)
            s.add(folder)
            s.flush()
            for f in existing:
                if f.path.startswith(real.rstrip(os.sep) + os.sep):
                    s.execute(update(Photo).where(Photo.folder_id == f.id).values(folder_id=folder.id))
                    s.delete(f)
            return FolderInfo(folder.id, folder.path, self._count(s, folder.id), False)

    def remove_folder(self, path_or_id: str | int) -> None:
        """Forget a folder and everything the library knows about its photos."""
        with self.session() as s:
            folder = self._find_folder(s, path_or_id)
            s.delete(folder)

    def _find_folder(self, s: Session, path_or_id: str | int) -> Folder:
        if isinstance(path_or_id, int):
            folder = s.get(Folder, path_or_id)
        else:
            real = os.path.realpath(os.fspath(path_or_id))
            folder = s.scalar(select(Folder).where(Folder.path.in_([real, os.fspath(path_or_id)])))
        if folder is None:
            raise PhotosenseError(f"folder is not in the library: {path_or_id}")
        return folder

    @staticmethod
    def _count(s: Session, folder_id: int) -> int:
        return s.scalar(select(func.count()).where(Photo.folder_id == folder_id)) or 0

    def folders(self) -> list[FolderInfo]:
        with self.session(write=False) as s:
            counts = dict(
                s.execute(select(Photo.folder_id, func.count()).group_by(Photo.folder_id)).all()
            )
            return [
                FolderInfo(f.id, f.path, counts.get(f.id, 0), f.missing, dict(f.skipped or {}))
                for f in s.scalars(select(Folder).order_by(Folder.path))
            ]

    def set_skipped_files(self, folder_id: int, skipped: dict[str, int]) -> None:
        """Record what a full scan of the folder skipped ({extension: count})."""
        with self.session() as s:
            s.execute(update(Folder).where(Folder.id == folder_id)
                      .values(skipped=dict(sorted(skipped.items()))))

    def skipped_files(self, folder_id: int) -> dict[str, int]:
        """{lower-case extension ("" for none): count} of the files of kinds photosense does
        not read that the folder's last scan skipped (hidden files and sidecars not counted);
        empty before its first scan."""
        with self.session(write=False) as s:
            value = s.scalar(select(Folder.skipped).where(Folder.id == folder_id))
        return dict(value or {})

    def set_folder_missing(self, folder_id: int, missing: bool) -> None:
        with self.session() as s:
            s.execute(update(Folder).where(Folder.id == folder_id).values(missing=missing))

    # -- attributes -----------------------------------------------------------------------

    def _seed_builtin_attributes(self) -> None:
        if self.get_setting("builtins_seeded"):
            return
        with self.session() as s:
            taken = set(s.scalars(select(Attribute.name)))
            for pos, spec in enumerate(BUILTIN_ATTRIBUTES):
                if spec.name not in taken:
                    s.add(Attribute(name=spec.name, pairs=_pairs_json(spec), builtin=True, position=pos))
            s.merge(Setting(key="builtins_seeded", value=True))

    def attributes(self) -> list[AttributeInfo]:
        with self.session(write=False) as s:
            rows = s.scalars(select(Attribute).order_by(Attribute.position, Attribute.id)).all()
            return [_info(a) for a in rows]

    def attribute(self, name: str) -> AttributeInfo:
        name = normalize_attribute_name(name)
        with self.session(write=False) as s:
            a = s.scalar(select(Attribute).where(Attribute.name == name))
            if a is None:
                raise PhotosenseError(f"unknown attribute: {name}")
            return _info(a)

    def add_attribute(self, spec: AttributeSpec, kind: str = "prompts",
                      extra: dict | None = None) -> AttributeInfo:
        name = _checked_name(spec.name)
        if name in CHECK_NAMES or name in FACE_CHECK_NAMES:
            raise PhotosenseError(f"'{name}' is the name of a check; choose another name")
        if not spec.pairs:
            raise PhotosenseError("an attribute needs at least one positive/negative pair")
        with self.session() as s:
            if s.scalar(select(Attribute.id).where(Attribute.name == name)) is not None:
                raise PhotosenseError(f"attribute '{name}' already exists")
            position = (s.scalar(select(func.max(Attribute.position))) or 0) + 1
            a = Attribute(name=name, pairs=_pairs_json(spec), builtin=False, position=position,
                          kind=kind, extra=extra)
            s.add(a)
            s.flush()
            return _info(a)

    def update_attribute(self, name: str, spec: AttributeSpec,
                         extra: dict | None | object = ...) -> AttributeInfo:
        """Rename and/or change the prompts (or ``extra`` data) of an attribute; when what
        decides its scores changed, its old scores are dropped."""
        new_name = _checked_name(spec.name)
        name = normalize_attribute_name(name)
        with self.session() as s:
            a = s.scalar(select(Attribute).where(Attribute.name == name))
            if a is None:
                raise PhotosenseError(f"unknown attribute: {name}")
            if new_name != name and s.scalar(select(Attribute.id).where(Attribute.name == new_name)):
                raise PhotosenseError(f"attribute '{new_name}' already exists")
            # Same prompts typed differently ("happy" vs "Happy") keep their scores.
            changed = (_spec(a).prompt_texts() != spec.prompt_texts()
                       or (extra is not ... and extra != a.extra))
            a.name, a.pairs = new_name, _pairs_json(spec)
            if extra is not ...:
                a.extra = extra
            if changed:
                s.execute(delete(Score).where(Score.attribute_id == a.id))
            return _info(a)

    def remove_attribute(self, name: str) -> None:
        name = normalize_attribute_name(name)
        with self.session() as s:
            a = s.scalar(select(Attribute).where(Attribute.name == name))
            if a is None:
                raise PhotosenseError(f"unknown attribute: {name}")
            s.delete(a)

    def set_attribute_direction(self, name: str, direction: str) -> AttributeInfo:
        """Store which way is better for an attribute ("higher": more like its positive
        prompts, "lower": more like its negative ones); its scores are kept."""
        from photosense.library.direction import with_direction

        name = normalize_attribute_name(name)
        with self.session() as s:
            a = s.scalar(select(Attribute).where(Attribute.name == name))
            if a is None:
                raise PhotosenseError(f"unknown attribute: {name}")
            try:
                a.extra = with_direction(a.extra, direction)
            except ValueError as exc:
                raise PhotosenseError(str(exc)) from None
            return _info(a)

    # -- models, features, scores ---------------------------------------------------------

    def ensure_model(self, key: str, dim: int, logit_scale: float) -> ModelInfo:
        with self.session() as s:
            m = s.scalar(select(Model).where(Model.key == key))
            if m is None:
                m = Model(key=key, dim=dim, logit_scale=logit_scale)
                s.add(m)
                s.flush()
            elif m.dim != dim or abs(m.logit_scale - logit_scale) > 1e-6:
                m.dim, m.logit_scale = dim, logit_scale
            return ModelInfo(m.id, m.key, m.dim, m.logit_scale)

    def model(self, key: str) -> ModelInfo | None:
        with self.session(write=False) as s:
            m = s.scalar(select(Model).where(Model.key == key))
            return None if m is None else ModelInfo(m.id, m.key, m.dim, m.logit_scale)

    def models(self) -> list[ModelInfo]:
        with self.session(write=False) as s:
            return [ModelInfo(m.id, m.key, m.dim, m.logit_scale) for m in s.scalars(select(Model))]

    def feature_count(self, model_id: int) -> int:
        with self.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(Feature)
                            .where(Feature.model_id == model_id)) or 0

    def choose_active_model(self, base: str) -> ModelInfo | None:
        """Make the feature set of model ``base`` that covers the most photos the one views
        show (ties: the higher resolution; native counts highest); None when it has none.
        A preview pass's set is shown until the full-size one covers as many photos."""
        with self.session(write=False) as s:
            rows = s.execute(
                select(Model, func.count(Feature.photo_id))
                .outerjoin(Feature, Feature.model_id == Model.id).group_by(Model.id)).all()
        sets = [(ModelInfo(m.id, m.key, m.dim, m.logit_scale), n) for m, n in rows]
        sets = [(m, n) for m, n in sets if m.base == base and n > 0]
        if not sets:
            return None
        best, _ = max(sets, key=lambda mn: (mn[1], mn[0].max_side or (1 << 30)))
        if self.get_setting("active_model") != best.key:
            log.info("views show %s (%d photos)", best.key, dict((m.key, n) for m, n in sets)[best.key])
            self.set_setting("active_model", best.key)
        return best

    def active_model(self) -> ModelInfo | None:
        """The model whose scores views show: the one last used to score."""
        key = self.get_setting("active_model")
        return self.model(key) if key else None

    def photos_needing_features(self, model_id: int, with_companion: bool = False,
                                ) -> list[tuple[int, str]] | list[tuple[int, str, str | None]]:
        """(id, path) of present, readable photos without a feature for this model;
        (id, path, companion path) with ``with_companion``."""
        with self.session(write=False) as s:
            has = select(Feature.photo_id).where(Feature.model_id == model_id)
            q = (
                select(Photo.id, Photo.path, Photo.companion_path)
                .where(Photo.missing.is_(False), Photo.error.is_(None), Photo.id.not_in(has))
                .order_by(Photo.id)
            )
            if with_companion:
                return [(r[0], r[1], r[2]) for r in s.execute(q)]
            return [(r[0], r[1]) for r in s.execute(q)]

    def store_features(
        self,
        model_id: int,
        max_side: int,
        items: Sequence[tuple[int, np.ndarray, dict[int, float]]],
    ) -> int:
        """Store (photo id, feature, {attribute id: score}) in one transaction: a photo is
        scored completely or not at all. Photos deleted meanwhile are skipped."""
        if not items:
            return 0
        with self.session() as s:
            present = set(
                s.scalars(select(Photo.id).where(Photo.id.in_([i[0] for i in items])))
            )
            attr_ids = set(s.scalars(select(Attribute.id)))  # some may be removed meanwhile
            feats, scores = [], []
            for pid, vec, attr_scores in items:
                if pid not in present:
                    continue
                feats.append({"photo_id": pid, "model_id": model_id,
                              "vector": _vector_to_bytes(vec), "max_side": max_side})
                scores.extend(
                    {"photo_id": pid, "attribute_id": aid, "model_id": model_id, "value": float(v)}
                    for aid, v in attr_scores.items() if aid in attr_ids
                )
            if feats:
                # One prepared statement (a scoring run stores a batch of one or two photos a
                # second: the ORM's statement compilation cost more than the write).
                s.connection().exec_driver_sql(
                    "INSERT INTO features (photo_id, model_id, vector, max_side) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (photo_id, model_id) DO UPDATE SET vector = excluded.vector, "
                    "max_side = excluded.max_side",
                    [(f["photo_id"], f["model_id"], f["vector"], f["max_side"]) for f in feats],
                )
            self._upsert_scores(s, scores)
            return len(feats)

    @staticmethod
    def _upsert_scores(s: Session, rows: list[dict]) -> None:
        if not rows:
            return
        # One prepared statement run with executemany: far faster than multi-row VALUES
        # statements compiled by the ORM (100k scores: well under a second).
        s.connection().exec_driver_sql(
            "INSERT INTO scores (photo_id, attribute_id, model_id, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (photo_id, attribute_id, model_id) DO UPDATE SET value = excluded.value",
            [(r["photo_id"], r["attribute_id"], r["model_id"], r["value"]) for r in rows],
        )

    def set_photo_error(self, photo_id: int, error: str | None) -> None:
        self.set_photo_errors([(photo_id, error)])

    def set_photo_errors(self, errors: Iterable[tuple[int, str | None]]) -> None:
        """Record (photo id, error) pairs in one transaction (None clears an error)."""
        with self.session() as s:
            for photo_id, error in errors:
                s.execute(update(Photo).where(Photo.id == photo_id).values(error=error))

    def feature_matrix(self, model_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(photo ids, (N, dim) float32 matrix) of every stored feature for a model."""
        with self.session(write=False) as s:
            dim = s.scalar(select(Model.dim).where(Model.id == model_id)) or 0
            conn = s.connection()
            n = conn.exec_driver_sql(
                "SELECT count(*) FROM features WHERE model_id = ?", (model_id,)).scalar_one()
            ids = np.empty(n, dtype=np.int64)
            mat = np.empty((n, dim), dtype=np.float32)
            # Straight through the driver, streamed into one preallocated matrix: 100k rows of
            # 4 KB without per-row ORM overhead and without a second copy of all the bytes.
            i = 0
            for part_ids, part in self._feature_chunks(s, model_id, dim):
                k = min(len(part_ids), n - i)  # rows added since the count (a concurrent writer): next time
                ids[i:i + k], mat[i:i + k] = part_ids[:k], part[:k]
                i += k
                if i == n:
                    break
        return ids[:i], mat[:i]

    FEATURE_CHUNK = 4096

    def iter_features(self, model_id: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored feature of a model as (photo ids, matrix) chunks in id order, from one
        read transaction: work that goes row by row (scoring an attribute) never holds the
        whole matrix (400 MB at 100k photos)."""
        with self.session(write=False) as s:
            dim = s.scalar(select(Model.dim).where(Model.id == model_id)) or 0
            yield from self._feature_chunks(s, model_id, dim)

    def _feature_chunks(self, s: Session, model_id: int, dim: int
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        result = s.connection().exec_driver_sql(
            "SELECT photo_id, vector FROM features WHERE model_id = ? ORDER BY photo_id",
            (model_id,))
        while chunk := result.fetchmany(self.FEATURE_CHUNK):
            ids = np.fromiter((r[0] for r in chunk), dtype=np.int64, count=len(chunk))
            # One join and one frombuffer a chunk, not a numpy call a row.
            mat = np.frombuffer(b"".join(r[1] for r in chunk), dtype=np.float32)
            yield ids, mat.reshape(len(chunk), dim)

    def features_for(self, model_id: int, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(photo ids, matrix) of the stored features of ``ids`` under a model, in id order;
        photos without a feature are left out. Reads only those rows (not the whole table)."""
        wanted = sorted(set(int(i) for i in ids))
        rows: list = []
        with self.session(write=False) as s:
            dim = s.scalar(select(Model.dim).where(Model.id == model_id))
            for start in range(0, len(wanted), 500):
                rows.extend(s.execute(
                    select(Feature.photo_id, Feature.vector)
                    .where(Feature.model_id == model_id,
                           Feature.photo_id.in_(wanted[start:start + 500]))
                ).all())
        rows.sort(key=lambda r: r[0])
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return out_ids, np.zeros((0, dim or 0), dtype=np.float32)
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return out_ids, mat

    def replace_scores(self, model_id: int, attribute_id: int, ids: np.ndarray, values: np.ndarray) -> None:
        """Store one attribute's scores; photos or the attribute removed meanwhile (by another
        thread, while the scores were computed) are skipped."""
        with self.session() as s:
            if s.get(Attribute, attribute_id) is None:
                return
            present = set(s.scalars(select(Photo.id)))
            self._upsert_scores(s, [
                {"photo_id": p, "attribute_id": attribute_id, "model_id": model_id, "value": v}
                for p, v in zip(np.asarray(ids).tolist(), np.asarray(values, dtype=float).tolist())
                if p in present
            ])

    def attributes_missing_scores(self, model_id: int) -> list[AttributeInfo]:
        """Attributes with fewer scores than the model has features (new or edited ones)."""
        with self.session(write=False) as s:
            n_feat = s.scalar(select(func.count()).where(Feature.model_id == model_id)) or 0
            counts = dict(s.execute(
                select(Score.attribute_id, func.count())
                .where(Score.model_id == model_id)
                .group_by(Score.attribute_id)
            ).all())
            attrs = s.scalars(select(Attribute).order_by(Attribute.position)).all()
            return [_info(a) for a in attrs if counts.get(a.id, 0) < n_feat]

    def text_features(self, model_id: int, prompts: Iterable[str]) -> dict[str, np.ndarray]:
        prompts = list(prompts)
        with self.session(write=False) as s:
            rows = s.execute(
                select(TextFeature.prompt, TextFeature.vector)
                .where(TextFeature.model_id == model_id, TextFeature.prompt.in_(prompts))
            ).all()
        return {p: np.frombuffer(v, dtype=np.float32).copy() for p, v in rows}

    def store_text_features(self, model_id: int, feats: dict[str, np.ndarray]) -> None:
        if not feats:
            return
        with self.session() as s:  # one statement for all (a new library's 24 prompts)
            s.connection().exec_driver_sql(
                "INSERT INTO text_features (model_id, prompt, vector) VALUES (?, ?, ?) "
                "ON CONFLICT (model_id, prompt) DO UPDATE SET vector = excluded.vector",
                [(model_id, prompt, _vector_to_bytes(vec)) for prompt, vec in feats.items()],
            )

    # -- scanning -------------------------------------------------------------------------

    def folder_for_path(self, path: str, folders: Sequence[FolderInfo] | None = None
                        ) -> FolderInfo | None:
        """The library folder that contains ``path`` (deepest match), if any; pass
        ``folders()`` when looking up many paths."""
        best = None
        for f in self.folders() if folders is None else folders:
            if path == f.path or path.startswith(f.path.rstrip(os.sep) + os.sep):
                if best is None or len(f.path) > len(best.path):
                    best = f
        return best

    # -- culling --------------------------------------------------------------------------

    def resolve_paths(self, paths: Iterable[str]) -> dict[str, int]:
        """Map user-given paths (relative or absolute) to photo ids; unknown ones raise."""
        result = {}
        with self.session(write=False) as s:
            for p in paths:
                cands = {os.path.abspath(p), os.path.realpath(p)}
                pid = s.scalar(select(Photo.id).where(Photo.path.in_(list(cands))))
                if pid is None:  # the JPEG of a RAW+JPEG pair names the pair
                    pid = s.scalar(select(Photo.id).where(Photo.companion_path.in_(list(cands))))
                if pid is None:
                    raise PhotosenseError(f"not in the library: {p}")
                result[p] = pid
        return result

    def states(self, ids: Iterable[int]) -> list[PhotoState]:
        ids = list(ids)
        with self.session(write=False) as s:
            rows = s.execute(
                select(Photo.id, Photo.flag, Photo.rating, Photo.color_label).where(Photo.id.in_(ids))
            ).all()
        by_id = {r[0]: PhotoState(*r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def set_states(self, states: Iterable[PhotoState], *, sync_sidecars: bool = True) -> None:
        states = list(states)
        with self.session() as s:
            for st in states:
                s.execute(update(Photo).where(Photo.id == st.photo_id).values(
                    flag=st.flag, rating=st.rating, color_label=st.color_label))
        if sync_sidecars:  # False: the change came from the sidecars themselves
            self.culling_changed([st.photo_id for st in states])

    def culling_changed(self, ids: Sequence[int]) -> None:
        """Tell the culling listeners these photos changed; a listener's failure is logged and
        never undoes or hides the library change."""
        ids = list(ids)
        if not ids:
            return
        for fn in list(self.culling_listeners):
            try:
                fn(ids)
            except Exception:  # noqa: BLE001 - the change is committed; report, go on
                log.exception("culling listener failed")

    _UNSET = object()

    def set_culling(self, ids: Iterable[int], *, flag: int | None = None,
                    rating: int | None = None, color_label=_UNSET) -> list[PhotoState]:
        """Change flag / rating / colour label of photos; returns their previous states."""
        if flag is not None and flag not in (FLAG_PICK, FLAG_NONE, FLAG_REJECT):
            raise PhotosenseError(f"invalid flag: {flag}")
        if rating is not None and not 0 <= rating <= 5:
            raise PhotosenseError("rating must be between 0 and 5")
        if color_label is not self._UNSET and color_label is not None and color_label not in COLOR_LABELS:
            raise PhotosenseError(f"colour label must be one of {', '.join(COLOR_LABELS)}")
        ids = list(ids)
        before = self.states(ids)
        values: dict = {}
        if flag is not None:
            values["flag"] = flag
        if rating is not None:
            values["rating"] = rating
        if color_label is not self._UNSET:
            values["color_label"] = color_label
        if values and ids:
            with self.session() as s:
                for start in range(0, len(ids), 500):
                    s.execute(update(Photo).where(Photo.id.in_(ids[start:start + 500])).values(**values))
            self.culling_changed(ids)
        return before

    def time_and_hash(self, ids: Iterable[int] | None = None, include_missing: bool = False,
                      ) -> list[tuple[int, datetime | None, float, str | None]]:
        """(id, capture time, mtime, content hash) of photos (all, or ``ids``), by id; photos
        marked missing are left out unless ``include_missing``."""
        with self.session(write=False) as s:
            stmt = select(Photo.id, Photo.capture_time, Photo.mtime, Photo.content_hash)
            if not include_missing:
                stmt = stmt.where(Photo.missing.is_(False))
            if ids is None:
                rows = s.execute(stmt.order_by(Photo.id)).all()
            else:
                wanted = sorted(set(int(i) for i in ids))
                rows = []
                for start in range(0, len(wanted), 500):
                    rows.extend(s.execute(stmt.where(Photo.id.in_(wanted[start:start + 500]))).all())
                rows.sort(key=lambda r: r[0])
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def check_values(self, ids: Sequence[int]) -> np.ndarray:
        """(len(ids), 3) float64 matrix of the checks (CHECK_NAMES order) of ``ids``, in the
        given order; NaN where a check (or the photo) is unknown."""
        ids = [int(i) for i in ids]
        out = np.full((len(ids), len(CHECK_NAMES)), np.nan)
        if not ids:
            return out
        found: dict[int, tuple] = {}
        with self.session(write=False) as s:
            unique = sorted(set(ids))
            for start in range(0, len(unique), 500):
                for pid, *vals in s.execute(
                    select(Photo.id, Photo.sharpness, Photo.exposure, Photo.noise)
                    .where(Photo.id.in_(unique[start:start + 500]))
                ):
                    found[pid] = tuple(np.nan if v is None else v for v in vals)
        for row, pid in enumerate(ids):
            if pid in found:
                out[row] = found[pid]
        return out

    # -- queries --------------------------------------------------------------------------

    def query_ids(self, query: PhotoQuery) -> list[int]:
        from photosense.library.queries import build_query

        with self.session(write=False) as s:
            stmt = build_query(s, query, self._model_id_for(s, query))
            return list(s.scalars(stmt))

    def _model_id_for(self, s: Session, query: PhotoQuery) -> int | None:
        key = query.model or self._active_key(s)
        if not key:
            return None
        return s.scalar(select(Model.id).where(Model.key == key))

    @staticmethod
    def _active_key(s: Session) -> str | None:
        row = s.get(Setting, "active_model")
        return None if row is None else row.value

    ROWS_CHUNK = 2000

    def rows(self, ids: Sequence[int], model: str | None = None) -> list[PhotoRow]:
        """Full rows (with checks and every attribute score) for the given ids, in order."""
        return list(self.iter_rows(ids, model))

    def iter_rows(self, ids: Sequence[int], model: str | None = None) -> Iterator[PhotoRow]:
        """``rows`` streamed, a chunk of ids at a time, from plain column selects (no ORM
        objects): a 100k ``list --format json`` never holds every row. Scores are in
        attribute name order. Each chunk is read in a session of its own."""
        ids = list(ids)
        if not ids:
            return
        with self.session(write=False) as s:
            key = model or self._active_key(s)
            model_id = s.scalar(select(Model.id).where(Model.key == key)) if key else None
            by_name = s.execute(select(Attribute.id, Attribute.name).order_by(Attribute.name)).all()
            table = None
            if model_id is not None and len(ids) > 4 * self.ROWS_CHUNK:
                table = _ScoreTable(s, model_id, ids, by_name)
        dialect = self.engine.dialect
        to_datetime = Photo.__table__.c.capture_time.type.dialect_impl(dialect).result_processor(
            dialect, None) or (lambda value: value)  # SQLite: ISO text -> datetime
        for start in range(0, len(ids), self.ROWS_CHUNK):
            part = ids[start:start + self.ROWS_CHUNK]
            marks = ",".join("?" * len(part))
            with self.session(write=False) as s:
                # Plain tuples straight through the driver's cursor, converted here as the
                # columns' types would (SQLAlchemy's rows took most of a 100k list's time).
                photos = {r[0]: r for r in fetch_plain(s, (
                    f"SELECT {_ROW_COLUMNS} FROM photos WHERE id IN ({marks})"), tuple(part))}
                faces = dict(fetch_plain(s, (
                    f"SELECT photo_id, faces FROM face_checks WHERE photo_id IN ({marks})"),
                    tuple(part)))
                scores: dict[int, dict[str, float]] = {}
                if table is not None:
                    scores = table.scores(part)
                elif model_id is not None:
                    wanted = sorted(set(part))
                    for pid, aid, value in fetch_plain(s, (
                            "SELECT photo_id, attribute_id, value FROM scores WHERE model_id = ? "
                            f"AND photo_id IN ({','.join('?' * len(wanted))})"), (model_id, *wanted)):
                        scores.setdefault(pid, {})[aid] = value
            for i in part:
                r = photos.get(i)
                if r is None:
                    continue
                yield PhotoRow(
                    id=r[0], path=decode_path(r[1]), folder_id=r[2], size=r[3], mtime=r[4], width=r[5],
                    height=r[6], capture_time=None if r[7] is None else to_datetime(r[7]),
                    camera=r[8], missing=bool(r[9]), error=r[10],
                    flag=r[11], rating=r[12], color_label=r[13],
                    checks={"sharpness": r[14], "exposure": r[15], "noise": r[16]},
                    scores=(dict(scores[i]) if table is not None else
                            {name: values[aid] for aid, name in by_name if aid in values}
                            if (values := scores.get(i)) else {}),
                    companion_path=decode_path(r[17]),
                    faces=_faces(faces.get(i)))

    def query(self, query: PhotoQuery) -> list[PhotoRow]:
        return self.rows(self.query_ids(query), query.model)

    def iter_query(self, query: PhotoQuery) -> Iterator[PhotoRow]:
        """``query`` streamed (see ``iter_rows``)."""
        return self.iter_rows(self.query_ids(query), query.model)

    def sort_values(self, key: str, ids: Sequence[int], model: str | None = None,
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float64 values) of one score or check (``key``) for the photos ``ids``, in
        their order, those without a value left out: one (id, value) query, not full rows
        (the window's histogram after every query of a 100k library)."""
        from photosense.library.queries import CHECK_COLUMNS, FACE_COLUMNS

        ids = [int(i) for i in ids]
        key = normalize_attribute_name(key)
        with self.session(write=False) as s:
            if key in CHECK_COLUMNS:
                col = CHECK_COLUMNS[key]
                stmt = select(Photo.id, col).where(col.is_not(None))
                id_col = Photo.id
            elif key in FACE_COLUMNS:
                col = getattr(FaceCheck, FACE_COLUMNS[key])
                stmt = select(FaceCheck.photo_id, col).where(col.is_not(None))
                id_col = FaceCheck.photo_id
            else:
                attr_id = s.scalar(select(Attribute.id).where(Attribute.name == key))
                if attr_id is None:
                    raise PhotosenseError(f"unknown attribute or check: {key}")
                model_id = self._model_id_for(s, PhotoQuery(model=model))
                # Straight from the scores' (attribute, model, value) index.
                stmt = select(Score.photo_id, Score.value).where(
                    Score.attribute_id == attr_id, Score.model_id == (model_id or -1))
                id_col = Score.photo_id
            if len(ids) > self.ROWS_CHUNK:
                wanted = set(ids)  # most of the library: one pass over it, filtered here
                found = {pid: v for pid, v in s.execute(stmt) if pid in wanted}
            else:
                found = dict(s.execute(stmt.where(id_col.in_(ids))).all())
        kept = [i for i in ids if i in found]
        return (np.asarray(kept, dtype=np.int64),
                np.asarray([found[i] for i in kept], dtype=np.float64))

    def photo_count(self) -> int:
        with self.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(Photo)) or 0


class _ScoreTable:
    """Every score of a model for many photos, read in one pass over the scores (not an IN
    lookup a chunk, in a random order) into a (photos, attributes) matrix; NaN = no score
    (stored scores are never NaN: the column is NOT NULL)."""

    def __init__(self, s: Session, model_id: int, ids: Sequence[int], by_name: Sequence[tuple[int, str]]):
        self.ids = np.unique(np.asarray(ids, dtype=np.int64))
        self.names = [name for _aid, name in by_name]
        self.values = np.full((len(self.ids), len(by_name)), np.nan)
        if not by_name or not len(self.ids):
            return
        top = max(aid for aid, _name in by_name)
        column = np.full(top + 1, -1, dtype=np.int64)
        for k, (aid, _name) in enumerate(by_name):
            column[aid] = k
        cursor = s.connection().connection.cursor()
        try:
            cursor.execute("SELECT photo_id, attribute_id, value FROM scores WHERE model_id = ?",
                           (model_id,))
            while rows := cursor.fetchmany(200_000):
                a = np.array(rows, dtype=np.float64)
                pid, aid = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
                pos = np.minimum(np.searchsorted(self.ids, pid), len(self.ids) - 1)
                col = column[np.clip(aid, 0, top)]
                ok = (self.ids[pos] == pid) & (aid <= top) & (col >= 0)
                self.values[pos[ok], col[ok]] = a[ok, 2]
        except sqlite3.Error as exc:
            kind = OperationalError if isinstance(exc, sqlite3.OperationalError) else DatabaseError
            raise kind("SELECT ... FROM scores", (model_id,), exc) from exc
        finally:
            cursor.close()

    def scores(self, photo_ids: Sequence[int]) -> dict[int, dict[str, float]]:
        """{photo id: {attribute name: score}} of some of the photos (one numpy call)."""
        wanted = np.asarray(photo_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, wanted), max(len(self.ids) - 1, 0))
        names = self.names
        return {pid: {name: v for name, v in zip(names, row) if v == v}
                for pid, row in zip(wanted.tolist(), self.values[pos].tolist())}


# The photos columns a PhotoRow is made of, in the order ``iter_rows`` reads them.
_ROW_COLUMNS = ("id, path, folder_id, size, mtime, width, height, capture_time, camera, missing, "
                "error, flag, rating, color_label, sharpness, exposure, noise, companion_path")


def _faces(value: str | None) -> list[dict] | None:
    """A photo's stored faces (JSON text); most photos have none ("[]")."""
    if value is None:
        return None
    return [] if value == "[]" else json.loads(value)


def _pairs_json(spec: AttributeSpec) -> list[list[str]]:
    return [[p.positive, p.negative] for p in spec.pairs]


def _spec(a: Attribute) -> AttributeSpec:
    return AttributeSpec(a.name, tuple(AntonymPair(p, n) for p, n in a.pairs), a.builtin)


def _info(a: Attribute) -> AttributeInfo:
    return AttributeInfo(a.id, _spec(a), a.kind or "prompts", a.extra)


from photosense.library.queries import PhotoQuery  # noqa: E402  (re-export; avoids a cycle)
