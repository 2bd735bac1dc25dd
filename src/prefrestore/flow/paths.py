"""The flow-matching path: interpolant, velocity target, x0 from a velocity, and the training loss.

Training and sampling share these definitions. Shapes: x0, noise (B, C, h, w); sigma (B,) in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _b(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma = (1 - sigma) x0 + sigma noise."""
    s = _b(sigma, x0)
    return (1 - s) * x0 + s * noise


def start_latent(noise: torch.Tensor, lq_latent: torch.Tensor | None, start_sigma: float) -> torch.Tensor:
    """The sampler's start at sigma = start_sigma: ``noise`` itself at 1, else the LQ latent on the path,
    (1 - s) lq_latent + s noise (:func:`interpolate` with x0 = the LQ latent). Shapes (B, c, h, w)."""
    if start_sigma >= 1.0:
        return noise
    if lq_latent is None:
        raise ValueError("start_sigma < 1 needs the LQ latent")
    return (1 - start_sigma) * lq_latent.to(noise) + start_sigma * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """d x_sigma / d sigma = noise - x0 (the official target)."""
    return noise - x0


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0_hat = x_sigma - sigma v."""
    return x_t - _b(sigma, x_t) * v


def flow_matching_loss(
    velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    noise: torch.Tensor,
    sigma: torch.Tensor,
) -> torch.Tensor:
    """Mean squared error between velocity_fn(x_sigma, sigma) and noise - x0, uniform weighting. Scalar."""
    v = velocity_fn(interpolate(x0, noise, sigma), sigma)
    return F.mse_loss(v.float(), velocity_target(x0, noise).float())
