"""Pick the ``classical`` baseline's parameters (``eval.restorers.ClassicalRestorer``) on TRAINING faces only.

    .venv/bin/python tools/tune_classical.py --faces runs/corpus/train [--n 40]

Takes the first ``--n`` un-augmented training faces of the corpus (``*_fK.png``; the test split is never read),
degrades each with the "photo" and "paper" presets scaled to 128 px (2 seeds each), and grid-searches NL-means
strength ``h`` in {0, 3, 6, 10} x unsharp gain ``amount`` in {0, 0.5, 1, 1.5, 2} x ``sigma`` in {1, 1.5, 2, 3} for the
highest mean PSNR-Y over both recipes. Prints JSON: the best parameters and the whole grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

import numpy as np
import torch

from prefrestore.degradations import preset, scaled
from prefrestore.eval.restorers import ClassicalRestorer
from prefrestore.eval.testset import make_pair
from prefrestore.io.image import load_rgb, to_model, to_unit
from prefrestore.metrics.pixel import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=Path("runs/corpus/train"))
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    if "test" in args.faces.parts:
        raise SystemExit(f"{args.faces}: refusing to tune on a test split")
    files = sorted(p for p in args.faces.glob("*.png") if re.search(r"_f\d+\.png$", p.name))[: args.n]
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name in ("photo", "paper"):
        deg = scaled(preset(name), args.size / 512)
        pairs[name] = [
            make_pair(load_rgb(p), deg, 1000 * k + i, args.size)[:2] for i, p in enumerate(files) for k in range(2)
        ]
    grid = []
    for h, amount, sigma in itertools.product((0.0, 3.0, 6.0, 10.0), (0.0, 0.5, 1.0, 1.5, 2.0), (1.0, 1.5, 2.0, 3.0)):
        if amount == 0 and sigma != 1.0:
            continue
        r = ClassicalRestorer(args.size, h=h, amount=amount, sigma=sigma)
        row = {"h": h, "amount": amount, "sigma": sigma}
        for name, ps in pairs.items():
            out = r.restore([lq for _, lq in ps])
            row[name] = float(psnr(to_unit(to_model(out)), to_unit(to_model([gt for gt, _ in ps]))).mean())
        row["mean"] = (row["photo"] + row["paper"]) / 2
        grid.append(row)
    best = max(grid, key=lambda r: r["mean"])
    print(json.dumps({"faces": len(files), "pairs_per_recipe": len(files) * 2, "best": best, "grid": grid}, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
