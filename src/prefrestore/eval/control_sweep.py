"""Measurements behind the restoration controls: fixed degraded pairs of a face folder, and per-setting scores.

Used by ``tools/calibrate_fidelity.py`` (on training faces) and ``tools/control_report.py`` (on held-out faces), so
the calibration and the report measure the same way. Faces: uint8 (S, S, 3) RGB aligned crops.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io.image import from_model, load_rgb, resize, to_model

AUGMENTED = re.compile(r"_a\d+$")  # tools/build_offline_faces.py names augmented copies NAME_aNNN


def face_files(folder: str | os.PathLike, *, augmented: bool = True) -> list[Path]:
    """The PNG faces of a ``build_offline_faces.py`` split, sorted; ``augmented=False`` keeps the originals only."""
    files = sorted(Path(folder).glob("*.png"))
    return [p for p in files if augmented or not AUGMENTED.search(p.stem)]


def degraded_pairs(
    files: Sequence[Path], resolution: int, *, seeds: Sequence[int] = (1000,), preset_name: str = "paper"
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Each face x each seed -> (GT crops, LQ crops, names): the paper degradation scaled to ``resolution`` / 512,
    sampled from ``torch.Generator(seed + 100 * file index)``, quantised to 8 bits like the training LQs."""
    from ..degradations import apply, preset, sample_params, scaled

    cfg = scaled(preset(preset_name), resolution / 512)
    gts, lqs, names = [], [], []
    for i, p in enumerate(files):
        img = load_rgb(p)
        if img.shape[:2] != (resolution, resolution):
            img = resize(img, (resolution, resolution), resample="lanczos")
        g = to_model([img])[0]
        for s in seeds:
            params = sample_params(cfg, torch.Generator().manual_seed(s + 100 * i))
            lq = from_model((apply((g + 1) / 2, params)[None] * 2 - 1).clamp(-1, 1))[0]
            gts.append(img)
            lqs.append(lq)
            names.append(f"{p.stem}_s{s}")
    return gts, lqs, names


class Meter:
    """Fidelity, identity and quality of restorations (each method returns one value per face)."""

    def __init__(self, *, identity: bool = True, brisque: bool = True) -> None:
        from ..faces.identity import IdentityScorer, identity_available
        from ..rewards.brisque import find_model_files, load_brisque_model

        self.identity = IdentityScorer() if identity and identity_available() else None
        self.brisque_model = load_brisque_model(*map(str, find_model_files())) if brisque else None

    @staticmethod
    def psnr_y(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        from ..metrics.pixel import psnr

        return psnr((to_model(list(a)) + 1) / 2, (to_model(list(b)) + 1) / 2).double().numpy()

    def idd(self, restored: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> np.ndarray:
        """dlib identity distance, the face located on ``reference`` (NaN without dlib)."""
        if self.identity is None:
            return np.full(len(restored), np.nan)
        return np.array([s.distance for s in self.identity.compare(list(reference), list(restored))])

    def brisque(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from ..rewards.brisque import brisque_features, brisque_score, to_gray

        if self.brisque_model is None:
            return np.full(len(images), np.nan)
        return np.array([brisque_score(brisque_features(to_gray(i)), self.brisque_model) for i in images])

    @staticmethod
    def delta_e(restored: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> np.ndarray:
        from ..metrics.color import face_delta_e

        return np.array([face_delta_e(r, x) for r, x in zip(reference, restored, strict=True)])

    def all(self, restored, lq, gt=None) -> dict[str, np.ndarray]:
        """psnr_in (PSNR-Y to the LQ input: closeness), psnr_gt, idd_gt, idd_in, brisque, delta_e_in per face."""
        out = {
            "psnr_in": self.psnr_y(restored, lq),
            "idd_in": self.idd(restored, lq),
            "brisque": self.brisque(restored),
            "delta_e_in": self.delta_e(restored, lq),
        }
        if gt is not None:
            out.update(psnr_gt=self.psnr_y(restored, gt), idd_gt=self.idd(restored, gt))
        return out


def means(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: round(float(np.nanmean(v)), 4) for k, v in values.items()}
