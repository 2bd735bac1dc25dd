"""Run configs: a dataclass tree, a YAML file of deltas and ``a.b=c`` overrides, merged strictly (docs/style.md P3).

    cfg = load_config(SFTConfig, "configs/train/tiny-stage1.yaml", ["optim.lr=3e-4", "data.batch_size=4"])
    dump_config(cfg, run_dir / "config.yaml")   # the resolved config, as it ran

Unknown keys, wrong types and values outside a ``Literal[...]`` raise ``ValueError`` naming the key and the fix.
Override values are parsed as YAML scalars/lists (``x=1e-4`` is a float, ``x=[1, 2]`` a list, ``x=null`` None,
``x=no`` the string "no": only true/false are booleans).

A renamed key keeps working for one release: a dataclass lists ``renamed_keys = {"old": "new"}`` (a ``ClassVar``),
and a YAML or override using the old name is read as the new one, with a one-line deprecation warning.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")
logger = logging.getLogger(__name__)


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style scalars: only true/false are booleans (``mixed_precision: no`` stays the string "no"), and
    ``1e-4`` is a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type ``hint`` (recursing into dataclasses); returns the converted value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping for {hint.__name__}, got {value!r}")
        return _build(hint, value, key + ".")
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise ValueError(f"{key}={value!r}: expected one of {list(args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _convert(a, value, key)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"{key}={value!r}: does not match {hint} ({'; '.join(errors)})")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}={value!r}: expected a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{key}={value!r}: expected {len(args)} items")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        out = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-4" as a string
        except ValueError:
            pass
    if isinstance(hint, type) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ValueError(f"{key}={value!r}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config keys {[prefix + k for k in unknown]}; valid keys here: {sorted(names)}")
    defaults = dataclasses.asdict(cls()) if dataclasses.is_dataclass(cls) else {}
    kwargs = {}
    for name in names:
        if name in data:
            value = data[name]
            if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict):
                value = {**defaults.get(name, {}), **value}  # nested YAML sections hold deltas
            kwargs[name] = _convert(hints[name], value, prefix + name)
    return cls(**kwargs)


def _renamed_keys(cls: Any) -> dict[str, str]:
    """Old name -> new name of the keys the dataclass ``cls`` renamed (its ``renamed_keys`` ClassVar)."""
    return (getattr(cls, "renamed_keys", None) or {}) if dataclasses.is_dataclass(cls) else {}


def _renamed(cls: Any, key: str, prefix: str) -> str:
    """``key`` of the dataclass ``cls``, or its new name when ``cls.renamed_keys`` lists it (with a warning)."""
    new = _renamed_keys(cls).get(key)
    if new is None:
        return key
    logger.warning(
        "config key %s%s is deprecated; use %s%s (the old name goes in the next release)", prefix, key, prefix, new
    )
    return new


def _section(cls: Any, key: str) -> Any:
    """The dataclass type of section ``key`` of ``cls``, or None when it is not a section."""
    if not dataclasses.is_dataclass(cls):
        return None
    hint = typing.get_type_hints(cls).get(key)
    return hint if dataclasses.is_dataclass(hint) else None


def _rename_tree(cls: Any, tree: dict, prefix: str = "") -> dict:
    """A YAML tree with the old names of renamed keys replaced by the new ones, at every level."""
    out: dict = {}
    renamed = _renamed_keys(cls)
    for key, value in tree.items():
        new = _renamed(cls, key, prefix) if isinstance(key, str) else key
        if new in out:
            old = next(k for k, v in renamed.items() if v == new and k in tree)
            raise ValueError(f"{prefix}{old} and {prefix}{new} both set; {old} is the old name of {new}, keep {new}")
        section = _section(cls, new)
        out[new] = _rename_tree(section, value, f"{prefix}{new}.") if section and isinstance(value, dict) else value
    return out


def _rename_dotted(cls: Any, dotted: str) -> str:
    """A dotted override key with the old names of renamed keys replaced by the new ones."""
    parts = []
    for part in dotted.split("."):
        prefix = "".join(p + "." for p in parts)
        parts.append(_renamed(cls, part, prefix))
        cls = _section(cls, parts[-1])
    return ".".join(parts)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted}: {p} is not a section")
    node[leaf] = value


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] = ()) -> T:
    """Defaults of ``cls`` <- YAML file <- ``key.sub=value`` overrides -> a validated ``cls`` instance."""
    tree: dict = {}
    if path is not None:
        text = Path(path).read_text()
        tree = _yaml(text) or {}
        if not isinstance(tree, dict):
            raise ValueError(f"{path}: expected a YAML mapping at the top level")
        tree = _rename_tree(cls, tree)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected key.sub=value")
        key, raw = item.split("=", 1)
        set_dotted(tree, _rename_dotted(cls, key.strip()), _yaml(raw) if raw.strip() else "")
    return _build(cls, tree)


def config_to_dict(cfg: Any) -> dict:
    """Plain dict of a dataclass tree (tuples become lists), ready for YAML/JSON."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(cfg))))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def dump_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config (every field, not just the deltas) as YAML; atomic."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(p)


def load_user_config(cls: type[T], path: str | os.PathLike, overrides: list[str] = ()) -> T:
    """:func:`load_config` for a command line: any I/O, YAML or validation problem becomes a one-line UserError."""
    from .errors import UserError

    try:
        return load_config(cls, path, list(overrides))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise UserError(f"{path}: {err}") from None


def config_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (what ``--print-config`` shows)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
