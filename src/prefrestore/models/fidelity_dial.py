"""The fidelity dial: one number F in [0, 1] mapped onto the model's own sampling controls.

F = 1 is the result closest to the input face, F = 0 the most generative one (the direction of CodeFormer's ``w``;
GFPGAN has no such knob and A1111's "visibility" runs the other way). F picks a point on a calibrated path of
*anchors*, each a setting of

* ``start_sigma``: where sampling starts on the noised LQ latent (small = close to the input, 1 = pure noise);
* ``guidance_scale``: classifier-free guidance against the all-zeros condition (1 = none);
* ``input_blend``: b in [0, 1), the final mix ``(1 - b) * restored + b * input`` in model space.

Between two anchors the three values are interpolated linearly. A table is *calibrated* by
``tools/calibrate_fidelity.py`` on training faces (never the test faces): it measures, for candidate settings, how
close each restoration is to its input (PSNR-Y to the LQ), keeps a chain of settings along which that closeness
strictly increases, and places each anchor at F = its closeness normalised to [0, 1] (so equal steps in F are equal
steps in measured closeness, and F is monotonic by construction on the calibration faces).

Where a model's table comes from (:func:`find_table`), first found wins:

1. ``fidelity.json`` in the model folder (what the calibration script writes beside ``config.json``);
2. ``prefrestore/assets/fidelity/<first 16 hex of sha256(model.safetensors)>.json``: tables calibrated in this
   repository for weights that ship with it (a table never applies to other weights);
3. :func:`generic_table`, built from the model's ``SamplingDefaults`` (uncalibrated; logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TABLE_FILE = "fidelity.json"
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "fidelity"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FidelityPoint:
    """One anchor of the dial. ``fidelity`` in [0, 1]; ``start_sigma`` in (0, 1]; ``guidance_scale`` >= 0;
    ``input_blend`` in [0, 1)."""

    fidelity: float
    start_sigma: float
    guidance_scale: float
    input_blend: float = 0.0

    def __post_init__(self) -> None:
        if not (
            0.0 <= self.fidelity <= 1.0
            and 0.0 < self.start_sigma <= 1.0
            and self.guidance_scale >= 0.0
            and 0.0 <= self.input_blend < 1.0
        ):
            raise ValueError(
                f"bad fidelity anchor {self}: need fidelity in [0, 1], start_sigma in (0, 1], "
                "guidance_scale >= 0, input_blend in [0, 1)"
            )


@dataclass(frozen=True)
class FidelityTable:
    """Anchors sorted by fidelity, the first at 0 and the last at 1. ``default_fidelity``: the F whose setting is
    the model's own sampling defaults (None when the path does not pass through them). ``calibrated``: whether a
    calibration run produced it; ``source``: where it was loaded from (for reports)."""

    points: tuple[FidelityPoint, ...]
    default_fidelity: float | None = None
    calibrated: bool = False
    source: str = "generic"

    def __post_init__(self) -> None:
        f = [p.fidelity for p in self.points]
        if len(f) < 2 or f[0] != 0.0 or f[-1] != 1.0 or any(b <= a for a, b in zip(f, f[1:], strict=False)):
            raise ValueError(f"fidelity anchors must increase strictly from 0 to 1, got {f}")

    def at(self, fidelity: float) -> FidelityPoint:
        """F in [0, 1] -> the interpolated setting (a FidelityPoint whose ``fidelity`` is F)."""
        if not 0.0 <= fidelity <= 1.0:
            raise ValueError(f"fidelity={fidelity} must be in [0, 1] (1 = closest to the input, 0 = most generative)")
        pts = self.points
        for lo, hi in zip(pts, pts[1:], strict=False):
            if fidelity <= hi.fidelity:
                t = (fidelity - lo.fidelity) / (hi.fidelity - lo.fidelity)
                return FidelityPoint(
                    fidelity,
                    _mix(lo.start_sigma, hi.start_sigma, t),
                    _mix(lo.guidance_scale, hi.guidance_scale, t),
                    _mix(lo.input_blend, hi.input_blend, t),
                )
        raise AssertionError("unreachable: the last anchor is at 1")

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "default_fidelity": self.default_fidelity,
            "calibrated": self.calibrated,
            "points": [asdict(p) for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: dict, *, source: str = "dict") -> FidelityTable:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source}: fidelity table format_version {d.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; re-run tools/calibrate_fidelity.py"
            )
        keys = {"fidelity", "start_sigma", "guidance_scale", "input_blend"}
        points = tuple(FidelityPoint(**{k: float(p[k]) for k in keys if k in p}) for p in d["points"])
        return cls(points, d.get("default_fidelity"), bool(d.get("calibrated", False)), source)

    @classmethod
    def load(cls, path: str | Path) -> FidelityTable:
        return cls.from_dict(json.loads(Path(path).read_text()), source=str(path))


def _mix(a: float, b: float, t: float) -> float:
    return a + t * (b - a)


def generic_table(start_sigma: float, guidance_scale: float) -> FidelityTable:
    """An uncalibrated table around a model's defaults: F = 0.5 is the default setting, F = 0 starts from twice its
    sigma (at most 1), F = 1 blends half of the input into the default restoration."""
    s0 = float(start_sigma)
    points = (
        FidelityPoint(0.0, min(1.0, 2 * s0), guidance_scale),
        FidelityPoint(0.5, s0, guidance_scale),
        FidelityPoint(1.0, s0, guidance_scale, 0.5),
    )
    return FidelityTable(points, default_fidelity=0.5, calibrated=False, source="generic")


_WHOLE = 64 << 20  # files up to this size are hashed whole; larger ones by their size, first and last 16 MiB
_END = 16 << 20


def weights_digest(model_dir: str | Path) -> str | None:
    """First 16 hex digits of the sha256 of the folder's weights (``model.safetensors``, else its shard index).
    A file above 64 MiB is hashed by its size and its first and last 16 MiB (a 3.6 GB model in ~0.1 s)."""
    d = Path(model_dir)
    for name in ("model.safetensors", "model.safetensors.index.json"):
        p = d / name
        if p.is_file():
            h = hashlib.sha256()
            size = p.stat().st_size
            with p.open("rb") as f:
                if size <= _WHOLE:
                    h.update(f.read())
                else:
                    h.update(str(size).encode())
                    h.update(f.read(_END))
                    f.seek(max(size - _END, 0))
                    h.update(f.read())
            return h.hexdigest()[:16]
    return None


def asset_path(digest: str) -> Path:
    return ASSET_DIR / f"{digest}.json"


def find_table(model_dir: str | Path | None, start_sigma: float, guidance_scale: float) -> FidelityTable:
    """The model's fidelity table (see the module docstring for the search order)."""
    if model_dir is not None:
        beside = Path(model_dir) / TABLE_FILE
        if beside.is_file():
            return FidelityTable.load(beside)
        digest = weights_digest(model_dir)
        if digest and asset_path(digest).is_file():
            return FidelityTable.load(asset_path(digest))
    logger.warning(
        "no calibrated fidelity table for this model: --fidelity uses a generic mapping around its "
        "sampling defaults (calibrate with tools/calibrate_fidelity.py)"
    )
    return generic_table(start_sigma, guidance_scale)


def chain_anchors(settings: Sequence[tuple[float, float, float]], closeness: Sequence[float]) -> list[int]:
    """Indices of the calibration settings kept on the dial: walking ``settings`` in the order given (most generative
    first), a setting is kept when its measured ``closeness`` to the input is strictly above the last kept one's."""
    kept: list[int] = []
    for i, c in enumerate(closeness):
        if not kept or c > closeness[kept[-1]]:
            kept.append(i)
    return kept


def table_from_chain(
    settings: Sequence[tuple[float, float, float]],
    closeness: Sequence[float],
    default: tuple[float, float, float] | None = None,
) -> FidelityTable:
    """(start_sigma, guidance_scale, input_blend) settings and their closeness to the input -> a calibrated table:
    F = (closeness - min) / (max - min) along the strictly increasing chain (:func:`chain_anchors`)."""
    kept = chain_anchors(settings, closeness)
    if len(kept) < 2:
        raise ValueError("calibration: fewer than two settings with increasing closeness to the input")
    lo, hi = closeness[kept[0]], closeness[kept[-1]]
    points = []
    for j, i in enumerate(kept):
        f = 0.0 if j == 0 else 1.0 if j == len(kept) - 1 else (closeness[i] - lo) / (hi - lo)
        s, g, b = settings[i]
        points.append(FidelityPoint(round(f, 4), s, g, b))
    default_f = next(
        (p.fidelity for p, i in zip(points, kept, strict=True) if default and settings[i] == default), None
    )
    return FidelityTable(tuple(points), default_fidelity=default_f, calibrated=True, source="calibration")
