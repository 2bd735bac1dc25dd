"""The autoencoder's reconstruction PSNR on clean faces: the ceiling of any restoration decoded through it.

    .venv/bin/python tools/ae_ceiling.py MODEL [MODEL ...] --faces runs/corpus/test

Prints JSON: per model, mean PSNR-Y / PSNR-RGB / SSIM-Y of decode(encode(face)) over the faces (measuring only:
nothing is tuned on them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.hub import resolve
from prefrestore.image import list_images, load_rgb, resize, to_model, to_unit
from prefrestore.metrics.fidelity import psnr, ssim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--faces", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    for ref in args.models:
        model = from_pretrained(resolve(ref)).eval()
        S = model.config.resolution
        x = to_model([resize(load_rgb(p), (S, S)) for p in list_images(args.faces)])
        with torch.no_grad():
            rec = model.decode_latent(model.encode_latent(x)).float().clamp(-1, 1)
        a, b = to_unit(rec), to_unit(x)
        out[ref] = {"faces": len(x), "psnr_y": float(psnr(a, b).mean()), "psnr_rgb": float(psnr(a, b, space="rgb").mean()),
                    "ssim_y": float(ssim(a, b).mean())}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
