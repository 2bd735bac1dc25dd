"""The video part of `prefrestore restore`: its options and its progress bar (videos are found by content among
the inputs; see ``prefrestore.video``).

    --codec libx264 --crf 18 --preset medium --temporal both|output|input|none --temporal-weight 0.1 --detect-every 1
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError

# What the parser shows: prefrestore.video's BLEND_MODES and VideoConfig's defaults, written out here so that
# `restore --help` imports no torch or PyAV (tests/test_restore_cli.py checks that they agree).
BLEND_MODES = ("both", "output", "input", "none")
DEFAULTS = {"codec": "libx264", "crf": 18, "preset": "medium", "temporal": "both", "temporal_weight": 0.1,
            "detect_every": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    g = parser.add_argument_group("videos (found by content among the inputs; needs prefrestore[video])")
    g.add_argument("--codec", default=d["codec"],
                   help=f"video encoder, an FFmpeg name (default: {d['codec']}, yuv420p)")
    g.add_argument("--crf", type=int, default=d["crf"],
                   help=f"encoder quality, lower is better (default: {d['crf']})")
    g.add_argument("--preset", default=d["preset"],
                   help=f"x264/x265 speed preset: ultrafast ... veryslow (default: {d['preset']})")
    g.add_argument("--temporal", choices=BLEND_MODES, default=d["temporal"],
                   help="temporal blending along a face track: of inputs and restorations, of restorations only, of "
                        f"inputs only, or none (default: {d['temporal']})")
    g.add_argument("--temporal-weight", type=float, default=d["temporal_weight"], metavar="W",
                   help="the newest frame's share in the blend, (0, 1]; 1 = no blending (default: "
                        f"{d['temporal_weight']})")
    g.add_argument("--detect-every", type=int, default=d["detect_every"], metavar="N",
                   help=f"detect faces every N frames (and at scene cuts), tracking in between (default: "
                        f"{d['detect_every']})")


def video_config(args: argparse.Namespace, pipeline_config):
    from ..video import VideoConfig

    if not 0 < args.temporal_weight <= 1:
        raise UserError(f"--temporal-weight {args.temporal_weight}: must be in (0, 1], e.g. 0.1")
    if args.detect_every < 1:
        raise UserError(f"--detect-every {args.detect_every}: must be >= 1")
    if not 0 <= args.crf <= 63:
        raise UserError(f"--crf {args.crf}: must be in 0..63 (18 is visually lossless for H.264)")
    return VideoConfig(pipeline=pipeline_config, temporal=args.temporal, temporal_weight=args.temporal_weight,
                       detect_every=args.detect_every, codec=args.codec, crf=args.crf,
                       preset=args.preset)


def run(args, plan, restorer, detector, pipeline_config, layout, run_info) -> int:
    """Restore the planned videos with a frames bar (frames/s, ETA) per video -> 1 when any failed, else 0."""
    from tqdm import tqdm

    from ..video import run_videos

    config = video_config(args, pipeline_config)
    photo_only = _photo_only_options(pipeline_config.options)
    if photo_only:
        print(f"warning: {', '.join(photo_only)} apply to photos only; videos are restored without them "
              "(one seed per track, no identity fallback, every face)", file=sys.stderr)
    bar = None

    def progress(event: str, count: int, message: str | None = None) -> None:
        nonlocal bar
        if event == "frames_total":
            if bar is not None:
                bar.close()
            bar = tqdm(total=count or None, desc=message, unit="frame", dynamic_ncols=True, disable=None)
        elif event == "frame_done" and bar is not None:
            bar.update(count)
        elif event == "failed":
            tqdm.write(f"error: {message}", file=sys.stderr)

    try:
        restored, failed = run_videos(plan, restorer, detector, layout, config, run_info=run_info, progress=progress)
    finally:
        if bar is not None:
            bar.close()

    parts = [f"restored {len(restored)} video{'s' if len(restored) != 1 else ''}"]
    return print_outcome(parts, len(plan.skipped), failed, layout.root / "restored_videos")


def _photo_only_options(options) -> list[str]:
    """The flags of prefrestore.options set away from their defaults that the video path does not apply."""
    from ..options import OPTIONS, RestoreOptions
    from ..video.run import VIDEO_OPTIONS

    default = RestoreOptions()
    return [spec.flag for spec in OPTIONS
            if spec.name not in VIDEO_OPTIONS and getattr(options, spec.name) != getattr(default, spec.name)]


def print_outcome(parts: list[str], skipped: int, failed: list, root) -> int:
    """The summary line (what was done, skipped, failed -> where) and the failures -> the exit status."""
    from ..io_safety import shown

    if skipped:
        parts.append(f"{skipped} skipped (outputs exist; --overwrite to redo)")
    if failed:
        parts.append(f"{len(failed)} failed")
    print(", ".join(parts) + f" -> {shown(root)}", file=sys.stderr)
    for _, message in failed:
        print(f"  failed: {shown(message)}", file=sys.stderr)
    return 1 if failed else 0
