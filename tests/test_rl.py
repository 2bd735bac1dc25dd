"""The RL loop on the tiny preset: rollouts, only LoRA moves, the reference stays put, exact resume, export."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from prefrestore.data.pairs import epoch_groups, list_pairs
from prefrestore.io.image import save_rgb
from prefrestore.lora import attach_training_adapters, load_lora
from prefrestore.restore.api import random_model
from prefrestore.rewards import CompositeReward
from prefrestore.training.checkpointing import latest_checkpoint
from prefrestore.training.nft import (
    NFTConfig,
    OptimSettings,
    RLDataSettings,
    train_nft,
)
from prefrestore.training.rollout import RolloutConfig, rollout

S = 128  # tiny preset resolution


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model trains fastest on one thread on a busy small CPU (the default suite shares 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _smooth_image(rng: np.random.Generator) -> np.ndarray:
    low = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.float32)
    import cv2

    return cv2.resize(low, (S, S), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    import cv2

    root = tmp_path_factory.mktemp("rlpairs")
    rng = np.random.default_rng(0)
    for i in range(3):
        gt = _smooth_image(rng)
        save_rgb(root / "gt" / f"face{i}.png", gt)
        save_rgb(root / "lq" / f"face{i}.png", cv2.GaussianBlur(gt, (0, 0), 2.0))
    return root


class NegL1:
    """A cheap reward for loop tests: -mean |restored - hq| in [0, 1]."""

    name = "neg_l1"

    def __call__(self, batch):
        return -(batch.unit("restored") - batch.unit("hq")).abs().mean(dim=(1, 2, 3))


class Brightness:
    name = "brightness"

    def __call__(self, batch):
        return batch.unit("restored").mean(dim=(1, 2, 3))


def _reward():
    return CompositeReward({"neg_l1": NegL1(), "brightness": Brightness()}, {"neg_l1": 1.0, "brightness": 0.5})


def _cfg(out: Path, pairs: Path, epochs: int) -> NFTConfig:
    return NFTConfig(
        model="tiny",
        out_dir=str(out),
        epochs=epochs,
        checkpoint_every=1,
        data=RLDataSettings(pairs=(str(pairs),), groups_per_epoch=2),
        rollout=RolloutConfig(group_size=2, steps=3, batch_size=4),
        optim=OptimSettings(train_batch_size=2, steps_per_epoch=1),
    )


def _log(out: Path) -> list[dict]:
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in rows]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs_dir):
    """An uninterrupted 2-epoch run: (run folder, the model it trained, a pristine copy, the initial LoRA)."""
    from prefrestore.seeding import seed_everything

    out = tmp_path_factory.mktemp("rl_full")
    cfg = _cfg(out, pairs_dir, 2)
    seed_everything(cfg.seed)  # what train_nft does before it adds the adapters: same Gaussian init
    initial = {
        k: v.detach().clone() for k, v in attach_training_adapters(random_model("tiny", seed=0)).trained.items()
    }
    model = random_model("tiny", seed=0)
    train_nft(cfg, reward=_reward(), model=model)
    return out, model, random_model("tiny", seed=0), initial


# ----------------------------------------------------------------------------------------------------------------
# Rollouts


def test_rollout_groups_differ_only_by_initial_noise(tiny_model):
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(2, 3, S, S, generator=g) * 2 - 1
    seeds = [5, 5, 13, 14]
    a = rollout(tiny_model, lq, seeds, RolloutConfig(group_size=2, steps=3, batch_size=4))
    assert a.group.tolist() == [0, 0, 1, 1] and a.group_size == 2
    assert a.latents.shape == (4, 16, 16, 16) and a.images.shape == (4, 3, S, S)
    assert a.cond.shape[0] == 2  # one (greedy, frozen) conditioning per LQ, shared by its group
    # same seed within a group -> identical restorations: the initial noise is the only source of diversity
    assert torch.equal(a.latents[0], a.latents[1])
    assert not torch.equal(a.latents[2], a.latents[3])  # different noise -> different restorations
    # independent of the sampling batch size (and so of how a group is split across batches)
    one_by_one = rollout(tiny_model, lq, seeds, RolloutConfig(group_size=2, steps=3, batch_size=1))
    torch.testing.assert_close(a.latents, one_by_one.latents, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="seeds"):
        rollout(tiny_model, lq, [1, 2, 3], RolloutConfig(group_size=2))


def test_data_listing_and_epoch_groups(pairs_dir):
    pairs = list_pairs([str(pairs_dir)])
    assert [p.name.split("/")[1] for p in pairs] == ["face0", "face1", "face2"]
    assert all(p.gt is not None and p.prompt == "A photograph of a person." for p in pairs)
    a = epoch_groups(3, 5, seed=1)
    assert len(a) == 5 and sorted(a[:3]) == [0, 1, 2] and a == epoch_groups(3, 5, seed=1)


# ----------------------------------------------------------------------------------------------------------------
# What moves


def _base_params(model) -> dict[str, torch.Tensor]:
    """Every non-LoRA parameter under its original (un-wrapped) name."""
    out = {}
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        out[name.replace("transformer.base_model.model.", "transformer.").replace(".base_layer.", ".")] = p
    return out


def test_only_lora_parameters_move_and_the_reference_stays_bit_identical(trained):
    out, model, pristine, _ = trained
    before = dict(pristine.named_parameters())
    after = _base_params(model)
    assert set(after) == set(before)
    for name, p in after.items():
        assert torch.equal(p, before[name]), f"frozen parameter {name} changed"
    peft = model.transformer
    trained_lora = {n: p for n, p in peft.named_parameters() if ".default." in n}
    assert len(trained_lora) == 4 * 8 * 2  # 4 blocks x 8 targets x (A, B)
    for name, p in trained_lora.items():
        assert "lora_" in name
        if "lora_B" in name:
            assert p.abs().sum() > 0, f"{name} did not move"  # B starts at zero
    # the reference is the model with adapters off: bit-identical to the untouched model
    g = torch.Generator().manual_seed(3)
    x, sigma, cond = (
        torch.randn(2, 16, 16, 16, generator=g),
        torch.tensor([0.3, 0.8]),
        torch.randn(2, 321, 192, generator=g),
    )
    with torch.no_grad():
        with peft.disable_adapter():
            v_ref = model.velocity(x, sigma, cond)
        v_pristine = pristine.velocity(x, sigma, cond)
        v_policy = model.velocity(x, sigma, cond)
    assert torch.equal(v_ref, v_pristine)
    assert not torch.equal(v_policy, v_pristine)


def test_every_trained_lora_tensor_moved(trained):
    _, model, _, initial = trained
    moved = {n: p for n, p in model.transformer.named_parameters() if ".default." in n}
    assert set(moved) == set(initial)
    assert all(not torch.equal(p, initial[n]) for n, p in moved.items())


# ----------------------------------------------------------------------------------------------------------------
# Logs, checkpoints, resume, export


def test_logs_every_reward_component_and_advantage_statistics(trained):
    out, _, _, _ = trained
    rows = _log(out)
    assert [r["epoch"] for r in rows] == [0, 1] and rows[-1]["step"] == 2
    for key in (
        "reward_mean",
        "reward/neg_l1",
        "reward/brightness",
        "reward_std/neg_l1",
        "adv_abs_mean",
        "adv_min",
        "adv_max",
        "rho_mean",
        "zero_std_groups",
        "loss",
        "policy",
        "kl",
        "grad_norm",
        "old_decay",
    ):
        assert key in rows[0] and np.isfinite(rows[0][key]), key
    assert rows[0]["old_deviation"] == 0.0  # epoch 0: trained == old
    assert rows[1]["kl"] > 0.0  # after a step the policy left the reference


def test_resume_after_a_stop_gives_the_same_next_losses(trained, tmp_path, pairs_dir):
    full, _, _, _ = trained
    train_nft(_cfg(tmp_path, pairs_dir, 1), reward=_reward(), model=random_model("tiny", seed=0))
    # the "killed" run left epoch 0's checkpoint; a new process continues with a fresh model object
    with open(tmp_path / "log.jsonl", "a") as f:  # a line a killed run wrote after its last checkpoint
        f.write(json.dumps({"epoch": 1, "loss": -1.0}) + "\n")
    train_nft(
        _cfg(tmp_path, pairs_dir, 2), reward=_reward(), model=random_model("tiny", seed=0)
    )  # a new object, same SFT weights
    assert _log(tmp_path) == _log(full)
    from safetensors.torch import load_file

    a = load_file(str(latest_checkpoint(full) / "policy.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path) / "policy.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_exported_lora_is_the_ema_in_peft_layout_and_loads_merged_or_not(trained):
    out, _, _, _ = trained
    ckpt = latest_checkpoint(out)
    from safetensors.torch import load_file

    from prefrestore.training.state import load_state

    lora = ckpt / "lora"
    cfg = json.loads((lora / "adapter_config.json").read_text())
    assert cfg["r"] == 32 and cfg["lora_alpha"] == 64 and cfg["peft_type"] == "LORA"
    assert (lora / "old" / "adapter_model.safetensors").is_file()
    sd = load_file(str(lora / "adapter_model.safetensors"))
    key = "base_model.model.transformer_blocks.0.attn1.to_q.lora_A.weight"
    assert key in sd and sd[key].shape == (32, 128) and len(sd) == 64
    ema = load_state(ckpt / "train_state.pt").ema
    for k, v in ema.items():
        assert torch.equal(sd[k.replace(".default.", ".")], v)

    g = torch.Generator().manual_seed(4)
    x, sigma, cond = (
        torch.randn(2, 16, 16, 16, generator=g),
        torch.tensor([0.2, 0.6]),
        torch.randn(2, 321, 192, generator=g),
    )
    with torch.no_grad():
        base = random_model("tiny", seed=0).velocity(x, sigma, cond)
        merged = random_model("tiny", seed=0)
        load_lora(merged, lora, merge=True)
        assert type(merged.transformer).__name__ == "SanaTransformer2DModel"
        v_merged = merged.velocity(x, sigma, cond)
        with_adapter = random_model("tiny", seed=0)
        load_lora(with_adapter, lora, merge=False)
        v_adapter = with_adapter.velocity(x, sigma, cond)
    torch.testing.assert_close(v_merged, v_adapter, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(v_merged, base)


def test_cli_merge_writes_a_loadable_model(trained, tmp_path):
    from prefrestore.checkpoints import from_pretrained, save_pretrained
    from prefrestore.cli import main

    out, _, _, _ = trained
    sft = tmp_path / "sft"
    save_pretrained(random_model("tiny", seed=0), sft)
    assert (
        main(
            [
                "rl",
                "--merge",
                str(latest_checkpoint(out) / "lora"),
                "--model",
                str(sft),
                "-o",
                str(tmp_path / "merged"),
            ]
        )
        == 0
    )
    m = from_pretrained(tmp_path / "merged")
    assert not any("lora" in k for k in m.state_dict())


# ----------------------------------------------------------------------------------------------------------------
# Configs


def test_paper_and_tiny_configs_load_with_the_paper_values(capsys):
    from prefrestore.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs" / "rl"
    paper = load_config(NFTConfig, root / "paper.yaml")
    assert paper.rollout == RolloutConfig(
        group_size=24, steps=30, solver="dpm++2m", guidance_scale=1.0, batch_size=9, sampler="official"
    )
    assert paper.data.groups_per_epoch == 48 and paper.checkpoint_every == 30
    n = paper.nft
    assert (n.beta, n.kl_coef, n.adv_clip, n.std, n.timestep_fraction, n.ema_decay) == (
        0.1,
        1e-4,
        5.0,
        "global",
        0.99,
        0.9,
    )
    assert (n.old_decay_rate, n.old_decay_cap) == (0.001, 0.5)
    assert (paper.lora.rank, paper.lora.alpha, paper.optim.lr, paper.optim.steps_per_epoch) == (32, 64, 3e-4, 1)
    assert paper.rewards.weights == {
        "pickscore": 1.0,
        "hpsv2": 1.0,
        "clipscore": 1.0,
        "lmd": 0.5,
        "arcface": 0.5,
        "lpips": 0.5,
    }
    tiny = load_config(NFTConfig, root / "tiny.yaml", ["epochs=3", "rollout.group_size=4"])
    assert tiny.epochs == 3 and tiny.rollout.group_size == 4
    assert set(tiny.rewards.weights) <= {"identity_dlib", "lmd_mtcnn", "psnr", "ssim", "brisque"}
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(NFTConfig, root / "tiny.yaml", ["nft.betta=0.2"])
    with pytest.raises(ValueError):
        load_config(NFTConfig, root / "tiny.yaml", ["nft.std=batch"])
    from prefrestore.cli import main

    assert main(["rl", str(root / "tiny.yaml"), "seed=7", "--print-config"]) == 0
    assert "seed: 7" in capsys.readouterr().out


def test_old_knob_names_out_and_save_every_still_load_with_a_warning(tmp_path, caplog):
    """NFT's ``out``/``save_every`` were renamed ``out_dir``/``checkpoint_every`` (alike SFT's); kept one release."""
    from prefrestore.config import load_config

    (tmp_path / "old.yaml").write_text("model: tiny\nout: runs/x\nsave_every: 3\n")
    (tmp_path / "new.yaml").write_text("model: tiny\nout_dir: runs/x\ncheckpoint_every: 3\n")
    new = load_config(NFTConfig, tmp_path / "new.yaml")
    assert (new.out_dir, new.checkpoint_every) == ("runs/x", 3)
    with caplog.at_level("WARNING", logger="prefrestore.config"):
        assert load_config(NFTConfig, tmp_path / "old.yaml") == new
        assert load_config(NFTConfig, tmp_path / "new.yaml", ["out=runs/y", "save_every=4"]) == NFTConfig(
            model="tiny", out_dir="runs/y", checkpoint_every=4
        )
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 4 and all(len(m.splitlines()) == 1 and "deprecated" in m for m in warned)
    assert "config key save_every is deprecated; use checkpoint_every" in warned[1]
