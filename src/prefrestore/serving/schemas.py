"""Request options and server settings: plain dataclasses, no web framework needed to import them.

:class:`RestoreOptions` is the one schema of a restoration request, shared by the HTTP API (JSON ``options``), the
page (which builds its controls from ``GET /v1/options``, i.e. from :func:`describe_options`) and Python
(``RestoreOptions(...).pipeline_config()`` / ``.output_layout(root)`` feed ``prefrestore.pipeline``). Its field
names and defaults are those of ``prefrestore restore``'s flags (``--upscale``, ``--det-threshold`` ...).

Adding an option (e.g. ``fidelity`` or ``candidates``) is one change here: a field with ``metadata=_opt(...)``
(kind, help, bounds, ``ui=True`` to show it on the page) and, if the pipeline needs it, one line in
:meth:`RestoreOptions.pipeline_config` (or :meth:`output_layout`). Parsing, validation messages, the page's
control, batching (jobs are batched only with jobs of equal options) and the API's option listing follow from it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTION_KINDS = ("float", "int", "bool", "choice", "int_list")


def _opt(kind: str, help: str, *, minimum: float | None = None, maximum: float | None = None,
         choices: tuple[str, ...] = (), ui: bool = False, step: float | None = None, nullable: bool = False) -> dict:
    assert kind in OPTION_KINDS
    return {"kind": kind, "help": help, "minimum": minimum, "maximum": maximum, "choices": list(choices),
            "ui": ui, "step": step, "nullable": nullable}


class OptionError(ValueError):
    """A request option is unknown or out of range; ``str(err)`` is one line naming the option and the fix."""


@dataclass(frozen=True)
class RestoreOptions:
    """What one restoration request may set. Defaults are ``prefrestore restore``'s."""

    upscale: float = field(default=2.0, metadata=_opt(
        "float", "output size / input size", minimum=0.25, maximum=8, step=0.25, ui=True))
    output_format: str = field(default="auto", metadata=_opt(
        "choice", "restored photo format; auto: JPEG for JPEG inputs, PNG otherwise", choices=("auto", "png", "jpg"),
        ui=True))
    jpeg_quality: int = field(default=95, metadata=_opt("int", "JPEG quality", minimum=1, maximum=100))
    det_threshold: float = field(default=0.95, metadata=_opt(
        "float", "detection confidence threshold (real faces score > 0.97)", minimum=0, maximum=1, step=0.01,
        ui=True))
    min_face_size: float = field(default=20.0, metadata=_opt(
        "float", "ignore faces smaller than this many pixels", minimum=0, maximum=4096))
    max_faces: int | None = field(default=None, metadata=_opt(
        "int", "restore at most N faces, largest first", minimum=1, maximum=1000, nullable=True))
    only_center_face: bool = field(default=False, metadata=_opt("bool", "restore only the face nearest the centre"))
    faces: tuple[int, ...] | None = field(default=None, metadata=_opt(
        "int_list", "restore only these faces (indices from an earlier result of the same photo and options)",
        minimum=0, maximum=1000, nullable=True))
    color_match: str = field(default="lowfreq", metadata=_opt(
        "choice", "match restored faces' colour and tone to the photo", choices=("lowfreq", "meanstd", "none")))
    seed: int = field(default=0, metadata=_opt("int", "sampling seed, the same for every face", minimum=0,
                                               maximum=2**31 - 1))
    fidelity: float | None = field(default=None, metadata=_opt(
        "float", "fidelity dial: 1 = closest to the input, 0 = most generative; empty = the model's own sampling "
        "(prefrestore restore --fidelity)", minimum=0, maximum=1, step=0.05, ui=True, nullable=True))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.name, getattr(self, f.name), f.metadata)

    # -- mapping onto the pipeline (the only place that knows which option goes where) --------------------------

    def pipeline_config(self, *, batch_size: int = 8):
        """-> :class:`prefrestore.pipeline.PipelineConfig` (what ``prefrestore restore`` builds from its flags)."""
        from .. import options
        from ..faces.detect import SelectConfig
        from ..faces.paste import BlendConfig
        from ..pipeline import PipelineConfig

        # Of issue 15's control options (prefrestore.options.OPTIONS) the server offers the fidelity dial; best-of-N,
        # the identity guard and the colour fix are not offered yet, so it restores as `prefrestore restore
        # [--fidelity F] --identity-guard off --color-fix none`. Unifying this class with prefrestore.options is a
        # later step.
        control = options.RestoreOptions(min_face_size=self.min_face_size, identity_guard="off", color_fix="none",
                                         fidelity=self.fidelity)
        select = SelectConfig(score_threshold=self.det_threshold, max_faces=self.max_faces,
                              only_center_face=self.only_center_face)
        return PipelineConfig.from_options(control, upscale=self.upscale, select=select,
                                           blend=dataclasses.replace(BlendConfig(), color_match=self.color_match),
                                           batch_size=batch_size, seed=self.seed)

    def output_layout(self, root: Path):
        """-> :class:`prefrestore.pipeline.OutputLayout` under ``root`` (format and JPEG quality)."""
        from ..pipeline import OutputLayout

        return OutputLayout(Path(root), ext=self.output_format, jpeg_quality=self.jpeg_quality, overwrite=True)

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one pipeline run (one config, one detector, one layout). A face selection
        refers to one photo's faces, so such a job runs alone."""
        return ("alone", id(self)) if self.faces is not None else dataclasses.astuple(self)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["faces"] is not None:
            d["faces"] = list(d["faces"])
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RestoreOptions:
        """A JSON object -> options. Unknown names and wrong types or ranges raise :class:`OptionError`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise OptionError("options: expected a JSON object such as {\"upscale\": 2}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise OptionError(f"options: unknown option {unknown[0]!r}; known options: {', '.join(known)}")
        values = {name: _coerce(name, value, known[name].metadata) for name, value in data.items()}
        return cls(**values)


def _coerce(name: str, value: Any, meta: Mapping[str, Any]) -> Any:
    kind = meta["kind"]
    if value is None and meta["nullable"]:
        return None
    bad = OptionError(f"options.{name}: expected {_kind_text(meta)}, got {value!r}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "int":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise bad
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if kind == "choice":
        if value not in meta["choices"]:
            raise bad
        return value
    if kind == "int_list":
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad
        return tuple(sorted(set(value)))
    raise AssertionError(kind)


def _check(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        if not meta["nullable"]:
            raise OptionError(f"options.{name}: must not be null")
        return
    values = value if meta["kind"] == "int_list" else [value]
    if meta["kind"] == "int_list" and not values:
        raise OptionError(f"options.{name}: give at least one face index, or null for all faces")
    for v in values:
        if meta["kind"] == "choice":
            if v not in meta["choices"]:
                raise OptionError(f"options.{name}: {v!r} is not one of {', '.join(meta['choices'])}")
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise OptionError(f"options.{name}: {v} is not a finite number")
        lo, hi = meta["minimum"], meta["maximum"]
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise OptionError(f"options.{name}: {v} is out of range; expected {_kind_text(meta)}")


def _kind_text(meta: Mapping[str, Any]) -> str:
    kind = meta["kind"]
    if kind == "choice":
        return "one of " + ", ".join(meta["choices"])
    rng = f" in [{meta['minimum']}, {meta['maximum']}]" if meta["minimum"] is not None else ""
    text = {"float": "a number", "int": "an integer", "bool": "true or false",
            "int_list": "a list of integers"}[kind] + rng
    return text + (" or null" if meta["nullable"] else "")


def describe_options() -> list[dict[str, Any]]:
    """Each option's name, default and metadata (``GET /v1/options``; the page builds its controls from it)."""
    out = []
    for f in dataclasses.fields(RestoreOptions):
        default = f.default
        out.append({"name": f.name, "default": list(default) if isinstance(default, tuple) else default,
                    **f.metadata})
    return out


# ----------------------------------------------------------------------------------------------------------------
# Server settings


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class ServerSettings:
    """Limits and safety settings of ``prefrestore serve`` (all have command-line flags).

    max_body_bytes: request bodies above this are refused with 413 (before they are read in full).
    max_pixels: photos whose header claims more pixels are refused before decoding (400).
    max_queued: jobs waiting (not running) before new ones get 429 with Retry-After.
    max_batch: photos of queued jobs with equal options restored in one pipeline run (faces batched across them).
    job_timeout_s: a job not finished this long after it was submitted fails with "timed out".
    result_ttl_s: finished jobs and their files are removed this long after they finished.
    workdir: the only folder the server writes to (uploads, results); created, never outside.
    max_uploads: request bodies read at the same time before new ones get 429 (bounds upload memory).
    read_timeout_s: an upload that sends nothing for this long gets 408.
    token: bearer token required on /v1 when set; required when binding a non-loopback host.
    cors_origins: origins allowed by CORS; empty = CORS off (same-origin only).
    """

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 7860
    max_body_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_queued: int = 64
    max_batch: int = 8
    job_timeout_s: float = 300.0
    result_ttl_s: float = 600.0
    max_uploads: int = 16
    read_timeout_s: float = 60.0
    token: str | None = None
    cors_origins: tuple[str, ...] = ()
    batch_wait_s: float = 0.02

    def __post_init__(self) -> None:
        from ..errors import UserError

        if not is_loopback(self.host) and not self.token:
            raise UserError(f"--host {self.host}: a non-loopback bind needs a bearer token; pass --token or set "
                            "PREFRESTORE_TOKEN (or bind 127.0.0.1)")
        for name in ("max_body_bytes", "max_pixels", "max_queued", "max_batch", "max_uploads"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        for name in ("job_timeout_s", "result_ttl_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name[:-2].replace('_', '-')} {getattr(self, name)}: must be > 0 seconds")
