"""Hostile-input battery for `prefrestore restore` (issue 18).

A generator makes ~200 files in the test's tmp folder (broken files, bombs, odd but valid images, odd names, special
files and spellings of one file, inputs that outputs would land on), and all of them go through ONE
`prefrestore restore` run with the identity stand-in restorer (conftest.fake_api). Checked: the exit status, no
traceback, exactly one summary line naming each bad file, the good files restored correctly (at -s 1 with the
identity restorer the output equals the decoded input where no face was found), no input changed (hashes before and
after), no torn or temporary output, and a second run redoes only the failures. Options and model folders are
separate invocations: each bad value is one line before any model loads or any file is read.

Nothing of the battery is committed but this generator.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import run_restore_cli
from prefrestore import cli
from prefrestore.io.io_safety import shown
from prefrestore.io.photo_io import read_photo


@dataclass
class Case:
    category: str
    token: str  # unique, in the file name: lines and reports are matched by it
    expect: str  # "fail" | "ok" | "either" | "once" (several spellings of one file: restored exactly once)
    why: str = ""  # a word the failure line must contain
    check: str = ""  # extra check of an "ok" output: "frames", "no_icc", "gray_alpha16", "no_dpi", "face"
    path: str = ""  # the input as the command sees it


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(w: int, h: int, bits: int = 8, color: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, bits, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _zlib_bomb(side: int) -> bytes:
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)
    data = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256]).astype(np.uint8)


def _noise(w: int = 64, h: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _patch_tiff_size(data: bytes, w: int, h: int) -> bytes:
    """A little-endian TIFF with its ImageWidth/ImageLength tags set to w, h (values stored inline)."""
    b = bytearray(data)
    (ifd,) = struct.unpack("<I", b[4:8])
    (count,) = struct.unpack("<H", b[ifd : ifd + 2])
    for k in range(count):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", b[e : e + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            b[e + 8 : e + 12] = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
    return bytes(b)


def generate(root: Path, out: Path) -> tuple[list[Case], list[str]]:
    """Write the battery under ``root`` (inputs) and ``out`` (inputs placed where outputs go) -> (cases, the
    command's INPUT arguments)."""
    d = root / "battery"
    d.mkdir(parents=True)
    cases: list[Case] = []
    extra_args: list[str] = []

    def add(category, token, data, expect, why="", check="", name=None, folder=d):
        path = folder / (name or token)
        if isinstance(data, bytes):
            path.write_bytes(data)
        cases.append(Case(category, token, expect, why, check, str(path)))
        return path

    # ---- broken files: truncations of every format at many points, garbage, magic numbers alone, empty files
    img = Image.fromarray(_noise(96, 64))
    encoded = {
        "png": _encode(img, "PNG"),
        "jpg": _encode(img, "JPEG", quality=90),
        "bmp": _encode(img, "BMP"),
        "tif": _encode(img, "TIFF"),
        "gif": _encode(img.convert("P"), "GIF"),
        "webp": _encode(img, "WEBP", quality=80),
    }
    for ext, data in encoded.items():
        for k, frac in enumerate((0.002, 0.01, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99)):
            cut = max(1, int(len(data) * frac))
            # PNG: no IEND chunk -> always refused; the others: refused, or decoded when the cut spares the pixels
            sure = ext == "png" or (ext in ("jpg", "tif", "bmp") and frac <= 0.5)
            add(
                "broken",
                f"b_trunc_{ext}_{k}.{ext}",
                data[:cut],
                "fail" if sure else "either",
                "truncated" if ext == "png" else "",
            )
    rng = np.random.default_rng(1)
    for k, ext in enumerate(("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "PNG", "JPG", "png", "jpg")):
        add("broken", f"b_random_{k}.{ext}", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(), "fail")
    for k, magic in enumerate(
        (
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff",
            b"II*\x00",
            b"MM\x00*",
            b"GIF89a",
            b"BM",
            b"RIFF\x00\x00\x00\x00WEBP",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
        )
    ):
        add("broken", f"b_magic_{k}.png", magic, "fail")
    for ext in ("png", "jpg", "jpeg", "tif", "bmp", "webp", "gif", "tiff"):
        add("broken", f"b_empty.{ext}", b"", "fail", "empty")
    add("broken", "b_text.jpg", b"shopping list: milk, eggs\n" * 20, "fail", "not an image")
    add("broken", "b_html.png", b"<html><body>not a picture</body></html>\n", "fail", "not an image")
    add("broken", "b_pdf.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "fail")
    add("broken", "b_zip.png", b"PK\x03\x04" + bytes(200), "fail")
    add("broken", "b_float.tif", _encode(Image.fromarray(np.ones((20, 20), np.float32), "F"), "TIFF"), "fail", "float")
    add(
        "broken",
        "b_int32.tif",
        _encode(Image.fromarray(np.full((20, 20), 1 << 20, np.int32), "I"), "TIFF"),
        "fail",
        "16 bits",
    )
    tall = _encode(Image.fromarray(_gradient(1, 100000)), "PNG")  # m14: a 1x100000 PNG, truncated
    add("broken", "b_tall_truncated.png", tall[: len(tall) // 2], "fail", "truncated")
    good_png = bytearray(encoded["png"])
    for k in range(10):  # flipped bytes inside the pixel data: refused, or decoded to other pixels
        flipped = bytearray(encoded["jpg" if k % 2 else "png"])
        pos = len(flipped) // 3 + 37 * k
        flipped[pos] ^= 0xFF
        flipped[pos + 1] ^= 0x55
        add("broken", f"b_flip_{k}.{'jpg' if k % 2 else 'png'}", bytes(flipped), "either")
    del good_png

    # ---- bombs: headers claiming too many pixels in every format, a real zlib bomb, chunk bombs
    for k, (w, h) in enumerate(
        ((50000, 50000), (20000, 20000), (100000, 2000), (1, 200_000_000), (2**31 - 1, 1), (65535, 65535))
    ):
        add("bomb", f"x_png_claim_{k}.png", _png_claiming(w, h), "fail", "pixel")
    add("bomb", "x_png_zero_width.png", _png_claiming(0, 10), "fail")
    add("bomb", "x_zlib_13000.png", _zlib_bomb(13000), "fail", "pixel limit")  # 13000x13000 from ~0.5 MB
    jpg = bytearray(encoded["jpg"])
    sof = jpg.find(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", 65500, 65500)
    add("bomb", "x_jpeg_claim.jpg", bytes(jpg), "fail", "pixel")
    add("bomb", "x_tiff_claim.tif", _patch_tiff_size(encoded["tif"], 60000, 60000), "fail", "pixel")
    gif = bytearray(encoded["gif"])
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    add("bomb", "x_gif_claim.gif", bytes(gif), "fail")
    bmp = bytearray(encoded["bmp"])
    bmp[18:26] = struct.pack("<ii", 60000, 60000)
    add("bomb", "x_bmp_claim.bmp", bytes(bmp), "fail")
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    add("bomb", "x_webp_claim.webp", b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x, "fail")
    text_bomb = _chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"A" * 200_000_000, 9))
    base = encoded["png"]
    add("bomb", "x_ztxt_bomb.png", base[:33] + text_bomb + base[33:], "either")  # Pillow caps text chunks
    icc_bomb = _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 200_000_000, 9))
    add("bomb", "x_iccp_bomb.png", base[:33] + icc_bomb + base[33:], "either")

    # ---- odd but valid images: each must come back at -s 1 equal to what read_photo decodes (no face found)
    g = _gradient()
    for o in range(1, 9):
        ex = Image.Exif()
        ex[0x0112] = o
        add("valid", f"v_orient_{o}.jpg", _encode(Image.fromarray(g), "JPEG", quality=95, exif=ex.tobytes()), "ok")
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    gray = g[..., 0]
    add("valid", "v_rgba.png", _encode(Image.fromarray(np.dstack([g, alpha]), "RGBA"), "PNG"), "ok")
    add("valid", "v_la.png", _encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"), "ok")
    add("valid", "v_gray.png", _encode(Image.fromarray(gray, "L"), "PNG"), "ok")
    add("valid", "v_1bit.png", _encode(Image.fromarray(gray > 128), "PNG"), "ok")
    add("valid", "v_palette.png", _encode(Image.fromarray(g).convert("P"), "PNG"), "ok")
    pal = Image.fromarray(g).convert("P")
    pal.info["transparency"] = 0
    add("valid", "v_palette_transparent.png", _encode(pal, "PNG", transparency=0), "ok")
    g16 = g.astype(np.uint16) * 257
    add("valid", "v_16bit_rgb.png", cv2.imencode(".png", g16[..., ::-1])[1].tobytes(), "ok")
    add("valid", "v_16bit_gray.png", cv2.imencode(".png", g16[..., 0])[1].tobytes(), "ok")
    la16 = np.dstack([g16[..., 0], g16[..., 1]])  # gray + alpha, 16 bits (m7)
    rows = np.concatenate([np.zeros((48, 1), np.uint8), la16.astype(">u2").view(np.uint8).reshape(48, -1)], 1)
    add(
        "valid",
        "v_16bit_gray_alpha.png",
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 48, 16, 4, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(rows.tobytes()))
        + _chunk(b"IEND", b""),
        "ok",
        check="gray_alpha16",
    )
    add("valid", "v_16bit_rgba.png", cv2.imencode(".png", np.dstack([g16[..., ::-1], g16[..., 0]]))[1].tobytes(), "ok")
    add("valid", "v_icc.png", _encode(Image.fromarray(g), "PNG", icc_profile=b"\0\0\2\0opaque-icc" * 20), "ok")
    add("valid", "v_gray.jpg", _encode(Image.fromarray(gray, "L"), "JPEG", quality=95), "ok")
    add("valid", "v_cmyk.jpg", _encode(Image.fromarray(g).convert("CMYK"), "JPEG", quality=95), "ok")
    add("valid", "v_progressive.jpg", _encode(Image.fromarray(g), "JPEG", quality=95, progressive=True), "ok")
    add("valid", "v_plain.bmp", _encode(Image.fromarray(g), "BMP"), "ok")
    add("valid", "v_lossless.webp", _encode(Image.fromarray(g), "WEBP", lossless=True), "ok")
    add("valid", "v_lzw.tif", _encode(Image.fromarray(g), "TIFF", compression="tiff_lzw", dpi=(300, 300)), "ok")
    add("valid", "v_16bit_rgb.tif", cv2.imencode(".tiff", g16[..., ::-1])[1].tobytes(), "ok")
    add("valid", "v_int32_small.tif", _encode(Image.fromarray(g16[..., 0].astype(np.int32), "I"), "TIFF"), "ok")
    add(
        "valid",
        "v_lab.tif",
        _encode(Image.fromarray(g).convert("LAB"), "TIFF", icc_profile=b"lab-profile" * 10),
        "ok",
        check="no_icc",
    )
    add("valid", "v_no_resolution.tif", _encode(Image.fromarray(g), "TIFF"), "ok", check="no_dpi")
    frames = [Image.fromarray(np.roll(g, 8 * k, axis=1)) for k in range(3)]
    add(
        "valid",
        "v_pages.tif",
        _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "ok",
        check="frames",
    )
    add(
        "valid",
        "v_animated.gif",
        _encode(
            frames[0].convert("P"),
            "GIF",
            save_all=True,
            append_images=[f.convert("P") for f in frames[1:]],
            duration=100,
        ),
        "ok",
        check="frames",
    )
    add(
        "valid",
        "v_animated.png",
        _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "ok",
        check="frames",
    )
    add(
        "valid",
        "v_animated.webp",
        _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
        "ok",
        check="frames",
    )
    add("valid", "v_png_named.jpg", _encode(Image.fromarray(g), "PNG"), "ok")
    add("valid", "v_jpeg_named.png", _encode(Image.fromarray(g), "JPEG", quality=95), "ok")
    add("valid", "v_upper.PNG", _encode(Image.fromarray(g), "PNG"), "ok")
    add("valid", "v_1x1.png", _encode(Image.fromarray(g[:1, :1]), "PNG"), "ok")
    add("valid", "v_1x2000.png", _encode(Image.fromarray(_gradient(1, 2000)), "PNG"), "ok")
    add("valid", "v_2000x1.png", _encode(Image.fromarray(_gradient(2000, 1)), "PNG"), "ok")
    big_exif = Image.Exif()
    big_exif[0x010E] = "x" * 60000  # ImageDescription
    add("valid", "v_big_exif.jpg", _encode(Image.fromarray(g), "JPEG", quality=95, exif=big_exif.tobytes()), "ok")
    bad_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05" + b"\xff" * 40  # an IFD pointing nowhere (m1)
    add("valid", "v_corrupt_exif.jpg", _encode(Image.fromarray(g), "JPEG", quality=95, exif=bad_exif), "either")
    astronaut = pytest.importorskip("skimage.data").astronaut()
    face = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    add("valid", "v_face.png", _encode(Image.fromarray(face), "PNG"), "ok", check="face")

    # ---- odd names (each a valid small PNG unless said otherwise)
    small = _encode(Image.fromarray(g[:24, :32]), "PNG")
    for token, name in (
        ("n_space", "n_space name.png"),
        ("n_unicode", "n_unicode_日本語_é.png"),
        ("n_emoji", "n_emoji_\U0001f600.png"),
        ("n_newline", "n_newline\nsecond line.png"),
        ("n_tab", "n_tab\there.png"),
        ("n_cr", "n_cr\rback.png"),
        ("n_esc", "n_esc\x1b[31mred.png"),
        ("n_dash", "-n_dash.png"),
        ("n_quotes", "n_quotes'\".png"),
        ("n_backslash", "n_back\\slash.png"),
        ("n_percent", "n_percent%s%n.png"),
        ("n_glob", "n_glob*?[x].png"),
        ("n_dots", "n_dots..x.png"),
        ("n_hidden", ".n_hidden.png"),
        ("n_trailing", "n_trailing .png"),
        ("n_double_ext", "n_double_ext.jpg.png"),
        ("n_dup_a", "n_dup.png"),
        ("n_dup_b", "n_dup.jpg"),
        ("n_case_a", "n_case.png"),
        ("n_case_b", "n_case.PNG"),
    ):
        data = _encode(Image.fromarray(g[:24, :32]), "JPEG", quality=95) if name.endswith(".jpg") else small
        add("names", token, data, "ok", name=name)
    add("names", "n_long250", small, "ok", name="n_long250" + "L" * (250 - 9 - 4) + ".png")  # P5
    add("names", "n_long255", small, "ok", name="n_long255" + "M" * (255 - 9 - 4) + ".png")
    add("names", "n_long_empty", b"", "fail", "empty", name="n_long_empty" + "E" * (251 - 12 - 4) + ".png")  # P4
    bytes_dir = os.fsencode(d)
    with open(os.path.join(bytes_dir, b"n_latin1_\xe9\xff.png"), "wb") as f:  # not UTF-8
        f.write(small)
    cases.append(Case("names", "n_latin1_", "ok", path=os.fsdecode(os.path.join(bytes_dir, b"n_latin1_\xe9\xff.png"))))

    # ---- special files and spellings of one file
    os.mkfifo(d / "p_fifo.jpg")  # P6: must not block
    cases.append(Case("paths", "p_fifo.jpg", "fail", "FIFO", path=str(d / "p_fifo.jpg")))
    (d / "p_zero.jpg").symlink_to("/dev/zero")  # P7: must not read
    cases.append(Case("paths", "p_zero.jpg", "fail", "device", path=str(d / "p_zero.jpg")))
    (d / "p_dangling.png").symlink_to(d / "does-not-exist.png")
    cases.append(Case("paths", "p_dangling.png", "fail", "broken symlink", path=str(d / "p_dangling.png")))
    (d / "p_dir.jpg").mkdir()
    cases.append(Case("paths", "p_dir.jpg", "fail", "folder", path=str(d / "p_dir.jpg")))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "p_sock.png"))
    sock.close()
    cases.append(Case("paths", "p_sock.png", "fail", "socket", path=str(d / "p_sock.png")))
    with open(d / "p_sparse.jpg", "wb") as f:  # P9: 4 GiB, refused from its size
        f.truncate(4 << 30)
    cases.append(Case("paths", "p_sparse.jpg", "fail", "MiB", path=str(d / "p_sparse.jpg")))
    explicit = root / "explicit"
    explicit.mkdir()
    os.mkfifo(explicit / "p_fifo_named.png")
    extra_args.append(str(explicit / "p_fifo_named.png"))
    cases.append(Case("paths", "p_fifo_named.png", "fail", "FIFO", path=str(explicit / "p_fifo_named.png")))
    (explicit / "p_urandom_named.jpg").symlink_to("/dev/urandom")
    extra_args.append(str(explicit / "p_urandom_named.jpg"))
    cases.append(Case("paths", "p_urandom_named.jpg", "fail", "device", path=str(explicit / "p_urandom_named.jpg")))
    extra_args.append(str(explicit / "p_missing.png"))
    cases.append(Case("paths", "p_missing.png", "fail", "no such file", path=str(explicit / "p_missing.png")))
    extra_args.append(str(explicit / "p_nomatch_*.png"))
    cases.append(Case("paths", "p_nomatch_", "fail", "no such file", path=str(explicit / "p_nomatch_*.png")))
    # one file, many spellings (m3): restored once
    add("paths", "p_same.png", small, "once")
    extra_args += [str(d / "p_same.png"), os.path.relpath(d / "p_same.png"), str(d / ".." / "battery" / "p_same.png")]
    (explicit / "p_same_link.png").symlink_to(d / "p_same.png")
    extra_args.append(str(explicit / "p_same_link.png"))
    os.link(d / "p_same.png", explicit / "p_same_hard.png")
    extra_args.append(str(explicit / "p_same_hard.png"))
    (d / "sub").mkdir()
    (d / "sub" / "p_nested.png").write_bytes(small)  # folders are not searched recursively: not an input
    (d / "p_notes.txt").write_text("not an image extension: not an input\n")

    # ---- inputs sitting where outputs go (P1): refused with one line, never overwritten
    (out / "cropped_faces").mkdir(parents=True)
    (out / "restored_imgs").mkdir(parents=True)
    (out / "cropped_faces" / "c_col.png").write_bytes(_encode(Image.fromarray(face), "PNG"))
    cases.append(Case("collide", "c_col.png", "fail", "overwrite", path=str(out / "cropped_faces" / "c_col.png")))
    (out / "cropped_faces" / "c_col_00.png").write_bytes(_encode(Image.fromarray(face[:128, :128]), "PNG"))
    cases.append(Case("collide", "c_col_00.png", "ok", path=str(out / "cropped_faces" / "c_col_00.png")))
    (out / "restored_imgs" / "c_self.png").write_bytes(small)
    cases.append(Case("collide", "c_self.png", "fail", "overwrite", path=str(out / "restored_imgs" / "c_self.png")))
    (root / "c_symsrc.png").write_bytes(small)
    (out / "restored_imgs" / "c_symself.png").symlink_to(root / "c_symsrc.png")
    cases.append(
        Case("collide", "c_symself.png", "fail", "overwrite", path=str(out / "restored_imgs" / "c_symself.png"))
    )
    extra_args += [
        str(out / "cropped_faces"),
        str(out / "restored_imgs" / "c_self.png"),
        str(out / "restored_imgs" / "c_symself.png"),
    ]
    return cases, [str(d), *extra_args]


def _digest(p: Path) -> str:
    """sha256 of a regular file (a huge sparse one by size and mtime), the target of a symlink, or the file type."""
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(p)
    if not stat.S_ISREG(st.st_mode):
        return f"mode:{stat.S_IFMT(st.st_mode)}"
    if st.st_size > 100 << 20:
        return f"size:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _hashes(*paths: Path) -> dict[str, str]:
    """Digest of every entry under the folders (and of the files) given."""
    out = {}
    for path in paths:
        for p in sorted(path.rglob("*")) if path.is_dir() and not path.is_symlink() else [path]:
            out[str(p)] = _digest(p)
    return out


def _reports(out: Path) -> dict[str, dict]:
    return {(r := json.loads(p.read_text()))["input"]: r for p in (out / "reports").glob("*.json")}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    """Generate the battery and run it once: (cases, stderr, exit status, out folder, hashes before, root, argv)."""
    root = tmp_path_factory.mktemp("hostile")
    out = root / "out"
    cwd = os.getcwd()
    os.chdir(root)  # the relative spelling of p_same.png is relative to here
    try:
        cases, inputs = generate(root, out)
    finally:
        os.chdir(cwd)
    before = _hashes(root / "battery", root / "explicit", out, root / "c_symsrc.png")
    argv = ["restore", *inputs, "-o", str(out), "-s", "1", "--ext", "png", "--identity", "off"]
    code, err = run_restore_cli(argv, root)
    return cases, err, code, out, before, root, argv


def test_battery_has_200_cases_in_every_category(battery):
    cases = battery[0]
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.category] = counts.get(c.category, 0) + 1
    print("battery cases per category:", counts, "total", len(cases))
    assert len(cases) >= 200 and set(counts) == {"broken", "bomb", "valid", "names", "paths", "collide"}
    assert len({c.token for c in cases}) == len(cases)


def test_battery_exit_status_and_no_traceback(battery):
    cases, err, code, *_ = battery
    assert code == 1  # some inputs failed, none aborted the run
    assert "Traceback" not in err and "unexpected" not in err
    assert "restored" in err.splitlines()[-1] or any(ln.startswith("restored ") for ln in err.splitlines())


def _lines_naming(lines: list[str], case: Case) -> list[str]:
    return [ln for ln in lines if ln.startswith(f"  failed: {shown(case.path)}: ")]


def test_battery_one_line_per_bad_file_naming_it(battery):
    cases, err, code, out, *_ = battery
    failed_lines = [ln for ln in err.splitlines() if ln.startswith("  failed: ")]
    for c in cases:
        mine = _lines_naming(failed_lines, c)
        if c.expect == "fail":
            assert len(mine) == 1, (c, mine)
            assert c.why.lower() in mine[0].lower(), (c, mine[0])
        elif c.expect in ("ok", "once"):
            assert not mine, (c, mine)
        else:
            assert len(mine) <= 1, (c, mine)
    # every summary line is one of ours: nothing failed that the battery did not expect
    maybe = [c for c in cases if c.expect in ("fail", "either")]
    for ln in failed_lines:
        assert any(ln.startswith(f"  failed: {shown(c.path)}: ") for c in maybe), ln
    for ln in err.splitlines():  # each line is one printable line: names are escaped, never split
        assert ln.isprintable(), repr(ln)
    live = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(live) == len(failed_lines)  # as they happen, and again in the summary


def test_battery_good_files_restored_correctly(battery):
    cases, err, code, out, before, root, _ = battery
    reports = _reports(out)
    same = [
        r
        for inp, r in reports.items()
        if os.path.exists(inp) and os.path.samefile(inp, root / "battery" / "p_same.png")
    ]
    assert len(same) == 1 and same[0]["status"] in ("restored", "no_face"), [r["input"] for r in same]
    for c in cases:
        r = reports.get(c.path)
        if c.expect == "either" and (r is None or r["status"] == "failed"):
            continue
        if c.expect not in ("ok", "once", "either"):
            continue
        assert r is not None and r["status"] in ("restored", "no_face"), (c.token, r and r.get("error"))
        src = read_photo(r["input"])
        res = read_photo(r["output"])
        assert res.size == src.size and res.bit_depth == src.bit_depth, (c.token, res.size, src.size)
        assert res.grayscale == src.grayscale and (res.alpha is None) == (src.alpha is None), c.token
        if r["status"] == "no_face":  # -s 1, no face, PNG: the photo comes back exactly
            assert np.array_equal(res.color, src.color), c.token
            if src.alpha is not None:
                assert np.array_equal(res.alpha, src.alpha), c.token
        else:  # identity restorer: paste-back reproduces the photo closely
            assert _psnr(res.rgb8(), src.rgb8()) > 35, c.token
        notes = " ".join(r.get("notes", []))
        if c.check == "face":
            assert r["status"] == "restored" and len(r["faces"]) == 1, r
        elif c.check == "frames":
            assert "frames/pages: only the first was read" in notes, (c.token, notes)
        elif c.check == "no_icc":
            assert res.icc_profile is None and "ICC profile was not carried" in notes, c.token
        elif c.check == "no_dpi":
            assert res.dpi is None, (c.token, res.dpi)
        elif c.check == "gray_alpha16":
            with open(r["output"], "rb") as f:
                head = f.read(26)
            assert head[24] == 16 and head[25] == 4, "16-bit gray+alpha must stay gray+alpha (colour type 4)"


def test_battery_no_input_changed_and_no_torn_output(battery):
    cases, err, code, out, before, root, _ = battery
    for path, digest in before.items():
        assert _digest(Path(path)) == digest, path
    for p in out.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert not p.name.startswith(".prefrestore-"), f"temporary file left: {p}"
            assert p.stat().st_size > 0, f"empty output: {p}"
            if p.suffix == ".json":
                json.loads(p.read_text())
            elif str(p) not in before:
                read_photo(p)  # every image output decodes


def test_battery_rerun_redoes_only_the_failures(battery):
    cases, err, code, out, before, root, argv = battery

    outputs = _hashes(out / "restored_imgs", out / "restored_faces", out / "cropped_faces", out / "cmp")
    # the same inputs again (out/cropped_faces now also holds run 1's crops: name its two inputs instead)
    folder = str(out / "cropped_faces")
    argv2 = [a for a in argv if a != folder]
    argv2[1:1] = [f"{folder}/c_col.png", f"{folder}/c_col_00.png"]
    code2, err2 = run_restore_cli(argv2, root)
    assert code2 == 1 and "Traceback" not in err2
    n_failed = sum(1 for ln in err.splitlines() if ln.startswith("  failed: "))
    assert sum(1 for ln in err2.splitlines() if ln.startswith("  failed: ")) == n_failed  # failed stay failed
    summary = next(ln for ln in err2.splitlines() if ln.startswith("restored "))
    assert summary.startswith("restored 0 photos (0 faces), ") and "skipped (outputs exist" in summary, summary
    assert _hashes(out / "restored_imgs", out / "restored_faces", out / "cropped_faces", out / "cmp") == outputs


# ----------------------------------------------------------------------------------------------------------------
# Options: refused in one line before the model loads or any input is read (P12-P14)

BAD_OPTIONS = [
    ["--guidance-scale", "nan"],
    ["--guidance-scale", "inf"],
    ["--guidance-scale", "-1"],
    ["--guidance-scale", "1e30"],
    ["--start-sigma", "0"],
    ["--start-sigma", "-1"],
    ["--start-sigma", "5"],
    ["--start-sigma", "nan"],
    ["--seed", "99999999999999999999999"],
    ["--seed", "-1"],
    ["--steps", "0"],
    ["--steps", "-3"],
    ["--steps", "100000"],
    ["-s", "0"],
    ["-s", "-1"],
    ["-s", "nan"],
    ["-s", "inf"],
    ["-s", "17"],
    ["--det-threshold", "1.5"],
    ["--det-threshold", "nan"],
    ["--min-face-size", "-1"],
    ["--min-face-size", "nan"],
    ["--max-faces", "0"],
    ["--batch-size", "0"],
    ["--jpeg-quality", "0"],
    ["--jpeg-quality", "101"],
    ["--device", "cuda:7"],
    ["--device", "mps"],
    ["--device", "nonsense"],
    ["--device", "meta"],
    ["-o", ""],
    ["-o", "__FILE__"],
    ["--suffix", "a/b"],
]


@pytest.mark.parametrize("option", BAD_OPTIONS, ids=lambda o: "_".join(o) or "empty")
def test_bad_option_is_one_line_before_any_work(option, tmp_path, fake_api, capsys, monkeypatch):
    import torch

    if option == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    photo = tmp_path / "p.png"
    photo.write_bytes(_encode(Image.fromarray(_gradient()), "PNG"))
    opened = []
    import prefrestore.io.photo_io as photo_io_mod

    monkeypatch.setattr(photo_io_mod, "read_input", lambda *a, **k: opened.append(a) or b"")
    option = [str(photo) if v == "__FILE__" else v for v in option]
    args = [
        "restore",
        str(photo),
        *([] if option[0] == "-o" else ["-o", str(tmp_path / "out")]),
        *option,
        "--identity",
        "off",
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and option[0] in err[0], err
    assert not fake_api and not opened and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# Model folders (P10, P11): one line naming the folder, nothing allocated for a config that does not match


def _model_case(kind: str, folder: Path) -> None:
    cfg = folder / "config.json"
    if kind == "index_not_json":
        (folder / "model.safetensors.index.json").write_text("{not json")
    elif kind == "index_no_weight_map":
        (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    elif kind == "index_missing_shard":
        (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "gone.safetensors"}}')
    elif kind == "index_escaping_shard":
        (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../x.safetensors"}}')
    elif kind == "tokenizer_garbage":
        (folder / "tokenizer" / "tokenizer.json").write_text("garbage")
    elif kind == "tokenizer_custom_code":
        tc = folder / "tokenizer" / "tokenizer_config.json"
        raw = json.loads(tc.read_text())
        raw.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
        tc.write_text(json.dumps(raw))
        (folder / "tokenizer" / "tokenizer.json").unlink()
        (folder / "tokenizer" / "evil.py").write_text("raise SystemExit('custom code ran')\n")
    elif kind in ("vocab_4e8", "empty_model", "config_not_json", "config_huge", "resolution_odd"):
        raw = json.loads(cfg.read_text())
        if kind == "vocab_4e8":
            raw["model"]["integrator"]["vocab_size"] = 400_000_000
        elif kind == "empty_model":
            raw = {"format_version": "1", "model": {}}
        elif kind == "resolution_odd":
            raw["model"]["resolution"] = 129
        text = json.dumps(raw)
        if kind == "config_not_json":
            text = text[: len(text) // 2]
        elif kind == "config_huge":
            text = text[:-1] + ', "pad": "' + "x" * (2 << 20) + '"}'
        cfg.write_text(text)
    elif kind == "weights_garbage":
        (folder / "model.safetensors").write_bytes(b"\xff" * 1000)
    elif kind == "weights_truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    elif kind == "no_tokenizer":
        import shutil

        shutil.rmtree(folder / "tokenizer")


MODEL_CASES = [
    "index_not_json",
    "index_no_weight_map",
    "index_missing_shard",
    "index_escaping_shard",
    "tokenizer_garbage",
    "tokenizer_custom_code",
    "vocab_4e8",
    "empty_model",
    "config_not_json",
    "config_huge",
    "resolution_odd",
    "weights_garbage",
    "weights_truncated",
    "no_tokenizer",
]


@pytest.mark.parametrize("kind", MODEL_CASES)
def test_bad_model_folder_is_one_line(kind, tmp_path, capsys):
    import shutil

    from prefrestore.hub import bundled_model_dir

    src = bundled_model_dir()
    if src is None:
        pytest.skip("no bundled model")
    folder = tmp_path / "model"
    shutil.copytree(src, folder)
    _model_case(kind, folder)
    photo = tmp_path / "p.png"
    photo.write_bytes(_encode(Image.fromarray(_gradient()), "PNG"))
    code = cli.main(["restore", str(photo), "-o", str(tmp_path / "out"), "--model", str(folder), "--identity", "off"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith(("WARNING", "INFO"))]
    assert code == 2 and len(err) == 1 and str(folder) in err[0], err
    assert "Traceback" not in err[0] and "custom code ran" not in err[0]
    assert not (tmp_path / "out" / "restored_imgs").exists()
