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
DEFAULTS = {
    "codec": "libx264",
    "crf": 18,
    "preset": "medium",
    "temporal": "both",
    "temporal_weight": 0.1,
    "detect_every": 1,
}


class _Encoding(argparse.Action):
    """``--codec``, ``--preset``, ``--crf``: stored, then the encoder settings parsed so far (the others at their
    defaults) are checked at once by a tiny in-memory encode (``video.io.check_encoding``), so a bad encoder,
    preset or codec/container combination is a one-line error (exit 2) before any input is read or the model
    loads, and leaves nothing behind."""

    def __call__(self, parser, namespace, value, option_string=None):
        import importlib.util

        setattr(namespace, self.dest, value)
        if importlib.util.find_spec("av") is None:
            return  # a photo-only run needs no PyAV; a video run says it is missing
        from ..video.io import check_encoding

        check_encoding(namespace.codec, namespace.crf, namespace.preset)


def _crf(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 63:
        raise UserError(f"--crf {text[:20]}: must be a whole number in 0..63 (18 is visually lossless for H.264)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    g = parser.add_argument_group("videos (found by content among the inputs; needs prefrestore[video])")
    g.add_argument(
        "--codec",
        default=d["codec"],
        action=_Encoding,
        help=f"video encoder, an FFmpeg name that takes yuv420p (default: {d['codec']})",
    )
    g.add_argument(
        "--crf",
        type=_crf,
        default=d["crf"],
        action=_Encoding,
        help=f"encoder quality, lower is better (default: {d['crf']})",
    )
    g.add_argument(
        "--preset",
        default=d["preset"],
        action=_Encoding,
        help=f"x264/x265 speed preset: ultrafast ... veryslow (default: {d['preset']})",
    )
    g.add_argument(
        "--temporal",
        choices=BLEND_MODES,
        default=d["temporal"],
        help="temporal blending along a face track: of inputs and restorations, of restorations only, of "
        f"inputs only, or none (default: {d['temporal']})",
    )
    g.add_argument(
        "--temporal-weight",
        type=float,
        default=d["temporal_weight"],
        metavar="W",
        help=f"the newest frame's share in the blend, (0, 1]; 1 = no blending (default: {d['temporal_weight']})",
    )
    g.add_argument(
        "--detect-every",
        type=int,
        default=d["detect_every"],
        metavar="N",
        help=f"detect faces every N frames (and at scene cuts), tracking in between (default: {d['detect_every']})",
    )


def video_config(args: argparse.Namespace, pipeline_config):
    from ..video import VideoConfig

    if not 0 < args.temporal_weight <= 1:
        raise UserError(f"--temporal-weight {args.temporal_weight}: must be in (0, 1], e.g. 0.1")
    if args.detect_every < 1:
        raise UserError(f"--detect-every {args.detect_every}: must be >= 1")
    if not 0 <= args.crf <= 63:
        raise UserError(f"--crf {args.crf}: must be in 0..63 (18 is visually lossless for H.264)")
    return VideoConfig(
        pipeline=pipeline_config,
        temporal=args.temporal,
        temporal_weight=args.temporal_weight,
        detect_every=args.detect_every,
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
    )


def run(args, plan, pipeline, layout, run_info, *, config=None) -> int:
    """Restore the planned videos with the pipeline's restorer and detector (:class:`prefrestore.restore.loaded.
    Pipeline`; None when every video is skipped, then ``config`` is the run's PipelineConfig), a frames bar
    (frames/s, ETA) per video on a terminal, and the estimate and progress as log lines (:class:`FrameLog`) ->
    1 when any failed, else 0."""
    from tqdm import tqdm

    from ..video import run_videos

    pipeline_config = pipeline.config if pipeline is not None else config
    restorer, detector = (pipeline.restorer, pipeline.detector) if pipeline is not None else (None, None)
    config = video_config(args, pipeline_config)
    photo_only = _photo_only_options(pipeline_config.options)
    if photo_only:
        print(
            f"warning: {', '.join(photo_only)} apply to photos only; videos are restored without them "
            "(one seed per track, no identity fallback, every face)",
            file=sys.stderr,
        )
    bar = log = None
    terminal = sys.stderr.isatty()

    def write(line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    def progress(event: str, count: int, message: str | None = None) -> None:
        nonlocal bar, log
        if event == "frames_total":
            if bar is not None:
                bar.close()
            bar = tqdm(total=count or None, desc=message, unit="frame", dynamic_ncols=True, disable=None)
            log = FrameLog(message or "video", count, write=write, periodic=not terminal)
        elif event == "frame_done":
            if bar is not None:
                bar.update(count)
            if log is not None:
                log.update(count)
        elif event == "failed":
            tqdm.write(f"error: {message}", file=sys.stderr)

    try:
        restored, failed = run_videos(plan, restorer, detector, layout, config, run_info=run_info, progress=progress)
    finally:
        if bar is not None:
            bar.close()

    parts = [f"restored {len(restored)} video{'s' if len(restored) != 1 else ''}"]
    return print_outcome(parts, len(plan.skipped), failed, layout.root / "restored_videos")


class FrameLog:
    """One video's progress in words: once ``warmup`` frames are restored, the estimate (frames x the measured
    seconds per frame); then, with ``periodic`` (stderr is a log or a pipe, where no bar is drawn), a line every
    ``interval`` seconds with the frames done and the time left. Frames a resumed run had already done (reported
    at once, before any work) are not timed."""

    def __init__(
        self, name: str, total: int, *, write, periodic: bool, interval: float = 30.0, warmup: int = 8, clock=None
    ):
        import time

        self.name, self.total, self.write, self.periodic = name, total, write, periodic
        self.interval, self.warmup, self.clock = interval, warmup, clock or time.monotonic
        self.start = self.last = self.clock()
        self.done = self.resumed = self.timed = 0
        self.estimated = False

    def update(self, count: int) -> None:
        now = self.clock()
        if self.done == 0 and self.timed == 0 and count > 1 and now - self.start < 1.0:
            self.done = self.resumed = count  # a resume's finished frames, reported at once
            self.start = self.last = now
            return
        self.done += count
        self.timed += count
        left = max(self.total - self.done, 0)
        rate = (now - self.start) / self.timed
        if not self.estimated and (self.timed >= self.warmup or left == 0):
            self.estimated, self.last = True, now
            resumed = f", {self.resumed} done before" if self.resumed else ""
            if left:
                self.write(
                    f"{self.name}: {self.total or '?'} frames{resumed}, {rate:.2f} s/frame measured on the "
                    f"first {self.timed}: about {duration(rate * (self.total - self.resumed))} in all, "
                    f"{duration(rate * left)} left"
                )
        elif self.periodic and self.estimated and left and now - self.last >= self.interval:
            self.last = now
            share = f" ({self.done / self.total:.0%})" if self.total else ""
            self.write(
                f"{self.name}: {self.done}/{self.total or '?'} frames{share}, {rate:.2f} s/frame, about "
                f"{duration(rate * left)} left"
            )


def duration(seconds: float) -> str:
    """``42 s``, ``4 min 10 s``, ``2 h 5 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _photo_only_options(options) -> list[str]:
    """The flags of the control options set away from their defaults that the video path does not apply."""
    import dataclasses

    from ..restore.options import RestoreOptions
    from ..video.run import VIDEO_OPTIONS

    default = RestoreOptions()
    return [
        f.metadata["setting"].flag
        for f in dataclasses.fields(RestoreOptions)
        if f.name not in VIDEO_OPTIONS and getattr(options, f.name) != getattr(default, f.name)
    ]


def print_outcome(parts: list[str], skipped: int, failed: list, root) -> int:
    """The summary line (what was done, skipped, failed -> where) and the failures -> the exit status."""
    from ..io.io_safety import shown

    if skipped:
        parts.append(f"{skipped} skipped (outputs exist; --overwrite to redo)")
    if failed:
        parts.append(f"{len(failed)} failed")
    print(", ".join(parts) + f" -> {shown(root)}", file=sys.stderr)
    for _, message in failed:
        print(f"  failed: {shown(message)}", file=sys.stderr)
    return 1 if failed else 0
