"""The classic blind-face degradation: blur -> downsample -> noise -> JPEG -> resize back (+ optional colour).

Sampling is split from application (docs/style.md P13)::

    params = sample_params(cfg, generator)   # all randomness, recorded in a frozen, JSON-serialisable dataclass
    lq = apply(hq, params)                   # deterministic: same hq + params -> same lq, bit for bit

``hq`` and ``lq`` are float32 ``(3, H, W)`` RGB in ``[0, 1]``; ``lq`` has the size of ``hq``.

Presets (LANDSCAPE.md Section 3, docs/method.md Section 2.4), all with 41x41 iso/aniso Gaussian kernels (p 0.5 each,
rotation in [-pi, pi]):

=============  ==========  ==========  ===========  ========  ==============================================
preset         blur sigma  downsample  noise /255   JPEG q    extras
=============  ==========  ==========  ===========  ========  ==============================================
paper          [1, 15]     [1, 30]     [0, 20]      [30, 90]  Pref-Restore training config
gfpgan         [0.1, 10]   [0.8, 8]    [0, 20]      [60, 100] colour shift 20/255 p .3, jitter p .3, gray .01
codeformer     [1, 15]     [4, 30]     [0, 20]      [30, 80]  CodeFormer stage II (motion blur off)
photo          [0.8, 4]    [8, 16]     [0, 8]       [50, 90]  mild: a small, soft, compressed face in a photo;
                                                              at 128 px (scaled): sigma [0.2, 1], x2-x4
=============  ==========  ==========  ===========  ========  ==============================================

Order of random draws in :func:`sample_params` (fixed; changing it changes every frozen test set): kernel type,
sigma_x, [sigma_y, theta], scale, noise sigma, noise seed, JPEG quality, [colour shift gate, shift],
[gray gate], [jitter gate, permutation, brightness, contrast, saturation, hue].
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import torch

from . import ops

PresetName = Literal["paper", "gfpgan", "codeformer", "photo"]
KernelKind = Literal["iso", "aniso"]


# ----------------------------------------------------------------------------------------------------------------
# Config


def _check_range(name: str, r: tuple[float, float], lo: float | None = None, hi: float | None = None) -> None:
    if len(r) != 2 or r[0] > r[1]:
        raise ValueError(f"{name}={r}: expected (low, high) with low <= high")
    if lo is not None and r[0] < lo:
        raise ValueError(f"{name}={r}: low end must be >= {lo}")
    if hi is not None and r[1] > hi:
        raise ValueError(f"{name}={r}: high end must be <= {hi}")


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges from which one degradation is drawn. Defaults are the paper's (docs/method.md Section 2.4)."""

    kernel_size: int = 41
    """Blur kernel side in pixels (odd)."""
    kernel_prob: tuple[float, float] = (0.5, 0.5)
    """Probabilities of the isotropic and anisotropic Gaussian kernels."""
    blur_sigma: tuple[float, float] = (1.0, 15.0)
    """Kernel std range in pixels (each axis drawn independently for anisotropic kernels)."""
    rotation: tuple[float, float] = (-math.pi, math.pi)
    """Anisotropic kernel rotation range in radians."""
    downsample: tuple[float, float] = (1.0, 30.0)
    """Downsampling factor range; the LQ is bilinearly resized to size // factor, then back."""
    noise: tuple[float, float] = (0.0, 20.0)
    """Gaussian noise std range on the 0-255 scale."""
    jpeg: tuple[float, float] | None = (30.0, 90.0)
    """JPEG quality range (quality = int(uniform(lo, hi)), as BasicSR), or None for no JPEG."""
    color_shift_prob: float = 0.0
    """Probability of a per-channel colour offset (GFPGAN: 0.3)."""
    color_shift: float = 20.0
    """Max absolute per-channel offset on the 0-255 scale."""
    gray_prob: float = 0.0
    """Probability of converting the LQ to grayscale (GFPGAN: 0.01)."""
    color_jitter_prob: float = 0.0
    """Probability of a brightness/contrast/saturation/hue jitter in random order (GFPGAN: 0.3)."""
    brightness: tuple[float, float] = (0.5, 1.5)
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.0, 1.5)
    hue: tuple[float, float] = (-0.1, 0.1)
    quantize: bool = False
    """Round the LQ to 8-bit levels at the end (GFPGAN does; saving to PNG does it anyway)."""

    def __post_init__(self) -> None:
        if self.kernel_size % 2 != 1 or self.kernel_size < 1:
            raise ValueError(f"kernel_size={self.kernel_size}: must be a positive odd number (BasicSR uses 41)")
        if len(self.kernel_prob) != 2 or min(self.kernel_prob) < 0 or abs(sum(self.kernel_prob) - 1) > 1e-6:
            raise ValueError(f"kernel_prob={self.kernel_prob}: expected (p_iso, p_aniso) >= 0 summing to 1")
        _check_range("blur_sigma", self.blur_sigma, lo=1e-3)
        _check_range("rotation", self.rotation)
        _check_range("downsample", self.downsample, lo=0.1)
        _check_range("noise", self.noise, lo=0.0)
        if self.jpeg is not None:
            _check_range("jpeg", self.jpeg, lo=1.0, hi=100.0)
        for name in ("color_shift_prob", "gray_prob", "color_jitter_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p}: must be a probability in [0, 1]")
        _check_range("hue", self.hue, lo=-0.5, hi=0.5)


def _paper() -> DegradationConfig:
    return DegradationConfig()


def _gfpgan() -> DegradationConfig:
    # GFPGAN options/train_gfpgan_v1.yml (FFHQDegradationDataset).
    return DegradationConfig(
        blur_sigma=(0.1, 10.0),
        downsample=(0.8, 8.0),
        noise=(0.0, 20.0),
        jpeg=(60.0, 100.0),
        color_shift_prob=0.3,
        color_shift=20.0,
        gray_prob=0.01,
        color_jitter_prob=0.3,
        quantize=True,
    )


def _codeformer() -> DegradationConfig:
    # CodeFormer options/CodeFormer_stage2.yml (FFHQBlindDataset, motion blur disabled).
    return DegradationConfig(blur_sigma=(1.0, 15.0), downsample=(4.0, 30.0), noise=(0.0, 20.0), jpeg=(30.0, 80.0))


def _photo() -> DegradationConfig:
    # Ours: the mild degradation of a face that is merely small and compressed in an ordinary photo (issue 12's
    # "photo" test set). Written for 512 px faces like the others, so ``scaled(..., 128 / 512)`` gives blur sigma
    # [0.2, 1], downsampling x2-x4, noise <= 8/255, JPEG 50-90 at 128 px.
    return DegradationConfig(blur_sigma=(0.8, 4.0), downsample=(8.0, 16.0), noise=(0.0, 8.0), jpeg=(50.0, 90.0))


PRESETS: dict[str, Callable[[], DegradationConfig]] = {
    "paper": _paper,
    "gfpgan": _gfpgan,
    "codeformer": _codeformer,
    "photo": _photo,
}


def preset(name: PresetName) -> DegradationConfig:
    """The named degradation recipe (see the module table)."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def scaled(cfg: DegradationConfig, factor: float) -> DegradationConfig:
    """The recipe for images ``factor`` times the size it was written for (presets assume 512 px faces).

    Pixel-domain quantities scale: kernel size (kept odd, >= 3), blur sigma and downsampling factor (the low end
    stays >= 1 when it was >= 1). Noise, JPEG and colour ranges are per-pixel and do not change. At 128 px
    (factor 0.25) the paper preset becomes kernel 11, sigma [0.25, 3.75], downsample [1, 7.5].
    """
    if factor <= 0:
        raise ValueError(f"scale factor must be > 0, got {factor}")
    k = max(3, int(round(cfg.kernel_size * factor)) | 1)
    lo, hi = cfg.downsample
    new_lo = max(1.0, lo * factor) if lo >= 1.0 else lo
    return replace(
        cfg,
        kernel_size=k,
        blur_sigma=(cfg.blur_sigma[0] * factor, cfg.blur_sigma[1] * factor),
        downsample=(new_lo, max(new_lo, hi * factor)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Params


@dataclass(frozen=True)
class ColorJitterParams:
    """One torchvision-style colour jitter; ``order`` lists op ids (0 brightness, 1 contrast, 2 saturation, 3 hue)."""

    order: tuple[int, ...]
    brightness: float
    contrast: float
    saturation: float
    hue: float


@dataclass(frozen=True)
class DegradationParams:
    """Everything random about one degradation; :func:`apply` is a pure function of (image, params)."""

    kernel: KernelKind
    sigma_x: float
    sigma_y: float
    theta: float
    kernel_size: int
    scale: float
    """Downsampling factor (the LQ is resized to (H // scale, W // scale) then back)."""
    noise_sigma: float
    """Gaussian noise std on the 0-255 scale."""
    noise_seed: int
    jpeg_quality: int | None
    color_shift: tuple[float, float, float] | None = None
    """Per-channel offset on the [0, 1] scale, or None."""
    gray: bool = False
    color_jitter: ColorJitterParams | None = None
    quantize: bool = False
    version: int = 1
    """Bumped if :func:`apply`'s semantics ever change; replaying an older version raises."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DegradationParams:
        """Inverse of :meth:`to_dict`; rejects unknown keys and other versions."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown degradation param keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        if d.get("version", 1) != 1:
            raise ValueError(f"degradation params version {d['version']} is not supported by this prefrestore")
        kw = dict(d)
        if kw.get("color_shift") is not None:
            kw["color_shift"] = tuple(float(v) for v in kw["color_shift"])
        if kw.get("color_jitter") is not None:
            cj = dict(kw["color_jitter"])
            cj["order"] = tuple(int(v) for v in cj["order"])
            kw["color_jitter"] = ColorJitterParams(**cj)
        return cls(**kw)


# ----------------------------------------------------------------------------------------------------------------
# Sample and apply


def _uniform(lo: float, hi: float, g: torch.Generator) -> float:
    u = torch.rand((), generator=g, dtype=torch.float64).item()
    return lo + (hi - lo) * u


def _bernoulli(p: float, g: torch.Generator) -> bool:
    return torch.rand((), generator=g, dtype=torch.float64).item() < p


def sample_params(cfg: DegradationConfig, generator: torch.Generator) -> DegradationParams:
    """Draw one degradation from ``cfg`` using only ``generator`` (a CPU ``torch.Generator``)."""
    g = generator
    kind: KernelKind = "iso" if _bernoulli(cfg.kernel_prob[0], g) else "aniso"
    sigma_x = _uniform(*cfg.blur_sigma, g)
    if kind == "aniso":
        sigma_y = _uniform(*cfg.blur_sigma, g)
        theta = _uniform(*cfg.rotation, g)
    else:
        sigma_y, theta = sigma_x, 0.0
    scale = _uniform(*cfg.downsample, g)
    noise_sigma = _uniform(*cfg.noise, g)
    noise_seed = int(torch.randint(0, 2**62, (), generator=g).item())
    quality = int(_uniform(*cfg.jpeg, g)) if cfg.jpeg is not None else None
    shift = None
    if cfg.color_shift_prob > 0 and _bernoulli(cfg.color_shift_prob, g):
        m = cfg.color_shift / 255.0
        shift = (_uniform(-m, m, g), _uniform(-m, m, g), _uniform(-m, m, g))
    gray = cfg.gray_prob > 0 and _bernoulli(cfg.gray_prob, g)
    jitter = None
    if cfg.color_jitter_prob > 0 and _bernoulli(cfg.color_jitter_prob, g):
        order = tuple(int(v) for v in torch.randperm(4, generator=g).tolist())
        jitter = ColorJitterParams(
            order=order,
            brightness=_uniform(*cfg.brightness, g),
            contrast=_uniform(*cfg.contrast, g),
            saturation=_uniform(*cfg.saturation, g),
            hue=_uniform(*cfg.hue, g),
        )
    return DegradationParams(
        kernel=kind,
        sigma_x=sigma_x,
        sigma_y=sigma_y,
        theta=theta,
        kernel_size=cfg.kernel_size,
        scale=scale,
        noise_sigma=noise_sigma,
        noise_seed=noise_seed,
        jpeg_quality=quality,
        color_shift=shift,
        gray=gray,
        color_jitter=jitter,
        quantize=cfg.quantize,
    )


def _jitter(img: torch.Tensor, cj: ColorJitterParams) -> torch.Tensor:
    for op in cj.order:
        if op == 0:
            img = ops.adjust_brightness(img, cj.brightness)
        elif op == 1:
            img = ops.adjust_contrast(img, cj.contrast)
        elif op == 2:
            img = ops.adjust_saturation(img, cj.saturation)
        elif op == 3:
            img = ops.adjust_hue(img, cj.hue)
        else:
            raise ValueError(f"unknown colour-jitter op id {op}; expected 0-3")
    return img


def apply(img: torch.Tensor, params: DegradationParams) -> torch.Tensor:
    """Degrade ``img`` float32 (3, H, W) RGB in [0, 1] -> LQ of the same shape, RGB in [0, 1]."""
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected one (3, H, W) image, got {tuple(img.shape)}; loop over a batch")
    h, w = img.shape[-2:]
    x = img.float()
    kernel = ops.gaussian_kernel(params.kernel_size, params.sigma_x, params.sigma_y, params.theta)
    x = ops.blur(x, kernel)  # (3, H, W)
    x = ops.resize_bilinear(x, ops.downsampled_size(h, w, params.scale))  # (3, H/s, W/s)
    x = ops.add_gaussian_noise(x, params.noise_sigma, params.noise_seed)
    if params.jpeg_quality is not None:
        x = ops.jpeg(x, params.jpeg_quality)
    x = ops.resize_bilinear(x, (h, w)).clamp(0.0, 1.0)  # (3, H, W)
    if params.color_shift is not None:
        x = ops.shift_color(x, params.color_shift)
    if params.gray:
        x = ops.grayscale(x)
    if params.color_jitter is not None:
        x = _jitter(x, params.color_jitter)
    if params.quantize:
        x = ops.quantize(x)
    return x


def degrade(
    img: torch.Tensor, cfg: DegradationConfig, generator: torch.Generator
) -> tuple[torch.Tensor, DegradationParams]:
    """Sample then apply: returns (lq (3, H, W) in [0, 1], the params that made it)."""
    params = sample_params(cfg, generator)
    return apply(img, params), params


@dataclass(frozen=True)
class DegradationRecord:
    """One line of a frozen test set's ``params.jsonl``: which image, which seed, which preset, what was drawn."""

    name: str
    seed: int
    preset: str
    params: DegradationParams
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "seed": self.seed,
                "preset": self.preset,
                "params": self.params.to_dict(),
                **self.extra,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> DegradationRecord:
        d = json.loads(line)
        name, seed, preset_, params = d.pop("name"), d.pop("seed"), d.pop("preset"), d.pop("params")
        return cls(name=name, seed=int(seed), preset=preset_, params=DegradationParams.from_dict(params), extra=d)
