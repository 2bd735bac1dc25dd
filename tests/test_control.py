"""Restoration control: the fidelity dial, the options schema, best-of-N reranking, the identity guard, colour."""

import argparse
import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from prefrestore.metrics.color import delta_e2000, face_delta_e, rgb_to_lab
from prefrestore.models import fidelity_dial as fid
from prefrestore.models.fidelity_dial import FidelityPoint, FidelityTable, table_from_chain
from prefrestore.restore import options
from prefrestore.restore.control import Scorers, fix_color, restore_controlled
from prefrestore.restore.options import RestoreOptions

# ---------------------------------------------------------------------------------------------------------------
# Fidelity tables


def test_table_interpolates_and_validates():
    t = FidelityTable((FidelityPoint(0.0, 0.5, 2.0), FidelityPoint(0.5, 0.1, 1.0), FidelityPoint(1.0, 0.1, 1.0, 0.5)))
    p = t.at(0.25)
    assert (p.start_sigma, p.guidance_scale, p.input_blend) == pytest.approx((0.3, 1.5, 0.0))
    assert t.at(0.75).input_blend == pytest.approx(0.25) and t.at(1.0).input_blend == 0.5
    with pytest.raises(ValueError, match="closest to the input"):
        t.at(1.5)
    with pytest.raises(ValueError, match="increase strictly"):
        FidelityTable((FidelityPoint(0.0, 0.5, 1.0), FidelityPoint(0.0, 0.1, 1.0), FidelityPoint(1.0, 0.1, 1.0)))
    assert FidelityTable.from_dict(t.to_dict()).points == t.points


def test_calibration_chain_keeps_only_increasing_closeness():
    settings = [(0.7, 1.0, 0.0), (0.5, 1.0, 0.0), (0.3, 1.0, 0.0), (0.1, 1.0, 0.0), (0.1, 1.0, 0.5)]
    closeness = [20.0, 19.0, 22.0, 24.0, 28.0]  # 0.5 is *less* close than 0.7: dropped
    t = table_from_chain(settings, closeness, default=(0.1, 1.0, 0.0))
    assert [p.start_sigma for p in t.points] == [0.7, 0.3, 0.1, 0.1]
    assert [p.fidelity for p in t.points] == [0.0, 0.25, 0.5, 1.0]  # (c - 20) / (28 - 20)
    assert t.default_fidelity == 0.5 and t.calibrated


def test_table_search_order(tmp_path, monkeypatch):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(fid, "ASSET_DIR", tmp_path / "assets")
    assert not fid.find_table(model, 0.1, 1.0).calibrated  # nothing calibrated: generic around the defaults
    assert fid.find_table(model, 0.1, 1.0).at(0.5).start_sigma == 0.1
    calibrated = table_from_chain([(0.4, 1.0, 0.0), (0.1, 1.0, 0.0)], [1.0, 2.0])
    asset = fid.asset_path(fid.weights_digest(model))
    asset.parent.mkdir()
    asset.write_text(json.dumps(calibrated.to_dict()))
    assert fid.find_table(model, 0.1, 1.0).at(0.0).start_sigma == 0.4  # the asset for these exact weights
    (model / "model.safetensors").write_bytes(b"other weights")
    assert not fid.find_table(model, 0.1, 1.0).calibrated  # a table never applies to other weights
    beside = table_from_chain([(0.9, 1.0, 0.0), (0.2, 1.0, 0.0)], [1.0, 2.0])
    (model / fid.TABLE_FILE).write_text(json.dumps(beside.to_dict()))
    assert fid.find_table(model, 0.1, 1.0).at(0.0).start_sigma == 0.9  # the folder's own table first


def test_restorer_fidelity_blend_and_conflicts(tiny_model):
    from prefrestore.restore.api import FaceRestorer

    r = FaceRestorer(tiny_model, steps=2, batch_size=4)
    r._table = FidelityTable((FidelityPoint(0.0, 0.3, 1.0), FidelityPoint(1.0, 0.3, 1.0, 0.5)))
    lq = torch.rand(2, 3, 128, 128) * 2 - 1
    base = r.restore_tensor(lq, fidelity=0.0)
    half = r.restore_tensor(lq, fidelity=1.0)
    torch.testing.assert_close(half, 0.5 * base + 0.5 * lq)  # same samples, half the input blended in
    per_row = r.restore_tensor(lq, fidelity=0.0, seeds=[5, 6])
    torch.testing.assert_close(per_row[1:], r.restore_tensor(lq[1:], fidelity=0.0, seed=6))
    with pytest.raises(ValueError, match="not both"):
        FaceRestorer(tiny_model, start_sigma=0.5, fidelity=0.5)
    crop = np.full((128, 128, 3), 100, np.uint8)
    (o,) = r.restore_faces([crop], RestoreOptions(fidelity=1.0, identity_guard="off", color_fix="none"), seed=6)
    assert np.array_equal(o.restored, r.restore([crop], seed=6, fidelity=1.0)[0])
    assert o.report()["fidelity"] == {"fidelity": 1.0, "start_sigma": 0.3, "guidance_scale": 1.0, "input_blend": 0.5}


@pytest.fixture(scope="module")
def heldout_crops(one_thread, detector, astronaut, grace):
    """Two aligned 128 px faces (uint8 RGB) and a fixed paper degradation of each."""
    from prefrestore.degradations import apply, preset, sample_params, scaled
    from prefrestore.faces.align import align
    from prefrestore.io.image import from_model, to_model

    gts = [align(img, detector.detect(img)[0], 128).crop for img in (astronaut, grace)]
    cfg = scaled(preset("paper"), 128 / 512)
    lqs = [
        from_model(
            apply((to_model([g])[0] + 1) / 2, sample_params(cfg, torch.Generator().manual_seed(7 + i)))[None] * 2 - 1
        )[0]
        for i, g in enumerate(gts)
    ]
    return gts, lqs


def test_bundled_model_dial_is_monotonic_in_closeness_to_the_input(heldout_crops):
    from prefrestore.eval.control_sweep import Meter
    from prefrestore.hub import bundled_model_dir
    from prefrestore.restore.api import load_restorer

    if bundled_model_dir() is None:
        pytest.skip("no bundled model")
    _, lqs = heldout_crops
    r = load_restorer(str(bundled_model_dir()))
    closeness = [float(Meter.psnr_y(r.restore(lqs, fidelity=f), lqs).mean()) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(b > a for a, b in zip(closeness, closeness[1:], strict=False)), closeness


# ---------------------------------------------------------------------------------------------------------------
# Options schema


def test_options_one_schema_for_cli_mapping_and_json():
    p = argparse.ArgumentParser()
    options.add_arguments(p, "restore")
    args = p.parse_args(
        [
            "--fidelity",
            "0.7",
            "--candidates",
            "3",
            "--faces",
            "0,2",
            "--rerank-weights",
            "identity_dlib=1,lmd_mtcnn=0.25",
            "--identity-guard",
            "flag",
            "--blend",
            "0.5",
        ]
    )
    from_cli = options.RestoreSettings.from_namespace(args).control
    from_json = RestoreOptions.from_dict(
        {
            "fidelity": 0.7,
            "candidates": 3,
            "faces": [0, 2],
            "identity_guard": "flag",
            "rerank_weights": {"identity_dlib": 1, "lmd_mtcnn": 0.25},
            "blend": 0.5,
        }
    )
    assert from_cli == from_json and from_cli.faces == (0, 2)
    assert options.RestoreSettings.from_namespace(p.parse_args([])).control == RestoreOptions()
    schema = options.json_schema()
    assert {f.name for f in dataclasses.fields(RestoreOptions)} <= set(schema["properties"])
    assert schema["properties"]["fidelity"]["anyOf"][0]["maximum"] == 1.0
    assert "1 = closest to the input" in schema["properties"]["fidelity"]["description"]
    assert schema["properties"]["identity_guard"]["enum"] == ["off", "flag", "fallback"]
    for bad, match in [
        ({"fidelity": 1.2}, "--fidelity 1.2 (fidelity): must be a number in [0, 1]"),
        ({"candidates": 0}, "--candidates 0 (candidates): must be an integer in 1..64"),
        ({"identity_guard": "on"}, "--identity-guard"),
        ({"colour": 1}, "control: unknown setting 'colour'"),
        ({"rerank_weights": {"musiq": 1}}, "unknown reward"),
        ({"faces": "0,x"}, "--faces"),
        (
            {"max_face_size": 10, "min_face_size": 20},
            "--max-face-size 10.0 (max_face_size): below --min-face-size 20.0 (min_face_size)",
        ),
        ({"candidates": 2, "rerank_weights": {"psnr": 0}}, "all weights are 0"),
    ]:
        with pytest.raises(options.SettingError, match=re.escape(match)):
            RestoreOptions.from_dict(bad)


def test_cli_rejects_fidelity_with_start_sigma(tmp_path, capsys):
    from prefrestore.cli import main

    (tmp_path / "in").mkdir()
    code = main(
        ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--fidelity", "0.5", "--start-sigma", "0.2"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--fidelity" in err[0]


# ---------------------------------------------------------------------------------------------------------------
# Best-of-N


class NoisyRestorer:
    """crop + seed-dependent noise; takes per-face seeds as FaceRestorer does. Records its calls."""

    resolution = 32

    def __init__(self):
        self.calls = []

    capabilities = frozenset({"fidelity", "seeds"})

    def restore(self, faces, *, seed=0, seeds=None, fidelity=None):
        seeds = [seed] * len(faces) if seeds is None else list(seeds)
        self.calls.append((len(faces), tuple(seeds), fidelity))
        out = []
        for f, s in zip(faces, seeds, strict=True):
            noise = np.random.default_rng(s).integers(-20, 21, f.shape)
            out.append(np.clip(f.astype(int) + noise, 0, 255).astype(np.uint8))
        return out


class FakeRerank:
    """score = -mean |candidate - input| (closer is better), so the winner can be computed independently."""

    def __call__(self, restored, lq, hq=None):
        d = -(restored - lq).abs().mean((1, 2, 3))
        return d, {"closeness": d}


def _faces(n, size=32):
    rng = np.random.default_rng(0)
    return [rng.integers(40, 200, (size, size, 3)).astype(np.uint8) for _ in range(n)]


def test_best_of_n_batches_candidates_and_picks_the_best_deterministically():
    crops = _faces(3)
    r = NoisyRestorer()
    scorers = Scorers()
    scorers._rerank = FakeRerank()
    opts = RestoreOptions(candidates=4, color_fix="none", identity_guard="off")
    out = restore_controlled(r, crops, opts, seed=10, batch_size=8, scorers=scorers)
    assert [c[0] for c in r.calls] == [8, 4] and sorted(s for c in r.calls for s in c[1]) == sorted(
        list(range(10, 14)) * 3
    )
    for crop, o in zip(crops, out, strict=True):
        assert [c.seed for c in o.candidates] == [10, 11, 12, 13]
        scores = [c.score for c in o.candidates]
        assert o.chosen == int(np.argmax(scores))
        (expected,) = NoisyRestorer().restore([crop], seed=10 + o.chosen)
        assert np.array_equal(o.restored, expected)
        assert o.report()["chosen_seed"] == 10 + o.chosen and len(o.report()["candidates"]) == 4
    again = restore_controlled(NoisyRestorer(), crops, opts, seed=10, batch_size=8, scorers=scorers)
    assert [o.chosen for o in again] == [o.chosen for o in out]
    single = NoisyRestorer()
    one = restore_controlled(
        single, crops, RestoreOptions(color_fix="none", identity_guard="off"), seed=10, batch_size=8, scorers=Scorers()
    )
    assert single.calls == [(3, (10, 10, 10), None)]  # N = 1: one call, the plain seed, no reranking
    assert one[0].candidates == () and np.array_equal(one[0].restored, NoisyRestorer().restore([crops[0]], seed=10)[0])


def test_rerank_ties_go_to_the_lowest_seed():
    class Flat:
        def __call__(self, restored, lq, hq=None):
            z = torch.zeros(len(restored))
            return z, {"flat": z}

    scorers = Scorers()
    scorers._rerank = Flat()
    out = restore_controlled(
        NoisyRestorer(),
        _faces(1),
        RestoreOptions(candidates=3, identity_guard="off"),
        seed=4,
        batch_size=2,
        scorers=scorers,
    )
    assert out[0].chosen == 0 and out[0].candidates[0].seed == 4


def test_rerank_by_psnr_to_the_input_picks_the_candidate_closest_to_it():
    """psnr / ssim are offered "to the input": the reward gets the input crop as its reference (there is no GT)."""
    crops = _faces(2)
    scorers = Scorers.for_options(RestoreOptions(candidates=4, rerank_weights={"psnr": 1.0}), identity=None)
    out = restore_controlled(
        NoisyRestorer(),
        crops,
        RestoreOptions(candidates=4, rerank_weights={"psnr": 1.0}, color_fix="none", identity_guard="off"),
        seed=0,
        batch_size=8,
        scorers=scorers,
    )
    from prefrestore.io.image import to_model, to_unit
    from prefrestore.metrics.pixel import psnr

    for crop, o in zip(crops, out, strict=True):
        cands = to_model([NoisyRestorer().restore([crop], seed=c.seed)[0] for c in o.candidates])
        p = psnr(to_unit(cands), to_unit(to_model([crop] * len(cands))))  # Y, as the reward
        assert o.chosen == int(p.argmax()) and len(set(p.tolist())) > 1
        assert [c.parts["psnr"] for c in o.candidates] == pytest.approx(p.tolist(), abs=1e-4)


def test_default_rerank_weights_build_the_offline_rewards():
    pytest.importorskip("dlib")
    try:
        scorers = Scorers.for_options(RestoreOptions(candidates=2), identity=None)
    except Exception as err:  # BRISQUE needs Debian's opencv-data
        pytest.skip(str(err))
    assert set(scorers.rerank.weights) == {"identity_dlib", "brisque", "lmd_mtcnn"}


# ---------------------------------------------------------------------------------------------------------------
# Identity guard (real dlib, two different people)


class SwapRestorer:
    """Returns another person's face; at fidelity 1 (``honest_at_one``) it returns the input instead."""

    resolution = 128

    def __init__(self, other, honest_at_one=False):
        self.other, self.honest_at_one = other, honest_at_one

    capabilities = frozenset({"fidelity"})

    def restore(self, faces, *, seed=0, fidelity=None):
        if self.honest_at_one and fidelity == 1.0:
            return [f.copy() for f in faces]
        return [self.other.copy() for _ in faces]


def test_identity_guard_flags_another_person_and_falls_back(heldout_crops):
    pytest.importorskip("dlib")
    from prefrestore.faces.identity import IdentityScorer

    gts, _ = heldout_crops
    scorers = Scorers(identity=IdentityScorer())
    astronaut, grace = gts
    flag = restore_controlled(
        SwapRestorer(grace), [astronaut], RestoreOptions(identity_guard="flag"), seed=0, batch_size=1, scorers=scorers
    )[0]
    assert flag.flagged and flag.action is None and flag.identity.distance > 0.6
    assert flag.landmark_distance is not None  # MTCNN finds both faces
    fb = restore_controlled(
        SwapRestorer(grace, honest_at_one=True), [astronaut], RestoreOptions(), seed=0, batch_size=1, scorers=scorers
    )[0]
    assert fb.flagged and fb.action == "fallback: fidelity 1" and fb.identity.distance < 0.1
    assert fb.rejected_identity.distance > 0.6 and np.array_equal(fb.restored, astronaut)
    last = restore_controlled(
        SwapRestorer(grace), [astronaut], RestoreOptions(), seed=0, batch_size=1, scorers=scorers
    )[0]
    assert last.action == "fallback: input" and np.array_equal(last.restored, astronaut)
    ok = restore_controlled(
        SwapRestorer(astronaut), [astronaut], RestoreOptions(), seed=0, batch_size=1, scorers=scorers
    )[0]
    assert not ok.flagged and ok.action is None and ok.report()["identity_guard"] == {"flagged": False, "action": None}
    off = restore_controlled(
        SwapRestorer(grace), [astronaut], RestoreOptions(identity_guard="off"), seed=0, batch_size=1, scorers=scorers
    )[0]
    assert not off.flagged and off.identity.distance > 0.6  # still measured and reported


# ---------------------------------------------------------------------------------------------------------------
# Colour


def test_lab_and_ciede2000_match_scikit_image():
    skc = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (50, 3)).astype(np.uint8), rng.integers(0, 256, (50, 3)).astype(np.uint8)
    np.testing.assert_allclose(rgb_to_lab(a), skc.rgb2lab(a[None] / 255.0)[0], atol=1e-3)
    la, lb = rgb_to_lab(a), rgb_to_lab(b)
    np.testing.assert_allclose(delta_e2000(la, lb), skc.deltaE_ciede2000(la, lb), atol=1e-6)
    # Sharma et al. 2005, table 1, pair 1
    assert delta_e2000(np.array([50, 2.6772, -79.7751]), np.array([50, 0, -82.7485])) == pytest.approx(
        2.0425, abs=1e-4
    )


def test_color_fix_removes_a_dark_red_cast(heldout_crops):
    gts, _ = heldout_crops
    face = gts[0]
    cast = np.clip(face.astype(float) * [0.92, 0.8, 0.8] + [8, 0, 0], 0, 255).astype(np.uint8)  # darker, redder
    before = face_delta_e(face, cast)
    after = face_delta_e(face, fix_color(cast, face, "lowfreq"))
    assert before > 5 and after < before / 4, (before, after)
    assert np.array_equal(fix_color(face, face, "lowfreq"), face)  # nothing to fix: unchanged
    out = restore_controlled(
        SwapRestorer(cast), [face], RestoreOptions(identity_guard="off"), seed=0, batch_size=1, scorers=Scorers()
    )[0]
    assert out.color_delta_e["raw"] == pytest.approx(before) and out.color_delta_e["fixed"] == pytest.approx(after)


# ---------------------------------------------------------------------------------------------------------------
# Face selection and blend, through the whole-photo pipeline


class DarkRestorer:
    """Returns every face darkened by 60 levels (so where it was pasted, and how strongly, is measurable)."""

    resolution = 128

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        return [np.clip(f.astype(int) - 60, 0, 255).astype(np.uint8) for f in faces]


def test_faces_indices_max_size_and_blend_visibility(one_thread, detector, astronaut, grace):
    from prefrestore.io.image import resize
    from prefrestore.io.photo_io import Photo
    from prefrestore.restore.pipeline import PipelineConfig, restore_photos

    photo = np.full((300, 560, 3), 120, np.uint8)
    photo[:300, :300] = resize(astronaut, (300, 300))
    photo[60 : 60 + 183, 340 : 340 + 150] = resize(grace, (150, 183))  # two faces, the left one larger

    def run(**kw):
        from prefrestore.faces.paste import BlendConfig

        opts = RestoreOptions(identity_guard="off", color_fix="none", keep_detail="off", **kw)
        # neither the no-loss rule (keep_detail, which leaves a darkened face as the input) nor the colour match at
        # paste-back (which re-lights it to its surroundings): the pastes must show for the visibility check below
        cfg = PipelineConfig.from_options(opts, upscale=1.0, blend=BlendConfig(color_match="none"))
        (res,) = restore_photos([(0, Photo(photo))], DarkRestorer(), detector, cfg)
        return res

    both = run()
    assert [f.index for f in both.faces] == [0, 1]
    sizes = [f.aligned.detection.size for f in both.faces]
    assert sizes[0] > sizes[1]
    second = run(faces=(1,))
    assert [f.index for f in second.faces] == [1]  # the index the full run gave it, not renumbered
    assert any(r.reason.startswith("not in --faces") for r in second.rejected)
    small = run(max_face_size=(sizes[0] + sizes[1]) / 2)
    assert [f.aligned.detection.size for f in small.faces] == [sizes[1]]
    assert any(r.reason.startswith("too large") for r in small.rejected)
    assert np.array_equal(run(blend=0.0).photo.color, photo)  # visibility 0: the photo itself
    full = both.photo.color.astype(int)
    half = run(blend=0.5).photo.color.astype(int)
    region = np.abs(full - photo).sum(-1) > 30  # where the darkened faces show
    assert region.sum() > 10_000, region.sum()  # both faces' pastes (an empty region would compare NaN with NaN)
    np.testing.assert_allclose((photo - half)[region].mean(), (photo - full)[region].mean() / 2, rtol=0.05)


def test_large_weights_digest_sees_both_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(fid, "_WHOLE", 10)
    monkeypatch.setattr(fid, "_END", 8)
    (tmp_path / "model.safetensors").write_bytes(b"a" * 100)
    first = fid.weights_digest(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"a" * 99 + b"b")
    assert fid.weights_digest(tmp_path) != first


def test_a_setup_problem_stops_the_run_in_one_line():
    from prefrestore.io.photo_io import Photo
    from prefrestore.restore.aligned_crops import restore_aligned
    from prefrestore.restore.control import SetupError
    from prefrestore.restore.pipeline import PipelineConfig

    cfg = PipelineConfig.from_options(RestoreOptions(fidelity=0.5, identity_guard="off"))
    with pytest.raises(SetupError, match="no fidelity dial"):  # not one "restoration failed" per photo
        list(restore_aligned([(0, Photo(_faces(1, 128)[0]))], DarkRestorer(), cfg))


# ---------------------------------------------------------------------------------------------------------------
# Defaults that run on a fresh install: an unavailable reward leaves the *default* rerank with a note


@pytest.fixture
def no_brisque(monkeypatch):
    """BRISQUE as on a fresh install without Debian's opencv-data; the other default rewards as cheap stand-ins."""
    from prefrestore.errors import UserError
    from prefrestore.rewards import composite

    def missing(device, weights_dir, **kw):
        raise UserError("BRISQUE unavailable: apt-get install opencv-data")

    monkeypatch.setitem(composite.BUILDERS, "brisque", missing)
    for name in ("identity_dlib", "lmd_mtcnn"):
        monkeypatch.setitem(composite.BUILDERS, name, composite.BUILDERS["psnr"])


def test_default_rerank_drops_an_unavailable_reward_with_a_note(no_brisque):
    scorers = Scorers.for_options(RestoreOptions(candidates=4), identity=None)  # builds the rerank: no error
    assert set(scorers.rerank.weights) == {"identity_dlib", "lmd_mtcnn"}
    assert len(scorers.notes) == 1 and "brisque" in scorers.notes[0] and "opencv-data" in scorers.notes[0]
    crops = _faces(2, 64)
    out = restore_controlled(
        NoisyRestorer(),
        crops,
        RestoreOptions(candidates=3, identity_guard="off"),
        seed=0,
        batch_size=8,
        scorers=scorers,
    )
    assert all(len(o.candidates) == 3 and set(o.candidates[0].parts) == {"identity_dlib", "lmd_mtcnn"} for o in out)
    assert any("brisque" in n for n in out[0].notes)


def test_a_named_unavailable_reward_is_an_error(no_brisque):
    from prefrestore.restore.control import SetupError

    with pytest.raises(SetupError, match="rerank reward brisque is unavailable.*--rerank-weights"):
        Scorers.for_options(RestoreOptions(candidates=2, rerank_weights={"brisque": 1, "psnr": 1}), identity=None)


def test_the_api_answers_422_for_a_reward_it_cannot_load(no_brisque, tmp_path, one_thread, detector):
    pytest.importorskip("fastapi_offline")
    pytest.importorskip("uvicorn")
    requests = pytest.importorskip("requests")
    from prefrestore.serving.app import create_app
    from prefrestore.serving.schemas import ServerSettings
    from serve_helpers import EXAMPLES, InvertRestorer, fake_loader, running_server

    workdir = tmp_path / "work"
    app = create_app(ServerSettings(workdir=workdir), fake_loader(InvertRestorer(), detector, workdir))
    photo = (EXAMPLES / "grace_hopper.jpg").read_bytes()
    with running_server(app) as url:
        for options, status in (
            ({"candidates": 2, "rerank_weights": {"brisque": 1}}, 422),
            ({"candidates": 2, "identity_guard": "off"}, 200),
        ):  # the default weights
            r = requests.post(
                url + "/v1/restore",
                files={"file": ("p.jpg", photo)},
                data={"options": json.dumps({"upscale": 1, **options})},
                timeout=60,
            )
            assert r.status_code == status, r.text
    assert "brisque" in r.headers["X-Prefrestore-Result"]  # the note that it was left out


def test_a_video_given_candidates_runs_with_the_documented_warning(no_brisque, tmp_path, astronaut, grace, one_thread):
    pytest.importorskip("av")
    from conftest import run_restore_cli
    from video_clips import pan_zoom_cut, write_clip

    clip = write_clip(tmp_path / "clip.mp4", pan_zoom_cut(astronaut, grace, n=6), audio=False)
    code, err = run_restore_cli(["restore", str(clip), "-o", str(tmp_path / "out"), "--candidates", "4"])
    assert code == 0, err
    assert "--candidates" in err and "apply to photos only" in err
    assert (tmp_path / "out" / "restored_videos" / "clip.mp4").exists()
    # the no-loss rule's action, one per face track (kept for the whole track, so a face cannot flicker)
    report = json.loads((tmp_path / "out" / "reports" / "clip.json").read_text())
    assert report["detail"] and set(report["detail"].values()) <= {"restored", "merged", "added_detail", "kept_input"}


def test_the_cli_runs_candidates_with_the_default_rerank_on_a_fresh_install(no_brisque, tmp_path, grace, one_thread):
    from PIL import Image

    from conftest import run_restore_cli

    Image.fromarray(grace).save(tmp_path / "grace.png")
    code, err = run_restore_cli(
        [
            "restore",
            str(tmp_path / "grace.png"),
            "-o",
            str(tmp_path / "out"),
            "-s",
            "1",
            "--candidates",
            "4",
            "--identity-guard",
            "off",
            "--keep-detail",
            "off",
        ]
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "reports" / "grace.json").read_text())
    (face,) = report["faces"]
    assert len(face["candidates"]) == 4 and "brisque" not in face["candidates"][0]["parts"]
    assert any("brisque" in n for n in report["notes"])
    assert face["detail"]["action"] == "restored" and face["detail"]["model_resolution"] == 128
