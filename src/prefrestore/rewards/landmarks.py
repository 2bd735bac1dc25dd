"""Landmark reward on MTCNN's 5 points: 1 / (1 + d / 20), d the mean landmark distance to the reference (offline).

The paper's landmark reward (``fan_lmd.py``, weight 0.5) uses FAN's 98 WFLW points on 512 px images and gives 0.01
when a face is not found (docs/method.md §3.4). This offline stand-in keeps the mapping and the failure value but uses
the project's MTCNN detector (``prefrestore.faces``; bundled weights): the most confident face's 5 points (eyes,
nose, mouth corners) in the restored image and in the reference (the GT, or the LQ input when there is none).
d is expressed in pixels of a ``scale_to`` (512) image so the constant 20 keeps its meaning at any resolution.
Non-standard: 5 points are not 98, and an MTCNN miss on a small face counts as a failure.
"""

from __future__ import annotations

import numpy as np
import torch

from .protocol import RewardInputs, as_scores


def landmark_reward(distance: float, *, d0: float = 20.0) -> float:
    """Mean landmark distance (px at the reference scale) -> 1 / (1 + d / d0) in (0, 1]."""
    return 1.0 / (1.0 + distance / d0)


class MTCNNLandmarkReward:
    name = "lmd_mtcnn"

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        scale_to: int = 512,
        d0: float = 20.0,
        failure: float = 0.01,
        min_face_size: float = 20.0,
    ) -> None:
        from ..faces.detect import build_detector

        self.detector = build_detector("mtcnn", device=str(device), min_face_size=min_face_size)
        self.scale_to, self.d0, self.failure = scale_to, d0, failure

    def _points(self, images: list[np.ndarray]) -> list[np.ndarray | None]:
        out = []
        for dets in self.detector.detect_many(images):
            out.append(max(dets, key=lambda d: d.score).landmarks_array() if dets else None)
        return out

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        restored, refs = batch.uint8("restored"), batch.uint8(batch.reference())
        # A group shares one reference: detect each distinct reference once.
        keys = [r.tobytes() for r in refs]
        uniq = list(dict.fromkeys(keys))
        ref_pts = dict(zip(uniq, self._points([refs[keys.index(k)] for k in uniq]), strict=True))
        scores = []
        for img_pts, key, ref in zip(self._points(restored), keys, refs, strict=True):
            ref_p = ref_pts[key]
            if img_pts is None or ref_p is None:
                scores.append(self.failure)
                continue
            d = float(np.sqrt(((img_pts - ref_p) ** 2).sum(1)).mean()) * self.scale_to / ref.shape[1]
            scores.append(landmark_reward(d, d0=self.d0))
        return as_scores(scores, len(batch), self.name)
