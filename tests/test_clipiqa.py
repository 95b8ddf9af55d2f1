"""The CLIP-IQA engine: position-free attention pool, any input size, checkpoints, ids, errors.

Random weights only (fixtures in tests/fixtures/models.py); nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from photosense.errors import PhotosenseError, WeightsUnavailable
from photosense.scoring import clipiqa
from photosense.scoring.clipiqa import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_MODEL,
    MIN_SIDE,
    ClipIQAEngine,
    EngineConfig,
    build_random_model,
    make_random_checkpoint,
    model_id,
    model_name,
    register_model_configs,
    resolve_device,
    weights_cache_location,
)
from photosense.scoring.maths import attribute_scores

# --------------------------------------------------------------------------- helpers


def _photo(w: int, h: int, seed: int) -> Image.Image:
    """A small synthetic 'photo': colour gradient, shapes and some noise; differs per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack(
        [
            255 * xx / max(w - 1, 1),
            255 * yy / max(h - 1, 1),
            np.full((h, w), rng.integers(0, 255)),
        ],
        axis=-1,
    )
    arr += rng.normal(0, 20, arr.shape)
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.ellipse([x0, y0, x0 + w // 3, y0 + h // 3], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def _naive_attnpool(pool, fmap: torch.Tensor) -> torch.Tensor:
    """CLIP-IQA's pool written out per head and per token with plain matmuls (float64)."""
    w = {n: p.detach().double() for n, p in pool.state_dict().items()}
    heads = pool.num_heads
    out = []
    for img in fmap.double():  # (C, H, W)
        c = img.shape[0]
        d = c // heads
        z = img.reshape(c, -1).T  # (HW, C)
        tokens = torch.cat([z.mean(dim=0, keepdim=True), z])  # (HW+1, C)
        q = tokens[0] @ w["q_proj.weight"].T + w["q_proj.bias"]  # query from the mean token only
        k = tokens @ w["k_proj.weight"].T + w["k_proj.bias"]
        v = tokens @ w["v_proj.weight"].T + w["v_proj.bias"]
        per_head = []
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            logits = torch.stack([q[sl] @ k[i, sl] for i in range(k.shape[0])]) / math.sqrt(d)
            attn = torch.softmax(logits, dim=0)
            per_head.append((attn[:, None] * v[:, sl]).sum(dim=0))
        out.append(torch.cat(per_head) @ w["c_proj.weight"].T + w["c_proj.bias"])
    return torch.stack(out)


def _layer4(visual, batch: torch.Tensor) -> torch.Tensor:
    x = visual.stem(batch)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        x = layer(x)
    return x


@pytest.fixture(scope="module")
def rn50_engine(rn50_weights):
    """The torch reference (tests hook its layers); the exported backend is checked against it."""
    return ClipIQAEngine(EngineConfig(model=DEFAULT_MODEL, weights=str(rn50_weights), device="cpu",
                                      backend="torch")).load()


@pytest.fixture
def tiny_engine(tiny_config):
    return ClipIQAEngine(tiny_config).load()


# --------------------------------------------------------------------------- attention pool


@pytest.mark.parametrize(("w", "h"), [(224, 224), (320, 160), (97, 203)])
def test_rn50_pool_matches_naive_reference(rn50_engine, w, h):
    """Any size works (the original pool only takes 224x224) and matches the written-out maths."""
    engine = rn50_engine
    visual = engine.model.visual
    assert visual.attnpool.num_heads == 32
    captured = []
    hook = visual.layer4.register_forward_hook(lambda mod, inp, out: captured.append(out.clone()))
    try:
        got = engine.encode_images([engine.preprocess(_photo(w, h, seed=w))])
    finally:
        hook.remove()
    assert got.shape == (1, 1024)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    (fmap,) = captured
    assert fmap.shape[1] == 2048
    expected = torch.nn.functional.normalize(_naive_attnpool(visual.attnpool, fmap), dim=-1)
    np.testing.assert_allclose(got, expected.float().numpy(), atol=2e-5)


@pytest.mark.parametrize(("w", "h"), [(64, 64), (40, 130), (33, 33)])
def test_tiny_pool_matches_naive_reference(tiny_engine, w, h):
    visual = tiny_engine.model.visual
    tensor = tiny_engine.preprocess(_photo(w, h, seed=h))
    with torch.inference_mode():
        expected = _naive_attnpool(visual.attnpool, _layer4(visual, tensor[None]))
    expected = torch.nn.functional.normalize(expected, dim=-1).float().numpy()
    np.testing.assert_allclose(tiny_engine.encode_images([tensor]), expected, atol=2e-5)


def test_pool_ignores_positional_embedding_and_keeps_state_dict(tiny_engine):
    from open_clip.modified_resnet import AttentionPool2d

    pool = tiny_engine.model.visual.attnpool
    assert isinstance(pool, AttentionPool2d)  # subclass: same parameters, same keys
    assert "visual.attnpool.positional_embedding" in tiny_engine.model.state_dict()
    fmap = torch.randn(2, 256, 3, 5)
    with torch.inference_mode():
        before = pool(fmap).clone()
        saved = pool.positional_embedding.detach().clone()
        pool.positional_embedding.data.normal_()
        after = pool(fmap)
        pool.positional_embedding.data.copy_(saved)
    torch.testing.assert_close(before, after)


def test_original_pool_breaks_off_its_native_size(tiny_engine):
    """Why the replacement exists: CLIP's own pool only accepts its 224-equivalent grid."""
    from open_clip.modified_resnet import AttentionPool2d

    ours = tiny_engine.model.visual.attnpool
    original = AttentionPool2d(2, 256, ours.num_heads, 32)  # the tiny model's 64 px = 2x2 grid
    original.load_state_dict(ours.state_dict())
    with torch.inference_mode():
        original(torch.randn(1, 256, 2, 2))  # its native grid works
        with pytest.raises(RuntimeError):
            original(torch.randn(1, 256, 5, 3))
        assert ours(torch.randn(1, 256, 5, 3)).shape == (1, 32)


# --------------------------------------------------------------------------- ViT towers


TINY_VIT = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_vit_position_embedding_is_interpolated(tmp_path, model_configs_dir, monkeypatch):
    vit_dir = tmp_path / "vit_configs"
    vit_dir.mkdir()
    (vit_dir / "photosense-tiny-vit.json").write_text(json.dumps(TINY_VIT))
    monkeypatch.setenv("PHOTOSENSE_MODEL_CONFIGS", f"{model_configs_dir}{clipiqa.os.pathsep}{vit_dir}")
    weights = make_random_checkpoint("photosense-tiny-vit", tmp_path / "vit.safetensors")
    engine = ClipIQAEngine(EngineConfig(model="photosense-tiny-vit", weights=str(weights), device="cpu"))
    native = engine.preprocess(_photo(32, 32, seed=3))
    feats = engine.encode_images([native, engine.preprocess(_photo(80, 48, seed=4))])
    assert feats.shape == (2, 16)
    # At the native size the interpolation is a no-op: same as the unmodified tower.
    plain = build_random_model("photosense-tiny-vit")
    from safetensors.torch import load_file

    plain.load_state_dict(load_file(str(weights)))
    plain.eval()
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(plain.encode_image(native[None]), dim=-1).numpy()
        with pytest.raises(RuntimeError):
            plain.encode_image(engine.preprocess(_photo(80, 48, seed=4))[None])
    np.testing.assert_allclose(feats[:1], ref, atol=1e-5)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_reproduces_in_memory_model(tmp_path, model_configs_dir):
    from safetensors.torch import save_file

    register_model_configs()
    torch.manual_seed(123)
    model = build_random_model("photosense-tiny")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bn3.weight"):
                p.normal_(0, 0.5)
    model.eval()
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

    clipiqa.adapt_visual_for_any_size(model)
    # Bit-exact: the torch reference (the exported backend agrees to 1e-6, tested below).
    engine = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(path), device="cpu",
                                        backend="torch"))
    images = [engine.preprocess(_photo(w, h, seed=w)) for w, h in [(64, 64), (90, 50)]]
    tokens = engine.load()._tokenizer(["Good photo."])
    with torch.inference_mode():
        ref_img = [torch.nn.functional.normalize(model.encode_image(t[None]), dim=-1)[0].numpy() for t in images]
        ref_txt = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    np.testing.assert_array_equal(engine.encode_images(images), np.stack(ref_img))
    # The text tower runs on the tokens up to the end of text: equal to float rounding.
    np.testing.assert_allclose(engine.encode_texts(["Good photo."]), ref_txt, atol=1e-6)


def test_torch_state_dict_files_load_too(tmp_path, tiny_weights, tiny_config):
    """A .pt holding {"state_dict": {"module.<key>": ...}} loads like the safetensors file."""
    from safetensors.torch import load_file

    state = {f"module.{k}": v for k, v in load_file(str(tiny_weights)).items()}
    pt = tmp_path / "wrapped.pt"
    torch.save({"state_dict": state, "epoch": 3}, pt)
    image = ClipIQAEngine(tiny_config).preprocess(_photo(64, 48, seed=9))
    a = ClipIQAEngine(dataclasses.replace(tiny_config, backend="torch")).encode_images([image])
    b = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(pt), device="cpu",
                                   backend="torch")).encode_images([image])
    np.testing.assert_array_equal(a, b)


def test_logit_scale_from_checkpoint(tiny_engine, rn50_engine, tmp_path):
    assert tiny_engine.logit_scale == pytest.approx(100.0, rel=1e-5)
    assert rn50_engine.logit_scale == pytest.approx(100.0, rel=1e-5)
    other = make_random_checkpoint("photosense-tiny", tmp_path / "s50.safetensors", logit_scale=50.0)
    engine = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(other), device="cpu"))
    assert engine.logit_scale == pytest.approx(50.0, rel=1e-5)


def test_random_checkpoint_is_deterministic_and_image_sensitive(tmp_path, tiny_weights, tiny_engine):
    again = make_random_checkpoint("photosense-tiny", tmp_path / "again.safetensors")
    assert clipiqa.file_digest(again) == clipiqa.file_digest(tiny_weights)
    state = tiny_engine.model.state_dict()
    bn3 = [v for k, v in state.items() if k.endswith("bn3.weight")]
    assert bn3 and all(v.abs().sum() > 0 for v in bn3)
    sharp = _photo(96, 96, seed=5)
    images = [sharp, sharp.filter(ImageFilter.GaussianBlur(3)), Image.new("RGB", (96, 96), (10, 10, 10))]
    feats = tiny_engine.encode_images([tiny_engine.preprocess(i) for i in images])
    text = tiny_engine.encode_texts(["Sharp photo.", "Blurry photo."])
    scores = attribute_scores(feats, text[:1], text[1:], tiny_engine.logit_scale)
    assert np.ptp(scores) > 0.01  # random weights, yet the score depends on the image


# --------------------------------------------------------------------------- encoding


def test_encode_images_keeps_order_with_mixed_sizes(tiny_config):
    tiny_config.batch_size = 2
    engine = ClipIQAEngine(tiny_config)
    sizes = [(64, 64), (50, 90), (64, 64), (33, 40), (64, 64), (50, 90), (64, 64)]
    tensors = [engine.preprocess(_photo(w, h, seed=i)) for i, (w, h) in enumerate(sizes)]
    feats = engine.encode_images(tensors)
    one_by_one = np.concatenate([engine.encode_images([t]) for t in tensors])
    assert feats.shape == (len(sizes), 32) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # All images differ, so a reordering would show.
    gram = feats @ feats.T
    assert np.all(gram[~np.eye(len(sizes), dtype=bool)] < 0.9999)
    assert engine.encode_images([]).shape == (0, 32)


def test_encode_texts_unit_norm_and_cached(tiny_engine, monkeypatch):
    feats = tiny_engine.encode_texts(["Good photo.", "Bad photo.", "Good photo."])
    assert feats.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(feats[0], feats[2])
    assert not np.allclose(feats[0], feats[1])

    def boom(*args, **kwargs):
        raise AssertionError("text tower ran for a cached prompt")

    monkeypatch.setattr(tiny_engine.model.transformer, "forward", boom)
    np.testing.assert_array_equal(tiny_engine.encode_texts(["Bad photo."]), feats[1:2])


_TRIM_PROMPTS = ["Good photo.", "Bad photo.", "a dog running on the beach at sunset, shot on film",
                 "café, naïve & <b>bold</b> — 35mm f/1.8 😀"]


def _text_lengths(model, monkeypatch) -> list[int]:
    """The sequence lengths the text transformer runs on, recorded from now on."""
    seen: list[int] = []
    forward = model.transformer.forward

    def record(x, *args, **kwargs):
        seen.append(x.shape[1])
        return forward(x, *args, **kwargs)

    monkeypatch.setattr(model.transformer, "forward", record)
    return seen


@pytest.mark.parametrize("which", ["tiny", "rn50"])
def test_text_tower_runs_only_up_to_the_last_end_of_text_token(which, tiny_engine, rn50_engine,
                                                               monkeypatch):
    """Prompts are encoded on their tokens up to the longest one's end of text (the padding
    after it cannot change a causal tower's features): the same features as open_clip's full
    77-token encode_text, short and long prompts, alone and mixed in a batch."""
    engine = {"tiny": tiny_engine, "rn50": rn50_engine}[which]
    model = engine.model
    long_prompt = " ".join(["long"] * 90)  # cut at 77 tokens by the tokenizer: nothing to trim
    prompts = [*_TRIM_PROMPTS, long_prompt]
    tokens = engine._tokenizer(prompts)
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()
    seen = _text_lengths(model, monkeypatch)
    fresh = ClipIQAEngine(engine.config).load() if which == "tiny" else engine
    if fresh is not engine:
        seen = _text_lengths(fresh.model, monkeypatch)
    fresh._text_cache.clear()
    short = fresh.encode_texts(_TRIM_PROMPTS[:2])
    mixed = fresh.encode_texts(_TRIM_PROMPTS[2:])
    fresh._text_cache.clear()
    all_at_once = fresh.encode_texts(prompts)
    assert seen == [5, max(int(t.argmax()) + 1 for t in tokens[2:4]), 77]
    np.testing.assert_allclose(short, ref[:2], atol=2e-6)
    np.testing.assert_allclose(mixed, ref[2:4], atol=2e-6)
    np.testing.assert_allclose(all_at_once, ref, atol=2e-6)
    assert all_at_once[0] @ all_at_once[1] < 0.9999  # distinct prompts, distinct features


def test_text_towers_that_are_not_causal_run_in_full():
    """Trimming is exact only for a causal mask read at the end-of-text token: a tower
    without that mask, or pooled elsewhere, keeps its own full encode_text."""
    from photosense.scoring import text_trim

    register_model_configs()
    model = build_random_model("photosense-tiny").eval()
    assert text_trim.trimmable(model)
    model.text_pool_type = "last"
    assert not text_trim.trimmable(model)
    model.text_pool_type = "argmax"
    model.attn_mask = torch.zeros_like(model.attn_mask)  # bidirectional attention
    assert not text_trim.trimmable(model)
    model.attn_mask = None
    assert not text_trim.trimmable(model)
    calls = []
    model.encode_text = lambda tokens: calls.append(tokens.shape) or torch.zeros(len(tokens), 32)
    text_trim.encode_text(model, torch.zeros((2, 77), dtype=torch.long))
    assert calls == [(2, 77)]


def test_preprocess_no_resize_normalised(tiny_engine):
    img = Image.new("RGB", (70, 45), (255, 255, 255))
    t = tiny_engine.preprocess(img)
    assert t.shape == (3, 45, 70) and t.dtype == torch.float32
    expected = [(1 - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)]
    torch.testing.assert_close(t[:, 0, 0], torch.tensor(expected))
    # Other modes become RGB.
    assert tiny_engine.preprocess(Image.new("L", (40, 40), 0)).shape == (3, 40, 40)
    assert tiny_engine.preprocess(Image.new("RGBA", (40, 40), (0, 0, 0, 0))).shape == (3, 40, 40)


def test_preprocess_upscales_tiny_images(tiny_engine):
    t = tiny_engine.preprocess(Image.new("RGB", (100, 10)))
    assert t.shape == (3, MIN_SIDE, 320)
    assert tiny_engine.encode_images([t]).shape == (1, 32)


def test_load_is_idempotent_and_thread_safe(tiny_config):
    engine = ClipIQAEngine(tiny_config)
    models = []
    threads = [threading.Thread(target=lambda: models.append(engine.load().model)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(models) == 4 and all(m is models[0] for m in models)
    assert engine.dim == 32 and engine.id.startswith("photosense-tiny/file:")


# --------------------------------------------------------------------------- weights errors


def _assert_one_line(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    for needle in needles:
        assert needle in msg


def test_missing_weights_file(tmp_path):
    engine = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(tmp_path / "nope.safetensors")))
    with pytest.raises(WeightsUnavailable) as exc:
        engine.load()
    _assert_one_line(exc, "not found", "nope.safetensors")


@pytest.mark.parametrize("name", ["garbage.safetensors", "garbage.pt", "garbage.bin", "empty.safetensors"])
def test_garbage_weights_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"" if name.startswith("empty") else np.random.default_rng(0).bytes(5000))
    engine = ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(path), device="cpu"))
    with pytest.raises(WeightsUnavailable) as exc:
        engine.load()
    _assert_one_line(exc, name)


def test_checkpoint_of_wrong_architecture(tiny_weights):
    engine = ClipIQAEngine(EngineConfig(model=DEFAULT_MODEL, weights=str(tiny_weights), device="cpu"))
    with pytest.raises(WeightsUnavailable) as exc:
        engine.load()
    _assert_one_line(exc, "does not fit", DEFAULT_MODEL, "wrong shape")


def test_pickle_needs_explicit_permission(tmp_path, tiny_weights):
    from safetensors.torch import load_file

    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": load_file(str(tiny_weights)), "opts": threading.Lock}, path)
    with pytest.raises(WeightsUnavailable) as exc:
        ClipIQAEngine(EngineConfig(model="photosense-tiny", weights=str(path), device="cpu")).load()
    _assert_one_line(exc, "pickle")
    allowed = EngineConfig(model="photosense-tiny", weights=str(path), device="cpu", allow_pickle=True)
    assert ClipIQAEngine(allowed).load().logit_scale == pytest.approx(100.0, rel=1e-5)


def test_unknown_architecture():
    with pytest.raises(WeightsUnavailable) as exc:
        ClipIQAEngine(EngineConfig(model="no-such-model", weights="x.safetensors", device="cpu")).load()
    _assert_one_line(exc, "no-such-model")


def test_default_weights_offline_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as exc:
        ClipIQAEngine(EngineConfig(device="cpu")).load()
    assert time.perf_counter() - start < 5
    _assert_one_line(exc, "--weights", str(tmp_path / "hf" / "hub"), "RN50-quickgelu/openai")


def test_default_weights_unreachable_hub_fail_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    probes = []

    def no_network(address, timeout=None, *args, **kwargs):
        probes.append((address, timeout))
        raise OSError("network unreachable")

    monkeypatch.setattr(clipiqa.socket, "create_connection", no_network)
    with pytest.raises(WeightsUnavailable) as exc:
        ClipIQAEngine(EngineConfig(device="cpu")).load()
    _assert_one_line(exc, "--weights", "cannot be reached")
    assert probes == [(("huggingface.co", 443), 3.0)]


def test_cached_pretrained_weights_are_detected(tmp_path):
    cfg = {"hf_hub": "timm/resnet50_clip.openai/"}
    assert not clipiqa._pretrained_is_cached(cfg, tmp_path)
    snap = tmp_path / "models--timm--resnet50_clip.openai" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    assert clipiqa._pretrained_is_cached(cfg, tmp_path)


def test_weights_cache_location_follows_env(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_cache_location() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert weights_cache_location() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "direct"))
    assert weights_cache_location() == tmp_path / "direct"


# --------------------------------------------------------------------------- ids, names, devices


def test_model_id_of_pretrained_and_name_mapping():
    assert model_id(EngineConfig()) == "RN50-quickgelu/openai"
    assert model_name(EngineConfig(model="RN50")) == "RN50-quickgelu"
    assert model_id(EngineConfig(model="RN50")) == "RN50-quickgelu/openai"
    assert model_id(EngineConfig(model="ViT-B-32", weights="laion2b_s34b_b79k")) == "ViT-B-32/laion2b_s34b_b79k"
    assert clipiqa.pretrained_tag(EngineConfig(weights="missing.safetensors")) is None  # a file, not a tag


def test_unknown_pretrained_tag():
    with pytest.raises(WeightsUnavailable) as exc:
        ClipIQAEngine(EngineConfig(model="photosense-tiny", weights="no_such_tag", device="cpu")).load()
    _assert_one_line(exc, "no_such_tag", "--weights")


def test_model_id_follows_file_content(tmp_path, tiny_weights):
    a = tmp_path / "a" / "tiny.safetensors"
    b = tmp_path / "b" / "tiny.safetensors"
    a.parent.mkdir()
    b.parent.mkdir()
    shutil.copy(tiny_weights, a)
    shutil.copy(tiny_weights, b)
    id_a = model_id(EngineConfig(model="photosense-tiny", weights=str(a)))
    assert id_a == model_id(EngineConfig(model="photosense-tiny", weights=str(b)))
    assert id_a.startswith("photosense-tiny/file:tiny.safetensors:")
    assert len(id_a.rsplit(":", 1)[1]) == 12
    make_random_checkpoint("photosense-tiny", b, seed=1)  # new weights, same path
    assert model_id(EngineConfig(model="photosense-tiny", weights=str(b))) != id_a


def test_model_id_digest_is_remembered_until_the_file_changes(tmp_path, tiny_weights, monkeypatch):
    """A later command (here: the process's own hash cache emptied) takes the model id's
    digest from the cache folder without reading the weights; any write to the file, even
    one that keeps its size and puts its mtime back, makes it hash the file again."""
    import hashlib
    import os
    from pathlib import Path

    w = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, w)
    config = EngineConfig(model="photosense-tiny", weights=str(w))
    hashed: list[str] = []
    real = clipiqa.file_sha256
    monkeypatch.setattr(clipiqa, "file_sha256", lambda p: hashed.append(str(p)) or real(p))
    first = model_id(config)
    assert first.endswith(hashlib.sha256(w.read_bytes()).hexdigest()[:12]) and len(hashed) == 1
    clipiqa._hash_cache.clear()  # a new process
    assert model_id(config) == first and len(hashed) == 1
    st = w.stat()
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # same size
    w.write_bytes(bytes(data))
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime
    clipiqa._hash_cache.clear()
    changed = model_id(config)
    assert changed.endswith(hashlib.sha256(bytes(data)).hexdigest()[:12]) and changed != first
    assert len(hashed) == 2
    # A broken digests file, or a cache folder that cannot be written, costs a hash, no error.
    digests = Path(os.environ["PHOTOSENSE_CACHE_DIR"]) / clipiqa.DIGESTS_FILE
    digests.write_text("{not json")
    clipiqa._hash_cache.clear()
    assert model_id(config) == changed and len(hashed) == 3
    assert json.loads(digests.read_text())[str(w.resolve())][1] == changed.rsplit(":", 1)[1]
    monkeypatch.setenv("PHOTOSENSE_CACHE_DIR", str(w))  # a file: nothing can be written under it
    clipiqa._hash_cache.clear()
    assert model_id(config) == changed and len(hashed) == 4


def test_model_id_needs_no_torch(tiny_weights):
    code = (
        "import sys; from photosense.scoring.clipiqa import model_id, EngineConfig;"
        f"print(model_id(EngineConfig(weights={str(tiny_weights)!r})));"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == "False False"
    assert out.splitlines()[0].startswith("RN50-quickgelu/file:tiny.safetensors:")


def test_register_model_configs_is_idempotent():
    import open_clip

    assert "photosense-tiny" in register_model_configs()
    n = len(open_clip.list_models())
    register_model_configs()
    assert len(open_clip.list_models()) == n
    assert "photosense-tiny" in open_clip.list_models()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(PhotosenseError, match="device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_cuda_unavailable():
    with pytest.raises(PhotosenseError) as exc:
        resolve_device("cuda")
    _assert_one_line(exc, "CUDA is not available")


# --------------------------------------------------------------------------- CPU backends


@pytest.fixture(scope="module")
def rn50_onnx_engine(rn50_weights):
    return ClipIQAEngine(EngineConfig(model=DEFAULT_MODEL, weights=str(rn50_weights), device="cpu",
                                      backend="onnxruntime")).load()


@pytest.mark.parametrize(("w", "h"), [(224, 224), (512, 384), (97, 203), (1024, 301)])
def test_onnxruntime_backend_agrees_with_torch_on_rn50(rn50_engine, rn50_onnx_engine, w, h):
    """The exported image tower (attention pool without positional embedding, any size) gives
    torch's features at several sizes and odd aspect ratios, batched too."""
    assert rn50_onnx_engine.backend == "onnxruntime" and rn50_engine.backend == "torch"
    tensors = [rn50_engine.preprocess(_photo(w, h, seed=s)) for s in (1, 2)]
    ref = rn50_engine.encode_images(tensors)
    got = rn50_onnx_engine.encode_images(tensors)
    assert np.min(np.sum(ref * got, axis=1)) >= 0.9999
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_export_is_cached_and_a_disagreeing_export_falls_back_to_torch(tiny_weights, tmp_path,
                                                                     monkeypatch, caplog):
    import photosense.scoring.backends as backends

    monkeypatch.setenv("PHOTOSENSE_EXPORT_DIR", str(tmp_path / "exports"))
    config = EngineConfig(model="photosense-tiny", weights=str(tiny_weights), device="cpu",
                          backend="onnxruntime")
    assert ClipIQAEngine(config).load().backend == "onnxruntime"
    exports = [p for p in (tmp_path / "exports").glob("*.onnx") if "-text-" not in p.name]
    assert len(exports) == 1
    # A second engine loads the cached export: nothing is exported again.
    monkeypatch.setattr(backends, "_export", lambda *a: pytest.fail("exported twice"))
    assert ClipIQAEngine(config).load().backend == "onnxruntime"
    # An export whose features disagree with torch is refused, with a logged line.
    meta = exports[0].with_suffix(".json")
    meta.unlink()
    real_run = backends.OnnxRuntimeBackend.run
    monkeypatch.setattr(backends.OnnxRuntimeBackend, "run",
                        lambda self, images: real_run(self, images)[:, ::-1].copy())
    monkeypatch.setattr(backends, "_export", lambda visual, path: None)  # keep the file as it is
    with caplog.at_level("WARNING", logger="photosense.backends"):
        assert ClipIQAEngine(config).load().backend == "torch"
    assert "disagrees with torch" in caplog.text


def test_auto_backend_and_an_uninstalled_runtime(tiny_weights, monkeypatch, caplog):
    import photosense.scoring.backends as backends

    config = EngineConfig(model="photosense-tiny", weights=str(tiny_weights), device="cpu",
                          backend="openvino")
    monkeypatch.setattr(backends, "runtime_available", lambda name: False)
    with caplog.at_level("WARNING", logger="photosense.backends"):
        assert ClipIQAEngine(config).load().backend == "torch"
    assert "openvino is not installed" in caplog.text
    with pytest.raises(PhotosenseError, match="unknown backend"):
        backends.check_backend("tensorrt")
