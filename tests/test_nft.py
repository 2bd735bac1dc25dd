"""The pure DiffusionNFT pieces: advantages, optimality probability, the loss (by hand and in its beta limits)."""

import math

import pytest
import torch

from prefrestore.training.nft import (
    blend_,
    ema_decay,
    group_advantages,
    nft_loss,
    num_train_timesteps,
    old_policy_decay,
    optimality_prob,
    timestep_subsets,
    zero_std_fraction,
)

# ----------------------------------------------------------------------------------------------------------------
# Advantages


def test_group_advantages_global_std_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    # group means 2 and 6; population std of all six rewards: sqrt(34 / 6)
    s = math.sqrt(34 / 6)
    expected = torch.tensor([-1.0, 0.0, 1.0, -2.0, 0.0, 2.0]) / (s + 1e-4)
    torch.testing.assert_close(group_advantages(r, 3, std="global"), expected)


def test_group_advantages_group_std_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0, 8.0], dtype=torch.float64)
    a = group_advantages(r, 3, std="group")
    s1, s2 = math.sqrt(2 / 3), math.sqrt(8 / 3)
    expected = torch.tensor(
        [-1 / (s1 + 1e-4), 0.0, 1 / (s1 + 1e-4), -2 / (s2 + 1e-4), 0.0, 2 / (s2 + 1e-4)], dtype=torch.float64
    )
    torch.testing.assert_close(a, expected)


@pytest.mark.parametrize("std", ["group", "global"])
def test_group_advantages_properties(std):
    g = torch.Generator().manual_seed(0)
    r = torch.randn(4 * 6, generator=g, dtype=torch.float64)
    a = group_advantages(r, 6, std=std)
    assert a.dtype == r.dtype and a.shape == r.shape
    torch.testing.assert_close(a.view(4, 6).mean(1), torch.zeros(4, dtype=torch.float64))  # zero mean per group
    # invariant to a constant added per group (the std here is over within-group spreads only for "group")
    shift = torch.tensor([0.0, 3.0, -2.0, 7.0], dtype=torch.float64).repeat_interleave(6)
    if std == "group":
        torch.testing.assert_close(group_advantages(r + shift, 6, std=std), a)
    # a positive scale of all rewards leaves the advantages unchanged (up to eps)
    torch.testing.assert_close(group_advantages(r * 10, 6, std=std), a, atol=1e-3, rtol=1e-3)


def test_group_advantages_constant_rewards_give_zero_not_nan():
    r = torch.full((8,), 0.7)
    for std in ("group", "global"):
        a = group_advantages(r, 4, std=std)
        assert torch.equal(a, torch.zeros(8))
    assert zero_std_fraction(torch.tensor([1.0, 1.0, 1.0, 2.0, 1.0, 1.0]), 3) == 0.5


def test_group_advantages_validates():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(7), 3)
    with pytest.raises(ValueError, match="std"):
        group_advantages(torch.zeros(6), 3, std="batch")


# ----------------------------------------------------------------------------------------------------------------
# Optimality probability


def test_optimality_prob_mapping():
    a = torch.tensor([-10.0, -5.0, -2.5, 0.0, 2.5, 5.0, 10.0])
    torch.testing.assert_close(optimality_prob(a, 5.0), torch.tensor([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]))
    torch.testing.assert_close(optimality_prob(torch.tensor([1.0]), 2.0), torch.tensor([0.75]))
    with pytest.raises(ValueError):
        optimality_prob(a, 0.0)


# ----------------------------------------------------------------------------------------------------------------
# The loss


def _hand_case():
    # one sample, latent (c, h, w) = (1, 1, 2)
    x0 = torch.tensor([[[[1.0, 2.0]]]])
    x_t = torch.tensor([[[[0.5, 1.0]]]])
    sigma = torch.tensor([0.5])
    v_theta = torch.tensor([[[[2.0, 0.0]]]], requires_grad=True)
    v_old = torch.tensor([[[[1.0, 1.0]]]])
    v_ref = torch.tensor([[[[0.0, 0.0]]]])
    return v_theta, v_old, v_ref, x0, x_t, sigma


def test_nft_loss_equals_hand_computation():
    v_theta, v_old, v_ref, x0, x_t, sigma = _hand_case()
    out = nft_loss(v_theta, v_old, v_ref, x0, x_t, sigma, torch.tensor([0.75]), beta=0.5, kl_coef=1e-4, scale=5.0)
    # v+ = .5 [2, 0] + .5 [1, 1] = [1.5, .5];  v- = 1.5 [1, 1] - .5 [2, 0] = [.5, 1.5]
    # x0+ = x_t - .5 v+ = [-.25, .75]: error [-1.25, -1.25], w+ = 1.25, mse 1.5625, L+ = 1.25
    # x0- = x_t - .5 v- = [.25, .25]:  error [-.75, -1.75],  w- = 1.25, mse 1.8125, L- = 1.45
    # policy = 5 (.75 * 1.25 / .5 + .25 * 1.45 / .5) = 13;  kl = mean([4, 0]) = 2
    assert out.positive.item() == pytest.approx(1.25)
    assert out.negative.item() == pytest.approx(1.45)
    assert out.policy.item() == pytest.approx(13.0)
    assert out.kl.item() == pytest.approx(2.0)
    assert out.loss.item() == pytest.approx(13.0002)
    assert out.old_deviation.item() == pytest.approx(1.0)
    out.loss.backward()
    # dL+/dv = 2 e+ (-s beta) / D / w+ = [.25, .25];  dL-/dv = 2 e- (s beta) / D / w- = [-.15, -.35]
    # d policy / dv = 5 (.75 [.25, .25] + .25 [-.15, -.35]) / .5 = [1.5, 1.0];  d kl-term / dv = 1e-4 [2, 0]
    torch.testing.assert_close(v_theta.grad, torch.tensor([[[[1.5002, 1.0]]]]))


def test_nft_loss_batch_is_mean_of_samples():
    g = torch.Generator().manual_seed(1)
    vt, vo, vr, x0, eps = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(5))
    s = torch.tensor([0.2, 0.5, 0.9])
    xt = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
    r = torch.tensor([0.1, 0.5, 1.0])
    full = nft_loss(vt, vo, vr, x0, xt, s, r).loss
    parts = [
        nft_loss(
            vt[i : i + 1], vo[i : i + 1], vr[i : i + 1], x0[i : i + 1], xt[i : i + 1], s[i : i + 1], r[i : i + 1]
        ).loss
        for i in range(3)
    ]
    torch.testing.assert_close(full, torch.stack(parts).mean())


def _weighted_fm_grad(v, x0, x_t, sigma):
    """Gradient at v of mean((x_t - s v - x0)^2) / w, w = mean|x_t - s v - x0| held fixed (per sample)."""
    v = v.detach().clone().requires_grad_(True)
    s = sigma.reshape(-1, 1, 1, 1)
    err = x_t - s * v - x0
    w = err.detach().abs().mean(dim=(1, 2, 3))
    ((err**2).mean(dim=(1, 2, 3)) / w).sum().backward()
    return v.grad


def _random_case(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    x0, eps, v_old, v_theta, v_ref = (torch.randn(n, 2, 3, 3, generator=g) for _ in range(5))
    s = torch.rand(n, generator=g) * 0.9 + 0.05
    xt = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * eps
    r = torch.rand(n, generator=g)
    return v_theta, v_old, v_ref, x0, xt, s, r


def _grad(v_theta, *args, **kw):
    v = v_theta.detach().clone().requires_grad_(True)
    nft_loss(v, *args, **kw).loss.backward()
    return v.grad


def test_nft_gradient_at_old_policy_is_reward_weighted_flow_matching_for_any_beta():
    _, v_old, v_ref, x0, xt, s, r = _random_case()
    n = x0.shape[0]
    expected = 5.0 / n * (2 * r - 1)[:, None, None, None] * _weighted_fm_grad(v_old, x0, xt, s)
    for beta in (1e-3, 0.1, 1.0):
        g = _grad(v_old, v_old, v_ref, x0, xt, s, r, beta=beta, kl_coef=0.0)
        torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-5)
    # rho = 1/2 everywhere: positive and negative pulls cancel exactly
    g = _grad(v_old, v_old, v_ref, x0, xt, s, torch.full_like(r, 0.5), beta=0.1, kl_coef=0.0)
    torch.testing.assert_close(g, torch.zeros_like(g), atol=1e-6, rtol=0)


def test_nft_small_beta_limit_is_reward_weighted_flow_matching_at_old_policy():
    v_theta, v_old, v_ref, x0, xt, s, r = _random_case(seed=3)
    n = x0.shape[0]
    limit = 5.0 / n * (2 * r - 1)[:, None, None, None] * _weighted_fm_grad(v_old, x0, xt, s)
    errs = []
    for beta in (1e-1, 1e-2, 1e-3):
        g = _grad(v_theta, v_old, v_ref, x0, xt, s, r, beta=beta, kl_coef=0.0)
        errs.append(float((g - limit).abs().max()))
    assert errs[0] > errs[1] > errs[2]  # converges as beta -> 0
    assert errs[2] < 2e-2 * float(limit.abs().max())


def test_nft_beta_one_positive_only_is_weighted_flow_matching_on_theta():
    v_theta, v_old, v_ref, x0, xt, s, _ = _random_case(seed=5)
    out = nft_loss(v_theta, v_old, v_ref, x0, xt, s, torch.ones(x0.shape[0]), beta=1.0, kl_coef=0.0)
    err = xt - s[:, None, None, None] * v_theta - x0
    expected = 5.0 * ((err**2).mean(dim=(1, 2, 3)) / err.abs().mean(dim=(1, 2, 3))).mean()
    torch.testing.assert_close(out.loss, expected)
    # ... and does not depend on the old policy at all
    out2 = nft_loss(v_theta, v_old * 3 + 1, v_ref, x0, xt, s, torch.ones(x0.shape[0]), beta=1.0, kl_coef=0.0)
    torch.testing.assert_close(out2.loss, expected)


def test_nft_kl_term_and_validation():
    v_theta, v_old, v_ref, x0, xt, s, r = _random_case(seed=7)
    a = nft_loss(v_theta, v_old, v_ref, x0, xt, s, r, kl_coef=0.0).loss
    b = nft_loss(v_theta, v_old, v_ref, x0, xt, s, r, kl_coef=1e-4).loss
    torch.testing.assert_close(b - a, 1e-4 * ((v_theta - v_ref) ** 2).mean(), rtol=1e-3, atol=1e-7)
    with pytest.raises(ValueError):
        nft_loss(v_theta, v_old, None, x0, xt, s, r, kl_coef=1e-4)
    with pytest.raises(ValueError):
        nft_loss(v_theta, v_old, v_ref, x0, xt, s, r, beta=0.0)


# ----------------------------------------------------------------------------------------------------------------
# Schedules


def test_old_policy_decay_and_ema_schedules():
    assert old_policy_decay(0) == 0.0
    assert old_policy_decay(100) == pytest.approx(0.1)
    assert old_policy_decay(500) == 0.5 and old_policy_decay(10_000) == 0.5
    assert old_policy_decay(10, flat=20) == 0.0
    assert ema_decay(0) == pytest.approx(0.1)
    assert ema_decay(1) == pytest.approx(2 / 11)
    assert ema_decay(1000) == 0.9
    t = [torch.tensor([1.0, 2.0])]
    blend_(t, [torch.tensor([3.0, 6.0])], 0.25)
    torch.testing.assert_close(t[0], torch.tensor([2.5, 5.0]))


def test_timestep_subsets_are_shuffled_distinct_subsets_of_the_grid():
    grid = torch.linspace(1.0, 1 / 30, 30, dtype=torch.float64)
    assert num_train_timesteps(30, 0.99) == 29 and num_train_timesteps(30, 1.0) == 30
    s = timestep_subsets(grid, 5, 29, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 29)
    for row in s:
        assert len(set(row.tolist())) == 29 and set(row.tolist()) <= set(grid.tolist())
    assert not torch.equal(s[0], s[1])
    s2 = timestep_subsets(grid, 5, 29, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)
