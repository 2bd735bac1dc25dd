"""The paper model on a GPU in one short call: per-stage times, faces/s, peak memory, AR-decode bandwidth, bf16 vs
fp32, and run-to-run determinism. Prints (and writes with --out) one JSON object.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check.json                 # paper preset, random weights
    .venv/bin/python benchmarks/gpu_check.py --model ~/.cache/prefrestore/models/paper --compile
    .venv/bin/python benchmarks/gpu_check.py --preset tiny --device cpu --batch-sizes 1 2 --steps 2 --tokens 4

What runs: bf16 weights on CUDA (the DC-AE stays float32, ``models.runtime.cast_for_inference``), SDPA attention
(the LM's and SigLIP's ``attn_implementation`` and SANA's attention processors are reported), KV-cached greedy AR
decoding, CFG as one batched forward of 2B, faces batched at each ``--batch-sizes`` value; ``--compile`` wraps SANA
and the DC-AE decoder in ``torch.compile`` (compile time reported separately).

Fields: ``stages_s`` per batch (tokenize, ar_prefill, ar_decode, lq_encode, diffusion, vae_decode), ``faces_per_s``,
``peak_mem_gib``; ``ar_bandwidth``: the LM's weight bytes read per token step (docs/method.md: ~3.7 GB of bf16 weights
for the paper LM) x decode steps / decode time, against the GPU's nominal peak (a table, or --peak-bandwidth-gbs);
``metric_networks``: seconds per face of LPIPS-Alex/VGG, the FID
Inception and the dlib / MobileFace identity networks (forward; forward+backward for those used as losses).
``bf16_vs_fp32``: the same weights upcast to fp32, same noise: token agreement, end-to-end PSNR, the diffusion +
decode PSNR given one condition, and the VAE decode in bf16 vs fp32 (why it stays fp32); ``determinism``: two
bf16 runs with ``torch.use_deterministic_algorithms`` compared bit for bit. Sections past ``--budget-s`` are
skipped and listed, and the JSON is rewritten after every section, so a call cut short still reports.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; must precede CUDA init

import torch  # noqa: E402

from prefrestore.models.integrator import RESTORE_INSTRUCTION, DecodeOptions  # noqa: E402
from prefrestore.models.runtime import build_random_fast, cast_for_inference  # noqa: E402

# Nominal memory bandwidth, bytes/s (vendor data sheets); first match of the device name wins.
PEAK_BANDWIDTH = [
    ("GH200", 4.0e12),
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
    ("L40", 0.864e12),
    ("L4", 0.3e12),
    ("RTX 4090", 1.008e12),
    ("RTX 3090", 0.936e12),
    ("A10", 0.6e12),
    ("V100", 0.9e12),
    ("T4", 0.32e12),
]


class Clock:
    """Stage timer that synchronises the device at each mark."""

    def __init__(self, device: torch.device):
        self.device, self.times, self._t = device, {}, None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        self._sync()
        now = time.perf_counter()
        self.times[name] = round(now - self._t, 4)
        self._t = now


def peak_gib(device: torch.device, rss0: int) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20, 3)  # KiB -> GiB


def lm_bytes(model) -> int:
    """Bytes of LM weights read per decode step: every parameter once (the tied embedding is the LM head)."""
    seen, total = set(), 0
    for p in model.integrator.lm.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def attention_report(model) -> dict:
    lm = model.integrator.lm.config
    enc = getattr(model.tokenizer.encoder, "config", None)
    procs = sorted({type(p).__name__ for p in model.transformer.attn_processors.values()})
    return {
        "lm": getattr(lm, "_attn_implementation", None),
        "siglip": getattr(enc, "_attn_implementation", None) if enc is not None else None,
        "sana_processors": procs,
        "sdpa_backends": {
            k: getattr(torch.backends.cuda, f"{k}_sdp_enabled")() for k in ("flash", "mem_efficient", "math")
        },
    }


def run_batch(model, batch: int, *, steps: int, tokens: int | None, guidance: float, seed: int = 0):
    """One timed restoration of ``batch`` random faces -> (stage times, output (B, 3, S, S) float32, codes)."""
    device = model.device
    S = model.config.resolution
    g = torch.Generator(device=device).manual_seed(seed)
    lq = torch.rand(batch, 3, S, S, device=device, generator=g) * 2 - 1
    gens = [torch.Generator(device=device).manual_seed(seed) for _ in range(batch)]
    instr = [RESTORE_INSTRUCTION] * batch
    clock = Clock(device)
    with torch.no_grad():
        clock.start()
        ids = model.tokenizer(lq)
        clock.lap("tokenize")
        model.integrator.generate(ids, instr, options=DecodeOptions(), num_tokens=1)
        clock.lap("ar_prefill")  # prefill + one step, subtracted below
        codes, queries = model.integrator.generate(ids, instr, options=DecodeOptions(), num_tokens=tokens)
        clock.lap("ar_decode")
        lq_latent = model.encode_latent(lq)
        cond = model.condition(queries, lq_latent)
        clock.lap("lq_encode")
        latent = model.sample(cond, model.initial_noise(batch, gens), None, steps=steps, guidance_scale=guidance)
        clock.lap("diffusion")
        out = model.decode_latent(latent).float().clamp(-1, 1)
        clock.lap("vae_decode")
    t = dict(clock.times)
    t["ar_decode"] = round(max(t["ar_decode"] - t["ar_prefill"], 0.0), 4)  # decode steps 2..T (prefill excluded)
    return t, out, codes, (cond, latent)


def psnr_pm1(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two (B, 3, S, S) images in [-1, 1] on the [0, 1] scale."""
    mse = float(((a.float() - b.float()) / 2).pow(2).mean())
    return math.inf if mse == 0 else round(10 * math.log10(1 / mse), 2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", choices=["paper", "tiny"])
    ap.add_argument("--model", default=None, help="a converted model folder instead of random weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=None, help="AR tokens to decode (default: all, 729 for paper)")
    ap.add_argument("--guidance-scale", type=float, default=2.0)
    ap.add_argument("--check-faces", type=int, default=2, help="faces for the bf16/fp32 and determinism checks")
    ap.add_argument("--compile", action="store_true", help="torch.compile SANA and the DC-AE decoder")
    ap.add_argument("--peak-bandwidth-gbs", type=float, default=None, help="override the GPU's nominal bandwidth")
    ap.add_argument("--budget-s", type=float, default=540.0, help="skip sections that would start after this")
    ap.add_argument("--metric-size", type=int, default=512, help="face size for the metric / loss network timings")
    ap.add_argument("--metric-repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the JSON here (rewritten after every section)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report: dict = {
        "preset": args.preset,
        "model": args.model or "random weights",
        "device": str(device),
        "dtype": args.dtype,
        "vae_dtype": "float32",
        "torch": torch.__version__,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "compile": args.compile,
        "skipped": [],
        "host": platform.node(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
        }
    else:
        report["cpu_threads"] = torch.get_num_threads()

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")

    def within_budget(section: str) -> bool:
        if time.perf_counter() - t_start > args.budget_s:
            report["skipped"].append(f"{section}: past --budget-s {args.budget_s:g}")
            save()
            return False
        return True

    # -- build
    t0 = time.perf_counter()
    if args.model:
        from prefrestore.restore.api import load_model

        model = load_model(args.model, device=device)
    else:
        model = build_random_fast(args.preset, device, dtype)
    model = cast_for_inference(model, dtype)
    report["build_s"] = round(time.perf_counter() - t0, 2)
    report["attention"] = attention_report(model)
    report["lm_weight_bytes"] = lm_bytes(model)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    tokens = args.tokens or model.config.tokenizer.num_tokens
    report["ar_tokens"] = tokens
    save()

    # -- warm-up (kernel selection, allocator) at the smallest batch, few tokens and steps
    run_batch(model, min(args.batch_sizes), steps=1, tokens=min(tokens, 2), guidance=args.guidance_scale)

    if args.compile and within_budget("compile"):
        t0 = time.perf_counter()
        model.transformer = torch.compile(model.transformer)
        model.vae.decoder = torch.compile(model.vae.decoder)
        run_batch(model, min(args.batch_sizes), steps=1, tokens=min(tokens, 2), guidance=args.guidance_scale)
        report["compile_s"] = round(time.perf_counter() - t0, 2)
        save()

    # -- speed and memory per batch size
    peak_bw = (
        args.peak_bandwidth_gbs * 1e9
        if args.peak_bandwidth_gbs
        else next((bw for name, bw in PEAK_BANDWIDTH if device.type == "cuda" and name in report["gpu"]["name"]), None)
    )
    report["batches"] = []
    for b in args.batch_sizes:
        if not within_budget(f"batch {b}"):
            continue
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            times, _, _, _ = run_batch(model, b, steps=args.steps, tokens=tokens, guidance=args.guidance_scale)
        except torch.OutOfMemoryError as err:
            report["batches"].append({"batch": b, "error": f"out of memory ({str(err).splitlines()[0]})"})
            save()
            continue
        total = sum(times.values())
        decode_steps = max(tokens - 1, 1)
        achieved = report["lm_weight_bytes"] * decode_steps / times["ar_decode"] if times["ar_decode"] > 0 else None
        report["batches"].append(
            {
                "batch": b,
                "stages_s": times,
                "total_s": round(total, 3),
                "faces_per_s": round(b / total, 3),
                "peak_mem_gib": peak_gib(device, rss0),
                "ar_bandwidth": {
                    "ms_per_token_step": round(1000 * times["ar_decode"] / decode_steps, 3),
                    "achieved_gbs": round(achieved / 1e9, 1) if achieved else None,
                    "peak_gbs": round(peak_bw / 1e9) if peak_bw else None,
                    "fraction_of_peak": round(achieved / peak_bw, 3) if achieved and peak_bw else None,
                },
            }
        )
        save()

    if args.compile:  # the checks below copy the model; they run uncompiled
        model.transformer = getattr(model.transformer, "_orig_mod", model.transformer)
        model.vae.decoder = getattr(model.vae.decoder, "_orig_mod", model.vae.decoder)

    n = args.check_faces
    # -- bf16 vs fp32 (same weights upcast, same inputs and noise)
    if dtype != torch.float32 and n > 0 and within_budget("bf16_vs_fp32"):
        _, out_lo, codes_lo, (cond_lo, _) = run_batch(
            model, n, steps=args.steps, tokens=tokens, guidance=args.guidance_scale
        )
        ref = copy.deepcopy(model).float()
        _, out_hi, codes_hi, (cond_hi, latent_hi) = run_batch(
            ref, n, steps=args.steps, tokens=tokens, guidance=args.guidance_scale
        )
        with torch.no_grad():
            gens = [torch.Generator(device=device).manual_seed(0) for _ in range(n)]
            noise = model.initial_noise(n, gens)
            same_lo = model.decode_latent(
                model.sample(cond_hi, noise, None, steps=args.steps, guidance_scale=args.guidance_scale)
            ).float()
            same_hi = ref.decode_latent(
                ref.sample(cond_hi, noise, None, steps=args.steps, guidance_scale=args.guidance_scale)
            ).float()
            vae_hi = ref.vae.decode(latent_hi / model.config.autoencoder.scaling_factor).sample.float()
            vae_lo = (
                copy.deepcopy(ref.vae)
                .to(dtype)
                .decode((latent_hi / model.config.autoencoder.scaling_factor).to(dtype))
                .sample.float()
            )
        report["bf16_vs_fp32"] = {
            "faces": n,
            "token_agreement": round(float((codes_lo == codes_hi).float().mean()), 4),
            "end_to_end_psnr_db": psnr_pm1(out_lo, out_hi),
            "diffusion_and_decode_same_condition_psnr_db": psnr_pm1(same_lo.clamp(-1, 1), same_hi.clamp(-1, 1)),
            "vae_decode_in_low_precision_psnr_db": psnr_pm1(vae_lo.clamp(-1, 1), vae_hi.clamp(-1, 1)),
            "vae_decode_in_low_precision_finite": bool(torch.isfinite(vae_lo).all()),
        }
        del ref
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save()

    # -- determinism: two runs in deterministic mode, bit for bit
    if n > 0 and within_budget("determinism"):
        before = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            outs = [
                run_batch(model, n, steps=args.steps, tokens=tokens, guidance=args.guidance_scale)[1:3]
                for _ in range(2)
            ]
        finally:
            torch.use_deterministic_algorithms(before)
        (o1, c1), (o2, c2) = outs
        report["determinism"] = {
            "faces": n,
            "bit_identical": bool(torch.equal(o1, o2) and torch.equal(c1, c2)),
            "max_abs_diff": float((o1 - o2).abs().max()),
        }
        save()

    # -- the metric / loss networks (LPIPS, FID Inception, the two identity networks): seconds per face
    if within_budget("metric_networks"):
        report["metric_networks"] = metric_network_costs(
            device, batch=max(args.batch_sizes), size=args.metric_size, repeats=args.metric_repeats
        )
        save()

    save()
    print(json.dumps(report, indent=1))
    return report


def metric_network_costs(device: torch.device, *, batch: int, size: int = 512, repeats: int = 3) -> dict:
    """Seconds per face of each metric / loss network on ``device`` in float32 at ``size`` px, batch ``batch``:
    ``forward`` and, for the networks used as losses, ``forward_backward`` (gradient to the restored image); fetched
    weights when present (``prefrestore weights fetch all``), else random ones (same cost): ``weights`` says which."""
    from prefrestore.metrics.dlib_resnet import CHIP, DlibResNet, ffhq_to_chip_affine
    from prefrestore.metrics.fid import InceptionV3FID, load_inception
    from prefrestore.metrics.identity import AlignedEmbedder, load_identity_net
    from prefrestore.metrics.lpips import LPIPS, load_lpips
    from prefrestore.metrics.mobileface import SIZE, MobileFace, ffhq_to_arcface_affine
    from prefrestore.metrics.weights import MetricUnavailable

    def timed(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        return round(sorted(times)[len(times) // 2] / batch, 5)

    random_builders = {
        "lpips_alex": lambda: LPIPS("alex"),
        "lpips_vgg": lambda: LPIPS("vgg"),
        "fid_inception": InceptionV3FID,
        "id_dlib": lambda: AlignedEmbedder("dlib", DlibResNet(), CHIP, ffhq_to_chip_affine),
        "id_mobileface": lambda: AlignedEmbedder("mobileface", MobileFace(), SIZE, ffhq_to_arcface_affine),
    }
    loaders = {
        "lpips_alex": lambda: load_lpips("alex", device=device),
        "lpips_vgg": lambda: load_lpips("vgg", device=device),
        "fid_inception": lambda: load_inception(device=device),
        "id_dlib": lambda: load_identity_net("dlib", device=device),
        "id_mobileface": lambda: load_identity_net("mobileface", device=device),
    }
    g = torch.Generator().manual_seed(0)
    a = torch.rand(batch, 3, size, size, generator=g).to(device)
    b = torch.rand(batch, 3, size, size, generator=g).to(device)
    out: dict[str, dict] = {}
    for name, load in loaders.items():
        try:
            net, weights = load(), "fetched"
        except MetricUnavailable:
            net, weights = random_builders[name]().to(device), "random"
        net = net.eval().requires_grad_(False)
        pair = name.startswith("lpips")
        call = (lambda x, net=net: net(x, b)) if pair else (lambda x, net=net: net(x))
        row: dict[str, object] = {"weights": weights, "size": size, "batch": batch}
        with torch.no_grad():
            row["forward"] = timed(lambda call=call: call(a))
        if name != "fid_inception":
            row["forward_backward"] = timed(lambda call=call: call(a.clone().requires_grad_(True)).sum().backward())
        out[name] = row
        del net
    return out


if __name__ == "__main__":
    main()
