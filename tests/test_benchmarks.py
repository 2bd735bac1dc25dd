"""Smoke tests of the scripts in benchmarks/: each runs end to end at a toy size and prints the JSON it documents.

The numbers are not checked (benchmarks measure, tests do not time); what is checked is that a script still runs
against the library as it is now, exits 0 and prints one JSON object with its documented fields. The heavier
ones (a training step per stage, a server under load) are ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "bench_video_flicker": (
        ["--model", "identity", "--frames", "4", "--size", "128", "--threads", "1", "--skip", "independent_new_seed"],
        {"clips"},
    ),
    "bench_photo": (
        ["--model", "identity", "--photos", "1", "--batch-sizes", "1", "--no-t1", "--threads", "1"],
        {"results", "photo_size"},
    ),
    "bench_video_memory": (
        [
            "--size",
            "160x120",
            "--seconds",
            "1",
            "--fps",
            "4",
            "--detect-every",
            "2",
            "--threads",
            "1",
            "--preset",
            "ultrafast",
        ],
        {"runs"},
    ),
    "bench_metrics": (["--size", "64", "--batch", "1", "--repeats", "1"], {"seconds_per_image"}),
    "bench_restore": (["--model", "default", "--batch-sizes", "1", "--steps", "1", "--repeats", "1"], {"results"}),
    "bench_startup": (["--skip-restore", "--repeats", "1"], {"variants"}),
}
SLOW = {
    "bench_whole_photo": (
        ["--photos", "1", "--scales", "2", "--realesrgan-max-pixels", "0", "--out", os.devnull],
        {"summary", "photos", "lpips", "realesrgan"},
    ),
    "no_loss_sample": ([], {"resolution", "grace_hopper.jpg"}),
    "bench_train": (["--stages", "0", "--steps", "1", "--batch-size", "1"], {"stages"}),
    "bench_serve": (
        ["--clients", "2", "--duration", "2", "--max-requests", "4", "--model", "default", "--warmup-batch", "1"],
        {"clients", "server_ready_s"},
    ),
}


def _run(name: str, args: list[str], keys: set[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    assert isinstance(result, dict) and keys <= set(result), f"{name}: missing {keys - set(result)} in {list(result)}"
    return result


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs(name):
    result = _run(name, *CASES[name])
    if name == "bench_video_flicker":
        for clip in result["clips"].values():  # every method restored every frame's face
            assert {m["faces"] for m in clip["methods"].values()} == {4}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_heavy_benchmark_runs(name):
    _run(name, *SLOW[name])
