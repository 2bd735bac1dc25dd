"""Short test clips built from the offline photos: pan, zoom, a cut, a face entering and leaving, a sine tone.

Frames are uint8 (H, W, 3) RGB; ``write_clip`` encodes them with PyAV (H.264 yuv420p, AAC audio) so that the
tests exercise real containers.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np


def scene(photo: np.ndarray, size: int, scale: float, center: tuple[float, float]) -> np.ndarray:
    """A (size, size) view of ``photo`` scaled by ``scale`` around ``center`` (photo pixels), reflect-padded."""
    m = np.array([[scale, 0, size / 2 - scale * center[0]], [0, scale, size / 2 - scale * center[1]]])
    return cv2.warpAffine(
        photo,
        m,
        (size, size),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def pan_zoom_cut(astronaut: np.ndarray, grace: np.ndarray, *, size: int = 128, n: int = 24) -> list[np.ndarray]:
    """n frames: astronaut panning right (n/3), zooming in (n/3), then a cut to Grace Hopper (n/3)."""
    third = n // 3
    frames = [scene(astronaut, size, 0.5, (200 + 2 * i, 170)) for i in range(third)]
    frames += [scene(astronaut, size, 0.5 + 0.01 * i, (200 + 2 * third, 170)) for i in range(third)]
    g = grace.shape
    frames += [scene(grace, size, size / g[1] * 1.1, (g[1] / 2, g[0] * 0.42)) for _ in range(n - 2 * third)]
    return frames


def enter_leave(astronaut: np.ndarray, *, size: int = 128, n: int = 30) -> list[np.ndarray]:
    """The view pans from the rocket-free right of the photo across the face and out to the left."""
    xs = np.linspace(470, -40, n)
    return [scene(astronaut, size, 0.5, (float(x), 170)) for x in xs]


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    """(1, T) float32 mono sine in [-0.5, 0.5]."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None]


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = 12,
    audio: bool = True,
    rotation: int = 0,
    pts: list[int] | None = None,
    container: str = "mp4",
    crf: int = 12,
) -> Path:
    """Encode frames (and a 440 Hz tone as long as the clip) to ``path``; pts in 1/fps units (None: 0, 1, ...)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=container) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "ultrafast"}
        vs.codec_context.time_base = Fraction(1, fps)
        if rotation:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:
            aus = c.add_stream("aac", rate=16000)
            aus.layout = "mono"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i if pts is None else pts[i]
            vf.time_base = Fraction(1, fps)
            for p in vs.encode(vf):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        if aus is not None:
            last = (pts[-1] + 1) if pts else len(frames)
            samples = tone(last / fps)
            step = 1024
            for s in range(0, samples.shape[1], step):
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(samples[:, s : s + step]), format="fltp", layout="mono"
                )
                af.sample_rate = 16000
                af.pts = s
                for p in aus.encode(af):
                    c.mux(p)
            for p in aus.encode(None):
                c.mux(p)
    return path
