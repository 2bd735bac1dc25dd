"""ArcFace identity reward (the paper's, weight 0.5): cosine similarity of ArcFace ResNet-18 embeddings to the GT.

Network and preprocessing are :class:`prefrestore.metrics.identity.ArcFaceIdentity`: VQFR's metric weights
``resnet18_110.pth`` (``ronghuaiyang/arcface-pytorch`` ``resnet_face18(use_se=False)``, DataParallel ``module.``
keys accepted), 8-bit gray input resized to 128 x 128, 512-d output (docs/method.md §3.4). The weights are read from
disk only (``$PREFRESTORE_METRIC_WEIGHTS`` or ``weights_dir``); building this reward without them raises
``MetricUnavailable`` naming the file. Reference: the GT, or the LQ input when there is none.
"""

from __future__ import annotations

import os

import torch

from .protocol import RewardInputs, as_scores


class ArcFaceReward:
    name = "arcface"

    def __init__(self, *, device: str | torch.device = "cpu", weights_dir: str | os.PathLike | None = None) -> None:
        from ..metrics.identity import ArcFaceIdentity

        self.embedder = ArcFaceIdentity(device=device, override=weights_dir)

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from ..metrics.identity import cosine_similarity

        a, b = self.embedder.embed_pairs(batch.uint8("restored"), batch.uint8(batch.reference()))
        return as_scores(cosine_similarity(a, b), len(batch), self.name)
