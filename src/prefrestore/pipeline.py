"""Whole-photo restoration: detect -> align -> restore (batched across photos) -> paste back.

This is the only module that knows the stage order (STYLE.md P7, P14). Each stage is a function of its inputs:
detection and selection (``faces/detect.py``), alignment (``faces/align.py``), the restorer (anything with
``resolution`` and ``restore``), paste-back and background upsampling (``faces/paste.py``). Photos stream
through in groups: the faces of several photos fill one restorer batch, so a folder of portraits is restored
``batch_size`` faces at a time instead of one face at a time (GFPGAN#407, CodeFormer#157).

A failed restoration never becomes output: the photos of a failed batch come back with ``error`` set and no
``photo`` (STYLE.md P15; contrast CodeFormer, which writes the degraded input as the "restoration").

Pixels: :class:`~prefrestore.image.Photo` in and out (uint8 or uint16 RGB + alpha + metadata); the detector and
restorer see uint8 (H, W, 3) / (S, S, 3) RGB; paste-back works in float32 on [0, 255].
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from .control import FaceOutcome, Scorers, SetupError, restore_controlled
from .errors import ImageError, UserError
from .faces.align import align_many
from .faces.detect import FaceDetector, Rejected, SelectConfig, pick_faces, select_faces
from .faces.identity import IdentityScore, IdentityScorer
from .faces.paste import BackgroundUpsampler, BlendConfig, Resampler, build_upsampler, paste_back
from .faces.types import AlignedFace, RestoredFace
from .image import (
    MAX_PIXELS,
    Photo,
    float_to_pixels,
    list_images,
    photo_for_format,
    pixels_to_float,
    read_photo,
    resize,
    save_rgb,
    write_photo,
)
from .options import RestoreOptions

logger = logging.getLogger(__name__)


class Restorer(Protocol):
    """What the pipeline needs from a face restorer (``prefrestore.api.FaceRestorer`` satisfies it).

    ``restore`` maps uint8 (S, S, 3) RGB aligned crops, S == ``resolution``, to restorations of the same shape.
    Every face of a call must get its own generator seeded with ``seed`` (as ``FaceRestorer`` does), so a face
    restores the same alone or in any batch; the pipeline passes the run's seed to every call.
    """

    resolution: int

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]: ...


class Progress(Protocol):
    """Progress events: "faces_found" / "faces_restored" / "image_done" with a count, "failed" with a message."""

    def __call__(self, event: str, count: int, message: str | None = None) -> None: ...


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of a whole-photo run.

    upscale: output size / input size (``-s``); the background is resampled by ``upsampler``.
    batch_size: faces per restorer call. Photos are taken ``batch_size`` at a time (fewer when they exceed
        ``max_group_pixels``, which bounds memory); all faces of such a group are restored together.
    seed: the restorer's seed, the same for every face (so results do not depend on batching).
    options: fidelity, best-of-N, identity guard, colour and face choice (``prefrestore.options``; build the whole
        config from them with :meth:`from_options`, which also sets ``select`` and ``blend`` from them).
    """

    upscale: float = 2.0
    select: SelectConfig = field(default_factory=SelectConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    upsampler: Resampler = "lanczos"
    batch_size: int = 8
    seed: int = 0
    max_group_pixels: int = 64_000_000
    options: RestoreOptions = field(default_factory=RestoreOptions)

    @classmethod
    def from_options(cls, options: RestoreOptions, *, select: SelectConfig | None = None,
                     blend: BlendConfig | None = None, **kwargs) -> PipelineConfig:
        """A config whose face selection (min/max face size) and blend visibility come from ``options``; other
        selection and blend settings from ``select``/``blend``, the rest from ``kwargs``."""
        select = dataclasses.replace(select or SelectConfig(), min_face_size=options.min_face_size,
                                     max_face_size=options.max_face_size)
        blend = dataclasses.replace(blend or BlendConfig(), visibility=options.blend)
        return cls(select=select, blend=blend, options=options, **kwargs)

    def __post_init__(self) -> None:
        if not 0 < self.upscale <= 16:
            raise ValueError(f"upscale={self.upscale} must be in (0, 16]")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")


@dataclass(frozen=True, eq=False)
class FaceResult:
    """One face of a photo: its alignment (crop, transforms, detection), restoration and identity score."""

    index: int
    aligned: AlignedFace
    restored: np.ndarray  # uint8 (S, S, 3) RGB
    identity: IdentityScore | None = None
    control: FaceOutcome | None = None  # candidates, guard, colour (prefrestore.control)


@dataclass(frozen=True, eq=False)
class PhotoResult:
    """The outcome for one input. ``photo`` is None exactly when ``error`` is set.

    timings: seconds per stage for this photo ("detect", "align", "restore", "paste", "identity"); batched
    restoration is apportioned by face count.
    """

    key: Hashable
    source: Photo
    photo: Photo | None
    faces: tuple[FaceResult, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


# ----------------------------------------------------------------------------------------------------------------
# Stages


def restore_faces(
    restorer: Restorer,
    crops: Sequence[np.ndarray],
    *,
    batch_size: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[np.ndarray]:
    """uint8 (S, S, 3) RGB crops -> restorations, ``batch_size`` per restorer call, every call with ``seed``.

    Raises ValueError when the restorer returns the wrong number, shape or dtype of images.
    """
    out: list[np.ndarray] = []
    for start in range(0, len(crops), batch_size):
        batch = list(crops[start:start + batch_size])
        restored = restorer.restore(batch, seed=seed)
        if len(restored) != len(batch):
            raise ValueError(f"restorer returned {len(restored)} images for {len(batch)} faces")
        for r, c in zip(restored, batch, strict=True):
            if r.shape != c.shape or r.dtype != np.uint8:
                raise ValueError(f"restorer returned {r.dtype} {r.shape}, expected uint8 {c.shape}")
        out.extend(restored)
        if progress:
            progress("faces_restored", len(batch))
    return out


def compose(
    photo: Photo,
    faces: Sequence[RestoredFace],
    *,
    upscale: float,
    blend: BlendConfig,
    upsampler: BackgroundUpsampler,
) -> Photo:
    """Upscale the photo (colour and alpha) and paste the restored faces -> a Photo with the same metadata.

    DPI is multiplied by ``upscale`` so the print size stays the same.
    """
    w, h = photo.size
    size = (max(1, round(w * upscale)), max(1, round(h * upscale)))
    if size[0] * size[1] > MAX_PIXELS:
        raise UserError(f"output {size[0]}x{size[1]} is above the {MAX_PIXELS} pixel limit; use a smaller -s")
    background = upsampler(pixels_to_float(photo.color), size)  # (h', w', 3) float32 on [0, 255]
    color = float_to_pixels(paste_back(background, faces, blend, source_size=(w, h), inplace=True), photo.color.dtype)
    alpha = None
    if photo.alpha is not None:
        alpha = float_to_pixels(upsampler(pixels_to_float(photo.alpha)[..., None], size)[..., 0], photo.alpha.dtype)
    dpi = None if photo.dpi is None else (photo.dpi[0] * upscale, photo.dpi[1] * upscale)
    return dataclasses.replace(photo, color=color, alpha=alpha, dpi=dpi)


# ----------------------------------------------------------------------------------------------------------------
# Whole photos


def restore_photos(
    items: Iterable[tuple[Hashable, Photo]],
    restorer: Restorer,
    detector: FaceDetector,
    config: PipelineConfig | None = None,
    *,
    identity: IdentityScorer | None = None,
    progress: Progress | None = None,
    scorers: Scorers | None = None,
) -> Iterator[PhotoResult]:
    """Restore every face of every photo, batched across photos; yields one result per item, in input order.

    items: (key, photo) pairs, consumed lazily (a generator that reads files as it goes keeps memory bounded).
    scorers: the identity/landmark/rerank models of ``config.options`` (default: built from ``identity``).
    """
    config = config or PipelineConfig()
    scorers = scorers or Scorers(identity=identity, rerank_weights=dict(config.options.rerank_weights))
    upsampler = build_upsampler(config.upsampler)
    group: list[tuple[Hashable, Photo]] = []
    pixels = 0
    for key, photo in items:
        group.append((key, photo))
        pixels += photo.size[0] * photo.size[1]
        if len(group) >= config.batch_size or pixels >= config.max_group_pixels:
            yield from _run_group(group, restorer, detector, config, upsampler, scorers, progress)
            group, pixels = [], 0
    if group:
        yield from _run_group(group, restorer, detector, config, upsampler, scorers, progress)


def _run_group(
    group: list[tuple[Hashable, Photo]],
    restorer: Restorer,
    detector: FaceDetector,
    config: PipelineConfig,
    upsampler: BackgroundUpsampler,
    scorers: Scorers,
    progress: Progress | None,
) -> list[PhotoResult]:
    """Detect, align, restore (all faces of the group together) and compose one group of photos."""
    images = [photo.rgb8() for _, photo in group]
    timings: list[dict[str, float]] = [{} for _ in group]

    # Detection photo by photo: batching R/O-Net across photos changes their floating-point sums, and then
    # which borderline faces are found would depend on the other photos in the group.
    detections = []
    for image, t in zip(images, timings, strict=True):
        t0 = time.perf_counter()
        detections.append(detector.detect(image))
        t["detect"] = time.perf_counter() - t0

    # Selection and alignment, per photo.
    aligned: list[list[AlignedFace]] = []
    rejected: list[list[Rejected]] = []
    indices: list[list[int]] = []  # each face's index among the selected faces (kept when --faces picks some)
    for image, dets, t in zip(images, detections, timings, strict=True):
        t0 = time.perf_counter()
        keep, rej = select_faces(dets, (image.shape[1], image.shape[0]), config.select)
        picked, not_picked = pick_faces(keep, config.options.faces)
        aligned.append(align_many(image, [d for _, d in picked], restorer.resolution))
        indices.append([i for i, _ in picked])
        rejected.append(rej + not_picked)
        t["align"] = time.perf_counter() - t0
    crops = [a.crop for faces in aligned for a in faces]
    if progress:
        progress("faces_found", len(crops))

    # Restoration: all faces of the group, batch_size at a time; time shared out by face count.
    t0 = time.perf_counter()
    try:
        outcomes = restore_controlled(restorer, crops, config.options, seed=config.seed,
                                      batch_size=config.batch_size, scorers=scorers, progress=progress)
    except SetupError:
        raise  # a setup problem (a missing rerank reward, no fidelity dial): the same for every photo
    except Exception as err:  # any restorer failure fails these photos; nothing is written as if restored
        logger.debug("restoration failed", exc_info=True)
        message = f"restoration failed ({type(err).__name__}: {err})"
        return [
            PhotoResult(key=k, source=p, photo=None, rejected=tuple(r), timings=t, error=message)
            for (k, p), r, t in zip(group, rejected, timings, strict=True)
        ]
    elapsed = time.perf_counter() - t0
    restored = [o.restored for o in outcomes]

    results = []
    offset = 0
    for (key, photo), faces, idx, rej, t in zip(group, aligned, indices, rejected, timings, strict=True):
        mine = restored[offset:offset + len(faces)]
        controls = outcomes[offset:offset + len(faces)]
        t["restore"] = elapsed * len(faces) / max(len(crops), 1)  # includes reranking and the identity guard
        notes: list[str] = [] if faces else ["no face found: the photo was upscaled only"]
        notes += list(dict.fromkeys(n for o in controls for n in o.notes))
        face_results = tuple(
            FaceResult(index=i, aligned=a, restored=r, identity=o.identity, control=o)
            for i, a, r, o in zip(idx, faces, mine, controls, strict=True)
        )
        offset += len(faces)
        t0 = time.perf_counter()
        try:
            out = compose(
                photo,
                [RestoredFace(a, r) for a, r in zip(faces, mine, strict=True)],
                upscale=config.upscale,
                blend=config.blend,
                upsampler=upsampler,
            )
        except UserError as err:
            results.append(PhotoResult(key, photo, None, face_results, tuple(rej), t, error=str(err)))
            continue
        except Exception as err:  # e.g. out of memory for a huge -s: this photo fails, the others go on
            logger.debug("paste-back failed", exc_info=True)
            error = f"paste-back failed ({type(err).__name__}: {err})"
            results.append(PhotoResult(key, photo, None, face_results, tuple(rej), t, error=error))
            continue
        t["paste"] = time.perf_counter() - t0
        results.append(PhotoResult(key, photo, out, face_results, tuple(rej), t, notes=tuple(notes)))
    return results


def restore_image(
    image: np.ndarray,
    restorer: Restorer,
    detector: FaceDetector,
    config: PipelineConfig | None = None,
) -> np.ndarray:
    """Convenience for one in-memory image: uint8 (H, W, 3) RGB -> uint8 (H*s, W*s, 3) RGB. Raises on failure."""
    (result,) = restore_photos([(0, Photo(color=image))], restorer, detector, config)
    if result.error:
        raise RuntimeError(result.error)
    return result.photo.color


# ----------------------------------------------------------------------------------------------------------------
# Aligned crops (--aligned)


@dataclass(frozen=True, eq=False)
class AlignedResult:
    """An already-aligned input crop and its restoration (uint8 (S, S, 3) RGB, S = the restorer's resolution).

    input_size: the input's (width, height); the written output is the restoration resized to it when the input is
    larger than S (a 512 px crop restored by a 128 px model comes back at 512 px, not shrunk), else S x S.
    """

    key: Hashable
    crop: np.ndarray
    restored: np.ndarray | None
    identity: IdentityScore | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    notes: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None
    control: FaceOutcome | None = None

    def output_image(self) -> np.ndarray:
        """The restoration at the size it is written: the input's size if larger than S, else S x S."""
        assert self.restored is not None
        S = self.restored.shape[0]
        if self.input_size is None or max(self.input_size) <= S:
            return self.restored
        return resize(self.restored, self.input_size, resample="bicubic")

    @property
    def ok(self) -> bool:
        return self.error is None


def to_model_crop(photo: Photo, resolution: int) -> tuple[np.ndarray, list[str]]:
    """An aligned input -> uint8 (S, S, 3) RGB at the restorer's resolution, and notes on what was changed."""
    crop, notes = photo.rgb8(), []
    h, w = crop.shape[:2]
    if photo.bit_depth == 16:
        notes.append("16-bit input reduced to 8-bit for the restorer")
    if photo.alpha is not None:
        notes.append("alpha channel ignored for an aligned crop")
    if (w, h) != (resolution, resolution):
        if w != h:
            notes.append(f"input {w}x{h} is not square: stretched to {resolution}x{resolution}; is it really aligned?")
        else:
            notes.append(f"input {w}x{h} resized to the model resolution {resolution}x{resolution}")
        crop = resize(crop, (resolution, resolution), resample="lanczos" if w > resolution else "bicubic")
    return crop, notes


def restore_aligned(
    items: Iterable[tuple[Hashable, Photo]],
    restorer: Restorer,
    config: PipelineConfig | None = None,
    *,
    identity: IdentityScorer | None = None,
    progress: Progress | None = None,
    scorers: Scorers | None = None,
) -> Iterator[AlignedResult]:
    """Restore already-aligned face crops, ``batch_size`` per restorer call; yields results in input order.

    ``config.options.blend`` < 1 mixes the input crop back into each restoration (its visibility)."""
    config = config or PipelineConfig()
    scorers = scorers or Scorers(identity=identity, rerank_weights=dict(config.options.rerank_weights))
    visibility = config.options.blend
    pending: list[tuple[Hashable, np.ndarray, list[str], tuple[int, int]]] = []  # key, crop, notes, input size

    def flush() -> list[AlignedResult]:
        crops = [c for _, c, _, _ in pending]
        if progress:
            progress("faces_found", len(crops))
        t0 = time.perf_counter()
        try:
            outcomes = restore_controlled(restorer, crops, config.options, seed=config.seed,
                                          batch_size=config.batch_size, scorers=scorers, progress=progress)
        except SetupError:
            raise
        except Exception as err:  # report the batch as failed; never write the input as a restoration
            logger.debug("restoration failed", exc_info=True)
            message = f"restoration failed ({type(err).__name__}: {err})"
            return [AlignedResult(k, c, None, error=message, notes=tuple(n), input_size=z) for k, c, n, z in pending]
        per_face = (time.perf_counter() - t0) / len(crops)
        return [
            AlignedResult(k, c, _visible(o.restored, c, visibility), o.identity, {"restore": per_face},
                          notes=tuple(n + list(o.notes)), input_size=z, control=o)
            for (k, c, n, z), o in zip(pending, outcomes, strict=True)
        ]

    for key, photo in items:
        crop, notes = to_model_crop(photo, restorer.resolution)
        pending.append((key, crop, notes, photo.size))
        if len(pending) >= config.batch_size:
            yield from flush()
            pending = []
    if pending:
        yield from flush()


def _visible(restored: np.ndarray, crop: np.ndarray, visibility: float) -> np.ndarray:
    """uint8 restoration mixed with its input crop: visibility 1 = the restoration, 0 = the input."""
    if visibility >= 1.0:
        return restored
    mixed = visibility * pixels_to_float(restored) + (1.0 - visibility) * pixels_to_float(crop)
    return float_to_pixels(mixed, np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Files: the output layout of `prefrestore restore` (GFPGAN/CodeFormer folders, plus one JSON report per input)

OutputExt = Literal["auto", "png", "jpg"]


@dataclass(frozen=True)
class OutputLayout:
    """Where outputs go: ``root/{cropped_faces,restored_faces,cmp,restored_imgs,reports}``.

    ext: "auto" writes JPEG for JPEG inputs and PNG otherwise (PNG keeps alpha, 16 bits, grayscale, ICC, EXIF).
    suffix: appended to the restored photo's name. overwrite: redo inputs whose restored photo exists.
    """

    root: Path
    ext: OutputExt = "auto"
    suffix: str = ""
    overwrite: bool = False
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.ext not in ("auto", "png", "jpg"):
            raise ValueError(f"unknown ext={self.ext!r}; expected auto, png or jpg")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality} must be in 1..100")

    def photo_path(self, item: FileItem, *, aligned: bool) -> Path:
        """The main output of an input: the restored photo, or for an aligned crop its restoration."""
        if aligned:
            return self.root / "restored_faces" / f"{item.name}{self.suffix}.png"
        ext = {"png": ".png", "jpg": ".jpg"}.get(self.ext)
        if ext is None:
            ext = ".jpg" if item.path.suffix.lower() in (".jpg", ".jpeg") else ".png"
        return self.root / "restored_imgs" / f"{item.name}{self.suffix}{ext}"

    def face_path(self, folder: str, item: FileItem, index: int | None) -> Path:
        return self.root / folder / (f"{item.name}.png" if index is None else f"{item.name}_{index:02d}.png")

    def report_path(self, item: FileItem) -> Path:
        return self.root / "reports" / f"{item.name}.json"


@dataclass(frozen=True)
class FileItem:
    """An input file and the unique stem its outputs are named after."""

    path: Path
    name: str


@dataclass(frozen=True)
class Plan:
    """What a run will do: inputs to process, inputs skipped (outputs exist), inputs already failed (with why)."""

    todo: tuple[FileItem, ...]
    skipped: tuple[FileItem, ...]
    failed: tuple[tuple[str, str], ...]


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_files(inputs: Sequence[str | os.PathLike], layout: OutputLayout, *, aligned: bool = False) -> Plan:
    """Resolve inputs (files, folders, glob patterns) into a plan.

    Raises UserError when the output folder is an input folder or inside one (outputs would mix with inputs).
    An input that cannot be listed (missing, unreadable folder) becomes a failure and the others go on.
    """
    root = layout.root.resolve()
    paths: list[Path] = []
    failed: list[tuple[str, str]] = []
    for raw in inputs:
        folder = Path(raw)
        if folder.is_dir() and _is_within(root, folder.resolve()):
            raise UserError(
                f"{layout.root}: the output folder is inside the input folder {folder}; choose an -o outside it"
            )
        try:
            paths += list_images(raw)
        except ImageError as err:
            failed.append((str(raw), str(err)))
        except OSError as err:
            failed.append((str(raw), f"{raw}: cannot read ({err.strerror or err}); check its permissions"))
    unique = list(dict.fromkeys(paths))  # the same file named twice is done once
    stems: dict[str, int] = {}
    for p in unique:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    resolved_inputs = {p.resolve() for p in unique}
    todo, skipped, names = [], [], set()
    for p in unique:
        name = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        while name in names:  # a.jpg and a.JPG in one folder
            name += "_"
        names.add(name)
        item = FileItem(p, name)
        out = layout.photo_path(item, aligned=aligned)
        if out.resolve() in resolved_inputs:
            failed.append((str(p), f"{p}: the output {out} would overwrite an input; choose another -o"))
        elif out.exists() and not layout.overwrite:
            skipped.append(item)
        else:
            todo.append(item)
    return Plan(tuple(todo), tuple(skipped), tuple(failed))


@dataclass(frozen=True)
class RunSummary:
    """Outcome of a file run; ``exit_code`` is 0 when nothing failed."""

    restored: tuple[str, ...] = ()
    no_face: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    faces: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_plan(
    plan: Plan,
    restorer: Restorer,
    layout: OutputLayout,
    *,
    detector: FaceDetector | None,
    config: PipelineConfig | None = None,
    identity: IdentityScorer | None = None,
    progress: Progress | None = None,
    run_info: dict | None = None,
    scorers: Scorers | None = None,
) -> RunSummary:
    """Restore the plan's inputs and write every output. ``detector=None`` means the inputs are aligned crops.

    Unreadable inputs, failed restorations and failed writes are reported (``progress("failed", 0, message)``
    as they happen, and in the summary) while the other inputs go on. ``run_info`` goes into every report.
    """
    config = config or PipelineConfig()
    failed: list[tuple[str, str]] = list(plan.failed)
    read_times: dict[FileItem, float] = {}

    def fail(item: FileItem | str, message: str) -> None:
        failed.append((str(item.path if isinstance(item, FileItem) else item), message))
        if progress:
            progress("failed", 0, message)

    def read_all() -> Iterator[tuple[FileItem, Photo]]:
        for item in plan.todo:
            t0 = time.perf_counter()
            try:
                photo = read_photo(item.path)
            except ImageError as err:
                fail(item, str(err))
                _write_report(layout, item, {"input": str(item.path), "status": "failed", "error": str(err)})
                if progress:
                    progress("image_done", 1)
                continue
            read_times[item] = time.perf_counter() - t0
            yield item, photo

    restored, no_face, faces = [], [], 0
    if detector is None:
        results: Iterator = restore_aligned(read_all(), restorer, config, identity=identity, progress=progress,
                                            scorers=scorers)
    else:
        results = restore_photos(read_all(), restorer, detector, config, identity=identity, progress=progress,
                                 scorers=scorers)
    for res in results:
        item = res.key
        res.timings["read"] = read_times.pop(item, 0.0)
        try:
            report = _write_outputs(res, item, layout, run_info or {}, config)
        except OSError as err:
            fail(item, f"{item.path}: cannot write outputs ({err.strerror or err}); check the -o folder")
            report = None
        if progress:
            progress("image_done", 1)
        if report is None:
            continue
        if report["status"] == "failed":
            fail(item, f"{item.path}: {report['error']}")
        elif report["status"] == "no_face":
            no_face.append(str(item.path))
        else:
            restored.append(str(item.path))
            faces += len(report.get("faces", ()))
    return RunSummary(
        restored=tuple(restored),
        no_face=tuple(no_face),
        skipped=tuple(str(i.path) for i in plan.skipped),
        failed=tuple(failed),
        faces=faces,
    )


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def _write_outputs(
    res: PhotoResult | AlignedResult, item: FileItem, layout: OutputLayout, run_info: dict, config: PipelineConfig
) -> dict:
    """Write a result's images and its JSON report -> the report."""
    report: dict = {"input": str(item.path), **run_info, "options": config.options.to_dict()}
    timings = res.timings
    if isinstance(res, AlignedResult):
        report["status"] = "restored" if res.ok else "failed"
        if res.ok:
            t0 = time.perf_counter()
            out = layout.photo_path(item, aligned=True)
            save_rgb(out, res.output_image())
            save_rgb(layout.face_path("cmp", item, None), np.concatenate([res.crop, res.restored], axis=1))
            timings["write"] = time.perf_counter() - t0
            report["output"] = str(out)
            if res.control is not None:
                report.update({k: v for k, v in res.control.report().items() if k != "notes"})
            elif res.identity is not None:
                report["identity_similarity"] = _r(res.identity.similarity, 4)
                report["identity_distance"] = _r(res.identity.distance, 4)
    else:
        report.update(
            input_size=list(res.source.size),
            bit_depth=res.source.bit_depth,
            alpha=res.source.alpha is not None,
            grayscale=res.source.grayscale,
            icc_profile=res.source.icc_profile is not None,
            exif=res.source.exif is not None,
            upscale=config.upscale,
            detection={"score_threshold": config.select.score_threshold, "min_face_size": config.select.min_face_size,
                       "max_face_size": config.select.max_face_size, "max_faces": config.select.max_faces,
                       "only_center_face": config.select.only_center_face,
                       "faces": None if config.options.faces is None else list(config.options.faces)},
            faces=[],
            rejected=[{"box": [_r(v) for v in r.detection.box], "score": _r(r.detection.score, 4), "reason": r.reason}
                      for r in res.rejected],
        )
        if res.ok:
            report["status"] = "restored" if res.faces else "no_face"
            t0 = time.perf_counter()
            for f in res.faces:
                paths = {k: layout.face_path(k, item, f.index) for k in ("cropped_faces", "restored_faces", "cmp")}
                save_rgb(paths["cropped_faces"], f.aligned.crop)
                save_rgb(paths["restored_faces"], f.restored)
                save_rgb(paths["cmp"], np.concatenate([f.aligned.crop, f.restored], axis=1))
                d = f.aligned.detection
                entry = {
                    "index": f.index,
                    "box": [_r(v) for v in d.box],
                    "score": _r(d.score, 4),
                    "landmarks": [[_r(x), _r(y)] for x, y in d.landmarks],
                    "size_px": _r(d.size, 1),
                    "fit_error": _r(f.aligned.fit_error, 4),
                    **{k: str(v) for k, v in paths.items()},
                }
                if f.control is not None:
                    entry.update({k: v for k, v in f.control.report().items() if k != "notes"})
                elif f.identity is not None:
                    entry.update(identity_similarity=_r(f.identity.similarity, 4),
                                 identity_distance=_r(f.identity.distance, 4))
                report["faces"].append(entry)
            out = layout.photo_path(item, aligned=False)
            photo, notes = photo_for_format(res.photo, out.suffix)
            write_photo(out, photo, quality=layout.jpeg_quality)
            timings["write"] = time.perf_counter() - t0
            report.update(output=str(out), output_size=list(photo.size), notes=list(res.notes) + notes)
        else:
            report["status"] = "failed"
    if res.error:
        report["error"] = res.error
    report.setdefault("notes", list(res.notes))
    report["timings"] = {k: _r(v, 4) for k, v in timings.items()}
    _write_report(layout, item, report)
    return report


def _write_report(layout: OutputLayout, item: FileItem, report: dict) -> None:
    path = layout.report_path(item)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)


def restore_photo_files(
    photos: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    restorer: Restorer,
    *,
    config: PipelineConfig | None = None,
    device: str = "cpu",
) -> int:
    """Restore photo files into ``output`` with the default detector and layout (what ``make demo`` calls)
    -> 0 when every photo succeeded, 1 otherwise (failures are logged)."""
    from .faces.detect import build_detector

    layout = OutputLayout(Path(output), overwrite=True)
    plan = plan_files(photos, layout)
    summary = run_plan(plan, restorer, layout, detector=build_detector("mtcnn", device=device), config=config)
    for _, message in summary.failed:
        logger.error(message)
    logger.info("restored %d photos (%d faces) into %s", len(summary.restored), summary.faces, layout.root)
    return summary.exit_code
