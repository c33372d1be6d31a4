"""Wake-sleep, reweighted wake-sleep, Hamiltonian Monte Carlo and Monte Carlo EM, checked against
exact answers on the linear Gaussian model (p(z|x), p(x), the EM update are all closed form)."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import kl_divergence

import vaekit
from vaekit import hmc, metrics, wake_sleep
from vaekit.distributions import diag_gaussian
from vaekit.inference import Amortized, as_multivariate
from vaekit.models.linear_gaussian import LinearGaussian

DT = torch.float64


class LinearEncoder(nn.Module):
    """q(z|x) = N(A x + c, diag exp(2 s)): the family that contains the linear Gaussian's posterior mean."""

    def __init__(self, model, shift=0.3, widen=0.3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        post = model.posterior(model.bias[None])
        m = (model.weight / model.sigma**2) @ post.covariance_matrix[
            0
        ]  # (D, d): posterior mean = (x - b) @ m
        self.A = nn.Parameter(
            (m.T + shift * torch.randn(m.T.shape, generator=g, dtype=DT)).detach()
        )
        self.c = nn.Parameter(
            (
                -(model.bias @ m)
                + shift * torch.randn(model.z_dim, generator=g, dtype=DT)
            ).detach()
        )
        post_sd = post.covariance_matrix[0].diagonal().sqrt()
        self.s = nn.Parameter(
            (post_sd.log() + widen).detach()
        )  # log sd, ``widen`` above the posterior's

    def forward(self, x):
        return diag_gaussian(x @ self.A.T + self.c, self.s.exp().expand(x.shape[0], -1))


class ExactPosterior(nn.Module):
    """The linear Gaussian's exact p(z|x) in the place of an encoder."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.posterior(x)


def setup(seed=0, x_dim=6, z_dim=2, shift=0.3, widen=0.3):
    model = LinearGaussian.random(x_dim, z_dim, sigma=0.8, seed=seed, dtype=DT)
    return Amortized(LinearEncoder(model, shift, widen), model)


def expected_reverse_kl(am):
    """E_{x ~ p_θ(x)} KL(p_θ(z|x) ‖ q_φ(z|x)) in closed form (differentiable in φ)."""
    model, enc = am.model, am.encoder
    d = model.z_dim
    post = model.posterior(model.bias[None])
    S = post.covariance_matrix[0]
    M = S @ model.weight.T / model.sigma**2  # posterior mean = M (x - b)
    C = model.marginal().covariance_matrix
    P = torch.diag(torch.exp(-2 * enc.s))
    L, e = enc.A - M, enc.c + M @ model.bias  # q mean - posterior mean = L x + e
    r = L @ model.bias + e
    quad = torch.trace(P @ L @ C @ L.T) + r @ P @ r
    return 0.5 * (torch.trace(P @ S) + quad - d + 2 * enc.s.sum() - torch.logdet(S))


def data_reverse_kl(am, x):
    """(1/N) Σ_n KL(p_θ(z|x_n) ‖ q_φ(z|x_n)) on a data set, exactly."""
    return kl_divergence(am.model.posterior(x), as_multivariate(am.encode(x))).mean()


def grads(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def test_sleep_gradient_is_unbiased_for_the_model_averaged_reverse_kl():
    torch.manual_seed(0)
    am = setup()
    phi = list(am.encoder.parameters())
    exact = grads(expected_reverse_kl(am), phi)
    draws = torch.stack(
        [grads(wake_sleep.sleep_phi_loss(am, 2000).mean(), phi) for _ in range(100)]
    )
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    z = (mean - exact) / se
    assert z.abs().max() < 4.5, (
        f"sleep gradient off the exact gradient by {z.abs().max():.1f} standard errors"
    )
    # the exact gradient is not small: the check above has power
    assert (exact.abs() / se).max() > 30
    # on data that the model did not generate the data-averaged KL has another gradient
    other = LinearGaussian.random(6, 2, sigma=0.3, seed=7, dtype=DT)
    x_data, _ = other.sample(5000, generator=torch.Generator().manual_seed(1))
    data_grad = grads(data_reverse_kl(am, x_data), phi)
    assert ((data_grad - mean) / se).abs().max() > 20, (
        "sleep gradient should differ from the data-averaged KL's"
    )


def test_expected_reverse_kl_formula_matches_monte_carlo():
    am = setup()
    x, _ = am.model.sample(200_000, generator=torch.Generator().manual_seed(3))
    kls = kl_divergence(am.model.posterior(x), as_multivariate(am.encode(x)))
    exact = expected_reverse_kl(am)
    assert abs(kls.mean() - exact) < 4 * kls.std() / math.sqrt(len(kls))


def test_wake_gradient_with_the_exact_posterior_is_the_log_likelihood_gradient():
    """Fisher's identity: E_{p(z|x)} ∇_θ log p(x, z) = ∇_θ log p(x)."""
    torch.manual_seed(1)
    model = LinearGaussian.random(6, 2, sigma=0.8, seed=0, dtype=DT)
    exact_post = Amortized(ExactPosterior(model), model)
    x, _ = LinearGaussian.random(6, 2, sigma=0.5, seed=4, dtype=DT).sample(
        20, generator=torch.Generator().manual_seed(0)
    )
    theta = list(model.parameters())
    exact = -grads(model.log_marginal(x).mean(), theta)
    draws = torch.stack(
        [
            grads(wake_sleep.wake_theta_loss(exact_post, x).mean(), theta)
            for _ in range(400)
        ]
    )
    z = (draws.mean(0) - exact) / (draws.std(0) / math.sqrt(len(draws)))
    assert z.abs().max() < 4.5


def test_wake_loss_trains_theta_only_and_sleep_loss_phi_only():
    am = setup()
    x, _ = am.model.sample(16, generator=torch.Generator().manual_seed(0))
    theta, phi = list(am.model.parameters()), list(am.encoder.parameters())
    wake = wake_sleep.wake_theta_loss(am, x).sum()
    assert all(g is None for g in torch.autograd.grad(wake, phi, allow_unused=True))
    sleep = wake_sleep.sleep_phi_loss(am, 16).sum()
    assert all(g is None for g in torch.autograd.grad(sleep, theta, allow_unused=True))
    parts = wake_sleep.wake_sleep_loss(am, x)
    torch.testing.assert_close(parts["loss"], parts["wake"] + parts["sleep"])
    assert parts["loss"].shape == (16,)


def test_reweighted_wake_sleep_gradients_approach_the_exact_ones():
    """Many samples: θ-gradient -> -∇_θ log p(x); wake-φ gradient -> ∇_φ KL(p(z|x) ‖ q(z|x)) at the data."""
    torch.manual_seed(2)
    am = setup(shift=0.03, widen=0.2)
    x, _ = am.model.sample(4, generator=torch.Generator().manual_seed(5))
    theta, phi = list(am.model.parameters()), list(am.encoder.parameters())
    loss = wake_sleep.rws_loss(am, x, k=200_000)["loss"].mean()
    g_theta = grads(loss, theta + phi)
    n_theta = sum(p.numel() for p in theta)
    exact_theta = -grads(am.model.log_marginal(x).mean(), theta)
    exact_phi = grads(data_reverse_kl(am, x), phi)
    torch.testing.assert_close(
        g_theta[:n_theta], exact_theta, atol=0.02 * exact_theta.abs().max(), rtol=0
    )
    torch.testing.assert_close(
        g_theta[n_theta:], exact_phi, atol=0.02 * exact_phi.abs().max(), rtol=0
    )
    # one sample per image is plain wake-φ (not a sleep update): a different, noisy estimate
    one = wake_sleep.rws_loss(am, x, k=1)
    assert one["loss"].shape == (4,) and one["bound"].shape == (4,)


def test_rws_bound_is_the_iwae_bound_on_its_samples():
    am = setup()
    x, _ = am.model.sample(3, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    b = torch.stack(
        [wake_sleep.rws_loss(am, x, k=50)["bound"] for _ in range(200)]
    ).mean(0)
    torch.manual_seed(0)
    iw = torch.stack([vaekit.iwae_bound(am, x, 50).detach() for _ in range(200)]).mean(
        0
    )
    torch.testing.assert_close(b, iw, atol=0.02, rtol=0)


def test_effective_sample_size_of_an_ar1_chain():
    g = torch.Generator().manual_seed(0)
    rho, n = 0.8, 40_000
    e = torch.randn(n, 3, generator=g, dtype=DT)
    x = torch.zeros_like(e)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    ess = hmc.effective_sample_size(x)
    expected = n * (1 - rho) / (1 + rho)
    assert ((ess / expected - 1).abs() < 0.15).all(), ess
    iid = hmc.effective_sample_size(e)
    assert ((iid / n - 1).abs() < 0.1).all()


def posterior_case():
    model = LinearGaussian.random(5, 3, sigma=0.6, seed=3, learnable=False, dtype=DT)
    x = torch.tensor([[0.5, -1.0, 2.0, 0.0, 1.0]], dtype=DT)
    return model, x, model.posterior(x)


def test_hmc_leaves_the_exact_posterior_invariant():
    """4,000 independent chains started at exact posterior draws stay exact after 20 transitions."""
    torch.manual_seed(0)
    model, x, post = posterior_case()
    z0 = post.sample((4000,))  # (N, 1, d)
    step = 1.5 * post.stddev.min().item()
    out = hmc.sample(
        hmc.log_joint(model, x),
        z0,
        1,
        step_size=step,
        n_leapfrog=3,
        burn_in=19,
        adapt=False,
    )
    z = out.samples[0, :, 0]  # (N, d)
    assert 0.3 < out.accept_rate.mean() < 0.95, (
        "the Metropolis correction must be doing something"
    )
    n = z.shape[0]
    cov = post.covariance_matrix[0]
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((z.mean(0) - post.mean[0]).abs() < 4 * se_mean).all()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((torch.cov(z.T) - cov).abs() < 4 * se_cov).all()


def test_a_long_hmc_chain_has_the_exact_posterior_moments():
    torch.manual_seed(1)
    model, x, post = posterior_case()
    z0 = torch.full((4, 1, 3), 3.0, dtype=DT)  # four chains far from the posterior
    out = hmc.sample(
        hmc.log_joint(model, x), z0, 1500, step_size=0.5, n_leapfrog=4, burn_in=200
    )
    assert (out.accept_rate - 0.9).abs().max() < 0.15, (
        "the step size should be tuned to about 90 % acceptance"
    )
    chain = out.samples[:, :, 0]  # (n, 4, d)
    ess = hmc.effective_sample_size(chain).sum(0)  # (d,) over the four chains
    mean, sd = post.mean[0], post.stddev[0]
    err = chain.mean((0, 1)) - mean
    assert (err.abs() < 4.5 * sd / ess.sqrt()).all(), (err, sd / ess.sqrt())
    sq = (chain - mean) ** 2  # its mean is the variance; its own ESS sets the tolerance
    se_var = sq.flatten(0, 1).std(0) / hmc.effective_sample_size(sq).sum(0).sqrt()
    assert ((sq.mean((0, 1)) - sd**2).abs() < 4.5 * se_var).all()


def test_log_marginal_estimators_recover_the_exact_log_likelihood():
    torch.manual_seed(2)
    model = LinearGaussian.random(8, 3, sigma=0.5, seed=0, learnable=False, dtype=DT)
    x, _ = model.sample(30, generator=torch.Generator().manual_seed(1))
    est = hmc.log_marginal(
        model, x, n_samples=100, burn_in=50, n_leapfrog=4, chains=2, k_importance=2000
    )
    exact = model.log_marginal(x)
    assert (est.importance - exact).abs().max() < 0.05
    assert (est.kingma_welling - exact).abs().mean() < 0.1
    assert (est.accept_rate > 0.6).all()


def exact_em_update(model, x):
    """PPCA's EM update of (W, b, σ) from the exact posterior: regress x on [E z, 1], σ² from the residual."""
    post = model.posterior(x)
    m, S = post.mean, post.covariance_matrix[0]
    N, d = m.shape
    ez = torch.cat([m, torch.ones(N, 1, dtype=DT)], 1)  # (N, d+1)
    ezz = ez.T @ ez
    ezz[:d, :d] += N * S
    Wt = (x.T @ ez) @ torch.linalg.inv(ezz)  # (D, d+1)
    resid = (x**2).sum() - 2 * (x * (ez @ Wt.T)).sum() + torch.trace(Wt.T @ Wt @ ezz)
    return Wt[:, :d], Wt[:, d], (resid / (N * x.shape[1])).sqrt()


def test_one_mcem_step_lands_on_the_exact_em_update():
    """E-step by HMC (200 draws per image), M-step maximised: the result is PPCA's exact EM update."""
    torch.manual_seed(3)
    model = LinearGaussian.random(5, 2, sigma=1.0, seed=1, dtype=DT)
    x, _ = LinearGaussian.random(5, 2, sigma=0.4, seed=6, dtype=DT).sample(
        100, generator=torch.Generator().manual_seed(2)
    )
    W_em, b_em, s_em = exact_em_update(model, x)
    start = torch.cat(
        [
            model.weight.detach().reshape(-1),
            model.bias.detach(),
            model.sigma.detach()[None],
        ]
    )
    target = torch.cat([W_em.reshape(-1), b_em, s_em[None]])
    chains = wake_sleep.MCEMChains(model, x.shape[0], step_size=0.3, n_leapfrog=5)
    idx = torch.arange(x.shape[0])
    for _ in range(30):  # burn-in of every image's chain
        chains.e_step(model, x, idx)
    z = torch.stack(
        [chains.e_step(model, x, idx).clone() for _ in range(200)]
    )  # (200, N, d)
    assert 0.5 < chains.accept.mean() < 1
    opt = torch.optim.LBFGS(
        model.parameters(),
        max_iter=200,
        tolerance_grad=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = wake_sleep.mcem_m_loss(model, x, z).mean()
        loss.backward()
        return loss

    opt.step(closure)
    after = torch.cat(
        [
            model.weight.detach().reshape(-1),
            model.bias.detach(),
            model.sigma.detach()[None],
        ]
    )
    assert (after - target).norm() < 0.1 * (start - target).norm(), (
        after - target
    ).norm() / (start - target).norm()


def test_fit_mcem_raises_the_exact_likelihood():
    torch.manual_seed(4)
    model = LinearGaussian.random(5, 2, sigma=1.0, seed=1, dtype=DT)
    x, _ = LinearGaussian.random(5, 2, sigma=0.4, seed=6, dtype=DT).sample(
        200, generator=torch.Generator().manual_seed(2)
    )
    before = model.log_marginal(x).mean().item()
    seen = wake_sleep.EvaluateAt(
        [10, 40], lambda m: {"ll": m.log_marginal(x).mean().item()}
    )
    hist = wake_sleep.fit_mcem(
        model,
        x,
        steps=40,
        batch_size=50,
        lr=0.03,
        m_steps=5,
        n_leapfrog=5,
        callbacks=[seen],
        progress=False,
    )
    assert seen["step"] == [10, 40]
    assert before < seen["ll"][0] < seen["ll"][1]
    assert 0 < hist.last["accept_rate"] <= 1


def test_helmholtz_machine_shapes_and_wake_sleep_step():
    torch.manual_seed(0)
    hm = wake_sleep.HelmholtzMachine((1, 4, 4), latent_dim=5, hidden=(7,))
    x = (torch.rand(8, 1, 4, 4) < 0.3).float()
    q = hm.encode(x)
    assert q.batch_shape == (8,) and q.event_shape == (5,)
    assert hm.decode(q.sample((3,))).batch_shape == (3, 8)
    before = [p.detach().clone() for p in hm.parameters()]
    hist = vaekit.fit(
        hm,
        wake_sleep.wake_sleep_loss,
        x,
        steps=3,
        batch_size=8,
        progress=False,
        device="cpu",
    )
    assert {"wake", "sleep"} <= set(hist.keys())
    assert all(not torch.equal(a, b) for a, b in zip(before, hm.parameters()))
    assert hm.sample(4).shape == (4, 1, 4, 4)
    with pytest.raises(ValueError, match="z must have 5 units"):
        hm.decode(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x must have shape"):
        hm.encode(torch.zeros(2, 16))


def test_bad_arguments_name_themselves():
    model, x, _ = posterior_case()
    with pytest.raises(ValueError, match="n_leapfrog"):
        hmc.sample(
            hmc.log_joint(model, x), torch.zeros(1, 3, dtype=DT), 5, n_leapfrog=0
        )
    with pytest.raises(ValueError, match="target_accept"):
        hmc.sample(
            hmc.log_joint(model, x), torch.zeros(1, 3, dtype=DT), 5, target_accept=1.5
        )
    with pytest.raises(ValueError, match="k must be"):
        wake_sleep.rws_loss(setup(), torch.zeros(2, 6, dtype=DT), k=0)


def test_kl_both_ways_matches_the_closed_form_for_gaussians():
    p = torch.distributions.Normal(
        torch.tensor(0.5, dtype=DT), torch.tensor(1.5, dtype=DT)
    )
    loc = torch.tensor(
        [[-1.0], [0.3]], dtype=DT
    )  # (2, 1) against scales (1, 3): a (2, 3) grid of q
    scale = torch.tensor([[0.4, 1.0, 2.5]], dtype=DT)
    qp, pq = wake_sleep.kl_both_ways(
        p, loc, scale, torch.linspace(-20, 20, 20001, dtype=DT)
    )
    q = torch.distributions.Normal(loc, scale)
    torch.testing.assert_close(qp, kl_divergence(q, p), atol=1e-8, rtol=0)
    torch.testing.assert_close(pq, kl_divergence(p, q), atol=1e-8, rtol=0)


def test_evaluate_at_leaves_the_training_randomness_alone():
    x = (
        torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.3
    ).float()
    runs = []
    for fn in (lambda m: {}, lambda m: {"noise": torch.randn(100).sum().item()}):
        torch.manual_seed(0)
        hm = wake_sleep.HelmholtzMachine((1, 4, 4), latent_dim=3, hidden=(5,))
        cb = wake_sleep.EvaluateAt([2, 4], fn)
        vaekit.fit(
            hm,
            wake_sleep.wake_sleep_loss,
            x,
            steps=6,
            batch_size=16,
            progress=False,
            device="cpu",
            callbacks=[cb],
        )
        runs.append(torch.cat([p.detach().reshape(-1) for p in hm.parameters()]))
        assert cb["step"] == [2, 4] and all(r["cpu_seconds"] >= 0 for r in cb.records)
    torch.testing.assert_close(runs[0], runs[1], atol=0, rtol=0)


def test_sampled_log_weights_give_the_exact_elbo_of_a_discrete_model():
    torch.manual_seed(0)
    hm = wake_sleep.HelmholtzMachine((1, 2, 2), latent_dim=2, hidden=())
    x = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    zs = torch.tensor(
        [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    )  # every latent configuration
    with torch.no_grad():
        q = hm.encode(x)
        lw_all = (
            hm.decode(zs[:, None]).log_prob(x)
            + hm.prior.log_prob(zs[:, None])
            - q.log_prob(zs[:, None])
        )  # (4, 1)
        exact_elbo = (q.log_prob(zs[:, None]).exp() * lw_all).sum()
        exact_log_px = torch.logsumexp(
            hm.decode(zs[:, None]).log_prob(x) + hm.prior.log_prob(zs[:, None]), 0
        )
    lw = wake_sleep.sampled_log_weights(hm, x, 100_000)
    assert abs(lw.mean() - exact_elbo) < 4 * lw.std() / math.sqrt(lw.numel())
    assert abs(metrics.log_mean_exp(lw, 0) - exact_log_px) < 0.01
