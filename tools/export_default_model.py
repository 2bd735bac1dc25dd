"""Export the trained default model into the package with the sampling settings it ships with.

    .venv/bin/python tools/export_default_model.py --rl runs/default/rl-merged --sft runs/default/default-stage3/final \
        --out src/prefrestore/assets/models/default --sft-out runs/default/sft-only

Writes ``--out`` (the RL model) and ``--sft-out`` (the SFT-only model, for comparisons) with the same
``sampling`` block, so the two differ only in their weights. The model card (``README.md`` in ``--out``) is kept.
Weights are stored in float16 (half the size in the wheel); they load into float32 models.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained, save_pretrained

# What the bundled model ships with: 10 DPM-Solver++(2M) steps from the LQ latent noised to start_sigma (picked on
# training faces by tools/pick_start_sigma.py), no CFG (as the RL rollouts; on training faces CFG 2 was no better).
# flip_ensemble: average each face's restoration with its mirror image's (picked on training faces, the model card).
SAMPLING = {"steps": 10, "guidance_scale": 1.0, "solver": "dpm++2m", "start_sigma": 0.3, "flip_ensemble": False}


def export(src: Path, out: Path, *, dtype: torch.dtype) -> None:
    model = from_pretrained(src)
    model.config = dataclasses.replace(
        model.config, name="default", sampling=dataclasses.replace(model.config.sampling, **SAMPLING)
    )
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_pretrained(model, tmp, dtype=dtype)
    from_pretrained(tmp)  # loads back strictly before anything in ``out`` is replaced
    out.mkdir(parents=True, exist_ok=True)
    for old in ("config.json", "model.safetensors", "tokenizer"):
        p = out / old
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in tmp.iterdir():
        shutil.move(str(p), out / p.name)
    tmp.rmdir()
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{src} -> {out} ({size / 2**20:.1f} MiB, sampling {SAMPLING})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rl", required=True, type=Path, help="the LoRA-merged RL model folder")
    ap.add_argument("--sft", required=True, type=Path, help="the stage-3 SFT model folder")
    ap.add_argument("--out", required=True, type=Path, help="where the bundled model goes")
    ap.add_argument("--sft-out", required=True, type=Path, help="where the SFT-only comparison model goes")
    ap.add_argument(
        "--start-sigma",
        type=float,
        default=SAMPLING["start_sigma"],
        help="sampling start (tools/pick_start_sigma.py; default %(default)s)",
    )
    ap.add_argument("--steps", type=int, default=SAMPLING["steps"], help="sampling steps (default %(default)s)")
    ap.add_argument(
        "--guidance", type=float, default=SAMPLING["guidance_scale"], help="CFG scale, 1 = none (default %(default)s)"
    )
    ap.add_argument(
        "--flip-ensemble", action="store_true", help="ship with the mirror self-ensemble on (SamplingDefaults)"
    )
    args = ap.parse_args()
    SAMPLING["start_sigma"], SAMPLING["steps"], SAMPLING["guidance_scale"], SAMPLING["flip_ensemble"] = (
        args.start_sigma,
        args.steps,
        args.guidance,
        args.flip_ensemble,
    )
    export(args.rl, args.out, dtype=torch.float16)
    export(args.sft, args.sft_out, dtype=torch.float16)


if __name__ == "__main__":
    main()
