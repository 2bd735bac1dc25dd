"""Pick the width of the colour fix's low-pass (``BlendConfig.color_sigma``) on *training* pairs, by what the fix is
for: the restored face's colour closer to the truth, at no cost to anything else.

    .venv/bin/python tools/pick_color_sigma.py --model default \
        --pairs runs/small/rl_pairs_photo runs/small/rl_pairs_paper --out pick-color.json

The lowfreq fix (``faces.paste.match_color``) replaces the restoration's low frequencies by the input's: below the
Gaussian ``color_sigma`` x S it keeps the input, above it the restorer. Too narrow a low-pass also brings back the
input's blur, noise and JPEG blocks at that scale, which the restorer had removed.

Each pairs folder has ``lq/`` and ``gt/`` with the same file names (``prefrestore make-testset`` or the training
pairs of ``tools/train_small_model.sh``). The model restores every LQ once (bicubic to its resolution first, seed 0,
no controls: ``Pipeline.restore_crops``, as ``prefrestore eval`` does); each candidate sigma then colour-fixes those
restorations against the same bicubic LQ, as ``--color-fix lowfreq`` does (``restore.control.fix_color``). Per candidate and folder it reports
the mean CIEDE2000 of the face-region mean colour to the GT and to the input (``metrics.color.face_delta_e``) and
the metrics of ``--metrics`` against the GT (``prefrestore eval``'s scorers), "none" being the raw restorations.
The pick: the lowest mean colour difference to the GT summed over the folders. Prints the JSON; the last line is
the picked sigma alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from prefrestore.io.image import list_images, load_rgb, resize
from prefrestore.metrics.color import face_delta_e
from prefrestore.metrics.suite import ImageScorer
from prefrestore.restore.control import fix_color
from prefrestore.restore.loaded import load_pipeline
from prefrestore.restore.options import RestoreSettings


def load_pairs(folder: Path, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """-> LQs bicubic to (size, size), GTs as stored (uint8 RGB), in file-name order."""
    names = [p.name for p in list_images(folder / "gt")]
    return [resize(load_rgb(folder / "lq" / n), (size, size)) for n in names], [
        load_rgb(folder / "gt" / n) for n in names
    ]


def evaluate(raw, lqs, gts, sigma: float | None, scorer: ImageScorer, batch: int) -> dict[str, float]:
    """Mean colour differences and metrics of the restorations fixed at ``sigma`` (None: unfixed)."""
    mode = "none" if sigma is None else "lowfreq"
    fixed = [fix_color(r, q, mode, sigma=sigma) for r, q in zip(raw, lqs, strict=True)]
    sized = [f if f.shape == g.shape else resize(f, (g.shape[1], g.shape[0])) for f, g in zip(fixed, gts, strict=True)]
    rows: list[dict[str, float]] = []
    for b in range(0, len(sized), batch):
        rows += scorer.score(sized[b : b + batch], gt=gts[b : b + batch])
    out = {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}
    out["delta_e_gt"] = float(
        np.mean([face_delta_e(resize(g, f.shape[1::-1]), f) for f, g in zip(fixed, gts, strict=True)])
    )
    out["delta_e_input"] = float(np.mean([face_delta_e(q, f) for f, q in zip(fixed, lqs, strict=True)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--pairs", nargs="+", required=True, type=Path, help="folders with lq/ and gt/")
    ap.add_argument("--sigmas", nargs="+", type=float, default=[0.03, 0.06, 0.1, 0.15, 0.25])
    ap.add_argument("--metrics", default="psnr_y,ssim_y,lpips_alex,lpips_vgg,id_dist_dlib")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    pipe = load_pipeline(RestoreSettings.from_flat({"model": args.model, "identity": "off"}), detector=False)
    scorer = ImageScorer(tuple(args.metrics.split(",")))
    res: dict = {"model": args.model, "sigmas": args.sigmas, "folders": {}}
    for folder in args.pairs:
        lqs, gts = load_pairs(folder, pipe.resolution)
        raw: list[np.ndarray] = []
        for b in tqdm(range(0, len(lqs), args.batch), desc=f"restore {folder.name}", unit="batch"):
            raw += pipe.restore_crops(lqs[b : b + args.batch], seed=0)
        res["folders"][str(folder)] = {
            ("none" if s is None else f"{s:g}"): evaluate(raw, lqs, gts, s, scorer, args.batch)
            for s in [None, *args.sigmas]
        }
    total = {f"{s:g}": sum(r[f"{s:g}"]["delta_e_gt"] for r in res["folders"].values()) for s in args.sigmas}
    res["pick"] = float(min(total, key=total.__getitem__))
    text = json.dumps(res, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    print(res["pick"])


if __name__ == "__main__":
    main()
