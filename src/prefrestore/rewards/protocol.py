"""The one interface every reward implements (docs/style.md P10), and the batch it reads.

A reward maps a :class:`RewardInputs` batch to a ``(B,)`` float32 CPU tensor, **higher is better**. The combiner
(:class:`~prefrestore.rewards.composite.CompositeReward`) builds ``RewardInputs`` once per batch; each view a
reward asks for (``[0, 1]`` tensors, uint8 arrays) is converted on first use and cached, so no reward converts
images itself.

Deviation from the P10 sketch ``__call__(restored, lq, hq)``: rewards take one ``RewardInputs`` because the
text-conditioned rewards of the paper (PickScore, HPSv2.1, CLIPScore) also need the caption, and because the
converted views must be shared between rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..io.image import from_model, to_unit


@dataclass(eq=False)
class RewardInputs:
    """One batch to score.

    restored, lq: (B, 3, S, S) float RGB in [-1, 1] (S is the model resolution; lq is the input the model saw);
    hq: (B, 3, S, S) in [-1, 1] or None (no ground truth, e.g. real-world LQ);
    prompts: B captions for text-conditioned rewards, or None.
    """

    restored: torch.Tensor
    lq: torch.Tensor
    hq: torch.Tensor | None = None
    prompts: Sequence[str] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.restored.ndim != 4 or self.restored.shape[1] != 3:
            raise ValueError(f"restored: expected (B, 3, S, S), got {tuple(self.restored.shape)}")
        for name, t in (("lq", self.lq), ("hq", self.hq)):
            if t is not None and t.shape != self.restored.shape:
                raise ValueError(f"{name}: shape {tuple(t.shape)} != restored {tuple(self.restored.shape)}")
        if self.prompts is not None and len(self.prompts) != len(self):
            raise ValueError(f"{len(self.prompts)} prompts for a batch of {len(self)}")

    def __len__(self) -> int:
        return self.restored.shape[0]

    # ---- cached views ----------------------------------------------------------------------------------------

    def _view(self, key: str, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def unit(self, which: str = "restored") -> torch.Tensor:
        """(B, 3, S, S) float32 in [0, 1] of ``restored``, ``lq`` or ``hq`` (clamped), on the CPU."""
        t = self._tensor(which)
        return self._view(f"unit:{which}", lambda: to_unit(t.detach().float().cpu().clamp(-1, 1)))

    def uint8(self, which: str = "restored") -> list[np.ndarray]:
        """List of uint8 (S, S, 3) RGB arrays of ``restored``, ``lq`` or ``hq``."""
        t = self._tensor(which)
        return self._view(f"u8:{which}", lambda: from_model(t.detach().cpu()))

    def reference(self) -> str:
        """``hq`` when a ground truth is present, else ``lq`` (for rewards defined "to GT, or to the LQ")."""
        return "hq" if self.hq is not None else "lq"

    def require_hq(self, reward: str) -> None:
        if self.hq is None:
            raise ValueError(f"reward {reward!r} needs a ground truth (hq); drop it for LQ-only data")

    def require_prompts(self, reward: str) -> Sequence[str]:
        if self.prompts is None:
            raise ValueError(f"reward {reward!r} needs captions (prompts); set rewards.prompt in the RL config")
        return self.prompts

    def _tensor(self, which: str) -> torch.Tensor:
        if which not in ("restored", "lq", "hq"):
            raise ValueError(f"unknown image {which!r}; expected 'restored', 'lq' or 'hq'")
        t = getattr(self, which)
        if t is None:
            raise ValueError(f"this batch has no {which!r} images")
        return t


@runtime_checkable
class Reward(Protocol):
    """``name``: the key its scores are logged under. ``__call__``: (B,) float32 CPU tensor, higher is better."""

    name: str

    def __call__(self, batch: RewardInputs) -> torch.Tensor: ...


def as_scores(values, n: int, name: str) -> torch.Tensor:
    """Any (B,) array-like -> float32 CPU tensor, checked for length and NaN (a reward never returns NaN)."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float64)).float().reshape(-1)
    if t.numel() != n:
        raise ValueError(f"reward {name!r} returned {t.numel()} scores for {n} images")
    if torch.isnan(t).any():
        raise ValueError(f"reward {name!r} returned NaN; it must map failures to a defined score")
    return t
