"""Alignment math, the align -> paste-back round trip, the blend mask, colour matching and anti-aliasing."""

import numpy as np
import pytest

from prefrestore.faces.align import (
    FFHQ_TEMPLATE_512,
    affine_scale,
    align,
    compose_affine,
    ffhq_template,
    invert_affine,
    similarity_transform,
    warp_affine,
)
from prefrestore.faces.paste import BlendConfig, build_upsampler, face_mask, match_color, paste_back
from prefrestore.faces.types import FaceDetection, RestoredFace
from prefrestore.io.photo_io import pixels_to_float

# facenet-pytorch's landmarks on skimage's astronaut (same weights as ours); fixed here so these tests do not
# depend on the detector.
ASTRONAUT = FaceDetection(
    box=(181.1, 62.2, 267.7, 172.1),
    score=1.0,
    landmarks=((205.0, 101.7), (246.8, 103.7), (224.7, 129.0), (201.7, 139.2), (245.3, 141.9)),
)


@pytest.fixture(scope="module")
def astronaut():
    return pytest.importorskip("skimage.data").astronaut()


def psnr(a, b) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_template_scales_about_pixel_centres():
    assert np.allclose(ffhq_template(512), FFHQ_TEMPLATE_512)
    # A 512 crop resized to 128 puts the 512 pixel centre c at (c + 0.5) / 4 - 0.5.
    assert np.allclose(ffhq_template(128), (FFHQ_TEMPLATE_512 + 0.5) / 4 - 0.5)


def test_similarity_transform_recovers_a_known_one_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 2.5, np.array([10.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(src, src @ rot.T + shift)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], shift)
    assert np.allclose(compose_affine(invert_affine(m), m), np.eye(2, 3))
    assert affine_scale(m) == pytest.approx(scale)
    mirrored = src * [-1, 1]  # the best similarity to a mirror image is not a reflection
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


@pytest.mark.parametrize("size", [128, 512])
def test_align_puts_landmarks_on_the_template(astronaut, size):
    face = align(astronaut, ASTRONAUT, size)
    assert face.crop.shape == (size, size, 3) and face.crop.dtype == np.uint8
    warped = ASTRONAUT.landmarks_array() @ face.affine[:, :2].T + face.affine[:, 2]
    assert np.abs(warped - ffhq_template(size)).max() < 0.05 * size
    assert face.fit_error < 0.03
    assert np.allclose(compose_affine(face.inverse_affine, face.affine), np.eye(2, 3))


@pytest.mark.parametrize("upscale, min_psnr", [(1, 38.0), (2, 45.0)])
def test_align_then_paste_back_with_identity_restorer_reproduces_the_input(astronaut, upscale, min_psnr):
    """The round trip (warp in, identity "restoration", warp back, blend) loses only interpolation detail:
    39.6 dB in the face box at 1x (the crop is 3x the face, so the way back is a 3x reduction), 48.7 dB at 2x."""
    face = align(astronaut, ASTRONAUT, 512)
    size = (512 * upscale, 512 * upscale)
    background = build_upsampler("lanczos")(pixels_to_float(astronaut), size)
    out = paste_back(background, [RestoredFace(face, face.crop)], BlendConfig(), source_size=(512, 512))
    x1, y1, x2, y2 = (int(v * upscale) for v in ASTRONAUT.box)
    assert psnr(out[y1:y2, x1:x2], background[y1:y2, x1:x2]) > min_psnr
    # Outside the crop's footprint the photo is untouched, bit for bit.
    corners = np.array([[0, 0], [512, 0], [0, 512], [512, 512]], float) @ face.inverse_affine[:, :2].T
    corners = (corners + face.inverse_affine[:, 2]) * upscale
    (cx1, cy1), (cx2, cy2) = np.floor(corners.min(0)).astype(int) - 2, np.ceil(corners.max(0)).astype(int) + 2
    assert cy1 > 0 and cx1 > 0 and cy2 < size[1] and cx2 < size[0]
    inside = np.zeros(out.shape[:2], bool)
    inside[cy1:cy2, cx1:cx2] = True
    assert np.array_equal(out[~inside], background[~inside])


def test_face_mask_is_smooth_and_zero_at_the_crop_border():
    m = face_mask(256, BlendConfig())
    assert m.dtype == np.float32 and m.shape == (256, 256)
    assert m[0].max() < 1e-3 and m[:, -1].max() < 1e-3 and m[128, 128] == 1.0
    assert np.allclose(m, m.T) and np.allclose(m, m[::-1])
    row = m[128]
    assert np.all(np.diff(row[:128]) >= 0)  # monotone ramp
    assert np.abs(np.diff(row)).max() < 1.6 / (0.12 * 256)  # no step: smoothstep's steepest slope, 1.5 / ramp


def test_lowfreq_colour_match_removes_a_restorer_colour_cast():
    rng = np.random.default_rng(1)
    ref = np.clip(rng.normal(120, 30, (128, 128, 3)), 0, 255).astype(np.uint8)
    cast = np.clip(ref.astype(int) + [40, -10, 0], 0, 255).astype(np.uint8)  # "red skin" (GFPGAN#188)
    fixed = match_color(cast, ref, BlendConfig(color_match="lowfreq"))
    assert np.abs(fixed.mean((0, 1)) - ref.mean((0, 1))).max() < 1.0
    fixed = match_color(cast, ref, BlendConfig(color_match="meanstd"))
    assert np.abs(fixed.mean((0, 1)) - ref.mean((0, 1))).max() < 2.0
    assert np.array_equal(match_color(cast, ref, BlendConfig(color_match="none")), cast.astype(np.float32))
    assert np.allclose(match_color(ref, ref, BlendConfig()), ref, atol=1e-3)  # a faithful restoration is untouched


def test_lowfreq_colour_match_does_not_bring_back_the_inputs_degradation():
    """The input = the restoration + a ripple 16 px long (blur, blocks, blotches at that scale, S = 128) + a cast:
    the default fix takes the cast and leaves the ripple out (the Gaussian passes exp(-2 pi^2 sigma^2 f^2) of it:
    at sigma 0.15 S ~ 1e-12, at the old 0.03 S 0.32)."""
    size = 128
    rng = np.random.default_rng(2)
    restored = np.clip(rng.normal(120, 20, (size, size, 3)), 30, 220).astype(np.uint8)
    x = np.arange(size)
    ripple = 20 * np.sin(2 * np.pi * x / 16)[None, :, None] * np.ones((size, 1, 3))
    inp = np.clip(restored + ripple + [12, 0, -6], 0, 255).astype(np.uint8)

    def ripple_left(blend):  # the ripple's amplitude in what the fix changed, along the middle row (of 20)
        change = match_color(restored, inp, blend) - restored.astype(np.float32)
        row = change[size // 2, :, 0]
        return np.abs(np.fft.rfft(row - row.mean())[size // 16]) * 2 / size, change

    left, change = ripple_left(BlendConfig())
    assert np.abs(change.mean((0, 1)) - [12, 0, -6]).max() < 1.0  # the cast comes over
    assert left < 1.0, left
    assert ripple_left(BlendConfig(color_sigma=0.03))[0] > 4  # the old width brought a third of it back


def test_no_seam_when_the_restorer_changes_colour_and_detail(astronaut):
    """A restorer that sharpens and tints: along the mask ramp the output stays as smooth as the photo (the no-loss
    rule off: it would keep most of this face as the photo; tests/test_pipeline.py tests the rule)."""
    import cv2

    face = align(astronaut, ASTRONAUT, 512)
    blur = cv2.GaussianBlur(face.crop.astype(np.float32), (0, 0), 2.0)
    changed = np.clip(face.crop + 1.5 * (face.crop - blur) + [25, 0, -15], 0, 255).astype(np.uint8)
    background = pixels_to_float(astronaut)
    out = paste_back(background, [RestoredFace(face, changed)], BlendConfig(keep_detail=False), source_size=(512, 512))
    # Tone is the photo's: the blurred output matches the blurred photo closely around the face.
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT.box)
    low = lambda x: cv2.GaussianBlur(x, (0, 0), 6.0)  # noqa: E731
    assert np.abs(low(out) - low(background))[y1:y2, x1:x2].mean() < 3.0
    # Without colour matching the tint shows (the check above is not vacuous).
    raw = paste_back(
        background,
        [RestoredFace(face, changed)],
        BlendConfig(color_match="none", keep_detail=False),
        source_size=(512, 512),
    )
    assert np.abs(low(raw) - low(background))[y1:y2, x1:x2].mean() > 8.0


def test_shrinking_warp_is_anti_aliased():
    checker = ((np.indices((500, 500)).sum(0) % 2) * 255).astype(np.uint8)  # 1-pixel checkerboard
    m = np.array([[0.2, 0.0, 0.0], [0.0, 0.2, 0.0]])  # 5x reduction
    small = warp_affine(checker, m, (100, 100))
    assert abs(small[10:-10, 10:-10].mean() - 127.5) < 3 and small[10:-10, 10:-10].std() < 3  # flat grey, no moire


def test_faces_at_the_photo_border_paste_without_error(astronaut):
    cut = np.ascontiguousarray(astronaut[70:, 200:])
    det = FaceDetection(
        box=(-19.0, -8.0, 68.0, 102.0),
        score=1.0,
        landmarks=tuple((x - 200, y - 70) for x, y in ASTRONAUT.landmarks),
    )
    face = align(cut, det, 256)
    bg = pixels_to_float(cut)
    out = paste_back(bg, [RestoredFace(face, face.crop)], BlendConfig(), source_size=(cut.shape[1], cut.shape[0]))
    assert out.shape == bg.shape and psnr(out[:60, :60], bg[:60, :60]) > 33
