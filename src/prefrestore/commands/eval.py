"""`prefrestore eval`: score a restorer on a face-restoration benchmark, or compare finished runs.

prefrestore eval --data CelebA-Test/ --model bicubic -o runs/bicubic
prefrestore eval --data CelebA-Test/ --model tiny --steps 20 --samples 4 -o runs/tiny
prefrestore eval --restored gfpgan_out/ --gt CelebA-Test/gt -o runs/gfpgan
prefrestore eval --compare runs/bicubic runs/tiny runs/gfpgan -o runs/compare
"""

from __future__ import annotations

import argparse
import sys

# Nothing heavy at import: the CLI builds every command's flags at start-up, and prefrestore.metrics loads torch.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..restore import options

    src = parser.add_argument_group("what to evaluate")
    src.add_argument("--data", help="benchmark folder: lq/+gt/ sub-folders (CelebA-Test style) or LQ images only")
    src.add_argument("--lq", help="folder of LQ faces (instead of --data)")
    src.add_argument("--gt", help="folder of ground-truth faces, matched to LQ/restored files by name")
    src.add_argument("--restored", help="score this folder of restorations (any method) instead of restoring")
    src.add_argument("--compare", nargs="+", metavar="RUN", help="compare finished run folders; no evaluation")
    src.add_argument("--limit", type=int, help="only the first N images (sorted by name)")
    src.add_argument("--grid-rows", type=int, default=8, help="with --compare: images in grid.png (default 8)")
    src.add_argument(
        "--by",
        metavar="PARAM",
        help="with --compare on a make-testset benchmark: also every metric "
        "per degradation group, e.g. --by scale, --by jpeg_quality, --by noise_sigma, --by kernel",
    )
    src.add_argument(
        "--bins", type=int, default=3, help="with --by and a numeric parameter: equal-width bins (default 3)"
    )
    src.add_argument(
        "--paired",
        action="store_true",
        help="with --compare: also each run's per-image difference from the first run, with a 95%% bootstrap "
        "interval over the source faces of a make-testset benchmark (else over images)",
    )

    model = parser.add_argument_group("restoring")
    model.add_argument("--name", help="method name in tables (default: model or folder name)")
    model.add_argument("--stochastic", action="store_true", help="stochastic sampler instead of the deterministic one")
    model.add_argument("--samples", type=int, default=1, help="K samples per input (seeds seed..seed+K-1) for entropy")
    options.add_arguments(parser, "eval")  # --model, --steps, --guidance-scale, --device, --batch-size, --seed

    met = parser.add_argument_group("metrics")
    met.add_argument(
        "--metrics",
        default="all",
        help="comma-separated metric names, e.g. psnr_rgb,lpips_vgg,lmd (default all; an unknown name lists them; "
        "unavailable ones are reported)",
    )
    met.add_argument("--no-fid", action="store_true", help="skip FID and KID")
    met.add_argument("--fid-ref", help="reference image folder for FID (default: the GT folder)")
    met.add_argument("--fid-stats", help="precomputed FID statistics .npz (mu, sigma) instead of --fid-ref")
    met.add_argument(
        "--weights-dir",
        help="metric weights folder (default $PREFRESTORE_METRIC_WEIGHTS or ~/.cache/prefrestore/metrics)",
    )
    met.add_argument(
        "--landmarks",
        default="auto",
        help="LMD landmarks: auto = FAN 98 points if alignment_WFLW_4HG.pth is present, else MTCNN 5 points",
    )
    met.add_argument("--crop-border", type=int, default=0, help="pixels cropped per side for PSNR/SSIM (papers: 0)")
    met.add_argument(
        "--correct-mean-var",
        action="store_true",
        help="VQFR's per-channel mean/std correction before PSNR/SSIM (off by default)",
    )
    met.add_argument("--grid", type=int, default=8, help="images in the side-by-side grid (0: none)")
    parser.add_argument("-o", "--out", help="run folder (created; an existing one is resumed)")


def check_arguments(args: argparse.Namespace) -> str | None:
    """The settings eval takes (``args.settings``), checked before anything runs -> a usage message or None."""
    from ..restore.options import SEED_MAX, RestoreSettings

    args.settings = RestoreSettings.from_namespace(args, "eval")  # a bad value: a SettingError, one line, exit 2
    sampling = args.settings.sampling
    if not 1 <= args.samples <= 1000:
        return f"--samples {args.samples}: must be an integer in 1..1000"
    if sampling.seed + args.samples - 1 > SEED_MAX:
        return f"--seed {sampling.seed} --samples {args.samples}: the last seed is above {SEED_MAX}"
    return None


def _metrics(arg: str) -> tuple[str, ...]:
    from ..metrics.suite import DEFAULT_METRICS, METRICS

    if arg == "all":
        return DEFAULT_METRICS
    names = tuple(m.strip() for m in arg.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad:
        from ..errors import UserError

        raise UserError(f"unknown metrics {bad}; choose from {', '.join(METRICS)}")
    return names


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError

    if args.compare:
        from ..eval.report import compare

        sys.stdout.write(
            compare(args.compare, args.out, grid_rows=args.grid_rows, by=args.by, bins=args.bins, paired=args.paired)
        )
        return 0
    if not args.out:
        raise UserError("give a run folder with -o RUN")
    from ..eval.runner import EvalConfig, evaluate
    from ..restore.options import check_device

    if getattr(args, "settings", None) is None:  # run() called without the CLI's check_arguments
        problem = check_arguments(args)
        if problem:
            raise UserError(problem)
    sampling = args.settings.sampling
    for flag, value, low in (
        ("--limit", args.limit, 1),
        ("--grid", args.grid, 0),
        ("--crop-border", args.crop_border, 0),
    ):
        if value is not None and value < low:
            raise UserError(f"{flag} {value}: must be >= {low}")
    device = check_device(sampling.device)
    from typing import get_args

    from ..metrics.suite import LandmarkChoice

    if args.landmarks not in get_args(LandmarkChoice):
        raise UserError(f"--landmarks {args.landmarks}: choose one of {', '.join(get_args(LandmarkChoice))}")

    try:
        cfg = EvalConfig(
            out=args.out,
            data=args.data,
            lq=args.lq,
            gt=args.gt,
            restored=args.restored,
            model=sampling.model,
            name=args.name,
            device=device,
            steps=sampling.steps,
            guidance_scale=sampling.guidance_scale,
            deterministic=not args.stochastic,
            seed=sampling.seed,
            samples=args.samples,
            batch_size=sampling.batch_size,
            metrics=_metrics(args.metrics),
            fid=not args.no_fid,
            fid_ref=args.fid_ref,
            fid_stats=args.fid_stats,
            weights_dir=args.weights_dir,
            landmarks=args.landmarks,
            crop_border=args.crop_border,
            correct_mean_var=args.correct_mean_var,
            limit=args.limit,
            grid=args.grid,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    result = evaluate(cfg)
    sys.stdout.write((result.folder / "results.md").read_text())
    return 0
