"""The linear Gaussian model against closed forms, quadrature and Bayes' rule."""

import math

import numpy as np
import pytest
import torch

from vaekit.distributions import diag_gaussian
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.inference.objectives import elbo, iwae_bound


def numpy_log_marginal(w, b, sigma, x):
    """log N(x; b, W W^T + sigma^2 I) written out in float64 NumPy."""
    w, b, x = (np.asarray(a, dtype=np.float64) for a in (w, b, x))
    cov = w @ w.T + sigma**2 * np.eye(len(b))
    diff = x - b
    _, logdet = np.linalg.slogdet(cov)
    maha = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
    return -0.5 * (len(b) * math.log(2 * math.pi) + logdet + maha)


def test_log_marginal_matches_written_out_gaussian():
    m = LinearGaussian.random(6, 3, sigma=0.4, seed=2)
    x, _ = m.sample(7, torch.Generator().manual_seed(0))
    want = numpy_log_marginal(
        m.weight.detach(), m.bias.detach(), float(m.sigma.detach()), x
    )
    np.testing.assert_allclose(m.log_marginal(x).detach().numpy(), want, atol=2e-4)


@pytest.mark.parametrize("z_dim", [1, 2])
def test_log_marginal_matches_quadrature(z_dim):
    # log p(x) = log of the integral of p(x|z) p(z) dz, on a fine grid over z (float64)
    m = LinearGaussian.random(3, z_dim, sigma=0.8, seed=3).double()
    x, _ = m.sample(4, torch.Generator().manual_seed(1))
    t = torch.linspace(-7, 7, 1401 if z_dim == 1 else 401, dtype=torch.float64)
    h = float(t[1] - t[0])
    grid = torch.cartesian_prod(*([t] * z_dim)).reshape(-1, 1, z_dim)  # (G, 1, d)
    with torch.no_grad():
        integrand = m.log_joint(x, grid)  # (G, B)
        quad = torch.logsumexp(integrand, 0) + z_dim * math.log(h)
        exact = m.log_marginal(x)
    torch.testing.assert_close(quad, exact, atol=1e-6, rtol=0)


def test_posterior_is_bayes_rule():
    # log p(x, z) - log p(z|x) = log p(x) for every z
    m = LinearGaussian.random(5, 3, sigma=0.6, seed=4).double()
    x, _ = m.sample(6, torch.Generator().manual_seed(2))
    with torch.no_grad():
        post = m.posterior(x)
        z = 3 * torch.randn(
            20, 6, 3, dtype=torch.float64
        )  # (S, B, d), far from the posterior too
        diff = m.log_joint(x, z) - post.log_prob(z)  # (S, B)
        torch.testing.assert_close(
            diff, m.log_marginal(x).expand_as(diff), atol=1e-9, rtol=0
        )
    assert post.batch_shape == (6,) and post.event_shape == (3,)


def test_posterior_moments_match_a_grid():
    # in one latent dimension, normalise p(x, z) on a grid and compare mean and variance
    m = LinearGaussian.random(4, 1, sigma=0.5, seed=5).double()
    x, _ = m.sample(3, torch.Generator().manual_seed(3))
    z = torch.linspace(-6, 6, 4001, dtype=torch.float64).reshape(-1, 1, 1)
    with torch.no_grad():
        w = torch.softmax(m.log_joint(x, z), 0)  # (G, B)
        mean = (w * z[:, :, 0]).sum(0)
        var = (w * z[:, :, 0] ** 2).sum(0) - mean**2
        post = m.posterior(x)
    torch.testing.assert_close(post.mean[:, 0], mean, atol=1e-8, rtol=0)
    torch.testing.assert_close(post.variance[:, 0], var, atol=1e-8, rtol=0)


def test_sample_matches_marginal_moments():
    m = LinearGaussian.random(3, 2, sigma=0.5, seed=6, learnable=False)
    x, z = m.sample(200_000, torch.Generator().manual_seed(4))
    assert x.shape == (200_000, 3) and z.shape == (200_000, 2)
    marg = m.marginal()
    torch.testing.assert_close(x.mean(0), marg.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(
        torch.cov(x.T), marg.covariance_matrix, atol=0.03, rtol=0.01
    )
    # a wrong noise level would show in the average log-density: E log p(x) = -H[p(x)]
    torch.testing.assert_close(
        m.log_marginal(x).mean(), -marg.entropy(), atol=0.01, rtol=0
    )


def test_exact_posterior_makes_the_bounds_tight():
    m = LinearGaussian.random(5, 2, sigma=0.7, seed=7).double()
    x, _ = m.sample(8, torch.Generator().manual_seed(5))
    with torch.no_grad():
        exact = m.log_marginal(x)
        post = m.posterior(x)
        torch.testing.assert_close(elbo(m, x, k=4, q=post), exact, atol=1e-9, rtol=0)
        torch.testing.assert_close(
            iwae_bound(m, x, 16, q=post), exact, atol=1e-9, rtol=0
        )
        q = diag_gaussian(post.mean, torch.ones_like(post.mean))  # a worse proposal
        assert bool((elbo(m, x, k=2000, q=q) < exact).all())


def test_learnable_or_fixed_and_dtype_device():
    m = LinearGaussian.random(4, 2)
    assert {n for n, _ in m.named_parameters()} == {"weight", "bias", "log_sigma"}
    fixed = LinearGaussian.random(4, 2, learnable=False)
    assert list(fixed.parameters()) == [] and {n for n, _ in fixed.named_buffers()} == {
        "weight",
        "bias",
        "log_sigma",
    }
    d = fixed.double()
    assert (
        d.prior.sample().dtype == torch.float64
        and d.decode(torch.zeros(2, dtype=torch.float64)).mean.dtype == torch.float64
    )
    assert d.sample(3)[0].dtype == torch.float64
    assert (m.x_dim, m.z_dim) == (4, 2)
    torch.testing.assert_close(
        float(LinearGaussian(torch.eye(2), torch.zeros(2), 0.3).sigma.detach()), 0.3
    )


def test_maximum_likelihood_by_gradient_ascent_matches_closed_form():
    # Tipping & Bishop: the ML sigma^2 is the mean of the discarded eigenvalues of the sample covariance
    truth = LinearGaussian.random(3, 1, sigma=0.5, seed=8, learnable=False)
    x, _ = truth.sample(2000, torch.Generator().manual_seed(6))
    x = x.double()
    evals = torch.linalg.eigvalsh(torch.cov(x.T, correction=0))  # ascending
    sigma2_ml = evals[:2].mean()
    c_ml = torch.cov(x.T, correction=0)
    model = LinearGaussian.random(3, 1, sigma=1.0, seed=9).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        (-model.log_marginal(x).mean()).backward()
        opt.step()
    with torch.no_grad():
        # the maximised log-likelihood: -(D/2) log 2 pi - 1/2 log det C - D/2 with the ML covariance
        lam1 = evals[2]
        logdet = torch.log(lam1) + 2 * torch.log(sigma2_ml)
        best = -0.5 * (3 * math.log(2 * math.pi) + logdet + 3)
        assert abs(float(model.log_marginal(x).mean() - best)) < 1e-3
        torch.testing.assert_close(model.sigma**2, sigma2_ml, atol=2e-3, rtol=0)
        torch.testing.assert_close(
            model.marginal().covariance_matrix, c_ml, atol=0.02, rtol=0
        )


def test_bad_input_is_named():
    m = LinearGaussian.random(4, 2)
    with pytest.raises(ValueError, match="x must be"):
        m.log_marginal(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="z must have 2"):
        m.decode(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="bias"):
        LinearGaussian(torch.zeros(4, 2), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        LinearGaussian(torch.zeros(4, 2), torch.zeros(4), -1.0)
    with pytest.raises(ValueError, match="n must be"):
        m.sample(0)
