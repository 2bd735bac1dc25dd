# ruff: noqa: T201  (a command: it reports to the terminal; pyproject exempts only cli.py so far)
"""`prefrestore restore`: restore the faces in photos (or in aligned face crops).

    prefrestore restore INPUT [INPUT ...] -o OUTPUT [-s UPSCALE] [--aligned] [--only-center-face]
        [--min-face-size PX] [--max-faces N] [--det-threshold T] [--ext auto|png|jpg] [--suffix S] [--overwrite]
        [--model default] [--steps K] [--guidance-scale G] [--start-sigma S] [--seed N] [--batch-size B]
        [--device cpu] [--jpeg-quality Q] [--fidelity F] [--candidates N] [--identity-guard off|flag|fallback]
        [--faces I,J] [--max-face-size PX] [--blend A] [--color-fix lowfreq|meanstd|none] ...

The restoration-control flags (fidelity, candidates, guard, colour, face choice, blend) are declared once in
``prefrestore.options.OPTIONS``, shared with the Python API and the web API.

INPUT is a file, a folder or a glob pattern (quoted); several may be given. Outputs, as in GFPGAN/CodeFormer:
OUTPUT/cropped_faces, restored_faces, cmp (input | restored), restored_imgs, plus OUTPUT/reports/NAME.json
(boxes, scores, landmarks, per-stage timings, identity similarity when dlib is installed).
Exit status: 0 when every input succeeded, 1 when some failed (listed at the end), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .. import options
    from ..faces.paste import UPSAMPLERS

    parser.add_argument("input", nargs="+", help="photo file(s), folder(s) or quoted glob pattern(s)")
    parser.add_argument("-o", "--output", default="results", help="output folder (default: results)")
    parser.add_argument("-s", "--upscale", type=float, default=2.0, help="output size / input size (default: 2)")
    parser.add_argument("--aligned", action="store_true", help="inputs are FFHQ-aligned face crops: no detection")
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument("--max-faces", type=int, default=None, metavar="N", help="restore at most N faces, largest first")
    parser.add_argument("--det-threshold", type=float, default=0.95, metavar="T",
                        help="detection confidence threshold in [0, 1] (default: 0.95)")
    parser.add_argument("--ext", choices=("auto", "png", "jpg"), default="auto",
                        help="restored photo format; auto: JPEG for JPEG inputs, PNG otherwise (default: auto)")
    parser.add_argument("--suffix", default="", help="suffix for restored photo names (default: none)")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist (default: skip)")
    parser.add_argument("--model", default="default",
                        help="default (the bundled model, or the paper model when installed), tiny (random weights), "
                             "a model folder or a hub id (default: default)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--start-sigma", type=float, default=None,
                        help="1.0 samples from pure noise; below 1 starts from the noised LQ (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every face (default: 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="faces per restorer call (default: 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (default: 95)")
    parser.add_argument("--bg-upsampler", choices=sorted(UPSAMPLERS), default="lanczos",
                        help="background resampler (default: lanczos)")
    parser.add_argument("--color-match", choices=("lowfreq", "meanstd", "none"), default="lowfreq",
                        help="match restored faces' colour and tone to the photo (default: lowfreq)")
    parser.add_argument("--identity", choices=("auto", "off"), default="auto",
                        help="report LQ-to-restored identity similarity when dlib is installed (default: auto)")
    options.add_arguments(parser)  # --fidelity, --candidates, --identity-guard, --faces, --blend, ... (one schema)


def _configs(args: argparse.Namespace):
    """Validated configs from the arguments; a bad value is a one-line UserError naming the flag."""
    from ..faces.detect import SelectConfig
    from ..faces.paste import BlendConfig
    from ..options import RestoreOptions
    from ..pipeline import OutputLayout, PipelineConfig

    checks = [
        (0 < args.upscale <= 16, f"-s {args.upscale}: the upscale factor must be in (0, 16]"),
        (0 <= args.det_threshold <= 1, f"--det-threshold {args.det_threshold}: must be in [0, 1], e.g. 0.95"),
        (args.fidelity is None or (args.start_sigma is None and args.guidance_scale is None),
         "--fidelity sets the start sigma and guidance itself; give --fidelity or --start-sigma/--guidance-scale"),
        (args.max_faces is None or args.max_faces >= 1, f"--max-faces {args.max_faces}: must be >= 1"),
        (args.batch_size >= 1, f"--batch-size {args.batch_size}: must be >= 1"),
        (1 <= args.jpeg_quality <= 100, f"--jpeg-quality {args.jpeg_quality}: must be in 1..100"),
        (args.steps is None or args.steps >= 1, f"--steps {args.steps}: must be >= 1"),
        ("/" not in args.suffix and "\\" not in args.suffix, f"--suffix {args.suffix!r}: must not contain a slash"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    try:
        opts = RestoreOptions.from_namespace(args)
    except ValueError as err:
        raise UserError(str(err)) from None
    select = SelectConfig(
        score_threshold=args.det_threshold,
        max_faces=args.max_faces,
        only_center_face=args.only_center_face,
    )
    config = PipelineConfig.from_options(
        opts,
        upscale=args.upscale,
        select=select,
        blend=dataclasses.replace(BlendConfig(), color_match=args.color_match),
        upsampler=args.bg_upsampler,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    layout = OutputLayout(
        Path(args.output), ext=args.ext, suffix=args.suffix, overwrite=args.overwrite, jpeg_quality=args.jpeg_quality
    )
    return config, layout


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import api
    from ..control import Scorers
    from ..faces.detect import build_detector
    from ..faces.identity import load_identity_scorer
    from ..pipeline import plan_files, run_plan

    config, layout = _configs(args)
    plan = plan_files(args.input, layout, aligned=args.aligned)
    for _, message in plan.failed:
        print(f"error: {message}", file=sys.stderr)
    if not plan.todo and not plan.skipped and not plan.failed:
        raise UserError(f"{' '.join(args.input)}: no images found (.png, .jpg, .jpeg, .bmp, .webp, .tif); check the path")
    summary = None
    if plan.todo:
        restorer = api.load_restorer(
            args.model,
            device=args.device,
            steps=args.steps,
            guidance_scale=args.guidance_scale,
            batch_size=args.batch_size,
            seed=args.seed,
            start_sigma=args.start_sigma,
        )
        detector = None if args.aligned else build_detector("mtcnn", device=args.device,
                                                            min_face_size=max(12.0, args.min_face_size))
        identity = load_identity_scorer() if args.identity == "auto" else None
        scorers = Scorers.for_options(config.options, identity=identity, device=args.device)
        run_info = {
            "model": {"name": args.model, "resolution": restorer.resolution, "steps": args.steps,
                      "guidance_scale": args.guidance_scale,
                      "start_sigma": args.start_sigma, "seed": args.seed, "device": args.device},
            "aligned_input": args.aligned,
        }
        if config.options.fidelity is not None and hasattr(restorer, "fidelity_table"):
            table = restorer.fidelity_table
            run_info["model"]["fidelity_table"] = {"source": table.source, "calibrated": table.calibrated}
        # disable=None: bars on a terminal only, so logs and pipes get the error lines and the summary, not \r art
        images = tqdm(total=len(plan.todo), desc="images", unit="img", position=0, dynamic_ncols=True, disable=None)
        faces = tqdm(total=0, desc="faces ", unit="face", position=1, dynamic_ncols=True, leave=False, disable=None)

        def progress(event: str, count: int, message: str | None = None) -> None:
            if event == "faces_found":
                faces.total += count
                faces.refresh()
            elif event == "faces_restored":
                faces.update(count)
            elif event == "image_done":
                images.update(count)
            elif event == "failed":
                tqdm.write(f"error: {message}", file=sys.stderr)

        try:
            summary = run_plan(plan, restorer, layout, detector=detector, config=config, identity=identity,
                               progress=progress, run_info=run_info, scorers=scorers)
        finally:
            faces.close()
            images.close()
    return _print_summary(plan, summary, layout, aligned=args.aligned)


def _print_summary(plan, summary, layout, *, aligned: bool) -> int:
    failed = list(summary.failed) if summary else list(plan.failed)
    done = len(summary.restored) if summary else 0
    parts = [f"restored {_count(done, 'crop' if aligned else 'photo')}"]
    if summary and not aligned:
        parts[0] += f" ({_count(summary.faces, 'face')})"
        if summary.no_face:
            parts.append(f"{len(summary.no_face)} without a face (upscaled only)")
    if plan.skipped:
        parts.append(f"{len(plan.skipped)} skipped (outputs exist; --overwrite to redo)")
    if failed:
        parts.append(f"{len(failed)} failed")
    print(", ".join(parts) + f" -> {layout.root}", file=sys.stderr)
    for _, message in failed:
        print(f"  failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
