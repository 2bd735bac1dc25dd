"""MTCNN face detector: three small CNNs in a cascade (Zhang et al. 2016, "Joint Face Detection and Alignment
using Multi-task Cascaded Convolutional Networks", IEEE SPL 23(10)).

* P-Net runs fully convolutionally over an image pyramid and proposes 12x12 windows (stride 2).
* R-Net rescores and refines the surviving windows at 24x24.
* O-Net rescores them at 48x48 and regresses five landmarks.
Each stage keeps windows above its threshold, regresses the box, and suppresses overlaps (NMS).

Weights: the P/R/O-Net weights that ship in facenet-pytorch 2.6.0 (MIT, (c) 2019 Timothy Esler; notice in
``prefrestore/assets/LICENSE-mtcnn.txt``), converted once to ``assets/mtcnn.safetensors`` by
``tools/convert_mtcnn_weights.py`` (which reorders the dense layers' inputs to PyTorch's (C, H, W) flatten order).
Neither facenet-pytorch nor torchvision is needed at run time.

Coordinates inside this module are *edge* coordinates (pixel j spans [j, j+1)), in which windows and resizing
are exact; landmarks are shifted by -0.5 on output to the pixel-centre convention of ``faces/types.py``.

Legend: N candidate windows, H, W image height and width, h, w pyramid level size, R crop side (24 or 48).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import cv2
import numpy as np
import torch
from torch import nn

from ..io.image import to_model
from .types import FaceDetection

logger = logging.getLogger(__name__)

WEIGHTS = "assets/mtcnn.safetensors"  # inside the prefrestore package

# Input normalisation the nets were trained with (reference code: (x - 127.5) * 0.0078125); to_model gives
# x / 127.5 - 1, so multiplying by 127.5 / 128 yields exactly (x - 127.5) / 128.
_NORM = 127.5 / 128.0
_PAD = -127.5 / 128.0  # a black (0) pixel after normalisation: what the reference pads crops with


# ----------------------------------------------------------------------------------------------------------------
# Non-maximum suppression


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, *, mode: Literal["union", "min"] = "union"
) -> np.ndarray:
    """Greedy non-maximum suppression -> indices kept, by decreasing score.

    boxes: (N, 4) x1, y1, x2, y2; scores: (N,). A box is dropped when its overlap with a kept, higher-scoring box
    exceeds ``threshold``; overlap = intersection / union (``"union"``) or / the smaller area (``"min"``).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)  # (N,)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        overlap = inter / np.maximum(denom, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Networks (parameter names match the keys of assets/mtcnn.safetensors: "pnet.conv1.weight", ...)


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, h, w) normalised RGB -> prob (B, h', w') face probability, reg (B, 4, h', w')."""
        x = self.pool1(self.prelu1(self.conv1(x)))  # (B, 10, ceil((h-2)/2), ...)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))  # (B, 32, h', w'), h' = ceil((h-2)/2) - 4
        prob = self.conv4_1(x).softmax(dim=1)[:, 1]  # (B, h', w')
        return prob, self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, 24, 24) -> prob (N,), reg (N, 4)."""
        x = self.pool1(self.prelu1(self.conv1(x)))  # (N, 28, 11, 11)
        x = self.pool2(self.prelu2(self.conv2(x)))  # (N, 48, 4, 4)
        x = self.prelu3(self.conv3(x)).flatten(1)  # (N, 576) = 64 * 3 * 3
        x = self.prelu4(self.dense4(x))  # (N, 128)
        return self.dense5_1(x).softmax(dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 crops: score, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, 3, 48, 48) -> prob (N,), reg (N, 4), landmarks (N, 10) = 5 x then 5 y, relative to the crop."""
        x = self.pool1(self.prelu1(self.conv1(x)))  # (N, 32, 23, 23)
        x = self.pool2(self.prelu2(self.conv2(x)))  # (N, 64, 10, 10)
        x = self.pool3(self.prelu3(self.conv3(x)))  # (N, 64, 4, 4)
        x = self.prelu4(self.conv4(x)).flatten(1)  # (N, 1152) = 128 * 3 * 3
        x = self.prelu5(self.dense5(x))  # (N, 256)
        return self.dense6_1(x).softmax(dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


# ----------------------------------------------------------------------------------------------------------------
# Cascade


@dataclass(frozen=True)
class MTCNNConfig:
    """Cascade settings; the defaults are the reference code's (Zhang et al. 2016; facenet-pytorch)."""

    min_face_size: float = 20.0  # smallest face searched, px: the first pyramid scale is 12 / min_face_size
    scale_factor: float = 0.709  # pyramid step, about 1/sqrt(2)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-Net score thresholds
    batch_size: int = 256  # R/O-Net crops per forward pass

    def __post_init__(self) -> None:
        if self.min_face_size < 6:
            raise ValueError(f"min_face_size={self.min_face_size} is below 6 px, where MTCNN finds nothing real")
        if not 0.1 < self.scale_factor < 0.95:
            raise ValueError(f"scale_factor={self.scale_factor} must be in (0.1, 0.95); 0.709 is standard")
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds={self.thresholds} must be three probabilities")


def load_nets(device: str | torch.device = "cpu") -> tuple[PNet, RNet, ONet]:
    """The three nets with the bundled weights, in eval mode on ``device``."""
    from safetensors.torch import load_file

    with resources.as_file(resources.files("prefrestore").joinpath(WEIGHTS)) as path:
        state = load_file(str(path), device=str(device))
    nets = PNet(), RNet(), ONet()
    for name, net in zip(("pnet", "rnet", "onet"), nets, strict=True):
        prefix = name + "."
        net.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        net.to(device).eval().requires_grad_(False)
    return nets


class MTCNN:
    """The MTCNN backend of :class:`~prefrestore.faces.detect.FaceDetector`."""

    def __init__(self, config: MTCNNConfig | None = None, *, device: str | torch.device = "cpu") -> None:
        self.config = config or MTCNNConfig()
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = load_nets(self.device)

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """image: uint8 (H, W, 3) RGB -> faces sorted by decreasing score."""
        return self.detect_many([image])[0]

    @torch.inference_mode()
    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """uint8 (H, W, 3) RGB images of any sizes -> one list per image. R- and O-Net run batched over all images."""
        cfg = self.config
        normed = [_normalise(img) for img in images]
        cands = [_propose(self.pnet, x, cfg, self.device) for x in normed]  # per image (N, 4) boxes

        # Stage 2: R-Net on 24x24 crops of the squared proposals, all images in one batch.
        cands = [_square(c) for c in cands]
        scores, regs = self._run(self.rnet, normed, cands, 24)
        out = []
        for img_c, img_s, img_r in zip(cands, scores, regs, strict=True):
            keep = img_s >= cfg.thresholds[1]
            c, s, r = img_c[keep], img_s[keep], img_r[keep]
            keep = nms(c, s, 0.7)
            out.append(_square(_regress(c[keep], r[keep])))
        cands = out

        # Stage 3: O-Net on 48x48 crops: final score, box and landmarks.
        scores, regs, marks = self._run(self.onet, normed, cands, 48)
        results = []
        for img_c, img_s, img_r, img_m in zip(cands, scores, regs, marks, strict=True):
            keep = img_s >= cfg.thresholds[2]
            c, s, r, m = img_c[keep], img_s[keep], img_r[keep], img_m[keep]
            wh = (c[:, 2:] - c[:, :2])[:, None, :]  # (N, 1, 2) window size
            lm = c[:, None, :2] + m.reshape(-1, 2, 5).transpose(0, 2, 1) * wh - 0.5  # (N, 5, 2), pixel centres
            boxes = _regress(c, r)
            # Final suppression on intersection / smaller area, so a box nested in another is dropped too.
            keep = nms(boxes, s, 0.7, mode="min")
            results.append([FaceDetection.from_arrays(boxes[i], s[i], lm[i]) for i in keep if _valid(boxes[i])])
        return results

    def _run(self, net: nn.Module, normed: list[np.ndarray], cands: list[np.ndarray], size: int) -> list:
        """Crop every candidate of every image to (size, size), run ``net`` in chunks, split outputs per image.

        Returns one list per network output, each holding an (N_i, ...) float64 array per image.
        """
        crops = [_crops(x, c, size) for x, c in zip(normed, cands, strict=True)]  # per image (N_i, R, R, 3)
        counts = [len(c) for c in crops]
        outputs: list[list[np.ndarray]] = []
        allc = np.concatenate(crops) if sum(counts) else np.zeros((0, size, size, 3), np.float32)
        chunks = []
        for i in range(0, len(allc), self.config.batch_size):
            x = torch.from_numpy(allc[i : i + self.config.batch_size]).permute(0, 3, 1, 2).to(self.device)
            chunks.append([t.double().cpu().numpy() for t in net(x)])  # (n, 3, R, R) -> outputs
        n_out = 3 if isinstance(net, ONet) else 2
        for k in range(n_out):
            width = {0: (), 1: (4,), 2: (10,)}[k]
            joined = np.concatenate([c[k] for c in chunks]) if chunks else np.zeros((0, *width))
            outputs.append(np.split(joined, np.cumsum(counts)[:-1]))
        return outputs


def _normalise(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (H, W, 3) in (x - 127.5) / 128, the nets' input scale."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    x = to_model(image)[0] * _NORM  # (3, H, W)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())  # (H, W, 3)


def _propose(pnet: PNet, x: np.ndarray, cfg: MTCNNConfig, device: torch.device) -> np.ndarray:
    """Stage 1: P-Net over the pyramid -> (N, 4) candidate boxes after regression (edge coordinates)."""
    h, w = x.shape[:2]
    scale = 12.0 / cfg.min_face_size
    per_scale = []
    while min(h, w) * scale >= 12:
        hs, ws = math.ceil(h * scale), math.ceil(w * scale)
        level = cv2.resize(x, (ws, hs), interpolation=cv2.INTER_AREA)  # (hs, ws, 3)
        prob, reg = pnet(torch.from_numpy(level).permute(2, 0, 1)[None].to(device))  # (1, h', w'), (1, 4, h', w')
        prob, reg = prob[0].double().cpu().numpy(), reg[0].double().cpu().numpy()
        iy, ix = np.nonzero(prob >= cfg.thresholds[0])
        if len(iy):
            # Output cell (iy, ix) sees the 12x12 window at (2 ix, 2 iy) of this level; map edges back by the
            # exact size ratio of the level (not the nominal scale), so boxes land on the right pixels.
            sx, sy = w / ws, h / hs
            boxes = np.stack([2 * ix * sx, 2 * iy * sy, (2 * ix + 12) * sx, (2 * iy + 12) * sy], axis=1)
            scores = prob[iy, ix]
            keep = nms(boxes, scores, 0.5)
            per_scale.append((boxes[keep], scores[keep], reg[:, iy, ix].T[keep]))
        scale *= cfg.scale_factor
    if not per_scale:
        return np.zeros((0, 4))
    boxes, scores, regs = (np.concatenate(v) for v in zip(*per_scale, strict=True))
    keep = nms(boxes, scores, 0.7)
    return _regress(boxes[keep], regs[keep])


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """(N, 4) boxes + (N, 4) offsets in units of the box size -> (N, 4) refined boxes."""
    wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)  # (N, 4): w, h, w, h
    return boxes + reg * wh


def _square(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) -> (N, 4) squares with the same centres, side = the longer side, snapped to whole pixels."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
    side = np.maximum(np.round((boxes[:, 2:] - boxes[:, :2]).max(axis=1)), 1)[:, None]  # (N, 1)
    x1y1 = np.round(c - side / 2)
    return np.concatenate([x1y1, x1y1 + side], axis=1)


def _crops(x: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) normalised image, (N, 4) whole-pixel boxes -> (N, size, size, 3), black outside the image."""
    h, w = x.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(np.int64)):
        patch = np.full((y2 - y1, x2 - x1, 3), _PAD, np.float32)
        ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if ix2 > ix1 and iy2 > iy1:
            patch[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1] = x[iy1:iy2, ix1:ix2]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _valid(box: np.ndarray) -> bool:
    return bool(box[2] > box[0] and box[3] > box[1])
