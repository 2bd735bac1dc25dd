"""TA-Tok image tokenizer: SigLIP vision tower + task layer + text-aligned codebook -> discrete image token ids.

Legend: B batch, T image tokens (= (image_size / patch_size)^2; 729 for the paper), H tower width (1152),
E codebook width (1536), K codebook size (65536).

Data flow (docs/layouts.md §2.2): image (B, 3, S, S) in [-1, 1] -> SigLIP's preprocessing at ``image_size``
(:meth:`TATokTokenizer.preprocess`: uint8, PIL bicubic, /255, normalise 0.5/0.5) -> SigLIP tower,
hidden states of layer ``feature_layer`` (-2: output of the second-to-last block, before post_layernorm)
-> Linear + Tanh (``encode_task_layer``) -> Linear H->E (``bottleneck.in_linear``) -> L2-normalise ->
argmax cosine against L2norm(embedding_proj(codebook)) -> ids in [0, K).
The tower is always frozen in Pref-Restore; only the ids are used downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from ..io.image import from_model, resize, uint8_to_unit


@dataclass(frozen=True)
class TokenizerConfig:
    image_size: int = 384  # input resolution of the tower (SigLIP so400m-patch14-384)
    patch_size: int = 14
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    layer_norm_eps: float = 1e-6
    feature_layer: int = -2  # hidden_states index used as features (TA-Tok uses -2)
    codebook_size: int = 65536
    codebook_dim: int = 1536

    def __post_init__(self):
        if self.image_size < self.patch_size:
            raise ValueError(f"image_size={self.image_size} is smaller than patch_size={self.patch_size}")

    @property
    def num_tokens(self) -> int:
        # the patch conv has stride patch_size and no padding: 384 // 14 = 27 -> 729 (pixels 378-383 unused)
        return (self.image_size // self.patch_size) ** 2


class Codebook(nn.Module):
    """SimVQ regulariser at eval: codebook = L2norm(embedding_proj(embedding.weight)), index = argmax cosine."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(size, dim)
        self.embedding_proj = nn.Linear(dim, dim)
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def codes(self) -> torch.Tensor:
        """(K, E) unit-norm code vectors; cached until the weights change (the tokenizer is frozen)."""
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in self.parameters())
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, F.normalize(self.embedding_proj(self.embedding.weight), dim=-1))
        return self._cache[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, T, E) -> ids (B, T) int64, nearest code by cosine similarity."""
        z = F.normalize(z, dim=-1)
        return (z @ self.codes().to(z.dtype).T).argmax(-1)  # (B, T, K) -> (B, T)


class Bottleneck(nn.Module):
    """TA-Tok bottleneck; ``out_linear`` is kept for checkpoint compatibility (the decoder side, unused here)."""

    def __init__(self, in_dim: int, dim: int, size: int):
        super().__init__()
        self.in_linear = nn.Linear(in_dim, dim)
        self.out_linear = nn.Linear(dim, dim)
        self.regularizer = Codebook(size, dim)


class TATokTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=config.hidden_size,
                intermediate_size=config.intermediate_size,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                image_size=config.image_size,
                patch_size=config.patch_size,
                layer_norm_eps=config.layer_norm_eps,
            )
        )
        self.encode_task_layer = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.Tanh())
        self.bottleneck = Bottleneck(config.hidden_size, config.codebook_dim, config.codebook_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float RGB in [-1, 1] -> (B, 3, S, S) float32 in [-1, 1], S = image_size, on images' device.

        What the official code feeds TA-Tok (``SiglipImageProcessor`` as TA-Tok configures it, docs/layouts.md §2.4): the
        uint8 image, PIL bicubic resize straight to S x S (no crop), x 1/255, normalise with mean 0.5 and std 0.5.
        The official code only ever sees uint8 images, so float input is rounded to uint8 first
        (``image.from_model``; exact for tensors made by ``image.to_model``). A float-tensor resize instead moves
        the 384 px input by up to 8.4e-3 and 7 of 729 token ids on a degraded face.
        """
        s = self.config.image_size
        u8 = np.stack([resize(a, (s, s), resample="bicubic") for a in from_model(images)])  # (B, S, S, 3) uint8
        return ((uint8_to_unit(u8) - 0.5) / 0.5).to(images.device)  # (B, 3, S, S), as transformers' normalize

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) float RGB in [-1, 1] -> token ids (B, T) int64 in [0, codebook_size)."""
        x = self.preprocess(images).to(self.encoder.embeddings.patch_embedding.weight.dtype)
        feats = self.encoder(pixel_values=x, output_hidden_states=True).hidden_states[self.config.feature_layer]
        z = self.bottleneck.in_linear(self.encode_task_layer(feats))  # (B, T, H) -> (B, T, E)
        return self.bottleneck.regularizer(z)
