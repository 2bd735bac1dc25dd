"""Whole-photo pipeline: batching invariance, faces of several photos in one batch, no-face photos, failures,
and 16-bit / alpha / grayscale / metadata carried through."""

import dataclasses

import numpy as np
import pytest

from prefrestore.io.image import resize
from prefrestore.io.photo_io import Photo
from prefrestore.restore.aligned_crops import restore_aligned
from prefrestore.restore.control import sample_candidates
from prefrestore.restore.pipeline import PipelineConfig, restore_image, restore_photos


class IdentityRestorer:
    """Returns its input: the pipeline around it must then reproduce the photo."""

    def __init__(self, resolution: int = 128):
        self.resolution = resolution
        self.calls: list[tuple[int, int]] = []

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        self.calls.append((len(faces), seed))
        return [f.copy() for f in faces]


class SeededRestorer(IdentityRestorer):
    """Stochastic like a diffusion restorer, following the contract: a face's output depends on it and the seed only."""

    def restore(self, faces, *, seed=0):
        self.calls.append((len(faces), seed))
        out = []
        for f in faces:
            rng = np.random.default_rng([seed, int(f.astype(np.int64).sum())])
            out.append(np.clip(f.astype(np.int16) + rng.integers(-25, 26, f.shape), 0, 255).astype(np.uint8))
        return out


class BrokenRestorer(IdentityRestorer):
    def restore(self, faces, *, seed=0):
        raise RuntimeError("CUDA out of memory (simulated)")


class WrongShapeRestorer(IdentityRestorer):
    def restore(self, faces, *, seed=0):
        return [f[:10] for f in faces]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs MTCNN; see conftest.one_thread."""


@pytest.fixture(scope="module")
def group_photo(astronaut, grace):
    """A 900x500 photo with four faces: the two real photos pasted at two sizes each."""
    canvas = np.full((500, 900, 3), (90, 110, 100), np.uint8)
    for img, (x, y), s in (
        (astronaut, (0, 0), 260),
        (grace, (250, 40), 220),
        (astronaut, (480, 200), 300),
        (grace, (760, 300), 140),
    ):
        h = round(img.shape[0] * s / img.shape[1])
        canvas[y : y + h, x : x + s] = resize(img, (s, h))[: 500 - y, : 900 - x]
    return canvas


def photos(*arrays):
    return [(i, Photo(a)) for i, a in enumerate(arrays)]


def test_batched_equals_one_by_one(detector, astronaut, grace, group_photo):
    items = photos(astronaut, grace, group_photo)
    runs = {}
    for bs in (1, 3, 8):
        cfg = PipelineConfig(batch_size=bs, upscale=1.5)
        runs[bs] = [r.photo.color for r in restore_photos(items, SeededRestorer(), detector, cfg)]
    for bs in (3, 8):
        for a, b in zip(runs[1], runs[bs], strict=True):
            assert np.array_equal(a, b)


def test_faces_of_several_photos_share_restorer_batches(detector, astronaut, grace, group_photo):
    restorer = IdentityRestorer()
    results = list(
        restore_photos(photos(astronaut, grace, group_photo), restorer, detector, PipelineConfig(batch_size=3, seed=7))
    )
    assert [len(r.faces) for r in results] == [1, 1, 4]
    assert restorer.calls == [(3, 7), (3, 7)]  # 6 faces of 3 photos in full batches, every call with the seed


def test_one_candidate_splits_into_batches():
    restorer = IdentityRestorer(8)
    crops = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    (out,) = sample_candidates(restorer, crops, n=1, batch_size=2, seed=3)
    assert [int(o[0, 0, 0]) for o in out] == [0, 1, 2, 3, 4] and restorer.calls == [(2, 3), (2, 3), (1, 3)]


def test_photo_without_a_face_is_upscaled_and_reported(detector):
    yy, xx = np.mgrid[0:120, 0:160]
    landscape = np.dstack([xx, yy, (xx + yy) // 2]).astype(np.uint8)
    (res,) = restore_photos(photos(landscape), IdentityRestorer(), detector, PipelineConfig(upscale=2))
    assert res.ok and res.faces == () and res.photo.size == (320, 240)
    assert "no face" in res.notes[0]


def test_failed_restoration_is_reported_and_nothing_is_returned_as_restored(detector, astronaut):
    for restorer, text in ((BrokenRestorer(), "out of memory"), (WrongShapeRestorer(), "expected uint8")):
        (res,) = restore_photos(photos(astronaut), restorer, detector)
        assert not res.ok and res.photo is None and text in res.error


def test_16bit_alpha_grayscale_and_metadata_carried(detector, astronaut):
    gray16 = (astronaut.mean(2) * 257).astype(np.uint16)
    color = np.repeat(gray16[..., None], 3, axis=2)
    alpha = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (512, 1))
    src = Photo(color, alpha, grayscale=True, icc_profile=b"icc", exif=b"Exif\x00\x00MM", dpi=(300.0, 300.0))
    (res,) = restore_photos([(0, src)], IdentityRestorer(512), detector, PipelineConfig(upscale=1))
    out = res.photo
    assert len(res.faces) == 1 and out.bit_depth == 16 and out.grayscale
    assert (out.icc_profile, out.exif, out.dpi) == (b"icc", b"Exif\x00\x00MM", (300.0, 300.0))
    assert np.array_equal(out.alpha, alpha)  # alpha is never touched by faces
    # Away from the face the 16-bit values are exact; in it, the 8-bit restorer's precision.
    assert np.array_equal(out.color[400:], color[400:])
    diff = np.abs(out.color[80:160, 190:260].astype(np.int64) - color[80:160, 190:260]) / 257
    assert diff.mean() < 2.0


def test_upscale_scales_alpha_and_dpi(detector, astronaut):
    src = Photo(astronaut, np.full((512, 512), 200, np.uint8), dpi=(72.0, 72.0))
    (res,) = restore_photos([(0, src)], IdentityRestorer(), detector, PipelineConfig(upscale=2))
    assert res.photo.alpha.shape == (1024, 1024) and np.all(res.photo.alpha == 200)
    assert res.photo.dpi == (144.0, 144.0)  # same print size


def test_aligned_crops_are_resized_to_the_model_and_batched(astronaut):
    crops = [(i, Photo(np.ascontiguousarray(astronaut[:256, :256]))) for i in range(3)]
    crops.append((3, Photo(np.ascontiguousarray(astronaut[:128, :128]))))
    restorer = IdentityRestorer(128)
    results = list(restore_aligned(crops, restorer, dataclasses.replace(PipelineConfig(), batch_size=2)))
    assert [r.restored.shape for r in results] == [(128, 128, 3)] * 4
    assert "resized to the model resolution" in results[0].notes[0] and results[3].notes == ()
    assert restorer.calls == [(2, 0), (2, 0)]
    assert results[0].input_size == (256, 256) and results[0].output_image().shape == (256, 256, 3)
    assert results[3].output_image() is results[3].restored  # already the model's size


@pytest.mark.slow
def test_tiny_model_batched_equals_one_by_one(detector, astronaut, grace):
    """With the real (tiny, random-weight) model: equal up to float summation order inside the model, which
    moves about 1 pixel value in 10^4 by one level."""
    api = pytest.importorskip("prefrestore.restore.api")
    restorer = api.load_restorer("tiny", steps=2)
    items = photos(astronaut, grace)
    one = [r.photo.color for r in restore_photos(items, restorer, detector, PipelineConfig(batch_size=1))]
    two = [r.photo.color for r in restore_photos(items, restorer, detector, PipelineConfig(batch_size=2))]
    for a, b in zip(one, two, strict=True):
        diff = np.abs(a.astype(np.int16) - b)
        assert diff.max() <= 2 and (diff > 0).mean() < 1e-3


def test_a_photo_too_large_to_write_fails_alone(detector, astronaut, monkeypatch):
    import prefrestore.restore.pipeline

    monkeypatch.setattr(prefrestore.restore.pipeline, "MAX_PIXELS", 600 * 600)
    small = np.ascontiguousarray(astronaut[:100, :100])
    big, ok = restore_photos(photos(astronaut, small), IdentityRestorer(), detector, PipelineConfig(upscale=2))
    assert not big.ok and "pixel limit" in big.error and "-s" in big.error
    assert ok.ok and ok.photo.size == (200, 200)


def test_identity_scorer_failure_is_a_note_not_a_failure(detector, astronaut):
    class FailingScorer:
        def compare(self, inputs, restored):
            raise RuntimeError("dlib: unsupported image type")

    (res,) = restore_photos(photos(astronaut), IdentityRestorer(), detector, identity=FailingScorer())
    assert res.ok and res.faces[0].identity is None and "identity similarity not computed" in res.notes[0]


class FlippingRestorer(IdentityRestorer):
    """Turns every crop upside down: a restorer whose faces must show in the output (the negative control below;
    a colour change would not do, colour matching undoes it)."""

    def restore(self, faces, *, seed=0):
        self.calls.append((len(faces), seed))
        return [np.ascontiguousarray(f[::-1]) for f in faces]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_restore_image_is_the_upscaled_photo_with_the_restored_face_pasted(detector, astronaut, grace):
    """The README's Python API: identity restorer -> the lanczos-upscaled input, in the face too; a darkening
    restorer's upside-down face shows (so the face check can fail); one image equals that image in a batch of photos."""
    from prefrestore.faces.paste import build_upsampler
    from prefrestore.io.photo_io import float_to_pixels, pixels_to_float

    restorer = IdentityRestorer(512)  # crops finer than the ~200 px face at 2x: paste-back resampling stays small
    out = restore_image(astronaut, restorer, detector, PipelineConfig(upscale=2, seed=7))
    assert out.dtype == np.uint8 and out.shape == (1024, 1024, 3)
    assert restorer.calls == [(1, 7)]  # the one face, with the config's seed
    upscaled = float_to_pixels(build_upsampler("lanczos")(pixels_to_float(astronaut), (1024, 1024)), np.uint8)
    (res,) = restore_photos(photos(astronaut), IdentityRestorer(512), detector, PipelineConfig(upscale=2))
    x0, y0, x1, y1 = (round(2 * v) for v in res.faces[0].aligned.detection.box)
    face = (slice(y0, y1), slice(x0, x1))
    assert _psnr(out[face], upscaled[face]) > 40  # align -> identity -> paste back: resampling only (~48 dB)
    assert np.array_equal(out[700:, 700:], upscaled[700:, 700:])  # far from the face: the background, bit-exact

    from prefrestore.faces.paste import BlendConfig

    raw = PipelineConfig(upscale=2, blend=BlendConfig(keep_detail=False))  # the paste itself, no no-loss rule
    flipped = restore_image(astronaut, FlippingRestorer(512), detector, raw)
    assert _psnr(flipped[face], upscaled[face]) < 25 and np.array_equal(flipped[700:, 700:], upscaled[700:, 700:])
    # with the rule, a restoration that redraws the face keeps the input up to its resolution ("added_detail")
    ruled = restore_image(astronaut, FlippingRestorer(512), detector, PipelineConfig(upscale=2))
    assert _psnr(ruled[face], upscaled[face]) > 33

    batch = [
        r.photo.color
        for r in restore_photos(
            photos(astronaut, grace), IdentityRestorer(), detector, PipelineConfig(upscale=2, batch_size=2)
        )
    ]
    assert np.array_equal(batch[0], restore_image(astronaut, IdentityRestorer(), detector, PipelineConfig(upscale=2)))
    assert np.array_equal(batch[1], restore_image(grace, IdentityRestorer(), detector, PipelineConfig(upscale=2)))
    with pytest.raises(RuntimeError, match="restoration failed"):
        restore_image(astronaut, BrokenRestorer(), detector)


# ----------------------------------------------------------------------------------------------------------------
# The no-loss rule (faces/paste.py plan_detail, merge_detail): a face larger than the restorer's resolution keeps
# the input's detail above it.


class BlurRestorer(IdentityRestorer):
    """A restorer that can only lose: a Gaussian blur of the aligned crop at its (small) resolution."""

    def restore(self, faces, *, seed=0):
        import cv2

        return [cv2.GaussianBlur(f, (0, 0), 1.5) for f in faces]


class RedrawRestorer(IdentityRestorer):
    """Redraws the face: the crop moved by (1.5, 0.5) px, as a model that reshapes features would."""

    def restore(self, faces, *, seed=0):
        import cv2

        m = np.float32([[1, 0, 1.5], [0, 1, 0.5]])
        return [cv2.warpAffine(f, m, f.shape[1::-1], borderMode=cv2.BORDER_REFLECT) for f in faces]


class DenoiseRestorer(IdentityRestorer):
    """Non-local means of ``strength`` (OpenCV's h): removes noise, and texture too when much stronger than it."""

    def __init__(self, resolution: int = 128, strength: float = 12):
        super().__init__(resolution)
        self.strength = strength

    def restore(self, faces, *, seed=0):
        import cv2

        return [cv2.fastNlMeansDenoisingColored(f, None, self.strength, self.strength, 5, 15) for f in faces]


def _high_freq(image: np.ndarray, box) -> float:
    """Mean squared luma detail above a 1 px Gaussian inside ``box`` (x0, y0, x1, y1): the band a 64 px model
    cannot produce for a face spanning hundreds of pixels."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    y = image[y0:y1, x0:x1].astype(np.float32).mean(2)
    return float(((y - cv2.GaussianBlur(y, (0, 0), 1.0)) ** 2).mean())


def _run_rule(
    detector,
    image,
    *,
    keep_detail="on",
    detail_loss=0.5,
    detail_change=1.5,
    blend=1.0,
    upscale=2.0,
    resolution=64,
    restorer=None,
):
    from prefrestore.faces.paste import BlendConfig
    from prefrestore.restore.options import RestoreOptions

    opts = RestoreOptions(keep_detail=keep_detail, identity_guard="off", blend=blend)
    cfg = PipelineConfig.from_options(
        opts, upscale=upscale, blend=BlendConfig(detail_loss=detail_loss, detail_change=detail_change)
    )
    (res,) = restore_photos(photos(image), restorer or BlurRestorer(resolution), detector, cfg)
    assert res.ok and len(res.faces) == 1
    return res


def test_no_loss_rule_keeps_the_detail_above_the_model_resolution(detector, grace):
    # grace_hopper's face crop spans ~350 input px, the stand-in model 64: merged, the output's detail above the
    # model's band is the upscaled input's (the blend-0 path) within 15 %; with the rule off it is nearly gone.
    lanczos = _run_rule(detector, grace, blend=0.0).photo.color
    merged = _run_rule(detector, grace, detail_loss=0.0, detail_change=1e9)  # both "can only lose" gates open
    face = merged.faces[0]
    box = [2 * v for v in face.aligned.detection.box]  # -s 2
    assert face.detail.action == "merged" and face.detail.model_resolution == 64
    assert (
        face.detail.face_output_px == pytest.approx(2 * face.detail.face_input_px) and face.detail.face_input_px > 300
    )
    ratio = _high_freq(merged.photo.color, box) / _high_freq(lanczos, box)
    assert 0.85 < ratio < 1.1, ratio
    assert not np.array_equal(merged.photo.color, lanczos)  # the restoration's band is pasted
    off = _run_rule(detector, grace, keep_detail="off")
    assert off.faces[0].detail.action == "restored"
    assert _high_freq(off.photo.color, box) / _high_freq(lanczos, box) < 0.2  # what the rule prevents


def test_no_loss_rule_leaves_the_input_where_the_restoration_only_blurs(detector, grace):
    lanczos = _run_rule(detector, grace, blend=0.0).photo.color
    kept = _run_rule(detector, grace)  # default detail_loss: the blur keeps ~25 % of the crop's detail energy
    plan = kept.faces[0].detail
    assert plan.action == "kept_input" and plan.detail_kept < 0.5
    assert np.array_equal(kept.photo.color, lanczos)
    assert any("left as the input" in n for n in kept.notes)
    assert plan.report()["action"] == "kept_input" and plan.report()["model_resolution"] == 64


def test_no_loss_rule_leaves_a_cleaning_restoration_of_a_face_within_the_model_resolution(detector, grace):
    # A 512 px model sees the whole face crop (~350 px in the input) and only removes noise: pasted as restored.
    noisy = np.clip(grace + np.random.default_rng(0).normal(0, 16, grace.shape), 0, 255).astype(np.uint8)
    on = _run_rule(detector, noisy, restorer=DenoiseRestorer(512, strength=6))
    off = _run_rule(detector, noisy, restorer=DenoiseRestorer(512, strength=6), keep_detail="off")
    assert on.faces[0].detail.action == "restored" and on.faces[0].detail.change_vs_noise < 1.5
    assert np.array_equal(on.photo.color, off.photo.color)


def test_no_loss_rule_keeps_what_a_small_face_has_when_the_restoration_redraws_it(detector, grace):
    # A 512 px model redraws a face that is clean at its own ~350 px: at -s 2 the output keeps the input below
    # the input's resolution (its low band matches the Lanczos upscale's) and takes the restoration's detail
    # above; at -s 1 there is nothing above, so the face stays the input.
    import cv2

    def low(img, box):  # the band well below the input's resolution (-s 2: 2 output px per input px)
        x0, y0, x1, y1 = (int(v) for v in box)
        return cv2.GaussianBlur(img[y0:y1, x0:x1].astype(np.float32), (0, 0), 3.0)

    lanczos = _run_rule(detector, grace, blend=0.0).photo.color
    added = _run_rule(detector, grace, restorer=RedrawRestorer(512))
    off = _run_rule(detector, grace, restorer=RedrawRestorer(512), keep_detail="off")
    plan = added.faces[0].detail
    assert plan.action == "added_detail" and plan.change_vs_noise > 1.5, plan
    box = [2 * v for v in added.faces[0].aligned.detection.box]
    err_added = np.abs(low(added.photo.color, box) - low(lanczos, box)).mean()
    err_off = np.abs(low(off.photo.color, box) - low(lanczos, box)).mean()
    assert err_added < 0.25 * err_off, (err_added, err_off)
    assert not np.array_equal(added.photo.color, lanczos)
    same = _run_rule(detector, grace, restorer=RedrawRestorer(512), upscale=1.0)
    assert same.faces[0].detail.action == "kept_input" and np.array_equal(same.photo.color, grace)


def test_no_loss_rule_on_an_aligned_crop_larger_than_the_model(grace, detector):
    # --aligned: a 512 px aligned crop restored by a blurring 64 px stand-in comes back at 512 px with the input's
    # detail above 64 px (merged) instead of a bicubic enlargement of the blur.
    from prefrestore.faces.align import align
    from prefrestore.faces.paste import BlendConfig
    from prefrestore.restore.options import RestoreOptions

    crop = align(grace, detector.detect(grace)[0], 512).crop
    box = (128, 128, 384, 384)
    hf = {}
    for keep, loss in (("on", 0.0), ("off", 0.5), ("on", 0.5)):
        cfg = PipelineConfig.from_options(
            RestoreOptions(keep_detail=keep, identity_guard="off"),
            blend=BlendConfig(detail_loss=loss, detail_change=1e9 if loss == 0 else 1.5),
        )
        (res,) = restore_aligned([(0, Photo(crop))], BlurRestorer(64), cfg)
        out = res.output_image()
        assert out.shape == crop.shape
        hf[keep, loss] = (_high_freq(out, box) / _high_freq(crop, box), res.detail.action, out)
    assert hf["on", 0.0][1] == "merged" and 0.85 < hf["on", 0.0][0] < 1.1
    assert hf["off", 0.5][1] == "restored" and hf["off", 0.5][0] < 0.2
    assert hf["on", 0.5][1] == "kept_input" and np.array_equal(hf["on", 0.5][2], crop)


def test_no_loss_rule_merges_cleaning_and_keeps_the_input_from_a_redrawing(detector, grace):
    # A face larger than the model: a restoration that only removes noise changes its band by about the noise
    # level (merged); one that moves the features changes it far beyond (left as the input, and said so).
    noisy = np.clip(grace + np.random.default_rng(0).normal(0, 16, grace.shape), 0, 255).astype(np.uint8)
    cleaned = _run_rule(detector, noisy, upscale=1.0, restorer=DenoiseRestorer(64)).faces[0].detail
    assert cleaned.action == "merged" and cleaned.change_vs_noise < 1.5, cleaned
    res = _run_rule(detector, noisy, upscale=1.0, restorer=RedrawRestorer(64))
    redrawn = res.faces[0].detail
    assert redrawn.action == "kept_input" and redrawn.change_vs_noise > 3, redrawn
    assert np.array_equal(res.photo.color, noisy)
    assert any("noise level without adding any: left as the input" in n for n in res.notes)


def test_no_loss_rule_lets_the_model_clean_a_blurred_face(detector, grace):
    # The same redrawing restorer on a blurred photo: the input is not sharp at its own resolution, so the model
    # may change it (restored), as it cleans a degraded old photo.
    import cv2

    blurred = cv2.GaussianBlur(grace, (0, 0), 3.0)
    res = _run_rule(detector, blurred, restorer=RedrawRestorer(512))
    plan = res.faces[0].detail
    assert plan.action == "restored" and plan.input_sharpness < 0.5 and plan.change_vs_noise > 1.5, plan
    sharp = _run_rule(detector, grace, restorer=RedrawRestorer(512)).faces[0].detail
    assert sharp.action == "added_detail" and sharp.input_sharpness > 0.5, sharp
