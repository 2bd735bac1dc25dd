"""Official checkpoints -> prefrestore, on synthetic files written in the official layouts at tiny dimensions.

Each fixture file has the key names, nesting, config fields and file names that the official code writes
(docs/layouts.md §1-§6): an HF-sharded Stage-A folder (bf16, lm_head.weight and both connector norms stored), a
single-file BLIP3o-NEXT folder without vae_connector/SANA, ``ta_tok.pth`` pickled with ``easydict.EasyDict`` args,
a diffusers SANA folder written by diffusers' own save_pretrained, and Qwen-style tokenizer files. The real
multi-GB files are not used here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from prefrestore.checkpoints import from_pretrained
from prefrestore.convert import BLIP3O_RULES, convert, convert_official, resolve_official
from prefrestore.convert.keys import _official_name
from prefrestore.errors import CheckpointError, UserError
from prefrestore.models.presets import tiny

CODEBOOK = 64
SCALING = 0.41407
LORA_TARGETS = [
    "attn1.to_k",
    "attn1.to_out.0",
    "attn1.to_q",
    "attn1.to_v",
    "attn2.to_k",
    "attn2.to_out.0",
    "attn2.to_q",
    "attn2.to_v",
]


def base_preset():
    t = tiny()
    return dataclasses.replace(t, autoencoder=dataclasses.replace(t.autoencoder, scaling_factor=SCALING))


# ---------------------------------------------------------------------------------------------------------------
# Writers of the official layouts


class EasyDict(dict):
    """Behaves like easydict 1.x (keys mirrored as attributes), pickled as ``easydict.EasyDict``."""

    def __init__(self, d=None, **kw):
        super().__init__()
        for k, v in {**(d or {}), **kw}.items():
            setattr(self, k, v)

    def __setattr__(self, name, value):
        if isinstance(value, dict) and not isinstance(value, EasyDict):
            value = EasyDict(value)
        super().__setattr__(name, value)
        super().__setitem__(name, value)

    __setitem__ = __setattr__


EasyDict.__module__ = "easydict"


def torch_save_with_fake_module(obj, path: Path, module: str, **attrs) -> None:
    mod = types.ModuleType(module)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[module] = mod
    try:
        torch.save(obj, path)
    finally:
        del sys.modules[module]


def bf16_exact(module: torch.nn.Module) -> torch.nn.Module:
    """Perturb every parameter (so no zero-init hides a mix-up) and round it to bf16-representable values, so the
    bf16 official files and the fp32 reference modules hold the same numbers."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05).copy_(p.bfloat16().float())
    return module.eval()


def write_tokenizer(d: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(
        ["system\nYou are a helpful assistant.", "user\n\nPlease reconstruct the given image.", "assistant\n"], trainer
    )
    tok.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<im_start>", "<im_end>")
        ]
    )
    tok.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t in ["<S0>", "<S1>", "<S2>"] + [f"<I{i}>" for i in range(CODEBOOK)]
        ]
    )
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "Qwen2Tokenizer",
                "model_max_length": 2048,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "bos_token": None,
                "unk_token": None,
                "errors": "replace",
                "split_special_tokens": False,
                "add_prefix_space": False,
                "padding_side": "right",
            }
        )
    )
    (d / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}))


def vocab(d: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(d / "tokenizer.json")).get_vocab(with_added_tokens=True)


def hf_config(v: dict[str, int], *, arch: str, with_vae: bool) -> dict:
    cfg = {
        "architectures": [arch],
        "model_type": "blip3o_qwen",
        "vocab_size": len(v),
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "initializer_range": 0.02,
        "bos_token_id": v["<|endoftext|>"],
        "eos_token_id": v["<|im_end|>"],
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "use_cache": True,
        # BLIP3o / Pref-Restore training fields (LAYOUTS §1)
        "mm_vision_tower": "/data/phd/hf_models/Unified-Models/TA-Tok/ta_tok.pth",
        "vision_tower_pretrained": "",
        "use_mm_proj": True,
        "mm_hidden_size": 96,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "square",
        "diffusion_name_or_path": "/data/phd/hf_models/SANA1.5_1.6B_1024px_diffusers",
        "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 2048,
        "mm_use_im_start_end": True,
        "mm_vision_tower_lr": None,
        "mm_tunable_parts": "mm_language_model",
        "use_pos_skipping": False,
        "pos_skipping_range": 4096,
        "image_start_tag_id": v["<im_start>"],
        "image_end_tag_id": v["<im_end>"],
        "scale_start_token_id": v["<S0>"],
        "scale_end_token_id": v["<S2>"],
        "num_scale_tokens": 3,
        "image_start_token_id": v["<I0>"],
        "image_end_token_id": v[f"<I{CODEBOOK - 1}>"],
        "num_image_tokens": CODEBOOK,
        "num_new_tokens": CODEBOOK,
    }
    if with_vae:
        cfg["vae_connector"] = True
    return cfg


def qwen(cfg: dict):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    keys = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "rms_norm_eps",
        "rope_theta",
        "tie_word_embeddings",
    )
    return Qwen3ForCausalLM(Qwen3Config(**{k: cfg[k] for k in keys}))


def siglip_tower():
    from transformers import SiglipVisionConfig, SiglipVisionModel

    t = tiny().tokenizer
    return SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=t.hidden_size,
            intermediate_size=t.intermediate_size,
            num_hidden_layers=2,
            num_attention_heads=t.num_heads,
            image_size=t.image_size,
            patch_size=t.patch_size,
        )
    )


def ta_tok_state() -> dict[str, torch.Tensor]:
    """``TextAlignedTokenizer`` state dict: encoder (SigLIP vision transformer), feature decoder, task layers,
    bottleneck (SimVQ), scale layer, and some teacher keys."""
    from transformers import Siglip2VisionConfig, Siglip2VisionModel

    H, E = tiny().tokenizer.hidden_size, 32
    sd = {f"encoder.{k}": v for k, v in bf16_exact(siglip_tower()).state_dict().items()}
    dc = Siglip2VisionConfig()
    dc.update(
        {
            "patch_size": 1,
            "num_hidden_layers": 1,
            "num_channels": E,
            "hidden_size": H,
            "intermediate_size": 64,
            "num_attention_heads": 4,
        }
    )
    sd |= {f"decoder.vision_model.{k}": v for k, v in Siglip2VisionModel(dc).state_dict().items()}

    def lin(o, i):
        return (torch.randn(o, i) / math.sqrt(i)).bfloat16().float(), (torch.randn(o) * 0.1).bfloat16().float()

    sd["encode_task_layer.0.weight"], sd["encode_task_layer.0.bias"] = lin(H, H)
    sd["decode_task_layer.0.weight"], sd["decode_task_layer.0.bias"] = lin(H, H)
    sd["decode_task_layer.2.weight"], sd["decode_task_layer.2.bias"] = lin(H, H)
    sd["bottleneck.in_linear.weight"], sd["bottleneck.in_linear.bias"] = lin(E, H)
    sd["bottleneck.out_linear.weight"], sd["bottleneck.out_linear.bias"] = lin(E, E)
    sd["bottleneck.regularizer.embedding.weight"] = torch.randn(CODEBOOK, E).bfloat16().float()
    sd["bottleneck.regularizer.embedding_proj.weight"], sd["bottleneck.regularizer.embedding_proj.bias"] = lin(E, E)
    sd["scale_layer.shift"] = torch.full((1, 3, 1, 1), 0.5)
    sd["scale_layer.scale"] = torch.full((1, 3, 1, 1), 0.5)
    sd["teacher.vision_model.post_layernorm.weight"] = torch.ones(H)
    return sd


def write_ta_tok(path: Path, sd: dict[str, torch.Tensor]) -> None:
    t = tiny().tokenizer
    args = EasyDict(
        {
            "bottleneck": {
                "name": "bottleneck",
                "args": {
                    "bottleneck_dim": 32,
                    "norm": "none",
                    "regularizer": {
                        "name": "simvq",
                        "args": {
                            "codebook_size": CODEBOOK,
                            "commitment_loss_weight": 0.25,
                            "codebook_loss_weight": 1.0,
                            "entropy_loss_weight": 0.0,
                            "entropy_loss_temperature": 0.01,
                            "l2_normalized": True,
                            "stochastic": True,
                            "stochastic_temperature": 0.03,
                            "top_k": 4,
                            "top_k_prob": 0.5,
                            "residual_weight": 0.1,
                        },
                    },
                },
            },
            "bottleneck_token_num": t.num_tokens,
            "input_size": t.image_size,
            "teacher": "google/siglip2-so400m-patch14-384",
            "ckpt_path": "google/siglip2-so400m-patch14-384",
            "pool_scale": 1,
            "rand_scale": True,
        }
    )
    torch_save_with_fake_module({"model": {"args": args, "sd": sd}}, path, "easydict", EasyDict=EasyDict)


def write_sana(d: Path, transformer, vae) -> None:
    """The diffusers SANA 1.5 folder, written by diffusers itself (transformer/, vae/, scheduler/)."""
    transformer.save_pretrained(d / "transformer")
    vae.save_pretrained(d / "vae")
    (d / "scheduler").mkdir()
    (d / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(
            {
                "_class_name": "DPMSolverMultistepScheduler",
                "flow_shift": 3.0,
                "prediction_type": "flow_prediction",
                "use_flow_sigmas": True,
                "num_train_timesteps": 1000,
                "solver_order": 2,
                "algorithm_type": "dpmsolver++",
            }
        )
    )
    (d / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "SanaPipeline",
                "_diffusers_version": "0.33.0.dev0",
                "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
                "text_encoder": ["transformers", "Gemma2Model"],
                "tokenizer": ["transformers", "GemmaTokenizerFast"],
                "transformer": ["diffusers", "SanaTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderDC"],
            }
        )
    )


def write_hf_checkpoint(d: Path, sd: dict[str, torch.Tensor], cfg: dict, tok: Path, *, shard: str | None) -> None:
    """An HF Trainer checkpoint folder: bf16 safetensors (sharded model-0000k-of-0000n + index, or one file),
    config.json, generation_config.json and the tokenizer files."""
    from huggingface_hub import save_torch_state_dict

    d.mkdir(parents=True)
    state = {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}
    save_torch_state_dict(
        state,
        d,
        filename_pattern="model{suffix}.safetensors",
        max_shard_size=shard or "10GB",
        metadata={"format": "pt"},
    )
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    (d / "generation_config.json").write_text(
        json.dumps({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]})
    )
    for f in tok.iterdir():
        shutil.copyfile(f, d / f.name)


def connector(in_dim: int, out_dim: int, prefix: str) -> dict[str, torch.Tensor]:
    def r(*s, scale):
        return (torch.randn(*s) * scale).bfloat16().float()

    return {
        f"{prefix}0.weight": r(out_dim, in_dim, scale=in_dim**-0.5),
        f"{prefix}0.bias": r(out_dim, scale=0.1),
        f"{prefix}2.weight": r(out_dim, out_dim, scale=out_dim**-0.5),
        f"{prefix}2.bias": r(out_dim, scale=0.1),
    }


@dataclasses.dataclass
class Official:
    stage_a: Path
    blip3o: Path
    ta_tok: Path
    sana: Path
    lora: Path
    stage_a_sd: dict[str, torch.Tensor]  # fp32 values of every tensor in the Stage-A shards
    blip3o_sd: dict[str, torch.Tensor]
    tatok_sd: dict[str, torch.Tensor]
    transformer: torch.nn.Module  # the Stage-A (fine-tuned) SANA, as a diffusers module
    vae: torch.nn.Module
    stock_transformer: torch.nn.Module  # the SANA folder's
    stock_vae: torch.nn.Module


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Official:
    from diffusers import AutoencoderDC, SanaTransformer2DModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("official")
    base = base_preset()
    write_tokenizer(root / "tok")
    v = vocab(root / "tok")

    tatok = ta_tok_state()
    write_ta_tok(root / "ta_tok.pth", tatok)

    stock_tr = bf16_exact(SanaTransformer2DModel(**base.transformer.kwargs()))
    stock_vae = bf16_exact(AutoencoderDC(**base.autoencoder.kwargs()))
    write_sana(root / "SANA1.5_1.6B_1024px_diffusers", stock_tr, stock_vae)
    tr = bf16_exact(SanaTransformer2DModel(**base.transformer.kwargs()))  # "fine-tuned" in Stage A
    vae = bf16_exact(AutoencoderDC(**base.autoencoder.kwargs()))

    cfg = hf_config(v, arch="blip3oQwenForCausalLMVAE", with_vae=True)
    lm = bf16_exact(qwen(cfg)).state_dict()
    lm["lm_head.weight"] = lm["model.embed_tokens.weight"].clone()  # DeepSpeed's clone_tensors_for_torch_save
    C = base.transformer.caption_channels
    norm = (2.3452 + 0.1 * torch.randn(C)).bfloat16().float()
    tower = {k: t for k, t in tatok.items() if not k.startswith("teacher.")}
    tower["scale_layer.shift"], tower["scale_layer.scale"] = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    sd = dict(lm)
    sd |= {f"model.vision_tower.vision_tower.{k}": t for k, t in tower.items()}
    sd |= {f"model.sana.{k}": t for k, t in tr.state_dict().items()}
    sd |= {f"model.sana_vae.{k}": t for k, t in vae.state_dict().items()}
    sd |= connector(128, C, "model.diffusion_connector.") | {"model.diffusion_connector.3.weight": norm}
    sd |= connector(base.transformer.inner_dim, C, "model.vae_connector.") | {
        "model.vae_connector.3.weight": norm.clone()
    }
    write_hf_checkpoint(root / "checkpoint-4000", sd, cfg, root / "tok", shard="300KB")

    bcfg = hf_config(v, arch="blip3oQwenForCausalLM", with_vae=False)
    bsd = {
        k: t.clone()
        for k, t in sd.items()
        if k.startswith(("model.embed_tokens", "model.layers", "model.norm", "lm_head", "model.diffusion_connector"))
    }
    write_hf_checkpoint(root / "BLIP3o-NEXT-SFT-3B", bsd, bcfg, root / "tok", shard=None)

    write_lora(root / "nft" / "checkpoints" / "checkpoint-30", tr)
    return Official(
        root / "checkpoint-4000",
        root / "BLIP3o-NEXT-SFT-3B",
        root / "ta_tok.pth",
        root / "SANA1.5_1.6B_1024px_diffusers",
        root / "nft" / "checkpoints" / "checkpoint-30",
        sd,
        bsd,
        tatok,
        tr,
        vae,
        stock_tr,
        stock_vae,
    )


def write_lora(ckpt: Path, transformer) -> None:
    """The DiffusionNFT save: get_peft_model + add_adapter('old') on the SANA transformer, PeftModel.save_pretrained
    into checkpoint-N/lora (adapter 'old' goes to lora/old)."""
    import copy

    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
    peft_model = get_peft_model(copy.deepcopy(transformer), cfg)
    peft_model.add_adapter("old", cfg)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    peft_model.save_pretrained(ckpt / "lora")


# ---------------------------------------------------------------------------------------------------------------
# Hand computations from the original tensors


def hand_connector(x, sd, prefix, norm_weight, eps=1e-5):
    h = x @ sd[prefix + "0.weight"].T + sd[prefix + "0.bias"]
    h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))  # GELU(tanh)
    h = h @ sd[prefix + "2.weight"].T + sd[prefix + "2.bias"]
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * norm_weight


def uint8_images(n, *, seed):
    """n random uint8 images at TA-Tok's 112 px -> (our [-1, 1] tensor, SigLIP's input: x/255 normalised 0.5/0.5).
    The official code only feeds TA-Tok uint8 images; the tokenizer rounds float input to uint8 as well."""
    u = torch.randint(0, 256, (n, 3, 112, 112), generator=torch.Generator().manual_seed(seed)).float()
    return u / 127.5 - 1, (u / 255 - 0.5) / 0.5


def hand_ta_tok(images, sd):
    tower = siglip_tower()
    tower.load_state_dict({k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")})
    feats = tower.eval()(pixel_values=images, output_hidden_states=True).hidden_states[-2]
    z = torch.tanh(feats @ sd["encode_task_layer.0.weight"].T + sd["encode_task_layer.0.bias"])
    z = z @ sd["bottleneck.in_linear.weight"].T + sd["bottleneck.in_linear.bias"]
    E = sd["bottleneck.regularizer.embedding.weight"]
    codes = F.normalize(
        E @ sd["bottleneck.regularizer.embedding_proj.weight"].T + sd["bottleneck.regularizer.embedding_proj.bias"],
        dim=-1,
    )
    return (F.normalize(z, dim=-1) @ codes.T).argmax(-1)


# ---------------------------------------------------------------------------------------------------------------
# Stage A


@pytest.fixture(scope="module")
def stage_a_model(official, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "stage-a"
    report = convert(
        out, stage_a=str(official.stage_a), ta_tok=str(official.ta_tok), sana=str(official.sana), base=base_preset()
    )
    return report, from_pretrained(out), out


def test_stage_a_every_official_key_is_mapped_or_dropped_with_reason(official, stage_a_model):
    report, _, _ = stage_a_model
    conv = convert_official("stage-a", official.stage_a, base=base_preset())
    dropped = {k for keys in conv.report.dropped.values() for k in keys}
    mapped = {_official_name(k, BLIP3O_RULES) for k in conv.state}
    assert mapped | dropped == set(official.stage_a_sd)
    assert not mapped & dropped
    reasons = " ".join(report.dropped)
    for key in (
        "lm_head.weight",
        "model.vae_connector.3.weight",
        "model.vision_tower.vision_tower.scale_layer.shift",
        "model.vision_tower.vision_tower.decoder.vision_model.post_layernorm.weight",
        "model.vision_tower.vision_tower.decode_task_layer.2.bias",
    ):
        assert key in dropped, key
    assert "duplicate of a shared tensor" in reasons and "feature decoder" in reasons
    assert report.sources["transformer"] == report.sources["integrator"] == str(official.stage_a)
    assert report.sources["vae_connector"] == str(official.stage_a)
    assert (stage_a_model[2] / "conversion.json").is_file()


def test_stage_a_every_tensor_lands_where_it_should(official, stage_a_model):
    _, model, _ = stage_a_model
    ours = model.state_dict()
    assert len(ours) == len({_official_name(k, BLIP3O_RULES) for k in ours})
    for k, v in ours.items():
        name = _official_name(k, BLIP3O_RULES)
        assert torch.equal(v, official.stage_a_sd[name].float()), (k, name)


def test_stage_a_shared_tensors_are_one_parameter(stage_a_model):
    _, model, out = stage_a_model
    assert model.integrator.lm.lm_head.weight is model.integrator.lm.model.embed_tokens.weight
    assert model.vae_connector[3] is model.diffusion_connector[3]
    from safetensors import safe_open

    keys = set()
    for f in out.glob("model*.safetensors"):
        with safe_open(f, "pt") as h:
            keys |= set(h.keys())
    assert len({"integrator.lm.lm_head.weight", "integrator.lm.model.embed_tokens.weight"} & keys) == 1
    assert len({"diffusion_connector.3.weight", "vae_connector.3.weight"} & keys) == 1


def test_connectors_equal_hand_computation(official, stage_a_model):
    _, model, _ = stage_a_model
    sd = {k: v.float() for k, v in official.stage_a_sd.items()}
    norm = sd["model.diffusion_connector.3.weight"]
    q = torch.randn(2, 5, 128)
    torch.testing.assert_close(
        model.diffusion_connector(q), hand_connector(q, sd, "model.diffusion_connector.", norm), rtol=1e-5, atol=1e-5
    )
    p = torch.randn(2, 7, model.config.transformer.inner_dim)
    torch.testing.assert_close(
        model.vae_connector(p), hand_connector(p, sd, "model.vae_connector.", norm), rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_lq_path_and_sana_identical_before_and_after(official, stage_a_model):
    _, model, _ = stage_a_model
    sd = {k: v.float() for k, v in official.stage_a_sd.items()}
    torch.manual_seed(1)
    lq = torch.rand(2, 3, 64, 64) * 2 - 1  # fully convolutional DC-AE and position-free SANA: small is enough
    # DC-AE encode (scaled), SANA patch_embed, vae_connector
    latent = model.encode_latent(lq)
    torch.testing.assert_close(latent, official.vae.encode(lq).latent * SCALING, rtol=0, atol=1e-6)
    ref_tokens = hand_connector(
        official.transformer.patch_embed(latent), sd, "model.vae_connector.", sd["model.diffusion_connector.3.weight"]
    )
    torch.testing.assert_close(model.lq_tokens(latent), ref_tokens, rtol=1e-5, atol=1e-5)
    # SANA velocity and DC-AE decode
    cond = torch.randn(2, 12, model.config.transformer.caption_channels)
    x_t, sigma = torch.randn_like(latent), torch.tensor([0.3, 0.9])
    ref = official.transformer(x_t, encoder_hidden_states=cond, timestep=sigma * 1000, return_dict=False)[0]
    torch.testing.assert_close(model.velocity(x_t, sigma, cond), ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        model.decode_latent(latent), official.vae.decode(latent / SCALING).sample, rtol=0, atol=1e-6
    )


@torch.no_grad()
def test_ta_tok_ids_and_lm_logits_equal_the_originals(official, stage_a_model):
    _, model, _ = stage_a_model
    images, siglip = uint8_images(2, seed=2)
    tower = {
        k[len("model.vision_tower.vision_tower.") :]: v.float()
        for k, v in official.stage_a_sd.items()
        if k.startswith("model.vision_tower.vision_tower.")
    }
    ids = model.tokenizer(images)
    assert torch.equal(ids, hand_ta_tok(siglip, tower))
    assert len(ids.unique()) > 3  # the codebook is really exercised
    cfg = json.loads((official.stage_a / "config.json").read_text())
    lm = qwen(cfg)
    lm.load_state_dict(
        {
            k: v.float()
            for k, v in official.stage_a_sd.items()
            if k.startswith(("model.embed_tokens", "model.layers", "model.norm", "lm_head"))
        }
    )
    tokens = torch.randint(0, cfg["vocab_size"], (2, 9))
    torch.testing.assert_close(model.integrator.lm(tokens).logits, lm.eval()(tokens).logits, rtol=0, atol=1e-5)


def test_stage_a_prompt_ids_come_from_the_official_tokenizer(official, stage_a_model):
    _, model, out = stage_a_model
    v = vocab(official.stage_a)
    c = model.config.integrator
    assert (c.chat_start_id, c.image_start_tag_id, c.scale_start_token_id, c.image_start_token_id) == (
        v["<|im_start|>"],
        v["<im_start>"],
        v["<S0>"],
        v["<I0>"],
    )
    assert sorted(p.name for p in (out / "tokenizer").iterdir()) == sorted(
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    )
    pre, post = model.integrator.prompt_ids("Please reconstruct the given image.")
    assert post[-1] == v["<im_start>"] and pre[0] == v["<|im_start|>"]


def test_stage_a_without_side_files_uses_the_checkpoint_copy(official, tmp_path):
    """PhaseA already holds TA-Tok (model.vision_tower.vision_tower.*) and SANA: no --ta-tok or --sana needed."""
    conv = convert_official("stage-a", official.stage_a, base=base_preset())
    assert conv.report.sources["tokenizer"] == str(official.stage_a)
    assert any("preset" in n for n in conv.report.notes)
    model = conv.to_model()
    images, siglip = uint8_images(1, seed=0)
    assert torch.equal(model.tokenizer(images), hand_ta_tok(siglip, official.tatok_sd))


def test_stage_a_direct_load_equals_the_written_folder(official, stage_a_model):
    from prefrestore.convert import load_official

    _, written, _ = stage_a_model
    direct = load_official("stage-a", official.stage_a, ta_tok=official.ta_tok, sana=official.sana, base=base_preset())
    a, b = direct.state_dict(), written.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------------------------
# BLIP3o-NEXT + ta_tok.pth + SANA folder (the Stage-A starting point)


@torch.no_grad()
def test_blip3o_assembly(official, tmp_path):
    out = tmp_path / "start"
    report = convert(
        out,
        blip3o=str(official.blip3o),
        ta_tok=str(official.ta_tok),
        sana=str(official.sana),
        base=base_preset(),
        seed=3,
    )
    model = from_pretrained(out)
    assert report.sources["tokenizer"] == str(official.ta_tok)
    assert report.sources["transformer"].endswith("transformer/diffusion_pytorch_model.safetensors")
    assert report.initialised == [
        "vae_connector.0.weight",
        "vae_connector.0.bias",
        "vae_connector.2.weight",
        "vae_connector.2.bias",
    ]
    assert "teacher.vision_model.post_layernorm.weight" in {k for ks in report.dropped.values() for k in ks}
    # SANA and DC-AE are the folder's, bit for bit
    for ours, ref in ((model.transformer, official.stock_transformer), (model.vae, official.stock_vae)):
        r = ref.state_dict()
        assert all(torch.equal(v, r[k]) for k, v in ours.state_dict().items())
    latent = torch.randn(1, 16, 8, 8)
    cond = torch.randn(1, 5, 192)
    ref = official.stock_transformer(
        latent, encoder_hidden_states=cond, timestep=torch.tensor([500.0]), return_dict=False
    )[0]
    torch.testing.assert_close(model.velocity(latent, torch.tensor([0.5]), cond), ref, rtol=0, atol=1e-6)
    # TA-Tok from the .pth, LM from the checkpoint
    images, siglip = uint8_images(1, seed=0)
    assert torch.equal(model.tokenizer(images), hand_ta_tok(siglip, official.tatok_sd))
    assert torch.equal(
        model.integrator.lm.model.embed_tokens.weight, official.blip3o_sd["model.embed_tokens.weight"].float()
    )
    # vae_connector: HF init for missing keys, the shared norm from diffusion_connector.3
    w = model.vae_connector[0].weight
    assert model.vae_connector[3] is model.diffusion_connector[3]
    assert torch.all(model.vae_connector[0].bias == 0) and abs(w.std().item() - 0.02) < 0.003
    assert torch.equal(model.diffusion_connector[3].weight, official.blip3o_sd["model.diffusion_connector.3.weight"])


def test_blip3o_without_sana_says_what_to_pass(official):
    with pytest.raises(CheckpointError, match="--sana") as e:
        convert_official("blip3o", official.blip3o, ta_tok=official.ta_tok, base=base_preset())
    assert "\n" not in str(e.value)


def test_blip3o_without_ta_tok_says_what_to_pass(official):
    with pytest.raises(CheckpointError, match="--ta-tok"):
        convert_official("blip3o", official.blip3o, sana=official.sana, base=base_preset())


# ---------------------------------------------------------------------------------------------------------------
# Pickle-free reading of ta_tok.pth


def test_ta_tok_args_are_read_without_easydict_installed(official):
    from prefrestore.convert import read_ta_tok

    assert "easydict" not in sys.modules
    args, sd = read_ta_tok(official.ta_tok)
    assert type(args) is dict and args["input_size"] == 112
    assert args["bottleneck"]["args"]["regularizer"]["args"]["codebook_size"] == CODEBOOK
    assert sd.keys() == official.tatok_sd.keys()


CALLS: list[str] = []


def _mark(x):
    CALLS.append(x)
    return {}


class _Payload:
    def __reduce__(self):
        return (_mark, ("executed",))


_mark.__module__ = _Payload.__module__ = "evil"
_mark.__qualname__ = "mark"


def test_ta_tok_with_other_globals_is_refused_and_nothing_runs(tmp_path):
    from prefrestore.convert import read_ta_tok

    f = tmp_path / "ta_tok.pth"
    torch_save_with_fake_module({"model": {"args": _Payload(), "sd": {}}}, f, "evil", mark=_mark, _Payload=_Payload)
    with pytest.raises(CheckpointError, match="evil.mark") as e:
        read_ta_tok(f)
    assert CALLS == [] and "\n" not in str(e.value)


def test_ta_tok_garbage_and_wrong_structure(tmp_path):
    from prefrestore.convert import read_ta_tok

    (tmp_path / "a.pth").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="a.pth"):
        read_ta_tok(tmp_path / "a.pth")
    torch.save({"state_dict": {"x": torch.zeros(1)}}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="not a TA-Tok checkpoint"):
        read_ta_tok(tmp_path / "b.pth")


# ---------------------------------------------------------------------------------------------------------------
# Corrupt and mismatched checkpoints: one line naming the file and keys


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite(d: Path, edit) -> None:
    """Apply ``edit(state)`` to the (single) shard that holds the keys it touches: simplest is to rewrite all."""
    from safetensors.torch import load_file, save_file

    for f in sorted(d.glob("model*.safetensors")):
        sd = load_file(f)
        new = edit(dict(sd), f)
        if new is not None:
            save_file(new, f, metadata={"format": "pt"})
            idx = d / "model.safetensors.index.json"
            if idx.is_file():
                j = json.loads(idx.read_text())
                j["weight_map"] = {k: v for k, v in j["weight_map"].items() if v != f.name} | {k: f.name for k in new}
                idx.write_text(json.dumps(j))


def _one_line_error(fn, *match):
    with pytest.raises(CheckpointError) as e:
        fn()
    text = str(e.value)
    assert "\n" not in text
    for m in match:
        assert m in text, (m, text)
    return text


def test_truncated_shard(official, tmp_path):
    d = _copy(official.stage_a, tmp_path / "ck")
    shard = sorted(d.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    _one_line_error(lambda: convert_official("stage-a", d, base=base_preset()), str(shard), "corrupt")


def test_missing_shard(official, tmp_path):
    d = _copy(official.stage_a, tmp_path / "ck")
    shard = sorted(d.glob("model-*.safetensors"))[0]
    shard.unlink()
    _one_line_error(lambda: convert_official("stage-a", d, base=base_preset()), shard.name, "missing")
    from prefrestore.convert import missing_files

    assert missing_files(d, "stage-a") == [shard.name]


def test_unknown_key_strict_and_non_strict(official, tmp_path):
    d = _copy(official.stage_a, tmp_path / "ck")

    def add(sd, f):
        if f.name.startswith("model-00001"):
            return sd | {"model.mm_projector.weight": torch.zeros(2, 2)}

    _rewrite(d, add)
    _one_line_error(
        lambda: convert_official("stage-a", d, base=base_preset()), "1 unknown keys: model.mm_projector.weight"
    )
    conv = convert_official("stage-a", d, base=base_preset(), strict=False)
    assert any("model.mm_projector.weight" in w for w in conv.report.warnings)
    assert not any("mm_projector" in k for k in conv.state)


def test_wrong_shape_and_missing_tensor(official, tmp_path):
    d = _copy(official.stage_a, tmp_path / "ck")
    key = "model.sana.transformer_blocks.1.attn2.to_k.weight"
    gone = "model.vision_tower.vision_tower.bottleneck.regularizer.embedding_proj.bias"

    def edit(sd, f):
        if key in sd or gone in sd:
            if key in sd:
                sd[key] = torch.zeros(3, 3, dtype=torch.bfloat16)
            sd.pop(gone, None)
            return sd

    _rewrite(d, edit)
    for strict in (True, False):  # never tolerated: the output must be complete and loadable
        _one_line_error(
            lambda: convert_official("stage-a", d, base=base_preset(), strict=strict),  # noqa: B023
            f"wrong shape: {key} (3, 3) != (128, 128)",
            f"1 missing: {gone} (-> tokenizer.bottleneck.regularizer.",
        )


def test_untied_duplicates_are_refused(official, tmp_path):
    d = _copy(official.stage_a, tmp_path / "ck")

    def edit(sd, f):
        if "lm_head.weight" in sd:
            sd["lm_head.weight"] = sd["lm_head.weight"] + 1
            return sd

    _rewrite(d, edit)
    _one_line_error(
        lambda: convert_official("stage-a", d, base=base_preset()),
        "lm_head.weight differs from model.embed_tokens.weight",
    )


def test_ta_tok_disagreeing_with_the_checkpoint_copy(official, tmp_path):
    sd = dict(official.tatok_sd)
    sd["bottleneck.in_linear.bias"] = sd["bottleneck.in_linear.bias"] + 1
    write_ta_tok(tmp_path / "ta_tok.pth", sd)
    _one_line_error(
        lambda: convert_official("stage-a", official.stage_a, ta_tok=tmp_path / "ta_tok.pth", base=base_preset()),
        "tokenizer.bottleneck.in_linear.bias",
        "--ta-tok",
    )
    conv = convert_official(
        "stage-a", official.stage_a, ta_tok=tmp_path / "ta_tok.pth", base=base_preset(), strict=False
    )
    assert conv.report.warnings and torch.equal(
        conv.state["tokenizer.bottleneck.in_linear.bias"],
        official.stage_a_sd["model.vision_tower.vision_tower.bottleneck.in_linear.bias"],
    )


def test_config_and_tokenizer_disagree(official, tmp_path):
    d = _copy(official.stage_a, tmp_path / "ck")
    cfg = json.loads((d / "config.json").read_text())
    cfg["image_start_token_id"] += 1
    (d / "config.json").write_text(json.dumps(cfg))
    _one_line_error(lambda: convert_official("stage-a", d, base=base_preset()), "config.json", "image_start_token_id")


def test_sana_folder_that_does_not_fit(official, tmp_path):
    s = _copy(official.sana, tmp_path / "sana")
    cfg = json.loads((s / "transformer" / "config.json").read_text())
    cfg["num_layers"] = 3
    (s / "transformer" / "config.json").write_text(json.dumps(cfg))
    _one_line_error(
        lambda: convert_official("stage-a", official.stage_a, sana=s, base=base_preset()),
        "unknown keys: model.sana.transformer_blocks.3.",
    )
    cfg["num_layers"], cfg["interpolation_scale"] = 4, 2
    (s / "transformer" / "config.json").write_text(json.dumps(cfg))
    _one_line_error(
        lambda: convert_official("stage-a", official.stage_a, sana=s, base=base_preset()), "interpolation_scale=2"
    )


def test_not_an_official_checkpoint(stage_a_model):
    _, _, out = stage_a_model
    _one_line_error(lambda: convert_official("stage-a", out, base=base_preset()), "tokenizer")


# ---------------------------------------------------------------------------------------------------------------
# CLI and LoRA on top of Stage A


def test_cli_stage_a_plus_merged_lora(official, tmp_path, capsys):
    from prefrestore.cli import main
    from prefrestore.lora import read_lora

    out = tmp_path / "rl"
    rc = main(
        [
            "convert",
            "--stage-a",
            str(official.stage_a),
            "--ta-tok",
            str(official.ta_tok),
            "--sana",
            str(official.sana),
            "--lora",
            str(official.lora),
            "--merge",
            "--preset",
            "tiny",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    model = from_pretrained(out)
    adapter = read_lora(official.lora)
    assert adapter.scale == 2.0 and len(adapter.weights) == 8 * 4
    for name, (A, B) in adapter.weights.items():
        W = official.transformer.get_submodule(name).weight
        assert torch.equal(model.transformer.get_submodule(name).weight, W + 2.0 * B @ A), name
    untouched = "transformer_blocks.0.ff.conv_point.weight"
    assert torch.equal(model.transformer.get_parameter(untouched), official.transformer.get_parameter(untouched))
    report = json.loads((out / "conversion.json").read_text())
    assert report["sources"]["lora"].endswith("(merged, scale 2)")
    # the licences of what was converted, in the report and the model card
    licences = " ".join(f"{k}: {v}" for k, v in report["licenses"].items())
    for part in ("SANA 1.5", "NVIDIA", "TA-Tok", "BLIP3o", "Apache-2.0", "DiffusionNFT LoRA"):
        assert part in licences, part
    assert "prefrestore rl configs/rl/paper.yaml" in report["training_stage"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "commercial" in card and str(official.lora) in card and "only the Stage-A checkpoint is public" in card


def test_cli_unmerged_lora_keeps_the_adapter(official, tmp_path):
    from prefrestore.cli import main
    from prefrestore.lora import load_lora

    out = tmp_path / "rl"
    assert (
        main(
            [
                "convert",
                "--stage-a",
                str(official.stage_a),
                "--sana",
                str(official.sana),
                "--lora",
                str(official.lora / "lora"),
                "--dtype",
                "bfloat16",
                "--preset",
                "tiny",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    model = from_pretrained(out)
    assert model.transformer.proj_out.weight.dtype == torch.float32  # built in fp32, loaded from bf16 files
    base = model.transformer.transformer_blocks[0].attn1.to_q.weight.clone()
    load_lora(model, out / "lora", merge=False)
    layer = model.transformer.transformer_blocks[0].attn1.to_q
    assert torch.equal(layer.base_layer.weight, base) and "default" in layer.lora_A


def test_cli_model_plus_lora(official, stage_a_model, tmp_path):
    from prefrestore.cli import main

    _, model, out = stage_a_model
    rc = main(["convert", "--model", str(out), "--lora", str(official.lora), "--merge", "-o", str(tmp_path / "m")])
    assert rc == 0
    merged = from_pretrained(tmp_path / "m")
    assert not torch.equal(
        merged.transformer.transformer_blocks[0].attn2.to_v.weight,
        model.transformer.transformer_blocks[0].attn2.to_v.weight,
    )
    assert torch.equal(merged.vae.encoder.conv_in.weight, model.vae.encoder.conv_in.weight)


def test_cli_errors_are_one_line(official, tmp_path, capsys):
    from prefrestore.cli import main

    rc = main(
        [
            "convert",
            "--blip3o",
            str(official.blip3o),
            "--ta-tok",
            str(official.ta_tok),
            "--preset",
            "tiny",
            "-o",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--sana" in err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    rc = main(
        [
            "convert",
            "--stage-a",
            str(official.stage_a),
            "--preset",
            "tiny",
            "--sana",
            str(official.sana),
            "-o",
            str(tmp_path / "busy"),
        ]
    )
    assert rc == 2 and "not an empty folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Hub ids, offline-first


def _fake_cache(cache: Path, repo: str, src: Path) -> Path:
    """A huggingface_hub cache entry for ``repo`` holding a copy of ``src`` at revision main."""
    entry = cache / ("models--" + repo.replace("/", "--"))
    sha = "0" * 40
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(sha)
    shutil.copytree(src, entry / "snapshots" / sha)
    return entry / "snapshots" / sha


def test_hub_ids_resolve_from_the_cache_and_name_missing_files(official, tmp_path):
    cache = tmp_path / "hub"
    snap = _fake_cache(cache, "zjyao-PKU/Pref-Restore-PhaseA-Fidelity", official.stage_a)
    d = resolve_official("zjyao-PKU/Pref-Restore-PhaseA-Fidelity", "stage-a", cache_dir=str(cache))
    assert d == snap
    shard = sorted(snap.glob("model-*.safetensors"))[-1]
    shard.unlink()
    (snap / "tokenizer.json").unlink()
    with pytest.raises(UserError) as e:
        resolve_official("zjyao-PKU/Pref-Restore-PhaseA-Fidelity", "stage-a", cache_dir=str(cache))
    msg = str(e.value)
    assert "\n" not in msg and shard.name in msg and "tokenizer.json" in msg and "hf download" in msg
    with pytest.raises(UserError, match="sana/NotCached") as e:
        resolve_official("sana/NotCached", "sana", cache_dir=str(cache))
    assert "transformer/config.json" in str(e.value) and "vae/diffusion_pytorch_model.safetensors" in str(e.value)
    with pytest.raises(UserError, match="ta_tok.pth"):
        resolve_official("csuhan/TA-Tok", "ta-tok", cache_dir=str(cache))


# ---------------------------------------------------------------------------------------------------------------
# Paper dimensions, on the meta device: the official layout of docs/layouts.md maps exactly onto our paper model


def test_paper_size_official_layout_maps_onto_the_paper_model():
    from diffusers import AutoencoderDC, SanaTransformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    from prefrestore.checkpoints import shared_aliases
    from prefrestore.convert import Report, map_keys
    from prefrestore.lora import LoraAdapter, check_lora
    from prefrestore.models.presets import paper
    from prefrestore.models.restorer import PrefRestoreModel

    with torch.device("meta"):
        lm = Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=217210,
                hidden_size=2048,
                intermediate_size=6144,
                num_hidden_layers=28,
                num_attention_heads=16,
                num_key_value_heads=8,
                head_dim=128,
                tie_word_embeddings=True,
            )
        )
        tower = SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=1152,
                intermediate_size=4304,
                num_hidden_layers=27,
                num_attention_heads=16,
                image_size=384,
                patch_size=14,
            )
        )
        sana = SanaTransformer2DModel(
            in_channels=32,
            out_channels=32,
            num_attention_heads=70,
            attention_head_dim=32,
            num_layers=20,
            num_cross_attention_heads=20,
            cross_attention_head_dim=112,
            cross_attention_dim=2240,
            caption_channels=2304,
            mlp_ratio=2.5,
            attention_bias=False,
            sample_size=32,
            patch_size=1,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            interpolation_scale=None,
            qk_norm="rms_norm_across_heads",
        )
        blocks = ["ResBlock"] * 3 + ["EfficientViTBlock"] * 3
        chans, qkv = [128, 256, 512, 512, 1024, 1024], [[], [], [], [5], [5], [5]]
        dcae = AutoencoderDC(
            in_channels=3,
            latent_channels=32,
            attention_head_dim=32,
            encoder_block_types=blocks,
            decoder_block_types=blocks,
            encoder_block_out_channels=chans,
            decoder_block_out_channels=chans,
            encoder_layers_per_block=[2, 2, 2, 3, 3, 3],
            decoder_layers_per_block=[3, 3, 3, 3, 3, 3],
            encoder_qkv_multiscales=qkv,
            decoder_qkv_multiscales=qkv,
            upsample_block_type="interpolate",
            downsample_block_type="Conv",
            decoder_norm_types="rms_norm",
            decoder_act_fns="silu",
            scaling_factor=0.41407,
        )
        ours = PrefRestoreModel(paper())
    # the numbers docs/layouts.md verified with the official versions
    assert sum(p.numel() for p in sana.parameters()) == 1_604_641_952
    assert sum(p.numel() for p in dcae.parameters()) == 312_250_275 and len(dcae.state_dict()) == 375
    meta = torch.empty(0, device="meta")
    shapes = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    shapes |= {f"model.vision_tower.vision_tower.encoder.{k}": tuple(v.shape) for k, v in tower.state_dict().items()}
    vt = "model.vision_tower.vision_tower."
    shapes |= {
        vt + "encode_task_layer.0.weight": (1152, 1152),
        vt + "encode_task_layer.0.bias": (1152,),
        vt + "bottleneck.in_linear.weight": (1536, 1152),
        vt + "bottleneck.in_linear.bias": (1536,),
        vt + "bottleneck.out_linear.weight": (1536, 1536),
        vt + "bottleneck.out_linear.bias": (1536,),
        vt + "bottleneck.regularizer.embedding.weight": (65536, 1536),
        vt + "bottleneck.regularizer.embedding_proj.weight": (1536, 1536),
        vt + "bottleneck.regularizer.embedding_proj.bias": (1536,),
        vt + "scale_layer.shift": (1, 3, 1, 1),
        vt + "decoder.vision_model.post_layernorm.weight": (1152,),
    }
    shapes |= {f"model.sana.{k}": tuple(v.shape) for k, v in sana.state_dict().items()}
    shapes |= {f"model.sana_vae.{k}": tuple(v.shape) for k, v in dcae.state_dict().items()}
    for name, i in (("diffusion_connector", 2048), ("vae_connector", 2240)):
        shapes |= {
            f"model.{name}.0.weight": (2304, i),
            f"model.{name}.0.bias": (2304,),
            f"model.{name}.2.weight": (2304, 2304),
            f"model.{name}.2.bias": (2304,),
            f"model.{name}.3.weight": (2304,),
        }
    report = Report("stage-a")
    mapped = map_keys({k: meta.new_empty(s) for k, s in shapes.items()}, BLIP3O_RULES, report)
    expected = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert not mapped.unknown
    assert {k: tuple(v.shape) for k, v in mapped.state.items()} == expected  # duplicates included, as in the files
    assert set(shared_aliases(ours)) == {
        "integrator.lm.lm_head.weight",
        "integrator.lm.model.embed_tokens.weight",
        "diffusion_connector.3.weight",
        "vae_connector.3.weight",
    }
    assert {k for ks in report.dropped.values() for k in ks} == {
        vt + "scale_layer.shift",
        vt + "decoder.vision_model.post_layernorm.weight",
    }
    # the RL LoRA (r 32 on attn1/attn2 q/k/v/out of the 20 blocks): 160 Linears, 22,937,600 parameters
    sana_sd = {k[len("transformer.") :]: v for k, v in ours.state_dict().items() if k.startswith("transformer.")}
    names = [f"transformer_blocks.{b}.{t}" for b in range(20) for t in LORA_TARGETS]
    weights = {n: (meta.new_empty(32, 2240), meta.new_empty(2240, 32)) for n in names}
    check_lora(
        LoraAdapter(Path("lora"), {"r": 32, "lora_alpha": 64, "target_modules": LORA_TARGETS}, weights),
        sana_sd,
        where="paper SANA",
    )
    assert sum(a.numel() + b.numel() for a, b in weights.values()) == 22_937_600
