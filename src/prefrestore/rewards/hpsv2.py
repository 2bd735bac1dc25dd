"""HPS v2.1 reward (the paper's, weight 1.0): cosine of HPS v2.1 image and caption embeddings.

HPS v2.1 is an OpenCLIP ViT-H-14 fine-tuned on human preferences; ``HPS_v2.1_compressed.pt`` holds its whole
state dict (``{"state_dict": ...}``, OpenCLIP key names). Here it is renamed into a transformers ``CLIPModel``
(:func:`prefrestore.rewards.clip.openclip_to_hf`; no open_clip dependency) with the ViT-H-14 configuration, and
the caption is tokenised with a CLIP BPE tokenizer (OpenCLIP's and OpenAI's are the same BPE; with the causal
text mask the padding id does not matter). The file is read from disk only: ``checkpoint=`` or
``HPS_v2.1_compressed.pt`` in the metric-weights folder. Images: resized to 224 (bicubic, antialiased; the HPS
transform resizes the longer side and pads, the same for square faces), OpenAI mean/std. Score: cos(image, text).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .protocol import RewardInputs, as_scores

CHECKPOINT = "HPS_v2.1_compressed.pt"


class HPSv2Reward:
    name = "hpsv2"

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        checkpoint: str | os.PathLike | None = None,
        tokenizer: str | os.PathLike = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        weights_dir: str | os.PathLike | None = None,
        config: Any = None,
    ) -> None:
        from transformers import CLIPModel

        from ..metrics.weights import find_file
        from .clip import OPENAI_MEAN, OPENAI_STD, ClipBundle, load_tokenizer, openclip_to_hf, vit_h_14_config

        path = checkpoint or find_file(
            "HPSv2.1", CHECKPOINT, "HPS v2.1 checkpoint (xswu/HPSv2 on the HF hub)", override=weights_dir
        )
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd)
        config = config or vit_h_14_config()
        model = CLIPModel(config)
        missing, unexpected = model.load_state_dict(openclip_to_hf(sd), strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(
                f"{path}: not an OpenCLIP ViT checkpoint of this shape (missing {missing[:4]}, "
                f"unexpected {unexpected[:4]})"
            )
        model = model.eval().requires_grad_(False).to(device)
        size = config.vision_config.image_size
        self.clip = ClipBundle(model, load_tokenizer(tokenizer, "HPSv2.1"), size, size, OPENAI_MEAN, OPENAI_STD)

    def __call__(self, batch: RewardInputs) -> torch.Tensor:
        from .clip import image_features, preprocess, text_features

        prompts = batch.require_prompts(self.name)
        img = image_features(self.clip, preprocess(batch.unit("restored"), self.clip, mode="bicubic"))
        txt = text_features(self.clip, list(prompts), padding="max_length")
        return as_scores((img * txt).sum(-1).cpu(), len(batch), self.name)
