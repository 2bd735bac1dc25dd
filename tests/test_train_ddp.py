"""Two-process CPU DDP (torchrun + gloo) trains like one process with the same global batch: rank r takes every
second item, gradients are averaged, and the logged losses and the checkpointed per-rank data positions agree."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefrestore.config import dump_config
from prefrestore.training.sft import train_sft
from train_helpers import make_faces, read_log, tiny_config

pytestmark = pytest.mark.slow
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this python")
def test_two_rank_cpu_ddp_matches_one_process(tmp_path):
    faces = make_faces(tmp_path / "faces", n=6)
    common = ["stage=joint", "max_steps=2", "data.recon_prob=0", "data.caption_prob=0", "checkpoint_every=2"]
    single = train_sft(tiny_config(tmp_path, faces, "name=single", "data.batch_size=2", *common))
    cfg = tiny_config(tmp_path, faces, "name=ddp", "data.batch_size=1", *common)
    dump_config(cfg, tmp_path / "ddp.yaml")
    done = subprocess.run(
        [
            str(TORCHRUN),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29561",
            "-m",
            "prefrestore",
            "train",
            str(tmp_path / "ddp.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_log(single), read_log(cfg.run_dir)
    assert [r["samples"] for r in b] == [2, 4]
    for ra, rb in zip(a, b, strict=True):
        for k in ("loss", "ce", "diff", "mse", "grad_norm"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-4), (ra["step"], k)
    state = torch.load(cfg.run_dir / "checkpoints" / "step-00000002" / "train_state.pt", weights_only=True)
    assert state["position"] == [2, 2]
