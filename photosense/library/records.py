"""The plain data the library hands out and takes in: dataclasses, names and feature keys,
no ORM objects and no sessions, so that every layer and thread may hold them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

from photosense.library.models import FLAG_NONE, FLAG_PICK, FLAG_REJECT
from photosense.scoring.prompts import AttributeSpec

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


def summarise_faces(faces: list[dict] | None) -> dict[str, float | int | None]:
    """The per-photo checks from its faces: count, faces with closed eyes, sharpest eyes."""
    if faces is None:
        return {"faces": None, "eyes_closed": None, "eye_sharpness": None}
    if not faces:
        return {"faces": 0, "eyes_closed": 0, "eye_sharpness": None}
    sharp = [f["eye_sharpness"] for f in faces if f.get("eye_sharpness") is not None]
    return {"faces": len(faces),
            "eyes_closed": sum(1 for f in faces if f.get("eyes") == "closed"),
            "eye_sharpness": max(sharp) if sharp else None}


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
        return summarise_faces(self.faces)

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
