"""A 100k-photo library: rescan, adding 1,000 photos, list, attribute add, search. Not a test:
prints figures, last line JSON.

    python benchmarks/bench_library.py [--photos 100000] [--add 1000] [--model RN50-quickgelu]

The library is generated directly (photo rows for real files on disk, a random feature and 12
built-in scores per photo, some flags, the face checks a scan stores: one face in a tenth of the
photos), as a photographer's library would look after scoring:

- ``rescan_unchanged_100k_s``: ``photosense scan``'s work when nothing changed (stat every file);
- ``add_1000_into_100k_s``: 1,000 new JPEGs (640x480, each a different picture) dropped into
  a new subfolder, then ``photosense scan`` (the walk of all 101k files; hash, EXIF, checks,
  faces, pair, move and sidecar lookups of the new ones) into the big library;
- ``list_json_100k_s``: ``photosense list --format json`` of every photo, end to end, as a
  subprocess writing to a file;
- ``attribute_add_100k_s`` / ``attribute_add_100k_rss_mb``: ``photosense attr add`` as a
  subprocess (process start, text tower, 100k scores written) and its peak memory, in a library
  whose model has been loaded with torch before (as ``score`` does), so the text tower exported
  then runs without torch;
- ``attribute_add_first_100k_s`` / ``..._rss_mb``: the same for the very first text work with
  this model (torch loads the text tower and exports it, once per model);
- ``search_100k_s`` / ``search_100k_rss_mb``: ``photosense search`` as a subprocess, and its
  peak memory (it reads the features chunk by chunk).

Without --weights the model gets random weights (the real architecture; scores mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_files(folder: Path, n: int) -> list[tuple[str, int, float]]:
    """n small files with image names (their content is never read by an unchanged rescan)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        sub = folder / f"day{i // 5000:02d}"
        if i % 5000 == 0:
            sub.mkdir(exist_ok=True)
        p = sub / f"IMG_{i:06d}.jpg"
        p.write_bytes(b"\xff\xd8\xff")
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime))
    return out


def make_jpegs(folder: Path, n: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):  # each its own picture, as a shoot's frames are
        base = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(base).resize((640, 480), Image.Resampling.BICUBIC)
        img.save(folder / f"NEW_{i:05d}.jpg", quality=85)


def fill_library(lib_path: Path, files, config, dim: int) -> None:
    from photosense.library import Library
    from photosense.pipeline import save_engine_config
    from photosense.scoring.clipiqa import model_id
    from photosense.scoring.faces import FACES_VERSION

    model_key = model_id(config)
    lib = Library(lib_path)
    save_engine_config(lib, config)
    folder = lib.add_folder(os.path.dirname(os.path.dirname(files[0][0])))
    model = lib.ensure_model(model_key, dim, 100.0)
    lib.set_setting("active_model", model.key)
    attrs = [a.id for a in lib.attributes()]
    rng = np.random.default_rng(0)
    with lib.session() as s:
        conn = s.connection()
        chunk = 10_000
        for start in range(0, len(files), chunk):
            part = files[start:start + chunk]
            ids = range(start + 1, start + len(part) + 1)
            conn.exec_driver_sql(
                "INSERT INTO photos (id, folder_id, path, size, mtime, content_hash, missing, "
                "scanned_at, flag, rating, sharpness, exposure, noise) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?, ?)",
                [(i, folder.id, os.fsencode(p), size, mtime, f"{i:032x}", int(rng.integers(-1, 2)),
                  int(rng.integers(0, 6)), float(rng.random() * 10), float(rng.random() - 0.5),
                  float(rng.random() * 5)) for i, (p, size, mtime) in zip(ids, part)])
            feats = rng.standard_normal((len(part), dim)).astype(np.float32)
            feats /= np.linalg.norm(feats, axis=1, keepdims=True)
            conn.exec_driver_sql(
                "INSERT INTO features (photo_id, model_id, vector, max_side) VALUES (?, ?, ?, 1024)",
                [(i, model.id, f.tobytes()) for i, f in zip(ids, feats)])
            conn.exec_driver_sql(
                "INSERT INTO scores (photo_id, attribute_id, model_id, value) VALUES (?, ?, ?, ?)",
                [(i, a, model.id, float(v)) for i in ids for a, v in zip(attrs, rng.random(len(attrs)))])
            face = {"box": [0.4, 0.3, 0.1, 0.14], "eyes": "open", "eye_sharpness": 3.2,
                    "openness": [0.3, 0.31]}
            conn.exec_driver_sql(
                "INSERT INTO face_checks (photo_id, count, eyes_closed, eye_sharpness, faces, version) "
                "VALUES (?, ?, 0, ?, ?, ?)",
                [(i, 1, 3.2, json.dumps([face]), FACES_VERSION) if i % 10 == 0
                 else (i, 0, None, "[]", FACES_VERSION) for i in ids])
    lib.close()


# The child reports its own peak (VmHWM: its address space's high-water mark). Not wait4's
# ru_maxrss: Linux carries the parent's peak into a child across fork and exec, and this
# parent holds torch (over 1 GB), so every child would read as at least that.
_CHILD = """
import atexit, runpy, sys

def _peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                sys.stderr.write("photosense-bench-peak-kb " + line.split()[1] + "\\n")

atexit.register(_peak)
sys.argv = ["photosense", *sys.argv[1:]]
runpy.run_module("photosense", run_name="__main__", alter_sys=True)
"""


def timed_cli(argv: list[str], env: dict, stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``photosense ARGV`` as a child process (Linux)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, *argv], env=env, stdout=stdout,
                         stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"photosense {' '.join(argv)} failed: {out.stderr.strip()}")
    peaks = [line.split()[1] for line in out.stderr.splitlines()
             if line.startswith("photosense-bench-peak-kb ")]
    return seconds, int(peaks[-1]) / 1024 if peaks else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--add", type=int, default=1000)
    parser.add_argument("--model", default="RN50-quickgelu")
    parser.add_argument("--weights", help="a real checkpoint (default: random weights)")
    args = parser.parse_args()

    from photosense.scoring.clipiqa import EngineConfig, make_random_checkpoint

    with tempfile.TemporaryDirectory(prefix="photosense-benchlib-") as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "PHOTOSENSE_DATA_DIR": str(tmp_path / "data"),
               "PHOTOSENSE_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
               "PHOTOSENSE_LIBRARY": str(tmp_path / "lib.sqlite3"), "PYTHONPATH": str(ROOT)}
        os.environ.update({k: env[k] for k in ("PHOTOSENSE_DATA_DIR", "PHOTOSENSE_CACHE_DIR")})
        weights = args.weights or str(make_random_checkpoint(args.model, tmp_path / "random.safetensors"))
        config = EngineConfig(model=args.model, weights=weights, device="cpu")
        import open_clip

        from photosense.scoring.clipiqa import model_name, register_model_configs

        register_model_configs()
        dim = int(open_clip.get_model_config(model_name(config))["embed_dim"])
        t0 = time.perf_counter()
        files = make_files(tmp_path / "photos", args.photos)
        fill_library(tmp_path / "lib.sqlite3", files, config, dim)
        print(f"generated a {args.photos}-photo library in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        engine = ["--model", args.model, "--weights", weights, "--device", "cpu"]
        result: dict = {"photos": args.photos, "model": args.model}

        rescan_s, _ = timed_cli(["scan"], env)
        result["rescan_unchanged_100k_s"] = round(rescan_s, 2)
        make_jpegs(tmp_path / "photos" / "new", args.add)
        add_s, _ = timed_cli(["scan"], env)
        result["add_1000_into_100k_s"] = round(add_s, 2)
        first_s, first_rss = timed_cli(["attr", "add", "cool", "Cool", "Dull", *engine], env)
        result["attribute_add_first_100k_s"] = round(first_s, 2)
        result["attribute_add_first_100k_rss_mb"] = round(first_rss)
        attr_s, attr_rss = timed_cli(["attr", "add", "warm", "Warm", "Cold", *engine], env)
        result["attribute_add_100k_s"] = round(attr_s, 2)
        result["attribute_add_100k_rss_mb"] = round(attr_rss)
        with open(tmp_path / "list.json", "w") as out:
            list_s, _ = timed_cli(["list", "--format", "json"], env, stdout=out)
        assert len(json.loads((tmp_path / "list.json").read_text())) == args.photos + args.add
        result["list_json_100k_s"] = round(list_s, 2)
        search_s, search_rss = timed_cli(["search", "a dog on the beach", "--limit", "20"], env)
        result["search_100k_s"] = round(search_s, 2)
        result["search_100k_rss_mb"] = round(search_rss)
        for key, value in result.items():
            print(f"{key}: {value}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
