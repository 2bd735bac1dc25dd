"""Checks of user-given run options, shared by every driver (CLI commands, the server, video).

Each check raises a one-line :class:`~prefrestore.errors.UserError` naming the option (``flag``) and the fix, and is
meant to run before any model is loaded or any photo is read, so a bad value costs nothing.
"""

from __future__ import annotations

import math

from .errors import UserError

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes 64-bit seeds; the reports store them as JSON integers


def check_finite(value: float | None, flag: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, example: str = "") -> None:
    """``value`` is None (the default) or a finite number in [low, high] (``(low, high]`` with ``low_open``)."""
    if value is None:
        return
    hint = f", e.g. {flag} {example}" if example else ""
    if not math.isfinite(value):
        raise UserError(f"{flag} {value}: must be a finite number{hint}")
    if low is not None and (value <= low if low_open else value < low):
        raise UserError(f"{flag} {value}: must be {'>' if low_open else '>='} {low:g}{hint}")
    if high is not None and value > high:
        raise UserError(f"{flag} {value}: must be <= {high:g}{hint}")


def check_sampling(*, steps: int | None = None, guidance_scale: float | None = None,
                   start_sigma: float | None = None, seed: int | None = None, samples: int | None = None,
                   prefix: str = "--") -> None:
    """The sampling options of every restoring driver."""
    if steps is not None and not 1 <= steps <= 1000:
        raise UserError(f"{prefix}steps {steps}: must be in 1..1000, e.g. {prefix}steps 10")
    check_finite(guidance_scale, f"{prefix}guidance-scale", low=0.0, high=100.0, example="2 (1 disables guidance)")
    check_finite(start_sigma, f"{prefix}start-sigma", low=0.0, high=1.0, low_open=True,
                 example="1 (pure noise) or 0.1")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise UserError(f"{prefix}seed {seed}: must be in 0..{SEED_MAX}")
    if samples is not None and not 1 <= samples <= 1000:
        raise UserError(f"{prefix}samples {samples}: must be in 1..1000")


def check_device(spec: str, *, flag: str = "--device") -> str:
    """A torch device this machine has -> its canonical name (``cpu``, ``cuda:0``, ``mps``)."""
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"{flag} {spec}: not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{flag} {spec}: this machine (or this torch build) has no CUDA GPU; use --device cpu")
        index = 0 if device.index is None else device.index
        if index >= count:
            raise UserError(f"{flag} {spec}: there are {count} CUDA GPU(s), numbered 0..{count - 1}")
        return f"cuda:{index}"
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{flag} {spec}: Apple's MPS is not available here; use --device cpu")
        return "mps"
    raise UserError(f"{flag} {spec}: device type {device.type!r} cannot restore photos; use cpu, cuda or mps")
