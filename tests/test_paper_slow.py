"""The full-size paper preset end to end with random weights (slow: ~4.3 B parameters).

Runs on CPU in bf16 (about 9 GB of RAM) with the AR decode cut to a few tokens and two ODE steps, to prove the
full-size path (TA-Tok 384 px -> Qwen3 2048 -> connectors 2304 -> SANA 1.6B -> DC-AE 512 px) works. On a GPU it
runs the same code in bf16.
"""

import pytest
import torch

from prefrestore.models.integrator import DecodeOptions
from prefrestore.models.presets import paper
from prefrestore.models.restorer import PrefRestoreModel
from prefrestore.models.text_tokenizer import build_char_tokenizer

pytestmark = pytest.mark.slow


def _available_gb() -> float:
    """MemAvailable (free + reclaimable cache) in GiB; 0 where /proc/meminfo is missing."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def build_random_paper(device: str, dtype: torch.dtype) -> PrefRestoreModel:
    """Build on meta, materialise uninitialised on ``device``, then fill with small random values (fast)."""
    with torch.device("meta"):
        model = PrefRestoreModel(paper(), build_char_tokenizer())
    model = model.to_empty(device=device).to(dtype)
    model.integrator.lm.tie_weights()
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "layernorm.weight", "norm_q.weight",
                              "norm_k.weight", "scale_shift_table")) or p.ndim == 1 and "bias" not in name:
                p.fill_(1.0 if "scale_shift" not in name else 0.0)
            elif "bias" in name:
                p.zero_()
            else:
                p.normal_(0, 0.02, generator=g)
        for b in model.buffers():
            if b.is_floating_point():
                b.zero_()
        # SigLIP position_ids buffer must hold 0..N-1
        emb = model.tokenizer.encoder.embeddings
        if hasattr(emb, "position_ids"):
            emb.position_ids.copy_(torch.arange(emb.position_ids.shape[-1], device=device).expand_as(emb.position_ids))
        # DC-AE RMSNorm/scale buffers and the connector norm keep their official init
        model.diffusion_connector[3].weight.fill_(5.5**0.5)
    return model.eval()


@pytest.mark.skipif(_available_gb() < 14 and not torch.cuda.is_available(), reason="needs ~14 GB free RAM")
def test_paper_preset_end_to_end_random_weights():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_random_paper(device, torch.bfloat16)
    lq = torch.rand(1, 3, 512, 512, device=device) * 2 - 1
    with torch.no_grad():
        ids = model.tokenizer(lq.to(torch.bfloat16))
        assert ids.shape == (1, 729) and ids.max() < 65536
        cond = model.prepare(lq, decode=DecodeOptions(), num_tokens=4)
        assert cond.cond.shape == (1, 5 + 256, 2304) and cond.codes.shape == (1, 4)
        noise = torch.randn(1, 32, 16, 16, device=device)
        latent = model.sample(cond.cond, noise, None, steps=2, guidance_scale=2.0)
        out = model.decode_latent(latent)
    assert out.shape == (1, 3, 512, 512) and torch.isfinite(out.float()).all()
