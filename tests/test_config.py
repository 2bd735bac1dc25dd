"""config.py: YAML deltas + dotted overrides -> dataclass tree, strict keys, Literal checks, resolved dump."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from prefrestore.config import config_to_dict, dump_config, load_config


@dataclass(frozen=True)
class Inner:
    size: tuple[float, float] = (1.0, 2.0)
    kind: Literal["a", "b"] = "a"
    maybe: int | None = None


@dataclass
class Outer:
    name: str = "run"
    lr: float = 1e-4
    stage: Literal[0, 1, 2, 3, "joint"] = 1
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    precision: Literal["no", "bf16"] = "bf16"
    flag: bool = False


def test_defaults_yaml_overrides_and_dump_round_trip(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("name: x\ninner:\n  kind: b\n")
    cfg = load_config(Outer, y, ["lr=3e-4", "inner.size=[0.5, 4]", "stage=joint", "tags=[p, q]", "inner.maybe=3"])
    assert cfg == Outer(name="x", lr=3e-4, stage="joint", inner=Inner((0.5, 4.0), "b", 3), tags=["p", "q"])
    assert isinstance(cfg.inner.size, tuple)
    dump_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Outer, tmp_path / "out" / "config.yaml") == cfg
    assert config_to_dict(cfg)["inner"]["size"] == [0.5, 4.0]
    assert load_config(Outer, None, ["lr=1e-4"]).lr == 1e-4  # YAML 1.1 would read 1e-4 as a string
    # YAML 1.1 would make "no" a boolean; here only true/false are
    assert load_config(Outer, None, ["precision=no", "flag=true"]) == Outer(precision="no", flag=True)
    (tmp_path / "p.yaml").write_text("precision: no\nlr: 3e-4\n")
    assert load_config(Outer, tmp_path / "p.yaml") == Outer(precision="no", lr=3e-4)


@pytest.mark.parametrize(
    "override, match",
    [
        ("nope=1", r"unknown config keys \['nope'\]"),
        ("inner.nope=1", r"inner.nope"),
        ("inner.kind=c", r"inner.kind='c': expected one of \['a', 'b'\]"),
        ("stage=5", r"stage=5"),
        ("lr=fast", r"lr='fast'"),
        ("inner.size=[1, 2, 3]", r"expected 2 items"),
        ("name", r"expected key.sub=value"),
    ],
)
def test_bad_keys_and_values_are_rejected(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(Outer, None, [override])
