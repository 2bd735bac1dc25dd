"""Per-image latency of each evaluation metric on real faces, CPU or GPU.

    .venv/bin/python benchmarks/bench_metrics.py [--size 512] [--batch 8] [--repeats 3] [--weights-dir DIR]

Prints one JSON object: for each metric group, the median seconds per image over --repeats runs after one warm-up
(batch time / batch), or the one-line reason it is unavailable here. Inputs: the offline real faces (skimage
astronaut, matplotlib grace_hopper) resized to --size, against a mildly degraded copy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from prefrestore.degradations import degrade, preset
from prefrestore.image import uint8_to_unit, unit_to_uint8
from prefrestore.metrics.suite import GROUPS, ImageScorer


def faces(size: int, batch: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import matplotlib.cbook as cbook
    import skimage.data
    from PIL import Image

    grace = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))[40:552]
    srcs = [skimage.data.astronaut(), grace]
    gts = [np.asarray(Image.fromarray(srcs[i % 2]).resize((size, size), Image.BICUBIC)) for i in range(batch)]
    cfg = preset("gfpgan")
    lqs = [
        unit_to_uint8(degrade(uint8_to_unit(g), cfg, torch.Generator().manual_seed(i))[0])
        for i, g in enumerate(gts)
    ]
    return lqs, gts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights-dir")
    args = ap.parse_args()
    lqs, gts = faces(args.size, args.batch)
    out: dict[str, object] = {
        "size": args.size,
        "batch": args.batch,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "seconds_per_image": {},
        "unavailable": {},
    }
    for group, names in GROUPS.items():
        scorer = ImageScorer(names, device=args.device, weights_dir=args.weights_dir, landmarks="auto")
        if not scorer.available():
            out["unavailable"][group] = next(iter(scorer.unavailable.values()))  # type: ignore[index]
            continue
        scorer.score(lqs[:1], gt=gts[:1])  # warm-up (model load, first-call allocations)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            scorer.score(lqs, gt=gts)
            times.append((time.perf_counter() - t0) / args.batch)
        out["seconds_per_image"][group] = round(statistics.median(times), 4)  # type: ignore[index]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
