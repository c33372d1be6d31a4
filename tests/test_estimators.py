"""Prior sampling and importance sampling against the exact log p(x) of the mixture and the linear Gaussian model."""

import math

import pytest
import torch

from vaekit import VAE, data
from vaekit.inference.objectives import iwae_bound
from vaekit.inference import estimators as est
from vaekit.distributions import diag_gaussian
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.models.mixture import GaussianMixture


def toy_mixture():
    return GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES).double()


def toy_points():
    return torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.0, 5.0]], dtype=torch.float64)


def linear_model(x_dim, z_dim, sigma, seed, n, data_seed):
    """A fixed float64 linear Gaussian model and ``n`` points drawn from it with ``data_seed``."""
    model = LinearGaussian.random(
        x_dim, z_dim, sigma=sigma, seed=seed, learnable=False
    ).double()
    return model, model.sample(n, torch.Generator().manual_seed(data_seed))[0]


def model_and_points(which, **linear):
    """The toy mixture and its points, or :func:`linear_model` called with ``linear``."""
    return (
        (toy_mixture(), toy_points()) if which == "mixture" else linear_model(**linear)
    )


def repeated(x, reps):
    """Each example ``reps`` times, so one call gives ``reps`` independent estimates per example."""
    return x.repeat(reps, 1)


@pytest.mark.parametrize("which", ["mixture", "linear"])
def test_prior_sampling_is_unbiased_for_p_not_for_log_p(which):
    torch.manual_seed(0)
    model, x = model_and_points(
        which, x_dim=4, z_dim=2, sigma=0.6, seed=1, n=3, data_seed=0
    )
    with torch.no_grad():
        exact = model.log_marginal(x)  # (B,)
    reps, k = 4000, 10
    log_hat = est.prior_sampling(model, repeated(x, reps), k).log_marginal.reshape(
        reps, -1
    )  # (R, B)
    ratio = torch.exp(log_hat - exact)  # p_hat / p, mean 1 if unbiased
    se = ratio.std(0) / math.sqrt(reps)
    assert bool(((ratio.mean(0) - 1).abs() < 4 * se + 1e-3).all()), (ratio.mean(0), se)
    assert bool((se < 0.05).all())  # the check above has teeth
    # Jensen: E[log p_hat] < log p(x), and the gap shrinks with K
    gaps = []
    for k in (1, 10, 100):
        lh = est.prior_sampling(model, repeated(x, 1000), k).log_marginal.reshape(
            1000, -1
        )
        gaps.append((exact - lh.mean(0)))
    assert bool(
        (gaps[0] > gaps[1]).all() and (gaps[1] > gaps[2]).all() and (gaps[2] > 0).all()
    ), gaps


def test_estimate_converges_to_the_exact_value():
    torch.manual_seed(1)
    model, x = linear_model(5, 2, sigma=0.7, seed=2, n=4, data_seed=1)
    exact = model.log_marginal(x)
    broad = diag_gaussian(
        torch.zeros(2, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64)
    )
    for q in (None, broad):
        e = est.importance_sampling(model, x, 200_000, q=q)
        assert bool((e.ess > 1000).all() and (e.ess <= 200_000).all())
        # relative standard error of p_hat is about 1/sqrt(ESS) (< 0.03 here); a wrong constant is >= 0.1
        torch.testing.assert_close(e.log_marginal, exact, atol=0.03, rtol=0)


@pytest.mark.parametrize("which", ["mixture", "linear"])
def test_exact_posterior_gives_zero_variance(which):
    torch.manual_seed(2)
    model, x = model_and_points(
        which, x_dim=6, z_dim=3, sigma=0.5, seed=3, n=5, data_seed=2
    )
    with torch.no_grad():
        exact, post = model.log_marginal(x), model.posterior(x)
        lw = est.log_importance_weights(model, x, 50, q=post)  # (50, B)
    torch.testing.assert_close(lw, exact.expand_as(lw), atol=1e-9, rtol=0)
    e = est.importance_sampling(model, x, 50, q=post)
    torch.testing.assert_close(e.log_marginal, exact, atol=1e-9, rtol=0)
    torch.testing.assert_close(e.ess, torch.full_like(e.ess, 50.0))


def test_chunks_combine_exactly():
    model, x = linear_model(3, 2, sigma=0.5, seed=4, n=6, data_seed=3)
    q = diag_gaussian(
        torch.zeros(6, 2, dtype=torch.float64),
        torch.full((6, 2), 1.5, dtype=torch.float64),
    )
    torch.manual_seed(5)
    e = est.importance_sampling(model, x, 50, q=q, chunk_size=20)
    torch.manual_seed(5)
    lw = torch.cat(
        [est.log_importance_weights(model, x, c, q=q) for c in (20, 20, 10)]
    )  # same draws, one piece
    torch.testing.assert_close(e.log_marginal, torch.logsumexp(lw, 0) - math.log(50))
    torch.testing.assert_close(e.ess, est.effective_sample_size(lw))
    # a memory budget of 60 numbers per chunk: 6 examples x 3 dimensions x 3 samples
    torch.manual_seed(5)
    e_small = est.importance_sampling(model, x, 50, q=q, max_elements=60)
    torch.manual_seed(5)
    lw = torch.cat(
        [est.log_importance_weights(model, x, c, q=q) for c in [3] * 16 + [2]]
    )
    torch.testing.assert_close(
        e_small.log_marginal, torch.logsumexp(lw, 0) - math.log(50)
    )


def test_weight_diagnostics():
    lw = torch.log(
        torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    )  # (K=4, B=2)
    torch.testing.assert_close(
        est.normalized_weights(lw),
        torch.tensor([[0.25, 1.0], [0.25, 0.0], [0.25, 0.0], [0.25, 0.0]]),
    )
    torch.testing.assert_close(est.effective_sample_size(lw), torch.tensor([4.0, 1.0]))
    torch.testing.assert_close(
        est.useful_fraction(lw, mass=0.99), torch.tensor([1.0, 0.25])
    )
    w = torch.tensor([3.0, 1.0, 0.5, 0.5])
    torch.testing.assert_close(
        est.effective_sample_size(w.log()), w.sum() ** 2 / (w**2).sum()
    )
    torch.testing.assert_close(
        est.useful_fraction(w.log(), mass=0.7), torch.tensor(0.5)
    )
    with pytest.raises(ValueError, match="mass"):
        est.useful_fraction(lw, mass=0.0)


def test_prior_sampling_keeps_one_in_n_samples_for_n_separated_clusters():
    # N well-separated clusters, uniform prior: only the ~1/N draws of the right z matter
    n = 8
    angles = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    means = 10 * torch.stack([angles.cos(), angles.sin()], -1)
    model = GaussianMixture(
        means, 0.25 * torch.eye(2, dtype=torch.float64).expand(n, 2, 2)
    )
    x = means[:1] + 0.1
    torch.manual_seed(6)
    lw = est.log_importance_weights(model, x, 8000)  # (K, 1)
    frac = float(est.useful_fraction(lw, mass=0.999))
    assert abs(frac - 1 / n) < 0.015, frac
    ess = float(est.effective_sample_size(lw))
    assert abs(ess / 8000 - 1 / n) < 0.015, ess


def test_fitted_proposal_is_the_mean_field_posterior():
    # for a Gaussian posterior N(m, Lambda^{-1}), the diagonal q minimising KL(q || p) has
    # mean m and variances 1 / Lambda_ii
    torch.manual_seed(7)
    model = LinearGaussian.random(4, 2, sigma=0.8, seed=5).double()
    before = [p.detach().clone() for p in model.parameters()]
    x = model.sample(3, torch.Generator().manual_seed(4))[0]
    q, history = est.fit_proposal(model, x, steps=400, lr=0.05, k=32)
    with torch.no_grad():
        post = model.posterior(x)
        dist = q()
        torch.testing.assert_close(dist.mean, post.mean, atol=0.05, rtol=0)
        torch.testing.assert_close(
            dist.variance,
            1 / torch.diagonal(post.precision_matrix, dim1=-2, dim2=-1),
            atol=0.01,
            rtol=0.1,
        )
    assert history["elbo"][-1] > history["elbo"][0] + 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and all(
        p.requires_grad for p in model.parameters()
    )
    # what it buys: much less variance than prior sampling, still an unbiased p-estimate
    torch.manual_seed(8)
    reps = 200
    fitted = est.importance_sampling(
        model,
        repeated(x, reps),
        10,
        q=diag_gaussian(dist.mean.repeat(reps, 1), dist.stddev.repeat(reps, 1)),
    )
    prior = est.prior_sampling(model, repeated(x, reps), 10)
    assert bool(
        (
            fitted.log_marginal.reshape(reps, -1).var(0)
            < prior.log_marginal.reshape(reps, -1).var(0) / 5
        ).all()
    )


def test_works_with_a_vae_and_rejects_bad_input():
    torch.manual_seed(9)
    vae = VAE.mlp((1, 4, 4), latent_dim=2, hidden=(8,))
    x = torch.rand(3, 1, 4, 4).round()
    with torch.no_grad():
        e = est.importance_sampling(vae, x, 100, q=vae.encode(x), chunk_size=30)
        torch.manual_seed(10)
        whole = est.importance_sampling(vae, x, 100, q=vae.encode(x))
        torch.manual_seed(10)
        iwae = iwae_bound(vae, x, 100, q=vae.encode(x))
    assert e.log_marginal.shape == (3,) and bool(torch.isfinite(e.log_marginal).all())
    torch.testing.assert_close(
        whole.log_marginal, iwae
    )  # the same estimator as L_100 on the same draws
    model = LinearGaussian.random(3, 2)
    with pytest.raises(ValueError, match="k must be"):
        est.prior_sampling(model, torch.zeros(2, 3), 0)
    with pytest.raises(ValueError, match="batch shape"):
        est.importance_sampling(
            model,
            torch.zeros(2, 3),
            5,
            q=diag_gaussian(torch.zeros(4, 2), torch.ones(4, 2)),
        )
    with pytest.raises(ValueError, match="chunk_size"):
        est.importance_sampling(model, torch.zeros(2, 3), 5, chunk_size=0)
