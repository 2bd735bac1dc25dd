"""The routes of ``prefrestore serve``, registered in groups on the FastAPI app by ``add_routes``: the page and
static files, health and readiness, options and synchronous restore, asynchronous jobs (with SSE), job results.

``Server`` holds the state the routes share (settings, the loaded runner's queue, readiness); ``Api`` the helpers
every ``/v1`` route uses (auth, job lookup, submission, job JSON, waiting for a change).
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
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from ..restore.options import RestoreSettings, json_schema
from .jobs import TERMINAL, Job, JobQueue, QueueFull
from .runner import ModelInfo, PipelineRunner
from .schemas import ServerSettings, describe_options
from .uploads import read_upload, safe_name

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
API_VERSION = "v1"
JOB_ID = re.compile(r"[0-9a-f]{32}")  # what JobQueue.submit names jobs (uuid4 hex)
HEADER_LIMIT = 1024  # bytes: the X-Prefrestore-Result summary stays below what every common proxy accepts
_STATUS = {
    "bad_image": 400,
    "bad_option": 422,
    "cancelled": 409,
    "timeout": 504,
    "restore_failed": 500,
    "overloaded": 429,
}


class ErrorBody(BaseModel):
    """Every error answer (4xx and 5xx) of the server: one line naming the file or option and the fix."""

    detail: str


_ERRORS = {
    400: "bad, corrupt or oversized image; malformed multipart",
    401: "missing or wrong bearer token",
    404: "unknown job (or removed after its TTL)",
    408: "the upload stalled or was too slow",
    409: "not finished yet, or already finished",
    413: "body above --max-body-mb",
    415: "the body is neither an image nor multipart/form-data",
    422: "a bad option or parameter",
    429: "queue full, too many uploads or overloaded (Retry-After says when to retry)",
    500: "restoration failed",
    503: "the model is loading (Retry-After)",
    504: "timed out",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error codes, each with the real ``{"detail": str}`` body."""
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


_IMAGE_TYPES = (
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/gif",
    "application/octet-stream",
)
# The request body of POST /v1/restore and /v1/jobs as it really is (read by uploads.read_upload, not by FastAPI,
# so it is declared here): multipart with the file and the options, or the raw image.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "multipart/form-data: a `file` part (the photo) and an optional `options` part (a JSON object, e.g. "
            '`{"upscale": 2}`, schema RestoreOptions; GET /v1/options lists every option); or the raw image bytes as the body with an image '
            "Content-Type (or application/octet-stream), its name and options in the `name` and `options` query "
            "parameters. Any other Content-Type is a 415."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the photo (JPEG, PNG, WebP, BMP, TIFF or GIF)",
                        },
                        "options": {
                            "type": "string",
                            "example": '{"upscale": 2}',
                            "description": 'the options as one JSON object, e.g. {"upscale": 2, "candidates": 4} '
                            "(its schema: RestoreOptions under components/schemas)",
                        },
                    },
                }
            },
            **{media: {"schema": {"type": "string", "format": "binary"}} for media in _IMAGE_TYPES},
        },
    }
}
# name/options are declared on the upload routes for the OpenAPI document only; uploads.read_upload reads them
NAME_QUERY = Query(
    None,
    description="raw body only: the photo's file name (for the download name; the output "
    "format follows the photo's content when it has no known extension)",
)
OPTIONS_QUERY = Query(
    None,
    description="raw body only (multipart sends an `options` part): the options as one "
    'JSON object, e.g. {"upscale": 2}',
)


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document say what errors really are: every 4xx/5xx answer of every operation is
    ``ErrorBody`` (FastAPI would document its list-style validation error, which this server never sends)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for operations in schema.get("paths", {}).values():
            for op in operations.values():
                for code, answer in op.get("responses", {}).items():
                    if code[0] in "45":
                        answer["content"] = ref
                        if code == "422":
                            answer["description"] = _ERRORS[422]
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["ErrorBody"] = ErrorBody.model_json_schema()
        options = {k: v for k, v in json_schema().items() if k != "$schema"}  # the request's options, generated
        components["RestoreOptions"] = options
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


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
                queue = JobQueue(
                    runner,
                    s.workdir,
                    max_queued=s.max_queued,
                    max_batch=s.max_batch,
                    job_timeout_s=s.job_timeout_s,
                    result_ttl_s=s.result_ttl_s,
                    batch_wait_s=s.batch_wait_s,
                )
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


class Api:
    """What every ``/v1`` route uses: auth, reading an upload, submitting, finding and describing jobs."""

    def __init__(self, server: Server) -> None:
        self.server, self.settings = server, server.settings

    def authorize(self, request: Request) -> None:
        """The token check of every /v1 route (``app.Guard`` makes the same check before a body is read)."""
        if self.settings.token and not token_matches(request.headers.get("authorization", ""), self.settings.token):
            raise HTTPException(
                401,
                "missing or wrong bearer token; send 'Authorization: Bearer TOKEN'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def read_upload(self, request: Request) -> tuple[str, str, bytes, RestoreSettings]:
        return await read_upload(request, self.settings.max_pixels, self.settings.restore)

    def result_url(self, job: Job) -> str:
        return f"/{API_VERSION}/jobs/{job.id}"

    @staticmethod
    def submit(queue: JobQueue, name: str, ext: str, data: bytes, options: RestoreSettings) -> Job:
        try:
            return queue.submit(name, ext, data, options)
        except QueueFull as err:
            raise HTTPException(
                429, f"{err}; the server restores one batch at a time", headers={"Retry-After": str(err.retry_after)}
            ) from None

    def find(self, job_id: str) -> Job:
        """The job with this id; 404 for an unknown id, and for anything not shaped like one (never looked up)."""
        job = self.server.ready_queue().get(job_id) if JOB_ID.fullmatch(job_id) else None
        if job is None:
            shown = job_id if JOB_ID.fullmatch(job_id) else f"{safe_name(job_id)[:40]} (not a job id: 32 hex digits)"
            raise HTTPException(404, f"job {shown}: not found (unknown, or removed after its TTL)")
        return job

    def job_json(self, job: Job) -> dict[str, Any]:
        base = f"/{API_VERSION}/jobs/{job.id}"
        out: dict[str, Any] = {
            "id": job.id,
            "name": job.name,
            "state": job.state,
            "stage": job.stage,
            "progress": round(job.progress, 3),
            "queue_position": self.server.queue.position(job),
            "faces_found": job.faces_found,
            "faces_restored": job.faces_restored,
            "options": job.options.request_json(),
            "error": job.error,
            "error_code": job.error_code,
            "urls": {"self": base, "events": f"{base}/events", "result": f"{base}/result"},
        }
        if job.state == "done" and job.result is not None:
            out["download_name"] = download_name(job)
            out["result"] = {
                **job.result,
                "faces": [
                    {**f, "urls": {r: f"{base}/faces/{f['index']}/{r}" for r in ("cropped", "restored")}}
                    for f in job.result["faces"]
                ],
            }
        return out

    async def next_change(self, job: Job, version: int, timeout: float) -> None:
        """Return when the job's version differs from ``version`` or ``timeout`` s passed (no polling: the worker
        wakes this coroutine through the event loop)."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        queue = self.server.queue

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        queue.listen(job, wake)
        try:
            if job.version == version:
                await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            queue.unlisten(job, wake)

    def failure(self, job: Job) -> HTTPException:
        status = _STATUS.get(job.error_code or "", 500)
        headers = {"Retry-After": str(self.server.queue.retry_after())} if status == 429 else None
        return HTTPException(status, job.error or "restoration failed", headers=headers)


def token_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` as a bearer token (constant-time compare)."""
    given = authorization[7:] if authorization.lower().startswith("bearer ") else ""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def result_header(job: Job, details: str) -> str:
    """The ``X-Prefrestore-Result`` header: a JSON summary of a done job under ``HEADER_LIMIT`` bytes whatever the
    photo (counts, sizes, notes cut to fit); the full result is the job resource at ``details``."""
    r = job.result or {}
    faces = r.get("faces", [])
    guards = [f.get("identity_guard") or {} for f in faces]
    summary: dict[str, Any] = {
        "status": r.get("status"),
        "face_count": len(faces),
        "faces_found": r.get("faces_found", len(faces)),
        "flagged": sum(bool(g.get("flagged")) for g in guards),
        "fallback": sum(bool(g.get("action")) for g in guards),
        "input_size": r.get("input_size"),
        "output_size": r.get("output_size"),
        "details": details,
        "notes": [n[:160] for n in r.get("notes", [])][:4],
    }

    def text() -> str:
        return json.dumps(summary, separators=(",", ":"), ensure_ascii=True)

    while len(text()) >= HEADER_LIMIT and summary["notes"]:
        summary["notes"].pop()
        summary["notes_cut"] = True
    return text()


def download_name(job: Job) -> str:
    return f"{Path(job.name).stem}_restored{job.files['output'].suffix}"


def add_routes(app: FastAPI, server: Server) -> None:
    """Every route, in the order the OpenAPI document lists them."""
    api = Api(server)
    add_page_routes(app)
    add_health_routes(app, server)
    add_restore_routes(app, api)
    add_job_routes(app, api)
    add_job_file_routes(app, api)
    document_errors(app)


def add_page_routes(app: FastAPI) -> None:
    """``GET /`` (the page) and ``/static``."""

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def add_health_routes(app: FastAPI, server: Server) -> None:
    """``GET /healthz`` (the process is up) and ``GET /readyz`` (the model is loaded)."""

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


def add_restore_routes(app: FastAPI, api: Api) -> None:
    """``GET /v1/options`` and ``POST /v1/restore`` (synchronous)."""
    server, settings = api.server, api.settings

    @app.get(f"/{API_VERSION}/options", tags=["restore"], responses=errors(401))
    def options(request: Request):
        """The request options (name, default, kind, bounds, help), limits and the model."""
        api.authorize(request)
        return {
            "options": describe_options(),
            "schema": json_schema(),
            "model": server.model.to_json() if server.model else None,
            "limits": {
                "max_body_bytes": settings.max_body_bytes,
                "max_pixels": settings.max_pixels,
                "max_queued": settings.max_queued,
                "job_timeout_s": settings.job_timeout_s,
                "result_ttl_s": settings.result_ttl_s,
            },
        }

    @app.post(
        f"/{API_VERSION}/restore",
        tags=["restore"],
        openapi_extra=UPLOAD_BODY,
        responses={
            200: {
                "content": {"image/png": {}, "image/jpeg": {}, "application/json": {}},
                "description": "the restored photo (or, with response=json, the job JSON with image_base64)",
            },
            **errors(400, 401, 408, 413, 415, 422, 429, 500, 503, 504),
        },
    )
    async def restore(
        request: Request,
        response: str = Query(
            "image",
            pattern="^(image|json)$",
            description=(
                "image: the restored photo, a short summary in the X-Prefrestore-Result header (< 1 KB) "
                "and the job id in X-Prefrestore-Job (its full result: GET /v1/jobs/{id}); json: the job "
                "JSON with the full result and image_base64"
            ),
        ),
        name: str | None = NAME_QUERY,
        options: str | None = OPTIONS_QUERY,
    ):
        """Restore one photo and wait. ``response=image`` (default): the restored photo, a bounded summary in the
        ``X-Prefrestore-Result`` header and the full result at ``GET /v1/jobs/{id}`` (``X-Prefrestore-Job``);
        ``response=json``: the job JSON (the full result) with ``image_base64``."""
        api.authorize(request)
        queue = server.ready_queue()
        name, ext, data, opts = await api.read_upload(request)
        job = api.submit(queue, name, ext, data, opts)
        while not job.terminal:
            await api.next_change(job, job.version, 5.0)
        if job.state != "done":
            raise api.failure(job)
        content = job.files["output"].read_bytes()
        media = "image/jpeg" if job.files["output"].suffix == ".jpg" else "image/png"
        if response == "json":
            import base64

            return {**api.job_json(job), "image_base64": base64.b64encode(content).decode(), "media_type": media}
        details = api.result_url(job)
        return Response(
            content,
            media_type=media,
            headers={
                "X-Prefrestore-Result": result_header(job, details),
                "X-Prefrestore-Job": job.id,
                "Link": f'<{details}>; rel="describedby"',
                "Content-Disposition": f'attachment; filename="{download_name(job)}"',
            },
        )


def add_job_routes(app: FastAPI, api: Api) -> None:
    """``POST /v1/jobs``, ``GET`` and ``DELETE /v1/jobs/{id}``, ``GET /v1/jobs/{id}/events`` (SSE)."""
    server, settings = api.server, api.settings

    @app.post(
        f"/{API_VERSION}/jobs",
        tags=["jobs"],
        status_code=202,
        openapi_extra=UPLOAD_BODY,
        responses=errors(400, 401, 408, 413, 415, 422, 429, 503),
    )
    async def create_job(request: Request, name: str | None = NAME_QUERY, options: str | None = OPTIONS_QUERY):
        """Queue one photo -> 202 with the job id, state and queue position (429 + Retry-After when full)."""
        api.authorize(request)
        queue = server.ready_queue()
        job = api.submit(queue, *(await api.read_upload(request)))
        return JSONResponse(api.job_json(job), status_code=202, headers={"Location": f"/{API_VERSION}/jobs/{job.id}"})

    @app.get(f"/{API_VERSION}/jobs/{{job_id}}", tags=["jobs"], responses=errors(401, 404, 503))
    def get_job(job_id: str, request: Request):
        """A job's state, progress, queue position, error, and when done its result (faces, timings, model)."""
        api.authorize(request)
        return api.job_json(api.find(job_id))

    @app.delete(
        f"/{API_VERSION}/jobs/{{job_id}}",
        tags=["jobs"],
        responses={
            202: {
                "description": "a running job: `cancelling` until its run reaches the next stage boundary, then "
                "`cancelled` (watch GET /v1/jobs/{id} or its events)"
            },
            **errors(401, 404, 409, 503),
        },
    )
    def cancel_job(job_id: str, request: Request):
        """Cancel a queued job (200, ``cancelled``) or a running one (202, ``cancelling`` until its run stops at the
        next stage boundary, then ``cancelled``); 409 when it had already finished."""
        api.authorize(request)
        job = api.find(job_id)
        if not server.queue.cancel(job):
            raise HTTPException(409, f"job {job.id} already {job.state}")
        return JSONResponse(api.job_json(job), status_code=202 if job.state == "cancelling" else 200)

    @app.get(f"/{API_VERSION}/jobs/{{job_id}}/events", tags=["jobs"], responses=errors(401, 404, 503))
    async def job_events(job_id: str, request: Request):
        """Server-sent events: one ``progress`` event per change (the job JSON), then ``done``, ``failed`` or
        ``cancelled``, then the stream ends."""
        api.authorize(request)
        job = api.find(job_id)
        limit = time.monotonic() + settings.job_timeout_s + 30
        return StreamingResponse(
            _event_stream(api, job, limit),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _event_stream(api: Api, job: Job, limit: float):
    """The SSE lines of one job until it is terminal or ``limit`` (monotonic time) passed; keep-alive every 15 s."""
    last, beat = -1, time.monotonic()
    while True:
        if job.version != last:
            last = job.version
            state = job.state  # one read: the worker may finish the job between two reads of it
            terminal = state in TERMINAL
            yield f"event: {state if terminal else 'progress'}\ndata: {json.dumps(api.job_json(job))}\n\n"
            if terminal:
                return
        if time.monotonic() > limit:
            return
        if time.monotonic() - beat > 15:
            beat = time.monotonic()
            yield ": keep-alive\n\n"
        await api.next_change(job, last, 15.0)


def add_job_file_routes(app: FastAPI, api: Api) -> None:
    """``GET /v1/jobs/{id}/result``, ``GET /v1/jobs/{id}/faces/{index}/{role}``, ``GET /v1/results.zip``."""

    @app.get(
        f"/{API_VERSION}/jobs/{{job_id}}/result",
        tags=["jobs"],
        responses=errors(400, 401, 404, 409, 422, 429, 500, 503, 504),
    )
    def job_result(job_id: str, request: Request):
        """The restored photo (409 while queued or running; the job's error when it failed)."""
        api.authorize(request)
        job = api.find(job_id)
        if not job.terminal:
            raise HTTPException(409, f"job {job.id} is {job.state}; wait for it (GET {job_id}/events)")
        if job.state != "done":
            raise api.failure(job)
        return FileResponse(job.files["output"], filename=download_name(job))

    @app.get(
        f"/{API_VERSION}/jobs/{{job_id}}/faces/{{index}}/{{role}}", tags=["jobs"], responses=errors(401, 404, 422, 503)
    )
    def job_face(job_id: str, index: int, role: str, request: Request):
        """One face's aligned input crop (``cropped``) or restoration (``restored``), PNG at the model size."""
        api.authorize(request)
        job = api.find(job_id)
        path = job.files.get(f"{role}_{index:02d}") if role in ("cropped", "restored") and index >= 0 else None
        if job.state != "done" or path is None:
            raise HTTPException(404, f"job {job.id}: no face {index} {role}")
        return FileResponse(path, media_type="image/png")

    @app.get(f"/{API_VERSION}/results.zip", tags=["jobs"], responses=errors(401, 404, 409, 422, 503))
    def results_zip(request: Request, ids: str = Query("", description="job ids, comma-separated (at most 200)")):
        """A ZIP of the restored photos of finished jobs (``ids`` comma-separated, at most 200)."""
        api.authorize(request)
        if not ids.strip(", "):
            raise HTTPException(422, "ids: give the job ids to zip, comma-separated: /v1/results.zip?ids=ID1,ID2")
        if len(ids) > 200 * 33:
            raise HTTPException(422, "ids: at most 200 job ids, comma-separated")
        jobs = [api.find(i) for i in ids.split(",")[:200] if i]
        return _zip_results(jobs)


def _zip_results(jobs: list[Job]) -> Response:
    """The restored photos of the finished ``jobs`` as one ZIP (names made unique); 409 when none has finished."""
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
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="restored.zip"'},
    )
