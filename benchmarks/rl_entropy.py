"""Before/after preference RL on held-out faces: every reward component, and the solution entropy.

    # 1. LQ/GT pairs with the SFT run's own degradation ranges (RL training data and the held-out eval set)
    python benchmarks/rl_entropy.py pairs runs/offline_faces/train runs/rl_data/train --sft-config runs/sft/config.yaml
    python benchmarks/rl_entropy.py pairs runs/offline_faces/test runs/rl_data/heldout --sft-config ... --copies 4
    # 2. measure: the SFT model (before) and the SFT model + the RL LoRA (after, EMA weights merged)
    python benchmarks/rl_entropy.py measure --model runs/sft/final --lora runs/rl-tiny/checkpoints/epoch-000020/lora \
        --pairs runs/rl_data/heldout --out runs/rl-tiny/eval

Solution entropy (the paper's claim "significantly reduces solution entropy" has no published definition,
docs/method.md §5): for each LQ, K = 8 restorations that differ only in the initial noise (greedy integrator, the
rollout sampler), then ``prefrestore.metrics.entropy``: the mean per-pixel std over the K samples (RGB in [0, 1]),
and the mean pairwise RMSE between them; both averaged over LQs (per-LQ values are in the JSON).
Rewards are the offline components (``--rewards``), mean and std over all LQ x K restorations.

Writes OUT/results.json, OUT/results.md, OUT/entropy.png (plots) and OUT/samples.png (LQ, GT, the K samples and
their std map, before and after).

    # 3. training curves of a run (every reward component, KL to the reference, group spread) -> RUN/curves.png
    python benchmarks/rl_entropy.py curves runs/rl-tiny
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("rl_entropy")


# ----------------------------------------------------------------------------------------------------------------
# Pairs


def degradation_from(sft_config: str | None, preset: str):
    """The DegradationConfig of an SFT run's resolved config.yaml (data.degradation), or a named preset."""
    from prefrestore.degradations import DegradationConfig
    from prefrestore.degradations import preset as named

    if not sft_config:
        return named(preset)
    import yaml

    from prefrestore.config import _build

    tree = yaml.safe_load(Path(sft_config).read_text())
    deg = (tree.get("data") or {}).get("degradation")
    if deg is None:
        raise SystemExit(f"{sft_config}: no data.degradation section")
    return _build(DegradationConfig, deg, "data.degradation.")


def make_pairs(hq_dir: str, out: str, *, cfg, size: int, copies: int, seed: int) -> int:
    """gt/<stem>[_dK].png + lq/ (each HQ face degraded ``copies`` times, seeded by name) + params.jsonl."""
    from prefrestore.degradations import DegradationRecord, apply, sample_params
    from prefrestore.eval.testset import center_square, image_seed
    from prefrestore.io.image import list_images, load_rgb, resize, save_rgb, uint8_to_unit, unit_to_uint8

    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root}: exists and is not empty")
    lines = []
    for p in list_images(hq_dir):
        gt = center_square(load_rgb(p))
        if gt.shape[0] != size:
            gt = resize(gt, (size, size), resample="bicubic")
        for k in range(copies):
            name = p.stem if copies == 1 else f"{p.stem}_d{k}"
            s = image_seed(seed, name)
            params = sample_params(cfg, torch.Generator().manual_seed(s))
            lq = unit_to_uint8(apply(uint8_to_unit(gt), params))
            save_rgb(root / "gt" / f"{name}.png", gt)
            save_rgb(root / "lq" / f"{name}.png", lq)
            lines.append(DegradationRecord(name=name, seed=s, preset="custom", params=params).to_json())
    (root / "params.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


# ----------------------------------------------------------------------------------------------------------------
# Measure


def load_variant(model_ref: str, lora: str | None):
    from prefrestore.checkpoints import load_model
    from prefrestore.lora import load_lora

    model = load_model(model_ref)
    if lora:
        load_lora(model, lora, merge=True)  # the trained RL LoRA (a checkpoint's lora/: the EMA) folded into SANA
    return model.eval()


def restore_k(model, lq: torch.Tensor, k: int, rollout_cfg, seed: int) -> torch.Tensor:
    """(B, 3, S, S) LQ -> (B, K, 3, S, S) restorations in [-1, 1], K noises per LQ, same seeds for every model."""
    import dataclasses

    from prefrestore.seeding import derive_seed
    from prefrestore.training.rollout import rollout

    cfg = dataclasses.replace(rollout_cfg, group_size=k)  # every other field (start sigma too) as measured
    outs = []
    for b in range(lq.shape[0]):  # one LQ at a time keeps memory flat
        seeds = [derive_seed(seed, b, j) for j in range(k)]
        outs.append(rollout(model, lq[b : b + 1], seeds, cfg).images.cpu())
    return torch.stack(outs)  # (B, K, 3, S, S)


def measure(model, names, lq, hq, reward, args, rollout_cfg) -> dict:
    from prefrestore.metrics.entropy import mean_pairwise_distance, pixel_std

    t0 = time.time()
    samples = restore_k(model, lq, args.samples, rollout_cfg, args.seed)  # (B, K, 3, S, S)
    B, K = samples.shape[:2]
    flat = samples.flatten(0, 1)
    grp = torch.arange(B).repeat_interleave(K)
    total, parts = reward(flat, lq[grp], hq[grp], [args.prompt] * (B * K))
    unit = (samples + 1) / 2
    per_lq_std = [pixel_std(unit[b]) for b in range(B)]
    per_lq_pair = [mean_pairwise_distance(unit[b]) for b in range(B)]
    return {
        "reward_total": {"mean": float(total.mean()), "std": float(total.std(correction=0))},
        "rewards": {k: {"mean": float(v.mean()), "std": float(v.std(correction=0))} for k, v in parts.items()},
        "reward_total_per_lq": total.view(B, K).mean(1).tolist(),
        "rewards_per_lq": {k: v.view(B, K).mean(1).tolist() for k, v in parts.items()},
        "pixel_std": float(np.mean(per_lq_std)),
        "pairwise_rmse": float(np.mean(per_lq_pair)),
        "pixel_std_per_lq": per_lq_std,
        "pairwise_rmse_per_lq": per_lq_pair,
        "names": names,
        "seconds": time.time() - t0,
        "_samples": samples,
    }


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before, after = results["before"], results["after"]
    names = list(before["rewards"])
    ncols = max(3, len(names) + 1)
    fig = plt.figure(figsize=(3.2 * ncols, 7.5))
    grid = fig.add_gridspec(2, ncols, height_ratios=[1.3, 1])
    scatters = (
        ("pixel_std_per_lq", "entropy: mean per-pixel std\nover K seeds", True),
        ("pairwise_rmse_per_lq", "entropy: mean pairwise RMSE\nover K seeds", True),
        ("reward_total_per_lq", "total reward (mean over K)", False),
    )
    for i, (key, label, from_zero) in enumerate(scatters):
        ax = fig.add_subplot(grid[0, i])
        a, b = np.array(before[key]), np.array(after[key])
        lo = 0.0 if from_zero else min(a.min(), b.min())
        hi = max(a.max(), b.max())
        pad = 0.1 * (hi - lo + 1e-9)
        lim = (lo if from_zero else lo - pad, hi + pad)
        ax.scatter(a, b, s=25)
        ax.plot(lim, lim, "k--", lw=1, label="no change")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel(f"before RL (mean {a.mean():.4f})")
        ax.set_ylabel(f"after RL (mean {b.mean():.4f})")
        ax.set_title(f"{label}\none point per held-out LQ", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    for i, name in enumerate([*names, "total"]):
        ax = fig.add_subplot(grid[1, i])
        get = (lambda r: r["reward_total"]) if name == "total" else (lambda r, n=name: r["rewards"][n])
        m = [get(before)["mean"], get(after)["mean"]]
        e = [get(before)["std"], get(after)["std"]]
        ax.bar([0, 1], m, yerr=e, color=["tab:blue", "tab:orange"], capsize=4)
        ax.set_xticks([0, 1], ["before", "after"])
        ax.set_title(f"{name}\n{m[0]:.4f} -> {m[1]:.4f}", fontsize=9)
        ax.axhline(0, color="k", lw=0.5)
    fig.suptitle("Held-out faces before / after RL (rewards: mean +- std over LQ x K restorations)", fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "entropy.png", dpi=110)
    plt.close(fig)


def samples_grid(results: dict, lq: torch.Tensor, hq: torch.Tensor, out: Path, rows: int = 2) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    K = results["before"]["_samples"].shape[1]
    rows = min(rows, lq.shape[0])
    fig, axes = plt.subplots(2 * rows, K + 3, figsize=((K + 3) * 1.4, 2 * rows * 1.5))
    show = lambda ax, x: ax.imshow(((x.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())  # noqa: E731
    stds = {v: ((results[v]["_samples"][:rows] + 1) / 2).std(1, correction=0).mean(1) for v in ("before", "after")}
    vmax = float(torch.cat([stds["before"], stds["after"]]).quantile(0.99))  # one colour scale for both
    for r in range(rows):
        for v, variant in enumerate(("before", "after")):
            row = axes[2 * r + v]
            s = results[variant]["_samples"][r]  # (K, 3, S, S)
            show(row[0], lq[r])
            row[0].set_title("LQ", fontsize=7)
            show(row[1], hq[r])
            row[1].set_title("GT", fontsize=7)
            for k in range(K):
                show(row[2 + k], s[k])
                row[2 + k].set_title(f"{variant} seed {k}", fontsize=6)
            std = stds[variant][r]  # (S, S)
            row[-1].imshow(std.numpy(), cmap="magma", vmin=0, vmax=vmax)
            row[-1].set_title(f"std {float(std.mean()):.3f}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=100)
    plt.close(fig)


def write_report(results: dict, out: Path, command: str) -> None:
    b, a = results["before"], results["after"]
    lines = [
        f"# Before / after RL on {len(b['names'])} held-out LQ faces, K = {results['settings']['samples']} seeds",
        "",
        f"Command: `{command}`",
        "",
        f"Settings: `{json.dumps(results['settings'])}`",
        "",
        "| quantity | before RL | after RL | change |",
        "| --- | --- | --- | --- |",
    ]
    rows = [("total reward", b["reward_total"], a["reward_total"])]
    rows += [(f"reward: {k}", b["rewards"][k], a["rewards"][k]) for k in b["rewards"]]
    for label, x, y in rows:
        lines.append(
            f"| {label} | {x['mean']:.4f} +- {x['std']:.4f} | {y['mean']:.4f} +- {y['std']:.4f} | "
            f"{y['mean'] - x['mean']:+.4f} |"
        )
    for key, label in (("pixel_std", "entropy: mean per-pixel std"), ("pairwise_rmse", "entropy: mean pairwise RMSE")):
        per = np.array(a[f"{key}_per_lq"]) - np.array(b[f"{key}_per_lq"])
        lines.append(
            f"| {label} | {b[key]:.5f} | {a[key]:.5f} | {a[key] - b[key]:+.5f} "
            f"({(per < 0).sum()}/{len(per)} LQs lower) |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")


def run_measure(args) -> None:
    from prefrestore.data.pairs import list_pairs, read_face
    from prefrestore.io.image import to_model
    from prefrestore.rewards import CompositeReward
    from prefrestore.training.rollout import RolloutConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: float(v) for k, v in (kv.split("=") for kv in args.rewards.split(","))}
    reward = CompositeReward.build(weights)
    rollout_cfg = RolloutConfig(
        group_size=2,
        steps=args.steps,
        solver=args.solver,
        guidance_scale=args.guidance_scale,
        batch_size=args.batch_size,
        start_sigma=args.start_sigma,
    )
    results: dict = {
        "settings": {
            "model": args.model,
            "lora": args.lora,
            "pairs": args.pairs,
            "samples": args.samples,
            "steps": args.steps,
            "solver": args.solver,
            "start_sigma": args.start_sigma,
            "guidance_scale": args.guidance_scale,
            "seed": args.seed,
            "rewards": weights,
            "integrator": "greedy",
        }
    }
    lq = hq = None
    for variant, lora in (("before", None), ("after", args.lora)):
        model = load_variant(args.model, lora)
        if lq is None:
            pairs = list_pairs([args.pairs])
            S = model.config.resolution
            lq = to_model([read_face(p.lq, S) for p in pairs])
            hq = to_model([read_face(p.gt, S) for p in pairs])
            names = [p.name for p in pairs]
        log.info("%s: %d LQ x %d seeds", variant, lq.shape[0], args.samples)
        results[variant] = measure(model, names, lq, hq, reward, args, rollout_cfg)
        log.info(
            "%s: reward %.4f, pixel std %.5f, pairwise %.5f (%.0fs)",
            variant,
            results[variant]["reward_total"]["mean"],
            results[variant]["pixel_std"],
            results[variant]["pairwise_rmse"],
            results[variant]["seconds"],
        )
    command = " ".join(["python", *sys.argv])
    plot(results, out)
    samples_grid(results, lq, hq, out)
    write_report(results, out, command)
    clean = {
        k: ({kk: vv for kk, vv in v.items() if not kk.startswith("_")} if isinstance(v, dict) else v)
        for k, v in results.items()
    }
    clean["command"] = command
    (out / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    print((out / "results.md").read_text())


def plot_curves(run: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in (Path(run) / "log.jsonl").read_text().splitlines() if x.strip()]
    ep = [r["epoch"] for r in rows]
    parts = [k for k in rows[0] if k.startswith("reward/")]
    panels = [("reward_mean", "total reward (rollouts of the epoch)")] + [(k, k) for k in parts]
    panels += [
        ("kl", "mean ||v_theta - v_ref||^2"),
        ("group_std_mean", "within-group reward std"),
        ("loss", "NFT loss"),
    ]
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(3.6 * ((len(panels) + 1) // 2), 6.5))
    for ax, (key, title) in zip(axes.ravel(), panels, strict=False):
        y = np.array([r[key] for r in rows])
        ax.plot(ep, y, ".-", lw=1)
        if len(y) >= 5:
            k = 5
            ax.plot(ep[k - 1 :], np.convolve(y, np.ones(k) / k, mode="valid"), "r-", lw=1.5, label="5-epoch mean")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    out = Path(run) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs", help="degrade HQ faces into an lq/ + gt/ folder")
    p.add_argument("hq_dir")
    p.add_argument("out")
    p.add_argument("--sft-config", help="an SFT run's config.yaml: use its data.degradation ranges")
    p.add_argument("--preset", default="paper", help="degradation preset when no --sft-config")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--copies", type=int, default=1, help="degradations per HQ face")
    p.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure", help="rewards and solution entropy, before and after RL")
    m.add_argument("--model", required=True, help="the SFT model (before)")
    m.add_argument("--lora", required=True, help="the RL LoRA folder (a checkpoint's lora/, EMA weights)")
    m.add_argument("--pairs", required=True, help="held-out lq/ + gt/ folder")
    m.add_argument("--out", required=True)
    m.add_argument("--samples", type=int, default=8, help="K seeds per LQ")
    m.add_argument("--steps", type=int, default=30)
    m.add_argument("--solver", default="dpm++2m")
    m.add_argument(
        "--start-sigma", type=float, default=1.0, help="1 = pure noise (the paper); the bundled model: 0.02"
    )
    m.add_argument("--guidance-scale", type=float, default=1.0)
    m.add_argument("--batch-size", type=int, default=8)
    m.add_argument("--seed", type=int, default=1234)
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--prompt", default="A photograph of a person.")
    m.add_argument(
        "--rewards",
        default="identity_dlib=1,lmd_mtcnn=0.5,ssim=0.5,brisque=0.25,psnr=0",
        help="name=weight,... (offline rewards; weight 0 = logged, not in the total)",
    )
    c = sub.add_parser("curves", help="plot a run's log.jsonl")
    c.add_argument("run")
    args = ap.parse_args(argv)
    if args.cmd == "curves":
        print(plot_curves(args.run))
    elif args.cmd == "pairs":
        cfg = degradation_from(args.sft_config, args.preset)
        n = make_pairs(args.hq_dir, args.out, cfg=cfg, size=args.size, copies=args.copies, seed=args.seed)
        print(f"wrote {n} pairs to {args.out}")
    else:
        run_measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
