"""The full-size paper preset end to end with random weights (slow: ~4.3 B parameters).

Runs on CPU in bf16 (about 9 GB of RAM) with the AR decode cut to a few tokens and two ODE steps, to prove the
full-size path (TA-Tok 384 px -> Qwen3 2048 -> connectors 2304 -> SANA 1.6B -> DC-AE 512 px) works. On a GPU it
runs the same code in bf16.
"""

import pytest
import torch

from prefrestore.models.integrator import DecodeOptions
from prefrestore.models.restorer import PrefRestoreModel
from prefrestore.models.runtime import build_random_fast

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
    return build_random_fast("paper", device, dtype)


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
