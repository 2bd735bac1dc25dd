"""CLIP-family text-image scoring shared by the PickScore, CLIPScore and HPSv2.1 rewards (docs/method.md §3.4).

Weights are read from disk only: a local folder, or a Hugging Face repo id already in the local HF cache
(``local_files_only``). A missing model raises ``MetricUnavailable`` saying what to download where.

* :func:`load_hf_clip`: a transformers ``CLIPModel`` folder (PickScore_v1, openai/clip-vit-large-patch14), its
  tokenizer and image-processor settings (possibly from another folder, as PickScore uses the LAION ViT-H-14
  processor);
* :func:`openclip_to_hf`: an OpenCLIP state dict (``visual.*``, ``transformer.resblocks.*``; e.g. the HPS v2.1
  checkpoint) renamed into a transformers ``CLIPModel`` state dict. OpenCLIP packs q, k, v in ``in_proj_weight``
  (rows q | k | v, as ``torch.nn.MultiheadAttention``) and applies ``x @ proj``; transformers uses three Linears
  and ``Linear(proj.T)``;
* :func:`image_features` / :func:`text_features`: L2-normalised embeddings (B, D).

Legend: B batch, D embedding width, L = 77 text tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipBundle:
    model: Any  # transformers.CLIPModel, eval, requires_grad False
    tokenizer: Any  # transformers CLIP tokenizer
    image_size: int  # crop side
    resize: int  # shortest side before the crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _resolve(ref: str | os.PathLike, metric: str) -> Path:
    """A local folder, or a repo id in the local HF cache (no network), else MetricUnavailable."""
    from ..metrics.weights import MetricUnavailable

    p = Path(ref).expanduser()
    if p.is_dir():
        return p
    from ..hub import cached_snapshot

    d = cached_snapshot(str(ref))
    if d is None:
        raise MetricUnavailable(
            metric,
            f"{ref} is neither a folder nor in the local Hugging Face cache; on a "
            f"networked machine run `huggingface-cli download {ref} --local-dir DIR` and pass "
            "DIR (rewards.options)",
        )
    return d


def load_tokenizer(ref: str | os.PathLike, metric: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(_resolve(ref, metric)), local_files_only=True)


def load_hf_clip(
    model_ref: str | os.PathLike,
    *,
    processor_ref: str | os.PathLike | None = None,
    metric: str,
    device: str | torch.device = "cpu",
) -> ClipBundle:
    """transformers CLIPModel + tokenizer + preprocessing settings from folders / the local HF cache."""
    import json

    from transformers import CLIPModel

    model_dir = _resolve(model_ref, metric)
    proc_dir = _resolve(processor_ref, metric) if processor_ref else model_dir
    model = CLIPModel.from_pretrained(str(model_dir), local_files_only=True).eval().requires_grad_(False).to(device)
    pp = json.loads((proc_dir / "preprocessor_config.json").read_text())
    size = pp.get("size", 224)
    resize = size.get("shortest_edge", size.get("height", 224)) if isinstance(size, dict) else int(size)
    crop = pp.get("crop_size", resize)
    crop = crop.get("height", resize) if isinstance(crop, dict) else int(crop)
    return ClipBundle(
        model,
        load_tokenizer(proc_dir, metric),
        crop,
        resize,
        tuple(pp.get("image_mean", OPENAI_MEAN)),
        tuple(pp.get("image_std", OPENAI_STD)),
    )


def preprocess(images: torch.Tensor, clip: ClipBundle, *, mode: str = "bicubic") -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, crop, crop) normalised: shortest side to ``resize`` (antialiased),
    centre crop, (x - mean) / std. The same as CLIPImageProcessor / torchvision Resize + CenterCrop on tensors."""
    B, _, H, W = images.shape
    s = clip.resize / min(H, W)
    size = (max(clip.image_size, round(H * s)), max(clip.image_size, round(W * s)))
    x = F.interpolate(images.float(), size=size, mode=mode, antialias=True, align_corners=False)
    top, left = (size[0] - clip.image_size) // 2, (size[1] - clip.image_size) // 2
    x = x[:, :, top : top + clip.image_size, left : left + clip.image_size]
    mean = torch.tensor(clip.mean, device=x.device)[None, :, None, None]
    std = torch.tensor(clip.std, device=x.device)[None, :, None, None]
    return (x - mean) / std


def _features(out: Any) -> torch.Tensor:
    """transformers >= 5 returns an output object with the projected features in ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def image_features(clip: ClipBundle, pixels: torch.Tensor) -> torch.Tensor:
    """Normalised pixels (B, 3, crop, crop) -> (B, D) unit image embeddings."""
    device = next(clip.model.parameters()).device
    return F.normalize(_features(clip.model.get_image_features(pixel_values=pixels.to(device))).float(), dim=-1)


@torch.no_grad()
def text_features(clip: ClipBundle, prompts: list[str], *, padding: str | bool = "max_length") -> torch.Tensor:
    """B captions -> (B, D) unit text embeddings (77 tokens, truncated)."""
    device = next(clip.model.parameters()).device
    tok = clip.tokenizer(list(prompts), padding=padding, truncation=True, max_length=77, return_tensors="pt")
    tok = {k: v.to(device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
    return F.normalize(_features(clip.model.get_text_features(**tok)).float(), dim=-1)


# ----------------------------------------------------------------------------------------------------------------
# OpenCLIP checkpoints (HPS v2.1) -> transformers CLIPModel


def _block(sd: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    q, k, v = sd[f"{src}.attn.in_proj_weight"].chunk(3, dim=0)
    qb, kb, vb = sd[f"{src}.attn.in_proj_bias"].chunk(3, dim=0)
    for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
        out[f"{dst}.self_attn.{name}.weight"], out[f"{dst}.self_attn.{name}.bias"] = w, b
    pairs = {
        "attn.out_proj": "self_attn.out_proj",
        "ln_1": "layer_norm1",
        "ln_2": "layer_norm2",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
    }
    for a, b in pairs.items():
        for p in ("weight", "bias"):
            out[f"{dst}.{b}.{p}"] = sd[f"{src}.{a}.{p}"]


def openclip_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP ViT state dict (``module.`` prefixes allowed) -> transformers CLIPModel state dict."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {
        "logit_scale": sd["logit_scale"],
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "text_projection.weight": sd["text_projection"].t().contiguous(),
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
        "visual_projection.weight": sd["visual.proj"].t().contiguous(),
    }
    n_text = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks."))
    n_vis = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("visual.transformer.resblocks."))
    for i in range(n_text):
        _block(sd, f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}", out)
    for i in range(n_vis):
        _block(sd, f"visual.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}", out)
    return out


def vit_h_14_config() -> Any:
    """OpenCLIP ViT-H-14 (the HPS v2 / v2.1 backbone) as a transformers CLIPConfig: vision 1280 x 32 layers,
    patch 14 at 224, text 1024 x 24 layers, 16 heads each, embeddings 1024, GELU, LayerNorm eps 1e-5."""
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={
            "vocab_size": 49408,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
            "eos_token_id": 49407,
            "bos_token_id": 49406,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_hidden_layers": 32,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
        },
        projection_dim=1024,
    )
