"""The SFT configuration: stages, their trainable parameter sets and paper learning rates, and every knob of a run
(training/sft.py runs it; docs/method.md §2, docs/layouts.md §3.4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..data import DataConfig

Stage = Literal[0, 1, 2, 3, "joint"]

_S1 = ("integrator.lm", "diffusion_connector", "transformer.caption_projection", "transformer.caption_norm")
_S2 = ("transformer.transformer_blocks", "vae_connector")
TRAINABLE: dict[Stage, tuple[str, ...]] = {
    0: ("vae",),
    1: _S1,
    2: _S2,
    3: _S2 + ("vae.encoder",),
    "joint": _S1 + _S2 + ("vae.encoder",),
}
# Paper defaults (docs/method.md §2.1-2.3; stage 0 is ours: no paper value exists).
DEFAULT_LR: dict[Stage, float] = {0: 1e-4, 1: 1e-4, 2: 1e-5, 3: 2e-5, "joint": 2e-5}


# ----------------------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class OptimConfig:
    lr: float | None = None
    """None = the paper's LR for the stage (1e-4 / 1e-5 / 2e-5 / joint 2e-5)."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_ratio: float = 0.01
    min_lr_ratio: float = 0.1
    """Floor of the cosine as a fraction of lr (official stage 1: min_lr 1e-5 at lr 1e-4)."""
    grad_clip: float = 1.0
    """Max global grad norm (HF Trainer's default max_grad_norm, which the official trainer kept); 0 = off."""


@dataclass(frozen=True)
class ValConfig:
    folder: str = ""
    """Held-out HQ faces; "" uses the first training records (with their seeded degradations)."""
    num: int = 4
    steps: int = 20
    guidance_scale: float = 2.0
    seed: int = 1234
    start_sigma: float | None = None  # None: the model's sampling.start_sigma


@dataclass(frozen=True)
class SFTConfig:
    name: str = "sft"
    out_dir: str = "runs"
    stage: Stage = 1
    init: str = "tiny"
    """A preset name (seeded random weights) or a model folder (e.g. the previous stage's ``final``)."""
    seed: int = 0
    max_steps: int = 1000
    stop_at: int = 0
    """Stop at this step (0 = run to max_steps): checkpoint there and exit without the final export; the learning-rate
    schedule still spans max_steps. A recipe that branches from a run's middle (e.g. stage 4b from stage 4's step
    300) stops the first run there, so the branch point rebuilds exactly; re-running with stop_at 0 goes on."""
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16"] = "no"
    gradient_checkpointing: bool = False
    cond_dropout: float = 0.1
    sigma_max: float = 1.0  # train sigmas in (0, sigma_max] only: for models sampled with start_sigma <= sigma_max
    ce_weight: float = 1.0
    diff_weight: float = 1.0
    mse_weight: float = 1.0
    pix_weight: float = 0.0
    """Stage 3 / joint (ours, not the paper's): + pix_weight * (L1 + MSE)(decode(enc(LQ)), HQ), the restoration the
    sampler starts from at a low start_sigma, back-propagated through the decoder into the encoder."""
    lpips_weight: float = 0.0
    """Stages 0, 3 and joint (ours, not the paper's): + lpips_weight * LPIPS(decoded restoration, HQ) on [0, 1] RGB,
    the decoded image being stage 0's reconstruction of the HQ face, or stage 3 / joint's decode(enc(LQ)) (as
    pix_weight's). Frozen network, loaded by ``metrics.lpips.load_lpips`` (``prefrestore weights fetch lpips_alex``)."""
    lpips_net: Literal["alex", "vgg", "alex+vgg"] = "alex"
    """LPIPS backbone of that loss: AlexNet (~0.1 s forward+backward per 128 px face on a CPU core), VGG16 (~10x), or
    the mean of the two (``metrics.lpips.LPIPSMean``)."""
    id_weight: float = 0.0
    """Ours (0 = off): + id_weight * mean(1 - cosine) of dlib-ResNet embeddings (the torch port,
    ``metrics.dlib_resnet``; weights from ``prefrestore weights dlib_resnet``) of each pixel restoration and its
    HQ face: stage 0's reconstruction; stage 3 / joint's decode(enc(LQ)) when pix_weight > 0; and in every stage
    with a diffusion loss, the decoded one-step x0 prediction ``x_t - sigma * v`` (a decode per step)."""
    extra_trainable: tuple[str, ...] = ()
    """Parameter-name prefixes trained on top of the stage's own set (e.g. ``transformer.caption_projection`` in
    stage 2 when stage 1 ran without its diffusion loss)."""
    reference: str = ""
    """Stage 3 / joint: the model folder whose autoencoder is the frozen target (HQ latents); "" = the init's. Set
    it when the init's autoencoder is no longer the one the transformer was trained on (a grafted, restoration-
    trained autoencoder: tools/graft_autoencoder.py)."""
    train_decoder: bool = False
    """Stage 3 / joint (ours): also train the decoder (and its LQ skip, if the model has one) on that pixel loss,
    plus pix_weight * (L1 + MSE) of its decoding of the frozen encoder's HQ latent (what a sampled latent needs)."""
    ema_decay: float = 0.0
    """0 = no EMA; otherwise an fp32 EMA of the trainable weights, exported as ``final_ema``."""
    threads: int = 0
    """torch CPU threads (0 = torch's default). On a busy small CPU, 1 is often much faster."""
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    val_every: int = 500
    resume: Literal["auto", "never"] = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def __post_init__(self):
        if not 0 <= self.stop_at <= self.max_steps:
            raise ValueError(f"stop_at={self.stop_at} must be in [0, max_steps={self.max_steps}] (0 = no stop)")
        if self.max_steps < 1 or self.grad_accum < 1:
            raise ValueError(f"max_steps={self.max_steps} and grad_accum={self.grad_accum} must be >= 1")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout={self.cond_dropout} must be in [0, 1)")
        if self.id_weight < 0:
            raise ValueError(f"id_weight={self.id_weight} must be >= 0")
        if not 0.0 < self.sigma_max <= 1.0:
            raise ValueError(f"sigma_max={self.sigma_max} must be in (0, 1]")
        if (self.pix_weight > 0 or self.train_decoder) and self.stage not in (3, "joint"):
            raise ValueError(f"pix_weight / train_decoder are stage 3 / joint options, not stage {self.stage}")
        if self.lpips_weight < 0 or self.pix_weight < 0:
            raise ValueError(f"pix_weight={self.pix_weight} and lpips_weight={self.lpips_weight} must be >= 0")
        if self.lpips_weight > 0 and self.stage not in (0, 3, "joint"):
            raise ValueError(f"lpips_weight needs a decoded image: stages 0, 3 and joint, not stage {self.stage}")
        if self.train_decoder and self.pix_weight <= 0 and self.lpips_weight <= 0:
            raise ValueError("train_decoder=true needs pix_weight > 0 or lpips_weight > 0 (the decoder's only losses)")
        if self.data.crop and not (self.stage == 0 or self.autoencoder_only):
            raise ValueError(
                f"data.crop={self.data.crop} works only where nothing but the autoencoder runs: stage 0, "
                "or stage 3 with diff_weight=0 (the tokenizer and the transformer need whole faces)"
            )

    @property
    def autoencoder_only(self) -> bool:
        """Stage 3 with diff_weight 0: only the autoencoder's losses, so the tokenizer, LM and SANA are skipped."""
        return self.stage == 3 and self.diff_weight == 0

    @property
    def trainable(self) -> tuple[str, ...]:
        extra = ("vae.decoder", "lq_skip") if self.train_decoder else ()
        return TRAINABLE[self.stage] + extra + tuple(self.extra_trainable)

    @property
    def lr(self) -> float:
        return self.optim.lr if self.optim.lr is not None else DEFAULT_LR[self.stage]

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name
