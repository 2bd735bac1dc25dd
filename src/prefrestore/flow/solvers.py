"""Stateless ODE solvers for the flow ODE dx/dsigma = v(x, sigma), integrated from sigma = 1 down to 0.

Legend: B batch, K steps. ``sigmas`` is a (K + 1,) grid ending in 0 (see schedules.flow_sigmas).

* Euler: x_next = x + (sigma_next - sigma) v.
* DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in data prediction on the flow path alpha = 1 - sigma:
  lambda = log(alpha / sigma), h = lambda_next - lambda,
  x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D,
  D = x0_hat for the first step and the last step (sigma_next = 0, "lower order final"),
  else D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev, r = h_prev / h.
Both are exact for a point-mass data distribution (straight-line trajectories); tests check that and the
convergence order on a Gaussian.
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
    return_trajectory: bool = False,
    progress: Callable | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate from ``noise`` (B, ...) at sigmas[0] to sigmas[-1]. Returns x (B, ...) [and the states visited]."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver={solver!r}; expected one of {SOLVERS}")
    x = noise
    traj = [x]
    grid = [float(s) for s in sigmas]
    x0_prev, sigma_prev = None, None
    steps = range(len(grid) - 1)
    for i in progress(steps) if progress else steps:
        s, s_next = grid[i], grid[i + 1]
        v = velocity_fn(x, torch.full((x.shape[0],), s, device=x.device, dtype=torch.float32))
        if solver == "euler":
            x = euler_step(v, x, s, s_next)
        else:
            x0 = x0_from_velocity(x, v, torch.tensor(s))
            x = dpm_step(x0, x, s, s_next, x0_prev=x0_prev, sigma_prev=sigma_prev)
            x0_prev, sigma_prev = x0, s
        traj.append(x)
    return (x, traj) if return_trajectory else x


def guided(velocity_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], cond: torch.Tensor,
           null_cond: torch.Tensor | None, scale: float) -> VelocityFn:
    """Classifier-free guidance: v = v_null + scale (v_cond - v_null); scale 1 (or no null) is one plain pass.

    velocity_fn(x, sigma, cond) -> v. Conditional and null passes run as one batch of 2B.
    """
    if null_cond is None or scale == 1.0:
        return lambda x, s: velocity_fn(x, s, cond)

    def fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        v = velocity_fn(torch.cat([x, x]), torch.cat([s, s]), torch.cat([cond, null_cond]))
        v_cond, v_null = v.chunk(2)
        return v_null + scale * (v_cond - v_null)

    return fn
