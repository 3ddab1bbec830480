"""open_clip loading (tags/files/errors), frame and token features, and tiny-CLIP pretraining."""
import json

import numpy as np
import open_clip
import pytest
import torch

from prvr.config import ClipPretrainConfig
from prvr.features.clip import (ClipError, _builtin_name, _check_sources, _quick_gelu_for, encode_frames,
                                encode_text_tokens, inference, load_clip, text_token_features)
from prvr.features.attribute_heads import AttributeHeads
from prvr.features.pretrain import _batches, pretrain_tiny_clip, report_path

CAPTIONS = ["a man flips a pancake", "A large red hoop in the top left at night.", "dog", "a " * 100]
TINY_PRETRAIN = ClipPretrainConfig(seed=3, n_pairs=48, epochs=2, batch_size=16, lr=1e-3)


def fake_pairs(n, seed, image_size):
    """Stand-in for prvr.demo.pretraining_pairs.sample_pretraining_pairs: coloured frames, colour captions."""
    rng = np.random.default_rng(seed)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    names = rng.choice(list(colours), size=n)
    frames = rng.integers(0, 40, size=(n, image_size, image_size, 3)).astype(np.uint8)
    for frame, name in zip(frames, names):
        frame[8:24, 8:24] = colours[name]
    return frames, [f"a {name} square" for name in names]


def fake_pairs_with_labels(n, seed, image_size):
    """fake_pairs and their attributes: the colour (shown and named) and where the square sits."""
    frames, captions = fake_pairs(n, seed, image_size)
    colour = np.array([["red", "green", "blue"].index(c.split()[1]) for c in captions])
    geometry = np.tile(np.array([[0.5, 0.5, np.log(0.25), np.nan, np.nan]], np.float32), (n, 1))
    geometry[::2, 0] = 0.4  # a column that varies, so it can be standardised
    return frames, captions, {"image_colour": colour, "text_colour": colour, "image_geometry": geometry}


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return load_clip("prvr-tiny-clip", None, batch_size=4, allow_random=True)


def _frames(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3)).astype(np.uint8)


def test_tiny_model_is_registered_with_open_clip(encoder):
    assert "prvr-tiny-clip" in open_clip.list_models()
    assert encoder.image_size == 32 and encoder.embed_dim == 64
    assert isinstance(encoder.model, open_clip.CLIP) and not encoder.model.training


@pytest.mark.parametrize("name, pretrained, match", [("no-such-clip", None, "unknown open_clip model"),
                                                     ("prvr-tiny-clip", "missing.pt", "not found"),
                                                     ("ViT-B-32", "no-such-tag", "known tags: openai")])
def test_load_errors_are_one_line(name, pretrained, match):
    with pytest.raises(ClipError, match=match) as info:
        load_clip(name, pretrained)
    assert "\n" not in str(info.value)


def test_no_weights_is_an_error_unless_random_is_asked_for():
    """`prvr video-features` without --weights and clip.pretrained null must not encode with noise."""
    for pretrained in (None, ""):
        with pytest.raises(ClipError, match=r"clip.model 'prvr-tiny-clip': no weights") as info:
            load_clip("prvr-tiny-clip", pretrained)
        assert "\n" not in str(info.value)
    assert load_clip("prvr-tiny-clip", None, allow_random=True).pretrained is None


def test_openai_weights_get_quick_gelu():
    """open_clip's ViT-L-14 config uses GELU; OpenAI's weights need QuickGELU (open_clip only warns)."""
    assert _quick_gelu_for("ViT-L-14", "openai") and _quick_gelu_for("ViT-B-32", "openai")
    assert not _quick_gelu_for("ViT-B-32", "laion2b_s34b_b79k")
    assert not _quick_gelu_for("prvr-tiny-clip", "tiny_clip.pt") and not _quick_gelu_for("ViT-L-14", None)


def test_every_open_clip_spelling_takes_the_same_path():
    """Built-in names in open_clip's or OpenAI's spelling, and the hf-hub:/local-dir: schemas."""
    assert _builtin_name("ViT-L/14") == "ViT-L-14" and _builtin_name("hf-hub:org/repo") == "hf-hub:org/repo"
    _check_sources("ViT-L/14", "openai")  # no error: a known tag of ViT-L-14
    assert _quick_gelu_for("ViT-L/14", "openai")
    with pytest.raises(ClipError, match="brings its own weights") as info:
        load_clip("hf-hub:timm/ViT-B-16-SigLIP", "openai")
    assert "\n" not in str(info.value)
    with pytest.raises(ClipError, match="no open_clip_config.json"):
        load_clip("local-dir:/no/such/folder", None)


def _local_dir(path, encoder, weights=True):
    """An open_clip local-dir: config (+ weights) of the tiny model."""
    path.mkdir()
    cfg = {"model_cfg": open_clip.get_model_config("prvr-tiny-clip")}
    (path / "open_clip_config.json").write_text(json.dumps(cfg))
    if weights:
        torch.save(encoder.model.state_dict(), path / "open_clip_pytorch_model.bin")
    return f"local-dir:{path}"


def test_local_dir_model_loads_its_own_weights(tmp_path, encoder):
    loaded = load_clip(_local_dir(tmp_path / "tiny", encoder), None, batch_size=4)
    frames = _frames(5, seed=2)
    np.testing.assert_array_equal(encode_frames(loaded, frames), encode_frames(encoder, frames))
    for a, b in zip(encode_text_tokens(loaded, CAPTIONS), encode_text_tokens(encoder, CAPTIONS)):
        np.testing.assert_array_equal(a, b)
    no_weights = _local_dir(tmp_path / "empty", encoder, weights=False)
    with pytest.raises(ClipError, match="cannot load"):  # random weights only when asked for
        load_clip(no_weights, None)
    assert load_clip(no_weights, None, allow_random=True).embed_dim == 64


def test_float16_weights_file_is_accepted(tmp_path, encoder):
    path = tmp_path / "half.pt"
    torch.save({k: v.half() for k, v in encoder.model.state_dict().items()}, path)
    loaded = load_clip("prvr-tiny-clip", str(path), batch_size=4)
    for (name, a), b in zip(loaded.model.state_dict().items(), encoder.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b.half().to(b.dtype)), name
    frames = _frames(3, seed=3)
    np.testing.assert_allclose(encode_frames(loaded, frames), encode_frames(encoder, frames), rtol=0.05, atol=0.05)


def test_cpu_encoding_is_float32_without_autocast(encoder):
    with inference(encoder):
        assert torch.is_inference_mode_enabled() and not torch.is_autocast_enabled("cuda")
    assert encode_frames(encoder, _frames(2)).dtype == np.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_encoding_uses_float16_autocast_and_returns_float32(encoder, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(encoder.model.state_dict(), path)
    gpu = load_clip("prvr-tiny-clip", str(path), device="cuda", batch_size=4)
    with inference(gpu):
        assert torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.float16
    frames = _frames(10, size=48)  # resized on the GPU
    on_gpu, on_cpu = encode_frames(gpu, frames), encode_frames(encoder, frames)
    assert on_gpu.dtype == np.float32 and on_gpu.shape == on_cpu.shape
    cosine = (on_gpu * on_cpu).sum(1) / np.linalg.norm(on_gpu, axis=1) / np.linalg.norm(on_cpu, axis=1)
    assert cosine.min() > 0.999
    for a, b in zip(encode_text_tokens(gpu, CAPTIONS), encode_text_tokens(encoder, CAPTIONS)):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0.02, atol=0.02)


def test_corrupt_weights_file_is_a_clip_error(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(2)}, bad)
    with pytest.raises(ClipError, match="cannot load prvr-tiny-clip"):
        load_clip("prvr-tiny-clip", str(bad))


def test_encode_frames_shape_batching_and_resize(encoder):
    frames = _frames(10)
    feats = encode_frames(encoder, frames)  # batch size 4: three batches
    assert feats.shape == (10, 64) and feats.dtype == np.float32
    with torch.no_grad():
        mean = torch.tensor(encoder.mean).view(1, 3, 1, 1)
        std = torch.tensor(encoder.std).view(1, 3, 1, 1)
        x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - mean) / std
        direct = encoder.model.encode_image(x).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.linalg.norm(feats, axis=1), 1.0)  # stored raw, not L2-normalised
    assert encode_frames(encoder, _frames(3, size=48)).shape == (3, 64)  # resized + cropped
    assert encode_frames(encoder, _frames(0)).shape == (0, 64)
    with pytest.raises(ValueError, match="uint8"):
        encode_frames(encoder, _frames(2).astype(np.float32))


def test_token_features_end_with_the_pooled_text_embedding(encoder):
    tokens = encode_text_tokens(encoder, CAPTIONS)
    with torch.no_grad():
        pooled = encoder.model.encode_text(encoder.tokenizer(CAPTIONS)).numpy()  # full 77-token pass
    assert [t.shape[0] for t in tokens][2:] == [3, 77]  # <start> dog <end>; truncated at 77
    for feats, expected in zip(tokens, pooled):
        assert feats.dtype == np.float32 and feats.shape[1] == 64
        np.testing.assert_allclose(feats[-1], expected, rtol=1e-5, atol=1e-6)


def test_token_features_do_not_depend_on_batch_padding(encoder):
    """Short captions are computed at the batch's length; the causal mask makes that exact."""
    alone = encode_text_tokens(encoder, CAPTIONS[:1])[0]
    with_long = encode_text_tokens(encoder, [CAPTIONS[0], CAPTIONS[3]])[0]  # runs at 77 positions
    np.testing.assert_allclose(alone, with_long, rtol=1e-5, atol=1e-6)


def test_token_features_of_custom_text_clip():
    torch.manual_seed(0)
    custom = load_clip("prvr-tiny-clip", None, allow_random=True, force_custom_text=True)
    assert isinstance(custom.model, open_clip.CustomTextCLIP)
    tokens = encode_text_tokens(custom, CAPTIONS[:3])
    with torch.no_grad():
        pooled = custom.model.encode_text(custom.tokenizer(CAPTIONS[:3])).numpy()
    # the two paths batch the matmuls differently: float32 rounding differs by ~1e-6 on some CPUs
    np.testing.assert_allclose(np.stack([t[-1] for t in tokens]), pooled, rtol=1e-4, atol=1e-5)


def test_text_token_features_are_differentiable(encoder):
    x, ends = text_token_features(encoder.model, encoder.tokenizer(CAPTIONS[:3]))
    assert x.requires_grad  # pretraining backpropagates through it
    assert ends.tolist()[::2] == [6, 2]  # <start> a man flips a pancake <end>; <start> dog <end>
    assert x.shape == (3, int(ends.max()) + 1, 64)  # cut at the batch's last end-of-text


def test_weights_file_round_trip_through_open_clip(tmp_path, encoder):
    path = tmp_path / "weights.pt"
    torch.save(encoder.model.state_dict(), path)
    loaded = load_clip("prvr-tiny-clip", str(path), batch_size=4)  # open_clip's pretrained=<file>
    assert loaded.pretrained == str(path)  # same batch size too: batching changes float rounding
    frames = _frames(5, seed=1)
    np.testing.assert_array_equal(encode_frames(loaded, frames), encode_frames(encoder, frames))
    for a, b in zip(encode_text_tokens(loaded, CAPTIONS), encode_text_tokens(encoder, CAPTIONS)):
        np.testing.assert_array_equal(a, b)


def test_pretraining_is_deterministic_and_loadable(tmp_path):
    first = pretrain_tiny_clip(TINY_PRETRAIN, tmp_path / "a.pt", n_heldout=32, pairs_fn=fake_pairs)
    pretrain_tiny_clip(TINY_PRETRAIN, tmp_path / "b.pt", n_heldout=32, pairs_fn=fake_pairs)
    other = ClipPretrainConfig(**{**TINY_PRETRAIN.__dict__, "seed": 4})
    pretrain_tiny_clip(other, tmp_path / "c.pt", n_heldout=32, pairs_fn=fake_pairs)
    a, b, c = (torch.load(tmp_path / f"{n}.pt") for n in "abc")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first["steps"] == 6 and len(first["epoch_losses"]) == 2
    report = json.loads(report_path(tmp_path / "a.pt").read_text())
    assert report_path(tmp_path / "a.pt").name == "a.pretrain.json"
    assert report["heldout"]["n_pairs"] == 32 and 0 <= report["heldout"]["image_to_text_r1"] <= 1
    assert report["heldout"]["chance_r1"] == pytest.approx(1 / 3, abs=0.2)  # three distinct captions
    trained = load_clip("prvr-tiny-clip", str(tmp_path / "a.pt"))
    torch.manual_seed(TINY_PRETRAIN.seed)
    untrained = load_clip("prvr-tiny-clip", None, allow_random=True)
    frames = _frames(2)
    assert not np.allclose(encode_frames(trained, frames), encode_frames(untrained, frames))


def test_batches_are_a_seeded_shuffle_without_the_last_partial_batch():
    batches = _batches(10, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4]
    assert torch.equal(torch.cat(batches), torch.randperm(10, generator=torch.Generator().manual_seed(0))[:8])
    assert sorted(_batches(3, 4, torch.Generator())[0].tolist()) == [0, 1, 2]  # fewer pairs than a batch: one
    assert _batches(0, 4, torch.Generator()) == []


def test_attribute_heads_loss_by_hand():
    """Cross-entropy over the labelled rows of each class head (-1 skipped), MSE over the known
    (non-NaN) standardised geometry entries; image_* heads read the image, text_* the text."""
    torch.manual_seed(0)
    labels = {"image_colour": np.array([0, 1, 2, 1]), "text_colour": np.array([0, -1, 2, 1]),
              "image_geometry": np.array([[0.2, 1.0], [0.4, np.nan], [0.6, 3.0], [0.8, 2.0]], np.float32)}
    heads = AttributeHeads(4, labels)
    image, text = (torch.nn.functional.normalize(torch.randn(4, 4), dim=1) for _ in range(2))
    batch = {k: torch.from_numpy(v) for k, v in labels.items()}
    terms = heads.terms(image, text, batch)
    logits = heads.heads["text_colour"](text * 2.0)  # sqrt(4) = 2
    keep = [0, 2, 3]
    expected = -torch.log_softmax(logits[keep], dim=1)[range(3), torch.tensor([0, 2, 1])].mean()
    assert torch.isclose(terms["text_colour"], expected)
    assert torch.isclose(terms["image_colour"], torch.nn.functional.cross_entropy(
        heads.heads["image_colour"](image * 2.0), batch["image_colour"]))
    mean = torch.tensor([0.5, 2.0])
    std = torch.tensor([np.std([0.2, 0.4, 0.6, 0.8]), np.std([1.0, 3.0, 2.0])], dtype=torch.float32) + 1e-6
    target = (batch["image_geometry"] - mean) / std
    error = (heads.geometry(image * 2.0) - target) ** 2
    known = ~torch.isnan(target)
    assert torch.isclose(terms["image_geometry"], error[known].mean())
    scores = heads.scores(image, text, batch)
    assert set(scores) == {"image_colour_acc", "text_colour_acc", "geometry_0_r2", "geometry_1_r2"}
    assert scores["geometry_0_r2"] == pytest.approx(float((1 - error[:, 0].mean() / target[:, 0].var()).detach()), abs=1e-4)


def test_pretraining_with_attribute_labels_adds_the_heads_loss_and_saves_only_clip(tmp_path):
    """With labels and aux_weight > 0 the heads' loss joins training (other weights, per-epoch head
    losses, held-out head scores in the report); the weights file holds open_clip's keys alone;
    aux_weight 0 trains exactly as without labels."""
    with_aux = ClipPretrainConfig(**{**TINY_PRETRAIN.__dict__, "aux_weight": 1.0})
    report = pretrain_tiny_clip(with_aux, tmp_path / "aux.pt", n_heldout=32, pairs_fn=fake_pairs_with_labels)
    assert len(report["aux_losses"]) == 2 and {"image_colour", "image_geometry"} <= set(report["aux_losses"][0])
    assert 0 <= report["heldout"]["attributes"]["image_colour_acc"] <= 1
    pretrain_tiny_clip(TINY_PRETRAIN, tmp_path / "plain.pt", n_heldout=32, pairs_fn=fake_pairs)
    no_aux = ClipPretrainConfig(**{**TINY_PRETRAIN.__dict__, "aux_weight": 0.0})
    pretrain_tiny_clip(no_aux, tmp_path / "zero.pt", n_heldout=32, pairs_fn=fake_pairs_with_labels)
    aux, plain, zero = (torch.load(tmp_path / f"{n}.pt") for n in ("aux", "plain", "zero"))
    assert aux.keys() == plain.keys() == zero.keys()
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not all(torch.equal(plain[k], aux[k]) for k in plain)
    load_clip("prvr-tiny-clip", str(tmp_path / "aux.pt"))  # open_clip's pretrained=<file> path
