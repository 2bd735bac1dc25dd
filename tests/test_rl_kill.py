"""`prefrestore rl` killed with SIGKILL in the middle of an epoch and restarted logs the same losses as an
uninterrupted run (slow: three processes train the tiny preset)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _pairs(root: Path) -> Path:
    import cv2

    from prefrestore.io.image import save_rgb

    rng = np.random.default_rng(0)
    for i in range(2):
        low = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.float32)
        gt = cv2.resize(low, (128, 128), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
        save_rgb(root / "gt" / f"f{i}.png", gt)
        save_rgb(root / "lq" / f"f{i}.png", cv2.GaussianBlur(gt, (0, 0), 2.0))
    return root


def _config(path: Path, pairs: Path) -> Path:
    path.write_text(
        f"model: tiny\nepochs: 3\ncheckpoint_every: 1\nthreads: 1\n"
        f"data: {{pairs: [{pairs}], groups_per_epoch: 2}}\n"
        "rollout: {group_size: 2, steps: 3, batch_size: 4}\n"
        "optim: {train_batch_size: 2}\n"
        "rewards: {weights: {ssim: 1.0, psnr: 0.05}}\n"
    )
    return path


def _cmd(cfg: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "prefrestore", "rl", str(cfg), f"out_dir={out}"]


def _log(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    cfg = _config(tmp_path / "rl.yaml", _pairs(tmp_path / "pairs"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cmd(cfg, tmp_path / "full"), check=True, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(cfg, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 600
    while time.time() < deadline and not (latest.is_file() and latest.read_text().strip() == "epoch-000001"):
        time.sleep(0.2)
    time.sleep(1.0)  # now inside epoch 1
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest.read_text().strip() == "epoch-000001"

    subprocess.run(_cmd(cfg, out), check=True, env=env, capture_output=True)
    assert _log(out) == _log(tmp_path / "full")
