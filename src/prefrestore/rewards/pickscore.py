"""PickScore reward (the paper's, weight 1.0): PickScore_v1 text-image logit / 26, on the caption.

Model ``yuvalkirstain/PickScore_v1`` (a transformers CLIPModel, ViT-H-14) with the processor of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, from folders or the local HF cache (never downloaded). Score, as the
official scorer: ``logit_scale.exp() * cos(image, text) / 26``. Images go through the processor's resize / crop /
normalisation, done on tensors here (torch's antialiased bicubic instead of PIL's: a small numeric difference).
"""

from __future__ import annotations

import os

import torch

from .protocol import RewardInputs, as_scores


class PickScoreReward:
    name = "pickscore"

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        model: str | os.PathLike = "yuvalkirstain/PickScore_v1",
        processor: str | os.PathLike = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        scale: float = 26.0,
    ) -> None:
        from .clip import load_hf_clip

        self.clip = load_hf_clip(model, processor_ref=processor, metric="PickScore", device=device)
        self.scale = scale

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from .clip import image_features, preprocess, text_features

        prompts = batch.require_prompts(self.name)
        img = image_features(self.clip, preprocess(batch.unit("restored"), self.clip, mode="bicubic"))
        txt = text_features(self.clip, list(prompts), padding=True)
        logits = self.clip.model.logit_scale.exp().float().cpu() * (img * txt).sum(-1).cpu()
        return as_scores(logits / self.scale, len(batch), self.name)
