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
from prefrestore.io.photo_io import read_photo


@pytest.fixture(autouse=True)
def fake_model(fake_api):
    """Every test here runs with the identity stand-in of prefrestore.restore.api (conftest.fake_api)."""
    return fake_api


def _png_claiming(width, height) -> bytes:
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # noqa: E731
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def good_inputs(tmp_path) -> Path:
    astronaut = pytest.importorskip("skimage.data").astronaut()
    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "test-camera"
    alpha = np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(
        folder / "astronaut.png", icc_profile=b"icc" * 50, exif=exif.tobytes()
    )
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
    for name, why in (
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated"),
        ("bomb.png", "50000x50000"),
        ("notes.jpg", "not an image"),
    ):
        lines = [ln for ln in err.splitlines() if ln.startswith("  failed:") and name in ln]
        assert len(lines) == 1 and why in lines[0], (name, err)
    assert "restored 2 photos (2 faces), 1 without a face (upscaled only), 4 failed" in err
    # Outputs of the good photos, GFPGAN's layout.
    for folder, names in (
        ("cropped_faces", ["astronaut_00.png", "grace_00.png"]),
        ("restored_faces", ["astronaut_00.png", "grace_00.png"]),
        ("cmp", ["astronaut_00.png", "grace_00.png"]),
        ("restored_imgs", ["astronaut.png", "grace.jpg", "landscape.png"]),
    ):
        assert sorted(p.name for p in (out / folder).iterdir()) == names
    with Image.open(out / "cmp" / "astronaut_00.png") as im:  # input crop | restored crop, at a judgeable size
        assert im.size[0] == 2 * im.size[1] and im.size[1] >= 256
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

    api, restorers = sys.modules["prefrestore.restore.api"], []
    load = api.load_restorer
    monkeypatch.setattr(api, "load_restorer", lambda *a, **k: restorers.append(load(*a, **k)) or restorers[-1])
    assert (
        run(
            good_inputs / "grace.jpg",
            good_inputs / "astronaut.png",
            "-o",
            tmp_path / "o",
            "--model",
            "tiny",
            "--steps",
            "3",
            "--seed",
            "5",
            "--batch-size",
            "1",
            "--guidance-scale",
            "1.5",
            "--official-numerics",
        )
        == 0
    )
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
    assert (
        run(
            str(good_inputs / "astro*.png"),
            "-o",
            out,
            "--ext",
            "jpg",
            "--suffix",
            "_fixed",
            "--jpeg-quality",
            "80",
            "-s",
            "1",
        )
        == 0
    )
    path = out / "restored_imgs" / "astronaut_fixed.jpg"
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (512, 512)
    notes = json.loads((out / "reports" / "astronaut.json").read_text())["notes"]
    assert any("alpha channel composited" in n for n in notes)


def test_aligned_crops(tmp_path, capsys):
    from prefrestore.faces.align import align
    from prefrestore.faces.detect import build_detector

    astronaut = pytest.importorskip("skimage.data").astronaut()
    folder = tmp_path / "crops"
    folder.mkdir()
    (face,) = build_detector("mtcnn").detect(astronaut)
    Image.fromarray(align(astronaut, face, 256).crop).save(folder / "a.png")  # an FFHQ-aligned crop, 256 px
    Image.fromarray(astronaut[:128, :128]).save(folder / "b.png")  # no face found: given the benefit of the doubt
    out = tmp_path / "out"
    assert run(folder, "-o", out, "--aligned") == 0
    assert sorted(p.name for p in (out / "restored_faces").iterdir()) == ["a.png", "b.png"]
    with Image.open(out / "cmp" / "a.png") as im:
        assert im.size == (512, 256)  # crop | restoration, each at least 256 px a side
    with Image.open(out / "restored_faces" / "a.png") as im:
        assert im.size == (256, 256)  # a crop larger than the model comes back at its own size, not shrunk
    with Image.open(out / "restored_faces" / "b.png") as im:
        assert im.size == (128, 128)
    report = json.loads((out / "reports" / "a.json").read_text())
    assert report["status"] == "restored" and "resized to the model resolution 128x128" in report["notes"][0]
    assert "restored 2 crops" in capsys.readouterr().err


def test_aligned_given_whole_photos_fails_each_in_one_line(good_inputs, tmp_path, capsys):
    """A whole photo under --aligned is never squashed into a "restored" face: not square, or square with its face
    away from the alignment template, it fails with one line naming the file and the fix; the others go on."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("astronaut.png", "grace.jpg"):  # 512x512 (face far from the template), 512x600 (not square)
        (folder / name).write_bytes((good_inputs / name).read_bytes())
    out = tmp_path / "out"
    assert run(folder, "-o", out, "--aligned") == 1
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if ln.startswith("  failed:")]
    assert len(failed) == 2, err
    (astro,) = [ln for ln in failed if "astronaut.png" in ln]
    (grace,) = [ln for ln in failed if "grace.jpg" in ln]
    assert "not an aligned face crop" in astro and "drop --aligned" in astro
    assert "is not square, so not an aligned face crop" in grace and "drop --aligned" in grace
    assert "restored 0 crops, 2 failed" in err
    assert not (out / "restored_faces").exists() or not list((out / "restored_faces").iterdir())


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


# ----------------------------------------------------------------------------------------------------------------
# Habits from GFPGAN / CodeFormer: each spelling works, or the restore parser answers it in one line


@pytest.fixture
def parsed(monkeypatch):
    """``cli.main(["restore", ...])`` up to the point the command would run -> the parsed arguments."""
    from prefrestore.commands import restore

    seen = []
    monkeypatch.setattr(restore, "run", lambda args: seen.append(args) or 0)

    def parse(*argv):
        assert cli.main(["restore", *argv]) == 0
        return seen[-1]

    return parse


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["-i", "p.jpg", "-o", "out"], {"input": ["p.jpg"], "output": "out"}),  # GFPGAN
        (["--input", "p.jpg", "--input", "q.jpg"], {"input": ["p.jpg", "q.jpg"]}),
        (["--input_path", "p.jpg", "--output_path", "out"], {"input": ["p.jpg"], "output": "out"}),  # CodeFormer
        (
            ["p.jpg", "--bg_upsampler", "realesrgan", "--bg_tile", "200"],
            {"bg_upsampler": "realesrgan", "bg_tile": 200},
        ),
        (
            ["p.jpg", "--bg_upsampler", "None"],
            {"bg_upsampler": "lanczos"},
        ),  # GFPGAN's "no upsampler" is a Lanczos resize
        (["p.jpg", "--only_center_face", "--has_aligned"], {"only_center_face": True, "aligned": True}),
        (["p.jpg", "--aligned"], {"aligned": True}),
        (["p.jpg", "-w", "0.7"], {"fidelity": 0.7}),  # CodeFormer's w: same direction as --fidelity
        (["p.jpg", "--fidelity_weight", "0.3"], {"fidelity": 0.3}),
        (["p.jpg", "--weight=0.5"], {"fidelity": 0.5}),  # GFPGAN's -w/--weight
        (["p.jpg"], {"fidelity": None, "verbose": False}),
        (
            ["p.jpg", "-s", "4", "--ext", "png", "--suffix", "_x"],
            {"upscale": 4.0, "output_format": "png", "suffix": "_x"},
        ),
        (
            ["p.jpg", "--det_threshold", "0.9", "--max_faces", "2", "--jpeg_quality=90", "--identity_guard", "flag"],
            {"det_threshold": 0.9, "max_faces": 2, "jpeg_quality": 90, "identity_guard": "flag"},
        ),  # our flags, underscored
        (["p.jpg", "-v"], {"verbose": True}),  # -v anywhere, not only before the command
        (["p.jpg", "--debug", "-o", "o"], {"verbose": True, "output": "o"}),
    ],
)
def test_gfpgan_and_codeformer_spellings_are_accepted(parsed, argv, expected):
    args = parsed(*argv)
    assert {k: getattr(args, k) for k in expected} == expected
    if "fidelity" in expected:
        assert args.settings.control.fidelity == expected["fidelity"]


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["p.jpg", "--face_upsample"], "--face_upsample: CodeFormer's Real-ESRGAN pass over the restored faces"),
        (["p.jpg", "-v", "1.3"], "-v 1.3: GFPGAN's model version; prefrestore picks its model with --model"),
        (["p.jpg", "--version", "1.4"], "--version 1.4: GFPGAN's model version"),
        (
            ["p.jpg", "--detection_model", "retinaface_resnet50"],
            "--detection_model: prefrestore detects faces with MTCNN",
        ),
        (["p.jpg", "--draw_box"], "--draw_box: the face boxes, landmarks and scores are written to OUTPUT/reports"),
        (["p.jpg", "--save_video_fps", "25"], "--save_video_fps: a restored video keeps its input's frame rate"),
        (
            ["p.jpg", "--only_centre_face"],
            "unrecognized arguments: --only_centre_face (did you mean --only-center-face?)",
        ),
        (["p.jpg", "--upsampler", "realesrgan"], "(did you mean --bg-upsampler?)"),
        ([], "give at least one input: prefrestore restore PHOTO"),
    ],
)
def test_foreign_flags_get_one_line_from_the_restore_parser(argv, hint, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["restore", *argv])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # one line, not the usage block
    assert line.startswith("prefrestore restore: error: ") and hint in line, line


def test_options_before_the_command_are_answered_at_the_top(capsys):
    with pytest.raises(SystemExit):
        cli.main(["-i", "photo.jpg"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "to restore photos: prefrestore restore PHOTO -o OUTPUT" in line
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--only_center_face"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and line.startswith("prefrestore: error: unrecognized arguments: --only_center_face")
    assert cli.main(["--help"]) == 0 and cli.main(["-v", "--version"]) == 0
    out = capsys.readouterr().out
    assert "  restore " in out and "Start with: prefrestore restore" in out and "prefrestore 0.1" in out


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["restore", "--help"], ["restore", "p.jpg", "--nope"], ["--nope"]]
)
def test_help_version_and_usage_errors_import_no_torch(argv):
    import subprocess
    import sys

    code = (
        "import sys\nfrom prefrestore import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().splitlines()[-1] == "NO-TORCH", done.stderr
    if argv == ["--version"]:
        assert done.stdout.startswith("prefrestore ")


def test_the_parser_shows_the_library_choices():
    """`restore --help` writes out choices and defaults so as to import no torch; they must be the library's."""
    from typing import get_args

    from prefrestore.commands import restore_video
    from prefrestore.faces.paste import BG_UPSAMPLERS, ColorMatch
    from prefrestore.restore import options

    assert options.BG_UPSAMPLERS == BG_UPSAMPLERS and options.COLOR_MATCHES == get_args(ColorMatch)
    video = pytest.importorskip("prefrestore.video")
    default = video.VideoConfig()
    assert restore_video.BLEND_MODES == video.BLEND_MODES
    assert restore_video.DEFAULTS == {k: getattr(default, k) for k in restore_video.DEFAULTS}


# ----------------------------------------------------------------------------------------------------------------
# What the console and the files tell a person


GROUP = Path(cli.__file__).parent / "assets" / "examples" / "group.jpg"


def test_face_files_keep_their_index_whichever_faces_a_run_picks(tmp_path, capsys):
    full, one = tmp_path / "full", tmp_path / "one"
    assert run(GROUP, "-o", full, "-s", "1") == 0
    report = json.loads((full / "reports" / "group.json").read_text())
    n = len(report["faces"])
    assert n >= 3 and [f["index"] for f in report["faces"]] == list(range(n))
    largest = max(report["faces"], key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
    assert run(GROUP, "-o", one, "-s", "1", "--max-faces", "1") == 0
    (face,) = json.loads((one / "reports" / "group.json").read_text())["faces"]
    assert face["index"] == 0 and face["file_index"] == largest["index"]
    name = f"group_{largest['index']:02d}.png"
    assert [p.name for p in (one / "cropped_faces").iterdir()] == [name]
    assert (one / "cropped_faces" / name).read_bytes() == (full / "cropped_faces" / name).read_bytes()
    capsys.readouterr()
    assert run(GROUP, "-o", one, "-s", "1", "--max-faces", "1") == 0  # its outputs are found: skipped
    assert "1 skipped" in capsys.readouterr().err
    with Image.open(full / "cmp" / name) as im:
        assert im.size[1] >= 256 and im.size[0] == 2 * im.size[1]


def test_faces_beyond_the_photo_say_so(tmp_path, caplog):
    out = tmp_path / "out"
    assert run(GROUP, "-o", out, "-s", "1", "--faces", "0,40") == 0
    report = json.loads((out / "reports" / "group.json").read_text())
    n = len(report["faces"]) + sum(r["reason"].startswith("not in --faces") for r in report["rejected"])
    assert len(report["faces"]) == 1
    (note,) = [x for x in report["notes"] if x.startswith("--faces")]
    assert note == f"--faces 0,40: this photo has {n} faces (indices 0-{n - 1}), there is no face 40"
    assert run(GROUP, "-o", out, "-s", "1", "--faces", "40", "--overwrite") == 0
    report = json.loads((out / "reports" / "group.json").read_text())
    assert not any(x.startswith("no face found") for x in report["notes"]), report["notes"]
    assert any(f"has {n} faces" in x and "none was restored" in x for x in report["notes"])
    assert "group.jpg: --faces 40: this photo has 3 faces" in caplog.text  # on the console too (a warning line)


class OtherPersonRestorer:
    """Returns another person's face for every face: what the identity guard is for."""

    resolution = 128

    def __init__(self, face):
        self.face = face

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        return [self.face.copy() for _ in faces]


def test_summary_counts_the_identity_guards_verdicts(good_inputs, tmp_path, capsys, monkeypatch, grace):
    import sys

    from prefrestore.faces.align import align
    from prefrestore.faces.detect import build_detector
    from prefrestore.faces.identity import identity_available

    if not identity_available():
        pytest.skip("dlib not installed")
    (face,) = build_detector("mtcnn").detect(grace)
    other = align(grace, face, 128).crop
    monkeypatch.setattr(
        sys.modules["prefrestore.restore.api"], "load_restorer", lambda *a, **k: OtherPersonRestorer(other)
    )
    out = tmp_path / "out"
    assert cli.main(["restore", str(good_inputs / "astronaut.png"), "-o", str(out)]) == 0
    (entry,) = json.loads((out / "reports" / "astronaut.json").read_text())["faces"]
    assert entry["identity_guard"]["flagged"] and entry["identity_guard"]["action"]
    assert (
        "restored 1 photo (1 face; identity guard: 1 flagged, 1 replaced by a safer restoration)"
        in capsys.readouterr().err
    )
    assert (
        cli.main(
            ["restore", str(good_inputs / "astronaut.png"), "-o", str(tmp_path / "o2"), "--identity-guard", "flag"]
        )
        == 0
    )
    assert "(1 face; identity guard: 1 flagged) ->" in capsys.readouterr().err
