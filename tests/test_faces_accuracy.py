"""Accuracy of faces and eye states on real labelled photos (issue 11.7).

The photos and labels are in tests/data/faces (LICENSES.md there says where each comes from
and how the labels were made). ``benchmarks/eval_faces.py`` splits them by sorted file name
into a ``tune`` half and a ``report`` half and scores them; the floors below are asserted on
the report half, below what the code measured there (see each test), so that they hold with a
margin yet fail when finding faces or reading eyes breaks.

The set is small (five photos from package registries, 16 faces, 13 of them in one group
photo) and has no face with closed eyes (LICENSES.md says why), so no test here can claim that
real closed eyes are found: what is asserted is that faces are found, small ones in a group
included, and that open eyes are not called closed. The tune half is asserted too, as a
regression guard only (figures are reported on the report half).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from photosense.scoring.faces import EYE_STATES

ROOT = Path(__file__).resolve().parents[1]
FACE_DIR = ROOT / "tests" / "data" / "faces"


def _load_eval():
    spec = importlib.util.spec_from_file_location("eval_faces",
                                                  ROOT / "benchmarks" / "eval_faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluation = _load_eval()


@pytest.fixture(scope="module")
def labels() -> dict[str, list[dict]]:
    return evaluation.load_labels()


@pytest.fixture(scope="module")
def report(labels) -> dict:
    halves = evaluation.split(labels)
    return evaluation.score(labels, evaluation.detect(halves["report"]))


def test_every_photo_is_labelled_and_licensed(labels):
    photos = sorted(p.name for p in FACE_DIR.glob("*.jpg"))
    assert sorted(labels) == photos
    licences = (FACE_DIR / "LICENSES.md").read_text()
    for name, faces in labels.items():
        assert f"`{name}`" in licences, name
        assert faces, name  # every photo here has at least one face
        for face in faces:
            assert face["eyes"] in EYE_STATES, (name, face)
            assert isinstance(face["glasses"], bool), (name, face)
            x, y, w, h = face["box"]
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 1.01 and y + h <= 1.01
    total = sum(len(f) for f in labels.values())
    assert len(photos) >= 5 and total >= 16


def test_the_split_is_alternate_files_in_name_order(labels):
    halves = evaluation.split(labels)
    names = sorted(labels)
    assert halves["tune"] == names[0::2] and halves["report"] == names[1::2]
    assert not set(halves["tune"]) & set(halves["report"])
    assert evaluation.split(reversed(names)) == halves  # the order given does not matter


def test_matching_pairs_each_label_with_one_found_face():
    labelled = [{"box": [0.1, 0.1, 0.2, 0.2]}, {"box": [0.5, 0.5, 0.1, 0.1]}]
    found = [{"box": [0.52, 0.51, 0.09, 0.1]}, {"box": [0.12, 0.1, 0.2, 0.22]},
             {"box": [0.13, 0.12, 0.18, 0.2]}, {"box": [0.8, 0.8, 0.1, 0.1]}]
    pairs = dict(evaluation.match(labelled, found))
    assert pairs[1] == 0 and pairs[0] in (1, 2) and len(pairs) == 2


@pytest.fixture(scope="module")
def tune(labels) -> dict:
    halves = evaluation.split(labels)
    return evaluation.score(labels, evaluation.detect(halves["tune"]))


def test_report_half_finds_the_labelled_faces(report):
    # Measured: 2 of 2 labelled faces found (Grace Hopper with glasses; a small face in
    # profile in the Rose Garden), no false face.
    assert report["faces_labelled"] == 2
    assert report["faces_found"] == 2, report["details"]["missed"]
    assert report["false_faces"] == 0, report["details"]["false"]
    assert report["glasses_found"] >= 1


def test_report_half_never_calls_open_eyes_closed(report):
    # Measured: the one face labelled open is called open; the profile one is unclear.
    assert report["open_found"] == 1
    assert report["open_called_closed"] == 0, report["details"]["eyes_differ"]
    assert report["open_called_open"] == 1, report["details"]["eyes_differ"]
    assert report["unclear_called_closed"] == 0, report["details"]["eyes_differ"]


def test_small_faces_of_a_real_group_are_found_and_not_called_closed(tune):
    # A regression guard on the tune half (the Situation Room: 13 faces 40-105 px wide at
    # 1024 px, one half hidden). Measured: 13 of 14 faces found (the half-hidden one not),
    # none false, of 11 found open 10 called open and none closed.
    assert tune["faces_found"] >= 12, tune["details"]["missed"]
    assert tune["false_faces"] == 0, tune["details"]["false"]
    assert tune["open_called_closed"] == 0, tune["details"]["eyes_differ"]
    assert tune["open_called_open"] >= 9, tune["details"]["eyes_differ"]


def test_frames_without_people_have_at_most_the_known_false_face():
    # Measured: none on coffee, chelsea, rocket and motorcycle, and on copies darkened to 0.3
    # one, on the darkened rocket (its nose cone): the detector scores it 0.75, like real
    # faces in profile, and the face mesh doubts it as it doubts those (see
    # benchmarks/eval_faces.py's "what if" lines), so no threshold removes it alone. Its eyes
    # are unclear, so it never counts as a blink.
    empty = evaluation.detect_empty()
    false = [(name, face) for name, faces in empty.items() for face in faces]
    assert len(false) <= 1, false
    assert all(face["eyes"] == "unclear" for _name, face in false)


def test_eval_script_prints_json_last_line(capsys):
    assert evaluation.main([]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"tune", "report", "no_people", "closed_below", "open_above"}
    assert result["report"]["faces_labelled"] == 2 and result["tune"]["faces_labelled"] == 14
