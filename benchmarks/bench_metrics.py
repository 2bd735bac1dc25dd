"""Per-image latency of each evaluation metric on real faces, and per-face cost of the metric / loss networks.

    .venv/bin/python benchmarks/bench_metrics.py [--size 512] [--batch 8] [--repeats 3] [--weights-dir DIR]
    .venv/bin/python benchmarks/bench_metrics.py --part networks [--net-sizes 128 256] [--batch 8]

Prints one JSON object. ``--part groups`` (default): for each metric group, the median seconds per image over
--repeats runs after one warm-up (batch time / batch), or the one-line reason it is unavailable here. Inputs: the
offline real faces (skimage astronaut, matplotlib grace_hopper) resized to --size, against a mildly degraded copy.
``--part networks``: seconds per face of LPIPS-Alex / LPIPS-VGG forward and forward+backward (gradient to the
restored image, as the SFT ``lpips_weight`` loss and a differentiable reward use it) at each --net-sizes, and of
the FID Inception forward (inputs resized to 299 inside), in batches of --batch. The fetched weights are used when
present, else random ones (the cost does not depend on the values): ``weights`` says which.
``identity_nets`` (in the default part): per face, the torch identity networks' forward (warp included) and
forward + backward to the input (their cost as a loss or reward).
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
from prefrestore.io.image import uint8_to_unit, unit_to_uint8
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
        unit_to_uint8(degrade(uint8_to_unit(g), cfg, torch.Generator().manual_seed(i))[0]) for i, g in enumerate(gts)
    ]
    return lqs, gts


def _sync() -> None:
    """Wait for queued GPU work, so a timing covers the kernels and not only their launch."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _median_seconds(repeats: int, fn, *args) -> float:
    fn(*args)  # warm-up
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def _forward(model: torch.nn.Module, *inputs: torch.Tensor) -> None:
    model(*inputs)


def _forward_backward(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> None:
    model(a.clone().requires_grad_(True), b).sum().backward()


def network_costs(sizes: list[int], batch: int, repeats: int, device: str, weights_dir: str | None) -> dict:
    """{network: {"weights": fetched|random, "<size>px": {"forward": s/face, "forward_backward": s/face}}}."""
    from prefrestore.metrics.fid import InceptionV3FID, load_inception
    from prefrestore.metrics.lpips import LPIPS, load_lpips
    from prefrestore.metrics.weights import MetricUnavailable

    out: dict[str, dict] = {}
    g = torch.Generator().manual_seed(0)
    for net in ("alex", "vgg"):
        try:
            model, weights = load_lpips(net, device=device, override=weights_dir), "fetched"  # type: ignore[arg-type]
        except MetricUnavailable:
            model, weights = LPIPS(net).to(device), "random"  # type: ignore[arg-type]
        row: dict[str, object] = {"weights": weights}
        for size in sizes:
            a = torch.rand(batch, 3, size, size, generator=g).to(device)
            b = torch.rand(batch, 3, size, size, generator=g).to(device)
            row[f"{size}px"] = {
                "forward": round(_median_seconds(repeats, _forward, model, a, b) / batch, 4),
                "forward_backward": round(_median_seconds(repeats, _forward_backward, model, a, b) / batch, 4),
            }
        out[f"lpips_{net}"] = row
    try:
        inception, weights = load_inception(device=device, override=weights_dir), "fetched"
    except MetricUnavailable:
        inception, weights = InceptionV3FID().to(device), "random"
    row = {"weights": weights}
    for size in sizes:
        x = torch.rand(batch, 3, size, size, generator=g).to(device)
        row[f"{size}px"] = {"forward": round(_median_seconds(repeats, _forward, inception, x) / batch, 4)}
    out["fid_inception"] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights-dir")
    ap.add_argument(
        "--part",
        choices=["groups", "networks", "all"],
        default="groups",
        help="metric groups on real faces, the networks' per-face cost, or both",
    )
    ap.add_argument("--net-sizes", type=int, nargs="+", default=[128, 256], help="face sizes for --part networks")
    args = ap.parse_args()
    out: dict[str, object] = {
        "size": args.size,
        "batch": args.batch,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    if args.part in ("networks", "all"):
        out["network_seconds_per_face"] = network_costs(
            args.net_sizes, args.batch, args.repeats, args.device, args.weights_dir
        )
    if args.part == "networks":
        print(json.dumps(out, indent=2))
        return 0
    out.update(seconds_per_image={}, unavailable={})
    lqs, gts = faces(args.size, args.batch)
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
            entry[key] = round(_median_seconds(args.repeats, fn) / len(gts), 4)
        res[name] = entry
    return res


if __name__ == "__main__":
    raise SystemExit(main())
