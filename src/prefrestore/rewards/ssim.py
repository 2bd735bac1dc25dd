"""SSIM to the ground truth as a reward (in [-1, 1], higher is better). Offline; not one of the paper's six.

Computed by :func:`prefrestore.metrics.pixel.ssim` (BasicSR convention, Y channel by default).
"""

from __future__ import annotations

import torch

from .protocol import RewardInputs, as_scores


class SSIMReward:
    name = "ssim"

    def __init__(self, *, space: str = "y") -> None:
        self.space = space

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from ..metrics.pixel import ssim

        batch.require_hq(self.name)
        return as_scores(ssim(batch.unit("restored"), batch.unit("hq"), space=self.space), len(batch), self.name)
