"""Degradation operators: pure functions on one RGB image.

Every operator takes and returns a float32 tensor ``(3, H, W)``, RGB, values in ``[0, 1]`` (docs/style.md P5, P13) and
has no hidden randomness: the only random operator, :func:`add_gaussian_noise`, takes an explicit seed.
Conventions follow BasicSR's classic face degradations (``basicsr/data/degradations.py``) as used by GFPGAN,
CodeFormer and Pref-Restore, re-implemented in torch:

* blur kernels are normalised bivariate Gaussians on a ``K x K`` integer grid centred on 0 (x = column offset,
  y = row offset), covariance ``R diag(sx^2, sy^2) R^T`` with ``R`` the rotation by ``theta``;
* filtering is a correlation with reflect-101 borders (what ``cv2.filter2D`` does by default);
* resizing is bilinear with half-pixel centres and no antialiasing (``cv2.resize(..., INTER_LINEAR)``);
* JPEG is a real in-memory encode/decode (PIL, libjpeg) of the image rounded to 8 bits.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..io.image import uint8_to_unit, unit_to_uint8

# Luma weights used by torchvision's rgb_to_grayscale (and hence GFPGAN's colour jitter).
_GRAY_TV = (0.2989, 0.587, 0.114)
# ITU-R BT.601 luma weights used by cv2.COLOR_RGB2GRAY (GFPGAN's random-to-gray).
_GRAY_601 = (0.299, 0.587, 0.114)


def _check(img: torch.Tensor) -> None:
    if img.ndim != 3 or img.shape[0] != 3 or not img.is_floating_point():
        raise ValueError(f"expected a float (3, H, W) RGB tensor in [0, 1], got {img.dtype} {tuple(img.shape)}")


# ----------------------------------------------------------------------------------------------------------------
# Blur


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """Normalised bivariate Gaussian kernel -> float32 ``(size, size)``, sums to 1.

    ``sigma_x == sigma_y`` with ``theta = 0`` is the isotropic kernel. ``size`` must be odd.
    """
    if size % 2 != 1 or size < 1:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be > 0, got sigma_x={sigma_x}, sigma_y={sigma_y}")
    ax = torch.arange(size, dtype=torch.float64) - size // 2  # (K,)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")  # (K, K) each: row offset, column offset
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T  # (2, 2)
    inv = torch.linalg.inv(cov)
    grid = torch.stack([xx, yy], dim=-1)  # (K, K, 2) as (x, y)
    mahal = torch.einsum("hwi,ij,hwj->hw", grid, inv, grid)  # (K, K)
    kernel = torch.exp(-0.5 * mahal)
    return (kernel / kernel.sum()).float()


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each channel with ``kernel`` (K, K); reflect-101 border (replicate if the image is <= K/2)."""
    _check(img)
    k = kernel.shape[-1]
    pad = k // 2
    h, w = img.shape[-2:]
    mode = "reflect" if pad < min(h, w) else "replicate"
    x = F.pad(img[None], (pad, pad, pad, pad), mode=mode)  # (1, 3, H+2p, W+2p)
    weight = kernel.to(img.dtype).expand(3, 1, k, k)  # (3, 1, K, K), depthwise
    return F.conv2d(x, weight, groups=3)[0]  # (3, H, W)


# ----------------------------------------------------------------------------------------------------------------
# Resampling


def resize_bilinear(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size`` = (h, w), half-pixel centres, no antialiasing (= cv2 INTER_LINEAR)."""
    _check(img)
    if tuple(img.shape[-2:]) == tuple(size):
        return img.clone()
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=False)[0]


def downsampled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(h, w) after dividing by ``scale`` the way BasicSR does (``int(w // scale)``), at least 1 pixel."""
    return max(1, int(h // scale)), max(1, int(w // scale))


# ----------------------------------------------------------------------------------------------------------------
# Noise and compression


def add_gaussian_noise(img: torch.Tensor, sigma: float, seed: int, *, clip: bool = True) -> torch.Tensor:
    """Add i.i.d. colour Gaussian noise of std ``sigma`` (on the 0-255 scale) drawn from ``seed``."""
    _check(img)
    if sigma == 0:
        return img.clone()
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(img.shape, generator=gen, dtype=torch.float32) * (sigma / 255.0)  # (3, H, W)
    out = img + noise.to(img.dtype)
    return out.clamp(0.0, 1.0) if clip else out


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip at ``quality`` (1-100) through an in-memory encode with PIL (4:2:0 chroma)."""
    _check(img)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    buf = io.BytesIO()
    Image.fromarray(unit_to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        out = np.asarray(im.convert("RGB"))
    return uint8_to_unit(out).to(img.dtype)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit image and clip to [0, 1]."""
    return (img * 255.0).round().clamp(0, 255) / 255.0


# ----------------------------------------------------------------------------------------------------------------
# Colour (GFPGAN's LQ colour augmentations)


def shift_color(img: torch.Tensor, shift: tuple[float, float, float]) -> torch.Tensor:
    """Add a per-channel offset (on the [0, 1] scale) and clip."""
    _check(img)
    return (img + torch.tensor(shift, dtype=img.dtype)[:, None, None]).clamp(0.0, 1.0)


def grayscale(img: torch.Tensor, weights: tuple[float, float, float] = _GRAY_601) -> torch.Tensor:
    """Luma replicated to 3 channels -> (3, H, W)."""
    _check(img)
    y = (img * torch.tensor(weights, dtype=img.dtype)[:, None, None]).sum(0, keepdim=True)  # (1, H, W)
    return y.expand(3, -1, -1).clone()


def _blend(a: torch.Tensor, b: torch.Tensor | float, factor: float) -> torch.Tensor:
    return (factor * a + (1.0 - factor) * b).clamp(0.0, 1.0)


def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply by ``factor`` (torchvision semantics)."""
    return _blend(img, 0.0, factor)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the mean grey level (torchvision semantics)."""
    mean = grayscale(img, _GRAY_TV)[0].mean()
    return _blend(img, mean, factor)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the grey image (torchvision semantics)."""
    return _blend(img, grayscale(img, _GRAY_TV), factor)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` in [-0.5, 0.5] turns through HSV (torchvision semantics)."""
    _check(img)
    if not -0.5 <= shift <= 0.5:
        raise ValueError(f"hue shift must be in [-0.5, 0.5], got {shift}")
    r, g, b = img.unbind(0)
    maxc, _ = img.max(0)
    minc, _ = img.min(0)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    h = (h + shift) % 1.0
    # HSV -> RGB
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(img)
    for k, (rr, gg, bb) in enumerate(table):
        m = i == k
        out[0] = torch.where(m, rr, out[0])
        out[1] = torch.where(m, gg, out[1])
        out[2] = torch.where(m, bb, out[2])
    return out.clamp(0.0, 1.0)
