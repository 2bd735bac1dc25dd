"""config.py: YAML deltas + dotted overrides -> dataclass tree, strict keys, Literal checks, resolved dump."""

from dataclasses import dataclass, field
from typing import ClassVar, Literal

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


@dataclass
class Renamed:
    """A section whose ``old`` key was renamed to ``new``."""

    new: int = 1
    renamed_keys: ClassVar[dict[str, str]] = {"old": "new"}


@dataclass
class WithRenamed:
    out_dir: str = "runs"
    sub: Renamed = field(default_factory=Renamed)
    renamed_keys: ClassVar[dict[str, str]] = {"out": "out_dir"}


def test_renamed_keys_load_under_the_new_name_with_a_warning(tmp_path, caplog):
    y = tmp_path / "old.yaml"
    y.write_text("out: a\nsub:\n  old: 2\n")
    with caplog.at_level("WARNING", logger="prefrestore.config"):
        assert load_config(WithRenamed, y) == WithRenamed(out_dir="a", sub=Renamed(new=2))
    assert [r.getMessage() for r in caplog.records] == [
        "config key out is deprecated; use out_dir (the old name goes in the next release)",
        "config key sub.old is deprecated; use sub.new (the old name goes in the next release)",
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="prefrestore.config"):  # an override under the old name beats the YAML
        assert load_config(WithRenamed, y, ["out=b", "sub.old=3"]) == WithRenamed(out_dir="b", sub=Renamed(new=3))
    assert len(caplog.records) == 4
    (tmp_path / "new.yaml").write_text("out_dir: c\n")
    assert load_config(WithRenamed, tmp_path / "new.yaml", ["out=d"]).out_dir == "d"
    (tmp_path / "both.yaml").write_text("out: a\nout_dir: c\n")
    with pytest.raises(ValueError, match="out and out_dir both set"):
        load_config(WithRenamed, tmp_path / "both.yaml")
