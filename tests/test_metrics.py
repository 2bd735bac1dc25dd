"""Metric values against known answers: scikit-image, hand computations and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefrestore.metrics import (
    fid_from_features,
    frechet_distance,
    gaussian_stats,
    match_mean_std,
    mean_pairwise_distance,
    pixel_std,
    psnr,
    ssim,
)
from prefrestore.metrics.pixel import rgb_to_y

skimage = pytest.importorskip("skimage")
from skimage.color import rgb2ycbcr  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo and a noisy, shifted copy, both quantised to 8 bits: (1, 3, 96, 80) in [0, 1]."""
    img = skimage.data.astronaut()[100:196, 180:260]
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(np.float64) + rng.normal(0, 12, img.shape) + 5, 0, 255).round().astype(np.uint8)
    to = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    return to(noisy), to(img)


def test_psnr_matches_skimage(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = pair
    ref_rgb = peak_signal_noise_ratio(_u8(y), _u8(x), data_range=255)
    assert float(psnr(x, y, space="rgb")) == pytest.approx(ref_rgb, abs=1e-6)
    ya, yb = rgb2ycbcr(_u8(x))[..., 0], rgb2ycbcr(_u8(y))[..., 0]  # skimage: 16 + 65.481 R + ... in [16, 235]
    ref_y = peak_signal_noise_ratio(yb, ya, data_range=255)
    assert float(psnr(x, y, space="y")) == pytest.approx(ref_y, abs=1e-6)


def test_ssim_matches_skimage(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = pair
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    ref_rgb = structural_similarity(_u8(x).astype(np.float64), _u8(y).astype(np.float64), channel_axis=-1, **kw)
    assert float(ssim(x, y, space="rgb")) == pytest.approx(ref_rgb, abs=1e-6)
    ya, yb = rgb2ycbcr(_u8(x))[..., 0], rgb2ycbcr(_u8(y))[..., 0]
    assert float(ssim(x, y, space="y")) == pytest.approx(structural_similarity(ya, yb, **kw), abs=1e-6)


def test_psnr_ssim_by_hand() -> None:
    a = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    b = torch.full((1, 3, 16, 16), 0.5 + 10 / 255, dtype=torch.float64)
    # RGB: every pixel differs by 10 levels -> MSE = 100 -> PSNR = 10 log10(255^2 / 100).
    assert float(psnr(a, b, space="rgb")) == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    # Y: a grey shift of 10 levels moves Y by 10 * (65.481 + 128.553 + 24.966) / 255 = 8.588...
    dy = 10 * (65.481 + 128.553 + 24.966) / 255
    assert float(psnr(a, b, space="y")) == pytest.approx(20 * math.log10(255 / dy), abs=1e-9)
    # Flat images: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) (the structure term is C2 / C2 = 1).
    c1 = (0.01 * 255) ** 2
    mu_a, mu_b = 127.5, 137.5
    expected = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    assert float(ssim(a, b, space="rgb")) == pytest.approx(expected, abs=1e-6)  # float32 filtering
    assert math.isinf(float(psnr(a, a))) and float(ssim(a, a)) == pytest.approx(1.0)
    assert float(rgb_to_y(torch.ones(1, 3, 2, 2)).max() * 255) == pytest.approx(235.0)


def test_batched_equals_single(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = pair
    xb, yb = torch.cat([x, y, x]), torch.cat([y, y, x])
    p, s = psnr(xb, yb), ssim(xb, yb)
    assert p.shape == (3,) and float(p[0]) == pytest.approx(float(psnr(x, y)))
    assert math.isinf(float(p[1])) and float(s[2]) == pytest.approx(1.0)
    assert float(s[0]) == pytest.approx(float(ssim(x, y)))


def test_match_mean_std() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 3, 20, 20, generator=g)
    x = ref * 0.5 + 0.2
    fixed = match_mean_std(x, ref)
    torch.testing.assert_close(fixed, ref.double(), atol=1e-6, rtol=0)


def test_frechet_closed_forms() -> None:
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 with variances s^2.
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(
        (1 - 3) ** 2 + (2 - 3) ** 2
    )
    # Diagonal: sum over dimensions of the 1-D formula.
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 2.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 4.0, 1.0])
    expected = float(((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum())
    assert frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(expected, abs=1e-12)
    # Identical Gaussians: 0.
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    s = a @ a.T
    assert frechet_distance(m1[:2].repeat(3), s, m1[:2].repeat(3), s) == pytest.approx(0.0, abs=1e-9)


def test_frechet_matches_scipy_sqrtm() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)


def test_fid_from_features_and_stats_roundtrip(tmp_path) -> None:
    rng = np.random.default_rng(2)
    f = rng.normal(size=(500, 4))
    st = gaussian_stats(f)
    np.testing.assert_allclose(st.sigma, np.cov(f, rowvar=False))
    st.save(tmp_path / "s.npz")
    from prefrestore.metrics import GaussianStats

    back = GaussianStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.mu, st.mu)
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-9)
    assert fid_from_features(f, f + 1.0) == pytest.approx(4.0, abs=1e-9)  # a shift of 1 in 4 dims


def test_entropy_zero_for_identical_samples() -> None:
    g = torch.Generator().manual_seed(0)
    one = torch.rand(1, 3, 8, 8, generator=g)
    same = one.repeat(4, 1, 1, 1)
    assert pixel_std(same) == 0.0
    assert mean_pairwise_distance(same) == 0.0
    a, b = torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)
    two = torch.cat([a, b])
    assert pixel_std(two) == pytest.approx(0.5)  # population std of {0, 1}
    assert mean_pairwise_distance(two) == pytest.approx(1.0)
    three = torch.cat([a, a, b])
    assert mean_pairwise_distance(three) == pytest.approx(2 / 3)  # pairs: 0, 1, 1
