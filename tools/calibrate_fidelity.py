"""Calibrate a model's fidelity dial on *training* faces (never the test faces) and write its table.

    .venv/bin/python tools/calibrate_fidelity.py --model default --faces runs/offline_faces/train
    .venv/bin/python tools/calibrate_fidelity.py --model runs/new-model --faces /tmp/faces15/train   # -> beside it

Every face of ``--faces`` (originals and augmented copies) is degraded once with the paper degradation at the
model's resolution (seed 1000 + 100 i) and restored, seed 0, with each candidate setting (start sigma, guidance,
input blend). Measured per setting (means over the faces): PSNR-Y to the LQ input (*closeness*, what the dial
orders by), PSNR-Y and dlib identity distance to the GT, BRISQUE.

The path, most generative first:
1. the generative end is the largest ``--sigmas`` value whose mean identity distance to the GT is at most
   ``--idd-tolerance`` above the model's default setting (so F = 0 is still the same person); there, each
   ``--guidance`` value above the default is tried first (stronger guidance, more generative);
2. then the sigmas downwards to the smallest, at the default guidance;
3. then ``--blends`` of the input into the smallest-sigma restoration.
Settings whose closeness is not strictly above the previous kept one are dropped, and each anchor's F is its
closeness normalised to [0, 1] (``prefrestore.models.fidelity_dial.table_from_chain``): the dial is monotonic in measured
closeness on these faces by construction.

Output: ``--out``, default ``<model folder>/fidelity.json``, or for the model bundled in the package (whose folder is
not edited) ``src/prefrestore/assets/fidelity/<weights digest>.json``. The JSON carries the table and every
measurement. Prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from prefrestore.eval.control_sweep import Meter, degraded_pairs, face_files, means
from prefrestore.hub import BUNDLED_DIR, resolve
from prefrestore.models.fidelity_dial import TABLE_FILE, asset_path, table_from_chain, weights_digest
from prefrestore.restore.api import load_restorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--faces", type=Path, required=True, help="training-face folder (build_offline_faces.py train/)")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    ap.add_argument("--guidance", type=float, nargs="+", default=[2.0])
    ap.add_argument("--blends", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--idd-tolerance", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = resolve(args.model)
    restorer = load_restorer(str(model_dir), batch_size=args.batch_size)
    d = restorer.model.config.sampling
    files = face_files(args.faces)
    if "test" in args.faces.parts:
        raise SystemExit(f"{args.faces}: calibrate on the train/ split, never on test faces")
    gts, lqs, names = degraded_pairs(files, restorer.resolution)
    meter = Meter()
    default = (d.start_sigma, d.guidance_scale, 0.0)
    sigmas = sorted(set(args.sigmas) | {d.start_sigma})
    guidances = sorted(g for g in set(args.guidance) if g > d.guidance_scale)
    settings = {(s, d.guidance_scale, 0.0) for s in sigmas}
    results: dict[tuple[float, float, float], dict] = {}
    t0 = time.perf_counter()

    def run(setting):
        if setting in results:
            return results[setting]
        s, g, b = setting
        restorer.start_sigma, restorer.guidance_scale = s, g
        out = restorer.restore(lqs, seed=0)
        if b:
            out = [
                ((1 - b) * o.astype("float32") + b * x.astype("float32")).round().clip(0, 255).astype("uint8")
                for o, x in zip(out, lqs, strict=True)
            ]
        results[setting] = means(meter.all(out, lqs, gts))
        return results[setting]

    for setting in tqdm(sorted(settings), desc="sigmas"):
        run(setting)
    ref = results[default]["idd_gt"]
    s_max = max(s for s in sigmas if results[(s, d.guidance_scale, 0.0)]["idd_gt"] <= ref + args.idd_tolerance)
    s_min = min(sigmas)
    chain = [(s_max, g, 0.0) for g in reversed(guidances)]
    chain += [(s, d.guidance_scale, 0.0) for s in sorted((s for s in sigmas if s <= s_max), reverse=True)]
    chain += [(s_min, d.guidance_scale, b) for b in sorted(args.blends)]
    for setting in tqdm(chain, desc="chain"):
        run(setting)
    closeness = [results[c]["psnr_in"] for c in chain]
    table = table_from_chain(chain, closeness, default)
    digest = weights_digest(model_dir)
    out = args.out
    if out is None:
        out = asset_path(digest) if model_dir.resolve() == BUNDLED_DIR.resolve() else model_dir / TABLE_FILE
    record = table.to_dict() | {
        "weights_digest": digest,
        "model": str(args.model),
        "faces": str(args.faces),
        "n_faces": len(names),
        "rule": {
            "closeness": "PSNR-Y to the LQ input",
            "idd_tolerance": args.idd_tolerance,
            "generative_end_sigma": s_max,
        },
        "measurements": [
            {
                "start_sigma": s,
                "guidance_scale": g,
                "input_blend": b,
                **v,
                "on_dial": (s, g, b) in [(p.start_sigma, p.guidance_scale, p.input_blend) for p in table.points],
            }
            for (s, g, b), v in sorted(results.items())
        ],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(table.to_dict(), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
