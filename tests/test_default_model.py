"""The model bundled in the package (src/prefrestore/assets/models/default, made by tools/train_small_model.sh)."""

import json

import numpy as np
import pytest
import torch

from prefrestore import hub
from prefrestore.checkpoints import from_pretrained

# PSNR-Y (dB) of the bundled model on the held-out astronaut face below (seed 0, this repository's CPU torch build);
# recorded when the model was exported. A retrained model must update it.
GOLDEN_PSNR_Y = 22.81  # the LQ itself: 21.78 dB (stage 3d, bundled 2026-12-01 to 12-07: 22.85; 3c: 22.82; 3b: 22.70;
# the tiny model bundled before 2026-12-01: 22.52; stage 4 WiSE-FT, bundled 2026-12-07: 22.81; stage 4b's average
# of steps 100-300 alone: 22.71; stage 4b's average of steps 100-500 with the flip ensemble, bundled 2026-12-08: 22.82).
# Bundled 2026-12-08 (later): that average mixed half and half with stage 4e's (LPIPS on AlexNet and VGG16), flip
# ensemble on.


@pytest.fixture(scope="module")
def bundled():
    d = hub.bundled_model_dir()
    assert d is not None, "no model in src/prefrestore/assets/models/default: run tools/train_small_model.sh"
    return d


def test_bundled_model_folder_and_sampling_settings(bundled):
    cfg = json.loads((bundled / "config.json").read_text())["model"]
    assert cfg["name"] == "default" and cfg["resolution"] == 128
    assert cfg["sampling"] == {
        "steps": 4,
        "guidance_scale": 1.0,
        "solver": "dpm++2m",
        "top_k": 1200,
        "top_p": 0.95,
        "start_sigma": 0.02,
        "numerics": "default",
        "flip_ensemble": True,
    }
    assert cfg["autoencoder"]["lq_skip_levels"] == 2  # the small preset with its LQ skip (models/lq_skip.py)
    assert (bundled / "README.md").is_file()  # the model card
    model = from_pretrained(bundled)  # strict: every tensor present and of the right shape
    assert model.dtype == torch.float32  # stored float16, loaded into the float32 model
    assert hub.resolve("default") == bundled or hub.paper_model_dir() is not None


@pytest.fixture(scope="module")
def heldout_face(one_thread, detector, astronaut):
    """The astronaut (held out of training), aligned to 128 px, and a fixed paper-style degradation of it."""
    from prefrestore.degradations import apply as degrade_with
    from prefrestore.degradations import preset, sample_params, scaled
    from prefrestore.faces.align import align

    gt = align(astronaut, detector.detect(astronaut)[0], 128).crop  # uint8 (128, 128, 3) RGB
    params = sample_params(scaled(preset("paper"), 128 / 512), torch.Generator().manual_seed(3))
    x = torch.from_numpy(gt).permute(2, 0, 1).float() / 255
    lq = (degrade_with(x, params).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return gt, lq


def test_bundled_model_restores_a_heldout_face(bundled, heldout_face):
    from prefrestore.metrics.pixel import psnr
    from prefrestore.restore.api import load_restorer

    gt, lq = heldout_face
    restorer = load_restorer(str(bundled))
    out = restorer.restore([lq], seed=0)[0]
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8

    def t(a):
        return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255

    p = float(psnr(t(out), t(gt)))
    assert p > float(psnr(t(lq), t(gt))) + 0.3, p  # closer to the truth than its input (random tiny weights: 12.5 dB)
    assert abs(p - GOLDEN_PSNR_Y) < 0.1, p
    again = restorer.restore([lq], seed=0)[0]
    assert np.array_equal(out, again)  # deterministic at a fixed seed
