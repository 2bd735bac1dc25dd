"""The metric table the evaluation harness computes, and a scorer that builds each backend once.

Every metric has a fixed name (the column in result tables), a reference it needs (``gt``: a ground truth;
``ref``: the GT, or the LQ input when there is none; ``none``: no-reference), and a direction. A metric that cannot
run here (missing weights or package) is recorded in :attr:`ImageScorer.unavailable` with the one-line reason
naming the file to provide; it is never dropped silently and never given a made-up value.

Scorer inputs are lists of uint8 (H, W, 3) RGB arrays of one size per item (restored, gt, lq);
tensor metrics see float (B, 3, H, W) RGB in [0, 1].
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..io.image import uint8_to_unit
from .weights import MetricUnavailable

logger = logging.getLogger(__name__)

Needs = Literal["gt", "ref", "none"]


LandmarkChoice = Literal["auto", "fan", "mtcnn", "dlib"]
"""LMD landmarks: auto = FAN 98 points when its weights are present, else MTCNN 5 points."""


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    needs: Needs
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        MetricInfo("psnr_y", "PSNR-Y", "gt", True, "dB on BT.601 Y, crop 0 (BasicSR)"),
        MetricInfo("ssim_y", "SSIM-Y", "gt", True, "Gaussian-window SSIM on Y (BasicSR)"),
        MetricInfo("psnr_rgb", "PSNR-RGB", "gt", True, "dB on RGB"),
        MetricInfo("ssim_rgb", "SSIM-RGB", "gt", True, "SSIM averaged over R, G, B"),
        MetricInfo("lpips_vgg", "LPIPS-VGG", "gt", False, "LPIPS v0.1, VGG16"),
        MetricInfo("lpips_alex", "LPIPS-Alex", "gt", False, "LPIPS v0.1, AlexNet"),
        MetricInfo("id_dist_dlib", "IDD-dlib", "ref", False, "dlib 128-d L2 identity distance (same person < 0.6)"),
        MetricInfo("id_cos_dlib", "IDS-dlib", "ref", True, "dlib 128-d cosine identity similarity"),
        MetricInfo("deg_arcface", "Deg", "ref", False, "ArcFace ResNet-18 embedding angle in degrees (VQFR)"),
        MetricInfo(
            "id_dlib", "ID-dlib", "ref", True, "cosine of dlib ResNet 128-d embeddings (torch port, FFHQ warp)"
        ),
        MetricInfo("id_mobileface", "ID-MF", "ref", True, "cosine of MobileFace 256-d embeddings (ArcFace 112 warp)"),
        MetricInfo("deg_mobileface", "Deg-MF", "ref", False, "MobileFace embedding angle in degrees (papers' Deg.)"),
        MetricInfo("lmd", "LMD", "ref", False, "mean landmark distance in pixels (FAN 98 / MTCNN 5 / dlib 5 points)"),
        MetricInfo("niqe", "NIQE", "none", False, "NIQE (BasicSR), pristine model from file"),
        MetricInfo("musiq", "MUSIQ", "none", True, "MUSIQ-KonIQ through pyiqa"),
        MetricInfo("clipiqa", "CLIP-IQA", "none", True, "CLIP-IQA through pyiqa"),
        MetricInfo("maniqa", "MANIQA", "none", True, "MANIQA-KonIQ through pyiqa"),
    ]
}
# Set-level metrics computed by the harness, listed here so tables know their direction.
SET_METRICS: dict[str, MetricInfo] = {
    "fid": MetricInfo("fid", "FID", "none", False, "FID (TF FID InceptionV3, pool features) vs a reference set"),
    "kid": MetricInfo("kid", "KID", "none", False, "KID (same features, cubic-kernel MMD^2) vs a reference set"),
    "entropy_std": MetricInfo("entropy_std", "Ent-std", "none", False, "mean per-pixel std over K seeds"),
    "entropy_pair": MetricInfo("entropy_pair", "Ent-pair", "none", False, "mean pairwise RMSE over K seeds"),
}
DEFAULT_METRICS: tuple[str, ...] = tuple(METRICS)

# metric names that share one backend
GROUPS: dict[str, tuple[str, ...]] = {
    "fidelity": ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"),
    "lpips_vgg": ("lpips_vgg",),
    "lpips_alex": ("lpips_alex",),
    "dlib": ("id_dist_dlib", "id_cos_dlib"),
    "arcface": ("deg_arcface",),
    "id_dlib": ("id_dlib",),
    "id_mobileface": ("id_mobileface", "deg_mobileface"),
    "lmd": ("lmd",),
    "niqe": ("niqe",),
    "musiq": ("musiq",),
    "clipiqa": ("clipiqa",),
    "maniqa": ("maniqa",),
}


def info(name: str) -> MetricInfo:
    if name in METRICS:
        return METRICS[name]
    if name in SET_METRICS:
        return SET_METRICS[name]
    raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS) + sorted(SET_METRICS)}")


class ImageScorer:
    """Per-image metrics for batches; backends are built on first use, unavailable ones recorded once."""

    def __init__(
        self,
        metrics: tuple[str, ...] = DEFAULT_METRICS,
        *,
        device: str | torch.device = "cpu",
        weights_dir: str | os.PathLike | None = None,
        landmarks: LandmarkChoice = "auto",
        crop_border: int = 0,
    ) -> None:
        for m in metrics:
            if m not in METRICS:
                raise ValueError(f"unknown per-image metric {m!r}; expected one of {sorted(METRICS)}")
        self.metrics = tuple(metrics)
        self.device = device
        self.weights_dir = weights_dir
        self.landmarks = landmarks
        self.crop_border = crop_border
        self.unavailable: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self._backends: dict[str, Any] = {}

    # -- backends -------------------------------------------------------------------------------------------

    def _build(self, group: str) -> Any:
        from . import identity, iqa, landmarks, lpips, niqe

        builders: dict[str, Callable[[], Any]] = {
            "fidelity": lambda: True,
            "lpips_vgg": lambda: lpips.load_lpips("vgg", device=self.device, override=self.weights_dir),
            "lpips_alex": lambda: lpips.load_lpips("alex", device=self.device, override=self.weights_dir),
            "dlib": identity.DlibIdentity,
            "arcface": lambda: identity.ArcFaceIdentity(device=self.device, override=self.weights_dir),
            "id_dlib": lambda: identity.load_identity_net("dlib", device=self.device, override=self.weights_dir),
            "id_mobileface": lambda: identity.load_identity_net(
                "mobileface", device=self.device, override=self.weights_dir
            ),
            "lmd": lambda: landmarks.build_landmark_backend(
                self.landmarks, device=str(self.device), override=self.weights_dir
            ),
            "niqe": lambda: niqe.NIQE(override=self.weights_dir),
            "musiq": lambda: iqa.PyiqaMetric("musiq", device=self.device),
            "clipiqa": lambda: iqa.PyiqaMetric("clipiqa", device=self.device),
            "maniqa": lambda: iqa.PyiqaMetric("maniqa", device=self.device),
        }
        return builders[group]()

    def backend(self, group: str) -> Any | None:
        """The backend for a metric group, or None (with the reason in ``unavailable``) if it cannot run."""
        if group in self._backends:
            return self._backends[group]
        try:
            b = self._build(group)
        except MetricUnavailable as err:
            for m in GROUPS[group]:
                if m in self.metrics:
                    self.unavailable[m] = str(err)
            logger.warning("%s", err)
            b = None
        if group == "lmd" and b is not None:
            self.notes["lmd"] = f"landmarks: {b.name}"
        self._backends[group] = b
        return b

    def available(self) -> list[str]:
        """Metrics that can run (building each backend once)."""
        for group, names in GROUPS.items():
            if any(m in self.metrics for m in names):
                self.backend(group)
        return [m for m in self.metrics if m not in self.unavailable]

    # -- scoring --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def score(
        self,
        restored: list[np.ndarray],
        gt: list[np.ndarray] | None = None,
        lq: list[np.ndarray] | None = None,
    ) -> list[dict[str, float]]:
        """Per-image metric dicts for a batch (restored resized to the reference size beforehand by the caller)."""
        from . import identity, landmarks, pixel

        n = len(restored)
        out: list[dict[str, float]] = [{} for _ in range(n)]
        ref = gt if gt is not None else lq
        want = set(self.available())

        def put(name: str, values: Any) -> None:
            for i, v in enumerate(np.asarray(values, dtype=np.float64).reshape(n)):
                out[i][name] = float(v)

        x = uint8_to_unit(np.stack(restored))  # (B, 3, H, W) in [0, 1]
        if gt is not None:
            y = uint8_to_unit(np.stack(gt))
            for space in pixel.SPACES:
                if f"psnr_{space}" in want:
                    put(f"psnr_{space}", pixel.psnr(x, y, space=space, crop_border=self.crop_border))
                if f"ssim_{space}" in want:
                    put(f"ssim_{space}", pixel.ssim(x, y, space=space, crop_border=self.crop_border))
            for net in ("vgg", "alex"):
                if f"lpips_{net}" in want:
                    model = self.backend(f"lpips_{net}")
                    put(f"lpips_{net}", model(x.to(self.device), y.to(self.device)).cpu())
        if ref is not None:
            if want & {"id_dist_dlib", "id_cos_dlib"}:
                a, b = self.backend("dlib").embed_pairs(restored, ref)
                put("id_dist_dlib", identity.l2_distance(a, b))
                put("id_cos_dlib", identity.cosine_similarity(a, b))
            if "deg_arcface" in want:
                a, b = self.backend("arcface").embed_pairs(restored, ref)
                put("deg_arcface", identity.angle_degrees(a, b))
            if "id_dlib" in want:
                a, b = self.backend("id_dlib").embed_pairs(restored, ref)
                put("id_dlib", identity.cosine_similarity(a, b))
            if want & {"id_mobileface", "deg_mobileface"}:
                a, b = self.backend("id_mobileface").embed_pairs(restored, ref)
                put("id_mobileface", identity.cosine_similarity(a, b))
                put("deg_mobileface", identity.angle_degrees(a, b))
            if "lmd" in want:
                put("lmd", landmarks.lmd(self.backend("lmd"), restored, ref))
        for name in ("niqe", "musiq", "clipiqa", "maniqa"):
            if name in want:
                put(name, self.backend(name)(x))
        return out
