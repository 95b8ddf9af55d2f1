"""How attributes of each kind are scored from stored image features.

"prompts" attributes (antonym pairs) are scored in ``photosense.pipeline.AttributeScorer``
itself. Other kinds register a function here by dotted path, imported lazily:

    score_attribute(ctx: ScoringContext, attr: AttributeInfo, features: np.ndarray,
                    photo_ids: np.ndarray) -> np.ndarray  # one score per row, in (0, 1)

It must not decode images: everything it needs is in the features, the library and the
engine's text tower.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photosense.library import Library, ModelInfo

KIND_SCORERS: dict[str, str] = {
    "taste": "photosense.scoring.taste:score_attribute",
    "learned": "photosense.scoring.coop:score_attribute",
}


@dataclass
class ScoringContext:
    library: Library
    engine: Any  # ClipIQAEngine, loaded
    model: ModelInfo


def scorer_for(kind: str):
    try:
        target = KIND_SCORERS[kind]
    except KeyError:
        from photosense.errors import PhotosenseError

        raise PhotosenseError(f"unknown attribute kind: {kind}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
