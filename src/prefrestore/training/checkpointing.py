"""The run folder and its checkpoints: one format and one resume rule for both loops (SFT and NFT).

Layout of a run folder::

    config.yaml                   the run's full config (config.dump_config)
    log.jsonl                     one JSON record per logged step (SFT) or epoch (NFT)
    checkpoints/
        latest                    the name of the newest complete checkpoint (written atomically, last)
        <name>/                   step-NNNNNNNN (SFT) or epoch-NNNNNN (NFT)
            train_state.pt        training.state.TrainState (weights_only, pickle-free)
            ...                   the loop's payload: model/ [+ accelerate/] (SFT); lora/ + policy.safetensors (NFT)
        <name>.tmp/               a checkpoint being written (ignored, removed by the next write)

A checkpoint is written into ``<name>.tmp``, then renamed to ``<name>`` and ``latest`` is pointed at it, so a crash
at any moment leaves the previous checkpoint intact. Resume (``resume: auto``) continues from ``latest``, or from
the newest complete ``<name>`` when the marker is missing, and first drops the log records after that checkpoint
(a killed run may have logged steps it never saved; they are redone).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .state import TrainState, atomic_write_text, load_state, save_state

STATE_FILE = "train_state.pt"


def checkpoint_name(kind: str, index: int) -> str:
    """``step-00000012`` (kind "step", 8 digits) or ``epoch-000003`` (kind "epoch", 6 digits)."""
    width = {"step": 8, "epoch": 6}[kind]
    return f"{kind}-{index:0{width}d}"


def _complete(d: Path) -> bool:
    return d.is_dir() and not d.name.endswith(".tmp") and (d / STATE_FILE).is_file()


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: the one ``checkpoints/latest`` names, else the newest complete one."""
    root = Path(run_dir) / "checkpoints"
    marker = root / "latest"
    if marker.is_file():
        d = root / marker.read_text().strip()
        if _complete(d):
            return d
    done = sorted(p for p in root.glob("*-*") if _complete(p)) if root.is_dir() else []
    return done[-1] if done else None


def begin_checkpoint(run_dir: str | os.PathLike, name: str) -> Path:
    """A fresh, empty ``checkpoints/<name>.tmp`` to write the payload into (a stale one is removed)."""
    tmp = Path(run_dir) / "checkpoints" / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(run_dir: str | os.PathLike, name: str, state: TrainState, *, keep: int | None = None) -> Path:
    """Save ``state`` into the ``.tmp`` folder, rename it to ``<name>``, point ``latest`` at it and, with ``keep``,
    delete all but the ``keep`` newest checkpoints of the same kind. Returns the checkpoint folder."""
    root = Path(run_dir) / "checkpoints"
    tmp, final = root / (name + ".tmp"), root / name
    save_state(state, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(root / "latest", name + "\n")
    if keep is not None:
        kind = name.split("-")[0]
        old = sorted(p for p in root.glob(f"{kind}-*") if not p.name.endswith(".tmp") and p != final)
        for p in old[: max(0, len(old) - (keep - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint_state(ckpt: str | os.PathLike) -> TrainState:
    return load_state(Path(ckpt) / STATE_FILE)


def truncate_log(path: str | os.PathLike, key: str, last: int) -> None:
    """Keep only the records of ``path`` (log.jsonl) whose ``key`` ("step" or "epoch") is <= ``last``: the ones the
    resumed checkpoint covers. Rewritten atomically; a missing log is left missing."""
    p = Path(path)
    if not p.is_file():
        return
    kept = [ln for ln in p.read_text().splitlines() if ln.strip() and json.loads(ln).get(key, 0) <= last]
    atomic_write_text(p, "".join(ln + "\n" for ln in kept))
