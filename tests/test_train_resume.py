"""Resuming: a run that dies mid-way (an exception in-process, or SIGKILL of a `prefrestore train` subprocess)
and is started again continues from its last checkpoint and logs exactly the losses of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from prefrestore.config import dump_config
from prefrestore.data import BatchStream
from prefrestore.training.checkpointing import latest_checkpoint
from prefrestore.training.sft import train_sft
from train_helpers import make_faces, read_log, tiny_config

STEPS = 5
COMMON = ["stage=joint", f"max_steps={STEPS}", "checkpoint_every=2", "keep_checkpoints=2", "ema_decay=0.9"]
FIELDS = ("loss", "ce", "diff", "mse", "grad_norm", "lr", "samples", "epoch")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    faces = make_faces(tmp / "faces", n=5)
    ref = read_log(train_sft(tiny_config(tmp, faces, "name=ref", *COMMON)))
    assert [r["step"] for r in ref] == list(range(1, STEPS + 1))
    return tmp, faces, ref


def _same(log, ref):
    assert [r["step"] for r in log] == [r["step"] for r in ref]
    for a, b in zip(log, ref, strict=True):
        for k in FIELDS:
            assert a[k] == b[k], (a["step"], k, a[k], b[k])


def test_resume_after_an_exception(setup, monkeypatch):
    tmp, faces, ref = setup
    cfg = tiny_config(tmp, faces, "name=crash", *COMMON)
    calls = {"n": 0}
    original = BatchStream.next_batch

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 4:  # during step 4, after the step-2 checkpoint and the logged step 3
            raise RuntimeError("simulated crash")
        return original(self)

    monkeypatch.setattr(BatchStream, "next_batch", dying)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(cfg)
    monkeypatch.setattr(BatchStream, "next_batch", original)
    assert latest_checkpoint(cfg.run_dir).name == "step-00000002"
    assert [r["step"] for r in read_log(cfg.run_dir)] == [1, 2, 3]
    train_sft(cfg)  # resumes from step 2; the stale step-3 line is dropped and redone
    _same(read_log(cfg.run_dir), ref)


def test_stop_at_checkpoints_there_and_a_rerun_goes_on_exactly(setup):
    tmp, faces, ref = setup
    cfg = tiny_config(tmp, faces, "name=stopped", *COMMON, "stop_at=3")
    train_sft(cfg)
    assert latest_checkpoint(cfg.run_dir).name == "step-00000003"  # checkpoint_every=2, yet step 3 is kept
    assert not (cfg.run_dir / "final").exists()
    assert [r["step"] for r in read_log(cfg.run_dir)] == [1, 2, 3]
    train_sft(tiny_config(tmp, faces, "name=stopped", *COMMON))  # stop_at 0: on to max_steps, as if never stopped
    _same(read_log(cfg.run_dir), ref)
    assert (cfg.run_dir / "final").is_dir()


def test_sigkill_mid_run_then_resume_logs_the_same_losses(setup):
    tmp, faces, ref = setup
    cfg = tiny_config(tmp, faces, "name=killed", *COMMON)
    dump_config(cfg, tmp / "killed.yaml")
    cmd = [sys.executable, "-m", "prefrestore", "train", str(tmp / "killed.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    log_path = cfg.run_dir / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log_path.is_file() and any(r["step"] >= 3 for r in read_log(cfg.run_dir)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cfg.run_dir / "final").exists()
    assert latest_checkpoint(cfg.run_dir) is not None
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _same(read_log(cfg.run_dir), ref)
