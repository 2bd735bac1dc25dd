"""PSNR to the ground truth as a reward (dB, higher is better). Offline; not one of the paper's six rewards.

Computed by :func:`prefrestore.metrics.pixel.psnr` (BasicSR convention, Y channel by default). Identical
images have infinite PSNR; the reward caps it at ``cap`` dB so the group statistics stay finite.
"""

from __future__ import annotations

import torch

from .protocol import RewardInputs, as_scores


class PSNRReward:
    name = "psnr"

    def __init__(self, *, space: str = "y", cap: float = 60.0) -> None:
        self.space = space
        self.cap = cap

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from ..metrics.pixel import psnr

        batch.require_hq(self.name)
        values = psnr(batch.unit("restored"), batch.unit("hq"), space=self.space).clamp(max=self.cap)
        return as_scores(values, len(batch), self.name)
