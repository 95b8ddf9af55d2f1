"""The photosense index: SQLite through SQLAlchemy, schema-versioned."""

from photosense.library.library import Library
from photosense.library.models import COLOR_LABELS, FLAG_NONE, FLAG_PICK, FLAG_REJECT
from photosense.library.queries import PhotoQuery
from photosense.library.records import (
    CHECK_NAMES,
    FACE_CHECK_NAMES,
    FLAG_BY_VALUE,
    FLAG_NAMES,
    AttributeInfo,
    FolderInfo,
    ModelInfo,
    PhotoRow,
    PhotoState,
    ScanRecord,
    feature_key,
    split_feature_key,
)

__all__ = [
    "CHECK_NAMES", "COLOR_LABELS", "FACE_CHECK_NAMES", "FLAG_BY_VALUE", "FLAG_NAMES", "FLAG_NONE", "FLAG_PICK",
    "FLAG_REJECT", "AttributeInfo", "FolderInfo", "Library", "ModelInfo", "PhotoQuery",
    "PhotoRow", "PhotoState", "ScanRecord", "feature_key", "split_feature_key",
]
