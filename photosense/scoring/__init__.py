"""Scoring: CLIP-IQA attributes (prompts, score maths, the CLIP engine) and model-free checks.

Importing this package stays light (no torch): the engine lives in
``photosense.scoring.clipiqa`` and imports torch/open_clip only when a model is built.
"""

from photosense.scoring.maths import attribute_scores, l2_normalize
from photosense.scoring.prompts import (
    BUILTIN_ATTRIBUTES,
    AntonymPair,
    AttributeSpec,
    make_prompt,
    validate_attribute_name,
)

__all__ = [
    "BUILTIN_ATTRIBUTES",
    "AntonymPair",
    "AttributeSpec",
    "attribute_scores",
    "l2_normalize",
    "make_prompt",
    "validate_attribute_name",
]
