"""Each SFT stage trains exactly its parameter set (docs/method.md §2, docs/layouts.md §3.4): after one real optimizer step
of ``train_sft`` every trainable tensor moved and every frozen one is bit-identical; and grad accumulation 1x8
equals 8x1."""

import pytest
import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.restore.api import random_model
from prefrestore.training.common import select_parameters
from prefrestore.training.sft import TRAINABLE, train_sft
from train_helpers import make_faces, read_log, tiny_config


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces"))


def _expected_names(stage) -> set[str]:
    return set(select_parameters(random_model("tiny"), TRAINABLE[stage]))


def test_stage_parameter_sets_match_the_paper():
    lm = {n for n in _expected_names(1) if n.startswith("integrator.lm.")}
    assert lm == {n for n, _ in random_model("tiny").integrator.lm.named_parameters(prefix="integrator.lm")}
    assert "diffusion_connector.3.weight" in _expected_names(1)  # the shared norm trains in stage 1 ...
    s2 = _expected_names(2)
    assert "diffusion_connector.3.weight" not in s2 and "vae_connector.3.weight" not in s2  # ... not in stage 2
    assert {n.split(".")[0] for n in s2} == {"transformer", "vae_connector"}
    assert not any(n.startswith(("transformer.caption", "transformer.patch_embed")) for n in s2)
    assert _expected_names(3) - s2 == {n for n in _expected_names(0) if n.startswith("vae.encoder.")}
    assert _expected_names("joint") == _expected_names(1) | _expected_names(3)


@pytest.mark.parametrize("stage", [0, 1, 2, 3, "joint"])
def test_one_step_moves_exactly_the_stage_parameters(stage, tmp_path, faces):
    extra = ["gradient_checkpointing=true"] if stage == "joint" else []
    cfg = tiny_config(tmp_path, faces, f"stage={stage}", f"name=s{stage}", "cond_dropout=0.0", *extra)
    run = train_sft(cfg)
    before = dict(random_model("tiny", seed=cfg.seed).named_parameters())
    after = dict(from_pretrained(run / "final").named_parameters())
    trainable = _expected_names(stage)
    still = [n for n in trainable if torch.equal(before[n], after[n])]
    moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert not still, f"stage {stage}: trainable tensors that did not move: {still[:5]}"
    assert not moved, f"stage {stage}: frozen tensors that changed: {moved[:5]}"
    rec = read_log(run)[-1]
    assert rec["step"] == 1 and torch.isfinite(torch.tensor(rec["loss"]))
    keys = {0: {"l1", "mse"}, 1: {"ce", "diff"}, 2: {"diff"}, 3: {"diff", "mse"}, "joint": {"ce", "diff", "mse"}}
    assert keys[stage] <= set(rec)


def test_grad_accumulation_1x8_equals_8x1(tmp_path, faces):
    # One instruction template for all samples (equal CE token counts), so the per-micro-batch CE mean composes
    # exactly; every other per-sample random draw comes from the sample's own seed.
    common = ["stage=joint", "data.recon_prob=0", "data.caption_prob=0", "optim.lr=1e-3"]
    big = train_sft(tiny_config(tmp_path, faces, "name=b8x1", "data.batch_size=8", "grad_accum=1", *common))
    small = train_sft(tiny_config(tmp_path, faces, "name=b1x8", "data.batch_size=1", "grad_accum=8", *common))
    la, lb = read_log(big)[-1], read_log(small)[-1]
    for k in ("loss", "ce", "diff", "mse", "grad_norm"):
        assert la[k] == pytest.approx(lb[k], rel=1e-5), k
    pa, pb = (
        dict(from_pretrained(big / "final").named_parameters()),
        dict(from_pretrained(small / "final").named_parameters()),
    )
    # Gradients agree to float rounding (grad_norm above); Adam's first step is ~lr * sign(g), which amplifies
    # rounding only where |g| ~ eps, so weights agree to a small fraction of one step.
    worst = max((pa[n] - pb[n]).abs().max().item() for n in pa)
    assert worst < 1e-2 * 1e-3, worst


def _install_random_lpips(folder, monkeypatch, nets=("alex",)) -> None:
    """Random (seeded) LPIPS networks installed as `prefrestore weights fetch lpips_alex` would install them, so
    training loads them through the real path (load_lpips, manifest, SHA-256)."""
    from safetensors.torch import save_file

    from prefrestore.metrics.lpips import LPIPS
    from prefrestore.metrics.weights import sha256_file, write_manifest_entry

    folder.mkdir(parents=True)
    for name in nets:
        torch.manual_seed(0)
        net = LPIPS(name)
        state = {k: (v.abs() if k.startswith("lins.") else v).contiguous() for k, v in net.state_dict().items()}
        save_file(state, folder / f"lpips_{name}.safetensors")
        write_manifest_entry(
            folder,
            f"lpips_{name}",
            {
                "output": f"lpips_{name}.safetensors",
                "output_sha256": sha256_file(folder / f"lpips_{name}.safetensors"),
            },
        )
    monkeypatch.setenv("PREFRESTORE_METRIC_WEIGHTS", str(folder))


def test_lpips_loss_on_two_backbones_is_their_mean(tmp_path, faces, monkeypatch):
    """lpips_net=alex+vgg: the objective's LPIPS is the mean of the installed AlexNet and VGG16 distances."""
    from prefrestore.metrics.lpips import load_lpips
    from prefrestore.training.sft import SFTObjective

    _install_random_lpips(tmp_path / "metric_weights", monkeypatch, nets=("alex", "vgg"))
    cfg = tiny_config(tmp_path, faces, "stage=3", "lpips_weight=1.0", "lpips_net=alex+vgg")
    obj = SFTObjective(random_model("tiny", seed=0), 3, cfg)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    alex, vgg = load_lpips("alex")(a, b), load_lpips("vgg")(a, b)
    assert not torch.allclose(alex, vgg)
    assert torch.allclose(obj.lpips(a, b), (alex + vgg) / 2)
    with pytest.raises(ValueError, match="lpips_net"):
        tiny_config(tmp_path, faces, "stage=3", "lpips_weight=1.0", "lpips_net=alex+dists")


@pytest.mark.parametrize("stage", [0, 3])
def test_lpips_loss_adds_to_the_loss_and_every_parameter_still_moves(stage, tmp_path, faces, monkeypatch):
    _install_random_lpips(tmp_path / "metric_weights", monkeypatch)
    common = [f"stage={stage}", "cond_dropout=0.0"]
    plain = read_log(train_sft(tiny_config(tmp_path, faces, "name=plain", *common)))[-1]
    cfg = tiny_config(tmp_path, faces, "name=lp", "lpips_weight=2.0", *common)
    run = train_sft(cfg)
    rec = read_log(run)[-1]
    assert rec["lpips"] > 0 and rec["loss"] == pytest.approx(plain["loss"] + 2.0 * rec["lpips"], rel=1e-4)
    before = dict(random_model("tiny", seed=cfg.seed).named_parameters())
    after = dict(from_pretrained(run / "final").named_parameters())
    trainable = _expected_names(stage)
    assert not [n for n in trainable if torch.equal(before[n], after[n])]
    assert not [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]


def test_lpips_weight_needs_a_decoded_image(tmp_path, faces):
    with pytest.raises(ValueError, match="lpips_weight needs a decoded image"):
        tiny_config(tmp_path, faces, "stage=2", "lpips_weight=1")
