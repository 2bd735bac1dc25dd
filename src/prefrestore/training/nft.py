"""DiffusionNFT preference RL on the restorer's LoRA (docs/method.md §3): the pure math, then the loop ``train_nft``.

Legend: B LQ faces per rollout batch, G group size (restorations per LQ), N = B * G samples, K sampling steps,
J training timesteps per sample (int(K * timestep_fraction) = 29 in the paper), c, h, w latent shape.

One epoch (docs/method.md §3.3-3.5, DiffusionNFT = Zheng et al. 2025, arXiv 2509.16117, as Pref-Restore runs it):

1. rollout: the "old" adapter restores every LQ G times from G initial noises with a deterministic ODE sampler,
   the integrator greedy and frozen (``training/rollout.py``); the clean latents x0 are kept;
2. reward: the composite reward scores the decoded restorations (``rewards/``);
3. advantage: A = (r - mean_group) / (std + 1e-4) with the std over all samples ("global") or per group;
   then the optimality probability rho = clip((clip(A, -5, 5) / 5) / 2 + 0.5, 0, 1);
4. train: for each x0 and J of its K sampling sigmas (shuffled per sample), x_t = (1 - s) x0 + s eps with fresh eps;
   ``nft_loss`` on the velocities of the trained adapter, the old adapter and the frozen reference (adapters off);
5. after the epoch's optimiser step(s): parameter EMA of the trained adapter, and the old adapter moves towards it,
   theta_old <- d theta_old + (1 - d) theta with d = min(0.001 * step, 0.5).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.pairs import epoch_groups, list_pairs, read_face
from ..flow.schedules import sampling_sigmas
from ..lora import TrainingAdapters, attach_training_adapters, save_training_adapters, use_adapter
from .checkpointing import (
    begin_checkpoint,
    checkpoint_name,
    commit_checkpoint,
    latest_checkpoint,
    load_checkpoint_state,
    truncate_log,
)
from .nft_config import (  # noqa: F401 - importable from here too
    AdvantageStd,
    LoraSettings,
    NFTConfig,
    NFTSettings,
    OptimSettings,
    RewardSettings,
    RLDataSettings,
)
from .rollout import rollout

logger = logging.getLogger(__name__)

# ================================================================================================================
# Pure pieces (unit-tested in tests/test_nft.py)


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, std: AdvantageStd = "global", eps: float = 1e-4
) -> torch.Tensor:
    """rewards: (N,) with N = B * G, the G samples of each group contiguous -> (N,) advantages (same dtype).

    A = (r - mean of its group) / (s + eps); s is the population std over all N rewards (``global``, the paper's
    ``global_std=True``) or over the sample's own group (``group``). Statistics are computed in float64.
    """
    if std not in ("group", "global"):
        raise ValueError(f"unknown std={std!r}; expected 'group' or 'global'")
    if rewards.ndim != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"expected (B * G,) rewards with G = group_size = {group_size}, got {tuple(rewards.shape)}")
    r = rewards.double().view(-1, group_size)  # (B, G)
    mean = r.mean(dim=1, keepdim=True)  # (B, 1)
    s = r.std(correction=0) if std == "global" else r.std(dim=1, correction=0, keepdim=True)
    return ((r - mean) / (s + eps)).view(-1).to(rewards.dtype)


def zero_std_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Share of groups whose G rewards are all equal (they carry no learning signal). rewards: (B * G,)."""
    r = rewards.view(-1, group_size)
    return float((r.max(dim=1).values == r.min(dim=1).values).double().mean())


def optimality_prob(adv: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    """Advantage -> optimality probability rho = clip((clip(A, -c, c) / c) / 2 + 0.5, 0, 1) (adv_clip_max = 5)."""
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    return ((adv.clamp(-clip, clip) / clip) / 2 + 0.5).clamp(0.0, 1.0)


@dataclass
class NFTLoss:
    """Outputs of :func:`nft_loss`. ``loss`` carries the gradient; everything else is detached, for logging."""

    loss: torch.Tensor  # scalar
    policy: torch.Tensor  # scalar, scale * mean(rho L+ / beta + (1 - rho) L- / beta)
    kl: torch.Tensor  # scalar, mean ||v_theta - v_ref||^2 (before the kl_coef factor)
    positive: torch.Tensor  # (N,) L+
    negative: torch.Tensor  # (N,) L-
    old_deviation: torch.Tensor  # scalar, mean ||v_theta - v_old||^2


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def nft_loss(
    v_theta: torch.Tensor,
    v_old: torch.Tensor,
    v_ref: torch.Tensor | None,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    sigma: torch.Tensor,
    r: torch.Tensor,
    *,
    beta: float = 0.1,
    kl_coef: float = 1e-4,
    scale: float = 5.0,
) -> NFTLoss:
    """The DiffusionNFT loss with adaptive weights, exactly as the official trainer computes it.

    v_theta, v_old, v_ref: (N, c, h, w) velocities (d x / d sigma) of the trained adapter, the old adapter and the
    frozen reference (None when ``kl_coef`` is 0); x0: (N, c, h, w) clean rollout latents; x_t = (1 - s) x0 + s eps;
    sigma: (N,) in (0, 1]; r: (N,) optimality probabilities in [0, 1].

    Implicit policies (DiffusionNFT Eq. 6): v+ = beta v_theta + (1 - beta) v_old, v- = (1 + beta) v_old - beta v_theta.
    x0 predictions x^(v) = x_t - s v; adaptive weights w = mean|x^ - x0| per sample (detached, floor 1e-5);
    L+ = mean((x^(v+) - x0)^2) / w+, L- likewise; loss = scale * mean(r L+ / beta + (1 - r) L- / beta)
    + kl_coef * mean((v_theta - v_ref)^2). ``scale`` is adv_clip_max (5) in the official code.
    """
    if not 0.0 < beta:
        raise ValueError(f"beta must be > 0 (it divides the policy loss), got {beta}")
    if v_ref is None and kl_coef != 0.0:
        raise ValueError("v_ref is required when kl_coef != 0")
    v_theta, v_old, x0, x_t = v_theta.float(), v_old.detach().float(), x0.float(), x_t.float()
    s = sigma.float().reshape(-1, *([1] * (x0.ndim - 1)))  # (N, 1, 1, 1)
    v_pos = beta * v_theta + (1.0 - beta) * v_old  # (N, c, h, w)
    v_neg = (1.0 + beta) * v_old - beta * v_theta
    x0_pos = x_t - s * v_pos
    x0_neg = x_t - s * v_neg
    with torch.no_grad():
        w_pos = _per_sample_mean((x0_pos.double() - x0.double()).abs()).clamp(min=1e-5)  # (N,)
        w_neg = _per_sample_mean((x0_neg.double() - x0.double()).abs()).clamp(min=1e-5)
    l_pos = _per_sample_mean((x0_pos - x0) ** 2) / w_pos.float()  # (N,)
    l_neg = _per_sample_mean((x0_neg - x0) ** 2) / w_neg.float()
    r = r.float()
    policy = scale * (r * l_pos / beta + (1.0 - r) * l_neg / beta).mean()
    if v_ref is not None:
        kl = _per_sample_mean((v_theta - v_ref.detach().float()) ** 2).mean()
    else:
        kl = v_theta.new_zeros(())
    loss = policy + kl_coef * kl
    return NFTLoss(
        loss=loss,
        policy=policy.detach(),
        kl=kl.detach(),
        positive=l_pos.detach(),
        negative=l_neg.detach(),
        old_deviation=((v_theta - v_old) ** 2).mean().detach(),
    )


def old_policy_decay(step: int, *, rate: float = 0.001, cap: float = 0.5, flat: int = 0) -> float:
    """d = min(max(step - flat, 0) * rate, cap) (the official ``return_decay``, decay_type 1: rate 1e-3, cap 0.5)."""
    if step < flat:
        return 0.0
    return min((step - flat) * rate, cap)


@torch.no_grad()
def blend_(target: Iterable[torch.Tensor], source: Iterable[torch.Tensor], decay: float) -> None:
    """In place: target <- decay * target + (1 - decay) * source (old-policy update and EMA)."""
    for t, s in zip(target, source, strict=True):
        t.mul_(decay).add_(s.detach().to(t.dtype), alpha=1.0 - decay)


def ema_decay(step: int, max_decay: float = 0.9) -> float:
    """EMA decay with the official warm-up: min((1 + step) / (10 + step), max_decay); step = optimiser steps done."""
    return min((1 + step) / (10 + step), max_decay)


def timestep_subsets(
    grid: torch.Tensor, num_samples: int, num_train: int, *, generator: torch.Generator
) -> torch.Tensor:
    """(K,) sampling sigmas -> (N, J) per-sample shuffled subsets of J = num_train of them (official: J = K - 1)."""
    K = grid.numel()
    if not 1 <= num_train <= K:
        raise ValueError(f"num_train={num_train} must be in [1, {K}] (the number of sampling sigmas)")
    idx = torch.stack([torch.randperm(K, generator=generator)[:num_train] for _ in range(num_samples)])  # (N, J)
    return grid[idx]


def num_train_timesteps(steps: int, fraction: float) -> int:
    """J = int(K * timestep_fraction), at least 1 (official: int(30 * 0.99) = 29)."""
    return max(1, int(math.floor(steps * fraction + 1e-9)))


# ================================================================================================================
# Checkpoints (training/checkpointing.py): checkpoints/epoch-NNNNNN/{lora/ (EMA, PEFT layout), policy.safetensors,
# train_state.pt}


def _save_checkpoint(out: Path, adapters: TrainingAdapters, state: Any, ema: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    name = checkpoint_name("epoch", state.epoch)
    tmp = begin_checkpoint(out, name)
    save_training_adapters(adapters, tmp / "lora", ema)
    policy = {f"trained/{k}": v.detach().contiguous().cpu() for k, v in adapters.trained.items()}
    policy |= {f"old/{k}": v.detach().contiguous().cpu() for k, v in adapters.old.items()}
    save_file(policy, str(tmp / "policy.safetensors"))
    return commit_checkpoint(out, name, state)


def _load_checkpoint(ckpt: Path, adapters: TrainingAdapters) -> Any:
    from safetensors.torch import load_file

    policy = load_file(str(ckpt / "policy.safetensors"))
    with torch.no_grad():
        for prefix, params in (("trained/", adapters.trained), ("old/", adapters.old)):
            for k, p in params.items():
                p.copy_(policy[prefix + k])
    return load_checkpoint_state(ckpt)


# ================================================================================================================
# The loop


def train_nft(cfg: NFTConfig, *, reward: Any = None, model: Any = None) -> Path:
    """Run DiffusionNFT as configured; returns the run folder.

    ``reward``: a CompositeReward-like callable ``(restored, lq, hq, prompts) -> (total (N,), {name: (N,)})``
    replacing ``cfg.rewards``; ``model``: an already built PrefRestoreModel replacing ``cfg.model`` (it is
    modified in place: its transformer becomes the peft model). Both are for tests and library use.
    """
    from ..checkpoints import load_model
    from ..config import config_to_dict, dump_config
    from ..flow.paths import interpolate
    from ..io.image import to_model
    from ..rewards import CompositeReward
    from ..seeding import derive_seed, seed_everything
    from .common import ema_init, ema_update_, make_accelerator
    from .state import TrainState

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    acc = make_accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.cpu)
    world, rank = acc.num_processes, acc.process_index
    if cfg.data.groups_per_epoch % world:
        raise ValueError(
            f"data.groups_per_epoch={cfg.data.groups_per_epoch} must be a multiple of the "
            f"{world} processes, so every rank rolls out whole groups"
        )
    out = Path(cfg.out_dir)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, out / "config.yaml")
    seed_everything(cfg.seed + rank)

    # ---- model, adapters, optimiser, reward, data -------------------------------------------------------------
    model = load_model(cfg.model, device=acc.device) if model is None else model.to(acc.device)
    adapters = attach_training_adapters(
        model, rank=cfg.lora.rank, alpha=cfg.lora.alpha, targets=cfg.lora.targets, init_from=cfg.lora.init_from
    )
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        list(adapters.trained.values()), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps
    )
    net, optimizer = acc.prepare(adapters.peft, optimizer)
    if reward is None:
        reward = CompositeReward.build(
            cfg.rewards.weights,
            device=str(acc.device),
            weights_dir=cfg.rewards.weights_dir,
            options=cfg.rewards.options,
        )
    pairs = list_pairs(cfg.data.pairs, prompt=cfg.data.prompt)
    S = model.config.resolution
    G, K = cfg.rollout.group_size, cfg.rollout.steps
    J = num_train_timesteps(K, cfg.nft.timestep_fraction)
    # (K,) the rollout grid's sigmas s ... s/K, all K trained on (J of them per sample), as DiffusionNFT trains on
    # its scheduler's 30 timesteps although its rollout evaluates only the first 29
    grid = sampling_sigmas(K, cfg.rollout.start_sigma, final_zero=False).float()

    # ---- resume -----------------------------------------------------------------------------------------------
    state, ema = TrainState(), ema_init(adapters.trained)
    ckpt = latest_checkpoint(out) if cfg.resume == "auto" else None
    if ckpt is not None:
        state = _load_checkpoint(ckpt, adapters)
        optimizer.load_state_dict(state.optimizer)
        ema = {k: v.to(acc.device) for k, v in state.ema.items()}
        logger.info("resumed from %s (epoch %d, step %d)", ckpt, state.epoch, state.step)
    log_path = out / "log.jsonl"
    if acc.is_main_process:  # drop lines of epochs a killed run did not checkpoint
        truncate_log(log_path, "epoch", state.epoch - 1)
    if acc.is_main_process:
        logger.info(
            "NFT: %d pairs, %d groups x %d samples per epoch, %d timesteps each; %d LoRA tensors (%d params)",
            len(pairs),
            cfg.data.groups_per_epoch,
            G,
            J,
            len(adapters.trained),
            sum(p.numel() for p in adapters.trained.values()),
        )

    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.time()
        # ---- rollout with the old policy ----------------------------------------------------------------------
        chosen = epoch_groups(len(pairs), cfg.data.groups_per_epoch, derive_seed(cfg.seed, epoch, 1))
        slots = list(range(rank, len(chosen), world))  # global group slots of this rank
        mine = [pairs[chosen[s]] for s in slots]
        lq = to_model([read_face(p.lq, S) for p in mine])  # (B, 3, S, S)
        has_gt = all(p.gt is not None for p in mine)
        hq = to_model([read_face(p.gt, S) for p in mine]) if has_gt else None
        seeds = [derive_seed(cfg.seed, epoch, 2, s, g) for s in slots for g in range(G)]
        model.eval()
        with use_adapter(adapters, "old"):
            ro = rollout(model, lq, seeds, cfg.rollout)
        t1 = time.time()

        # ---- reward and advantages ----------------------------------------------------------------------------
        grp = ro.group.cpu()
        total, parts = reward(
            ro.images.cpu(), lq[grp], None if hq is None else hq[grp], [mine[i].prompt for i in grp.tolist()]
        )
        all_total = acc.gather(total.to(acc.device)).cpu()  # (world * N,) rank blocks, each group-contiguous
        all_parts = {k: acc.gather(v.to(acc.device)).cpu() for k, v in parts.items()}
        adv_all = group_advantages(all_total, G, std=cfg.nft.std)
        n = total.numel()
        adv = adv_all[rank * n : (rank + 1) * n]
        rho = optimality_prob(adv, cfg.nft.adv_clip).to(acc.device)  # (N,)
        t2 = time.time()

        # ---- train: DiffusionNFT on forward-noised rollouts ----------------------------------------------------
        g = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, 3, rank))
        order = torch.randperm(n, generator=g)
        sig = timestep_subsets(grid, n, J, generator=g)  # (N, J)
        micro = [order[i : i + o.train_batch_size] for i in range(0, n, o.train_batch_size)]
        if len(micro) < o.steps_per_epoch:
            raise ValueError(
                f"{len(micro)} micro-batches cannot make optim.steps_per_epoch={o.steps_per_epoch} "
                "steps; lower train_batch_size or steps_per_epoch"
            )
        bounds = [round(i * len(micro) / o.steps_per_epoch) for i in range(o.steps_per_epoch + 1)]
        sums: dict[str, float] = {}
        net.train()
        for step_i in range(o.steps_per_epoch):
            chunk = micro[bounds[step_i] : bounds[step_i + 1]]
            n_acc = len(chunk) * J
            for mi, ids in enumerate(chunk):
                x0 = ro.latents[ids]  # (b, c, h, w)
                cond = ro.cond[ro.group[ids]]  # (b, Q + N_lq, C)
                for j in range(J):
                    s = sig[ids, j].to(acc.device)  # (b,)
                    eps = torch.randn(x0.shape, generator=g).to(acc.device)
                    x_t = interpolate(x0, eps, s)
                    with torch.no_grad():
                        with use_adapter(adapters, "old"):
                            v_old = model.velocity(x_t, s, cond)  # model.transformer is adapters.peft
                        v_ref = None
                        if cfg.nft.kl_coef:
                            with adapters.peft.disable_adapter():
                                v_ref = model.velocity(x_t, s, cond)
                    last = mi == len(chunk) - 1 and j == J - 1
                    with nullcontext() if last else acc.no_sync(net):
                        v_theta = model.velocity(x_t, s, cond, transformer=net)
                        res = nft_loss(
                            v_theta,
                            v_old,
                            v_ref,
                            x0,
                            x_t,
                            s,
                            rho[ids],
                            beta=cfg.nft.beta,
                            kl_coef=cfg.nft.kl_coef,
                            scale=cfg.nft.adv_clip,
                        )
                        acc.backward(res.loss / n_acc)
                    for key, val in (
                        ("loss", res.loss.detach()),
                        ("policy", res.policy),
                        ("kl", res.kl),
                        ("positive", res.positive.mean()),
                        ("negative", res.negative.mean()),
                        ("old_deviation", res.old_deviation),
                    ):
                        sums[key] = sums.get(key, 0.0) + val  # tensors; .item() once per epoch
            grad_norm = acc.clip_grad_norm_(list(adapters.trained.values()), o.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            ema_update_(ema, adapters.trained, ema_decay(state.step, cfg.nft.ema_decay))
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm.detach().float()
        # ---- old policy moves towards the trained one -----------------------------------------------------------
        decay = old_policy_decay(state.step, rate=cfg.nft.old_decay_rate, cap=cfg.nft.old_decay_cap)
        blend_(adapters.old.values(), adapters.trained.values(), decay)
        state.epoch = epoch + 1
        state.samples += n * world
        t3 = time.time()

        # ---- log ----------------------------------------------------------------------------------------------
        n_terms = len(micro) * J  # loss terms of the epoch (micro-batches x timesteps)
        stats = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=acc.device) for v in sums.values()])
        stats = acc.reduce(stats, reduction="mean").cpu()
        record: dict[str, Any] = {"epoch": epoch, "step": state.step}
        for key, val in zip(sums, stats.tolist(), strict=True):
            record[key] = val / (o.steps_per_epoch if key == "grad_norm" else n_terms)
        record |= {"reward_mean": float(all_total.mean()), "reward_std": float(all_total.std(correction=0))}
        for k, v in all_parts.items():
            record[f"reward/{k}"] = float(v.mean())
            record[f"reward_std/{k}"] = float(v.std(correction=0))
        record |= {
            "adv_abs_mean": float(adv_all.abs().mean()),
            "adv_min": float(adv_all.min()),
            "adv_max": float(adv_all.max()),
            "rho_mean": float(optimality_prob(adv_all, cfg.nft.adv_clip).mean()),
            "zero_std_groups": zero_std_fraction(all_total, G),
            "group_std_mean": float(all_total.view(-1, G).std(dim=1, correction=0).mean()),
            "old_decay": decay,
            "lr": optimizer.param_groups[0]["lr"],
            "time_rollout": t1 - t0,
            "time_reward": t2 - t1,
            "time_train": t3 - t2,
        }
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            logger.info(
                "epoch %d step %d reward %.4f (std %.4f) loss %.4f kl %.2e zero-std %.2f [%.0fs]",
                epoch,
                state.step,
                record["reward_mean"],
                record["reward_std"],
                record["loss"],
                record["kl"],
                record["zero_std_groups"],
                t3 - t0,
            )

        # ---- checkpoint ---------------------------------------------------------------------------------------
        if state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs:
            acc.wait_for_everyone()
            if acc.is_main_process:
                state.optimizer = optimizer.state_dict()
                state.ema = {k: v.detach().cpu() for k, v in ema.items()}
                state.extra = {"config": config_to_dict(cfg)}
                path = _save_checkpoint(out, adapters, state, ema)
                logger.info("saved %s", path)
    acc.wait_for_everyone()
    return out
