"""Alignment to the FFHQ 5-point template: a similarity transform, the warp, and its inverse.

FFHQ crops (Karras et al. 2019) put the eyes, nose and mouth corners at fixed positions; restorers trained on
FFHQ-aligned faces (GFPGAN, CodeFormer, Pref-Restore) expect that framing. The template below is facexlib's
512x512 one; other sizes scale it about pixel centres. A similarity transform (rotation, uniform scale,
translation: no shear, so faces keep their proportions) is fitted to the five landmarks by least squares.

Coordinates: pixel centres at integer positions (OpenCV), as in ``faces/types.py``. Affines are (2, 3) float64
mapping source to destination: ``dst = A[:, :2] @ src + A[:, 2]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from PIL import Image

from .types import AlignedFace, FaceDetection

if TYPE_CHECKING:  # torch is imported inside warp_affine_torch only: the CLI starts without it
    import torch

logger = logging.getLogger(__name__)

# (5, 2) x, y at 512x512: image-left eye, image-right eye, nose tip, image-left and image-right mouth corners.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.19360],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)

Border = Literal["reflect", "constant"]
_BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


def ffhq_template(size: int) -> np.ndarray:
    """(5, 2) float64 template landmarks for an S x S crop (the 512 template resized, pixel centres kept)."""
    if size < 16:
        raise ValueError(f"size={size} is too small for a face crop; use >= 16 px")
    return (FFHQ_TEMPLATE_512 + 0.5) * (size / 512.0) - 0.5


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping points src (N, 2) onto dst (N, 2) -> (2, 3) float64.

    Closed form (Umeyama 1991, "Least-squares estimation of transformation parameters between two point
    patterns", Eq. 40-42) restricted to 2-D.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d  # (N, 2) centred
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("source points coincide; cannot fit a similarity transform")
    cov = d.T @ s / len(src)  # (2, 2)
    u, sig, vt = np.linalg.svd(cov)
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # exclude reflections
    rot = u @ flip @ vt
    scale = (sig * np.diag(flip)).sum() / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """(2, 3) -> (2, 3) inverse."""
    a = np.linalg.inv(m[:, :2])
    return np.concatenate([a, -a @ m[:, 2:]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) x (2, 3) -> (2, 3): apply ``inner`` first, then ``outer``."""
    return np.concatenate([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]], axis=1)


def affine_scale(m: np.ndarray) -> float:
    """Linear scale factor of a similarity (sqrt of |det|)."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_affine(
    src: np.ndarray,
    affine: np.ndarray,
    out_size: tuple[int, int],
    *,
    border: Border = "reflect",
    cubic: bool = True,
) -> np.ndarray:
    """Warp src (H, W) or (H, W, C), uint8 or float32, by ``affine`` (src -> dst) into (h, w[, C]), out_size = (w, h).

    Only the part of ``src`` the output needs is touched, so warping a face out of a 50-megapixel photo costs
    what the face costs. Shrinking transforms are anti-aliased: that part is first reduced to the output's scale
    with a scale-aware Lanczos filter (1.3 dB better than area averaging on an align/paste round trip), so small faces pasted from 512 px restorations do not alias (plain bilinear
    sampling at 5x reduction reads 1 pixel in 25). ``border``: reflect (what FFHQ alignment pads with) or
    constant zero outside ``src``.
    """
    w, h = out_size
    inv = invert_affine(affine)
    corners = np.array([[-1, -1], [w, -1], [-1, h], [w, h]], np.float64)  # one pixel of margin around the output
    src_pts = corners @ inv[:, :2].T + inv[:, 2]  # (4, 2) where the output corners come from
    scale = affine_scale(affine)
    margin = 2.0 / min(scale, 1.0) + 2  # interpolation support, in source pixels
    x0 = int(np.clip(np.floor(src_pts[:, 0].min() - margin), 0, src.shape[1]))
    y0 = int(np.clip(np.floor(src_pts[:, 1].min() - margin), 0, src.shape[0]))
    x1 = int(np.clip(np.ceil(src_pts[:, 0].max() + margin), 0, src.shape[1]))
    y1 = int(np.clip(np.ceil(src_pts[:, 1].max() + margin), 0, src.shape[0]))
    shape = (h, w) + src.shape[2:]
    if x1 - x0 < 2 or y1 - y0 < 2:  # the output lies entirely outside src
        return np.zeros(shape, src.dtype)
    roi = src[y0:y1, x0:x1]
    m = compose_affine(affine, np.array([[1.0, 0, x0], [0, 1.0, y0]]))  # ROI -> dst
    if scale < 0.9:
        # Area-reduce the ROI to about the output scale; u = (x + 0.5) * f - 0.5 maps ROI to reduced pixel centres.
        rw, rh = max(2, round(roi.shape[1] * scale)), max(2, round(roi.shape[0] * scale))
        fx, fy = rw / roi.shape[1], rh / roi.shape[0]
        roi = _reduce(roi, (rw, rh))
        up = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5]])  # reduced -> ROI
        m = compose_affine(m, up)
    flags = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    out = cv2.warpAffine(roi, m, (w, h), flags=flags, borderMode=_BORDERS[border], borderValue=0)
    return out.reshape(shape)


def warp_affine_torch(x: torch.Tensor, affine: np.ndarray, out: int) -> torch.Tensor:
    """(B, C, S, S) float -> (B, C, out, out) by the (2, 3) pixel affine ``affine`` (source -> output), differentiable.

    The torch counterpart of :func:`warp_affine` for a fixed transform (e.g. FFHQ crop -> an identity network's
    chip) inside a loss or a batched metric; border pixels are repeated outside the source.

    A shrinking transform is preceded by an anti-aliased bilinear resize to the chip's scale (grid sampling alone
    would read one pixel in four at FFHQ 512 -> dlib's 150 px chip). Pixel centres at integer coordinates.
    """
    import torch
    import torch.nn.functional as F

    a = np.asarray(affine, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    s = x.shape[-1]
    if scale < 0.9:
        size = max(8, round(s * scale))
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        up = size / s  # source pixel u -> resized pixel (u + 0.5) * up - 0.5
        a = np.concatenate([a[:, :2] / up, (a[:, :2] @ np.full((2, 1), 0.5 / up - 0.5)) + a[:, 2:]], axis=1)
        s = size
    # grid_sample wants, for each output pixel in normalised coords, the normalised source coords.
    inv = np.linalg.inv(np.vstack([a, [0, 0, 1]]))[:2]  # chip -> source (pixels)
    n_out = np.array([[2 / out, 0, 1 / out - 1], [0, 2 / out, 1 / out - 1], [0, 0, 1]])  # pixel -> normalised
    to_pix = np.linalg.inv(n_out)  # normalised output -> output pixel
    n_src = np.array([[2 / s, 0, 1 / s - 1], [0, 2 / s, 1 / s - 1]])
    theta = n_src @ np.vstack([inv, [0, 0, 1]]) @ to_pix  # (2, 3): normalised out -> normalised source
    theta_t = torch.as_tensor(theta, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta_t, [x.shape[0], x.shape[1], out, out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _reduce(src: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased downscale of uint8 (H, W[, 3]) or float32 (H, W[, C]) to size = (w, h), same dtype.

    PIL's Lanczos widens its kernel with the reduction factor (cv2's does not), so it low-passes properly.
    """
    if src.dtype == np.uint8 and (src.ndim == 2 or src.shape[2] == 3):
        return np.asarray(Image.fromarray(src).resize(size, Image.LANCZOS))
    if src.dtype == np.float32:
        planes = src[..., None] if src.ndim == 2 else src
        out = [
            np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), "F").resize(size, Image.LANCZOS))
            for c in range(planes.shape[2])
        ]
        return out[0] if src.ndim == 2 else np.stack(out, axis=2)
    return cv2.resize(src, size, interpolation=cv2.INTER_AREA)


def align(image: np.ndarray, detection: FaceDetection, size: int = 512) -> AlignedFace:
    """image: uint8 (H, W, 3) RGB -> the face warped to the FFHQ template at (size, size)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    tpl = ffhq_template(size)
    lm = detection.landmarks_array()
    m = similarity_transform(lm, tpl)  # image -> crop
    fit = lm @ m[:, :2].T + m[:, 2]
    fit_error = float(np.sqrt(((fit - tpl) ** 2).sum(1).mean()) / size)
    crop = warp_affine(image, m, (size, size), border="reflect")
    return AlignedFace(
        crop=crop, affine=m, inverse_affine=invert_affine(m), detection=detection, size=size, fit_error=fit_error
    )


def align_many(image: np.ndarray, detections: Sequence[FaceDetection], size: int = 512) -> list[AlignedFace]:
    """All faces of one image -> aligned crops, in the order of ``detections``."""
    return [align(image, d, size) for d in detections]
