"""Resumable train state: a pickle-free dataclass saved atomically and loaded with ``weights_only=True`` (P11).

What a run needs to continue exactly: the step and data position, the optimizer's state, the EMA shadow, the RNG
states (Python, NumPy's global ``bit_generator`` state as a dict of ints, torch CPU and CUDA), plus free-form
``extra`` primitives. Model weights are saved next to it as safetensors (checkpoints.save_pretrained).

Everything stored is a tensor, a Python primitive, or a list/dict of them, so ``torch.load(weights_only=True)``
reads it back, and nothing executes code on load.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# RNG states


def _np_state_to_plain(state: dict) -> dict:
    """NumPy bit_generator state -> only ints, strings, lists (MT19937 keys are uint32 arrays)."""
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out[k] = _np_state_to_plain(v)
        elif isinstance(v, np.ndarray):
            out[k] = {"__ndarray__": v.tolist(), "dtype": str(v.dtype)}
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def _np_state_from_plain(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if isinstance(v, dict) and "__ndarray__" in v:
            out[k] = np.asarray(v["__ndarray__"], dtype=v["dtype"])
        elif isinstance(v, dict):
            out[k] = _np_state_from_plain(v)
        else:
            out[k] = v
    return out


def capture_rng() -> dict[str, Any]:
    """The global RNG states: python (version, list of ints, gauss), numpy, torch CPU, torch CUDA (all devices)."""
    version, internal, gauss = random.getstate()
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": _np_state_to_plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(rng: dict[str, Any]) -> None:
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    np.random.set_state(_np_state_from_plain(rng["numpy"]))
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


# ----------------------------------------------------------------------------------------------------------------
# TrainState


@dataclass
class TrainState:
    """step: optimizer steps done. epoch / position: the data stream's place (items consumed in this epoch, per
    rank). samples: samples trained on (all ranks). The rest is opaque state owned by the loop."""

    step: int = 0
    epoch: int = 0
    position: list[int] = field(default_factory=lambda: [0])
    samples: int = 0
    optimizer: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    generators: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "position": list(self.position),
            "samples": self.samples,
            "optimizer": self.optimizer,
            "ema": self.ema,
            "rng": self.rng,
            "generators": self.generators,
            "skipped": dict(self.skipped),
            "extra": self.extra,
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("version") != STATE_VERSION:
            raise ValueError(
                f"train state version {d.get('version')} != {STATE_VERSION}; resume with the "
                "prefrestore version that wrote it, or start a new run"
            )
        self.step, self.epoch, self.samples = int(d["step"]), int(d["epoch"]), int(d["samples"])
        self.position = [int(p) for p in d["position"]]
        self.optimizer, self.ema, self.rng = d["optimizer"], d["ema"], d["rng"]
        self.generators, self.skipped, self.extra = d["generators"], dict(d["skipped"]), d["extra"]


# ----------------------------------------------------------------------------------------------------------------
# Files


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to ``path.tmp`` in the same folder, fsync, then rename: readers see the old or the new file."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def save_state(state: TrainState, path: str | os.PathLike) -> None:
    atomic_save(state.state_dict(), path)


def load_state(path: str | os.PathLike) -> TrainState:
    state = TrainState()
    state.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return state
