"""Video restoration on short clips built here from the offline photos (pan, zoom, a cut, a face entering and
leaving, a sine tone as audio), through real H.264/AAC files, with an identity restorer (the streaming, tracking and
file handling are under test, not the model)."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from prefrestore.errors import UserError  # noqa: E402
from prefrestore.faces.types import FaceDetection  # noqa: E402
from prefrestore.restore.pipeline import PipelineConfig  # noqa: E402
from prefrestore.video import (  # noqa: E402
    RestorationFailed,
    TemporalBlender,
    TrackConfig,
    Tracker,
    VideoConfig,
    is_video,
    probe,
    restore_video,
)
from prefrestore.video.io import frame_to_rgb  # noqa: E402
from video_clips import enter_leave, pan_zoom_cut, write_clip  # noqa: E402 - tests/ is on sys.path under pytest


class IdentityRestorer:
    resolution = 128

    def __init__(self, fail_at: int | None = None):
        self.calls = 0
        self.fail_at = fail_at

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("boom")
        return [f.copy() for f in faces]


class CountingDetector:
    """The real detector, with frames where it is made to see nothing (to test bridging) and a call count."""

    def __init__(self, detector, blind=()):
        self.detector, self.blind, self.calls = detector, set(blind), 0

    def detect(self, image):
        self.calls += 1
        return [] if self.calls - 1 in self.blind else self.detector.detect(image)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut, grace):
    root = tmp_path_factory.mktemp("clips")
    return {
        "pzc": write_clip(root / "pzc.mp4", pan_zoom_cut(astronaut, grace, n=24)),
        "enter": write_clip(root / "enter.mp4", enter_leave(astronaut, n=24), audio=False),
    }


@pytest.fixture(scope="module")
def det(detector, one_thread):
    return detector


def decoded(path):
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        return [(frame_to_rgb(f), float(f.pts * f.time_base)) for f in c.decode(vs)]


def audio_packets(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        s = c.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s) if p.size]


def psnr(a, b):
    """PSNR of the luma (yuv420p halves the chroma resolution, so RGB PSNR measures the codec, not us)."""
    from prefrestore.io.photo_io import luma

    mse = np.mean((luma(a).astype(np.float64) - luma(b).astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-10))


# --------------------------------------------------------------------------------------------------------------------


def test_video_detected_by_content(tmp_path, clips):
    disguised = tmp_path / "holiday.jpg"
    disguised.write_bytes(clips["pzc"].read_bytes())
    assert is_video(disguised) and is_video(clips["pzc"])
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "text.mp4").write_text("not a video at all, just text " * 20)
    assert not is_video(tmp_path / "a.png") and not is_video(tmp_path / "text.mp4")


def test_pan_zoom_cut_preserves_timing_audio_and_tracks(tmp_path, clips, det):
    out = tmp_path / "out.mp4"
    rep = restore_video(clips["pzc"], out, IdentityRestorer(), det, VideoConfig(segment_frames=10))
    src, dst = decoded(clips["pzc"]), decoded(out)
    assert len(dst) == len(src) == 24 == rep["frames"]
    assert [t for _, t in dst] == [t for _, t in src]  # every timestamp, to the tick
    assert dst[0][0].shape == (256, 256, 3)  # 2x
    i, o = probe(clips["pzc"]), probe(out)
    assert o.rate == i.rate == 12 and abs(o.duration - i.duration) < 1e-6
    assert audio_packets(out) == audio_packets(clips["pzc"])  # copied untouched, same bytes and times
    assert rep["streams_copied"] == ["audio aac"]
    # one track for the astronaut across pan and zoom, a new one after the cut to Grace Hopper
    assert rep["scene_cuts"] == [16]
    assert [(t["first_frame"], t["last_frame"]) for t in rep["tracks"]] == [(0, 15), (16, 23)]
    assert rep["faces_per_frame"] == [1] * 24


def test_identity_restorer_gives_back_the_video(tmp_path, clips, det):
    out = tmp_path / "same.mp4"
    config = VideoConfig(pipeline=PipelineConfig(upscale=1), temporal="none", crf=10)
    restore_video(clips["pzc"], out, IdentityRestorer(), det, config)
    from prefrestore.restore.pipeline import restore_image

    for k, ((a, _), (b, _)) in enumerate(zip(decoded(clips["pzc"]), decoded(out), strict=True)):
        if k % 6 == 0:  # the photo pipeline on the same frame: align + paste-back resampling costs the same
            photo = restore_image(a, IdentityRestorer(), det, PipelineConfig(upscale=1))
            assert psnr(a, b) > psnr(a, photo) - 2.0  # + H.264 at CRF 10 (~1 dB) and smoothed landmarks
        assert psnr(a, b) > 30


def test_face_entering_and_leaving(tmp_path, clips, det):
    rep = restore_video(clips["enter"], tmp_path / "e.mp4", IdentityRestorer(), det, VideoConfig())
    faces = rep["faces_per_frame"]
    assert faces[0] == 0 and faces[-1] == 0 and max(faces) == 1
    seen = [i for i, n in enumerate(faces) if n]
    assert seen == list(range(seen[0], seen[-1] + 1)) and len(seen) >= 6  # one contiguous stretch
    assert len(rep["tracks"]) == 1 and rep["status"] == "restored"
    assert audio_packets(tmp_path / "e.mp4") == []


def test_missed_detections_are_bridged_by_the_track(tmp_path, clips, det):
    blind = CountingDetector(det, blind={4, 5, 6})
    rep = restore_video(clips["pzc"], tmp_path / "b.mp4", IdentityRestorer(), blind, VideoConfig())
    first = rep["tracks"][0]
    assert (first["first_frame"], first["last_frame"], first["bridged"]) == (0, 15, 3)
    assert rep["faces_per_frame"][4:7] == [1, 1, 1]


def test_detecting_on_keyframes_tracks_in_between(tmp_path, clips, det):
    counting = CountingDetector(det)
    rep = restore_video(clips["pzc"], tmp_path / "k.mp4", IdentityRestorer(), counting, VideoConfig(detect_every=6))
    assert counting.calls == 4 + 1  # frames 0, 6, 12, 18, and the cut at 16
    assert [(t["first_frame"], t["last_frame"]) for t in rep["tracks"]] == [(0, 15), (16, 23)]
    assert rep["faces_per_frame"] == [1] * 24


def test_rotation_is_kept(tmp_path, astronaut, grace, det):
    frames = [f[:, :96] for f in pan_zoom_cut(astronaut, grace, n=6)]  # 128 x 96 coded, shown turned
    clip = write_clip(tmp_path / "rot.mp4", frames, rotation=90, audio=False)
    out = tmp_path / "rot_out.mp4"
    rep = restore_video(clip, out, IdentityRestorer(), det, VideoConfig(pipeline=PipelineConfig(upscale=1)))
    i, o = probe(clip), probe(out)
    assert (i.rotation, o.rotation) == (90, 90) and o.size == i.size == (96, 128)
    assert rep["input_size"] == [128, 96]
    for (a, _), (b, _) in zip(decoded(clip), decoded(out), strict=True):
        assert psnr(a, b) > 30  # same pixel layout as the input


def test_variable_frame_rate_is_kept(tmp_path, astronaut, grace, det):
    pts = [0, 1, 2, 4, 5, 8, 9, 10, 14, 15]
    clip = write_clip(tmp_path / "vfr.mp4", pan_zoom_cut(astronaut, grace, n=10), pts=pts)
    out = tmp_path / "vfr_out.mp4"
    restore_video(clip, out, IdentityRestorer(), det, VideoConfig(segment_frames=3))
    assert [t for _, t in decoded(out)] == [t for _, t in decoded(clip)] == [p / 12 for p in pts]


def test_a_still_face_restores_to_the_same_pixels_every_frame(tmp_path, astronaut, grace, det, tiny_model):
    """Same seed for every face + deterministic integrator + a track that does not move: no flicker at all."""
    from prefrestore.restore.api import FaceRestorer

    frame = pan_zoom_cut(astronaut, grace, n=3)[0]
    clip = write_clip(tmp_path / "still.mp4", [frame] * 6, audio=False, crf=0)  # lossless: identical frames
    assert all(np.array_equal(f, decoded(clip)[0][0]) for f, _ in decoded(clip))
    out = tmp_path / "still_out.mp4"
    config = VideoConfig(pipeline=PipelineConfig(upscale=1), temporal="none", crf=0)
    rep = restore_video(clip, out, FaceRestorer(tiny_model, steps=2), det, config)
    frames = [f for f, _ in decoded(out)]
    assert rep["faces_per_frame"] == [1] * 6
    assert all(np.array_equal(f, frames[0]) for f in frames[1:])
    assert not np.array_equal(frames[0], decoded(clip)[0][0])  # and the random model did change the face


def test_matroska_in_matroska_out_with_audio(tmp_path, astronaut, grace, det):
    clip = write_clip(tmp_path / "m.mkv", pan_zoom_cut(astronaut, grace, n=6), container="matroska")
    out = tmp_path / "m_out.mkv"
    restore_video(clip, out, IdentityRestorer(), det, VideoConfig())
    assert probe(out).matroska and audio_packets(out) == audio_packets(clip)
    assert [t for _, t in decoded(out)] == [t for _, t in decoded(clip)]


@pytest.mark.parametrize("fail_at", [4, 7])  # restorer calls: 2 per 5-frame segment
def test_interrupted_run_resumes_to_the_identical_file(tmp_path, clips, det, fail_at):
    config = VideoConfig(segment_frames=5, window=3)
    ref = tmp_path / "ref.mp4"
    restore_video(clips["pzc"], ref, IdentityRestorer(), det, config, work_dir=tmp_path / "w_ref")
    out, work = tmp_path / "o.mp4", tmp_path / "w"
    with pytest.raises(RestorationFailed, match="rerun the command to resume"):
        restore_video(clips["pzc"], out, IdentityRestorer(fail_at=fail_at), det, config, work_dir=work)
    assert not out.exists() and (work / "state.json").exists()
    rep = restore_video(clips["pzc"], out, IdentityRestorer(), det, config, work_dir=work)
    assert rep["resumed_at_frames"] and rep["resumed_at_frames"][0] % 5 == 0
    assert out.read_bytes() == ref.read_bytes()  # bit-identical file (x264 is deterministic)
    assert rep["tracks"] == restore_video(clips["pzc"], tmp_path / "r2.mp4", IdentityRestorer(), det, config)["tracks"]
    assert not work.exists()


KILL_SCRIPT = """
import sys, time, torch
torch.set_num_threads(1)
from prefrestore.faces.detect import build_detector
from prefrestore.video import VideoConfig, restore_video
class Slow:
    resolution = 128
    capabilities = frozenset()
    def restore(self, faces, *, seed=0):
        time.sleep(0.15)
        return [f.copy() for f in faces]
restore_video(sys.argv[1], sys.argv[2], Slow(), build_detector("mtcnn"), VideoConfig(segment_frames=4, window=2),
              work_dir=sys.argv[3])
"""


def test_sigkill_then_same_command_gives_the_identical_file(tmp_path, clips):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    work, out = tmp_path / "work", tmp_path / "k.mp4"
    cmd = [sys.executable, "-c", KILL_SCRIPT, str(clips["pzc"]), str(out), str(work)]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        state = work / "state.json"
        if state.exists() and json.loads(state.read_text())["segments"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run finished before it could be killed"
    subprocess.run(cmd, env=env, check=True, timeout=300)
    subprocess.run(
        cmd[:-3] + [str(clips["pzc"]), str(tmp_path / "ref.mp4"), str(tmp_path / "w2")],
        env=env,
        check=True,
        timeout=300,
    )
    assert out.read_bytes() == (tmp_path / "ref.mp4").read_bytes()


def test_corrupt_and_truncated_videos_fail_in_one_line(tmp_path, clips, det):
    data = clips["pzc"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(data[:32] + bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    for bad in (cut, junk):
        with pytest.raises(UserError) as err:
            restore_video(bad, tmp_path / "x.mp4", IdentityRestorer(), det, VideoConfig())
        message = str(err.value)
        assert "\n" not in message and str(bad) in message and ("corrupt" in message or "complete" in message)
    assert not (tmp_path / "x.mp4").exists()


# --------------------------------------------------------------------------------------------------------------------
# Tracker and temporal blending on synthetic inputs


FACE = np.array([[40.0, 50], [60, 50], [50, 62], [42, 72], [58, 72]])


def face_at(lm, score=0.99):
    lo, hi = lm.min(0) - 15, lm.max(0) + 15
    return FaceDetection.from_arrays(np.concatenate([lo, hi]), score, lm)


def textured(shift: float, size=(120, 160)) -> np.ndarray:
    """A smooth random texture translated right by ``shift`` px (sub-pixel, cubic), uint8 RGB."""
    import cv2

    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size[0] + 40, size[1] + 40)).astype(np.float32), (0, 0), 2.0)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    m = np.array([[1.0, 0, shift - 20], [0, 1.0, -20]])
    g = cv2.warpAffine(base, m, size[::-1], flags=cv2.INTER_CUBIC).astype(np.uint8)
    return np.dstack([g, g, g])


def test_smoothing_steadies_a_still_face_and_follows_a_pan_without_lag():
    rng = np.random.default_rng(0)
    still, pan = Tracker(), Tracker()
    out_still, out_pan = [], []
    for i in range(60):
        noise = rng.normal(0, 1.0, FACE.shape)  # detector noise, 1 px per coordinate
        (a,) = still.update(i, textured(0), [face_at(FACE + noise)])
        (b,) = pan.update(i, textured(0.7 * i), [face_at(FACE + [0.7 * i, 0] + noise)])
        out_still.append(a.detection.landmarks_array())
        out_pan.append(b.detection.landmarks_array() - [0.7 * i, 0])
    jitter = lambda xs: np.std(np.diff(np.array(xs[10:]), axis=0))  # noqa: E731
    assert jitter(out_still) < 0.15 * np.sqrt(2)  # raw frame-to-frame jitter is sqrt(2) px
    assert jitter(out_pan) < 0.15 * np.sqrt(2)  # the flow carries the pan, the detections only correct drift
    lag = np.mean((np.array(out_pan[30:]) - FACE)[..., 0])
    assert abs(lag) < 0.5
    assert len(still.stats) == len(pan.stats) == 1
    raw = Tracker(TrackConfig(alpha=1.0))  # alpha 1 = the raw detections (what the flicker benchmark's baseline uses)
    d = face_at(FACE + noise)
    assert np.allclose(raw.update(0, textured(0), [d])[0].detection.landmarks_array(), d.landmarks_array())


def test_tracks_two_faces_and_cut_resets():
    a_img, b_img = textured(0, (120, 200)), np.full((120, 200, 3), 255, np.uint8)
    t = Tracker()
    for i in range(5):
        faces = t.update(i, a_img, [face_at(FACE + [100 - 3 * i, 0]), face_at(FACE + [3 * i, 0])])
        assert sorted(f.track for f in faces) == [0, 1]
    faces = t.update(5, b_img, [face_at(FACE)])
    assert [f.track for f in faces] == [2] and t.cuts == [5]
    state = json.loads(json.dumps(t.state()))
    t2 = Tracker.from_state(state)
    t2.prime(b_img)
    t.update(6, b_img, [face_at(FACE + 0.3)])
    t2.update(6, b_img, [face_at(FACE + 0.3)])
    assert t.state() == t2.state()


def test_track_dropped_after_max_missed_frames():
    t = Tracker(TrackConfig(max_missed=2))
    img = np.zeros((120, 160, 3), np.uint8)
    t.update(0, img, [face_at(FACE)])
    assert [len(t.update(i, img, [])) for i in range(1, 5)] == [1, 1, 0, 0]


def test_temporal_blend_of_outputs_reduces_noise_by_the_ema_factor():
    rng = np.random.default_rng(0)
    w = 0.25
    base = np.full((32, 32, 3), 128.0)
    never = (1e9, 2e9)  # no motion adaptation: the plain EMA
    b_out, b_in = TemporalBlender("output", w, change=never), TemporalBlender("input", w, change=never)
    b_both = TemporalBlender("both", w, change=never)
    raw, out = [], []
    for _ in range(200):
        x = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        raw.append(x.astype(float))
        out.append(b_out.after(0, x).astype(float))
        restore_in, reference = b_out.before(0, x)
        assert np.array_equal(restore_in, x) and np.array_equal(b_in.after(0, x), x)
        assert np.array_equal(b_in.before(0, x)[0], reference)  # inputs blended alike, as the colour reference
        both_in, both_ref = b_both.before(0, x)  # "both": the blended input is restored, then the output blended
        assert np.array_equal(both_in, reference) and np.array_equal(both_ref, reference)
        assert np.array_equal(b_both.after(0, x), out[-1])
    ratio = np.std(np.diff(raw[20:], axis=0)) / np.std(np.diff(out[20:], axis=0))
    # EMA of white noise: y_t - y_{t-1} = w (x_t - y_{t-1}), var = w^2 (1 + w / (2 - w)) s^2 = 2 w^2 s^2 / (2 - w),
    # against 2 s^2 for the raw frames: the std ratio is sqrt(2 - w) / w = 5.29 at w = 0.25
    assert ratio == pytest.approx(np.sqrt(2 - w) / w, rel=0.05)


def test_temporal_blend_lets_a_real_change_through_at_once():
    rng = np.random.default_rng(0)
    blender = TemporalBlender("output", 0.2)
    frames = [np.full((32, 32, 3), 100, np.uint8)] * 10 + [np.full((32, 32, 3), 200, np.uint8)] * 3
    out = [blender.after(0, np.clip(f + rng.normal(0, 3, f.shape), 0, 255).astype(np.uint8)) for f in frames]
    assert abs(out[9].mean() - 100) < 1.5 and out[9].std() < 1.5  # noise of 3 levels averaged away
    assert out[10].mean() > 195  # a plain EMA at 0.2 would give 120, then 136, ...
    both = TemporalBlender("both", 0.1)  # the default: blended twice, and still no ghost of the old frame
    shown = [both.after(0, both.before(0, f)[0]) for f in frames]
    assert shown[10].mean() > 195
    blender.keep_only(set())
    assert blender.state() == {}


def test_fidelity_and_colour_fix_apply_to_videos_and_best_of_n_does_not(tmp_path, clips, det):
    """--fidelity reaches the restorer on every face of every frame; a video restores one candidate per face and
    never falls back per frame (the face would switch between restorations)."""
    from prefrestore.models.fidelity_dial import FidelityPoint
    from prefrestore.restore.options import RestoreOptions

    class DialRestorer(IdentityRestorer):
        capabilities = frozenset({"fidelity"})  # the dial: restore(fidelity=), setting(f)

        def restore(self, faces, *, seed=0, fidelity=None):
            self.seen.append((len(faces), seed, fidelity))
            return [np.clip(f.astype(int) + 40, 0, 255).astype(np.uint8) for f in faces]  # a tone shift

        def setting(self, fidelity):
            return FidelityPoint(fidelity, 1.0, 1.0)

    def run(name, **opts):
        r = DialRestorer()
        r.seen = []
        pipeline = PipelineConfig.for_photos(RestoreOptions(**opts), upscale=1, seed=3, color_match="none")
        cfg = VideoConfig(pipeline=pipeline, temporal="none", crf=0)
        rep = restore_video(clips["enter"], tmp_path / f"{name}.mp4", r, det, cfg)
        return r.seen, rep, np.mean([f.astype(float).mean() for f, _ in decoded(tmp_path / f"{name}.mp4")])

    seen, rep, _ = run("dial", fidelity=0.7, candidates=3, identity_guard="fallback")
    assert sum(n for n, _, _ in seen) == sum(rep["faces_per_frame"]) > 0  # one restoration per face, no extra
    assert {(seed, f) for _, seed, f in seen} == {(3, 0.7)}
    _, _, fixed = run("fixed", color_fix="lowfreq")
    _, _, raw = run("raw", color_fix="none", blend=1.0)
    _, _, source = run("source", blend=0.0)  # the face invisible: the video as it was
    # paste-back matches no colour here (--color-match none), so the tone shift shows unless --color-fix removed it
    assert raw > fixed + 0.5 and abs(fixed - source) < 0.5


# --------------------------------------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def fake_api(monkeypatch):
    import prefrestore.restore

    fake = types.ModuleType("prefrestore.restore.api")
    fake.load_restorer = lambda model="tiny", **kw: IdentityRestorer()
    monkeypatch.setitem(sys.modules, "prefrestore.restore.api", fake)
    monkeypatch.setattr(prefrestore.restore, "api", fake, raising=False)


def test_cli_restores_a_folder_mixing_photos_and_videos(tmp_path, clips, astronaut, fake_api, one_thread, capsys):
    from PIL import Image

    from prefrestore import cli

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(astronaut[:256, 64:320]).save(folder / "photo.png")
    (folder / "clip.dat").write_bytes(clips["pzc"].read_bytes())  # a video by content, whatever its name
    (folder / "broken.mov").write_bytes(clips["pzc"].read_bytes()[:3000])
    out = tmp_path / "out"
    code = cli.main(["restore", str(folder), "-o", str(out), "--crf", "20", "--temporal", "input"])
    err = capsys.readouterr().err
    assert code == 1  # broken.mov failed, the rest went on
    assert (out / "restored_imgs" / "photo.png").exists() and (out / "restored_videos" / "clip.mp4").exists()
    report = json.loads((out / "reports" / "clip.json").read_text())
    assert report["frames"] == 24 and report["codec"]["crf"] == 20 and report["temporal"]["mode"] == "input"
    assert json.loads((out / "reports" / "broken.json").read_text())["status"] == "failed"
    assert "broken.mov" in err and "Traceback" not in err
    # stderr is not a terminal here: the estimate comes as a line once the first frames are timed
    (estimate,) = [ln for ln in err.splitlines() if ln.startswith("clip: 24 frames, ")]
    assert "s/frame measured on the first 8: about " in estimate and " left" in estimate
    assert not list((out / "restored_videos").glob(".*"))  # no temporary or partial files left
    code = cli.main(["restore", str(folder / "clip.dat"), "-o", str(out)])
    assert code == 0 and "1 skipped" in capsys.readouterr().err


def test_cli_names_the_options_videos_do_not_apply():
    from prefrestore.commands.restore_video import _photo_only_options
    from prefrestore.restore.options import RestoreOptions

    assert _photo_only_options(RestoreOptions(fidelity=0.5, color_fix="none", blend=0.5)) == []
    assert _photo_only_options(RestoreOptions(faces=(0,), identity_guard="flag")) == ["--identity-guard", "--faces"]


# ----------------------------------------------------------------------------------------------------------------
# Bad encoder settings and output paths: refused up front, nothing left behind

_PROBE = """
import sys, time
t0 = time.monotonic()
from prefrestore.cli import main
rc = main(sys.argv[1:])
print(rc, "torch" in sys.modules, round(time.monotonic() - t0, 2))
"""


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--codec", "nonexistent"], "--codec nonexistent: no such encoder"),
        (["--codec", "png"], "--codec png: cannot encode yuv420p"),
        (["--codec", "libx264rgb"], "--codec libx264rgb: cannot encode yuv420p"),
        (["--codec", "aac"], "--codec aac: is audio encoder"),
        (["--preset", "bogus"], "--preset bogus: not a libx264 preset"),
        (["--codec", "libx265", "--preset", "bogus"], "--preset bogus: not a libx265 preset"),
        (["--crf", "99"], "--crf 99: must be a whole number in 0..63"),
    ],
)
def test_bad_encoder_options_exit_2_before_anything_is_read(tmp_path, clips, flags, says):
    """Checked while the flags are parsed (a tiny in-memory encode): exit 2, one line, torch never imported (the
    old run decoded and restored for a minute first), and no output folder, .partial folder or temporary file."""
    out = tmp_path / "out"
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, "restore", str(clips["pzc"]), "-o", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    rc, torch_loaded, _ = run.stdout.split()
    assert (rc, torch_loaded) == ("2", "False"), run
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"error: {says}"), line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    assert sorted(p.name for p in clips["pzc"].parent.iterdir()) == ["enter.mp4", "pzc.mp4"]
    print(f"{' '.join(flags)}: exit 2 after {elapsed:.2f} s")
    assert elapsed < 30  # a loose bound for a loaded machine; the check itself takes milliseconds


def test_library_checks_encoding_before_decoding(tmp_path, clips, det, monkeypatch):
    from prefrestore.video import run as video_run

    def no_decoding(path):
        raise AssertionError("decoded before the encoder settings were checked")

    monkeypatch.setattr(video_run, "probe", no_decoding)
    out = tmp_path / "v" / "x.mp4"
    for config in (VideoConfig(codec="png"), VideoConfig(preset="bogus"), VideoConfig(codec="nonexistent")):
        with pytest.raises(UserError) as err:
            restore_video(clips["pzc"], out, IdentityRestorer(), det, config)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "v").exists()


def test_failed_run_without_finished_segments_leaves_nothing(tmp_path, clips, det):
    """A restorer failing in the first segment: nothing to resume, so no .partial folder and no temporary file."""
    out = tmp_path / "v" / "x.mp4"
    with pytest.raises(RestorationFailed):
        restore_video(clips["pzc"], out, IdentityRestorer(fail_at=0), det, VideoConfig(segment_frames=50))
    left = sorted(p.name for p in (tmp_path / "v").iterdir()) if (tmp_path / "v").exists() else []
    assert left == []


def test_output_path_that_is_a_folder_is_one_line(tmp_path, clips, fake_api, one_thread, capsys):
    from prefrestore import cli

    out = tmp_path / "out"
    folder = out / "restored_videos" / "pzc.mp4"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("mine")
    code = cli.main(["restore", str(clips["pzc"]), "-o", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "unexpected" not in err
    lines = [line for line in err.splitlines() if "is a folder" in line]
    assert len(lines) >= 1 and all(str(folder) in line for line in lines), err
    assert (folder / "keep.txt").read_text() == "mine"  # the folder is left as it was
    assert sorted(p.name for p in (out / "restored_videos").iterdir()) == ["pzc.mp4"]  # no temporary, no .partial


def test_frame_log_estimates_up_front_and_reports_at_intervals():
    """The words a log file gets for a video (no bar): the estimate after the first timed frames, then a line per
    interval; a resume's frames are counted as done, not timed."""
    from prefrestore.commands.restore_video import FrameLog, duration

    now, lines = [100.0], []
    log = FrameLog("clip", 120, write=lines.append, periodic=True, interval=30, warmup=8, clock=lambda: now[0])
    for _ in range(8):  # 2 s per frame
        now[0] += 2
        log.update(1)
    assert lines == ["clip: 120 frames, 2.00 s/frame measured on the first 8: about 4 min 0 s in all, 3 min 44 s left"]
    for _ in range(14):  # 28 s since the estimate: nothing yet
        now[0] += 2
        log.update(1)
    assert len(lines) == 1
    for _ in range(16):  # at 30 s one line, the next one 30 s later
        now[0] += 2
        log.update(1)
    assert lines[1:] == [
        "clip: 23/120 frames (19%), 2.00 s/frame, about 3 min 14 s left",
        "clip: 38/120 frames (32%), 2.00 s/frame, about 2 min 44 s left",
    ]

    now[0], lines[:] = 0.0, []
    resumed = FrameLog("clip", 100, write=lines.append, periodic=False, warmup=4, clock=lambda: now[0])
    resumed.update(60)  # at once: the frames an earlier run finished
    for _ in range(4):
        now[0] += 0.5
        resumed.update(1)
    assert lines == [
        "clip: 100 frames, 60 done before, 0.50 s/frame measured on the first 4: about 20 s in all, 18 s left"
    ]
    assert duration(59.6) == "1 min 0 s" and duration(7300) == "2 h 1 min"
