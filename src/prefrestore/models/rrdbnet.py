"""RRDBNet, the generator of ESRGAN / Real-ESRGAN (Wang et al. 2018, 2021), defined here (no basicsr: it needs
torchvision, which does not work beside our torch).

Parameter names follow basicsr's ``RRDBNet`` (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1``,
``conv_up2``, ``conv_hr``, ``conv_last``), so a basicsr state dict of RealESRGAN_x4plus loads ``strict=True``.

Tensors: input (B, 3, H, W) RGB float in [0, 1]; output (B, 3, 4H, 4W) RGB, roughly [0, 1] (not clamped).
Only the x4 layout is defined (x2plus/x1 variants pixel-unshuffle the input first; no x2 weights are available
offline, so x2 runs x4 and resizes, see ``prefrestore.restore.realesrgan``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RRDBConfig:
    """num_feat: trunk channels; num_grow: channels each dense conv adds; num_block: RRDBs in the trunk."""

    in_ch: int = 3
    out_ch: int = 3
    num_feat: int = 64
    num_grow: int = 32
    num_block: int = 23
    scale: int = 4

    def __post_init__(self) -> None:
        if self.scale != 4:
            raise ValueError(f"scale={self.scale}: only the x4 RRDBNet layout is implemented")


X4PLUS = RRDBConfig()  # RealESRGAN_x4plus: 16,697,987 parameters


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and all earlier outputs; out = 0.2 * conv5(...) + x."""

    def __init__(self, num_feat: int, num_grow: int):
        super().__init__()
        self.conv1 = _conv(num_feat, num_grow)
        self.conv2 = _conv(num_feat + num_grow, num_grow)
        self.conv3 = _conv(num_feat + 2 * num_grow, num_grow)
        self.conv4 = _conv(num_feat + 3 * num_grow, num_grow)
        self.conv5 = _conv(num_feat + 4 * num_grow, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Three dense blocks in a row with a scaled residual: out = 0.2 * rdb3(rdb2(rdb1(x))) + x."""

    def __init__(self, num_feat: int, num_grow: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, 3, 4H, 4W): trunk of RRDBs, then two nearest-neighbour x2 upsamplings."""

    def __init__(self, config: RRDBConfig = X4PLUS):
        super().__init__()
        c = config
        self.config = config
        self.conv_first = _conv(c.in_ch, c.num_feat)
        self.body = nn.Sequential(*(RRDB(c.num_feat, c.num_grow) for _ in range(c.num_block)))
        self.conv_body = _conv(c.num_feat, c.num_feat)
        self.conv_up1 = _conv(c.num_feat, c.num_feat)
        self.conv_up2 = _conv(c.num_feat, c.num_feat)
        self.conv_hr = _conv(c.num_feat, c.num_feat)
        self.conv_last = _conv(c.num_feat, c.out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))

    def conv_names(self) -> list[str]:
        """The convolutions in execution order (the order of ncnn's ``.param`` layers and ``.bin`` blobs)."""
        names = ["conv_first"]
        for i in range(self.config.num_block):
            names += [f"body.{i}.rdb{k}.conv{j}" for k in (1, 2, 3) for j in (1, 2, 3, 4, 5)]
        return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]

    def activated(self, name: str) -> bool:
        """Whether a leaky ReLU (0.2) follows the convolution ``name``."""
        return name in ("conv_up1", "conv_up2", "conv_hr") or name.endswith(("conv1", "conv2", "conv3", "conv4"))
