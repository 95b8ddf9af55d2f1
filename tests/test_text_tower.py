"""Text-only work without torch: photosense's CLIP tokenizer and the exported text tower
(photosense.scoring.tokenizer, photosense.scoring.backends.export_text_tower)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
from tests.fixtures.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "Good photo.", "Bad photo.", "", "   ", "  A   dog\ton the BEACH!!  ", "café crème brûlée",
    "日本語のテキスト", "emoji 😀🎉 ok", "it's we're they've I'm you'll he'd", "IT'S LOUD",
    "&amp;lt; html &quot;quoted&quot; &#39;", "x" * 300, " ".join(["word"] * 100),
    "<start_of_text> hi <end_of_text>", "123 4567 3.14 1,000,000", "naïve Ünïcödé ﬁ ligature",
    "photo of a cat, 35mm, f/1.8, ISO 3200", "\u00a0non-breaking\u2003em space\u200bzero",
    "mojibake: Ã©tÃ©", "tab\tnew\nline\r\nreturn", "Ωμέγα Привет مرحبا שלום",
]


def _random_texts(n: int, seed: int = 7) -> list[str]:
    """Words of letters, digits, punctuation and a few non-Latin scripts, at random."""
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789.,;:!?'\"-()/&é日ωЖ ")
    return ["".join(rng.choice(alphabet, size=int(rng.integers(1, 120)))) for _ in range(n)]


def test_tokenizer_gives_open_clips_ids():
    import open_clip

    from photosense.scoring.tokenizer import ClipTokenizer

    texts = TEXTS + _random_texts(200)
    reference = open_clip.get_tokenizer("RN50-quickgelu")
    assert type(reference).__name__ == "SimpleTokenizer"
    ids = ClipTokenizer()(texts)
    assert ids.dtype == np.int64 and ids.shape == (len(texts), 77)
    np.testing.assert_array_equal(ids, reference(texts).numpy())
    # Cut to the context length, the end token kept last.
    assert ids[TEXTS.index(" ".join(["word"] * 100)), -1] == reference.eot_token_id


def _fresh_process_encode(config: EngineConfig, prompts: list[str]) -> dict:
    """Encode ``prompts`` in a new Python process, as ``photosense attr add`` would: which
    text backend it used, whether torch or open_clip were imported, and the features."""
    code = (
        "import json, sys\n"
        "from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig\n"
        f"engine = ClipIQAEngine(EngineConfig(**json.loads({json.dumps(json.dumps(dataclasses.asdict(config)))})))\n"
        f"feats = engine.encode_texts({prompts!r})\n"
        "print(json.dumps({'backend': engine.text_backend, 'torch': 'torch' in sys.modules,\n"
        "                  'open_clip': 'open_clip' in sys.modules, 'scale': engine.logit_scale,\n"
        "                  'dim': engine.dim, 'features': feats.tolist()}))\n"
    )
    return json.loads(_run_python(code).stdout.strip().splitlines()[-1])


def _run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new Python process (this checkout importable); it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done


def test_text_work_after_a_torch_load_runs_without_torch(tiny_config):
    config = dataclasses.replace(tiny_config, backend="auto")
    reference = ClipIQAEngine(config)
    assert reference.text_model is not None  # torch (exports the text tower, once per model)
    assert reference.text_backend == "torch"
    prompts = ["Warm photo.", "Cold photo.", "a dog on the beach", "x " * 80]
    expected = reference.encode_texts(prompts)
    got = _fresh_process_encode(config, prompts)
    assert got["backend"] == "onnxruntime"
    assert not got["torch"] and not got["open_clip"]
    assert got["scale"] == pytest.approx(reference.logit_scale) and got["dim"] == reference.dim
    feats = np.asarray(got["features"], dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert (feats * expected).sum(axis=1).min() > 0.9999


def test_exported_text_tower_agrees_with_torch_on_rn50(rn50_weights):
    config = EngineConfig(model="RN50-quickgelu", weights=str(rn50_weights), device="cpu",
                          backend="onnxruntime")
    torch_engine = ClipIQAEngine(config)
    assert torch_engine.text_model is not None  # torch (exports RN50's text tower, once)
    fast = ClipIQAEngine(config).load_text()
    assert torch_engine.text_backend == "torch" and fast.text_backend == "onnxruntime"
    assert not fast.loaded and fast.logit_scale == pytest.approx(torch_engine.logit_scale)
    texts = TEXTS[:12]
    a, b = torch_engine.encode_texts(texts), fast.encode_texts(texts)
    assert (a * b).sum(axis=1).min() > 0.9999
    # The export takes tokens cut after the last end of text (two short prompts: 5 tokens),
    # and gives open_clip's own full 77-token features for them.
    tower = fast._text_tower
    assert tower.trimmed
    lengths = []
    session = tower.session

    class Recorder:
        def run(self, names, feeds):
            lengths.append(feeds["tokens"].shape[1])
            return session.run(names, feeds)

    tower.session = Recorder()
    short = ["Warm photo.", "Cold photo."]
    got = fast.encode_texts(short)
    assert lengths == [5]
    import torch

    with torch.inference_mode():
        model = torch_engine.text_model
        ref = torch.nn.functional.normalize(
            model.encode_text(torch_engine._tokenizer(short)), dim=-1).numpy()
    assert (got * ref).sum(axis=1).min() > 0.99999


def test_the_torch_backend_keeps_text_work_on_torch(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOSENSE_EXPORT_DIR", str(tmp_path / "exports"))
    config = dataclasses.replace(tiny_config, backend="torch")
    ClipIQAEngine(config).load_text()
    assert not list((tmp_path / "exports").glob("*-text-*"))
    assert ClipIQAEngine(config).text_backend == "torch"


def test_a_tokenizer_that_disagrees_is_refused_and_remembered(tiny_config, tmp_path,
                                                              monkeypatch, caplog):
    from photosense.scoring import backends
    from photosense.scoring.tokenizer import ClipTokenizer

    monkeypatch.setenv("PHOTOSENSE_EXPORT_DIR", str(tmp_path / "exports"))
    real = ClipTokenizer.encode
    monkeypatch.setattr(ClipTokenizer, "encode", lambda self, text: real(self, text)[::-1])
    with caplog.at_level("INFO", logger="photosense.backends"):
        ClipIQAEngine(tiny_config).load_text()
    assert "tokenizer disagrees" in caplog.text
    assert not list((tmp_path / "exports").glob("*.onnx"))
    monkeypatch.setattr(backends, "_export_text", lambda *a: pytest.fail("tried again"))
    engine = ClipIQAEngine(tiny_config)
    assert engine.text_backend == "torch"


def test_a_damaged_text_export_falls_back_to_torch_and_is_redone(tiny_config, tmp_path,
                                                                 monkeypatch, caplog):
    monkeypatch.setenv("PHOTOSENSE_EXPORT_DIR", str(tmp_path / "exports"))
    ClipIQAEngine(tiny_config).load_text()
    (export,) = (tmp_path / "exports").glob("*-text-*.onnx")
    good = export.read_bytes()
    export.write_bytes(good[: len(good) // 3])  # a cut-off copy
    with caplog.at_level("WARNING", logger="photosense.backends"):
        engine = ClipIQAEngine(tiny_config)
        assert engine.text_backend == "torch"  # loaded with torch, which exports again
    assert "cannot load the exported text tower" in caplog.text
    assert ClipIQAEngine(tiny_config).text_backend == "onnxruntime"
    assert export.stat().st_size == len(good)


def test_attr_add_after_score_needs_no_torch(tmp_path, capsys, real_photos, tiny_config):
    """The user's path: ``score`` (torch, exports the text tower), then ``attr add`` in a new
    process, which must not import torch."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i, name in enumerate(["astronaut", "coffee", "chelsea"]):
        real_photos[name].resize((96 + i, 80)).save(folder / f"{name}.jpg")
    lib = tmp_path / "lib.sqlite3"
    engine = ["--model", tiny_config.model, "--weights", tiny_config.weights, "--device", "cpu",
              "--max-side", "256"]
    assert run_cli(capsys, "--library", lib, "add", folder)[0] == 0
    code, out, err = run_cli(capsys, "--library", lib, "score", *engine)
    assert code == 0, err
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['photosense', '--library', {str(lib)!r}, 'attr', 'add', 'warm', 'Warm', 'Cold']\n"
        "try:\n"
        "    runpy.run_module('photosense', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('exit', code, 'torch' in sys.modules)\n"
    )
    done = _run_python(probe)
    assert "scored 3 photos" in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "exit 0 False"
    code, out, err = run_cli(capsys, "--library", lib, "list", "--format", "json", "--sort", "warm")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 3 and all(isinstance(r["scores"]["warm"], float) for r in rows)


def test_a_long_prompt_is_reported_as_truncated_without_torch():
    """`attr add` with a prompt over 75 characters says how much of it is read: with
    photosense's tokenizer for CLIP-tokenized models, the same count as open_clip's, and
    without importing torch."""
    code = (
        "import sys, json\n"
        "from photosense.scoring.clipiqa import EngineConfig, truncation_notes, standard_tokenizer_context\n"
        "prompt = 'a photo of ' + 'a very ' * 60 + 'red car'\n"
        "notes = truncation_notes(EngineConfig(model='RN50'), [prompt, 'Short.'])\n"
        "print(json.dumps([notes, standard_tokenizer_context('ViT-B-16-SigLIP'), 'torch' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    notes, siglip, torch_imported = json.loads(out.stdout)
    assert not torch_imported and siglip is None  # an HF tokenizer: only open_clip can count it
    import open_clip

    from photosense.scoring.prompts import truncated_words

    prompt = "a photo of " + "a very " * 60 + "red car"
    theirs = truncated_words(prompt, lambda t: len(open_clip.get_tokenizer("RN50-quickgelu").encode(t)), 77)
    assert len(notes) == 1 and f"only its first {theirs} of {len(prompt.split())} words" in notes[0]
