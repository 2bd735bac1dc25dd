"""CLIPScore reward (the paper's, weight 1.0): CLIP ViT-L/14 text-image logit / 100, on the caption.

Model ``openai/clip-vit-large-patch14`` from a folder or the local HF cache (never downloaded). As the official
scorer: images resized (shortest side, bilinear, antialiased), centre-cropped and normalised on tensors, text
padded to 77 tokens, score ``logits_per_image.diagonal() / 100`` = ``logit_scale.exp() * cos / 100``.
"""

from __future__ import annotations

import os

import torch

from .protocol import RewardInputs, as_scores


class CLIPScoreReward:
    name = "clipscore"

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        model: str | os.PathLike = "openai/clip-vit-large-patch14",
        scale: float = 100.0,
    ) -> None:
        from .clip import load_hf_clip

        self.clip = load_hf_clip(model, metric="CLIPScore", device=device)
        self.scale = scale

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from .clip import image_features, preprocess, text_features

        prompts = batch.require_prompts(self.name)
        img = image_features(self.clip, preprocess(batch.unit("restored"), self.clip, mode="bilinear"))
        txt = text_features(self.clip, list(prompts), padding="max_length")
        logits = self.clip.model.logit_scale.exp().float().cpu() * (img * txt).sum(-1).cpu()
        return as_scores(logits / self.scale, len(batch), self.name)
