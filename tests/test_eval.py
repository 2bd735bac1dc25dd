"""`prefrestore eval`: run folder outputs, resume without redoing work, fake stochastic restorer for entropy,
score-only folders, unavailable metrics reported, method comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prefrestore.cli import main
from prefrestore.errors import UserError
from prefrestore.eval import runner
from prefrestore.eval.report import compare
from prefrestore.eval.runner import EvalConfig, evaluate
from prefrestore.eval.testset import SyntheticSetConfig, build_testset
from prefrestore.image import load_rgb, save_rgb

FAST = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


@pytest.fixture(scope="module")
def testset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for i in range(3):
        base = rng.random((8, 8, 3))
        img = np.kron(base, np.ones((8, 8, 1)))  # blocky 64x64 so degradations change it measurably
        save_rgb(root / "hq" / f"im{i}.png", (img * 255).astype(np.uint8))
    return build_testset(SyntheticSetConfig(hq_dir=str(root / "hq"), out=str(root / "set"), preset="gfpgan", size=64))


class FakeRestorer:
    """Seeded noise on top of the input: a stand-in for a stochastic model (api.load_restorer's contract)."""

    resolution = 32

    def __init__(self) -> None:
        self.calls = 0

    def restore(self, faces: list[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
        self.calls += 1
        rng = np.random.default_rng(seed)
        return [np.clip(f.astype(int) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8) for f in faces]


def _lines(p: Path) -> int:
    return len(p.read_text().splitlines())


def test_bicubic_run_outputs_and_resume(testset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no fetched metric weights
    monkeypatch.delenv("PREFRESTORE_METRIC_WEIGHTS", raising=False)
    cfg = EvalConfig(out=str(tmp_path / "run"), data=str(testset), model="bicubic", metrics=FAST, grid=2)
    res = evaluate(cfg)
    run = res.folder
    for f in (
        "run.json",
        "results.json",
        "results.csv",
        "results.md",
        "per_image.csv",
        "grid.png",
        "plots/per_image.png",
        "scores.jsonl",
        "timings.jsonl",
    ):
        assert (run / f).is_file(), f
    # bicubic at the LQ's own size is the LQ itself
    for n in ("im0", "im1", "im2"):
        assert np.array_equal(load_rgb(run / "restored" / f"{n}.png"), load_rgb(testset / "lq" / f"{n}.png"))
    summary = json.loads((run / "results.json").read_text())
    assert summary["metrics"]["psnr_y"]["n"] == 3 and 5 < summary["metrics"]["psnr_y"]["mean"] < 60
    assert summary["settings"]["seed"] == 0 and summary["settings"]["model"] == "bicubic"
    assert "restore_seconds_per_image" in summary["timing"]
    assert "weights fetch fid_inception" in summary["unavailable"]["fid"]  # no Inception weights here, and said so
    assert "kid" in summary["unavailable"]
    t, s = _lines(run / "timings.jsonl"), _lines(run / "scores.jsonl")
    evaluate(cfg)  # resume: nothing restored or scored again
    assert _lines(run / "timings.jsonl") == t and _lines(run / "scores.jsonl") == s
    (run / "restored" / "im1.png").unlink()
    evaluate(cfg)
    assert _lines(run / "timings.jsonl") == t + 1


def test_resume_refuses_other_settings(testset: Path, tmp_path: Path) -> None:
    evaluate(EvalConfig(out=str(tmp_path / "run"), data=str(testset), model="bicubic", metrics=FAST, grid=0))
    with pytest.raises(UserError, match="other settings"):
        evaluate(EvalConfig(out=str(tmp_path / "run"), data=str(testset), model="bicubic", seed=1, metrics=FAST))


def test_fake_restorer_samples_and_entropy(testset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRestorer()
    monkeypatch.setattr(runner, "build_restorer", lambda spec, **kw: fake)
    cfg = EvalConfig(
        out=str(tmp_path / "run"),
        data=str(testset),
        model="fake",
        samples=3,
        batch_size=2,
        metrics=("psnr_y",),
        fid=False,
        grid=0,
    )
    summary = evaluate(cfg).summary
    assert fake.calls == 6  # 3 samples x 2 batches
    assert summary["metrics"]["entropy_std"]["mean"] > 0 and summary["metrics"]["entropy_pair"]["mean"] > 0
    assert (tmp_path / "run" / "samples" / "2" / "im0.png").is_file()
    # the bicubic baseline is deterministic: zero entropy over seeds
    monkeypatch.undo()
    b = evaluate(
        EvalConfig(
            out=str(tmp_path / "bic"),
            data=str(testset),
            model="bicubic",
            samples=3,
            metrics=("psnr_y",),
            fid=False,
            grid=0,
        )
    ).summary
    assert b["metrics"]["entropy_std"]["mean"] == 0.0 and b["metrics"]["entropy_pair"]["mean"] == 0.0


def test_score_restored_folder_unavailable_and_compare(testset: Path, tmp_path: Path) -> None:
    perfect = evaluate(
        EvalConfig(
            out=str(tmp_path / "gt_run"),
            restored=str(testset / "gt"),
            gt=str(testset / "gt"),
            name="oracle",
            metrics=(*FAST, "niqe"),
            weights_dir=str(tmp_path / "none"),
            grid=0,
        )
    ).summary
    assert perfect["metrics"]["psnr_y"]["inf"] == 3
    assert "niqe_pris_params.npz" in perfect["unavailable"]["niqe"]
    evaluate(EvalConfig(out=str(tmp_path / "bic"), data=str(testset), model="bicubic", metrics=FAST, grid=0))
    text = compare([str(tmp_path / "gt_run"), str(tmp_path / "bic")], str(tmp_path / "cmp"))
    assert "| oracle |" in text and "| bicubic |" in text and "**1.0000**" in text  # best SSIM in bold
    for f in ("compare.md", "compare.csv", "compare.json", "compare.png"):
        assert (tmp_path / "cmp" / f).is_file()


def test_lq_only_identity_against_input(tmp_path: Path) -> None:
    cbook = pytest.importorskip("matplotlib.cbook")
    pytest.importorskip("dlib")
    from PIL import Image

    face = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").resize((256, 300)))
    save_rgb(tmp_path / "wild" / "grace.png", face[22:278])
    s = evaluate(
        EvalConfig(
            out=str(tmp_path / "run"),
            data=str(tmp_path / "wild"),
            model="bicubic",
            metrics=("psnr_y", "lmd"),
            landmarks="dlib",
            grid=1,
        )
    ).summary
    assert s["benchmark"]["kind"] == "lq_only" and "psnr_y" not in s["metrics"]
    assert s["metrics"]["lmd"]["mean"] == 0.0  # bicubic of the LQ at its own size is the LQ


def test_cli_eval_and_compare(testset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "cli"
    assert (
        main(
            [
                "eval",
                "--data",
                str(testset),
                "--model",
                "bicubic",
                "-o",
                str(run),
                "--metrics",
                "psnr_y,ssim_y",
                "--no-fid",
                "--grid",
                "0",
            ]
        )
        == 0
    )
    assert "| bicubic |" in capsys.readouterr().out
    assert main(["eval", "--compare", str(run), str(run)]) == 0
    assert "Comparison" in capsys.readouterr().out
    assert main(["eval", "--data", str(testset), "-o", str(tmp_path / "x")]) == 2  # neither --model nor --restored
    assert (
        main(["eval", "--data", str(testset), "--model", "bicubic", "-o", str(tmp_path / "y"), "--metrics", "psnr"])
        == 2
    )


def test_layouts(tmp_path: Path) -> None:
    from prefrestore.eval.layouts import discover

    img = np.zeros((16, 16, 3), np.uint8)
    for n in ("a", "b"):
        save_rgb(tmp_path / "celeba" / "celeba_512_validation_lq" / f"{n}.png", img)
        save_rgb(tmp_path / "celeba" / "celeba_512_validation" / f"{n}.png", img)
        save_rgb(tmp_path / "gfpgan" / f"{n}_00.png", img)  # GFPGAN's restored_faces naming
    b = discover(str(tmp_path / "celeba"))
    assert b.kind == "paired" and [it.name for it in b.items] == ["a", "b"]
    r = discover(None, restored=str(tmp_path / "gfpgan"), gt=str(tmp_path / "celeba" / "celeba_512_validation"))
    assert r.kind == "restored" and r.items[0].restored.name == "a_00.png"
    save_rgb(tmp_path / "celeba" / "celeba_512_validation_lq" / "c.png", img)
    with pytest.raises(UserError, match="no GT for 1 of 3"):
        discover(str(tmp_path / "celeba"))
    assert discover(None, lq=str(tmp_path / "gfpgan")).kind == "lq_only"


@pytest.mark.slow
def test_prefrestore_model_through_api(testset: Path, tmp_path: Path) -> None:
    """The real model stack (random-weight tiny preset) behind the harness: the api contract holds end to end."""
    s = evaluate(
        EvalConfig(
            out=str(tmp_path / "tiny"),
            data=str(testset),
            model="tiny",
            steps=2,
            limit=1,
            samples=2,
            metrics=FAST,
            fid=False,
            grid=1,
        )
    ).summary
    assert s["metrics"]["psnr_y"]["n"] == 1 and s["metrics"]["entropy_std"]["n"] == 1
    assert load_rgb(tmp_path / "tiny" / "restored" / "im0.png").shape == (64, 64, 3)


def test_fid_plumbing_with_a_stand_in_extractor(
    testset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FID through the harness (features cached, reference stats saved) with a tiny stand-in for InceptionV3."""
    import torch

    from prefrestore.metrics import GaussianStats, frechet_distance, kid_from_features

    calls = []

    def extractor(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 6): channel means and stds
        calls.append(x.shape[0])
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)

    monkeypatch.setattr(runner.fidlib, "load_inception", lambda **kw: extractor)
    cfg = EvalConfig(out=str(tmp_path / "run"), data=str(testset), model="bicubic", metrics=("psnr_y",), grid=0)
    fid = evaluate(cfg).summary["set_metrics"]["fid"]
    feats = tmp_path / "run" / "features"
    ref = GaussianStats.load(feats / "reference_stats.npz")
    with np.load(feats / "restored.npz") as d:
        own = d["features"]
    with np.load(feats / "reference.npz") as d:
        ref_feats = d["features"]
    assert fid == pytest.approx(frechet_distance(own.mean(0), np.cov(own, rowvar=False), ref.mu, ref.sigma))
    n = len(calls)
    evaluate(cfg)  # cached features: the extractor is not called again
    assert len(calls) == n
    again = evaluate(
        EvalConfig(
            out=str(tmp_path / "run2"),
            data=str(testset),
            model="bicubic",
            metrics=("psnr_y",),
            fid_stats=str(feats / "reference_stats.npz"),
            grid=0,
        )
    ).summary["set_metrics"]["fid"]
    assert again == pytest.approx(fid)
    assert evaluate(cfg).summary["set_metrics"]["kid"] == pytest.approx(kid_from_features(own, ref_feats)[0])


def test_compare_by_degradation_groups_per_image_metrics(testset: Path, tmp_path: Path) -> None:
    import csv
    import json

    from prefrestore.errors import UserError

    evaluate(EvalConfig(out=str(tmp_path / "bic"), data=str(testset), model="bicubic", metrics=FAST, grid=0))
    records = [json.loads(line) for line in (testset / "params.jsonl").read_text().splitlines()]
    with (tmp_path / "bic" / "per_image.csv").open() as f:
        psnr = {r["name"]: float(r["psnr_y"]) for r in csv.DictReader(f)}
    text = compare([str(tmp_path / "bic")], None, by="scale", bins=1)
    assert "## By scale" in text and "PSNR-Y" in text
    row = next(line for line in text.splitlines() if line.startswith("| ") and "| 3 |" in line)
    assert row.split("|")[-2].strip() == f"{np.mean(list(psnr.values())):.2f}"  # one bin: the whole-set mean
    # groups by value for a non-numeric parameter; every image lands in exactly one group
    text = compare([str(tmp_path / "bic")], None, by="kernel")
    kernels = sorted({r["params"]["kernel"] for r in records})
    section = text.split("## By kernel")[1].split("\n\n")[2]  # the first metric's table
    counts = {line.split("|")[1].strip(): int(line.split("|")[2]) for line in section.splitlines()[2:]}
    assert sorted(counts) == kernels and sum(counts.values()) == len(records)
    constant = compare([str(tmp_path / "bic")], None, by="version").split("## By version")[1].split("\n\n")[2]
    assert constant.splitlines()[2:] == [f"| 1-1 | {len(records)} | {np.mean(list(psnr.values())):.2f} |"]
    with pytest.raises(UserError, match="choose from"):
        compare([str(tmp_path / "bic")], None, by="no_such_param")
    evaluate(EvalConfig(out=str(tmp_path / "gt_only"), restored=str(testset / "gt"), gt=str(testset / "gt"),
                        metrics=FAST, grid=0))
    with pytest.raises(UserError, match="params.jsonl"):
        compare([str(tmp_path / "gt_only")], None, by="scale")


def test_realesrgan_baseline_is_x4_then_area_back():
    """An x4 network that repeats each pixel 4x4 (nearest) makes the baseline the identity: the area reduction
    averages exactly the 16 copies; a real network's output is reduced the same way."""
    import torch

    from prefrestore.eval.restorers import RealESRGANRestorer
    from prefrestore.realesrgan import RealESRGANUpsampler

    class Nearest4(torch.nn.Module):
        config = type("C", (), {"scale": 4})()

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    faces = [np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8) for i in range(2)]
    r = RealESRGANRestorer(resolution=24, upsampler=RealESRGANUpsampler(Nearest4(), tile=0, progress=False))
    out = r.restore(faces)
    assert all(o.shape == (24, 24, 3) and o.dtype == np.uint8 for o in out)
    assert all(np.array_equal(o, f) for o, f in zip(out, faces, strict=True))
