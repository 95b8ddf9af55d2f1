"""Accuracy of face finding and eye states on the labelled photos in tests/data/faces.
Not a test: prints figures per half, last line JSON.

    python benchmarks/eval_faces.py [--sweep] [--verbose]

The labelled set (``labels.json``, see ``LICENSES.md`` there) is split by sorted file name:
the 1st, 3rd, 5th... file form the ``tune`` half, on which thresholds may be chosen (``--sweep``
prints the figures for other CLOSED_BELOW / OPEN_ABOVE / MIN_FACE_PRESENCE values on it); the
2nd, 4th, 6th... the ``report`` half, whose figures are the ones to quote.

Per half: faces found / labelled (recall; faces marked ``optional`` are neither missed nor
false), false faces (found where no face is labelled), closed eyes found / closed labelled,
open eyes called closed, closed eyes called open, and the unclear rate (found faces whose eyes
the code calls ``unclear``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
FACE_DIR = ROOT / "tests" / "data" / "faces"


def load_labels() -> dict[str, list[dict]]:
    """file name -> labelled faces (each with ``box``, ``eyes``, ``glasses``, maybe
    ``optional``)."""
    return json.loads((FACE_DIR / "labels.json").read_text())


def split(names) -> dict[str, list[str]]:
    """The two halves: alternate files in sorted order, the first one to ``tune``."""
    ordered = sorted(names)
    return {"tune": ordered[0::2], "report": ordered[1::2]}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _inside(point, box) -> bool:
    return box[0] <= point[0] <= box[0] + box[2] and box[1] <= point[1] <= box[1] + box[3]


def _centre(box):
    return (box[0] + box[2] / 2, box[1] + box[3] / 2)


def match(labelled: list[dict], found: list[dict]) -> list[tuple[int, int]]:
    """(label index, found index) pairs, one to one: a pair may match when the boxes overlap
    by IoU 0.25 or more or either box's centre lies inside the other (hand-drawn boxes are
    rough); the best-overlapping pairs are taken first."""
    pairs = []
    for i, lab in enumerate(labelled):
        for j, face in enumerate(found):
            iou = _iou(lab["box"], face["box"])
            if (iou >= 0.25 or _inside(_centre(face["box"]), lab["box"])
                    or _inside(_centre(lab["box"]), face["box"])):
                pairs.append((iou, i, j))
    pairs.sort(reverse=True)
    used_l, used_f, out = set(), set(), []
    for _iou_value, i, j in pairs:
        if i not in used_l and j not in used_f:
            used_l.add(i)
            used_f.add(j)
            out.append((i, j))
    return out


def score(labels: dict[str, list[dict]], results: dict[str, list[dict]]) -> dict:
    """The figures for the photos in ``results`` (file name -> found faces as dicts with
    ``box`` and ``eyes``)."""
    fig = {"photos": len(results), "faces_labelled": 0, "faces_found": 0,
           "optional_labelled": 0, "optional_found": 0, "false_faces": 0,
           "closed_labelled": 0, "closed_found": 0, "closed_called_open": 0,
           "open_labelled": 0, "open_found": 0, "open_called_open": 0, "open_called_closed": 0,
           "unclear_labelled": 0, "unclear_called_closed": 0, "unclear_called_open": 0,
           "found_called_unclear": 0, "glasses_labelled": 0, "glasses_found": 0}
    misses, falses, wrong = [], [], []
    for name, found in sorted(results.items()):
        labelled = labels[name]
        pairs = dict(match(labelled, found))
        matched_found = set(pairs.values())
        for j, face in enumerate(found):
            if j not in matched_found:
                fig["false_faces"] += 1
                falses.append((name, face["box"]))
        for i, lab in enumerate(labelled):
            if lab.get("optional"):
                fig["optional_labelled"] += 1
                fig["optional_found"] += i in pairs
                continue
            fig["faces_labelled"] += 1
            fig[f"{lab['eyes']}_labelled"] += 1
            fig["glasses_labelled"] += bool(lab.get("glasses"))
            if i not in pairs:
                misses.append((name, lab["box"], lab["eyes"]))
                continue
            got = found[pairs[i]]["eyes"]
            fig["faces_found"] += 1
            fig["glasses_found"] += bool(lab.get("glasses"))
            fig["found_called_unclear"] += got == "unclear"
            if lab["eyes"] == "closed":
                fig["closed_found"] += got == "closed"
                fig["closed_called_open"] += got == "open"
            elif lab["eyes"] == "open":
                fig["open_found"] += 1
                fig["open_called_open"] += got == "open"
                fig["open_called_closed"] += got == "closed"
            else:
                fig["unclear_called_closed"] += got == "closed"
                fig["unclear_called_open"] += got == "open"
            if got != lab["eyes"]:
                wrong.append((name, lab["eyes"], got, found[pairs[i]].get("openness")))
    fig["recall"] = round(fig["faces_found"] / fig["faces_labelled"], 3) \
        if fig["faces_labelled"] else None
    fig["unclear_rate"] = round(fig["found_called_unclear"] / fig["faces_found"], 3) \
        if fig["faces_found"] else None
    fig["details"] = {"missed": misses, "false": falses, "eyes_differ": wrong}
    return fig


def detect(names) -> dict[str, list[dict]]:
    """find_faces on each photo (already at most 1024 px on its longer side, as a scan
    analyses it), as dicts."""
    from PIL import Image, ImageOps

    from photosense.scoring.faces import find_faces

    out = {}
    for name in names:
        with Image.open(FACE_DIR / name) as img:
            image = ImageOps.exif_transpose(img).convert("RGB")
        out[name] = [{"box": [float(v) for v in f.box], "eyes": f.eyes, "openness": f.openness,
                      "eye_openness": f.eye_openness, "presence": f.presence,
                      "score": f.score} for f in find_faces(image)]
    return out


#: Photos without people (scikit-image's samples, and darkened copies as a dim room or an
#: under-exposed frame would give): every face found on them is false.
NO_PEOPLE = ("coffee", "chelsea", "rocket", "motorcycle_left")
NO_PEOPLE_DARKEN = 0.3
PRESENCE_WHAT_IF = (0.2, 0.5)


def detect_empty() -> dict[str, list[dict]]:
    """find_faces on the frames without people, as dicts (name -> faces)."""
    from photosense.scoring.faces import find_faces
    from tests.fixtures.photos import darken, load_photo

    out = {}
    for name in NO_PEOPLE:
        photo = load_photo(name)
        for label, image in ((name, photo), (f"{name}_dark", darken(photo, NO_PEOPLE_DARKEN))):
            out[label] = [{"box": [float(v) for v in f.box], "eyes": f.eyes,
                           "presence": f.presence, "score": f.score}
                          for f in find_faces(image)]
    return out


@contextlib.contextmanager
def thresholds(**values):
    """photosense.scoring.faces's module constants set to ``values`` for a while."""
    from photosense.scoring import faces as faces_mod

    saved = {k: getattr(faces_mod, k) for k in values}
    try:
        for k, v in values.items():
            setattr(faces_mod, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(faces_mod, k, v)


def evaluate(halves=("tune", "report")) -> dict[str, dict]:
    labels = load_labels()
    parts = split(labels)
    return {half: score(labels, detect(parts[half])) for half in halves}


_SHOWN = ("photos", "faces_labelled", "faces_found", "recall", "false_faces",
          "optional_labelled", "optional_found", "closed_labelled", "closed_found",
          "closed_called_open", "open_labelled", "open_found", "open_called_open",
          "open_called_closed", "unclear_labelled", "unclear_called_closed",
          "unclear_called_open", "unclear_rate", "glasses_labelled", "glasses_found")


def _summary(fig: dict) -> dict:
    return {k: fig[k] for k in _SHOWN}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true",
                    help="also print the tune half's figures for other thresholds")
    ap.add_argument("--verbose", action="store_true", help="list misses, false faces, "
                    "and faces whose eyes differ from the label")
    args = ap.parse_args(argv)
    from photosense.scoring import faces as faces_mod

    labels = load_labels()
    parts = split(labels)
    result = {"closed_below": faces_mod.CLOSED_BELOW, "open_above": faces_mod.OPEN_ABOVE}
    found = {}
    for half in ("tune", "report"):
        found[half] = detect(parts[half])
        fig = score(labels, found[half])
        print(f"{half} half ({len(parts[half])} photos: {', '.join(parts[half])})")
        print(f"  faces found {fig['faces_found']} of {fig['faces_labelled']} labelled "
              f"(recall {fig['recall']}), false faces {fig['false_faces']}, "
              f"optional faces found {fig['optional_found']} of {fig['optional_labelled']}")
        print(f"  closed eyes found {fig['closed_found']} of {fig['closed_labelled']} "
              f"labelled closed ({fig['closed_called_open']} called open); open eyes called "
              f"closed {fig['open_called_closed']} of {fig['open_found']} found open "
              f"({fig['open_called_open']} called open); unclear rate {fig['unclear_rate']}")
        if args.verbose:
            for kind, rows in fig["details"].items():
                for row in rows:
                    print(f"    {kind}: {row}")
        result[half] = _summary(fig)
    empty = detect_empty()
    result["no_people"] = {"frames": len(empty),
                           "false_faces": sum(len(v) for v in empty.values())}
    print(f"frames without people ({', '.join(empty)}): "
          f"{result['no_people']['false_faces']} false faces "
          f"{[(n, len(v)) for n, v in empty.items() if v]}")
    # What dropping the faces the face mesh does not believe in would do (not applied).
    for floor in PRESENCE_WHAT_IF:
        line = []
        for half in ("tune", "report"):
            fig = score(labels, {n: [f for f in v if f["presence"] >= floor]
                                 for n, v in found[half].items()})
            line.append(f"{half} found {fig['faces_found']}/{fig['faces_labelled']}, "
                        f"false {fig['false_faces']}, closed found {fig['closed_found']}/"
                        f"{fig['closed_labelled']}")
        kept = sum(1 for v in empty.values() for f in v if f["presence"] >= floor)
        line.append(f"no-people false {kept}")
        print(f"  what if faces with mesh presence < {floor} were dropped: "
              + "; ".join(line))
    if args.sweep:
        for closed in (0.08, 0.10, 0.12, 0.14, 0.16):
            for open_ in (0.16, 0.18, 0.20, 0.22):
                if open_ < closed:
                    continue
                with thresholds(CLOSED_BELOW=closed, OPEN_ABOVE=open_):
                    tune = score(labels, detect(parts["tune"]))
                print(f"  sweep tune CLOSED_BELOW={closed:.2f} OPEN_ABOVE={open_:.2f}: "
                      f"closed {tune['closed_found']}/{tune['closed_labelled']}, open called "
                      f"closed {tune['open_called_closed']}, open called open "
                      f"{tune['open_called_open']}/{tune['open_found']}, unclear rate "
                      f"{tune['unclear_rate']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
