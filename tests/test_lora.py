"""LoRA adapters in the official DiffusionNFT format on our SANA transformer: merged equals W + scale * B @ A,
unmerged (peft) equals merged, and bad adapters are refused by name."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from prefrestore.errors import CheckpointError
from prefrestore.lora import (
    LORA_TARGETS,
    add_lora,
    load_lora,
    lora_config,
    merge_lora,
    read_lora,
    save_lora,
)
from prefrestore.restore.api import random_model

# adapter_config.json as peft 0.10 (the official RL env) writes it; newer peft adds fields, older ones are defaulted
PEFT_010_FIELDS = (
    "alpha_pattern",
    "auto_mapping",
    "base_model_name_or_path",
    "bias",
    "fan_in_fan_out",
    "inference_mode",
    "init_lora_weights",
    "layers_pattern",
    "layers_to_transform",
    "loftq_config",
    "lora_alpha",
    "lora_dropout",
    "megatron_config",
    "megatron_core",
    "modules_to_save",
    "peft_type",
    "r",
    "rank_pattern",
    "revision",
    "target_modules",
    "task_type",
    "use_dora",
    "use_rslora",
)


@pytest.fixture(scope="module")
def model():
    return random_model("tiny", seed=0)


def official_adapter(transformer, ckpt: Path, *, r=4, alpha=8) -> Path:
    """What DiffusionNFT's save_ckpt writes: get_peft_model(sana) + add_adapter('old'), trained (here: random B),
    PeftModel.save_pretrained(checkpoint-N/lora) -> lora/ and lora/old/."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS))
    peft_model = get_peft_model(copy.deepcopy(transformer), cfg)
    peft_model.add_adapter("old", cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    peft_model.save_pretrained(ckpt / "lora")
    for d in (ckpt / "lora", ckpt / "lora" / "old"):
        raw = json.loads((d / "adapter_config.json").read_text())
        (d / "adapter_config.json").write_text(json.dumps({k: raw.get(k) for k in PEFT_010_FIELDS}))
    peft_model.set_adapter("default")
    return peft_model.eval()


@pytest.fixture(scope="module")
def adapter(model, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("nft") / "checkpoint-30"
    return ckpt, official_adapter(model.transformer, ckpt)


def forward(transformer, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, 8, 8, generator=g)  # SANA has no positional embedding: any latent grid works
    cond = torch.randn(2, 9, 192, generator=g)
    with torch.no_grad():
        return transformer(x, encoder_hidden_states=cond, timestep=torch.tensor([300.0, 800.0]), return_dict=False)[0]


def test_official_files_are_what_we_expect(adapter):
    ckpt, _ = adapter
    a = read_lora(ckpt)  # a checkpoint-N folder resolves to its lora/
    assert a.path == ckpt / "lora" and a.r == 4 and a.scale == 2.0
    assert len(a.weights) == 4 * len(LORA_TARGETS)
    A, B = a.weights["transformer_blocks.2.attn2.to_out.0"]
    assert A.shape == (4, 128) and B.shape == (128, 4)
    from safetensors import safe_open

    with safe_open(ckpt / "lora" / "adapter_model.safetensors", "pt") as f:
        assert "base_model.model.transformer_blocks.0.attn1.to_q.lora_A.weight" in f.keys()
    assert (ckpt / "lora" / "old" / "adapter_model.safetensors").is_file()


def test_merged_weights_equal_w_plus_scale_b_a(model, adapter):
    ckpt, _ = adapter
    m = copy.deepcopy(model)
    before = {k: v.clone() for k, v in m.transformer.state_dict().items()}
    a = load_lora(m, ckpt, merge=True)
    after = m.transformer.state_dict()
    targets = {f"{name}.weight" for name in a.weights}
    for name, (A, B) in a.weights.items():
        assert torch.equal(after[f"{name}.weight"], before[f"{name}.weight"] + a.scale * B @ A), name
    assert all(torch.equal(after[k], v) for k, v in before.items() if k not in targets)
    assert after.keys() == before.keys()  # still a plain model


def test_unmerged_peft_equals_merged_equals_official(model, adapter):
    ckpt, official = adapter
    merged, unmerged = copy.deepcopy(model), copy.deepcopy(model)
    load_lora(merged, ckpt, merge=True)
    load_lora(unmerged, ckpt, merge=False)
    ref = forward(official)  # the official PeftModel with its "default" adapter
    torch.testing.assert_close(forward(merged.transformer), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(forward(unmerged.transformer), ref, rtol=1e-4, atol=1e-5)
    unmerged.transformer.disable_adapters()  # the reference policy of DiffusionNFT
    torch.testing.assert_close(forward(unmerged.transformer), forward(model.transformer), rtol=0, atol=0)
    unmerged.transformer.enable_adapters()
    n = merge_lora(unmerged.transformer)
    assert n == 4 * len(LORA_TARGETS)
    s1, s2 = unmerged.transformer.state_dict(), merged.transformer.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_default_and_old_adapters_side_by_side(model, adapter):
    ckpt, official = adapter
    m = copy.deepcopy(model)
    load_lora(m, ckpt / "lora", merge=False, adapter_name="default")
    load_lora(m, ckpt / "lora" / "old", merge=False, adapter_name="old")
    m.transformer.set_adapter("default")
    torch.testing.assert_close(forward(m.transformer), forward(official), rtol=1e-4, atol=1e-5)
    m.transformer.set_adapter("old")
    official.set_adapter("old")
    try:
        torch.testing.assert_close(forward(m.transformer), forward(official), rtol=1e-4, atol=1e-5)
    finally:
        official.set_adapter("default")
    with pytest.raises(ValueError, match="old"):
        merge_lora(m.transformer)


def test_add_save_load_round_trip(model, tmp_path):
    """The RL side: a fresh official-config adapter, trained (random B), saved in the official layout, loaded back."""
    m = copy.deepcopy(model)
    add_lora(m.transformer, lora_config(r=8, alpha=16))
    assert m.transformer.transformer_blocks[0].attn1.to_q.r["default"] == 8
    with torch.no_grad():
        for n, p in m.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    trained = forward(m.transformer)
    save_lora(m.transformer, tmp_path / "lora")
    cfg = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["lora_alpha"] == 16 and sorted(cfg["target_modules"]) == sorted(LORA_TARGETS)
    fresh = copy.deepcopy(model)
    load_lora(fresh, tmp_path / "lora", merge=True)
    torch.testing.assert_close(forward(fresh.transformer), trained, rtol=1e-4, atol=1e-5)


def _broken(src: Path, dst: Path, *, edit_state=None, edit_config=None) -> Path:
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    sd = load_file(src / "adapter_model.safetensors")
    cfg = json.loads((src / "adapter_config.json").read_text())
    if edit_state:
        edit_state(sd)
    if edit_config:
        edit_config(cfg)
    save_file(sd, dst / "adapter_model.safetensors")
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


P = "base_model.model.transformer_blocks.1.attn1.to_v."


@pytest.mark.parametrize(
    "case, match",
    [
        ("shape", "transformer_blocks.1.attn1.to_v: B @ A is (64, 128), weight is (128, 128)"),
        ("unknown", "unknown modules: transformer_blocks.1.ff.conv_point"),
        ("missing", "targets without weights: transformer_blocks.1.attn1.to_v"),
        ("half", "transformer_blocks.1.attn1.to_v (no lora_B)"),
        ("extra-key", "unknown keys: base_model.model.transformer_blocks.1.attn1.to_v.lora_magnitude_vector"),
        ("dora", "use_dora=true"),
        ("rank", "not rank 4"),
    ],
)
def test_bad_adapters_are_refused_by_name(model, adapter, tmp_path, case, match):
    ckpt, _ = adapter
    src = ckpt / "lora"

    def state(sd):
        if case == "shape":
            sd[P + "lora_B.weight"] = sd[P + "lora_B.weight"][:64]
        elif case == "unknown":
            sd["base_model.model.transformer_blocks.1.ff.conv_point.lora_A.weight"] = torch.zeros(4, 320)
            sd["base_model.model.transformer_blocks.1.ff.conv_point.lora_B.weight"] = torch.zeros(128, 4)
        elif case == "missing":
            del sd[P + "lora_A.weight"], sd[P + "lora_B.weight"]
        elif case == "half":
            del sd[P + "lora_B.weight"]
        elif case == "extra-key":
            sd[P + "lora_magnitude_vector"] = torch.zeros(128)
        elif case == "rank":
            sd[P + "lora_A.weight"] = torch.zeros(5, 128)

    def config(cfg):
        if case == "dora":
            cfg["use_dora"] = True

    bad = _broken(src, tmp_path / "bad", edit_state=state, edit_config=config)
    with pytest.raises(CheckpointError) as e:
        load_lora(copy.deepcopy(model), bad, merge=True)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_corrupt_or_missing_adapter_files(tmp_path):
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        read_lora(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        read_lora(tmp_path)
