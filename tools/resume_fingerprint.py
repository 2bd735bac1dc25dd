"""Fingerprint of short tiny training runs and a restore, to show that a refactor changes no output bit.

Runs, on one thread, in a temporary folder:

* SFT: a 4-step joint run with EMA, validation and a checkpoint every 2 steps, uninterrupted, and the same run
  killed (an exception) during step 3 and resumed;
* NFT: a 2-epoch RL run on the tiny preset, uninterrupted, and the same run stopped after epoch 1 and resumed;
* a restore of 2 faces by the tiny model at a fixed seed (model.restore: encode -> sample -> decode);
* with ``--demo``: the demo photos restored by the bundled model through the whole-photo pipeline (the PNGs of
  cropped_faces/, restored_faces/, restored_imgs/).

Prints one JSON object: the sha256 of every saved weight tensor (by key, sorted), of the validation images, of the
logs (time fields dropped) and of the restored tensors. Run it on two checkouts and compare the JSON:

    PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 python tools/resume_fingerprint.py [--demo] > after.json
    diff before.json after.json   # empty: bit-identical
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def _tensors(path: Path) -> str:
    from safetensors.torch import load_file

    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        state = load_file(str(f))
        for k in sorted(state):
            h.update(f"{f.relative_to(path) if path.is_dir() else f.name}/{k}".encode())
            h.update(state[k].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _log(path: Path) -> str:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows = [{k: v for k, v in r.items() if not (k.startswith("time_") or k == "samples_per_s")} for r in rows]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def _faces(folder: Path, n: int = 5, size: int = 128) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[:size, :size] / size
        img = np.stack(
            [yy * rng.uniform(100, 255), xx * rng.uniform(100, 255), rng.uniform(0, 255, (size, size))], -1
        ).astype(np.uint8)
        Image.fromarray(img).save(folder / f"face{i}.png")
    lines = [json.dumps({"file": f"face{i}.png", "caption": f"a photography of person {i}"}) for i in range(n)]
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def sft(tmp: Path) -> dict:
    from prefrestore.config import load_config
    from prefrestore.data import BatchStream
    from prefrestore.training.sft import SFTConfig, train_sft

    faces = _faces(tmp / "faces")
    base = [
        f"out_dir={tmp / 'runs'}",
        "init=tiny",
        "threads=1",
        "max_steps=4",
        "log_every=1",
        "stage=joint",
        "checkpoint_every=2",
        "keep_checkpoints=2",
        "ema_decay=0.9",
        "val_every=2",
        "val.num=2",
        "val.steps=2",
        f"data.folders=[{faces}]",
        "data.batch_size=2",
        "data.degradation.kernel_size=5",
        "data.degradation.downsample=[1, 4]",
        "data.degradation.blur_sigma=[0.2, 2]",
    ]
    out = {}
    full = train_sft(load_config(SFTConfig, None, base + ["name=full"]))
    cfg = load_config(SFTConfig, None, base + ["name=resumed"])
    original, calls = BatchStream.next_batch, {"n": 0}

    def dying(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(self)

    BatchStream.next_batch = dying
    try:
        train_sft(cfg)
    except RuntimeError:
        pass
    finally:
        BatchStream.next_batch = original
    resumed = train_sft(cfg)
    for label, run in (("full", full), ("resumed", resumed)):
        out[f"sft/{label}/final"] = _tensors(run / "final")
        out[f"sft/{label}/final_ema"] = _tensors(run / "final_ema")
        out[f"sft/{label}/log"] = _log(run / "log.jsonl")
        for png in sorted((run / "val").glob("*.png")):
            out[f"sft/{label}/val/{png.name}"] = hashlib.sha256(png.read_bytes()).hexdigest()
    return out


def nft(tmp: Path) -> dict:
    import cv2

    from prefrestore.io.image import save_rgb
    from prefrestore.rewards import CompositeReward
    from prefrestore.training.nft import NFTConfig, OptimSettings, RLDataSettings, train_nft
    from prefrestore.training.rollout import RolloutConfig

    try:
        from prefrestore.checkpoints import random_model
    except ImportError:
        from prefrestore.restore.api import random_model

    root = tmp / "pairs"
    rng = np.random.default_rng(0)
    for i in range(3):
        low = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.float32)
        gt = cv2.resize(low, (128, 128), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
        save_rgb(root / "gt" / f"face{i}.png", gt)
        save_rgb(root / "lq" / f"face{i}.png", cv2.GaussianBlur(gt, (0, 0), 2.0))

    class NegL1:
        name = "neg_l1"

        def __call__(self, batch):
            return -(batch.unit("restored") - batch.unit("hq")).abs().mean(dim=(1, 2, 3))

    def cfg(out: Path, epochs: int) -> NFTConfig:
        return NFTConfig(
            model="tiny",
            out_dir=str(out),
            epochs=epochs,
            checkpoint_every=1,
            data=RLDataSettings(pairs=(str(root),), groups_per_epoch=2),
            rollout=RolloutConfig(group_size=2, steps=3, batch_size=4),
            optim=OptimSettings(train_batch_size=2, steps_per_epoch=1),
        )

    def reward():
        return CompositeReward({"neg_l1": NegL1()}, {"neg_l1": 1.0})

    out = {}
    train_nft(cfg(tmp / "rl_full", 2), reward=reward(), model=random_model("tiny", seed=0))
    train_nft(cfg(tmp / "rl_resumed", 1), reward=reward(), model=random_model("tiny", seed=0))
    train_nft(cfg(tmp / "rl_resumed", 2), reward=reward(), model=random_model("tiny", seed=0))
    for label in ("full", "resumed"):
        run = tmp / f"rl_{label}"
        ckpts = run / "checkpoints"
        latest = ckpts / (ckpts / "latest").read_text().strip()
        out[f"nft/{label}/checkpoint"] = _tensors(latest)
        out[f"nft/{label}/log"] = _log(run / "log.jsonl")
    return out


def restore() -> dict:
    try:
        from prefrestore.checkpoints import random_model
    except ImportError:
        from prefrestore.restore.api import random_model

    model = random_model("tiny", seed=0)
    g = torch.Generator().manual_seed(7)
    lq = torch.rand(2, 3, 128, 128, generator=g) * 2 - 1
    out = {}
    for s in (1.0, 0.5):
        x = model.restore(
            lq,
            generators=[torch.Generator().manual_seed(i) for i in range(2)],
            steps=3,
            guidance_scale=2.0,
            start_sigma=s,
        )
        out[f"restore/start_sigma={s}"] = hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()
    return out


def demo(tmp: Path) -> dict:
    from prefrestore.demo import example_photos
    from prefrestore.restore.file_run import restore_photo_files
    from prefrestore.restore.loaded import load_pipeline
    from prefrestore.restore.options import RestoreSettings

    out = tmp / "demo"
    from prefrestore.restore.pipeline import PipelineConfig

    settings = RestoreSettings.from_flat({"model": "default", "identity": "off"})
    restore_photo_files(example_photos(), out, load_pipeline(settings).with_config(PipelineConfig()))  # as make demo
    return {
        f"demo/{p.relative_to(out)}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.png"))
        if p.parent.name in ("cropped_faces", "restored_faces", "restored_imgs")
    }


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {**restore(), **sft(tmp), **nft(tmp), **(demo(tmp) if "--demo" in sys.argv[1:] else {})}
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
