"""Peak memory and speed of video restoration against clip length (streaming: memory must not grow with duration).

    .venv/bin/python benchmarks/bench_video_memory.py [--size 1920x1080] [--seconds 30 120] [--fps 30]
        [--model identity|default|PATH] [--detect-every 1 10] [--upscale 1] [--threads 2] [--preset medium]

For each duration a clip is synthesised (skimage's astronaut filling the frame, slowly panning and zooming, one
face) and encoded; then each (duration, detect-every) run happens in a fresh subprocess, so its peak RSS
(``ru_maxrss``) is that run's own: decode -> detect/track -> restore -> paste -> encode -> mux, the whole of
``restore_video``. ``--model identity`` restores nothing (the streaming path alone); ``default`` is the bundled
model. Prints one JSON object with, per run: frames, peak RSS (MB), frames per second and the report's timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class IdentityRestorer:
    resolution = 128

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        return [f.copy() for f in faces]


def make_clip(path: Path, size: tuple[int, int], seconds: float, fps: int) -> int:
    import cv2
    from skimage.data import astronaut

    from prefrestore.video.io import write_video

    w, h = size
    photo = cv2.resize(astronaut(), (int(h * 1.2), int(h * 1.2)), interpolation=cv2.INTER_CUBIC)
    n = int(round(seconds * fps))

    def frames():  # generated as they are encoded: the clip is never in memory
        for i in range(n):
            t = i / max(n - 1, 1)
            z = 1.0 + 0.1 * np.sin(2 * np.pi * t)
            m = np.array(
                [[z, 0, w / 2 - z * (photo.shape[1] * (0.45 + 0.05 * t))], [0, z, h / 2 - z * photo.shape[0] * 0.35]]
            )
            yield cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    return write_video(path, frames(), fps, crf=23, preset="ultrafast")


def child(args: argparse.Namespace) -> None:
    import torch

    from prefrestore.faces.detect import build_detector
    from prefrestore.restore.pipeline import PipelineConfig
    from prefrestore.video import VideoConfig, restore_video

    torch.set_num_threads(args.threads)
    if args.model == "identity":
        restorer = IdentityRestorer()
    else:
        from prefrestore.restore.api import load_restorer

        restorer = load_restorer(args.model)
    config = VideoConfig(
        pipeline=PipelineConfig(upscale=args.upscale), detect_every=args.detect_every[0], preset=args.preset
    )
    t0 = time.perf_counter()
    rep = restore_video(
        args.child,
        Path(args.child).with_suffix(".out.mp4"),
        restorer,
        build_detector("mtcnn", min_face_size=40),
        config,
    )
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "frames": rep["frames"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "wall_s": round(wall, 1),
                "frames_per_s": round(rep["frames"] / wall, 2),
                "faces": sum(rep["faces_per_frame"]),
                "timings_s": rep["timings_s"],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--seconds", type=float, nargs="+", default=[30, 120])
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--model", default="identity")
    ap.add_argument("--detect-every", type=int, nargs="+", default=[10])
    ap.add_argument("--upscale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="medium", help="x264 preset of the output (default: medium, the default)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    size = tuple(int(v) for v in args.size.split("x"))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            clip = Path(tmp) / f"clip_{seconds:g}s.mp4"
            frames = make_clip(clip, size, seconds, args.fps)
            for every in args.detect_every:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(clip),
                    "--model",
                    args.model,
                    "--detect-every",
                    str(every),
                    "--upscale",
                    str(args.upscale),
                    "--threads",
                    str(args.threads),
                    "--preset",
                    args.preset,
                ]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs.append(
                    {
                        "seconds": seconds,
                        "input_frames": frames,
                        "detect_every": every,
                        **json.loads(out.strip().splitlines()[-1]),
                    }
                )
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # partial results survive an interruption
    print(
        json.dumps(
            {
                "size": args.size,
                "fps": args.fps,
                "model": args.model,
                "upscale": args.upscale,
                "threads": args.threads,
                "preset": args.preset,
                "machine": platform.processor() or platform.machine(),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
