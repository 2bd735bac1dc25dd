"""Seeds: the global-RNG seeding of a run and the derived per-item / per-epoch seeds (below data/ and training/).

Everything that draws per-sample randomness (the data pipeline, the training loops, the RL rollouts) derives its
seed here with :func:`derive_seed`, so a sample's randomness depends on (seed, epoch, index) only.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global RNG and torch (all devices). Loops should still prefer explicit
    ``torch.Generator`` objects; this covers library code that draws from the global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. base seed, epoch, sample index); stable across runs and machines."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) + 0x9E3779B97F4A7C15 + ((h << 6) & (2**64 - 1)) + (h >> 2)) & (2**64 - 1)
        h = (h * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        h ^= h >> 31
    return h & (2**63 - 1)
