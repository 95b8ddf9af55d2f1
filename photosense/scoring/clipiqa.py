"""The CLIP-IQA engine: CLIP image/text features for antonym-prompt scoring.

Follows Wang, Chan & Loy (AAAI 2023): open_clip ``RN50-quickgelu`` with the OpenAI weights, the
ResNet attention pool run *without* its positional embedding, so images are encoded at their own
size (no resize to 224, no crop). Scores are computed from the features in
:mod:`photosense.scoring.maths`.

torch and open_clip are imported inside functions: importing this module stays cheap, and
:func:`model_id` never needs torch.

Model-name choice for the OpenAI weights: open_clip's plain ``RN50`` (and other OpenAI
architectures) builds a GELU text tower, which silently gives wrong text features with the OpenAI
weights. Whenever the pretrained tag is ``openai``, photosense maps such a name to its
``-quickgelu`` variant (logged at INFO) before building *and* before computing the model id, so
``RN50`` + openai and ``RN50-quickgelu`` + openai are one model. For a local weights file the
architecture is used as typed (photosense cannot tell which activation the file was trained with).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from photosense.errors import PhotosenseError, WeightsUnavailable
from photosense.settings import model_config_dirs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

log = logging.getLogger("photosense.scoring")

DEFAULT_MODEL = "RN50-quickgelu"
DEFAULT_PRETRAINED = "openai"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Pixel value v in 0..255 -> (v / 255 - mean) / std = v * _PIXEL_SCALE - _PIXEL_SHIFT, per channel.
_PIXEL_SCALE = (1.0 / (255.0 * np.asarray(CLIP_STD))).astype(np.float32)[:, None, None]
_PIXEL_SHIFT = (np.asarray(CLIP_MEAN) / np.asarray(CLIP_STD)).astype(np.float32)[:, None, None]
MIN_SIDE = 32

# OpenAI architectures whose open_clip name without "-quickgelu" builds the wrong activation.
_OPENAI_ARCHS = frozenset(
    {"RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"}
)
_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
_PROBE_TIMEOUT_S = 3.0
_HASH_CHUNK = 1 << 20


@dataclass
class EngineConfig:
    """What to build: architecture, weights (None = the pretrained tag, a tag, or a file path)."""

    model: str = DEFAULT_MODEL
    weights: str | None = None
    device: str = "auto"
    max_side: int = 1024
    batch_size: int = 8
    # Where the image tower runs on the CPU: "auto" (a faster runtime when installed and
    # measured faster), "torch", "onnxruntime" or "openvino" (see photosense.scoring.backends).
    backend: str = "auto"
    # A new shoot (photosense.pipeline.PREVIEW_MIN_PHOTOS or more photos to encode) is first
    # encoded at this size so it can be sorted early, then refined at max_side; 0 = off.
    preview_side: int = 384
    # Consent to unpickle ``weights`` (TorchScript / pickled checkpoints run code on load). It
    # holds for this command only; what a library remembers is ``pickle_sha256``: the SHA-256 of
    # the exact file consent was given for, so a different file is refused again.
    allow_pickle: bool = False
    pickle_sha256: str | None = None


# --------------------------------------------------------------------------- names and ids


_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".npz")


def _is_weights_file(weights: str | None) -> bool:
    """A ``weights`` value naming a file (vs. an open_clip pretrained tag such as 'openai')."""
    if weights is None:
        return False
    return (
        os.sep in weights
        or "/" in weights
        or weights.startswith("~")
        or weights.lower().endswith(_CHECKPOINT_SUFFIXES)
        or Path(weights).exists()
    )


def pretrained_tag(config: EngineConfig) -> str | None:
    """The open_clip pretrained tag the config asks for, or None when it names a file."""
    if config.weights is None:
        return DEFAULT_PRETRAINED
    return None if _is_weights_file(config.weights) else config.weights


_mapped_names: set[str] = set()


def model_name(config: EngineConfig) -> str:
    """The open_clip architecture actually built (OpenAI weights always get ``-quickgelu``)."""
    name = config.model.strip()
    if pretrained_tag(config) == "openai" and name in _OPENAI_ARCHS:
        if name not in _mapped_names:
            _mapped_names.add(name)
            log.info("using %s-quickgelu for the OpenAI weights (plain %s has the wrong activation)",
                     name, name)
        return f"{name}-quickgelu"
    return name


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()

# A weights file must be a regular file: a FIFO or a device (``/dev/zero``) would hang the hash.
# Past this size the architecture decides whether the file is plausible (see _check_file_size).
_PLAUSIBLE_WITHOUT_CHECK = 2 << 30


def regular_weights_file(path: Path) -> os.stat_result:
    """``path``'s stat when it is a readable regular file; otherwise one-line WeightsUnavailable."""
    try:
        st = path.expanduser().stat()
    except FileNotFoundError:
        raise WeightsUnavailable(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsUnavailable(f"weights file {path} cannot be read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise WeightsUnavailable(f"weights file {path} is {kind}: pass a .safetensors or .pt file")
    if st.st_size == 0:
        raise WeightsUnavailable(f"weights file {path} is empty")
    return st


def file_sha256(path: Path) -> str:
    """The file's full SHA-256 (hex), cached per (path, size, mtime). Regular files only."""
    resolved = path.expanduser().resolve()
    st = regular_weights_file(resolved)
    key = (str(resolved), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        cached = _hash_cache.get(key)
    if cached is not None:
        return cached
    sha = hashlib.sha256()
    with open(resolved, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
    digest = sha.hexdigest()
    with _hash_lock:
        _hash_cache[key] = digest
    return digest


#: Model-id digests of weights files kept between runs, in the cache folder (a few lines of JSON).
DIGESTS_FILE = "weights-digests.json"
_DIGESTS_KEPT = 32


def _digest_key(st: os.stat_result) -> str:
    # Any write to the file, or a new file in its place, changes its ctime (or inode), and no
    # program sets a ctime back, so a stored digest never outlives the content it was made of.
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def file_digest(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256 (the model id's part). Remembered in the
    cache folder per (device, inode, size, mtime, ctime): every command that loads local
    weights needs the id, and hashing a 400 MB RN50 file took 0.6-0.9 s of each ``attr add``
    or ``search``. Pickle consent never uses this: it hashes the file itself
    (:func:`file_sha256`)."""
    from photosense.settings import cache_dir

    resolved = path.expanduser().resolve()
    st = regular_weights_file(resolved)
    key, store = _digest_key(st), cache_dir() / DIGESTS_FILE
    try:
        stored = json.loads(store.read_text(encoding="utf-8"))
        entry = stored.get(str(resolved)) if isinstance(stored, dict) else None
    except (OSError, ValueError):
        stored, entry = {}, None
    if isinstance(entry, list) and len(entry) == 2 and entry[0] == key and isinstance(entry[1], str):
        return entry[1]
    digest = file_sha256(resolved)[:12]
    stored = stored if isinstance(stored, dict) else {}
    stored.pop(str(resolved), None)
    stored[str(resolved)] = [key, digest]
    for old in list(stored)[:-_DIGESTS_KEPT]:
        del stored[old]
    try:
        from photosense.fsutil import write_bytes_atomically

        store.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(store, json.dumps(stored, indent=0).encode("utf-8"), fsync=False)
    except OSError as exc:  # a read-only cache: hashed again next time
        log.debug("cannot remember the weights digest in %s: %s", store, exc)
    return digest


def expected_weights_bytes(name: str) -> int | None:
    """float32 size of architecture ``name``'s parameters, counted on torch's meta device
    (no memory, no download); None when the architecture is unknown."""
    import open_clip
    import torch

    register_model_configs()
    if open_clip.get_model_config(name) is None:
        return None
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = open_clip.create_model(name, pretrained=None, device="meta")
    return sum(p.numel() for p in model.parameters()) * 4 + sum(b.numel() for b in model.buffers()) * 4


def _check_file_size(path: Path, size: int, name: str) -> None:
    """Refuse a weights file absurdly large for its architecture before hashing or reading it."""
    if size <= _PLAUSIBLE_WITHOUT_CHECK:
        return
    expected = expected_weights_bytes(name)
    if expected is not None and size > 3 * expected + (256 << 20):
        raise WeightsUnavailable(
            f"weights file {path} is {size / 2**30:.1f} GB, far more than model {name} needs "
            f"({expected / 2**30:.2f} GB): wrong file?")


def model_id(config: EngineConfig) -> str:
    """Stable id stored with every feature vector, e.g. ``RN50-quickgelu/openai`` or
    ``RN50-quickgelu/file:rn50.safetensors:1a2b3c4d5e6f`` (content hash: a copy elsewhere keeps
    the id, new weights change it). No torch needed."""
    tag = pretrained_tag(config)
    name = model_name(config)
    if tag is not None:
        return f"{name}/{tag}"
    path = Path(config.weights).expanduser()  # type: ignore[arg-type]
    _check_file_size(path, regular_weights_file(path).st_size, name)
    try:
        digest = file_digest(path)
    except OSError as exc:
        raise WeightsUnavailable(f"weights file {path} cannot be read: {exc.strerror or exc}") from exc
    return f"{name}/file:{path.name}:{digest}"


def pickle_allowed(config: EngineConfig) -> bool:
    """Whether ``config.weights`` may be unpickled: consent given by this command, or stored
    consent whose content hash is this very file's."""
    if config.allow_pickle:
        return True
    if not config.pickle_sha256 or not _is_weights_file(config.weights):
        return False
    try:
        return file_sha256(Path(config.weights)) == config.pickle_sha256  # type: ignore[arg-type]
    except (WeightsUnavailable, OSError):
        return False


def weights_cache_location() -> Path:
    """Where open_clip / Hugging Face keep downloaded weights (read from the environment now)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pretrained_is_cached(cfg: dict[str, Any], cache: Path) -> bool:
    """Whether open_clip would find the weights of a pretrained config without a download."""
    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    hub = cfg.get("hf_hub") or ""
    if hub:
        repo, filename = os.path.split(hub)
        filename = filename or _HF_WEIGHTS_NAME
        names = [filename]
        if filename == _HF_WEIGHTS_NAME:
            names.append(_HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        snapshots = cache / ("models--" + repo.replace("/", "--")) / "snapshots"
        return any(any(snapshots.glob(f"*/{n}")) for n in names)
    url = cfg.get("url") or ""
    return bool(url) and (cache / os.path.basename(urlparse(url).path)).is_file()


# --------------------------------------------------------------------------- torch helpers


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def text_threads() -> int:
    """Threads for the exported text tower: as torch would use (OMP_NUM_THREADS, else the
    CPUs), found without importing torch; a few prompts need no more than four."""
    try:
        wanted = int(os.environ.get("OMP_NUM_THREADS", "0"))
    except ValueError:
        wanted = 0
    return max(1, min(4, wanted or os.cpu_count() or 1))


def truncation_notes(config: EngineConfig, prompts: list[str]) -> list[str]:
    """One line for each prompt longer than the text encoder reads, saying how many of its
    words are used. Needs the tokenizer only (no weights); [] when it cannot be had."""
    from photosense.scoring.prompts import truncated_words

    # A BPE token covers at least one character: a prompt this short always fits.
    long_ones = [p for p in prompts if len(p) > 75]
    if not long_ones:
        return []
    try:
        context = standard_tokenizer_context(model_name(config))
        if context is not None:  # photosense's own copy of CLIP's BPE: no torch import
            from photosense.scoring.tokenizer import ClipTokenizer

            count = ClipTokenizer(context_length=context).encode
        else:
            import open_clip

            register_model_configs()
            tokenizer = open_clip.get_tokenizer(model_name(config))
            count = tokenizer.encode  # SimpleTokenizer (CLIP's BPE); HF tokenizers are not checked
            context = int(getattr(tokenizer, "context_length", 77))
    except Exception as exc:  # an unknown model, a tokenizer that needs a download
        log.info("cannot check prompt lengths: %s", _one_line(exc))
        return []
    notes = []
    for prompt in long_ones:
        kept = truncated_words(prompt, lambda t: len(count(t)), context)
        if kept is not None:
            words = len(prompt.split())
            notes.append(f"prompt {prompt[:40]!r}… is longer than the text encoder's {context} "
                         f"tokens: only its first {kept} of {words} words are used")
    return notes


def resolve_device(name: str) -> torch.device:
    """``auto`` = cuda, then mps, then cpu; an explicit device that is not there is an error."""
    import torch

    wanted = (name or "auto").strip().lower()
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as exc:
        raise PhotosenseError(f"unknown device {name!r}: use auto, cpu, cuda or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PhotosenseError(
                f"device {name!r} requested but CUDA is not available here (use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PhotosenseError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PhotosenseError(
                f"device {name!r} requested but Apple MPS is not available here (use --device cpu or auto)")
    elif device.type != "cpu":
        raise PhotosenseError(f"unsupported device {name!r}: use auto, cpu, cuda or mps")
    return device


_registered: set[Path] = set()
_register_lock = threading.Lock()


def standard_tokenizer_context(name: str) -> int | None:
    """The context length of open_clip architecture ``name`` when its config (a user's, or
    open_clip's own, read without importing open_clip) uses CLIP's standard BPE tokenizer and
    photosense's copy of its merges file is there; None otherwise (an HF tokenizer, an unknown
    name), when only open_clip itself can tokenize."""
    import importlib.util

    from photosense.scoring.tokenizer import vocab_path

    folders = list(model_config_dirs())
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        folders += [Path(f) / "model_configs" for f in spec.submodule_search_locations]
    for folder in folders:
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        try:
            text_cfg = json.loads(path.read_text(encoding="utf-8")).get("text_cfg", {})
        except (OSError, ValueError, AttributeError):
            return None
        if text_cfg.get("hf_tokenizer_name") or text_cfg.get("tokenizer_kwargs") or vocab_path() is None:
            return None
        return int(text_cfg.get("context_length", 77))
    return None


def register_model_configs() -> list[str]:
    """Register every ``*.json`` in :func:`photosense.settings.model_config_dirs` with open_clip
    (idempotent; a file is re-read when a folder is registered again). Returns the names found."""
    import open_clip

    names: list[str] = []
    with _register_lock:
        for folder in model_config_dirs():
            if not folder.is_dir():
                continue
            files = sorted(folder.glob("*.json"))
            names.extend(f.stem for f in files)
            resolved = folder.resolve()
            if resolved in _registered:
                if not all(f.stem in open_clip.list_models() for f in files):
                    open_clip.add_model_config(resolved)  # a new file appeared: rescan
                continue
            if files:
                open_clip.add_model_config(resolved)
                _registered.add(resolved)
    return names


def _no_pos_attnpool_class():
    """AttentionPool2d subclass that skips the positional embedding (CLIP-IQA), any input size."""
    import torch
    import torch.nn.functional as F
    from open_clip.modified_resnet import AttentionPool2d

    class NoPosAttentionPool2d(AttentionPool2d):
        """CLIP's attention pool without the positional embedding: only token 0 (the mean) queries.

        Parameters and state-dict keys are those of ``AttentionPool2d`` (the unused
        ``positional_embedding`` stays, so checkpoints load unchanged).
        """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            tokens = x.reshape(n, c, h * w).transpose(1, 2)  # (N, HW, C)
            tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (N, HW+1, C)
            heads = self.num_heads
            head_dim = c // heads
            q = self.q_proj(tokens[:, :1])  # (N, 1, C): the mean token only
            k = self.k_proj(tokens)
            v = self.v_proj(tokens)
            q = q.view(n, 1, heads, head_dim).transpose(1, 2)  # (N, heads, 1, d)
            k = k.view(n, h * w + 1, heads, head_dim).transpose(1, 2)
            v = v.view(n, h * w + 1, heads, head_dim).transpose(1, 2)
            out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, 1, d)
            out = out.transpose(1, 2).reshape(n, c)
            return self.c_proj(out)

    return NoPosAttentionPool2d


def _vit_embeds_interpolated(self, x):
    """VisionTransformer._embeds with the positional embedding resized (bicubic) to the input grid."""
    import torch
    import torch.nn.functional as F
    from open_clip.transformer import _expand_token

    x = self.conv1(x)
    gh, gw = x.shape[-2:]
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([_expand_token(self.class_embedding, x.shape[0]).to(x.dtype), x], dim=1)
    pos = self.positional_embedding
    old_h, old_w = self.grid_size
    if (gh, gw) != (old_h, old_w):
        tok, img = pos[:1], pos[1:]
        img = img.reshape(1, old_h, old_w, -1).permute(0, 3, 1, 2).float()
        img = F.interpolate(img, size=(gh, gw), mode="bicubic", align_corners=False, antialias=False)
        img = img.permute(0, 2, 3, 1).reshape(gh * gw, -1).to(pos.dtype)
        pos = torch.cat([tok, img], dim=0)
    x = x + pos.to(x.dtype)
    x = self.patch_dropout(x)
    return self.ln_pre(x)


def adapt_visual_for_any_size(model) -> str:
    """Patch the image tower so images are encoded at their own size; returns the tower kind.

    ResNet: the attention pool drops the positional embedding (the paper's CLIP-IQA).
    ViT: the positional embedding is interpolated to the input grid. Others: left as built.
    """
    import types

    from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    if isinstance(visual, ModifiedResNet):
        pool = visual.attnpool
        if type(pool) is AttentionPool2d:
            pool.__class__ = _no_pos_attnpool_class()
        return "resnet"
    if isinstance(visual, VisionTransformer):
        if getattr(visual, "attn_pool", None) is not None:
            log.warning("%s has a custom attention pool; position embeddings interpolated anyway",
                        type(visual).__name__)
        visual._embeds = types.MethodType(_vit_embeds_interpolated, visual)
        return "vit"
    return "other"


# --------------------------------------------------------------------------- checkpoints


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _pickle_refused(path: Path, what: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"{path.name} {what}, which runs pickled code: use a safetensors file, or allow pickle "
        "explicitly (--allow-pickle) if you trust it")


def _read_trusted(path: Path, required_sha256: str | None) -> bytes:
    """The file's bytes, read once; with ``required_sha256`` they must hash to it (consent is
    bound to content: what is unpickled is exactly what was hashed, with no window between)."""
    data = path.read_bytes()
    if required_sha256 is not None and hashlib.sha256(data).hexdigest() != required_sha256:
        raise _pickle_refused(path, "is not the file pickle was allowed for (its content changed)")
    return data


def _read_state_dict(path: Path, allow_pickle: bool, required_sha256: str | None = None,
                     skip_prefix: str | None = None) -> dict[str, Any] | bytes:
    """The tensors of a checkpoint file, or the verified bytes of an OpenAI TorchScript file
    for open_clip to load. Pickle runs only with ``allow_pickle``, and then (with
    ``required_sha256``) only on the file of that content. Raises WeightsUnavailable with one
    line on any problem."""
    import io
    import pickle

    import torch

    with open(path, "rb") as f:
        head = f.read(16)
    looks_safetensors = path.suffix == ".safetensors" or (
        len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)
    )
    if looks_safetensors:
        from safetensors import safe_open

        try:  # tensor by tensor: those skipped (the image tower of text-only work) are never read
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys()
                        if skip_prefix is None or not k.startswith(skip_prefix)}
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsUnavailable(f"{path.name} is not a valid safetensors file ({_one_line(exc)})") from exc

    if _is_torchscript(path):
        if not allow_pickle:
            raise _pickle_refused(path, "is an OpenAI TorchScript file")
        return _read_trusted(path, required_sha256)

    try:
        if allow_pickle:
            data = _read_trusted(path, required_sha256)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        else:  # memory-mapped: tensors that are skipped are never read from disk
            try:
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)  # legacy format
    except WeightsUnavailable:
        raise
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise _pickle_refused(path, "contains pickled objects beyond tensors") from exc
        raise WeightsUnavailable(f"{path.name} is not a PyTorch or safetensors checkpoint") from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/ValueError... for garbage
        raise WeightsUnavailable(
            f"{path.name} is not a PyTorch or safetensors checkpoint ({_one_line(exc)})"
        ) from exc

    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise WeightsUnavailable(f"{path.name} holds no state dict (found {type(checkpoint).__name__})")
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            continue
        key = key[len("module.") :] if key.startswith("module.") else key
        if skip_prefix is None or not key.startswith(skip_prefix):
            state[key] = value
    if not state:
        raise WeightsUnavailable(f"{path.name} holds no tensors")
    return state


def _load_into(model, state: dict[str, Any], model_name_: str, file_name: str) -> None:
    """Strictly load ``state``; a mismatch becomes one line listing a few offending keys."""
    from open_clip.model import resize_pos_embed

    expected = model.state_dict()
    if "logit_scale" in state and "logit_scale" in expected:
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    resize_pos_embed(state, model)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                more = f", +{len(items) - 3} more" if len(items) > 3 else ""
                parts.append(f"{len(items)} {label} ({', '.join(items[:3])}{more})")
        raise WeightsUnavailable(
            f"{file_name} does not fit model {model_name_} (wrong architecture?): {'; '.join(parts)}"
        )
    model.load_state_dict(state, strict=True)


def _load_torchscript(name: str, data: bytes, file_name: str):
    """open_clip's OpenAI loader on exactly ``data`` (verified bytes), from a private copy."""
    import tempfile

    import open_clip

    with tempfile.TemporaryDirectory(prefix="photosense-weights-") as tmp:
        copy = Path(tmp) / file_name
        with open(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*TorchScript archive.*", category=UserWarning)
                return open_clip.create_model(name, pretrained=str(copy), weights_only=False)
        except Exception as exc:
            raise WeightsUnavailable(f"cannot load {file_name} into {name}: {_one_line(exc)}") from exc


# Building a model with torch.nn.init patched out is global state: one build at a time.
_BUILD_LOCK = threading.Lock()


@contextmanager
def _without_random_init():
    """Skip torch.nn.init's random initialisation while a model whose every weight is loaded
    right after is built (1.6 s of 1.9 s for RN50 on a laptop core). Untouched memory stays
    unallocated by the OS until the checkpoint fills it."""
    import torch

    init = torch.nn.init
    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(init, n) for n in names}
    with _BUILD_LOCK:
        for n in names:
            setattr(init, n, lambda tensor, *args, **kwargs: tensor)
        try:
            yield
        finally:
            for n, f in saved.items():
                setattr(init, n, f)


def build_random_model(name: str, *, initialise: bool = True):
    """An open_clip model of architecture ``name`` with random weights, downloading nothing;
    with ``initialise=False`` its weights are left uninitialised (for a checkpoint to fill).

    Mirrors ``open_clip.create_model(name, pretrained=None)`` (CLIP / CustomTextCLIP / CoCa,
    no base-tower downloads) without its root-logger warning that "no pretrained weights were
    loaded": photosense loads its own checkpoint right after.
    """
    if not initialise:
        with _without_random_init():
            return _build_model(name)
    with _BUILD_LOCK:
        return _build_model(name)


def _build_model(name: str):
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise WeightsUnavailable(
            f"unknown model architecture {name!r} (add its open_clip config as "
            f"{model_config_dirs()[0]}/{name}.json)"
        )
    vision_cfg, text_cfg = cfg["vision_cfg"], cfg["text_cfg"]
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    is_hf_text = "hf_model_name" in text_cfg
    if is_hf_text:
        text_cfg["hf_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or is_hf_text
    if custom_text:
        cls = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    else:
        cls = open_clip.CLIP
    return cls(**cfg)


def _calibrate_batch_norm(clip) -> None:
    """Set BatchNorm running statistics from a few synthetic images.

    Random convolutions shrink the signal layer after layer; with the default running stats
    (mean 0, var 1) the image features end up dominated by the pool's biases and every image
    looks alike. Re-estimating the statistics keeps activations at unit scale.
    """
    import torch
    from open_clip.modified_resnet import ModifiedResNet
    from torch import nn

    visual = clip.visual
    norms = [m for m in visual.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not isinstance(visual, ModifiedResNet):
        return
    # Smooth random colour fields + noise: varied low- and high-frequency content.
    low = torch.rand(16, 3, 6, 6)
    images = torch.nn.functional.interpolate(low, size=(96, 96), mode="bicubic", align_corners=False)
    images = (images + 0.3 * torch.randn_like(images) * torch.rand(16, 1, 1, 1)).clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    images = (images - mean) / std
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    visual.train()
    x = visual.stem(images)  # the attention pool has no BatchNorm (and is size-bound as built)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        x = layer(x)
    visual.eval()
    for m in norms:
        m.momentum = 0.1


def make_random_checkpoint(
    model: str,
    path: Path,
    *,
    logit_scale: float = 100.0,
    seed: int = 0,
    perturb_bn: bool = True,
) -> Path:
    """Save random weights of open_clip architecture ``model`` as safetensors (tests, benchmarks).

    ``logit_scale`` is stored as ``ln(logit_scale)`` (random init gives 14.3; OpenAI's is 100).
    ResNet ``bn3.weight`` start at zero, which makes every image score alike: ``perturb_bn`` fills
    them with small random values and re-estimates the BatchNorm statistics on synthetic images,
    so features depend on the image.
    """
    import torch
    from safetensors.torch import save_file

    register_model_configs()
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = build_random_model(model)
        with torch.no_grad():
            clip.logit_scale.fill_(math.log(logit_scale))
            if perturb_bn:
                for name, param in clip.named_parameters():
                    if name.endswith("bn3.weight"):
                        param.normal_(0.0, 0.25)
                _calibrate_batch_norm(clip)
    state = {k: v.detach().cpu().contiguous() for k, v in clip.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # One metadata key only: safetensors writes several in random order, and the file's bytes
    # (hence its model id) must not change when the same weights are saved again.
    save_file(state, str(path), metadata={"format": "pt"})
    return path


# --------------------------------------------------------------------------- engine


class ClipIQAEngine:
    """Builds one CLIP model lazily and turns images and prompts into unit feature vectors."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._lock = threading.RLock()
        self._model = None
        self._tokenizer = None
        self._device = None
        self._dtype = None
        self._tower = ""
        self._logit_scale = 0.0
        self._dim = 0
        self._text_cache: dict[str, np.ndarray] = {}
        self._id: str | None = None
        self._text_only = False
        self._image_backend = None
        self._text_tower = None  # the exported text tower, when text work runs without torch

    # ---- properties

    @property
    def id(self) -> str:
        if self._id is None:
            self._id = model_id(self.config)
        return self._id

    @property
    def model_name(self) -> str:
        return model_name(self.config)

    @property
    def precision(self) -> str:
        """"fp16" (CUDA) or "fp32": part of what identifies the features this engine makes.
        Known before loading (resolving the device imports torch, nothing more)."""
        if self._dtype is not None:
            return "fp16" if str(self._dtype) == "torch.float16" else "fp32"
        return "fp16" if resolve_device(self.config.device).type == "cuda" else "fp32"

    def feature_key(self, max_side: int | None = None) -> str:
        """The identity of the image features this engine makes at ``max_side`` (default: the
        configured one): model id, size and precision (photosense.library.feature_key)."""
        from photosense.library import feature_key

        side = self.config.max_side if max_side is None else max_side
        return feature_key(self.id, side, self.precision)

    @property
    def loaded(self) -> bool:
        """Whether the whole model (image tower included) is built."""
        return self._model is not None and not self._text_only

    @property
    def device(self) -> torch.device:
        self._load(text_only=True)
        return self._device

    @property
    def logit_scale(self) -> float:
        """λ = ``model.logit_scale.exp()`` (100 for the OpenAI weights)."""
        self.load_text()
        return self._logit_scale

    @property
    def dim(self) -> int:
        """Embedding size of image and text features."""
        self.load_text()
        return self._dim

    @property
    def model(self):
        """The open_clip model (built on first use)."""
        self.load()
        return self._model

    @property
    def text_model(self):
        """The open_clip model with at least its text tower (its ``visual`` may be None);
        loads it with torch even where text work could run on the exported tower."""
        self._load(text_only=True)
        return self._model

    @property
    def text_backend(self) -> str:
        """Where prompts are encoded: "onnxruntime" (the exported text tower, no torch) or
        "torch"."""
        self.load_text()
        return "torch" if self._model is not None else self._text_tower.name

    # ---- building

    def load(self) -> ClipIQAEngine:
        """Build the whole model and load its weights (once; thread-safe). Raises
        WeightsUnavailable."""
        return self._load(text_only=False)

    def load_text(self) -> ClipIQAEngine:
        """Enough of the model for text work (attributes, search, taste): the text tower and
        λ, without building or reading the image tower. On the CPU backends that is the text
        tower exported by an earlier torch load of this model, run without importing torch
        (an attribute added to a 100k library: seconds and hundreds of MB less); otherwise
        the torch model's text tower. A later ``load`` builds the rest."""
        if self._model is not None or self._text_tower is not None:
            return self
        with self._lock:
            if self._model is None and self._text_tower is None:
                from photosense.scoring.backends import cached_text_tower

                tower = cached_text_tower(self.id, self.config.backend, text_threads())
                if tower is not None:
                    self._logit_scale, self._dim = tower.logit_scale, tower.dim
                    self._text_tower = tower
                    log.info("loaded %s (exported text tower on %s, λ=%.1f)", self.id,
                             tower.name, self._logit_scale)
                    return self
        return self._load(text_only=True)

    def _load(self, text_only: bool) -> ClipIQAEngine:
        if self._model is not None and (text_only or not self._text_only):
            return self
        with self._lock:
            if self._model is not None and (text_only or not self._text_only):
                return self
            import open_clip
            import torch

            device = resolve_device(self.config.device)
            register_model_configs()
            name = model_name(self.config)
            if open_clip.get_model_config(name) is None:
                raise WeightsUnavailable(
                    f"unknown model architecture {name!r} (add its open_clip config as "
                    f"{model_config_dirs()[0]}/{name}.json, or see open_clip.list_models())"
                )
            model = self._build(name, text_only)
            self._tower = "none" if text_only else adapt_visual_for_any_size(model)
            model.eval()
            self._logit_scale = float(model.logit_scale.detach().float().exp().item())
            self._dim = int(open_clip.get_model_config(name)["embed_dim"])
            dtype = torch.float16 if device.type == "cuda" else torch.float32
            model.to(device=device, dtype=dtype)
            self._tokenizer = open_clip.get_tokenizer(name)
            self._device, self._dtype = device, dtype
            self._id = model_id(self.config)
            if not text_only:
                self._image_backend = self._choose_backend(model)
            log.info("loaded %s%s on %s (%s, λ=%.1f)", self._id, " (text tower)" if text_only else "",
                     device, str(dtype).removeprefix("torch."), self._logit_scale)
            if device.type == "cpu":  # for later text-only work without torch (once per model)
                from photosense.scoring.backends import export_text_tower

                export_text_tower(model, self._tokenizer, self._id, self.config.backend,
                                  self._logit_scale, self._dim)
            self._model, self._text_only = model, text_only
        return self

    def _choose_backend(self, model):
        from photosense.scoring.backends import TorchImageBackend, prepare_image_backend

        if self._device.type != "cpu" or self._tower == "other":
            return TorchImageBackend(model.visual)
        return prepare_image_backend(model.visual, self._id, self.config.backend,
                                     torch_threads())

    @property
    def backend(self) -> str:
        """The runtime the image tower runs on ("torch", "onnxruntime", ...)."""
        self.load()
        return self._image_backend.name

    def _build(self, name: str, text_only: bool = False):
        tag = pretrained_tag(self.config)
        if tag is not None:
            model = self._build_pretrained(name, tag)
            if text_only:
                model.visual = None  # free the image tower's memory
            return model
        path = Path(self.config.weights).expanduser()  # type: ignore[arg-type]
        _check_file_size(path, regular_weights_file(path).st_size, name)
        # Consent given now holds for any file; consent remembered holds for its file only.
        required = None if self.config.allow_pickle else self.config.pickle_sha256
        try:
            state = _read_state_dict(path, self.config.allow_pickle or bool(required), required,
                                     skip_prefix="visual." if text_only else None)
        except OSError as exc:
            raise WeightsUnavailable(f"weights file {path} cannot be read: {exc.strerror or exc}") from exc
        if isinstance(state, bytes):  # OpenAI TorchScript, pickle allowed for these bytes
            model = _load_torchscript(name, state, path.name)
            if text_only:
                model.visual = None
            return model
        # Every weight comes from the checkpoint (loaded strictly): no random init first.
        model = build_random_model(name, initialise=False)
        if text_only:
            model.visual = None
        _load_into(model, state, name, path.name)
        return model

    def _build_pretrained(self, name: str, tag: str):
        import open_clip

        cfg = open_clip.get_pretrained_cfg(name, tag)
        if not cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise WeightsUnavailable(
                f"open_clip has no pretrained weights {tag!r} for {name}"
                + (f" (known: {', '.join(tags)})" if tags else "")
                + "; pass --weights FILE"
            )
        cache = weights_cache_location()
        if not _pretrained_is_cached(cfg, cache):
            if _env_offline():
                reason = "HF_HUB_OFFLINE is set"
            elif not _hub_reachable():
                reason = "huggingface.co cannot be reached"
            else:
                reason = ""
            if reason:
                raise WeightsUnavailable(
                    f"weights {name}/{tag} are not downloaded and {reason}: connect once to download "
                    f"them into {cache}, or pass --weights FILE (a local checkpoint)"
                )
            log.info("downloading %s/%s weights into %s", name, tag, cache)
        try:
            with _without_random_init():  # open_clip loads every weight strictly right after
                return open_clip.create_model(name, pretrained=tag, cache_dir=str(cache))
        except Exception as exc:
            raise WeightsUnavailable(
                f"cannot get weights {name}/{tag} ({_one_line(exc)}); pass --weights FILE or check {cache}"
            ) from exc

    # ---- encoding

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """PIL image -> normalised (3, H, W) float32 tensor at its own size.

        The caller has applied EXIF orientation and the max-side downscale; images with a side
        under ``MIN_SIDE`` are upscaled (bicubic). No other resize, no crop (CLIP-IQA).
        """
        import torch
        from PIL import Image as PILImage

        rgb = img.convert("RGB") if img.mode != "RGB" else img
        w, h = rgb.size
        if w == 0 or h == 0:
            raise PhotosenseError(f"image has an empty side ({w}x{h})")
        if min(w, h) < MIN_SIDE:
            scale = MIN_SIDE / min(w, h)
            size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
            rgb = rgb.resize(size, PILImage.Resampling.BICUBIC)
        # (x / 255 - mean) / std as one multiply-subtract written straight into the (3, H, W)
        # layout: the same values to float32 rounding (< 1e-6), a fifth of the time of the
        # four whole-image passes it replaces (8 ms at 1024x683 on one core).
        channels = np.asarray(rgb).transpose(2, 0, 1)
        out = np.empty(channels.shape, dtype=np.float32)
        np.multiply(channels, _PIXEL_SCALE, out=out)
        out -= _PIXEL_SHIFT
        return torch.from_numpy(out)

    def encode_images(self, tensors: list[torch.Tensor]) -> np.ndarray:
        """(N, D) float32 unit image features, in input order; same-size tensors share batches."""
        import torch

        self.load()
        if not tensors:
            return np.zeros((0, self._dim), dtype=np.float32)
        out = np.empty((len(tensors), self._dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tensors):
            if t.ndim != 3 or t.shape[0] != 3:
                raise ValueError(f"image tensor {i} must be (3, H, W), got {tuple(t.shape)}")
            groups.setdefault(tuple(t.shape), []).append(i)
        step = max(1, int(self.config.batch_size))
        with torch.inference_mode():
            for shape, indices in groups.items():
                for start in range(0, len(indices), step):
                    chunk = indices[start : start + step]
                    batch = torch.stack([tensors[i] for i in chunk]).to(self._device, self._dtype)
                    feats = self._encode_batch(batch, shape)
                    out[chunk] = feats
        return out

    def _encode_batch(self, batch, shape) -> np.ndarray:
        import torch.nn.functional as F

        try:
            feats = self._image_backend.encode(batch)
        except RuntimeError as exc:
            if self._tower == "other":
                raise PhotosenseError(
                    f"model {self.model_name} cannot encode {shape[2]}x{shape[1]} images (its image "
                    f"tower needs a fixed size): use an RN50 or ViT model"
                ) from exc
            raise
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    def _encode_new_texts(self, prompts: list[str]) -> np.ndarray:
        if self._model is None:  # the exported text tower: numpy only
            feats = self._text_tower.encode(prompts)
            return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        import torch
        import torch.nn.functional as F

        from photosense.scoring.text_trim import encode_text

        with torch.inference_mode():
            tokens = self._tokenizer(prompts).to(self._device)
            return F.normalize(encode_text(self._model, tokens).float(), dim=-1).cpu().numpy()

    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        """(N, D) float32 unit text features of full prompt texts (cached in memory per prompt)."""
        self.load_text()
        prompts = list(prompts)
        with self._lock:
            todo = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        if todo:
            feats = self._encode_new_texts(todo)
            with self._lock:
                for p, f in zip(todo, feats):
                    self._text_cache[p] = f
        if not prompts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            return np.stack([self._text_cache[p] for p in prompts]).astype(np.float32, copy=False)
