"""Identity rewards from the torch identity networks: cosine of embeddings to the GT (or the LQ input).

``id_dlib``: dlib's 128-d ResNet (:mod:`prefrestore.metrics.dlib_resnet`, public-domain weights);
``id_mobileface``: MobileFace 256-d, trained with an ArcFace-style loss and aligned to the ArcFace template
(:mod:`prefrestore.metrics.mobileface`). ``id_mobileface`` is what we put in the paper's ArcFace identity slot
(weight 0.5) when VQFR's ArcFace ResNet-18 weights (the ``arcface`` reward) are not at hand: same role (cosine of
an ArcFace-style embedding to the GT), a different network. Both read the restoration batch as FFHQ-aligned crops
(the model's resolution), warp it onto their chip on the device and score it batched; unlike ``identity_dlib``
(the dlib package, one face at a time on the CPU) they need no face detection, and their weights come from
``prefrestore weights``.
"""

from __future__ import annotations

import os

import torch

from .protocol import RewardInputs, as_scores


class IdentityNetReward:
    def __init__(
        self, net: str, *, device: str | torch.device = "cpu", weights_dir: str | os.PathLike | None = None
    ) -> None:
        from ..metrics.identity import load_identity_net

        self.name = f"id_{net}"
        self.device = device
        self.embedder = load_identity_net(net, device=device, override=weights_dir)

    @torch.no_grad()
    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from ..metrics.identity import cosine_torch

        x = batch.unit("restored").to(self.device)
        ref = batch.unit(batch.reference()).to(self.device)
        cos = cosine_torch(self.embedder(x), self.embedder(ref))
        return as_scores(cos.float().cpu(), len(batch), self.name)
