"""Run options shared by every driver: the restoration options (one declaration each, in :data:`OPTIONS`) and the
checks of the other user-given options (:func:`check_finite`, :func:`check_sampling`, :func:`check_device`).

    >>> from prefrestore.restore.options import RestoreOptions
    >>> opts = RestoreOptions.from_mapping({"fidelity": 0.8, "candidates": 4, "faces": [0, 2]})

Every restoration option is declared once as an :class:`OptionSpec` (name, type, default, range, help). From that
one list: ``add_arguments(parser)`` adds the ``prefrestore restore`` flags, ``RestoreOptions.from_namespace(args)``
reads them, ``RestoreOptions.from_mapping(d)`` reads a JSON body / keyword dict (unknown keys are an error), and
:func:`json_schema` is the JSON Schema a web form or API can be generated from. Validation lives in
``RestoreOptions.__post_init__``, so every entry point rejects the same values with the same one-line message.
The server (``prefrestore.serving.schemas``) takes these same options in a request's JSON, read by ``from_mapping``.

Direction of the dial (written into its help): ``fidelity`` 1 = closest to the input, 0 = most generative.

Each ``check_*`` raises a one-line :class:`~prefrestore.errors.UserError` naming the option (``flag``) and the fix,
and is meant to run before any model is loaded or any photo is read, so a bad value costs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UserError

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes 64-bit seeds; the reports store them as JSON integers


def check_finite(
    value: float | None,
    flag: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    example: str = "",
) -> None:
    """``value`` is None (the default) or a finite number in [low, high] (``(low, high]`` with ``low_open``)."""
    if value is None:
        return
    hint = f", e.g. {flag} {example}" if example else ""
    if not math.isfinite(value):
        raise UserError(f"{flag} {value}: must be a finite number{hint}")
    if low is not None and (value <= low if low_open else value < low):
        raise UserError(f"{flag} {value}: must be {'>' if low_open else '>='} {low:g}{hint}")
    if high is not None and value > high:
        raise UserError(f"{flag} {value}: must be <= {high:g}{hint}")


def check_sampling(
    *,
    steps: int | None = None,
    guidance_scale: float | None = None,
    start_sigma: float | None = None,
    seed: int | None = None,
    samples: int | None = None,
    prefix: str = "--",
) -> None:
    """The sampling options of every restoring driver."""
    if steps is not None and not 1 <= steps <= 1000:
        raise UserError(f"{prefix}steps {steps}: must be in 1..1000, e.g. {prefix}steps 10")
    check_finite(guidance_scale, f"{prefix}guidance-scale", low=0.0, high=100.0, example="2 (1 disables guidance)")
    check_finite(
        start_sigma, f"{prefix}start-sigma", low=0.0, high=1.0, low_open=True, example="1 (pure noise) or 0.1"
    )
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise UserError(f"{prefix}seed {seed}: must be in 0..{SEED_MAX}")
    if samples is not None and not 1 <= samples <= 1000:
        raise UserError(f"{prefix}samples {samples}: must be in 1..1000")


def check_device(spec: str, *, flag: str = "--device") -> str:
    """A torch device this machine has -> its canonical name (``cpu``, ``cuda:0``, ``mps``)."""
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"{flag} {spec}: not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{flag} {spec}: this machine (or this torch build) has no CUDA GPU; use --device cpu")
        index = 0 if device.index is None else device.index
        if index >= count:
            raise UserError(f"{flag} {spec}: there are {count} CUDA GPU(s), numbered 0..{count - 1}")
        return f"cuda:{index}"
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{flag} {spec}: Apple's MPS is not available here; use --device cpu")
        return "mps"
    raise UserError(f"{flag} {spec}: device type {device.type!r} cannot restore photos; use cpu, cuda or mps")


GuardMode = Literal["off", "flag", "fallback"]
ColorFix = Literal["lowfreq", "meanstd", "none"]

DEFAULT_RERANK_WEIGHTS: dict[str, float] = {"identity_dlib": 1.0, "brisque": 0.5, "lmd_mtcnn": 0.5}
# rewards usable without a GT (id_dlib / id_mobileface need their converted weights: prefrestore weights)
RERANK_REWARDS = ("identity_dlib", "id_dlib", "id_mobileface", "brisque", "lmd_mtcnn", "ssim", "psnr")
# dlib distance input -> restored. dlib's same-person threshold is 0.6, but on 128 px degraded crops a restoration
# of another person can be much closer than that. Picked on the 118 training faces (tools/pick_guard_threshold.py,
# bundled small model, stage 3d): ordinary restorations reach 0.439, another source photo's restoration is >= 0.442
# (5 % below 0.53); 0.44 is the midpoint (0.5 misses 2.5 % of those swaps, 0.6 26 %). The stage-3c model: 0.41 /
# 0.45 -> 0.43; stage 3b: 0.39 / 0.45 -> 0.42.
DEFAULT_IDENTITY_THRESHOLD = 0.44
IDENTITY_NETS = ("dlib", "mobileface")
# MobileFace (1 - cosine), same tool and faces, bundled model: ordinary <= 0.168, another photo's restoration >= 0.486
# (5 % below 0.567): a far wider gap than dlib's; 0.33 is the midpoint.
DEFAULT_IDENTITY_THRESHOLDS: dict[str, float] = {"dlib": DEFAULT_IDENTITY_THRESHOLD, "mobileface": 0.33}


@dataclass(frozen=True)
class OptionSpec:
    """One option. ``type``: "number", "integer", "string", "indices" (comma list of ints) or "weights"
    (``name=w,...``); ``choices`` for strings; ``minimum``/``maximum`` inclusive bounds; ``nullable``: None
    (JSON null, or the flag left out) is allowed and means ``default``'s documented behaviour."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _indices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--faces {text!r}: expected comma-separated face indices, e.g. 0,2") from None


def _weights(text: str) -> dict[str, float]:
    out = {}
    for part in (p for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(
                f"--rerank-weights {text!r}: expected name=weight pairs, e.g. identity_dlib=1,brisque=0.5"
            )
    return out


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "fidelity",
        "number",
        None,
        "fidelity dial in [0, 1]: 1 = closest to the input face, 0 = most "
        "generative; sets the model's start sigma, guidance and a final blend with the input from its "
        "calibrated table (default: the model's own sampling settings)",
        minimum=0.0,
        maximum=1.0,
        nullable=True,
        metavar="F",
    ),
    OptionSpec(
        "candidates",
        "integer",
        1,
        "best-of-N: restore each face N times (seeds seed..seed+N-1, batched) "
        "and keep the best by the rerank score; every candidate's score goes into the report (default: 1, "
        "no extra cost)",
        minimum=1,
        maximum=64,
        metavar="N",
    ),
    OptionSpec(
        "rerank_weights",
        "weights",
        dict(DEFAULT_RERANK_WEIGHTS),
        "rerank score = sum of weight * reward: "
        "identity_dlib (cosine to the input), brisque (-BRISQUE/100, no-reference quality), lmd_mtcnn "
        "(1/(1+d/20), landmark agreement with the input); also ssim, psnr (to the input) "
        "(default: identity_dlib=1,brisque=0.5,lmd_mtcnn=0.5)",
        metavar="NAME=W,...",
    ),
    OptionSpec(
        "identity_guard",
        "string",
        "fallback",
        "check every restored face against its input (dlib identity "
        "distance, MTCNN landmarks): off; flag (mark it in the report); fallback (flag it and replace it by "
        "the fidelity-1 restoration, or by the input crop if that is flagged too) (default: fallback)",
        choices=("off", "flag", "fallback"),
    ),
    OptionSpec(
        "identity_net",
        "string",
        "dlib",
        "identity guard: the network that decides: dlib (the dlib "
        "package's ResNet, Euclidean distance of its descriptors) or mobileface (MobileFace in torch, "
        "distance = 1 - cosine; needs its converted weights: prefrestore weights mobileface) "
        "(default: dlib)",
        choices=IDENTITY_NETS,
    ),
    OptionSpec(
        "identity_threshold",
        "number",
        None,
        "identity guard: a face whose distance to its input exceeds "
        "this is flagged (default: the network's own, picked on training faces by "
        f"tools/pick_guard_threshold.py between ordinary 128 px restorations and another person's: dlib "
        f"{DEFAULT_IDENTITY_THRESHOLDS['dlib']} (dlib's same-person threshold is 0.6), mobileface "
        f"{DEFAULT_IDENTITY_THRESHOLDS['mobileface']})",
        minimum=0.0,
        maximum=2.0,
        nullable=True,
        metavar="D",
    ),
    OptionSpec(
        "color_fix",
        "string",
        "lowfreq",
        "give each restored face crop its input's colour before it is "
        "written or pasted: lowfreq (replace the low frequencies), meanstd (match channel mean and spread), "
        "none; the paste-back's own tone match to the photo is --color-match (default: lowfreq)",
        choices=("lowfreq", "meanstd", "none"),
    ),
    OptionSpec(
        "faces",
        "indices",
        None,
        "restore only these faces, by index in the report's order (left to right "
        "among the faces the other options keep), e.g. 0,2 (default: all)",
        nullable=True,
        metavar="I,J",
    ),
    OptionSpec(
        "min_face_size",
        "number",
        20.0,
        "ignore faces whose box is smaller than PX pixels; also the "
        "smallest size searched, so raising it speeds up detection on large photos (default: 20)",
        minimum=0.0,
        metavar="PX",
    ),
    OptionSpec(
        "max_face_size",
        "number",
        None,
        "ignore faces whose box is larger than PX pixels (default: no limit)",
        minimum=0.0,
        nullable=True,
        metavar="PX",
    ),
    OptionSpec(
        "keep_detail",
        "string",
        "on",
        "the no-loss rule: a face larger than the model's resolution in the "
        "input keeps the input's detail above that resolution (restoration below it), or is left as the input "
        "where the restoration would only blur it; off pastes the restoration as it is (default: on)",
        choices=("on", "off"),
    ),
    OptionSpec(
        "blend",
        "number",
        1.0,
        "visibility of the restored faces in the output, 0-1 (0 = the input, upscaled; default: 1)",
        minimum=0.0,
        maximum=1.0,
        metavar="A",
    ),
)
SPECS: dict[str, OptionSpec] = {s.name: s for s in OPTIONS}
_PARSE: dict[str, Callable[[str], Any]] = {
    "number": float,
    "integer": int,
    "string": str,
    "indices": _indices,
    "weights": _weights,
}


@dataclass(frozen=True)
class RestoreOptions:
    """Validated options (see :data:`OPTIONS` for each field's meaning and default)."""

    fidelity: float | None = None
    candidates: int = 1
    rerank_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RERANK_WEIGHTS))
    identity_guard: GuardMode = "fallback"
    identity_net: str = "dlib"
    identity_threshold: float | None = None
    color_fix: ColorFix = "lowfreq"
    faces: tuple[int, ...] | None = None
    min_face_size: float = 20.0
    max_face_size: float | None = None
    keep_detail: Literal["on", "off"] = "on"
    blend: float = 1.0

    def __post_init__(self) -> None:
        for spec in OPTIONS:
            _check(spec, getattr(self, spec.name))
        unknown = sorted(set(self.rerank_weights) - set(RERANK_REWARDS))
        if unknown:
            raise ValueError(f"--rerank-weights: unknown reward(s) {unknown}; choose from {list(RERANK_REWARDS)}")
        if self.candidates > 1 and not any(w != 0 for w in self.rerank_weights.values()):
            raise ValueError("--rerank-weights: all weights are 0, so --candidates > 1 could not choose")
        if self.faces is not None and any(i < 0 for i in self.faces):
            raise ValueError(f"--faces {self.faces}: indices are >= 0")
        if self.faces is not None and not self.faces:
            raise ValueError("--faces: give at least one face index (leave it out to restore all faces)")
        if self.max_face_size is not None and self.max_face_size < self.min_face_size:
            raise ValueError(f"--max-face-size {self.max_face_size} is below --min-face-size {self.min_face_size}")

    @property
    def guard_threshold(self) -> float:
        """The identity guard's threshold: ``identity_threshold``, or the default of ``identity_net``."""
        if self.identity_threshold is not None:
            return float(self.identity_threshold)
        return DEFAULT_IDENTITY_THRESHOLDS[self.identity_net]

    # ---- entry points ------------------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RestoreOptions:
        """A JSON object / keyword dict -> options; strings are parsed like the CLI's; unknown keys are an error."""
        unknown = sorted(set(values) - set(SPECS))
        if unknown:
            raise ValueError(f"unknown restore option(s) {unknown}; known: {sorted(SPECS)}")
        kwargs = {}
        for name, v in values.items():
            spec = SPECS[name]
            try:
                kwargs[name] = _from_value(spec, v)
            except (TypeError, ValueError) as err:
                if str(err).startswith(spec.flag):  # the CLI parsers' own message (--faces, --rerank-weights)
                    raise
                raise ValueError(
                    f"{spec.flag} {v!r}: expected {_EXPECTED[spec.type]}{' or null' if spec.nullable else ''}"
                ) from None
        return cls(**kwargs)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RestoreOptions:
        """The flags :func:`add_arguments` declared, from parsed CLI arguments."""
        return cls(**{s.name: getattr(args, s.name) for s in OPTIONS})

    def to_dict(self) -> dict:
        """JSON-ready (what reports record as the run's options)."""
        d = dataclasses.asdict(self)
        d["rerank_weights"] = dict(self.rerank_weights)
        d["faces"] = None if self.faces is None else list(self.faces)
        return d


_EXPECTED = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "indices": "a list of face indices, e.g. [0, 2]",
    "weights": 'reward weights, e.g. {"identity_dlib": 1}',
}


def _from_value(spec: OptionSpec, v: Any) -> Any:
    """A JSON / Python value of ``spec`` -> the field's value (strings parsed like the CLI's); TypeError or
    ValueError when it has the wrong type. Ranges and choices are checked by ``RestoreOptions.__post_init__``."""
    if v is None:
        return None
    if isinstance(v, str) and spec.type != "string":
        return _PARSE[spec.type](v)
    if spec.type == "indices":
        if not isinstance(v, (list, tuple)) or any(
            isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in v
        ):
            raise TypeError(spec.name)
        return tuple(int(i) for i in v)
    if spec.type == "weights":
        if not isinstance(v, Mapping) or any(
            isinstance(w, bool) or not isinstance(w, numbers.Real) for w in v.values()
        ):
            raise TypeError(spec.name)
        return {str(k): float(w) for k, w in v.items()}
    return v


def _check(spec: OptionSpec, v: Any) -> None:
    bad = None
    if v is None:
        if not spec.nullable:
            bad = "must be given"
    elif spec.choices is not None and v not in spec.choices:
        bad = f"expected one of {', '.join(spec.choices)}"
    elif spec.type in ("number", "integer"):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            bad = f"must be {_EXPECTED[spec.type]}"
        elif spec.type == "integer" and (not math.isfinite(v) or int(v) != v):
            bad = "must be an integer"
        elif not math.isfinite(v):  # NaN passes every comparison below
            bad = "must be a finite number"
        elif spec.minimum is not None and v < spec.minimum or spec.maximum is not None and v > spec.maximum:
            lo = "" if spec.minimum is None else f">= {spec.minimum:g}"
            hi = "" if spec.maximum is None else f"<= {spec.maximum:g}"
            bad = "must be " + " and ".join(x for x in (lo, hi) if x)
    if bad:
        raise ValueError(f"{spec.flag} {v}: {bad}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option of :data:`OPTIONS` as a flag (``fidelity`` -> ``--fidelity``) with its default."""
    group = parser.add_argument_group("restoration control (prefrestore.restore.options)")
    for spec in OPTIONS:
        kw: dict[str, Any] = {"default": spec.default, "help": spec.help, "dest": spec.name}
        if spec.choices:
            kw["choices"] = spec.choices
        else:
            kw["type"] = _PARSE[spec.type]
            kw["metavar"] = spec.metavar
        group.add_argument(spec.flag, **kw)


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of the options object, for web forms and API validation."""
    types = {"number": "number", "integer": "integer", "string": "string"}
    props: dict[str, dict] = {}
    for s in OPTIONS:
        if s.type == "indices":
            p: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
        elif s.type == "weights":
            p = {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "propertyNames": {"enum": list(RERANK_REWARDS)},
            }
        else:
            p = {"type": types[s.type]}
        if s.nullable:
            p = {"anyOf": [p, {"type": "null"}]}
        p.update(description=s.help, default=s.default)
        for k, v in (("enum", s.choices), ("minimum", s.minimum), ("maximum", s.maximum)):
            if v is not None:
                (p["anyOf"][0] if s.nullable else p)[k] = list(v) if k == "enum" else v
        props[s.name] = p
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "prefrestore restore options",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
    }
