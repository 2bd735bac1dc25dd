"""BRISQUE no-reference quality as a reward: -BRISQUE / 100 (BRISQUE is in [0, 100], lower is better). Offline.

BRISQUE (Mittal, Moorthy and Bovik, "No-reference image quality assessment in the spatial domain", TIP 2012),
computed the way OpenCV's ``cv::quality::QualityBRISQUE`` does (opencv_contrib ``modules/quality``), reimplemented
here because the OpenCV 5 wheels ship neither ``cv2.quality`` nor ``cv2.ml``:

* gray in [0, 1] (8-bit BT.601 gray / 255, float32); two scales (full, then half size by bicubic resize);
* MSCN coefficients (I - mu) / (sigma + 1/255) with a 7x7 Gaussian (sigma 7/6, replicated borders);
* an asymmetric generalised Gaussian (AGGD) fit of the MSCN map (shape, mean of the two variances) and of the
  four products with the right, lower, lower-right and upper-right neighbours (shape, mean, left and right
  variances): 18 features per scale, 36 in all;
* features scaled to [-1, 1] with ``brisque_range_live.yml`` and scored by the epsilon-SVR with an RBF kernel in
  ``brisque_model_live.yml``: f(x) = sum_i alpha_i exp(-gamma ||x - sv_i||^2) - rho, clamped to [0, 100].

The two model files (LIVE database, from opencv_contrib) are not shipped here: they come from Debian's
``opencv-data`` package (``/usr/share/opencv4/quality/``), or from ``$PREFRESTORE_METRIC_WEIGHTS``.
Not one of the paper's rewards: a generic natural-image quality score standing in for the preference models.
"""

from __future__ import annotations

import math
import os
import re
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from .protocol import RewardInputs, as_scores

MODEL_FILE = "brisque_model_live.yml"
RANGE_FILE = "brisque_range_live.yml"
DEBIAN_DIR = Path("/usr/share/opencv4/quality")
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # (row, col) neighbour offsets: H, V, D1, D2


# ----------------------------------------------------------------------------------------------------------------
# Features


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """Shape grid 0.2, 0.201, ... < 10 and r(g) = Gamma(2/g)^2 / (Gamma(1/g) Gamma(3/g)) on it."""
    gam = 0.2 + 0.001 * np.arange(9800)
    gam = gam[gam < 10]
    r = np.array([math.gamma(2 / g) ** 2 / (math.gamma(1 / g) * math.gamma(3 / g)) for g in gam])
    return gam, r


def aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """AGGD fit by moment matching -> (shape gamma, left sigma, right sigma), as OpenCV's AGGDfit."""
    x = x.astype(np.float64, copy=False)
    neg, pos = x[x < 0], x[x > 0]
    negsq, possq = float((neg**2).sum()), float((pos**2).sum())
    left = math.sqrt(negsq / max(len(neg), 1))
    right = math.sqrt(possq / max(len(pos), 1))
    total = x.size
    gammahat = left / right if right > 0 else math.inf
    rhat = (float(np.nan_to_num(np.abs(x)).sum()) / total) ** 2 / ((negsq + possq) / total)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    gam, r = _gamma_table()
    diff = np.abs(r - rhatnorm)
    # OpenCV walks the grid and stops at the first increase of |r(g) - rhatnorm|; keep the g before it.
    rises = np.nonzero(diff[1:] > diff[:-1])[0]
    best = gam[rises[0]] if len(rises) else gam[-1]
    return float(best), left, right


def _mscn(img: np.ndarray) -> np.ndarray:
    mu = cv2.GaussianBlur(img, (7, 7), 7.0 / 6.0, borderType=cv2.BORDER_REPLICATE)
    sq = cv2.GaussianBlur(img * img, (7, 7), 7.0 / 6.0, borderType=cv2.BORDER_REPLICATE)
    sigma = np.sqrt(np.maximum(sq - mu * mu, 0.0)) + np.float32(1.0 / 255.0)
    return (img - mu) / sigma


def _shifted(x: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """out[i, j] = x[i + dr, j + dc] inside the image, 0 outside."""
    out = np.zeros_like(x)
    h, w = x.shape
    rs, re_ = max(0, -dr), min(h, h - dr)
    cs, ce = max(0, -dc), min(w, w - dc)
    out[rs:re_, cs:ce] = x[rs + dr : re_ + dr, cs + dc : ce + dc]
    return out


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """(H, W) float32 gray in [0, 1] -> (36,) float32 BRISQUE features."""
    feats: list[float] = []
    for scale in (1, 2):
        h, w = gray.shape
        img = cv2.resize(gray, (w // scale, h // scale), interpolation=cv2.INTER_CUBIC) if scale > 1 else gray
        mscn = _mscn(img.astype(np.float32))
        g, left, right = aggd_fit(mscn)
        feats += [g, (left * left + right * right) / 2]
        for dr, dc in _SHIFTS:
            g, left, right = aggd_fit(mscn * _shifted(mscn, dr, dc))
            const = math.sqrt(math.gamma(1 / g)) / math.sqrt(math.gamma(3 / g))
            mean = (right - left) * (math.gamma(2 / g) / math.gamma(1 / g)) * const
            feats += [g, mean, left**2, right**2]
    return np.asarray(feats, dtype=np.float32)


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (H, W) in [0, 1] (OpenCV's 8-bit gray, then / 255)."""
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------------------------
# Model files


def _opencv_yaml(text: str) -> dict:
    """Parse an OpenCV FileStorage YAML file (``%YAML:1.0`` header, ``!!opencv-matrix`` tags) with PyYAML."""
    import yaml

    text = re.sub(r"^%YAML:1\.0", "", text, count=1)
    text = text.replace("!!opencv-matrix", "")
    text = re.sub(r"\{\s*epsilon:", "{ epsilon: ", text)
    return yaml.safe_load(text)


@lru_cache(maxsize=4)
def load_brisque_model(model_path: str, range_path: str) -> dict[str, np.ndarray | float]:
    """-> {support_vectors (S, 36), alpha (S,), rho, gamma, lo (36,), hi (36,)} as float64."""
    svm = _opencv_yaml(Path(model_path).read_text())["opencv_ml_svm"]
    if svm.get("svmType") != "EPS_SVR" or svm["kernel"]["type"] != "RBF":
        raise ValueError(f"{model_path}: expected an EPS_SVR with an RBF kernel, got {svm.get('svmType')}")
    (df,) = svm["decision_functions"]
    sv = np.asarray(svm["support_vectors"], dtype=np.float64)
    alpha = np.asarray(df["alpha"], dtype=np.float64)
    if "index" in df:
        sv = sv[np.asarray(df["index"], dtype=np.int64)]
    rng = _opencv_yaml(Path(range_path).read_text())["range"]
    lohi = np.asarray(rng["data"], dtype=np.float64).reshape(rng["rows"], rng["cols"])
    if sv.shape != (len(alpha), 36) or lohi.shape != (2, 36):
        raise ValueError(f"{model_path}, {range_path}: unexpected shapes {sv.shape}, {alpha.shape}, {lohi.shape}")
    return {
        "sv": sv,
        "alpha": alpha,
        "rho": float(df["rho"]),
        "gamma": float(svm["kernel"]["gamma"]),
        "lo": lohi[0],
        "hi": lohi[1],
    }


def brisque_score(features: np.ndarray, model: dict) -> float:
    """(36,) features -> BRISQUE score clamped to [0, 100] (lower is better)."""
    x = -1.0 + 2.0 * (features.astype(np.float64) - model["lo"]) / (model["hi"] - model["lo"])
    k = np.exp(-model["gamma"] * ((model["sv"] - x) ** 2).sum(1))
    return float(np.clip(k @ model["alpha"] - model["rho"], 0.0, 100.0))


def find_model_files(weights_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    from ..metrics.weights import find_file

    what = "BRISQUE LIVE model from opencv_contrib (apt-get install opencv-data puts it in /usr/share/opencv4/quality)"
    return (
        find_file("BRISQUE", MODEL_FILE, what, override=weights_dir, extra=[DEBIAN_DIR]),
        find_file("BRISQUE", RANGE_FILE, what, override=weights_dir, extra=[DEBIAN_DIR]),
    )


def brisque(images: list[np.ndarray], *, weights_dir: str | os.PathLike | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB images -> (B,) BRISQUE scores in [0, 100]."""
    model = load_brisque_model(*map(str, find_model_files(weights_dir)))
    return np.array([brisque_score(brisque_features(to_gray(i)), model) for i in images])


# ----------------------------------------------------------------------------------------------------------------
# Reward


class BRISQUEReward:
    name = "brisque"

    def __init__(self, *, weights_dir: str | os.PathLike | None = None) -> None:
        self.model = load_brisque_model(*map(str, find_model_files(weights_dir)))

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        scores = [brisque_score(brisque_features(to_gray(i)), self.model) for i in batch.uint8("restored")]
        return as_scores([-s / 100.0 for s in scores], len(batch), self.name)
