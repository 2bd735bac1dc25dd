"""Per-face latency and peak memory of aligned-face restoration, AR and diffusion parts timed separately.

    .venv/bin/python benchmarks/bench_restore.py [--model tiny] [--batch-sizes 1 4 8] [--steps 10 20 30]

Prints one JSON object. Latencies are medians over --repeats runs after one warm-up, per face (batch time / B).
Peak memory: CUDA max_memory_allocated on GPU, else the process's peak RSS growth (ru_maxrss) on CPU.
Compare ratios between rows of one run, not absolute numbers across machines.
"""

from __future__ import annotations

import argparse
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30])
    ap.add_argument("--guidance-scale", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    model = load_model(args.model, device=device, dtype=dtype if dtype != torch.float32 else None)
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
                "model": args.model,
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
