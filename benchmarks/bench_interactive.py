"""Interactive model requests during a scoring run. Not a test: prints figures, last line JSON.

    python benchmarks/bench_interactive.py [--model RN50-quickgelu] [--seconds 60] [--photos N]

One ``ModelScheduler`` (one loaded model, shared, as in the window): a few photos are scored
first, then a text search and an attribute add are timed with no run going (``*_idle_s``).
Then a scoring run of enough new photos to last about ``--seconds`` starts, and during it the
same two requests are timed again, each from the request to its result
(``search_during_scoring_s``, ``attribute_during_scoring_s``); they run between two of the
run's batches, so they should cost about their own compute time plus at most one batch.

Without --weights the model gets random weights (the real architecture, so timings are real).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_photos(folder: Path, n: int, start: int = 0, size=(1600, 1067)) -> None:
    """``n`` distinct JPEGs (scikit-image samples, each with its own noise patch)."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    names = ["astronaut", "coffee", "chelsea", "rocket"]
    bases = [Image.fromarray(getattr(data, nm)()).convert("RGB").resize(size) for nm in names]
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        img = bases[i % len(bases)].copy()
        patch = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        img.paste(patch, (int(rng.integers(0, size[0] - 32)), int(rng.integers(0, size[1] - 32))))
        img.save(folder / f"photo_{i:04d}.jpg", quality=88)


def timed_request(scheduler, fn, name: str) -> tuple[float, object]:
    """Submit ``fn`` as an interactive model job; seconds from the request to its result."""
    from photosense.jobs import Job

    t0 = time.perf_counter()
    job = scheduler.submit(Job(lambda ctl: fn(), name, name), interactive=True)
    job.wait()
    elapsed = time.perf_counter() - t0
    if job.error:
        raise SystemExit(f"{name} failed: {job.error}")
    return elapsed, job.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RN50-quickgelu")
    parser.add_argument("--weights", help="a real checkpoint (default: random weights)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=60.0, help="about how long the run lasts")
    parser.add_argument("--photos", type=int, default=0, help="photos in the run (0: from --seconds)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="photosense-bench-") as tmp:
        os.environ.setdefault("PHOTOSENSE_DATA_DIR", os.path.join(tmp, "data"))
        os.environ.setdefault("PHOTOSENSE_CACHE_DIR", os.path.join(tmp, "cache"))
        print(json.dumps(run(args, Path(tmp))))


def run(args, workdir: Path) -> dict:
    import torch

    from photosense.ingest.scan import Scanner
    from photosense.jobs import Job, ModelScheduler
    from photosense.library import Library
    from photosense.pipeline import ScoringJob, rescore_attributes
    from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig, make_random_checkpoint
    from photosense.scoring.prompts import AntonymPair, AttributeSpec
    from photosense.scoring.search import search

    weights = args.weights or str(make_random_checkpoint(args.model, workdir / "random.safetensors"))
    config = EngineConfig(model=args.model, weights=weights, device=args.device,
                          max_side=args.max_side, batch_size=args.batch)
    engine = ClipIQAEngine(config).load()
    lib = Library(workdir / "lib.sqlite3")
    seed = workdir / "seed"
    make_photos(seed, 2 * args.batch)
    lib.add_folder(seed)
    Scanner(lib).scan_all()
    t0 = time.perf_counter()
    ScoringJob(lib, config, engine=engine).run()
    per_photo = (time.perf_counter() - t0) / (2 * args.batch)
    n = args.photos or max(4 * args.batch, int(args.seconds / per_photo))
    print(f"model {engine.id} on {engine.device}, {torch.get_num_threads()} torch threads; "
          f"{per_photo:.2f} s/photo end to end: a run of {n} photos", file=sys.stderr)

    scheduler = ModelScheduler("bench-model")
    try:
        def add_attribute(name: str, pos: str, neg: str):
            attr = lib.add_attribute(AttributeSpec(name, (AntonymPair(pos, neg),)))
            return rescore_attributes(lib, [attr], engine)

        search_idle, _ = timed_request(scheduler, lambda: search(lib, engine, "a cat on a sofa"), "search")
        attr_idle, _ = timed_request(scheduler, lambda: add_attribute("cosy", "Cosy", "Bleak"), "attribute")
        print(f"idle: search {search_idle:.2f}s, attribute add {attr_idle:.2f}s", file=sys.stderr)

        batch = workdir / "run"
        make_photos(batch, n, start=10_000)
        lib.add_folder(batch)
        Scanner(lib).scan_all()
        progress = []
        scoring = ScoringJob(lib, config, engine=engine)
        run_job = Job(lambda ctl: scoring.run(ctl.progress, ctl.cancel, ctl.checkpoint), "Scoring", "scoring")
        run_job.on_progress.append(lambda _j, p: progress.append((time.perf_counter(), p)))
        t_run = time.perf_counter()
        scheduler.submit(run_job)
        while not any(p.stage == "encoding" and p.done >= 2 * args.batch for _t, p in progress):
            if run_job.finished:
                raise SystemExit(f"the run ended early: {run_job.error or run_job.result}")
            time.sleep(0.05)
        done_before = max(p.done for _t, p in progress)
        search_busy, hits = timed_request(scheduler, lambda: search(lib, engine, "a dog on a beach"), "search")
        attr_busy, _ = timed_request(scheduler, lambda: add_attribute("vivid", "Vivid", "Dull"), "attribute")
        done_after = max(p.done for _t, p in progress)
        print(f"during the run (at photo {done_before} of {n}): search {search_busy:.2f}s "
              f"({len(hits)} hits), attribute add {attr_busy:.2f}s", file=sys.stderr)
        run_job.wait()
        run_s = time.perf_counter() - t_run
        if run_job.error:
            raise SystemExit(f"scoring failed: {run_job.error}")
        report = run_job.result
        print(f"the run went on and finished: {report.encoded} photos in {run_s:.1f}s "
              f"({done_after} scored when both requests had returned)", file=sys.stderr)
    finally:
        scheduler.shutdown(5)
        lib.close()
    return {"model": engine.id.split("/")[0], "device": str(engine.device), "run_photos": n,
            "run_s": round(run_s, 1), "batch": args.batch,
            "search_during_scoring_s": round(search_busy, 3),
            "attribute_during_scoring_s": round(attr_busy, 3),
            "search_idle_s": round(search_idle, 3), "attribute_idle_s": round(attr_idle, 3)}


if __name__ == "__main__":
    main()
