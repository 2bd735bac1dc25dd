"""Image conversion: the only module that knows colour order, dtype and value range.

Project-wide convention (../STYLE.md P5):
* I/O boundaries: ``uint8`` numpy arrays, ``(H, W, 3)``, RGB.
* Inside models: ``float32`` tensors ``(B, 3, H, W)``, RGB, in ``[-1, 1]``.
* ``[0, 1]`` floats only inside ``degradations/`` and ``metrics/`` (use :func:`to_unit` / :func:`from_unit`).
OpenCV BGR never leaves the function that called OpenCV.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Decompression-bomb guard: images above this many pixels are refused before decoding.
MAX_PIXELS = 16384 * 16384
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------------------------------
# Tensor <-> array


def to_model(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB arrays (all the same size), or one (B, H, W, 3) array -> (B, 3, H, W) float32 in [-1, 1]."""
    arr = np.stack(list(images)) if not isinstance(images, np.ndarray) or images.ndim == 3 else images
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, H, W, 3) RGB, got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()  # (B, 3, H, W) in [0, 255]
    return x / 127.5 - 1.0


def from_model(x: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) float in [-1, 1] (values outside are clamped) -> list of uint8 (H, W, 3) RGB."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W), got {tuple(x.shape)}")
    u8 = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)  # (B, 3, H, W)
    return [a for a in u8.permute(0, 2, 3, 1).cpu().numpy()]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (for degradations/ and metrics/)."""
    return (x + 1.0) * 0.5


def from_unit(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def resize(img: np.ndarray, size: tuple[int, int], *, resample: str = "bicubic") -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (h, w, C), ``size`` = (w, h). Uses PIL so no colour-order question arises."""
    modes = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS, "nearest": Image.NEAREST}
    if resample not in modes:
        raise ValueError(f"unknown resample={resample!r}; expected one of {sorted(modes)}")
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img.copy()
    return np.asarray(Image.fromarray(img).resize(tuple(size), modes[resample]))


# ----------------------------------------------------------------------------------------------------------------
# Files


def list_images(path: str | os.PathLike) -> list[Path]:
    """A file -> [file]; a folder -> its image files (sorted, non-recursive); a glob pattern -> matching images."""
    p = Path(path)
    if p.is_dir():
        return sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
    if p.exists():
        return [p]
    matches = sorted(Path().glob(str(path))) if any(c in str(path) for c in "*?[") else []
    if matches:
        return [q for q in matches if q.is_file()]
    raise ImageError(f"{path}: no such file or folder; check the path")


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> uint8 (H, W, 3) RGB, EXIF orientation applied. Raises ImageError with a one-line fix."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: file not found; check the path")
    if p.is_dir():
        raise ImageError(f"{p}: is a folder, expected an image file")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file (0 bytes); re-copy or re-export the image")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{p}: {w}x{h} pixels is above the {MAX_PIXELS} pixel limit; downscale it first")
            im = ImageOps.exif_transpose(im)
            im.load()
            return np.asarray(im.convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image PIL can read; convert it to PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{p}: corrupt or truncated image ({err}); re-export it") from None


def save_rgb(path: str | os.PathLike, img: np.ndarray, *, quality: int = 95) -> None:
    """Write uint8 (H, W, 3) RGB to ``path`` (format from the extension; JPEG at ``quality``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": quality} if p.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(img).save(p, **kwargs)
