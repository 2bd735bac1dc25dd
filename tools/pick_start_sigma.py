"""Pick a model's sampling settings (start sigma, steps, guidance) on faces from the *training* set (never the test
faces), scored by what people see: LPIPS (AlexNet and VGG) and identity (dlib's ResNet in torch), under a fidelity
floor (PSNR-Y).

    .venv/bin/python tools/pick_start_sigma.py runs/small/small-stage4b/final --faces runs/small/rl_hq \
        --presets paper photo --candidates 0.02 0.1 0.3 0.6 1.0 --steps 4 10 --guidance 1 --out pick.json

Restores the un-augmented training faces (files without ``_aNNN``) from fixed degradations of each recipe in
``--presets`` (scaled to the model's resolution, seeds 1000 + i, quantised to 8 bits as the training LQs) with every
(start sigma, steps, guidance) candidate (seed 0, DPM-Solver++(2M)) and records, averaged over all recipes and faces:
PSNR-Y, LPIPS-Alex, LPIPS-VGG and the dlib distance (L2 of the 128-d embeddings, as the dlib package's; FFHQ crop
warped onto the network's chip). The pick: among candidates within ``--psnr-tolerance`` dB of the best PSNR-Y, the
one with the lowest LPIPS-Alex + LPIPS-VGG + dlib distance; ties within 0.002 go to fewer steps, then no guidance.
Needs ``prefrestore weights fetch lpips_alex lpips_vgg dlib_resnet``. Prints the JSON; the last line is the picked
start sigma alone (``--pick-field`` prints another field of the pick).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.degradations import apply, preset, sample_params, scaled
from prefrestore.io.image import from_model, load_rgb, to_model
from prefrestore.metrics.identity import load_identity_net
from prefrestore.metrics.lpips import load_lpips
from prefrestore.metrics.pixel import psnr


def degraded(gt: torch.Tensor, name: str, size: int) -> torch.Tensor:
    """(N, 3, S, S) [-1, 1] HQ -> the fixed LQs of recipe ``name`` (seed 1000 + i), 8-bit quantised, [-1, 1]."""
    cfg = scaled(preset(name), size / 512)
    lq = [
        apply((g + 1) / 2, sample_params(cfg, torch.Generator().manual_seed(1000 + i))) * 2 - 1
        for i, g in enumerate(gt)
    ]
    return to_model(from_model(torch.stack(lq)))


@torch.no_grad()
def score(model, lqs, gt, nets, *, sigma: float, steps: int, guidance: float, batch: int) -> dict:
    lp_a, lp_v, dlib = nets
    vals: dict[str, list[torch.Tensor]] = {"psnr_y": [], "lpips_alex": [], "lpips_vgg": [], "idd_dlib": []}
    ref_emb = torch.cat([dlib((gt[b : b + batch] + 1) / 2) for b in range(0, len(gt), batch)])
    for lq in lqs:
        for b in range(0, len(gt), batch):
            gens = [torch.Generator().manual_seed(0) for _ in range(len(lq[b : b + batch]))]
            out = model.restore(
                lq[b : b + batch],
                generators=gens,
                steps=steps,
                solver="dpm++2m",
                guidance_scale=guidance,
                start_sigma=sigma,
            )
            x, y = ((out + 1) / 2).clamp(0, 1), (gt[b : b + batch] + 1) / 2
            vals["psnr_y"].append(psnr(x, y))
            vals["lpips_alex"].append(lp_a(x, y).flatten())
            vals["lpips_vgg"].append(lp_v(x, y).flatten())
            vals["idd_dlib"].append((dlib(x) - ref_emb[b : b + batch]).norm(dim=-1))
    return {k: float(torch.cat(v).mean()) for k, v in vals.items()}


def pick(rows: list[dict], psnr_tolerance: float) -> dict:
    best = max(r["psnr_y"] for r in rows)
    ok = [r for r in rows if r["psnr_y"] >= best - psnr_tolerance]
    for r in ok:
        r["objective"] = r["lpips_alex"] + r["lpips_vgg"] + r["idd_dlib"]
    low = min(r["objective"] for r in ok)
    near = [r for r in ok if r["objective"] <= low + 0.002]
    return min(near, key=lambda r: (r["steps"], r["guidance_scale"], r["objective"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--faces", type=Path, required=True, help="training-face folder (augmented copies are skipped)")
    ap.add_argument("--candidates", type=float, nargs="+", default=[0.02, 0.1, 0.3], help="start sigmas")
    ap.add_argument("--steps", type=int, nargs="+", default=[4], help="DPM-Solver++(2M) step counts")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="CFG scales (1 = none)")
    ap.add_argument("--presets", nargs="+", default=["paper"], help="degradation recipes averaged (scaled to S)")
    ap.add_argument("--limit", type=int, default=0, help="first N faces only (0 = all)")
    ap.add_argument("--psnr-tolerance", type=float, default=0.3, help="dB below the best PSNR-Y still admitted")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pick-field", default="start_sigma", help="the field of the pick printed on the last line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = from_pretrained(args.model)
    S = model.config.resolution
    files = sorted(p for p in args.faces.glob("*.png") if not re.search(r"_a\d+$", p.stem))
    if args.limit:
        files = files[: args.limit]
    gt = to_model([load_rgb(p) for p in files])  # (N, 3, S, S) in [-1, 1]
    lqs = [degraded(gt, name, S) for name in args.presets]
    nets = (load_lpips("alex"), load_lpips("vgg"), load_identity_net("dlib"))
    rows = []
    for s, n, g in itertools.product(args.candidates, args.steps, args.guidance):
        row = {"start_sigma": s, "steps": n, "guidance_scale": g}
        row.update(score(model, lqs, gt, nets, sigma=s, steps=n, guidance=g, batch=args.batch_size))
        print(json.dumps(row), flush=True)
        rows.append(row)
    chosen = pick(rows, args.psnr_tolerance)
    result = {
        "model": str(args.model),
        "faces": [p.name for p in files],
        "presets": args.presets,
        "psnr_tolerance": args.psnr_tolerance,
        "candidates": rows,
        "pick": chosen,
        "start_sigma": chosen["start_sigma"],
        "steps": chosen["steps"],
        "guidance_scale": chosen["guidance_scale"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["pick"], indent=2))
    print(chosen[args.pick_field])


if __name__ == "__main__":
    main()
