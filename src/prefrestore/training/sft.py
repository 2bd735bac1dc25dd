"""Supervised training of Pref-Restore (docs/method.md §2, docs/layouts.md §3.4): stages 0-3 and the joint variant.

Legend: B batch, S face size, T image tokens, Q = T + 1 queries, D LM width, N LQ latent tokens, C condition
width, c/h/w latent channels and grid.

=======  ======================================================  ===============================================
stage    trains (parameter-name prefixes, deduplicated)          loss
=======  ======================================================  ===============================================
0        vae (encoder + decoder)                                 L1 + MSE reconstruction of the HQ face (only for
                                                                 presets without a pretrained autoencoder: tiny)
1        integrator.lm, diffusion_connector (+ the shared norm), CE(HQ tokens, teacher-forced) + flow matching
         transformer.caption_projection, .caption_norm           on the HQ latent, cond = connector(queries)
2        transformer.transformer_blocks, vae_connector           flow matching, cond = [queries ; LQ-VAE tokens]
         (not the shared norm: it is registered under
         diffusion_connector, docs/layouts.md §3.4)
3        stage 2 + vae.encoder                                   flow matching + MSE(enc(LQ), frozen_enc(HQ)), 1:1
joint    stage 1 + stage 3 sets                                  CE + flow matching + MSE, 1:1:1 (the paper's
                                                                 staged-training ablation, docs/method.md §2)
=======  ======================================================  ===============================================

Optional losses (ours, not the paper's): ``pix_weight`` (L1 + MSE) and ``lpips_weight`` (LPIPS-AlexNet by default,
``metrics.lpips``) of the decoded restoration to the HQ face; stage 0 may use ``lpips_weight`` on its reconstruction.

Condition dropout (p = ``cond_dropout``, 0.1, enables CFG): stage 1 zeroes a sample's *queries before* the
diffusion connector (the official step 1, so its null condition is connector(0)); stages 2, 3 and joint zero
the whole concatenated condition after the connectors (the official ``mask_drop``; inference's null is zeros).

All per-sample randomness of a step (sigma, noise, dropout gate) comes from the sample's own seed (set by the
data pipeline from (seed, epoch, index)), so a sample's loss does not depend on its batch: that is what makes
grad accumulation 1x8 equal 8x1 and a resumed run continue exactly.

Loop order per optimizer step (docs/style.md P8): validate -> checkpoint -> forward/backward x grad_accum -> clip ->
step -> EMA -> log.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import dump_config
from ..data import BatchStream, FaceDataset, gather_records
from ..flow.paths import flow_matching_loss, interpolate, velocity_target, x0_from_velocity
from ..flow.schedules import train_sigmas
from ..models.restorer import PrefRestoreModel
from ..seeding import seed_everything
from .checkpointing import (
    begin_checkpoint,
    checkpoint_name,
    commit_checkpoint,
    latest_checkpoint,
    load_checkpoint_state,
    truncate_log,
)
from .common import (
    LRSchedule,
    count,
    ema_init,
    ema_update_,
    freeze_all_but,
    lr_at,
    make_accelerator,
    set_lr,
    warmup_steps_for,
)
from .sft_config import DEFAULT_LR, TRAINABLE, OptimConfig, SFTConfig, Stage, ValConfig  # noqa: F401 - importable from here too
from .state import TrainState, capture_rng, restore_rng
from .validation import val_batch, validate

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# The objective: one nn.Module so DDP/FSDP/DeepSpeed see every forward


def encode_with(vae: nn.Module, images: torch.Tensor, model: PrefRestoreModel) -> torch.Tensor:
    """(B, 3, S, S) in [-1, 1] -> scaled latent (B, c, h, w) through ``vae`` (a frozen copy or the model's)."""
    a = model.config.autoencoder
    return (vae.encode(images.to(next(vae.parameters()).dtype)).latent - a.shift_factor) * a.scaling_factor


def sample_noise(seeds: list[int], shape: tuple[int, ...], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (sigma (B,), noise (B, *shape), u (B,) for the dropout gate), each row from its own seed."""
    sig, noi, us = [], [], []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        sig.append(train_sigmas(1, generator=g))
        noi.append(torch.randn(1, *shape, generator=g))
        us.append(torch.rand(1, generator=g))
    return torch.cat(sig).to(device), torch.cat(noi).to(device), torch.cat(us).to(device)


class SFTObjective(nn.Module):
    """forward(batch) -> dict of scalar losses ("loss" is what is optimised) for one stage.

    ``lpips``: the frozen LPIPS network of ``cfg.lpips_weight`` (None: ``load_lpips(cfg.lpips_net)`` when the
    weight is > 0); (B, 3, H, W) pairs in [0, 1] -> (B,) distances. ``identity``: the frozen identity network of
    ``cfg.id_weight`` (None: dlib's ResNet in torch), FFHQ-aligned (B, 3, S, S) in [0, 1] -> (B, D)."""

    def __init__(
        self,
        model: PrefRestoreModel,
        stage: Stage,
        cfg: SFTConfig,
        *,
        reference_vae: nn.Module | None = None,
        lpips: nn.Module | None = None,
        identity: nn.Module | None = None,
    ):
        super().__init__()
        self.model, self.stage, self.cfg = model, stage, cfg
        self.lpips = None
        if cfg.lpips_weight > 0:
            if lpips is None:
                from ..metrics.lpips import LPIPSMean, load_lpips

                nets = [load_lpips(n) for n in cfg.lpips_net.split("+")]
                lpips = nets[0] if len(nets) == 1 else LPIPSMean(nets)
            self.lpips = lpips.eval().requires_grad_(False)
        self.identity = None
        if cfg.id_weight > 0:
            if identity is None:
                from ..metrics.identity import load_identity_net

                identity = load_identity_net("dlib")
            self.identity = identity.requires_grad_(False).eval()
        # Frozen reference autoencoder for stage 3 / joint (official ``fixed_vae``): targets for the latent MSE and
        # the diffusion x0. It is the *initial* autoencoder: pass ``reference_vae`` (from the init weights) when
        # ``model`` is a resumed, already partly trained one. Held here, not in the model, so exported model
        # folders stay the plain model.
        self.frozen_vae = None
        if stage in (3, "joint"):
            ref = reference_vae if reference_vae is not None else copy.deepcopy(model.vae)
            self.frozen_vae = ref.requires_grad_(False).eval()

    def forward(self, hq: torch.Tensor, lq: torch.Tensor, instructions: list[str], seeds: list[int]) -> dict:
        m, cfg, stage = self.model, self.cfg, self.stage
        if stage == 0:
            rec = m.decode_latent(m.encode_latent(hq)).float()  # (B, 3, S, S)
            l1, l2 = F.l1_loss(rec, hq), F.mse_loss(rec, hq)
            out = {"l1": l1.detach(), "mse": l2.detach()}
            loss = l1 + l2 + self._identity_loss(rec, hq, out, "id")
            if self.lpips is not None:
                loss = loss + cfg.lpips_weight * self._lpips(rec, hq, out)
            return {"loss": loss, **out}

        if cfg.autoencoder_only:
            with torch.no_grad():
                x0 = encode_with(self.frozen_vae, hq, m).float()  # (B, c, h, w)
            lq_lat = m.encode_latent(lq)
            mse = F.mse_loss(lq_lat.float(), x0)
            out = {"mse": mse.detach()}
            out["loss"] = self._pixel_losses(lq_lat, x0, hq, lq, out, cfg.mse_weight * mse)["loss"]
            return out

        a = m.config
        sigma, noise, u = sample_noise(seeds, (a.autoencoder.latent_channels, a.latent_size, a.latent_size), hq.device)
        sigma = sigma * cfg.sigma_max
        keep = (u >= cfg.cond_dropout).float()  # (B,) 0 = condition dropped
        with torch.no_grad():
            lq_ids, hq_ids = m.tokenizer(lq), m.tokenizer(hq)  # (B, T) each
        out = {}
        train_lm = stage in (1, "joint")
        with nullcontext() if train_lm else torch.no_grad():
            queries, ce = m.integrator.teacher_forced(lq_ids, hq_ids, list(instructions))  # (B, Q, D), scalar
        loss = cfg.ce_weight * ce if train_lm else 0.0
        if train_lm:
            out["ce"] = ce.detach()
        if stage == 1 and cfg.diff_weight == 0:  # the integrator alone: no latent, no SANA (a CPU budget's stage 1)
            out["loss"] = loss
            return out
        with torch.no_grad():
            vae = self.frozen_vae if self.frozen_vae is not None else m.vae
            x0 = encode_with(vae, hq, m).float()  # (B, c, h, w) the diffusion target (frozen encoder)
        if stage == 1:
            cond = m.query_tokens(queries * keep[:, None, None])  # dropout before the connector: (B, Q, C)
        else:
            if stage == 2:
                with torch.no_grad():
                    lq_lat = m.encode_latent(lq)  # (B, c, h, w) frozen encoder
            else:
                lq_lat = m.encode_latent(lq)  # trainable encoder (stage 3, joint)
                mse = F.mse_loss(lq_lat.float(), x0)  # LQ latent -> frozen HQ latent (official stage 3)
                loss = loss + cfg.mse_weight * mse
                out["mse"] = mse.detach()
                if cfg.pix_weight > 0 or cfg.lpips_weight > 0:
                    loss = self._pixel_losses(lq_lat, x0, hq, lq, out, loss)["loss"]
            cond = m.condition(queries, lq_lat) * keep[:, None, None]  # (B, Q + N, C), whole condition dropped
        if self.identity is None:
            diff = flow_matching_loss(lambda x, s: m.velocity(x, s, cond), x0, noise, sigma)
        else:  # the same loss, keeping v for the identity of the one-step x0 prediction
            x_t = interpolate(x0, noise, sigma)
            v = m.velocity(x_t, sigma, cond)
            diff = F.mse_loss(v.float(), velocity_target(x0, noise).float())
            x0_hat = x0_from_velocity(x_t, v.float(), sigma)
            restored = m.decode_latent(x0_hat, lq).float()  # as inference decodes
            loss = loss + self._identity_loss(restored, hq, out, "id")
        out["diff"] = diff.detach()
        out["loss"] = loss + cfg.diff_weight * diff
        return out

    def _identity_loss(self, restored: torch.Tensor, hq: torch.Tensor, out: dict, key: str):
        """id_weight * mean(1 - cos(identity(restored), identity(hq))) (images in [-1, 1]); logs ``key``."""
        if self.identity is None:
            return 0.0
        with torch.no_grad():
            ref = self.identity((hq.float() + 1) / 2)
        cos = F.cosine_similarity(self.identity((restored.float() + 1) / 2), ref, dim=-1)
        term = (1 - cos).mean()
        out[key] = term.detach()
        return self.cfg.id_weight * term

    def _lpips(self, restored: torch.Tensor, hq: torch.Tensor, out: dict) -> torch.Tensor:
        """Mean LPIPS of (B, 3, S, S) [-1, 1] images to the HQ, on [0, 1] RGB (no clamp: the gradient stays);
        adds "lpips" to ``out``."""
        d = self.lpips((restored + 1) / 2, (hq.float() + 1) / 2).mean()
        out["lpips"] = d.detach()
        return d

    def _pixel_losses(
        self, lq_lat: torch.Tensor, x0: torch.Tensor, hq: torch.Tensor, lq: torch.Tensor, out: dict, loss
    ) -> dict:
        """+ pix_weight * (L1 + MSE)(decode(lq_lat, lq), hq) + lpips_weight * LPIPS(same) and, with train_decoder,
        pix_weight * (L1 + MSE) of decode(x0, lq) (a sampled latent is decoded with its LQ too): adds "pix",
        "lpips" (and "rec") to ``out``; returns {"loss": the new total}."""
        m, w = self.model, self.cfg.pix_weight
        if w <= 0 and self.lpips is None:
            return {"loss": loss}
        restored = m.decode_latent(lq_lat, lq).float()  # (B, 3, S, S)
        if self.lpips is not None:
            loss = loss + self.cfg.lpips_weight * self._lpips(restored, hq, out)
        if w <= 0:
            return {"loss": loss}
        pix = F.l1_loss(restored, hq) + F.mse_loss(restored, hq)
        out["pix"] = pix.detach()
        loss = loss + w * pix + self._identity_loss(restored, hq, out, "id_pix")
        if self.cfg.train_decoder:
            rec = m.decode_latent(x0, lq).float()
            rec_loss = F.l1_loss(rec, hq) + F.mse_loss(rec, hq)
            out["rec"] = rec_loss.detach()
            loss = loss + w * rec_loss
        return {"loss": loss}


# ----------------------------------------------------------------------------------------------------------------
# Model I/O


def load_init(init: str, seed: int) -> PrefRestoreModel:
    from ..checkpoints import from_pretrained, random_model
    from ..models.presets import PRESETS

    if init in PRESETS:
        log.info("init: preset %r with seeded random weights (seed %d)", init, seed)
        return random_model(init, seed=seed)
    if not Path(init).is_dir():
        from ..errors import UserError

        raise UserError(f"init={init!r} is neither a preset ({sorted(PRESETS)}) nor a model folder")
    return from_pretrained(init)


@torch.no_grad()
def _swap_weights(model: PrefRestoreModel, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy ``weights`` into the named parameters; returns the previous values (to swap back)."""
    params = dict(model.named_parameters())
    old = {k: params[k].detach().clone() for k in weights}
    for k, v in weights.items():
        params[k].copy_(v)
    return old


@torch.no_grad()
def calibrate_latent_scale(model: PrefRestoreModel, hq: torch.Tensor) -> PrefRestoreModel:
    """Stage 0 export: set autoencoder.scaling_factor = 1 / std of raw latents (as SD/SANA did for theirs)."""
    a = model.config.autoencoder
    z = model.vae.encode(hq.to(model.vae.dtype)).latent.float()
    scale = float(1.0 / z.std().clamp(min=1e-6))
    model.config = dataclasses.replace(
        model.config, autoencoder=dataclasses.replace(a, scaling_factor=scale, shift_factor=0.0)
    )
    log.info("stage 0: latent std %.4f -> scaling_factor %.5f", 1 / scale, scale)
    return model


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(
    run_dir: Path, model: PrefRestoreModel | None, state: TrainState, keep: int, *, accelerator=None
) -> Path:
    """checkpoints/step-N/{model/, train_state.pt[, accelerate/]} in the run-folder format of
    training/checkpointing.py. With ``accelerator`` given (DeepSpeed / FSDP runs) every rank calls this, and the
    sharded optimizer state is saved by accelerate into ``accelerate/``; otherwise only the main process calls it."""
    from ..checkpoints import save_pretrained

    name = checkpoint_name("step", state.step)
    main = accelerator is None or accelerator.is_main_process
    tmp = begin_checkpoint(run_dir, name) if main else run_dir / "checkpoints" / (name + ".tmp")
    if accelerator is not None:
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp / "accelerate"))
        accelerator.wait_for_everyone()
    final = run_dir / "checkpoints" / name
    if main:
        save_pretrained(model, tmp / "model")
        final = commit_checkpoint(run_dir, name, state, keep=keep)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return final


def _sharded_kind(accelerator) -> str:
    """ "" (single process / DDP), "deepspeed" or "fsdp": the latter two shard optimizer state (FSDP also weights)."""
    from accelerate.utils import DistributedType

    return {DistributedType.DEEPSPEED: "deepspeed", DistributedType.FSDP: "fsdp"}.get(accelerator.distributed_type, "")


def _full_model(accelerator, objective: nn.Module) -> PrefRestoreModel | None:
    """The complete model on the main process (None elsewhere). Under FSDP the weights are gathered (a collective:
    every rank must call this) into a fresh CPU model; otherwise the unwrapped model itself."""
    inner = accelerator.unwrap_model(objective).model
    if _sharded_kind(accelerator) != "fsdp":
        return inner if accelerator.is_main_process else None
    from ..checkpoints import load_into

    full = accelerator.get_state_dict(objective)
    if not accelerator.is_main_process:
        return None
    model = PrefRestoreModel(inner.config, inner.integrator.text_tokenizer)
    load_into(model, {k[len("model.") :]: v for k, v in full.items() if k.startswith("model.")}, where="fsdp gather")
    return model


# ----------------------------------------------------------------------------------------------------------------
# The loop


def train_sft(cfg: SFTConfig) -> Path:
    """Run (or resume) one SFT stage; returns the run directory (with ``final/``, a model folder)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    # cpu=True on CPU-only machines lets torchrun/`accelerate launch` start multi-process (gloo) CPU DDP runs
    accelerator = make_accelerator(
        mixed_precision=cfg.mixed_precision,
        grad_accum=cfg.grad_accum,
        log_dir=str(cfg.run_dir),
        cpu=not torch.cuda.is_available(),
    )
    main = accelerator.is_main_process
    run_dir = cfg.run_dir
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    seed_everything(cfg.seed)

    # ---- model, trainable set, optimizer -------------------------------------------------------------------
    ckpt = latest_checkpoint(run_dir) if cfg.resume == "auto" else None
    if ckpt is not None:
        from ..checkpoints import from_pretrained

        model = from_pretrained(ckpt / "model")
        log.info("resuming from %s", ckpt)
    else:
        model = load_init(cfg.init, cfg.seed)
    if cfg.stage == 0 and cfg.init not in ("tiny", "small") and ckpt is None:
        log.warning("stage 0 retrains the autoencoder; the paper preset uses SANA's pretrained DC-AE instead")
    trainable = freeze_all_but(model, [p for p in cfg.trainable if p != "lq_skip" or model.lq_skip is not None])
    frozen = count(p for p in model.parameters() if not p.requires_grad)
    log.info(
        "stage %s: %.2fM trainable in %d tensors, %.2fM frozen",
        cfg.stage,
        count(trainable.values()) / 1e6,
        len(trainable),
        frozen / 1e6,
    )
    if cfg.gradient_checkpointing:
        model.integrator.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.transformer.enable_gradient_checkpointing()
    reference_vae = None
    if cfg.stage in (3, "joint") and (ckpt is not None or cfg.reference):
        # the frozen target encoder is the init's (or ``reference``'s), never the resumed checkpoint's
        reference_vae = load_init(cfg.reference or cfg.init, cfg.seed).vae
    objective = SFTObjective(model, cfg.stage, cfg, reference_vae=reference_vae).train()
    optimizer = torch.optim.AdamW(
        list(trainable.values()),
        lr=cfg.lr,
        betas=cfg.optim.betas,
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    schedule = LRSchedule(
        cfg.lr, cfg.max_steps, warmup_steps_for(cfg.max_steps, cfg.optim.warmup_ratio), cfg.lr * cfg.optim.min_lr_ratio
    )

    # ---- data ----------------------------------------------------------------------------------------------
    records, problems = gather_records(cfg.data)
    ds = FaceDataset(records, cfg.data, model.config.resolution, seed=cfg.seed)
    state = TrainState(position=[0] * accelerator.num_processes, skipped=dict(problems))
    ema = ema_init(trainable) if cfg.ema_decay > 0 else {}
    if ckpt is not None:
        state = load_checkpoint_state(ckpt)
        if state.optimizer:
            optimizer.load_state_dict(state.optimizer)
        ema = {k: v.float() for k, v in state.ema.items()}
        restore_rng(state.rng)
        if main:
            truncate_log(run_dir / "log.jsonl", "step", state.step)
    rank = accelerator.process_index
    stream = BatchStream(
        ds,
        cfg.data.batch_size,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        rank=rank,
        world=accelerator.num_processes,
        epoch=state.epoch,
        position=state.position[rank] if rank < len(state.position) else 0,
        skipped=state.skipped,
    )
    sharded = _sharded_kind(accelerator)
    if sharded == "fsdp" and cfg.ema_decay > 0:
        from ..errors import UserError

        raise UserError(
            "ema_decay > 0 is not supported under FSDP (the EMA shadow needs full weights); set ema_decay=0"
        )
    objective, optimizer = accelerator.prepare(objective, optimizer)
    if ckpt is not None and sharded:
        accelerator.load_state(str(ckpt / "accelerate"))  # the sharded optimizer state (and weights)
    device = accelerator.device
    vb = val_batch(cfg, model.config.resolution, ds) if main else None

    writer = None
    if main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            log.warning("tensorboard is not installed; logging to log.jsonl only")
    params = list(trainable.values())
    sums: dict[str, float] = {}
    n_sum, t_last, samples_last = 0, time.perf_counter(), state.samples
    per_step = cfg.data.batch_size * cfg.grad_accum * accelerator.num_processes

    end = cfg.stop_at or cfg.max_steps
    while state.step < end:
        # ---- validate -------------------------------------------------------------------------------------
        if main and vb is not None and cfg.val_every > 0 and state.step % cfg.val_every == 0 and sharded != "fsdp":
            validate(accelerator.unwrap_model(objective).model, vb, cfg, state.step, run_dir, writer, device)

        # ---- forward / backward x grad_accum ----------------------------------------------------------------
        lr = lr_at(state.step, schedule)
        for _ in range(cfg.grad_accum):
            batch = stream.next_batch()
            with accelerator.accumulate(objective):
                with accelerator.autocast():
                    out = objective(
                        batch["hq"].to(device), batch["lq"].to(device), batch["instruction"], batch["seed"]
                    )
                accelerator.backward(out["loss"])
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() / cfg.grad_accum
                if accelerator.sync_gradients:
                    grad_norm = (
                        accelerator.clip_grad_norm_(params, cfg.optim.grad_clip)
                        if cfg.optim.grad_clip > 0
                        else torch.stack([p.grad.norm() for p in params if p.grad is not None]).norm()
                    )
                    if grad_norm is None:  # DeepSpeed clips inside its engine and reports nothing here
                        grad_norm = torch.tensor(float("nan"), device=device)
                    set_lr(optimizer, lr)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.samples += per_step
        n_sum += 1
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm.detach().float()

        # ---- EMA ------------------------------------------------------------------------------------------
        if ema:
            ema_update_(ema, trainable, cfg.ema_decay)

        # ---- log ------------------------------------------------------------------------------------------
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            now = time.perf_counter()
            rec = {
                k: accelerator.reduce(torch.as_tensor(v, device=device), "mean").item() / n_sum
                for k, v in sorted(sums.items())
            }
            rec.update(
                step=state.step,
                lr=lr,
                epoch=stream.epoch,
                samples=state.samples,
                samples_per_s=(state.samples - samples_last) / max(now - t_last, 1e-9),
                skipped=dict(stream.skipped),
            )
            if main:
                with open(run_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
                if writer is not None:
                    for k, v in rec.items():
                        if isinstance(v, float) and math.isfinite(v):
                            writer.add_scalar(f"train/{k}", v, state.step)
                log.info(
                    "step %d %s", state.step, " ".join(f"{k}={v:.4g}" for k, v in rec.items() if isinstance(v, float))
                )
            sums, n_sum, t_last, samples_last = {}, 0, now, state.samples

        # ---- checkpoint -----------------------------------------------------------------------------------
        if state.step % cfg.checkpoint_every == 0 or state.step == end:
            state.epoch = stream.epoch
            positions = accelerator.gather(torch.tensor([stream.position], device=device)).tolist()
            state.position = [int(p) for p in positions]
            state.skipped = dict(stream.skipped)
            state.optimizer = {} if sharded else optimizer.state_dict()
            state.ema = ema
            state.rng = capture_rng()
            if sharded:
                save_checkpoint(
                    run_dir, _full_model(accelerator, objective), state, cfg.keep_checkpoints, accelerator=accelerator
                )
            else:
                if main:
                    save_checkpoint(run_dir, accelerator.unwrap_model(objective).model, state, cfg.keep_checkpoints)
                accelerator.wait_for_everyone()

    if state.step < cfg.max_steps:  # stop_at: the checkpoint above is the result; no export
        log.info("stopped at step %d (stop_at); re-run with stop_at=0 to go on to %d", state.step, cfg.max_steps)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return run_dir

    # ---- export ----------------------------------------------------------------------------------------------
    model = _full_model(accelerator, objective)
    if main:
        if vb is not None and cfg.val_every > 0:
            validate(model, vb, cfg, state.step, run_dir, writer, device)
        _export(model, ema, cfg, run_dir, ds)
        if writer is not None:
            writer.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def _export(model: PrefRestoreModel, ema: dict, cfg: SFTConfig, run_dir: Path, ds: FaceDataset) -> None:
    from ..checkpoints import save_pretrained

    if cfg.stage == 0:
        items = [it for it in (ds.item(i, 0) for i in range(min(len(ds), 64))) if isinstance(it, dict)]
        if items:
            calibrate_latent_scale(model, torch.stack([it["hq"] for it in items]).to(model.device))
    save_pretrained(model, run_dir / "final")
    if ema:
        raw = _swap_weights(model, ema)
        save_pretrained(model, run_dir / "final_ema")
        _swap_weights(model, raw)
    log.info("exported %s", run_dir / "final")
