"""Attributes as antonym prompt pairs, in the CLIP-IQA paper's template. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

MAX_NAME_LENGTH = 64
_FORBIDDEN_NAME_CHARS = "=,"
# A phrase with this many words or more is taken as a full sentence and kept as typed.
_SENTENCE_MIN_WORDS = 4


def make_prompt(text: str) -> str:
    """Turn an adjective or short phrase into the paper's ``"[Text] photo."`` prompt.

    ``"sharp"`` -> ``"Sharp photo."``, ``"high contrast"`` -> ``"High contrast photo."``.
    A full sentence (ending in ``.``, ``!`` or ``?``, or of 4+ words) is kept as typed, stripped.
    The template matters: "[text] photo." beats "A photo of [text]." by far on KonIQ-10k.
    """
    stripped = " ".join(text.split())
    if not stripped:
        raise ValueError("a prompt cannot be empty: give an adjective (e.g. 'sharp') or a sentence")
    if stripped[-1] in ".!?" or len(stripped.split()) >= _SENTENCE_MIN_WORDS:
        return text.strip()
    return f"{stripped[0].upper()}{stripped[1:]} photo."


@dataclass(frozen=True)
class AntonymPair:
    """Two opposite prompts; the score is the probability of ``positive``."""

    positive: str
    negative: str

    def __post_init__(self) -> None:
        # Fail at construction, not at scoring time, when a prompt is empty.
        make_prompt(self.positive)
        make_prompt(self.negative)

    def prompts(self) -> tuple[str, str]:
        """The full prompt texts (positive, negative) sent to the text encoder."""
        return make_prompt(self.positive), make_prompt(self.negative)


def validate_attribute_name(name: str) -> str:
    """Return ``name`` stripped and lower-cased, or raise ValueError saying what is wrong."""
    cleaned = name.strip().lower()
    if not cleaned:
        raise ValueError("an attribute name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValueError(
            f"attribute name {cleaned[:20]!r}... is too long ({len(cleaned)} > {MAX_NAME_LENGTH})"
        )
    bad = sorted({c for c in cleaned if c in _FORBIDDEN_NAME_CHARS})
    if bad:
        raise ValueError(
            f"attribute name {cleaned!r} may not contain {' or '.join(repr(c) for c in bad)}"
        )
    if any(not c.isprintable() for c in cleaned):
        raise ValueError(f"attribute name {cleaned!r} contains control characters")
    return cleaned


@dataclass(frozen=True)
class AttributeSpec:
    """A named attribute scored by one antonym pair or an ensemble of pairs (scores averaged)."""

    name: str
    pairs: tuple[AntonymPair, ...]
    builtin: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", validate_attribute_name(self.name))
        object.__setattr__(self, "pairs", tuple(self.pairs))
        if not self.pairs:
            raise ValueError(f"attribute {self.name!r} needs at least one antonym pair")
        for pair in self.pairs:
            if not isinstance(pair, AntonymPair):
                raise TypeError(f"attribute {self.name!r}: pairs must be AntonymPair, got {pair!r}")

    def prompt_texts(self) -> tuple[list[str], list[str]]:
        """(positive prompts, negative prompts), one per pair, in order."""
        pos, neg = zip(*(p.prompts() for p in self.pairs))
        return list(pos), list(neg)


def _builtin(name: str, positive: str, negative: str) -> AttributeSpec:
    return AttributeSpec(name, (AntonymPair(positive, negative),), builtin=True)


# The paper's twelve attributes, positive first exactly as published ("noisy" scores noisiness).
BUILTIN_ATTRIBUTES: tuple[AttributeSpec, ...] = (
    _builtin("quality", "Good", "Bad"),
    _builtin("bright", "Bright", "Dark"),
    _builtin("sharp", "Sharp", "Blurry"),
    _builtin("noisy", "Noisy", "Clean"),
    _builtin("colorful", "Colorful", "Dull"),
    _builtin("contrast", "High contrast", "Low contrast"),
    _builtin("aesthetic", "Aesthetic", "Not aesthetic"),
    _builtin("happy", "Happy", "Sad"),
    _builtin("natural", "Natural", "Synthetic"),
    _builtin("new", "New", "Old"),
    _builtin("scary", "Scary", "Peaceful"),
    _builtin("complex", "Complex", "Simple"),
)


def builtin_attribute(name: str) -> AttributeSpec:
    """The built-in attribute called ``name``; KeyError if there is none."""
    for spec in BUILTIN_ATTRIBUTES:
        if spec.name == name:
            return spec
    raise KeyError(name)
