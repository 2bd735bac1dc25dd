"""LPIPS (Zhang et al., CVPR 2018), VGG16 and AlexNet variants, written with torch only (no torchvision).

Architecture and weight layout follow the reference ``lpips`` package v0.1 (richzhang/PerceptualSimilarity):

* input in [-1, 1], shifted by (-.030, -.088, -.188) and divided by (.458, .448, .450) per channel;
* features taken after the ReLUs that close each stage: VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
  (torchvision ``features`` indices 3, 8, 15, 22, 29); AlexNet relu1-relu5 (indices 1, 4, 7, 9, 11);
* each feature map is unit-normalised over channels (eps 1e-10), the squared difference is weighted by a learned
  1x1 conv without bias (``lin{k}.model.1.weight``, shape (1, C, 1, 1)), averaged over space and summed over stages.

Weights (not shipped, never downloaded): the ImageNet backbone as torchvision saves it (``features.N.weight``) and
the LPIPS linear heads as the ``lpips`` package ships them (``lpips/weights/v0.1/{vgg,alex}.pth``).
Inputs to :meth:`LPIPS.forward` are float (B, 3, H, W) RGB in [0, 1]; output (B,) float32, 0 for identical images.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

from .weights import MetricUnavailable, find_file, weights_dir

Net = Literal["vgg", "alex"]

# torchvision file names, so a user who has run torchvision once can point at ~/.cache/torch/hub/checkpoints.
BACKBONE_FILES: dict[str, tuple[str, str]] = {
    "vgg": ("vgg16-397923af.pth", "torchvision ImageNet VGG16 weights"),
    "alex": ("alexnet-owt-7be5be79.pth", "torchvision ImageNet AlexNet weights"),
}
LIN_FILES: dict[str, tuple[str, str]] = {
    "vgg": ("lpips_v0.1_vgg.pth", "LPIPS v0.1 linear heads, lpips/weights/v0.1/vgg.pth from the lpips package"),
    "alex": ("lpips_v0.1_alex.pth", "LPIPS v0.1 linear heads, lpips/weights/v0.1/alex.pth from the lpips package"),
}
CHANNELS: dict[str, tuple[int, ...]] = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}
TAPS: dict[str, tuple[int, ...]] = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}


def _vgg16_features() -> nn.Sequential:
    """torchvision ``vgg16().features`` up to relu5_3 (indices 0-29), same module indices."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers: list[nn.Module] = []
    c_in = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU()]
            c_in = int(v)
    return nn.Sequential(*layers)


def _alexnet_features() -> nn.Sequential:
    """torchvision ``alexnet().features`` up to relu5 (indices 0-11), same module indices."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    )


class LPIPS(nn.Module):
    """LPIPS distance. Build with random weights for shape tests, or with :func:`load_lpips` for real scores."""

    def __init__(self, net: Net = "vgg") -> None:
        super().__init__()
        if net not in CHANNELS:
            raise ValueError(f"unknown LPIPS net={net!r}; expected one of {sorted(CHANNELS)}")
        self.net = net
        self.features = _vgg16_features() if net == "vgg" else _alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in CHANNELS[net])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None], persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, wanted = [], set(TAPS[self.net])
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                taps.append(x)  # (B, C_k, H_k, W_k)
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (B, 3, H, W) RGB in [0, 1] -> (B,) distance."""
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) tensors of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
        x = ((a * 2 - 1) - self.shift) / self.scale
        y = ((b * 2 - 1) - self.shift) / self.scale
        n = x.shape[0]
        feats = self._taps(torch.cat([x, y]))  # one pass for both images
        total = torch.zeros(n, dtype=x.dtype, device=x.device)
        for f, lin in zip(feats, self.lins, strict=True):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)  # unit norm over channels
            d = (f[:n] - f[n:]) ** 2  # (B, C_k, H_k, W_k)
            total = total + lin(d).mean(dim=(1, 2, 3))
        return total

    def load_weights(self, backbone: dict[str, torch.Tensor], lins: dict[str, torch.Tensor]) -> None:
        """Load a torchvision backbone state dict and an lpips-package linear-head state dict (strict)."""
        feat = {k[len("features.") :]: v for k, v in backbone.items() if k.startswith("features.")}
        feat = {k: v for k, v in feat.items() if int(k.split(".")[0]) < len(self.features)}
        self.features.load_state_dict(feat, strict=True)
        heads = {}
        for k in range(len(self.lins)):
            keys = [key for key in lins if key.startswith(f"lin{k}.") and key.endswith("weight")]
            if len(keys) != 1:
                raise ValueError(f"LPIPS linear heads: expected one 'lin{k}.*weight' key, found {keys}")
            heads[f"{k}.weight"] = lins[keys[0]]
        self.lins.load_state_dict(heads, strict=True)


def _lpips_package_lin(net: Net) -> list[Path]:
    """The heads shipped inside an installed ``lpips`` package, found without importing it (it needs torchvision)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(loc) / "weights" / "v0.1" for loc in spec.submodule_search_locations]


def load_lpips(
    net: Net = "vgg", *, device: str | torch.device = "cpu", override: str | os.PathLike | None = None
) -> LPIPS:
    """LPIPS with real weights from disk, or raise MetricUnavailable naming the missing file."""
    metric = f"LPIPS-{net.upper() if net == 'vgg' else 'Alex'}"
    bfile, bwhat = BACKBONE_FILES[net]
    lfile, lwhat = LIN_FILES[net]
    backbone_path = find_file(metric, bfile, bwhat, override=override)
    lin_path = None
    for d in _lpips_package_lin(net):
        if (d / f"{net}.pth").is_file():
            lin_path = d / f"{net}.pth"
    if lin_path is None:
        try:
            lin_path = find_file(metric, lfile, lwhat, override=override)
        except MetricUnavailable:
            raise MetricUnavailable(
                metric, f"provide {lfile} ({lwhat}) at {weights_dir(override) / lfile}, or pip install lpips"
            ) from None
    model = LPIPS(net)
    model.load_weights(
        torch.load(backbone_path, map_location="cpu", weights_only=True),
        torch.load(lin_path, map_location="cpu", weights_only=True),
    )
    return model.to(device)
