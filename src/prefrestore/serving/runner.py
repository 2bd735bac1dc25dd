"""One batch of jobs -> :func:`prefrestore.restore.file_run.run_plan` -> each job's result files and JSON.

The uploads already sit in the jobs' folders; the batch is restored into a scratch layout folder
(``workdir/batches/<id>/``, the ``prefrestore restore`` layout, one input per job named by the job id), then each
job's files are moved into its own folder and its JSON report (the CLI's: per face its candidates' scores, the
identity guard's verdict, colour) is turned into the API's result (paths removed). Nothing here touches pixels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..faces.detect import NOT_PICKED, FaceDetector
from ..faces.identity import IdentityScorer
from ..restore.control import Scorers, SetupError
from ..restore.file_run import FileItem, OutputLayout, Plan, run_plan
from ..restore.options import RestoreOptions as ControlOptions
from ..restore.pipeline import PipelineConfig, Restorer
from .jobs import Job, JobQueue, Progress

logger = logging.getLogger(__name__)

_PATH_KEYS = ("input", "output", "cropped_faces", "restored_faces", "cmp")


@dataclass(frozen=True)
class ModelInfo:
    """What every result says about the model: the reference served, its resolution and a hash of its weights."""

    name: str
    resolution: int
    weights_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "resolution": self.resolution, "weights_sha256": self.weights_sha256}


def model_info(ref: str, resolution: int) -> ModelInfo:
    """The model reference -> its info; the hash covers every ``*.safetensors`` file of the model folder, in name
    order ("random" for a preset with random weights)."""
    from ..hub import resolve
    from ..models.presets import PRESETS

    if ref in PRESETS:
        return ModelInfo(ref, resolution, "random")
    folder = resolve(ref)
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return ModelInfo(ref, resolution, h.hexdigest())


class PipelineRunner:
    """The :class:`~prefrestore.serving.jobs.BatchRunner` of the server: restores a batch with ``run_plan``."""

    def __init__(
        self,
        restorer: Restorer,
        detector: FaceDetector,
        model: ModelInfo,
        workdir: Path,
        *,
        identity: IdentityScorer | None = None,
        batch_size: int = 8,
        device: str = "cpu",
    ) -> None:
        self.restorer, self.detector, self.model, self.identity = restorer, detector, model, identity
        self.scratch = Path(workdir) / "batches"
        self.batch_size, self.device = batch_size, device
        self._scorers: dict[tuple, Scorers] = {}

    def scorers(self, options: ControlOptions) -> Scorers:
        """The identity/landmark/rerank models of ``options`` (as ``prefrestore restore`` builds them once per run),
        kept across batches per rerank weights; the rerank reward and landmarks are built on first use."""
        key = (*sorted(options.rerank_weights.items()), options.identity_net, options.identity_guard)
        if key not in self._scorers:
            if len(self._scorers) >= 8:
                self._scorers.clear()
            self._scorers[key] = Scorers.for_options(options, identity=self.identity, device=self.device)
        return self._scorers[key]

    def __call__(self, jobs: Sequence[Job], queue: JobQueue, progress: Progress) -> None:
        options = jobs[0].options
        root = self.scratch / uuid.uuid4().hex
        out = options.output
        layout = OutputLayout(root, ext=out.output_format, jpeg_quality=out.jpeg_quality, overwrite=True)
        config = PipelineConfig.for_settings(options, batch_size=self.batch_size)
        items = {job.id: job for job in jobs}
        plan = Plan(todo=tuple(FileItem(job.upload, job.id) for job in jobs), skipped=(), failed=())
        tracker = _FaceProgress(jobs, progress)
        progress(0.02, "finding faces")
        try:
            try:
                run_plan(
                    plan,
                    self.restorer,
                    layout,
                    detector=self.detector,
                    config=config,
                    identity=self.identity,
                    progress=tracker.on_event,
                    run_info={"model": self.model.to_json()},
                    scorers=self.scorers(config.options),
                )
            except SetupError as err:  # e.g. a rerank reward not installed: the same for every job of the batch
                for job in jobs:
                    queue.finish(job, error=f"{job.name}: {err}", code="bad_option")
                return
            for job_id, job in items.items():
                self._collect(job, queue, layout, FileItem(job.upload, job_id))
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _collect(self, job: Job, queue: JobQueue, layout, item: FileItem) -> None:
        """Move one job's outputs into its folder and record its result (or its error)."""
        try:
            report = json.loads(layout.report_path(item).read_text())
        except (OSError, ValueError):
            queue.finish(job, error=f"{job.name}: restoration failed (no report was written)")
            return
        if report["status"] == "failed":  # no input_size: the upload could not be read
            code = "restore_failed" if "input_size" in report else "bad_image"
            queue.finish(job, error=_public(report.get("error", "restoration failed"), job), code=code)
            return
        files: dict[str, Path] = {}
        out = Path(report["output"])
        files["output"] = job.dir / f"output{out.suffix}"
        out.replace(files["output"])
        faces = []
        per_face = report.get("timings", {}).get("restore", 0.0) / max(len(report["faces"]), 1)
        for entry in report["faces"]:  # the CLI's per-face report; "index" as --faces numbers the faces
            index = entry["index"]
            for role, key in (("cropped", "cropped_faces"), ("restored", "restored_faces")):
                dest = job.dir / f"{role}_{index:02d}.png"
                Path(entry[key]).replace(dest)
                files[f"{role}_{index:02d}"] = dest
            faces.append(
                {
                    **{k: v for k, v in entry.items() if k not in _PATH_KEYS},
                    "timings": {"restore": round(per_face, 4)},
                    "model": self.model.to_json(),
                }
            )
        result = {k: v for k, v in report.items() if k not in _PATH_KEYS and k != "faces"}
        result["faces"] = faces
        result["notes"] = [_public(n, job) for n in result.get("notes", [])]
        not_picked = sum(1 for r in report.get("rejected", ()) if r["reason"].startswith(NOT_PICKED))
        result["faces_found"] = len(faces) + not_picked
        selected = job.options.control.faces
        missing = sorted(set(selected) - {f["index"] for f in faces}) if selected is not None else []
        if missing:
            result["notes"].append(f"faces {missing} not found: the photo has {result['faces_found']} faces")
        result["name"] = job.name
        queue.finish(job, result=result, files=files)


class _FaceProgress:
    """The pipeline's progress events of one batch -> each job's own progress: its face count (the pipeline names
    the photo of each "faces_found"), its restored faces (the group's faces are restored in the order they were
    found, so a job's share is the restored count past the faces found before it), "writing results" as each
    photo of the group is written. Every event is a stage boundary of the queue (where a cancelled run stops)."""

    def __init__(self, jobs: Sequence[Job], progress: Progress) -> None:
        self.jobs, self.progress = list(jobs), progress
        self.group: list[tuple[Job, int, int]] = []  # (job, faces found, faces found before it in the group)
        self.restored = self.written = 0
        self.closed = False  # the group's faces are being restored: the next "faces_found" starts a new group

    def _job(self, message: str | None) -> Job | None:
        return next((j for j in self.jobs if message and j.id in message), None)

    def on_event(self, event: str, n: int, message: str | None = None) -> None:
        if event == "faces_found":
            if self.closed:
                self.group, self.restored, self.written, self.closed = [], 0, 0, False
            job = self._job(message)
            if job is None:  # a pipeline that does not name the photo: the batch's count for every job
                self.progress(0.1, f"restoring {n} faces")
                return
            self.group.append((job, n, sum(k for _, k, _ in self.group)))
            self.progress(0.1, f"restoring {n} face{'' if n == 1 else 's'}", job, faces=(n, 0))
        elif event == "faces_restored":
            self.closed = True
            before = self.restored
            self.restored += n
            changed = [
                (job, found, min(max(self.restored - offset, 0), found))
                for job, found, offset in self.group
                if min(max(self.restored - offset, 0), found) != min(max(before - offset, 0), found)
            ]
            if not changed:  # e.g. a candidate round that finished no face: still a boundary
                self.progress(None, "")
            for job, found, done in changed:
                self.progress(
                    0.1 + 0.8 * done / max(found, 1), f"restored {done} of {found} faces", job, faces=(found, done)
                )
        elif event == "image_done":
            self.closed = True
            if self.written < len(self.group):
                job, found, _ = self.group[self.written]
                self.progress(0.95, "writing results", job, faces=(found, found))
            else:
                self.progress(0.95, "writing results")
            self.written += 1


def _public(message: str, job: Job) -> str:
    """A pipeline message about the upload file -> the same message naming the user's file, not server paths."""
    return message.replace(str(job.upload), job.name).replace(str(job.dir), "")


def load_runner(
    model: str,
    workdir: Path,
    *,
    device: str = "cpu",
    steps: int | None = None,
    batch_size: int = 8,
    identity: bool = True,
) -> tuple[PipelineRunner, ModelInfo]:
    """Load the restorer (``prefrestore.restore.api.load_restorer``), the MTCNN detector and, when dlib is installed and
    ``identity``, the identity scorer -> the runner and its model info (what ``prefrestore serve`` serves)."""
    from ..faces.detect import build_detector
    from ..faces.identity import load_identity_scorer
    from ..restore.api import load_restorer

    restorer = load_restorer(model, device=device, steps=steps, batch_size=batch_size)
    info = model_info(model, restorer.resolution)
    detector = build_detector("mtcnn", device=device, min_face_size=12.0)  # any request's --min-face-size >= 12
    scorer = load_identity_scorer() if identity else None
    return PipelineRunner(
        restorer, detector, info, workdir, identity=scorer, batch_size=batch_size, device=device
    ), info
