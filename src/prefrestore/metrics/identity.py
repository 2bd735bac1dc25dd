"""Identity distance between a restored face and its reference (the GT, or the LQ input when there is no GT).

Two embedders behind one interface (:class:`IdentityEmbedder`: uint8 (H, W, 3) RGB faces -> (B, D) float64):

* ``dlib``: dlib's ResNet face descriptor (128-d, CC0 weights shipped by ``face_recognition_models``), offline.
  The face is located once on the reference (HOG detector, largest face; the central box of an aligned crop if
  none is found), 5 landmarks are fitted inside that box on each image, and each image is embedded from its own
  aligned chip. The native score is the Euclidean distance (same person below ~0.6).
* ``arcface``: the ArcFace ResNet-18 used for the "Deg." column of GFPGAN/VQFR/CodeFormer tables
  (``resnet18_110.pth`` from VQFR's metric weights, ``module.``-prefixed keys accepted). Input: the whole aligned
  crop as 8-bit gray, bilinearly resized to 128x128, scaled to [-1, 1]; 512-d output. The score is the angle
  between embeddings in degrees (``arccos(cos) * 180 / pi``), as VQFR's ``calculate_cos_dist.py``.

And the torch identity networks (:func:`load_identity_net`: dlib's ResNet, ``dlib_resnet.py``; MobileFace,
``mobileface.py``) as :class:`AlignedEmbedder`: FFHQ-aligned crops in, embeddings out, each crop warped onto the
network's chip by one fixed similarity (differentiable), so one module serves the eval metrics (``id_dlib``,
``id_mobileface``, ``deg_mobileface``), the rewards, the SFT identity loss and the identity guard
(:class:`NetIdentityScorer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, Protocol

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..faces.dlib import DlibFaces
from ..io.image import uint8_to_unit
from .weights import MetricUnavailable, find_file

ARCFACE_FILES = ("resnet18_110.pth", "arcface_resnet18.pth")


class IdentityEmbedder(Protocol):
    name: str

    def embed_pairs(self, images: list[np.ndarray], references: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (H, W, 3) RGB images and their references -> two (B, D) float64 embedding arrays."""
        ...


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, D), (B, D) -> (B,) cosine similarity."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, D), (B, D) -> (B,) angle between embeddings in degrees (VQFR's "Deg.")."""
    return np.degrees(np.arccos(np.clip(cosine_similarity(a, b), -1.0, 1.0)))


def l2_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, D), (B, D) -> (B,) Euclidean distance (dlib's native identity score)."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


# ----------------------------------------------------------------------------------------------------------------
# dlib


class DlibIdentity:
    """dlib 128-d identity embeddings, located on the reference (see module docstring)."""

    name = "dlib"

    def __init__(self) -> None:
        self.faces = DlibFaces()

    def embed_pairs(self, images: list[np.ndarray], references: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        a, b = [], []
        for img, ref in zip(images, references, strict=True):
            if img.shape[:2] != ref.shape[:2]:
                img = cv2.resize(img, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_CUBIC)
            box = self.faces.box(ref)
            a.append(self.faces.descriptor(img, box))
            b.append(self.faces.descriptor(ref, box))
        return np.stack(a), np.stack(b)


# ----------------------------------------------------------------------------------------------------------------
# ArcFace ResNet-18 (VQFR / GFPGAN "Deg.")


class _IRBlock(nn.Module):
    """Improved residual block without SE (use_se=False in GFPGAN/VQFR); one PReLU shared by both activations."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        res = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + res)


class ArcFaceResNet18(nn.Module):
    """ResNetArcFace(IRBlock, [2, 2, 2, 2], use_se=False): (B, 1, 128, 128) gray in [-1, 1] -> (B, 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        chans, c_in = (64, 128, 256, 512), 64
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(_IRBlock(c_in, c, stride), _IRBlock(c, c)))
            c_in = c
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))  # (B, 64, 64, 64)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 8, 8)
        x = self.dropout(self.bn4(x)).flatten(1)  # (B, 32768)
        return self.bn5(self.fc5(x))  # (B, 512)


def arcface_input(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> (1, 128, 128) float32 in [-1, 1], as VQFR's load_image (8-bit gray, INTER_LINEAR)."""
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_LINEAR)
    return (torch.from_numpy(gray.astype(np.float32))[None] - 127.5) / 127.5


class ArcFaceIdentity:
    """ArcFace ResNet-18 embeddings (weights from disk)."""

    name = "arcface"

    def __init__(self, *, device: str | torch.device = "cpu", override: str | os.PathLike | None = None) -> None:
        path = None
        for fname in ARCFACE_FILES:
            try:
                path = find_file("ArcFace identity", fname, "", override=override)
                break
            except MetricUnavailable:
                continue
        if path is None:
            from .weights import weights_dir

            raise MetricUnavailable(
                "ArcFace identity",
                f"provide resnet18_110.pth (VQFR metric weights, ArcFace ResNet-18) at {weights_dir(override) / ARCFACE_FILES[0]}",
            )
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        self.model = ArcFaceResNet18()
        self.model.load_state_dict(sd, strict=True)
        self.model.to(device)
        self.device = device

    @torch.no_grad()
    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        x = torch.stack([arcface_input(i) for i in images]).to(self.device)  # (B, 1, 128, 128)
        return self.model(x).double().cpu().numpy()

    def embed_pairs(self, images: list[np.ndarray], references: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.embed(images), self.embed(references)


# ----------------------------------------------------------------------------------------------------------------
# identity networks in torch (differentiable): dlib's ResNet and MobileFace on FFHQ-aligned crops

IdentityNet = Literal["dlib", "mobileface"]
IDENTITY_NETS: tuple[str, ...] = ("dlib", "mobileface")


class AlignedEmbedder(nn.Module):
    """FFHQ-aligned (B, 3, S, S) RGB in [0, 1], any S -> (B, D) embeddings of a torch identity network.

    The crop is warped onto the network's own chip by one fixed similarity (``chip_affine(S)``; ``affine_grid`` /
    ``grid_sample``, differentiable), scaled to 0..255 and embedded. The network is frozen (no parameter needs a
    gradient) but gradients flow to the input, so it serves as a loss and a reward as well as a metric.
    """

    def __init__(self, name: str, net: nn.Module, chip: int, chip_affine: Callable[[int], np.ndarray]) -> None:
        super().__init__()
        self.name = name
        self.net = net.requires_grad_(False).eval()
        self.chip = chip
        self.chip_affine = chip_affine
        self._affines: dict[int, np.ndarray] = {}

    def train(self, mode: bool = True) -> AlignedEmbedder:
        super().train(mode)
        self.net.eval()  # frozen statistics either way
        return self

    def chips(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, 3, chip, chip) in 0..255."""
        from ..faces.align import warp_affine_torch

        s = x.shape[-1]
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] != s:
            raise ValueError(f"expected square FFHQ-aligned crops (B, 3, S, S), got {tuple(x.shape)}")
        if s not in self._affines:
            self._affines[s] = self.chip_affine(s)
        return warp_affine_torch(x, self._affines[s], self.chip) * 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.chips(x))

    @torch.no_grad()
    def embed_pairs(self, images: list[np.ndarray], references: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The :class:`IdentityEmbedder` interface: uint8 aligned crops (resized to the reference's size)."""
        dev = next(self.net.parameters()).device
        a, b = [], []
        for img, ref in zip(images, references, strict=True):
            if img.shape[:2] != ref.shape[:2]:
                img = cv2.resize(img, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_CUBIC)
            a.append(img)
            b.append(ref)
        if not a:
            return np.zeros((0, 0)), np.zeros((0, 0))
        ea: list[np.ndarray] = [np.empty(0)] * len(a)
        eb: list[np.ndarray] = [np.empty(0)] * len(a)
        for s in sorted({r.shape[0] for r in b}):  # one batch per crop size (a set may mix sizes)
            idx = [i for i, r in enumerate(b) if r.shape[0] == s]
            xa = uint8_to_unit(np.stack([a[i] for i in idx])).to(dev)
            xb = uint8_to_unit(np.stack([b[i] for i in idx])).to(dev)
            fa, fb = self(xa).double().cpu().numpy(), self(xb).double().cpu().numpy()
            for j, i in enumerate(idx):
                ea[i], eb[i] = fa[j], fb[j]
        return np.stack(ea), np.stack(eb)


def load_identity_net(
    name: str, *, device: str | torch.device = "cpu", override: str | os.PathLike | None = None
) -> AlignedEmbedder:
    """``dlib`` (dlib's 128-d ResNet, 150 px chip) or ``mobileface`` (256-d, ArcFace 112 px), weights from disk."""
    if name == "dlib":
        from . import dlib_resnet

        net = dlib_resnet.load_dlib_resnet(device=device, override=override)
        return AlignedEmbedder("dlib", net, dlib_resnet.CHIP, dlib_resnet.ffhq_to_chip_affine).to(device)
    if name == "mobileface":
        from . import mobileface

        net = mobileface.load_mobileface(device=device, override=override)
        return AlignedEmbedder("mobileface", net, mobileface.SIZE, mobileface.ffhq_to_arcface_affine).to(device)
    raise ValueError(f"unknown identity network {name!r}; expected one of {IDENTITY_NETS}")


def cosine_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, D), (B, D) -> (B,) cosine similarity, differentiable."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


class NetIdentityScorer:
    """The identity guard's scorer with a torch network: the interface of
    :class:`prefrestore.faces.identity.IdentityScorer` (``compare(inputs, restored)``), batched, no face detection.
    ``distance`` is ``1 - cosine`` (the guard compares it with the network's own threshold)."""

    def __init__(
        self, net: str, *, device: str | torch.device = "cpu", override: str | os.PathLike | None = None
    ) -> None:
        self.net = net
        self.embedder = load_identity_net(net, device=device, override=override)

    def compare(self, inputs, restored) -> list:
        from ..faces.identity import IdentityScore

        for crop in (*inputs, *restored):
            if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
                raise ValueError(f"expected an aligned uint8 (S, S, 3) RGB crop, got {crop.dtype} {crop.shape}")
        if not len(inputs):
            return []
        a, b = self.embedder.embed_pairs(list(restored), list(inputs))
        cos = cosine_similarity(a, b)
        return [IdentityScore(similarity=float(c), distance=float(1.0 - c)) for c in cos]
