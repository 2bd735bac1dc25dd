"""The job queue: bounded, one worker, batching across queued requests, per-job timeout, cancel, TTL cleanup.

A job is one uploaded photo with its :class:`~prefrestore.restore.options.RestoreSettings`. ``submit`` refuses a new
job with :class:`QueueFull` (the API answers 429 + Retry-After) when ``max_queued`` jobs are already waiting, or when
the jobs ahead of it would take more than ``ADMIT_FRACTION`` of the job timeout at the recent per-photo speed (so
an overloaded server says 429 at once instead of accepting work that would time out). Admission always recovers:
an idle server (nothing queued, nothing running) admits a job whatever it measured before, and the per-photo
estimate halves every ``IDLE_HALF_LIFE_S`` seconds of idleness (a slow photo measured long ago does not refuse work
forever: nothing would run to measure a faster one). ``Retry-After`` is the estimated time until a job would be
admitted: the rest of the running batch for a full queue, the excess over the admission bound otherwise. One
worker thread takes the oldest job plus every other queued job with equal options (up to ``max_batch``) and hands
them to the runner as one batch, so their faces are restored together in the restorer's batches. Jobs are kept
in memory and in ``workdir/jobs/<id>/`` until ``result_ttl_s`` after they finish; then both are removed.

States: queued -> running -> done | failed | cancelled; a running job that is cancelled says ``cancelling`` until
its run reaches the next stage boundary (the runner's next progress report: after detection, after each restorer
batch, after each photo is written) and is then ``cancelled``; when no job of its batch still wants the result the
run is aborted there, so the worker is free within one stage. A job that passes its deadline fails with "timed out"
(while queued at once; while running at the next progress event, and the run is aborted when no job of its batch
still wants the result); a queued job that the recent speed says cannot finish in time is failed early as
"overloaded" (load shedding when the server slows down after admitting it; never a job an idle server admitted,
which runs and measures the speed anew). A failed job never has a result image.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..restore.options import RestoreSettings
from .schemas import batch_key

logger = logging.getLogger(__name__)

TERMINAL = ("done", "failed", "cancelled")
ADMIT_FRACTION = 0.8  # admit a job only if its expected wait + run is below this share of the job timeout
IDLE_HALF_LIFE_S = 10.0  # the per-photo estimate halves with every 10 s the server spends idle


class QueueFull(Exception):
    """The queue holds ``max_queued`` waiting jobs; ``retry_after`` is a suggested wait in whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry in {retry_after} s")
        self.retry_after = retry_after


class Aborted(BaseException):
    """Raised inside a run (out of its progress callback) when every job of its batch was cancelled or timed out.

    A ``BaseException``, like ``KeyboardInterrupt``: the pipeline's per-photo error boundaries (``except
    Exception``) must not turn a stop into a failed photo and go on working."""


@dataclass(eq=False)
class Job:
    """One request. ``dir`` is ``workdir/jobs/<id>``; the upload is ``dir/input<ext>``.

    progress: 0..1 within the current run (this job's faces restored / found); stage: a word for people.
    faces_found / faces_restored: this photo's own face counts while it runs (None before detection).
    result: the runner's JSON report of the restored photo (faces, timings, model), set when ``state == "done"``;
    files: role -> path of the result files (``"output"``, ``"cropped_NN"``, ``"restored_NN"``).
    """

    id: str
    name: str
    options: RestoreSettings
    dir: Path
    upload: Path
    created: float
    deadline: float
    state: str = "queued"
    stage: str = "queued"
    progress: float = 0.0
    faces_found: int | None = None
    faces_restored: int = 0
    error: str | None = None
    error_code: str | None = None  # "bad_image", "bad_option", "restore_failed", "timeout", "overloaded", "cancelled"
    result: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    finished: float | None = None
    probe: bool = False  # admitted by an idle server whatever the estimate said: never shed
    version: int = 0  # bumped on every change
    listeners: list[Callable[[], None]] = field(default_factory=list)  # called (worker thread) on every change

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


class BatchRunner(Protocol):
    """Restores a batch of running jobs (equal options): sets each job's result/files or error via the queue's
    :meth:`JobQueue.finish`, and reports progress through ``progress(fraction, stage, job=None)`` (one job, or
    every job of the batch; ``fraction=None``: nothing new); each call is a stage boundary, where :class:`Aborted` is raised out of ``progress`` to
    stop."""

    def __call__(self, jobs: Sequence[Job], queue: JobQueue, progress: Progress) -> None: ...


class Progress(Protocol):
    def __call__(
        self, fraction: float | None, stage: str, job: Job | None = None, *, faces: tuple[int, int] | None = None
    ) -> None: ...


class JobQueue:
    """Thread-safe job store and worker. ``start()`` launches the worker and cleaner threads, ``stop()`` ends them."""

    def __init__(
        self,
        runner: BatchRunner,
        workdir: Path,
        *,
        max_queued: int = 64,
        max_batch: int = 8,
        job_timeout_s: float = 300.0,
        result_ttl_s: float = 600.0,
        batch_wait_s: float = 0.02,
    ) -> None:
        self.runner = runner
        self.root = Path(workdir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_queued, self.max_batch = max_queued, max_batch
        self.job_timeout_s, self.result_ttl_s, self.batch_wait_s = job_timeout_s, result_ttl_s, batch_wait_s
        self._jobs: dict[str, Job] = {}
        self._pending: list[Job] = []
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._run_seconds: list[float] = []  # per-photo run times of recent batches: admission, shedding, Retry-After
        self._batch_started: float | None = None  # monotonic start of the running batch
        self._idle_since: float | None = None  # monotonic time the worker last became idle (None: busy or never ran)
        self.counters = {"submitted": 0, "done": 0, "failed": 0, "cancelled": 0, "rejected_full": 0, "shed": 0}

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._work, "prefrestore-worker"), (self._clean, "prefrestore-cleaner")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    # -- API -------------------------------------------------------------------------------------------------------

    def submit(self, name: str, ext: str, data: bytes, options: RestoreSettings) -> Job:
        """Store the upload in the job's own folder and queue it. Raises QueueFull."""
        with self._cond:
            now = time.monotonic()
            wait = self._admission_wait(now)
            if wait is not None:
                self.counters["rejected_full"] += 1
                raise QueueFull(wait)
            job_id = uuid.uuid4().hex
            folder = self.root / job_id
            job = Job(job_id, name, options, folder, folder / f"input{ext}", now, now + self.job_timeout_s)
            job.probe = not self._pending and not self._running
            if self._idle_since is not None:  # the idle decay becomes the estimate the new work starts from
                factor = self._idle_decay(now)
                self._run_seconds = [t * factor for t in self._run_seconds]
                self._idle_since = None
            self._jobs[job_id] = job
            self._pending.append(job)
            self.counters["submitted"] += 1
        try:
            folder.mkdir(parents=True)
            job.upload.write_bytes(data)
        except OSError as err:
            self.finish(job, error=f"{name}: the server cannot store the upload ({err.strerror or err})")
            return job
        with self._cond:
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """1 = next to run; 0 = running or finished."""
        with self._cond:
            return self._pending.index(job) + 1 if job in self._pending else 0

    def cancel(self, job: Job) -> bool:
        """Cancel a queued job (``cancelled`` at once) or a running one (``cancelling`` until its run reaches the
        next stage boundary, then ``cancelled``) -> False when it had already finished."""
        with self._cond:
            if job.terminal:
                return False
            if job in self._pending:
                self._pending.remove(job)
                self._set_terminal(job, "cancelled", error=f"{job.name}: cancelled", code="cancelled")
            elif job.state != "cancelling":
                job.state = job.stage = "cancelling"
                self._changed(job)
            return True

    def wait(self, job: Job, timeout: float) -> bool:
        """Block until the job is terminal or ``timeout`` s passed -> whether it is terminal."""
        end = time.monotonic() + timeout
        with self._cond:
            while not job.terminal:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def retry_after(self) -> int:
        """Seconds until a new job would likely be admitted (>= 1): what a 429 says in Retry-After."""
        with self._cond:
            return self._admission_wait(time.monotonic()) or 1

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "queued": len(self._pending),
                "running": len(self._running),
                "stored": len(self._jobs),
                **self.counters,
            }

    # -- called by the runner ----------------------------------------------------------------------------------------

    def finish(
        self,
        job: Job,
        *,
        result: dict | None = None,
        files: dict[str, Path] | None = None,
        error: str | None = None,
        code: str = "restore_failed",
    ) -> None:
        """Record a job's outcome (ignored when it was cancelled or timed out meanwhile)."""
        with self._cond:
            if job.terminal:
                return
            if job.state == "cancelling":
                self._set_terminal(job, "cancelled", error=f"{job.name}: cancelled", code="cancelled")
            elif error is not None:
                self._set_terminal(job, "failed", error=error, code=code)
            else:
                job.result, job.files = result, dict(files or {})
                job.progress = 1.0
                self._set_terminal(job, "done")

    def update(self, job: Job, progress: float, stage: str, faces: tuple[int, int] | None = None) -> None:
        """A running job's progress, stage and its own (found, restored) face counts (ignored once it is finished
        or cancelling)."""
        with self._cond:
            if job.state == "running":
                job.progress, job.stage = progress, stage
                if faces is not None:
                    job.faces_found, job.faces_restored = faces
                self._changed(job)

    def listen(self, job: Job, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from whichever thread changes the job; it must be quick) on every change of ``job``."""
        with self._cond:
            job.listeners.append(callback)

    def unlisten(self, job: Job, callback: Callable[[], None]) -> None:
        with self._cond:
            if callback in job.listeners:
                job.listeners.remove(callback)

    # -- internals ---------------------------------------------------------------------------------------------------

    def _set_terminal(self, job: Job, state: str, *, error: str | None = None, code: str | None = None) -> None:
        job.state, job.stage, job.error, job.error_code = state, state, error, code
        job.finished = time.monotonic()
        self._changed(job)
        self.counters["done" if state == "done" else state] += 1
        if code == "overloaded":
            self.counters["shed"] += 1
        self._cond.notify_all()

    def _changed(self, job: Job) -> None:
        """Bump the job's version and tell its listeners (lock held)."""
        job.version += 1
        for callback in list(job.listeners):
            callback()

    def _per_photo_s(self, now: float | None = None) -> float | None:
        """Seconds per photo of the slowest of the last 5 batches (None before the first one): a pessimistic
        speed, so admission and shedding react at once when the machine slows down. While the server is idle the
        estimate halves every ``IDLE_HALF_LIFE_S`` seconds (lock held)."""
        if not self._run_seconds:
            return None
        return max(self._run_seconds[-5:]) * self._idle_decay(time.monotonic() if now is None else now)

    def _idle_decay(self, now: float) -> float:
        """The factor the estimate has decayed by since the worker became idle (1 while busy) (lock held)."""
        if self._idle_since is None:
            return 1.0
        return 0.5 ** (max(0.0, now - self._idle_since) / IDLE_HALF_LIFE_S)

    def _running_left(self, now: float, per_photo: float) -> float:
        """Estimated seconds until the running batch ends (0 when none runs) (lock held)."""
        if not self._running or self._batch_started is None:
            return 0.0
        return max(0.0, per_photo * len(self._running) - (now - self._batch_started))

    def _expected_s(self, now: float) -> float:
        """Seconds until a job submitted now would be done: the rest of the running batch, the queued photos,
        then itself."""
        per_photo = self._per_photo_s(now)
        if per_photo is None:
            return 0.0
        return self._running_left(now, per_photo) + per_photo * (len(self._pending) + 1)

    def _admission_wait(self, now: float) -> int | None:
        """None when a job submitted now is admitted, else the whole seconds (>= 1) until one likely would be
        (lock held). An idle server admits always. A full queue frees places when the running batch ends (or, with
        the worker between batches, when the next one does); otherwise a job is admitted once its expected time
        has dropped under the bound, which it does second for second as the running batch proceeds."""
        if not self._pending and not self._running:
            return None
        per_photo = self._per_photo_s(now) or 0.0
        if len(self._pending) >= self.max_queued:
            running_left = self._running_left(now, per_photo)
            wait = running_left if self._running else per_photo * min(self.max_batch, len(self._pending))
        else:
            wait = self._expected_s(now) - ADMIT_FRACTION * self.job_timeout_s
            if wait <= 0:
                return None
        return max(1, min(math.ceil(self.job_timeout_s), math.ceil(wait)))

    def _take_batch(self) -> list[Job]:
        """The oldest job and the queued jobs with its options, up to max_batch (lock held)."""
        first = self._pending[0]
        key = batch_key(first.options)
        batch = [j for j in self._pending if batch_key(j.options) == key][: self.max_batch]
        for j in batch:
            self._pending.remove(j)
            j.state, j.stage = "running", "starting"
            self._changed(j)
        self._running = batch
        self._batch_started, self._idle_since = time.monotonic(), None
        return batch

    def _expire(self, now: float) -> None:
        """Fail jobs past their deadline, and shed queued jobs that the recent speed says cannot finish before it
        (error_code "overloaded": the API answers 429 + Retry-After, as for a full queue) (lock held)."""
        for job in list(self._pending) + self._running:
            if not job.terminal and now > job.deadline:
                if job in self._pending:
                    self._pending.remove(job)
                if job.state == "cancelling":  # asked to stop: it stops as cancelled, whatever the clock says
                    self._set_terminal(job, "cancelled", error=f"{job.name}: cancelled", code="cancelled")
                    continue
                self._set_terminal(
                    job,
                    "failed",
                    error=f"{job.name}: timed out after {self.job_timeout_s:g} s "
                    "(the server is busy; retry later or raise --job-timeout)",
                    code="timeout",
                )
        per_photo = self._per_photo_s(now)
        if per_photo is None:
            return
        for k, job in enumerate(list(self._pending)):
            # a job an idle server admitted always runs: it is what measures the speed anew
            if not job.probe and now + per_photo * (len(self._running) + k + 1) > job.deadline:
                self._pending.remove(job)
                self._set_terminal(
                    job,
                    "failed",
                    code="overloaded",
                    error=f"{job.name}: the server is overloaded and would not finish it within "
                    f"{self.job_timeout_s:g} s; retry later",
                )

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait(0.5)
                if self._stop:
                    return
            time.sleep(self.batch_wait_s)  # let requests arriving together join one batch
            with self._cond:
                self._expire(time.monotonic())
                if not self._pending:
                    continue
                batch = self._take_batch()

            def progress(
                fraction: float | None,
                stage: str,
                job: Job | None = None,
                *,
                faces: tuple[int, int] | None = None,
                batch=batch,
            ) -> None:
                with self._cond:  # a stage boundary: the run stops here when no job of the batch wants it
                    self._expire(time.monotonic())
                    if all(j.terminal or j.state == "cancelling" for j in batch):
                        raise Aborted("every job of this batch was cancelled or timed out")
                    for j in batch:  # the others still want the run: a cancelled job stops waiting for it now
                        if j.state == "cancelling":
                            self._set_terminal(j, "cancelled", error=f"{j.name}: cancelled", code="cancelled")
                if fraction is None:  # a stage boundary with nothing new to report
                    return
                for j in batch if job is None else (job,):
                    self.update(j, fraction, stage, faces)

            t0 = time.monotonic()
            try:
                self.runner(batch, self, progress)
            except Aborted:
                pass
            except Exception as err:  # a runner bug fails its jobs, never the server
                logger.exception("batch failed")
                for j in batch:
                    self.finish(j, error=f"{j.name}: restoration failed ({type(err).__name__}: {err})")
            with self._cond:
                for j in batch:  # a runner that forgot a job must not leave it running forever
                    if j.state == "cancelling":  # the run has stopped (aborted, or finished without it)
                        self._set_terminal(j, "cancelled", error=f"{j.name}: cancelled", code="cancelled")
                    elif not j.terminal:
                        self._set_terminal(j, "failed", error=f"{j.name}: restoration failed (no result)")
                self._running = []
                self._run_seconds = (self._run_seconds + [(time.monotonic() - t0) / len(batch)])[-20:]
                self._batch_started = None
                if not self._pending:
                    self._idle_since = time.monotonic()

    def _clean(self) -> None:
        interval = max(0.05, min(1.0, self.result_ttl_s / 4))
        while True:
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(interval)
                now = time.monotonic()
                self._expire(now)
                old = [
                    j
                    for j in self._jobs.values()
                    if j.terminal and j.finished is not None and now - j.finished > self.result_ttl_s
                ]
                for j in old:
                    del self._jobs[j.id]
            for j in old:
                shutil.rmtree(j.dir, ignore_errors=True)
