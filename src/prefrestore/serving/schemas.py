"""Request options and server settings: plain dataclasses, no web framework needed to import them.

:class:`RestoreOptions` is the schema of a restoration request, shared by the HTTP API (JSON ``options``), the page
(which builds its controls from ``GET /v1/options``, i.e. from :func:`describe_options`) and Python
(``RestoreOptions(...).pipeline_config()`` / ``.output_layout(root)`` feed ``prefrestore.restore.pipeline``). A request is
one flat JSON object with two kinds of names:

* the restoration-control options of ``prefrestore.restore.options.OPTIONS`` (fidelity, candidates, rerank_weights,
  identity_guard, identity_threshold, color_fix, faces, min_face_size, max_face_size, blend): declared there only,
  read and validated by ``prefrestore.restore.options.RestoreOptions.from_mapping`` (the CLI's names, defaults, bounds,
  help and messages) and held in :attr:`RestoreOptions.control`;
* the photo and output settings that are not in ``OPTIONS``, the fields below (each a flag of ``prefrestore
  restore``: ``-s``, ``--ext``, ``--jpeg-quality``, ``--det-threshold``, ``--max-faces``, ``--only-center-face``,
  ``--color-match``, ``--seed``).

Both map onto the pipeline through ``PipelineConfig.for_photos``, the function ``prefrestore restore`` builds its
config with. A new control option is added to ``prefrestore.restore.options.OPTIONS`` and appears here (API, listing,
batching); to show it on the page, add its name to :data:`PAGE_CONTROLS`. A new photo-level setting is a field
here with ``metadata=_opt(...)`` (kind, help, bounds, ``ui=True`` to show it on the page).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..restore import options
from ..restore.options import OPTIONS, SPECS

OPTION_KINDS = ("float", "int", "bool", "choice", "int_list", "weights")

# The control options the page shows, with their step (None: not a number); the others are API-only.
PAGE_CONTROLS: dict[str, float | None] = {
    "fidelity": 0.05,
    "candidates": 1,
    "rerank_weights": None,
    "identity_guard": None,
    "color_fix": None,
    "blend": 0.05,
}


def _opt(
    kind: str,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    ui: bool = False,
    step: float | None = None,
    nullable: bool = False,
) -> dict:
    assert kind in OPTION_KINDS
    return {
        "kind": kind,
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "choices": list(choices),
        "ui": ui,
        "step": step,
        "nullable": nullable,
    }


class OptionError(ValueError):
    """A request option is unknown or out of range; ``str(err)`` is one line naming the option and the fix."""


@dataclass(frozen=True)
class RestoreOptions:
    """What one restoration request may set. Defaults are ``prefrestore restore``'s."""

    upscale: float = field(
        default=2.0, metadata=_opt("float", "output size / input size", minimum=0.25, maximum=8, step=0.25, ui=True)
    )
    output_format: str = field(
        default="auto",
        metadata=_opt(
            "choice",
            "restored photo format; auto: JPEG for JPEG inputs, PNG otherwise",
            choices=("auto", "png", "jpg"),
            ui=True,
        ),
    )
    jpeg_quality: int = field(default=95, metadata=_opt("int", "JPEG quality", minimum=1, maximum=100))
    det_threshold: float = field(
        default=0.95,
        metadata=_opt(
            "float",
            "detection confidence threshold (real faces score > 0.97)",
            minimum=0,
            maximum=1,
            step=0.01,
            ui=True,
        ),
    )
    max_faces: int | None = field(
        default=None,
        metadata=_opt("int", "restore at most N faces, largest first", minimum=1, maximum=1000, nullable=True),
    )
    only_center_face: bool = field(default=False, metadata=_opt("bool", "restore only the face nearest the centre"))
    color_match: str = field(
        default="lowfreq",
        metadata=_opt(
            "choice",
            "paste-back: match each restored face's colour and tone to the photo around it as it is pasted "
            "(prefrestore restore --color-match); color_fix colours the face crop itself, before it is written or pasted",
            choices=("lowfreq", "meanstd", "none"),
        ),
    )
    seed: int = field(
        default=0, metadata=_opt("int", "sampling seed, the same for every face", minimum=0, maximum=2**31 - 1)
    )
    # the options of prefrestore.restore.options.OPTIONS (flat in the JSON, e.g. {"candidates": 4}), validated there
    control: options.RestoreOptions = field(default_factory=options.RestoreOptions)

    def __post_init__(self) -> None:
        for f in _own_fields():
            _check(f.name, getattr(self, f.name), f.metadata)
        if not isinstance(self.control, options.RestoreOptions):
            raise OptionError("control: expected a prefrestore.restore.options.RestoreOptions")

    # -- mapping onto the pipeline (the same function as prefrestore restore's) ---------------------------------

    def pipeline_config(self, *, batch_size: int = 8):
        """-> :class:`prefrestore.restore.pipeline.PipelineConfig`, what ``prefrestore restore`` builds from the same flags."""
        from ..restore.pipeline import PipelineConfig

        return PipelineConfig.for_photos(
            self.control,
            upscale=self.upscale,
            det_threshold=self.det_threshold,
            max_faces=self.max_faces,
            only_center_face=self.only_center_face,
            color_match=self.color_match,
            batch_size=batch_size,
            seed=self.seed,
        )

    def output_layout(self, root: Path):
        """-> :class:`prefrestore.restore.file_run.OutputLayout` under ``root`` (format and JPEG quality)."""
        from ..restore.file_run import OutputLayout

        return OutputLayout(Path(root), ext=self.output_format, jpeg_quality=self.jpeg_quality, overwrite=True)

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one pipeline run (one config, one detector, one layout); hashable. A face
        selection refers to one photo's faces, so such a job runs alone."""
        if self.control.faces is not None:
            return ("alone", id(self))
        return tuple(getattr(self, f.name) for f in _own_fields()) + (_frozen(self.control.to_dict()),)

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object (what a request sends; every option, defaults included)."""
        return {**{f.name: getattr(self, f.name) for f in _own_fields()}, **self.control.to_dict()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RestoreOptions:
        """A flat JSON object -> options. Unknown names and wrong types or ranges raise :class:`OptionError`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise OptionError('options: expected a JSON object such as {"upscale": 2}')
        own = {f.name: f for f in _own_fields()}
        unknown = sorted(set(data) - set(own) - set(SPECS))
        if unknown:
            raise OptionError(f"options: unknown option {unknown[0]!r}; known options: {', '.join([*own, *SPECS])}")
        values = {name: _coerce(name, value, own[name].metadata) for name, value in data.items() if name in own}
        try:
            control = options.RestoreOptions.from_mapping({k: v for k, v in data.items() if k in SPECS})
        except ValueError as err:
            raise OptionError(api_message(str(err))) from None
        return cls(**values, control=control)

    @classmethod
    def from_text(cls, raw: str | bytes | None) -> RestoreOptions:
        """The ``options`` text of a request -> options. Bounded before parsing: at most ``MAX_OPTIONS_BYTES`` and
        ``MAX_OPTIONS_DEPTH`` levels of nesting (a request is one flat object; a few option values are lists or
        objects), so no request can make the parser recurse or allocate without bound. Every refusal is an
        :class:`OptionError` of one line."""
        import json

        if raw is None or raw == "" or raw == b"":
            return cls()
        if len(raw) > MAX_OPTIONS_BYTES:
            raise OptionError(
                f"options: {len(raw)} bytes, above the {MAX_OPTIONS_BYTES} byte limit; send only the "
                'options you change, e.g. {"upscale": 2}'
            )
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        depth = _json_depth(text)
        if depth > MAX_OPTIONS_DEPTH:
            raise OptionError(
                f"options: JSON nested {depth} levels deep (at most {MAX_OPTIONS_DEPTH}); send one flat "
                'object such as {"upscale": 2}'
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise OptionError(f'options: not valid JSON ({err.msg}); e.g. {{"upscale": 2}}') from None
        except (ValueError, RecursionError) as err:  # e.g. an integer of more digits than Python converts
            raise OptionError(
                f'options: unusable JSON ({str(err).splitlines()[0][:80]}); e.g. {{"upscale": 2}}'
            ) from None
        return cls.from_json(data)


MAX_OPTIONS_BYTES = 16 * 1024
MAX_OPTIONS_DEPTH = 4


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, brackets inside strings not counted (no parsing: a text of
    any depth costs one pass)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _own_fields() -> tuple[dataclasses.Field, ...]:
    """The photo and output settings (every field but ``control``)."""
    return tuple(f for f in dataclasses.fields(RestoreOptions) if f.name != "control")


def _frozen(value: Any) -> Any:
    """JSON-like value -> an equal-comparing hashable one (dicts as sorted item tuples, lists as tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


_FLAG_NAMES = {spec.flag: spec.name for spec in OPTIONS}


def api_message(message: str) -> str:
    """A ``prefrestore.restore.options`` message, which names the CLI's flags (``--candidates 0: must be >= 1``) -> the
    same message naming the request's JSON options (``options.candidates 0: must be >= 1``)."""
    return re.sub(
        r"--[a-z][a-z-]*", lambda m: f"options.{_FLAG_NAMES[m[0]]}" if m[0] in _FLAG_NAMES else m[0], message
    )


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
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
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
    raise AssertionError(kind)


def _check(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None:
        if not meta["nullable"]:
            raise OptionError(f"options.{name}: must not be null")
        return
    if meta["kind"] == "choice":
        if value not in meta["choices"]:
            raise OptionError(f"options.{name}: {value!r} is not one of {', '.join(meta['choices'])}")
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(f"options.{name}: {value} is not a finite number")
    lo, hi = meta["minimum"], meta["maximum"]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise OptionError(f"options.{name}: {value} is out of range; expected {_kind_text(meta)}")


def _kind_text(meta: Mapping[str, Any]) -> str:
    kind = meta["kind"]
    if kind == "choice":
        return "one of " + ", ".join(meta["choices"])
    rng = f" in [{meta['minimum']}, {meta['maximum']}]" if meta["minimum"] is not None else ""
    text = {"float": "a number", "int": "an integer", "bool": "true or false"}[kind] + rng
    return text + (" or null" if meta["nullable"] else "")


_KINDS = {"number": "float", "integer": "int", "string": "choice", "indices": "int_list", "weights": "weights"}


def describe_options() -> list[dict[str, Any]]:
    """Each option's name, default, kind, bounds, choices and help (``GET /v1/options``; the page builds its
    controls from the entries with ``ui``): the photo settings, then every option of ``prefrestore.restore.options.OPTIONS``
    as declared there (``source`` says which)."""
    out = []
    for f in _own_fields():
        out.append({"name": f.name, "default": f.default, **f.metadata, "source": "serve"})
    for spec in OPTIONS:
        assert spec.type != "string" or spec.choices, spec.name  # every string option is a choice
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        out.append(
            {
                "name": spec.name,
                "default": dict(default) if isinstance(default, dict) else default,
                "kind": _KINDS[spec.type],
                "help": spec.help,
                "minimum": spec.minimum,
                "maximum": spec.maximum,
                "choices": list(spec.choices or ()),
                "ui": spec.name in PAGE_CONTROLS,
                "step": PAGE_CONTROLS.get(spec.name),
                "nullable": spec.nullable,
                "source": "prefrestore.restore.options",
            }
        )
    return out


# ----------------------------------------------------------------------------------------------------------------
# Server settings


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # the Host names a loopback server answers by default


def resolve_bind(host: str) -> str:
    """The address ``host`` binds: an IP literal as is, a name resolved once (its first address). The server binds
    this address, so what was checked is what is bound (a name cannot resolve differently later). Raises
    UserError naming the host when it does not resolve."""
    import ipaddress
    import socket

    from ..errors import UserError

    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise UserError(f"--host {host}: does not resolve ({err}); give an address such as 127.0.0.1") from None
    if not infos:
        raise UserError(f"--host {host}: does not resolve; give an address such as 127.0.0.1")
    return str(infos[0][4][0])


def is_loopback(address: str) -> bool:
    """Whether an IP address (what :func:`resolve_bind` returns) is loopback: 127.0.0.0/8, ::1 or ::ffff:127.x.
    Names are never judged by their spelling (``127.evil.example`` is a name like any other)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


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
    token: bearer token required on /v1 when set (checked before a body is read); required when the bind address
        is not loopback.
    cors_origins: origins allowed by CORS; empty = CORS off (same-origin only).
    allowed_hosts: Host header names (or ``*``) answered besides the defaults: loopback names on a loopback bind;
        on any other bind also IP literals and this machine's names. Anything else gets 400 (DNS rebinding).
    max_uploads_per_client: request bodies one client address may have in flight at once (429 beyond).
    min_upload_bytes_per_s / upload_grace_s: after ``upload_grace_s`` an upload must keep up this average rate
        (``n`` bytes arrived by ``upload_grace_s + n / rate`` s), else 408: a trickling client is cut off.
    bind: the address actually bound (``host`` resolved once; set by the constructor).
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
    allowed_hosts: tuple[str, ...] = ()
    max_uploads_per_client: int = 4
    min_upload_bytes_per_s: float = 16 * 1024
    upload_grace_s: float = 5.0
    batch_wait_s: float = 0.02
    bind: str = ""

    def __post_init__(self) -> None:
        from ..errors import UserError

        object.__setattr__(self, "bind", self.bind or resolve_bind(self.host))
        if not is_loopback(self.bind) and not self.token:
            shown = self.host if self.host == self.bind else f"{self.host} ({self.bind})"
            raise UserError(
                f"--host {shown}: a non-loopback bind needs a bearer token; pass --token or set "
                "PREFRESTORE_TOKEN (or bind 127.0.0.1)"
            )
        for name in (
            "max_body_bytes",
            "max_pixels",
            "max_queued",
            "max_batch",
            "max_uploads",
            "max_uploads_per_client",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 1")
        for name in ("job_timeout_s", "result_ttl_s", "read_timeout_s", "upload_grace_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name[:-2].replace('_', '-')} {getattr(self, name)}: must be > 0 seconds")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port {self.port}: must be in 1..65535, e.g. 7860")
        if not self.min_upload_bytes_per_s > 0:
            raise UserError(f"--min-upload-rate {self.min_upload_bytes_per_s / 1024:g}: must be > 0 KiB/s")
        for name in self.allowed_hosts:
            if not name or any(c in name for c in "/ @"):
                raise UserError(
                    f"--allowed-host {name!r}: give a host name or address (no scheme, path or port), or * for any"
                )

    @property
    def loopback(self) -> bool:
        """Whether the bound address is loopback (decided on the resolved address, never on the name)."""
        return is_loopback(self.bind)
