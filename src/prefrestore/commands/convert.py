"""`prefrestore convert`: official Pref-Restore / BLIP3o-NEXT / TA-Tok / SANA / DiffusionNFT-LoRA files -> a
prefrestore model folder.

    prefrestore convert --stage-a DIR|ORG/NAME [--ta-tok FILE] [--sana DIR] -o OUT
    prefrestore convert --blip3o DIR|ORG/NAME --ta-tok FILE --sana DIR -o OUT
    prefrestore convert ... --lora CKPT_DIR [--merge]          (on top of any of the above)
    prefrestore convert --model OUR_DIR --lora CKPT_DIR [--merge] -o OUT
"""

from __future__ import annotations

import argparse

DTYPES = ("keep", "float32", "bfloat16", "float16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--stage-a",
        metavar="DIR",
        help="official Stage-A checkpoint folder or hub id (e.g. zjyao-PKU/Pref-Restore-PhaseA-Fidelity)",
    )
    src.add_argument(
        "--blip3o",
        metavar="DIR",
        help="BLIP3o-NEXT checkpoint folder or hub id "
        "(BLIP3o/BLIP3o-NEXT-SFT-3B): the Stage-A starting point; vae_connector is initialised",
    )
    src.add_argument("--model", metavar="DIR", help="an existing prefrestore model folder (with --lora)")
    parser.add_argument(
        "--ta-tok",
        metavar="FILE",
        help="ta_tok.pth (or hub id csuhan/TA-Tok); needed when the "
        "checkpoint has no model.vision_tower.* weights, else checked against them",
    )
    parser.add_argument(
        "--sana",
        metavar="DIR",
        help="SANA1.5_1.6B_1024px_diffusers folder or hub id "
        "(transformer/ and vae/): configs, and weights the checkpoint lacks",
    )
    parser.add_argument(
        "--lora",
        metavar="DIR",
        help="DiffusionNFT LoRA: a checkpoint-N folder (uses its lora/) or the adapter folder itself",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="merge the LoRA into the weights (W + scale*B@A); default: keep it as a peft adapter in OUT/lora/",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="keep",
        help="dtype of the written floats (default keep: as in the sources; the official checkpoints are bfloat16)",
    )
    parser.add_argument(
        "--non-strict",
        action="store_true",
        help="tolerate unknown keys and disagreeing "
        "duplicates (reported as warnings); missing or mis-shaped tensors are always errors",
    )
    parser.add_argument(
        "--preset",
        choices=("paper", "tiny"),
        default="paper",
        help="preset for the values the "
        "official files do not record (SigLIP heads, resolution, sampling; SANA configs without "
        "--sana); default paper",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="allow downloading hub ids missing from the local Hugging Face cache (default: offline)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for initialised tensors (BLIP3o vae_connector)")
    parser.add_argument("-o", "--out", required=True, help="output folder (new or empty)")


def run(args: argparse.Namespace) -> int:
    import logging

    import torch

    from ..convert import convert
    from ..models.presets import get_preset

    log = logging.getLogger("prefrestore.convert")
    report = convert(
        args.out,
        stage_a=args.stage_a,
        blip3o=args.blip3o,
        model=args.model,
        ta_tok=args.ta_tok,
        sana=args.sana,
        lora=args.lora,
        merge=args.merge,
        dtype=None if args.dtype == "keep" else getattr(torch, args.dtype),
        strict=not args.non_strict,
        base=get_preset(args.preset),
        allow_download=args.download,
        seed=args.seed,
    )
    for comp, src in report.sources.items():
        log.info("%-19s <- %s", comp, src)
    for reason, keys in report.dropped.items():
        log.info("dropped %d keys: %s", len(keys), reason)
    for k in report.initialised:
        log.info("initialised %s", k)
    for note in report.notes:
        log.info("note: %s", note)
    if report.warnings:
        log.warning("%d warning(s); see %s/conversion.json", len(report.warnings), args.out)
    log.info("wrote %s (%d tensors)", args.out, report.mapped)
    return 0
