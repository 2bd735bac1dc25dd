"""Already-aligned face crops in memory (``prefrestore restore --aligned``): prepare -> restore (batched) -> mix.

No paste-back: each input is taken as an FFHQ-aligned crop, resized to the restorer's resolution S (given a
detector, a crop whose face is far from the alignment template fails instead: a whole photo is never squashed into
a "face"; a crop that is not square always fails), restored ``batch_size`` crops per call under the run's options (``control.py``, through
:func:`prefrestore.restore.pipeline.restore_groups`, which owns the per-crop error boundary) and mixed back with its input
when ``options.blend`` < 1. ``file_run.py`` writes the results; this module reads and writes no files.

Pixels: uint8 (S, S, 3) RGB crops in and out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import ImageError
from ..faces.align import ffhq_template
from ..faces.detect import FaceDetector
from ..faces.identity import IdentityScore, IdentityScorer
from ..faces.paste import DetailPlan, add_detail, decide_detail, merge_detail
from ..io.image import resize
from ..io.photo_io import Photo, float_to_pixels, pixels_to_float
from .control import FaceOutcome, Scorers
from .pipeline import PipelineConfig, Progress, Restorer, failure, restore_groups

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class AlignedResult:
    """An already-aligned input crop and its restoration (uint8 (S, S, 3) RGB, S = the restorer's resolution).

    input_size: the input's (width, height); the written output is the restoration resized to it when the input is
    larger than S (a 512 px crop restored by a 128 px model comes back at 512 px, not shrunk), else S x S.
    source: the input at its own size when it is larger than S (uint8 RGB), for the no-loss rule; detail: the
    rule's decision (faces/paste.py ``decide_detail``): "merged" keeps the input's detail above S in the output,
    "added_detail" (an input smaller than S) keeps the input up to its resolution, "kept_input" writes the input.
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
    source: np.ndarray | None = None
    detail: DetailPlan | None = None

    def output_image(self) -> np.ndarray:
        """The restoration at the size it is written: the input's size if larger than S, else S x S."""
        assert self.restored is not None
        S = self.restored.shape[0]
        action = None if self.detail is None else self.detail.action
        if action == "kept_input":
            return self.source if self.source is not None else self.crop
        if action == "added_detail":  # an input smaller than S: itself up to its resolution, detail above
            out = add_detail(pixels_to_float(self.restored), pixels_to_float(self.crop), S / self.detail.face_input_px)
            return float_to_pixels(out, np.uint8)
        if self.input_size is None or max(self.input_size) <= S:
            return self.restored
        out = resize(self.restored, self.input_size, resample="bicubic")
        if action == "merged" and self.source is not None:
            scale = float(np.sqrt(self.input_size[0] * self.input_size[1])) / S  # input pixels per crop pixel
            merged = merge_detail(pixels_to_float(out), pixels_to_float(self.source), scale)
            out = float_to_pixels(merged, np.uint8)
        return out

    @property
    def ok(self) -> bool:
        return self.error is None


# An aligned crop's detected landmarks lie within ~1 % of its side from the FFHQ template (2.5 % for a 24 px face
# upscaled to 128); a square whole photo or a loose face crop is off by 11-40 % (the bundled example photos).
ALIGNMENT_TOLERANCE = 0.08
NOT_ALIGNED_FIX = "drop --aligned to find and align the faces in a whole photo"


def to_model_crop(photo: Photo, resolution: int) -> tuple[np.ndarray, list[str]]:
    """An aligned input -> uint8 (S, S, 3) RGB at the restorer's resolution, and notes on what was changed.
    Raises ImageError for an input that is not square (an aligned crop is; stretching a photo makes no face)."""
    crop, notes = photo.rgb8(), []
    h, w = crop.shape[:2]
    if w != h:
        raise ImageError(f"{w}x{h} is not square, so not an aligned face crop; {NOT_ALIGNED_FIX}")
    if photo.bit_depth == 16:
        notes.append("16-bit input reduced to 8-bit for the restorer")
    if photo.alpha is not None:
        notes.append("alpha channel ignored for an aligned crop")
    if (w, h) != (resolution, resolution):
        notes.append(f"input {w}x{h} resized to the model resolution {resolution}x{resolution}")
        crop = resize(crop, (resolution, resolution), resample="lanczos" if w > resolution else "bicubic")
    return crop, notes


def alignment_error(crop: np.ndarray, detector: FaceDetector) -> float | None:
    """RMS distance of the most confident detected face's five landmarks from the FFHQ template, as a fraction of
    the crop's side; None when no face is found (a heavily degraded aligned face may not be: it is given the benefit
    of the doubt)."""
    found = detector.detect(crop)
    if not found:
        return None
    best = max(found, key=lambda d: d.score)
    size = crop.shape[0]
    offset = best.landmarks_array() - ffhq_template(size)
    return float(np.sqrt((offset**2).sum(1).mean()) / size)


def check_aligned(crop: np.ndarray, detector: FaceDetector) -> None:
    """ImageError when ``crop`` (square) holds a face far from where an aligned crop has it."""
    error = alignment_error(crop, detector)
    if error is not None and error > ALIGNMENT_TOLERANCE:
        raise ImageError(
            f"not an aligned face crop: its face's landmarks are {error:.0%} of the crop side from "
            f"the FFHQ alignment template (aligned crops: within {ALIGNMENT_TOLERANCE:.0%}); "
            f"{NOT_ALIGNED_FIX}"
        )


def restore_aligned(
    items: Iterable[tuple[Hashable, Photo]],
    restorer: Restorer,
    config: PipelineConfig | None = None,
    *,
    identity: IdentityScorer | None = None,
    progress: Progress | None = None,
    scorers: Scorers | None = None,
    detector: FaceDetector | None = None,
) -> Iterator[AlignedResult]:
    """Restore already-aligned face crops, ``batch_size`` per restorer call; yields results in input order.

    A crop that cannot be prepared (not square; with ``detector``, a face far from the alignment template: see
    :func:`check_aligned`), or whose restoration fails (alone, after a failed joint batch), fails alone.
    ``config.options.blend`` < 1 mixes the input crop back into each restoration (its visibility).
    """
    config = config or PipelineConfig()
    scorers = scorers or Scorers.for_options(config.options, identity=identity)
    visibility = config.options.blend
    # key, crop (None when preparing it failed), notes, input size, error
    pending: list[tuple[Hashable, np.ndarray | None, list[str], tuple[int, int], str | None]] = []
    sources: dict[int, np.ndarray] = {}  # position in pending -> the input at its own size, when larger than S

    def flush() -> list[AlignedResult]:
        good = [c for _, c, _, _, e in pending if e is None]
        if progress:
            progress("faces_found", len(good))
        t0 = time.perf_counter()
        outcome = iter(
            restore_groups(
                restorer, [[c] if e is None else [] for _, c, _, _, e in pending], config, scorers, progress
            )
        )
        per_face = (time.perf_counter() - t0) / max(len(good), 1)
        results = []
        for i, (k, c, n, z, e) in enumerate(pending):
            got = next(outcome)
            if e is None and isinstance(got, str):
                e = got
            if e is not None:
                results.append(
                    AlignedResult(
                        k,
                        c if c is not None else np.zeros((0, 0, 3), np.uint8),
                        None,
                        error=e,
                        notes=tuple(n),
                        input_size=z,
                    )
                )
                continue
            (o,) = got
            restored = _visible(o.restored, c, visibility)
            source = sources.get(i)
            input_px = float(np.sqrt(z[0] * z[1]))
            plan = decide_detail(c, restored, input_px, config.blend, output_scale=max(1.0, c.shape[0] / input_px))
            results.append(
                AlignedResult(
                    k,
                    c,
                    restored,
                    o.identity,
                    {"restore": per_face},
                    notes=tuple(n + list(o.notes)),
                    input_size=z,
                    control=o,
                    source=source,
                    detail=plan,
                )
            )
        sources.clear()
        return results

    for key, photo in items:
        try:
            crop, notes = to_model_crop(photo, restorer.resolution)
            if detector is not None:
                check_aligned(crop, detector)
            if max(photo.size) > restorer.resolution and config.blend.keep_detail:
                sources[len(pending)] = photo.rgb8()
            pending.append((key, crop, list(photo.notes) + notes, photo.size, None))
        except ImageError as err:
            pending.append((key, None, list(photo.notes), photo.size, str(err)))
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
