"""Building and casting models for inference runs: a fast random-weight build at any size, and the precision rule.

``build_random_fast`` makes a model of a preset on the meta device, materialises it uninitialised on ``device`` and
fills it with small seeded random values (normal(0, 0.02) weights, unit norms, zero biases, the official connector
norm): seconds for the 4.3 B-parameter paper preset, where a normal ``__init__`` on the CPU takes minutes. It
restores nothing; it exercises the full-size code path (``tests/test_paper_slow.py``, ``benchmarks/gpu_check.py``).

``cast_for_inference`` puts a model in a half-precision dtype except its DC-AE, which stays float32: SANA's VAE
overflows in fp16 and loses visible detail in bf16 (diffusers PR #10234 keeps it in fp32); the model's code casts
the latent to the VAE's own dtype at the boundary (``encode_latent`` / ``decode_latent``).
"""

from __future__ import annotations

import torch

from .connectors import NORM_INIT
from .presets import get_preset
from .restorer import PrefRestoreModel
from .text_tokenizer import build_char_tokenizer

_UNIT = ("norm.weight", "norm1.weight", "norm2.weight", "layernorm.weight", "norm_q.weight", "norm_k.weight")


def build_random_fast(
    preset: str, device: str | torch.device, dtype: torch.dtype, *, seed: int = 0
) -> PrefRestoreModel:
    """A ``preset`` model with seeded random weights in ``dtype`` on ``device`` (eval mode)."""
    with torch.device("meta"):
        model = PrefRestoreModel(get_preset(preset), build_char_tokenizer())
    model = model.to_empty(device=device).to(dtype)
    model.integrator.lm.tie_weights()
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale_shift_table"):
                p.zero_()
            elif name.endswith(_UNIT) or p.ndim == 1 and "bias" not in name:
                p.fill_(1.0)
            elif "bias" in name:
                p.zero_()
            else:
                p.normal_(0, 0.02, generator=g)
        for b in model.buffers():
            if b.is_floating_point():
                b.zero_()
        emb = model.tokenizer.encoder.embeddings  # SigLIP's position_ids buffer must hold 0..N-1
        if hasattr(emb, "position_ids"):
            emb.position_ids.copy_(torch.arange(emb.position_ids.shape[-1], device=device).expand_as(emb.position_ids))
        model.diffusion_connector[3].weight.fill_(NORM_INIT)  # the shared connector norm's official init
    return model.eval()


def cast_for_inference(model: PrefRestoreModel, dtype: torch.dtype) -> PrefRestoreModel:
    """``model`` in ``dtype`` with its autoencoder kept in float32 (in place; returns the model)."""
    model.to(dtype)
    model.vae.float()
    return model
