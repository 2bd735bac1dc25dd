# ruff: noqa: T201  (a command: it reports to the terminal; pyproject exempts only cli.py so far)
"""`prefrestore restore`: restore the faces in photos (or in aligned face crops).

    prefrestore restore INPUT [INPUT ...] -o OUTPUT [-s UPSCALE] [--aligned] [--only-center-face]
        [--min-face-size PX] [--max-faces N] [--det-threshold T] [--ext auto|png|jpg] [--suffix S] [--overwrite]
        [--model default] [--steps K] [--guidance-scale G] [--start-sigma S] [--official-numerics] [--seed N]
        [--batch-size B]
        [--device cpu] [--jpeg-quality Q] [--bg-upsampler lanczos|realesrgan] [--fidelity F] [--candidates N]
        [--identity-guard off|flag|fallback] [--faces I,J] [--max-face-size PX] [--blend A]
        [--color-fix lowfreq|meanstd|none] ...

The settings' flags (sampling, photo, output, control) are generated from their one declaration,
``prefrestore.restore.options`` (shared with the Python API and the HTTP API: same names, bounds and messages). GFPGAN's and CodeFormer's spellings (``-i``,
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
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist (default: skip)")
    options.add_arguments(
        parser, "restore"
    )  # the settings (prefrestore.restore.options): -s, --model, --fidelity, ...
    restore_video.add_arguments(parser)


def check_arguments(args: argparse.Namespace) -> str | None:
    """After parsing, before anything runs: the settings checked (``args.settings``, a
    :class:`~prefrestore.restore.options.RestoreSettings`) and the inputs given as flags joined to the positional ones ->
    a usage message for the restore parser, or None."""
    from ..restore.options import RestoreSettings

    args.settings = RestoreSettings.from_namespace(args, "restore")  # a bad value: a SettingError, one line, exit 2
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
    """The checked settings (``args.settings``, read from the flags when ``check_arguments`` did not run) with this
    process's device, and the output layout; a bad value is a one-line UserError naming the flag. The device is
    this process's checked device (``cuda`` -> ``cuda:LOCAL_RANK`` under a launcher:
    :func:`prefrestore.restore.loaded.on_rank`), in ``args.settings`` and ``args.device``."""
    from pathlib import Path

    from ..io.io_safety import shown
    from ..restore.file_run import OutputLayout
    from ..restore.loaded import on_rank
    from ..restore.options import RestoreSettings

    settings = getattr(args, "settings", None) or RestoreSettings.from_namespace(args, "restore")
    if not args.output.strip():
        raise UserError("-o '': empty output folder name; give a folder, e.g. -o results")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise UserError(f"-o {shown(args.output)}: exists and is not a folder; choose another -o")
    args.settings = settings = on_rank(settings, ranks)
    args.device = settings.sampling.device
    out = settings.output
    layout = OutputLayout(
        Path(args.output),
        ext=out.output_format,
        suffix=out.suffix,
        overwrite=args.overwrite,
        jpeg_quality=out.jpeg_quality,
    )
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
        from ..restore.pipeline import PipelineConfig

        config = PipelineConfig.for_settings(settings)
        video_code = restore_video.run(args, videos, None, layout, {}, config=config)
    summary = group.merge(plan, mine, summary)
    if not group.is_main:
        return summary.exit_code if summary else (1 if plan.failed else 0)
    if videos and (videos.todo or videos.skipped) and not (plan.todo or plan.skipped or plan.failed):
        return video_code
    return max(_print_summary(plan, summary, layout, aligned=args.aligned), video_code)


def _run_info(args: argparse.Namespace, pipeline) -> dict:
    """What the run report says about the model and the input kind."""
    from ..restore.control import FIDELITY_DIAL, can

    sampling, restorer = args.settings.sampling, pipeline.restorer
    run_info = {
        "model": {
            "name": sampling.model,
            "resolution": restorer.resolution,
            "steps": sampling.steps,
            "guidance_scale": sampling.guidance_scale,
            "start_sigma": sampling.start_sigma,
            "official_numerics": sampling.official_numerics,
            "flip_ensemble": sampling.flip_ensemble,
            "seed": sampling.seed,
            "device": sampling.device,
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
