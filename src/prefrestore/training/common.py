"""Pieces every training loop shares: accelerate set-up, the LR schedule, EMA, parameter selection (seeding:
:mod:`prefrestore.seeding`).

Everything with math in it is a pure function (docs/style.md P8) and unit-tested: :func:`lr_at`, :func:`ema_update_`,
:func:`select_parameters`. The loops (training/sft.py, training/nft.py) import these; they hold no state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

# ----------------------------------------------------------------------------------------------------------------
# Learning rate


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup then cosine decay to a floor (HF ``cosine_with_min_lr``, the official SFT schedule)."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        if self.total_steps < 1 or self.warmup_steps < 0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"bad LR schedule {self}: need total_steps >= 1, warmup_steps >= 0, 0 <= min_lr <= lr")


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """HF's rule: ceil(ratio * total) optimizer steps of warmup."""
    return math.ceil(warmup_ratio * total_steps)


def lr_at(step: int, s: LRSchedule) -> float:
    """LR for optimizer step ``step`` (0-based).

    Warmup: lr * (step + 1) / warmup_steps for step < warmup_steps (the ``+ 1`` makes the very first update
    non-zero; HF uses ``step / warmup`` and so wastes step 0). Then
    min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * progress)), progress = (step - warmup) / (total - warmup), held at
    min_lr after ``total_steps``.
    """
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    span = max(1, s.total_steps - s.warmup_steps)
    progress = min(1.0, (step - s.warmup_steps) / span)
    return s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ----------------------------------------------------------------------------------------------------------------
# EMA


@torch.no_grad()
def ema_update_(ema: dict[str, torch.Tensor], params: dict[str, torch.Tensor], decay: float) -> None:
    """In place: ema[k] <- decay * ema[k] + (1 - decay) * params[k], for every key of ``ema`` (fp32 shadow)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    for k, e in ema.items():
        e.lerp_(params[k].detach().to(e.dtype), 1.0 - decay)


def ema_init(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 detached copies (the EMA shadow starts at the current weights)."""
    return {k: p.detach().float().clone() for k, p in params.items()}


# ----------------------------------------------------------------------------------------------------------------
# Parameter selection


def select_parameters(model: nn.Module, prefixes: Sequence[str]) -> dict[str, nn.Parameter]:
    """Named parameters whose (deduplicated, first-registered) name starts with one of ``prefixes`` + ".".

    A parameter shared by two modules is listed once, under the name where it was first registered; that is how
    the official trainer enumerates them, and why the connectors' shared RMSNorm (first registered as
    ``diffusion_connector.3.weight``) is *not* selected by ``vae_connector`` (docs/layouts.md §3.4).
    """
    chosen = {}
    for name, p in model.named_parameters():  # remove_duplicate=True: one name per tensor
        if any(name == pre or name.startswith(pre + ".") for pre in prefixes):
            chosen[name] = p
    missing = [pre for pre in prefixes if not any(n == pre or n.startswith(pre + ".") for n in chosen)]
    if missing:
        raise ValueError(f"parameter prefixes {missing} match no parameter of {type(model).__name__}")
    return chosen


def freeze_all_but(model: nn.Module, prefixes: Sequence[str]) -> dict[str, nn.Parameter]:
    """requires_grad = True exactly for :func:`select_parameters` (model, prefixes); returns them."""
    trainable = select_parameters(model, prefixes)
    ids = {id(p) for p in trainable.values()}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return trainable


def count(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


# ----------------------------------------------------------------------------------------------------------------
# accelerate


def make_accelerator(
    *, mixed_precision: str = "no", grad_accum: int = 1, log_dir: str | None = None, cpu: bool = False
):
    """An ``accelerate.Accelerator`` (the only place the loops touch distribution). ``mixed_precision`` is
    ``"no"`` or ``"bf16"`` (autocast; weights and optimizer state stay fp32). Works on one CPU, one GPU, or many
    GPUs/nodes under ``accelerate launch`` (DDP, FSDP, DeepSpeed from the launch config)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        project_dir=log_dir,
        cpu=cpu,
        dataloader_config=DataLoaderConfiguration(split_batches=False),
    )
