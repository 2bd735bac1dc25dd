"""The Python API: load a model and restore aligned face crops.

    >>> from prefrestore.restore.api import load_restorer
    >>> r = load_restorer("tiny")                   # or "default", a model folder, or a HF repo id
    >>> restored = r.restore([crop])                # uint8 (S, S, 3) RGB, S = r.resolution

Contract: faces in and out are uint8 (S, S, 3) RGB numpy arrays at the model resolution (128 tiny, 512 paper).
Every face gets its own torch.Generator seeded with the call's ``seed`` (default 0), so a face restores the same
whether it is alone or in a batch, and repeated calls with the same seed are bit-identical on the same machine.
The restorer stores no seed and batches nothing by default: the caller owns both (the photo pipeline passes
``PipelineConfig.seed`` on every call and sends ``PipelineConfig.batch_size`` faces per call).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..checkpoints import load_model, random_model  # noqa: F401 - re-exported: part of the public API
from ..errors import ImageError, RestorationError
from ..io.image import from_model, to_model
from ..models.fidelity_dial import FidelityPoint, FidelityTable, find_table
from ..models.presets import PRESETS
from ..models.restorer import PrefRestoreModel
from .control import FIDELITY_DIAL, PER_FACE_SEEDS

log = logging.getLogger(__name__)


@dataclass
class FaceRestorer:
    """Aligned crops in, restorations out (see the module docstring).

    fidelity: the default of the fidelity dial (``models/fidelity_dial.py``; 1 = closest to the input, 0 = most
        generative); None samples with the model's own settings (or ``steps``/``guidance_scale``/``start_sigma``).
    model_dir: the folder the weights came from; where the calibrated fidelity table is looked up.
    batch_size: at most this many faces per model forward (bounds memory when one call gets many faces); None: a
        call is one forward. The seed is an argument of every call, not a setting.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({FIDELITY_DIAL, PER_FACE_SEEDS})  # the dial; seeds=

    model: PrefRestoreModel
    steps: int | None = None
    guidance_scale: float | None = None
    solver: str | None = None
    deterministic: bool = True
    batch_size: int | None = None
    start_sigma: float | None = None  # None: the model's (SamplingDefaults.start_sigma)
    fidelity: float | None = None
    numerics: str | None = None  # None: the model's; "official": the official loop's arithmetic (SamplingDefaults)
    flip_ensemble: bool | None = None  # None: the model's; average with the restored mirror image (SamplingDefaults)
    model_dir: Path | None = None
    _table: FidelityTable | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1, or None for one forward per call")
        if self.fidelity is not None:
            self.check_fidelity(self.fidelity)

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @property
    def fidelity_table(self) -> FidelityTable:
        """The model's dial (loaded on first use: calibrated table beside the model or in assets, else generic)."""
        if self._table is None:
            d = self.model.config.sampling
            self._table = find_table(self.model_dir, d.start_sigma, d.guidance_scale)
        return self._table

    def check_fidelity(self, fidelity: float) -> None:
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity={fidelity} must be in [0, 1] (1 = closest to the input, 0 = most generative)")
        if self.start_sigma is not None or self.guidance_scale is not None:
            raise ValueError("fidelity sets start_sigma and guidance_scale itself; give fidelity or those, not both")

    def setting(self, fidelity: float | None = None) -> FidelityPoint | None:
        """The dial's setting for ``fidelity`` (default: this restorer's), or None when sampling is not dialled."""
        f = self.fidelity if fidelity is None else fidelity
        if f is None:
            return None
        self.check_fidelity(f)
        return self.fidelity_table.at(f)

    @torch.no_grad()
    def restore_tensor(
        self, lq: torch.Tensor, *, seed: int = 0, fidelity: float | None = None, seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(B, 3, S, S) float RGB in [-1, 1] -> (B, 3, S, S) in [-1, 1]; ``batch_size`` rows per forward (None: B).

        seeds: one seed per row (best-of-N batches candidates of one face with different seeds); default: ``seed``
        for every row. fidelity: see the class docstring; its input blend mixes ``lq`` itself back in.
        """
        seeds = [seed] * lq.shape[0] if seeds is None else list(seeds)
        if len(seeds) != lq.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for {lq.shape[0]} faces")
        point = self.setting(fidelity)
        start_sigma = self.start_sigma if point is None else point.start_sigma
        guidance = self.guidance_scale if point is None else point.guidance_scale
        outs, step = [], self.batch_size or max(1, lq.shape[0])
        for i in range(0, lq.shape[0], step):
            chunk = lq[i : i + step].to(self.model.device)
            gens = [torch.Generator(device=chunk.device).manual_seed(s) for s in seeds[i : i + step]]
            out = self.model.restore(
                chunk,
                generators=gens,
                steps=self.steps,
                guidance_scale=guidance,
                solver=self.solver,
                deterministic=self.deterministic,
                start_sigma=start_sigma,
                numerics=self.numerics,
                flip_ensemble=self.flip_ensemble,
            )
            bad = (~torch.isfinite(out.float()).flatten(1).all(dim=1)).nonzero().flatten().tolist()
            if bad:  # clamping would turn NaN into black pixels that look like a restoration
                raise RestorationError(
                    f"faces {[i + b for b in bad]} of this batch came out NaN/infinite; check "
                    "--guidance-scale, --steps and --start-sigma, or the model's weights"
                )
            if point is not None and point.input_blend > 0:
                out = (1 - point.input_blend) * out + point.input_blend * chunk.to(out)
            outs.append(out.cpu())
        return torch.cat(outs)

    def restore(
        self,
        faces: Sequence[np.ndarray],
        *,
        seed: int = 0,
        fidelity: float | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[np.ndarray]:
        """uint8 (S, S, 3) RGB aligned crops -> uint8 (S, S, 3) RGB restorations (same order)."""
        S = self.resolution
        for i, f in enumerate(faces):
            if f.dtype != np.uint8 or f.shape != (S, S, 3):
                raise ImageError(
                    f"face {i}: expected a uint8 ({S}, {S}, 3) RGB crop, got {f.dtype} {f.shape}; "
                    f"align and resize faces to {S} px first"
                )
        if not faces:
            return []
        return from_model(self.restore_tensor(to_model(list(faces)), seed=seed, fidelity=fidelity, seeds=seeds))

    def restore_faces(self, faces: Sequence[np.ndarray], options=None, *, seed: int = 0, scorers=None):
        """Aligned crops -> :class:`prefrestore.restore.control.FaceOutcome` per face: the restoration under ``options``
        (a :class:`prefrestore.restore.options.RestoreOptions`: fidelity, best-of-N, identity guard, colour), its scores
        and every candidate's. ``scorers``: a :class:`prefrestore.restore.control.Scorers` to reuse across calls."""
        from .control import Scorers, restore_controlled
        from .options import RestoreOptions

        options = options or RestoreOptions()
        scorers = scorers or Scorers.for_options(options)
        return restore_controlled(
            self, faces, options, seed=seed, batch_size=self.batch_size or max(1, len(faces)), scorers=scorers
        )


def load_restorer(
    model: str = "default",
    *,
    device: str = "cpu",
    steps: int | None = None,
    guidance_scale: float | None = None,
    solver: str | None = None,
    deterministic: bool = True,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    start_sigma: float | None = None,
    fidelity: float | None = None,
    numerics: str | None = None,
    flip_ensemble: bool | None = None,
) -> FaceRestorer:
    """A :class:`FaceRestorer` for a model reference (see :func:`load_model`); ``fidelity`` sets the dial's default."""
    model_dir = None
    if model not in PRESETS:
        from ..hub import resolve

        model_dir = resolve(model)
    return FaceRestorer(
        load_model(str(model_dir) if model_dir else model, device=device, dtype=dtype),
        steps=steps,
        guidance_scale=guidance_scale,
        solver=solver,
        deterministic=deterministic,
        batch_size=batch_size,
        start_sigma=start_sigma,
        fidelity=fidelity,
        model_dir=model_dir,
        numerics=numerics,
        flip_ensemble=flip_ensemble,
    )
