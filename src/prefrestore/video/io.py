"""Video files through PyAV (FFmpeg inside the wheel): sniffing, probing, streamed decoding, segment encoding and
the final mux that copies audio and subtitles untouched.

Frames leave this module as uint8 (H, W, 3) RGB arrays, **upright**: a stream with a display rotation (phone
videos) is decoded and turned by ``np.rot90`` so faces stand up for the detector; :func:`from_upright` turns the
restored frame back before encoding and the output carries the same rotation metadata, so players show both files
the same way. Timestamps are the stream's own (``pts`` in ``time_base`` units), passed through unchanged, so
variable frame rates survive.

Segments: the restored video is encoded in independent pieces (each a fresh encoder, starting with a keyframe,
no B-frames) that :func:`mux_final` concatenates by copying packets; that is what makes a killed run resumable
with a byte-identical result (``video/run.py``). No B-frames keeps decode order equal to display order across
segment boundaries (x264 at CRF 18 costs a few percent of size for it).
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError

logger = logging.getLogger(__name__)

# Container signatures (offset, bytes): video is detected by content, never by extension.
_SIGNATURES = (
    (4, b"ftyp"),  # MP4 / MOV / M4V / 3GP (ISO base media)
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (4, b"free"),  # old QuickTime files start with any of these atoms
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream (VOB, .mpg)
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),  # ASF / WMV
)
# Codecs an MP4 file can carry when copied (FFmpeg's mov muxer in MP4 mode); other streams are left out with a note.
MP4_COPYABLE = {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac", "mov_text"}
# Encoder options per codec: quality from --crf, speed from --preset (x264/x265), no B-frames (module docstring).
CODEC_OPTIONS = {
    "libx264": {"x264-params": "bframes=0"},
    "libx265": {"x265-params": "bframes=0:log-level=error"},
    "libaom-av1": {"cpu-used": "6"},
    "libsvtav1": {"preset": "8"},
    "libvpx-vp9": {"deadline": "good", "cpu-used": "4"},
}


def is_video(path: str | os.PathLike) -> bool:
    """True when the file's first bytes are a known video container (MP4/MOV, MKV/WebM, AVI, MPEG-TS/PS, FLV,
    ASF). False for images, other files and unreadable ones (those fail later with their own message)."""
    try:
        with open(path, "rb") as f:
            head = f.read(377)
    except OSError:
        return False
    if any(head[o : o + len(s)] == s for o, s in _SIGNATURES):
        return not (head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"))
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    return len(head) >= 377 and head[0] == head[188] == 0x47  # MPEG transport stream: a sync byte every 188 bytes


def output_format(path: str | os.PathLike) -> str:
    """The container a restoration of this video is written in: ``"matroska"`` for Matroska/WebM inputs (which
    may carry streams MP4 cannot), ``"mp4"`` for every other one (decided from the first bytes, as by content)."""
    try:
        with open(path, "rb") as f:
            return "matroska" if f.read(4) == b"\x1a\x45\xdf\xa3" else "mp4"
    except OSError:
        return "mp4"  # unreadable: probe() says why


def _open(path: str | os.PathLike):
    try:
        import av
    except ImportError:
        raise UserError(f"{path}: restoring videos needs PyAV; pip install 'prefrestore[video]'") from None

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path}: cannot open the video ({_why(err)}); is it complete? re-download or re-export it"
        ) from None


def _why(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.split(":")[0].strip() if isinstance(text, str) else str(err)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file carries. size: coded (width, height) before rotation; rotation: degrees counterclockwise
    (FFmpeg's display matrix); rate: average frame rate; frames: the container's count (0 when unknown)."""

    path: Path
    size: tuple[int, int]
    rate: Fraction
    time_base: Fraction
    frames: int
    duration: float | None
    rotation: int
    codec: str
    container: str
    copied: tuple[str, ...] = ()  # "audio aac", "subtitle mov_text", ...
    dropped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def upright_size(self) -> tuple[int, int]:
        w, h = self.size
        return (h, w) if self.rotation % 180 else (w, h)

    @property
    def matroska(self) -> bool:
        return "matroska" in self.container or "webm" in self.container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header -> VideoInfo. Raises UserError (one line) for files FFmpeg cannot open or decode."""
    with _open(path) as c:
        if not c.streams.video:
            raise UserError(f"{path}: no video stream in this file; nothing to restore")
        vs = c.streams.video[0]
        ctx = vs.codec_context
        if not ctx.width or not ctx.height:
            raise UserError(
                f"{path}: the video stream ({ctx.name}) has no frame size; the file is corrupt or truncated"
            )
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(25)
        matroska = "matroska" in c.format.name or "webm" in c.format.name
        copied, dropped = [], []
        for s in c.streams:
            if s.index == vs.index:
                continue
            name = f"{s.type} {s.codec_context.name if s.codec_context else '?'}"
            ok = s.type in ("audio", "subtitle") and (
                matroska or (s.codec_context and s.codec_context.name in MP4_COPYABLE)
            )
            (copied if ok else dropped).append(name)
        duration = float(c.duration / 1_000_000) if c.duration else None
        rotation = _first_frame_rotation(c, vs, path)
        return VideoInfo(
            Path(path),
            (ctx.width, ctx.height),
            Fraction(rate),
            Fraction(vs.time_base),
            vs.frames or 0,
            duration,
            rotation,
            ctx.name,
            c.format.name,
            tuple(copied),
            tuple(dropped),
        )


def _first_frame_rotation(c, vs, path) -> int:
    """Decode the first frame -> its display rotation in degrees counterclockwise, a multiple of 90 in [0, 360).

    PyAV exposes the display matrix on frames, not streams; decoding one frame also proves the stream decodes."""
    import av

    try:
        for frame in c.decode(vs):
            return int(round(float(getattr(frame, "rotation", 0) or 0) / 90)) % 4 * 90
    except av.error.FFmpegError as err:
        raise UserError(
            f"{path}: cannot decode the video stream ({vs.codec_context.name}: {_why(err)}); "
            f"the file is corrupt or truncated"
        ) from None
    raise UserError(f"{path}: no decodable video frame ({vs.codec_context.name}); the file is corrupt or truncated")


def to_upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """(H, W, 3) as coded -> as displayed: turned ``rotation`` degrees counterclockwise."""
    k = rotation // 90 % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def from_upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Inverse of :func:`to_upright`."""
    k = rotation // 90 % 4
    return np.ascontiguousarray(np.rot90(rgb, -k)) if k else rgb


def frame_to_rgb(frame) -> np.ndarray:
    """A decoded av.VideoFrame -> uint8 (H, W, 3) RGB as coded.

    4:2:0 frames go through OpenCV's BT.601 conversion: libswscale's default YUV -> RGB path, which PyAV uses,
    darkens by ~1.2 levels per pass (measured on the astronaut), and a restoration must not shift the tone."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def rgb_to_frame(rgb: np.ndarray):
    """uint8 (H, W, 3) RGB, H and W even -> an av.VideoFrame in yuv420p (BT.601, limited range, as decoded)."""
    import av

    return av.VideoFrame.from_ndarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``rgb`` uint8 (H, W, 3) RGB upright; pts/duration in the stream's time_base."""

    index: int
    rgb: np.ndarray
    pts: int
    duration: int


def read_frames(path: str | os.PathLike, info: VideoInfo, *, start: int = 0) -> Iterator[Frame]:
    """Decode frames one at a time (memory does not grow with the clip). Frames before ``start`` are decoded but
    not converted to RGB, except the one just before ``start``, which resuming needs for tracking.

    Raises UserError when the stream cannot be decoded (a corrupt or truncated file) before any frame came out,
    or stops at the last decodable frame with a warning when it breaks later.
    """
    import av

    frame_dur = max(1, round(1 / (info.rate * info.time_base))) if info.rate else 1
    index = 0
    last_pts = None
    with _open(path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        try:
            for f in c.decode(vs):
                pts = f.pts if f.pts is not None else (index * frame_dur)
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # a broken timestamp: keep them increasing
                dur = int(f.duration) if getattr(f, "duration", None) else frame_dur
                last_pts = pts
                if index >= start - 1:
                    rgb = to_upright(frame_to_rgb(f), info.rotation)
                    yield Frame(index, rgb, int(pts), dur)
                index += 1
        except av.error.FFmpegError as err:
            if index == 0:
                raise UserError(
                    f"{path}: cannot decode the video stream ({info.codec}: {_why(err)}); "
                    f"the file is corrupt or truncated"
                ) from None
            logger.warning(
                "%s: decoding stopped at frame %d (%s); the rest of the file is damaged", path, index, _why(err)
            )
    if index == 0:
        raise UserError(f"{path}: no decodable video frame ({info.codec}); the file is corrupt or truncated")


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int, *, crf: int = 18, preset: str = "medium"
) -> int:
    """Encode uint8 (H, W, 3) RGB frames (even sizes) as H.264 at ``fps`` into ``path`` (no audio) -> frames written.
    For building clips (tests, benchmarks); restoring writes through :class:`SegmentWriter`."""
    import av

    n = 0
    with av.open(str(path), "w") as c:
        s = None
        for rgb in frames:
            if s is None:
                s = c.add_stream("libx264", rate=fps)
                s.width, s.height, s.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
                s.options = {"crf": str(crf), "preset": preset}
            vf = rgb_to_frame(rgb)
            vf.pts, vf.time_base = n, Fraction(1, fps)
            for p in s.encode(vf):
                c.mux(p)
            n += 1
        for p in s.encode(None) if s is not None else ():
            c.mux(p)
    return n


PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
"""The speed presets of x264 and x265 (the encoders ``--preset`` applies to)."""
_PRESET_CODECS = ("libx264", "libx265")


def _video_stream(container, codec: str, rate, time_base, size: tuple[int, int], crf: int, preset: str):
    """Add the restored video's stream to ``container``: ``codec`` in yuv420p at ``size`` (W, H), no B-frames,
    ``crf`` quality and (x264/x265) ``preset`` speed: the one encoder set-up of segments and of the up-front check."""
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.codec_context.max_b_frames = 0
    presets = {"preset": preset} if codec in _PRESET_CODECS else {}
    stream.options = {**CODEC_OPTIONS.get(codec, {}), **presets, "crf": str(crf)}
    return stream


def check_encoding(codec: str, crf: int, preset: str, *, containers: Sequence[str] = ("mp4", "matroska")) -> None:
    """Check encoder settings before anything is decoded: encode two small frames with them into an in-memory
    segment and mux that into each output container, exactly as a run does (nothing is written to disk; a few
    milliseconds). Raises a one-line UserError naming the flag: an encoder this FFmpeg lacks, one that is not a
    video encoder or cannot take yuv420p frames, a preset x264/x265 do not have, a CRF out of range, or a codec an
    output container (MP4 for most inputs, Matroska for MKV/WebM ones) cannot hold."""
    import io

    try:
        import av
    except ImportError:
        raise UserError("restoring videos needs PyAV; pip install 'prefrestore[video]'") from None

    if not 0 <= crf <= 63:
        raise UserError(f"--crf {crf}: must be in 0..63 (18 is visually lossless for H.264)")
    try:
        found = av.Codec(codec, "w")
    except ValueError:
        raise UserError(
            f"--codec {codec}: no such encoder in this FFmpeg build; try libx264 (or libx265, libvpx-vp9, libaom-av1)"
        ) from None
    if found.type != "video":
        raise UserError(f"--codec {codec}: is {found.type or 'not a video'} encoder, not a video one; try libx264")
    if "yuv420p" not in {f.name for f in found.video_formats or ()}:
        raise UserError(
            f"--codec {codec}: cannot encode yuv420p frames (what players expect and restored videos "
            "are written in); try libx264"
        )
    if codec in _PRESET_CODECS and preset not in PRESETS:
        raise UserError(f"--preset {preset}: not a {codec} preset; choose one of {', '.join(PRESETS)}")
    rate, time_base = Fraction(25), Fraction(1, 25)
    segment = io.BytesIO()
    try:
        with av.open(segment, "w", format="nut") as c:
            stream = _video_stream(c, codec, rate, time_base, (64, 64), crf, preset)
            for k in range(2):
                frame = rgb_to_frame(np.full((64, 64, 3), 60 * k, np.uint8))
                frame.pts, frame.time_base = k, time_base
                for packet in stream.encode(frame):
                    c.mux(packet)
            for packet in stream.encode(None):
                c.mux(packet)
    except (av.error.FFmpegError, ValueError) as err:
        raise UserError(
            f"--codec {codec} --preset {preset} --crf {crf}: the encoder refuses these settings "
            f"({_why(err)}); try --codec libx264 --preset medium"
        ) from None
    for fmt in containers:
        segment.seek(0)
        try:
            with av.open(segment, "r", format="nut") as src, av.open(io.BytesIO(), "w", format=fmt) as out:
                vout = out.add_stream_from_template(src.streams.video[0])
                for packet in src.demux(src.streams.video[0]):
                    if packet.size:
                        packet.stream = vout
                        out.mux(packet)
        except (av.error.FFmpegError, ValueError) as err:
            name = {"mp4": "MP4 (the output of most inputs)", "matroska": "Matroska (the output of MKV/WebM inputs)"}
            raise UserError(
                f"--codec {codec}: {name.get(fmt, fmt)} cannot hold this codec ({_why(err)}); try libx264"
            ) from None


class SegmentWriter:
    """Encode upright uint8 RGB frames of one segment into ``path`` (NUT), turned back to the input's coded
    orientation, with the input's timestamps. Use as a context manager; the file is complete only after exit."""

    def __init__(
        self, path: Path, info: VideoInfo, size: tuple[int, int], *, codec: str, crf: int, preset: str = "medium"
    ):
        import av

        self.info = info
        self.container = av.open(str(path), "w", format="nut")  # NUT keeps any time base exactly
        w, h = size if info.rotation % 180 == 0 else (size[1], size[0])
        try:
            self.stream = _video_stream(self.container, codec, info.rate, info.time_base, (w, h), crf, preset)
        except (av.error.FFmpegError, ValueError) as err:
            self.container.close()
            raise UserError(f"--codec {codec}: not available in this FFmpeg build ({err}); try libx264") from None

    def write(self, rgb: np.ndarray, pts: int, duration: int) -> None:
        frame = rgb_to_frame(from_upright(rgb, self.info.rotation))
        frame.pts = pts
        frame.time_base = self.info.time_base
        if hasattr(frame, "duration"):
            frame.duration = duration
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()


def mux_final(segments: Sequence[Path], source: VideoInfo, out_path: Path) -> None:
    """Concatenate the encoded segments (packets copied, timestamps kept) and copy the input's audio and
    subtitle streams untouched into ``out_path`` (MP4, or Matroska when ``source`` is Matroska). Streams are
    interleaved by time as they are read, and one segment is open at a time (a long video has thousands), so
    memory does not grow with the clip."""
    import av

    fmt = "matroska" if source.matroska else "mp4"
    with av.open(str(out_path), "w", format=fmt) as out, _open(source.path) as src, av.open(str(segments[0])) as first:
        vout = out.add_stream_from_template(first.streams.video[0])
        if source.rotation and hasattr(vout, "set_display_rotation"):
            vout.set_display_rotation(source.rotation)
        copies = {}
        for s in src.streams:
            if s.type not in ("audio", "subtitle") or s is src.streams.video[0]:
                continue
            if fmt == "mp4" and (s.codec_context is None or s.codec_context.name not in MP4_COPYABLE):
                continue
            copies[s.index] = out.add_stream_from_template(s)
            copies[s.index].metadata.update(s.metadata)

        def video_packets():
            for path in segments:
                with av.open(str(path)) as seg:
                    for pkt in seg.demux(seg.streams.video[0]):
                        if pkt.size:
                            yield pkt

        def copied_packets():
            if not copies:
                return
            for pkt in src.demux([src.streams[i] for i in copies]):
                if pkt.size and pkt.dts is not None:
                    yield pkt

        def keyed(packets, order):
            for n, pkt in enumerate(packets):
                yield float(pkt.dts * pkt.time_base), order, n, pkt

        for _, order, _, pkt in heapq.merge(keyed(video_packets(), 0), keyed(copied_packets(), 1)):
            pkt.stream = vout if order == 0 else copies[pkt.stream.index]
            out.mux(pkt)
