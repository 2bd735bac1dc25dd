"""`prefrestore restore` end to end with a stand-in restorer: output layout, reports, bad inputs one line each
while the rest goes on, exit codes, skip/overwrite, refusal to write into the input folder."""

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prefrestore import cli
from prefrestore.photo_io import read_photo


@pytest.fixture(autouse=True)
def fake_model(fake_api):
    """Every test here runs with the identity stand-in of prefrestore.api (conftest.fake_api)."""
    return fake_api


def _png_claiming(width, height) -> bytes:
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def good_inputs(tmp_path) -> Path:
    astronaut = pytest.importorskip("skimage.data").astronaut()
    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "test-camera"
    alpha = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(folder / "astronaut.png", icc_profile=b"icc" * 50,
                                                                exif=exif.tobytes())
    with Image.open(pytest.importorskip("matplotlib.cbook").get_sample_data("grace_hopper.jpg")) as im:
        im.convert("RGB").save(folder / "grace.jpg", quality=92)
    yy, xx = np.mgrid[0:90, 0:120]
    Image.fromarray(np.dstack([xx * 2, yy * 2, xx + yy]).astype(np.uint8)).save(folder / "landscape.png")
    return folder


@pytest.fixture
def inputs(good_inputs) -> Path:
    folder = good_inputs
    (folder / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[:300])
    (folder / "bomb.png").write_bytes(_png_claiming(50000, 50000))
    (folder / "notes.jpg").write_text("shopping list: milk, eggs\n")
    return folder


def run(*argv) -> int:
    return cli.main(["restore", *map(str, argv), "--identity", "off"])


def test_folder_with_bad_files_goes_on_and_fails_in_one_line_each(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(inputs, "-o", out, "-s", "2") == 1
    err = capsys.readouterr().err
    for name, why in (("empty.jpg", "empty file"), ("truncated.jpg", "truncated"), ("bomb.png", "50000x50000"),
                      ("notes.jpg", "not an image")):
        lines = [ln for ln in err.splitlines() if ln.startswith("  failed:") and name in ln]
        assert len(lines) == 1 and why in lines[0], (name, err)
    assert "restored 2 photos (2 faces), 1 without a face (upscaled only), 4 failed" in err
    # Outputs of the good photos, GFPGAN's layout.
    for folder, names in (("cropped_faces", ["astronaut_00.png", "grace_00.png"]),
                          ("restored_faces", ["astronaut_00.png", "grace_00.png"]),
                          ("cmp", ["astronaut_00.png", "grace_00.png"]),
                          ("restored_imgs", ["astronaut.png", "grace.jpg", "landscape.png"])):
        assert sorted(p.name for p in (out / folder).iterdir()) == names
    with Image.open(out / "cmp" / "astronaut_00.png") as im:
        assert im.size == (256, 128)  # input crop | restored crop
    # What the file carried survives: alpha, ICC, EXIF; size doubled.
    restored = read_photo(out / "restored_imgs" / "astronaut.png")
    assert restored.size == (1024, 1024) and restored.alpha is not None
    assert restored.icc_profile == b"icc" * 50 and b"test-camera" in restored.exif
    # Reports.
    report = json.loads((out / "reports" / "astronaut.json").read_text())
    assert report["status"] == "restored" and report["alpha"] and report["model"]["resolution"] == 128
    (face,) = report["faces"]
    assert face["score"] > 0.99 and len(face["landmarks"]) == 5 and len(face["box"]) == 4
    assert set(report["timings"]) >= {"read", "detect", "align", "restore", "paste", "write"}
    assert json.loads((out / "reports" / "landscape.json").read_text())["status"] == "no_face"
    bomb = json.loads((out / "reports" / "bomb.json").read_text())
    assert bomb["status"] == "failed" and "pixel limit" in bomb["error"]
    assert not (out / "restored_imgs" / "bomb.png").exists()


def test_all_good_exits_zero_and_passes_model_options(good_inputs, tmp_path, fake_model, capsys, monkeypatch):
    import sys

    api, restorers = sys.modules["prefrestore.api"], []
    load = api.load_restorer
    monkeypatch.setattr(api, "load_restorer", lambda *a, **k: restorers.append(load(*a, **k)) or restorers[-1])
    assert run(good_inputs / "grace.jpg", good_inputs / "astronaut.png", "-o", tmp_path / "o", "--model", "tiny",
               "--steps", "3", "--seed", "5", "--batch-size", "1", "--guidance-scale", "1.5",
               "--official-numerics") == 0
    model, kwargs = fake_model[0]
    assert model == "tiny" and kwargs["steps"] == 3 and kwargs["guidance_scale"] == 1.5 and kwargs["device"] == "cpu"
    assert kwargs["numerics"] == "official"
    # seed and batch size have one owner, the pipeline config: every restorer call gets them, the restorer neither
    assert "seed" not in kwargs and "batch_size" not in kwargs
    assert restorers[0].calls == [(1, 5), (1, 5)]
    assert "restored 2 photos (2 faces)" in capsys.readouterr().err


def test_unreadable_folder_is_reported_and_the_rest_goes_on(good_inputs, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    original = Path.iterdir

    def iterdir(self):
        if self == locked:  # what a folder without read permission does (root ignores chmod, so simulate it)
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert run(locked, good_inputs / "grace.jpg", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"failed: {locked}: cannot read (Permission denied); check its permissions" in err
    assert (tmp_path / "out" / "restored_imgs" / "grace.jpg").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any folder")
def test_really_unreadable_folder(good_inputs, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        assert run(locked, good_inputs / "grace.jpg", "-o", tmp_path / "out") == 1
    finally:
        locked.chmod(0o755)
    assert "locked" in capsys.readouterr().err


def test_output_folder_inside_input_folder_is_refused(good_inputs, capsys):
    assert run(good_inputs, "-o", good_inputs / "results") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside the input folder" in err[0] and str(good_inputs) in err[0]
    assert not (good_inputs / "results").exists()


def test_existing_outputs_are_skipped_unless_overwrite(good_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(good_inputs / "grace.jpg", "-o", out) == 0
    first = (out / "restored_imgs" / "grace.jpg").stat().st_mtime_ns
    capsys.readouterr()
    assert run(good_inputs / "grace.jpg", "-o", out) == 0
    assert "1 skipped (outputs exist; --overwrite to redo)" in capsys.readouterr().err
    assert (out / "restored_imgs" / "grace.jpg").stat().st_mtime_ns == first
    assert run(good_inputs / "grace.jpg", "-o", out, "--overwrite") == 0
    assert (out / "restored_imgs" / "grace.jpg").stat().st_mtime_ns != first


def test_inputs_are_never_overwritten(good_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    target = out / "restored_imgs" / "grace.jpg"
    target.parent.mkdir(parents=True)
    target.write_bytes((good_inputs / "grace.jpg").read_bytes())
    before = target.read_bytes()
    assert run(target, "-o", out, "--overwrite") == 1
    assert "would overwrite an input" in capsys.readouterr().err and target.read_bytes() == before


def test_glob_suffix_ext_and_jpeg_quality(good_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(str(good_inputs / "astro*.png"), "-o", out, "--ext", "jpg", "--suffix", "_fixed",
               "--jpeg-quality", "80", "-s", "1") == 0
    path = out / "restored_imgs" / "astronaut_fixed.jpg"
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (512, 512)
    notes = json.loads((out / "reports" / "astronaut.json").read_text())["notes"]
    assert any("alpha channel composited" in n for n in notes)


def test_aligned_crops(tmp_path, capsys):
    astronaut = pytest.importorskip("skimage.data").astronaut()
    folder = tmp_path / "crops"
    folder.mkdir()
    Image.fromarray(astronaut[:256, 128:384]).save(folder / "a.png")
    Image.fromarray(astronaut[:128, :128]).save(folder / "b.png")
    out = tmp_path / "out"
    assert run(folder, "-o", out, "--aligned") == 0
    assert sorted(p.name for p in (out / "restored_faces").iterdir()) == ["a.png", "b.png"]
    with Image.open(out / "cmp" / "a.png") as im:
        assert im.size == (256, 128)  # crop | restoration, at the model's 128 px
    with Image.open(out / "restored_faces" / "a.png") as im:
        assert im.size == (256, 256)  # a crop larger than the model comes back at its own size, not shrunk
    with Image.open(out / "restored_faces" / "b.png") as im:
        assert im.size == (128, 128)
    report = json.loads((out / "reports" / "a.json").read_text())
    assert report["status"] == "restored" and "resized to the model resolution 128x128" in report["notes"][0]
    assert "restored 2 crops" in capsys.readouterr().err


def test_bad_option_is_one_line(good_inputs, tmp_path, capsys):
    assert run(good_inputs, "-o", tmp_path / "o", "--det-threshold", "1.5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--det-threshold 1.5" in err[0]


def test_identity_similarity_in_report(good_inputs, tmp_path):
    from prefrestore.faces.identity import identity_available

    if not identity_available():
        pytest.skip("dlib not installed")
    out = tmp_path / "out"
    assert cli.main(["restore", str(good_inputs / "grace.jpg"), "-o", str(out)]) == 0
    (face,) = json.loads((out / "reports" / "grace.json").read_text())["faces"]
    assert face["identity_similarity"] > 0.999 and face["identity_distance"] < 1e-3
