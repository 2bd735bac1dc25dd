"""A fidelity skip from the LQ face into the DC-AE decoder (ours; the idea of StableSR's controllable feature
wrapping, Wang et al. 2023): the decoder of a compressive autoencoder cannot draw back what its latent lost, so the
finest decoder levels also see features of the LQ face itself.

Legend: B batch, S face size, c_l the decoder's channels at level l (resolution S / 2^l).

``LQSkip(channels, levels)(lq)`` -> ``levels`` feature maps, level l of shape (B, c_l, S / 2^l, S / 2^l), each ending
in a zero-initialised 1x1 convolution: a new skip adds exactly 0, so a model gains it without changing its output,
and training decides how much of the LQ to let through. ``PrefRestoreModel.decode_latent(latent, lq=...)`` adds
level l after the decoder's up-block l (``scale`` 0 turns the skip off: the plain decoder).

``blocks`` > 0 (``autoencoder.lq_skip_blocks``) adds that many residual blocks per level that process the sum (decoder
features + LQ features) before the next up-block: ``LQSkip.fuse(l, h)`` -> h of the same shape. Each block is
h + conv(SiLU(conv(h))) with the second convolution zero-initialised, so growing a trained model by fusion blocks
keeps its output exactly, and the blocks add capacity at the decoder's finest levels, where the small autoencoders of
the CPU presets have least of it (1 ResBlock of 32 channels at full resolution).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FuseBlock(nn.Module):
    """(B, c, H, W) -> h + conv(SiLU(conv(h))), same shape; zero at init (the second convolution is zero)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.silu(self.conv1(h)))


class LQSkip(nn.Module):
    def __init__(self, channels: Sequence[int], levels: int, blocks: int = 0):
        super().__init__()
        if not 1 <= levels <= len(channels):
            raise ValueError(f"lq_skip_levels={levels} must be in [1, {len(channels)}] (the decoder's levels)")
        if blocks < 0:
            raise ValueError(f"lq_skip_blocks={blocks} must be >= 0")
        c = list(channels[:levels])
        self.stem = nn.Sequential(nn.Conv2d(3, c[0], 3, 1, 1), nn.SiLU(), nn.Conv2d(c[0], c[0], 3, 1, 1))
        self.down = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Conv2d(c[i - 1], c[i], 3, 2, 1), nn.SiLU(), nn.Conv2d(c[i], c[i], 3, 1, 1))
            for i in range(1, levels)
        )
        self.out = nn.ModuleList(nn.Conv2d(ci, ci, 1) for ci in c)
        for conv in self.out:  # zero-init (ControlNet / CFW practice): the skip starts as the identity of the decoder
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.blocks = (
            nn.ModuleList(nn.Sequential(*(FuseBlock(ci) for _ in range(blocks))) for ci in c) if blocks else None
        )

    def fuse(self, level: int, h: torch.Tensor) -> torch.Tensor:
        """h: (B, c_l, S / 2^l, S / 2^l), the decoder's features after the skip was added -> same shape."""
        return h if self.blocks is None else self.blocks[level](h)

    def forward(self, lq: torch.Tensor) -> list[torch.Tensor]:
        """lq: (B, 3, S, S) RGB in [-1, 1] -> [(B, c_0, S, S), (B, c_1, S/2, S/2), ...]."""
        h = self.stem(lq)
        feats = [self.out[0](h)]
        for down, out in zip(self.down, self.out[1:], strict=True):
            h = down(h)  # (B, c_l, S / 2^l, S / 2^l)
            feats.append(out(h))
        return feats
