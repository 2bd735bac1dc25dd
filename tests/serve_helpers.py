"""A real `prefrestore serve` app on a free loopback port, in a thread, with a fast restorer (tests only)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from prefrestore.serving.runner import ModelInfo, PipelineRunner

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "prefrestore" / "assets" / "examples"


class InvertRestorer:
    """Restores a face by inverting it (255 - x): fast, and its effect on the output is unmistakable.

    ``delay`` seconds per call, and ``gate`` (a threading.Event) that a call waits for, let tests hold the worker.
    """

    resolution = 128

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.calls, self.batch_sizes = delay, 0, []
        self.gate = threading.Event()
        self.gate.set()

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        self.calls += 1
        self.batch_sizes.append(len(faces))
        self.gate.wait(30)
        time.sleep(self.delay)
        return [255 - f for f in faces]


class BrokenRestorer(InvertRestorer):
    def restore(self, faces, *, seed=0):
        raise RuntimeError("simulated GPU failure")


class FarIdentity:
    """A stand-in for the dlib identity scorer: a restoration equal to its input is the same person (distance 0),
    any other is far (distance 0.9, above the guard's 0.5 threshold)."""

    def compare(self, inputs, restored):
        from prefrestore.faces.identity import IdentityScore

        return [
            IdentityScore(1.0, 0.0) if np.array_equal(a, b) else IdentityScore(0.1, 0.9)
            for a, b in zip(inputs, restored, strict=True)
        ]


def fake_loader(restorer, detector, workdir: Path, *, batch_size: int = 8, identity=None):
    """A loader of the server's runner around a pipeline of these components (``workdir``: the server's; the
    runner writes only into the jobs' folders)."""
    from prefrestore.restore.loaded import Pipeline
    from prefrestore.restore.pipeline import PipelineConfig

    info = ModelInfo("test-invert", restorer.resolution, "0" * 64)
    pipeline = Pipeline(restorer, detector, PipelineConfig(batch_size=batch_size), identity=identity)
    return lambda: (PipelineRunner(pipeline, info), info)


@contextmanager
def running_server(app, *, timeout: float = 60.0):
    """Serve an ASGI app with uvicorn on 127.0.0.1, a free port -> its base URL; waits until /readyz is 200."""
    import requests
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + timeout
    while not (server.started and server.servers):
        assert time.monotonic() < end, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    while requests.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < end, "model did not load"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@contextmanager
def serve(tmp_path, detector, restorer=None, identity=None, **settings):
    """A server over ``restorer`` (default: an InvertRestorer) with these ServerSettings -> (url, restorer, state)."""
    from prefrestore.serving.app import create_app
    from prefrestore.serving.schemas import ServerSettings

    restorer = restorer or InvertRestorer()
    workdir = tmp_path / "work"
    app = create_app(
        ServerSettings(workdir=workdir, **settings), fake_loader(restorer, detector, workdir, identity=identity)
    )
    with running_server(app) as url:
        yield url, restorer, app.server


def post(url, data, name="photo.jpg", options=None, path="/v1/restore", **kw):
    import json

    import requests

    form = {"options": json.dumps(options)} if options is not None else {}
    return requests.post(url + path, files={"file": (name, data)}, data=form, timeout=60, **kw)


def wait_state(url, job_id, states, timeout=30):
    import requests

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = requests.get(f"{url}/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def wait_inside_restorer(restorer, timeout=30):
    """Wait until a run has entered the (gated) restorer: a job is "running" from detection on, so a cancel sent
    earlier could land on a stage boundary before the restorer and finish the job at once."""
    end = time.monotonic() + timeout
    while restorer.calls < 1:
        assert time.monotonic() < end, "the job never reached the restorer"
        time.sleep(0.02)


def result_of(url, response):
    """The full result of a synchronous restore: the job resource named by its ``X-Prefrestore-Job`` header (the
    ``X-Prefrestore-Result`` header holds a bounded summary only)."""
    import requests

    return requests.get(f"{url}/v1/jobs/{response.headers['X-Prefrestore-Job']}", timeout=30).json()["result"]
