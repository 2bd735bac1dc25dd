"""Temporal blending along a face track, in aligned-crop space.

Aligned crops of one track are already motion-compensated (the smoothed landmarks map the face onto the same
template every frame), so a per-pixel exponential moving average over a track's crops is a temporal filter that
follows the face. What is blended is chosen by ``mode`` (measured in ``benchmarks/bench_video_flicker.py``):

* ``"output"``: average the restorations, ``y_t = w x_t + (1 - w) y_{t-1}``: removes what the restorer does
  differently from frame to frame, whatever its cause.
* ``"input"``: average the degraded crops before restoring: removes the per-frame noise the restorer would
  otherwise respond to; the restorer still sees one (cleaner) face per frame.
* ``"both"`` (the default): average the inputs, restore, then average the restorations: the restorer sees a
  steadier face and what it still does differently is averaged out; the lowest flicker of the three, at the
  same fidelity (measured on the benchmark's still and panning clips).
* ``"none"``: per-frame restoration (still with smoothed landmarks and the same seed for every face).

The blend is motion-adaptive, as recursive video denoisers are: where a frame differs from the running average by
more than noise does (the difference low-passed, so noise averages out and a mouth opening does not), the weight
rises towards 1 and the change comes through at once instead of ghosting in over 1/weight frames.

A track that ends (cut, face left) drops its buffer; a new track starts from its first frame.
Arrays: crops uint8 (S, S, 3) RGB in and out; buffers float32 (S, S, 3) on [0, 255].
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

BlendMode = Literal["both", "output", "input", "none"]
BLEND_MODES = ("both", "output", "input", "none")


class TemporalBlender:
    """Per-track EMAs with weight ``weight`` on the newest frame where it matches the average (1 = no blending).

    change: (lo, hi) levels of the 0-255 difference between the frame and the average, low-passed over
        ``change_sigma`` px of crop: below lo the weight is ``weight``, above hi it is 1, linear in between.

    Whenever blending is on, the degraded crops are averaged too and serve as the colour reference of paste-back
    (``faces/paste.py`` takes the restoration's low frequencies from the crop): a face 3x enlarged into its crop
    carries the input's noise at exactly those frequencies, and taking them from the raw frame would put the
    flicker back.
    """

    def __init__(
        self,
        mode: BlendMode = "both",
        weight: float = 0.1,
        *,
        change: tuple[float, float] = (6.0, 18.0),
        change_sigma: float = 2.0,
    ):
        if mode not in BLEND_MODES:
            raise ValueError(f"unknown temporal blend {mode=}; expected one of {BLEND_MODES}")
        if not 0 < weight <= 1:
            raise ValueError(f"weight={weight} must be in (0, 1]")
        self.mode = mode
        self.weight = weight
        self.change = change
        self.change_sigma = change_sigma
        # "in_<track>" / "out_<track>" -> float32 (S, S, 3); "nin_<track>" / "nout_<track>" -> (1,) frames blended
        self.buffers: dict[str, np.ndarray] = {}

    def _blend(self, key: str, crop: np.ndarray) -> np.ndarray:
        """EMA with a warm-up: the n-th frame of a track gets weight max(weight, 1/n), i.e. the running mean until
        the EMA takes over, so a new track is not dominated by its first frame for 1/weight frames."""
        x = crop.astype(np.float32)
        prev = self.buffers.get(key)
        n = float(self.buffers[f"n{key}"][0]) + 1 if prev is not None and prev.shape == x.shape else 1.0
        if n > 1:
            diff = x - prev  # (S, S, 3)
            change = np.abs(cv2.GaussianBlur(diff, (0, 0), self.change_sigma)).max(axis=2, keepdims=True)
            lo, hi = self.change
            w0 = max(self.weight, 1 / n)
            w = w0 + (1 - w0) * np.clip((change - lo) / (hi - lo), 0.0, 1.0)  # (S, S, 1)
            y = prev + w.astype(np.float32) * diff
        else:
            y = x
        self.buffers[key], self.buffers[f"n{key}"] = y, np.array([n], np.float32)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)

    def before(self, track: int, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A track's degraded crop on this frame -> (the crop to restore, the colour reference for paste-back)."""
        if self.mode == "none":
            return crop, crop
        reference = self._blend(f"in_{track}", crop)
        return (crop if self.mode == "output" else reference), reference

    def after(self, track: int, restored: np.ndarray) -> np.ndarray:
        """The restoration to paste for ``track`` on this frame."""
        return self._blend(f"out_{track}", restored) if self.mode in ("output", "both") else restored

    def keep_only(self, tracks: set[int]) -> None:
        """Forget the buffers of tracks that ended."""
        self.buffers = {k: v for k, v in self.buffers.items() if int(k.split("_")[1]) in tracks}

    def state(self) -> dict[str, np.ndarray]:
        """The buffers by name (for ``np.savez``; float32 round-trips exactly)."""
        return dict(self.buffers)

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.buffers = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
