"""LQ/GT face pairs in the ``make-testset`` layout (``lq/<stem>.png``, ``gt/<stem>.png``), as the RL loop reads them.

A folder with only ``lq/`` gives LQ-only pairs (``gt`` None); ``captions.jsonl`` ({"name", "prompt"}) gives the
caption of the text-conditioned rewards.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..io.image import list_images, load_rgb, resize


@dataclass(frozen=True)
class FacePair:
    name: str
    lq: Path
    gt: Path | None
    prompt: str


def list_pairs(folders: Sequence[str], *, prompt: str = "A photograph of a person.") -> list[FacePair]:
    """Every ``lq/<stem>.*`` of every folder, with its ``gt/<stem>.*`` when present (sorted, stable); ``prompt``
    for the faces a folder's ``captions.jsonl`` ({"name", "prompt"}) does not caption."""
    pairs: list[FacePair] = []
    for folder in folders:
        root = Path(folder)
        if not (root / "lq").is_dir():
            raise UserError(f"{root}: no lq/ folder; RL data folders use the make-testset layout (lq/, gt/)")
        captions = {}
        if (root / "captions.jsonl").is_file():
            for line in (root / "captions.jsonl").read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    captions[rec["name"]] = rec["prompt"]
        gts = {p.stem: p for p in list_images(root / "gt")} if (root / "gt").is_dir() else {}
        for p in list_images(root / "lq"):
            pairs.append(FacePair(f"{root.name}/{p.stem}", p, gts.get(p.stem), captions.get(p.stem, prompt)))
    if not pairs:
        raise UserError(f"no LQ faces found in data.pairs={list(folders)}")
    return pairs


def read_face(path: Path, size: int) -> np.ndarray:
    """uint8 (size, size, 3) RGB: the image at ``path``, bicubic-resized when it is another size."""
    img = load_rgb(path)
    if img.shape[:2] != (size, size):
        img = resize(img, (size, size), resample="bicubic")
    return img


def epoch_groups(num_pairs: int, groups: int, seed: int) -> list[int]:
    """The pair indices of one epoch: a seeded permutation, repeated when groups > num_pairs."""
    g = torch.Generator().manual_seed(seed)
    out: list[int] = []
    while len(out) < groups:
        out += torch.randperm(num_pairs, generator=g).tolist()
    return out[:groups]
