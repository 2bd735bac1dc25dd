"""Pure, seeded, recorded degradations (docs/style.md P13): float32 (3, H, W) RGB in [0, 1] in and out.

``sample_params(cfg, generator) -> DegradationParams`` draws, ``apply(img, params) -> lq`` applies.
"""

from .chain import (
    PRESETS,
    ColorJitterParams,
    DegradationConfig,
    DegradationParams,
    DegradationRecord,
    PresetName,
    apply,
    degrade,
    preset,
    sample_params,
    scaled,
)

__all__ = [
    "PRESETS",
    "ColorJitterParams",
    "DegradationConfig",
    "DegradationParams",
    "DegradationRecord",
    "PresetName",
    "apply",
    "degrade",
    "preset",
    "sample_params",
    "scaled",
]
