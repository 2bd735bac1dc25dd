"""The Python API: load a model and restore aligned face crops.

    >>> from prefrestore.api import load_restorer
    >>> r = load_restorer("tiny")                   # or "default", a model folder, or a HF repo id
    >>> restored = r.restore([crop])                # uint8 (S, S, 3) RGB, S = r.resolution

Contract: faces in and out are uint8 (S, S, 3) RGB numpy arrays at the model resolution (128 tiny, 512 paper).
Every face gets its own torch.Generator seeded with ``seed``, so a face restores the same whether it is alone or in
a batch, and repeated calls with the same seed are bit-identical on the same machine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ImageError, RestorationError
from .image import from_model, to_model
from .models.presets import PRESETS, get_preset
from .models.restorer import PrefRestoreModel

log = logging.getLogger(__name__)


def random_model(preset: str, *, seed: int = 0) -> PrefRestoreModel:
    """A model of a named preset with seeded random weights (tests, smoke runs; it restores nothing)."""
    from .models.text_tokenizer import build_char_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PrefRestoreModel(get_preset(preset), build_char_tokenizer()).eval()


def load_model(ref: str = "default", *, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> PrefRestoreModel:
    """A preset name (random weights, with a warning), ``default``, a model folder or a HF repo id -> model (eval)."""
    from .checkpoints import from_pretrained
    from .hub import resolve

    if ref in PRESETS:
        log.warning("model %r: RANDOM weights (untrained preset) - output is noise-like, not a restoration", ref)
        model = random_model(ref)
        return model.to(device=device, dtype=dtype).eval() if dtype else model.to(device).eval()
    return from_pretrained(resolve(ref), device=device, dtype=dtype)


@dataclass
class FaceRestorer:
    model: PrefRestoreModel
    steps: int | None = None
    guidance_scale: float | None = None
    solver: str | None = None
    deterministic: bool = True
    batch_size: int = 8
    seed: int = 0
    start_sigma: float | None = None  # None: the model's (SamplingDefaults.start_sigma)

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @torch.no_grad()
    def restore_tensor(self, lq: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """(B, 3, S, S) float RGB in [-1, 1] -> (B, 3, S, S) in [-1, 1], in batches of ``batch_size``."""
        seed = self.seed if seed is None else seed
        outs = []
        for i in range(0, lq.shape[0], self.batch_size):
            chunk = lq[i : i + self.batch_size].to(self.model.device)
            gens = [torch.Generator(device=chunk.device).manual_seed(seed) for _ in range(chunk.shape[0])]
            out = self.model.restore(chunk, generators=gens, steps=self.steps, guidance_scale=self.guidance_scale,
                                     solver=self.solver, deterministic=self.deterministic,
                                     start_sigma=self.start_sigma).cpu()
            bad = (~torch.isfinite(out.float()).flatten(1).all(dim=1)).nonzero().flatten().tolist()
            if bad:  # clamping would turn NaN into black pixels that look like a restoration
                raise RestorationError(f"faces {[i + b for b in bad]} of this batch came out NaN/infinite; check "
                                       "--guidance-scale, --steps and --start-sigma, or the model's weights")
            outs.append(out)
        return torch.cat(outs)

    def restore(self, faces: Sequence[np.ndarray], *, seed: int | None = None) -> list[np.ndarray]:
        """uint8 (S, S, 3) RGB aligned crops -> uint8 (S, S, 3) RGB restorations (same order)."""
        S = self.resolution
        for i, f in enumerate(faces):
            if f.dtype != np.uint8 or f.shape != (S, S, 3):
                raise ImageError(f"face {i}: expected a uint8 ({S}, {S}, 3) RGB crop, got {f.dtype} {f.shape}; "
                                 f"align and resize faces to {S} px first")
        if not faces:
            return []
        return from_model(self.restore_tensor(to_model(list(faces)), seed=seed))


def load_restorer(model: str = "default", *, device: str = "cpu", steps: int | None = None,
                  guidance_scale: float | None = None, solver: str | None = None, deterministic: bool = True,
                  batch_size: int = 8, seed: int = 0, dtype: torch.dtype | None = None,
                  start_sigma: float | None = None) -> FaceRestorer:
    return FaceRestorer(load_model(model, device=device, dtype=dtype), steps=steps, guidance_scale=guidance_scale,
                        solver=solver, deterministic=deterministic, batch_size=batch_size, seed=seed,
                        start_sigma=start_sigma)
