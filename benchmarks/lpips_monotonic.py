"""LPIPS of a fixed real photo against degraded copies of itself: blur, JPEG and noise ladders (docs/metrics.md).

    .venv/bin/python benchmarks/lpips_monotonic.py [--nets alex vgg] [--markdown]

The photo is skimage's astronaut, rows 0-256 and columns 96-352 (face and suit, 256 x 256). Blur: OpenCV Gaussian
with sigma 0.5-4; JPEG: OpenCV at quality 90-10; noise: Gaussian with sigma 5-40 on 0..255, seed 0, rounded and
clipped. The same ladders are asserted monotone in tests/test_metric_weights.py. Needs the fetched weights
(``prefrestore weights fetch lpips_alex lpips_vgg``). Prints JSON, or a Markdown table with --markdown.
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import skimage.data
import torch

from prefrestore.metrics.lpips import load_lpips

LADDERS = {"blur": (0.5, 1.0, 2.0, 4.0), "jpeg": (90, 70, 50, 30, 10), "noise": (5, 10, 20, 40)}
LABELS = {"blur": "Gaussian blur sigma", "jpeg": "JPEG quality", "noise": "Gaussian noise sigma (0..255)"}


def photo() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[0:256, 96:352])


def degraded(kind: str, level: float) -> np.ndarray:
    a = photo()
    if kind == "blur":
        return cv2.GaussianBlur(a, (0, 0), level)
    if kind == "jpeg":
        _, buf = cv2.imencode(".jpg", a[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return np.clip(a + np.random.default_rng(0).standard_normal(a.shape) * level, 0, 255).round().astype(np.uint8)


def unit(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W) RGB in [0, 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["alex", "vgg"], choices=["alex", "vgg"])
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    ref = unit(photo())
    out: dict[str, dict[str, dict[str, float]]] = {}
    for net in args.nets:
        model = load_lpips(net)
        with torch.no_grad():
            out[net] = {
                kind: {str(lv): round(model(ref, unit(degraded(kind, lv))).item(), 4) for lv in levels}
                for kind, levels in LADDERS.items()
            }
    if not args.markdown:
        print(json.dumps(out, indent=2))
        return 0
    print("| degradation | level | " + " | ".join(f"LPIPS-{n}" for n in args.nets) + " |")
    print("|---|---|" + "---|" * len(args.nets))
    for kind, levels in LADDERS.items():
        for lv in levels:
            print(f"| {LABELS[kind]} | {lv} | " + " | ".join(f"{out[n][kind][str(lv)]:.4f}" for n in args.nets) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
