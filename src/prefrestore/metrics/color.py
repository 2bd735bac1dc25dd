"""Colour difference between a face and its restoration: CIE Delta E 2000 on the face region.

The face region of an FFHQ-aligned crop is :func:`prefrestore.faces.dlib.central_box` (where alignment puts
the face: forehead to chin, cheek to cheek). ``face_delta_e`` compares the *mean* CIELAB colour of that region in
the two crops, so it measures a colour cast (the drift "darker and redder" of a restorer), not the detail a
restoration is meant to change. Lab is computed from sRGB (IEC 61966-2-1 transfer curve) with the D65 white point,
Delta E with the CIEDE2000 formula (Sharma, Wu and Dalal 2005); both agree with scikit-image's ``rgb2lab`` /
``deltaE_ciede2000`` (tested). Inputs: uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

import numpy as np

from ..faces.dlib import central_box

_M = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65, 2 degree observer


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) sRGB, or float in [0, 1] -> float64 (..., 3) CIELAB (L in [0, 100])."""
    x = np.asarray(rgb, np.float64)
    if np.asarray(rgb).dtype == np.uint8:
        x = x / 255.0
    lin = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = lin @ _M.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 (kL = kC = kH = 1) between (..., 3) Lab arrays -> (...,)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    cbar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(cbar**7 / (cbar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1, c2 = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    dL, dC = L2 - L1, c2 - c1
    dh = h2 - h1
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1 * c2 == 0, 0.0, dh)
    dH = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh / 2))
    Lbar, cbarp = (L1 + L2) / 2, (c1 + c2) / 2
    hsum = h1 + h2
    hbar = np.where(np.abs(h1 - h2) > 180, np.where(hsum < 360, hsum + 360, hsum - 360), hsum) / 2
    hbar = np.where(c1 * c2 == 0, hsum, hbar)
    t = (
        1
        - 0.17 * np.cos(np.radians(hbar - 30))
        + 0.24 * np.cos(np.radians(2 * hbar))
        + 0.32 * np.cos(np.radians(3 * hbar + 6))
        - 0.20 * np.cos(np.radians(4 * hbar - 63))
    )
    sl = 1 + 0.015 * (Lbar - 50) ** 2 / np.sqrt(20 + (Lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbarp, 1 + 0.015 * cbarp * t
    rt = -2 * np.sqrt(cbarp**7 / (cbarp**7 + 25.0**7)) * np.sin(np.radians(60 * np.exp(-(((hbar - 275) / 25) ** 2))))
    return np.sqrt((dL / sl) ** 2 + (dC / sc) ** 2 + (dH / sh) ** 2 + rt * (dC / sc) * (dH / sh))


def face_mean_lab(crop: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) RGB aligned crop -> (3,) mean Lab over the face region."""
    left, top, right, bottom = central_box(*crop.shape[:2])
    return rgb_to_lab(crop[top:bottom, left:right]).reshape(-1, 3).mean(0)


def face_delta_e(reference: np.ndarray, restored: np.ndarray) -> float:
    """Delta E 2000 between the mean face-region colours of two uint8 (S, S, 3) RGB aligned crops of one size."""
    if reference.shape != restored.shape:
        raise ValueError(f"crops differ in shape: {reference.shape} vs {restored.shape}")
    return float(delta_e2000(face_mean_lab(reference), face_mean_lab(restored)))
