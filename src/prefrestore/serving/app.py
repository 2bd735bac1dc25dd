"""The FastAPI application of ``prefrestore serve``: the page, ``/v1`` API, health checks, limits and auth.

Routes (OpenAPI at ``/docs``): ``GET /`` (the page), ``GET /healthz``, ``GET /readyz`` (model loaded),
``GET /v1/options``, ``POST /v1/restore`` (synchronous), ``POST /v1/jobs`` (asynchronous), ``GET /v1/jobs/{id}``,
``GET /v1/jobs/{id}/events`` (SSE), ``DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/result``,
``GET /v1/jobs/{id}/faces/{index}/{cropped|restored}``, ``GET /v1/results.zip?ids=...``.

An upload is either ``multipart/form-data`` (a ``file`` part and an optional ``options`` part holding JSON) or the
raw image bytes as the body (``Content-Type: image/*``), with ``?name=`` and ``?options=`` (JSON) in the query.
Bodies are parsed in memory (bounded by ``max_body_bytes``), never spooled to a temporary file outside the work
folder. Errors are JSON ``{"detail": "one line naming the file and the fix"}``.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from ..errors import ImageError
from ..image import IMAGE_EXTENSIONS, probe_image
from .jobs import TERMINAL, Job, JobQueue, QueueFull
from .runner import ModelInfo, PipelineRunner
from .schemas import OptionError, RestoreOptions, ServerSettings, describe_options

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
API_VERSION = "v1"
_STATUS = {"bad_image": 400, "cancelled": 409, "timeout": 504, "restore_failed": 500, "overloaded": 429}


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


def safe_name(filename: str | None) -> str:
    """A user's file name -> a name safe for headers and messages: no folders, no control characters, <= 100 chars.

    Never used as a path: files on the server are named by job id.
    """
    base = re.split(r"[\\/]", filename or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]+", "_", base).strip(" .")
    return base[:100] or "upload"


def _ext(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ""


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data bytes -> field name -> (filename or None, bytes). Raises ValueError when malformed."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ValueError("multipart body without a boundary")
    parts: dict[str, tuple[str | None, bytes]] = {}
    state: dict[str, Any] = {}

    def on_part_begin():
        state.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        state["data"].append(data[start:end])

    def on_part_end():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        if name and len(parts) < 8:
            parts[name] = (None if filename is None else filename.decode("utf-8", "replace"), b"".join(state["data"]))

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    parser.write(body)
    parser.finalize()
    return parts


# ----------------------------------------------------------------------------------------------------------------
# The application


class Server:
    """State shared by the routes: settings, the loaded runner's queue, readiness."""

    def __init__(self, settings: ServerSettings, load: Callable[[], tuple[PipelineRunner, ModelInfo]]) -> None:
        self.settings, self.load = settings, load
        self.queue: JobQueue | None = None
        self.model: ModelInfo | None = None
        self.load_error: str | None = None

    def start_loading(self) -> None:
        import threading

        def target():
            try:
                runner, model = self.load()
                s = self.settings
                queue = JobQueue(runner, s.workdir, max_queued=s.max_queued, max_batch=s.max_batch,
                                 job_timeout_s=s.job_timeout_s, result_ttl_s=s.result_ttl_s,
                                 batch_wait_s=s.batch_wait_s)
                queue.start()
                self.model, self.queue = model, queue
                logger.info("model %s loaded; serving", model.name)
            except Exception as err:  # the server stays up and says why in /readyz
                logger.exception("model failed to load")
                self.load_error = f"{type(err).__name__}: {err}"

        threading.Thread(target=target, name="prefrestore-load", daemon=True).start()

    def ready_queue(self) -> JobQueue:
        if self.queue is None:
            detail = f"model failed to load ({self.load_error})" if self.load_error else "model is loading; retry soon"
            raise HTTPException(503, detail, headers={"Retry-After": "5"})
        return self.queue


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

    def authorize(request: Request) -> None:
        if not settings.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token; send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})

    async def read_upload(request: Request) -> tuple[str, str, bytes, RestoreOptions]:
        """The request's image and options; 400/422 with one line for anything wrong."""
        ctype = request.headers.get("content-type", "")
        body = await request.body()
        raw_options = request.query_params.get("options")
        if ctype.startswith("multipart/form-data"):
            try:
                parts = parse_multipart(body, ctype)
            except ValueError as err:
                raise HTTPException(400, f"malformed multipart body ({err}); send the photo as a 'file' part") from None
            if "file" not in parts:
                raise HTTPException(400, "no 'file' part; send the photo as -F file=@photo.jpg")
            filename, data = parts["file"]
            if "options" in parts:
                raw_options = parts["options"][1].decode("utf-8", "replace")
        else:
            filename, data = request.query_params.get("name"), body
        name = safe_name(filename)
        try:
            options = RestoreOptions.from_json(json.loads(raw_options) if raw_options else None)
        except json.JSONDecodeError as err:
            raise HTTPException(422, f"options: not valid JSON ({err.msg}); e.g. {{\"upscale\": 2}}") from None
        except OptionError as err:
            raise HTTPException(422, str(err)) from None
        try:
            await asyncio.to_thread(probe_image, data, name, max_pixels=settings.max_pixels)
        except ImageError as err:
            raise HTTPException(400, str(err)) from None
        return name, _ext(name), data, options

    def submit(queue: JobQueue, name: str, ext: str, data: bytes, options: RestoreOptions) -> Job:
        try:
            return queue.submit(name, ext, data, options)
        except QueueFull as err:
            raise HTTPException(429, f"{err}; the server restores one batch at a time",
                                headers={"Retry-After": str(err.retry_after)}) from None

    def find(job_id: str) -> Job:
        job = server.ready_queue().get(job_id)
        if job is None:
            raise HTTPException(404, f"job {safe_name(job_id)}: not found (unknown, or removed after its TTL)")
        return job

    def job_json(job: Job) -> dict[str, Any]:
        base = f"/{API_VERSION}/jobs/{job.id}"
        out: dict[str, Any] = {
            "id": job.id, "name": job.name, "state": job.state, "stage": job.stage,
            "progress": round(job.progress, 3), "queue_position": server.queue.position(job),
            "options": job.options.to_json(), "error": job.error, "error_code": job.error_code,
            "urls": {"self": base, "events": f"{base}/events", "result": f"{base}/result"},
        }
        if job.state == "done" and job.result is not None:
            out["download_name"] = download_name(job)
            out["result"] = {**job.result, "faces": [
                {**f, "urls": {r: f"{base}/faces/{f['index']}/{r}" for r in ("cropped", "restored")}}
                for f in job.result["faces"]]}
        return out

    async def next_change(job: Job, version: int, timeout: float) -> None:
        """Return when the job's version differs from ``version`` or ``timeout`` s passed (no polling: the worker
        wakes this coroutine through the event loop)."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        server.queue.listen(job, wake)
        try:
            if job.version == version:
                await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            server.queue.unlisten(job, wake)

    def failure(job: Job) -> HTTPException:
        status = _STATUS.get(job.error_code or "", 500)
        headers = {"Retry-After": str(server.queue.retry_after())} if status == 429 else None
        return HTTPException(status, job.error or "restoration failed", headers=headers)

    def download_name(job: Job) -> str:
        return f"{Path(job.name).stem}_restored{job.files['output'].suffix}"

    # -- routes --------------------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz():
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz():
        """200 once the model is loaded, else 503."""
        if server.queue is None:
            return JSONResponse({"ready": False, "error": server.load_error}, status_code=503)
        return {"ready": True, "model": server.model.to_json(), "queue": server.queue.stats()}

    @app.get(f"/{API_VERSION}/options", tags=["restore"])
    def options(request: Request):
        """The request options (name, default, kind, bounds, help), limits and the model."""
        authorize(request)
        return {"options": describe_options(), "model": server.model.to_json() if server.model else None,
                "limits": {"max_body_bytes": settings.max_body_bytes, "max_pixels": settings.max_pixels,
                           "max_queued": settings.max_queued, "job_timeout_s": settings.job_timeout_s,
                           "result_ttl_s": settings.result_ttl_s}}

    @app.post(f"/{API_VERSION}/restore", tags=["restore"],
              responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "application/json": {}}}})
    async def restore(request: Request, response: str = "image"):
        """Restore one photo and wait. ``response=image`` (default): the restored photo, its result JSON in the
        ``X-Prefrestore-Result`` header; ``response=json``: the job JSON with ``image_base64``."""
        authorize(request)
        queue = server.ready_queue()
        name, ext, data, opts = await read_upload(request)
        job = submit(queue, name, ext, data, opts)
        while not job.terminal:
            await next_change(job, job.version, 5.0)
        if job.state != "done":
            raise failure(job)
        content = job.files["output"].read_bytes()
        media = "image/jpeg" if job.files["output"].suffix == ".jpg" else "image/png"
        if response == "json":
            import base64

            return {**job_json(job), "image_base64": base64.b64encode(content).decode(), "media_type": media}
        header = json.dumps(job.result, separators=(",", ":"), ensure_ascii=True)
        return Response(content, media_type=media, headers={
            "X-Prefrestore-Result": header, "X-Prefrestore-Job": job.id,
            "Content-Disposition": f'attachment; filename="{download_name(job)}"'})

    @app.post(f"/{API_VERSION}/jobs", tags=["jobs"], status_code=202)
    async def create_job(request: Request):
        """Queue one photo -> 202 with the job id, state and queue position (429 + Retry-After when full)."""
        authorize(request)
        queue = server.ready_queue()
        job = submit(queue, *(await read_upload(request)))
        return JSONResponse(job_json(job), status_code=202, headers={"Location": f"/{API_VERSION}/jobs/{job.id}"})

    @app.get(f"/{API_VERSION}/jobs/{{job_id}}", tags=["jobs"])
    def get_job(job_id: str, request: Request):
        """A job's state, progress, queue position, error, and when done its result (faces, timings, model)."""
        authorize(request)
        return job_json(find(job_id))

    @app.delete(f"/{API_VERSION}/jobs/{{job_id}}", tags=["jobs"])
    def cancel_job(job_id: str, request: Request):
        """Cancel a queued or running job (409 when it had already finished)."""
        authorize(request)
        job = find(job_id)
        if not server.queue.cancel(job):
            raise HTTPException(409, f"job {job.id} already {job.state}")
        return job_json(job)

    @app.get(f"/{API_VERSION}/jobs/{{job_id}}/events", tags=["jobs"])
    async def job_events(job_id: str, request: Request):
        """Server-sent events: one ``progress`` event per change (the job JSON), then ``done``, ``failed`` or
        ``cancelled``, then the stream ends."""
        authorize(request)
        job = find(job_id)
        limit = time.monotonic() + settings.job_timeout_s + 30

        async def stream():
            last, beat = -1, time.monotonic()
            while True:
                if job.version != last:
                    last = job.version
                    state = job.state  # one read: the worker may finish the job between two reads of it
                    terminal = state in TERMINAL
                    yield f"event: {state if terminal else 'progress'}\ndata: {json.dumps(job_json(job))}\n\n"
                    if terminal:
                        return
                if time.monotonic() > limit:
                    return
                if time.monotonic() - beat > 15:
                    beat = time.monotonic()
                    yield ": keep-alive\n\n"
                await next_change(job, last, 15.0)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get(f"/{API_VERSION}/jobs/{{job_id}}/result", tags=["jobs"])
    def job_result(job_id: str, request: Request):
        """The restored photo (409 while queued or running; the job's error when it failed)."""
        authorize(request)
        job = find(job_id)
        if not job.terminal:
            raise HTTPException(409, f"job {job.id} is {job.state}; wait for it (GET {job_id}/events)")
        if job.state != "done":
            raise failure(job)
        return FileResponse(job.files["output"], filename=download_name(job))

    @app.get(f"/{API_VERSION}/jobs/{{job_id}}/faces/{{index}}/{{role}}", tags=["jobs"])
    def job_face(job_id: str, index: int, role: str, request: Request):
        """One face's aligned input crop (``cropped``) or restoration (``restored``), PNG at the model size."""
        authorize(request)
        job = find(job_id)
        path = job.files.get(f"{role}_{index:02d}") if role in ("cropped", "restored") and index >= 0 else None
        if job.state != "done" or path is None:
            raise HTTPException(404, f"job {job.id}: no face {index} {role}")
        return FileResponse(path, media_type="image/png")

    @app.get(f"/{API_VERSION}/results.zip", tags=["jobs"])
    def results_zip(ids: str, request: Request):
        """A ZIP of the restored photos of finished jobs (``ids`` comma-separated, at most 200)."""
        authorize(request)
        jobs = [find(i) for i in ids.split(",")[:200] if i]
        buf, names = io.BytesIO(), set()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for job in jobs:
                if job.state != "done":
                    continue
                name = download_name(job)
                while name in names:
                    name = f"{Path(name).stem}_{Path(name).suffix}"
                names.add(name)
                zf.write(job.files["output"], name)
        if not names:
            raise HTTPException(409, "none of these jobs has a result yet")
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="restored.zip"'})

    wrapped: Any = app
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        wrapped = CORSMiddleware(wrapped, allow_origins=list(settings.cors_origins), allow_methods=["*"],
                                 allow_headers=["*"], expose_headers=["X-Prefrestore-Result", "X-Prefrestore-Job"])
    limited = BodyLimit(wrapped, settings.max_body_bytes, max_active=settings.max_uploads,
                        read_timeout_s=settings.read_timeout_s)
    limited.server = server  # for tests and embedding
    return limited
