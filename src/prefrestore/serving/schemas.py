"""The HTTP API's side of a request's settings, and the server settings: plain code, no web framework needed.

A request's options are one flat JSON object of the settings of :class:`prefrestore.restore.options.RestoreSettings` that
a request may set (``api`` in their declaration: seed, the photo and output settings, every control option), read
by :meth:`~prefrestore.restore.options.RestoreSettings.from_request` over the server's own settings (model, steps, device,
batch size: ``prefrestore serve``'s flags), and checked there by the one check of every setting, so a bad value
gets the 422 answer with the same line as the command line's usage error. Here: the bounds on the raw text
(:func:`request_settings`), the batching key, the option listing of ``GET /v1/options`` (generated from the same
declaration, like the JSON Schema the page builds its controls from: :func:`prefrestore.restore.options.json_schema`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..restore.options import RestoreSettings, SettingError, specs

MAX_OPTIONS_BYTES = 16 * 1024
MAX_OPTIONS_DEPTH = 4


def request_settings(raw: str | bytes | None, base: RestoreSettings | None = None) -> RestoreSettings:
    """The ``options`` text of a request -> its settings (the server's ``base`` for the rest). Bounded before
    parsing: at most ``MAX_OPTIONS_BYTES`` and ``MAX_OPTIONS_DEPTH`` levels of nesting (a request is one flat
    object; a few option values are lists or objects), so no request can make the parser recurse or allocate
    without bound. Every refusal is a :class:`~prefrestore.restore.options.SettingError` of one line."""
    import json

    base = base or RestoreSettings()
    if raw is None or raw == "" or raw == b"":
        return base
    if len(raw) > MAX_OPTIONS_BYTES:
        raise SettingError(
            f"options: {len(raw)} bytes, above the {MAX_OPTIONS_BYTES} byte limit; send only the "
            'options you change, e.g. {"upscale": 2}'
        )
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth = _json_depth(text)
    if depth > MAX_OPTIONS_DEPTH:
        raise SettingError(
            f"options: JSON nested {depth} levels deep (at most {MAX_OPTIONS_DEPTH}); send one flat "
            'object such as {"upscale": 2}'
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SettingError(f'options: not valid JSON ({err.msg}); e.g. {{"upscale": 2}}') from None
    except (ValueError, RecursionError) as err:  # e.g. an integer of more digits than Python converts
        raise SettingError(
            f'options: unusable JSON ({str(err).splitlines()[0][:80]}); e.g. {{"upscale": 2}}'
        ) from None
    return RestoreSettings.from_request(data, base=base)


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


def batch_key(settings: RestoreSettings) -> tuple:
    """Jobs with equal keys can share one pipeline run (one config, one detector, one layout); hashable. A face
    selection refers to one photo's faces, so such a job runs alone."""
    if settings.control.faces is not None:
        return ("alone", id(settings))
    return _frozen(settings.to_dict())


def _frozen(value: Any) -> Any:
    """JSON-like value -> an equal-comparing hashable one (dicts as sorted item tuples, lists as tuples)."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


_LISTED_KINDS = {"number": "float", "integer": "int", "indices": "int_list"}


def describe_options() -> list[dict[str, Any]]:
    """Each setting a request may set: name, group, default, kind, bounds, choices, help, whether the page shows
    it (``GET /v1/options``'s ``options``; generated from the declaration, as its ``schema`` is)."""
    out = []
    for name, (group, spec, default) in specs().items():
        if not spec.api:
            continue
        out.append(
            {
                "name": name,
                "group": group,
                "default": list(default) if isinstance(default, tuple) else default,
                "kind": _LISTED_KINDS.get(spec.kind, spec.kind),
                "help": spec.help,
                "minimum": spec.minimum,
                "maximum": spec.maximum,
                "choices": list(spec.choices or ()) if spec.kind == "choice" else [],
                "ui": spec.ui,
                "step": spec.step,
                "nullable": spec.nullable,
                "flag": spec.flag,
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
    restore: the settings every request starts from: the server's own (model, steps, device, batch size: ``prefrestore
        serve``'s flags) and the defaults of those a request may set.
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
    restore: RestoreSettings = field(default_factory=RestoreSettings)

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
