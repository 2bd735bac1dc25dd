"""The paper's learned rewards with real loading code, tested on tiny randomly initialised models of the same
architectures (their published weights cannot be downloaded here): PickScore, CLIPScore, HPSv2.1, FAN, ArcFace,
LPIPS."""

import json
import string

import pytest
import torch

from prefrestore.rewards import RewardInputs, build_reward

S = 64


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(S, S), mode="bicubic").clamp(0, 1) * 2 - 1


def _tiny_clip_config():
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={
            "vocab_size": 60,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "eos_token_id": 59,
            "bos_token_id": 58,
            "pad_token_id": 59,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "hidden_act": "gelu",
        },
        projection_dim=16,
    )


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny transformers CLIP folder: model, BPE tokenizer (chars only), image processor (32 px)."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("tinyclip")
    chars = list(string.ascii_lowercase) + list(".,!")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": 58, "<|endoftext|>": 59}
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt")).save_pretrained(str(d))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(d))
    torch.manual_seed(0)
    CLIPModel(_tiny_clip_config()).save_pretrained(str(d))
    return d


PROMPTS = ["a photograph of a person.", "a face.", "a blurry portrait."]


def _reference_logits(model_dir, pixels, prompts, padding):
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(model_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))(
        prompts, padding=padding, truncation=True, max_length=77, return_tensors="pt"
    )
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=tok.input_ids, attention_mask=tok.attention_mask)
    return out.logits_per_image.diagonal()


def test_clip_preprocessing_matches_the_image_processor(clip_dir):
    from transformers import CLIPImageProcessor

    from prefrestore.rewards.clip import load_hf_clip, preprocess

    clip = load_hf_clip(clip_dir, metric="test")
    x = _images()
    ours = preprocess((x + 1) / 2, clip, mode="bicubic")
    theirs = CLIPImageProcessor.from_pretrained(str(clip_dir))(
        [a for a in RewardInputs(restored=x, lq=x).uint8()], return_tensors="pt"
    ).pixel_values
    assert ours.shape == theirs.shape == (3, 3, 32, 32)
    assert (ours - theirs).abs().mean() < 0.05  # PIL vs torch bicubic and 8-bit rounding only


def test_pickscore_and_clipscore_are_the_official_formulas(clip_dir):
    from prefrestore.rewards.clip import preprocess

    x = _images()
    batch = RewardInputs(restored=x, lq=x, prompts=PROMPTS)
    pick = build_reward("pickscore", model=clip_dir, processor=clip_dir)
    ref = _reference_logits(clip_dir, preprocess(batch.unit(), pick.clip, mode="bicubic"), PROMPTS, True) / 26
    torch.testing.assert_close(pick(batch), ref, atol=1e-5, rtol=1e-4)
    cs = build_reward("clipscore", model=clip_dir)
    ref = _reference_logits(clip_dir, preprocess(batch.unit(), cs.clip, mode="bilinear"), PROMPTS, "max_length") / 100
    torch.testing.assert_close(cs(batch), ref, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="captions"):
        pick(RewardInputs(restored=x, lq=x))


def test_missing_clip_weights_name_what_to_download(tmp_path, monkeypatch):
    from prefrestore.metrics.weights import MetricUnavailable

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MetricUnavailable, match="yuvalkirstain/PickScore_v1"):
        build_reward("pickscore")


# ----------------------------------------------------------------------------------------------------------------
# HPS v2.1: OpenCLIP checkpoint -> transformers


def _hf_to_openclip(sd):
    """The inverse renaming (how an OpenCLIP ViT names the same tensors)."""
    out = {
        "logit_scale": sd["logit_scale"],
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        "text_projection": sd["text_projection.weight"].t(),
        "visual.proj": sd["visual_projection.weight"].t(),
        "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
    }
    for tower, src, n in (("text_model", "transformer", 2), ("vision_model", "visual.transformer", 2)):
        for i in range(n):
            h, o = f"{tower}.encoder.layers.{i}", f"{src}.resblocks.{i}"
            out[f"{o}.attn.in_proj_weight"] = torch.cat([sd[f"{h}.self_attn.{p}_proj.weight"] for p in "qkv"])
            out[f"{o}.attn.in_proj_bias"] = torch.cat([sd[f"{h}.self_attn.{p}_proj.bias"] for p in "qkv"])
            for a, b in (
                ("attn.out_proj", "self_attn.out_proj"),
                ("ln_1", "layer_norm1"),
                ("ln_2", "layer_norm2"),
                ("mlp.c_fc", "mlp.fc1"),
                ("mlp.c_proj", "mlp.fc2"),
            ):
                out[f"{o}.{a}.weight"], out[f"{o}.{a}.bias"] = sd[f"{h}.{b}.weight"], sd[f"{h}.{b}.bias"]
    return out


def test_openclip_packed_attention_maps_onto_separate_projections():
    """The in_proj rows are q | k | v: nn.MultiheadAttention with the packed weights == our three Linears."""
    from transformers import CLIPVisionConfig
    from transformers.models.clip.modeling_clip import CLIPAttention

    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    sd = {
        "b.attn.in_proj_weight": mha.in_proj_weight.detach(),
        "b.attn.in_proj_bias": mha.in_proj_bias.detach(),
        "b.attn.out_proj.weight": mha.out_proj.weight.detach(),
        "b.attn.out_proj.bias": mha.out_proj.bias.detach(),
    }
    for k in ("ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj"):
        sd[f"b.{k}.weight"] = sd[f"b.{k}.bias"] = torch.zeros(1)
    from prefrestore.rewards.clip import _block

    out: dict = {}
    _block(sd, "b", "h", out)
    attn = CLIPAttention(CLIPVisionConfig(hidden_size=32, num_attention_heads=4))
    attn.load_state_dict({k.removeprefix("h.self_attn."): v for k, v in out.items() if "self_attn" in k})
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(attn(x)[0], mha(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_hpsv2_loads_an_openclip_checkpoint_and_scores_cosine(clip_dir, tmp_path):
    from transformers import CLIPModel

    from prefrestore.rewards.clip import preprocess

    original = CLIPModel.from_pretrained(str(clip_dir)).eval()
    ckpt = tmp_path / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": _hf_to_openclip(original.state_dict())}, ckpt)
    reward = build_reward("hpsv2", weights_dir=tmp_path, tokenizer=clip_dir, config=_tiny_clip_config())
    loaded = reward.clip.model.state_dict()
    for k, v in original.state_dict().items():
        assert torch.equal(loaded[k], v), k
    x = _images()
    batch = RewardInputs(restored=x, lq=x, prompts=PROMPTS)
    logits = _reference_logits(clip_dir, preprocess(batch.unit(), reward.clip, mode="bicubic"), PROMPTS, "max_length")
    torch.testing.assert_close(reward(batch), logits / original.logit_scale.exp(), atol=1e-5, rtol=1e-4)


def test_vit_h_14_config_has_the_published_size():
    from transformers import CLIPModel

    from prefrestore.rewards.clip import vit_h_14_config

    with torch.device("meta"):
        model = CLIPModel(vit_h_14_config())
    n = sum(p.numel() for p in model.parameters())
    assert 985e6 < n < 988e6  # OpenCLIP ViT-H-14: 986.1 M parameters


# ----------------------------------------------------------------------------------------------------------------
# FAN (paper's LMD), ArcFace, LPIPS


def test_fan_architecture_matches_the_published_checkpoint_layout():
    from prefrestore.metrics.fan import FAN

    with torch.device("meta"):
        sd = FAN().state_dict()
    n = sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k)
    assert abs(n - 24.15e6) < 0.01e6
    shapes = {
        "conv1.conv.weight": (64, 6, 7, 7),
        "m0.coordconv.conv.weight": (256, 259, 1, 1),
        "m3.coordconv.conv.weight": (256, 261, 1, 1),
        "m2.b2_plus_1.conv3.weight": (64, 64, 3, 3),
        "conv4.downsample.2.weight": (256, 128, 1, 1),
        "l3.weight": (99, 256, 1, 1),
        "al2.weight": (256, 99, 1, 1),
    }
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert "bl3.weight" not in sd and "al3.weight" not in sd


def test_heatmap_points_recover_peaks():
    from prefrestore.metrics.fan import heatmap_points

    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    centres = [(10.0, 20.0), (40.3, 33.0), (5.0, 60.0)]  # (x, y)
    heat = torch.stack([torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8) for cx, cy in centres])[None]
    pts = heatmap_points(heat)[0]
    for (cx, cy), (px, py) in zip(centres, pts.tolist(), strict=True):
        assert abs(px - (cx + 0.5)) <= 0.25 + 1e-6 and abs(py - (cy + 0.5)) <= 0.25 + 1e-6


def test_fan_reward_loads_a_checkpoint_and_is_one_for_identical_images(tmp_path):
    from prefrestore.metrics.fan import FAN, load_fan
    from prefrestore.rewards.fan_lmd import FANLandmarkReward

    torch.manual_seed(0)
    tiny = FAN(num_modules=2, channels=16, num_landmarks=5).eval()
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in tiny.state_dict().items()}, "epoch": 3},
        tmp_path / "alignment_WFLW_4HG.pth",
    )
    loaded = load_fan(tmp_path / "alignment_WFLW_4HG.pth", num_modules=2, channels=16, num_landmarks=5)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[-1], tiny(x)[-1])
    reward = FANLandmarkReward(model=loaded)
    imgs = _images(2)
    scores = reward(RewardInputs(restored=imgs, lq=imgs, hq=imgs))
    torch.testing.assert_close(scores, torch.ones(2))
    shifted = torch.roll(imgs, shifts=6, dims=-1)
    assert (reward(RewardInputs(restored=shifted, lq=imgs, hq=imgs)) <= 1.0).all()
    from prefrestore.metrics.weights import MetricUnavailable

    with pytest.raises(MetricUnavailable, match="alignment_WFLW_4HG.pth"):
        build_reward("lmd", weights_dir=tmp_path / "empty")


def test_arcface_reward_loads_dataparallel_weights(tmp_path, monkeypatch):
    from prefrestore.metrics.identity import ArcFaceResNet18

    torch.manual_seed(0)
    net = ArcFaceResNet18()
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "resnet18_110.pth")
    reward = build_reward("arcface", weights_dir=tmp_path)
    x = _images(2, seed=1)
    other = _images(2, seed=2)
    same = reward(RewardInputs(restored=x, lq=x, hq=x))
    torch.testing.assert_close(same, torch.ones(2), atol=1e-5, rtol=0)
    assert (reward(RewardInputs(restored=other, lq=x, hq=x)) < 1.0).all()


def test_lpips_reward_is_minus_the_distance():
    from prefrestore.metrics.lpips import LPIPS

    torch.manual_seed(0)
    model = LPIPS("vgg")
    reward = build_reward("lpips", model=model)
    x, y = _images(2, seed=1), _images(2, seed=2)
    assert torch.equal(reward(RewardInputs(restored=x, lq=x, hq=x)), torch.zeros(2))
    d = model((y + 1) / 2, (x + 1) / 2)
    torch.testing.assert_close(reward(RewardInputs(restored=y, lq=x, hq=x)), -d)  # random heads: any sign


def test_lpips_reward_with_the_fetched_network():
    """With `prefrestore weights fetch lpips_vgg` done, the paper's reward runs on the real VGG LPIPS: a blurred
    restoration scores below an exact one."""
    from prefrestore.metrics.weights import MetricUnavailable

    try:
        reward = build_reward("lpips")
    except MetricUnavailable as err:
        assert "prefrestore weights fetch lpips_vgg" in str(err)
        pytest.skip(str(err))
    x = _images(2, seed=3)
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    r = reward(RewardInputs(restored=torch.cat([x, blurred]), lq=torch.cat([x, x]), hq=torch.cat([x, x])))
    assert torch.equal(r[:2], torch.zeros(2)) and bool((r[2:] < -1e-3).all())
