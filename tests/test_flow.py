"""Analytic tests of the flow path and the ODE solvers."""

import math

import pytest
import torch

from prefrestore.flow.paths import flow_matching_loss, interpolate, velocity_target, x0_from_velocity
from prefrestore.flow.schedules import flow_sigmas, train_sigmas
from prefrestore.flow.solvers import guided, sample


def test_official_sigma_grid():
    s = flow_sigmas(30)
    assert s.shape == (31,)
    assert s[0] == 1.0 and s[-1] == 0.0
    assert torch.allclose(s[:-1], torch.linspace(1, 1 / 30, 30, dtype=torch.float64))


def test_train_sigmas_are_the_discrete_timesteps():
    s = train_sigmas(10000, generator=torch.Generator().manual_seed(0))
    assert s.min() >= 1e-3 and s.max() <= 1.0
    assert torch.allclose(s * 1000, (s * 1000).round())  # exactly t/1000 for integer t
    assert abs(s.mean().item() - 0.5) < 0.02


def test_path_identities():
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    sigma = torch.tensor([0.0, 0.3, 0.7, 1.0])
    xt = interpolate(x0, n, sigma)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[3], n[3])
    assert torch.allclose(x0_from_velocity(xt, velocity_target(x0, n), sigma), x0, atol=1e-6)
    # the loss of the exact velocity is zero
    assert flow_matching_loss(lambda x, s: velocity_target(x0, n), x0, n, sigma).item() == 0.0


@pytest.mark.parametrize("solver", ["euler", "dpm++2m"])
@pytest.mark.parametrize("steps", [1, 3, 30])
def test_solvers_exact_for_point_mass(solver, steps):
    """Data = a point mass at m: v(x, s) = (x - m) / s, trajectories are straight lines, both solvers are exact."""
    m = torch.tensor([[1.5, -2.0, 0.25]], dtype=torch.float64)
    noise = torch.tensor([[0.3, 0.9, -1.1]], dtype=torch.float64)
    out = sample(lambda x, s: (x - m) / s.to(x.dtype)[:, None], noise, flow_sigmas(steps), solver=solver)
    assert torch.allclose(out, m, atol=1e-12)


def _gaussian_velocity(mu, tau):
    """Exact velocity for data N(mu, tau^2) (1-D): E[noise - x0 | x_s]."""

    def v(x, s):
        s = s.to(x.dtype)[:, None]
        a = 1 - s
        var = a**2 * tau**2 + s**2
        e_x0 = mu + a * tau**2 * (x - a * mu) / var
        e_n = s * (x - a * mu) / var
        return e_n - e_x0

    return v


def _gaussian_exact(noise, mu, tau, s_end=0.0):
    # the probability-flow map is affine: x_s = a_s mu + sqrt(a_s^2 tau^2 + s^2) * z, z = x_1 (sigma = 1: x = noise)
    a = 1 - s_end
    return a * mu + math.sqrt(a**2 * tau**2 + s_end**2) * noise


@pytest.mark.parametrize("solver,order", [("euler", 1), ("dpm++2m", 2)])
def test_solver_convergence_order_on_gaussian(solver, order):
    mu, tau = 0.7, 0.3
    noise = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    errs = []
    for n in (16, 32, 64):
        # stop at a small sigma (the last step to 0 is exact for both solvers in the limit) by integrating on a
        # grid from 1 to 0.05 without the final 0 step
        grid = torch.linspace(1.0, 0.05, n + 1, dtype=torch.float64)
        out = sample(_gaussian_velocity(mu, tau), noise, grid, solver=solver)
        errs.append((out - _gaussian_exact(noise, mu, tau, 0.05)).abs().max().item())
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.35 for r in rates), (errs, rates)
    # the full grid down to 0 (the final step included) reaches the exact data sample, closer with more steps
    full = [
        (sample(_gaussian_velocity(mu, tau), noise, flow_sigmas(n), solver=solver) - _gaussian_exact(noise, mu, tau))
        .abs()
        .max()
        .item()
        for n in (32, 128)
    ]
    assert full[1] < full[0] < 0.05 and full[1] < 0.01, full


def test_cfg_scale_one_equals_plain():
    calls = []

    def fn(x, s, c):
        calls.append(x.shape[0])
        return x * c.mean(1, keepdim=True) + s[:, None]

    x, s = torch.randn(2, 3), torch.full((2,), 0.5)
    cond, null = torch.ones(2, 4), torch.zeros(2, 4)
    assert torch.equal(guided(fn, cond, null, 1.0)(x, s), fn(x, s, cond))
    calls.clear()
    v = guided(fn, cond, null, 3.0)(x, s)
    assert calls == [4]  # one batched pass of cond + null
    assert torch.allclose(v, fn(x, s, null) + 3.0 * (fn(x, s, cond) - fn(x, s, null)))
