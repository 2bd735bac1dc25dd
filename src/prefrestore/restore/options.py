"""The settings of a restore request, declared once: :class:`RestoreSettings`, a tree of four groups.

    >>> from prefrestore.restore.options import RestoreSettings
    >>> s = RestoreSettings.from_dict({"photo": {"upscale": 4}, "control": {"candidates": 4, "faces": [0, 2]}})
    >>> s.sampling.seed, s.photo.upscale, s.control.candidates
    (0, 4.0, 4)

* ``sampling`` (:class:`SamplingSettings`): model, steps, guidance scale, start sigma, numerics, device, batch
  size, seed;
* ``photo`` (:class:`PhotoSettings`): upscale, detection threshold, face count and centre face, paste-back colour
  match, background upsampler;
* ``output`` (:class:`OutputSettings`): format, JPEG quality, name suffix, identity report;
* ``control`` (:class:`RestoreOptions`, the options the pipeline's control stage reads as ``config.options``):
  fidelity, best-of-N candidates and their rerank, identity guard, crop colour fix, face choice and size, the
  no-loss rule, blend.

Every setting is a dataclass field whose metadata (:func:`setting` -> :class:`Spec`) holds its kind, bounds or
choices, help, CLI flags, the commands that take it and whether a request of the HTTP API may set it. From that
one declaration: :func:`add_arguments` adds the flags of ``prefrestore restore``, ``serve`` and ``eval`` (each
the settings it takes), :meth:`RestoreSettings.from_namespace` reads them, :meth:`RestoreSettings.from_request`
reads the HTTP API's flat JSON object, :func:`json_schema` is the JSON Schema of that object (the OpenAPI
document's and the page's) and :func:`settings_table` the table of the docs. Each value, whichever door it came
in by, is checked by one function, :func:`check_value`, in the groups' ``__post_init__``; a bad one raises a
:class:`SettingError` of one line that names the setting and its flag, e.g.
``--candidates 0 (candidates): must be an integer in 1..64``, the same text on the command line, in Python and
in the HTTP API's 422 answer.

Direction of the dial (written into its help): ``fidelity`` 1 = closest to the input, 0 = most generative.

:func:`check_device` checks the one thing a value cannot tell: whether this machine has the device (run time,
before any model is loaded).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import UserError

# One bound each for the two settings the CLI and the API used to bound differently (issue 26):
# seed: 0..2^31-1, the API's. Every consumer represents it and its derived seeds (seed..seed+N-1 of best-of-N and
# of eval's samples) exactly: torch and numpy generators, JSON readers in JavaScript (the page; exact only up to
# 2^53) and 32-bit tools; 2^31 distinct seeds are more than any run draws.
SEED_MAX = 2**31 - 1
# upscale: [0.25, 8], the API's. The output has upscale^2 times the input's pixels, so 8 already makes a 40 MP
# photo 2.6 GP; below 0.25 a restored face (the model's 128-512 px) is pasted at a few pixels. GFPGAN and
# CodeFormer default to 2, Real-ESRGAN is x4.
UPSCALE_RANGE = (0.25, 8.0)

COMMANDS = ("restore", "serve", "eval")  # the commands that take settings

# The choices of faces.paste (BG_UPSAMPLERS, ColorMatch), written out so that `restore --help` and a usage error
# import no torch (tests/test_restore_cli.py checks that they agree).
BG_UPSAMPLERS = ("bicubic", "bilinear", "lanczos", "realesrgan")
COLOR_MATCHES = ("lowfreq", "meanstd", "none")

GuardMode = Literal["off", "flag", "fallback"]
ColorFix = Literal["lowfreq", "meanstd", "none"]

DEFAULT_RERANK_WEIGHTS: dict[str, float] = {"identity_dlib": 1.0, "brisque": 0.5, "lmd_mtcnn": 0.5}
# rewards usable without a GT (id_dlib / id_mobileface need their converted weights: prefrestore weights)
RERANK_REWARDS = ("identity_dlib", "id_dlib", "id_mobileface", "brisque", "lmd_mtcnn", "ssim", "psnr")
# dlib distance input -> restored (colour-fixed, as the guard sees it). dlib's same-person threshold is 0.6, but on
# 128 px degraded crops a restoration of another person can be much closer than that. Picked on the 118 training
# faces x 3 paper degradations (tools/pick_guard_threshold.py --seeds 1000 1001 1002, the bundled stage-4b/4e model,
# colour fix at 0.15 S): ordinary restorations reach 0.491 at their 99th percentile (one outlier 0.614), another
# source photo's restoration is >= 0.583 at its 5th (min 0.435): they overlap, so 0.50, the smallest step flagging
# <= 1 % of ordinary restorations (0.3 %; it catches 99.7 % of the swaps; 0.47, the pick before the colour fix
# widened, flags 5 % now). Earlier models: stage 4 0.47, 3d 0.44, 3c 0.43, 3b 0.42 (one draw, none flagged).
DEFAULT_IDENTITY_THRESHOLD = 0.50
IDENTITY_NETS = ("dlib", "mobileface")
# MobileFace (1 - cosine), same tool and faces: ordinary <= 0.271 (99th percentile 0.183), another photo's
# restoration >= 0.484: they separate, and 0.38 is the midpoint (stage 4 0.33, stage 3d 0.33, one draw each).
DEFAULT_IDENTITY_THRESHOLDS: dict[str, float] = {"dlib": DEFAULT_IDENTITY_THRESHOLD, "mobileface": 0.38}


class SettingError(UserError, ValueError):
    """A setting's value is wrong; ``str(err)`` is one line naming the setting, its flag, the value and the fix."""


# ---------------------------------------------------------------------------------------------------------------
# The declaration of one setting


Kind = Literal["number", "integer", "choice", "bool", "text", "indices", "weights"]


@dataclass(frozen=True)
class Spec:
    """What a setting's field declares besides its name and default.

    kind: number | integer | choice | bool | text | indices (face indices, ``0,2`` on the command line) | weights
        (reward weights, ``name=w,...``); minimum/maximum: inclusive bounds (``low_open``: the minimum excluded);
        choices: of a choice, or the names a weights mapping may use; aliases: other spellings of a choice
        (GFPGAN's ``none`` background upsampler); check: a text's own test (value -> the problem, or None);
        nullable: None is allowed (the flag left out, JSON null) and means the documented default behaviour.
    flags: the command-line spellings, the first named in messages; commands: the commands that take it;
        api: a request of the HTTP API may set it (the others are the server's, set by ``prefrestore serve``);
        command_defaults: a command whose default differs; ui/step: the page shows a control (number step).
    """

    kind: Kind
    help: str
    flags: tuple[str, ...]
    commands: tuple[str, ...] = ("restore",)
    api: bool = True
    minimum: float | None = None
    maximum: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None
    aliases: Mapping[str, str] | None = None
    check: Callable[[str], str | None] | None = None
    nullable: bool = False
    metavar: str | None = None
    command_defaults: Mapping[str, Any] | None = None
    ui: bool = False
    step: float | None = None

    @property
    def flag(self) -> str:
        """The flag messages name: the first spelling (``-s`` for upscale, as GFPGAN and CodeFormer spell it)."""
        return self.flags[0]

    def expected(self) -> str:
        """What a value must be, as messages and the docs say it (``an integer in 1..64``)."""
        lo, hi = self.minimum, self.maximum
        if self.kind in ("number", "integer"):
            if self.kind == "integer":
                words = "an integer"
                rng = f"{int(lo)}..{int(hi)}" if lo is not None and hi is not None else ""
            else:
                words = "a number"
                rng = f"{'(' if self.low_open else '['}{lo:g}, {hi:g}]" if lo is not None and hi is not None else ""
            if rng:
                return f"{words} in {rng}"
            if lo is not None:
                return f"{words} {'>' if self.low_open else '>='} {lo:g}"
            return words
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices or ())
        if self.kind == "bool":
            return "true or false"
        if self.kind == "indices":
            return "face indices >= 0, e.g. 0,2 (JSON: [0, 2])"
        if self.kind == "weights":
            return 'reward weights, e.g. identity_dlib=1,brisque=0.5 (JSON: {"identity_dlib": 1})'
        return "a text"


def setting(default: Any, kind: Kind, help: str, *flags: str, **spec: Any) -> Any:
    """A settings field: ``default`` (a dict is copied per instance) and its :class:`Spec` as metadata."""
    meta = {"setting": Spec(kind, help, flags, **spec)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def _text(value: Any) -> str:
    """A value as a message shows it: its JSON spelling (what an API request sent; a CLI value is shown as it was
    read), cut to 60 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_number(text: str) -> int | float:
    """Command-line text -> int when it is one (``4``), else float (``0.5``, ``1e3``, ``nan``): what JSON would
    have sent, so both show the same value in a message."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _parse_text(spec: Spec, text: str) -> Any:
    """Command-line text -> the value a JSON request would send; ValueError when it cannot be read."""
    if spec.kind in ("number", "integer"):
        return _parse_number(text)
    if spec.kind == "indices":
        return [_parse_number(t.strip()) for t in text.split(",") if t.strip()]
    if spec.kind == "weights":
        out: dict[str, Any] = {}
        for part in (p for p in text.split(",") if p.strip()):
            name, sep, weight = part.partition("=")
            if not sep:
                raise ValueError(part)
            out[name.strip()] = _parse_number(weight.strip())
        return out
    return text


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_value(name: str, spec: Spec, value: Any, *, text: bool = False) -> Any:
    """The one check of every setting: ``value`` (a Python / JSON value; command-line text with ``text``) -> the
    field's value (a number as float or int, indices as a tuple, weights as a dict of floats), or a
    :class:`SettingError` ``FLAG VALUE (NAME): must be ...``."""
    shown = value
    if text and isinstance(value, str):
        try:
            value = shown = _parse_text(spec, value)
        except ValueError:
            value = _Unreadable  # shown as the text that was given

    def bad(problem: str | None = None) -> SettingError:
        return SettingError(f"{spec.flag} {_text(shown)} ({name}): {problem or 'must be ' + spec.expected()}")

    if value is _Unreadable or (value is None and not spec.nullable):
        raise bad()
    if value is None:
        return None
    kind = spec.kind
    if kind in ("number", "integer"):
        if not _real(value) or not math.isfinite(value):
            raise bad()
        if kind == "integer":
            if int(value) != value:
                raise bad()
            value = int(value)
        lo, hi = spec.minimum, spec.maximum
        if lo is not None and (value <= lo if spec.low_open else value < lo) or hi is not None and value > hi:
            raise bad()
        return value if kind == "integer" else float(value)
    if kind == "choice":
        value = (spec.aliases or {}).get(value, value) if isinstance(value, str) else value
        if not isinstance(value, str) or value not in (spec.choices or ()):
            raise bad()
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise bad()
        problem = spec.check(value) if spec.check else None
        if problem:
            raise bad(problem)
        return value
    if kind == "indices":
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            raise bad()
        if any(not _real(i) or not math.isfinite(i) or int(i) != i or i < 0 for i in value):
            raise bad()
        if not value:
            raise bad("give at least one face index (leave it out to restore all faces)")
        return tuple(int(i) for i in value)
    if kind == "weights":
        if not isinstance(value, Mapping) or any(not _real(w) or not math.isfinite(w) for w in value.values()):
            raise bad()
        unknown = [k for k in value if k not in (spec.choices or ())]
        if unknown:
            raise bad(f"unknown reward {_text(unknown[0])}; choose from {', '.join(spec.choices or ())}")
        return {str(k): float(w) for k, w in value.items()}
    raise AssertionError(kind)


_Unreadable = object()  # command-line text that no value of the setting's kind spells


# ---------------------------------------------------------------------------------------------------------------
# The groups


class _Group:
    """What the four groups share: each field checked by :func:`check_value` at construction (a frozen dataclass
    holds the checked value), ``to_dict``/``from_dict``."""

    GROUP: ClassVar[str]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_value(f.name, f.metadata["setting"], getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (what reports record): tuples as lists, mappings as dicts."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, Mapping) else v
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """A mapping of this group's settings -> the group; unknown names are a SettingError."""
        if not isinstance(values, Mapping):
            raise SettingError(f"{cls.GROUP}: expected an object of settings, got {_text(values)}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise SettingError(f"{cls.GROUP}: unknown setting {unknown[0]!r}; known: {known}")
        return cls(**values)


def _device_problem(value: str) -> str | None:
    if re.fullmatch(r"cpu|mps|cuda(:[0-9]{1,3})?", value):
        return None
    return "not a device name; use cpu, cuda, cuda:N or mps"


def _model_problem(value: str) -> str | None:
    return None if value.strip() else "empty; give default, tiny, a model folder or a hub id"


def _suffix_problem(value: str) -> str | None:
    if "/" in value or "\\" in value:
        return "must not contain a slash"
    if "\0" in value or len(value.encode("utf-8", "surrogateescape")) > 100:
        return "at most 100 bytes, no NUL"
    return None


@dataclass(frozen=True)
class SamplingSettings(_Group):
    """How the model samples: which model, its sampler, where it runs, the seed."""

    GROUP: ClassVar[str] = "sampling"

    model: str | None = setting(
        "default",
        "text",
        "default (the bundled model, or the paper model when installed), tiny (random weights), a model folder "
        "or a hub id; eval also takes the baselines bicubic, classical and realesrgan (default: default; eval: "
        "none, for --restored)",
        "--model",
        commands=("restore", "serve", "eval"),
        api=False,
        check=_model_problem,
        nullable=True,
        command_defaults={"eval": None},
    )
    steps: int | None = setting(
        None,
        "integer",
        "sampling steps (default: the model's)",
        "--steps",
        commands=("restore", "serve", "eval"),
        api=False,
        minimum=1,
        maximum=1000,
        nullable=True,
        metavar="K",
    )
    guidance_scale: float | None = setting(
        None,
        "number",
        "classifier-free guidance scale; 1 disables guidance (default: the model's)",
        "--guidance-scale",
        commands=("restore", "eval"),
        api=False,
        minimum=0,
        maximum=100,
        nullable=True,
        metavar="G",
    )
    start_sigma: float | None = setting(
        None,
        "number",
        "1.0 samples from pure noise; below 1 starts from the noised LQ (default: the model's)",
        "--start-sigma",
        api=False,
        minimum=0,
        maximum=1,
        low_open=True,
        nullable=True,
        metavar="S",
    )
    official_numerics: bool = setting(
        False,
        "bool",
        "compute the sampling loop as the official code does (bf16 noise, the state re-rounded to the model's "
        "dtype every step, the [uncond, cond] CFG batch), to compare outputs with the paper's release (default: "
        "the model's setting)",
        "--official-numerics",
        api=False,
    )
    flip_ensemble: str = setting(
        "model",
        "choice",
        "restore each face and its mirror image and average them (steadier, a little softer; ~1.7x the time per face "
        "on a CPU); model: the model's setting (the bundled model: on) (default: model)",
        "--flip-ensemble",
        api=False,
        choices=("model", "on", "off"),
    )
    device: str = setting(
        "cpu",
        "text",
        "torch device: cpu, cuda, cuda:N or mps; under torchrun / accelerate launch cuda is each rank's GPU "
        "(default: cpu)",
        "--device",
        commands=("restore", "serve", "eval"),
        api=False,
        check=_device_problem,
    )
    batch_size: int = setting(
        8,
        "integer",
        "faces per restorer call (default: 8)",
        "--batch-size",
        commands=("restore", "serve", "eval"),
        api=False,
        minimum=1,
        maximum=1024,
        metavar="B",
    )
    seed: int = setting(
        0,
        "integer",
        f"sampling seed, the same for every face; best-of-N and eval's samples use seed, seed+1, ... "
        f"(0..{SEED_MAX}; default: 0)",
        "--seed",
        commands=("restore", "eval"),
        minimum=0,
        maximum=SEED_MAX,
        metavar="N",
    )


@dataclass(frozen=True)
class PhotoSettings(_Group):
    """What is done to the whole photo around the faces: scale, detection, paste-back, background."""

    GROUP: ClassVar[str] = "photo"

    upscale: float = setting(
        2.0,
        "number",
        f"output size / input size, in [{UPSCALE_RANGE[0]:g}, {UPSCALE_RANGE[1]:g}] (default: 2)",
        "-s",
        "--upscale",
        minimum=UPSCALE_RANGE[0],
        maximum=UPSCALE_RANGE[1],
        metavar="S",
        ui=True,
        step=0.25,
    )
    det_threshold: float = setting(
        0.95,
        "number",
        "detection confidence threshold in [0, 1]; real faces score > 0.97 (default: 0.95)",
        "--det-threshold",
        minimum=0,
        maximum=1,
        metavar="T",
        ui=True,
        step=0.01,
    )
    max_faces: int | None = setting(
        None,
        "integer",
        "restore at most N faces, largest first (default: all)",
        "--max-faces",
        minimum=1,
        maximum=1000,
        nullable=True,
        metavar="N",
    )
    only_center_face: bool = setting(False, "bool", "restore only the face nearest the centre", "--only-center-face")
    color_match: str = setting(
        "lowfreq",
        "choice",
        "paste-back: match each restored face's colour and tone to the photo around it as it is pasted "
        "(color_fix colours the face crop itself, before it is written or pasted) (default: lowfreq)",
        "--color-match",
        choices=COLOR_MATCHES,
    )
    bg_upsampler: str = setting(
        "lanczos",
        "choice",
        "background upsampler: a resampler, or realesrgan (RealESRGAN_x4plus, converted with "
        "`prefrestore convert-realesrgan`; meant for GPUs); none = lanczos (default: lanczos)",
        "--bg-upsampler",
        api=False,
        choices=BG_UPSAMPLERS,
        aliases={"none": "lanczos", "None": "lanczos"},  # GFPGAN: --bg_upsampler None
    )
    bg_tile: int = setting(
        400,
        "integer",
        "realesrgan tile size in input pixels, bounds memory; 0 = untiled (default: 400)",
        "--bg-tile",
        api=False,
        minimum=0,
        maximum=100_000,
        metavar="PX",
    )


@dataclass(frozen=True)
class OutputSettings(_Group):
    """What is written: the photo's format and quality, its name, the identity report."""

    GROUP: ClassVar[str] = "output"

    output_format: str = setting(
        "auto",
        "choice",
        "restored photo format; auto: JPEG for JPEG inputs, PNG otherwise (default: auto)",
        "--ext",
        "--output-format",
        choices=("auto", "png", "jpg"),
        ui=True,
    )
    jpeg_quality: int = setting(
        95, "integer", "JPEG quality 1-100 (default: 95)", "--jpeg-quality", minimum=1, maximum=100, metavar="Q"
    )
    suffix: str = setting(
        "", "text", "suffix for restored photo names (default: none)", "--suffix", api=False, check=_suffix_problem
    )
    identity: str = setting(
        "auto",
        "choice",
        "report input-to-restored identity similarity when dlib is installed (default: auto)",
        "--identity",
        commands=("restore", "serve"),
        api=False,
        choices=("auto", "off"),
    )


@dataclass(frozen=True)
class RestoreOptions(_Group):
    """The control settings (``config.options`` of the pipeline): fidelity dial, best-of-N and rerank, identity
    guard, face crop colour, face choice and size, the no-loss rule, blend."""

    GROUP: ClassVar[str] = "control"

    fidelity: float | None = setting(
        None,
        "number",
        "fidelity dial in [0, 1]: 1 = closest to the input face, 0 = most generative; sets the model's start "
        "sigma, guidance and a final blend with the input from its calibrated table (default: the model's own "
        "sampling settings)",
        "--fidelity",
        minimum=0,
        maximum=1,
        nullable=True,
        metavar="F",
        ui=True,
        step=0.05,
    )
    candidates: int = setting(
        1,
        "integer",
        "best-of-N: restore each face N times (seeds seed..seed+N-1, batched) and keep the best by the rerank "
        "score; every candidate's score goes into the report (default: 1, no extra cost)",
        "--candidates",
        minimum=1,
        maximum=64,
        metavar="N",
        ui=True,
        step=1,
    )
    rerank_weights: Mapping[str, float] = setting(
        dict(DEFAULT_RERANK_WEIGHTS),
        "weights",
        "rerank score = sum of weight * reward: identity_dlib (cosine to the input), brisque (-BRISQUE/100, "
        "no-reference quality), lmd_mtcnn (1/(1+d/20), landmark agreement with the input); also id_dlib, "
        "id_mobileface, ssim, psnr (to the input) (default: identity_dlib=1,brisque=0.5,lmd_mtcnn=0.5)",
        "--rerank-weights",
        choices=RERANK_REWARDS,
        metavar="NAME=W,...",
        ui=True,
    )
    identity_guard: GuardMode = setting(
        "fallback",
        "choice",
        "check every restored face against its input (dlib identity distance, MTCNN landmarks): off; flag "
        "(mark it in the report); fallback (flag it and replace it by the fidelity-1 restoration, or by the "
        "input crop if that is flagged too) (default: fallback)",
        "--identity-guard",
        choices=("off", "flag", "fallback"),
        ui=True,
    )
    identity_net: str = setting(
        "dlib",
        "choice",
        "identity guard: the network that decides: dlib (the dlib package's ResNet, Euclidean distance of its "
        "descriptors) or mobileface (MobileFace in torch, distance = 1 - cosine; needs its converted weights: "
        "prefrestore weights mobileface) (default: dlib)",
        "--identity-net",
        choices=IDENTITY_NETS,
    )
    identity_threshold: float | None = setting(
        None,
        "number",
        "identity guard: a face whose distance to its input exceeds this is flagged (default: the network's "
        "own, picked on training faces by tools/pick_guard_threshold.py between ordinary 128 px restorations "
        f"and another person's: dlib {DEFAULT_IDENTITY_THRESHOLDS['dlib']} (dlib's same-person threshold is "
        f"0.6), mobileface {DEFAULT_IDENTITY_THRESHOLDS['mobileface']})",
        "--identity-threshold",
        minimum=0,
        maximum=2,
        nullable=True,
        metavar="D",
    )
    color_fix: ColorFix = setting(
        "lowfreq",
        "choice",
        "give each restored face crop its input's colour before it is written or pasted: lowfreq (replace the "
        "low frequencies), meanstd (match channel mean and spread), none; the paste-back's own tone match to the "
        "photo is color_match (default: lowfreq)",
        "--color-fix",
        choices=COLOR_MATCHES,
        ui=True,
    )
    faces: tuple[int, ...] | None = setting(
        None,
        "indices",
        "restore only these faces, by index in the report's order (left to right among the faces the other "
        "options keep), e.g. 0,2 (default: all)",
        "--faces",
        nullable=True,
        metavar="I,J",
    )
    min_face_size: float = setting(
        20.0,
        "number",
        "ignore faces whose box is smaller than PX pixels; also the smallest size searched, so raising it "
        "speeds up detection on large photos (default: 20)",
        "--min-face-size",
        minimum=0,
        metavar="PX",
    )
    max_face_size: float | None = setting(
        None,
        "number",
        "ignore faces whose box is larger than PX pixels (default: no limit)",
        "--max-face-size",
        minimum=0,
        nullable=True,
        metavar="PX",
    )
    keep_detail: Literal["on", "off"] = setting(
        "on",
        "choice",
        "the no-loss rule: a face larger than the model's resolution in the input keeps the input's detail "
        "above that resolution (restoration below it), or is left as the input where the restoration would "
        "only blur it; off pastes the restoration as it is (default: on)",
        "--keep-detail",
        choices=("on", "off"),
    )
    blend: float = setting(
        1.0,
        "number",
        "visibility of the restored faces in the output, 0-1 (0 = the input, upscaled; default: 1)",
        "--blend",
        minimum=0,
        maximum=1,
        metavar="A",
        ui=True,
        step=0.05,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.candidates > 1 and not any(w != 0 for w in self.rerank_weights.values()):
            raise SettingError(
                "--rerank-weights (rerank_weights): all weights are 0, so --candidates (candidates) > 1 could "
                "not choose"
            )
        if self.max_face_size is not None and self.max_face_size < self.min_face_size:
            raise SettingError(
                f"--max-face-size {_text(self.max_face_size)} (max_face_size): below --min-face-size "
                f"{_text(self.min_face_size)} (min_face_size)"
            )

    @property
    def guard_threshold(self) -> float:
        """The identity guard's threshold: ``identity_threshold``, or the default of ``identity_net``."""
        if self.identity_threshold is not None:
            return float(self.identity_threshold)
        return DEFAULT_IDENTITY_THRESHOLDS[self.identity_net]


GROUPS: dict[str, type[_Group]] = {
    "sampling": SamplingSettings,
    "photo": PhotoSettings,
    "output": OutputSettings,
    "control": RestoreOptions,
}


def specs() -> dict[str, tuple[str, Spec, Any]]:
    """Every setting: name -> (its group, its :class:`Spec`, its default). Names are unique across the groups
    (the HTTP API's request is one flat object)."""
    out: dict[str, tuple[str, Spec, Any]] = {}
    for group, cls in GROUPS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in out, f"setting {f.name} declared twice"
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            out[f.name] = (group, f.metadata["setting"], default)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True)
class RestoreSettings:
    """Every setting of a restore request, one object to pass whole: ``settings.sampling``, ``.photo``,
    ``.output``, ``.control``. Checks across groups run here (the fidelity dial sets start sigma and guidance)."""

    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    photo: PhotoSettings = field(default_factory=PhotoSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    control: RestoreOptions = field(default_factory=RestoreOptions)

    def __post_init__(self) -> None:
        for name, cls in GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise SettingError(f"{name}: expected a {cls.__name__}, got {_text(getattr(self, name))}")
        s = self.sampling
        if self.control.fidelity is not None and (s.start_sigma is not None or s.guidance_scale is not None):
            raise SettingError(
                f"--fidelity {_text(self.control.fidelity)} (fidelity): sets the start sigma and guidance itself; "
                "give --fidelity or --start-sigma/--guidance-scale (fidelity or start_sigma/guidance_scale)"
            )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{"sampling": {...}, "photo": {...}, "output": {...}, "control": {...}}``, JSON-ready;
        ``from_dict(s.to_dict()) == s``."""
        return {name: getattr(self, name).to_dict() for name in GROUPS}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RestoreSettings:
        """The nested mapping of :meth:`to_dict` (groups and settings left out take their defaults)."""
        if not isinstance(values, Mapping):
            raise SettingError(f"settings: expected an object of groups, got {_text(values)}")
        unknown = sorted(set(values) - set(GROUPS))
        if unknown:
            raise SettingError(f"settings: unknown group {unknown[0]!r}; known: {', '.join(GROUPS)}")
        return cls(**{name: GROUPS[name].from_dict(v) for name, v in values.items()})

    @classmethod
    def from_flat(cls, values: Mapping[str, Any], *, base: RestoreSettings | None = None) -> RestoreSettings:
        """A flat mapping ``{"upscale": 2, "candidates": 4}`` (every name is unique across the groups) -> the
        settings, the others from ``base`` (default: the defaults). Unknown names are a SettingError."""
        table = specs()
        unknown = sorted(set(values) - set(table))
        if unknown:
            raise SettingError(f"unknown setting {unknown[0]!r}; known: {', '.join(table)}")
        base = base or cls()
        groups = {name: dict(getattr(base, name).to_dict()) for name in GROUPS}
        for name, value in values.items():
            groups[table[name][0]][name] = value
        return cls(**{name: GROUPS[name](**groups[name]) for name in GROUPS})

    @classmethod
    def from_request(cls, values: Any, *, base: RestoreSettings | None = None) -> RestoreSettings:
        """The HTTP API's request object (flat, the settings with ``api``) -> the settings; the others are the
        server's (``base``). A setting a request may not set is a SettingError naming the serve flag."""
        if not isinstance(values, Mapping):
            raise SettingError(f'options: expected a JSON object such as {{"upscale": 2}}, got {_text(values)}')
        table = specs()
        for name in values:
            if name in table and not table[name][1].api:
                spec = table[name][1]
                where = f"prefrestore serve {spec.flag}" if "serve" in spec.commands else "the command line"
                raise SettingError(f"{spec.flag} ({name}): set by the server ({where}), not per request")
            if name not in table:
                known = ", ".join(n for n, (_, s, _) in table.items() if s.api)
                raise SettingError(f"options: unknown option {name!r}; known options: {known}")
        return cls.from_flat(values, base=base)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, command: str = "restore") -> RestoreSettings:
        """The flags :func:`add_arguments` declared for ``command``, from parsed arguments (command-line text,
        read as JSON would send it, then checked as every other value); the settings ``command`` does not take
        keep their defaults. The namespace's attributes then hold the checked values (``args.upscale`` a float)."""
        groups: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
        for name, (group, spec, _) in specs().items():
            if command in spec.commands and hasattr(args, name):
                groups[group][name] = check_value(name, spec, getattr(args, name), text=True)
        settings = cls(**{name: GROUPS[name](**groups[name]) for name in GROUPS})
        for group, names in groups.items():
            for name in names:
                setattr(args, name, getattr(getattr(settings, group), name))
        return settings

    def flat(self) -> dict[str, Any]:
        """Every setting by name, JSON-ready (names are unique across the groups)."""
        return {k: v for name in GROUPS for k, v in getattr(self, name).to_dict().items()}

    def request_json(self) -> dict[str, Any]:
        """The flat JSON object of the settings a request may set (what the API echoes as a job's options)."""
        table = specs()
        return {k: v for k, v in self.flat().items() if table[k][1].api}


# ---------------------------------------------------------------------------------------------------------------
# Generated: the command-line flags, the JSON Schema, the docs table


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of every setting ``command`` takes, one argument group per settings group. Values are kept
    as text and checked by :meth:`RestoreSettings.from_namespace` (the command's ``check_arguments``), so a bad
    one gets the same one-line message as in Python and the HTTP API."""
    for group, cls in GROUPS.items():
        fields = [f for f in dataclasses.fields(cls) if command in f.metadata["setting"].commands]
        if not fields:
            continue
        title = group if group != "control" else "control (fidelity, best-of-N, identity guard, face choice)"
        g = parser.add_argument_group(f"{title} settings (prefrestore.restore.options)")
        for f in fields:
            spec: Spec = f.metadata["setting"]
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            default = (spec.command_defaults or {}).get(command, default)
            if spec.kind == "bool":
                g.add_argument(*spec.flags, dest=f.name, action="store_true", default=default, help=spec.help)
                continue
            metavar = spec.metavar or ("{" + ",".join(spec.choices or ()) + "}" if spec.kind == "choice" else None)
            g.add_argument(*spec.flags, dest=f.name, default=default, metavar=metavar, help=spec.help)


def json_schema(*, api_only: bool = True) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the HTTP API's flat request object (every setting with ``api_only=False``).
    Extensions the page reads: ``x-group``, ``x-flag``, ``x-ui`` (show a control), ``x-step``, ``x-kind``."""
    props: dict[str, Any] = {}
    for name, (group, spec, default) in specs().items():
        if api_only and not spec.api:
            continue
        p: dict[str, Any]
        if spec.kind in ("number", "integer"):
            p = {"type": spec.kind}
            if spec.minimum is not None:
                p["exclusiveMinimum" if spec.low_open else "minimum"] = spec.minimum
            if spec.maximum is not None:
                p["maximum"] = spec.maximum
        elif spec.kind == "choice":
            p = {"type": "string", "enum": list(spec.choices or ())}
        elif spec.kind == "bool":
            p = {"type": "boolean"}
        elif spec.kind == "indices":
            p = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
        elif spec.kind == "weights":
            p = {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "propertyNames": {"enum": list(spec.choices or ())},
            }
        else:
            p = {"type": "string"}
        if spec.nullable:
            p = {"anyOf": [p, {"type": "null"}]}
        p.update(
            {
                "description": spec.help,
                "default": list(default) if isinstance(default, tuple) else default,
                "x-group": group,
                "x-flag": spec.flag,
                "x-kind": spec.kind,
                "x-ui": spec.ui,
            }
        )
        if spec.step is not None:
            p["x-step"] = spec.step
        props[name] = p
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "prefrestore restore options",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
    }


def settings_table(group: str) -> str:
    """The Markdown table of a group's settings (what the docs pages hold between their ``settings-table``
    markers; ``tools/settings_tables.py`` writes them, tests/test_settings.py checks that the pages match)."""
    rows = ["| setting | flag | default | values | commands | API | meaning |", "|---|---|---|---|---|---|---|"]
    for f in dataclasses.fields(GROUPS[group]):
        spec: Spec = f.metadata["setting"]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flags = ", ".join(f"`{x}`" for x in spec.flags)
        values = spec.expected().replace("|", "\\|") + (" or null" if spec.nullable else "")
        help_ = spec.help.replace("|", "\\|")
        rows.append(
            f"| `{f.name}` | {flags} | `{_text(default)}` | {values} | {', '.join(spec.commands)} | "
            f"{'yes' if spec.api else 'no'} | {help_} |"
        )
    return "\n".join(rows)


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


_TABLE_BLOCK = re.compile(r"(<!-- settings-table: (\w+) -->\n).*?(<!-- /settings-table -->)", re.S)


def render_settings_tables(page: str, *, name: str = "docs/settings.md") -> str:
    """``page`` (Markdown) with every ``<!-- settings-table: GROUP -->`` ... ``<!-- /settings-table -->`` block holding
    :func:`settings_table` of its group; an unknown group is a one-line error naming ``name``."""

    def table(m: re.Match) -> str:
        if m[2] not in GROUPS:
            raise ValueError(f"{name}: unknown settings group {m[2]!r}; groups: {', '.join(GROUPS)}")
        return f"{m[1]}{settings_table(m[2])}\n{m[3]}"

    return _TABLE_BLOCK.sub(table, page)
