"""The FastAPI application of ``prefrestore serve``: the page, ``/v1`` API, health checks, limits and auth.

Routes (OpenAPI at ``/docs``): ``GET /`` (the page), ``GET /healthz``, ``GET /readyz`` (model loaded),
``GET /v1/options``, ``POST /v1/restore`` (synchronous), ``POST /v1/jobs`` (asynchronous), ``GET /v1/jobs/{id}``,
``GET /v1/jobs/{id}/events`` (SSE), ``DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result``,
``GET /v1/jobs/{id}/faces/{index}/{cropped|restored}``, ``GET /v1/results.zip?ids=...``.

An upload is either ``multipart/form-data`` (a ``file`` part and an optional ``options`` part holding JSON) or the
raw image bytes as the body (``Content-Type: image/*``, ``application/octet-stream`` or none; anything else is a
415), with ``?name=`` and ``?options=`` (JSON) in the query; the OpenAPI document declares both (``routes.UPLOAD_BODY``).
Bodies are parsed in memory (bounded by ``max_body_bytes``), never spooled to a temporary file outside the work
folder. Errors are JSON ``{"detail": "one line naming the file and the fix"}`` (documented as ``ErrorBody``).

This module assembles the app (lifespan, CORS, the ``Guard`` middleware: Host, Origin and token before anything is
read; the ``BodyLimit`` middleware: upload size, slots, per-client slots, minimum rate); the routes are registered
in groups by ``routes.py``, and uploads are read by ``uploads.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi_offline import FastAPIOffline

from .routes import API_VERSION, STATIC, Server, add_routes, token_matches
from .runner import ModelInfo, PipelineRunner
from .schemas import LOOPBACK_NAMES, ServerSettings, is_loopback
from .uploads import parse_multipart, safe_name

__all__ = ["API_VERSION", "STATIC", "BodyLimit", "Guard", "Server", "create_app", "parse_multipart", "safe_name"]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Who may ask: Host, Origin, token (before anything is read)


class Guard:
    """ASGI middleware that answers every HTTP request's first question before any body is read.

    * **Host** (DNS rebinding): a page on another site can point its own name at 127.0.0.1 and drive a local
      server with the browser's ``Host: evil.example``. Only the names of :func:`allowed_host` are answered; the
      rest get 400.
    * **Origin** (cross-site requests): a request carrying an ``Origin`` header is answered only when that origin
      is the server's own (``scheme://`` + the request's Host) or one of ``--cors-origin``; else 403.
    * **Token**: with a token, every ``/v1`` request (but CORS preflights, which browsers send without
      credentials) must carry ``Authorization: Bearer TOKEN``, checked here, so a client without it never holds
      an upload slot (401 at once, the body unread).
    """

    def __init__(self, app, settings: ServerSettings) -> None:
        self.app, self.settings = app, settings
        self.names = _default_host_names(settings)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not allowed_host(host, self.names, self.settings):
            return await refuse(
                send,
                400,
                f"Host {_shown(host)!r} is not served here (DNS rebinding guard); use "
                f"http://127.0.0.1:{self.settings.port}/ or start the server with "
                f"--allowed-host {_shown(host_name(host))}",
            )
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            if text not in self.settings.cors_origins and text not in (f"http://{host}", f"https://{host}"):
                return await refuse(
                    send,
                    403,
                    f"Origin {_shown(text)!r} may not use this server (cross-site "
                    "request); serve the page from this server or start it with "
                    f"--cors-origin {_shown(text)}",
                )
        path = scope.get("path", "")
        if self.settings.token and scope["method"] != "OPTIONS" and (path == "/v1" or path.startswith("/v1/")):
            if not token_matches(headers.get(b"authorization", b"").decode("latin-1"), self.settings.token):
                return await refuse(
                    send,
                    401,
                    "missing or wrong bearer token; send 'Authorization: Bearer TOKEN'",
                    headers=[(b"www-authenticate", b"Bearer")],
                )
        return await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """A Host header value -> its name: port and IPv6 brackets removed, lower case, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _default_host_names(settings: ServerSettings) -> frozenset[str]:
    """The names answered without ``--allowed-host``: loopback names, the bind host and address, and off
    loopback this machine's host name."""
    names = {*LOOPBACK_NAMES, host_name(settings.host), host_name(settings.bind)}
    if not settings.loopback:
        names.add(socket.gethostname().lower())
    return frozenset(n for n in names if n)


def allowed_host(host: str, names: frozenset[str], settings: ServerSettings) -> bool:
    """Whether a Host header is answered: a default name, a ``*.localhost`` name (browsers resolve those to
    loopback themselves), a loopback IP literal, any IP literal when the bind is not loopback (an IP cannot be
    rebound), or an ``--allowed-host`` entry (``*`` any; ``.example.org`` that domain and its subdomains)."""
    name = host_name(host)
    if name in names or name.endswith(".localhost"):
        return True
    if _is_ip(name) and (is_loopback(name) or not settings.loopback):
        return True
    for allowed in settings.allowed_hosts:
        allowed = allowed.lower().rstrip(".")
        if (
            allowed == "*"
            or name == allowed
            or (allowed.startswith(".") and (name.endswith(allowed) or name == allowed[1:]))
        ):
            return True
    return False


def _shown(text: str) -> str:
    """A header value in a message: printable, at most 100 characters."""
    return "".join(c if c.isprintable() else "?" for c in text)[:100]


async def refuse(
    send, status: int, detail: str, *, retry_after: int | None = None, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer ``status`` with ``{"detail": detail}`` (one line) and close the connection (the body is not read)."""
    body = json.dumps({"detail": detail}).encode()
    out = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *(headers or []),
    ]
    if retry_after is not None:
        out.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------------------------------------------
# Limits


class BodyLimit:
    """ASGI middleware bounding what uploads can cost before the app sees them.

    The body of a POST/PUT is read here in full before the app is called: 413 for a declared Content-Length above
    ``max_bytes`` (nothing read) or a body that grows past it (chunked); 429 + Retry-After when ``max_active``
    bodies are already being read, or ``max_per_client`` from the same client address; 408 when the client sends
    nothing for ``read_timeout_s``, or falls behind ``min_rate`` bytes/s after a ``grace_s`` start (``n`` bytes
    must have arrived by ``grace_s + n / min_rate`` seconds), so a client trickling a byte at a time cannot hold its
    slot for long whatever length it declared.
    """

    def __init__(
        self,
        app,
        max_bytes: int,
        *,
        max_active: int = 16,
        read_timeout_s: float = 60.0,
        max_per_client: int = 4,
        min_rate: float = 16 * 1024,
        grace_s: float = 5.0,
    ) -> None:
        self.app, self.max_bytes, self.max_active, self.read_timeout_s = app, max_bytes, max_active, read_timeout_s
        self.max_per_client, self.min_rate, self.grace_s = max_per_client, min_rate, grace_s
        self.active = 0
        self.per_client: dict[str, int] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        raw = dict(scope.get("headers") or []).get(b"content-length")
        declared = int(raw) if raw is not None and raw.isdigit() and len(raw) < 19 else None
        if (declared is not None and declared > self.max_bytes) or (raw is not None and declared is None):
            return await refuse(
                send,
                413,
                f"request body above the {self.max_bytes} byte limit; send a "
                "smaller file (or start the server with a larger --max-body-mb)",
            )
        client = (scope.get("client") or ("?", 0))[0]
        if self.active >= self.max_active:
            return await refuse(
                send, 429, f"{self.max_active} uploads are already in progress; retry in a moment", retry_after=1
            )
        if self.per_client.get(client, 0) >= self.max_per_client:
            return await refuse(
                send,
                429,
                f"this client already has {self.max_per_client} uploads in progress; finish those first",
                retry_after=1,
            )
        self.active += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1
        try:
            chunks, seen, start = [], 0, time.monotonic()
            while True:
                deadline = (
                    start + self.grace_s + seen / self.min_rate
                )  # the rate of what arrived, not what was promised
                wait = min(self.read_timeout_s, deadline - time.monotonic())
                try:
                    if wait <= 0:
                        raise asyncio.TimeoutError
                    message = await asyncio.wait_for(receive(), wait)
                except asyncio.TimeoutError:
                    if time.monotonic() >= deadline - 0.01:
                        return await refuse(
                            send,
                            408,
                            f"the upload was too slow ({seen} bytes in "
                            f"{time.monotonic() - start:.0f} s; at least "
                            f"{self.min_rate / 1024:g} KiB/s after a {self.grace_s:g} s "
                            "start); send the whole file again",
                        )
                    return await refuse(
                        send, 408, f"the upload stalled for {self.read_timeout_s:g} s; send the whole file again"
                    )
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                seen += len(chunks[-1])
                if seen > self.max_bytes:
                    return await refuse(
                        send,
                        413,
                        f"request body above the {self.max_bytes} byte limit; "
                        "send a smaller file (or a larger --max-body-mb)",
                    )
                if not message.get("more_body", False):
                    break
        finally:
            self.active -= 1
            self.per_client[client] -= 1
            if not self.per_client[client]:
                del self.per_client[client]
        body, replayed = b"".join(chunks), False
        del chunks

        async def replay():
            nonlocal body, replayed
            if not replayed:
                replayed = True
                message, body = {"type": "http.request", "body": body, "more_body": False}, b""
                return message
            return await receive()

        await self.app(scope, replay, send)


# ----------------------------------------------------------------------------------------------------------------
# The application


def create_app(
    settings: ServerSettings,
    load: Callable[[], tuple[PipelineRunner, ModelInfo]],
    *,
    on_shutdown: Callable[[], None] | None = None,
) -> BodyLimit:
    """The ASGI app. ``load()`` builds the runner and model info (in a thread: /readyz is 503 until it returns);
    ``on_shutdown()`` runs when the server stops gracefully (after the worker has stopped)."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    server = Server(settings, load)

    @asynccontextmanager
    async def lifespan(app):
        server.start_loading()
        yield
        if server.queue is not None:
            server.queue.stop()
        if on_shutdown is not None:
            on_shutdown()

    # FastAPIOffline: /docs and /redoc with Swagger UI / ReDoc shipped in a package, not fetched from a CDN
    app = FastAPIOffline(
        title="prefrestore",
        version=API_VERSION,
        lifespan=lifespan,
        description="Blind face restoration (Pref-Restore): restore the faces in photos over HTTP.",
    )
    app.state.server = server
    add_routes(app, server)
    _one_line_errors(app)
    limited = BodyLimit(
        _with_cors(app, settings),
        settings.max_body_bytes,
        max_active=settings.max_uploads,
        read_timeout_s=settings.read_timeout_s,
        max_per_client=settings.max_uploads_per_client,
        min_rate=settings.min_upload_bytes_per_s,
        grace_s=settings.upload_grace_s,
    )
    guarded = Guard(limited, settings)
    guarded.server = server  # for tests and embedding
    return guarded


def _one_line_errors(app: Any) -> None:
    """Every error answer is ``{"detail": "one line"}``: FastAPI's request validation (a list of dicts by default)
    becomes its first problem in words; an unexpected exception is logged once (a server bug) and answered 500."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestValidationError)
    async def validation(request, err: RequestValidationError):
        first = (err.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("path", "query", "body"))
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}"[:300]}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request, err: Exception):
        logger.error(
            "%s %s: unexpected %s: %s",
            request.method,
            request.url.path,
            type(err).__name__,
            str(err).splitlines()[0][:200] if str(err) else "",
            exc_info=err,
        )
        return JSONResponse({"detail": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)


def _with_cors(app: Any, settings: ServerSettings) -> Any:
    """``app`` behind CORS when ``settings.cors_origins`` names any origin, else ``app`` itself."""
    if not settings.cors_origins:
        return app
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        app,
        allow_origins=list(settings.cors_origins),
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Prefrestore-Result", "X-Prefrestore-Job", "Link"],
    )
