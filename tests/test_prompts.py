"""Prompt templates, sentence detection, attribute-name validation, the built-in attributes."""

from __future__ import annotations

import dataclasses

import pytest

from photosense.scoring.prompts import (
    BUILTIN_ATTRIBUTES,
    AntonymPair,
    AttributeSpec,
    builtin_attribute,
    make_prompt,
    validate_attribute_name,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sharp", "Sharp photo."),
        ("Sharp", "Sharp photo."),
        ("high contrast", "High contrast photo."),
        ("not aesthetic", "Not aesthetic photo."),
        ("  good  ", "Good photo."),
        ("very  high   contrast", "Very high contrast photo."),
    ],
)
def test_adjectives_use_the_papers_template(text, expected):
    assert make_prompt(text) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "A photo of a dog.",
        "Is this in focus?",
        "Wow!",
        "a cosy evening with friends",  # 4+ words, no punctuation
    ],
)
def test_full_sentences_are_kept_as_typed(sentence):
    assert make_prompt(f"  {sentence} \n") == sentence


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_prompt_is_rejected(text):
    with pytest.raises(ValueError, match="empty"):
        make_prompt(text)


def test_pair_gives_full_prompts_positive_first():
    assert AntonymPair("sharp", "blurry").prompts() == ("Sharp photo.", "Blurry photo.")
    assert AntonymPair("A crisp photo.", "soft").prompts() == ("A crisp photo.", "Soft photo.")


def test_pair_rejects_empty_side():
    with pytest.raises(ValueError):
        AntonymPair("sharp", " ")


def test_pair_is_frozen():
    pair = AntonymPair("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.positive = "c"  # type: ignore[misc]


@pytest.mark.parametrize(("name", "expected"), [("sharp", "sharp"), (" Golden_Hour ", "golden_hour")])
def test_valid_attribute_names(name, expected):
    assert validate_attribute_name(name) == expected


@pytest.mark.parametrize("name", ["", "  ", "a=b", "a,b", "x" * 65, "tab\there"])
def test_invalid_attribute_names(name):
    with pytest.raises(ValueError):
        validate_attribute_name(name)


def test_attribute_name_length_limit_is_inclusive():
    assert validate_attribute_name("x" * 64) == "x" * 64


def test_attribute_spec_validates_and_normalises():
    spec = AttributeSpec("Moody", (AntonymPair("moody", "cheerful"), AntonymPair("dark", "bright")))
    assert spec.name == "moody"
    assert spec.builtin is False
    assert spec.prompt_texts() == (["Moody photo.", "Dark photo."], ["Cheerful photo.", "Bright photo."])
    with pytest.raises(ValueError):
        AttributeSpec("empty", ())
    with pytest.raises(ValueError):
        AttributeSpec("a,b", (AntonymPair("x", "y"),))


def test_builtins_are_the_papers_pairs_in_order():
    got = [(s.name, s.pairs[0].positive, s.pairs[0].negative) for s in BUILTIN_ATTRIBUTES]
    assert got == [
        ("quality", "Good", "Bad"),
        ("bright", "Bright", "Dark"),
        ("sharp", "Sharp", "Blurry"),
        ("noisy", "Noisy", "Clean"),
        ("colorful", "Colorful", "Dull"),
        ("contrast", "High contrast", "Low contrast"),
        ("aesthetic", "Aesthetic", "Not aesthetic"),
        ("happy", "Happy", "Sad"),
        ("natural", "Natural", "Synthetic"),
        ("new", "New", "Old"),
        ("scary", "Scary", "Peaceful"),
        ("complex", "Complex", "Simple"),
    ]
    assert all(s.builtin and len(s.pairs) == 1 for s in BUILTIN_ATTRIBUTES)
    assert BUILTIN_ATTRIBUTES[0].pairs[0].prompts() == ("Good photo.", "Bad photo.")
    assert builtin_attribute("contrast").pairs[0].prompts() == (
        "High contrast photo.",
        "Low contrast photo.",
    )
    with pytest.raises(KeyError):
        builtin_attribute("nope")


def test_prompts_module_is_light():
    import subprocess
    import sys

    code = (
        "import sys, photosense.scoring.prompts, photosense.scoring.maths, photosense.scoring;"
        "heavy = [m for m in ('torch', 'open_clip', 'PySide6') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
