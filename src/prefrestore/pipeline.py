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
from .faces.detect import (
    MAX_DETECT_PIXELS,
    FaceDetector,
    Rejected,
    SelectConfig,
    detect_bounded,
    pick_faces,
    select_faces,
)
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
from .io_safety import NAME_MAX, InputGuard, atomic_write_text, real_key, shown, sweep_stale_temps
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
    max_detect_pixels: detection runs on a copy downscaled to this many pixels (bounds its memory).
    max_photo_bytes: a photo whose estimated working memory (:func:`photo_memory_bytes`) is above this is refused
        from its header, before decoding, with a line naming the -s that would fit.
    options: fidelity, best-of-N, identity guard, colour and face choice (``prefrestore.options``; build the whole
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
    def from_options(cls, options: RestoreOptions, *, select: SelectConfig | None = None,
                     blend: BlendConfig | None = None, **kwargs) -> PipelineConfig:
        """A config whose face selection (min/max face size) and blend visibility come from ``options``; other
        selection and blend settings from ``select``/``blend``, the rest from ``kwargs``."""
        select = dataclasses.replace(select or SelectConfig(), min_face_size=options.min_face_size,
                                     max_face_size=options.max_face_size)
        blend = dataclasses.replace(blend or BlendConfig(), visibility=options.blend)
        return cls(select=select, blend=blend, options=options, **kwargs)

    @classmethod
    def for_photos(cls, options: RestoreOptions, *, upscale: float = 2.0, det_threshold: float = 0.95,
                   max_faces: int | None = None, only_center_face: bool = False, color_match: str = "lowfreq",
                   **kwargs) -> PipelineConfig:
        """The config of ``prefrestore restore``'s flags, and of ``prefrestore serve``'s request options (the same
        names): the control ``options`` plus the photo-level settings that are not in ``prefrestore.options``
        (``-s``, ``--det-threshold``, ``--max-faces``, ``--only-center-face``, ``--color-match``). Both entry points
        call this, so one request and the same flags give equal configs; the rest (``upsampler``, ``batch_size``,
        ``seed``) from ``kwargs``."""
        select = SelectConfig(score_threshold=det_threshold, max_faces=max_faces, only_center_face=only_center_face)
        return cls.from_options(options, upscale=upscale, select=select, blend=BlendConfig(color_match=color_match),
                                **kwargs)

    def __post_init__(self) -> None:
        if not 0 < self.upscale <= 16:
            raise ValueError(f"upscale={self.upscale} must be in (0, 16]")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")


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
    if size == (w, h):
        background = pixels_to_float(photo.color)  # a fresh float32 array: no resampling, no second copy
    else:
        background = upsampler(pixels_to_float(photo.color), size)  # (h', w', 3) float32 on [0, 255]
    background = paste_back(background, faces, blend, source_size=(w, h), inplace=True)
    color = float_to_pixels(background, photo.color.dtype, inplace=True)
    del background
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


def failure(stage: str, err: BaseException) -> str:
    """The one-line message of an unexpected exception in a stage, e.g. "face detection failed (MemoryError: out
    of memory; ...)". Used by every per-photo error boundary."""
    if isinstance(err, MemoryError):
        return f"{stage} failed (out of memory; downscale the photo, use a smaller -s or close other programs)"
    text = str(err).strip().splitlines()
    detail = f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__
    return f"{stage} failed ({detail})"


def _restore_each(
    restorer: Restorer, crop_lists: list[list[np.ndarray]], config: PipelineConfig, scorers: Scorers,
    progress: Progress | None,
) -> list[list[FaceOutcome] | str]:
    """Restore the crops of several photos together (``config.options``: fidelity, best-of-N, identity guard,
    colour; see control.py) -> per photo its face outcomes, or the failure message.

    When the joint call fails and more than one photo had faces, each photo is retried alone, so one photo that
    breaks the restorer (e.g. a non-finite result) fails alone and the others go on. A :class:`SetupError` (a
    missing rerank reward, no fidelity dial) is the same for every photo and is raised.
    """

    def run(crops: list[np.ndarray], report: Progress | None) -> list[FaceOutcome]:
        return restore_controlled(restorer, crops, config.options, seed=config.seed, batch_size=config.batch_size,
                                  scorers=scorers, progress=report)

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
        out.append(restored[offset:offset + len(crops)])
        offset += len(crops)
    return out


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
    timings: list[dict[str, float]] = [{} for _ in group]
    errors: list[str | None] = [None] * len(group)
    notes: list[list[str]] = [list(photo.notes) for _, photo in group]
    aligned: list[list[AlignedFace]] = [[] for _ in group]
    rejected: list[list[Rejected]] = [[] for _ in group]
    indices: list[list[int]] = [[] for _ in group]  # each face's index among the selected faces (kept by --faces)

    # Detection photo by photo: batching R/O-Net across photos changes their floating-point sums, and then
    # which borderline faces are found would depend on the other photos in the group.
    for i, (_, photo) in enumerate(group):
        t = timings[i]
        stage = "face detection"
        try:
            image = photo.rgb8()
            t0 = time.perf_counter()
            dets, scale = detect_bounded(detector, image, max_pixels=config.max_detect_pixels)
            t["detect"] = time.perf_counter() - t0
            if scale < 1:
                smallest = max(config.select.min_face_size, 12.0) / scale
                notes[i].append(f"detection ran on a copy at {scale:.2f}x (the photo is above "
                                f"{config.max_detect_pixels} pixels): faces smaller than {smallest:.0f} px were "
                                "not looked for")
            stage = "face alignment"
            t0 = time.perf_counter()
            keep, rej = select_faces(dets, (image.shape[1], image.shape[0]), config.select)
            picked, not_picked = pick_faces(keep, config.options.faces)
            aligned[i] = align_many(image, [d for _, d in picked], restorer.resolution)
            indices[i] = [k for k, _ in picked]
            rejected[i] = list(rej) + list(not_picked)
            t["align"] = time.perf_counter() - t0
        except Exception as err:
            logger.debug("%s failed", stage, exc_info=True)
            errors[i] = failure(stage, err)
            aligned[i], indices[i] = [], []
        finally:
            image = None
    if progress:
        progress("faces_found", sum(len(a) for a in aligned))

    # Restoration: all faces of the group, batch_size at a time; time shared out by face count.
    t0 = time.perf_counter()
    restored = _restore_each(restorer, [[a.crop for a in faces] for faces in aligned], config, scorers, progress)
    elapsed = time.perf_counter() - t0
    n_crops = sum(len(a) for a in aligned)

    for i, ((key, photo), faces, idx, rej, t) in enumerate(
        zip(group, aligned, indices, rejected, timings, strict=True)
    ):
        controls = restored[i]
        if errors[i] is None and isinstance(controls, str):
            errors[i] = controls
        if errors[i] is not None:
            yield PhotoResult(key, photo, None, (), tuple(rej), t, error=errors[i], notes=tuple(notes[i]))
            continue
        assert not isinstance(controls, str)
        mine = [o.restored for o in controls]
        t["restore"] = elapsed * len(faces) / max(n_crops, 1)  # includes reranking and the identity guard
        if not faces:
            notes[i].append("no face found: the photo was upscaled only")
        notes[i] += [n for n in dict.fromkeys(n for o in controls for n in o.notes) if n not in notes[i]]
        face_results = tuple(
            FaceResult(index=k, aligned=a, restored=r, identity=o.identity, control=o)
            for k, a, r, o in zip(idx, faces, mine, controls, strict=True)
        )
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
            yield PhotoResult(key, photo, None, face_results, tuple(rej), t, error=str(err))
            continue
        except Exception as err:  # e.g. out of memory for a huge -s: this photo fails, the others go on
            logger.debug("paste-back failed", exc_info=True)
            yield PhotoResult(key, photo, None, face_results, tuple(rej), t, error=failure("paste-back", err))
            continue
        t["paste"] = time.perf_counter() - t0
        yield PhotoResult(key, photo, out, face_results, tuple(rej), t, notes=tuple(notes[i]))
        out = None


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

    A crop that cannot be prepared, or whose restoration fails (alone, after a failed joint batch), fails alone.
    ``config.options.blend`` < 1 mixes the input crop back into each restoration (its visibility).
    """
    config = config or PipelineConfig()
    scorers = scorers or Scorers(identity=identity, rerank_weights=dict(config.options.rerank_weights))
    visibility = config.options.blend
    # key, crop (None when preparing it failed), notes, input size, error
    pending: list[tuple[Hashable, np.ndarray | None, list[str], tuple[int, int], str | None]] = []

    def flush() -> list[AlignedResult]:
        good = [c for _, c, _, _, e in pending if e is None]
        if progress:
            progress("faces_found", len(good))
        t0 = time.perf_counter()
        outcome = iter(_restore_each(restorer, [[c] if e is None else [] for _, c, _, _, e in pending], config,
                                     scorers, progress))
        per_face = (time.perf_counter() - t0) / max(len(good), 1)
        results = []
        for k, c, n, z, e in pending:
            got = next(outcome)
            if e is None and isinstance(got, str):
                e = got
            if e is not None:
                results.append(AlignedResult(k, c if c is not None else np.zeros((0, 0, 3), np.uint8), None,
                                             error=e, notes=tuple(n), input_size=z))
                continue
            (o,) = got
            results.append(AlignedResult(k, c, _visible(o.restored, c, visibility), o.identity,
                                         {"restore": per_face}, notes=tuple(n + list(o.notes)), input_size=z,
                                         control=o))
        return results

    for key, photo in items:
        try:
            crop, notes = to_model_crop(photo, restorer.resolution)
            pending.append((key, crop, list(photo.notes) + notes, photo.size, None))
        except Exception as err:
            logger.debug("crop preparation failed", exc_info=True)
            pending.append((key, None, list(photo.notes), photo.size, failure("preparing the crop", err)))
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

    def folders(self) -> list[Path]:
        return [self.root / f for f in ("cropped_faces", "restored_faces", "cmp", "restored_imgs", "reports")]

    def stem_budget(self) -> int:
        """Bytes an output stem may have so that every output name fits NAME_MAX: the longest of
        ``STEM{suffix}.jpeg``, ``STEM_9999.png`` and ``STEM.json``."""
        return NAME_MAX - max(len(os.fsencode(self.suffix)) + 5, 9)

    def is_done(self, item: FileItem, *, aligned: bool) -> bool:
        """True when the input's report says it finished and every output it lists exists and is not empty.

        The report is written last (and atomically), so an interrupted or failed input is never taken as done.
        """
        try:
            report = json.loads(self.report_path(item).read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(report, dict) or report.get("status") not in ("restored", "no_face"):
            return False
        expected = [self.photo_path(item, aligned=aligned)]
        if aligned:
            expected.append(self.face_path("cmp", item, None))
        else:
            for face in report.get("faces", ()):
                index = face.get("index") if isinstance(face, dict) else None
                if not isinstance(index, int):
                    return False
                expected += [self.face_path(k, item, index) for k in ("cropped_faces", "restored_faces", "cmp")]
        try:
            return all(p.stat().st_size > 0 for p in expected)
        except OSError:
            return False


@dataclass(frozen=True)
class FileItem:
    """An input file and the unique stem its outputs are named after."""

    path: Path
    name: str


@dataclass(frozen=True)
class Plan:
    """What a run will do: inputs to process, inputs skipped (outputs exist), inputs already failed (with why).

    guard: every input of the run (by real path and inode); no output is ever written onto one of them.
    """

    todo: tuple[FileItem, ...]
    skipped: tuple[FileItem, ...]
    failed: tuple[tuple[str, str], ...]
    guard: InputGuard = field(default_factory=InputGuard)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def output_stem(stem: str, budget: int) -> str:
    """``stem`` if its UTF-8 bytes fit ``budget``, else its longest prefix that fits with ``~`` and 8 hex digits
    of its hash (so two long names that share a prefix stay apart)."""
    raw = os.fsencode(stem)
    if len(raw) <= budget:
        return stem
    import hashlib

    tag = "~" + hashlib.sha1(raw).hexdigest()[:8]
    cut = raw[:max(1, budget - len(tag))]
    return os.fsdecode(cut).encode("utf-8", "surrogateescape").decode("utf-8", "ignore") + tag


def _file_key(path: Path) -> tuple | str:
    """One key per file on disk: (device, inode) (so hard links count too), else the real path."""
    try:
        st = os.stat(path)
    except OSError:
        return real_key(path)
    return (st.st_dev, st.st_ino)


def plan_files(inputs: Sequence[str | os.PathLike], layout: OutputLayout, *, aligned: bool = False) -> Plan:
    """Resolve inputs (files, folders, glob patterns) into a plan.

    Raises UserError when the output folder is an input folder or inside one (outputs would mix with inputs).
    An input that cannot be listed (missing, unreadable folder), a special file in a folder (FIFO, device, broken
    symlink) and an input whose restored photo would replace an input become failures; the others go on. The
    same file given twice (another spelling, ``..``, a symlink) is done once. An input counts as done (skipped)
    only when :meth:`OutputLayout.is_done` says so.
    """
    root = layout.root.resolve()
    paths: list[Path] = []
    failed: list[tuple[str, str]] = []
    for raw in inputs:
        folder = Path(raw)
        try:
            is_folder = folder.is_dir()
        except OSError as err:  # a name too long for the file system, a symlink loop
            failed.append((str(raw), f"{shown(raw)}: cannot open ({err.strerror or err}); check the path"))
            continue
        if is_folder and _is_within(root, folder.resolve()):
            raise UserError(
                f"{shown(layout.root)}: the output folder is inside the input folder {shown(folder)}; "
                "choose an -o outside it"
            )
        try:
            paths += list_images(raw, on_skip=lambda q, message: failed.append((str(q), message)))
        except ImageError as err:
            failed.append((str(raw), str(err)))
        except OSError as err:
            failed.append((str(raw), f"{shown(raw)}: cannot read ({err.strerror or err}); check its permissions"))
    first: dict[tuple | str, Path] = {}
    for p in paths:
        first.setdefault(_file_key(p), p)  # one per file (any spelling, symlink or hard link), the first spelling
    unique = list(first.values())
    guard = InputGuard(unique)
    stems: dict[str, int] = {}
    for p in unique:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    todo, skipped, names = [], [], set()
    budget = layout.stem_budget()
    for p in unique:
        name = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        name = output_stem(name, budget - 4)  # room for the "_" of a.jpg / a.JPG below
        while name in names:  # a.jpg and a.JPG in one folder
            name += "_"
        names.add(name)
        item = FileItem(p, name)
        out = layout.photo_path(item, aligned=aligned)
        if guard.is_protected(out):
            failed.append((str(p), f"{shown(p)}: the output {shown(out)} would overwrite an input; choose another -o"))
        elif not layout.overwrite and layout.is_done(item, aligned=aligned):
            skipped.append(item)
        else:
            todo.append(item)
    return Plan(tuple(todo), tuple(skipped), tuple(failed), guard)


def photo_memory_bytes(width: int, height: int, upscale: float, *, bytes_per_sample: int = 1, alpha: bool = False,
                       max_detect_pixels: int = MAX_DETECT_PIXELS) -> int:
    """Estimated peak working memory (bytes) of restoring one photo: the decoded photo held throughout, plus the
    largest of decoding, detection, paste-back (float32 background) and encoding the output.

    A model of this module's own buffers (measured by benchmarks/bench_hostile_memory.py), not a guarantee; the
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


def memory_check(config: PipelineConfig, *, aligned: bool):
    """``accept`` for :func:`~prefrestore.image.read_photo`: refuse, from the header, a photo whose estimated
    working memory is above ``config.max_photo_bytes``, naming the largest -s that fits."""

    def accept(width: int, height: int, bytes_per_sample: int, alpha: bool) -> None:
        scale = 1.0 if aligned else config.upscale
        need = photo_memory_bytes(width, height, scale, bytes_per_sample=bytes_per_sample, alpha=alpha,
                                  max_detect_pixels=config.max_detect_pixels)
        if need <= config.max_photo_bytes:
            return
        fits = [s for s in (8, 4, 3, 2, 1.5, 1, 0.5) if s < scale and photo_memory_bytes(
            width, height, s, bytes_per_sample=bytes_per_sample, alpha=alpha,
            max_detect_pixels=config.max_detect_pixels) <= config.max_photo_bytes]
        hint = f"use -s {fits[0]:g} or smaller" if fits and not aligned else "downscale it first"
        raise ImageError(f"{width}x{height} at -s {scale:g} needs about {need / 2**30:.1f} GiB of memory, above "
                         f"the {config.max_photo_bytes / 2**30:.1f} GiB per-photo budget; {hint}")

    return accept


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
    Every file is written all or nothing and never onto an input (``plan.guard``); temporary files left by a
    killed earlier run are removed first.
    """
    config = config or PipelineConfig()
    failed: list[tuple[str, str]] = list(plan.failed)
    read_times: dict[FileItem, float] = {}
    accept = memory_check(config, aligned=detector is None)
    for folder in layout.folders():
        sweep_stale_temps(folder)

    def fail(item: FileItem | str, message: str) -> None:
        failed.append((str(item.path if isinstance(item, FileItem) else item), message))
        if progress:
            progress("failed", 0, message)

    def read_all() -> Iterator[tuple[FileItem, Photo]]:
        for item in plan.todo:
            t0 = time.perf_counter()
            try:
                photo = read_photo(item.path, accept=accept)
            except Exception as err:
                message = str(err) if isinstance(err, ImageError) else f"{shown(item.path)}: {failure('reading', err)}"
                if isinstance(err, ImageError) and not message.startswith(shown(item.path)):
                    message = f"{shown(item.path)}: {message}"
                fail(item, message)
                try:
                    _write_report(layout, item, {"input": str(item.path), "status": "failed", "error": message},
                                  plan.guard)
                except (OSError, UserError) as werr:
                    logger.debug("report not written: %s", werr)
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
            report = _write_outputs(res, item, layout, run_info or {}, config, plan.guard)
        except UserError as err:
            fail(item, f"{shown(item.path)}: {err}")
            report = None
        except OSError as err:
            fail(item, f"{shown(item.path)}: cannot write outputs ({err.strerror or err}); check the -o folder")
            report = None
        except Exception as err:
            logger.debug("writing failed", exc_info=True)
            fail(item, f"{shown(item.path)}: {failure('writing outputs', err)}")
            report = None
        res = None
        if progress:
            progress("image_done", 1)
        if report is None:
            continue
        if report["status"] == "failed":
            fail(item, f"{shown(item.path)}: {report['error']}")
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
    res: PhotoResult | AlignedResult, item: FileItem, layout: OutputLayout, run_info: dict, config: PipelineConfig,
    guard: InputGuard,
) -> dict:
    """Write a result's images, then its JSON report (last: a report saying "restored" means every output listed
    is complete) -> the report. Every target is checked against ``guard`` before the first byte is written, so an
    input that would be overwritten fails the photo with no output at all."""
    report: dict = {"input": str(item.path), **run_info, "options": config.options.to_dict()}
    timings = res.timings
    if isinstance(res, AlignedResult):
        report["status"] = "restored" if res.ok else "failed"
        if res.ok:
            t0 = time.perf_counter()
            out, cmp = layout.photo_path(item, aligned=True), layout.face_path("cmp", item, None)
            for target in (out, cmp, layout.report_path(item)):
                guard.check(target)
            save_rgb(out, res.output_image(), guard=guard)
            save_rgb(cmp, np.concatenate([res.crop, res.restored], axis=1), guard=guard)
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
            out = layout.photo_path(item, aligned=False)
            face_paths = [{k: layout.face_path(k, item, f.index) for k in ("cropped_faces", "restored_faces", "cmp")}
                          for f in res.faces]
            for target in [out, layout.report_path(item)] + [q for paths in face_paths for q in paths.values()]:
                guard.check(target)
            for f, paths in zip(res.faces, face_paths, strict=True):
                save_rgb(paths["cropped_faces"], f.aligned.crop, guard=guard)
                save_rgb(paths["restored_faces"], f.restored, guard=guard)
                save_rgb(paths["cmp"], np.concatenate([f.aligned.crop, f.restored], axis=1), guard=guard)
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
            photo, notes = photo_for_format(res.photo, out.suffix)
            write_photo(out, photo, quality=layout.jpeg_quality, guard=guard)
            timings["write"] = time.perf_counter() - t0
            report.update(output=str(out), output_size=list(photo.size), notes=list(res.notes) + notes)
        else:
            report["status"] = "failed"
    if res.error:
        report["error"] = res.error
    report.setdefault("notes", list(res.notes))
    report["timings"] = {k: _r(v, 4) for k, v in timings.items()}
    _write_report(layout, item, report, guard)
    return report


def _write_report(layout: OutputLayout, item: FileItem, report: dict, guard: InputGuard | None = None) -> None:
    atomic_write_text(layout.report_path(item), json.dumps(report, indent=2) + "\n", guard=guard)


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
