"""Whole-photo restoration time per photo, split into detection, alignment, restoration and paste-back, by batch size.

    .venv/bin/python benchmarks/bench_photo.py [--model identity|tiny|...] [--batch-sizes 1 4 8 16] [--photos 4]
        [--threads N] [--no-t1 | --photo PATH]

The photo: 1920x1280 composed from real photos (insightface's t1.jpg with six people, skimage's astronaut,
matplotlib's Grace Hopper, each at two sizes), ten faces in all. t1.jpg comes from --t1, the test cache
(.pytest_cache/d/insightface-2.1/t1.jpg, filled by tests/test_faces_detect.py), or is left out (``--no-t1``, or
when not found: four faces). ``--photo PATH`` times that photo instead (e.g. skimage's 512 px astronaut: one face).
``--model identity`` (default) times the pipeline around a restorer that returns its input, at --resolution;
any other value is loaded with prefrestore.restore.api.load_restorer (e.g. ``--model tiny --steps 4``).
Prints one JSON object: seconds per photo per stage (mean over --photos photos after one warm-up photo; restore
is the batch time shared out by faces), and faces per second. Compare rows of one run, not machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from prefrestore.faces.detect import build_detector
from prefrestore.io.image import load_rgb, resize
from prefrestore.io.photo_io import Photo
from prefrestore.restore.pipeline import PipelineConfig, restore_photos

T1_CACHE = Path(".pytest_cache/d/insightface-2.1/t1.jpg")


class IdentityRestorer:
    def __init__(self, resolution: int):
        self.resolution = resolution

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        return [f.copy() for f in faces]


def compose_photo(t1: Path | None) -> np.ndarray:
    """uint8 (1280, 1920, 3): a textured background with the real photos pasted in."""
    import matplotlib
    import skimage

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1280, 0:1920].astype(np.float32)
    base = np.stack([90 + 40 * xx / 1920, 100 + 30 * yy / 1280, 110 + 0 * xx], axis=2)
    canvas = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)

    def put(img: np.ndarray, x: int, y: int, width: int) -> None:
        height = round(img.shape[0] * width / img.shape[1])
        canvas[y : y + height, x : x + width] = resize(img, (width, height))

    if t1 is not None:
        put(load_rgb(t1), 20, 40, 1150)
    astronaut = load_rgb(Path(skimage.__file__).parent / "data" / "astronaut.png")
    grace = load_rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    put(astronaut, 1220, 30, 660)
    put(grace, 1250, 720, 420)
    put(grace, 200, 1060, 180)
    put(astronaut, 520, 1060, 200)
    return canvas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default="identity", help="identity (default) or a prefrestore.restore.api model reference"
    )
    ap.add_argument("--resolution", type=int, default=512, help="crop size of the identity restorer (default: 512)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps for a real model")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--photos", type=int, default=4, help="photos timed per batch size (default: 4)")
    ap.add_argument("--upscale", type=float, default=2.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--t1", type=Path, default=None, help="insightface's t1.jpg (default: the test cache)")
    ap.add_argument("--no-t1", action="store_true", help="leave t1.jpg out: the 1920x1280 photo has four faces")
    ap.add_argument("--photo", type=Path, default=None, help="time this photo instead of the composed one")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t1 = None if args.no_t1 or args.photo else args.t1 or (T1_CACHE if T1_CACHE.exists() else None)
    photo = Photo(load_rgb(args.photo) if args.photo else compose_photo(t1))
    if args.model == "identity":
        restorer = IdentityRestorer(args.resolution)
    else:
        from prefrestore.restore.api import load_restorer

        restorer = load_restorer(args.model, device=args.device, steps=args.steps)
    detector = build_detector("mtcnn", device=args.device)
    stages = ("detect", "align", "restore", "paste")

    rows = []
    for bs in args.batch_sizes:
        config = PipelineConfig(upscale=args.upscale, batch_size=bs)
        list(restore_photos([(0, photo)], restorer, detector, config))  # warm-up (allocations, kernels)
        t0 = time.perf_counter()
        results = list(restore_photos([(i, photo) for i in range(args.photos)], restorer, detector, config))
        wall = time.perf_counter() - t0
        faces = sum(len(r.faces) for r in results)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        per_photo = {k: statistics.mean(r.timings.get(k, 0.0) for r in results) for k in stages}
        per_photo["total_wall"] = wall / args.photos
        rows.append(
            {
                "batch_size": bs,
                "seconds_per_photo": {k: round(v, 4) for k, v in per_photo.items()},
                "faces_per_second": round(faces / wall, 2),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "whole photo (detect, align, restore, paste back)",
                "photo_size": list(photo.size),
                "faces_per_photo": len(results[0].faces),
                "photo": str(args.photo) if args.photo else "composed 1920x1280",
                "t1_included": t1 is not None,
                "restorer": args.model,
                "resolution": restorer.resolution,
                "steps": args.steps,
                "upscale": args.upscale,
                "photos_per_batch_size": args.photos,
                "device": args.device,
                "torch_threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
                "results": rows,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
