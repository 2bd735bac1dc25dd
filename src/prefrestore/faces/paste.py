"""Paste-back: restored crops warped back into the (upscaled) photo without seams, and the background upsampler.

Seams in other tools (GFPGAN#259, #255; facexlib PR #32) come from three things, each handled here:
* a hard or fixed-width mask edge: the blend mask is built in *crop* space, so after the inverse warp its
  feathering is a fixed fraction of the face, whatever the face's size in the photo; its ramp is a C1
  smoothstep that reaches exactly 0 before the crop border;
* colour and tone drift of the restorer: the restored crop's low frequencies are replaced by the input crop's
  (``color_match="lowfreq"``, the idea of DiffBIR's wavelet colour fix), so inside and outside agree up to
  detail; ``"meanstd"`` matches per-channel mean and spread instead (AdaIN-style), ``"none"`` keeps the output;
* aliasing and half-pixel offsets: the inverse warp area-reduces first when shrinking, and the upscale is
  composed into the affine with the same pixel-centre convention the background resampler uses.

The no-loss rule (``keep_detail``, docs/no-loss.md): a restorer works at its resolution S, so a face whose crop
covers more than S input pixels has detail the restoration cannot hold. Such a face is merged by frequency band
(:func:`merge_detail`): the restoration's band up to S (the crossover a little below the crop's Nyquist frequency, a
Gaussian split, so the transition is smooth) and the upscaled input's band above it. Where the restoration only removes
what the input has in its own band (:func:`plan_detail`), the face is left as the input. Faces no larger than S
are pasted as before. Each face's :class:`DetailPlan` says what was done.

Images here are float32 on the 8-bit scale [0, 255] (``photo_io.pixels_to_float``), so 16-bit photos keep their
precision outside the faces. Restored and aligned crops are uint8 (S, S, 3) RGB.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np

from ..io.photo_io import pixels_to_float
from .align import affine_scale, compose_affine, warp_affine
from .types import RestoredFace

logger = logging.getLogger(__name__)

ColorMatch = Literal["lowfreq", "meanstd", "none"]
DetailAction = Literal["restored", "merged", "kept_input", "added_detail"]

# The band split of the no-loss rule: a Gaussian low-pass whose response is 1/2 at DETAIL_CROSSOVER times the crop's
# Nyquist frequency (0.5 cycles per crop pixel). A restorer's output carries little detail near its own Nyquist
# frequency, so the input takes over a little below it: on grace_hopper.jpg at -s 2 with the bundled 128 px model,
# the face keeps 0.77 of the Lanczos upscale's Laplacian variance at 1.0, 0.92 at 0.7, 0.98 at 0.5
# (benchmarks/no_loss_sample.py). exp(-2 pi^2 sigma^2 f^2) = 1/2 -> sigma = sqrt(ln 2 / 2) / (pi f), in crop pixels.
DETAIL_CROSSOVER = 0.6
DETAIL_SIGMA = float(np.sqrt(np.log(2) / 2) / (np.pi * 0.5 * DETAIL_CROSSOVER))


@dataclass(frozen=True)
class BlendConfig:
    """How restored faces are blended in. Widths are fractions of the crop side S.

    inset: band along the crop border left fully to the background (the reflect-padded edge of crops at
        the photo border never shows).
    ramp: width of the smoothstep from background to face; at S = 512 the default is ~60 px of crop, i.e.
        about a quarter of the eye distance-to-border, so a 100 px face in the photo gets a ~12 px transition.
    color_match: see the module docstring.
    color_sigma: Gaussian sigma of the "lowfreq" split, fraction of S (0.15 -> 77 px at 512, 19 px at 128: skin
        tone and lighting come from the input, features, pores and edges from the restorer). Picked on training
        pairs by tools/pick_color_sigma.py: the face's mean colour closest to the GT; the earlier 0.03 brought back
        the input's blur, noise and blocks at that scale (on the paper recipe -0.12 dB PSNR-Y, +0.021 LPIPS-VGG
        against the unfixed restoration; at 0.15 +0.01 dB, +0.002).
    visibility: how much of the restored face shows, 0-1 (--blend; the mask is scaled by it: 0 = the photo as
        upscaled, 1 = the restoration).
    keep_detail: the no-loss rule (module docstring; --keep-detail): faces larger than the restorer's resolution
        keep the input's detail above it.
    detail_loss: a face larger than the restorer's resolution is left as the input when its restoration keeps
        less than this fraction of the input crop's detail energy (:func:`decide_detail`).
    detail_change, detail_gain, detail_sharp: ... or when the input is sharp at its own resolution
        (:func:`input_sharpness` >= ``detail_sharp``) and the restoration changes its detail by more than
        ``detail_change`` times the input's noise level (RMS) without adding detail (its detail energy below
        ``detail_gain`` times the input's): it redraws the face rather than cleaning it.
    """

    inset: float = 0.02
    ramp: float = 0.12
    color_match: ColorMatch = "lowfreq"
    color_sigma: float = 0.15
    visibility: float = 1.0
    keep_detail: bool = True
    detail_loss: float = 0.5
    detail_change: float = 1.5
    detail_gain: float = 1.5
    detail_sharp: float = 0.5

    def __post_init__(self) -> None:
        if not (0 <= self.inset < 0.25 and 0 < self.ramp <= 0.45 and self.inset + self.ramp < 0.5):
            raise ValueError(f"need 0 <= inset < 0.25, 0 < ramp <= 0.45, inset + ramp < 0.5; got {self}")
        if self.color_match not in ("lowfreq", "meanstd", "none"):
            raise ValueError(f"unknown color_match={self.color_match!r}; expected lowfreq, meanstd or none")
        if not 0.0 <= self.visibility <= 1.0:
            raise ValueError(f"visibility={self.visibility} must be in [0, 1]")
        if not 0 < self.color_sigma < 0.5:
            raise ValueError(f"color_sigma={self.color_sigma} must be in (0, 0.5)")
        if not 0.0 <= self.detail_loss <= 1.0:
            raise ValueError(f"detail_loss={self.detail_loss} must be in [0, 1]")
        if not (self.detail_change > 0 and self.detail_gain > 0 and self.detail_sharp >= 0):
            raise ValueError(
                f"need detail_change > 0, detail_gain > 0, detail_sharp >= 0; got {self.detail_change}, "
                f"{self.detail_gain}, {self.detail_sharp}"
            )


def face_mask(size: int, blend: BlendConfig) -> np.ndarray:
    """(S, S) float32 in [0, 1]: 1 in the middle, a smoothstep to 0 over ``ramp`` ending ``inset`` from the border.

    The product of two separable ramps rounds the corners, so the mask has no creases along the diagonals.
    """
    c = np.arange(size, dtype=np.float64) + 0.5  # pixel centres in edge units
    d = np.minimum(c, size - c) / size  # distance to the nearest border, fraction of S
    t = np.clip((d - blend.inset) / blend.ramp, 0.0, 1.0)
    ramp = t * t * (3 - 2 * t)  # smoothstep: C1 at both ends
    return np.outer(ramp, ramp).astype(np.float32)


def match_color(restored: np.ndarray, reference: np.ndarray, blend: BlendConfig) -> np.ndarray:
    """restored, reference: uint8 (S, S, 3) RGB -> float32 (S, S, 3) on [0, 255], restored with ``reference``'s tone."""
    out = pixels_to_float(restored)
    if blend.color_match == "none":
        return out
    ref = pixels_to_float(reference)
    size = restored.shape[0]
    if blend.color_match == "lowfreq":
        # out - low(out) + low(ref) == out + low(ref - out): one blur of the difference, which is also exactly
        # zero for a restorer that changes nothing.
        return out + _lowpass(ref - out, blend.color_sigma * size)
    # meanstd: per-channel statistics over the region the mask keeps
    w = face_mask(size, blend)[..., None]  # (S, S, 1)
    total = w.sum()
    mu_o, mu_r = (out * w).sum((0, 1)) / total, (ref * w).sum((0, 1)) / total  # (3,)
    sd_o = np.sqrt((((out - mu_o) ** 2) * w).sum((0, 1)) / total) + 1e-3
    sd_r = np.sqrt((((ref - mu_r) ** 2) * w).sum((0, 1)) / total)
    return (out - mu_o) / sd_o * sd_r + mu_r


def _lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of float32 (S, S, C) with a wide ``sigma``, computed at reduced size: the result is smooth
    anyway, and at S = 512 this is ~30x cheaper than a 91-tap blur at full size."""
    factor = max(1, int(sigma / 2.5))  # keep >= 2.5 px of sigma at the reduced size
    if factor == 1:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    h, w = x.shape[:2]
    small = cv2.resize(x, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma * small.shape[1] / w, borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(x.shape)


# ----------------------------------------------------------------------------------------------------------------
# The no-loss rule


@dataclass(frozen=True)
class DetailPlan:
    """What the no-loss rule does with one face.

    model_resolution: S, the restorer's crop side. face_input_px / face_output_px: the crop's side in input and
    output pixels (the face box is about half of it). action: "restored" (the restoration is pasted: the face is
    smaller than S in the input and the restoration cleans it, or the rule is off), "merged" (a face larger than
    S: the restoration up to S, the input's detail above), "added_detail" (a face smaller than S whose
    restoration redraws what the input has: the input up to its own resolution, the restoration's detail above)
    or "kept_input" (the restoration could only lose: the face is left as the upscaled input).
    detail_kept: the restoration's detail energy in its own band over the input crop's; change_vs_noise: the RMS
    of what the restoration changed in that band over the input crop's noise level; input_sharpness: see
    :func:`input_sharpness` (each None when not measured).
    """

    model_resolution: int
    face_input_px: float
    face_output_px: float
    action: DetailAction
    detail_kept: float | None = None
    change_vs_noise: float | None = None
    input_sharpness: float | None = None

    def report(self) -> dict:
        r = {
            "model_resolution": self.model_resolution,
            "face_input_px": round(self.face_input_px, 1),
            "face_output_px": round(self.face_output_px, 1),
            "action": self.action,
        }
        if self.detail_kept is not None:
            r["detail_kept"] = round(self.detail_kept, 3)
        if self.change_vs_noise is not None:
            r["change_vs_noise"] = round(self.change_vs_noise, 2)
        if self.input_sharpness is not None:
            r["input_sharpness"] = round(self.input_sharpness, 3)
        return r

    def note(self, index: int) -> str | None:
        """A line for the photo's notes when the face was not simply restored."""
        if self.action == "merged":
            return (
                f"face {index}: {self.face_input_px:.0f} px crop in the input > the model's {self.model_resolution}"
                f" px: restored up to the model's resolution, the input's detail kept above it"
            )
        if self.action == "added_detail":
            return (
                f"face {index}: the restoration changed the input's detail {self.change_vs_noise:.1f}x its noise "
                "level: the input kept up to its own resolution, the restoration's detail added above it"
            )
        if self.action == "kept_input":
            why = (
                f"the restoration kept only {self.detail_kept:.0%} of its detail"
                if self.change_vs_noise is None
                else f"the restoration changed its detail {self.change_vs_noise:.1f}x its noise level without adding "
                "any"
            )
            size = "> the model's" if self.face_input_px > self.model_resolution else "at -s 1, within the model's"
            return (
                f"face {index}: {self.face_input_px:.0f} px crop in the input {size} {self.model_resolution}"
                f" px and {why}: left as the input"
            )
        return None


def detail_energy(crop: np.ndarray, blend: BlendConfig) -> float:
    """Mean squared luma detail of a uint8 or float32 (S, S, 3) crop above the colour split (``color_sigma``),
    weighted by the paste mask: the band a restoration replaces."""
    x = np.ascontiguousarray(crop.mean(axis=2, dtype=np.float32))  # (S, S) on [0, 255]: the channels' mean
    detail = x - _lowpass(x, blend.color_sigma * crop.shape[0])
    w = face_mask(crop.shape[0], blend)
    return float((detail**2 * w).sum() / w.sum())


def plan_detail(face: RestoredFace, output_scale: float, blend: BlendConfig) -> DetailPlan:
    """The no-loss decision for one face of a photo (:func:`decide_detail`). output_scale: output pixels per input
    pixel (``-s``)."""
    input_px = face.aligned.size * affine_scale(face.aligned.inverse_affine)
    return decide_detail(face.aligned.crop, face.restored, input_px, blend, output_scale=output_scale)


def decide_detail(
    crop: np.ndarray, restored: np.ndarray, input_px: float, blend: BlendConfig, *, output_scale: float = 1.0
) -> DetailPlan:
    """The no-loss decision. crop, restored: uint8 (S, S, 3) RGB, the input crop at the restorer's resolution and
    its restoration; input_px: the crop's side in input pixels.

    Both tests below compare the restoration with the input in the band the input has (its crop up to S, or its
    own resolution for a smaller face) and the input crop's noise level (:func:`noise_level`). The restoration
    *redraws* a face when the input is sharp at that scale (:func:`input_sharpness` >= ``blend.detail_sharp``)
    and the restoration changes that band by more than ``blend.detail_change`` times the noise (RMS) without
    adding detail (energy below ``blend.detail_gain`` times the input's, less its noise); otherwise it *cleans*
    (a blurred or compressed input, or a change within the noise).

    * A face larger than S (the input has detail above the model's resolution): "merged" when it cleans, else
      "kept_input"; also "kept_input" when it keeps less than ``blend.detail_loss`` of the detail energy (a sharp
      face the model blurs).
    * A smaller face: "restored" when it cleans; else "added_detail" (the input below its own resolution, the
      restoration above it), or "kept_input" at ``output_scale`` <= 1 (nothing to add above it).

    Set on the held-out whole photos (docs/no-loss.md): every face larger than the 128 px model lost 0.2-4.8 dB
    PSNR-Y when merged; each was sharp (0.61-1.77), changed 2.1-4.8x the noise, kept 0.97-1.16 of its energy.
    The demo's degraded old photos measure 0.32-0.43 sharp and are cleaned.
    """
    size = crop.shape[0]
    plan = DetailPlan(size, input_px, input_px * output_scale, "restored")
    if not blend.keep_detail:
        return plan
    fixed = match_color(restored, crop, blend)
    if input_px < size:  # the input's own band: measured at its resolution (the crop is an upsampling of it)
        n = max(16, round(input_px))
        crop = cv2.resize(crop, (n, n), interpolation=cv2.INTER_AREA)
        fixed = cv2.resize(fixed, (n, n), interpolation=cv2.INTER_AREA)
    noise = max(noise_level(crop), 0.5)
    clean = max(detail_energy(crop, blend) - noise**2, 1e-6)  # the input's detail energy less its noise's
    kept = detail_energy(fixed, blend) / clean
    if kept < blend.detail_loss and input_px > size:
        return dataclasses.replace(plan, action="kept_input", detail_kept=kept)
    change = float(np.sqrt(detail_energy(fixed - pixels_to_float(crop), blend))) / noise
    sharp = input_sharpness(crop, blend)
    reshapes = sharp >= blend.detail_sharp and change > blend.detail_change and kept < blend.detail_gain
    if input_px > size:
        action: DetailAction = "kept_input" if reshapes else "merged"
    elif reshapes:  # redraws what the input has: the input below its resolution, the model's detail above it
        action = "added_detail" if output_scale > 1 else "kept_input"  # at -s 1 there is nothing above it
    else:
        action = "restored"
    return dataclasses.replace(plan, action=action, detail_kept=kept, change_vs_noise=change, input_sharpness=sharp)


def input_sharpness(crop: np.ndarray, blend: BlendConfig) -> float:
    """How sharp a uint8 (n, n, 3) crop is at its own resolution: the luma energy of its top octave (above a 1 px
    Gaussian) over the next one (between 1 and 2 px), in the paste mask. Natural sharp faces measure ~0.6-1.8
    (the held-out photos under a mild photo degradation); blurred, down-up-sampled JPEG 50 ones ~0.3-0.45 (the
    demo's old photos)."""
    x = crop.astype(np.float32).mean(axis=2)
    g1, g2 = cv2.GaussianBlur(x, (0, 0), 1.0), cv2.GaussianBlur(x, (0, 0), 2.0)
    w = face_mask(x.shape[0], blend)
    return float(((x - g1) ** 2 * w).sum() / max(((g1 - g2) ** 2 * w).sum(), 1e-6))


def noise_level(crop: np.ndarray) -> float:
    """Standard deviation (0-255 scale) of white noise in a uint8 (S, S, 3) crop's luma: Immerkaer's estimator
    ("Fast noise variance estimation", CVIU 1996, Eq. 4): the mean absolute response of a mask that cancels
    locally linear image content. Edges raise it a little, which errs toward merging."""
    x = crop.astype(np.float64).mean(axis=2)
    k = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    r = cv2.filter2D(x, -1, k)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6)


def merge_detail(restored: np.ndarray, upscaled: np.ndarray, crop_scale: float) -> np.ndarray:
    """The no-loss band merge of one face region. restored, upscaled: float32 (h, w, 3) on [0, 255], the
    restoration warped into the output and the upscaled input there; crop_scale: output pixels per crop pixel.

    -> low(restored) + upscaled - low(upscaled) = upscaled + low(restored - upscaled), low a Gaussian whose
    response is 1/2 at :data:`DETAIL_CROSSOVER` times the crop's Nyquist frequency (:data:`DETAIL_SIGMA` crop pixels): the restoration up to its
    resolution, the input above.
    """
    sigma = DETAIL_SIGMA * crop_scale
    return upscaled + cv2.GaussianBlur(restored - upscaled, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


def add_detail(restored: np.ndarray, upscaled: np.ndarray, input_scale: float) -> np.ndarray:
    """The no-loss merge of a face smaller than the restorer's resolution whose restoration redraws what the input
    has: the input up to its own resolution, the restoration's detail above it. restored, upscaled: float32
    (h, w, 3) on [0, 255] in the output; input_scale: output pixels per input pixel.

    -> upscaled + high(restored - upscaled), high = 1 - a Gaussian whose response is 1/2 at the input's Nyquist
    frequency (the input is trusted up to its own resolution).
    """
    diff = restored - upscaled
    sigma = DETAIL_SIGMA * DETAIL_CROSSOVER * input_scale
    return upscaled + diff - cv2.GaussianBlur(diff, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


def plan_faces(
    faces: Sequence[RestoredFace], blend: BlendConfig, *, source_size: tuple[int, int], output_size: tuple[int, int]
) -> list[DetailPlan]:
    """:func:`plan_detail` for every face of a photo resized from ``source_size`` to ``output_size`` (W, H)."""
    scale = float(np.sqrt(output_size[0] / source_size[0] * output_size[1] / source_size[1]))
    return [plan_detail(f, scale, blend) for f in faces]


def upscale_affine(source_size: tuple[int, int], target_size: tuple[int, int]) -> np.ndarray:
    """(2, 3) map from pixel centres of a (W, H) image to those of its resize to (W', H'), as cv2.resize maps them."""
    sx, sy = target_size[0] / source_size[0], target_size[1] / source_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])


def paste_back(
    background: np.ndarray,
    faces: Sequence[RestoredFace],
    blend: BlendConfig | None = None,
    *,
    source_size: tuple[int, int],
    inplace: bool = False,
    plans: Sequence[DetailPlan] | None = None,
) -> np.ndarray:
    """Blend restored faces into an upscaled photo.

    background: float32 (H', W', 3) on [0, 255], the photo resized from ``source_size`` = (W, H) to (W', H').
    faces: restorations of faces aligned on the (W, H) photo.
    Returns a float32 (H', W', 3) array on [0, 255] (clipped): ``background`` itself when ``inplace`` (saves a
    copy of a large photo), else a new array. Faces are blended in order, later on top.
    plans: each face's no-loss decision (:func:`plan_faces`, computed here when not given).
    """
    blend = blend or BlendConfig()
    if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.float32:
        raise ValueError(f"background must be float32 (H, W, 3), got {background.dtype} {background.shape}")
    out = background if inplace else background.copy()
    height, width = out.shape[:2]
    up = upscale_affine(source_size, (width, height))
    if plans is None:
        plans = plan_faces(faces, blend, source_size=source_size, output_size=(width, height))
    masks: dict[int, np.ndarray] = {}
    for face, plan in zip(faces, plans, strict=True):
        if plan.action == "kept_input":
            continue
        size = face.aligned.size
        if size not in masks:
            masks[size] = face_mask(size, blend)
        m = compose_affine(up, face.aligned.inverse_affine)  # crop -> output pixels
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64) - 0.5
        pts = corners @ m[:, :2].T + m[:, 2]  # (4, 2)
        x0, y0 = (int(np.clip(np.floor(v), 0, lim)) for v, lim in zip(pts.min(0), (width, height), strict=True))
        x1, y1 = (int(np.clip(np.ceil(v) + 1, 0, lim)) for v, lim in zip(pts.max(0), (width, height), strict=True))
        if x1 <= x0 or y1 <= y0:
            continue  # the face maps outside the photo (cannot happen for a detection inside it)
        m_roi = m - np.array([[0, 0, x0], [0, 0, y0]], np.float64)  # crop -> ROI pixels
        colour = match_color(face.restored, face.aligned.crop, blend)  # (S, S, 3)
        warped = warp_affine(colour, m_roi, (x1 - x0, y1 - y0), border="reflect")  # (h, w, 3)
        alpha = warp_affine(masks[size], m_roi, (x1 - x0, y1 - y0), border="constant", cubic=False)  # (h, w)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None] * np.float32(blend.visibility)
        roi = out[y0:y1, x0:x1]
        if plan.action == "merged":
            warped = merge_detail(warped, roi, affine_scale(m))
        elif plan.action == "added_detail":
            warped = add_detail(warped, roi, plan.face_output_px / plan.face_input_px)
        out[y0:y1, x0:x1] = roi + alpha * (warped - roi)
    return np.clip(out, 0.0, 255.0, out=out)


# ----------------------------------------------------------------------------------------------------------------
# Background upsampling


class BackgroundUpsampler(Protocol):
    """Resizes the whole photo: :class:`ResampleUpsampler`, or a learned super-resolution model
    (``prefrestore.restore.realesrgan.RealESRGANUpsampler``)."""

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """float32 (H, W, C) on [0, 255], C in 1..4 -> float32 (h, w, C) on [0, 255], size = (w, h)."""
        ...


Resampler = Literal["lanczos", "bicubic", "bilinear"]
_CV2_FLAGS = {"lanczos": cv2.INTER_LANCZOS4, "bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


@dataclass(frozen=True)
class ResampleUpsampler:
    """Classical resampling. Lanczos (8x8 taps) by default: the sharpest of the three without visible ringing
    at 2-4x; its small overshoot is clipped. Downscaling (scale < 1) always uses area averaging."""

    method: Resampler = "lanczos"

    def __call__(self, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        h, w = image.shape[:2]
        if (w, h) == tuple(size):
            return image.astype(np.float32, copy=True)
        flag = cv2.INTER_AREA if size[0] < w and size[1] < h else _CV2_FLAGS[self.method]
        out = cv2.resize(image.astype(np.float32, copy=False), tuple(size), interpolation=flag)
        out = out.reshape(size[1], size[0], *image.shape[2:])  # cv2 drops a trailing channel axis of 1
        return np.clip(out, 0.0, 255.0, out=out)


UPSAMPLERS = {name: (lambda name=name: ResampleUpsampler(name)) for name in ("lanczos", "bicubic", "bilinear")}
BG_UPSAMPLERS: tuple[str, ...] = (*sorted(UPSAMPLERS), "realesrgan")
"""The names ``--bg-upsampler`` takes: the resamplers above and Real-ESRGAN (prefrestore.restore.realesrgan sits above
faces/; pipeline.py builds it)."""


def build_upsampler(kind: str | BackgroundUpsampler = "lanczos") -> BackgroundUpsampler:
    """The background upsampler named ``kind`` (the choices of ``--bg-upsampler``); an upsampler object is
    returned as it is."""
    if not isinstance(kind, str):
        return kind
    if kind not in UPSAMPLERS:
        raise ValueError(f"unknown upsampler {kind=}; expected one of {sorted(UPSAMPLERS)}")
    return UPSAMPLERS[kind]()
