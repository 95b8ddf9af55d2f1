"""``Library``: the one object every layer (CLI, worker, GUI) uses to read and write the index.

Each method opens a short session and returns plain data (dataclasses, ids, numpy arrays),
never ORM objects, so callers can hand results to other threads and to the GUI.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from photosense import settings
from photosense.errors import LibraryError, PhotosenseError
from photosense.library.db import WRITE_OPTION, describe_db_error, must_open_read_only, open_engine
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
    Sidecar,
    TextFeature,
)
from photosense.scoring.prompts import (
    BUILTIN_ATTRIBUTES,
    AntonymPair,
    AttributeSpec,
    normalize_attribute_name,
    validate_attribute_name,
)

log = logging.getLogger("photosense.library")

FLAG_NAMES = {"pick": FLAG_PICK, "reject": FLAG_REJECT, "none": FLAG_NONE}
FLAG_BY_VALUE = {v: k for k, v in FLAG_NAMES.items()}
CHECK_NAMES = ("sharpness", "exposure", "noise")
#: Per-photo checks derived from its faces (photosense.scoring.faces): None = not looked for.
FACE_CHECK_NAMES = ("faces", "eyes_closed", "eye_sharpness")


@dataclass(frozen=True)
class FolderInfo:
    id: int
    path: str
    photo_count: int
    missing: bool
    # What its last scan skipped: {lower-case extension ("" for none): file count}.
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())


@dataclass(frozen=True)
class AttributeInfo:
    """An attribute as stored. ``kind`` "prompts" is scored from ``spec``'s antonym pairs;
    other kinds ("taste", "learned") by the function registered in photosense.scoring.kinds,
    from ``extra``; their ``spec`` pairs only describe them."""

    id: int
    spec: AttributeSpec
    kind: str = "prompts"
    extra: dict | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def direction(self) -> str:
        """Which way is better (``photosense.library.direction``): HIGHER or LOWER."""
        from photosense.library.direction import direction_of

        return direction_of(self.name, self.extra)


def feature_key(model_id: str, max_side: int, precision: str) -> str:
    """The identity of a set of image features: the model, the size images were encoded at
    and the precision class (``RN50-quickgelu/openai@1024px/fp32``). Features of one key are
    comparable; a view never mixes keys."""
    return f"{model_id}@{f'{max_side}px' if max_side else 'native'}/{precision}"


def split_feature_key(key: str) -> tuple[str, int | None, str | None]:
    """(model id, max side (0 = native), precision) of a feature key; a plain model id (an
    older library's, or a text-only use) gives (key, None, None)."""
    base, sep, rest = key.rpartition("@")
    if not sep or "/" not in rest:
        return key, None, None
    side, _, precision = rest.partition("/")
    if side == "native":
        return base, 0, precision
    if side.endswith("px") and side[:-2].isdigit():
        return base, int(side[:-2]), precision
    return key, None, None


@dataclass(frozen=True)
class ModelInfo:
    """A set of stored features: a model at one resolution and precision (see feature_key)."""

    id: int
    key: str
    dim: int
    logit_scale: float

    @property
    def base(self) -> str:
        """The model id alone (architecture + weights): what text features depend on."""
        return split_feature_key(self.key)[0]

    @property
    def max_side(self) -> int | None:
        return split_feature_key(self.key)[1]

    @property
    def precision(self) -> str | None:
        return split_feature_key(self.key)[2]


@dataclass(frozen=True)
class PhotoState:
    """The user's culling decisions on one photo (what undo restores)."""

    photo_id: int
    flag: int
    rating: int
    color_label: str | None


@dataclass
class PhotoRow:
    id: int
    path: str
    folder_id: int
    size: int
    mtime: float
    width: int | None
    height: int | None
    capture_time: datetime | None
    camera: str | None
    missing: bool
    error: str | None
    flag: int
    rating: int
    color_label: str | None
    checks: dict[str, float | None]
    scores: dict[str, float] = field(default_factory=dict)
    companion_path: str | None = None  # the JPEG of a RAW+JPEG pair
    # Each face as {"box": [x, y, w, h] (fractions of the upright image), "eyes": "open" |
    # "closed" | "unclear", "eye_sharpness": [0, 1), "openness"}; None = not looked for yet.
    faces: list[dict] | None = None

    @property
    def face_checks(self) -> dict[str, float | int | None]:
        """faces (count), eyes_closed (faces with closed eyes), eye_sharpness (sharpest)."""
        from photosense.scoring.faces import summarise

        return summarise(self.faces)

    @property
    def flag_name(self) -> str:
        return FLAG_BY_VALUE.get(self.flag, "none")

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class ScanRecord:
    """What a scan learned about one file (written by ``Library.upsert_scanned``)."""

    path: str
    size: int
    mtime: float
    content_hash: str | None
    width: int | None = None
    height: int | None = None
    capture_time: datetime | None = None
    camera: str | None = None
    checks: dict[str, float] | None = None
    error: str | None = None
    # A RAW+JPEG pair: ``path`` is the RAW, this the JPEG; ``size`` is then both files'
    # sizes added and ``mtime`` the newer one, so that a change to either is noticed.
    # ``content_hash`` is then a digest over both files' digests; ``companion_hash`` is the
    # JPEG's own digest (to tell whether a JPEG known alone is still the same file).
    companion_path: str | None = None
    companion_hash: str | None = None
    transient: bool = False  # ``error`` is "cannot read it now" (vanished, unplugged): not stored
    # A problem to report that does not make the photo unreadable: the RAW of a pair that
    # cannot be read while its JPEG can (not stored; the scan reports it).
    warning: str | None = None
    faces: list[dict] | None = None  # Face.as_dict() of each face; None = not looked for


def _checked_name(name: str) -> str:
    try:
        return validate_attribute_name(name)
    except ValueError as exc:
        raise PhotosenseError(str(exc)) from exc


def _vector_to_bytes(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


class Library:
    """The photosense index in one SQLite file."""

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
                stmt = sqlite_insert(Feature).values(feats)
                s.execute(stmt.on_conflict_do_update(
                    index_elements=["photo_id", "model_id"],
                    set_={"vector": stmt.excluded.vector, "max_side": stmt.excluded.max_side},
                ))
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
        with self.session() as s:
            for prompt, vec in feats.items():
                s.merge(TextFeature(model_id=model_id, prompt=prompt, vector=_vector_to_bytes(vec)))

    # -- scanning -------------------------------------------------------------------------

    def known_files(self, folder_id: int) -> dict[str, tuple[int, int, float, bool, str | None]]:
        """path -> (id, size, mtime, missing, error) for a folder's photos."""
        with self.session(write=False) as s:
            rows = s.execute(
                select(Photo.path, Photo.id, Photo.size, Photo.mtime, Photo.missing, Photo.error)
                .where(Photo.folder_id == folder_id)
            ).all()
            return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def sidecar_marks(self, folder_id: int | None = None, paths: Iterable[str] | None = None,
                      ) -> dict[str, tuple[int, int]]:
        """sidecar path -> (size, mtime_ns) as photosense last read or wrote it, for a
        folder's photos or for these sidecar paths."""
        stmt = select(Sidecar.path, Sidecar.size, Sidecar.mtime_ns)
        with self.session(write=False) as s:
            if paths is not None:
                paths = list(paths)
                rows = []
                for start in range(0, len(paths), 500):
                    rows.extend(s.execute(stmt.where(Sidecar.path.in_(paths[start:start + 500]))))
            else:
                rows = s.execute(stmt.join(Photo, Photo.id == Sidecar.photo_id)
                                 .where(Photo.folder_id == folder_id)).all()
            return {r[0]: (r[1], r[2]) for r in rows}

    def sidecar_synced_state(self, path: str) -> tuple[int, int, str | None] | None:
        """(flag, rating, colour label) the photo had when photosense last read or wrote
        this sidecar; None when it never did."""
        with self.session(write=False) as s:
            row = s.execute(select(Sidecar.flag, Sidecar.rating, Sidecar.color_label)
                            .where(Sidecar.path == path)).first()
            return None if row is None else (row[0], row[1], row[2])

    def mark_sidecars(self, marks: Iterable[tuple[str, int, int, int]]) -> None:
        """Remember sidecars photosense just read or wrote: (sidecar path, photo id, size,
        mtime_ns), with the photo's culling state as it is now."""
        marks = list(marks)
        if not marks:
            return
        with self.session() as s:
            states = {}
            ids = sorted({m[1] for m in marks})
            for start in range(0, len(ids), 500):
                for pid, flag, rating, label in s.execute(
                    select(Photo.id, Photo.flag, Photo.rating, Photo.color_label)
                    .where(Photo.id.in_(ids[start:start + 500]))
                ):
                    states[pid] = (flag, rating, label)
            for path, pid, size, mtime_ns in marks:
                if pid in states:
                    flag, rating, label = states[pid]
                    s.merge(Sidecar(path=path, photo_id=pid, size=size, mtime_ns=mtime_ns,
                                    flag=flag, rating=rating, color_label=label))

    def companion_paths(self, folder_id: int) -> dict[str, str]:
        """path -> companion path of a folder's RAW+JPEG pairs."""
        with self.session(write=False) as s:
            rows = s.execute(
                select(Photo.path, Photo.companion_path)
                .where(Photo.folder_id == folder_id, Photo.companion_path.is_not(None))
            ).all()
            return {r[0]: r[1] for r in rows}

    def upsert_scanned(self, folder_id: int, records: Sequence[ScanRecord]) -> dict[str, str]:
        """Write scan results for one folder in one transaction.

        A new path whose content hash matches a photo whose file is gone is treated as that
        photo moved or renamed: it keeps its id, features, scores and flags. Returns
        {path: "added" | "updated" | "moved"}.

        RAW+JPEG pairs (``rec.companion_path``) are one photo: a JPEG already known as a photo
        of its own becomes the pair (its id, flags and features kept), and the JPEG of a pair
        whose RAW is gone carries the photo on alone.

        The photos the records may concern (by path, companion path and content hash) are
        read up front with a few IN queries, not three queries a record (a 100k library).
        """
        outcome: dict[str, str] = {}
        now = time.time()
        records = list(records)
        faces: list[tuple[Photo, list[dict] | None]] = []
        with self.session() as s:
            known = _ScanLookup(s, records)
            for rec in records:
                photo = known.path.get(rec.path)
                kind = "updated"
                photo, same_pixels = self._pair_photo(s, rec, photo, known)
                if photo is None and rec.content_hash:
                    for cand in known.with_hash(rec.content_hash):
                        if cand.missing or not known.lexists(cand.path):
                            photo, kind = cand, "moved"
                            break
                if photo is None:
                    photo, kind = Photo(path=rec.path, folder_id=folder_id), "added"
                    s.add(photo)
                content_changed = (kind == "updated" and not same_pixels
                                   and photo.content_hash != rec.content_hash)
                before = known.keys(photo) if kind != "added" else (None, None, None)
                photo.path = rec.path
                photo.companion_path = rec.companion_path
                photo.folder_id = folder_id
                photo.size, photo.mtime = rec.size, rec.mtime
                photo.content_hash = rec.content_hash
                photo.width, photo.height = rec.width, rec.height
                photo.capture_time, photo.camera = rec.capture_time, rec.camera
                photo.missing = False
                photo.error = rec.error
                photo.scanned_at = now
                checks = rec.checks or {}
                photo.sharpness = checks.get("sharpness")
                photo.exposure = checks.get("exposure")
                photo.noise = checks.get("noise")
                known.moved(photo, before)
                if content_changed and photo.id is not None:
                    # New pixels: stored features and scores describe the old image.
                    s.execute(delete(Feature).where(Feature.photo_id == photo.id))
                    s.execute(delete(Score).where(Score.photo_id == photo.id))
                faces.append((photo, rec.faces))
                outcome[rec.path] = kind
            s.flush()  # new photos get their ids in one go
            self._put_faces(s, [(photo.id, found) for photo, found in faces])
        return outcome

    @staticmethod
    def _put_faces(s: Session, results: Sequence[tuple[int, list[dict] | None]]) -> None:
        """Replace photos' faces: (photo id, faces; None: none known, as after an unreadable
        scan). Two statements for the whole batch, not two ORM round trips a photo."""
        import json

        from photosense.scoring.faces import FACES_VERSION, summarise

        if not results:
            return
        conn = s.connection()
        ids = [(photo_id,) for photo_id, _faces in results]
        conn.exec_driver_sql("DELETE FROM face_checks WHERE photo_id = ?", ids)
        rows = []
        for photo_id, found in results:
            if found is not None:
                summary = summarise(found)
                rows.append((photo_id, summary["faces"], summary["eyes_closed"],
                             summary["eye_sharpness"], json.dumps(list(found)), FACES_VERSION))
        if rows:
            conn.exec_driver_sql(
                "INSERT INTO face_checks (photo_id, count, eyes_closed, eye_sharpness, faces, "
                "version) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def store_faces(self, results: Iterable[tuple[int, list[dict]]]) -> None:
        """Store the faces found in photos already in the library: (photo id, faces)."""
        results = list(results)
        with self.session() as s:
            present = set()
            ids = [photo_id for photo_id, _faces in results]
            for start in range(0, len(ids), 500):
                present.update(s.scalars(select(Photo.id).where(Photo.id.in_(ids[start:start + 500]))))
            self._put_faces(s, [(photo_id, found) for photo_id, found in results
                                if photo_id in present])

    def photos_needing_faces(self, folder_id: int | None = None,
                             ) -> list[tuple[int, str, str | None]]:
        """(id, path, companion path) of present, readable photos whose faces were never
        looked for, or by an older face pipeline."""
        from photosense.scoring.faces import FACES_VERSION

        with self.session(write=False) as s:
            done = select(FaceCheck.photo_id).where(FaceCheck.version == FACES_VERSION)
            q = (select(Photo.id, Photo.path, Photo.companion_path)
                 .where(Photo.missing.is_(False), Photo.error.is_(None),
                        Photo.id.not_in(done))
                 .order_by(Photo.id))
            if folder_id is not None:
                q = q.where(Photo.folder_id == folder_id)
            return [(r[0], r[1], r[2]) for r in s.execute(q)]

    def face_summaries(self, ids: Iterable[int]) -> dict[int, tuple[int, int, float | None]]:
        """{photo id: (faces, faces with closed eyes, sharpest eyes)} for those of ``ids``
        whose faces were looked for."""
        ids = sorted({int(i) for i in ids})
        out: dict[int, tuple[int, int, float | None]] = {}
        with self.session(write=False) as s:
            for start in range(0, len(ids), 500):
                for pid, count, closed, sharp in s.execute(
                        select(FaceCheck.photo_id, FaceCheck.count, FaceCheck.eyes_closed,
                               FaceCheck.eye_sharpness)
                        .where(FaceCheck.photo_id.in_(ids[start:start + 500]))):
                    out[pid] = (count, closed, sharp)
        return out

    @staticmethod
    def _pair_photo(s: Session, rec: ScanRecord, photo: Photo | None,
                    known: _ScanLookup) -> tuple[Photo | None, bool]:
        """The photo a scanned RAW+JPEG pair, or a JPEG left alone, continues; and whether
        it was the JPEG's photo (its features, made from the JPEG, still hold)."""
        if rec.companion_path:
            alone = known.path.get(rec.companion_path)
            if alone is not None and photo is None:
                # The RAW appeared beside a known JPEG: its features hold if the JPEG is the same.
                return alone, rec.companion_hash in (None, alone.content_hash)
            if alone is not None and alone.id != photo.id:
                # Both were photos of their own: one photo now, with the decisions of either.
                if photo.flag == FLAG_NONE:
                    photo.flag = alone.flag
                photo.rating = photo.rating or alone.rating
                photo.color_label = photo.color_label or alone.color_label
                known.forget(alone)
                s.delete(alone)
                s.flush()
            return photo, False
        if photo is None:
            pair = known.with_companion(rec.path)
            if pair is not None and (pair.missing or not known.lexists(pair.path)):
                return pair, True  # the RAW of a pair is gone: the JPEG goes on alone
        return photo, False

    def set_missing(self, paths: Iterable[str], missing: bool = True) -> int:
        """Mark photos whose files are gone (flags and scores are kept), or back again."""
        paths = list(paths)
        n = 0
        with self.session() as s:
            for start in range(0, len(paths), 500):
                n += s.execute(
                    update(Photo)
                    .where(Photo.path.in_(paths[start:start + 500]), Photo.missing.is_(not missing))
                    .values(missing=missing)
                ).rowcount
        return n

    def paths_under(self, directory: str) -> list[str]:
        """Known photo paths inside ``directory`` (for a folder deleted or moved away)."""
        prefix = directory.rstrip(os.sep) + os.sep
        # Paths are stored as bytes and compared bytewise: everything starting with
        # "dir/" sorts between "dir/" and "dir0" ("0" follows "/"), so the unique index on
        # path answers this without reading every photo.
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        with self.session(write=False) as s:
            return list(s.scalars(select(Photo.path).where(Photo.path >= prefix, Photo.path < upper)))

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
        columns = (Photo.id, Photo.path, Photo.folder_id, Photo.size, Photo.mtime, Photo.width,
                   Photo.height, Photo.capture_time, Photo.camera, Photo.missing, Photo.error,
                   Photo.flag, Photo.rating, Photo.color_label, Photo.sharpness, Photo.exposure,
                   Photo.noise, Photo.companion_path)
        for start in range(0, len(ids), self.ROWS_CHUNK):
            part = ids[start:start + self.ROWS_CHUNK]
            with self.session(write=False) as s:
                photos = {r[0]: r for r in s.execute(select(*columns).where(Photo.id.in_(part)))}
                faces = dict(s.execute(select(FaceCheck.photo_id, FaceCheck.faces)
                                       .where(FaceCheck.photo_id.in_(part))).all())
                scores: dict[int, dict[str, float]] = {}
                if table is not None:
                    scores = table.scores(part)
                elif model_id is not None:
                    wanted = sorted(set(part))
                    # Straight through the driver's cursor (plain tuples; 12 scores a photo:
                    # SQLAlchemy's rows took most of a 100k list's time).
                    for pid, aid, value in _fetch_plain(s, (
                            "SELECT photo_id, attribute_id, value FROM scores WHERE model_id = ? "
                            f"AND photo_id IN ({','.join('?' * len(wanted))})"), (model_id, *wanted)):
                        scores.setdefault(pid, {})[aid] = value
            for i in part:
                r = photos.get(i)
                if r is None:
                    continue
                yield PhotoRow(
                    id=r[0], path=r[1], folder_id=r[2], size=r[3], mtime=r[4], width=r[5],
                    height=r[6], capture_time=r[7], camera=r[8], missing=r[9], error=r[10],
                    flag=r[11], rating=r[12], color_label=r[13],
                    checks={"sharpness": r[14], "exposure": r[15], "noise": r[16]},
                    scores=(dict(scores[i]) if table is not None else
                            {name: values[aid] for aid, name in by_name if aid in values}
                            if (values := scores.get(i)) else {}),
                    companion_path=r[17],
                    faces=list(faces[i]) if faces.get(i) is not None else None)

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


class _ScanLookup:
    """The photos a batch of scan records may concern, read with a few IN queries and kept
    up to date as the batch changes them: by path (a record's path or companion), by
    companion path (a JPEG whose RAW may be gone) and by content hash (a moved photo), the
    last two in id order as the indexes give them. Only keys read up front are looked up,
    and for those every photo is known, so a lookup returns what a query would."""

    CHUNK = 500

    def __init__(self, s: Session, records: Sequence[ScanRecord]):
        paths = {r.path for r in records} | {r.companion_path for r in records if r.companion_path}
        alone = {r.path for r in records if not r.companion_path}
        hashes = {r.content_hash for r in records if r.content_hash}
        self.path: dict[str, Photo] = {p.path: p for p in self._load(s, Photo.path, paths)}
        self._by: dict[str, dict[str, list[Photo]]] = {"companion_path": {}, "content_hash": {}}
        self._keys = {"companion_path": alone, "content_hash": hashes}
        for column, values in ((Photo.companion_path, alone), (Photo.content_hash, hashes)):
            index = self._by[column.key]
            for p in self._load(s, column, values):
                index.setdefault(getattr(p, column.key), []).append(p)
        self._exists: dict[str, bool] = {}

    @classmethod
    def _load(cls, s: Session, column, values) -> list[Photo]:
        values = list(values)
        found: dict[int, Photo] = {}
        for start in range(0, len(values), cls.CHUNK):
            for p in s.scalars(select(Photo).where(column.in_(values[start:start + cls.CHUNK]))):
                found[p.id] = p
        return [found[i] for i in sorted(found)]

    def with_companion(self, path: str) -> Photo | None:
        """The first photo whose companion is ``path``."""
        group = self._by["companion_path"].get(path)
        return group[0] if group else None

    def with_hash(self, content_hash: str) -> list[Photo]:
        return list(self._by["content_hash"].get(content_hash, ()))

    def lexists(self, path: str) -> bool:
        if path not in self._exists:
            self._exists[path] = os.path.lexists(path)
        return self._exists[path]

    @staticmethod
    def keys(photo: Photo) -> tuple[str | None, str | None, str | None]:
        return photo.path, photo.companion_path, photo.content_hash

    def moved(self, photo: Photo, before: tuple[str | None, str | None, str | None]) -> None:
        """``photo`` (new, or changed by a record) now has its current path, companion and
        hash; ``before`` are the ones it had (all None for a new photo)."""
        old_path, *old = before
        if old_path != photo.path and self.path.get(old_path) is photo:
            del self.path[old_path]
        self.path[photo.path] = photo
        for name, old_key in zip(("companion_path", "content_hash"), old):
            index = self._by[name]
            if photo in index.get(old_key, ()):
                index[old_key].remove(photo)
            key = getattr(photo, name)
            if key in self._keys[name] and photo not in index.setdefault(key, []):
                index[key].append(photo)
                index[key].sort(key=_id_order)

    def forget(self, photo: Photo) -> None:
        """``photo`` is deleted."""
        for key in [k for k, p in self.path.items() if p is photo]:
            del self.path[key]
        for index in self._by.values():
            for group in index.values():
                if photo in group:
                    group.remove(photo)


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


def _fetch_plain(s: Session, sql: str, params: tuple) -> list[tuple]:
    """Every row of ``sql`` as plain tuples from the session's DBAPI connection; driver
    errors come out as SQLAlchemy's (so ``Library.session`` explains them)."""
    cursor = s.connection().connection.cursor()
    try:
        return cursor.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        kind = OperationalError if isinstance(exc, sqlite3.OperationalError) else DatabaseError
        raise kind(sql, params, exc) from exc
    finally:
        cursor.close()


def _id_order(photo: Photo) -> tuple[bool, int]:
    """Photos in id order, those not written yet (no id) last."""
    return photo.id is None, photo.id or 0


def _pairs_json(spec: AttributeSpec) -> list[list[str]]:
    return [[p.positive, p.negative] for p in spec.pairs]


def _spec(a: Attribute) -> AttributeSpec:
    return AttributeSpec(a.name, tuple(AntonymPair(p, n) for p, n in a.pairs), a.builtin)


def _info(a: Attribute) -> AttributeInfo:
    return AttributeInfo(a.id, _spec(a), a.kind or "prompts", a.extra)


from photosense.library.queries import PhotoQuery  # noqa: E402  (re-export; avoids a cycle)
