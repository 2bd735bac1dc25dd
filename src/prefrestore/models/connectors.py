"""The two connectors that map LM hidden states and LQ latent tokens into SANA's caption space.

diffusion_connector: Linear(D_lm -> C) -> GELU(tanh) -> Linear(C -> C) -> RMSNorm(C), norm weight = sqrt(5.5)
vae_connector:       Linear(D_dit -> C) -> GELU(tanh) -> Linear(C -> C) -> the SAME RMSNorm object
(docs/method.md §1.1 steps 5 and 7; docs/layouts.md §5). C is SANA's ``caption_channels`` (2304 for the paper).
Module indices (0, 1, 2, 3) match the official checkpoints' keys ``{0,2}.{weight,bias}``, ``3.weight``.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.normalization import RMSNorm
from torch import nn

NORM_INIT = math.sqrt(5.5)  # official init of the shared RMSNorm weight


def make_shared_norm(dim: int, eps: float = 1e-5) -> RMSNorm:
    norm = RMSNorm(dim, eps=eps, elementwise_affine=True)
    with torch.no_grad():
        norm.weight.fill_(NORM_INIT)
    return norm


def make_connector(in_dim: int, out_dim: int, norm: nn.Module) -> nn.Sequential:
    """(B, N, in_dim) -> (B, N, out_dim)."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(approximate="tanh"), nn.Linear(out_dim, out_dim), norm)
