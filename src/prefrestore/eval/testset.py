"""Build a frozen CelebA-Test-style synthetic set: ``gt/``, ``lq/`` and the per-image degradation record.

Layout written (never over an existing non-empty folder)::

    OUT/gt/<stem>.png       HQ face, centre-cropped to a square and resized to ``size`` (bicubic)
    OUT/lq/<stem>.png       degraded copy, same size (the classic pipeline resizes back)
    OUT/params.jsonl        one DegradationRecord per image: name, seed, preset, params
    OUT/meta.json           preset, config, base seed, size, source folder, prefrestore version

Each image's seed is derived from (base seed, file stem), so adding an image to the source folder does not change
the LQ of the others, and any LQ can be re-made from its line in ``params.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..degradations import (
    DegradationConfig,
    DegradationParams,
    DegradationRecord,
    PresetName,
    apply,
    preset,
    sample_params,
    scaled,
)
from ..errors import UserError
from ..io.image import list_images, load_rgb, resize, save_rgb, uint8_to_unit, unit_to_uint8

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticSetConfig:
    """What :func:`build_testset` makes."""

    hq_dir: str
    out: str
    preset: PresetName = "paper"
    seed: int = 0
    size: int | None = 512
    """Side of the square GT/LQ images; None keeps each (square-cropped) image's own size."""
    scale_degradation: bool = False
    """Scale the preset's pixel quantities by size / 512 (presets are written for 512 px faces)."""
    copies: int = 1
    """LQ versions per HQ image: pair k of image STEM is named ``STEM_k{k}`` and seeded from that name (1: STEM)."""

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise ValueError(f"copies={self.copies}: must be >= 1")
        if self.size is not None and self.size < 16:
            raise ValueError(f"size={self.size}: must be >= 16 pixels (or None to keep the source size)")
        if self.scale_degradation and self.size is None:
            raise ValueError("scale_degradation needs a fixed size (the factor is size / 512)")

    def degradation(self) -> DegradationConfig:
        cfg = preset(self.preset)
        return scaled(cfg, self.size / 512) if self.scale_degradation and self.size else cfg


def image_seed(base_seed: int, name: str) -> int:
    """A 62-bit seed from (base seed, image name), stable across runs, platforms and folder contents."""
    digest = hashlib.sha256(f"{base_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def center_square(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> the centred (S, S, 3) crop, S = min(H, W)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def make_pair(
    hq: np.ndarray, cfg: DegradationConfig, seed: int, size: int | None
) -> tuple[np.ndarray, np.ndarray, DegradationParams]:
    """uint8 (H, W, 3) HQ -> (gt uint8 (S, S, 3), lq uint8 (S, S, 3), the record that replays it)."""
    gt = center_square(hq)
    if size is not None:
        gt = resize(gt, (size, size), resample="bicubic")
    params = sample_params(cfg, torch.Generator().manual_seed(seed))
    lq = unit_to_uint8(apply(uint8_to_unit(gt), params))
    return gt, lq, params


def build_testset(cfg: SyntheticSetConfig) -> Path:
    """Write the frozen set described in the module docstring; returns the output folder."""
    from ..errors import ImageError
    from ..io.io_safety import check_new_folder, shown, staged_folder

    hint = "frozen test sets are never overwritten, pick a new -o"
    out = check_new_folder(cfg.out, hint=hint)
    skipped: list[str] = []
    paths = list_images(cfg.hq_dir, on_skip=lambda q, message: skipped.append(message))
    if not paths:
        raise UserError(f"{shown(cfg.hq_dir)}: no images found (expected .png/.jpg/... files)")
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise UserError(
            f"{shown(cfg.hq_dir)}: several files share the names {dup[:5]}; rename them so stems are unique"
        )

    count = 0
    with staged_folder(out, hint=hint) as tmp:
        lines = []
        deg = cfg.degradation()
        for i, p in enumerate(paths):
            try:
                hq = load_rgb(p)
            except ImageError as err:  # one line, and the set is built from the other files (recorded in meta)
                skipped.append(str(err))
                logger.error("%s", shown(err))
                continue
            count += 1
            for k in range(cfg.copies):
                name = p.stem if cfg.copies == 1 else f"{p.stem}_k{k}"
                seed = image_seed(cfg.seed, name)
                gt, lq, params = make_pair(hq, deg, seed, cfg.size)
                save_rgb(tmp / "gt" / f"{name}.png", gt)
                save_rgb(tmp / "lq" / f"{name}.png", lq)
                rec = DegradationRecord(
                    name=name, seed=seed, preset=cfg.preset, params=params, extra={"source": p.name}
                )
                lines.append(rec.to_json())
                logger.debug("%d/%d %s scale=%.2f", i + 1, len(paths), name, params.scale)
        if not count:
            raise UserError(f"{shown(cfg.hq_dir)}: none of the {len(paths)} images could be read; see the lines above")
        (tmp / "params.jsonl").write_text("\n".join(lines) + "\n")
        meta = {
            "preset": cfg.preset,
            "config": asdict(deg),
            "scale_degradation": cfg.scale_degradation,
            "seed": cfg.seed,
            "size": cfg.size,
            "count": len(lines),
            "copies": cfg.copies,
            "skipped": skipped,
            "source": str(Path(cfg.hq_dir).resolve()),
            "prefrestore_version": __version__,
            "layout": "gt/<stem>.png, lq/<stem>.png, params.jsonl (one DegradationRecord per line)",
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info(
        "wrote %d GT/LQ pairs (%s preset, seed %d) to %s%s",
        len(lines),
        cfg.preset,
        cfg.seed,
        shown(out),
        f"; {len(skipped)} input(s) skipped (listed in meta.json)" if skipped else "",
    )
    return out


def read_records(testset_dir: str | os.PathLike) -> list[DegradationRecord]:
    """The degradation records of a ``make-testset`` folder (its ``params.jsonl``), in file order."""
    lines = (Path(testset_dir) / "params.jsonl").read_text().splitlines()
    return [DegradationRecord.from_json(line) for line in lines if line.strip()]


def replay(testset_dir: str | os.PathLike, name: str) -> np.ndarray:
    """Re-make the LQ of ``name`` from ``gt/`` and ``params.jsonl`` -> uint8 (S, S, 3)."""
    root = Path(testset_dir)
    for rec in read_records(root):
        if rec.name == name:
            gt = load_rgb(root / "gt" / f"{name}.png")
            return unit_to_uint8(apply(uint8_to_unit(gt), rec.params))
    raise UserError(f"{root / 'params.jsonl'}: no record named {name!r}")
