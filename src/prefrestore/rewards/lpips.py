"""LPIPS reward (the paper's, weight 0.5): -LPIPS-VGG(restored, GT), higher is better.

The network is :class:`prefrestore.metrics.lpips.LPIPS` with the real weights (torchvision's ImageNet VGG16 and
the LPIPS v0.1 linear heads, docs/method.md §3.4) installed by ``prefrestore weights fetch lpips_vgg`` (``net="alex"``:
``lpips_alex``); without them, building this reward raises ``MetricUnavailable`` naming that command. ``model`` may be passed directly (tests use a randomly initialised one).
"""

from __future__ import annotations

import os

import torch

from .protocol import RewardInputs, as_scores


class LPIPSReward:
    name = "lpips"

    def __init__(
        self,
        *,
        net: str = "vgg",
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        if model is None:
            from ..metrics.lpips import load_lpips

            model = load_lpips(net, device=device, override=weights_dir)
        self.model = model.eval().requires_grad_(False)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        batch.require_hq(self.name)
        a, b = batch.unit("restored").to(self.device), batch.unit("hq").to(self.device)
        return as_scores(-self.model(a, b).cpu(), len(batch), self.name)
