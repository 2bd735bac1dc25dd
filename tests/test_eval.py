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
from prefrestore.io.image import load_rgb, save_rgb
from prefrestore.restore.loaded import Pipeline
from prefrestore.restore.pipeline import PipelineConfig

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
    monkeypatch.setattr(
        runner, "build_pipeline", lambda spec, **kw: Pipeline(fake, config=PipelineConfig(batch_size=spec.batch_size))
    )
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
    evaluate(
        EvalConfig(
            out=str(tmp_path / "gt_only"), restored=str(testset / "gt"), gt=str(testset / "gt"), metrics=FAST, grid=0
        )
    )
    with pytest.raises(UserError, match="params.jsonl"):
        compare([str(tmp_path / "gt_only")], None, by="scale")


def test_cluster_bootstrap_resamples_whole_faces():
    """Two faces: A's three images differ by +1, B's one by -1. Resampling faces draws AA (mean +1), BB (-1) or a
    mix (+0.5, three images of A to one of B) with probabilities 1/4, 1/4, 1/2, so the 95% interval is [-1, +1];
    resampling images instead would almost never draw all four from B."""
    from prefrestore.eval.report import cluster_bootstrap

    d = np.array([1.0, 1.0, 1.0, -1.0])
    mean, low, high = cluster_bootstrap(d, ["a", "a", "a", "b"], resamples=4000, seed=1)
    assert mean == pytest.approx(0.5) and low == -1.0 and high == 1.0
    mean, low, high = cluster_bootstrap(d, ["a", "b", "c", "d"], resamples=4000, seed=1)  # one image per group
    assert mean == pytest.approx(0.5) and low == -0.5 and high == 1.0
    assert cluster_bootstrap(np.full(5, 0.25), list("abcde")) == (0.25, 0.25, 0.25)  # no spread, no interval
    with pytest.raises(ValueError, match="one cluster per difference"):
        cluster_bootstrap(d, ["a"])


def test_compare_paired_differences_from_the_first_run(
    testset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose PSNR-Y is the bicubic's + 0.5 on every image and whose SSIM-Y is 0.01 lower: the paired table says
    +0.5 [+0.5, +0.5] better and -0.01 worse, with the images grouped by the face they were degraded from."""
    import csv
    import shutil

    evaluate(EvalConfig(out=str(tmp_path / "bic"), data=str(testset), model="bicubic", metrics=FAST, grid=0))
    shutil.copytree(tmp_path / "bic", tmp_path / "better")
    with (tmp_path / "bic" / "per_image.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["psnr_y"] = str(float(r["psnr_y"]) + 0.5)
        r["ssim_y"] = str(float(r["ssim_y"]) - 0.01)
    with (tmp_path / "better" / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = json.loads((tmp_path / "better" / "results.json").read_text())
    summary["method"] = "shifted"
    (tmp_path / "better" / "results.json").write_text(json.dumps(summary))

    assert (
        main(
            [
                "eval",
                "--compare",
                str(tmp_path / "bic"),
                str(tmp_path / "better"),
                "--paired",
                "-o",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "## Paired differences from bicubic" in text and "bootstrap draws of the source faces" in text
    row = [line for line in text.split("## Paired")[1].splitlines() if line.startswith("| shifted | ")][0]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    faces = len({json.loads(line)["source"] for line in (testset / "params.jsonl").read_text().splitlines()})
    assert cells[1] == f"{len(rows)} ({faces})"
    pairs = json.loads((tmp_path / "cmp" / "compare.json").read_text())["paired"]
    by_metric = {r["metric"]: r for r in pairs["rows"]}
    psnr, ssim, rgb = by_metric["psnr_y"], by_metric["ssim_y"], by_metric["psnr_rgb"]
    assert psnr["mean"] == pytest.approx(0.5) and psnr["low"] == pytest.approx(0.5) and psnr["verdict"] == "better"
    assert ssim["mean"] == pytest.approx(-0.01) and ssim["verdict"] == "worse"
    assert rgb["mean"] == 0 and rgb["verdict"] == "tie"  # unchanged
    assert "**+0.5000 [+0.5000, +0.5000]**" in row and "_-0.0100 [-0.0100, -0.0100]_" in row
    with pytest.raises(UserError, match="at least two run folders"):
        compare([str(tmp_path / "bic")], None, paired=True)


def test_realesrgan_baseline_is_x4_then_area_back():
    """An x4 network that repeats each pixel 4x4 (nearest) makes the baseline the identity: the area reduction
    averages exactly the 16 copies; a real network's output is reduced the same way."""
    import torch

    from prefrestore.eval.restorers import RealESRGANRestorer
    from prefrestore.restore.realesrgan import RealESRGANUpsampler

    class Nearest4(torch.nn.Module):
        config = type("C", (), {"scale": 4})()

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    faces = [np.random.default_rng(i).integers(0, 256, (24, 24, 3), dtype=np.uint8) for i in range(2)]
    r = RealESRGANRestorer(resolution=24, upsampler=RealESRGANUpsampler(Nearest4(), tile=0, progress=False))
    out = r.restore(faces)
    assert all(o.shape == (24, 24, 3) and o.dtype == np.uint8 for o in out)
    assert all(np.array_equal(o, f) for o, f in zip(out, faces, strict=True))


# ----------------------------------------------------------------------------------------------------------------
# eval under careless use: a folder of its own, nothing it did not write replaced, mixed sizes scored


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_eval_leaves_every_pre_existing_file_byte_identical(
    testset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's cases: --compare -o into a user's folder holding compare.md/grid.png, -o equal to (or inside)
    the --restored/--gt folder holding a user's restoration named grid.png, a non-empty foreign folder, and a
    comparison into one of its own run folders: each refused with one line (exit 2); every file that existed
    before (the benchmark, the user's files, the runs) is byte-identical afterwards."""
    common = ["--metrics", "psnr_y", "--no-fid", "--grid", "2"]
    restored = tmp_path / "mine"
    for i in range(3):
        save_rgb(restored / f"im{i}.png", load_rgb(testset / "gt" / f"im{i}.png"))
    save_rgb(restored / "grid.png", np.full((8, 8, 3), 7, np.uint8))  # a user's restoration that is named grid.png
    assert main(["eval", "--data", str(testset), "--model", "bicubic", "-o", str(tmp_path / "bic"), *common]) == 0
    assert (
        main(
            [
                "eval",
                "--restored",
                str(restored),
                "--gt",
                str(testset / "gt"),
                "-o",
                str(tmp_path / "own"),
                "--name",
                "mine",
                *common,
            ]
        )
        == 0
    )
    user = tmp_path / "user"
    user.mkdir()
    (user / "compare.md").write_text("my notes\n")
    (user / "grid.png").write_bytes(b"my picture")
    (user / "sub").mkdir()
    (user / "sub" / "x.txt").write_text("x")
    (tmp_path / "bic" / "notes.txt").write_text("mine, inside a run folder")
    capsys.readouterr()
    before = _snapshot(tmp_path) | {f"set/{k}": v for k, v in _snapshot(testset).items()}

    runs = [str(tmp_path / "bic"), str(tmp_path / "own")]
    attempts = [
        ["--compare", *runs, "-o", str(user)],  # a user's folder with compare.md and grid.png
        ["--compare", *runs, "-o", str(tmp_path / "bic")],  # one of the runs it reads
        ["--compare", *runs, "-o", str(restored)],  # the restored folder of one of the runs
        ["--restored", str(restored), "--gt", str(testset / "gt"), "-o", str(restored), *common],  # -o = --restored
        ["--restored", str(restored), "--gt", str(testset / "gt"), "-o", str(restored / "run"), *common],
        ["--data", str(testset), "--model", "bicubic", "-o", str(testset / "gt" / "run"), *common],  # inside --data
        ["--data", str(testset), "--model", "bicubic", "-o", str(user), *common],  # a foreign non-empty folder
        ["--data", str(testset), "--model", "bicubic", "-o", str(tmp_path / "own"), *common],  # other settings
    ]
    for args in attempts:
        assert main(["eval", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (args, err)
    # and what works: a comparison into a new folder, then again into it (its own files, replaced)
    assert main(["eval", "--compare", *runs, "-o", str(tmp_path / "cmp")]) == 0
    assert main(["eval", "--compare", *runs, "-o", str(tmp_path / "cmp")]) == 0
    after = _snapshot(tmp_path) | {f"set/{k}": v for k, v in _snapshot(testset).items()}
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert changed == []
    assert not [k for k in after if k not in before and not k.startswith("cmp/")]  # wrote only its new folder


def test_restorations_of_other_sizes_are_resized_and_said(testset: Path, tmp_path: Path) -> None:
    """GTs of two sizes and restorations of a third in one batch (the old ValueError): scored after a bicubic
    resize to the GT's size, recorded per image and stated in the report. A restoration equal to its GT scores
    infinite PSNR; a resized copy of the GT scores high but finite."""
    gt, rest = tmp_path / "gt", tmp_path / "rest"
    from prefrestore.io.image import resize

    for i in range(3):
        img = load_rgb(testset / "gt" / f"im{i}.png")  # 64 x 64
        if i == 2:
            img = resize(img, (48, 40), resample="bicubic")  # a GT of another size: (h, w) = (40, 48)
        save_rgb(gt / f"im{i}.png", img)
        if i == 0:
            save_rgb(rest / f"im{i}.png", img)  # exact
        else:
            save_rgb(rest / f"im{i}.png", resize(img, (img.shape[1] * 2, img.shape[0] * 2), resample="bicubic"))
    s = evaluate(
        EvalConfig(
            out=str(tmp_path / "run"),
            restored=str(rest),
            gt=str(gt),
            metrics=("psnr_y",),
            fid=False,
            grid=0,
            batch_size=8,
        )
    ).summary
    per = {r["name"]: r for r in map(json.loads, (tmp_path / "run" / "scores.jsonl").read_text().splitlines())}
    assert "resized_from" not in per["im0"] and per["im1"]["resized_from"] == [128, 128]
    assert per["im2"]["resized_from"] == [96, 80]
    assert per["im0"]["metrics"]["psnr_y"] == float("inf")
    assert all(25 < per[n]["metrics"]["psnr_y"] < float("inf") for n in ("im1", "im2"))
    note = s["notes"]["resized"]
    assert note.startswith("2 of 3 restorations differ in size") and "bicubic" in note and "im2 (96x80)" in note
    assert "bicubic" in (tmp_path / "run" / "results.md").read_text()


def test_fid_features_of_mixed_sizes(tmp_path: Path) -> None:
    """Feature batches of mixed image sizes (a --fid-ref folder, or restorations) are fed one size at a time."""
    seen = []

    def extractor(x):
        seen.append(tuple(x.shape))
        return x.mean(dim=(2, 3))

    paths = []
    for k, (h, w) in enumerate([(16, 16), (20, 24), (16, 16)]):
        paths.append(tmp_path / f"{k}.png")
        save_rgb(paths[-1], np.full((h, w, 3), 40 * k, np.uint8))
    f = runner._features(extractor, paths, tmp_path / "cache.npz", batch=8)
    assert f.shape == (3, 3) and sorted(seen) == [(1, 3, 20, 24), (2, 3, 16, 16)]
    assert np.allclose(f[:, 0] * 255, [0, 40, 80], atol=0.5)  # in input order
