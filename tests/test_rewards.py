"""Rewards: the protocol and composite, and the offline rewards on real photos (dlib, MTCNN, PSNR/SSIM, BRISQUE)."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from prefrestore.io.image import to_model
from prefrestore.rewards import REWARD_NAMES, CompositeReward, Reward, RewardInputs, build_reward

S = 128


def _face(name: str) -> np.ndarray:
    """A real face, roughly centred, uint8 (128, 128, 3): skimage's astronaut or matplotlib's Grace Hopper."""
    if name == "astronaut":
        from skimage import data

        img = data.astronaut()[20:320, 80:380]
    else:
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            img = np.asarray(Image.open(f).convert("RGB"))[40:440, 60:460]
    return cv2.resize(np.ascontiguousarray(img), (S, S), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def faces():
    ast, grace = _face("astronaut"), _face("grace")
    return {"ast": ast, "ast_blur": cv2.GaussianBlur(ast, (0, 0), 1.5), "grace": grace}


class Const:
    def __init__(self, name, values):
        self.name, self.values = name, values

    def __call__(self, batch):
        return torch.tensor(self.values, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# Protocol and composite


def test_composite_is_the_weighted_sum_and_keeps_every_component():
    x = torch.zeros(3, 3, 8, 8)
    r = CompositeReward({"a": Const("a", [1.0, 2.0, 3.0]), "b": Const("b", [0.0, 1.0, -1.0])}, {"a": 0.5, "b": 2.0})
    total, parts = r(x, x, x)
    torch.testing.assert_close(total, torch.tensor([0.5, 3.0, -0.5]))
    assert set(parts) == {"a", "b"} and torch.equal(parts["b"], torch.tensor([0.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="same rewards"):
        CompositeReward({"a": Const("a", [1.0])}, {"b": 1.0})
    with pytest.raises(TypeError, match="protocol"):
        CompositeReward({"a": object()}, {"a": 1.0})
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward("aesthetic")
    assert set(REWARD_NAMES) >= {
        "pickscore",
        "hpsv2",
        "clipscore",
        "lmd",
        "arcface",
        "lpips",
        "identity_dlib",
        "lmd_mtcnn",
        "psnr",
        "ssim",
        "brisque",
    }


def test_reward_inputs_convert_once_and_validate():
    x = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    b = RewardInputs(restored=x, lq=x)
    assert b.unit() is b.unit()  # cached
    assert float(b.unit().min()) == 0.0 and float(b.unit().max()) == 1.0
    assert b.uint8()[0].dtype == np.uint8 and b.uint8()[0].shape == (4, 4, 3)
    assert b.reference() == "lq"
    with pytest.raises(ValueError, match="ground truth"):
        b.require_hq("psnr")
    with pytest.raises(ValueError, match="captions"):
        b.require_prompts("pickscore")
    with pytest.raises(ValueError, match="shape"):
        RewardInputs(restored=x, lq=x[:1])


def test_psnr_and_ssim_rewards_equal_the_metrics(faces):
    from prefrestore.metrics.pixel import psnr, ssim

    hq = to_model([faces["ast"], faces["ast"]])
    restored = to_model([faces["ast_blur"], faces["ast"]])
    b = RewardInputs(restored=restored, lq=restored, hq=hq)
    p = build_reward("psnr")(b)
    torch.testing.assert_close(p[0], psnr(b.unit(), b.unit("hq"))[0].float())
    assert p[1] == 60.0  # identical images: capped, not inf
    s = build_reward("ssim")(b)
    torch.testing.assert_close(s, ssim(b.unit(), b.unit("hq")).float())
    assert s[1] == pytest.approx(1.0) and s[0] < 1.0


# ----------------------------------------------------------------------------------------------------------------
# Offline face rewards on real photos


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="needs dlib (prefrestore[identity])")
def test_dlib_identity_reward_prefers_the_same_person(faces):
    reward = build_reward("identity_dlib")
    assert isinstance(reward, Reward)
    ref = to_model([faces["ast"]] * 3)
    restored = to_model([faces["ast"], faces["ast_blur"], faces["grace"]])
    scores = reward(RewardInputs(restored=restored, lq=restored, hq=ref))
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert scores[0] > scores[1] > scores[2]
    # without a GT the reference is the LQ input
    no_gt = reward(RewardInputs(restored=restored, lq=ref))
    torch.testing.assert_close(no_gt, scores)


def test_mtcnn_landmark_reward_mapping_and_failure(faces):
    from prefrestore.rewards.landmarks import landmark_reward

    assert landmark_reward(0.0) == 1.0 and landmark_reward(20.0) == 0.5 and landmark_reward(80.0) == pytest.approx(0.2)
    reward = build_reward("lmd_mtcnn")
    ref = to_model([faces["ast"]] * 3)
    blank = np.full((S, S, 3), 128, np.uint8)  # no face: the paper's failure score 0.01
    restored = to_model(
        [faces["ast"], cv2.warpAffine(faces["ast"], np.float32([[1, 0, 3], [0, 1, 2]]), (S, S)), blank]
    )
    scores = reward(RewardInputs(restored=restored, lq=restored, hq=ref))
    assert scores[0] == pytest.approx(1.0)
    # a (3, 2) px shift at 128 px is a ~14.4 px shift at the 512 px reference scale: 1 / (1 + 14.4 / 20) ~ 0.58
    assert 0.45 < scores[1] < 0.75
    assert scores[2] == pytest.approx(0.01)


# ----------------------------------------------------------------------------------------------------------------
# BRISQUE


def _brisque_available() -> bool:
    from prefrestore.metrics.weights import MetricUnavailable
    from prefrestore.rewards.brisque import find_model_files

    try:
        find_model_files()
        return True
    except MetricUnavailable:
        return False


@pytest.mark.skipif(not _brisque_available(), reason="BRISQUE model files missing (apt-get install opencv-data)")
def test_brisque_matches_opencv_quality_brisque():
    from skimage import data

    from prefrestore.rewards.brisque import brisque

    ast = data.astronaut()
    small = cv2.resize(ast, (128, 128), interpolation=cv2.INTER_AREA)
    scores = brisque([ast, cv2.GaussianBlur(ast, (0, 0), 3), small])
    # reference values from opencv-contrib-python-headless 5.0.0.93 cv2.quality.QualityBRISQUE_compute on the
    # same arrays (BGR) with Debian opencv-data 4.6.0's LIVE model
    np.testing.assert_allclose(scores, [0.4951, 67.9128, 15.4560], atol=0.02)
    r = build_reward("brisque")(RewardInputs(restored=to_model([small]), lq=to_model([small])))
    assert r.item() == pytest.approx(-0.15456, abs=2e-4)


def test_brisque_aggd_fit_recovers_a_gaussian():
    from prefrestore.rewards.brisque import aggd_fit

    x = np.random.default_rng(0).normal(0, 0.5, 200_000)
    shape, left, right = aggd_fit(x)
    assert shape == pytest.approx(2.0, abs=0.05)  # a Gaussian is a GGD of shape 2
    assert left == pytest.approx(0.5, rel=0.02) and right == pytest.approx(0.5, rel=0.02)


def test_brisque_missing_files_raise_naming_the_file(tmp_path, monkeypatch):
    from prefrestore.metrics.weights import MetricUnavailable
    from prefrestore.rewards import brisque as mod

    monkeypatch.setattr(mod, "DEBIAN_DIR", Path(tmp_path / "none"))
    monkeypatch.setenv("PREFRESTORE_METRIC_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MetricUnavailable, match="brisque_model_live.yml"):
        mod.find_model_files()
