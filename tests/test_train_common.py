"""training/common.py and training/state.py: LR schedule, EMA, parameter selection, train-state round trip."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from prefrestore.seeding import derive_seed
from prefrestore.training.common import (
    LRSchedule,
    ema_init,
    ema_update_,
    freeze_all_but,
    lr_at,
    select_parameters,
    warmup_steps_for,
)
from prefrestore.training.state import TrainState, capture_rng, load_state, restore_rng, save_state


def test_lr_schedule_warmup_cosine_floor():
    s = LRSchedule(lr=1e-4, total_steps=1000, warmup_steps=10, min_lr=1e-5)
    assert lr_at(0, s) == pytest.approx(1e-5)  # first step already non-zero
    assert lr_at(9, s) == pytest.approx(1e-4)
    assert lr_at(10, s) == pytest.approx(1e-4)
    mid = 10 + (1000 - 10) // 2
    assert lr_at(mid, s) == pytest.approx(0.5 * (1e-4 + 1e-5), rel=1e-3)
    assert lr_at(1000, s) == pytest.approx(1e-5)
    assert lr_at(5000, s) == pytest.approx(1e-5)  # held at the floor
    lrs = [lr_at(i, s) for i in range(10, 1001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # monotone after warmup
    assert warmup_steps_for(1000, 0.01) == 10 and warmup_steps_for(50, 0.01) == 1
    with pytest.raises(ValueError):
        LRSchedule(lr=1e-4, total_steps=10, min_lr=1e-3)


def test_lr_schedule_matches_closed_form_cosine():
    s = LRSchedule(lr=2.0, total_steps=100, warmup_steps=0, min_lr=0.0)
    for step in (0, 25, 50, 75, 100):
        assert lr_at(step, s) == pytest.approx(1.0 + math.cos(math.pi * step / 100))


def test_ema_update():
    p = {"w": torch.ones(3)}
    ema = ema_init({"w": torch.zeros(3)})
    ema_update_(ema, p, 0.9)
    assert torch.allclose(ema["w"], torch.full((3,), 0.1))
    ema_update_(ema, p, 0.0)
    assert torch.equal(ema["w"], torch.ones(3))
    with pytest.raises(ValueError):
        ema_update_(ema, p, 1.5)


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        norm = nn.LayerNorm(4)
        self.a = nn.Sequential(nn.Linear(4, 4), norm)
        self.b = nn.Sequential(nn.Linear(4, 4), norm)
        self.ab = nn.Linear(4, 4)  # a prefix of "ab" must not select "a"


def test_select_parameters_dedups_shared_and_respects_boundaries():
    m = _Shared()
    names = set(select_parameters(m, ["b"]))
    assert names == {"b.0.weight", "b.0.bias"}  # the shared norm is listed under a.1 only
    assert set(select_parameters(m, ["a"])) == {"a.0.weight", "a.0.bias", "a.1.weight", "a.1.bias"}
    with pytest.raises(ValueError, match="match no parameter"):
        select_parameters(m, ["c"])
    freeze_all_but(m, ["b"])
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["b.0.weight", "b.0.bias"]


def test_derive_seed_stable_and_distinct():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(0, e, i) for e in range(5) for i in range(200)}) == 1000
    assert 0 <= derive_seed(2**40, 7) < 2**63


def test_train_state_round_trip_restores_rngs(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    opt = torch.optim.AdamW([nn.Parameter(torch.ones(2))])
    opt.param_groups[0]["params"][0].grad = torch.ones(2)
    opt.step()
    st = TrainState(
        step=7,
        epoch=1,
        position=[5, 6],
        samples=99,
        optimizer=opt.state_dict(),
        ema={"w": torch.arange(3.0)},
        rng=capture_rng(),
        skipped={"corrupt": 2},
        generators={"train": torch.Generator().manual_seed(4).get_state()},
        extra={"note": "x"},
    )
    expected = (random.random(), np.random.rand(), torch.rand(1))
    save_state(st, tmp_path / "s.pt")
    assert not list(tmp_path.glob("*.tmp"))
    back = load_state(tmp_path / "s.pt")  # weights_only=True inside
    assert (back.step, back.epoch, back.position, back.samples, back.skipped) == (7, 1, [5, 6], 99, {"corrupt": 2})
    assert torch.equal(back.ema["w"], torch.arange(3.0))
    restore_rng(back.rng)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])
    opt2 = torch.optim.AdamW([nn.Parameter(torch.ones(2))])
    opt2.load_state_dict(back.optimizer)
    assert torch.equal(
        opt2.state[opt2.param_groups[0]["params"][0]]["exp_avg"],
        opt.state[opt.param_groups[0]["params"][0]]["exp_avg"],
    )
    g = torch.Generator()
    g.set_state(back.generators["train"])
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(4)))
