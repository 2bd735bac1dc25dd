"""The mechanisms behind issue 18, one by one: the atomic writer and its input guard, the input opener, one-line
names, the per-photo error boundary of every pipeline stage, the memory budget, bounded detection and non-finite
restorations."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from prefrestore.errors import ImageError, RestorationError, UserError
from prefrestore.io import io_safety
from prefrestore.io.io_safety import (
    InputGuard,
    ProtectedPathError,
    atomic_write,
    check_output_folder,
    read_input,
    shown,
    staged_folder,
    sweep_stale_temps,
)


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old complete file")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(io_safety.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_full_disk_leaves_nothing(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io_safety.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "x.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_guard_refuses_every_spelling_of_an_input(tmp_path):
    src = tmp_path / "in" / "photo.png"
    src.parent.mkdir()
    src.write_bytes(b"input")
    guard = InputGuard([src])
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    for spelling in (
        src,
        tmp_path / "in" / ".." / "in" / "photo.png",
        tmp_path / "link.png",
        tmp_path / "hard.png",
        os.path.relpath(src),
    ):
        with pytest.raises(ProtectedPathError, match="overwrite an input"):
            atomic_write(spelling, b"output", guard=guard)
    assert src.read_bytes() == b"input"
    atomic_write(tmp_path / "other.png", b"output", guard=guard)  # anything else is written
    assert (tmp_path / "other.png").read_bytes() == b"output"


def test_too_long_name_is_an_oserror_before_anything_is_written(tmp_path):
    with pytest.raises(OSError, match="too long"):
        atomic_write(tmp_path / ("x" * 300 + ".png"), b"data")
    assert list(tmp_path.iterdir()) == []


def test_read_input_refuses_special_files_without_blocking(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            read_input(fifo)
        except ImageError as err:
            result["err"] = str(err)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert "FIFO" in result["err"] and str(fifo) in result["err"]
    (tmp_path / "z.jpg").symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="character device"):
        read_input(tmp_path / "z.jpg")
    with pytest.raises(ImageError, match="folder"):
        read_input(tmp_path)


def test_read_input_caps_the_size_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(10 << 20)
    reads = []
    monkeypatch.setattr(io_safety.os, "read", lambda *a: reads.append(a) or b"")
    with pytest.raises(ImageError, match="above the 1 MiB input limit"):
        read_input(big, max_bytes=1 << 20)
    assert not reads


def test_shown_makes_one_printable_line():
    assert shown("a\nb\tc\x1b[0m") == "a\\nb\\tc\\x1b[0m"
    assert shown(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    assert shown("日本語 é.png") == "日本語 é.png"


def test_stale_temporaries_of_dead_processes_are_swept(tmp_path):
    dead = subprocess_pid()
    (tmp_path / f".prefrestore-{dead}-0.tmp").write_bytes(b"torn")
    (tmp_path / f".prefrestore-{os.getpid()}-0.tmp").write_bytes(b"being written by another thread")
    (tmp_path / "keep.png").write_bytes(b"x")
    assert sweep_stale_temps(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".prefrestore-{os.getpid()}-0.tmp", "keep.png"]


def subprocess_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_output_folder_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(UserError, match="empty output folder name"):
        check_output_folder("")
    assert check_output_folder(tmp_path / "new" / "deep").is_dir()


def test_staged_folder_is_all_or_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "set") as tmp:
        (tmp / "half.png").write_bytes(b"x")
        raise RuntimeError("killed halfway")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(tmp_path / "set") as tmp:
        (tmp / "a.png").write_bytes(b"x")
    assert [p.name for p in (tmp_path / "set").iterdir()] == ["a.png"]
    with pytest.raises(UserError, match="not an empty folder"), staged_folder(tmp_path / "set"):
        pass


# ----------------------------------------------------------------------------------------------------------------
# The pipeline's per-photo error boundary


class _Detector:
    """Finds one fixed face in every image, except images whose top-left pixel is 13: those raise."""

    def __init__(self, error=MemoryError):
        self.error = error

    def detect(self, image):
        from prefrestore.faces.types import FaceDetection

        if image[0, 0, 0] == 13:
            raise self.error("detector blew up")
        h, w = image.shape[:2]
        s = min(h, w) / 4
        cx, cy = w / 2, h / 2
        marks = (
            (cx - s / 3, cy - s / 4),
            (cx + s / 3, cy - s / 4),
            (cx, cy),
            (cx - s / 4, cy + s / 3),
            (cx + s / 4, cy + s / 3),
        )
        return [FaceDetection((cx - s, cy - s, cx + s, cy + s), 0.999, marks)]

    def detect_many(self, images):
        return [self.detect(i) for i in images]


class _Restorer:
    """Identity, except a crop whose mean is above 200 makes the whole call fail (as a NaN model would)."""

    resolution = 64

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        if any(f.mean() > 200 for f in faces):
            raise RestorationError("faces [0] of this batch came out NaN/infinite")
        return [f.copy() for f in faces]


def _photos():
    from prefrestore.io.photo_io import Photo

    rng = np.random.default_rng(0)
    base = [rng.integers(0, 180, (96, 128, 3), dtype=np.uint8) for _ in range(4)]
    base[1][0, 0, 0] = 13  # the detector fails on this one
    base[2][:] = 250  # the restorer fails on this one's face
    for b in (base[0], base[2], base[3]):
        b[0, 0, 0] = 0
    return [(k, Photo(color=b)) for k, b in enumerate(base)]


def test_a_failure_in_any_stage_fails_only_its_photo():
    from prefrestore.restore.pipeline import PipelineConfig, restore_photos

    results = list(restore_photos(_photos(), _Restorer(), _Detector(), PipelineConfig(upscale=1, batch_size=8)))
    assert [r.key for r in results] == [0, 1, 2, 3]
    assert results[0].ok and results[3].ok and len(results[0].faces) == 1
    assert results[1].photo is None and results[1].error.startswith("face detection failed (out of memory")
    assert results[2].photo is None and "restoration failed (RestorationError" in results[2].error


def test_unexpected_detector_exception_is_one_line():
    from prefrestore.restore.pipeline import PipelineConfig, restore_photos

    results = list(restore_photos(_photos(), _Restorer(), _Detector(RuntimeError), PipelineConfig(upscale=1)))
    assert results[1].error == "face detection failed (RuntimeError: detector blew up)"


def test_nan_restoration_is_an_error_not_a_black_face():
    from prefrestore.restore.api import FaceRestorer

    class NaNModel:
        device = torch.device("cpu")

        class config:  # noqa: N801
            resolution = 16

        def restore(self, x, **kwargs):
            out = x.clone()
            out[1] = float("nan")
            return out

    faces = [np.full((16, 16, 3), 100, np.uint8)] * 3
    with pytest.raises(RestorationError, match=r"faces \[1\]"):
        FaceRestorer(NaNModel()).restore(faces)


def test_memory_budget_refuses_from_the_header_with_the_s_that_fits(tmp_path):
    from PIL import Image

    from prefrestore.io.photo_io import read_photo
    from prefrestore.restore.file_run import memory_check
    from prefrestore.restore.pipeline import PipelineConfig, photo_memory_bytes

    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)
    budget = photo_memory_bytes(400, 300, 2.0) + 1
    accept = memory_check(PipelineConfig(upscale=4, max_photo_bytes=budget), aligned=False)
    with pytest.raises(ImageError, match=r"400x300 at -s 4 needs about .* GiB .*; use -s 2 or smaller"):
        read_photo(path, accept=accept)
    assert read_photo(
        path, accept=memory_check(PipelineConfig(upscale=2, max_photo_bytes=budget), aligned=False)
    ).size == (400, 300)
    # the estimate grows with the output: -s 2 needs more than 3x as much as -s 1 for a large photo
    assert photo_memory_bytes(12000, 9000, 2.0) > 3 * photo_memory_bytes(12000, 9000, 1.0)


def test_bounded_detection_maps_faces_back_to_the_full_photo():
    from prefrestore.faces.detect import detect_bounded

    image = np.zeros((900, 1200, 3), np.uint8)
    full, scale = detect_bounded(_Detector(), image, max_pixels=10**7)
    small, scale_small = detect_bounded(_Detector(), image, max_pixels=300 * 400)
    assert scale == 1 and scale_small == pytest.approx(1 / 3)
    np.testing.assert_allclose(small[0].box, full[0].box, atol=1.5)
    np.testing.assert_allclose(np.array(small[0].landmarks), np.array(full[0].landmarks), atol=1.5)
