"""The Gaussian mixture against written-out densities, quadrature, scikit-learn and EM."""

import numpy as np
import pytest
import torch

from vaekit import data
from vaekit.models.mixture import (
    GaussianMixture,
    brute_force_log_marginal,
    em_step,
    fit_em,
    match_components,
)
from vaekit.train import fit


def toy(n=2000, seed=0):
    return data.gaussian_clusters(n, data.TOY_MEANS, data.TOY_COVARIANCES, seed=seed)


def random_mixture(seed=0, k=4, d=3):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, d, d, generator=g)
    covs = a @ a.transpose(-1, -2) + 0.3 * torch.eye(d)
    w = torch.rand(k, generator=g) + 0.2
    return GaussianMixture(2 * torch.randn(k, d, generator=g), covs, w / w.sum())


def test_parameters_round_trip():
    m = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES, (0.2, 0.3, 0.5))
    torch.testing.assert_close(m.covariances, torch.tensor(data.TOY_COVARIANCES))
    torch.testing.assert_close(m.weights, torch.tensor([0.2, 0.3, 0.5]))
    assert bool((torch.diagonal(m.scale_tril, dim1=-2, dim2=-1) > 0).all())
    assert {n for n, _ in m.named_parameters()} == {"means", "raw_tril", "logits"}
    m.set_parameters(weights=(1.0, 1.0, 2.0))
    torch.testing.assert_close(m.weights, torch.tensor([0.25, 0.25, 0.5]))


def test_log_marginal_matches_written_out_sum():
    m = random_mixture()
    x = 2 * torch.randn(50, 3)
    want = brute_force_log_marginal(
        m.means.detach(), m.covariances.detach(), m.weights.detach(), x
    )
    with torch.no_grad():
        np.testing.assert_allclose(m.log_marginal(x).numpy(), want, atol=1e-4)
        np.testing.assert_allclose(m.log_marginal_by_sum(x).numpy(), want, atol=1e-4)


def test_brute_force_log_marginal_matches_scipy_and_rejects_bad_shapes():
    from scipy.stats import multivariate_normal

    m = random_mixture(seed=3)
    x = 2 * torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    means, covs, w = (
        m.means.detach().double(),
        m.covariances.detach().double(),
        m.weights.detach().double(),
    )
    want = np.log(
        sum(
            float(w[k])
            * multivariate_normal(means[k].numpy(), covs[k].numpy()).pdf(
                x.double().numpy()
            )
            for k in range(4)
        )
    )
    np.testing.assert_allclose(
        brute_force_log_marginal(means, covs, w, x), want, rtol=1e-12
    )
    assert np.isneginf(
        brute_force_log_marginal(means, covs, w, torch.full((1, 3), 1e3))
    ).all()  # underflows, as documented
    with pytest.raises(ValueError, match="covariances"):
        brute_force_log_marginal(means, covs[:, :2], w, x)


def test_density_integrates_to_one():
    m = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES).double()
    t = torch.linspace(-9, 9, 721, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        mass = m.log_marginal(grid).exp().sum() * float(t[1] - t[0]) ** 2
    assert abs(float(mass) - 1) < 1e-4, f"density integrates to {float(mass)}"


def test_responsibilities_are_bayes_rule_and_match_sklearn():
    sk_mixture = pytest.importorskip("sklearn.mixture")
    x, _ = toy(500)
    sk = sk_mixture.GaussianMixture(3, covariance_type="full", random_state=0).fit(
        x.numpy()
    )
    m = GaussianMixture(sk.means_, sk.covariances_, sk.weights_).double()
    xd = x.double()
    with torch.no_grad():
        np.testing.assert_allclose(
            m.log_marginal(xd).numpy(), sk.score_samples(x.numpy()), atol=1e-6
        )
        r = m.responsibilities(xd)
        np.testing.assert_allclose(r.numpy(), sk.predict_proba(x.numpy()), atol=1e-6)
        torch.testing.assert_close(r.sum(-1), torch.ones(len(x), dtype=torch.float64))
        # log p(z, x) - log p(z | x) = log p(x) for every z
        diff = m.log_joint(xd) - m.posterior(xd).logits
        torch.testing.assert_close(
            diff, m.log_marginal(xd).unsqueeze(-1).expand_as(diff)
        )


def test_decode_and_prior_are_the_latent_variable_model():
    m = random_mixture(1)
    z = torch.tensor([[0, 1], [3, 2]])
    px = m.decode(z)
    assert px.batch_shape == (2, 2) and px.event_shape == (3,)
    torch.testing.assert_close(px.mean, m.means[z].detach())
    torch.testing.assert_close(m.prior.probs, m.weights)
    x = torch.randn(5, 3)
    with torch.no_grad():
        manual = torch.stack(
            [
                m.decode(torch.full((5,), k)).log_prob(x)
                + m.prior.log_prob(torch.tensor(k))
                for k in range(4)
            ],
            -1,
        )
        torch.testing.assert_close(manual, m.log_joint(x))


def test_sampling_z_then_x():
    m = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES, (0.2, 0.3, 0.5))
    x, z = m.sample(100_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(z, minlength=3) / len(z)
    torch.testing.assert_close(freq, m.weights.detach(), atol=0.006, rtol=0)
    for k in range(3):
        xk = x[z == k]
        torch.testing.assert_close(xk.mean(0), m.means[k].detach(), atol=0.02, rtol=0)
        torch.testing.assert_close(
            torch.cov(xk.T), m.covariances[k].detach(), atol=0.03, rtol=0
        )
    # The samples follow the density: their mean -log p(x) is the entropy -∫ p log p, here on a grid
    t = torch.linspace(-9, 9, 721, dtype=torch.float64)
    with torch.no_grad():
        log_p = m.double().log_marginal(torch.cartesian_prod(t, t))
        entropy = -(log_p.exp() * log_p).sum() * float(t[1] - t[0]) ** 2
        assert abs(float(-m.log_marginal(x.double()).mean() - entropy)) < 0.02


def test_em_is_monotone_and_matches_sklearn():
    sk_mixture = pytest.importorskip("sklearn.mixture")
    x, _ = toy(2000)
    m = GaussianMixture.init_from_data(x, 3, seed=0).double()
    xd = x.double()
    before = [em_step(m, xd) for _ in range(5)]
    assert all(b >= a - 1e-12 for a, b in zip(before, before[1:])), before
    trace = fit_em(m, xd, iterations=500, tol=1e-10)
    assert all(b >= a - 1e-10 for a, b in zip(trace, trace[1:]))
    sk = sk_mixture.GaussianMixture(
        3, tol=1e-10, max_iter=1000, reg_covar=1e-6, random_state=0
    ).fit(x.numpy())
    assert abs(trace[-1] - sk.score(x.numpy())) < 1e-5
    perm = match_components(m, torch.as_tensor(sk.means_))
    torch.testing.assert_close(
        m.means.detach()[perm],
        torch.as_tensor(sk.means_, dtype=torch.float64),
        atol=1e-3,
        rtol=0,
    )
    torch.testing.assert_close(
        m.covariances.detach()[perm],
        torch.as_tensor(sk.covariances_, dtype=torch.float64),
        atol=1e-3,
        rtol=0,
    )


def test_em_recovers_the_generating_parameters():
    x, _ = toy(20_000, seed=1)
    m = GaussianMixture.init_from_data(x, 3, seed=0)
    fit_em(m, x)
    perm = match_components(m, torch.tensor(data.TOY_MEANS))
    torch.testing.assert_close(
        m.means.detach()[perm], torch.tensor(data.TOY_MEANS), atol=0.03, rtol=0
    )
    torch.testing.assert_close(
        m.covariances.detach()[perm],
        torch.tensor(data.TOY_COVARIANCES),
        atol=0.04,
        rtol=0,
    )
    torch.testing.assert_close(
        m.weights.detach(), torch.full((3,), 1 / 3), atol=0.01, rtol=0
    )


def test_gradient_ascent_reaches_the_em_optimum():
    x, _ = toy(2000)
    em = GaussianMixture.init_from_data(x, 3, seed=0)
    em_ll = fit_em(em, x)[-1]
    gd = GaussianMixture.init_from_data(x, 3, seed=0)
    fit(
        gd,
        lambda m, xb: -m.log_marginal(xb),
        x,
        epochs=150,
        batch_size=500,
        lr=0.03,
        progress=False,
    )
    with torch.no_grad():
        gd_ll = float(gd.log_marginal(x).mean())
    assert em_ll - 0.005 < gd_ll <= em_ll + 1e-4, (gd_ll, em_ll)


def test_ellipses_lie_at_the_mahalanobis_radius():
    m = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES)
    pts = m.ellipses(radius=2.0, points=50)  # (K, P, 2)
    diff = pts - m.means.detach().unsqueeze(1)
    maha = torch.einsum(
        "kpi,kij,kpj->kp", diff, torch.linalg.inv(m.covariances.detach()), diff
    )
    torch.testing.assert_close(maha, torch.full_like(maha, 4.0), atol=1e-4, rtol=0)


def test_match_components():
    m = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES)
    ref = torch.tensor(data.TOY_MEANS)[[2, 0, 1]] + 0.1
    perm = match_components(m, ref)
    assert perm == [2, 0, 1]
    torch.testing.assert_close(m.means.detach()[perm], ref - 0.1)


def test_double_precision_and_bad_input():
    m = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES).double()
    assert m.log_marginal(torch.zeros(4, 2, dtype=torch.float64)).dtype == torch.float64
    assert m.sample(3)[0].dtype == torch.float64
    with pytest.raises(ValueError, match="x must be"):
        m.log_marginal(torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="z must be an integer"):
        m.decode(torch.zeros(3))
    with pytest.raises(ValueError, match="covariances must be"):
        GaussianMixture(data.TOY_MEANS, torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="covariances must be"):
        GaussianMixture(data.TOY_MEANS, torch.eye(2).expand(2, 2, 2))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(data.TOY_MEANS, weights=(0.5, 0.5, 0.0))
