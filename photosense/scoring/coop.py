"""CLIP-IQA+: learned prompt context (CoOp) for an antonym pair, and its scorer.

The CLIP-IQA paper's second method keeps CLIP frozen and learns 16 context token embeddings
shared by the two prompts of "Good photo." / "Bad photo.", trained with the MSE between the
positive prompt's probability and the MOS scaled to [0, 1] (SGD, lr 0.002, batch 64).

The token layout follows the official code (IceClear/CLIP-IQA, reproduced by pyiqa) so that its
published context tensor (16, 512) for RN50 gives the published scores here:

- the prompts are tokenised as ``"X X … X Good photo.."`` (16 placeholders, the class name and
  an extra ``.``; CLIP's tokenizer reads ``photo..`` as ``photo`` + ``..``);
- the placeholders' token embeddings are replaced by the context, split in two halves around the
  class tokens: ``[SOS] ctx[:8] good photo .. ctx[8:] [EOT]`` (total length unchanged, so the
  end-of-text position is that of the tokenised text);
- the context starts as the placeholders' own embeddings (the official initialisation), i.e.
  training starts from the prompts "X…X Good photo.. X…X" / "X…X Bad photo.. X…X".

Image features are frozen, so training runs on cached features: each step runs only the text
tower (token embeddings with the context spliced in, positional embedding, transformer with its
causal mask, ``ln_final``, end-of-text pooling, ``text_projection``).

A learned context is saved as safetensors: tensor ``ctx`` (n_ctx, text width) and string
metadata (``photosense_prompts``, ``model``, ``classnames`` as JSON, ``n_ctx``, ...). A plain
``.pt``/``.pth``/``.safetensors`` holding a single (n_ctx, width) tensor (the published layout)
loads too, with the default class names; ``.pt``/``.pth`` are read with
``torch.load(weights_only=True)`` (no pickled code).

Attributes of kind ``"learned"`` store ``extra={"file": path, ...}`` and are scored by
:func:`score_attribute` from stored image features, exactly like :func:`~photosense.scoring.maths.attribute_scores`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photosense import settings
from photosense.errors import PhotosenseError
from photosense.fsutil import atomic_path
from photosense.scoring.maths import attribute_scores

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from photosense.library import AttributeInfo
    from photosense.scoring.kinds import ScoringContext

log = logging.getLogger("photosense.scoring.coop")

N_CTX = 16
DEFAULT_CLASSNAMES = ("Good photo.", "Bad photo.")
PLACEHOLDER = "X"
FORMAT_TAG = "photosense-coop-1"
DEFAULT_LR = 0.002
DEFAULT_MOMENTUM = 0.9
DEFAULT_BATCH = 64
# With no --epochs: enough epochs for about this many SGD steps (small sets need many epochs).
TARGET_STEPS = 300
MAX_DEFAULT_EPOCHS = 300
_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def prompts_dir() -> Path:
    """Where learned prompt files go by default: ``data_dir()/prompts``."""
    return settings.data_dir() / "prompts"


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class LearnedPrompts:
    """A learned context: ``ctx`` (n_ctx, width) float32, shared by both class names
    (positive first). ``model`` is the model id it was trained with (None: unknown, e.g. the
    published file). ``info`` holds the other metadata (strings)."""

    ctx: np.ndarray
    classnames: tuple[str, str] = DEFAULT_CLASSNAMES
    model: str | None = None
    info: dict[str, str] = field(default_factory=dict)

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[-2])

    @property
    def width(self) -> int:
        return int(self.ctx.shape[-1])


def _check_ctx(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] == 2:
        pass  # class-specific contexts (one per prompt): the official code accepts them too
    elif arr.ndim != 2:
        raise PhotosenseError(
            f"{name}: expected a (n_ctx, width) context tensor, found shape {tuple(arr.shape)}")
    if arr.shape[-2] < 1 or arr.shape[-1] < 1:
        raise PhotosenseError(f"{name}: empty context tensor {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise PhotosenseError(f"{name}: the context tensor holds NaN or infinite values")
    return np.ascontiguousarray(arr)


def _single_tensor(tensors: dict[str, Any], name: str):
    if "ctx" in tensors:
        return tensors["ctx"]
    for key in ("prompt_learner.ctx", "module.prompt_learner.ctx"):
        if key in tensors:
            return tensors[key]
    ctx_keys = [k for k in tensors if k.endswith(".ctx")]
    if len(ctx_keys) == 1:
        return tensors[ctx_keys[0]]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise PhotosenseError(
        f"{name} holds {len(tensors)} tensors and none is called 'ctx': not a learned prompt file")


def load_prompts(path: str | os.PathLike) -> LearnedPrompts:
    """Read a learned prompt file (photosense's safetensors, or a plain single-tensor file in
    the published layout). Raises PhotosenseError with one line on any problem."""
    import torch

    p = Path(path).expanduser()
    name = p.name
    if not p.is_file():
        raise PhotosenseError(f"learned prompts file not found: {p}")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise PhotosenseError(f"cannot read {name}: {exc.strerror or exc}") from exc
    meta: dict[str, str] = {}
    is_safetensors = p.suffix == ".safetensors" or (
        len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32))
    if is_safetensors:
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types
            raise PhotosenseError(f"{name} is not a valid safetensors file ({_one_line(exc)})") from exc
    else:
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle / zip / EOF errors for anything that is not a tensor file
            raise PhotosenseError(
                f"{name} is not a tensor file torch can load safely ({_one_line(exc)})") from exc
        if torch.is_tensor(obj):
            tensors = {"ctx": obj}
        elif isinstance(obj, dict):
            if isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
            tensors = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
            if not tensors:
                raise PhotosenseError(f"{name} holds no tensors")
        else:
            raise PhotosenseError(f"{name} holds a {type(obj).__name__}, not a context tensor")
    ctx = _check_ctx(_single_tensor(tensors, name).detach().float().cpu().numpy(), name)
    classnames = DEFAULT_CLASSNAMES
    if meta.get("classnames"):
        try:
            names = json.loads(meta["classnames"])
        except ValueError:
            names = None
        if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) and n.strip() for n in names)):
            raise PhotosenseError(f"{name}: metadata 'classnames' must be a JSON list of two texts")
        classnames = (names[0], names[1])
    if meta.get("n_ctx") and meta["n_ctx"] != str(ctx.shape[-2]):
        raise PhotosenseError(f"{name}: metadata says n_ctx={meta['n_ctx']}, the tensor has {ctx.shape[-2]}")
    info = {k: v for k, v in meta.items() if k not in ("classnames", "model")}
    return LearnedPrompts(ctx=ctx, classnames=classnames, model=meta.get("model") or None, info=info)


def save_prompts(path: str | os.PathLike, prompts: LearnedPrompts) -> Path:
    """Write ``prompts`` as safetensors (atomically: a temporary file renamed into place)."""
    import torch
    from safetensors.torch import save_file

    p = Path(path).expanduser()
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    meta = {str(k): str(v) for k, v in prompts.info.items()}
    meta.update({
        "photosense_prompts": FORMAT_TAG,
        "classnames": json.dumps(list(prompts.classnames), ensure_ascii=False),
        "n_ctx": str(prompts.n_ctx),
        "width": str(prompts.width),
    })
    if prompts.model:
        meta["model"] = prompts.model
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(p, prefix=".photosense-prompts-") as tmp:
            save_file({"ctx": torch.tensor(np.asarray(prompts.ctx, dtype=np.float32)).contiguous()},
                      tmp, metadata=meta)
    except OSError as exc:
        raise PhotosenseError(f"cannot write {p}: {exc.strerror or exc}") from exc
    return p


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= 160 else first[:157] + "..."


# --------------------------------------------------------------------------- text tower


def text_width(model) -> int:
    """Width of the token embeddings of an open_clip CLIP text tower."""
    emb = getattr(model, "token_embedding", None)
    if emb is None:
        raise PhotosenseError(
            "learned prompts need a CLIP text tower with token embeddings; this model has another "
            "kind of text encoder")
    return int(emb.weight.shape[1])


def check_compatible(prompts: LearnedPrompts, engine, source: str = "the learned prompts") -> None:
    """Raise a one-line PhotosenseError when the context does not fit the engine's text tower."""
    width = text_width(engine.text_model)
    if prompts.width != width:
        raise PhotosenseError(
            f"{source} have context width {prompts.width} but model {engine.id} has text width "
            f"{width}: they were learned for another model")
    if prompts.model and prompts.model != engine.id:
        log.warning("%s were learned with %s, scoring with %s", source, prompts.model, engine.id)


class PromptTextTower:
    """Runs the frozen text tower of ``engine`` on two prompts with a spliced-in context."""

    def __init__(self, engine, classnames: tuple[str, str] = DEFAULT_CLASSNAMES, n_ctx: int = N_CTX):
        import open_clip
        import torch

        model = engine.text_model
        text_width(model)
        if n_ctx < 1:
            raise PhotosenseError("the context needs at least one token")
        self.engine, self.model = engine, model
        self.classnames = tuple(classnames)
        self.n_ctx = n_ctx
        self.device = engine.device
        self.dtype = model.token_embedding.weight.dtype
        tokenizer = open_clip.get_tokenizer(engine.model_name)
        prefix = " ".join([PLACEHOLDER] * n_ctx)
        texts = [f"{prefix} {name.strip()}." for name in self.classnames]
        tokens = tokenizer(texts)
        placeholder = tokenizer([PLACEHOLDER])[0, 1]
        if not bool((tokens[:, 1:1 + n_ctx] == placeholder).all()):
            raise PhotosenseError(
                f"model {engine.id}: its tokenizer does not read {n_ctx} context placeholders "
                "(learned prompts need CLIP's tokenizer)")
        eot = tokens.argmax(dim=-1)  # CLIP's end-of-text id is the largest
        self.name_lens = [int(e) - 1 - n_ctx for e in eot]
        if min(self.name_lens) < 1 or int(eot.max()) >= tokens.shape[1] - 1:
            raise PhotosenseError("the class names are too long for the model's context length")
        # With CLIP's causal mask nothing after the end-of-text token reaches it: run only the
        # prefix up to it (exact, and ~3x cheaper than the full 77 tokens).
        self.length = tokens.shape[1]
        if model.attn_mask is not None and getattr(model, "text_pool_type", "argmax") in ("argmax", "eos"):
            self.length = int(eot.max()) + 1
        tokens = tokens[:, :self.length]
        self.tokens = tokens.to(self.device)
        with torch.no_grad():
            embedding = model.token_embedding(self.tokens)  # (2, L, width)
        self.prefix = embedding[:, :1]
        self.suffix = embedding[:, 1 + n_ctx:]
        self.placeholder_embedding = embedding[0, 1:1 + n_ctx].detach().float().cpu().clone()

    def initial_context(self) -> torch.Tensor:
        """The official initialisation: the placeholders' token embeddings, (n_ctx, width)."""
        return self.placeholder_embedding.clone()

    def features(self, ctx: torch.Tensor) -> torch.Tensor:
        """(2, embed_dim) text features (not normalised) for a (n_ctx, width) or
        (2, n_ctx, width) context; differentiable with respect to ``ctx``."""
        import torch
        from open_clip.transformer import text_global_pool

        model = self.model
        ctx = ctx.to(self.device, self.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(2, -1, -1)
        half = self.n_ctx // 2
        rows = []
        for i, name_len in enumerate(self.name_lens):
            rows.append(torch.cat([
                self.prefix[i:i + 1],
                ctx[i:i + 1, :half],
                self.suffix[i:i + 1, :name_len],
                ctx[i:i + 1, half:],
                self.suffix[i:i + 1, name_len:],
            ], dim=1))
        x = torch.cat(rows, dim=0)
        cast = model.transformer.get_cast_dtype() if hasattr(model.transformer, "get_cast_dtype") else x.dtype
        n = self.length
        x = x.to(cast) + model.positional_embedding[:n].to(cast)
        mask = model.attn_mask
        x = model.transformer(x, attn_mask=None if mask is None else mask[:n, :n])
        x = model.ln_final(x)
        x = text_global_pool(x, self.tokens, getattr(model, "text_pool_type", "argmax"),
                             eos_token_id=getattr(model, "text_eos_id", None))
        proj = model.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
        return x.float()


def learned_text_features(engine, prompts: LearnedPrompts, source: str = "the learned prompts") -> np.ndarray:
    """(2, dim) unit text features (positive, negative) of a learned context on ``engine``."""
    import torch
    import torch.nn.functional as F

    check_compatible(prompts, engine, source)
    tower = PromptTextTower(engine, prompts.classnames, prompts.n_ctx)
    with torch.no_grad():
        feats = tower.features(torch.tensor(prompts.ctx))
    return F.normalize(feats, dim=-1).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------- training


@dataclass
class TrainingResult:
    prompts: LearnedPrompts
    initial_loss: float
    final_loss: float
    epoch_losses: list[float]  # full-set MSE after each epoch
    steps: int
    epochs: int
    cancelled: bool = False


def default_epochs(n_samples: int, batch_size: int = DEFAULT_BATCH) -> int:
    steps_per_epoch = max(1, math.ceil(n_samples / max(1, batch_size)))
    return max(1, min(MAX_DEFAULT_EPOCHS, math.ceil(TARGET_STEPS / steps_per_epoch)))


def normalise_mos(mos) -> np.ndarray:
    """MOS values scaled to [0, 1] by their observed range (min -> 0, max -> 1)."""
    m = np.asarray(mos, dtype=np.float64)
    if m.size == 0 or not np.all(np.isfinite(m)):
        raise PhotosenseError("the MOS values must be finite numbers")
    lo, hi = float(m.min()), float(m.max())
    if hi == lo:
        raise PhotosenseError("every MOS value is the same: nothing to learn")
    return (m - lo) / (hi - lo)


class _FrozenModel:
    """Context manager: no gradient for any model parameter (restored on exit)."""

    def __init__(self, model):
        self.model = model
        self.saved: list[tuple[Any, bool]] = []

    def __enter__(self):
        for p in self.model.parameters():
            self.saved.append((p, p.requires_grad))
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc):
        for p, flag in self.saved:
            p.requires_grad_(flag)


def train_prompts(
    engine,
    features: np.ndarray,
    targets: np.ndarray,
    *,
    classnames: tuple[str, str] = DEFAULT_CLASSNAMES,
    n_ctx: int = N_CTX,
    epochs: int | None = None,
    lr: float = DEFAULT_LR,
    momentum: float = DEFAULT_MOMENTUM,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    init: np.ndarray | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    cancel: threading.Event | None = None,
) -> TrainingResult:
    """Learn a context on cached unit image ``features`` (N, dim) for ``targets`` in [0, 1]
    (MSE between the positive prompt's probability and the target; CLIP frozen; SGD).

    ``progress(epoch, epochs, loss)`` is called after each epoch; ``cancel`` stops between
    steps (the context learned so far is returned, ``cancelled`` set).
    """
    import torch

    x_np = np.array(features, dtype=np.float32)  # copies: stored features may be read-only
    y_np = np.array(targets, dtype=np.float32).ravel()
    if x_np.ndim != 2 or x_np.shape[0] != y_np.shape[0]:
        raise PhotosenseError(f"need one target per feature row (got {x_np.shape} and {y_np.shape})")
    if x_np.shape[0] < 2:
        raise PhotosenseError("need at least two labelled photos to learn prompts")
    if not np.all((y_np >= 0) & (y_np <= 1)):
        raise PhotosenseError("training targets must lie in [0, 1]")
    engine.load_text()
    if x_np.shape[1] != engine.dim:
        raise PhotosenseError(
            f"feature size {x_np.shape[1]} does not match model {engine.id} ({engine.dim})")
    epochs = epochs if epochs is not None else default_epochs(len(x_np), batch_size)
    if epochs < 1:
        raise PhotosenseError("--epochs must be at least 1")
    tower = PromptTextTower(engine, classnames, n_ctx)
    device = tower.device
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    scale = float(engine.logit_scale)
    start = torch.tensor(np.asarray(init, dtype=np.float32)) if init is not None else tower.initial_context()
    if tuple(start.shape[-2:]) != (n_ctx, text_width(engine.text_model)):
        raise PhotosenseError(
            f"initial context {tuple(start.shape)} does not fit ({n_ctx}, {text_width(engine.text_model)})")
    ctx = torch.nn.Parameter(start.clone().float().to(device))
    optimizer = torch.optim.SGD([ctx], lr=lr, momentum=momentum)
    generator = torch.Generator().manual_seed(seed)

    def probabilities(rows: torch.Tensor) -> torch.Tensor:
        t = torch.nn.functional.normalize(tower.features(ctx), dim=-1)
        logits = scale * (rows @ t.T)  # (n, 2)
        return logits.softmax(dim=-1)[:, 0]

    def full_loss() -> float:
        with torch.no_grad():
            return float(torch.mean((probabilities(x) - y) ** 2))

    losses: list[float] = []
    steps = 0
    cancelled = False
    with _FrozenModel(engine.text_model), torch.enable_grad():
        initial = full_loss()
        n = len(x_np)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            for s in range(0, n, batch_size):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                idx = order[s:s + batch_size]
                loss = torch.mean((probabilities(x[idx]) - y[idx]) ** 2)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
            losses.append(full_loss())
            if progress is not None:
                progress(epoch + 1, epochs, losses[-1])
            if cancelled:
                break
    learned = LearnedPrompts(
        ctx=ctx.detach().float().cpu().numpy(), classnames=tuple(classnames), model=engine.id,
        info={"samples": str(len(x_np)), "epochs": str(len(losses)), "steps": str(steps),
              "lr": repr(lr), "loss": f"{losses[-1] if losses else initial:.6g}"})
    return TrainingResult(learned, initial, losses[-1] if losses else initial, losses, steps,
                          len(losses), cancelled)


# --------------------------------------------------------------------------- scoring


_cache: dict[tuple, np.ndarray] = {}
_cache_lock = threading.Lock()


def _file_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise PhotosenseError(f"learned prompts file not found: {path}") from exc
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def cached_text_features(engine, path: str | os.PathLike) -> np.ndarray:
    """(2, dim) unit text features of the prompt file at ``path`` for ``engine``; cached per
    (file, size, mtime, model)."""
    p = Path(path).expanduser()
    key = (*_file_key(p), engine.id)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    feats = learned_text_features(engine, load_prompts(p), source=f"learned prompts {p.name}")
    with _cache_lock:
        _cache[key] = feats
    return feats


def score_attribute(ctx: ScoringContext, attr: AttributeInfo, features: np.ndarray,
                    photo_ids: np.ndarray) -> np.ndarray:
    """Scores of a "learned" attribute: the softmax probability of the positive learned prompt
    (as :func:`~photosense.scoring.maths.attribute_scores`), one per feature row, in (0, 1)."""
    extra = attr.extra or {}
    file = extra.get("file")
    if not file:
        raise PhotosenseError(f"attribute {attr.name}: no learned prompts file recorded")
    feats = cached_text_features(ctx.engine, file)
    return attribute_scores(features, feats[:1], feats[1:], ctx.model.logit_scale)
