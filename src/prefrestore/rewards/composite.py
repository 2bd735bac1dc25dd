"""A weighted sum of rewards with every component kept for logging (docs/style.md P10, docs/method.md §3.4).

    reward = CompositeReward.build({"identity_dlib": 1.0, "lmd_mtcnn": 0.5, "ssim": 0.5}, device="cpu")
    total, parts = reward(restored, lq, hq)          # (B,), {"identity_dlib": (B,), ...}

Names (explicit dispatch in :data:`BUILDERS`, no registry):

=================  ==============================================================  ========  ===========
name               what                                                            paper     weights
=================  ==============================================================  ========  ===========
``pickscore``      PickScore_v1 text-image logit / 26 (on the caption)             1.0       files
``hpsv2``          HPS v2.1 text-image cosine (OpenCLIP ViT-H-14)                  1.0       files
``clipscore``      CLIP ViT-L/14 text-image logit / 100                            1.0       files
``lmd``            FAN 98-point landmarks, 1 / (1 + d / 20), 0.01 on failure       0.5       files
``arcface``        ArcFace ResNet-18 cosine to the GT                              0.5       files
``lpips``          -LPIPS(VGG) to the GT                                           0.5       files
``identity_dlib``  dlib descriptor cosine to the GT (or LQ)                        -         offline
``id_dlib``        dlib ResNet (torch port) cosine to the GT (or LQ), batched      -         registry
``id_mobileface``  MobileFace cosine to the GT (or LQ): the arcface slot here      (0.5)     registry
``lmd_mtcnn``      MTCNN 5-point landmarks, 1 / (1 + d / 20), 0.01 on failure      -         offline
``psnr``           PSNR (dB, Y) to the GT                                          -         offline
``ssim``           SSIM (Y) to the GT                                              -         offline
``brisque``        -BRISQUE / 100, no reference                                    -         opencv-data
=================  ==============================================================  ========  ===========
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .protocol import Reward, RewardInputs

PAPER_WEIGHTS: dict[str, float] = {  # config pref_restore_gt_reward (docs/method.md §3.4)
    "pickscore": 1.0,
    "hpsv2": 1.0,
    "clipscore": 1.0,
    "lmd": 0.5,
    "arcface": 0.5,
    "lpips": 0.5,
}
DEFAULT_PROMPT = "A photograph of a person."  # caption used by text rewards when the data has none


def _pickscore(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .pickscore import PickScoreReward

    return PickScoreReward(device=device, **kw)


def _hpsv2(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .hpsv2 import HPSv2Reward

    return HPSv2Reward(device=device, weights_dir=weights_dir, **kw)


def _clipscore(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .clipscore import CLIPScoreReward

    return CLIPScoreReward(device=device, **kw)


def _lmd(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .fan_lmd import FANLandmarkReward

    return FANLandmarkReward(device=device, weights_dir=weights_dir, **kw)


def _arcface(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .arcface import ArcFaceReward

    return ArcFaceReward(device=device, weights_dir=weights_dir, **kw)


def _lpips(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .lpips import LPIPSReward

    return LPIPSReward(device=device, weights_dir=weights_dir, **kw)


def _identity_dlib(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .identity_dlib import DlibIdentityReward

    return DlibIdentityReward(**kw)


def _id_dlib(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .identity_net import IdentityNetReward

    return IdentityNetReward("dlib", device=device, weights_dir=weights_dir, **kw)


def _id_mobileface(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .identity_net import IdentityNetReward

    return IdentityNetReward("mobileface", device=device, weights_dir=weights_dir, **kw)


def _lmd_mtcnn(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .landmarks import MTCNNLandmarkReward

    return MTCNNLandmarkReward(device=device, **kw)


def _psnr(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .psnr import PSNRReward

    return PSNRReward(**kw)


def _ssim(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .ssim import SSIMReward

    return SSIMReward(**kw)


def _brisque(device: str, weights_dir: str | None, **kw: Any) -> Reward:
    from .brisque import BRISQUEReward

    return BRISQUEReward(weights_dir=weights_dir, **kw)


BUILDERS: dict[str, Callable[..., Reward]] = {
    "pickscore": _pickscore,
    "hpsv2": _hpsv2,
    "clipscore": _clipscore,
    "lmd": _lmd,
    "arcface": _arcface,
    "lpips": _lpips,
    "identity_dlib": _identity_dlib,
    "id_dlib": _id_dlib,
    "id_mobileface": _id_mobileface,
    "lmd_mtcnn": _lmd_mtcnn,
    "psnr": _psnr,
    "ssim": _ssim,
    "brisque": _brisque,
}
REWARD_NAMES: tuple[str, ...] = tuple(BUILDERS)


def build_reward(
    name: str, *, device: str = "cpu", weights_dir: str | os.PathLike | None = None, **options: Any
) -> Reward:
    """One reward by name; heavy imports and weight loading happen here, once."""
    if name not in BUILDERS:
        raise ValueError(f"unknown reward {name!r}; expected one of {list(REWARD_NAMES)}")
    return BUILDERS[name](str(device), None if weights_dir is None else str(weights_dir), **options)


class CompositeReward:
    """total = sum_k weight_k * reward_k; ``__call__`` returns (total (B,), {name: (B,) unweighted scores})."""

    def __init__(self, rewards: Mapping[str, Reward], weights: Mapping[str, float]) -> None:
        if set(rewards) != set(weights):
            raise ValueError(f"rewards {sorted(rewards)} and weights {sorted(weights)} must name the same rewards")
        if not rewards:
            raise ValueError("a composite reward needs at least one reward")
        for name, r in rewards.items():
            if not isinstance(r, Reward):
                raise TypeError(f"reward {name!r}: {type(r).__name__} does not implement the Reward protocol")
        self.rewards = dict(rewards)
        self.weights = {k: float(v) for k, v in weights.items()}

    @classmethod
    def build(
        cls,
        weights: Mapping[str, float],
        *,
        device: str = "cpu",
        weights_dir: str | os.PathLike | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> CompositeReward:
        options = dict(options or {})
        unknown = sorted(set(options) - set(weights))
        if unknown:
            raise ValueError(f"reward options for {unknown}, which have no weight; add them to the weights")
        rewards = {
            name: build_reward(name, device=device, weights_dir=weights_dir, **options.get(name, {}))
            for name in weights
        }
        return cls(rewards, weights)

    def __call__(
        self,
        restored: torch.Tensor,
        lq: torch.Tensor,
        hq: torch.Tensor | None = None,
        prompts: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """restored, lq, hq: (B, 3, S, S) RGB in [-1, 1] (hq may be None) -> (total (B,), per-reward (B,))."""
        batch = RewardInputs(restored=restored, lq=lq, hq=hq, prompts=prompts)
        parts = {name: r(batch) for name, r in self.rewards.items()}
        total = torch.zeros(len(batch), dtype=torch.float32)
        for name, scores in parts.items():
            total = total + self.weights[name] * scores
        return total, parts
