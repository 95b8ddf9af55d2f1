"""Where the image tower runs: torch (the reference, and the GPU path) or an exported copy on a
faster CPU runtime (ONNX Runtime, or OpenVINO when installed).

The image tower is exported exactly as photosense runs it (attention pool without positional
embedding, any input size: height, width and batch are dynamic) once per model id, into the
cache folder. An export is accepted only when its features agree with torch's on a probe image
(cosine >= ``MIN_COSINE``) and, for ``auto``, when it is measured faster than torch on that
probe; otherwise photosense falls back to torch with a logged line. The decision is kept next to
the export, so later runs load it at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from photosense import settings
from photosense.errors import PhotosenseError

log = logging.getLogger("photosense.backends")

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
MIN_COSINE = 0.9999
# Bump when the export changes (graph, opset, what the tower computes): old exports are redone.
EXPORT_VERSION = 1
_PROBE_SIZE = (3, 384, 512)
_export_lock = threading.Lock()


class TorchImageBackend:
    name = "torch"

    def __init__(self, visual):
        self.visual = visual

    def encode(self, batch):
        return self.visual(batch)


class _ExportedBackend:
    name = ""

    def encode(self, batch):
        import torch

        out = self.run(np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32))
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def run(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


class OnnxRuntimeBackend(_ExportedBackend):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # its warnings go to stderr, not to photosense's log
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: images})[0]


class OpenVinoBackend(_ExportedBackend):
    name = "openvino"

    def __init__(self, path: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(
            core.read_model(str(path)), "CPU",
            {"INFERENCE_NUM_THREADS": max(1, threads), "INFERENCE_PRECISION_HINT": "f32"})
        self._lock = threading.Lock()  # one infer request at a time

    def run(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.compiled(images)[0]


_RUNTIMES = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVinoBackend}
_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def runtime_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_MODULES[name]) is not None


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise PhotosenseError(f"unknown backend {name!r} (choose {', '.join(BACKENDS)})")
    return name


def export_dir() -> Path:
    """Where exported image towers are cached (``PHOTOSENSE_EXPORT_DIR`` overrides)."""
    override = os.environ.get("PHOTOSENSE_EXPORT_DIR")
    return Path(override) if override else settings.cache_dir() / "exports"


def _export_path(model_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:80]
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:10]
    return export_dir() / f"{safe}-{digest}-v{EXPORT_VERSION}.onnx"


def _probe_images():
    """A fixed, varied probe: smooth colour fields with noise, two sizes' worth of content."""
    import torch

    g = torch.Generator().manual_seed(1234)
    low = torch.rand(2, 3, 6, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=_PROBE_SIZE[1:], mode="bicubic", align_corners=False)
    return ((x + 0.2 * torch.randn(x.shape, generator=g)) - 0.45) / 0.27


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _export(visual, path: Path) -> None:
    """Export ``visual`` to ONNX (dynamic batch, height, width) at ``path``, atomically."""
    import torch
    from torch.export import Dim

    from photosense.fsutil import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.zeros(2, 3, 224, 320)
    shapes = ({0: Dim("batch", min=1, max=1024), 2: Dim("height", min=32, max=16384),
               3: Dim("width", min=32, max=16384)},)
    # The exporter prints its steps, logs its passes and warns about its own internals: not
    # the user's news.
    with atomic_path(path, prefix=".photosense-export-") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("onnxscript", "onnx_ir",
                                                                     "torch.onnx"), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(visual, (sample,), str(tmp), input_names=["image"],
                          output_names=["features"], dynamic_shapes=shapes, dynamo=True,
                          external_data=False, verbose=False)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _time(fn, images, repeat: int = 2) -> float:
    fn(images)  # warm-up (allocations, kernel selection)
    start = time.perf_counter()
    for _ in range(repeat):
        fn(images)
    return (time.perf_counter() - start) / repeat


def prepare_image_backend(visual, model_id: str, requested: str, threads: int) -> Any:
    """The backend to encode images with: ``requested`` ("auto" picks a faster CPU runtime
    when installed and measured faster). Never raises for a runtime problem: falls back to
    torch with a logged line (an explicit request that cannot be met is logged as a warning)."""

    check_backend(requested)
    torch_backend = TorchImageBackend(visual)
    if requested == "torch":
        return torch_backend
    names = [requested] if requested != "auto" else ["onnxruntime"]
    names = [n for n in names if runtime_available(n)]
    if not names:
        if requested != "auto":
            log.warning("backend %s is not installed: using torch", requested)
        return torch_backend
    name = names[0]
    path = _export_path(model_id)
    meta_path = path.with_suffix(".json")
    with _export_lock:
        meta = _read_meta(meta_path)
        try:
            if not path.is_file() or meta is None:
                log.info("exporting the image tower of %s for %s (once)", model_id, name)
                start = time.perf_counter()
                _export(visual, path)
                meta = {"model": model_id, "export_seconds": round(time.perf_counter() - start, 1)}
            backend = _RUNTIMES[name](path, threads)
            key = f"{name}:{threads}"
            if key not in meta.get("checked", {}):
                meta.setdefault("checked", {})[key] = _check(torch_backend, backend)
                _write_meta(meta_path, meta)
        except Exception as exc:  # an exporter or runtime failure must never stop scoring
            log.warning("cannot use %s for %s (%s): using torch", name, model_id,
                        str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
            return torch_backend
    check = meta["checked"][key]
    if check["min_cos"] < MIN_COSINE:
        log.warning("%s disagrees with torch on %s (cosine %.6f < %.4f): using torch",
                    name, model_id, check["min_cos"], MIN_COSINE)
        return torch_backend
    if requested == "auto" and check["speedup"] < 1.05:
        log.info("%s is not faster than torch here (%.2fx): using torch", name, check["speedup"])
        return torch_backend
    log.info("image tower on %s (%.2fx torch, cosine %.6f)", name, check["speedup"], check["min_cos"])
    return backend


def _check(torch_backend, backend) -> dict:
    import torch

    images = _probe_images()
    with torch.inference_mode():
        ref = torch_backend.encode(images).float().numpy()
        got = backend.encode(images).float().numpy()
        t_torch = _time(torch_backend.encode, images)
    t_fast = _time(backend.encode, images)
    return {"min_cos": float(_cosines(ref, got).min()), "speedup": round(t_torch / t_fast, 3)}


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("checked", {}), dict) else None


def _write_meta(path: Path, meta: dict) -> None:
    from photosense.fsutil import atomic_write

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)


# ---- the text tower, for text-only work without torch

#: Bump when the text export changes: old ones are redone. 2: tokens of any length up to the
#: context (cut after the last end-of-text token; see photosense.scoring.text_trim).
TEXT_EXPORT_VERSION = 2
_TEXT_PROBE = ("Good photo.", "Bad photo.", "a dog running on the beach at sunset",
               "Sharp photo.", "Blurry photo.", "café, naïve & <b>bold</b> — 35mm f/1.8 😀",
               " ".join(["long"] * 90))


def _text_export_path(model_id: str) -> Path:
    image = _export_path(model_id)
    return image.with_name(image.name.replace(f"-v{EXPORT_VERSION}.onnx",
                                              f"-text-v{TEXT_EXPORT_VERSION}.onnx"))


class OnnxTextTower:
    """The exported text tower on ONNX Runtime with photosense's own CLIP tokenizer: prompts
    to (unnormalised) features, with neither torch nor open_clip imported."""

    name = "onnxruntime"

    def __init__(self, path: Path, meta: dict, threads: int):
        import onnxruntime as ort

        from photosense.scoring.tokenizer import ClipTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = ClipTokenizer(context_length=int(meta["context_length"]))
        self.logit_scale = float(meta["logit_scale"])
        self.dim = int(meta["dim"])
        self.trimmed = bool(meta.get("trimmed"))

    def encode(self, prompts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(list(prompts))
        if self.trimmed:  # exported for any length: run only up to the last end of text
            from photosense.scoring.text_trim import trimmed_length

            tokens = np.ascontiguousarray(tokens[:, :trimmed_length(tokens)])
        return np.asarray(self.session.run(None, {"tokens": tokens})[0], dtype=np.float32)


def cached_text_tower(model_id: str, requested: str, threads: int) -> OnnxTextTower | None:
    """The text tower exported and checked earlier for ``model_id`` (see
    :func:`export_text_tower`), ready to run without torch; None when there is none, the
    backend is ``torch``/``openvino``, ONNX Runtime is not installed or the export cannot be
    loaded (then the caller loads the model with torch)."""
    if requested not in ("auto", "onnxruntime") or not runtime_available("onnxruntime"):
        return None
    path = _text_export_path(model_id)
    meta = _read_meta(path.with_suffix(".json"))
    if not meta or not meta.get("usable") or meta.get("model") != model_id or not path.is_file():
        return None
    try:
        return OnnxTextTower(path, meta, threads)
    except Exception as exc:  # a damaged cache file: torch does the work, the export is redone
        log.warning("cannot load the exported text tower of %s (%s): using torch", model_id,
                    _first_line(exc))
        with contextlib.suppress(OSError):
            path.with_suffix(".json").unlink()
        return None


def export_text_tower(model, tokenizer, model_id: str, requested: str, logit_scale: float,
                      dim: int) -> None:
    """Export ``model``'s text tower (a CPU fp32 open_clip model) once per model id, for later
    text-only work without torch: kept only when photosense's tokenizer gives open_clip's own
    ids and the exported features agree with torch's (cosine >= ``MIN_COSINE``) on a probe;
    otherwise the refusal is remembered, so it is not tried again. Never raises."""
    if requested not in ("auto", "onnxruntime") or not runtime_available("onnxruntime"):
        return
    path = _text_export_path(model_id)
    meta_path = path.with_suffix(".json")
    with _export_lock:
        old = _read_meta(meta_path)
        if old is not None and old.get("model") == model_id and (path.is_file() or not old.get("usable")):
            return
        meta: dict = {"model": model_id, "usable": False}
        try:
            reason = _export_text(model, tokenizer, path, meta)
        except Exception as exc:  # an exporter failure: text work keeps using torch
            reason = _first_line(exc)
        if reason:
            log.info("the text tower of %s stays on torch (%s)", model_id, reason)
        else:
            meta.update(usable=True, logit_scale=float(logit_scale), dim=int(dim))
            log.info("text tower of %s exported for text-only work (cosine %.6f)", model_id,
                     meta["min_cos"])
        _write_meta(meta_path, meta)


def _export_text(model, tokenizer, path: Path, meta: dict) -> str | None:
    """Export and check; returns why the export cannot be used, or None (meta filled in)."""
    import torch
    from torch.export import Dim

    from photosense.fsutil import atomic_path
    from photosense.scoring.text_trim import encode_text_prefix, trimmable
    from photosense.scoring.tokenizer import ClipTokenizer, vocab_path

    context = getattr(tokenizer, "context_length", None)
    if type(tokenizer).__name__ != "SimpleTokenizer" or not isinstance(context, int) or vocab_path() is None:
        return f"its tokenizer is {type(tokenizer).__name__}, not CLIP's standard one"
    mine = ClipTokenizer(context_length=context)
    probe = list(_TEXT_PROBE)
    tokens = mine(probe)
    if not np.array_equal(tokens, tokenizer(probe).numpy()):
        return "photosense's tokenizer disagrees with open_clip's on this model"

    trimmed = trimmable(model)  # then the export takes tokens of any length up to the context

    class TextTower(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            self.clip = clip

        def forward(self, ids):
            return encode_text_prefix(self.clip, ids) if trimmed else self.clip.encode_text(ids)

    tower = TextTower(model).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    dims = {0: Dim("batch", min=1, max=65536)}
    sample = torch.from_numpy(tokens[:2])
    if trimmed:
        dims[1] = Dim("length", min=2, max=context)
        sample = sample[:, :16]  # the two short probes, their end of text kept
    with atomic_path(path, prefix=".photosense-export-") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("onnxscript", "onnx_ir",
                                                                     "torch.onnx"), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(tower, (sample,), str(tmp), input_names=["tokens"],
                          output_names=["features"], dynamic_shapes=(dims,), dynamo=True,
                          external_data=False, verbose=False)
    meta["export_seconds"] = round(time.perf_counter() - start, 1)
    meta["context_length"] = context
    meta["trimmed"] = trimmed
    with torch.inference_mode():  # the reference: open_clip's own encode_text, all 77 tokens
        ref = model.encode_text(torch.from_numpy(tokens)).float().numpy()
    exported = OnnxTextTower(path, {**meta, "logit_scale": 0.0, "dim": 0}, 1)
    short = [i for i, t in enumerate(tokens) if t.argmax() + 1 < context]
    got = exported.encode(probe)  # runs at the full context (the long probe)
    got_short = exported.encode([probe[i] for i in short])  # runs cut short when trimmed
    meta["min_cos"] = float(min(_cosines(ref, got).min(), _cosines(ref[short], got_short).min()))
    if meta["min_cos"] < MIN_COSINE:
        with contextlib.suppress(OSError):
            path.unlink()
        return f"the export disagrees with torch: cosine {meta['min_cos']:.6f} < {MIN_COSINE}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
