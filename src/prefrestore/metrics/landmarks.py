"""LMD: mean Euclidean distance (pixels) between facial landmarks of the restored face and of its reference.

Backends (chosen by name, :data:`BACKENDS`):

* ``fan``: FAN 98-point WFLW landmarks (``prefrestore.metrics.fan``, VQFR's ``alignment_WFLW_4HG.pth``), the
  published LMD protocol; needs that weight file.
* ``mtcnn``: the project's face detector ``prefrestore.faces.detect.build_detector`` (MTCNN 5 points: eyes, nose, mouth corners),
  run on each image independently; a face missing in either image gives NaN, counted as a failure.
* ``dlib``: dlib's 5-point shape predictor (eye corners, nose base), fitted inside the face box found on the
  reference, so it always returns points; used when ``prefrestore.faces.detect`` is not importable.

Published LMD numbers (VQFR and followers) use FAN's 98 WFLW points on 512 px crops; LMD values from different
backends or resolutions are not comparable, which is why the backend is part of the metric name (``lmd_dlib5``).
"""

from __future__ import annotations

import logging
import os
from typing import Literal, Protocol

import cv2
import numpy as np

from .weights import MetricUnavailable, find_file

logger = logging.getLogger(__name__)

Backend = Literal["fan", "mtcnn", "dlib"]
BACKENDS: tuple[Backend, ...] = ("fan", "mtcnn", "dlib")


def landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    """(K, 2), (K, 2) -> mean point-to-point Euclidean distance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"expected two (K, 2) landmark arrays of one shape, got {a.shape}, {b.shape}")
    return float(np.sqrt(((a - b) ** 2).sum(1)).mean())


class LandmarkBackend(Protocol):
    name: str

    def pair(self, image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """uint8 (H, W, 3) RGB image and reference (same size) -> their (K, 2) landmarks, or None if not found."""
        ...


class DlibLandmarks:
    name = "dlib5"

    def __init__(self) -> None:
        from ..faces.dlib import DlibFaces

        self.faces = DlibFaces()

    def pair(self, image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        box = self.faces.box(reference)
        return self.faces.landmarks(image, box), self.faces.landmarks(reference, box)


class DetectLandmarks:
    """``prefrestore.faces.detect.build_detector("mtcnn").detect(img)``; the most confident face's 5 points."""

    name = "mtcnn5"

    def __init__(self, *, device: str = "cpu") -> None:
        from ..faces import detect

        self._mod = detect
        self._device = device
        self._detectors: dict[float, object] = {}

    def _points(self, img: np.ndarray) -> np.ndarray | None:
        # An aligned crop's face spans most of it: skip the small-face pyramid levels (5x faster at 512 px).
        min_face = max(20.0, 0.15 * min(img.shape[:2]))
        if min_face not in self._detectors:
            self._detectors[min_face] = self._mod.build_detector("mtcnn", device=self._device, min_face_size=min_face)
        dets = self._detectors[min_face].detect(img)  # type: ignore[attr-defined]
        if not dets:
            return None
        return max(dets, key=lambda d: d.score).landmarks_array()

    def pair(self, image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self._points(image), self._points(reference)


class FANLandmarks:
    """FAN 98 WFLW points on each image (the network has no detector: an aligned crop always gets points)."""

    name = "fan98"

    def __init__(self, *, device: str = "cpu", override: str | os.PathLike | None = None) -> None:
        from . import fan as fan_lmd

        path = find_file(
            "LMD (FAN)",
            fan_lmd.CHECKPOINT,
            "FAN WFLW 4-hourglass weights from VQFR's metric weights",
            override=override,
        )
        self._landmarks = fan_lmd.fan_landmarks
        self.model = fan_lmd.load_fan(path, device=device)

    def pair(self, image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        pts = self._landmarks(self.model, [image, reference])  # (2, 98, 2)
        return pts[0], pts[1]


def build_landmark_backend(
    name: Backend | Literal["auto"] = "auto", *, device: str = "cpu", override: str | os.PathLike | None = None
) -> LandmarkBackend:
    """``auto``: FAN when its weights are on disk (the published protocol), else MTCNN from
    ``prefrestore.faces.detect``, else dlib's 5-point predictor. The chosen backend's ``name`` goes into results."""
    if name == "auto":
        try:
            return FANLandmarks(device=device, override=override)
        except MetricUnavailable as err:
            logger.info("LMD: %s; using 5-point landmarks instead", err)
        try:
            return DetectLandmarks(device=device)
        except (ModuleNotFoundError, AttributeError) as err:
            logger.info("LMD: prefrestore.faces.detect not usable (%s); using dlib 5-point landmarks", err)
            return DlibLandmarks()
    if name == "fan":
        return FANLandmarks(device=device, override=override)
    if name == "mtcnn":
        return DetectLandmarks(device=device)
    if name == "dlib":
        return DlibLandmarks()
    raise ValueError(f"unknown landmark backend {name!r}; expected one of {('auto', *BACKENDS)}")


def lmd(backend: LandmarkBackend, images: list[np.ndarray], references: list[np.ndarray]) -> np.ndarray:
    """(B,) float64 LMD in pixels of the reference; NaN where a face was not found in either image."""
    out = []
    for img, ref in zip(images, references, strict=True):
        if img.shape[:2] != ref.shape[:2]:
            img = cv2.resize(img, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_CUBIC)
        a, b = backend.pair(img, ref)
        out.append(np.nan if a is None or b is None else landmark_distance(a, b))
    return np.asarray(out, dtype=np.float64)
