"""dlib's ResNet and MobileFace in torch: file readers, network shapes, the FFHQ -> chip warps, and (with the real
weights) agreement with dlib and identity separation on real faces."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from prefrestore.faces.align import ffhq_template, warp_affine, warp_affine_torch
from prefrestore.metrics import dlib_resnet as dr
from prefrestore.metrics import mobileface as mf
from prefrestore.metrics.identity import AlignedEmbedder, cosine_similarity, load_identity_net
from prefrestore.metrics.weights import MetricUnavailable


def _random_dlib(seed=0) -> dr.DlibResNet:
    torch.manual_seed(seed)
    net = dr.DlibResNet()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("beta"):
                p.normal_(0, 0.1)
    return net.eval()


def _random_mobileface(seed=0) -> mf.MobileFace:
    torch.manual_seed(seed)
    net = mf.MobileFace()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.0, 0.3)
        net.bn_mul.uniform_(0.5, 1.5)
        net.bn_sub.normal_(0, 0.1)
    return net.eval()


# ----------------------------------------------------------------------------------------------------------------
# file readers on synthetic files written in each format


def _dlib_int(v: int) -> bytes:
    body = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if v < 0 else 0)]) + body


def _dlib_str(s: str) -> bytes:
    return _dlib_int(len(s)) + s.encode()


def _dlib_float(x: float) -> bytes:
    m, e = np.frexp(np.float64(x))
    mant = int(round(m * 2**53))
    return _dlib_int(mant) + _dlib_int(int(e) - 53)


def _dlib_tensor(a: np.ndarray) -> bytes:
    return _dlib_int(2) + b"".join(_dlib_int(d) for d in (a.size, 1, 1, 1)) + a.astype("<f4").tobytes()


def _write_dat(net: dr.DlibResNet, path: Path) -> None:
    """dlib's layout as the reader expects it: header, input layer, layers from the input out, the fc layer."""
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    out = [_dlib_int(1), _dlib_str("loss_metric_2"), _dlib_float(0.04), _dlib_float(0.6), _dlib_int(2) * 40]
    out += [_dlib_str("input_rgb_image_sized")] + [_dlib_float(m) for m in dr.INPUT_MEAN] + [_dlib_int(150)] * 2
    for name in dr.layer_names():
        if "conv" in name:
            params = np.concatenate([sd[f"{name}.weight"].ravel(), sd[f"{name}.bias"]])
            out += [_dlib_str("con_4"), _dlib_tensor(params), _dlib_int(0) * 9]
        else:
            out += [_dlib_str("affine_"), _dlib_tensor(np.concatenate([sd[f"{name}.gamma"], sd[f"{name}.beta"]]))]
            out += [_dlib_int(1), _dlib_str("relu_"), _dlib_int(0) * 4]
    w = sd["fc.weight"].T  # (in, out), dlib's layout
    out += [_dlib_str("fc_2"), _dlib_int(128), _dlib_int(256), _dlib_int(2), _dlib_int(256), _dlib_int(128)]
    out += [_dlib_int(1), _dlib_int(1), w.astype("<f4").tobytes(), _dlib_int(0) * 8]
    path.write_bytes(b"".join(out))


def test_dlib_reader_recovers_every_tensor(tmp_path):
    net = _random_dlib()
    _write_dat(net, tmp_path / "net.dat")
    sd = dr.read_dlib_dat(tmp_path / "net.dat")
    ref = net.state_dict()
    assert set(sd) == set(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k
    sd2 = dr.convert({dr.DAT_MEMBER: tmp_path / "net.dat"})
    assert all(torch.equal(sd2[k], ref[k]) for k in ref)


def test_dlib_reader_refuses_other_files(tmp_path):
    (tmp_path / "x.dat").write_bytes(b"\x01\x01" + _dlib_str("shape_predictor") + b"\x00" * 100)
    with pytest.raises(ValueError, match="x.dat"):
        dr.read_dlib_dat(tmp_path / "x.dat")


def _write_tfjs(net: mf.MobileFace, folder: Path) -> tuple[Path, Path]:
    weights, blobs = [], []
    for key, v in net.state_dict().items():
        name = mf._tf_name(key)
        a = v.numpy()
        if a.ndim == 4 and name.endswith("_df"):
            a = a.transpose(2, 3, 0, 1)
        elif a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)
        elif a.ndim == 2:
            a = a.T
        weights.append({"name": name, "shape": list(a.shape), "dtype": "float32"})
        blobs.append(np.ascontiguousarray(a, "<f4").tobytes())
    weights.append({"name": "Pad/paddings", "shape": [4, 2], "dtype": "int32"})
    blobs.append(np.array([0, 0, 1, 1, 1, 1, 0, 0], "<i4").tobytes())
    weights.append({"name": "Maximum/x", "shape": [], "dtype": "float32"})
    blobs.append(np.zeros(1, "<f4").tobytes())
    (folder / "mobileface.json").write_text(
        json.dumps({"weightsManifest": [{"paths": ["mobileface.bin"], "weights": weights}]})
    )
    (folder / "mobileface.bin").write_bytes(b"".join(blobs))
    return folder / "mobileface.json", folder / "mobileface.bin"


def test_tfjs_reader_recovers_every_tensor(tmp_path):
    net = _random_mobileface()
    j, b = _write_tfjs(net, tmp_path)
    sd = mf.convert({mf.JSON_MEMBER: j, mf.BIN_MEMBER: b})
    ref = net.state_dict()
    assert set(sd) == set(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
    b.write_bytes(b.read_bytes()[:-8])  # truncated weights file
    with pytest.raises(ValueError, match="mobileface"):
        mf.convert({mf.JSON_MEMBER: j, mf.BIN_MEMBER: b})


# ----------------------------------------------------------------------------------------------------------------
# networks with random weights


def test_dlib_network_shapes_and_padded_residual_add():
    net = _random_dlib()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 150, 150) * 255)
    assert y.shape == (2, 128) and torch.isfinite(y).all()
    # dlib adds tensors of different shapes by zero-padding the smaller at the end of each axis
    a, b = torch.ones(1, 2, 3, 3), torch.full((1, 1, 4, 4), 2.0)
    s = dr._add_padded(a, b)
    assert s.shape == (1, 2, 4, 4)
    assert s[0, 0, :3, :3].eq(3).all() and s[0, 0, 3].eq(2).all() and s[0, 1, 3].eq(0).all()
    assert s[0, 1, :3, :3].eq(1).all()


@pytest.mark.parametrize("which", ["dlib", "mobileface"])
def test_aligned_embedder_batches_and_passes_gradients(which):
    if which == "dlib":
        emb = AlignedEmbedder("dlib", _random_dlib(), dr.CHIP, dr.ffhq_to_chip_affine)
        dim = 128
    else:
        emb = AlignedEmbedder("mobileface", _random_mobileface(), mf.SIZE, mf.ffhq_to_arcface_affine)
        dim = 256
    x = torch.rand(3, 3, 128, 128, requires_grad=True)
    y = emb(x)
    assert y.shape == (3, dim)
    one = torch.cat([emb(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(y, one, atol=1e-4, rtol=1e-4)
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in emb.parameters())  # the network itself stays frozen
    assert emb(torch.rand(1, 3, 512, 512)).shape == (1, dim)  # any crop size


def test_chip_templates_land_where_the_warps_put_them():
    # dlib: the FFHQ template maps onto the chip template; ArcFace: onto its 112 template
    for size in (128, 512):
        a = dr.ffhq_to_chip_affine(size)
        pts = ffhq_template(size) @ a[:, :2].T + a[:, 2]
        assert np.abs(pts - dr.chip_template()).max() < 3.0  # a 5-point fit of two different templates
        b = mf.ffhq_to_arcface_affine(size)
        pts = ffhq_template(size) @ b[:, :2].T + b[:, 2]
        assert np.abs(pts - mf.ARCFACE_TEMPLATE_112).max() < 2.5
    # eyes level, symmetric about the chip's vertical axis
    t = dr.chip_template()
    assert abs(t[0, 1] - t[1, 1]) < 0.5 and abs((t[0, 0] + t[1, 0]) / 2 - 75) < 2


def test_torch_warp_matches_opencv_warp():
    rng = np.random.default_rng(0)
    img = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    img = np.asarray(
        torch.nn.functional.avg_pool2d(torch.from_numpy(img).permute(2, 0, 1)[None].float(), 5, 1, 2)[0]
        .permute(1, 2, 0)
        .round()
        .byte()
    )  # smooth so interpolators agree
    a = np.array([[1.1, 0.1, -20.0], [-0.1, 1.1, -10.0]])  # enlarging: no resampling filter difference
    ref = warp_affine(img, a, (150, 150), border="constant", cubic=False).astype(np.float32)
    got = warp_affine_torch(torch.from_numpy(img).permute(2, 0, 1)[None].float(), a, 150)[0].permute(1, 2, 0).numpy()
    inner = (slice(10, 140), slice(10, 140))
    assert np.abs(got[inner] - ref[inner]).mean() < 0.5


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFRESTORE_METRIC_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name, fname in (("dlib", "dlib_resnet.safetensors"), ("mobileface", "mobileface.safetensors")):
        with pytest.raises(MetricUnavailable, match=fname):
            load_identity_net(name, override=tmp_path)
    with pytest.raises(ValueError, match="unknown identity network"):
        load_identity_net("facenet")


# ----------------------------------------------------------------------------------------------------------------
# the real weights (skip without them)


def _real(name):
    try:
        return load_identity_net(name)
    except MetricUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def crops(astronaut, grace):
    from prefrestore.faces.align import align
    from prefrestore.faces.detect import build_detector

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    det = build_detector("mtcnn")
    out = {n: align(img, det.detect(img)[0], 256).crop for n, img in (("astronaut", astronaut), ("grace", grace))}
    torch.set_num_threads(before)
    return out


def test_dlib_torch_equals_dlib_on_its_chips(crops):
    pytest.importorskip("dlib")
    from prefrestore.faces.dlib import DlibFaces

    net = _real("dlib").net
    faces = DlibFaces()
    import dlib

    chips = []
    for crop in crops.values():
        for img in (crop, np.ascontiguousarray(crop[:, ::-1]), np.ascontiguousarray(np.rot90(crop))):
            box = faces.box(img)
            chips.append(dlib.get_face_chip(img, faces.shape(img, box), size=150, padding=0.25))
    ref = np.array([faces.encoder.compute_face_descriptor(c) for c in chips])
    with torch.no_grad():
        got = net(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()).double().numpy()
    assert cosine_similarity(ref, got).min() > 0.9999
    assert np.abs(ref - got).max() < 1e-4


@pytest.mark.parametrize("which", ["dlib", "mobileface"])
def test_real_network_separates_people(crops, which):
    emb = _real(which)
    ims = [
        crops["astronaut"],
        np.ascontiguousarray(crops["astronaut"][:, ::-1]),
        crops["grace"],
        np.ascontiguousarray(crops["grace"][:, ::-1]),
    ]
    a, b = emb.embed_pairs(ims, [ims[1], ims[0], ims[3], ims[0]])  # same, same, same, different
    cos = cosine_similarity(a, b)
    assert cos[:3].min() > cos[3] + (0.05 if which == "dlib" else 0.3)  # dlib's descriptors share one cone
    if which == "dlib":
        dist = np.linalg.norm(a - b, axis=1)
        assert dist[:3].max() < 0.6 < dist[3]  # dlib's own same-person threshold holds through our warp
    # batched equals one by one, gradients reach the input
    x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in ims]).requires_grad_()
    y = emb(x)
    one = torch.cat([emb(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(y, one, atol=1e-4, rtol=1e-4)
    y[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0


def test_mobileface_port_equals_the_graph():
    """Execute the TF.js graph itself (its own op semantics, NHWC) and compare with the hand port."""
    folder = os.environ.get("PREFRESTORE_TFJS_MOBILEFACE")
    if not folder or not (Path(folder) / "mobileface.json").is_file():
        pytest.skip("set PREFRESTORE_TFJS_MOBILEFACE to the folder holding mobileface.{json,bin}")
    j, b = Path(folder) / "mobileface.json", Path(folder) / "mobileface.bin"
    consts = {k: torch.from_numpy(v) for k, v in mf.read_tfjs(j, b).items()}
    nodes = json.loads(j.read_text())["modelTopology"]["node"]
    net = mf.MobileFace()
    net.load_state_dict(mf.convert({mf.JSON_MEMBER: j, mf.BIN_MEMBER: b}), strict=True)
    x = torch.rand(2, 112, 112, 3) * 255
    vals = dict(consts, data=x)
    F = torch.nn.functional

    def conv(inp, w, strides, depthwise):
        s = int(strides[1])
        if depthwise:  # (kh, kw, C, 1)
            c = w.shape[2]
            return F.conv2d(inp.permute(0, 3, 1, 2), w.permute(2, 3, 0, 1), stride=s, groups=c).permute(0, 2, 3, 1)
        return F.conv2d(inp.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), stride=s).permute(0, 2, 3, 1)

    for n in nodes:
        op, ins = n["op"], [vals.get(i) for i in n.get("input", [])]
        if op in ("Const", "Placeholder"):
            continue
        if op == "Sub":
            y = ins[0] - ins[1]
        elif op == "Mul":
            y = ins[0] * ins[1]
        elif op == "AddV2":
            y = ins[0] + ins[1]
        elif op == "Maximum":
            y = torch.maximum(ins[0], ins[1])
        elif op == "Minimum":
            y = torch.minimum(ins[0], ins[1])
        elif op == "Pad":
            p = ins[1].tolist()
            y = F.pad(ins[0], (p[3][0], p[3][1], p[2][0], p[2][1], p[1][0], p[1][1]))
        elif op in ("Conv2D", "DepthwiseConv2dNative"):
            assert json.dumps(n["attr"]["padding"]).find("VkFMSUQ=") > 0  # VALID: padding is the Pad nodes
            y = conv(ins[0], ins[1], n["attr"]["strides"]["list"]["i"], op != "Conv2D")
        elif op == "Reshape":
            y = ins[0].reshape([int(v) for v in ins[1].tolist()])
        elif op == "MatMul":
            y = ins[0] @ ins[1]
        else:
            raise AssertionError(f"op {op} not in the expected op set")
        vals[n["name"]] = y
    with torch.no_grad():
        ours = net(x.permute(0, 3, 1, 2))
    assert torch.allclose(vals["batchnorm0/add_1"], ours, atol=1e-4, rtol=1e-4)


def test_converted_files_equal_fresh_conversions():
    """The cached safetensors hold what the converters make of the registry files (when both are here)."""
    from safetensors.torch import load_file

    frm = pytest.importorskip("face_recognition_models")
    from prefrestore.metrics.weights import find_file

    try:
        path = find_file("dlib identity (torch)", dr.OUTPUT, "")
    except MetricUnavailable as err:
        pytest.skip(str(err))
    dat = Path(frm.face_recognition_model_location())
    fresh = dr.convert({dr.DAT_MEMBER: dat})
    cached = load_file(str(path))
    assert set(fresh) == set(cached) and all(torch.equal(fresh[k], cached[k]) for k in fresh)
    assert struct.calcsize("<f") == 4


# ----------------------------------------------------------------------------------------------------------------
# wiring: eval metrics, rewards, the identity guard (random-weight networks)


@pytest.fixture
def random_nets(monkeypatch):
    def fake(name, **kw):
        if name == "dlib":
            return AlignedEmbedder("dlib", _random_dlib(), dr.CHIP, dr.ffhq_to_chip_affine)
        return AlignedEmbedder("mobileface", _random_mobileface(), mf.SIZE, mf.ffhq_to_arcface_affine)

    monkeypatch.setattr("prefrestore.metrics.identity.load_identity_net", fake)


def _faces(n=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(n)]


def test_eval_metrics_identity_columns(random_nets):
    from prefrestore.metrics.suite import ImageScorer

    gt = _faces(2)
    other = _faces(2, seed=1)
    scorer = ImageScorer(("id_dlib", "id_mobileface", "deg_mobileface"))
    same = scorer.score(gt, gt=gt)
    diff = scorer.score(other, gt=gt)
    for r in same:
        assert r["id_dlib"] == pytest.approx(1.0, abs=1e-6) and r["id_mobileface"] == pytest.approx(1.0, abs=1e-6)
        assert r["deg_mobileface"] < 0.2
    for r, s in zip(diff, same, strict=True):
        assert r["id_mobileface"] < s["id_mobileface"]
        assert r["deg_mobileface"] == pytest.approx(
            np.degrees(np.arccos(np.clip(r["id_mobileface"], -1, 1))), abs=1e-6
        )
    assert not scorer.unavailable


def test_eval_metrics_unavailable_without_weights(tmp_path, monkeypatch):
    from prefrestore.metrics.suite import ImageScorer

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    scorer = ImageScorer(("psnr_y", "id_dlib", "id_mobileface", "deg_mobileface"), weights_dir=tmp_path)
    rows = scorer.score(_faces(1), gt=_faces(1))
    assert "dlib_resnet.safetensors" in scorer.unavailable["id_dlib"]
    assert "mobileface.safetensors" in scorer.unavailable["deg_mobileface"]
    assert "id_dlib" not in rows[0] and "psnr_y" in rows[0]


@pytest.mark.parametrize("name", ["id_dlib", "id_mobileface"])
def test_identity_rewards(random_nets, name):
    from prefrestore.rewards import RewardInputs, build_reward

    reward = build_reward(name)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = torch.rand(3, 3, 64, 64) * 2 - 1
    same = reward(RewardInputs(restored=x, lq=y, hq=x))
    diff = reward(RewardInputs(restored=y, lq=y, hq=x))
    lq_ref = reward(RewardInputs(restored=y, lq=y))  # no GT: the LQ is the reference
    assert same.shape == (3,) and torch.allclose(same, torch.ones(3), atol=1e-5)
    assert (diff < same).all() and torch.allclose(lq_ref, torch.ones(3), atol=1e-5)


def test_identity_guard_picks_its_network(random_nets, monkeypatch):
    from prefrestore.metrics.identity import NetIdentityScorer
    from prefrestore.restore.control import Scorers, SetupError
    from prefrestore.restore.options import DEFAULT_IDENTITY_THRESHOLDS, RestoreOptions

    assert RestoreOptions().guard_threshold == DEFAULT_IDENTITY_THRESHOLDS["dlib"]
    opts = RestoreOptions(identity_net="mobileface")
    assert opts.guard_threshold == DEFAULT_IDENTITY_THRESHOLDS["mobileface"]
    assert RestoreOptions(identity_net="mobileface", identity_threshold=0.2).guard_threshold == 0.2
    with pytest.raises(ValueError):
        RestoreOptions(identity_net="facenet")
    s = Scorers.for_options(opts, identity="auto")
    assert isinstance(s.identity, NetIdentityScorer) and s.identity.net == "mobileface"
    assert Scorers.for_options(opts, identity=None).identity is None  # "no identity" stays no identity
    crops = _faces(2)
    same, other = s.identity.compare(crops, [crops[0], crops[0]])
    assert same.distance == pytest.approx(0.0, abs=1e-6) and same.similarity == pytest.approx(1.0, abs=1e-6)
    assert other.distance == pytest.approx(1 - other.similarity) and other.distance > same.distance

    def missing(name, **kw):
        raise MetricUnavailable("MobileFace identity", "provide mobileface.safetensors at /x")

    monkeypatch.setattr("prefrestore.metrics.identity.load_identity_net", missing)
    with pytest.raises(SetupError, match="identity-net mobileface.*mobileface.safetensors"):
        Scorers.for_options(opts, identity="auto")
