"""FAN 98-point WFLW face landmarks: the network behind the LMD metric and the paper's landmark reward.

FAN here is the Adaptive-Wing-Loss face alignment network (Wang, Bo and Fuxin, ICCV 2019) as VQFR ships it for its
LMD metric (``alignment_WFLW_4HG.pth``, a checkpoint dict whose ``state_dict`` this module loads with the same key
names): CoordConv stem (7x7 / 2, input 256 x 256 RGB in [0, 1]) -> ConvBlocks to 256 channels at 64 x 64 -> 4
stacked depth-4 hourglasses, each opened by a boundary-aware CoordConv, each predicting 98 landmark heatmaps + 1
boundary map (99 channels). Landmarks come from the last stack: the arg-max of each 64 x 64 heatmap, moved a
quarter pixel towards the larger neighbour, + 0.5, scaled to the image size.

A ConvBlock: BN-ReLU-conv3x3 to C/2, BN-ReLU-conv3x3 to C/4, BN-ReLU-conv3x3 to C/4, concatenated (C channels)
plus the input (through BN-ReLU-conv1x1 when the width changes). Convolutions have no bias except the CoordConvs
and the 1x1 heads. CoordConv adds, in this order: the row coordinate and the column coordinate (both scaled to
[-1, 1]), their radius divided by its maximum, and (in stacks after the first) the two coordinates masked where
the previous stack's boundary map exceeds 0.05.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT = "alignment_WFLW_4HG.pth"


# ----------------------------------------------------------------------------------------------------------------
# Network


def _coords(x: torch.Tensor, boundary: torch.Tensor | None) -> torch.Tensor:
    """x: (B, C, H, W) -> (B, C + 3 [+ 2], H, W) with the CoordConv channels described in the module docstring."""
    B, _, H, W = x.shape
    rows = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype)[:, None].expand(H, W)
    cols = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype)[None, :].expand(H, W)
    r = torch.sqrt(rows**2 + cols**2)
    r = r / r.max()
    chans = [x, rows.expand(B, 1, H, W), cols.expand(B, 1, H, W), r.expand(B, 1, H, W)]
    if boundary is not None:
        mask = boundary.clamp(0, 1) > 0.05  # (B, 1, H, W)
        chans += [torch.where(mask, rows, torch.zeros_like(rows)), torch.where(mask, cols, torch.zeros_like(cols))]
    return torch.cat(chans, dim=1)


class CoordConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, *, boundary: bool) -> None:
        super().__init__()
        self.boundary = boundary
        self.conv = nn.Conv2d(c_in + 3 + (2 if boundary else 0), c_out, kernel, stride, padding)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        b = heatmap[:, -1:] if (self.boundary and heatmap is not None) else None
        if self.boundary and b is None:
            raise ValueError("this CoordConv expects the previous stack's heatmaps")
        return self.conv(_coords(x, b))


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out // 2)
        self.conv2 = nn.Conv2d(c_out // 2, c_out // 4, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out // 4)
        self.conv3 = nn.Conv2d(c_out // 4, c_out // 4, 3, 1, 1, bias=False)
        self.downsample = None
        if c_in != c_out:
            self.downsample = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(True), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        res = x if self.downsample is None else self.downsample(x)
        return torch.cat([o1, o2, o3], dim=1) + res


class HourGlass(nn.Module):
    """Depth-``depth`` hourglass over ``c`` channels (modules ``b1_k``, ``b2_k``, ``b2_plus_1``, ``b3_k``)."""

    def __init__(self, c: int, depth: int, *, first: bool) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(c, c, 1, 1, 0, boundary=not first)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(c, c))
            self.add_module(f"b2_{level}", ConvBlock(c, c))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(c, c))
            self.add_module(f"b3_{level}", ConvBlock(c, c))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x, heatmap))


class FAN(nn.Module):
    """(B, 3, 256, 256) RGB in [0, 1] -> list of ``num_modules`` heatmap stacks (B, L + 1, 64, 64)."""

    def __init__(self, num_modules: int = 4, num_landmarks: int = 98, channels: int = 256, depth: int = 4) -> None:
        super().__init__()
        c = channels
        self.num_modules = num_modules
        self.conv1 = CoordConv(3, c // 4, 7, 2, 3, boundary=False)
        self.bn1 = nn.BatchNorm2d(c // 4)
        self.conv2 = ConvBlock(c // 4, c // 2)
        self.conv3 = ConvBlock(c // 2, c // 2)
        self.conv4 = ConvBlock(c // 2, c)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(c, depth, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(c, c))
            self.add_module(f"conv_last{i}", nn.Conv2d(c, c, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(c))
            self.add_module(f"l{i}", nn.Conv2d(c, num_landmarks + 1, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(c, c, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks + 1, c, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, c/4, 128, 128)
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)  # (B, c/2, 64, 64)
        x = self.conv4(self.conv3(x))  # (B, c, 64, 64)
        previous, heat, outputs = x, None, []
        for i in range(self.num_modules):
            hg = self._modules[f"m{i}"](previous, heat)
            ll = self._modules[f"top_m_{i}"](hg)
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heat = self._modules[f"l{i}"](ll)  # (B, L + 1, 64, 64)
            outputs.append(heat)
            if i < self.num_modules - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heat)
        return outputs


def heatmap_points(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, L, h, w) -> (B, L, 2) (x, y) in heatmap pixels: arg-max, a quarter pixel towards the larger neighbour
    on each axis, + 0.5. (Neighbours outside the map count as equal; VQFR's version indexes out of range.)"""
    B, L, h, w = heatmaps.shape
    flat = heatmaps.reshape(B, L, h * w)
    idx = flat.argmax(-1)  # (B, L)
    y, x = idx // w, idx % w

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        v = flat.gather(-1, (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1))[..., None])[..., 0]  # (B, L)
        return torch.where(inside, v, flat.gather(-1, idx[..., None])[..., 0])

    dx = torch.sign(at(y, x + 1) - at(y, x - 1)) * 0.25
    dy = torch.sign(at(y + 1, x) - at(y - 1, x)) * 0.25
    return torch.stack([x.float() + dx + 0.5, y.float() + dy + 0.5], dim=-1)


def load_fan(path: str | os.PathLike, *, device: str | torch.device = "cpu", **arch: int) -> FAN:
    """FAN from a checkpoint (``{"state_dict": ...}`` or a plain state dict; ``module.`` prefixes allowed)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = FAN(**arch)
    model.load_state_dict(sd, strict=True)
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def fan_landmarks(model: FAN, images: list[np.ndarray], *, batch_size: int = 8) -> np.ndarray:
    """uint8 (H, W, 3) RGB images of one size -> (B, L, 2) float64 (x, y) in image pixels (VQFR get_landmarks:
    bilinear resize to 256, RGB / 255, last stack, boundary map dropped)."""
    H, W = images[0].shape[:2]
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = np.stack(
            [cv2.resize(img, (256, 256), interpolation=cv2.INTER_LINEAR) for img in images[i : i + batch_size]]
        )
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0).to(device)  # (b, 3, 256, 256)
        heat = model(t)[-1][:, :-1].float().cpu()  # (b, L, 64, 64)
        pts = heatmap_points(heat)
        pts[..., 0] *= W / heat.shape[-1]
        pts[..., 1] *= H / heat.shape[-2]
        out.append(pts.double().numpy())
    return np.concatenate(out)
