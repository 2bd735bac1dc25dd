"""The official Pref-Restore / DiffusionNFT computation, encoded as facts (docs/official-parity.md).

What the official code does where users run it (bf16 on a GPU, and the RL stage), and that we compute the same:

* SANA gets the inference scheduler's float32 timesteps (1000, 966.666..., 933.333...) whatever the model dtype;
* TA-Tok's input is SiglipImageProcessor's: the uint8 image, PIL bicubic straight to the tower's size, x 1/255,
  normalised with mean 0.5 and std 0.5;
* the official inference loop (``numerics="official"``) is diffusers' FlowMatchEulerDiscreteScheduler driven as the
  official restorer drives it: bf16 noise, the [null, cond] batch, the state re-rounded to the model dtype each step;
* the official RL rollout (``RolloutConfig(sampler="official")``) takes 29 SANA calls on linspace(1, 1/30, 30),
  with integer timesteps, and ends at sigma = 1/30, whose latent is decoded and is NFT's clean latent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prefrestore.checkpoints import random_model
from prefrestore.flow.schedules import flow_sigmas, sampling_sigmas
from prefrestore.flow.solvers import guided, sample
from prefrestore.io.image import to_model
from prefrestore.models.tatok import TATokTokenizer, TokenizerConfig
from prefrestore.training.rollout import RolloutConfig, rollout

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "prefrestore" / "assets" / "examples"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Spy:
    """Records what SANA's forward receives (a forward pre-hook: the real forward still runs). ``stop_after``:
    raise :class:`Stop` once that many calls are recorded (the rest of the loop does not matter to the test)."""

    class Stop(Exception):
        pass

    def __init__(self, module: torch.nn.Module, stop_after: int | None = None):
        self.calls: list[dict] = []
        self.stop_after = stop_after
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        x = kwargs.get("hidden_states", args[0] if args else None)
        self.calls.append(
            {
                "x": x.detach().clone(),
                "timestep": kwargs["timestep"].detach().clone(),
                "cond": kwargs["encoder_hidden_states"].detach().clone(),
            }
        )
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise Spy.Stop

    def close(self):
        self.handle.remove()


@pytest.fixture(scope="module")
def bf16_model():
    return random_model("tiny", seed=0).to(torch.bfloat16)


def _cond_noise(model, batch=1, seed=3):
    g = torch.Generator().manual_seed(seed)
    a = model.config
    cond = torch.randn(batch, 321, a.transformer.caption_channels, generator=g)  # (B, Q + N, C)
    noise = model.initial_noise(batch, [torch.Generator().manual_seed(seed + i) for i in range(batch)])
    return cond, noise


# ---------------------------------------------------------------------------------------------------------------
# Grids and timesteps


def test_inference_grid_and_float32_timesteps_are_the_official_schedulers():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler()  # what the official code loads: shift 1, 1000 train timesteps
    sched.set_timesteps(30, sigmas=np.linspace(1.0, 1 / 30, 30))
    ours = flow_sigmas(30)
    assert ours.shape == (31,) and ours[-1] == 0
    assert torch.equal(ours.float(), sched.sigmas)  # 1, 29/30, ..., 1/30, 0 (float32)
    assert torch.equal(ours[:-1].float() * 1000, sched.timesteps)  # 1000, 966.666..., 933.333..., 33.333...
    assert sched.timesteps[1].item() == pytest.approx(966.6667, abs=1e-4)


def test_rollout_grid_has_no_final_zero_and_integer_timesteps():
    g = sampling_sigmas(30, final_zero=False)
    assert g.shape == (30,) and g[0] == 1.0 and g[-1].item() == pytest.approx(1 / 30, abs=1e-15)
    assert torch.equal(g, flow_sigmas(30)[:-1])
    ts = (g.float() * 1000).long()  # DiffusionNFT: torch.full(..., sigma * 1000, dtype=torch.long), truncated
    assert ts[:4].tolist() == [1000, 966, 933, 900] and ts[-2:].tolist() == [66, 33]
    # the start_sigma-scaled version (our SDEdit start) keeps the shape: (K,) from s to s/K
    assert sampling_sigmas(4, 0.02, final_zero=False).tolist() == pytest.approx([0.02, 0.015, 0.01, 0.005])


# ---------------------------------------------------------------------------------------------------------------
# bf16 models: float32 timesteps


def test_bf16_model_gets_float32_timesteps(bf16_model):
    """The bug this fixes: (sigma * 1000).to(bf16) turned 966.67 into 968 and 933.33 into 932."""
    cond, noise = _cond_noise(bf16_model)
    spy = Spy(bf16_model.transformer, stop_after=3)
    try:
        with pytest.raises(Spy.Stop):
            bf16_model.sample(cond, noise, None, steps=30, guidance_scale=1.0)
    finally:
        spy.close()
    got = torch.cat([c["timestep"] for c in spy.calls])
    assert got.dtype == torch.float32
    expected = torch.tensor(np.linspace(1.0, 1 / 30, 30)[:3], dtype=torch.float32) * 1000
    assert torch.equal(got, expected)
    assert got[1].item() == pytest.approx(966.6667, abs=1e-4) and got[2].item() == pytest.approx(933.3333, abs=1e-4)
    assert got.bfloat16().float().tolist() == [1000.0, 968.0, 932.0]  # what a bf16 cast would have given


def test_training_velocity_gets_float32_timesteps_too(bf16_model):
    cond, noise = _cond_noise(bf16_model)
    spy = Spy(bf16_model.transformer)
    try:
        bf16_model.velocity(noise, torch.tensor([0.9666667]), cond)
    finally:
        spy.close()
    t = spy.calls[0]["timestep"]
    assert t.dtype == torch.float32 and t.item() == pytest.approx(966.6667, abs=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# TA-Tok preprocessing


def _face_uint8(size: int = 128) -> np.ndarray:
    """A fixed uint8 face crop: the centre of grace_hopper.jpg, PIL-resized to ``size`` (an aligned-face stand-in)."""
    img = Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB")
    w, h = img.size
    s = min(w, h) // 2
    box = (w // 2 - s // 2, h // 4, w // 2 + s // 2, h // 4 + s)
    return np.asarray(img.crop(box).resize((size, size), Image.BICUBIC))


def _pil_reference(u8: np.ndarray, size: int) -> torch.Tensor:
    """SiglipImageProcessor's steps by hand: PIL bicubic to size x size, x 1/255 (float64 -> float32), (x - .5)/.5."""
    r = np.asarray(Image.fromarray(u8).resize((size, size), Image.BICUBIC))
    x = (r.astype(np.float64) * (1 / 255)).astype(np.float32)
    return torch.from_numpy((x - np.float32(0.5)) / np.float32(0.5)).permute(2, 0, 1)


def _siglip_processor(size: int):
    """transformers' PIL SiglipImageProcessor (the official code's; in transformers >= 5 it is SiglipImageProcessorPil,
    the plain name being the torchvision one), or None when not installed."""
    import transformers

    cls = getattr(transformers, "SiglipImageProcessorPil", None)
    if cls is None and int(transformers.__version__.split(".")[0]) < 5:
        cls = getattr(transformers, "SiglipImageProcessor", None)
    if cls is None:
        return None
    return cls(size={"height": size, "width": size}, crop_size={"height": size, "width": size})


@pytest.mark.parametrize("face_size", [128, 512])
def test_tatok_input_is_siglip_processor_output(face_size):
    size = 384
    tok = TATokTokenizer(
        TokenizerConfig(
            image_size=size,
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            num_heads=2,
            codebook_size=16,
            codebook_dim=8,
        )
    )
    u8 = _face_uint8(face_size)
    ours = tok.preprocess(to_model(u8))[0]  # the pipeline holds [-1, 1] floats made from the uint8 image
    assert ours.shape == (3, size, size) and ours.dtype == torch.float32
    ref = _pil_reference(u8, size)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    proc = _siglip_processor(size)
    if proc is not None:
        hf = torch.as_tensor(np.asarray(proc(images=Image.fromarray(u8), return_tensors="np")["pixel_values"][0]))
        torch.testing.assert_close(ours, hf.float(), rtol=0, atol=1e-6)
    # a float-tensor resize (what we did before) is measurably not this
    old = torch.nn.functional.interpolate(to_model(u8), size=(size, size), mode="bicubic", antialias=True)[0]
    assert (old.clamp(-1, 1) - ref).abs().max() > 1e-3


def test_tatok_rounds_float_input_to_uint8():
    tok = TATokTokenizer(
        TokenizerConfig(
            image_size=112,
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            num_heads=2,
            codebook_size=16,
            codebook_dim=8,
        )
    )
    u8 = _face_uint8(128)
    x = to_model(u8)
    assert torch.equal(tok.preprocess(x), tok.preprocess(x + 1e-3))  # both round to the same uint8 image
    assert not torch.equal(tok.preprocess(x), tok.preprocess(x + 1e-2))  # 1.3 grey levels: another image


# ---------------------------------------------------------------------------------------------------------------
# The official inference loop


def test_official_numerics_is_the_official_euler_loop_bit_for_bit(bf16_model):
    """numerics="official" against the official loop written around diffusers' scheduler: identical bits."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    m = bf16_model
    cond, noise = _cond_noise(m, batch=2)
    steps, scale = 4, 2.0
    ours = m.sample(cond, noise, None, steps=steps, guidance_scale=scale, solver="euler", numerics="official")

    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(steps, sigmas=np.linspace(1.0, 1 / steps, steps))
    latents = noise.to(torch.bfloat16)  # the official noise is drawn in bf16
    pred = torch.cat([torch.zeros_like(cond), cond]).to(torch.bfloat16)  # [null, cond]
    with torch.no_grad():
        for t in sched.timesteps:
            inp = torch.cat([latents] * 2).to(torch.bfloat16)
            out = m.transformer(
                inp, encoder_hidden_states=pred, timestep=t.unsqueeze(0).expand(inp.shape[0]), return_dict=False
            )[0]
            v_null, v_cond = out.chunk(2)
            latents = sched.step(v_null + scale * (v_cond - v_null), t, latents).prev_sample
    assert latents.dtype == torch.bfloat16
    assert torch.equal(ours, latents.float())
    # and it is not the default loop (float32 state, [cond, null] batch)
    default = m.sample(cond, noise, None, steps=steps, guidance_scale=scale, solver="euler")
    assert not torch.equal(default, ours)


def test_official_loop_rerounds_the_state_each_step(bf16_model):
    """Every state SANA sees in the official loop is the bf16 state; the [null, cond] batch runs at guidance 1."""
    m = bf16_model
    cond, noise = _cond_noise(m, batch=1)
    spy = Spy(m.transformer)
    try:
        m.sample(cond, noise, None, steps=3, guidance_scale=1.0, numerics="official")
    finally:
        spy.close()
    assert len(spy.calls) == 3
    for c in spy.calls:
        assert c["x"].shape[0] == 2 and torch.equal(c["x"][0], c["x"][1])  # [null, cond] at guidance 1
        assert torch.all(c["cond"][0] == 0) and not torch.all(c["cond"][1] == 0)
        assert c["timestep"].dtype == torch.float32

    # analytic: with a velocity that is not bf16-representable, each step's state is the bf16 rounding of the
    # float32 Euler update of the previous bf16 state (scheduler.step's cast back to the model dtype)
    def v(x, s):
        return (x.float() * 0.3 + 0.01 * s[:, None]).to(torch.bfloat16)

    seen = []
    x0 = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    out = sample(
        lambda x, s: seen.append(x) or v(x, s), x0, flow_sigmas(5), solver="euler", state_dtype=torch.bfloat16
    )
    sig = flow_sigmas(5).float()
    x = x0.to(torch.bfloat16)
    for i in range(5):
        assert seen[i].dtype == torch.bfloat16 and torch.equal(seen[i], x)
        x = (x.float() + (sig[i + 1] - sig[i]) * v(x, sig[i].expand(2))).to(torch.bfloat16)
    assert torch.equal(out, x.float())
    # without re-rounding (our loop) the state drifts off the bf16 grid
    ours = sample(lambda x, s: x * 0.3 + 0.01 * s[:, None], x0, flow_sigmas(5), solver="euler")
    assert not torch.equal(ours, ours.bfloat16().float())


def test_guided_uncond_first_runs_the_batch_at_scale_one():
    seen = []

    def vel(x, s, c):
        seen.append(c.clone())
        return x * c.mean(dim=1, keepdim=True)

    cond, null = torch.ones(1, 4), torch.zeros(1, 4)
    x = torch.randn(1, 4)
    assert torch.equal(guided(vel, cond, null, 1.0)(x, torch.ones(1)), x)  # ours: one pass
    assert len(seen) == 1 and seen[0].shape[0] == 1
    out = guided(vel, cond, null, 1.0, uncond_first=True)(x, torch.ones(1))
    assert seen[1].shape[0] == 2 and torch.equal(seen[1][0], null[0])  # null first
    assert torch.equal(out, x)


# ---------------------------------------------------------------------------------------------------------------
# The official RL rollout


def test_official_rollout_takes_29_calls_and_ends_at_one_thirtieth(tiny_model):
    lq = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spy = Spy(tiny_model.transformer)
    try:
        ro = rollout(tiny_model, lq, [1, 2], RolloutConfig(group_size=2, steps=30, batch_size=2))
    finally:
        spy.close()
    assert len(spy.calls) == 29  # 29 steps on 30 sigmas: no call at sigma = 1/30
    ts = [c["timestep"] for c in spy.calls]
    assert all(t.dtype == torch.int64 for t in ts)
    assert [t[0].item() for t in ts] == (
        torch.tensor(np.linspace(1, 1 / 30, 30)[:29], dtype=torch.float32) * 1000
    ).long().tolist()
    assert ts[1][0].item() == 966 and ts[-1][0].item() == 66
    for c in spy.calls:  # guidance 1.0 still runs [null, cond]; the state SANA sees is bf16-valued
        assert c["x"].shape[0] == 4 and torch.all(c["cond"][:2] == 0)
        assert torch.equal(c["x"], c["x"].bfloat16().float())
    assert ro.sigmas.shape == (30,) and ro.sigmas[-1].item() == pytest.approx(1 / 30)
    assert torch.equal(ro.latents, ro.latents.bfloat16().float())  # the final bf16 state is NFT's clean latent
    decoded = tiny_model.decode_latent(ro.latents, lq[ro.group]).float().clamp(-1, 1)
    assert torch.equal(ro.images, decoded)  # the rollout image is decoded from that sigma = 1/30 latent


def test_official_rollout_stops_at_one_thirtieth_analytically():
    """Point-mass data: trajectories are straight, DPM-Solver++(2M) is exact, so the official grid's last step lands
    on x(1/30) = (29/30) m + (1/30) noise, not on m (our grid ends at 0: exactly m)."""
    m = torch.tensor([[1.5, -2.0, 0.25]], dtype=torch.float64)
    noise = torch.tensor([[0.3, 0.9, -1.1]], dtype=torch.float64)

    def v(x, s):
        return (x - m) / s.to(x.dtype)[:, None]

    calls = []

    def counted(x, s):
        calls.append(s)
        return v(x, s)

    out = sample(counted, noise, sampling_sigmas(30, final_zero=False), solver="dpm++2m", final_first_order=True)
    assert len(calls) == 29
    torch.testing.assert_close(out, (29 / 30) * m + (1 / 30) * noise, rtol=0, atol=1e-12)
    torch.testing.assert_close(sample(v, noise, flow_sigmas(30), solver="dpm++2m"), m, rtol=0, atol=1e-12)


def test_ours_rollout_is_kept_as_a_named_option(tiny_model):
    lq = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    spy = Spy(tiny_model.transformer)
    try:
        ro = rollout(tiny_model, lq, [1, 2], RolloutConfig(group_size=2, steps=5, batch_size=2, sampler="ours"))
    finally:
        spy.close()
    assert len(spy.calls) == 5 and ro.sigmas[-1] == 0 and ro.sigmas.shape == (6,)
    assert all(c["timestep"].dtype == torch.float32 and c["x"].shape[0] == 2 for c in spy.calls)
    with pytest.raises(ValueError, match="sampler"):
        RolloutConfig(sampler="dpm2")
    assert RolloutConfig().sampler == "official" and RolloutConfig().numerics.state_dtype == "bfloat16"
    assert RolloutConfig(bf16_state=False).numerics.state_dtype is None
    assert RolloutConfig(sampler="ours", bf16_state=True).numerics.state_dtype == "bfloat16"
