"""Pick the identity guard's default threshold on *training* faces (never the test faces); prints JSON.

    .venv/bin/python tools/pick_guard_threshold.py --faces runs/corpus/train --model default [--net mobileface]

Every un-augmented training face is degraded once per ``--seeds`` (the paper recipe at the model's resolution, as
tools/calibrate_fidelity.py), restored (seed 0) and colour-fixed against its input as the restore path does before
the guard looks (``--color-fix``, default the restore default, ``restore.control.fix_color``). Measured: the dlib distance from each LQ input to its own
restoration ("ordinary") and to the restoration of a face from another source photo ("swapped", a stand-in for a
restorer that drew another person), by the guard's network (``--net``: dlib, the dlib package's Euclidean
distance; mobileface, 1 - cosine of the torch MobileFace). The pick is the midpoint between the largest ordinary and the smallest swapped
distance when they separate, rounded to 0.01; when they overlap, the smallest 0.01 step that flags at most
``--false-flags`` (1 %) of the ordinary restorations (one heavily degraded outlier would otherwise set the threshold
for everyone and let swaps through; a flagged ordinary face only falls back to the fidelity-1 restoration), and the
JSON says how many swaps it misses. The flag rates of a few thresholds are printed too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from prefrestore.eval.control_sweep import degraded_pairs, face_files
from prefrestore.faces.identity import load_identity_scorer
from prefrestore.metrics.identity import NetIdentityScorer
from prefrestore.restore.api import load_restorer
from prefrestore.restore.control import fix_color
from prefrestore.restore.options import COLOR_MATCHES, RestoreOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, required=True, help="training-face folder (augmented copies are skipped)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1000], help="one paper degradation of each face per seed")
    ap.add_argument("--false-flags", type=float, default=0.01, help="the ordinary restorations a threshold may flag")
    ap.add_argument("--net", choices=("dlib", "mobileface"), default="dlib", help="the guard's network")
    ap.add_argument(
        "--color-fix", choices=COLOR_MATCHES, default=RestoreOptions().color_fix, help="as restore's --color-fix"
    )
    args = ap.parse_args()
    if "test" in args.faces.parts:
        raise SystemExit(f"{args.faces}: pick on the train/ split, never on test faces")
    torch.set_num_threads(args.threads)
    restorer = load_restorer(args.model)
    _, lqs, names = degraded_pairs(face_files(args.faces, augmented=False), restorer.resolution, seeds=args.seeds)
    out = [fix_color(r, q, args.color_fix) for r, q in zip(restorer.restore(lqs, seed=0), lqs, strict=True)]
    source = [n.rsplit("_f", 1)[0] for n in names]  # build_corpus names faces SOURCE_fK (+ _sSEED here)
    rng = np.random.default_rng(0)
    other = []
    for i in range(len(lqs)):
        j = int(rng.integers(len(lqs)))
        while source[j] == source[i]:
            j = int(rng.integers(len(lqs)))
        other.append(j)
    if args.net == "dlib":
        ident = load_identity_scorer()
        if ident is None:
            raise SystemExit("dlib is not installed: pip install -e '.[identity]'")
    else:
        ident = NetIdentityScorer(args.net)
    o = np.array([s.distance for s in ident.compare(lqs, out)])
    s = np.array([d.distance for d in ident.compare(lqs, [out[j] for j in other])])
    if o.max() < s.min():  # they separate: the midpoint
        pick, rule = round(float(o.max() + s.min()) / 2, 2), "midpoint"
    else:  # they overlap: flag at most --false-flags of the ordinary restorations, miss a few swaps
        steps = np.arange(np.floor(o.min() * 100), np.ceil(o.max() * 100) + 1) / 100
        pick = float(next(t for t in steps if (o > t).mean() <= args.false_flags))
        rule = f"the smallest 0.01 step flagging <= {args.false_flags:g} of ordinary restorations (overlap)"
    print(
        json.dumps(
            {
                "faces": len(o),
                "seeds": args.seeds,
                "model": args.model,
                "net": args.net,
                "color_fix": args.color_fix,
                "ordinary": {
                    "max": round(float(o.max()), 3),
                    "p99": round(float(np.quantile(o, 0.99)), 3),
                    "mean": round(float(o.mean()), 3),
                },
                "swapped": {
                    "min": round(float(s.min()), 3),
                    "p05": round(float(np.quantile(s, 0.05)), 3),
                    "mean": round(float(s.mean()), 3),
                },
                "flag_rates": {
                    f"{t:g}": {"ordinary": round(float((o > t).mean()), 3), "swapped": round(float((s > t).mean()), 3)}
                    for t in (
                        (0.42, 0.45, 0.47, 0.5, 0.55, 0.6) if args.net == "dlib" else (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
                    )
                },
                "threshold": pick,
                "rule": rule,
                "at_threshold": {
                    "ordinary": round(float((o > pick).mean()), 3),
                    "swapped": round(float((s > pick).mean()), 3),
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
