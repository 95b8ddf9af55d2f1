"""CLIP-IQA+ prompt learning (CoOp) on cached features of the tiny random model.

Random weights: these tests check the mechanics (the splice, training, freezing, files,
scoring), never the quality of what is learned.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from photosense.errors import PhotosenseError
from photosense.library import FLAG_PICK, FLAG_REJECT, Library, PhotoQuery
from photosense.scoring import coop
from photosense.scoring.clipiqa import ClipIQAEngine, EngineConfig
from photosense.scoring.maths import attribute_scores
from tests.fixtures.cli import run_cli as run
from tests.fixtures.photos import add_noise, blur, darken

NAMES = ("astronaut", "coffee", "chelsea", "rocket")



pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shoot(tmp_path_factory, real_photos):
    """13 photos: 4 originals, and a blurred, a dark and a noisy copy of 3 of them."""
    folder = tmp_path_factory.mktemp("coop") / "shoot"
    folder.mkdir()
    for i, name in enumerate(NAMES):
        img = real_photos[name].resize((128, 128))
        img.save(folder / f"{name}.jpg", quality=90)
        if i < 3:
            blur(img, 3).save(folder / f"{name}_blur.jpg", quality=90)
            darken(img, 0.3).save(folder / f"{name}_dark.jpg", quality=90)
            add_noise(img, 30, seed=i).save(folder / f"{name}_noisy.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def scored(tmp_path_factory, shoot, tiny_weights, model_configs_dir):
    """A scored library of ``shoot`` (a template: tests copy it)."""
    from photosense.ingest.scan import Scanner
    from photosense.pipeline import ScoringJob

    path = tmp_path_factory.mktemp("coop-lib") / "lib.sqlite3"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHOTOSENSE_MODEL_CONFIGS", str(model_configs_dir))
        with Library(path) as lib:
            Scanner(lib).scan_folder(lib.add_folder(shoot))
            config = EngineConfig(model="photosense-tiny", weights=str(tiny_weights), device="cpu", max_side=128)
            assert ScoringJob(lib, config).run().encoded == 13
    return path


@pytest.fixture
def lib_path(scored, tmp_path):
    copy = tmp_path / "lib.sqlite3"
    shutil.copy(scored, copy)
    return copy


@pytest.fixture
def engine(tiny_config):
    return ClipIQAEngine(tiny_config).load()


def _features(lib_path):
    with Library(lib_path) as lib:
        model = lib.active_model()
        ids, matrix = lib.feature_matrix(model.id)
        rows = {r.id: r for r in lib.rows(ids.tolist())}
    return ids, matrix, rows


def test_splice_matches_the_text_encoder(engine):
    """With the placeholders' own embeddings as context, the spliced prompts are exactly the
    texts 'X…X Good photo.. X…X' run through the normal text encoder."""
    tower = coop.PromptTextTower(engine)
    assert tower.name_lens == [3, 3]  # good photo .. / bad photo ..
    with torch.no_grad():
        feats = torch.nn.functional.normalize(tower.features(tower.initial_context()), dim=-1).numpy()
    xs = " ".join(["X"] * 8)
    ref = engine.encode_texts([f"{xs} Good photo.. {xs}", f"{xs} Bad photo.. {xs}"])
    assert np.allclose(feats, ref, atol=1e-5)


def test_training_lowers_the_loss_and_keeps_clip_frozen(engine, lib_path):
    _, x, _ = _features(lib_path)
    # Targets a context can reach: the scores of a "teacher" context near the start, stretched
    # to [0, 1] (as MOS are).
    start = coop.PromptTextTower(engine).initial_context().numpy()
    noise = np.random.default_rng(0).normal(scale=0.05, size=start.shape).astype(np.float32)
    t = coop.learned_text_features(engine, coop.LearnedPrompts(start + noise))
    target = coop.normalise_mos(attribute_scores(x, t[:1], t[1:], engine.logit_scale))
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    grads_before = [p.requires_grad for p in engine.model.parameters()]
    result = coop.train_prompts(engine, x, target, epochs=40, batch_size=8)
    assert result.steps == 40 * 2 and result.epochs == 40 and len(result.epoch_losses) == 40
    assert result.final_loss < 0.2 * result.initial_loss, (result.initial_loss, result.final_loss)
    # CLIP is untouched: same weights, same requires_grad flags, no gradients left behind.
    after = engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in engine.model.parameters()] == grads_before
    assert all(p.grad is None for p in engine.model.parameters())
    learned = result.prompts
    assert learned.ctx.shape == (16, 32) and learned.model == engine.id
    assert not np.allclose(learned.ctx, start)
    # The loss reported is the loss of the saved context, scored exactly like any attribute.
    t = coop.learned_text_features(engine, learned)
    scores = attribute_scores(x, t[:1], t[1:], engine.logit_scale)
    assert np.mean((scores - target) ** 2) == pytest.approx(result.final_loss, rel=1e-3)


def test_saved_file_round_trips(engine, tmp_path):
    ctx = np.random.default_rng(1).normal(size=(16, 32)).astype(np.float32)
    learned = coop.LearnedPrompts(ctx, ("Sharp photo.", "Blurry photo."), engine.id, {"samples": "12"})
    path = coop.save_prompts(tmp_path / "sub" / "sharp", learned)
    assert path.name == "sharp.safetensors" and path.is_file()
    back = coop.load_prompts(path)
    assert np.array_equal(back.ctx, ctx)
    assert back.classnames == ("Sharp photo.", "Blurry photo.") and back.model == engine.id
    assert back.info["samples"] == "12" and back.info["n_ctx"] == "16"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_published_layout_loads(tmp_path):
    ctx = torch.randn(16, 32) * 0.02
    torch.save(ctx, tmp_path / "plain.pth")
    torch.save({"ctx": ctx}, tmp_path / "dict.pt")
    from safetensors.torch import save_file

    save_file({"prompt_learner.ctx": ctx}, str(tmp_path / "plain.safetensors"))
    for name in ("plain.pth", "dict.pt", "plain.safetensors"):
        learned = coop.load_prompts(tmp_path / name)
        assert learned.classnames == coop.DEFAULT_CLASSNAMES and learned.model is None
        assert np.allclose(learned.ctx, ctx.numpy())
    (tmp_path / "junk.pth").write_bytes(b"not a tensor file")
    torch.save(torch.zeros(3, 4, 5, 6), tmp_path / "wrong.pth")
    for name, fragment in (("junk.pth", "not a tensor file"), ("wrong.pth", "(n_ctx, width)"),
                           ("absent.pth", "not found")):
        with pytest.raises(PhotosenseError, match=fragment) as info:
            coop.load_prompts(tmp_path / name)
        assert "\n" not in str(info.value)


def test_prompts_use_published_tensor_scores_like_any_attribute(capsys, lib_path, tmp_path, engine, real_photos):
    torch.save(torch.randn(16, 32) * 0.02, tmp_path / "clipiqa+.pth")
    code, _, err = run(capsys, "prompts", "use", tmp_path / "clipiqa+.pth", "--name", "plus",
                       "--library", lib_path)
    assert code == 0 and "added attribute plus" in err and "scored 13 photos" in err, err
    with Library(lib_path) as lib:
        attr = lib.attribute("plus")
        assert attr.kind == "learned" and attr.extra["file"] == str(tmp_path / "clipiqa+.pth")
        rows = lib.query(PhotoQuery(sort="plus"))
    values = [r.scores["plus"] for r in rows]
    assert len(values) == 13 and all(0 < v < 1 for v in values)
    assert values == sorted(values, reverse=True)
    # The same numbers as the softmax of the learned prompts computed by hand.
    ids, x, _ = _features(lib_path)
    t = coop.learned_text_features(engine, coop.load_prompts(tmp_path / "clipiqa+.pth"))
    expected = dict(zip(ids.tolist(), attribute_scores(x, t[:1], t[1:], engine.logit_scale)))
    assert all(r.scores["plus"] == pytest.approx(expected[r.id], rel=1e-5) for r in rows)
    code, out, _ = run(capsys, "list", "--sort", "plus", "--format", "json", "--library", lib_path)
    assert [r["scores"]["plus"] for r in json.loads(out)] == pytest.approx(values)
    # A photo added later is scored for the learned attribute by the scoring job itself.
    more = tmp_path / "more"
    more.mkdir()
    real_photos["motorcycle_left"].resize((128, 96)).save(more / "moto.jpg")
    assert run(capsys, "add", more, "--library", lib_path)[0] == 0
    code, _, err = run(capsys, "score", "--library", lib_path)
    assert code == 0 and "scored 1 photos" in err, err
    with Library(lib_path) as lib:
        moto = lib.query(PhotoQuery(sort="plus", limit=20))
    assert len(moto) == 14 and all(0 < r.scores["plus"] < 1 for r in moto)


def test_width_mismatch_is_one_line_and_adds_nothing(capsys, lib_path, tmp_path):
    torch.save(torch.randn(16, 512), tmp_path / "rn50.pth")
    code, _, err = run(capsys, "prompts", "use", tmp_path / "rn50.pth", "--name", "plus", "--library", lib_path)
    lines = [line for line in err.splitlines() if line.startswith("photosense:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "width 512" in lines[0] and "text width 32" in lines[0]
    with Library(lib_path) as lib:
        assert "plus" not in {a.name for a in lib.attributes()}


def test_train_from_flags_then_use(capsys, lib_path):
    with Library(lib_path) as lib:
        rows = lib.query(PhotoQuery())
        good = [r.id for r in rows if not any(s in r.name for s in ("_blur", "_dark", "_noisy"))]
        bad = [r.id for r in rows if r.id not in good]
        lib.set_culling(good, flag=FLAG_PICK)
        lib.set_culling(bad, flag=FLAG_REJECT)
    code, out, err = run(capsys, "prompts", "train", "--from-flags", "--epochs", "30", "--library", lib_path)
    assert code == 0, err
    saved = out.strip()
    assert saved == os.path.join(os.environ["PHOTOSENSE_DATA_DIR"], "prompts", "picks.safetensors")
    assert "4 picks, 9 rejects" in err and "MSE" in err
    learned = coop.load_prompts(saved)
    assert learned.info["source"] == "4 picks, 9 rejects" and learned.model.startswith("photosense-tiny/")
    code, _, err = run(capsys, "prompts", "use", saved, "--name", "mine", "--library", lib_path)
    assert code == 0 and "scored 13 photos" in err
    code, out, _ = run(capsys, "prompts", "list", "--library", lib_path)
    assert "picks.safetensors" in out and "'Good photo.' vs 'Bad photo.'" in out


def test_train_from_flags_needs_both_kinds(capsys, lib_path):
    code, _, err = run(capsys, "prompts", "train", "--from-flags", "--library", lib_path)
    assert code == 1 and "found 0 pick(s), 0 reject(s)" in err


def test_train_from_a_mos_dataset(capsys, shoot, tmp_path, tiny_weights):
    names = sorted(p.name for p in shoot.iterdir())
    mos = {n: (1.0 if "_" in n else 4.5) + 0.1 * i for i, n in enumerate(names)}
    dataset = tmp_path / "tiny-mos.csv"
    dataset.write_text("image_name,MOS\n" + "".join(f"{n},{m}\n" for n, m in mos.items()))
    out_file = tmp_path / "learned.safetensors"
    code, out, err = run(capsys, "prompts", "train", dataset, "--root", shoot, "--epochs", "3",
                         "--out", out_file, "--model", "photosense-tiny", "--weights", tiny_weights,
                         "--device", "cpu", "--max-side", "128")
    assert code == 0, err
    assert out.strip() == str(out_file) and "learned from 13 images (MOS of tiny-mos.csv)" in err
    learned = coop.load_prompts(out_file)
    assert learned.ctx.shape == (16, 32) and learned.info["epochs"] == "3"
