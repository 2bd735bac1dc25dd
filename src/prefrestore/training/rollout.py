"""Rollouts for preference RL: G restorations of each LQ face by the sampling ("old") policy (docs/method.md §3.3).

Legend: B LQ faces, G group size, N = B * G samples (group-contiguous: sample n belongs to LQ n // G), Q + N_lq
conditioning tokens of width C, c, h, w latent shape, S face resolution, K sampling steps.

What makes a rollout, as in the paper's RL stage:

* the integrator is frozen and greedy (``do_sample=False``): each LQ is tokenised, decoded and connected once, and
  its conditioning is shared by the G samples of its group;
* the diffusion sampler is a deterministic ODE solver (DPM-Solver++(2M), no CFG by default), so **the initial noise
  is the only thing that differs within a group**; each sample's noise comes from its own seed;
* the final latents are kept: DiffusionNFT trains on forward-noised copies of them, not on the trajectory.

Two samplers (``RolloutConfig.sampler``). ``official`` (the default) is DiffusionNFT's rollout as Pref-Restore runs it
(docs/layouts.md §4.3): sigmas linspace(1, 1/30, 30) with **no** final 0, so 29 steps, the last a first-order step to
sigma = 1/30; that sigma = 1/30 latent is both the decoded rollout image and NFT's "clean" latent; SANA gets integer
(truncated) timesteps 1000, 966, 933, ...; the noise and the state are bf16 (re-rounded after every step); guidance 1
still runs the [null, cond] batch. ``ours`` integrates all the way to sigma = 0 (30 steps) with float32 timesteps and
state and one pass at guidance 1. Both scale the grid by ``start_sigma``.

Which LoRA adapter samples is the caller's choice (the loop activates the "old" adapter around this call); this
module only integrates whatever velocity the model currently has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch

from ..flow.schedules import sampling_sigmas
from ..flow.solvers import Solver
from ..models.integrator import DecodeOptions
from ..models.restorer import OFFICIAL_ROLLOUT, LoopNumerics, PrefRestoreModel

RolloutSampler = Literal["official", "ours"]
ROLLOUT_SAMPLERS = ("official", "ours")


@dataclass(frozen=True)
class RolloutConfig:
    group_size: int = 24
    """G, restorations per LQ face (``num_image_per_prompt`` 24 in the paper)."""
    steps: int = 30
    """K, the sigmas linspace(1, 1/K, K); the official sampler takes K - 1 steps on them and stops at 1/K, ours
    appends 0 and takes K steps."""
    sampler: RolloutSampler = "official"
    """``official``: DiffusionNFT's rollout (module docstring); ``ours``: to sigma = 0 with float32 numerics."""
    bf16_state: bool | None = None
    """Round the initial noise and re-round the state to bf16 after every step; None: the sampler's own (official:
    yes, as its bf16 noise makes it; ours: no)."""
    solver: Solver = "dpm++2m"
    """Deterministic ODE solver; the paper's RL rollouts use ``dpm2`` = DPM-Solver++(2M)."""
    guidance_scale: float = 1.0
    """CFG scale; 1.0 = no CFG, as the paper's RL rollouts."""
    batch_size: int = 9
    """Samples per sampling forward pass (per-GPU batch 9 in the paper); affects memory, not results."""
    start_sigma: float = 1.0
    """1.0: sample from pure noise (the paper); below 1: from the noised LQ latent, as SamplingDefaults.start_sigma
    (set it to the model's value so the policy is trained where it is used)."""

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size={self.group_size}: need >= 2 samples per LQ to compare them")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 1")
        if not 0.0 < self.start_sigma <= 1.0:
            raise ValueError(f"start_sigma={self.start_sigma} must be in (0, 1]")
        if self.solver not in ("euler", "dpm++2m"):
            raise ValueError(f"unknown solver={self.solver!r}; expected 'euler' or 'dpm++2m'")
        if self.sampler not in ROLLOUT_SAMPLERS:
            raise ValueError(f"unknown sampler={self.sampler!r}; expected one of {ROLLOUT_SAMPLERS}")
        if self.sampler == "official" and self.steps < 2:
            raise ValueError(f"steps={self.steps}: the official sampler takes steps - 1 steps; use >= 2")

    @property
    def numerics(self) -> LoopNumerics:
        """The sampling loop's numerics (models/restorer.py LoopNumerics) of this sampler and ``bf16_state``."""
        n = OFFICIAL_ROLLOUT if self.sampler == "official" else LoopNumerics()
        if self.bf16_state is not None:
            n = replace(n, state_dtype="bfloat16" if self.bf16_state else None, bf16_noise=self.bf16_state)
        return n


@dataclass
class Rollout:
    """G restorations of each of B LQ faces (tensors on the model's device unless noted)."""

    cond: torch.Tensor  # (B, Q + N_lq, C) conditioning, one per LQ
    group: torch.Tensor  # (N,) int64, the LQ (row of cond) of each sample: n // G
    noise: torch.Tensor  # (N, c, h, w) float32 noise (the sampler starts from it mixed with the LQ latent if s < 1)
    latents: torch.Tensor  # (N, c, h, w) float32 final latents, NFT's x0 (official: at sigma = s/K; ours: at 0)
    images: torch.Tensor  # (N, 3, S, S) float32 decoded restorations in [-1, 1] (decoded from ``latents``)
    sigmas: torch.Tensor  # float64 sampling grid: (K,) ending at s/K (official) or (K + 1,) ending in 0 (ours)

    @property
    def group_size(self) -> int:
        return self.latents.shape[0] // self.cond.shape[0]


@torch.no_grad()
def rollout(
    model: PrefRestoreModel,
    lq: torch.Tensor,
    seeds: Sequence[int],
    config: RolloutConfig = RolloutConfig(),
) -> Rollout:
    """lq: (B, 3, S, S) RGB in [-1, 1]; seeds: N = B * G initial-noise seeds (group-contiguous) -> Rollout.

    Deterministic: the same model weights, LQ and seeds give the same rollout, batched or not.
    """
    B, G = lq.shape[0], config.group_size
    if len(seeds) != B * G:
        raise ValueError(f"need B * G = {B} * {G} = {B * G} seeds, got {len(seeds)}")
    device = model.device
    lq = lq.to(device)
    # Frozen, greedy integrator: one conditioning per LQ (docs/method.md §3.3, "AR branch: greedy").
    c = model.prepare(lq, decode=DecodeOptions(do_sample=False))
    cond = c.cond  # (B, Q + N_lq, C)
    group = torch.arange(B, device=device).repeat_interleave(G)  # (N,)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]  # CPU generators: same noise on any device
    noise = model.initial_noise(B * G, gens, device=device)  # (N, c, h, w)
    latents, images = [], []
    for i in range(0, B * G, config.batch_size):
        sl = slice(i, i + config.batch_size)
        x0 = model.sample(
            cond[group[sl]],
            noise[sl],
            c.lq_latent[group[sl]],
            steps=config.steps,
            guidance_scale=config.guidance_scale,
            solver=config.solver,
            start_sigma=config.start_sigma,
            numerics=config.numerics,
        )  # (n, c, h, w)
        latents.append(x0.float())
        images.append(model.decode_latent(x0, lq[group[sl]]).float().clamp(-1, 1))  # (n, 3, S, S)
    return Rollout(
        cond=cond,
        group=group,
        noise=noise,
        latents=torch.cat(latents),
        images=torch.cat(images),
        sigmas=sampling_sigmas(config.steps, config.start_sigma, final_zero=config.numerics.final_zero),
    )
