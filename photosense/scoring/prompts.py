"""Attributes as antonym prompt pairs, in the CLIP-IQA paper's template. No torch here."""

from __future__ import annotations

from dataclasses import dataclass

MAX_NAME_LENGTH = 64
# CLIP's text encoder reads 77 tokens (about 50 English words); a prompt far longer than that
# is a mistake (a pasted text), not a description of a photo.
MAX_PROMPT_LENGTH = 1000
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
    if any(not c.isprintable() and not c.isspace() for c in text) or any(
            c in text for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        raise ValueError(f"prompt {_short(stripped)!r} contains control characters")
    if len(stripped) > MAX_PROMPT_LENGTH:
        raise ValueError(
            f"prompt {_short(stripped)!r} is {len(stripped)} characters long (at most "
            f"{MAX_PROMPT_LENGTH}; CLIP reads only its first 77 tokens, about 50 words)")
    if stripped[-1] in ".!?" or len(stripped.split()) >= _SENTENCE_MIN_WORDS:
        return text.strip()
    return f"{stripped[0].upper()}{stripped[1:]} photo."


@dataclass(frozen=True)
class AntonymPair:
    """Two opposite prompts; the score is the probability of ``positive``."""

    positive: str
    negative: str

    def __post_init__(self) -> None:
        # Fail at construction, not at scoring time, when a prompt is empty or the two are one
        # (the same prompt twice scores every photo 0.5).
        pos, neg = make_prompt(self.positive), make_prompt(self.negative)
        if " ".join(pos.split()).casefold() == " ".join(neg.split()).casefold():
            raise ValueError(f"the positive and negative prompts are the same ({pos!r}): an "
                             "antonym pair needs two opposite prompts")

    def prompts(self) -> tuple[str, str]:
        """The full prompt texts (positive, negative) sent to the text encoder."""
        return make_prompt(self.positive), make_prompt(self.negative)


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def normalize_attribute_name(name: str) -> str:
    """The one form attribute (and check) names are stored and looked up in: lower case,
    whitespace trimmed and collapsed ("  My  Taste " -> "my taste")."""
    return " ".join(name.split()).lower()


def validate_attribute_name(name: str) -> str:
    """Return ``name`` normalised (see normalize_attribute_name), or raise ValueError saying
    what is wrong."""
    if any(not c.isprintable() and c != " " for c in name.strip()):
        raise ValueError(f"attribute name {name.strip()!r} contains control characters")
    cleaned = normalize_attribute_name(name)
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


def truncated_words(text: str, count_tokens, context_length: int = 77) -> int | None:
    """How many of ``text``'s words the text encoder reads when the prompt is longer than its
    ``context_length`` tokens (``count_tokens(text)`` counts a text's tokens, without the start
    and end tokens the encoder adds); None when it reads all of it."""
    room = context_length - 2
    if count_tokens(text) <= room:
        return None
    words = text.split()
    lo, hi = 0, len(words)  # the longest prefix of words that fits: lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(" ".join(words[:mid])) <= room:
            lo = mid
        else:
            hi = mid
    return lo
