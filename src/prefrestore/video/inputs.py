"""Videos among the inputs of ``prefrestore restore``: finding them by content, naming outputs, running them.

Outputs: ``OUTPUT/restored_videos/NAME.mp4`` (``.mkv`` for Matroska/WebM inputs, which may carry streams MP4
cannot) and ``OUTPUT/reports/NAME.json``; work in progress lives in ``OUTPUT/restored_videos/.NAME.mp4.partial/``
until the video is done. A video whose output exists is skipped unless ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..faces.detect import FaceDetector
from ..restore.file_run import FileItem, OutputLayout, Plan, write_report
from ..restore.pipeline import Progress, Restorer
from .config import VideoConfig
from .io import is_video, output_format
from .run import restore_video

logger = logging.getLogger(__name__)


def find_videos(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Video files among inputs (files, folders non-recursively, glob patterns), detected by content."""
    found: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            try:
                found += sorted(q for q in p.iterdir() if q.is_file() and is_video(q))
            except OSError:
                continue  # plan_files reports unreadable folders
        elif p.is_file():
            found += [p] if is_video(p) else []
        elif any(c in str(raw) for c in "*?["):
            found += sorted(q for q in map(Path, glob.glob(str(raw))) if q.is_file() and is_video(q))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class VideoPlan:
    todo: tuple[FileItem, ...]
    skipped: tuple[FileItem, ...]


def video_output(layout: OutputLayout, item: FileItem) -> Path:
    ext = ".mkv" if output_format(item.path) == "matroska" else ".mp4"
    return layout.root / "restored_videos" / f"{item.name}{layout.suffix}{ext}"


def plan_videos(inputs: Sequence[str | os.PathLike], photos: Plan, layout: OutputLayout) -> tuple[Plan, VideoPlan]:
    """Split the videos out of a photo plan (``file_run.plan_files``) -> (photo plan without them, video plan)."""
    videos = find_videos(inputs)
    vset = {v.resolve() for v in videos}
    keep = lambda items: tuple(i for i in items if i.path.resolve() not in vset)  # noqa: E731
    photos = dataclasses.replace(photos, todo=keep(photos.todo), skipped=keep(photos.skipped))
    taken = {i.name for i in photos.todo + photos.skipped}
    todo, skipped = [], []
    for v in videos:
        name = v.stem
        while name in taken:
            name = f"{name}_{v.suffix.lstrip('.').lower() or 'video'}"
        taken.add(name)
        item = FileItem(v, name)
        (skipped if video_output(layout, item).exists() and not layout.overwrite else todo).append(item)
    return photos, VideoPlan(tuple(todo), tuple(skipped))


def run_videos(
    plan: VideoPlan,
    restorer: Restorer,
    detector: FaceDetector,
    layout: OutputLayout,
    config: VideoConfig,
    *,
    run_info: dict | None = None,
    progress: Progress | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Restore each video of the plan -> (restored input paths, [(input, message)] failed). A failure is reported
    (``progress("failed", 0, message)``) and the next video goes on; its finished segments stay for a resume."""
    restored, failed = [], []
    for item in plan.todo:
        out = video_output(layout, item)
        report: dict = {"input": str(item.path), **(run_info or {})}

        def frame_progress(event: str, count: int, name: str = item.name) -> None:
            if progress:
                progress(event, count, name)

        try:
            report.update(
                restore_video(
                    item.path, out, restorer, detector, config, restorer_info=run_info, progress=frame_progress
                )
            )
        except UserError as err:
            failed.append((str(item.path), str(err)))
            report.update(status="failed", error=str(err))
            if progress:
                progress("failed", 0, str(err))
        else:
            restored.append(str(item.path))
        try:
            write_report(layout, item, report)
        except OSError as err:
            failed.append((str(item.path), f"{item.path}: cannot write the report ({err.strerror or err})"))
    return restored, failed
