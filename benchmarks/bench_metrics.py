"""Per-image latency of each evaluation metric on real faces, CPU or GPU.

    .venv/bin/python benchmarks/bench_metrics.py [--size 512] [--batch 8] [--repeats 3] [--weights-dir DIR]

Prints one JSON object: for each metric group, the median seconds per image over --repeats runs after one warm-up
(batch time / batch), or the one-line reason it is unavailable here; and ``identity_nets``: per face, the torch
identity networks' forward (warp included) and forward + backward to the input (their cost as a loss or reward). Inputs: the offline real faces (skimage
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
    out["identity_nets"] = identity_net_costs(gts, args)
    print(json.dumps(out, indent=2))
    return 0


def identity_net_costs(gts: list[np.ndarray], args: argparse.Namespace) -> dict[str, object]:
    """Seconds per face of dlib-ResNet and MobileFace on FFHQ-aligned crops (median of --repeats after a warm-up):
    ``forward`` (no grad) and ``forward_backward`` (gradient of the embedding sum to the input), or why not."""
    from prefrestore.metrics.identity import IDENTITY_NETS, load_identity_net
    from prefrestore.metrics.weights import MetricUnavailable

    x = uint8_to_unit(np.stack(gts)).to(args.device)  # (B, 3, S, S)
    res: dict[str, object] = {}
    for name in IDENTITY_NETS:
        try:
            net = load_identity_net(name, device=args.device, override=args.weights_dir)
        except MetricUnavailable as err:
            res[name] = str(err)
            continue

        def fwd(net: torch.nn.Module = net) -> None:
            with torch.no_grad():
                net(x)

        def fwd_bwd(net: torch.nn.Module = net) -> None:
            xi = x.clone().requires_grad_()
            net(xi).sum().backward()

        entry = {}
        for key, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
            fn()
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                if args.device != "cpu":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) / len(gts))
            entry[key] = round(statistics.median(times), 4)
        res[name] = entry
    return res


if __name__ == "__main__":
    raise SystemExit(main())
