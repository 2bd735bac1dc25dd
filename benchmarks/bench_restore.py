"""Per-face latency and peak memory of aligned-face restoration, AR and diffusion parts timed separately.

    .venv/bin/python benchmarks/bench_restore.py [--model tiny] [--batch-sizes 1 4 8] [--steps 10 20 30]
    .venv/bin/python benchmarks/bench_restore.py --shipped --model default runs/small/old-3d --batch-sizes 1

``--shipped`` times ``model.restore`` end to end with each model's own sampling settings (start sigma, steps,
guidance: what a user gets), several models side by side in one process, interleaved repeat by repeat so that
machine noise falls on all of them alike. Prints one JSON object. Latencies are medians over --repeats runs after one warm-up, per face (batch time / B).
Peak memory: CUDA max_memory_allocated on GPU, else the process's peak RSS growth (ru_maxrss) on CPU.
Compare ratios between rows of one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import statistics
import time

import torch

from prefrestore.models.integrator import DecodeOptions
from prefrestore.restore.api import load_model


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _marker(device, marks: list[float]):
    def mark():
        _sync(device)
        marks.append(time.perf_counter())

    return mark


def bench(model, batch: int, steps: int, guidance: float, repeats: int):
    device = model.device
    S = model.config.resolution
    lq = torch.rand(batch, 3, S, S, device=device) * 2 - 1
    names = ("tokenize", "ar_decode", "lq_encode", "diffusion", "decode")
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(repeats + 1):
        gens = [torch.Generator(device=device).manual_seed(0) for _ in range(batch)]
        marks: list[float] = []
        mark = _marker(device, marks)

        with torch.no_grad():
            mark()
            ids = model.tokenizer(lq)
            mark()
            _, queries = model.integrator.generate(
                ids, ["Please reconstruct the given image."] * batch, options=DecodeOptions()
            )
            mark()
            cond = model.condition(queries, model.encode_latent(lq))
            mark()
            latent = model.sample(cond, model.initial_noise(batch, gens), None, steps=steps, guidance_scale=guidance)
            mark()
            model.decode_latent(latent)
            mark()
        if i == 0:
            continue  # warm-up
        for k, a, b in zip(names, marks, marks[1:], strict=False):
            times[k].append(b - a)
    per_face = {k: statistics.median(v) / batch for k, v in times.items()}
    per_face["total"] = sum(per_face.values())
    return {k: round(v * 1000, 2) for k, v in per_face.items()}


def bench_shipped(models: dict, batch: int, repeats: int) -> dict:
    """{name: median seconds per face of model.restore(lq) at its shipped settings}, interleaved across models."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(repeats + 1):
        for name, model in models.items():
            S = model.config.resolution
            lq = torch.rand(batch, 3, S, S, generator=torch.Generator().manual_seed(i)).to(model.device) * 2 - 1
            gens = [torch.Generator(device=model.device).manual_seed(0) for _ in range(batch)]
            _sync(model.device)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.restore(lq, generators=gens)
            _sync(model.device)
            if i:  # the first round is the warm-up
                times[name].append(time.perf_counter() - t0)
    return {k: round(statistics.median(v) / batch, 4) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["tiny"], help="one or more models (several: --shipped)")
    ap.add_argument("--shipped", action="store_true", help="time model.restore at each model's own settings")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30])
    ap.add_argument("--guidance-scale", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    kw = {"device": device, "dtype": dtype if dtype != torch.float32 else None}
    if args.shipped:
        models = {m: load_model(m, **kw) for m in args.model}
        rows = [{"batch": b, "s_per_face": bench_shipped(models, b, args.repeats)} for b in args.batch_sizes]
        sampling = {m: dataclasses.asdict(x.config.sampling) for m, x in models.items()}
        info = {"device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads()}
        print(json.dumps({**info, "models": args.model, "sampling": sampling, "results": rows}, indent=1))
        return
    if len(args.model) > 1:
        ap.error("several --model values need --shipped")
    model = load_model(args.model[0], **kw)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = []
    for b in args.batch_sizes:
        for s in args.steps:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            ms = bench(model, b, s, args.guidance_scale, args.repeats)
            peak = (
                torch.cuda.max_memory_allocated() / 2**20
                if device.type == "cuda"
                else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
            )
            rows.append({"batch": b, "steps": s, "per_face_ms": ms, "peak_mem_mb": round(peak, 1)})
    print(
        json.dumps(
            {
                "model": args.model[0],
                "device": str(device),
                "dtype": args.dtype,
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "guidance_scale": args.guidance_scale,
                "results": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
