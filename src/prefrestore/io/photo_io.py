"""Photo files: decoding and encoding that keep what the file carried (whole-photo restoration, faces/, pipeline.py).

A :class:`Photo` keeps bit depth (8 or 16), alpha, single-channel-ness, ICC profile, EXIF and DPI. Pixels are
always (H, W, 3) RGB in the file's integer dtype so every later stage has one layout; the grayscale flag says to
write one channel back. EXIF orientation is applied on read and reset to 1 in the carried EXIF, so viewers do not
rotate the output a second time. Every read refuses a decompression bomb from its header (:data:`MAX_PIXELS`).

Tensor/array conversion, resizing and listing image files live in :mod:`prefrestore.io.image`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from .io_safety import InputGuard, atomic_write, read_input, shown

# Decompression-bomb guard: images above this many pixels are refused from their header, before decoding. It is
# below Pillow's own refusal (2 x Image.MAX_IMAGE_PIXELS, about 179 M), so this is the limit that applies.
MAX_PIXELS = 150_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_PREFIX = b"Exif\x00\x00"
_GRAY_MODES = ("1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N", "I")
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, eq=False)
class Photo:
    """A decoded photo and the metadata to write back.

    color: (H, W, 3) RGB, uint8 or uint16 (the file's bit depth), EXIF orientation applied.
    alpha: (H, W), same dtype as ``color``, or None when the file has no alpha channel.
    grayscale: the file had one colour channel; :func:`write_photo` writes one channel (ITU-R 601 luma).
    icc_profile / exif / dpi: carried unchanged to the output (EXIF with Orientation reset to 1); None when absent.
    source_format: PIL's format name of the file read ("PNG", "JPEG", ...), None for photos built in memory.
    notes: what reading noticed (decoder warnings, frames after the first not read), for the report.
    """

    color: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    source_format: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c = self.color
        if c.ndim != 3 or c.shape[2] != 3 or c.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"Photo.color must be uint8/uint16 (H, W, 3) RGB, got {c.dtype} {c.shape}")
        if self.alpha is not None and (self.alpha.shape != c.shape[:2] or self.alpha.dtype != c.dtype):
            raise ValueError(f"Photo.alpha must be {c.dtype} {c.shape[:2]}, got {self.alpha.dtype} {self.alpha.shape}")

    @property
    def bit_depth(self) -> int:
        """8 or 16."""
        return 16 if self.color.dtype == np.uint16 else 8

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.color.shape[1], self.color.shape[0]

    def rgb8(self) -> np.ndarray:
        """uint8 (H, W, 3) RGB: what detection and restoration see (16-bit rounded to 8-bit)."""
        return _to_uint8(self.color)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(x / 257): 65535 -> 255


def pixels_to_float(arr: np.ndarray) -> np.ndarray:
    """uint8 or uint16 array (any shape) -> float32 on the 8-bit scale [0, 255] (uint16 divided by 257).

    The working scale of paste-back and background upsampling, so 16-bit photos keep their precision there.
    """
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(257.0)
    raise ValueError(f"expected uint8 or uint16 pixels, got {arr.dtype}")


def float_to_pixels(x: np.ndarray, dtype: np.dtype | type, *, inplace: bool = False) -> np.ndarray:
    """float on the 8-bit scale [0, 255] (clipped) -> uint8 or uint16 (x * 257), rounded to nearest.

    ``inplace``: use ``x`` (a float32 array the caller owns) as scratch space, so a large photo needs no float
    copies; ``x`` is garbage afterwards.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected dtype uint8 or uint16, got {dtype}")
    top = 255 if dtype == np.uint8 else 65535
    if inplace and x.dtype == np.float32:
        if dtype == np.uint16:
            np.multiply(x, np.float32(257.0), out=x)
        np.rint(x, out=x)
        np.clip(x, 0, top, out=x)
        return x.astype(dtype)
    if dtype == np.uint8:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return np.clip(np.rint(x * np.float32(257.0)), 0, 65535).astype(np.uint16)


def luma(color: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB uint8/uint16 -> (H, W) same dtype, ITU-R 601-2 luma (the weights PIL's convert("L") uses)."""
    y = color[..., 0] * 0.299 + color[..., 1] * 0.587 + color[..., 2] * 0.114  # float64 (H, W)
    top = 255 if color.dtype == np.uint8 else 65535
    return np.clip(np.rint(y), 0, top).astype(color.dtype)


def _png_header(head: bytes) -> tuple[int, int, int, int] | None:
    """First bytes of a file -> (width, height, bit depth, colour type) from a PNG IHDR, None if not a PNG."""
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[24], head[25]


def _check_pixels(p: Path, width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageError(f"{shown(p)}: the header claims {width}x{height} pixels; the file is corrupt, re-export it")
    if width * height > max_pixels:
        raise ImageError(
            f"{shown(p)}: {width}x{height} pixels is above the {max_pixels} pixel limit; downscale it first"
        )


_MAGIC = (
    (_PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
# Modes whose pixels PIL converts to RGB/gray without a colour-space change: only their ICC profile describes
# the pixels we hold (a CMYK or Lab profile does not describe the RGB written).
_RGB_PROFILE_MODES = (
    "1",
    "L",
    "LA",
    "La",
    "P",
    "PA",
    "RGB",
    "RGBA",
    "RGBa",
    "RGBX",
    "I;16",
    "I;16B",
    "I;16L",
    "I;16N",
    "I",
)


def sniff_format(data: bytes) -> str | None:
    """The image format the first bytes of an encoded image announce ("JPEG", "PNG", "WebP", "TIFF", "GIF",
    "BMP"), or None: what a server goes by when an upload has no file name."""
    return _sniff(data)


def _sniff(data: bytes) -> str | None:
    """The image format the first bytes announce, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def _exif_reset_orientation(exif: bytes) -> tuple[bytes, int]:
    """Raw EXIF ("Exif\\0\\0" + TIFF) -> (same bytes with IFD0 Orientation set to 1, the original orientation).

    Patched in place rather than re-serialised through PIL, so maker notes and sub-IFDs stay byte-identical.
    Malformed EXIF is returned unchanged with orientation 1.
    """
    tiff = exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif
    base = len(exif) - len(tiff)
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return exif, 1
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return exif, 1
    (count,) = struct.unpack(end + "H", tiff[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            break
        tag, typ = struct.unpack(end + "HH", tiff[entry : entry + 4])
        if tag == _ORIENTATION_TAG and typ == 3:  # SHORT, value stored in the first 2 bytes of the value field
            (orientation,) = struct.unpack(end + "H", tiff[entry + 8 : entry + 10])
            patched = bytearray(exif)
            patched[base + entry + 8 : base + entry + 10] = struct.pack(end + "H", 1)
            return bytes(patched), orientation if 1 <= orientation <= 8 else 1
    return exif, 1


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as PIL's ImageOps.exif_transpose does."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](arr))


def _decode_16bit(p: Path, data: bytes) -> np.ndarray:
    """16-bit PNG/TIFF bytes -> uint16 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA (PIL cannot hold 16-bit RGB)."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageError(f"{p}: corrupt or truncated 16-bit image; re-export it")
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * np.uint16(257)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return arr


def _decode_pil(p: Path, im: Image.Image) -> np.ndarray:
    """An opened PIL image -> uint8 (H, W), (H, W, 2) LA, (H, W, 3) RGB, (H, W, 4) RGBA, or uint16 (H, W)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(im.convert("I"))
        if mode == "I" and wide.size and (int(wide.min()) < 0 or int(wide.max()) > 65535):
            raise ImageError(
                f"{shown(p)}: 32-bit integer pixels (range {int(wide.min())}..{int(wide.max())}) do "
                "not fit 16 bits; convert it to a 16-bit PNG"
            )
        return wide.astype(np.uint16)
    if mode == "F":
        raise ImageError(f"{shown(p)}: 32-bit float images are not supported; convert it to a 16-bit PNG")
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(im.convert("LA"))
    has_alpha = mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info)
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def read_photo(
    path: str | os.PathLike,
    *,
    max_pixels: int = MAX_PIXELS,
    accept: Callable[[int, int, int, bool], None] | None = None,
) -> Photo:
    """Read an image file -> :class:`Photo`, keeping bit depth, alpha, grayscale, ICC, EXIF and DPI.

    Only regular files are read, with a size cap before reading (:func:`~prefrestore.io.io_safety.read_input`). The
    pixel count is checked from the header before anything is decoded (a PNG claiming 50000x50000 is refused
    without allocating); ``accept(width, height, bytes_per_sample, has_alpha)``, called from the header too, may
    refuse more (raise ImageError), e.g. a photo whose restoration would not fit the memory budget. Every failure is an :class:`ImageError` whose
    message names the file and the fix. Decoder warnings and frames not read become ``Photo.notes``.
    """
    p = Path(path)
    data = read_input(p)
    name = shown(p)

    png = _png_header(data[:32])
    if png is not None:
        _check_pixels(p, png[0], png[1], max_pixels)
        if data.rfind(b"\x00\x00\x00\x00IEND") < 0:
            raise ImageError(f"{name}: truncated PNG (no IEND chunk at the end); re-export or re-copy it")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            with Image.open(io.BytesIO(data)) as im:
                _check_pixels(p, im.width, im.height, max_pixels)
                fmt, mode, info = im.format, im.mode, dict(im.info)
                frames = getattr(im, "n_frames", 1)
                tags = im.tag_v2 if fmt == "TIFF" else {}
                bits = tags.get(258)  # BitsPerSample
                sixteen = (png is not None and png[2] == 16) or (
                    fmt == "TIFF" and mode not in _GRAY_MODES and bits is not None and 16 in tuple(bits)
                )
                if accept is not None:
                    wide = sixteen or mode.startswith("I")
                    accept(
                        im.width,
                        im.height,
                        2 if wide else 1,
                        "A" in mode or "transparency" in info or (png is not None and png[3] in (4, 6)),
                    )
                arr = _decode_16bit(p, data) if sixteen else _decode_pil(p, im)
                exif_raw = info.get("exif") or (im.getexif().tobytes() if im.getexif() else None)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image header claims too many pixels; downscale it first") from None
    except UnidentifiedImageError:
        sniffed = _sniff(data)
        if sniffed:
            raise ImageError(
                f"{name}: corrupt or truncated {sniffed} file (its header cannot be read); re-export or re-copy it"
            ) from None
        raise ImageError(f"{name}: not an image PIL can read; convert it to PNG or JPEG") from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        struct.error,
        EOFError,
        IndexError,
        KeyError,
        TypeError,
        ZeroDivisionError,
        OverflowError,
        zlib.error,
    ) as err:
        raise ImageError(f"{name}: corrupt or truncated image ({shown(err)}); re-export it") from None
    notes = [
        f"decoder warning: {shown(w.message)}"
        for w in caught
        if not issubclass(w.category, Image.DecompressionBombWarning)
    ]
    if frames > 1:
        notes.append(f"{fmt} file with {frames} frames/pages: only the first was read")

    grayscale = mode in _GRAY_MODES or (png is not None and png[3] in (0, 4))
    exif, orientation = _carried_exif(exif_raw)
    color, alpha = _split_alpha(_orient(arr, orientation))
    icc = info.get("icc_profile") or None
    if icc and mode not in _RGB_PROFILE_MODES:
        icc = None  # a CMYK / Lab / YCbCr profile does not describe the RGB pixels we hold
        notes.append(f"{mode} colour converted to RGB; its ICC profile was not carried")
    return Photo(
        color=np.ascontiguousarray(color),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        grayscale=bool(grayscale),
        icc_profile=icc,
        exif=exif,
        dpi=_carried_dpi(info, fmt, tags),
        source_format=fmt,
        notes=tuple(notes),
    )


def _carried_exif(exif_raw: bytes | None) -> tuple[bytes | None, int]:
    """The EXIF a file carried (raw, with or without the "Exif\\0\\0" prefix, or None) -> (EXIF to write back, with
    the prefix and Orientation reset to 1, or None; the orientation to apply to the pixels)."""
    if not exif_raw:
        return None, 1
    exif_raw = exif_raw if exif_raw.startswith(_EXIF_PREFIX) else _EXIF_PREFIX + exif_raw
    return _exif_reset_orientation(exif_raw)


def _split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoded pixels (H, W), (H, W, 2) LA, (H, W, 3) RGB or (H, W, 4) RGBA -> ((H, W, 3) RGB, (H, W) alpha or None)."""
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2), None
    if arr.shape[2] == 2:  # LA
        return np.repeat(arr[..., :1], 3, axis=2), arr[..., 1]
    if arr.shape[2] == 4:
        return arr[..., :3], arr[..., 3]
    return arr, None


def _carried_dpi(info: dict, fmt: str | None, tags) -> tuple[float, float] | None:
    """The DPI to carry: PIL's ``info["dpi"]`` as two finite positive floats, or None (absent, malformed, or a TIFF
    whose resolution is not in dots per inch)."""
    dpi = info.get("dpi")
    if fmt == "TIFF" and (282 not in tags or tags.get(296, 2) == 1):
        dpi = None  # no XResolution, or ResolutionUnit "none": the numbers are not dots per inch
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi else None
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        dpi = None
    if dpi and not all(np.isfinite(v) and v > 0 for v in dpi):
        dpi = None
    return dpi


def probe_image(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Encoded image bytes -> (width, height) from the header alone, nothing decoded (uploads, before queueing).

    Raises :class:`ImageError` naming ``name`` when the bytes are empty, not an image, or claim more than
    ``max_pixels`` pixels. A file whose header is fine but whose pixels are truncated passes; :func:`read_photo`
    then reports it.
    """
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes); re-copy or re-export the image")
    png = _png_header(data[:32])
    if png is not None:
        _check_pixels(Path(name), png[0], png[1], max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                size = im.width, im.height
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image header claims too many pixels; downscale it first") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image PIL can read; convert it to PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError, struct.error) as err:
        raise ImageError(f"{name}: corrupt or truncated image ({err}); re-export it") from None
    _check_pixels(Path(name), size[0], size[1], max_pixels)
    return size


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png_gray_alpha16(arr: np.ndarray) -> bytes:
    """uint16 (H, W, 2) gray + alpha -> PNG bytes (colour type 4, 16 bits; every row with filter 0)."""
    h, w = arr.shape[:2]
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * 4)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # (H, 1 + 4 W): filter byte + row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def _encode_png16(arr: np.ndarray, photo: Photo) -> bytes:
    """uint16 (H, W) / (H, W, 3) RGB / (H, W, 4) RGBA -> PNG bytes with iCCP, eXIf and pHYs chunks.

    OpenCV writes 16-bit colour PNGs but no metadata; the chunks go right after IHDR, where the PNG
    specification requires iCCP and recommends eXIf.
    """
    if arr.ndim == 3 and arr.shape[2] == 2:  # 16-bit gray + alpha: OpenCV has no 2-channel PNG, so by hand
        png = _encode_png_gray_alpha16(arr)
    else:
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
        ok, buf = cv2.imencode(".png", arr)
        assert ok, "OpenCV failed to encode a 16-bit PNG"
        png = buf.tobytes()
    extra = b""
    if photo.icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(photo.icc_profile))
    if photo.exif:
        exif = photo.exif[len(_EXIF_PREFIX) :] if photo.exif.startswith(_EXIF_PREFIX) else photo.exif
        extra += _png_chunk(b"eXIf", exif)
    if photo.dpi:
        ppm = [max(1, round(d / 0.0254)) for d in photo.dpi]  # pixels per metre
        extra += _png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1))
    ihdr_end = 8 + 8 + 13 + 4  # signature + (length, type) + IHDR payload + CRC
    return png[:ihdr_end] + extra + png[ihdr_end:]


def write_photo(path: str | os.PathLike, photo: Photo, *, quality: int = 95, guard: InputGuard | None = None) -> None:
    """Write a :class:`Photo`; the format comes from the extension. The file appears atomically (temp + fsync +
    rename, :func:`~prefrestore.io.io_safety.atomic_write`) and never onto one of ``guard``'s inputs.

    PNG stores everything (16-bit, alpha, grayscale, ICC, EXIF, DPI). JPEG is 8-bit without alpha: pass a photo
    without alpha and 8-bit (see :func:`photo_for_format`), otherwise ValueError. ``quality`` is JPEG quality 1-95
    (4:4:4 chroma at quality >= 90, so restored faces keep sharp colour edges).
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext in (".jpg", ".jpeg") and (photo.alpha is not None or photo.bit_depth != 8):
        raise ValueError(f"{p}: JPEG stores neither alpha nor 16 bits; convert with photo_for_format() first")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality={quality} must be in 1..100")
    color = photo.color
    channels = [luma(color)[..., None]] if photo.grayscale else [color]
    if photo.alpha is not None:
        channels.append(photo.alpha[..., None])
    arr = np.concatenate(channels, axis=2)  # (H, W, C), C in 1..4
    if arr.shape[2] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    if photo.bit_depth == 16 and ext == ".png":
        buf.write(_encode_png16(arr, photo))
    else:
        if photo.bit_depth == 16:
            if arr.ndim != 2 or ext not in (".tif", ".tiff"):
                raise ValueError(f"{p}: 16-bit colour is written as PNG only; use a .png name or convert to 8-bit")
            im = Image.fromarray(arr, "I;16")
        else:
            im = Image.fromarray(arr, "L" if arr.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]])
        kwargs: dict = {}
        if photo.icc_profile:
            kwargs["icc_profile"] = photo.icc_profile
        if photo.exif:
            kwargs["exif"] = photo.exif
        if photo.dpi:
            kwargs["dpi"] = photo.dpi
        if ext in (".jpg", ".jpeg"):
            kwargs.update(quality=quality, subsampling=0 if quality >= 90 else 2)
        fmt = Image.registered_extensions().get(ext)
        if fmt is None:
            raise ValueError(f"{p}: unknown image extension {ext!r}; use .png or .jpg")
        im.save(buf, format=fmt, **kwargs)
    atomic_write(p, buf.getbuffer(), guard=guard)


def photo_for_format(photo: Photo, ext: str) -> tuple[Photo, list[str]]:
    """Adapt a photo to what a format can store -> (photo, notes saying what was dropped). PNG keeps everything;
    JPEG gets 8 bits and no alpha (composited over white, as viewers show a transparent JPEG-bound image)."""
    notes: list[str] = []
    if ext.lower() not in (".jpg", ".jpeg"):
        return photo, notes
    color, alpha = photo.color, photo.alpha
    if alpha is not None:
        a = pixels_to_float(alpha)[..., None] / np.float32(255.0)  # (H, W, 1) coverage
        color = float_to_pixels(pixels_to_float(color) * a + np.float32(255.0) * (1 - a), color.dtype)
        notes.append("alpha channel composited over white: JPEG has no alpha (use --ext png to keep it)")
    if photo.bit_depth == 16:
        color = _to_uint8(color)
        notes.append("16-bit reduced to 8-bit: JPEG is 8-bit (use --ext png to keep 16 bits)")
    return dataclasses.replace(photo, color=color, alpha=None), notes
