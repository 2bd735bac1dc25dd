"""`prefrestore make-testset HQ_DIR -o OUT`: a frozen synthetic LQ/GT set with every image's degradation recorded."""

from __future__ import annotations

import argparse

from ..degradations import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hq_dir", metavar="HQ_DIR", help="folder of high-quality (aligned) face images")
    parser.add_argument("-o", "--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="paper", help="degradation recipe (default paper)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="base seed; each image's seed derives from it and its name"
    )
    parser.add_argument("--copies", type=int, default=1, help="LQ versions per HQ image, each with its own seed "
                        "(names STEM_kK; default 1 keeps STEM)")
    parser.add_argument("--size", type=int, default=512, help="side of the square GT/LQ images; 0 keeps source size")
    parser.add_argument(
        "--scale-degradation",
        action="store_true",
        help="scale the preset's kernel size, blur sigma and downsampling by SIZE/512 (presets assume 512 px faces)",
    )


def run(args: argparse.Namespace) -> int:
    from ..eval.testset import SyntheticSetConfig, build_testset

    cfg = SyntheticSetConfig(
        hq_dir=args.hq_dir,
        out=args.out,
        preset=args.preset,
        seed=args.seed,
        size=args.size or None,
        scale_degradation=args.scale_degradation,
        copies=args.copies,
    )
    build_testset(cfg)
    return 0
