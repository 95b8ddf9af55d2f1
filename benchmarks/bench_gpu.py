"""CUDA scoring check, under 5 minutes on one GPU. Not a test: prints figures, last line JSON.

    python benchmarks/bench_gpu.py [--weights FILE] [--model RN50-quickgelu] [--photos 64]
                                   [--max-side 1024] [--batches 1,8,16,32] [--agreement 8]
                                   [--decode-workers N] [--allow-cpu]

photosense's own engine (photosense.scoring.clipiqa), on the photos of bench_scoring.py
(3000x2000 JPEGs decoded at --max-side with JPEG draft mode):

- model-only throughput in fp16 (what photosense uses on CUDA) and fp32, per batch size, from
  preprocessed tensors already in memory;
- agreement: cosine similarity of the GPU's fp16 (and fp32) image features with the CPU's
  fp32 features of the same photos, and the largest difference of a "Good photo."/"Bad photo."
  score;
- decode-bound or model-bound: decoding alone (open_image + preprocess on the pipeline's
  thread pool) vs the model alone vs end to end (ScoringJob: decode, encode, score, store).

Without --weights the model gets random weights (the real architecture, so the timing is real;
the scores mean nothing). Without CUDA it stops with one line and exit status 2, unless
--allow-cpu (to test this script: "fp16" then runs on the CPU too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

EXIT_NO_CUDA = 2


def batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes are whole numbers, like 1,8,16: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 1: {text!r}")
    return sorted(dict.fromkeys(sizes))


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RN50-quickgelu")
    parser.add_argument("--weights", help="a real checkpoint (default: random weights)")
    parser.add_argument("--photos", type=positive, default=64)
    parser.add_argument("--max-side", type=positive, default=1024)
    parser.add_argument("--batches", type=batch_sizes, default=[1, 8, 16, 32],
                        help="batch sizes for the model-only runs, comma-separated")
    parser.add_argument("--agreement", type=positive, default=8,
                        help="photos compared with CPU fp32 features")
    parser.add_argument("--decode-workers", type=positive, default=None,
                        help="decoding threads (default: as the scoring pipeline)")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run without CUDA (to test this script; figures are CPU figures)")
    return parser


def engine_in(config, dtype):
    """A loaded engine whose model runs in ``dtype``. The engine itself picks fp16 on CUDA and
    fp32 elsewhere; the other precision is the same model converted."""
    from photosense.scoring.clipiqa import ClipIQAEngine

    engine = ClipIQAEngine(config).load()
    if engine._dtype != dtype:
        engine._model.to(dtype=dtype)
        engine._dtype = dtype
    return engine


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_throughput(engine, tensors, batch: int) -> float:
    """Photos/s of ``encode_images`` at ``batch``: the better of two passes over ``tensors``,
    after one warm-up batch."""
    engine.config.batch_size = batch
    engine.encode_images(tensors[:batch])
    best = float("inf")
    for _ in range(2):
        synchronize(engine.device)
        t0 = time.perf_counter()
        engine.encode_images(tensors)
        synchronize(engine.device)
        best = min(best, time.perf_counter() - t0)
    return len(tensors) / best


def decode_all(paths, engine, max_side: int, workers: int):
    """(tensors, photos/s): the pipeline's decode step alone, on its thread pool."""
    from photosense.ingest.decode import open_image

    def decode(path):
        return engine.preprocess(open_image(path, max_side=max_side))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers, thread_name_prefix="bench-decode") as pool:
        tensors = list(pool.map(decode, paths))
    return tensors, len(paths) / (time.perf_counter() - t0)


def quality_scores(engine, feats: np.ndarray) -> np.ndarray:
    text = engine.encode_texts(["Good photo.", "Bad photo."])
    logits = engine.logit_scale * feats @ text.T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p[:, 0] / p.sum(axis=1)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run(args, workdir: Path) -> dict:
    import torch
    from bench_scoring import make_photos

    from photosense.ingest.scan import Scanner
    from photosense.library import Library
    from photosense.pipeline import ScoringJob
    from photosense.scoring.clipiqa import EngineConfig, make_random_checkpoint

    device = "cuda" if torch.cuda.is_available() else "cpu"
    t_start = time.perf_counter()
    weights = args.weights
    if weights is None:
        weights = str(make_random_checkpoint(args.model, workdir / "random.safetensors"))
    folder = workdir / "shoot"
    folder.mkdir()
    paths = make_photos(folder, args.photos)
    workers = args.decode_workers or max(1, min(4, os.cpu_count() or 2))
    name = (torch.cuda.get_device_name(0) if device == "cuda" else "CPU")
    print(f"{args.model} on {name}, {args.photos} photos 3000x2000 JPEG at max side "
          f"{args.max_side}, {workers} decode threads (setup {time.perf_counter() - t_start:.0f}s)",
          file=sys.stderr)

    def config(batch: int, on: str = device) -> EngineConfig:
        return EngineConfig(model=args.model, weights=weights, device=on,
                            max_side=args.max_side, batch_size=batch)

    fp16 = engine_in(config(args.batches[0]), torch.float16)
    tensors, decode_tp = decode_all(paths, fp16, args.max_side, workers)
    print(f"decode only: {decode_tp:.1f} photos/s", file=sys.stderr)

    throughput: dict[str, dict[str, float]] = {"fp16": {}, "fp32": {}}
    fp32 = engine_in(config(args.batches[0]), torch.float32)
    for label, engine in (("fp16", fp16), ("fp32", fp32)):
        for batch in args.batches:
            tp = model_throughput(engine, tensors, batch)
            throughput[label][str(batch)] = round(tp, 3)
            print(f"model only {label} batch {batch}: {tp:.1f} photos/s", file=sys.stderr)
    peak_memory = (torch.cuda.max_memory_allocated() / 2**30) if device == "cuda" else 0.0

    k = min(args.agreement, len(tensors))
    cpu = engine_in(config(8, on="cpu"), torch.float32)
    reference = cpu.encode_images(tensors[:k])
    agreement = {}
    for label, engine in (("fp16", fp16), ("fp32", fp32)):
        feats = engine.encode_images(tensors[:k])
        cos = cosines(feats, reference)
        score_diff = np.abs(quality_scores(engine, feats) - quality_scores(cpu, reference))
        agreement[label] = {"cosine_min": round(float(cos.min()), 6),
                            "cosine_mean": round(float(cos.mean()), 6),
                            "quality_score_max_abs_diff": round(float(score_diff.max()), 6)}
        print(f"{label} vs CPU fp32 ({k} photos): cosine min {cos.min():.6f}, mean "
              f"{cos.mean():.6f}; quality score max diff {score_diff.max():.2e}", file=sys.stderr)
    del cpu, fp32

    batch = 8 if 8 in args.batches else args.batches[-1]
    lib = Library(workdir / "lib.sqlite3")
    lib.add_folder(folder)
    Scanner(lib).scan_all()
    fp16.config.batch_size = batch
    t0 = time.perf_counter()
    report = ScoringJob(lib, config(batch), engine=fp16, decode_workers=workers).run()
    e2e_s = time.perf_counter() - t0
    lib.close()
    if report.encoded != len(paths):
        raise SystemExit(f"bench_gpu: end to end encoded {report.encoded} of {len(paths)} photos")
    e2e_tp = len(paths) / e2e_s
    model_tp = throughput["fp16"][str(batch)]
    bound = "decode" if decode_tp < model_tp else "model"
    print(f"end to end (fp16, batch {batch}): {e2e_tp:.1f} photos/s; decode {decode_tp:.1f} vs "
          f"model {model_tp:.1f} photos/s: {bound}-bound", file=sys.stderr)
    return {
        "device": name, "model": args.model, "random_weights": args.weights is None,
        "photos": len(paths), "max_side": args.max_side, "decode_workers": workers,
        "decode_photos_per_s": round(decode_tp, 3),
        "model_photos_per_s": throughput,
        "fp16_over_fp32": {b: round(throughput["fp16"][b] / throughput["fp32"][b], 3)
                           for b in throughput["fp16"]},
        "agreement_photos": k, "agreement_with_cpu_fp32": agreement,
        "end_to_end_batch": batch, "end_to_end_photos_per_s": round(e2e_tp, 3),
        "end_to_end_over_slower_stage": round(e2e_tp / min(decode_tp, model_tp), 3),
        "bound": bound, "peak_gpu_memory_gib": round(peak_memory, 2),
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        built = torch.version.cuda or "no CUDA"
        print(f"bench_gpu: no CUDA GPU here (torch {torch.__version__}, built with {built}); run "
              "it on a machine with one, or pass --allow-cpu to test the script", file=sys.stderr)
        return EXIT_NO_CUDA
    if args.weights is not None and not Path(args.weights).expanduser().is_file():
        print(f"bench_gpu: weights file not found: {args.weights}", file=sys.stderr)
        return 1
    from photosense.errors import PhotosenseError

    with tempfile.TemporaryDirectory(prefix="photosense-bench-gpu-") as tmp:
        os.environ.setdefault("PHOTOSENSE_DATA_DIR", os.path.join(tmp, "data"))
        os.environ.setdefault("PHOTOSENSE_CACHE_DIR", os.path.join(tmp, "cache"))
        try:
            result = run(args, Path(tmp))
        except PhotosenseError as exc:  # unusable weights, an unknown model
            print(f"bench_gpu: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
