"""The pieces of the bundled "small" model's recipe (issue 12): the small preset, the degradation mix and crops of
the data pipeline, stage 3's autoencoder-only path with its pixel loss (decoder included), the integrator-only
stage 1, the mild "photo" recipe, make-testset copies and the classical baseline."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.config import load_config
from prefrestore.data import DataConfig, FaceDataset, gather_records
from prefrestore.degradations import DegradationConfig, preset, scaled
from prefrestore.eval.restorers import ClassicalRestorer, RestorerSpec, build_restorer
from prefrestore.eval.testset import SyntheticSetConfig, build_testset, replay
from prefrestore.io.image import load_rgb
from prefrestore.models.presets import get_preset
from prefrestore.restore.api import random_model
from prefrestore.training import sft as sftmod
from prefrestore.training.common import select_parameters
from prefrestore.training.sft import SFTConfig, train_sft
from train_helpers import make_faces, read_log, tiny_config


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces"), n=4)


# ---------------------------------------------------------------------------------------------------------------
# Preset


def test_small_preset_shapes_and_batch_invariance(one_thread):
    cfg = get_preset("small")
    assert (cfg.resolution, cfg.latent_size, cfg.autoencoder.downsample, cfg.transformer.patch_size) == (128, 32, 4, 2)
    m = random_model("small", seed=0).eval()
    lq = torch.rand(2, 3, 128, 128) * 2 - 1
    c = m.prepare(lq)
    assert c.lq_latent.shape == (2, 16, 32, 32)
    assert c.cond.shape == (2, cfg.num_queries + 16 * 16, cfg.transformer.caption_channels)  # 256 LQ tokens (p = 2)
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
    both = m.restore(lq, generators=gens(), steps=2)
    one = torch.cat([m.restore(lq[i : i + 1], generators=[gens()[i]], steps=2) for i in range(2)])
    assert both.shape == (2, 3, 128, 128)
    assert (both - one).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------------------------
# Degradations and data


def test_photo_preset_scaled_to_128_is_the_mild_recipe():
    d = scaled(preset("photo"), 128 / 512)
    assert d.kernel_size == 11 and d.blur_sigma == (0.2, 1.0) and d.downsample == (2.0, 4.0)
    assert d.noise == (0.0, 8.0) and d.jpeg == (50.0, 90.0)


def _records(faces):
    return gather_records(DataConfig(folders=[str(faces)]))[0]


def test_degradation_mix_draws_from_both_and_leaves_single_recipes_unchanged(faces):
    base = DataConfig(folders=[str(faces)], recon_prob=0.0)
    recs = _records(faces)
    alt = DegradationConfig(blur_sigma=(0.2, 0.3), downsample=(2.0, 2.5), noise=(0.0, 1.0), jpeg=(88.0, 90.0))
    # alt_prob 0 (the default): the same items as before the option existed, whatever alt_degradation holds
    a = FaceDataset(recs, base, 128, seed=3).item(0, 0)
    b = FaceDataset(recs, dataclasses.replace(base, alt_degradation=alt), 128, seed=3).item(0, 0)
    assert torch.equal(a["lq"], b["lq"]) and a["params"] == b["params"]
    # alt_prob 1: every restoration item comes from the alternative ranges
    ds = FaceDataset(recs, dataclasses.replace(base, alt_prob=1.0, alt_degradation=alt), 128, seed=3)
    for i in range(len(recs)):
        p = ds.item(i, 0)["params"]
        assert 0.2 <= p["sigma_x"] <= 0.3 and 2.0 <= p["scale"] <= 2.5 and p["jpeg_quality"] >= 88
    # alt_prob 0.5: both recipes occur over a few epochs
    ds = FaceDataset(recs, dataclasses.replace(base, alt_prob=0.5, alt_degradation=alt), 128, seed=3)
    scales = [ds.item(i, e)["params"]["scale"] for i in range(len(recs)) for e in range(4)]
    assert any(s <= 2.5 for s in scales) and any(s > 2.5 for s in scales)


def test_crop_is_a_window_of_the_whole_pair(faces):
    base = DataConfig(folders=[str(faces)], recon_prob=0.0)
    recs = _records(faces)
    whole = FaceDataset(recs, base, 128, seed=5).item(1, 2)
    crop = FaceDataset(recs, dataclasses.replace(base, crop=64), 128, seed=5).item(1, 2)
    assert crop["hq"].shape == crop["lq"].shape == (3, 64, 64)
    hits = [
        (y, x) for y in range(65) for x in range(65) if torch.equal(whole["hq"][:, y : y + 64, x : x + 64], crop["hq"])
    ]
    assert len(hits) >= 1
    y, x = hits[0]
    assert torch.equal(whole["lq"][:, y : y + 64, x : x + 64], crop["lq"])  # degraded whole, then cropped
    with pytest.raises(ValueError, match="multiple of 8"):
        DataConfig(crop=60)


# ---------------------------------------------------------------------------------------------------------------
# Stage 3 autoencoder-only, stage 1 integrator-only


def test_config_rules_for_the_new_knobs(tmp_path, faces):
    with pytest.raises(ValueError, match="stage 3 / joint"):
        tiny_config(tmp_path, faces, "stage=1", "pix_weight=1")
    with pytest.raises(ValueError, match="needs pix_weight"):
        tiny_config(tmp_path, faces, "stage=3", "train_decoder=true")
    with pytest.raises(ValueError, match="data.crop"):
        tiny_config(tmp_path, faces, "stage=2", "data.crop=64")
    assert tiny_config(tmp_path, faces, "stage=3", "diff_weight=0", "data.crop=64").autoencoder_only


def test_stage3_autoencoder_only_trains_encoder_and_decoder_on_pixels(tmp_path, faces, monkeypatch):
    def no_transformer(*a, **k):
        raise AssertionError("the autoencoder-only path must not run SANA")

    monkeypatch.setattr(sftmod.PrefRestoreModel, "velocity", no_transformer)
    cfg = tiny_config(
        tmp_path,
        faces,
        "stage=3",
        "name=ae3",
        "diff_weight=0",
        "pix_weight=1",
        "train_decoder=true",
        "data.crop=64",
        "cond_dropout=0.0",
    )
    run = train_sft(cfg)
    before = dict(random_model("tiny", seed=cfg.seed).named_parameters())
    after = dict(from_pretrained(run / "final").named_parameters())
    trainable = set(select_parameters(random_model("tiny"), ("vae.encoder", "vae.decoder")))
    still = [n for n in trainable if torch.equal(before[n], after[n])]
    moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert not still and not moved, (still[:3], moved[:3])
    rec = read_log(run)[-1]
    assert {"mse", "pix", "rec"} <= set(rec) and "diff" not in rec
    assert rec["loss"] == pytest.approx(rec["mse"] + rec["pix"] + rec["rec"], rel=1e-5)


def test_stage3_pixel_loss_is_the_decoded_restoration_error(tmp_path, faces):
    cfg = tiny_config(tmp_path, faces, "stage=3", "diff_weight=0", "pix_weight=2")
    model = random_model("tiny", seed=0)
    obj = sftmod.SFTObjective(model, 3, cfg)
    hq, lq = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 3, 128, 128) * 2 - 1
    out = obj(hq, lq, ["x", "x"], [0, 1])
    with torch.no_grad():
        dec = model.decode_latent(model.encode_latent(lq)).float()
        pix = torch.nn.functional.l1_loss(dec, hq) + torch.nn.functional.mse_loss(dec, hq)
    assert out["pix"] == pytest.approx(pix.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["mse"].item() + 2 * pix.item(), rel=1e-5)


def test_stage1_without_diffusion_never_encodes(tmp_path, faces, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("stage 1 with diff_weight 0 must not encode latents")

    monkeypatch.setattr(sftmod, "encode_with", boom)
    run = train_sft(tiny_config(tmp_path, faces, "stage=1", "name=ce", "diff_weight=0"))
    rec = read_log(run)[-1]
    assert "ce" in rec and "diff" not in rec and rec["loss"] == pytest.approx(rec["ce"], rel=1e-6)


def test_extra_trainable_and_reference_vae(tmp_path, faces):
    cfg = tiny_config(tmp_path, faces, "stage=2", "extra_trainable=[transformer.caption_projection]")
    assert cfg.trainable[-1] == "transformer.caption_projection"
    other = random_model("tiny", seed=7)
    from prefrestore.checkpoints import save_pretrained

    save_pretrained(other, tmp_path / "ref")
    cfg = tiny_config(tmp_path, faces, "stage=3", "name=ref3", f"reference={tmp_path / 'ref'}")
    # the frozen target is the reference's autoencoder, not the init's
    m = sftmod.load_init(cfg.reference, 0)
    obj = sftmod.SFTObjective(random_model("tiny", seed=0), 3, cfg, reference_vae=m.vae)
    p_ref = next(obj.frozen_vae.parameters())
    assert torch.equal(p_ref, next(other.vae.parameters()))


# ---------------------------------------------------------------------------------------------------------------
# Test sets and the classical baseline


def test_make_testset_copies_are_seeded_by_name_and_replay(tmp_path, faces):
    out = build_testset(
        SyntheticSetConfig(
            hq_dir=str(faces), out=str(tmp_path / "ts"), preset="photo", size=64, scale_degradation=True, copies=3
        )
    )
    names = sorted(p.stem for p in (out / "lq").glob("*.png"))
    assert len(names) == 12 and names[:3] == ["face0_k0", "face0_k1", "face0_k2"]
    assert not np.array_equal(load_rgb(out / "lq" / "face0_k0.png"), load_rgb(out / "lq" / "face0_k1.png"))
    assert np.array_equal(replay(out, "face0_k1"), load_rgb(out / "lq" / "face0_k1.png"))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["count"] == 12 and meta["copies"] == 3


def test_classical_baseline_denoises_and_sharpens():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    clean = np.stack([(xx * 4) % 256, (yy * 4) % 256, np.full((64, 64), 128)], -1).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    r = build_restorer(RestorerSpec(model="classical"), output_size=64)
    assert isinstance(r, ClassicalRestorer)
    (out,) = r.restore([noisy])
    assert out.shape == clean.shape and out.dtype == np.uint8
    err = lambda a: float(np.abs(a.astype(float) - clean).mean())  # noqa: E731
    assert err(out) < 0.8 * err(noisy)
    # with both stages off it is the identity (the bicubic baseline)
    (same,) = ClassicalRestorer(64, h=0, amount=0).restore([noisy])
    assert np.array_equal(same, noisy)


def test_small_stage_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs" / "small"
    stages = sorted(p for p in root.glob("*.yaml") if not p.stem.startswith("rl"))
    expected = {"stage0", "stage1", "stage2", "stage3a", "stage3b", "stage3c", "stage3d", "stage3e"}
    assert expected <= {p.stem for p in stages}
    for p in stages:
        cfg = load_config(SFTConfig, str(p), [])
        assert cfg.max_steps > 0, p


# ---------------------------------------------------------------------------------------------------------------
# The LQ skip into the decoder


def _with_skip(levels=2, seed=0):
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, autoencoder=dataclasses.replace(cfg.autoencoder, lq_skip_levels=levels))
    tok = random_model("tiny").integrator.text_tokenizer
    torch.manual_seed(seed)
    return sftmod.PrefRestoreModel(cfg, tok).eval()


def test_lq_skip_starts_as_the_plain_decoder_and_then_uses_the_lq(one_thread):
    m = _with_skip()
    z, lq = torch.randn(2, 16, 16, 16), torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        plain, skipped = m.decode_latent(z), m.decode_latent(z, lq)
        assert torch.allclose(plain, skipped, atol=1e-6)  # zero-initialised outputs: exactly the plain decoder
        for conv in m.lq_skip.out:
            conv.weight.normal_(0, 0.1)
        assert not torch.allclose(plain, m.decode_latent(z, lq), atol=1e-3)
        assert torch.allclose(plain, m.decode_latent(z, lq, skip_scale=0.0))
        feats = m.lq_skip(lq)
        assert [tuple(f.shape[1:]) for f in feats] == [(32, 128, 128), (64, 64, 64)]
    with pytest.raises(ValueError, match="lq_skip_levels"):
        _with_skip(levels=9)


def test_lq_skip_saves_loads_and_trains_in_stage3(tmp_path, faces):
    from prefrestore.checkpoints import save_pretrained

    m = _with_skip()
    save_pretrained(m, tmp_path / "skip")
    back = from_pretrained(tmp_path / "skip")
    assert back.config.autoencoder.lq_skip_levels == 2
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values(), strict=True))
    cfg = tiny_config(
        tmp_path,
        faces,
        "stage=3",
        "name=skip3",
        f"init={tmp_path / 'skip'}",
        "diff_weight=0",
        "pix_weight=1",
        "train_decoder=true",
        "data.crop=64",
    )
    run = train_sft(cfg)
    after = from_pretrained(run / "final")
    moved = [
        n for n, p in after.lq_skip.named_parameters() if not torch.equal(p, dict(back.lq_skip.named_parameters())[n])
    ]
    # one step: the zero-initialised output convolutions move (the rest get gradients once those are non-zero)
    assert sorted(moved) == sorted(n for n, _ in back.lq_skip.named_parameters() if n.startswith("out."))


def test_face_augmentations_are_seeded_and_bounded():
    from prefrestore.data.augment import colour_jitter, jitter_detection
    from prefrestore.faces.types import FaceDetection

    lm = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 70.0], [45.0, 90.0], [75.0, 90.0]])
    det = FaceDetection.from_arrays(np.array([20.0, 20.0, 100.0, 110.0]), 0.99, lm)
    a = jitter_detection(det, np.random.default_rng(3)).landmarks_array()
    b = jitter_detection(det, np.random.default_rng(3)).landmarks_array()
    assert np.array_equal(a, b) and not np.allclose(a, lm)
    eye = np.linalg.norm(a[1] - a[0]) / np.linalg.norm(lm[1] - lm[0])
    assert 0.92 - 1e-9 <= eye <= 1.08 + 1e-9  # a similarity: the scale is the only change of distances
    img = np.full((8, 8, 3), 100, np.uint8)
    out = colour_jitter(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8 and abs(int(out.mean()) - 100) <= 12


def _randomise(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_fusion_blocks_grow_a_trained_skip_without_changing_its_output(tmp_path, one_thread):
    import subprocess
    import sys

    from prefrestore.checkpoints import save_pretrained

    m = _with_skip()
    _randomise(m.lq_skip)  # a "trained" skip: non-zero outputs
    save_pretrained(m, tmp_path / "trained")
    tool = Path(__file__).resolve().parents[1] / "tools" / "graft_autoencoder.py"
    subprocess.run(
        [
            sys.executable,
            str(tool),
            "--model",
            str(tmp_path / "trained"),
            "--lq-skip-blocks",
            "3",
            "-o",
            str(tmp_path / "grown"),
        ],
        check=True,
        capture_output=True,
    )
    grown = from_pretrained(tmp_path / "grown").eval()
    assert grown.config.autoencoder.lq_skip_blocks == 3
    assert [len(b) for b in grown.lq_skip.blocks] == [3, 3]
    z, lq = torch.randn(2, 16, 16, 16), torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m.decode_latent(z, lq), grown.decode_latent(z, lq))  # zero second convs: exactly 3's
        for blocks in grown.lq_skip.blocks:
            _randomise(blocks, seed=2)
        assert not torch.allclose(m.decode_latent(z, lq), grown.decode_latent(z, lq), atol=1e-3)
        assert torch.equal(m.decode_latent(z), grown.decode_latent(z))  # no LQ: the plain decoder, blocks unused
    # a donor with blocks grafted into a model without them: the model grows to the donor's skip
    save_pretrained(_with_skip(seed=5), tmp_path / "other")
    subprocess.run(
        [
            sys.executable,
            str(tool),
            "--model",
            str(tmp_path / "other"),
            "--autoencoder",
            str(tmp_path / "grown"),
            "-o",
            str(tmp_path / "grafted"),
        ],
        check=True,
        capture_output=True,
    )
    grafted = from_pretrained(tmp_path / "grafted")
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            grafted.lq_skip.state_dict().values(),
            from_pretrained(tmp_path / "grown").lq_skip.state_dict().values(),
            strict=True,
        )
    )
    again = subprocess.run(
        [
            sys.executable,
            str(tool),
            "--model",
            str(tmp_path / "grown"),
            "--lq-skip-blocks",
            "1",
            "-o",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0 and "already has fusion blocks" in again.stderr


def test_fusion_blocks_need_a_skip_and_train_in_stage3(tmp_path, faces):
    from prefrestore.checkpoints import save_pretrained

    with pytest.raises(ValueError, match="needs an LQ skip"):
        dataclasses.replace(get_preset("tiny").autoencoder, lq_skip_blocks=2)
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(
        cfg, autoencoder=dataclasses.replace(cfg.autoencoder, lq_skip_levels=2, lq_skip_blocks=1)
    )
    torch.manual_seed(0)
    m = sftmod.PrefRestoreModel(cfg, random_model("tiny").integrator.text_tokenizer)
    _randomise(m.lq_skip.out)  # skip outputs live, so the blocks' inputs carry the LQ
    save_pretrained(m, tmp_path / "fuse")
    run = train_sft(
        tiny_config(
            tmp_path,
            faces,
            "stage=3",
            "name=fuse3",
            f"init={tmp_path / 'fuse'}",
            "diff_weight=0",
            "pix_weight=1",
            "train_decoder=true",
            "data.crop=64",
            "max_steps=2",
        )
    )
    before = dict(from_pretrained(tmp_path / "fuse").lq_skip.blocks.named_parameters())
    after = dict(from_pretrained(run / "final").lq_skip.blocks.named_parameters())
    # step 1 moves the zero second convolutions, step 2 the first ones: every block parameter trains
    assert [n for n in before if torch.equal(before[n], after[n])] == []
