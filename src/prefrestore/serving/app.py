"""The FastAPI application of ``prefrestore serve``: the page, ``/v1`` API, health checks, limits and auth.

Routes (OpenAPI at ``/docs``): ``GET /`` (the page), ``GET /healthz``, ``GET /readyz`` (model loaded),
``GET /v1/options``, ``POST /v1/restore`` (synchronous), ``POST /v1/jobs`` (asynchronous), ``GET /v1/jobs/{id}``,
``GET /v1/jobs/{id}/events`` (SSE), ``DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result``,
``GET /v1/jobs/{id}/faces/{index}/{cropped|restored}``, ``GET /v1/results.zip?ids=...``.

An upload is either ``multipart/form-data`` (a ``file`` part and an optional ``options`` part holding JSON) or the
raw image bytes as the body (``Content-Type: image/*``), with ``?name=`` and ``?options=`` (JSON) in the query.
Bodies are parsed in memory (bounded by ``max_body_bytes``), never spooled to a temporary file outside the work
folder. Errors are JSON ``{"detail": "one line naming the file and the fix"}``.

This module assembles the app (lifespan, CORS, the ``BodyLimit`` middleware); the routes are registered in groups
by ``routes.py``, and uploads are read by ``uploads.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi_offline import FastAPIOffline

from .routes import API_VERSION, STATIC, Server, add_routes
from .runner import ModelInfo, PipelineRunner
from .schemas import ServerSettings
from .uploads import parse_multipart, safe_name

__all__ = ["API_VERSION", "STATIC", "BodyLimit", "Server", "create_app", "parse_multipart", "safe_name"]


# ----------------------------------------------------------------------------------------------------------------
# Limits


class BodyLimit:
    """ASGI middleware bounding what uploads can cost before the app sees them.

    The body of a POST/PUT is read here in full before the app is called: 413 for a declared Content-Length above
    ``max_bytes`` (nothing read) or a body that grows past it (chunked); 429 + Retry-After when ``max_active``
    bodies are already being read; 408 when the client sends nothing for ``read_timeout_s`` (a stalled upload
    does not hold its slot forever).
    """

    def __init__(self, app, max_bytes: int, *, max_active: int = 16, read_timeout_s: float = 60.0) -> None:
        self.app, self.max_bytes, self.max_active, self.read_timeout_s = app, max_bytes, max_active, read_timeout_s
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, 413, f"request body above the {self.max_bytes} byte limit; send a "
                                                 "smaller file (or start the server with a larger --max-body-mb)")
        if self.active >= self.max_active:
            return await self._refuse(send, 429, f"{self.max_active} uploads are already in progress; retry in a "
                                                 "moment", retry_after=1)
        self.active += 1
        try:
            chunks, seen = [], 0
            while True:
                try:
                    message = await asyncio.wait_for(receive(), self.read_timeout_s)
                except asyncio.TimeoutError:
                    return await self._refuse(send, 408, f"the upload stalled for {self.read_timeout_s:g} s; "
                                                         "send the whole file again")
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                seen += len(chunks[-1])
                if seen > self.max_bytes:
                    return await self._refuse(send, 413, f"request body above the {self.max_bytes} byte limit; "
                                                         "send a smaller file (or a larger --max-body-mb)")
                if not message.get("more_body", False):
                    break
        finally:
            self.active -= 1
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

    @staticmethod
    async def _refuse(send, status: int, detail: str, *, retry_after: int | None = None) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------------------------------------------
# The application


def create_app(settings: ServerSettings, load: Callable[[], tuple[PipelineRunner, ModelInfo]], *,
               on_shutdown: Callable[[], None] | None = None) -> BodyLimit:
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
    app = FastAPIOffline(title="prefrestore", version=API_VERSION, lifespan=lifespan,
                         description="Blind face restoration (Pref-Restore): restore the faces in photos over HTTP.")
    app.state.server = server
    add_routes(app, server)
    limited = BodyLimit(_with_cors(app, settings), settings.max_body_bytes, max_active=settings.max_uploads,
                        read_timeout_s=settings.read_timeout_s)
    limited.server = server  # for tests and embedding
    return limited


def _with_cors(app: Any, settings: ServerSettings) -> Any:
    """``app`` behind CORS when ``settings.cors_origins`` names any origin, else ``app`` itself."""
    if not settings.cors_origins:
        return app
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(app, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                          allow_headers=["*"], expose_headers=["X-Prefrestore-Result", "X-Prefrestore-Job"])
