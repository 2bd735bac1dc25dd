"""Whole-photo restoration in memory: detect -> align -> restore (batched across photos) -> paste back.

This module owns the stage order for photos (docs/style.md P7, P14); ``aligned_crops.py`` (no detection or paste-back)
and ``video/run.py`` (tracked faces per frame) run their own orders from the same stage functions. Each stage is a
function of its inputs:
:func:`find_faces` (detection and selection, ``faces/detect.py``; alignment, ``faces/align.py``),
:func:`restore_groups` (the restorer: anything with ``resolution`` and ``restore``, under
the options of ``control.py``) and :func:`compose` (paste-back and background upsampling, ``faces/paste.py``).
Photos stream through in groups: the faces of several photos fill one restorer batch, so a folder of portraits is
restored ``batch_size`` faces at a time instead of one face at a time (GFPGAN#407, CodeFormer#157).

The arrow goes one way: ``aligned_crops.py`` (already-aligned inputs) and ``file_run.py`` (folders, outputs,
reports: ``prefrestore restore``) import from here; this module reads and writes no files.

A failed restoration never becomes output: the photos of a failed batch come back with ``error`` set and no
``photo`` (docs/style.md P15; contrast CodeFormer, which writes the degraded input as the "restoration").

Pixels: :class:`~prefrestore.io.photo_io.Photo` in and out (uint8 or uint16 RGB + alpha + metadata); the detector and
restorer see uint8 (H, W, 3) / (S, S, 3) RGB; paste-back works in float32 on [0, 255].
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from ..errors import UserError
from ..faces.align import align_many
from ..faces.detect import (
    MAX_DETECT_PIXELS,
    FaceDetector,
    Rejected,
    SelectConfig,
    detect_bounded,
    pick_faces,
    select_faces,
)
from ..faces.identity import IdentityScore, IdentityScorer
from ..faces.paste import (
    BackgroundUpsampler,
    BlendConfig,
    DetailPlan,
    Resampler,
    build_upsampler,
    paste_back,
    plan_faces,
)
from ..faces.types import AlignedFace, RestoredFace
from ..io.photo_io import MAX_PIXELS, Photo, float_to_pixels, pixels_to_float
from .control import FaceOutcome, Scorers, SetupError, restore_controlled
from .options import RestoreOptions, RestoreSettings, check_value, specs

logger = logging.getLogger(__name__)


class Restorer(Protocol):
    """What the pipeline (and ``prefrestore eval``) needs from a face restorer: ``prefrestore.restore.api.FaceRestorer``,
    the eval baselines (``eval/restorers.py``) and the tests' stand-ins satisfy it.

    ``restore`` maps uint8 (S, S, 3) RGB aligned crops, S == ``resolution``, to restorations of the same shape.
    Every face of a call must get its own generator seeded with ``seed`` (as ``FaceRestorer`` does), so a face
    restores the same alone or in any batch; the pipeline passes the run's seed to every call.

    ``capabilities`` declares the optional abilities (``control.CAPABILITIES``: ``FIDELITY_DIAL`` -- ``restore``
    takes ``fidelity=``, with ``setting`` and ``fidelity_table``; ``PER_FACE_SEEDS`` -- ``restore`` takes
    ``seeds=``); the pipeline reads it and never inspects signatures. A restorer without either declares
    ``frozenset()``; one asked for an ability it lacks is refused in one line (``control.check_capabilities``).
    """

    resolution: int
    capabilities: frozenset[str]

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]: ...


class Progress(Protocol):
    """Progress events: "faces_found" / "faces_restored" / "image_done" with a count, "failed" with a message.

    A whole photo's "faces_found" comes once per photo, before its faces are restored, with ``str(key)`` of the
    photo as the message; "faces_restored" counts the faces of a group in the order they were found."""

    def __call__(self, event: str, count: int, message: str | None = None) -> None: ...


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of a whole-photo run.

    upscale: output size / input size (``-s``); the background is resampled by ``upsampler``.
    batch_size: faces per restorer call. Photos are taken ``batch_size`` at a time (fewer when they exceed
        ``max_group_pixels``, which bounds memory); all faces of such a group are restored together.
    seed: the restorer's seed, the same for every face (so results do not depend on batching); passed on every
        ``restore`` call. This and ``batch_size`` are the run's only copies (``api.FaceRestorer`` stores no seed,
        and no batch size unless given one as a memory cap).
    max_detect_pixels: detection runs on a copy downscaled to this many pixels (bounds its memory).
    max_photo_bytes: a photo whose estimated working memory (:func:`photo_memory_bytes`) is above this is refused
        from its header, before decoding, with a line naming the -s that would fit.
    options: fidelity, best-of-N, identity guard, colour and face choice (``prefrestore.restore.options``; build the whole
        config from them with :meth:`from_options`, which also sets ``select`` and ``blend`` from them).
    """

    upscale: float = 2.0
    select: SelectConfig = field(default_factory=SelectConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    upsampler: Resampler | Literal["realesrgan"] | BackgroundUpsampler = "lanczos"  # a name or an upsampler
    batch_size: int = 8
    seed: int = 0
    max_group_pixels: int = 64_000_000
    max_detect_pixels: int = MAX_DETECT_PIXELS
    max_photo_bytes: int = 3 * 2**30
    options: RestoreOptions = field(default_factory=RestoreOptions)

    @classmethod
    def from_options(
        cls, options: RestoreOptions, *, select: SelectConfig | None = None, blend: BlendConfig | None = None, **kwargs
    ) -> PipelineConfig:
        """A config whose face selection (min/max face size) and blend visibility come from ``options``; other
        selection and blend settings from ``select``/``blend``, the rest from ``kwargs``."""
        select = dataclasses.replace(
            select or SelectConfig(), min_face_size=options.min_face_size, max_face_size=options.max_face_size
        )
        blend = dataclasses.replace(
            blend or BlendConfig(), visibility=options.blend, keep_detail=options.keep_detail == "on"
        )
        return cls(select=select, blend=blend, options=options, **kwargs)

    @classmethod
    def for_photos(
        cls,
        options: RestoreOptions,
        *,
        upscale: float = 2.0,
        det_threshold: float = 0.95,
        max_faces: int | None = None,
        only_center_face: bool = False,
        color_match: str = "lowfreq",
        **kwargs,
    ) -> PipelineConfig:
        """The config of ``prefrestore restore``'s flags, and of ``prefrestore serve``'s request options (the same
        names): the control ``options`` plus the photo-level settings that are not in ``prefrestore.restore.options``
        (``-s``, ``--det-threshold``, ``--max-faces``, ``--only-center-face``, ``--color-match``). Both entry points
        call this, so one request and the same flags give equal configs; the rest (``upsampler``, ``batch_size``,
        ``seed``) from ``kwargs``."""
        select = SelectConfig(score_threshold=det_threshold, max_faces=max_faces, only_center_face=only_center_face)
        return cls.from_options(
            options, upscale=upscale, select=select, blend=BlendConfig(color_match=color_match), **kwargs
        )

    @classmethod
    def for_settings(cls, settings: RestoreSettings, **kwargs) -> PipelineConfig:
        """The config of a whole :class:`~prefrestore.restore.options.RestoreSettings` (what ``prefrestore restore``
        and ``prefrestore serve`` build): its photo settings, control options, batch size and seed; the rest (e.g.
        a loaded ``upsampler``) from ``kwargs``."""
        photo, sampling = settings.photo, settings.sampling
        given = {
            "upscale": photo.upscale,
            "det_threshold": photo.det_threshold,
            "max_faces": photo.max_faces,
            "only_center_face": photo.only_center_face,
            "color_match": photo.color_match,
            "upsampler": photo.bg_upsampler,
            "batch_size": sampling.batch_size,
            "seed": sampling.seed,
        }
        return cls.for_photos(settings.control, **{**given, **kwargs})

    def __post_init__(self) -> None:
        for name in ("upscale", "batch_size"):  # the settings' own bounds and check (prefrestore.restore.options)
            check_value(name, specs()[name][1], getattr(self, name))


def _upsampler(kind) -> BackgroundUpsampler:
    if kind == "realesrgan":
        from .realesrgan import build  # its converted weights, on the CPU; the restore command picks the device

        return build()
    return build_upsampler(kind)


@dataclass(frozen=True, eq=False)
class FaceResult:
    """One face of a photo: its alignment (crop, transforms, detection), restoration and identity score."""

    index: int
    aligned: AlignedFace
    restored: np.ndarray  # uint8 (S, S, 3) RGB
    identity: IdentityScore | None = None
    control: FaceOutcome | None = None  # candidates, guard, colour (prefrestore.restore.control)
    detail: DetailPlan | None = None  # the no-loss rule's decision at paste-back (faces/paste.py)


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


@dataclass(eq=False)
class FoundFaces:
    """One photo's faces, from :func:`find_faces`: aligned uint8 (S, S, 3) RGB crops, each one's index among the
    selected faces (kept by ``--faces``), the rejected and unpicked detections, notes, the "detect"/"align" seconds;
    or the one-line ``error`` that ended the photo (then no faces)."""

    aligned: list[AlignedFace] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def find_faces(photo: Photo, detector: FaceDetector, resolution: int, config: PipelineConfig) -> FoundFaces:
    """Detect (on a copy bounded to ``config.max_detect_pixels``), select (``config.select``, ``options.faces``)
    and align (to ``resolution``) the faces of one photo. Any exception, out of memory included, becomes the
    photo's ``error``: it fails alone."""
    found = FoundFaces(notes=list(photo.notes))
    stage = "face detection"
    try:
        image = photo.rgb8()
        t0 = time.perf_counter()
        dets, scale = detect_bounded(detector, image, max_pixels=config.max_detect_pixels)
        found.timings["detect"] = time.perf_counter() - t0
        if scale < 1:
            smallest = max(config.select.min_face_size, 12.0) / scale
            found.notes.append(
                f"detection ran on a copy at {scale:.2f}x (the photo is above "
                f"{config.max_detect_pixels} pixels): faces smaller than {smallest:.0f} px were "
                "not looked for"
            )
        stage = "face alignment"
        t0 = time.perf_counter()
        keep, rej = select_faces(dets, (image.shape[1], image.shape[0]), config.select)
        picked, not_picked = pick_faces(keep, config.options.faces)
        aligned = align_many(image, [d for _, d in picked], resolution)
        found.aligned, found.indices = aligned, [k for k, _ in picked]
        found.rejected = list(rej) + list(not_picked)
        found.timings["align"] = time.perf_counter() - t0
    except Exception as err:
        logger.debug("%s failed", stage, exc_info=True)
        found.error = failure(stage, err)
        found.aligned, found.indices = [], []
    finally:
        image = None
    return found


def restore_groups(
    restorer: Restorer,
    crop_lists: list[list[np.ndarray]],
    config: PipelineConfig,
    scorers: Scorers,
    progress: Progress | None,
) -> list[list[FaceOutcome] | str]:
    """Restore the crops of several photos together (``config.options``: fidelity, best-of-N, identity guard,
    colour; see control.py) -> per photo its face outcomes, or the failure message.

    When the joint call fails and more than one photo had faces, each photo is retried alone, so one photo that
    breaks the restorer (e.g. a non-finite result) fails alone and the others go on. A :class:`SetupError` (a
    missing rerank reward, no fidelity dial) is the same for every photo and is raised.
    """

    def run(crops: list[np.ndarray], report: Progress | None) -> list[FaceOutcome]:
        return restore_controlled(
            restorer,
            crops,
            config.options,
            seed=config.seed,
            batch_size=config.batch_size,
            scorers=scorers,
            progress=report,
        )

    flat = [c for crops in crop_lists for c in crops]
    try:
        restored = run(flat, progress)
    except SetupError:
        raise
    except Exception as err:  # any restorer failure: nothing is written as if restored
        logger.debug("restoration failed", exc_info=True)
        if sum(1 for crops in crop_lists if crops) <= 1:
            message = failure("restoration", err)
            return [message if crops else [] for crops in crop_lists]
        out: list[list[FaceOutcome] | str] = []
        for crops in crop_lists:
            if not crops:
                out.append([])
                continue
            try:
                out.append(run(crops, None))
            except SetupError:
                raise
            except Exception as err1:
                logger.debug("restoration failed", exc_info=True)
                out.append(failure("restoration", err1))
        return out
    out, offset = [], 0
    for crops in crop_lists:
        out.append(restored[offset : offset + len(crops)])
        offset += len(crops)
    return out


def compose(
    photo: Photo,
    faces: Sequence[RestoredFace],
    *,
    upscale: float,
    blend: BlendConfig,
    upsampler: BackgroundUpsampler,
    plans: Sequence[DetailPlan] | None = None,
) -> Photo:
    """Upscale the photo (colour and alpha) and paste the restored faces -> a Photo with the same metadata.

    DPI is multiplied by ``upscale`` so the print size stays the same. plans: each face's no-loss decision
    (:func:`output_plans`; made by the paste-back when not given).
    """
    w, h = photo.size
    size = (max(1, round(w * upscale)), max(1, round(h * upscale)))
    if size[0] * size[1] > MAX_PIXELS:
        raise UserError(f"output {size[0]}x{size[1]} is above the {MAX_PIXELS} pixel limit; use a smaller -s")
    if size == (w, h):
        background = pixels_to_float(photo.color)  # a fresh float32 array: no resampling, no second copy
    else:
        background = upsampler(pixels_to_float(photo.color), size)  # (h', w', 3) float32 on [0, 255]
    background = paste_back(background, faces, blend, source_size=(w, h), inplace=True, plans=plans)
    color = float_to_pixels(background, photo.color.dtype, inplace=True)
    del background
    alpha = None
    if photo.alpha is not None:
        alpha = float_to_pixels(upsampler(pixels_to_float(photo.alpha)[..., None], size)[..., 0], photo.alpha.dtype)
    dpi = None if photo.dpi is None else (photo.dpi[0] * upscale, photo.dpi[1] * upscale)
    return dataclasses.replace(photo, color=color, alpha=alpha, dpi=dpi)


def output_plans(
    photo: Photo, faces: Sequence[RestoredFace], *, upscale: float, blend: BlendConfig
) -> list[DetailPlan]:
    """The no-loss rule's decision for each face of ``photo`` restored at ``upscale`` (what :func:`compose`
    pastes; faces/paste.py ``plan_detail``)."""
    w, h = photo.size
    size = (max(1, round(w * upscale)), max(1, round(h * upscale)))
    return plan_faces(faces, blend, source_size=(w, h), output_size=size)


def failure(stage: str, err: BaseException) -> str:
    """The one-line message of an unexpected exception in a stage, e.g. "face detection failed (MemoryError: out
    of memory; ...)". Used by every per-photo error boundary."""
    if isinstance(err, MemoryError):
        return f"{stage} failed (out of memory; downscale the photo, use a smaller -s or close other programs)"
    text = str(err).strip().splitlines()
    detail = f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__
    return f"{stage} failed ({detail})"


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
    scorers = scorers or Scorers.for_options(config.options, identity=identity)
    upsampler = _upsampler(config.upsampler)
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
) -> Iterator[PhotoResult]:
    """Detect, align, restore (all faces of the group together) and compose one group of photos; yields each
    photo's result as soon as it is composed, so only one output photo is held at a time.

    Every stage has a per-photo error boundary: any exception (out of memory included) fails that photo with
    one line and the other photos go on.
    """
    # Detection photo by photo: batching R/O-Net across photos changes their floating-point sums, and then
    # which borderline faces are found would depend on the other photos in the group.
    found = [find_faces(photo, detector, restorer.resolution, config) for _, photo in group]
    if progress:  # one event per photo, its key as the message, so a caller can tell the photos' counts apart
        for (key, _), f in zip(group, found, strict=True):
            progress("faces_found", len(f.aligned), str(key))

    # Restoration: all faces of the group, batch_size at a time; time shared out by face count.
    t0 = time.perf_counter()
    restored = restore_groups(restorer, [[a.crop for a in f.aligned] for f in found], config, scorers, progress)
    elapsed = time.perf_counter() - t0
    n_crops = sum(len(f.aligned) for f in found)

    for (key, photo), f, controls in zip(group, found, restored, strict=True):
        if f.error is None and isinstance(controls, str):
            f.error = controls
        if f.error is not None:
            yield PhotoResult(key, photo, None, (), tuple(f.rejected), f.timings, error=f.error, notes=tuple(f.notes))
            continue
        assert not isinstance(controls, str)
        f.timings["restore"] = elapsed * len(f.aligned) / max(n_crops, 1)  # includes reranking, identity guard
        yield _compose_result(key, photo, f, controls, config, upsampler)


def _compose_result(
    key: Hashable,
    photo: Photo,
    f: FoundFaces,
    controls: list[FaceOutcome],
    config: PipelineConfig,
    upsampler: BackgroundUpsampler,
) -> PhotoResult:
    """A photo whose faces are restored -> its result: the composed photo, or the paste-back error."""
    notes, t = f.notes, f.timings
    mine = [o.restored for o in controls]
    if not f.aligned:
        notes.append("no face found: the photo was upscaled only")
    notes += [n for n in dict.fromkeys(n for o in controls for n in o.notes) if n not in notes]
    t0 = time.perf_counter()
    faces = [RestoredFace(a, r) for a, r in zip(f.aligned, mine, strict=True)]
    try:
        plans = output_plans(photo, faces, upscale=config.upscale, blend=config.blend)
    except Exception as err:
        logger.debug("no-loss plan failed", exc_info=True)
        return PhotoResult(key, photo, None, (), tuple(f.rejected), t, error=failure("paste-back", err))
    notes += [n for k, p in zip(f.indices, plans, strict=True) if (n := p.note(k)) is not None]
    face_results = tuple(
        FaceResult(index=k, aligned=a, restored=r, identity=o.identity, control=o, detail=p)
        for k, a, r, o, p in zip(f.indices, f.aligned, mine, controls, plans, strict=True)
    )
    try:
        out = compose(photo, faces, upscale=config.upscale, blend=config.blend, upsampler=upsampler, plans=plans)
    except UserError as err:
        return PhotoResult(key, photo, None, face_results, tuple(f.rejected), t, error=str(err))
    except Exception as err:  # e.g. out of memory for a huge -s: this photo fails, the others go on
        logger.debug("paste-back failed", exc_info=True)
        return PhotoResult(key, photo, None, face_results, tuple(f.rejected), t, error=failure("paste-back", err))
    t["paste"] = time.perf_counter() - t0
    return PhotoResult(key, photo, out, face_results, tuple(f.rejected), t, notes=tuple(notes))


def restore_image(
    image: np.ndarray,
    restorer: Restorer,
    detector: FaceDetector,
    config: PipelineConfig | None = None,
) -> np.ndarray:
    """One in-memory image: uint8 (H, W, 3) RGB -> uint8 (round(H*s), round(W*s), 3) RGB, s = ``config.upscale``
    (the README's Python API). Raises RuntimeError with the photo's one-line error on failure."""
    (result,) = restore_photos([(0, Photo(color=image))], restorer, detector, config)
    if result.error:
        raise RuntimeError(result.error)
    return result.photo.color


def photo_memory_bytes(
    width: int,
    height: int,
    upscale: float,
    *,
    bytes_per_sample: int = 1,
    alpha: bool = False,
    max_detect_pixels: int = MAX_DETECT_PIXELS,
) -> int:
    """Estimated peak working memory (bytes) of restoring one photo: the decoded photo held throughout, plus the
    largest of decoding, detection, paste-back (float32 background) and encoding the output.

    A model of the buffers of this module and ``file_run.py``'s reading and writing (measured by benchmarks/bench_hostile_memory.py), not a guarantee; the
    model and the faces come on top.
    """
    n_in = width * height
    n_out = max(1, round(width * upscale)) * max(1, round(height * upscale))
    b = bytes_per_sample
    held = n_in * 3 * b + (n_in * 3 if b > 1 else 0) + (n_in * b if alpha else 0)
    decode = n_in * (4 if alpha else 3) * b * 3
    detect = min(n_in, max_detect_pixels) * 60 + (n_in * 3 if n_in > max_detect_pixels else 0)
    paste = (n_in * 12 if n_out != n_in else 0) + n_out * (12 + 3 * b)
    if alpha:
        paste += (n_in * 4 if n_out != n_in else 0) + n_out * (4 + b)
    encode = n_out * (4 if alpha else 3) * b * 3
    return held + max(decode, detect, paste, encode)
