"""Image conversion: the project's colour order, dtype and value range, and the conversions between them.

Project-wide convention (docs/style.md P5):
* I/O boundaries: ``uint8`` numpy arrays, ``(H, W, 3)``, RGB.
* Inside models: ``float32`` tensors ``(B, 3, H, W)``, RGB, in ``[-1, 1]``.
* ``[0, 1]`` floats only inside ``degradations/`` and ``metrics/`` (use :func:`to_unit` / :func:`from_unit`).
OpenCV BGR never leaves the function that called OpenCV (here, ``photo_io.py`` and ``eval/restorers.py``).

Photo files (decoding and encoding with bit depth, alpha, ICC, EXIF and DPI kept; :class:`~prefrestore.io.photo_io.Photo`)
live in :mod:`prefrestore.io.photo_io`; :func:`load_rgb` / :func:`save_rgb` here are the plain 8-bit RGB shortcuts.
"""

from __future__ import annotations

import glob
import io
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ImageError
from .io_safety import InputGuard, atomic_write, file_kind, shown
from .photo_io import read_photo

# photo_io (photo files) never imports this module, so there is no cycle.
__all__ = [
    "IMAGE_EXTENSIONS",
    "from_model",
    "from_unit",
    "list_images",
    "load_rgb",
    "resize",
    "save_rgb",
    "to_model",
    "to_unit",
    "uint8_to_unit",
    "unit_to_uint8",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")


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


def uint8_to_unit(arr: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (B, H, W, 3) RGB -> float32 (3, H, W) or (B, 3, H, W) in [0, 1] (degradations/, metrics/)."""
    if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 (H, W, 3) or (B, H, W, 3) RGB, got {arr.dtype} {arr.shape}")
    t = torch.from_numpy(np.array(arr, copy=True))
    return (t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)).float() / 255.0


def unit_to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (3, H, W) or (B, 3, H, W) RGB in [0, 1] (values outside are clipped) -> uint8 (H, W, 3) or
    (B, H, W, 3), rounded."""
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    u8 = (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return (u8.permute(1, 2, 0) if u8.ndim == 3 else u8.permute(0, 2, 3, 1)).cpu().numpy()


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


def list_images(path: str | os.PathLike, *, on_skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    """A file -> [file]; a folder -> its image files (sorted, non-recursive); a glob pattern -> matching images.

    Entries of a folder or pattern with an image extension that are not regular files (a FIFO, a device, a
    broken symlink, a folder named ``x.jpg``) are left out; ``on_skip(path, message)`` is told about each.
    A file named explicitly is returned as given (reading it refuses it if it is not a regular file).
    """
    p = Path(path)
    if p.is_dir():
        return _regular_images(sorted(p.iterdir()), on_skip)
    if p.exists() or p.is_symlink():
        return [p]
    # glob.glob, not Path().glob: the latter rejects absolute patterns ("/photos/*.jpg").
    matches = sorted(Path(m) for m in glob.glob(str(path))) if any(c in str(path) for c in "*?[") else []
    if matches:
        return _regular_images(matches, on_skip, only_images=False)
    raise ImageError(f"{shown(path)}: no such file or folder; check the path")


def _regular_images(entries: list[Path], on_skip, *, only_images: bool = True) -> list[Path]:
    out = []
    for q in entries:
        if only_images and q.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        try:
            mode = q.stat().st_mode
        except OSError:
            if on_skip and q.is_symlink():
                on_skip(q, f"{shown(q)}: broken symlink, skipped")
            continue
        if stat.S_ISREG(mode):
            out.append(q)
        elif on_skip and (only_images or not Path(q).is_dir()):
            on_skip(q, f"{shown(q)}: is {file_kind(mode)}, not a regular file; only regular files are read")
    return out


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> uint8 (H, W, 3) RGB, EXIF orientation applied. Raises ImageError with a one-line fix.

    16-bit files are rounded to 8 bits and alpha is dropped; use :func:`~prefrestore.io.photo_io.read_photo` to keep
    them.
    """
    return read_photo(path).rgb8()


def save_rgb(path: str | os.PathLike, img: np.ndarray, *, quality: int = 95, guard: InputGuard | None = None) -> None:
    """Write uint8 (H, W, 3) RGB to ``path`` (format from the extension; JPEG at ``quality``), all or nothing
    (:func:`~prefrestore.io.io_safety.atomic_write`; never onto one of ``guard``'s inputs)."""
    p = Path(path)
    ext = p.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise ValueError(f"{p}: unknown image extension {ext!r}; use .png or .jpg")
    kwargs = {"quality": quality} if ext in (".jpg", ".jpeg") else {}
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kwargs)
    atomic_write(p, buf.getbuffer(), guard=guard)
