"""The autoencoder's reconstruction PSNR on clean faces: the ceiling of any restoration decoded through it.

    .venv/bin/python tools/ae_ceiling.py MODEL [MODEL ...] --faces runs/corpus/test
    .venv/bin/python tools/ae_ceiling.py MODEL [MODEL ...] --pairs runs/small/rl_pairs_photo

Prints JSON: per model, mean PSNR-Y / PSNR-RGB / SSIM-Y of decode(encode(face)) over the faces (measuring only:
nothing is tuned on them). With ``--pairs`` (a ``make-testset`` folder: lq/ and gt/), the autoencoder's own
restoration instead: decode(encode(lq), lq) (the LQ skip, if the model has one) against gt, next to the LQ itself
("input"; at the model's size, i.e. bicubic): the part of a restoration that comes from stage 3a, without sampling.
Use it on pairs made from training faces to pick stage-3 settings; the held-out sets are for the final report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.hub import resolve
from prefrestore.io.image import list_images, load_rgb, resize, to_model, to_unit
from prefrestore.metrics.pixel import psnr, ssim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--faces", type=Path)
    src.add_argument("--pairs", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    for ref in args.models:
        model = from_pretrained(resolve(ref)).eval()
        S = model.config.resolution
        if args.pairs is None:
            x = gt = to_model([resize(load_rgb(p), (S, S)) for p in list_images(args.faces)])
        else:
            gts = list_images(args.pairs / "gt")
            x = to_model([resize(load_rgb(args.pairs / "lq" / p.name), (S, S)) for p in gts])
            gt = to_model([resize(load_rgb(p), (S, S)) for p in gts])
            if "input" not in out:
                out["input"] = _scores(x, gt)
        rec = torch.cat([_restore(model, x[i : i + 16], args.pairs is not None) for i in range(0, len(x), 16)])
        out[ref] = _scores(rec, gt)
    print(json.dumps(out, indent=1))


@torch.no_grad()
def _restore(model, x: torch.Tensor, skip: bool) -> torch.Tensor:
    """x: (B, 3, S, S) in [-1, 1] -> decode(encode(x)) (with the LQ skip fed x when ``skip``), same shape and range."""
    lq = x if skip and model.lq_skip is not None else None
    return model.decode_latent(model.encode_latent(x), lq=lq).float().clamp(-1, 1)


def _scores(x: torch.Tensor, gt: torch.Tensor) -> dict:
    a, b = to_unit(x), to_unit(gt)
    return {
        "faces": len(x),
        "psnr_y": float(psnr(a, b).mean()),
        "psnr_rgb": float(psnr(a, b, space="rgb").mean()),
        "ssim_y": float(ssim(a, b).mean()),
    }


if __name__ == "__main__":
    main()
