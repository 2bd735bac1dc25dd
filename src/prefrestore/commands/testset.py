# ruff: noqa: T201  (a command: it reports to the terminal)
"""`prefrestore make-testset HQ_DIR -o OUT`: a frozen synthetic LQ/GT set with every image's degradation recorded."""

from __future__ import annotations

import argparse
import sys

# prefrestore.degradations loads torch: imported in run(), not when the CLI builds every command's flags.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hq_dir", metavar="HQ_DIR", help="folder of high-quality (aligned) face images")
    parser.add_argument("-o", "--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument(
        "--preset", default="paper", help="degradation recipe: a preset of prefrestore.degradations (default paper)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="base seed; each image's seed derives from it and its name"
    )
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="LQ versions per HQ image, each with its own seed (names STEM_kK; default 1 keeps STEM)",
    )
    parser.add_argument("--size", type=int, default=512, help="side of the square GT/LQ images; 0 keeps source size")
    parser.add_argument(
        "--scale-degradation",
        action="store_true",
        help="scale the preset's kernel size, blur sigma and downsampling by SIZE/512 (presets assume 512 px faces)",
    )


def run(args: argparse.Namespace) -> int:
    from ..degradations import PRESETS
    from ..errors import UserError
    from ..eval.testset import SyntheticSetConfig, build_testset

    if args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset}: unknown; choose one of {', '.join(sorted(PRESETS))}")

    if args.size < 0 or args.size > 8192:
        raise UserError(f"--size {args.size}: must be in 0..8192 (0 keeps the source size)")
    if not 0 <= args.seed <= 2**63 - 1:
        raise UserError(f"--seed {args.seed}: must be in 0..{2**63 - 1}")

    try:
        cfg = SyntheticSetConfig(
            hq_dir=args.hq_dir,
            out=args.out,
            preset=args.preset,
            seed=args.seed,
            size=args.size or None,
            scale_degradation=args.scale_degradation,
            copies=args.copies,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    import json

    from ..io.io_safety import shown

    out = build_testset(cfg)
    skipped = json.loads((out / "meta.json").read_text()).get("skipped", [])
    for message in skipped:
        print(f"  skipped: {shown(message)}", file=sys.stderr)
    return 1 if skipped else 0
