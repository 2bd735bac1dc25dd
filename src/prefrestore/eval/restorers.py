"""What ``prefrestore eval`` can restore with: the bicubic baseline or a prefrestore model.

A restorer has ``resolution`` (S) and ``restore(faces: list of uint8 (S, S, 3) RGB, *, seed) -> list of uint8
(S, S, 3) RGB``, the contract of :func:`prefrestore.api.load_restorer`. The harness resizes each LQ to S (bicubic)
before and each output to the reference size (bicubic) after, so a restorer never sees other sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Restorer(Protocol):
    resolution: int

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]: ...


@dataclass
class BicubicRestorer:
    """The "bicubic" baseline: the LQ upsampled (bicubic) to the output size; seed-independent."""

    resolution: int

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
        # The harness already resized the LQ to ``resolution`` with bicubic: that is the whole baseline.
        return [np.array(f, copy=True) for f in faces]


@dataclass(frozen=True)
class RestorerSpec:
    """How to build the restorer; recorded in the run's settings."""

    model: str
    device: str = "cpu"
    steps: int | None = None
    guidance_scale: float | None = None
    deterministic: bool = True
    batch_size: int = 8


def build_restorer(spec: RestorerSpec, *, output_size: int, seed: int = 0) -> Restorer:
    """``bicubic`` -> :class:`BicubicRestorer` at ``output_size``; anything else -> prefrestore.api.load_restorer."""
    if spec.model == "bicubic":
        return BicubicRestorer(resolution=output_size)
    from .. import api  # lazily: the model stack is heavy and optional for scoring

    return api.load_restorer(
        spec.model,
        device=spec.device,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        deterministic=spec.deterministic,
        batch_size=spec.batch_size,
        seed=seed,
    )
