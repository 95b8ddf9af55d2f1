"""Faces and eyes: where the faces are, whether each one's eyes are open, how sharp the eyes are.

Three small models from Google's MediaPipe (Apache-2.0, shipped in ``face_models/`` beside
this module; see its NOTICE.md for their origin and training data), run by LiteRT
(``ai-edge-litert``, Apache-2.0) on the CPU, one thread each, nothing downloaded:

- BlazeFace full-range (192x192 input) finds faces and six key points (eyes, nose, mouth,
  ears). It runs on the whole frame and, for large frames, on overlapping tiles too, so that
  a face ~40 px wide in a 1024 px image is seen at ~20 px in the model's input.
- The face mesh (192x192 crop around each face, turned upright on the eye line) gives 468
  landmarks and a face-presence score.
- The iris/eye-contour model (64x64 crop per eye) redraws each eye's lid contour; lids from
  it follow a blink more closely than the face mesh's own.

Eyes open or closed is geometric, never learned: per eye, the gap between the lids (mean of
three vertical distances) over the eye's width (corner to corner). Open eyes read ~0.25..0.4,
closed ones below ~0.1. A face is ``closed`` when both eyes are under :data:`CLOSED_BELOW`,
``open`` when both are over :data:`OPEN_ABOVE`, and ``unclear`` otherwise, or when it is too
small (:data:`MIN_FACE_PX`), turned away (one eye much narrower than the other), or not
clearly a face to the mesh (covered, blurred beyond reading).

Eye sharpness is measured in the eye region resampled to a fixed number of pixels per face
width (:data:`EYE_PATCH` pixels across ``EYE_SPAN`` face widths), so the same face in the
frames of a burst is measured at the same scale whatever its size in pixels. The measure is
the one :func:`photosense.scoring.checks.sharpness` uses (gradient energy at the patch's
scale against 4x coarser, grain discounted), so it reads on the same [0, 1) scale: a crisp eye
~0.6..0.8, a soft one under ~0.4. The sharper of the two eyes counts (focus lands on one).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from photosense.scoring.checks import _gradient_energy, _halve, estimate_noise

log = logging.getLogger("photosense.faces")

MODEL_DIR = os.path.join(os.path.dirname(__file__), "face_models")
DETECTOR_FILE = "face_detection_full_range_sparse.tflite"
MESH_FILE = "face_landmark.tflite"
IRIS_FILE = "iris_landmark.tflite"

EYE_STATES = ("open", "closed", "unclear")
#: Stored with each photo's faces; raise it when a change here makes older results stale
#: (scans then look again, see Library.photos_needing_faces).
FACES_VERSION = 1

#: Detection score at or above which a face counts (MediaPipe's own default for this model).
MIN_SCORE = 0.6
#: Faces narrower than this many pixels (at the analysed size) get ``unclear`` eyes.
MIN_FACE_PX = 24.0
#: Lid gap over eye width: under CLOSED_BELOW in both eyes = closed, over OPEN_ABOVE = open.
#: Checked on the tune half of tests/data/faces (benchmarks/eval_faces.py --sweep): its open
#: eyes read 0.21..0.39 per eye (OPEN_ABOVE up to 0.20 changes nothing there, 0.22 loses one).
#: That half has no closed eyes, so CLOSED_BELOW is kept as it was: nothing there to move it.
CLOSED_BELOW = 0.12
OPEN_ABOVE = 0.18
#: The face mesh's face-presence probability under which a face's eyes are ``unclear``.
MIN_PRESENCE = 0.5
#: One eye narrower than this fraction of the other: the face is turned away.
MIN_EYE_WIDTH_RATIO = 0.55
#: Eye sharpness at or above which a face counts as in focus (the "faces in focus" filter).
IN_FOCUS = 0.45
#: Eye region for sharpness: EYE_SPAN face widths across, resampled to EYE_PATCH pixels.
EYE_SPAN = 0.5
EYE_PATCH = 40

_DET_SIZE = 192
_MESH_SIZE = 192
_IRIS_SIZE = 64
_TILE = 512  # tile side (analysed pixels) for the small-face pass
_NMS_IOU = 0.3

# Face-mesh landmark indices per eye (the subject's right eye is on the image's left):
# corners (outer, inner), then three upper-lid and three lower-lid points, paired.
_MESH_EYES = (
    {"corners": (33, 133), "upper": (160, 159, 158), "lower": (144, 145, 153)},
    {"corners": (263, 362), "upper": (387, 386, 385), "lower": (373, 374, 380)},
)
_FACE_EDGES = (234, 454)  # cheek to cheek: the face's width
# Iris model eye contour (71 points; the first 16 are the eye itself): 0..8 the lower lid
# from corner to corner, 9..15 the upper lid between them, in the same direction; 3, 4, 5
# lie below 11, 12, 13 (MediaPipe maps them onto mesh points 144/145/153 and 160/159/158).
_IRIS_CORNERS = (0, 8)
_IRIS_LOWER = (3, 4, 5)
_IRIS_UPPER = (11, 12, 13)


@dataclass(frozen=True)
class Face:
    """One face: ``box`` (x, y, w, h) as fractions of the image it was found in, the eye
    state, eye sharpness in [0, 1), and the measured lid gap (None when not measured; the
    mean of the two eyes, each eye's own in ``eye_openness``); ``score`` is the detector's,
    ``presence`` the face mesh's face-presence probability."""

    box: tuple[float, float, float, float]
    eyes: str
    eye_sharpness: float
    openness: float | None = None
    score: float = 0.0
    presence: float = 1.0
    eye_openness: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return {"box": [round(float(v), 4) for v in self.box], "eyes": self.eyes,
                "eye_sharpness": round(self.eye_sharpness, 4),
                "openness": None if self.openness is None else round(self.openness, 4)}


# ---------------------------------------------------------------------------------------------
# models


class _Models:
    """The three interpreters of one thread (LiteRT interpreters are not thread-safe)."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        def load(name):
            it = Interpreter(model_path=os.path.join(MODEL_DIR, name), num_threads=1)
            it.allocate_tensors()
            return it

        self.detector = load(DETECTOR_FILE)
        self.mesh = load(MESH_FILE)
        self.iris = load(IRIS_FILE)

    @staticmethod
    def run(it, tensor: np.ndarray) -> list[np.ndarray]:
        it.set_tensor(it.get_input_details()[0]["index"], tensor[None])
        it.invoke()
        return [it.get_tensor(d["index"]) for d in it.get_output_details()]


_local = threading.local()
_first_load = threading.Lock()
_loaded_once = False


def _models() -> _Models:
    global _loaded_once
    models = getattr(_local, "models", None)
    if models is None:
        with _first_load:
            if _loaded_once:
                models = _Models()
            else:
                # LiteRT's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate"
                # on stderr once per process: hide that one line from the command line.
                with _quiet_stderr():
                    models = _Models()
                _loaded_once = True
        _local.models = models
    return models


@contextlib.contextmanager
def _quiet_stderr():
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _anchors() -> np.ndarray:
    """(2304, 2) anchor centres of the full-range detector: one per cell of a 48x48 grid."""
    grid = _DET_SIZE // 4
    ys, xs = np.mgrid[0:grid, 0:grid]
    return np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)


_ANCHORS = _anchors()


# ---------------------------------------------------------------------------------------------
# detection


@dataclass
class _Detection:
    box: np.ndarray  # x0, y0, x1, y1 in analysed pixels
    keypoints: np.ndarray  # (6, 2) in analysed pixels
    score: float


def _detect_in(models: _Models, image: Image.Image, left: int, top: int,
               unit: float = 1.0) -> list[_Detection]:
    """Faces in ``image``, letterboxed into the detector's square input: a region at offset
    left, top of the analysed image, or of a copy of it whose pixels are each ``unit``
    analysed pixels (detections come back in analysed pixels)."""
    w, h = image.size
    scale = _DET_SIZE / max(w, h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((_DET_SIZE, _DET_SIZE, 3), np.float32)
    pad_x, pad_y = (_DET_SIZE - sw) // 2, (_DET_SIZE - sh) // 2
    if (sw, sh) != (w, h):
        image = image.resize((sw, sh), Image.Resampling.BILINEAR)
    canvas[pad_y:pad_y + sh, pad_x:pad_x + sw] = np.asarray(image, np.float32) / 127.5 - 1.0
    raw, logits = models.run(models.detector, canvas)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0].astype(np.float64), -100.0, 100.0)))
    keep = np.flatnonzero(scores >= MIN_SCORE)
    found = []
    for i in keep:
        r = raw[0, i] / _DET_SIZE
        ax, ay = _ANCHORS[i]
        cx, cy, bw, bh = r[0] + ax, r[1] + ay, r[2], r[3]
        pts = r[4:16].reshape(6, 2) + (ax, ay)
        # From the letterboxed square back to analysed pixels.
        def back(x, y):
            return (((x * _DET_SIZE - pad_x) / scale + left) * unit,
                    ((y * _DET_SIZE - pad_y) / scale + top) * unit)
        x0, y0 = back(cx - bw / 2, cy - bh / 2)
        x1, y1 = back(cx + bw / 2, cy + bh / 2)
        kps = np.array([back(px, py) for px, py in pts])
        found.append(_Detection(np.array([x0, y0, x1, y1]), kps, float(scores[i])))
    return found


def _detections(models: _Models, image: Image.Image) -> list[_Detection]:
    """Faces of every size in the analysed image: the whole frame in the detector's square,
    and for a large frame each of its overlapping tiles too (small faces). The frame is
    resized once, to the tiles' scale, and the tiles are cut from that copy (resizing each
    tile on its own cost more than the detector's pass on it); overlapping finds of one face
    are merged."""
    width, height = image.size
    tiles = _tiles(width, height)
    if not tiles:
        return _suppress(_detect_in(models, image, 0, 0))
    side = tiles[0][2] - tiles[0][0]
    k = _DET_SIZE / side  # tile pixels per analysed pixel
    fw, fh = max(1, math.floor(width * k)), max(1, math.floor(height * k))
    # Exactly k (a box of fw / k x fh / k analysed pixels): a tile cut from here at x, y is
    # then the tile at x / k, y / k resized on its own, but for its edge pixels.
    fine = image.resize((fw, fh), Image.Resampling.BILINEAR, box=(0, 0, fw / k, fh / k))
    found = _detect_in(models, fine, 0, 0, unit=1 / k)
    for left, top, _right, _bottom in tiles:
        x, y = min(round(left * k), fine.width - _DET_SIZE), min(round(top * k), fine.height - _DET_SIZE)
        x, y = max(0, x), max(0, y)
        crop = fine.crop((x, y, x + _DET_SIZE, y + _DET_SIZE))
        found += _detect_in(models, crop, x, y, unit=1 / k)
    return _suppress(found)


def _tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (left, top, right, bottom) covering a large image."""
    if max(width, height) < 2 * _TILE:
        return []
    out = []
    side = min(_TILE, width, height)

    def starts(length):
        n = max(1, math.ceil((length - side) / (side * 0.75)) + 1)
        if n == 1:
            return [0]
        return [round(i * (length - side) / (n - 1)) for i in range(n)]

    for top in starts(height):
        for left in starts(width):
            out.append((left, top, left + side, top + side))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _suppress(found: list[_Detection]) -> list[_Detection]:
    """Non-maximum suppression: the best-scoring of overlapping detections stays; a box
    mostly inside a kept one (a face cut by a tile edge) goes too."""
    kept: list[_Detection] = []
    for det in sorted(found, key=lambda d: -d.score):
        area = max(1e-6, (det.box[2] - det.box[0]) * (det.box[3] - det.box[1]))
        clash = False
        for k in kept:
            if _iou(det.box, k.box) > _NMS_IOU:
                clash = True
                break
            ix = max(0.0, min(det.box[2], k.box[2]) - max(det.box[0], k.box[0]))
            iy = max(0.0, min(det.box[3], k.box[3]) - max(det.box[1], k.box[1]))
            if ix * iy > 0.5 * area:
                clash = True
                break
        if not clash:
            kept.append(det)
    return kept


# ---------------------------------------------------------------------------------------------
# landmarks


def _affine_crop(image: Image.Image, center, side: float, angle: float, size: int):
    """A ``size`` x ``size`` crop of ``side`` analysed pixels around ``center``, turned by
    ``angle`` (radians, image coordinates) so that the crop's x axis lies along it; and the
    function mapping crop pixels back to analysed pixels."""
    c, s = math.cos(angle), math.sin(angle)
    k = side / size
    cx, cy = center
    # input = center + R (k (u - size/2), k (v - size/2))
    a, b = c * k, -s * k
    d, e = s * k, c * k
    off_x = cx - (a + b) * size / 2
    off_y = cy - (d + e) * size / 2
    crop = image.transform((size, size), Image.Transform.AFFINE, (a, b, off_x, d, e, off_y),
                           resample=Image.Resampling.BILINEAR)

    def back(pts: np.ndarray) -> np.ndarray:
        u, v = pts[:, 0], pts[:, 1]
        return np.stack([a * u + b * v + off_x, d * u + e * v + off_y], axis=1)

    return crop, back


def _mesh(models: _Models, image: Image.Image, det: _Detection):
    """(468, 2) face-mesh landmarks in analysed pixels and the face-presence probability."""
    right_eye, left_eye = det.keypoints[0], det.keypoints[1]
    angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
    center = ((det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2)
    side = 1.5 * max(det.box[2] - det.box[0], det.box[3] - det.box[1])
    crop, back = _affine_crop(image, center, side, angle, _MESH_SIZE)
    tensor = np.asarray(crop, np.float32) / 255.0
    landmarks, presence = models.run(models.mesh, tensor)
    pts = landmarks.reshape(-1, 3)[:, :2]
    prob = 1.0 / (1.0 + math.exp(-float(np.clip(presence.ravel()[0], -100, 100))))
    return back(pts), prob, angle


def _eye_openness(models: _Models, image: Image.Image, mesh: np.ndarray, eye: dict,
                  angle: float, mirror: bool) -> tuple[float, float]:
    """(lid gap / eye width, eye width in analysed pixels) for one eye, from the iris
    model's eye contour on a crop around the mesh's eye corners."""
    p_outer, p_inner = mesh[eye["corners"][0]], mesh[eye["corners"][1]]
    width = float(np.hypot(*(p_outer - p_inner)))
    center = (p_outer + p_inner) / 2
    # MediaPipe crops 2.3 eye widths around the eye; the model reads the eye on the image's
    # left, so the other one is mirrored first.
    crop, back = _affine_crop(image, center, 2.3 * max(width, 1.0), angle, _IRIS_SIZE)
    if mirror:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    tensor = np.asarray(crop, np.float32) / 255.0
    contour = models.run(models.iris, tensor)
    eye_pts = next(o for o in contour if o.size == 213).reshape(71, 3)[:16, :2].copy()
    if mirror:
        eye_pts[:, 0] = _IRIS_SIZE - eye_pts[:, 0]
    pts = back(eye_pts)
    gaps = [np.hypot(*(pts[u] - pts[lo])) for u, lo in zip(_IRIS_UPPER, _IRIS_LOWER)]
    corners = np.hypot(*(pts[_IRIS_CORNERS[0]] - pts[_IRIS_CORNERS[1]]))
    return float(np.mean(gaps) / max(corners, 1e-6)), width


def _mesh_openness(mesh: np.ndarray, eye: dict) -> float:
    """Lid gap over eye width from the face mesh alone."""
    p0, p1 = mesh[eye["corners"][0]], mesh[eye["corners"][1]]
    width = float(np.hypot(*(p0 - p1)))
    gaps = [np.hypot(*(mesh[u] - mesh[lo])) for u, lo in zip(eye["upper"], eye["lower"])]
    return float(np.mean(gaps) / max(width, 1e-6))


# ---------------------------------------------------------------------------------------------
# eye sharpness


def _patch_sharpness(luma: Image.Image, center, face_width: float, noise: float) -> float:
    """Focus in [0, 1) of the eye region around ``center``, resampled to EYE_PATCH pixels
    per EYE_SPAN face widths; ``noise`` is the analysed image's noise sigma."""
    span = EYE_SPAN * face_width
    half = span / 2
    box = (center[0] - half, center[1] - half, center[0] + half, center[1] + half)
    k = EYE_PATCH / max(span, 1e-6)  # patch pixels per analysed pixel
    resample = Image.Resampling.BOX if k < 1 else Image.Resampling.BILINEAR
    patch = np.asarray(luma.resize((EYE_PATCH, EYE_PATCH), resample, box=box), np.float32)
    # Box-averaging k-fold shrinks grain's sigma k-fold; upsampling spreads each pixel's
    # grain over 1/k patch pixels, so its gradient per patch pixel is k times smaller too.
    sigma = noise * k if k < 1 else noise / k
    levels = [patch]
    for _ in range(3):
        levels.append(_halve(levels[-1]))
    best = []
    for fine_level in (0, 1):
        fine, coarse = levels[fine_level], levels[fine_level + 2]
        e_fine = float(_gradient_energy(fine, fine_level, fine.shape[0] - 1).mean())
        e_coarse = float(_gradient_energy(coarse, fine_level + 2, coarse.shape[0] - 1).mean())
        var = (sigma / 2.0**fine_level) ** 2
        e_fine = max(e_fine - 4.0 * var / 4.0**fine_level, 0.0)
        e_coarse = max(e_coarse - 4.0 * var / 4.0 ** (fine_level + 4), 0.0)
        if e_coarse <= max(1e-3, sigma * sigma / 32.0):
            return 0.0  # no structure at all (a flat patch): nothing in focus to see
        best.append(e_fine / e_coarse)
    ratio = min(best)
    return float(max(0.0, 1.0 - 1.0 / max(ratio, 1.0)))


# ---------------------------------------------------------------------------------------------
# the whole thing

_unavailable: str | None = None


def faces_or_none(image: Image.Image, noise: float | None = None) -> list[dict] | None:
    """:func:`find_faces` as stored dicts; None (and one logged line per process) when the
    face models cannot run here, so that a scan still records everything else."""
    global _unavailable
    if _unavailable is not None:
        return None
    try:
        _models()
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        _unavailable = f"{type(exc).__name__}: {exc}"
        log.warning("faces are not looked for: the face models cannot run (%s)", _unavailable)
        return None
    return [f.as_dict() for f in find_faces(image, noise)]



def find_faces(image: Image.Image, noise: float | None = None) -> list[Face]:
    """Faces in ``image`` (upright, any size; analysed as it is, so pass the scan's 1024 px
    copy), largest first. ``noise``: the image's luma noise sigma if already known."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    width, height = image.size
    if min(width, height) < 16:
        return []
    models = _models()
    detections = _detections(models, image)
    if not detections:
        return []
    luma = image.convert("L")
    if noise is None:
        noise = estimate_noise(np.asarray(luma, np.float32))
    faces = []
    for det in detections:
        faces.append(_analyse_face(models, image, luma, det, noise))
    faces.sort(key=lambda f: -f.box[2] * f.box[3])
    return faces


def _analyse_face(models: _Models, image: Image.Image, luma: Image.Image, det: _Detection,
                  noise: float) -> Face:
    width, height = image.size
    x0, y0, x1, y1 = det.box
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    box = (x0 / width, y0 / height, max(0.0, x1 - x0) / width, max(0.0, y1 - y0) / height)
    mesh, presence, angle = _mesh(models, image, det)
    face_width = float(np.hypot(*(mesh[_FACE_EDGES[0]] - mesh[_FACE_EDGES[1]])))
    face_width = max(face_width, det.box[2] - det.box[0])
    sharp = []
    openness = []
    widths = []
    for index, eye in enumerate(_MESH_EYES):
        corners = mesh[list(eye["corners"])]
        center = corners.mean(axis=0)
        sharp.append(_patch_sharpness(luma, center, face_width, noise))
        value, eye_width = _eye_openness(models, image, mesh, eye, angle, mirror=index == 1)
        openness.append(value)
        widths.append(eye_width)
    state = _eye_state(openness, widths, face_width, presence)
    return Face(box=box, eyes=state, eye_sharpness=max(sharp),
                openness=float(np.mean(openness)), score=det.score, presence=presence,
                eye_openness=(openness[0], openness[1]))


def _eye_state(openness: list[float], widths: list[float], face_width: float,
               presence: float) -> str:
    if face_width < MIN_FACE_PX or presence < MIN_PRESENCE:
        return "unclear"
    if min(widths) < MIN_EYE_WIDTH_RATIO * max(widths):
        return "unclear"  # turned away: the far eye is foreshortened, its lids unreadable
    if max(openness) < CLOSED_BELOW:
        return "closed"
    if min(openness) > OPEN_ABOVE:
        return "open"
    return "unclear"
