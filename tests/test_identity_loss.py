"""The SFT identity loss (``id_weight``): 1 - cosine of dlib-ResNet embeddings of restoration and HQ, here with a
random-weight network (the real one is tested in test_identity_nets.py)."""

import pytest
import torch

from prefrestore.checkpoints import from_pretrained
from prefrestore.metrics import dlib_resnet as dr
from prefrestore.metrics.identity import AlignedEmbedder
from prefrestore.restore.api import random_model
from prefrestore.training import sft as sftmod
from prefrestore.training.common import select_parameters
from prefrestore.training.sft import TRAINABLE, train_sft
from train_helpers import make_faces, read_log, tiny_config


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return make_faces(tmp_path_factory.mktemp("faces"), n=4)


def _embedder() -> AlignedEmbedder:
    g = torch.random.get_rng_state()
    torch.manual_seed(123)
    net = dr.DlibResNet()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
    torch.random.set_rng_state(g)
    return AlignedEmbedder("dlib", net, dr.CHIP, dr.ffhq_to_chip_affine)


@pytest.fixture
def random_identity(monkeypatch):
    monkeypatch.setattr("prefrestore.metrics.identity.load_identity_net", lambda name, **kw: _embedder())


def test_id_weight_adds_one_minus_cosine(tmp_path, faces):
    hq, lq = torch.rand(2, 3, 128, 128) * 2 - 1, torch.rand(2, 3, 128, 128) * 2 - 1
    outs = {}
    for w in (0.0, 2.0):
        cfg = tiny_config(tmp_path, faces, "stage=2", f"id_weight={w}", "cond_dropout=0.0")
        obj = sftmod.SFTObjective(random_model("tiny", seed=0), 2, cfg, identity=_embedder())
        outs[w] = obj(hq, lq, ["x", "x"], [0, 1])
    a, b = outs[0.0], outs[2.0]
    assert "id" not in a and 0 < b["id"].item() < 2
    assert b["diff"].item() == pytest.approx(a["diff"].item(), rel=1e-5)  # the same draw, the same velocity
    assert b["loss"].item() == pytest.approx(a["loss"].item() + 2 * b["id"].item(), rel=1e-5)
    # stage 0: the reconstruction's identity
    cfg = tiny_config(tmp_path, faces, "stage=0", "id_weight=1")
    out = sftmod.SFTObjective(random_model("tiny", seed=0), 0, cfg, identity=_embedder())(hq, lq, ["x"] * 2, [0, 1])
    assert out["loss"].item() == pytest.approx(out["l1"].item() + out["mse"].item() + out["id"].item(), rel=1e-5)


def test_id_weight_is_validated(tmp_path, faces):
    with pytest.raises(ValueError, match="id_weight"):
        tiny_config(tmp_path, faces, "id_weight=-1")


@pytest.mark.parametrize("stage", [0, 2])
def test_one_step_with_identity_loss_moves_every_trainable_parameter(stage, tmp_path, faces, random_identity):
    cfg = tiny_config(tmp_path, faces, f"stage={stage}", f"name=id{stage}", "cond_dropout=0.0", "id_weight=1")
    run = train_sft(cfg)
    before = dict(random_model("tiny", seed=cfg.seed).named_parameters())
    after = dict(from_pretrained(run / "final").named_parameters())
    trainable = set(select_parameters(random_model("tiny"), TRAINABLE[stage]))
    still = [n for n in trainable if torch.equal(before[n], after[n])]
    moved = [n for n in before if n not in trainable and not torch.equal(before[n], after[n])]
    assert not still and not moved, (still[:5], moved[:5])
    rec = read_log(run)[-1]
    assert rec["id"] > 0 and torch.isfinite(torch.tensor(rec["loss"]))
