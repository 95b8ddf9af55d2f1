"""``photosense bench``: how well scores and checks agree with human opinion.

``photosense bench DATASET.csv --root DIR`` reads a MOS-labelled dataset (columns: image file,
MOS; a header row is optional, KonIQ-10k's ``image_name``/``MOS`` columns are recognised),
scans and scores its images in a library (a temporary one, or ``--library`` to keep the
features for the next run) and prints the SROCC and PLCC (after the usual 4-parameter logistic)
of every attribute and check against the MOS, beside the CLIP-IQA paper's Table 1.

``photosense bench --synthetic DIR`` repeats the paper's fine-grained experiment on the photos
in DIR: step-by-step variants in brightness, noise, colourfulness (saturation) and blur, and the
Spearman correlation of each attribute and check with the step, averaged over the photos.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

NAME = "bench"
HELP = "compare attributes and checks with a MOS-labelled dataset (SROCC/PLCC), or on synthetic steps"

# The CLIP-IQA paper's Table 1 (SROCC / PLCC), for reference beside a run.
PAPER_DATASETS = ("KonIQ-10k", "LIVE-itW", "SPAQ")
PAPER_RESULTS = {
    "CLIP-IQA (paper)": ((0.695, 0.727), (0.612, 0.594), (0.738, 0.735)),
    "CLIP-IQA+ (paper)": ((0.895, 0.909), (0.805, 0.832), (0.864, 0.866)),
    "BRISQUE (paper)": ((0.705, 0.707), (0.561, 0.598), (0.484, 0.481)),
    "NIQE (paper)": ((0.551, 0.488), (0.463, 0.491), (0.703, 0.670)),
}

CHECKS = ("sharpness", "exposure", "noise")
# Synthetic steps: distortion -> (first level, last level); levels are evenly spaced.
DISTORTIONS = {
    "brightness": (0.3, 1.8),   # ImageEnhance.Brightness factor
    "noise": (0.0, 40.0),       # Gaussian noise sigma, 8-bit levels
    "saturation": (0.0, 2.0),   # ImageEnhance.Color factor
    "blur": (0.0, 6.0),         # Gaussian blur radius, pixels at <= SYNTHETIC_SIDE
}
SYNTHETIC_SIDE = 1024
# (row, distortion, expected sign): the paper's attributes and the checks that should follow.
EXPECTED = (
    ("bright", "brightness", 1), ("noisy", "noise", 1), ("colorful", "saturation", 1),
    ("sharp", "blur", -1), ("exposure", "brightness", 1), ("noise", "noise", 1),
    ("sharpness", "blur", -1),
)

_IMAGE_HEADERS = ("image_name", "image", "img", "image_file", "filename", "file", "name", "path",
                  "img_name", "picture")
_MOS_HEADERS = ("mos", "mos_zscore", "score", "dmos", "quality", "rating")


def configure(p: argparse.ArgumentParser) -> None:
    from photosense.cli import _add_engine_options

    p.add_argument("dataset", metavar="DATASET.csv", nargs="?",
                   help="CSV of image file and MOS (header optional)")
    p.add_argument("--root", metavar="DIR", help="folder the dataset's image files are relative to")
    p.add_argument("--synthetic", metavar="DIR",
                   help="instead: score step-by-step brightness/noise/saturation/blur variants of "
                        "the photos in DIR")
    p.add_argument("--steps", type=int, default=6, metavar="N", help="variants per distortion (default 6)")
    p.add_argument("--attributes", metavar="A,B,...",
                   help="attributes to report (default: all); checks are always included")
    p.add_argument("--format", choices=["table", "json"], default="table")
    _add_engine_options(p)


# --------------------------------------------------------------------------- datasets


@dataclass
class MOSDataset:
    items: list[tuple[str, float]]  # (absolute path, MOS) of files that exist
    missing: list[str]              # listed files not found under the root


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_mos_csv(csv_path: str, root: str | None) -> MOSDataset:
    """The (image path, MOS) pairs of a dataset CSV; paths relative to ``root`` (default: the
    CSV's folder). Raises PhotosenseError when nothing usable is in it."""
    from photosense.errors import PhotosenseError

    root = root or os.path.dirname(os.path.abspath(csv_path))
    if not os.path.isdir(root):
        raise PhotosenseError(f"folder not found: {root}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = [r for r in csv.reader(f, dialect) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise PhotosenseError(f"cannot read {csv_path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PhotosenseError(f"{csv_path} is not a UTF-8 text file") from exc
    if not rows:
        raise PhotosenseError(f"{csv_path} is empty")
    img_col, mos_col = 0, 1
    header = [c.strip().lower() for c in rows[0]]
    if len(header) >= 2 and not _is_number(header[1] if len(header) > 1 else ""):
        img_col = next((header.index(h) for h in _IMAGE_HEADERS if h in header), 0)
        mos_col = next((header.index(h) for h in _MOS_HEADERS if h in header),
                       next((i for i in range(len(header)) if i != img_col), 1))
        rows = rows[1:]
    items, missing = [], []
    for row in rows:
        if len(row) <= max(img_col, mos_col):
            raise PhotosenseError(f"{csv_path}: a row has {len(row)} column(s), expected image file and MOS")
        name, value = row[img_col].strip(), row[mos_col].strip()
        if not _is_number(value):
            raise PhotosenseError(f"{csv_path}: MOS {value!r} for {name} is not a number")
        path = os.path.normpath(os.path.join(os.path.realpath(root), name))
        if os.path.isfile(path):
            items.append((path, float(value)))
        else:
            missing.append(name)
    if not items:
        raise PhotosenseError(f"none of the {len(rows)} images listed in {csv_path} is under {root}")
    return MOSDataset(items, missing)


@contextlib.contextmanager
def work_library(args) -> Iterator:
    """The library given with ``--library``, or a temporary one deleted afterwards."""
    from photosense.library import Library

    if getattr(args, "library", None):
        with Library(args.library) as lib:
            yield lib
        return
    with tempfile.TemporaryDirectory(prefix="photosense-bench-") as tmp:
        with Library(os.path.join(tmp, "bench.sqlite3")) as lib:
            yield lib


def score_folder(lib, folder: str, args):
    """Scan ``folder`` into ``lib`` and encode and score what lacks features; returns the
    (loaded) engine and the model info."""
    from photosense.cli import TerminalProgress, _engine_config, display_path, info
    from photosense.commands import run_as_job
    from photosense.ingest.scan import Scanner
    from photosense.pipeline import ScoringJob

    added = lib.add_folder(folder)
    report = run_as_job(lambda ctl: Scanner(lib).scan_folder(added, progress=ctl.scan_progress, cancel=ctl.cancel),
                        f"Scanning {display_path(folder)}", "scan", bar="scan")
    info(f"{display_path(folder)}: {report.summary()}")
    config = _engine_config(lib, args)
    job = ScoringJob(lib, config)
    bar = TerminalProgress("score")
    result = run_as_job(lambda ctl: job.run(bar.progress, ctl.cancel, ctl.checkpoint), "Scoring", "scoring")
    info(f"scored {result.encoded} images in {result.seconds:.1f}s"
         + (f", {result.failed} unreadable" if result.failed else ""))
    return job.engine, lib.active_model()


def rows_by_path(lib) -> dict:
    from photosense.library import PhotoQuery

    return {os.path.normpath(r.path): r for r in lib.query(PhotoQuery(sort="name"))}


def _attribute_names(lib, wanted: str | None) -> list[str]:
    from photosense.errors import PhotosenseError

    names = [a.name for a in lib.attributes()]
    if not wanted:
        return names
    chosen = [w.strip().lower() for w in wanted.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in names and w not in CHECKS]
    if unknown:
        raise PhotosenseError(f"unknown attribute: {', '.join(unknown)} (known: {', '.join(names)})")
    return [w for w in chosen if w not in CHECKS]


def _value(row, name: str):
    return row.checks.get(name) if name in CHECKS else row.scores.get(name)


# --------------------------------------------------------------------------- commands


def run(args) -> int:
    from photosense.errors import PhotosenseError

    if args.synthetic:
        if args.dataset:
            raise PhotosenseError("give either DATASET.csv or --synthetic DIR, not both")
        return run_synthetic(args)
    if not args.dataset:
        raise PhotosenseError("give a dataset CSV (image file, MOS) with --root DIR, or --synthetic DIR")
    return run_dataset(args)


def run_dataset(args) -> int:
    import json

    import numpy as np

    from photosense.cli import display_path, info
    from photosense.scoring.metrics import plcc, srocc

    data = read_mos_csv(args.dataset, args.root)
    root = args.root or os.path.dirname(os.path.abspath(args.dataset))
    if data.missing:
        info(f"{len(data.missing)} listed image(s) not found under {display_path(root)}, e.g. "
             f"{display_path(data.missing[0])}")
    with work_library(args) as lib:
        attrs = _attribute_names(lib, args.attributes)
        score_folder(lib, root, args)
        by_path = rows_by_path(lib)
    rows, mos = [], []
    for path, value in data.items:
        row = by_path.get(path) or by_path.get(os.path.realpath(path))
        if row is not None and row.error is None:
            rows.append(row)
            mos.append(value)
    skipped = len(data.items) - len(rows)
    if skipped:
        info(f"{skipped} listed image(s) could not be read or scanned; left out")
    y = np.asarray(mos, dtype=np.float64)
    results = []
    for name in [*attrs, *CHECKS]:
        x = np.array([np.nan if _value(r, name) is None else _value(r, name) for r in rows], dtype=np.float64)
        n = int(np.isfinite(x).sum())
        results.append({"name": name, "kind": "check" if name in CHECKS else "attribute", "n": n,
                        "srocc": srocc(x, y), "plcc": plcc(x, y)})
    if args.format == "json":
        json.dump({"mode": "dataset", "images": len(rows), "results": _jsonable(results),
                   "paper": {m: dict(zip(PAPER_DATASETS, v)) for m, v in PAPER_RESULTS.items()}},
                  __import__("sys").stdout, indent=2)
        print()
        return 0
    print(f"{'attribute':<18s} {'SROCC':>7s} {'PLCC':>7s} {'n':>7s}")
    for r in results:
        label = r["name"] + (" (check)" if r["kind"] == "check" else "")
        print(f"{label:<18s} {_num(r['srocc']):>7s} {_num(r['plcc']):>7s} {r['n']:>7d}")
    print()
    print("For reference, the CLIP-IQA paper's Table 1 (SROCC / PLCC); 'quality' is CLIP-IQA's "
          "Good/Bad pair.")
    print(f"{'':<18s}" + "".join(f"{d:>16s}" for d in PAPER_DATASETS))
    for method, values in PAPER_RESULTS.items():
        print(f"{method:<18s}" + "".join(f"{f'{s:.3f} / {p:.3f}':>16s}" for s, p in values))
    info(f"{len(rows)} images with MOS; signs: negative = the score falls as MOS rises (e.g. noise)")
    return 0


def _num(v: float) -> str:
    return "-" if v != v else f"{v:+.3f}"  # NaN != NaN


def _jsonable(obj):
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- synthetic


def distortion_levels(steps: int) -> dict[str, list[float]]:
    import numpy as np

    return {name: [float(v) for v in np.linspace(lo, hi, steps)] for name, (lo, hi) in DISTORTIONS.items()}


def make_variant(image, distortion: str, level: float, seed: int = 0):
    """``image`` (RGB Pillow) with one distortion applied at ``level``."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    if distortion == "brightness":
        return ImageEnhance.Brightness(image).enhance(level)
    if distortion == "saturation":
        return ImageEnhance.Color(image).enhance(level)
    if distortion == "blur":
        return image.filter(ImageFilter.GaussianBlur(level)) if level > 0 else image.copy()
    if distortion == "noise":
        if level <= 0:
            return image.copy()
        arr = np.asarray(image, dtype=np.float32)
        noisy = arr + np.random.default_rng(seed).normal(0.0, level, arr.shape).astype(np.float32)
        return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    raise ValueError(f"unknown distortion {distortion!r}")


def write_variants(sources: list[str], out_dir: str, steps: int, progress=None,
                   cancel=None) -> dict[str, dict[str, list[str]]]:
    """Variants of each source (longer side at most SYNTHETIC_SIDE) as PNG files in ``out_dir``:
    {source: {distortion: [path per level]}}. Unreadable sources are skipped (reported).
    ``progress(done, total)`` after each source; ``cancel`` stops with JobCancelled."""
    from photosense.cli import display_path, info
    from photosense.errors import DecodeError
    from photosense.ingest.decode import open_image
    from photosense.jobs import JobCancelled

    levels = distortion_levels(steps)
    plan: dict[str, dict[str, list[str]]] = {}
    for i, src in enumerate(sources):
        if cancel is not None and cancel.is_set():
            raise JobCancelled()
        if progress is not None:
            progress(i, len(sources))
        try:
            image = open_image(src, max_side=SYNTHETIC_SIDE).convert("RGB")
        except (DecodeError, OSError) as exc:
            info(f"  unreadable: {display_path(src)}: {exc}")
            continue
        stem = f"{i:04d}"
        plan[src] = {}
        for name, values in levels.items():
            paths = []
            for k, level in enumerate(values):
                path = os.path.join(out_dir, f"{stem}_{name}_{k:02d}.png")
                make_variant(image, name, level, seed=i * 1000 + k).save(path, compress_level=1)
                paths.append(path)
            plan[src][name] = paths
    if progress is not None:
        progress(len(sources), len(sources))
    return plan


def run_synthetic(args) -> int:
    import json

    import numpy as np

    from photosense.cli import display_path, info
    from photosense.commands import run_as_job
    from photosense.errors import PhotosenseError
    from photosense.ingest.decode import is_image_path
    from photosense.library import Library
    from photosense.scoring.metrics import srocc

    folder = args.synthetic
    if not os.path.isdir(folder):
        raise PhotosenseError(f"folder not found: {folder}")
    if args.steps < 3:
        raise PhotosenseError("--steps must be at least 3")
    sources = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                     if not n.startswith(".") and is_image_path(n) and os.path.isfile(os.path.join(folder, n)))
    if not sources:
        raise PhotosenseError(f"no photos in {display_path(folder)}")
    with tempfile.TemporaryDirectory(prefix="photosense-synthetic-") as tmp:
        variants_dir = os.path.join(tmp, "variants")
        os.mkdir(variants_dir)
        info(f"making {args.steps} steps of {len(DISTORTIONS)} distortions for {len(sources)} photo(s)")
        plan = run_as_job(lambda ctl: write_variants(sources, variants_dir, args.steps, ctl.scan_progress,
                                                     ctl.cancel),
                          "Making synthetic variants", "bench", bar="variants")
        if not plan:
            raise PhotosenseError(f"no readable photos in {display_path(folder)}")
        with Library(os.path.join(tmp, "bench.sqlite3")) as lib:
            attrs = _attribute_names(lib, args.attributes)
            score_folder(lib, variants_dir, args)
            by_path = rows_by_path(lib)
    names = [*attrs, *CHECKS]
    per_image: dict[str, dict[str, list[float]]] = {n: {d: [] for d in DISTORTIONS} for n in names}
    for dists in plan.values():
        for dist, paths in dists.items():
            found = [by_path.get(os.path.normpath(os.path.realpath(p))) for p in paths]
            if any(r is None or r.error for r in found):
                continue
            step = np.arange(len(paths), dtype=np.float64)
            for n in names:
                vals = np.array([np.nan if _value(r, n) is None else _value(r, n) for r in found], dtype=np.float64)
                per_image[n][dist].append(srocc(step, vals))
    table = {n: {d: _nanmean(v) for d, v in per.items()} for n, per in per_image.items()}
    expected = [{"row": r, "distortion": d, "sign": s, "srocc": table[r][d],
                 "ok": bool(table[r][d] == table[r][d] and table[r][d] * s > 0)}
                for r, d, s in EXPECTED if r in table]
    if args.format == "json":
        json.dump(_jsonable({"mode": "synthetic", "images": len(plan), "levels": distortion_levels(args.steps),
                             "srocc": table, "expected": expected}),
                  __import__("sys").stdout, indent=2)
        print()
        return 0
    marks = {(e["row"], e["distortion"]) for e in expected}
    print(f"Spearman correlation with the step (mean over {len(plan)} photo(s), {args.steps} steps; "
          "* = expected to follow it)")
    print(f"{'':<18s}" + "".join(f"{d:>13s}" for d in DISTORTIONS))
    for n in names:
        label = n + (" (check)" if n in CHECKS else "")
        cells = "".join(f"{_num(table[n][d]) + ('*' if (n, d) in marks else ' '):>13s}" for d in DISTORTIONS)
        print(f"{label:<18s}{cells}")
    print()
    for e in expected:
        sign = "+" if e["sign"] > 0 else "-"
        verdict = "as expected" if e["ok"] else "NOT as expected"
        print(f"{e['row']} vs {e['distortion']}: {_num(e['srocc'])} (expected {sign}) {verdict}")
    levels = ", ".join(f"{d} {lo:g}..{hi:g}" for d, (lo, hi) in DISTORTIONS.items())
    info(f"levels: {levels} (blur radius and noise sigma in pixels/levels at <= {SYNTHETIC_SIDE} px)")
    return 0


def _nanmean(values: list[float]) -> float:
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")
