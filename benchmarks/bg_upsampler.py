"""Real-ESRGAN x4 against Lanczos on a 256 px crop: PSNR, sharpness, time, tiled-vs-untiled agreement; writes a
comparison image.

    .venv/bin/python benchmarks/bg_upsampler.py [--weights DIR] [--image PATH] [--out docs/reports/realesrgan]

The 256 px crop (default: the face of scikit-image's astronaut, NASA, public domain) is the reference; it is
reduced 4x (area averaging) to 64 px and enlarged 4x again by each method. Prints one JSON object:
PSNR-Y / PSNR-RGB against the crop, sharpness (mean gradient magnitude, relative to the crop's own), seconds,
and the tiled-vs-untiled difference (tile 24 px, overlap 8/16/32 px; max, mean, 99th percentile) on the 0-255
scale.
Writes OUT/comparison.png: LQ (nearest) | Lanczos | Real-ESRGAN | reference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from prefrestore.faces.paste import ResampleUpsampler
from prefrestore.io.image import load_rgb, resize, save_rgb
from prefrestore.metrics.pixel import psnr
from prefrestore.restore import realesrgan


def sharpness(img: np.ndarray) -> float:
    """Mean gradient magnitude (Sobel) of the luma of a uint8/float (H, W, 3) RGB image on [0, 255]."""
    y = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    gx, gy = cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)
    return float(np.mean(np.hypot(gx, gy)))


def _unit(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="converted folder (default: the user cache)")
    ap.add_argument("--image", default=None, help="an RGB image; its central 256 px crop is used")
    ap.add_argument("--out", default="docs/reports/realesrgan")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.image:
        img = load_rgb(args.image)
        h, w = img.shape[:2]
        ref = img[(h - 256) // 2 : (h - 256) // 2 + 256, (w - 256) // 2 : (w - 256) // 2 + 256]
    else:
        from skimage.data import astronaut

        ref = astronaut()[0:256, 110:366]  # the face, hair and collar
    ref = np.ascontiguousarray(ref)
    lq = np.round(ResampleUpsampler()(ref.astype(np.float32), (64, 64))).astype(
        np.uint8
    )  # area reduction, (64, 64, 3)
    lq_f = lq.astype(np.float32)

    up = realesrgan.build(folder=args.weights, tile=0)
    t0 = time.perf_counter()
    sr = up(lq_f, (256, 256))
    t_sr = time.perf_counter() - t0
    t0 = time.perf_counter()
    lz = ResampleUpsampler("lanczos")(lq_f, (256, 256))
    t_lz = time.perf_counter() - t0
    tiling = {}
    x = torch.from_numpy(lq_f.transpose(2, 0, 1).copy())[None] / 255.0
    full = realesrgan.upscale_tiled(up.model, x, tile=0, overlap=0)
    for overlap in (8, 16, 32):
        d = (realesrgan.upscale_tiled(up.model, x, tile=24, overlap=overlap) - full).abs().flatten() * 255
        tiling[f"tile 24, overlap {overlap}"] = {
            "max": round(float(d.max()), 2),
            "mean": round(float(d.mean()), 3),
            "p99": round(float(d.quantile(0.99)), 2),
        }

    ref_t = _unit(ref)
    rows = {}
    for name, out, secs in (("lanczos", lz, t_lz), ("realesrgan", sr, t_sr)):
        o = np.round(out).clip(0, 255).astype(np.uint8)
        rows[name] = {
            "psnr_y": round(float(psnr(_unit(o), ref_t, space="y")[0]), 2),
            "psnr_rgb": round(float(psnr(_unit(o), ref_t, space="rgb")[0]), 2),
            "sharpness_vs_reference": round(sharpness(o) / sharpness(ref), 3),
            "seconds": round(secs, 3),
        }
    out_dir = Path(args.out)
    panels = [
        resize(lq, (256, 256), resample="nearest"),
        np.round(lz).astype(np.uint8),
        np.round(sr).astype(np.uint8),
        ref,
    ]
    save_rgb(out_dir / "comparison.png", np.concatenate(panels, axis=1))
    print(
        json.dumps(
            {
                "crop": "astronaut face 256 px" if not args.image else args.image,
                "lq": "64 px (area 4x)",
                "threads": torch.get_num_threads(),
                "results": rows,
                "tiled_vs_untiled_abs_diff_0_255": tiling,
                "image": str(out_dir / "comparison.png"),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
