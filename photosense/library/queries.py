"""The photo queries views need: filter, sort, limit. Returns ordered photo ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from photosense.errors import PhotosenseError
from photosense.library.direction import CHECK_DIRECTIONS, HIGHER, NEAR_ZERO, direction_of
from photosense.library.models import Attribute, FaceCheck, Photo, Score
from photosense.library.records import FLAG_NAMES
from photosense.scoring.prompts import normalize_attribute_name

CHECK_COLUMNS = {"sharpness": Photo.sharpness, "exposure": Photo.exposure, "noise": Photo.noise}
# Checks from a photo's faces (photosense.scoring.faces), outer-joined: a photo whose faces were
# never looked for has none of them (it sorts last and matches no range).
FACE_COLUMNS = {"faces": "count", "eyes_closed": "eyes_closed", "eye_sharpness": "eye_sharpness"}
# Sort keys that are not attributes or checks, with their natural direction (descending?).
BASIC_SORTS = {"name": False, "capture_time": False, "mtime": False, "added": False,
               "rating": True, "flag": True, "label": False}
# Checks whose natural "best first" direction is ascending (see photosense.library.direction).
ASCENDING_BY_DEFAULT = {name for name, d in CHECK_DIRECTIONS.items() if d != HIGHER}


@dataclass
class PhotoQuery:
    """What to show. ``sort`` is an attribute name, a check, or one of BASIC_SORTS.

    ``descending=None`` uses the natural order: best first for scores and checks, by their
    direction (``photosense.library.direction``: noise and "noisy" lowest first, exposure
    closest to 0 first), oldest/A→Z first for time and name, highest rating first, picks
    before unflagged before rejects, labelled photos by label name. For an exposure-like
    "closest to 0" key, ``descending=True`` means farthest from 0 first.
    """

    sort: str = "name"
    descending: bool | None = None
    flag: str | None = None  # "pick" | "reject" | "none" | "flagged" (pick or reject)
    min_rating: int = 0
    color_label: str | None = None
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    folder_id: int | None = None
    errors_only: bool = False
    include_missing: bool = True
    limit: int | None = None
    model: str | None = None  # model key; None = the library's active model
    ids: list[int] | None = None  # restrict to these photos (e.g. a text search's result)

    def __post_init__(self) -> None:
        # Names as typed ("Warm", "Sharpness") are looked up as stored: one normalisation.
        self.sort = normalize_attribute_name(self.sort)
        self.ranges = {normalize_attribute_name(k): v for k, v in self.ranges.items()}


def _score_column(s: Session, name: str, model_id: int | None, joins: dict):
    """Return the score value column for attribute ``name`` (outer-joined once)."""
    if name in joins:
        return joins[name][1]
    attr_id = s.scalar(select(Attribute.id).where(Attribute.name == name))
    if attr_id is None:
        raise PhotosenseError(f"unknown attribute or check: {name}")
    alias = aliased(Score)
    cond = and_(alias.photo_id == Photo.id, alias.attribute_id == attr_id,
                alias.model_id == (model_id if model_id is not None else -1))
    joins[name] = (alias, alias.value, cond)
    return alias.value


def _face_column(name: str, joins: dict):
    """The face_checks column for ``name`` (the table outer-joined once for all of them)."""
    if "\0faces" not in joins:
        alias = aliased(FaceCheck)
        joins["\0faces"] = (alias, None, alias.photo_id == Photo.id)
    return getattr(joins["\0faces"][0], FACE_COLUMNS[name])


def value_column(s: Session, name: str, model_id: int | None, joins: dict):
    name = normalize_attribute_name(name)
    if name in CHECK_COLUMNS:
        return CHECK_COLUMNS[name]
    if name in FACE_COLUMNS:
        return _face_column(name, joins)
    return _score_column(s, name, model_id, joins)


def sort_direction(s: Session, name: str) -> str:
    """The direction (``photosense.library.direction``) of a check or attribute by name."""
    name = normalize_attribute_name(name)
    if name in CHECK_DIRECTIONS:
        return CHECK_DIRECTIONS[name]
    return direction_of(name, s.scalar(select(Attribute.extra).where(Attribute.name == name)))


def build_query(s: Session, q: PhotoQuery, model_id: int | None) -> Select:
    joins: dict = {}
    conds = []
    if q.flag is not None:
        if q.flag == "flagged":
            conds.append(Photo.flag != 0)
        elif q.flag in FLAG_NAMES:
            conds.append(Photo.flag == FLAG_NAMES[q.flag])
        else:
            raise PhotosenseError(f"unknown flag filter: {q.flag} (pick, reject, none, flagged)")
    if q.min_rating:
        conds.append(Photo.rating >= q.min_rating)
    if q.color_label:
        conds.append(Photo.color_label == q.color_label)
    if q.folder_id is not None:
        conds.append(Photo.folder_id == q.folder_id)
    if q.errors_only:
        conds.append(Photo.error.is_not(None))
    if not q.include_missing:
        conds.append(Photo.missing.is_(False))
    if q.ids is not None:
        conds.append(Photo.id.in_(q.ids))
    for name, (lo, hi) in q.ranges.items():
        col = value_column(s, name, model_id, joins)
        if lo is not None:
            conds.append(col >= lo)
        if hi is not None:
            conds.append(col <= hi)

    if q.sort in BASIC_SORTS:
        col = {"name": Photo.path, "capture_time": Photo.capture_time, "mtime": Photo.mtime,
               "added": Photo.id, "rating": Photo.rating, "flag": Photo.flag,
               "label": Photo.color_label}[q.sort]
        desc = BASIC_SORTS[q.sort] if q.descending is None else q.descending
    else:
        col = value_column(s, q.sort, model_id, joins)
        direction = sort_direction(s, q.sort)
        if direction == NEAR_ZERO:
            col = func.abs(col)
        natural = direction == HIGHER
        desc = natural if q.descending is None else q.descending
    # Photos without a value (not scored yet, unreadable) always come last.
    order = [col.is_(None), col.desc() if desc else col.asc(), Photo.path.asc(), Photo.id]

    stmt = select(Photo.id)
    for alias, _col, cond in joins.values():
        stmt = stmt.outerjoin(alias, cond)
    stmt = stmt.where(*conds).order_by(*order)
    if q.limit is not None:
        stmt = stmt.limit(q.limit)
    return stmt
