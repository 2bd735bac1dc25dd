"""Shared helpers for the training tests: a folder of small synthetic 'faces' with captions."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from prefrestore.config import load_config
from prefrestore.training.sft import SFTConfig


def make_faces(folder: Path, n: int = 8, size: int = 128) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[:size, :size] / size
        img = np.stack(
            [yy * rng.uniform(100, 255), xx * rng.uniform(100, 255), rng.uniform(0, 255, (size, size))], -1
        ).astype(np.uint8)
        Image.fromarray(img).save(folder / f"face{i}.png")
        lines.append(json.dumps({"file": f"face{i}.png", "caption": f"a photography of person {i}"}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def tiny_config(tmp_path: Path, faces: Path, *overrides: str) -> SFTConfig:
    base = [
        f"out_dir={tmp_path / 'runs'}",
        "init=tiny",
        "threads=1",
        "max_steps=1",
        "log_every=1",
        "checkpoint_every=1000",
        "val_every=0",
        f"data.folders=[{faces}]",
        "data.batch_size=2",
        "data.degradation.kernel_size=5",
        "data.degradation.downsample=[1, 4]",
        "data.degradation.blur_sigma=[0.2, 2]",
    ]
    return load_config(SFTConfig, None, base + list(overrides))


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()]
