"""Photo files keep what they carried: alpha, 16 bits, ICC, EXIF, DPI, grayscale; bad files fail in one line."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from prefrestore.errors import ImageError
from prefrestore.io import image, photo_io
from prefrestore.io.photo_io import Photo, photo_for_format, read_photo, write_photo

ICC = b"\x00\x00\x02\x0cfake-but-opaque ICC profile bytes" * 8  # carried as opaque bytes


def _exif(orientation: int = 1) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    ex[0x010F] = "prefrestore-test-camera"  # Make
    ex.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal, in the Exif sub-IFD
    return ex.tobytes()


def _exif_tags(photo_exif: bytes) -> tuple[int | None, str | None, str | None]:
    ex = Image.Exif()
    ex.load(photo_exif)
    return ex.get(0x0112), ex.get(0x010F), ex.get_ifd(0x8769).get(0x9003)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_8bit_rgb_png_round_trip_keeps_icc_exif_dpi(tmp_path):
    src = tmp_path / "a.png"
    arr = _rng().integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(src, icc_profile=ICC, exif=_exif(), dpi=(300, 300))
    ph = read_photo(src)
    assert ph.bit_depth == 8 and ph.alpha is None and not ph.grayscale
    assert np.array_equal(ph.color, arr)
    write_photo(tmp_path / "b.png", ph)
    back = read_photo(tmp_path / "b.png")
    assert np.array_equal(back.color, arr)
    assert back.icc_profile == ICC
    assert _exif_tags(back.exif) == (1, "prefrestore-test-camera", "2024:05:06 07:08:09")
    assert back.dpi == pytest.approx((300, 300), abs=0.1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pil_and_reset(tmp_path, orientation):
    src = tmp_path / "o.jpg"
    arr = _rng(orientation).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(arr).save(src, exif=_exif(orientation), quality=100)
    with Image.open(src) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    ph = read_photo(src)
    assert np.array_equal(ph.color, ref)
    assert _exif_tags(ph.exif)[0] == 1  # already applied: viewers must not rotate the output again
    assert _exif_tags(ph.exif)[1:] == ("prefrestore-test-camera", "2024:05:06 07:08:09")


def test_rgba_alpha_survives(tmp_path):
    arr = _rng().integers(0, 256, (16, 16, 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    ph = read_photo(tmp_path / "a.png")
    assert ph.alpha is not None and np.array_equal(ph.alpha, arr[..., 3])
    write_photo(tmp_path / "b.png", ph)
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), arr)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_round_trip_is_exact_with_metadata(tmp_path, channels):
    import cv2

    arr = _rng(channels).integers(0, 65536, (10, 14, channels), dtype=np.uint16)
    bgr = (
        arr[..., 0]
        if channels == 1
        else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    )
    cv2.imwrite(str(tmp_path / "a.png"), bgr)
    ph = read_photo(tmp_path / "a.png")
    assert ph.bit_depth == 16 and ph.grayscale == (channels == 1)
    ph = Photo(ph.color, ph.alpha, ph.grayscale, icc_profile=ICC, exif=_exif(), dpi=(72.0, 72.0))
    write_photo(tmp_path / "b.png", ph)
    back = read_photo(tmp_path / "b.png")
    assert back.bit_depth == 16 and back.grayscale == (channels == 1)
    got = back.color[..., :1] if channels == 1 else back.color
    assert np.array_equal(got, arr[..., :3] if channels != 1 else arr)
    if channels == 4:
        assert np.array_equal(back.alpha, arr[..., 3])
    assert back.icc_profile == ICC and _exif_tags(back.exif)[1] == "prefrestore-test-camera"
    assert back.dpi == pytest.approx((72, 72), abs=0.1)


def test_grayscale_stays_grayscale(tmp_path):
    arr = _rng().integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(arr, "L").save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.dstack([arr, arr[::-1]]), "LA").save(tmp_path / "ga.png")
    for name, mode in (("g.jpg", "L"), ("ga.png", "LA")):
        ph = read_photo(tmp_path / name)
        assert ph.grayscale and ph.color.shape == (9, 11, 3)
        out = tmp_path / ("out_" + name)
        write_photo(out, ph)
        with Image.open(out) as im:
            assert im.mode == mode


def test_jpeg_quality_is_applied(tmp_path):
    ph = Photo(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8))
    write_photo(tmp_path / "lo.jpg", ph, quality=30)
    write_photo(tmp_path / "hi.jpg", ph, quality=95)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size


def test_jpeg_output_needs_explicit_format_conversion(tmp_path):
    color = np.full((4, 4, 3), 1000, np.uint16)
    ph = Photo(color, alpha=np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="JPEG"):
        write_photo(tmp_path / "x.jpg", ph)
    flat, notes = photo_for_format(ph, ".jpg")
    assert flat.alpha is None and flat.bit_depth == 8 and len(notes) == 2
    assert np.all(flat.color == 255)  # fully transparent -> the white it was composited over
    assert photo_for_format(ph, ".png") == (ph, [])


def test_pixel_float_conversion_round_trips_16bit():
    arr = np.arange(0, 65536, dtype=np.uint16)
    assert np.array_equal(photo_io.float_to_pixels(photo_io.pixels_to_float(arr), np.uint16), arr)
    assert photo_io.pixels_to_float(np.array([65535], np.uint16))[0] == pytest.approx(255.0)


def test_load_rgb_reads_16bit_gray_without_clipping(tmp_path):
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(tmp_path / "g16.png")  # 32896 = 128 * 257
    assert np.all(image.load_rgb(tmp_path / "g16.png") == 128)


# ----------------------------------------------------------------------------------------------------------------
# Bad files: one line naming the file


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("empty.jpg", b"", "empty file"),
        ("truncated.jpg", None, "truncated"),
        ("text.jpg", b"this is not a picture\n", "not an image"),
        ("bomb.png", _png_claiming(50000, 50000), "50000x50000"),
    ],
)
def test_bad_files_raise_one_line_image_error(tmp_path, name, data, expected):
    path = tmp_path / name
    path.write_bytes(_truncated_jpeg() if data is None else data)
    with pytest.raises(ImageError) as info:
        read_photo(path)
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_huge_png_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(50000, 50000))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was opened for decoding")

    monkeypatch.setattr(photo_io.Image, "open", no_decoding)
    monkeypatch.setattr(photo_io.cv2, "imdecode", no_decoding)
    with pytest.raises(ImageError, match="pixel limit"):
        read_photo(path)
