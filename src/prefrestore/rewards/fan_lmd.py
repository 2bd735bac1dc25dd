"""The paper's landmark reward (weight 0.5): FAN 98-point WFLW landmarks, reward 1 / (1 + d / 20) (docs/method.md §3.4).

The network and its landmark read-out live in :mod:`prefrestore.metrics.fan` (shared with the LMD metric).

d is the mean Euclidean distance between the 98 points of the restored image and of the ground truth (the LQ when
there is none), in pixels of a ``scale_to`` (512) image. FAN has no face detector: it always returns points on an
aligned crop, so the paper's failure value 0.01 only applies to invalid inputs (NaN predictions).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..metrics.fan import CHECKPOINT, FAN, fan_landmarks, load_fan
from .protocol import RewardInputs, as_scores

# ----------------------------------------------------------------------------------------------------------------
# Reward


class FANLandmarkReward:
    name = "lmd"

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None,
        model: FAN | None = None,
        scale_to: int = 512,
        d0: float = 20.0,
        failure: float = 0.01,
    ) -> None:
        if model is None:
            from ..metrics.weights import find_file

            path = checkpoint or find_file(
                "LMD (FAN)",
                CHECKPOINT,
                "FAN WFLW 4-hourglass weights from VQFR's metric weights (AdaptiveWingLoss)",
                override=weights_dir,
            )
            model = load_fan(path, device=device)
        self.model = model
        self.scale_to, self.d0, self.failure = scale_to, d0, failure

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        restored, refs = batch.uint8("restored"), batch.uint8(batch.reference())
        a, b = fan_landmarks(self.model, restored), fan_landmarks(self.model, refs)
        d = np.sqrt(((a - b) ** 2).sum(-1)).mean(-1) * self.scale_to / refs[0].shape[1]  # (B,)
        scores = np.where(np.isfinite(d), 1.0 / (1.0 + d / self.d0), self.failure)
        return as_scores(scores, len(batch), self.name)
