"""Sigma grids for the flow ODE (pure functions).

Flow-matching convention used throughout (SANA / FlowMatchEulerDiscreteScheduler, shift 1.0):
x_sigma = (1 - sigma) * x0 + sigma * noise, sigma in [0, 1]; sigma = 1 is pure noise, sigma = 0 is data.
"""

from __future__ import annotations

import torch


def flow_sigmas(steps: int, *, shift: float = 1.0, final_zero: bool = True) -> torch.Tensor:
    """(steps + 1,) float64 grid: linspace(1, 1/steps, steps) then a final 0 (the official *inference* grid: the
    Euler loop's FlowMatchEulerDiscreteScheduler appends the 0, docs/method.md §1.1).

    ``final_zero=False``: the (steps,) grid without the 0, the official DiffusionNFT *rollout* grid (docs/layouts.md §4.3):
    a solver run on it takes steps - 1 steps and stops at sigma = 1/steps.

    ``shift`` applies SD3/SANA's time shift sigma' = shift*s / (1 + (shift-1)*s); the official code's effective
    shift is 1.0 (docs/layouts.md §4.3).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64)
    if shift != 1.0:
        s = shift * s / (1 + (shift - 1) * s)
    return torch.cat([s, s.new_zeros(1)]) if final_zero else s


def sampling_sigmas(steps: int, start_sigma: float = 1.0, *, final_zero: bool = True) -> torch.Tensor:
    """(steps + 1,) float64 grid from ``start_sigma`` to 0: the official inference grid (:func:`flow_sigmas`) scaled
    by ``start_sigma`` in (0, 1] (1: from pure noise; below 1: from the noised LQ latent, paths.start_latent).
    ``final_zero=False``: the (steps,) rollout grid ``start_sigma`` ... ``start_sigma / steps`` (no final 0)."""
    if not 0.0 < start_sigma <= 1.0:
        raise ValueError(f"start_sigma={start_sigma} must be in (0, 1]")
    return flow_sigmas(steps, final_zero=final_zero) * start_sigma


def train_sigmas(
    n: int,
    *,
    generator: torch.Generator | None = None,
    num_train_timesteps: int = 1000,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n,) training sigmas: u ~ U(0, 1), index = floor(u * N) into timesteps N..1, sigma = t / N (docs/layouts.md §4.3).

    Uniform weighting, as the official trainer ("uniform"); values in {1/N, ..., 1}.
    """
    u = torch.rand(n, generator=generator, device=device)
    idx = (u * num_train_timesteps).long().clamp(max=num_train_timesteps - 1)
    return (num_train_timesteps - idx).float() / num_train_timesteps
