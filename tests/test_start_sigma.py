"""Sampling from the noised LQ latent (SamplingDefaults.start_sigma < 1, SDEdit) and SFT's sigma_max."""

import dataclasses

import numpy as np
import pytest
import torch

from prefrestore.flow.paths import start_latent
from prefrestore.flow.schedules import flow_sigmas, sampling_sigmas
from prefrestore.models.restorer import SamplingDefaults
from prefrestore.restore.api import FaceRestorer


def _faces(n, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)).permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1


def test_grid_and_start_point():
    s = sampling_sigmas(4, 0.5)
    assert torch.allclose(s, flow_sigmas(4) * 0.5) and s[0] == 0.5 and s[-1] == 0
    noise, lq = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    assert start_latent(noise, lq, 1.0) is noise
    assert torch.allclose(start_latent(noise, lq, 0.25), 0.75 * lq + 0.25 * noise)
    with pytest.raises(ValueError, match="start_sigma"):
        SamplingDefaults(start_sigma=0.0)
    with pytest.raises(ValueError, match="start_sigma"):
        SamplingDefaults(start_sigma=1.5)


def test_tiny_start_sigma_returns_the_autoencoder_reconstruction(tiny_model):
    """From sigma 1e-4 the ODE barely moves: the output is decode(encode(LQ)), not a decode of noise."""
    lq = _faces(2)
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    out = tiny_model.restore(lq, generators=g, steps=2, start_sigma=1e-4)
    rec = tiny_model.decode_latent(tiny_model.encode_latent(lq)).float().clamp(-1, 1)
    assert (out - rec).abs().max() < 1e-2
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    from_noise = tiny_model.restore(lq, generators=g, steps=2)  # start_sigma 1.0: the LQ latent is not the start
    assert (from_noise - rec).abs().max() > 0.1


def test_start_sigma_batch_equals_one_by_one_and_depends_on_lq(tiny_model):
    r = FaceRestorer(tiny_model, steps=3, batch_size=3, start_sigma=0.5)
    lq = _faces(3, seed=1)
    batched = r.restore_tensor(lq)
    single = torch.cat([r.restore_tensor(lq[i : i + 1]) for i in range(3)])
    assert (batched - single).abs().max() < 1e-4
    other = r.restore_tensor(_faces(3, seed=2))
    assert (batched - other).abs().mean() > 1e-3


def test_rollout_uses_the_start_sigma(tiny_model):
    from prefrestore.training.rollout import RolloutConfig, rollout

    cfg = RolloutConfig(group_size=2, steps=2, batch_size=4, start_sigma=0.4)
    r = rollout(tiny_model, _faces(1), [0, 1], cfg)
    # the official sampler's grid stops at start_sigma / steps; ours goes on to 0
    assert r.sigmas[0] == pytest.approx(0.4) and r.sigmas[-1] == pytest.approx(0.2)
    r = rollout(tiny_model, _faces(1), [0, 1], dataclasses.replace(cfg, sampler="ours"))
    assert r.sigmas[0] == pytest.approx(0.4) and r.sigmas[-1] == 0
    with pytest.raises(ValueError, match="start_sigma"):
        RolloutConfig(start_sigma=0.0)


def test_sft_sigma_max_bounds_training_sigmas(tiny_model, monkeypatch):
    from prefrestore.training.sft import SFTConfig, SFTObjective

    with pytest.raises(ValueError, match="sigma_max"):
        SFTConfig(sigma_max=0.0)
    seen = []
    velocity = tiny_model.velocity
    monkeypatch.setattr(tiny_model, "velocity", lambda x, sig, c: seen.append(sig.clone()) or velocity(x, sig, c))
    hq = _faces(8, seed=3)
    for sigma_max in (1.0, 0.3):
        seen.clear()
        obj = SFTObjective(tiny_model, 2, SFTConfig(stage=2, sigma_max=sigma_max))
        with torch.no_grad():
            obj(hq, hq, ["restore"] * 8, list(range(8)))
        sig = torch.cat(seen)
        assert sig.max() <= sigma_max + 1e-6
        assert sig.max() > 0.6 * sigma_max  # 8 uniform draws reach the top of the range
