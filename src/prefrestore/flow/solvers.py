"""Stateless ODE solvers for the flow ODE dx/dsigma = v(x, sigma), integrated from sigma = 1 down to 0.

Legend: B batch, K steps. ``sigmas`` is a (K + 1,) grid, usually ending in 0 (see schedules.flow_sigmas); the
official RL rollout grid stops at sigma = 1/K instead (schedules.sampling_sigmas(final_zero=False)).

* Euler: x_next = x + (sigma_next - sigma) v.
* DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in data prediction on the flow path alpha = 1 - sigma:
  lambda = log(alpha / sigma), h = lambda_next - lambda,
  x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D,
  D = x0_hat for the first step and the last step to sigma = 0 ("lower order final"; ``sample(final_first_order=
  True)`` makes the last step first order on any grid, as DiffusionNFT's ``dpm2`` on its grid ending at 1/30),
  else D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev, r = h_prev / h.
Both are exact for a point-mass data distribution (straight-line trajectories); tests check that and the
convergence order on a Gaussian.

Two ways to compute the same loop (``sample(state_dtype=...)``): ours keeps a float32 state and takes the grid's
float64 step sizes; the official loops (diffusers' FlowMatchEulerDiscreteScheduler.step at inference, DiffusionNFT's
sampler in RL) take the grid in float32, compute each step in float32 and re-round the state to a given dtype
(bf16 in the official runs) after every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from .paths import x0_from_velocity

Solver = Literal["euler", "dpm++2m"]
SOLVERS = ("euler", "dpm++2m")
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, ...), sigma (B,)) -> v (B, ...)


def euler_step(v: torch.Tensor, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    return x + (sigma_next - sigma) * v


def _lam(sigma: float) -> float:
    return math.log((1.0 - sigma) / sigma) if 0.0 < sigma < 1.0 else (-math.inf if sigma >= 1.0 else math.inf)


def dpm_step(
    x0: torch.Tensor,
    x: torch.Tensor,
    sigma: float,
    sigma_next: float,
    *,
    x0_prev: torch.Tensor | None = None,
    sigma_prev: float | None = None,
) -> torch.Tensor:
    """One DPM-Solver++(2M) step from the data prediction ``x0`` (second order when ``x0_prev`` is given)."""
    if sigma_next == 0.0:
        return x0  # the limit of the first-order update; also "lower order final"
    alpha_next = 1.0 - sigma_next
    lam, lam_next = _lam(sigma), _lam(sigma_next)
    h = lam_next - lam
    d = x0
    if x0_prev is not None and sigma_prev is not None and math.isfinite(lam) and math.isfinite(_lam(sigma_prev)):
        r = (lam - _lam(sigma_prev)) / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    # exp(-h) - 1 with h = +inf (sigma = 1) is -1
    em1 = math.expm1(-h) if math.isfinite(h) else -1.0
    return (sigma_next / sigma) * x - alpha_next * em1 * d


def sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    solver: Solver = "euler",
    state_dtype: torch.dtype | None = None,
    final_first_order: bool = False,
    return_trajectory: bool = False,
    progress: Callable | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate from ``noise`` (B, ...) at sigmas[0] to sigmas[-1]. Returns x (B, ...) [and the states visited].

    ``velocity_fn`` gets the state and sigma (B,) float32. ``state_dtype`` None: our loop (float32 state, float64
    step sizes). A dtype: the official arithmetic: the grid is rounded to float32, the state starts as
    ``noise.to(state_dtype)``, each step is computed in float32 (Euler as ``scheduler.step``: x.float() +
    (sigma_next - sigma) v with the float32 step size and v in its own dtype; DPM from v.float()) and re-rounded to
    ``state_dtype``; the result is then float32 (ours: noise's dtype). ``final_first_order``: DPM's last step is
    first order whatever the grid ends in (it always is when it ends in 0).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver={solver!r}; expected one of {SOLVERS}")
    official = state_dtype is not None
    sig32 = sigmas.float().cpu() if official else None
    x = noise.to(state_dtype) if official else noise
    traj = [x]
    grid = [float(s) for s in (sig32 if official else sigmas)]
    x0_prev, sigma_prev = None, None
    steps = range(len(grid) - 1)
    for i in progress(steps) if progress else steps:
        s, s_next = grid[i], grid[i + 1]
        v = velocity_fn(x, torch.full((x.shape[0],), s, device=x.device, dtype=torch.float32))
        if solver == "euler":
            if official:
                x = x.float() + (sig32[i + 1] - sig32[i]).to(x.device) * v  # a 0-dim float32 step, as scheduler.step
            else:
                x = euler_step(v, x, s, s_next)
        else:
            xf, vf = (x.float(), v.float()) if official else (x, v)
            x0 = x0_from_velocity(xf, vf, torch.tensor(s))
            first_order = final_first_order and i == len(grid) - 2
            x = dpm_step(x0, xf, s, s_next, x0_prev=None if first_order else x0_prev, sigma_prev=sigma_prev)
            x0_prev, sigma_prev = x0, s
        if official:
            x = x.to(state_dtype)
        traj.append(x)
    if official:
        x = x.float()
    return (x, traj) if return_trajectory else x


def guided(
    velocity_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    cond: torch.Tensor,
    null_cond: torch.Tensor | None,
    scale: float,
    *,
    uncond_first: bool = False,
) -> VelocityFn:
    """Classifier-free guidance: v = v_null + scale (v_cond - v_null), in the velocity's own dtype.

    velocity_fn(x, sigma, cond) -> v. Ours: scale 1 (or no null) is one plain pass, else the conditional and null
    passes run as one batch [cond, null] of 2B. ``uncond_first`` (the official loops): always the batch
    [null, cond], at scale 1 too.
    """
    if null_cond is None or (scale == 1.0 and not uncond_first):
        return lambda x, s: velocity_fn(x, s, cond)

    def fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if uncond_first:
            v_null, v_cond = velocity_fn(torch.cat([x, x]), torch.cat([s, s]), torch.cat([null_cond, cond])).chunk(2)
        else:
            v_cond, v_null = velocity_fn(torch.cat([x, x]), torch.cat([s, s]), torch.cat([cond, null_cond])).chunk(2)
        return v_null + scale * (v_cond - v_null)

    return fn
