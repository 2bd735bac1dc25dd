"""One batch of jobs -> :func:`prefrestore.pipeline.run_plan` -> each job's result files and JSON.

The uploads already sit in the jobs' folders; the batch is restored into a scratch layout folder
(``workdir/batches/<id>/``, the ``prefrestore restore`` layout, one input per job named by the job id), then each
job's files are moved into its own folder and its JSON report is turned into the API's result (paths removed,
face indices of a face selection mapped back). Nothing here touches pixels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..faces.detect import FaceDetector, SelectConfig, select_faces
from ..faces.identity import IdentityScorer
from ..faces.types import FaceDetection
from ..pipeline import FileItem, Plan, Restorer, run_plan
from .jobs import Job, JobQueue

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


class SelectedFaces:
    """A detector that returns only the chosen faces of a photo: ``indices`` into the faces that ``select`` keeps
    (left to right, the indices of an earlier result with the same options). Records how many faces there were."""

    def __init__(self, detector: FaceDetector, select: SelectConfig, indices: Sequence[int]) -> None:
        self.detector, self.select, self.indices = detector, select, tuple(indices)
        self.found: int | None = None

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        keep, _ = select_faces(self.detector.detect(image), (image.shape[1], image.shape[0]), self.select)
        self.found = len(keep)
        return [keep[i] for i in self.indices if i < len(keep)]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(im) for im in images]


class PipelineRunner:
    """The :class:`~prefrestore.serving.jobs.BatchRunner` of the server: restores a batch with ``run_plan``."""

    def __init__(self, restorer: Restorer, detector: FaceDetector, model: ModelInfo, workdir: Path, *,
                 identity: IdentityScorer | None = None, batch_size: int = 8) -> None:
        self.restorer, self.detector, self.model, self.identity = restorer, detector, model, identity
        self.scratch = Path(workdir) / "batches"
        self.batch_size = batch_size

    def __call__(self, jobs: Sequence[Job], queue: JobQueue, progress: Callable[[float, str], None]) -> None:
        options = jobs[0].options
        root = self.scratch / uuid.uuid4().hex
        layout = options.output_layout(root)
        config = options.pipeline_config(batch_size=self.batch_size)
        detector: FaceDetector = self.detector
        if options.faces is not None:
            detector = SelectedFaces(self.detector, config.select, options.faces)
        items = {job.id: job for job in jobs}
        plan = Plan(todo=tuple(FileItem(job.upload, job.id) for job in jobs), skipped=(), failed=())
        count = {"found": 0, "restored": 0}

        def on_event(event: str, n: int, message: str | None = None) -> None:
            if event == "faces_found":
                count["found"] += n
                progress(0.1, f"restoring {count['found']} faces")
            elif event == "faces_restored":
                count["restored"] += n
                progress(0.1 + 0.8 * count["restored"] / max(count["found"], 1),
                         f"restored {count['restored']} of {count['found']} faces")
            elif event == "image_done":
                progress(0.95, "writing results")

        progress(0.02, "finding faces")
        try:
            run_plan(plan, self.restorer, layout, detector=detector, config=config, identity=self.identity,
                     progress=on_event, run_info={"model": self.model.to_json()})
            for job_id, job in items.items():
                self._collect(job, queue, layout, FileItem(job.upload, job_id), detector)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _collect(self, job: Job, queue: JobQueue, layout, item: FileItem, detector) -> None:
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
        selected = list(job.options.faces) if job.options.faces is not None else None
        faces = []
        per_face = report.get("timings", {}).get("restore", 0.0) / max(len(report["faces"]), 1)
        for entry in report["faces"]:
            k = entry["index"]
            index = selected[k] if selected is not None else k
            for role, key in (("cropped", "cropped_faces"), ("restored", "restored_faces")):
                dest = job.dir / f"{role}_{index:02d}.png"
                Path(entry[key]).replace(dest)
                files[f"{role}_{index:02d}"] = dest
            faces.append({**{k2: v for k2, v in entry.items() if k2 not in _PATH_KEYS}, "index": index,
                          "timings": {"restore": round(per_face, 4)}, "model": self.model.to_json()})
        result = {k: v for k, v in report.items() if k not in _PATH_KEYS and k != "faces"}
        result["faces"] = faces
        result["notes"] = [_public(n, job) for n in result.get("notes", [])]
        if selected is not None and isinstance(detector, SelectedFaces) and detector.found is not None:
            missing = [i for i in selected if i >= detector.found]
            result["faces_found"] = detector.found
            if missing:
                result["notes"].append(f"faces {missing} not found: the photo has {detector.found} faces")
        else:
            result["faces_found"] = len(faces)
        result["name"] = job.name
        queue.finish(job, result=result, files=files)


def _public(message: str, job: Job) -> str:
    """A pipeline message about the upload file -> the same message naming the user's file, not server paths."""
    return message.replace(str(job.upload), job.name).replace(str(job.dir), "")


def load_runner(model: str, workdir: Path, *, device: str = "cpu", steps: int | None = None,
                batch_size: int = 8, identity: bool = True) -> tuple[PipelineRunner, ModelInfo]:
    """Load the restorer (``prefrestore.api.load_restorer``), the MTCNN detector and, when dlib is installed and
    ``identity``, the identity scorer -> the runner and its model info (what ``prefrestore serve`` serves)."""
    from ..api import load_restorer
    from ..faces.detect import build_detector
    from ..faces.identity import load_identity_scorer

    restorer = load_restorer(model, device=device, steps=steps, batch_size=batch_size)
    info = model_info(model, restorer.resolution)
    detector = build_detector("mtcnn", device=device, min_face_size=12.0)  # any request's --min-face-size >= 12
    scorer = load_identity_scorer() if identity else None
    return PipelineRunner(restorer, detector, info, workdir, identity=scorer, batch_size=batch_size), info
