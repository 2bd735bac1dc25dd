"""Flicker of restored faces in video: per-frame independent restoration vs tracked + temporally blended.

    .venv/bin/python benchmarks/bench_video_flicker.py [--model default|identity|PATH] [--frames 24] [--size 192]
        [--threads 2]

Clips (built here from skimage's astronaut, HQ ``--size`` px, the face ~``0.42 * size`` px wide): "still" (a face
that sways by 0.3 px, as a seated person does) and "pan" (the camera pans 0.5 px per frame). Each HQ frame is
degraded independently (Gaussian blur sigma 1.5, 2x bilinear downsampling, Gaussian noise 6/255 with a new seed
per frame, JPEG 50: what per-frame noise and compression look like), written losslessly and restored at 2x (back
to the HQ size), encoded losslessly (CRF 0) so the codec adds nothing.

Flicker = mean absolute frame-to-frame change (0-255 RGB) inside the face box after compensating the known motion
(the previous frame translated by the known shift, bicubic). The same measure on the clean HQ clip gives its own
change: on its RGB frames ("clean_rgb", interpolation only) and, the reference the ratios use, on the clean clip as
a video ("clean", lossless H.264 yuv420p: what any restored video is stored as; 4:2:0 chroma of a moving face
changes from frame to frame). Fidelity = PSNR of the face box against the clean clip.

Methods: "independent" = raw per-frame landmarks, no blending (CodeFormer's way), with the run's seed or a new
seed per frame ("independent_new_seed", what a diffusion restorer with fresh noise does); "smoothed" = tracked,
smoothed landmarks; "ours_both" (the default) / "ours_output" / "ours_input" = smoothed + blending of inputs and
outputs / outputs / inputs (``--weight``, default the library's).
``--skip`` leaves methods out (the new-seed baseline restores one face per call and is the slowest).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from prefrestore.degradations import ops
from prefrestore.faces.detect import build_detector
from prefrestore.io.image import uint8_to_unit, unit_to_uint8
from prefrestore.restore.pipeline import PipelineConfig
from prefrestore.video import TrackConfig, VideoConfig, restore_video
from prefrestore.video.io import frame_to_rgb, write_video


class IdentityRestorer:
    def __init__(self, resolution: int):
        self.resolution = resolution

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        return [f.copy() for f in faces]


class NewSeedEachFace:
    """Wraps a restorer so that every face gets a fresh seed (independent noise per frame)."""

    def __init__(self, inner):
        self.inner, self.resolution, self.count = inner, inner.resolution, 0

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        out = []
        for f in faces:
            self.count += 1
            out += self.inner.restore([f], seed=seed + self.count)
        return out


def hq_clip(kind: str, n: int, size: int) -> tuple[list[np.ndarray], list[float]]:
    """-> HQ uint8 (size, size, 3) frames and the horizontal shift of the content at each frame (px)."""
    from skimage.data import astronaut

    scale = size / 512 * 1.6
    photo = cv2.resize(astronaut(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)  # anti-aliased once
    cx, cy = 230.0 * scale, 150.0 * scale
    shifts = [0.3 * np.sin(2 * np.pi * t / 12) if kind == "still" else 0.5 * t for t in range(n)]
    frames = []
    for dx in shifts:  # translation only: sub-pixel moves of a band-limited image, so the clean change is small
        m = np.array([[1.0, 0, size / 2 - cx + dx], [0, 1.0, size / 2 - cy]])
        frames.append(cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101))
    return frames, shifts


def degrade(frame: np.ndarray, seed: int) -> np.ndarray:
    x = uint8_to_unit(frame)
    x = ops.blur(x, ops.gaussian_kernel(9, 1.5, 1.5, 0.0))
    h, w = frame.shape[:2]
    x = ops.resize_bilinear(x, (h // 2, w // 2))
    x = ops.add_gaussian_noise(x, 6 / 255, seed)
    return unit_to_uint8(ops.jpeg(x, 50))


def read_all(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [frame_to_rgb(f) for f in c.decode(c.streams.video[0])]


def flicker(frames: list[np.ndarray], shifts: list[float], box: tuple[int, int, int, int]) -> float:
    """Mean |frame_t - shift(frame_{t-1})| over the face box moved with the content, 0-255."""
    x0, y0, x1, y1 = box
    diffs = []
    for t in range(1, len(frames)):
        d = shifts[t] - shifts[t - 1]
        prev = cv2.warpAffine(
            frames[t - 1].astype(np.float32),
            np.array([[1, 0, d], [0, 1, 0]], np.float64),
            frames[t].shape[1::-1],
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        o = round(shifts[t])
        diffs.append(
            np.abs(frames[t][y0:y1, x0 + o : x1 + o].astype(np.float32) - prev[y0:y1, x0 + o : x1 + o]).mean()
        )
    return float(np.mean(diffs))


def face_psnr(frames, clean, shifts, box) -> float:
    x0, y0, x1, y1 = box
    mse = [
        np.mean(
            (f[y0:y1, x0 + round(s) : x1 + round(s)].astype(np.float64) - c[y0:y1, x0 + round(s) : x1 + round(s)]) ** 2
        )
        for f, c, s in zip(frames, clean, shifts, strict=True)
    ]
    return float(10 * np.log10(255**2 / np.mean(mse)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--weight", type=float, default=VideoConfig().temporal_weight)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="methods to leave out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "identity":
        restorer = IdentityRestorer(128)
    else:
        from prefrestore.restore.api import load_restorer

        restorer = load_restorer(args.model)
    detector = build_detector("mtcnn", min_face_size=12)
    raw_landmarks = TrackConfig(alpha=1.0)
    methods = {
        "independent": (restorer, VideoConfig(track=raw_landmarks, temporal="none")),
        "independent_new_seed": (NewSeedEachFace(restorer), VideoConfig(track=raw_landmarks, temporal="none")),
        "smoothed": (restorer, VideoConfig(temporal="none")),
        "ours_both": (restorer, VideoConfig(temporal="both", temporal_weight=args.weight)),
        "ours_output": (restorer, VideoConfig(temporal="output", temporal_weight=args.weight)),
        "ours_input": (restorer, VideoConfig(temporal="input", temporal_weight=args.weight)),
    }
    methods = {k: v for k, v in methods.items() if k not in args.skip}
    result: dict = {
        "model": args.model,
        "frames": args.frames,
        "hq_size": args.size,
        "weight": args.weight,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "clips": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("still", "pan"):
            clean, shifts = hq_clip(kind, args.frames, args.size)
            dets = detector.detect(clean[0])
            x0, y0, x1, y1 = (int(round(v)) for v in dets[0].box)
            pad = 4 + int(np.ceil(max(abs(s) for s in shifts)))
            box = (max(x0, pad), max(y0, 0), min(x1, args.size - pad - 1), min(y1, args.size))
            lq_path = Path(tmp) / f"{kind}.mp4"
            lq = [degrade(f, seed=t) for t, f in enumerate(clean)]
            write_video(lq_path, lq, 24, crf=0, preset="ultrafast")  # lossless
            bicubic = [cv2.resize(f, (args.size, args.size), interpolation=cv2.INTER_CUBIC) for f in lq]
            write_video(Path(tmp) / "clean.mp4", clean, 24, crf=0, preset="ultrafast")
            row = {
                "face_box": list(box),
                "clean": flicker(read_all(Path(tmp) / "clean.mp4"), shifts, box),
                "clean_rgb": round(flicker(clean, shifts, box), 3),
                "lq_bicubic": flicker(bicubic, shifts, box),
                "methods": {},
            }
            for name, (r, cfg) in methods.items():
                cfg = VideoConfig(
                    pipeline=PipelineConfig(upscale=2, batch_size=8),
                    track=cfg.track,
                    temporal=cfg.temporal,
                    temporal_weight=cfg.temporal_weight,
                    crf=0,
                )
                out = Path(tmp) / f"{kind}_{name}.mp4"
                t0 = time.perf_counter()
                report = restore_video(lq_path, out, r, detector, cfg)
                frames = read_all(out)
                row["methods"][name] = {
                    "flicker": round(flicker(frames, shifts, box), 3),
                    "face_psnr_db": round(face_psnr(frames, clean, shifts, box), 2),
                    "faces": sum(report["faces_per_frame"]),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            m = row["methods"]
            for name in ("ours_both", "ours_output", "ours_input", "smoothed"):
                for base in ("independent", "independent_new_seed"):
                    if name in m and base in m:
                        m[name][f"{base}_over_this"] = round(m[base]["flicker"] / max(m[name]["flicker"], 1e-9), 2)
                if name in m:
                    m[name]["this_over_clean"] = round(m[name]["flicker"] / max(row["clean"], 1e-9), 2)
            row["clean"], row["lq_bicubic"] = round(row["clean"], 3), round(row["lq_bicubic"], 3)
            result["clips"][kind] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
