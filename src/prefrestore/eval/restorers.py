"""What ``prefrestore eval`` can restore with: the bicubic, classical and Real-ESRGAN baselines or a prefrestore model.

A restorer has ``resolution`` (S) and ``restore(faces: list of uint8 (S, S, 3) RGB, *, seed) -> list of uint8
(S, S, 3) RGB``: :class:`prefrestore.restore.pipeline.Restorer`, the contract of :func:`prefrestore.restore.api.load_restorer`. The
harness passes the seed on every call, resizes each LQ to S (bicubic) before and each output to the reference size
(bicubic) after, so a restorer never sees other sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..restore.pipeline import Restorer


@dataclass
class BicubicRestorer:
    """The "bicubic" baseline: the LQ upsampled (bicubic) to the output size; seed-independent."""

    capabilities: ClassVar[frozenset[str]] = frozenset()  # no fidelity dial, one seed per call
    resolution: int

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
        # The harness already resized the LQ to ``resolution`` with bicubic: that is the whole baseline.
        return [np.array(f, copy=True) for f in faces]


@dataclass
class ClassicalRestorer:
    """The "classical" baseline: bicubic, then OpenCV's non-local-means colour denoising, then an unsharp mask.

    Defaults picked on training faces only: ``tools/tune_classical.py`` over 40 faces of the corpus' train split x 2
    seeds x the photo and paper degradations at 128 px (the test faces were never used) gave h 6, amount 0.5,
    sigma 3 the best mean PSNR-Y (26.75 / 23.57 dB; bicubic 26.34 / 23.19 on the same pairs).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()  # no fidelity dial, one seed per call
    resolution: int
    h: float = 6.0
    """NL-means luminance strength (0-255 scale); hColor = h."""
    amount: float = 0.5
    """Unsharp-mask gain: out = img + amount * (img - gaussian(img, sigma))."""
    sigma: float = 3.0
    template: int = 5
    search: int = 15

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
        import cv2

        out = []
        for f in faces:
            bgr = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR)  # OpenCV's order, inside this call only
            if self.h > 0:
                bgr = cv2.fastNlMeansDenoisingColored(bgr, None, self.h, self.h, self.template, self.search)
            x = bgr.astype(np.float32)
            if self.amount > 0:
                x = x + self.amount * (x - cv2.GaussianBlur(x, (0, 0), self.sigma))
            out.append(cv2.cvtColor(np.clip(x + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB))
        return out


@dataclass
class RealESRGANRestorer:
    """The "realesrgan" baseline: RealESRGAN_x4plus on the (already S-sized) LQ, x4, then an area reduction back to
    S, as face-restoration papers run a general-purpose upscaler on aligned faces. Needs the converted weights
    (``prefrestore convert-realesrgan --download``); about 15 s per 128 px face on 2 CPU cores."""

    capabilities: ClassVar[frozenset[str]] = frozenset()  # no fidelity dial, one seed per call
    resolution: int
    device: str = "cpu"
    upsampler: object | None = None
    """A :class:`prefrestore.restore.realesrgan.RealESRGANUpsampler`; None builds the converted x4plus on ``device``."""

    def __post_init__(self) -> None:
        if self.upsampler is None:
            from ..restore import realesrgan

            self.upsampler = realesrgan.build(device=self.device, tile=0)

    def restore(self, faces: Sequence[np.ndarray], *, seed: int = 0) -> list[np.ndarray]:
        import torch
        from PIL import Image

        from ..restore.realesrgan import upscale_tiled

        up = self.upsampler
        out = []
        for f in faces:
            x = torch.from_numpy(np.ascontiguousarray(f).transpose(2, 0, 1)).float()[None] / 255.0  # (1, 3, S, S)
            with torch.no_grad():
                y = upscale_tiled(
                    up.model, x.to(up.device, up.dtype), tile=0, overlap=0, scale=up.scale, progress=False
                )
            sr = (y[0].float().clamp(0, 1) * 255.0 + 0.5).byte().permute(1, 2, 0).cpu().numpy()  # (4S, 4S, 3)
            out.append(np.asarray(Image.fromarray(sr).resize((f.shape[1], f.shape[0]), Image.BOX)))
        return out


BASELINES = ("bicubic", "classical", "realesrgan")


@dataclass(frozen=True)
class RestorerSpec:
    """How to build the restorer; recorded in the run's settings."""

    model: str
    device: str = "cpu"
    steps: int | None = None
    guidance_scale: float | None = None
    deterministic: bool = True
    batch_size: int = 8


def build_pipeline(spec: RestorerSpec, *, output_size: int):
    """-> the :class:`prefrestore.restore.loaded.Pipeline` eval restores with (its ``restore_crops``, no detector,
    no identity scorer): ``bicubic`` / ``classical`` / ``realesrgan`` -> the baselines at ``output_size``;
    anything else -> the model (:func:`~prefrestore.restore.loaded.load_pipeline`)."""
    from ..restore.loaded import Pipeline, load_pipeline
    from ..restore.options import RestoreSettings
    from ..restore.pipeline import PipelineConfig

    baselines = {"bicubic": BicubicRestorer, "classical": ClassicalRestorer, "realesrgan": RealESRGANRestorer}
    if spec.model in baselines:
        kw = {"device": spec.device} if spec.model == "realesrgan" else {}
        restorer = baselines[spec.model](resolution=output_size, **kw)
        return Pipeline(restorer, config=PipelineConfig(batch_size=spec.batch_size), device=spec.device)
    settings = RestoreSettings.from_flat(
        {
            "model": spec.model,
            "device": spec.device,
            "steps": spec.steps,
            "guidance_scale": spec.guidance_scale,
            "batch_size": spec.batch_size,
            "identity": "off",
        }
    )
    return load_pipeline(settings, detector=False, deterministic=spec.deterministic)


def build_restorer(spec: RestorerSpec, *, output_size: int) -> Restorer:
    """The restorer of :func:`build_pipeline`."""
    return build_pipeline(spec, output_size=output_size).restorer
