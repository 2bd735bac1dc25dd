# ruff: noqa: T201  (a command: it reports to the terminal; pyproject exempts only cli.py so far)
"""`prefrestore restore`: restore the faces in photos (or in aligned face crops).

    prefrestore restore INPUT [INPUT ...] -o OUTPUT [-s UPSCALE] [--aligned] [--only-center-face]
        [--min-face-size PX] [--max-faces N] [--det-threshold T] [--ext auto|png|jpg] [--suffix S] [--overwrite]
        [--model default] [--steps K] [--guidance-scale G] [--start-sigma S] [--official-numerics] [--seed N]
        [--batch-size B]
        [--device cpu] [--jpeg-quality Q] [--bg-upsampler lanczos|realesrgan] [--fidelity F] [--candidates N]
        [--identity-guard off|flag|fallback] [--faces I,J] [--max-face-size PX] [--blend A]
        [--color-fix lowfreq|meanstd|none] ...

The restoration-control flags (fidelity, candidates, guard, colour, face choice and size, blend) are declared once
in ``prefrestore.restore.options.OPTIONS``, shared with the Python API. GFPGAN's and CodeFormer's spellings (``-i``,
``--input_path``, ``--output_path``, ``--has_aligned``, ``-w``, any flag with underscores) are accepted, and their
flags with no counterpart answered in one line (:data:`FOREIGN_FLAGS`; docs/coming-from-gfpgan.md).

INPUT is a file, a folder or a glob pattern (quoted); several may be given. Outputs, as in GFPGAN/CodeFormer:
OUTPUT/cropped_faces, restored_faces, cmp (input | restored), restored_imgs, plus OUTPUT/reports/NAME.json
(boxes, scores, landmarks, per-stage timings, identity similarity when dlib is installed).
Several processes (``torchrun --nproc_per_node N -m prefrestore restore ...`` or ``accelerate launch``) share the
inputs out by rank and rank 0 prints the merged summary (``prefrestore.restore.distributed``).
Exit status: 0 when every input succeeded, 1 when some failed (listed at the end), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from . import restore_video

# The choices the parser shows, written out here so that `restore --help` and a usage error import no torch: each is
# the library's own value (faces.paste.BG_UPSAMPLERS, faces.paste.ColorMatch; tests/test_restore_cli.py checks that
# they agree).
BG_UPSAMPLERS = ("bicubic", "bilinear", "lanczos", "realesrgan")
COLOR_MATCHES = ("lowfreq", "meanstd", "none")

# GFPGAN / CodeFormer flags with no prefrestore counterpart -> the one line that says what to do instead (their
# flags that do have one are accepted as spellings of ours, see add_arguments and docs/coming-from-gfpgan.md).
FOREIGN_FLAGS = {
    "--version": "GFPGAN's model version; prefrestore picks its model with --model (default: the bundled model, "
    "or a model folder); -v alone means verbose",
    "--face-upsample": "CodeFormer's Real-ESRGAN pass over the restored faces has no counterpart: faces are "
    "restored at the model's size and pasted back at the output scale (-s); --bg-upsampler "
    "realesrgan upsamples the rest of the photo",
    "--detection-model": "prefrestore detects faces with MTCNN only; tune it with --det-threshold and --min-face-size",
    "--draw-box": "the face boxes, landmarks and scores are written to OUTPUT/reports/NAME.json",
    "--save-video-fps": "a restored video keeps its input's frame rate",
}


def _bg_upsampler(value: str) -> str:
    """GFPGAN's ``--bg_upsampler none`` (no upsampler: facexlib resizes with Lanczos) is our lanczos."""
    return "lanczos" if value.lower() == "none" else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..restore import options

    parser.add_argument("input", nargs="*", help="photo file(s), folder(s) or quoted glob pattern(s)")
    parser.add_argument(
        "-i",
        "--input",
        "--input-path",
        dest="input_flag",
        action="append",
        default=[],
        metavar="INPUT",
        help="an input given as a flag (GFPGAN's -i/--input, CodeFormer's --input_path); may be repeated",
    )
    parser.add_argument("-o", "--output", "--output-path", default="results", help="output folder (default: results)")
    parser.add_argument("-s", "--upscale", type=float, default=2.0, help="output size / input size (default: 2)")
    parser.add_argument(
        "--aligned",
        "--has-aligned",
        action="store_true",
        help="inputs are FFHQ-aligned face crops: no detection (CodeFormer: --has_aligned)",
    )
    parser.add_argument(
        "-w",
        "--fidelity-weight",
        "--weight",
        dest="fidelity",
        type=float,
        default=argparse.SUPPRESS,
        metavar="W",
        help="CodeFormer's w / GFPGAN's --weight, taken as --fidelity W: same direction, 0 = most "
        "generative, 1 = closest to the input (our dial is calibrated on measured closeness, "
        "so the same number is not the same look)",
    )
    parser.add_argument("--only-center-face", action="store_true", help="restore only the face nearest the centre")
    parser.add_argument(
        "--max-faces", type=int, default=None, metavar="N", help="restore at most N faces, largest first"
    )
    parser.add_argument(
        "--det-threshold",
        type=float,
        default=0.95,
        metavar="T",
        help="detection confidence threshold in [0, 1] (default: 0.95)",
    )
    parser.add_argument(
        "--ext",
        choices=("auto", "png", "jpg"),
        default="auto",
        help="restored photo format; auto: JPEG for JPEG inputs, PNG otherwise (default: auto)",
    )
    parser.add_argument("--suffix", default="", help="suffix for restored photo names (default: none)")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist (default: skip)")
    parser.add_argument(
        "--model",
        default="default",
        help="default (the bundled model, or the paper model when installed), tiny (random weights), "
        "a model folder or a hub id (default: default)",
    )
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument(
        "--start-sigma",
        type=float,
        default=None,
        help="1.0 samples from pure noise; below 1 starts from the noised LQ (default: the model's)",
    )
    parser.add_argument(
        "--official-numerics",
        action="store_true",
        help="compute the sampling loop as the official code does (bf16 noise, the state re-rounded "
        "to the model's dtype every step, the [uncond, cond] CFG batch), to compare outputs with "
        "the paper's release (default: the model's setting)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every face (default: 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="faces per restorer call (default: 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (default: 95)")
    parser.add_argument(
        "--bg-upsampler",
        type=_bg_upsampler,
        choices=BG_UPSAMPLERS,
        default="lanczos",
        help="background upsampler: a resampler, or realesrgan (RealESRGAN_x4plus, converted with "
        "`prefrestore convert-realesrgan`; meant for GPUs); none = lanczos (default: lanczos)",
    )
    parser.add_argument(
        "--bg-tile",
        type=int,
        default=400,
        metavar="PX",
        help="realesrgan tile size in input pixels, bounds memory; 0 = untiled (default: 400)",
    )
    parser.add_argument(
        "--color-match",
        choices=COLOR_MATCHES,
        default="lowfreq",
        help="paste-back: match each restored face's colour and tone to the photo around it as it is "
        "pasted (--color-fix colours the face crop itself, before it is written or pasted) "
        "(default: lowfreq)",
    )
    parser.add_argument(
        "--identity",
        choices=("auto", "off"),
        default="auto",
        help="report LQ-to-restored identity similarity when dlib is installed (default: auto)",
    )
    restore_video.add_arguments(parser)
    options.add_arguments(parser)  # --fidelity, --candidates, --identity-guard, --faces, --min/max-face-size, ...


def check_arguments(args: argparse.Namespace) -> str | None:
    """After parsing, before anything runs: the inputs given as flags join the positional ones -> a usage message
    for the restore parser, or None."""
    args.input = list(args.input) + list(args.input_flag)
    if not args.input:
        return "give at least one input: prefrestore restore PHOTO [PHOTO ...] -o OUTPUT (or -i PHOTO)"
    return None


def unknown_argument_hint(extras: list[str], parser: argparse.ArgumentParser) -> str | None:
    """The one line for arguments the restore parser does not know: a GFPGAN/CodeFormer flag we answer in
    :data:`FOREIGN_FLAGS`, else None (the command line then says "did you mean")."""
    for k, extra in enumerate(extras):
        name = extra.partition("=")[0].replace("_", "-")
        if extra == "-v" or name == "--version":
            value = extra.partition("=")[2] or (extras[k + 1] if k + 1 < len(extras) else "")
            return f"{extra.partition('=')[0]} {value}: {FOREIGN_FLAGS['--version']}".replace("  ", " ")
        if name in FOREIGN_FLAGS:
            return f"{extra.partition('=')[0]}: {FOREIGN_FLAGS[name]}"
    return None


def _configs(args: argparse.Namespace, ranks=None):
    """Validated settings from the arguments -> (the pipeline's settings, the output layout); a bad value is a
    one-line UserError naming the flag. The device is this process's checked device (``cuda`` -> ``cuda:LOCAL_RANK``
    under a launcher: :meth:`~prefrestore.restore.loaded.PipelineSettings.on_rank`), also in ``args.device``."""
    from pathlib import Path

    from ..io.io_safety import shown
    from ..restore.file_run import OutputLayout
    from ..restore.loaded import PipelineSettings
    from ..restore.options import RestoreOptions, check_finite, check_sampling
    from ..restore.pipeline import PipelineConfig

    if not args.output.strip():
        raise UserError("-o '': empty output folder name; give a folder, e.g. -o results")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise UserError(f"-o {shown(args.output)}: exists and is not a folder; choose another -o")
    check_finite(args.upscale, "-s", low=0, high=16, low_open=True, example="2")
    check_finite(args.det_threshold, "--det-threshold", low=0, high=1, example="0.95")
    check_finite(args.min_face_size, "--min-face-size", low=0, example="20")
    check_sampling(steps=args.steps, guidance_scale=args.guidance_scale, start_sigma=args.start_sigma, seed=args.seed)
    checks = [
        (0 < args.upscale <= 16, f"-s {args.upscale}: the upscale factor must be in (0, 16]"),
        (0 <= args.det_threshold <= 1, f"--det-threshold {args.det_threshold}: must be in [0, 1], e.g. 0.95"),
        (
            args.fidelity is None or (args.start_sigma is None and args.guidance_scale is None),
            "--fidelity sets the start sigma and guidance itself; give --fidelity or --start-sigma/--guidance-scale",
        ),
        (args.max_faces is None or args.max_faces >= 1, f"--max-faces {args.max_faces}: must be >= 1"),
        (args.batch_size >= 1, f"--batch-size {args.batch_size}: must be >= 1"),
        (1 <= args.jpeg_quality <= 100, f"--jpeg-quality {args.jpeg_quality}: must be in 1..100"),
        (args.steps is None or args.steps >= 1, f"--steps {args.steps}: must be >= 1"),
        ("/" not in args.suffix and "\\" not in args.suffix, f"--suffix {args.suffix!r}: must not contain a slash"),
        (
            len(args.suffix.encode("utf-8", "surrogateescape")) <= 100 and "\0" not in args.suffix,
            f"--suffix {shown(args.suffix)[:40]}...: at most 100 bytes, no NUL",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    try:
        opts = RestoreOptions.from_namespace(args)
    except ValueError as err:
        raise UserError(str(err)) from None
    config = PipelineConfig.for_photos(
        opts,
        upscale=args.upscale,
        det_threshold=args.det_threshold,
        max_faces=args.max_faces,
        only_center_face=args.only_center_face,
        color_match=args.color_match,
        upsampler=args.bg_upsampler,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    layout = OutputLayout(
        Path(args.output), ext=args.ext, suffix=args.suffix, overwrite=args.overwrite, jpeg_quality=args.jpeg_quality
    )
    settings = PipelineSettings(
        config,
        model=args.model,
        device=args.device,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        start_sigma=args.start_sigma,
        official_numerics=args.official_numerics,
        identity=args.identity == "auto",
        bg_tile=args.bg_tile,
    ).on_rank(ranks)
    args.device = settings.device
    return settings, layout


def run(args: argparse.Namespace) -> int:
    from ..restore.distributed import RankGroup

    with RankGroup() as group:  # one process, or one rank of torchrun / accelerate launch (see distributed.py)
        return _run(args, group)


def _run(args: argparse.Namespace, group) -> int:
    from ..io.io_safety import check_output_folder, shown
    from ..restore.file_run import plan_files, run_plan
    from ..restore.loaded import load_pipeline

    settings, layout = _configs(
        args, group.ranks
    )  # every option is checked before any file is read or the model loads
    plan = group.share_plan(lambda: plan_files(args.input, layout, aligned=args.aligned))
    videos = None
    if not args.aligned:  # videos among the inputs, by content (an aligned run treats every input as a crop)
        from ..video import plan_videos

        plan, videos = plan_videos(args.input, plan, layout)
        if not group.is_main:
            videos = None  # each video is one resumable stream: rank 0 restores the videos, all ranks the photos
    if group.is_main:
        for _, message in plan.failed:
            print(f"error: {shown(message)}", file=sys.stderr)
    if not plan.todo and not plan.skipped and not plan.failed and not (videos and (videos.todo or videos.skipped)):
        raise UserError(
            f"{shown(' '.join(args.input))}: no images found (.png, .jpg, .jpeg, .bmp, .webp, .tif, .gif); "
            "check the path"
        )
    mine = group.shard(plan)
    summary, video_code = None, 0
    if mine.todo or (videos and videos.todo):
        check_output_folder(layout.root)
        # restorer, detector (with --aligned it only checks that each crop is one), identity scorer, rerank
        # scorers and background upsampler, once, on this rank's device; seed and batch size are its config's
        pipeline = load_pipeline(settings)
        _warn_cpu_upsampler(pipeline)
        run_info = _run_info(args, pipeline)
        images, faces, progress = _progress_bars(len(mine.todo), draw=group.is_main)
        try:
            if mine.todo:
                summary = run_plan(mine, pipeline, layout, aligned=args.aligned, progress=progress, run_info=run_info)
        finally:
            faces.close()
            images.close()
        if videos and videos.todo:
            video_code = restore_video.run(args, videos, pipeline, layout, run_info)
    elif videos and videos.skipped:
        video_code = restore_video.run(args, videos, None, layout, {}, config=settings.config)
    summary = group.merge(plan, mine, summary)
    if not group.is_main:
        return summary.exit_code if summary else (1 if plan.failed else 0)
    if videos and (videos.todo or videos.skipped) and not (plan.todo or plan.skipped or plan.failed):
        return video_code
    return max(_print_summary(plan, summary, layout, aligned=args.aligned), video_code)


def _run_info(args: argparse.Namespace, pipeline) -> dict:
    """What the run report says about the model and the input kind."""
    from ..restore.control import FIDELITY_DIAL, can

    restorer = pipeline.restorer
    run_info = {
        "model": {
            "name": args.model,
            "resolution": restorer.resolution,
            "steps": args.steps,
            "guidance_scale": args.guidance_scale,
            "start_sigma": args.start_sigma,
            "official_numerics": args.official_numerics,
            "seed": args.seed,
            "device": args.device,
        },
        "aligned_input": args.aligned,
    }
    if pipeline.config.options.fidelity is not None and can(restorer, FIDELITY_DIAL):
        table = restorer.fidelity_table
        run_info["model"]["fidelity_table"] = {"source": table.source, "calibrated": table.calibrated}
    return run_info


def _progress_bars(total: int, *, draw: bool):
    """The images and faces progress bars and the ``progress`` callback of :func:`~prefrestore.restore.file_run.run_plan`
    that drives them -> (images, faces, progress); the caller closes both bars."""
    from tqdm import tqdm

    from ..io.io_safety import shown

    # disable=None: bars on a terminal only, so logs and pipes get the error lines and the summary, not \r art;
    # with several ranks only rank 0 draws them (its own share)
    bars = None if draw else True
    images = tqdm(total=total, desc="images", unit="img", position=0, dynamic_ncols=True, disable=bars)
    faces = tqdm(total=0, desc="faces ", unit="face", position=1, dynamic_ncols=True, leave=False, disable=bars)

    def progress(event: str, count: int, message: str | None = None) -> None:
        if event == "faces_found":
            faces.total += count
            faces.refresh()
        elif event == "faces_restored":
            faces.update(count)
        elif event == "image_done":
            images.update(count)
        elif event == "failed":
            tqdm.write(f"error: {shown(message)}", file=sys.stderr)

    return images, faces, progress


def _warn_cpu_upsampler(pipeline) -> None:
    """The warning that --bg-upsampler realesrgan on the CPU is slow (the pipeline loaded it on its device)."""
    from ..restore.realesrgan import RealESRGANUpsampler

    up = pipeline.config.upsampler
    if isinstance(up, RealESRGANUpsampler) and up.device.type == "cpu":
        print(
            "warning: --bg-upsampler realesrgan on the CPU takes minutes per photo (~0.9 ms per input pixel on "
            "2 cores: a 1920x1280 photo is ~37 min); the estimate for each photo is logged",
            file=sys.stderr,
        )


def _print_summary(plan, summary, layout, *, aligned: bool) -> int:
    failed = list(summary.failed) if summary else list(plan.failed)
    done = len(summary.restored) if summary else 0
    parts = [f"restored {_count(done, 'crop' if aligned else 'photo')}"]
    if summary and not aligned:
        parts[0] += f" ({_count(summary.faces, 'face')}{_guard_counts(summary)})"
        if summary.no_face:
            parts.append(f"{len(summary.no_face)} without a face (upscaled only)")
    elif summary and summary.flagged:
        parts[0] += f" ({_guard_counts(summary).removeprefix('; ')})"
    return restore_video.print_outcome(parts, len(plan.skipped), failed, layout.root)


def _guard_counts(summary) -> str:
    """``; identity guard: 2 flagged, 1 replaced by a safer restoration`` (nothing when it flagged no face)."""
    if not summary.flagged:
        return ""
    replaced = f", {summary.fallback} replaced by a safer restoration" if summary.fallback else ""
    return f"; identity guard: {summary.flagged} flagged{replaced}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
