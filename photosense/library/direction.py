"""Which way is better for each attribute and check.

Every score and check has a direction: ``HIGHER`` (sharpness, quality, a user attribute's
positive prompt by default), ``LOWER`` (the noise check, the built-in "noisy" attribute) or
``NEAR_ZERO`` (exposure: 0 is well exposed, -1 under, +1 over). "Best first" sorting,
best-of-burst, the histogram's pick/reject and ``export --top --by`` all rank by it.

A user attribute's direction is kept in its ``extra`` JSON under ``"better"`` (``"higher"``:
more like its positive prompts is better, ``"lower"``: more like its negative prompts).
"""

from __future__ import annotations

HIGHER, LOWER, NEAR_ZERO = "higher", "lower", "near zero"
DIRECTIONS = (HIGHER, LOWER, NEAR_ZERO)

CHECK_DIRECTIONS = {"sharpness": HIGHER, "noise": LOWER, "exposure": NEAR_ZERO,
                    # from the faces of a photo (photosense.scoring.faces)
                    "faces": HIGHER, "eyes_closed": LOWER, "eye_sharpness": HIGHER}
# Built-in attributes whose positive prompt names a fault ("Noisy" / "Clean").
BUILTIN_DIRECTIONS = {"noisy": LOWER}
EXTRA_KEY = "better"


def direction_of(name: str, extra: dict | None = None) -> str:
    """The direction of the check or attribute ``name`` (``extra``: the attribute's data)."""
    if name in CHECK_DIRECTIONS:
        return CHECK_DIRECTIONS[name]
    stored = extra.get(EXTRA_KEY) if isinstance(extra, dict) else None
    if stored in (HIGHER, LOWER):
        return stored
    return BUILTIN_DIRECTIONS.get(name, HIGHER)


def with_direction(extra: dict | None, direction: str) -> dict | None:
    """``extra`` with ``direction`` stored (the default, HIGHER, is stored too: explicit)."""
    if direction not in (HIGHER, LOWER):
        raise ValueError(f"an attribute is better higher or lower, not {direction!r}")
    out = dict(extra or {})
    out[EXTRA_KEY] = direction
    return out


def goodness(value: float, direction: str) -> float:
    """A number that is larger the better ``value`` is."""
    if direction == LOWER:
        return -value
    if direction == NEAR_ZERO:
        return -abs(value)
    return value


def describe(direction: str) -> str:
    return {HIGHER: "higher is better", LOWER: "lower is better",
            NEAR_ZERO: "closest to 0 is better"}[direction]
