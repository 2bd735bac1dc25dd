"""The code layout's one rule that import-linter cannot check by itself: every top-level module and package of
prefrestore sits in a layer of the ``layers`` contract (pyproject.toml), so a new module cannot escape it."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_top_level_module_is_in_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    src = ROOT / "src" / "prefrestore"
    modules = {p.stem for p in src.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in src.iterdir() if (p / "__init__.py").is_file()}
    assert modules - named == set(), "add these to the layers contract in pyproject.toml"
    assert named - modules == set(), "the layers contract names modules that do not exist"
