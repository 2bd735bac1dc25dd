"""Pick the sampling start sigma of a model on validation faces from the *training* set (never the test faces).

    .venv/bin/python tools/pick_start_sigma.py runs/default/default-stage3/final --faces runs/offline_faces/train \
        --candidates 0.1 0.2 0.3 --out runs/default/start_sigma.json

Restores the un-augmented training faces (files without ``_aNNN``) from fixed paper degradations (scaled to the
model's resolution, seeds 1000 + i; ``--presets`` adds others, e.g. ``photo``) from each candidate start sigma (seed 0,
``--steps`` DPM-Solver++(2M) steps, no CFG: as shipped) and writes mean PSNR-Y per candidate over all recipes. The pick is the candidate with the highest mean PSNR-Y; a tie within 0.05 dB goes
to the larger sigma (more of the model's own prior). Prints the JSON; the last line is the picked value alone.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.degradations import apply, preset, sample_params, scaled
from prefrestore.io.image import from_model, load_rgb, to_model
from prefrestore.metrics.pixel import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--faces", type=Path, required=True, help="training-face folder (augmented copies are skipped)")
    ap.add_argument("--candidates", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="DPM-Solver++(2M) steps (as shipped)")
    ap.add_argument("--presets", nargs="+", default=["paper"], help="degradation recipes averaged (scaled to S)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = from_pretrained(args.model)
    S = model.config.resolution
    files = sorted(p for p in args.faces.glob("*.png") if not re.search(r"_a\d+$", p.stem))
    gt = to_model([load_rgb(p) for p in files])  # (N, 3, S, S) in [-1, 1]
    lqs = []
    for name in args.presets:
        cfg = scaled(preset(name), S / 512)
        lqs.append(
            to_model(
                from_model(
                    torch.stack(
                        [
                            apply((g + 1) / 2, sample_params(cfg, torch.Generator().manual_seed(1000 + i))) * 2 - 1
                            for i, g in enumerate(gt)
                        ]
                    )
                )
            )
        )  # quantised to 8 bits, as the training LQs
    scores = {}
    for s in args.candidates:
        vals = []
        for lq in lqs:
            for b in range(0, len(files), 16):
                gens = [torch.Generator().manual_seed(0) for _ in range(len(lq[b : b + 16]))]
                out = model.restore(
                    lq[b : b + 16],
                    generators=gens,
                    steps=args.steps,
                    solver="dpm++2m",
                    guidance_scale=1.0,
                    start_sigma=s,
                )
                vals.append(psnr((out + 1) / 2, (gt[b : b + 16] + 1) / 2))
        scores[s] = float(torch.cat(vals).mean())
    best = max(scores.values())
    pick = max(s for s, v in scores.items() if v >= best - 0.05)
    result = {"model": str(args.model), "faces": [p.name for p in files], "psnr_y": scores, "start_sigma": pick}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(pick)


if __name__ == "__main__":
    main()
