"""Golden numbers of the one sampling path (PrefRestoreModel.sample) on the tiny preset at fixed seeds.

The numbers were recorded with the sampler before it moved to flow/ (model.sample_latent + model.start_latent at
commit dc42f91) and again after (model.sample): equal to the last printed digit. A change to the sigma grid, the start latent, a
solver step, CFG or the velocity's dtype handling moves them far beyond the tolerance (float32 CPU round-off
between machines is ~1e-6 here).
"""

import pytest
import torch

from prefrestore.checkpoints import random_model

# (solver, guidance_scale, start_sigma) -> (mean, std, first four values, sum of |x|) of the (2, 16, 16, 16) latent
GOLDEN = {
    ("euler", 1.0, 1.0): (0.03530476, 1.14923346, [-1.422274, -1.171867, -0.049354, -0.149051], 7466.0117),
    ("dpm++2m", 2.0, 0.5): (0.07454345, 0.81642538, [-1.388993, -1.687355, -0.080589, 0.470028], 5368.3867),
}


@pytest.fixture(scope="module")
def inputs():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    m = random_model("tiny", seed=0)
    g = torch.Generator().manual_seed(3)
    a = m.config
    cond = torch.randn(2, 321, a.transformer.caption_channels, generator=g)  # (B, Q + N, C)
    lq_latent = torch.randn(2, a.autoencoder.latent_channels, a.latent_size, a.latent_size, generator=g)
    noise = m.initial_noise(2, [torch.Generator().manual_seed(i) for i in range(2)])
    yield m, cond, lq_latent, noise
    torch.set_num_threads(before)


@pytest.mark.parametrize("key", list(GOLDEN))
def test_sampler_golden_numbers(inputs, key):
    m, cond, lq_latent, noise = inputs
    solver, gs, s = key
    x = m.sample(cond, noise, lq_latent, steps=3, guidance_scale=gs, solver=solver, start_sigma=s)
    mean, std, first, abs_sum = GOLDEN[key]
    assert x.shape == (2, 16, 16, 16) and x.dtype == torch.float32
    assert x.mean().item() == pytest.approx(mean, abs=1e-5)
    assert x.std().item() == pytest.approx(std, rel=1e-5)
    assert x.flatten()[:4].tolist() == pytest.approx(first, abs=1e-5)
    assert x.abs().sum().item() == pytest.approx(abs_sum, rel=1e-5)


def test_sample_starts_from_the_start_latent(inputs):
    """At start_sigma 1 the sampler starts from the noise (the LQ latent is not used); below 1 it needs it."""
    m, cond, lq_latent, noise = inputs
    a = m.sample(cond, noise, None, steps=2, guidance_scale=1.0)
    b = m.sample(cond, noise, lq_latent, steps=2, guidance_scale=1.0)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="LQ latent"):
        m.sample(cond, noise, None, steps=2, guidance_scale=1.0, start_sigma=0.5)
