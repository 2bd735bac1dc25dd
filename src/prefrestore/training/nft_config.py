"""The DiffusionNFT (preference RL) configuration: every knob, with the paper value as default (docs/method.md §3);
training/nft.py runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..lora import LORA_TARGETS
from .rollout import RolloutConfig

AdvantageStd = Literal["group", "global"]


@dataclass
class LoraSettings:
    rank: int = 32
    """LoRA r (docs/method.md §3.2)."""
    alpha: int = 64
    """LoRA alpha; scaling alpha / r = 2."""
    targets: tuple[str, ...] = LORA_TARGETS
    """SANA self- (attn1) and cross-attention (attn2) q/k/v/out projections, all blocks (docs/layouts.md §6)."""
    init_from: str | None = None
    """Start the trained and old adapters from this LoRA folder (the paper continued an earlier 180-step run)."""


@dataclass
class NFTSettings:
    beta: float = 0.1
    """beta of the implicit policies v+ / v- (DiffusionNFT ``config.beta``; 0.1 in the paper run)."""
    kl_coef: float = 1e-4
    """Weight of the velocity L2 to the frozen SFT reference (``train.beta``; the paper's "KL")."""
    adv_clip: float = 5.0
    """Advantage clip; also the loss scale (``adv_clip_max``)."""
    std: AdvantageStd = "global"
    """Advantage normalisation: std over all samples of the epoch (``global_std=True``) or per group."""
    timestep_fraction: float = 0.99
    """J = int(K * fraction) of the K sampling sigmas are trained per sample (29 of 30)."""
    old_decay_rate: float = 0.001
    """Old-policy decay d = min(rate * step, cap) (``decay_type`` 1)."""
    old_decay_cap: float = 0.5
    ema_decay: float = 0.9
    """Parameter EMA of the trained adapter, warm-up min((1 + t) / (10 + t), decay); EMA weights are exported."""

    def __post_init__(self) -> None:
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f"nft.beta={self.beta}: must be in (0, 1]; the paper uses 0.1")
        if not 0.0 < self.timestep_fraction <= 1.0:
            raise ValueError(f"nft.timestep_fraction={self.timestep_fraction}: must be in (0, 1]")


@dataclass
class OptimSettings:
    lr: float = 3e-4
    """AdamW learning rate (DiffusionNFT base config)."""
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    eps: float = 1e-8
    grad_clip: float = 1.0
    steps_per_epoch: int = 1
    """Optimiser steps per epoch; the paper takes one (gradient accumulated over all samples x timesteps)."""
    train_batch_size: int = 9
    """Samples per training forward pass (micro-batch); affects memory, not the gradient."""


@dataclass
class RLDataSettings:
    pairs: tuple[str, ...] = ()
    """Folders of LQ/GT pairs in the ``make-testset`` layout (``lq/<stem>.png``, ``gt/<stem>.png``); a folder
    with only ``lq/`` gives LQ-only groups (rewards needing a GT then raise)."""
    groups_per_epoch: int = 48
    """LQ faces per epoch (48 in the paper: 48 x 24 = 1152 rollouts per epoch)."""
    prompt: str = "A photograph of a person."
    """Caption for the text-conditioned rewards when a folder has no ``captions.jsonl`` ({"name", "prompt"})."""


@dataclass
class RewardSettings:
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "pickscore": 1.0,
            "hpsv2": 1.0,
            "clipscore": 1.0,
            "lmd": 0.5,
            "arcface": 0.5,
            "lpips": 0.5,
        }
    )
    """Reward name -> weight (``rewards/composite.py``); default: the paper's ``pref_restore_gt_reward``."""
    options: dict[str, dict] = field(default_factory=dict)
    """Per-reward constructor options, e.g. {"psnr": {"cap": 50}}."""
    weights_dir: str | None = None
    """Folder with reward-model weight files (else $PREFRESTORE_METRIC_WEIGHTS, the caches)."""


@dataclass
class NFTConfig:
    model: str = "default"
    """The SFT model to fine-tune: a model folder, a HF repo id in the local cache, or a preset (random)."""
    out_dir: str = "runs/rl"
    """Run folder: config.yaml, log.jsonl, checkpoints/ (the old name ``out`` still loads, with a warning)."""
    seed: int = 42
    epochs: int = 100
    checkpoint_every: int = 30
    """Checkpoint every N epochs (not steps, unlike SFT's ``checkpoint_every``; ``save_freq`` 30), and always after
    the last epoch (the old name ``save_every`` still loads, with a warning)."""
    resume: Literal["auto", "never"] = "auto"
    """``auto``: continue from the newest complete checkpoint in ``out_dir`` when there is one."""
    mixed_precision: Literal["no", "bf16"] = "no"
    cpu: bool = False
    """Force the CPU even when a GPU is present."""
    threads: int = 0
    """torch CPU threads (0 = torch's default). On a busy small CPU, 1 is often much faster."""
    data: RLDataSettings = field(default_factory=RLDataSettings)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig())
    nft: NFTSettings = field(default_factory=NFTSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    rewards: RewardSettings = field(default_factory=RewardSettings)

    renamed_keys: ClassVar[dict[str, str]] = {"out": "out_dir", "save_every": "checkpoint_every"}
    """Old name -> new name, read with a deprecation warning by ``config.load_config`` (for one release)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.checkpoint_every < 1:
            raise ValueError(f"epochs={self.epochs} and checkpoint_every={self.checkpoint_every} must be >= 1")
        if self.optim.steps_per_epoch < 1 or self.optim.train_batch_size < 1:
            raise ValueError("optim.steps_per_epoch and optim.train_batch_size must be >= 1")
        if self.data.groups_per_epoch < 1:
            raise ValueError(f"data.groups_per_epoch={self.data.groups_per_epoch} must be >= 1")
