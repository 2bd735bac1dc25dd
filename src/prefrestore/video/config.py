"""The settings of one video run, :class:`VideoConfig`: importable without torch or PyAV, so the command line can
build its flags (and their defaults) from it at start-up. The encoder settings are checked by
:func:`prefrestore.video.io.check_encoding`, which needs PyAV."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .temporal import BlendMode
from .track import TrackConfig

if TYPE_CHECKING:
    from ..restore.pipeline import PipelineConfig


def _default_pipeline() -> PipelineConfig:
    from ..restore.pipeline import PipelineConfig

    return PipelineConfig()


@dataclass(frozen=True)
class VideoConfig:
    """Settings of one video run.

    pipeline: upscale, face selection, blending, background resampler, batch size and seed (as for photos).
    temporal / temporal_weight: see ``video/temporal.py``; weight is the newest frame's share (1 = no blending).
    detect_every: run the detector on frames whose index is a multiple of this (and on scene cuts); tracks carry
        the faces in between. 1 = every frame.
    codec / crf / preset: encoder (an FFmpeg encoder name), its constant-rate-factor quality (lower = better) and,
        for x264/x265, its speed preset (slower = smaller files at the same quality).
    segment_frames: frames per resumable segment. window: frames restored together (bounds memory).
    """

    pipeline: PipelineConfig = field(default_factory=_default_pipeline)
    track: TrackConfig = field(default_factory=TrackConfig)
    temporal: BlendMode = "both"
    temporal_weight: float = 0.1
    detect_every: int = 1
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    segment_frames: int = 64
    window: int = 8

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every={self.detect_every} must be >= 1")
        if not 0 <= self.crf <= 63:
            raise ValueError(f"crf={self.crf} must be in 0..63")
        if self.segment_frames < 1 or self.window < 1:
            raise ValueError("segment_frames and window must be >= 1")
