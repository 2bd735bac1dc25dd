"""One batch of jobs -> the pipeline object, in memory -> each job's result files and JSON.

Each upload is decoded (as ``prefrestore restore`` reads a file: the same limits and one-line errors), the batch
goes through :meth:`prefrestore.restore.loaded.Pipeline.restore_photos` (the faces of all its photos share the
restorer's batches), and each photo's result becomes its job's answer as soon as it is composed: the restored photo
and its face crops are written into the job's folder (what the queue serves for download) and the JSON result is
built from the in-memory report (:func:`prefrestore.restore.file_run.photo_report`: per face its candidates'
scores, the identity guard's verdict, colour). No report file is written or read back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..faces.detect import NOT_PICKED
from ..io.image import save_rgb
from ..io.photo_io import Photo, photo_for_format, read_photo, write_photo
from ..restore.control import SetupError
from ..restore.file_run import FileItem, OutputLayout, memory_check, photo_notes, photo_report, read_failure
from ..restore.loaded import Pipeline
from ..restore.options import RestoreSettings
from ..restore.pipeline import PhotoResult, PipelineConfig
from .jobs import Job, JobQueue, Progress

logger = logging.getLogger(__name__)


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
    """The :class:`~prefrestore.serving.jobs.BatchRunner` of the server: restores a batch with the pipeline."""

    def __init__(self, pipeline: Pipeline, model: ModelInfo) -> None:
        self.pipeline, self.model = pipeline, model

    def __call__(self, jobs: Sequence[Job], queue: JobQueue, progress: Progress) -> None:
        config = PipelineConfig.for_settings(jobs[0].options, batch_size=self.pipeline.batch_size)
        by_id = {job.id: job for job in jobs}
        tracker = _FaceProgress(jobs, progress)
        progress(0.02, "finding faces")
        reads: dict[str, float] = {}
        try:
            pipeline = self.pipeline.with_config(config)  # a request the restorer cannot honour: SetupError
            for res in pipeline.restore_photos(
                self._decode(jobs, queue, config, tracker, reads), progress=tracker.on_event
            ):
                job = by_id[res.key]
                res.timings["read"] = reads.pop(job.id, 0.0)
                self._finish(job, queue, res, config)
                tracker.on_event("image_done", 1)
        except SetupError as err:  # e.g. a rerank reward not installed: the same for every job of the batch
            for job in jobs:
                queue.finish(job, error=f"{job.name}: {err}", code="bad_option")

    def _decode(
        self, jobs: Sequence[Job], queue: JobQueue, config: PipelineConfig, tracker, reads: dict[str, float]
    ) -> Iterator[tuple[str, Photo]]:
        """The uploads, decoded one at a time -> (job id, photo); an upload that cannot be read fails its job."""
        accept = memory_check(config, aligned=False)
        for job in jobs:
            t0 = time.perf_counter()
            try:
                photo = read_photo(job.upload, accept=accept)
            except Exception as err:
                queue.finish(job, error=_public(read_failure(job.upload, err), job), code="bad_image")
                tracker.on_event("image_done", 1)
                continue
            reads[job.id] = time.perf_counter() - t0
            yield job.id, photo

    def _finish(self, job: Job, queue: JobQueue, res: PhotoResult, config: PipelineConfig) -> None:
        """One photo's result -> its files in the job's folder and its JSON result (or its error)."""
        report = {"model": self.model.to_json(), "options": config.options.to_dict(), **photo_report(res, config)}
        if not res.ok:
            queue.finish(job, error=_public(res.error or "restoration failed", job), code="restore_failed")
            return
        t0 = time.perf_counter()
        files: dict[str, Path] = {}
        out = job.options.output
        layout = OutputLayout(job.dir, ext=out.output_format, jpeg_quality=out.jpeg_quality)
        suffix = layout.photo_path(FileItem(job.upload, job.id), aligned=False).suffix
        photo, format_notes = photo_for_format(res.photo, suffix)
        files["output"] = job.dir / f"output{suffix}"
        write_photo(files["output"], photo, quality=layout.jpeg_quality)
        for f in res.faces:
            for role, image in (("cropped", f.aligned.crop), ("restored", f.restored)):
                files[f"{role}_{f.index:02d}"] = job.dir / f"{role}_{f.index:02d}.png"
                save_rgb(files[f"{role}_{f.index:02d}"], image)
        res.timings["write"] = time.perf_counter() - t0
        report.update(
            output_size=list(photo.size),
            notes=photo_notes(res, config, job.upload) + format_notes,
            timings={k: round(float(v), 4) for k, v in res.timings.items()},
        )
        queue.finish(job, result=self._result(job, report), files=files)

    def _result(self, job: Job, report: dict) -> dict:
        """The API's result of one photo: its report, each face with its share of the restore time and the model,
        the notes naming the user's file, the faces found and the faces asked for but not found."""
        per_face = report["timings"].get("restore", 0.0) / max(len(report["faces"]), 1)
        faces = [
            {**entry, "timings": {"restore": round(per_face, 4)}, "model": self.model.to_json()}
            for entry in report["faces"]  # "index" as --faces numbers the faces
        ]
        result = {k: v for k, v in report.items() if k != "faces"}
        result["faces"] = faces
        result["notes"] = [_public(n, job) for n in result.get("notes", [])]
        not_picked = sum(1 for r in report.get("rejected", ()) if r["reason"].startswith(NOT_PICKED))
        result["faces_found"] = len(faces) + not_picked
        selected = job.options.control.faces
        missing = sorted(set(selected) - {f["index"] for f in faces}) if selected is not None else []
        if missing:
            result["notes"].append(f"faces {missing} not found: the photo has {result['faces_found']} faces")
        result["name"] = job.name
        return result


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


def load_runner(settings: RestoreSettings) -> tuple[PipelineRunner, ModelInfo]:
    """Load the pipeline of the server's settings (:func:`prefrestore.restore.loaded.load_pipeline`: the restorer,
    the MTCNN detector and, when dlib is installed and ``output.identity`` is "auto", the identity scorer) -> the
    runner and its model info (what ``prefrestore serve`` serves). The runner writes only into the jobs' folders."""
    from ..restore.loaded import load_pipeline

    pipeline = load_pipeline(settings, detector_min_face_size=12.0)  # any request's --min-face-size >= 12
    info = model_info(settings.sampling.model or "default", pipeline.resolution)
    return PipelineRunner(pipeline, info), info
