"""Faces, eye states and eye sharpness per photo, at 1024 px, on one CPU core. Not a test:
prints figures, last line JSON (``faces_ms_per_photo``: the mean; budget < 60 ms).

    python benchmarks/bench_faces.py [--repeat 3]

Real photos: the labelled set in tests/data/faces (portraits, groups) and scikit-image's
samples without people (coffee, chelsea, rocket, motorcycle: the detector must still look
everywhere, tiles included), each scaled to 1024 px on its longer side as a scan analyses it.
The models are loaded (and the first photo run) before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FACE_DIR = ROOT / "tests" / "data" / "faces"


def photos(side: int = 1024):
    import numpy as np
    from PIL import Image
    from skimage import data

    out = []
    for path in sorted(FACE_DIR.glob("*.jpg")):
        out.append((path.name, Image.open(path).convert("RGB")))
    for name in ("coffee", "chelsea", "rocket"):
        out.append((name, Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")))
    out.append(("motorcycle", Image.fromarray(data.stereo_motorcycle()[0]).convert("RGB")))
    scaled = []
    for name, img in out:
        k = side / max(img.size)
        scaled.append((name, img.resize((round(img.width * k), round(img.height * k)),
                                        Image.Resampling.LANCZOS)))
    return scaled


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the photos")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from photosense.scoring.checks import compute_checks
    from photosense.scoring.faces import find_faces

    images = photos()
    noise = {name: compute_checks(img).noise for name, img in images}  # the scan has it
    find_faces(images[0][1])  # load the models
    times: dict[str, list[float]] = {name: [] for name, _ in images}
    counts = {}
    for _ in range(max(1, args.repeat)):
        for name, img in images:
            t0 = time.perf_counter()
            found = find_faces(img, noise[name])
            times[name].append((time.perf_counter() - t0) * 1000)
            counts[name] = len(found)
    per_photo = {name: min(ts) for name, ts in times.items()}  # least disturbed pass
    for name, ms in per_photo.items():
        print(f"{name:28s} {counts[name]:2d} faces {ms:7.1f} ms")
    mean = statistics.fmean(per_photo.values())
    result = {"photos": len(images), "faces": sum(counts.values()),
              "faces_ms_per_photo": round(mean, 1),
              "faces_ms_max": round(max(per_photo.values()), 1), "side": 1024,
              "threads": 1, "budget_ms": 60}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
