"""Face detection: the detector interface, backend dispatch, suppression, de-duplication and face selection.

A detector maps uint8 (H, W, 3) RGB images to :class:`~prefrestore.faces.types.FaceDetection` lists. Which faces
then get restored is decided here too, by pure functions with explicit settings (``SelectConfig``): the
confidence threshold (exposed, where facexlib hard-codes 0.97), minimum size, centre face only, at most N faces,
and de-duplication of detections of one face (CodeFormer#331).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from .types import FaceDetection

logger = logging.getLogger(__name__)

DetectorKind = Literal["mtcnn"]


class FaceDetector(Protocol):
    """What the pipeline needs from a detector backend."""

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """uint8 (H, W, 3) RGB -> detections sorted by decreasing score."""
        ...

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """uint8 (H, W, 3) RGB images (sizes may differ) -> one list per image; backends batch what they can."""
        ...


def _build_mtcnn(*, device: str, min_face_size: float) -> FaceDetector:
    from .mtcnn import MTCNN, MTCNNConfig

    return MTCNN(MTCNNConfig(min_face_size=min_face_size), device=device)


DETECTORS = {"mtcnn": _build_mtcnn}


def build_detector(kind: DetectorKind = "mtcnn", *, device: str = "cpu", min_face_size: float = 20.0) -> FaceDetector:
    """A detector backend. ``min_face_size`` (px) bounds the search: smaller faces are not looked for."""
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind=}; expected one of {sorted(DETECTORS)}")
    return DETECTORS[kind](device=device, min_face_size=min_face_size)


# Detection on a photo larger than this runs on a copy downscaled to it: MTCNN's first pyramid level and its
# float copies grow with the photo (a 12000x9000 scan needs several GB), while faces big enough to find at the
# reduced size are found as well. The restoration still crops from the full-resolution photo.
MAX_DETECT_PIXELS = 4096 * 3072


def detect_bounded(
    detector: FaceDetector, image: np.ndarray, *, max_pixels: int = MAX_DETECT_PIXELS
) -> tuple[list[FaceDetection], float]:
    """uint8 (H, W, 3) RGB -> (detections in ``image``'s coordinates, the scale detection ran at, <= 1).

    Memory is bounded by ``max_pixels``: a larger image is resized (area averaging) so its pixel count fits, and
    boxes and landmarks are mapped back. A face smaller than ``min_face_size / scale`` pixels is then not found.
    """
    h, w = image.shape[:2]
    if h * w <= max_pixels:
        return detector.detect(image), 1.0
    import cv2

    scale = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # (h', w', 3) uint8, channel order untouched
    sx, sy = w / size[0], h / size[1]
    back = []
    for d in detector.detect(small):
        # box edges scale as they are; landmarks are pixel centres: x_full + 0.5 = (x_small + 0.5) * sx
        box = (d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy)
        marks = tuple(((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5) for x, y in d.landmarks)
        back.append(FaceDetection(box=box, score=d.score, landmarks=marks))
    return back, min(size[0] / w, size[1] / h)


# ----------------------------------------------------------------------------------------------------------------
# Suppression and de-duplication


def _same_face(a: FaceDetection, b: FaceDetection, *, iou: float, overlap: float, eye_tolerance: float) -> bool:
    """Whether two detections are one face: boxes overlap (IoU or nested) or their eyes coincide."""
    ba, bb = np.asarray(a.box), np.asarray(b.box)
    iw = max(0.0, min(ba[2], bb[2]) - max(ba[0], bb[0]))
    ih = max(0.0, min(ba[3], bb[3]) - max(ba[1], bb[1]))
    inter = iw * ih
    area_a, area_b = a.width * a.height, b.width * b.height
    if inter / (area_a + area_b - inter) > iou or inter / min(area_a, area_b) > overlap:
        return True
    la, lb = a.landmarks_array(), b.landmarks_array()
    eye_dist = max(np.linalg.norm(la[1] - la[0]), np.linalg.norm(lb[1] - lb[0]), 1e-6)
    return bool(np.linalg.norm(la[:2] - lb[:2], axis=1).max() < eye_tolerance * eye_dist)


def deduplicate(
    detections: Sequence[FaceDetection], *, iou: float = 0.4, overlap: float = 0.7, eye_tolerance: float = 0.3
) -> tuple[list[FaceDetection], list[FaceDetection]]:
    """Keep the best-scoring detection of each face -> (kept by decreasing score, dropped duplicates).

    Two detections are one face when their boxes' IoU exceeds ``iou``, the intersection covers more than
    ``overlap`` of the smaller box, or both eyes lie within ``eye_tolerance`` eye-distances of each other.
    """
    kept: list[FaceDetection] = []
    dropped: list[FaceDetection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        same = any(_same_face(det, k, iou=iou, overlap=overlap, eye_tolerance=eye_tolerance) for k in kept)
        (dropped if same else kept).append(det)
    return kept, dropped


# ----------------------------------------------------------------------------------------------------------------
# Selection


@dataclass(frozen=True)
class SelectConfig:
    """Which detections become faces to restore.

    score_threshold: minimum detector confidence (--det-threshold). MTCNN gives real faces > 0.97 and most false
        positives (hands, patterns) 0.7-0.9.
    min_face_size: minimum short side of the box, px (--min-face-size).
    max_face_size: maximum short side of the box, px (--max-face-size); None: no limit.
    max_faces: keep at most this many, the largest boxes first (--max-faces); None keeps all.
    only_center_face: keep only the face whose centre is nearest the image centre (--only-center-face).
    """

    score_threshold: float = 0.95
    min_face_size: float = 0.0
    max_faces: int | None = None
    only_center_face: bool = False
    max_face_size: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold={self.score_threshold} must be in [0, 1]")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size={self.min_face_size} must be >= 0 px")
        if self.max_face_size is not None and self.max_face_size < self.min_face_size:
            raise ValueError(f"max_face_size={self.max_face_size} must be >= min_face_size={self.min_face_size}")
        if self.max_faces is not None and self.max_faces < 1:
            raise ValueError(f"max_faces={self.max_faces} must be >= 1 (or None for all faces)")


@dataclass(frozen=True)
class Rejected:
    """A detection that is not restored, and why ("low score", "too small", "duplicate", "not centre",
    "over max faces")."""

    detection: FaceDetection
    reason: str


def select_faces(
    detections: Sequence[FaceDetection], image_size: tuple[int, int], config: SelectConfig
) -> tuple[list[FaceDetection], list[Rejected]]:
    """Detections of one image (width, height) -> (faces to restore, left to right, rejected with reasons)."""
    rejected: list[Rejected] = []
    pool = []
    for d in detections:
        if d.score < config.score_threshold:
            rejected.append(Rejected(d, f"low score {d.score:.3f} < {config.score_threshold}"))
        elif d.size < config.min_face_size:
            rejected.append(Rejected(d, f"too small {d.size:.0f} px < {config.min_face_size:.0f} px"))
        elif config.max_face_size is not None and d.size > config.max_face_size:
            rejected.append(Rejected(d, f"too large {d.size:.0f} px > {config.max_face_size:.0f} px"))
        else:
            pool.append(d)
    pool, dups = deduplicate(pool)
    rejected += [Rejected(d, "duplicate") for d in dups]
    if config.only_center_face and pool:
        cx, cy = image_size[0] / 2, image_size[1] / 2
        best = min(pool, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)
        rejected += [Rejected(d, "not centre") for d in pool if d is not best]
        pool = [best]
    if config.max_faces is not None and len(pool) > config.max_faces:
        by_size = sorted(pool, key=lambda d: -d.width * d.height)
        rejected += [Rejected(d, "over max faces") for d in by_size[config.max_faces :]]
        pool = by_size[: config.max_faces]
    pool.sort(key=lambda d: (d.center[0], d.center[1]))  # left to right: stable face indices in file names
    return pool, rejected


NOT_PICKED = "not in --faces"  # the reason of a face left out by a face selection


def pick_faces(
    faces: Sequence[FaceDetection], indices: Sequence[int] | None
) -> tuple[list[tuple[int, FaceDetection]], list[Rejected]]:
    """The selected faces (``select_faces`` order) -> (those whose index is in ``indices``, with that index; the others
    rejected as "not in --faces"). ``indices=None`` keeps all. Indices beyond the faces found are ignored."""
    if indices is None:
        return list(enumerate(faces)), []
    wanted = set(indices)
    picked = [(i, d) for i, d in enumerate(faces) if i in wanted]
    return picked, [Rejected(d, f"{NOT_PICKED} (index {i})") for i, d in enumerate(faces) if i not in wanted]
