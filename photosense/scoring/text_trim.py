"""CLIP's text tower run only as far as the prompts reach.

CLIP pads every prompt to 77 tokens, and the text transformer's cost grows with that length.
Its attention is causal: a position sees only the positions before it. The feature is read
at the end-of-text token, so the padding after the longest prompt's end-of-text token cannot
change any feature. Cutting the tokens, the positional embedding and the causal mask there
gives the same features (to float rounding) for a fraction of the work: "Good photo." is 5
tokens of 77, and the twelve built-in attributes' 24 prompts cost a few tenths of a second
instead of about as much as one photo at 1024 px.

This only applies where it is exact: open_clip's own ``CLIP.encode_text`` with a causal mask
and the feature read at the highest token id (``argmax``, OpenAI's end-of-text). Any other
text tower runs through its own ``encode_text`` in full.
"""

from __future__ import annotations

from typing import Any


def trimmable(model: Any) -> bool:
    """True when ``model``'s text features can be computed from tokens cut after the last
    end-of-text token (see the module's docstring)."""
    try:
        from open_clip.model import CLIP
    except ImportError:  # pragma: no cover - open_clip is a dependency
        return False
    import torch

    if type(model).encode_text is not CLIP.encode_text:
        return False
    if getattr(model, "text_pool_type", None) != "argmax":
        return False
    mask = getattr(model, "attn_mask", None)
    pos = getattr(model, "positional_embedding", None)
    if not isinstance(mask, torch.Tensor) or not isinstance(pos, torch.Tensor):
        return False
    n = mask.shape[0]
    if mask.shape != (n, n) or pos.shape[0] != n:
        return False
    causal = torch.full((n, n), float("-inf"), device=mask.device).triu_(1)
    return bool(torch.equal(mask.float(), causal))


def trimmed_length(tokens) -> int:
    """How many leading tokens the longest prompt of ``tokens`` (N, context; a torch tensor or
    a numpy array) needs: up to and including its end-of-text token (each row's highest id)."""
    if tokens.shape[0] == 0:
        return int(tokens.shape[1])
    return int(tokens.argmax(-1).max()) + 1


def encode_text(model: Any, tokens):
    """``model.encode_text(tokens)`` (unnormalised), run on the tokens up to the longest
    prompt's end-of-text token when that is exact (:func:`trimmable`), else in full."""
    if not _trimmable_cached(model):
        return model.encode_text(tokens)
    length = trimmed_length(tokens)
    return encode_text_prefix(model, tokens[:, :length])


def encode_text_prefix(model: Any, tokens):
    """``CLIP.encode_text`` for tokens of any length up to the context: the positional
    embedding and the causal mask are cut to it. For a :func:`trimmable` model and tokens
    that keep every prompt's end-of-text token, these are ``encode_text``'s features."""
    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    import torch

    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    projection = model.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return x


def _trimmable_cached(model: Any) -> bool:
    known = getattr(model, "_photosense_trimmable", None)
    if known is None:
        known = trimmable(model)
        try:
            model._photosense_trimmable = known
        except AttributeError:  # pragma: no cover - a module that refuses attributes
            pass
    return known
