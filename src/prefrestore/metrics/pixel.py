"""Full-reference pixel metrics: PSNR and SSIM, on the Y channel (the face-restoration convention) or on RGB.

Inputs are float ``(B, 3, H, W)`` RGB in ``[0, 1]``; outputs are float64 ``(B,)``. Values are computed on the
0-255 scale exactly as BasicSR's ``calculate_psnr`` / ``calculate_ssim`` do (and hence GFPGAN, VQFR, CodeFormer):

* Y = 16 + 65.481 R + 128.553 G + 24.966 B (ITU-R BT.601, MATLAB ``rgb2ycbcr``), not rounded, in [16, 235];
* PSNR = 10 log10(255^2 / MSE) over all pixels (and channels for RGB); +inf for identical images;
* SSIM with an 11x11 Gaussian window (sigma 1.5), 'valid' filtering, C1 = (0.01*255)^2, C2 = (0.03*255)^2, the
  mean over the map and then over channels;
* ``crop_border`` pixels are removed from each side first (face papers use 0).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Space = Literal["y", "rgb"]
SPACES: tuple[Space, ...] = ("y", "rgb")

_Y = (65.481, 128.553, 24.966)


def _prep(x: torch.Tensor, space: Space, crop_border: int) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB in [0, 1], got {tuple(x.shape)}")
    if space not in SPACES:
        raise ValueError(f"unknown space={space!r}; expected one of {SPACES}")
    x = x.double()
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    if space == "y":
        w = torch.tensor(_Y, dtype=x.dtype, device=x.device)[None, :, None, None]
        return (x * w).sum(1, keepdim=True) + 16.0  # (B, 1, H, W) on the 0-255 scale
    return x * 255.0  # (B, 3, H, W)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) BT.601 luma in [16/255, 235/255] (float64)."""
    return _prep(x, "y", 0) / 255.0


def psnr(restored: torch.Tensor, reference: torch.Tensor, *, space: Space = "y", crop_border: int = 0) -> torch.Tensor:
    """PSNR in dB, (B,) float64; +inf where the images are identical."""
    if restored.shape != reference.shape:
        raise ValueError(f"shape mismatch: restored {tuple(restored.shape)} vs reference {tuple(reference.shape)}")
    a, b = _prep(restored, space, crop_border), _prep(reference, space, crop_border)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))  # (B,)
    return 10.0 * torch.log10(255.0**2 / mse)  # log10(x / 0) = +inf


def _gaussian_1d(device: torch.device) -> torch.Tensor:
    ax = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(ax**2) / (2 * 1.5**2))
    return (g / g.sum()).float().to(device)  # (11,), = cv2.getGaussianKernel(11, 1.5)


def ssim(restored: torch.Tensor, reference: torch.Tensor, *, space: Space = "y", crop_border: int = 0) -> torch.Tensor:
    """SSIM, (B,) float64 in [-1, 1]; 1 for identical images. Images must be at least 11x11 after cropping."""
    if restored.shape != reference.shape:
        raise ValueError(f"shape mismatch: restored {tuple(restored.shape)} vs reference {tuple(reference.shape)}")
    a, b = _prep(restored, space, crop_border), _prep(reference, space, crop_border)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    # The 11x11 Gaussian window is separable; float32 convolutions are ~10x faster than float64 on CPU. Both
    # images are centred on one shared offset per channel first, which leaves variances and covariances unchanged
    # and keeps float32 cancellation error in them negligible (|SSIM error| < 1e-6 against float64).
    offset = ((a.mean(dim=(2, 3), keepdim=True) + b.mean(dim=(2, 3), keepdim=True)) / 2).round()
    a32, b32 = (a - offset).float(), (b - offset).float()
    bsz, c, h, w = a32.shape
    g = _gaussian_1d(a32.device)

    n = bsz * c
    gv, gh = g.view(1, 1, 11, 1).expand(n, 1, 11, 1), g.view(1, 1, 1, 11).expand(n, 1, 1, 11)

    def filt(x: torch.Tensor) -> torch.Tensor:
        # Maps as channels of one depthwise conv: CPU kernels are much faster this way than batch-of-1-channel.
        x = x.reshape(1, n, h, w)
        x = F.conv2d(F.conv2d(x, gv, groups=n), gh, groups=n)  # 'valid': (1, B*C, H-10, W-10)
        return x.reshape(bsz, c, h - 10, w - 10).double()

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a0, mu_b0 = filt(a32), filt(b32)  # means of the centred images
    var_a = filt(a32 * a32) - mu_a0**2
    var_b = filt(b32 * b32) - mu_b0**2
    cov = filt(a32 * b32) - mu_a0 * mu_b0
    mu_a, mu_b = mu_a0 + offset, mu_b0 + offset
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(2, 3)).mean(dim=1)  # per channel, then over channels


def match_mean_std(restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel affine colour correction of ``restored`` to ``reference``'s mean and std, twice.

    VQFR's ``metric_paper/calculate_psnr_ssim.py`` applies this before PSNR/SSIM by default
    (``--correct_mean_var``); offered so its numbers can be reproduced, off by default here.
    (B, 3, H, W) in [0, 1] -> (B, 3, H, W) (not clipped, as in VQFR).
    """
    x = restored.double()
    ref = reference.double()
    mu_r = ref.mean(dim=(2, 3), keepdim=True)
    sd_r = ref.std(dim=(2, 3), keepdim=True, correction=0)
    for _ in range(2):
        x = x - x.mean(dim=(2, 3), keepdim=True) + mu_r
        x = x / x.std(dim=(2, 3), keepdim=True, correction=0).clamp_min(1e-12) * sd_r
    return x
