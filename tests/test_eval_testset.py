"""`prefrestore make-testset`: frozen layout, per-image seeds, exact replay, never overwrites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prefrestore.cli import main
from prefrestore.degradations import DegradationRecord
from prefrestore.errors import UserError
from prefrestore.eval.testset import SyntheticSetConfig, build_testset, image_seed, replay
from prefrestore.io.image import load_rgb, save_rgb


@pytest.fixture()
def hq_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "hq"
    for i, (h, w) in enumerate([(80, 64), (64, 64), (70, 90)]):
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        save_rgb(d / f"face{i}.png", img)
    return d


def test_build_layout_and_replay(hq_dir: Path, tmp_path: Path) -> None:
    out = build_testset(
        SyntheticSetConfig(hq_dir=str(hq_dir), out=str(tmp_path / "set"), preset="codeformer", seed=3, size=48)
    )
    names = sorted(p.stem for p in (out / "gt").iterdir())
    assert names == ["face0", "face1", "face2"]
    assert sorted(p.stem for p in (out / "lq").iterdir()) == names
    recs = [DegradationRecord.from_json(line) for line in (out / "params.jsonl").read_text().splitlines()]
    assert [r.name for r in recs] == names
    assert all(r.seed == image_seed(3, r.name) and r.preset == "codeformer" for r in recs)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == 3 and meta["size"] == 48
    for n in names:
        lq = load_rgb(out / "lq" / f"{n}.png")
        assert lq.shape == (48, 48, 3) and load_rgb(out / "gt" / f"{n}.png").shape == (48, 48, 3)
        assert np.array_equal(replay(out, n), lq)


def test_per_image_seed_independent_of_folder(hq_dir: Path, tmp_path: Path) -> None:
    a = build_testset(SyntheticSetConfig(hq_dir=str(hq_dir), out=str(tmp_path / "a"), seed=1, size=32))
    (hq_dir / "face1.png").unlink()
    b = build_testset(SyntheticSetConfig(hq_dir=str(hq_dir), out=str(tmp_path / "b"), seed=1, size=32))
    assert np.array_equal(load_rgb(a / "lq" / "face2.png"), load_rgb(b / "lq" / "face2.png"))


def test_never_overwrites(hq_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    build_testset(SyntheticSetConfig(hq_dir=str(hq_dir), out=str(out), size=32))
    with pytest.raises(UserError, match="never overwritten"):
        build_testset(SyntheticSetConfig(hq_dir=str(hq_dir), out=str(out), size=32))
    assert not list(tmp_path.glob(".set.partial-*"))


def test_cli(hq_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert (
        main(["make-testset", str(hq_dir), "-o", str(out), "--preset", "gfpgan", "--seed", "5", "--size", "32"]) == 0
    )
    assert len(list((out / "lq").iterdir())) == 3
    assert main(["make-testset", str(hq_dir), "-o", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err


def test_scaled_degradation_recorded(hq_dir: Path, tmp_path: Path) -> None:
    out = build_testset(
        SyntheticSetConfig(hq_dir=str(hq_dir), out=str(tmp_path / "s"), size=128, scale_degradation=True)
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["kernel_size"] == 11 and meta["scale_degradation"] is True
    recs = [DegradationRecord.from_json(line) for line in (out / "params.jsonl").read_text().splitlines()]
    assert all(r.params.kernel_size == 11 and r.params.scale <= 7.5 for r in recs)
    assert np.array_equal(replay(out, "face0"), load_rgb(out / "lq" / "face0.png"))
