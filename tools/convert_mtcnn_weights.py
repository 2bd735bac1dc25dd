# ruff: noqa: T201  (a command-line tool: it reports to stdout)
"""Convert facenet-pytorch 2.6.0's MTCNN weights to ``src/prefrestore/assets/mtcnn.safetensors``.

Reproducible: the wheel and the three ``.pt`` files inside it are checked against the SHA-256 sums below, the
output has sorted keys and fixed metadata, and ``--check`` compares the converted nets with the original
layout on random inputs. Usage::

    python tools/convert_mtcnn_weights.py                       # pip-downloads the wheel (no dependencies)
    python tools/convert_mtcnn_weights.py --wheel facenet_pytorch-2.6.0-py3-none-any.whl --check

The only change to the tensors: R-Net's ``dense4`` and O-Net's ``dense5`` take their inputs flattened in
(W, H, C) order in facenet-pytorch (a leftover of the TensorFlow port, which permutes before flattening);
their weight columns are reordered to PyTorch's (C, H, W) order so our nets can use a plain ``flatten``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

WHEEL = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
FILES_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
# dense layer -> (channels, height, width) of the feature map it flattens
REORDER = {"rnet.dense4.weight": (64, 3, 3), "onet.dense5.weight": (128, 3, 3)}
ASSETS = Path(__file__).resolve().parents[1] / "src" / "prefrestore" / "assets"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "facenet-pytorch==2.6.0", "-d", str(dest)], check=True
    )
    return dest / WHEEL


def read_wheel(wheel: Path) -> tuple[dict[str, dict[str, torch.Tensor]], str]:
    """-> ({net: original state dict}, licence text), every file hash-checked."""
    data = wheel.read_bytes()
    if sha256(data) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {sha256(data)} is not facenet-pytorch 2.6.0's {WHEEL_SHA256}")
    states = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for net, digest in FILES_SHA256.items():
            raw = z.read(f"facenet_pytorch/data/{net}.pt")
            if sha256(raw) != digest:
                raise SystemExit(f"{wheel}: {net}.pt SHA-256 mismatch")
            states[net] = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        licence = z.read("facenet_pytorch-2.6.0.dist-info/LICENSE.md").decode()
    return states, licence


def convert(states: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    out = {}
    for net, state in states.items():
        for key, value in state.items():
            name = f"{net}.{key}"
            if name in REORDER:
                c, h, w = REORDER[name]
                # columns indexed (w, h, c) -> (c, h, w)
                value = value.reshape(-1, w, h, c).permute(0, 3, 2, 1).reshape(value.shape[0], -1)
            out[name] = value.float().contiguous()
    return dict(sorted(out.items()))


def save_sorted(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write the safetensors format with sorted keys in the JSON header, so the file is byte-reproducible
    (safetensors' own writer orders metadata through a hash map)."""
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name, t in sorted(tensors.items()):
        assert t.dtype == torch.float32
        raw = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to 8-byte alignment with spaces
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def check(states: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Our nets with the converted file == the original layout (conv stack, (W, H, C) flatten, dense) on noise."""
    from prefrestore.faces.mtcnn import load_nets

    _, rnet, onet = load_nets("cpu")
    torch.manual_seed(0)
    for net, ours, size, dense in (("rnet", rnet, 24, "dense4"), ("onet", onet, 48, "dense5")):
        x = torch.randn(8, 3, size, size)
        feats: dict[str, torch.Tensor] = {}
        getattr(ours, dense).register_forward_hook(lambda m, inp, out, feats=feats: feats.update(inp=inp[0]))
        got = ours(x)[0]
        sd = states[net]
        c, h, w = REORDER[f"{net}.{dense}.weight"]
        flat_whc = feats["inp"].reshape(-1, c, h, w).permute(0, 3, 2, 1).reshape(len(x), -1)  # original order
        ref_hidden = torch.nn.functional.linear(flat_whc, sd[f"{dense}.weight"], sd[f"{dense}.bias"])
        got_hidden = getattr(ours, dense)(feats["inp"])
        err = (ref_hidden - got_hidden).abs().max().item()
        print(f"{net}: max |dense output difference| = {err:.2e}; probs {got[:3].tolist()}")
        assert err < 1e-4, f"{net} dense reorder is wrong"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="facenet-pytorch 2.6.0 wheel (default: pip download it)")
    parser.add_argument("--out", type=Path, default=ASSETS / "mtcnn.safetensors")
    parser.add_argument("--check", action="store_true", help="verify the converted dense layers against the original")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        states, licence = read_wheel(wheel)
    tensors = convert(states)
    metadata = {
        "format_version": "1",
        "source": f"{WHEEL} (sha256 {WHEEL_SHA256}), facenet_pytorch/data/{{pnet,rnet,onet}}.pt",
        "license": "MIT, Copyright (c) 2019 Timothy Esler; see LICENSE-mtcnn.txt",
        "conversion": "keys prefixed pnet./rnet./onet.; rnet.dense4 and onet.dense5 input columns (W,H,C)->(C,H,W)",
        **{f"sha256_{k}": v for k, v in FILES_SHA256.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_sorted(tensors, args.out, metadata)
    header = (
        "The MTCNN weights in mtcnn.safetensors are converted from facenet-pytorch 2.6.0\n"
        "(https://github.com/timesler/facenet-pytorch, files facenet_pytorch/data/{pnet,rnet,onet}.pt) by\n"
        "tools/convert_mtcnn_weights.py, and are distributed under that project's licence:\n\n"
    )
    (args.out.parent / "LICENSE-mtcnn.txt").write_text(header + licence.strip() + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {sha256(args.out.read_bytes())})")
    back = load_file(str(args.out))
    assert all(torch.equal(back[k], v) for k, v in tensors.items()) and back.keys() == tensors.keys()
    if args.check:
        check(states, args.out)


if __name__ == "__main__":
    main()
