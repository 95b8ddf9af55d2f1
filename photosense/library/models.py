"""The library's tables (SQLAlchemy 2.x typed ORM).

Paths are stored as bytes (``os.fsencode``) so file names that are not valid UTF-8 survive a
round trip; Python sees them as ``str`` with surrogate escapes, exactly as ``os.listdir`` gives
them.
"""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class FsPath(TypeDecorator):
    """A filesystem path stored as its raw bytes."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else os.fsencode(value)

    def process_result_value(self, value, dialect):
        return None if value is None else os.fsdecode(bytes(value))


class Base(DeclarativeBase):
    pass


FLAG_REJECT, FLAG_NONE, FLAG_PICK = -1, 0, 1
COLOR_LABELS = ("red", "yellow", "green", "blue", "purple")


class Folder(Base):
    __tablename__ = "folders"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    added_at: Mapped[float] = mapped_column(Float)
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    # Files the last full scan skipped because photosense does not read their kind:
    # {lower-case extension (".mov", "" for none): count}. Hidden files and sidecars not counted.
    skipped: Mapped[dict | None] = mapped_column(JSON)


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(FsPath, unique=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    mtime: Mapped[float] = mapped_column(Float, default=0.0)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    capture_time: Mapped[datetime | None] = mapped_column(DateTime)
    camera: Mapped[str | None] = mapped_column(String(200))
    missing: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    error: Mapped[str | None] = mapped_column(String(500))
    scanned_at: Mapped[float] = mapped_column(Float, default=0.0)
    sharpness: Mapped[float | None] = mapped_column(Float)
    exposure: Mapped[float | None] = mapped_column(Float)
    noise: Mapped[float | None] = mapped_column(Float)
    flag: Mapped[int] = mapped_column(Integer, default=FLAG_NONE, index=True)
    rating: Mapped[int] = mapped_column(Integer, default=0)
    color_label: Mapped[str | None] = mapped_column(String(16))
    # RAW+JPEG shot as one photo: ``path`` is the RAW, this is the JPEG beside it (same stem).
    companion_path: Mapped[str | None] = mapped_column(FsPath, index=True)


class Model(Base):
    """One set of comparable image features: an encoder (architecture + weights) at one
    resolution and precision (``key`` is photosense.library.feature_key's); features and
    scores belong to one."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    dim: Mapped[int] = mapped_column(Integer)
    logit_scale: Mapped[float] = mapped_column(Float)


class Feature(Base):
    """The L2-normalised image feature of one photo under one model (float32 bytes)."""

    __tablename__ = "features"

    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    max_side: Mapped[int] = mapped_column(Integer, default=0)


class TextFeature(Base):
    __tablename__ = "text_features"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    prompt: Mapped[str] = mapped_column(String(1000), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Attribute(Base):
    """A look/feel attribute: one or more antonym prompt pairs, positive first."""

    __tablename__ = "attributes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    pairs: Mapped[list] = mapped_column(JSON)  # [[positive, negative], ...] as typed
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    # "prompts" (antonym pairs, the default), or another kind scored by the function that
    # photosense.scoring.kinds registers for it ("taste", "learned"); ``extra`` is its data.
    kind: Mapped[str] = mapped_column(String(16), default="prompts", server_default="prompts")
    extra: Mapped[dict | None] = mapped_column(JSON)


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (Index("ix_scores_attr_model_value", "attribute_id", "model_id", "value"),)

    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True
    )
    attribute_id: Mapped[int] = mapped_column(
        ForeignKey("attributes.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[int] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[float] = mapped_column(Float)


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)


class Sidecar(Base):
    """An XMP sidecar as photosense last read or wrote it: its (size, mtime) then, and the
    photo's culling state then (to tell an external edit from photosense's own write, and
    whether the library changed since)."""

    __tablename__ = "sidecars"

    path: Mapped[str] = mapped_column(FsPath, primary_key=True)
    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    flag: Mapped[int] = mapped_column(Integer)
    rating: Mapped[int] = mapped_column(Integer)
    color_label: Mapped[str | None] = mapped_column(String(16))


class FaceCheck(Base):
    """The faces found in one photo (see photosense.scoring.faces): how many, how many with
    closed eyes, the sharpest eyes, and each face as ``{"box", "eyes", "eye_sharpness",
    "openness"}``. No row: not looked for yet (a library from before faces, or a photo that
    could not be read); ``version`` tells results of an older face pipeline."""

    __tablename__ = "face_checks"

    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0, index=True)
    eyes_closed: Mapped[int] = mapped_column(Integer, default=0, index=True)
    eye_sharpness: Mapped[float | None] = mapped_column(Float, index=True)
    faces: Mapped[list] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
