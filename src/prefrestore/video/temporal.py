"""Temporal blending along a face track, in aligned-crop space.

Aligned crops of one track are already motion-compensated (the smoothed landmarks map the face onto the same
template every frame), so a per-pixel exponential moving average over a track's crops is a temporal filter that
follows the face. Two places to blend, chosen by ``mode`` (measured in ``benchmarks/bench_video_flicker.py``):

* ``"output"``: average the restorations, ``y_t = w x_t + (1 - w) y_{t-1}``: removes what the restorer does
  differently from frame to frame, whatever its cause.
* ``"input"``: average the degraded crops before restoring: removes the per-frame noise the restorer would
  otherwise respond to; the restorer still sees one (cleaner) face per frame.
* ``"none"``: per-frame restoration (still with smoothed landmarks and the same seed for every face).

A track that ends (cut, face left) drops its buffer; a new track starts from its first frame.
Arrays: crops uint8 (S, S, 3) RGB in and out; buffers float32 (S, S, 3) on [0, 255].
"""

from __future__ import annotations

from typing import Literal

import numpy as np

BlendMode = Literal["none", "output", "input"]
BLEND_MODES = ("none", "output", "input")


class TemporalBlender:
    """Per-track EMA with weight ``weight`` on the newest frame (1 = no blending)."""

    def __init__(self, mode: BlendMode = "output", weight: float = 0.35):
        if mode not in BLEND_MODES:
            raise ValueError(f"unknown temporal blend {mode=}; expected one of {BLEND_MODES}")
        if not 0 < weight <= 1:
            raise ValueError(f"weight={weight} must be in (0, 1]")
        self.mode = mode
        self.weight = weight
        self.buffers: dict[int, np.ndarray] = {}

    def _blend(self, track: int, crop: np.ndarray) -> np.ndarray:
        x = crop.astype(np.float32)
        prev = self.buffers.get(track)
        y = x if prev is None or prev.shape != x.shape else prev + np.float32(self.weight) * (x - prev)
        self.buffers[track] = y
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)

    def before(self, track: int, crop: np.ndarray) -> np.ndarray:
        """The crop to restore for ``track`` on this frame."""
        return self._blend(track, crop) if self.mode == "input" else crop

    def after(self, track: int, restored: np.ndarray) -> np.ndarray:
        """The restoration to paste for ``track`` on this frame."""
        return self._blend(track, restored) if self.mode == "output" else restored

    def keep_only(self, tracks: set[int]) -> None:
        """Forget the buffers of tracks that ended."""
        self.buffers = {k: v for k, v in self.buffers.items() if k in tracks}

    def state(self) -> dict[str, np.ndarray]:
        """Buffers as arrays named ``track_<id>`` (for ``np.savez``; float32 round-trips exactly)."""
        return {f"track_{k}": v for k, v in self.buffers.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.buffers = {int(k.removeprefix("track_")): np.asarray(v, np.float32) for k, v in arrays.items()}
