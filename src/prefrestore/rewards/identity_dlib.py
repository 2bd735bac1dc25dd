"""dlib identity similarity as a reward: cosine similarity of dlib's 128-d face descriptors (offline).

Reference: the ground truth when the batch has one, else the LQ input the model saw. The face is located on the
reference (HOG detector, or the central box of an aligned crop) and both images are described inside that box, as
:class:`prefrestore.metrics.identity.DlibIdentity` does; each distinct reference is described once per call (a
group of G restorations shares one). Non-standard: the paper's identity reward is the cosine of ArcFace ResNet-18
embeddings (``arcface.py``), whose weights are not available offline; dlib's descriptor (CC0 weights shipped by
``face_recognition_models``) is the offline stand-in. Not differentiable, which DiffusionNFT does not need.
"""

from __future__ import annotations

import numpy as np
import torch

from .protocol import RewardInputs, as_scores


class DlibIdentityReward:
    name = "identity_dlib"

    def __init__(self) -> None:
        from ..faces.dlib import DlibFaces

        self.faces = DlibFaces()

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from ..metrics.identity import cosine_similarity

        restored, refs = batch.uint8("restored"), batch.uint8(batch.reference())
        seen: dict[bytes, tuple[tuple[int, int, int, int], np.ndarray]] = {}
        a, b = [], []
        for img, ref in zip(restored, refs, strict=True):
            key = ref.tobytes()
            if key not in seen:
                box = self.faces.box(ref)
                seen[key] = (box, self.faces.descriptor(ref, box))
            box, ref_desc = seen[key]
            a.append(self.faces.descriptor(img, box))
            b.append(ref_desc)
        return as_scores(cosine_similarity(np.stack(a), np.stack(b)), len(batch), self.name)
