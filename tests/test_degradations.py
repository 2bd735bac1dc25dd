"""Degradations: deterministic under a seed, replayable from recorded params, faithful to the BasicSR ops."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from prefrestore.degradations import (
    PRESETS,
    DegradationConfig,
    DegradationParams,
    DegradationRecord,
    apply,
    degrade,
    ops,
    preset,
    sample_params,
)
from prefrestore.io.image import uint8_to_unit


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    """A real face photo (skimage astronaut), 128x128, float32 (3, H, W) in [0, 1]."""
    skdata = pytest.importorskip("skimage.data")
    img = cv2.resize(skdata.astronaut()[40:296, 120:376], (128, 128), interpolation=cv2.INTER_AREA)
    return uint8_to_unit(img)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_same_seed_same_lq_and_params(face: torch.Tensor, name: str) -> None:
    cfg = preset(name)
    lq1, p1 = degrade(face, cfg, torch.Generator().manual_seed(123))
    lq2, p2 = degrade(face, cfg, torch.Generator().manual_seed(123))
    assert p1 == p2
    assert torch.equal(lq1, lq2)
    _, p3 = degrade(face, cfg, torch.Generator().manual_seed(124))
    assert p3 != p1


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_replay_from_json_params(face: torch.Tensor, name: str) -> None:
    cfg = preset(name)
    g = torch.Generator().manual_seed(7)
    for _ in range(4):
        lq, params = degrade(face, cfg, g)
        line = DegradationRecord(name="x", seed=7, preset=name, params=params).to_json()
        rec = DegradationRecord.from_json(line)
        assert rec.params == params
        assert torch.equal(apply(face, rec.params), lq)
        assert lq.shape == face.shape and lq.dtype == torch.float32
        assert float(lq.min()) >= 0.0 and float(lq.max()) <= 1.0


def test_params_are_plain_json() -> None:
    cfg = preset("gfpgan")
    g = torch.Generator().manual_seed(0)
    seen_jitter = False
    for _ in range(40):
        p = sample_params(cfg, g)
        d = json.loads(json.dumps(p.to_dict()))
        assert DegradationParams.from_dict(d) == p
        seen_jitter |= p.color_jitter is not None
    assert seen_jitter  # p = 0.3, 40 draws


def test_sampled_ranges_follow_config() -> None:
    cfg = preset("paper")
    g = torch.Generator().manual_seed(1)
    draws = [sample_params(cfg, g) for _ in range(400)]
    assert all(1.0 <= p.sigma_x <= 15.0 and 1.0 <= p.sigma_y <= 15.0 for p in draws)
    assert all(1.0 <= p.scale <= 30.0 and 0.0 <= p.noise_sigma <= 20.0 for p in draws)
    assert all(30 <= p.jpeg_quality <= 90 for p in draws)
    assert all(-math.pi <= p.theta <= math.pi for p in draws)
    iso = sum(p.kernel == "iso" for p in draws) / len(draws)
    assert 0.4 < iso < 0.6
    assert all(p.sigma_x == p.sigma_y and p.theta == 0.0 for p in draws if p.kernel == "iso")


def test_kernel_matches_basicsr_formula() -> None:
    # BasicSR bivariate_Gaussian: exp(-0.5 * [x y] Sigma^-1 [x y]^T), Sigma = R diag(sx^2, sy^2) R^T, normalised.
    k = ops.gaussian_kernel(41, 3.0, 1.5, 0.7).double()
    ax = np.arange(-20.0, 21.0)
    xx, yy = np.meshgrid(ax, ax)
    rot = np.array([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]])
    inv = np.linalg.inv(rot @ np.diag([9.0, 2.25]) @ rot.T)
    grid = np.stack([xx, yy], -1)
    ref = np.exp(-0.5 * np.einsum("hwi,ij,hwj->hw", grid, inv, grid))
    ref /= ref.sum()
    np.testing.assert_allclose(k.numpy(), ref, atol=1e-7)
    assert abs(float(k.sum()) - 1) < 1e-5


def test_blur_matches_cv2_filter2d(face: torch.Tensor) -> None:
    kernel = ops.gaussian_kernel(41, 4.0, 2.0, 0.3)
    ours = ops.blur(face, kernel)
    hwc = face.permute(1, 2, 0).numpy()
    ref = cv2.filter2D(hwc, -1, kernel.numpy())  # correlation, BORDER_REFLECT_101
    np.testing.assert_allclose(ours.permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_resize_matches_cv2_linear(face: torch.Tensor) -> None:
    for h, w in [(37, 41), (200, 160)]:
        ours = ops.resize_bilinear(face, (h, w)).permute(1, 2, 0).numpy()
        ref = cv2.resize(face.permute(1, 2, 0).numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_noise_and_jpeg_ops(face: torch.Tensor) -> None:
    a = ops.add_gaussian_noise(face, 10.0, seed=5, clip=False)
    assert torch.equal(a, ops.add_gaussian_noise(face, 10.0, seed=5, clip=False))
    assert abs(float((a - face).std()) - 10 / 255) < 2e-3
    err = [float((ops.jpeg(face, q) - face).abs().mean()) for q in (10, 50, 95)]
    assert err[0] > err[1] > err[2] > 0


def test_colour_ops() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 16, 16, generator=g)
    torch.testing.assert_close(ops.adjust_hue(img, 0.0), img, atol=1e-5, rtol=0)
    torch.testing.assert_close(ops.adjust_hue(ops.adjust_hue(img, 0.2), -0.2), img, atol=1e-4, rtol=0)
    torch.testing.assert_close(ops.adjust_brightness(img, 1.0), img)
    gray = ops.adjust_saturation(img, 0.0)
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])
    red = torch.zeros(3, 1, 1)
    red[0] = 1.0
    assert torch.allclose(ops.adjust_hue(red, 1 / 3).flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_stronger_preset_is_further_from_hq(face: torch.Tensor) -> None:
    mild = DegradationConfig(blur_sigma=(1.0, 1.0), downsample=(1.0, 1.0), noise=(0.0, 0.0), jpeg=(95.0, 95.0))
    strong = DegradationConfig(blur_sigma=(8.0, 8.0), downsample=(8.0, 8.0), noise=(20.0, 20.0), jpeg=(30.0, 30.0))
    e_mild = float((degrade(face, mild, torch.Generator().manual_seed(0))[0] - face).abs().mean())
    e_strong = float((degrade(face, strong, torch.Generator().manual_seed(0))[0] - face).abs().mean())
    assert e_mild < e_strong


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        DegradationConfig(kernel_size=40)
    with pytest.raises(ValueError, match="downsample"):
        DegradationConfig(downsample=(4.0, 2.0))
    with pytest.raises(ValueError, match="gray_prob"):
        DegradationConfig(gray_prob=1.5)
    with pytest.raises(ValueError, match="unknown degradation preset"):
        preset("realesrgan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown degradation param keys"):
        DegradationParams.from_dict({**sample_params(preset("paper"), torch.Generator()).to_dict(), "foo": 1})


def test_scaled_preset_matches_tiny_training_config() -> None:
    from prefrestore.degradations import scaled

    s = scaled(preset("paper"), 128 / 512)
    assert s.kernel_size == 11 and s.blur_sigma == (0.25, 3.75) and s.downsample == (1.0, 7.5)
    assert s.noise == preset("paper").noise and s.jpeg == preset("paper").jpeg
    g = scaled(preset("gfpgan"), 0.5)
    assert g.kernel_size == 21 and g.downsample == (0.8, 4.0)
