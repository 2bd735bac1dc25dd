"""Training throughput and peak memory of each SFT stage for the tiny preset; prints JSON.

    .venv/bin/python benchmarks/bench_train.py [--steps 5] [--batch-size 4] [--threads 1] [--stages 0 1 2 3 joint]

Each stage runs the real loop (``train_sft``: data, forward/backward, clip, AdamW, EMA) in its own subprocess, so
peak memory is per stage: peak RSS on CPU (``ru_maxrss``), ``torch.cuda.max_memory_allocated`` on a GPU.
samples/s is the median over the logged steps after the first (which includes start-up). Data: synthetic
128 px images written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from prefrestore.config import load_config
    from prefrestore.training.sft import SFTConfig, train_sft

    tmp = Path(args.tmp)
    faces = tmp / "faces"
    if not faces.is_dir():
        faces.mkdir(parents=True)
        lines = []
        for i in range(16):
            img = np.random.default_rng(i).integers(0, 255, (128, 128, 3), dtype=np.uint8)
            Image.fromarray(img).save(faces / f"{i}.png")
            lines.append(json.dumps({"file": f"{i}.png", "caption": f"a photography of person {i}"}))
        (faces / "captions.jsonl").write_text("\n".join(lines))
    stage = args.stage if args.stage == "joint" else int(args.stage)
    cfg = load_config(
        SFTConfig,
        None,
        [
            f"out_dir={tmp / 'runs'}",
            f"name=stage-{stage}",
            f"stage={stage}",
            "init=tiny",
            f"threads={args.threads}",
            f"max_steps={args.steps + 1}",
            "log_every=1",
            "checkpoint_every=100000",
            "val_every=0",
            f"data.folders=[{faces}]",
            f"data.batch_size={args.batch_size}",
            f"mixed_precision={args.mixed_precision}",
            "data.degradation.kernel_size=11",
            "data.degradation.blur_sigma=[0.25, 3.75]",
            "data.degradation.downsample=[1, 7.5]",
        ],
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run = train_sft(cfg)
    logs = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    rate = statistics.median(r["samples_per_s"] for r in logs[1:])
    out = {
        "stage": str(stage),
        "samples_per_s": round(rate, 3),
        "batch_size": args.batch_size,
        "steps_timed": len(logs) - 1,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "mixed_precision": args.mixed_precision,
    }
    if torch.cuda.is_available():
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", default=["0", "1", "2", "3", "joint"])
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per stage (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage is not None:
        worker(args)
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            cmd = [
                sys.executable,
                __file__,
                "--stage",
                stage,
                "--tmp",
                tmp,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
                "--mixed-precision",
                args.mixed_precision,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"preset": "tiny", "stages": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
