"""SFT validation: what a stage has learnt, as an image grid (LQ | restored | HQ, or HQ | reconstruction) written to
``val/step-N.png`` and TensorBoard. Restorations go through the one sampling path (PrefRestoreModel.sample)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..data import FaceDataset, collate, gather_records
from ..io.image import from_model
from ..models.integrator import RESTORE_INSTRUCTION, DecodeOptions
from ..models.restorer import PrefRestoreModel
from .sft_config import SFTConfig, Stage, ValConfig


@torch.no_grad()
def restore_for_stage(model: PrefRestoreModel, lq: torch.Tensor, hq: torch.Tensor, stage: Stage, vcfg: ValConfig):
    """What the stage has learnt, as images (B, 3, S, S) in [-1, 1]: the AE reconstruction of HQ (stage 0), or a
    restoration of LQ with greedy tokens, the stage's condition (stage 1: queries only), Euler + CFG."""
    if stage == 0:
        return model.decode_latent(model.encode_latent(hq)).float().clamp(-1, 1)
    if stage == "autoencoder":  # stage 3 with diff_weight 0: the encoder's restoration, decoded
        return model.decode_latent(model.encode_latent(lq), lq).float().clamp(-1, 1)
    B = lq.shape[0]
    gens = [torch.Generator().manual_seed(vcfg.seed + i) for i in range(B)]
    noise = model.initial_noise(B, gens, device=lq.device)
    _, queries = model.integrator.generate(
        model.tokenizer(lq), [RESTORE_INSTRUCTION] * B, options=DecodeOptions(do_sample=False)
    )
    lq_latent = model.encode_latent(lq)
    cond = model.query_tokens(queries) if stage == 1 else model.condition(queries, lq_latent)
    s = vcfg.start_sigma or model.config.sampling.start_sigma
    s = 1.0 if stage == 1 else s  # stage 1's condition has no LQ latent: it samples from noise
    latent = model.sample(cond, noise, lq_latent, steps=vcfg.steps, guidance_scale=vcfg.guidance_scale, start_sigma=s)
    return model.decode_latent(latent, lq).float().clamp(-1, 1)


def grid_image(columns: list[torch.Tensor]) -> np.ndarray:
    """Columns of (B, 3, S, S) in [-1, 1] -> uint8 (B*S + pad, K*S + pad, 3): one row per sample, 2 px gutters."""
    B, _, S, _ = columns[0].shape
    K, pad = len(columns), 2
    out = np.full((B * (S + pad) + pad, K * (S + pad) + pad, 3), 255, np.uint8)
    for k, col in enumerate(columns):
        u8 = from_model(col)  # B uint8 (S, S, 3)
        for b in range(B):
            y, x = pad + b * (S + pad), pad + k * (S + pad)
            out[y : y + S, x : x + S] = u8[b]
    return out


def val_batch(cfg: SFTConfig, resolution: int, train_ds: FaceDataset) -> dict | None:
    """A fixed batch (restoration items only, no flips) from val.folder or the first training records."""
    dcfg = dataclasses.replace(
        cfg.data,
        recon_prob=0.0,
        hflip=0.0,
        missing_caption="no_text",
        crop=0,
        folders=[cfg.val.folder] if cfg.val.folder else cfg.data.folders,
        manifests=[] if cfg.val.folder else cfg.data.manifests,
    )
    records = gather_records(dcfg)[0] if cfg.val.folder else train_ds.records
    ds = FaceDataset(records, dcfg, resolution, seed=cfg.val.seed)
    items = []
    for i in range(len(ds)):
        it = ds.item(i, 0)
        if isinstance(it, dict):
            items.append(it)
        if len(items) == cfg.val.num:
            break
    return collate(items) if items else None


def validate(model, vb, cfg: SFTConfig, step: int, run_dir: Path, writer, device) -> None:
    from PIL import Image

    was_training = model.training
    model.eval()
    device = model.device  # under FSDP the exported model is a gathered CPU copy
    stage = "autoencoder" if cfg.autoencoder_only else cfg.stage
    out = restore_for_stage(model, vb["lq"].to(device), vb["hq"].to(device), stage, cfg.val)
    model.train(was_training)
    cols = [vb["hq"], out.cpu()] if cfg.stage == 0 else [vb["lq"], out.cpu(), vb["hq"]]
    grid = grid_image(cols)
    (run_dir / "val").mkdir(exist_ok=True)
    Image.fromarray(grid).save(run_dir / "val" / f"step-{step:08d}.png")
    if writer is not None:
        writer.add_image("val/" + ("hq|recon" if cfg.stage == 0 else "lq|restored|hq"), grid, step, dataformats="HWC")
