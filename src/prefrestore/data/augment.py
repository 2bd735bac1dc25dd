"""Augmentations of HQ face photos for building training sets (tools/build_corpus.py, tools/build_offline_faces.py).

``jitter_detection`` moves a detection's 5 landmarks by a random similarity before alignment, so an augmented crop
takes new context from the photo instead of padding; ``colour_jitter`` changes brightness, contrast and saturation.
Images are uint8 (H, W, 3) RGB; randomness comes only from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

from ..faces.types import FaceDetection


def jitter_detection(
    det: FaceDetection, rng: np.random.Generator, *, scale: float = 0.08, degrees: float = 8.0, shift: float = 0.04
) -> FaceDetection:
    """The detection with its landmarks scaled by 1 +- ``scale``, rotated by +- ``degrees`` about their centre and
    shifted by +- ``shift`` x the face size (uniform draws, in that order)."""
    lm = det.landmarks_array()
    c = lm.mean(0)
    s, a = rng.uniform(1 - scale, 1 + scale), np.deg2rad(rng.uniform(-degrees, degrees))
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lm2 = (lm - c) @ rot.T + c + rng.uniform(-shift, shift, 2) * det.size
    return FaceDetection.from_arrays(np.asarray(det.box), det.score, lm2)


def colour_jitter(img: np.ndarray, rng: np.random.Generator, *, amount: float = 0.1) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> brightness, contrast and saturation each scaled by 1 +- ``amount``."""
    im = Image.fromarray(img)
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enh(im).enhance(rng.uniform(1 - amount, 1 + amount))
    return np.asarray(im)
