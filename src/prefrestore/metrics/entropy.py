"""Solution entropy: how much a stochastic restorer's outputs spread over K samples (seeds) of one input.

Pref-Restore reports that preference RL "significantly reduces solution entropy" without publishing the measure
(docs/method.md Section 5); we report two transparent proxies:

* ``pixel_std``: the per-pixel standard deviation over the K samples (population std, over RGB in [0, 1]), averaged
  over pixels and channels; :func:`pixel_std_map` gives the (H, W) map for plots;
* ``pairwise``: the mean distance over the K(K-1)/2 pairs of samples (RMSE in [0, 1] by default, or any
  ``(B,3,H,W), (B,3,H,W) -> (B,)`` distance such as LPIPS).

Both are exactly 0 when all samples are identical. ``samples``: float (K, 3, H, W) RGB in [0, 1], K >= 2.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(samples: torch.Tensor) -> None:
    if samples.ndim != 4 or samples.shape[1] != 3 or samples.shape[0] < 2:
        raise ValueError(f"expected K >= 2 samples of shape (K, 3, H, W), got {tuple(samples.shape)}")


def pixel_std_map(samples: torch.Tensor) -> torch.Tensor:
    """(K, 3, H, W) -> (H, W) per-pixel std over samples, averaged over channels."""
    _check(samples)
    return samples.double().std(dim=0, correction=0).mean(0)


def pixel_std(samples: torch.Tensor) -> float:
    """(K, 3, H, W) -> mean per-pixel std over samples."""
    return float(pixel_std_map(samples).mean())


def rmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W), (B, 3, H, W) -> (B,) root-mean-square difference."""
    return ((a.double() - b.double()) ** 2).mean(dim=(1, 2, 3)).sqrt()


def mean_pairwise_distance(samples: torch.Tensor, distance: Distance = rmse) -> float:
    """(K, 3, H, W) -> mean ``distance`` over all unordered pairs of samples (batched in one call)."""
    _check(samples)
    pairs = list(combinations(range(samples.shape[0]), 2))
    i = torch.tensor([p[0] for p in pairs])
    j = torch.tensor([p[1] for p in pairs])
    return float(distance(samples[i], samples[j]).double().mean())
