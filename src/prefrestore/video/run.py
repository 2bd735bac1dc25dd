"""Restore a video: a thin streaming driver over the photo pipeline's stages.

    decode (io.py) -> scene cut / detect (every frame or every ``detect_every``) -> track and smooth (track.py)
    -> align (faces/align.py) -> [blend inputs] -> restore_controlled (control.py: --fidelity and --color-fix;
    batched over a window of frames)
    -> [blend outputs] (temporal.py) -> compose = upscale + paste back (pipeline.py) -> encode a segment (io.py)

Memory: at most ``window`` decoded frames and their faces are alive at once, whatever the clip's length.

Consistency: every face of every frame is restored with the run's seed (the restorer gives each face its own
generator seeded with it) and a deterministic integrator, so an unchanged crop restores to the same pixels;
smoothed landmarks make a still face's crop unchanged up to the input's own noise, which temporal blending removes.

Resume: frames are encoded in segments of ``segment_frames``; after each segment the segment file is renamed into
place and the state (frame index, tracks, blend buffers, report counters) is written atomically to
``work_dir/state.json`` (+ ``blend.npz``). Running the same command again skips the finished segments (decoding
them without processing), continues from the saved state, and yields the same file as an uninterrupted run; the
final file is muxed under a temporary name and renamed, so the output name never holds a half-written file.
A state written with other settings or for another version of the input is discarded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..faces.align import align
from ..faces.detect import FaceDetector, select_faces
from ..faces.paste import BackgroundUpsampler, DetailPlan, build_upsampler
from ..faces.types import RestoredFace
from ..io.io_safety import shown
from ..io.photo_io import Photo
from ..restore.control import Scorers, restore_controlled
from ..restore.options import RestoreOptions
from ..restore.pipeline import Restorer, compose, output_plans
from .config import VideoConfig
from .io import Frame, SegmentWriter, VideoInfo, check_encoding, mux_final, output_format, probe, read_frames
from .temporal import TemporalBlender
from .track import Tracker

logger = logging.getLogger(__name__)
STATE_VERSION = 1


VIDEO_OPTIONS = ("fidelity", "color_fix", "min_face_size", "max_face_size", "keep_detail", "blend")
"""The restore options a video applies; the others (best-of-N, the identity guard's fallback, --faces) choose per
frame and would make a face switch between restorations from frame to frame."""


def video_options(options: RestoreOptions) -> RestoreOptions:
    """The photo options as a video applies them: one candidate (the track's seed), no identity fallback."""
    return dataclasses.replace(options, candidates=1, identity_guard="off")


class RestorationFailed(UserError):
    """The restorer failed on a video; finished segments stay in the work folder for a later resume."""


Progress = Callable[[str, int], None]  # ("frames_total", n) once, then ("frame_done", 1) per frame


@dataclass
class _State:
    segments: int = 0
    frames: int = 0
    tracker: dict | None = None
    faces_per_frame: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    resumed_at: list[int] = field(default_factory=list)
    detail: dict[str, str] = field(default_factory=dict)  # track id -> its no-loss action (faces/paste.py)


def fingerprint(path: Path, config: VideoConfig, restorer_info: dict) -> str:
    """What a saved state must match to be resumed: the input file (size, mtime), the settings, the model."""
    st = path.stat()
    blob = json.dumps(
        {
            "v": STATE_VERSION,
            "input": [str(path.resolve()), st.st_size, st.st_mtime_ns],
            "config": dataclasses.asdict(config),
            "model": restorer_info,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _load_state(work: Path, key: str, blender: TemporalBlender) -> _State:
    path = work / "state.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    if not saved or saved.get("fingerprint") != key:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        return _State()
    with np.load(work / saved["blend"], allow_pickle=False) as z:
        blender.load_state({k: z[k] for k in z.files})
    fields = {f.name for f in dataclasses.fields(_State)}
    return _State(**{k: v for k, v in saved.items() if k in fields})


def _save_state(work: Path, key: str, state: _State, blender: TemporalBlender) -> None:
    blend = f"blend_{state.segments:05d}.npz"
    np.savez(work / blend, **blender.state())
    tmp = work / "state.json.tmp"
    tmp.write_text(json.dumps({"fingerprint": key, "blend": blend, **dataclasses.asdict(state)}))
    os.replace(tmp, work / "state.json")
    for old in work.glob("blend_*.npz"):
        if old.name != blend:
            old.unlink()


def segment_path(work: Path, k: int) -> Path:
    return work / f"segment_{k:05d}.nut"


def restore_video(
    path: str | os.PathLike,
    out_path: str | os.PathLike,
    restorer: Restorer,
    detector: FaceDetector,
    config: VideoConfig | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    restorer_info: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Restore every face of a video into ``out_path`` (created under a temporary name, then renamed) -> the report.

    work_dir: where segments and the resume state live (default: next to the output, ``.NAME.partial/``); it is
        removed when the video is done. Raises UserError (one line) for unreadable inputs and RestorationFailed
        when the restorer fails.
    """
    config = config or VideoConfig()
    path, out_path = Path(path), Path(out_path)
    if out_path.exists() and out_path.resolve() == path.resolve():
        raise UserError(f"{path}: the output would overwrite the input; choose another -o")
    if out_path.is_dir():
        raise UserError(
            f"{shown(out_path)}: the output is a folder, not a file; remove or rename that folder, or "
            "choose another -o"
        )
    # the encoder, preset and output container are checked by a tiny in-memory encode before anything is decoded
    check_encoding(config.codec, config.crf, config.preset, containers=(output_format(path),))
    work = Path(work_dir) if work_dir else out_path.with_name(f".{out_path.name}.partial")
    fresh = not work.exists()
    try:
        return _restore(path, out_path, work, restorer, detector, config, restorer_info, progress)
    except BaseException:
        if fresh and not any(work.glob("segment_*.nut")):  # nothing to resume: leave nothing behind
            shutil.rmtree(work, ignore_errors=True)
        raise


def _restore(
    path: Path,
    out_path: Path,
    work: Path,
    restorer: Restorer,
    detector: FaceDetector,
    config: VideoConfig,
    restorer_info: dict | None,
    progress: Progress | None,
) -> dict:
    """:func:`restore_video` once its arguments are checked: decode, restore and encode into ``work``, mux."""
    info = probe(path)
    key = fingerprint(path, config, restorer_info or {})
    blender = TemporalBlender(config.temporal, config.temporal_weight)
    state = _load_state(work, key, blender)
    if state.frames:
        state.resumed_at.append(state.frames)
        logger.info("%s: resuming at frame %d (%d segments done)", path, state.frames, state.segments)
    tracker = Tracker.from_state(state.tracker) if state.tracker else Tracker(config.track)
    run = _VideoRun(
        path, config, restorer, detector, tracker, blender, build_upsampler(config.pipeline.upsampler), state, progress
    )
    if progress:
        progress("frames_total", info.frames)
        if state.frames:
            progress("frame_done", state.frames)

    w, h = info.upright_size
    out_size = (
        max(2, round(w * config.pipeline.upscale)) // 2 * 2,
        max(2, round(h * config.pipeline.upscale)) // 2 * 2,
    )
    frames = read_frames(path, info, start=state.frames)
    t0 = time.perf_counter()
    if state.frames:
        prev = next(frames)  # the frame before the first unprocessed one: tracking and cut detection compare with it
        tracker.prime(prev.rgb)
    run.encode_segments(frames, work, key, info, out_size, t_decode=time.perf_counter() - t0)
    if state.frames == 0:
        raise UserError(f"{path}: no decodable video frame ({info.codec}); the file is corrupt or truncated")
    t0 = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp{out_path.suffix}")
    try:
        mux_final([segment_path(work, k) for k in range(state.segments)], info, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    run.timed("mux", t0)
    report = _report(info, out_path, out_size, config, state, tracker)
    shutil.rmtree(work, ignore_errors=True)
    return report


@dataclass
class _VideoRun:
    """One run of :func:`restore_video`: windows of frames restored into resumable segments, each stage timed
    into ``state.timings``."""

    path: Path
    config: VideoConfig
    restorer: Restorer
    detector: FaceDetector
    tracker: Tracker
    blender: TemporalBlender
    upsampler: BackgroundUpsampler
    state: _State
    progress: Progress | None

    def timed(self, stage: str, t0: float) -> None:
        timings = self.state.timings
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0

    def encode_segments(
        self,
        frames: Iterator[Frame],
        work: Path,
        key: str,
        info: VideoInfo,
        out_size: tuple[int, int],
        *,
        t_decode: float,
    ) -> None:
        """Encode the remaining frames into segments of ``config.segment_frames``, saving the resume state after
        each; ``t_decode``: decoding time spent so far, added to the timings with the first segment."""
        config, state = self.config, self.state
        done = False
        while not done:
            k = state.segments
            part = segment_path(work, k).with_suffix(".part")
            count = 0
            with SegmentWriter(
                part, info, out_size, codec=config.codec, crf=config.crf, preset=config.preset
            ) as writer:
                while count < config.segment_frames:
                    window: list[Frame] = []
                    t0 = time.perf_counter()
                    for fr in frames:
                        window.append(fr)
                        if len(window) >= min(config.window, config.segment_frames - count):
                            break
                    t_decode += time.perf_counter() - t0
                    if not window:
                        done = True
                        break
                    self.process(window, writer)
                    count += len(window)
            if count == 0:
                part.unlink(missing_ok=True)
                break
            os.replace(part, segment_path(work, k))
            state.segments, state.frames = k + 1, state.frames + count
            state.tracker = self.tracker.state()
            state.timings["decode"] = state.timings.get("decode", 0.0) + t_decode
            t_decode = 0.0
            _save_state(work, key, state, self.blender)

    def process(self, window: list[Frame], writer: SegmentWriter) -> None:
        """Detect, track, align, restore and paste one window of frames, then encode them in order."""
        faces_of, crops = self._align(window)
        t0 = time.perf_counter()
        pipeline = self.config.pipeline
        try:
            outcomes = restore_controlled(
                self.restorer,
                crops,
                video_options(pipeline.options),
                seed=pipeline.seed,
                batch_size=pipeline.batch_size,
                scorers=Scorers(identity=None),
            )
            restored = [o.restored for o in outcomes]
        except Exception as err:  # the video fails; never encode unrestored faces as restored
            logger.debug("restoration failed", exc_info=True)
            raise RestorationFailed(
                f"{self.path}: restoration failed at frame {window[0].index} "
                f"({type(err).__name__}: {err}); rerun the command to resume"
            ) from err
        self.timed("restore", t0)
        offset = 0
        for fr, aligned in zip(window, faces_of, strict=True):
            t0 = time.perf_counter()
            faces = [
                RestoredFace(a, self.blender.after(tid, restored[offset + i])) for i, (tid, a) in enumerate(aligned)
            ]
            offset += len(aligned)
            photo = Photo(color=fr.rgb)
            plans = output_plans(photo, faces, upscale=pipeline.upscale, blend=pipeline.blend)
            plans = [self.steady(tid, p) for (tid, _), p in zip(aligned, plans, strict=True)]
            out = compose(
                photo, faces, upscale=pipeline.upscale, blend=pipeline.blend, upsampler=self.upsampler, plans=plans
            ).color
            out = out[: out.shape[0] // 2 * 2, : out.shape[1] // 2 * 2]  # yuv420p needs even sizes
            self.timed("paste", t0)
            t0 = time.perf_counter()
            writer.write(out, fr.pts, fr.duration)
            self.timed("encode", t0)
            if self.progress:
                self.progress("frame_done", 1)

    def steady(self, track: int, plan: DetailPlan) -> DetailPlan:
        """A track keeps the no-loss action of its first frame (``state.detail``, resumed with the rest), so a face
        near a threshold does not switch between restored and kept from frame to frame."""
        first = self.state.detail.setdefault(str(track), plan.action)
        return plan if first == plan.action else dataclasses.replace(plan, action=first)

    def _align(self, window: list[Frame]) -> tuple[list[list], list[np.ndarray]]:
        """Detect (every ``detect_every`` frames and at cuts), track and align the faces of a window -> (per frame
        its (track id, aligned face) pairs, every face's crop to restore, in order)."""
        config, tracker, blender = self.config, self.tracker, self.blender
        faces_of: list[list] = []
        crops: list[np.ndarray] = []
        for fr in window:
            t0 = time.perf_counter()
            dets = None
            if fr.index % config.detect_every == 0 or tracker.is_cut(fr.rgb):
                dets, _ = select_faces(
                    self.detector.detect(fr.rgb), (fr.rgb.shape[1], fr.rgb.shape[0]), config.pipeline.select
                )
            self.timed("detect", t0)
            t0 = time.perf_counter()
            tracked = tracker.update(fr.index, fr.rgb, dets)
            blender.keep_only({t.id for t in tracker.tracks})
            aligned = []
            for tf in tracked:
                face = align(fr.rgb, tf.detection, self.restorer.resolution)
                crop, reference = blender.before(tf.track, face.crop)
                crops.append(crop)
                aligned.append((tf.track, dataclasses.replace(face, crop=reference)))
            faces_of.append(aligned)
            self.state.faces_per_frame.append(len(aligned))
            self.timed("track_align", t0)
        return faces_of, crops


def _report(
    info: VideoInfo, out_path: Path, out_size: tuple[int, int], config: VideoConfig, state: _State, tracker: Tracker
) -> dict:
    seconds = sum(v for k, v in state.timings.items())
    return {
        "input": str(info.path),
        "output": str(out_path),
        "status": "restored" if any(state.faces_per_frame) else "no_face",
        "frames": state.frames,
        "fps": float(info.rate),
        "frame_rate": str(info.rate),
        "duration_s": info.duration,
        "input_size": list(info.upright_size),
        "output_size": list(out_size),
        "rotation": info.rotation,
        "codec": {"input": info.codec, "output": config.codec, "crf": config.crf, "preset": config.preset},
        "streams_copied": list(info.copied),
        "streams_dropped": list(info.dropped),
        "detect_every": config.detect_every,
        "temporal": {"mode": config.temporal, "weight": config.temporal_weight},
        "scene_cuts": list(tracker.cuts),
        "tracks": [
            {
                "id": k,
                "first_frame": s.first,
                "last_frame": s.last,
                "frames": s.detected + s.bridged,
                "detected": s.detected,
                "bridged": s.bridged,
            }
            for k, s in sorted(tracker.stats.items())
        ],
        "faces_per_frame": list(state.faces_per_frame),
        "detail": dict(state.detail),  # per track: the no-loss rule's action (docs/no-loss.md)
        "segments": state.segments,
        "resumed_at_frames": list(state.resumed_at),
        "timings_s": {k: round(v, 3) for k, v in sorted(state.timings.items())},
        "frames_per_s": round(state.frames / seconds, 3) if seconds else None,
    }
