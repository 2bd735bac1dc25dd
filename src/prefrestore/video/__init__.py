"""Video restoration: streamed decode/encode (PyAV), face tracks, temporal consistency, resumable runs.

``restore_video(path, out_path, restorer, detector, VideoConfig(...))`` restores one file; ``plan_videos`` and
``run_videos`` are what ``prefrestore restore`` uses for the videos among its inputs. Needs ``pip install
prefrestore[video]`` (PyAV, FFmpeg inside the wheel).

The names below are imported on first use (PEP 562), so ``prefrestore.video.config`` (what the command line reads
its flags from) loads without torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "find_videos": "inputs",
    "plan_videos": "inputs",
    "run_videos": "inputs",
    "VideoInfo": "io",
    "is_video": "io",
    "probe": "io",
    "check_encoding": "io",
    "RestorationFailed": "run",
    "restore_video": "run",
    "VideoConfig": "config",
    "BLEND_MODES": "temporal",
    "TemporalBlender": "temporal",
    "TrackConfig": "track",
    "Tracker": "track",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
