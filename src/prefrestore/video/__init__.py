"""Video restoration: streamed decode/encode (PyAV), face tracks, temporal consistency, resumable runs.

``restore_video(path, out_path, restorer, detector, VideoConfig(...))`` restores one file; ``plan_videos`` and
``run_videos`` are what ``prefrestore restore`` uses for the videos among its inputs. Needs ``pip install
prefrestore[video]`` (PyAV, FFmpeg inside the wheel).
"""

from .files import find_videos, plan_videos, run_videos
from .io import VideoInfo, is_video, probe
from .run import RestorationFailed, VideoConfig, restore_video
from .temporal import BLEND_MODES, TemporalBlender
from .track import TrackConfig, Tracker

__all__ = [
    "BLEND_MODES", "RestorationFailed", "TemporalBlender", "TrackConfig", "Tracker", "VideoConfig", "VideoInfo",
    "find_videos", "is_video", "plan_videos", "probe", "restore_video", "run_videos",
]
