"""Frozen records passed between the face-pipeline stages (docs/style.md P14).

Coordinates are float pixels in the image the detector saw, OpenCV convention: pixel (i, j) has its centre at
x = j, y = i. Landmark order is the MTCNN / FFHQ 5-point order: image-left eye, image-right eye, nose tip,
image-left mouth corner, image-right mouth corner. Crops are uint8 (S, S, 3) RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    box: (x1, y1, x2, y2), x2 > x1, y2 > y1.
    score: detector confidence in [0, 1].
    landmarks: five (x, y) points in the order of the module docstring.
    """

    box: Box
    score: float
    landmarks: tuple[Point, Point, Point, Point, Point]

    def __post_init__(self) -> None:
        if len(self.box) != 4 or not (self.box[2] > self.box[0] and self.box[3] > self.box[1]):
            raise ValueError(f"box must be (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {self.box}")
        if len(self.landmarks) != 5 or any(len(p) != 2 for p in self.landmarks):
            raise ValueError(f"landmarks must be five (x, y) points, got {self.landmarks}")

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Short side of the box in pixels (what --min-face-size compares with)."""
        return min(self.width, self.height)

    @property
    def center(self) -> Point:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def landmarks_array(self) -> np.ndarray:
        """(5, 2) float64 (x, y)."""
        return np.asarray(self.landmarks, dtype=np.float64)

    @staticmethod
    def from_arrays(box: np.ndarray, score: float, landmarks: np.ndarray) -> FaceDetection:
        """box (4,), landmarks (5, 2) -> FaceDetection with plain Python floats."""
        return FaceDetection(
            box=tuple(float(v) for v in box),
            score=float(score),
            landmarks=tuple((float(x), float(y)) for x, y in np.asarray(landmarks).reshape(5, 2)),
        )


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A face warped to the FFHQ template.

    crop: uint8 (S, S, 3) RGB, S = size.
    affine: (2, 3) float64, image -> crop coordinates.
    inverse_affine: (2, 3) float64, crop -> image coordinates.
    fit_error: RMS distance between the warped landmarks and the template, as a fraction of S. Frontal faces
        give ~0.015-0.03 (t1.jpg, astronaut); turned faces 0.04 and more, and the more, the less the
        frontal template fits and the more their restorations deserve a look.
    """

    crop: np.ndarray
    affine: np.ndarray
    inverse_affine: np.ndarray
    detection: FaceDetection
    size: int
    fit_error: float

    def __post_init__(self) -> None:
        s = self.size
        if self.crop.shape != (s, s, 3) or self.crop.dtype != np.uint8:
            raise ValueError(f"crop must be uint8 ({s}, {s}, 3), got {self.crop.dtype} {self.crop.shape}")
        if self.affine.shape != (2, 3) or self.inverse_affine.shape != (2, 3):
            raise ValueError("affine and inverse_affine must be (2, 3)")


@dataclass(frozen=True, eq=False)
class RestoredFace:
    """An aligned face and its restoration. restored: uint8 (S, S, 3) RGB, same S as ``aligned.crop``."""

    aligned: AlignedFace
    restored: np.ndarray

    def __post_init__(self) -> None:
        if self.restored.shape != self.aligned.crop.shape or self.restored.dtype != np.uint8:
            raise ValueError(
                f"restored face must be uint8 {self.aligned.crop.shape}, got {self.restored.dtype} {self.restored.shape}"
            )
