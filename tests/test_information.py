"""The rate split into I_q(x; z) and KL(q(z) || p(z)) against closed forms on the linear Gaussian model.

With x ~ N(b, C) (the linear Gaussian model's marginal, C = W W^T + sigma^2 I) and a linear-Gaussian
encoder q(z|x) = N(A x + c, diag s^2), the aggregate posterior of the population is Gaussian,
q(z) = N(A b + c, A C A^T + diag s^2), so the rate, I_q(x; z) and KL(q(z) || N(0, I)) are exact.
The estimators average per-data-point terms over N points drawn from p(x); their standard error
is the reported ``*_se`` (0.013-0.016 nats at N = 6000) and their bias, (rho - 1) / (2N) with
rho = E[q(z|x) / q(z)] measured at 5-22 for these encoders, is at most 0.002 nats, about a tenth
of it; so a tolerance of 4 standard errors (about 0.06 nats) catches any wrong constant (a missing
log N is 8.7 nats, a missing 1/2 in a log-density tenths of a nat).
"""

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaekit import information
from vaekit.distributions import diag_gaussian
from vaekit.models.linear_gaussian import LinearGaussian


def gaussian_kl_to_standard(mean, cov):
    """KL(N(mean, cov) || N(0, I)) in closed form."""
    d = mean.shape[0]
    return 0.5 * (torch.trace(cov) + mean @ mean - d - torch.logdet(cov))


def linear_encoder_case(n, seed=0, shrink=0.7, narrow=1.3, shift=0.8, data_seed=None):
    """N points x ~ p(x) of a linear Gaussian model, a linear encoder that is not its posterior,
    and the exact population rate, I_q(x; z) and KL(q(z) || p(z))."""
    lg = LinearGaussian.random(
        6, 2, sigma=0.7, seed=seed, learnable=False, dtype=torch.float64
    )
    x, _ = lg.sample(
        n, torch.Generator().manual_seed(seed + 1 if data_seed is None else data_seed)
    )
    post = lg.posterior(x[:2])
    a = (
        shrink * post.covariance_matrix[0] @ lg.weight.T / lg.sigma**2
    )  # (d, D): the posterior-mean map, shrunk
    c = torch.tensor([shift, -0.5 * shift], dtype=torch.float64) - a @ lg.bias
    s = narrow * post.covariance_matrix[0].diagonal().sqrt()  # (d,)
    q = diag_gaussian(x @ a.T + c, s.expand(n, 2))
    cx = lg.marginal().covariance_matrix
    agg_mean, agg_cov = a @ lg.bias + c, a @ cx @ a.T + torch.diag(s**2)
    kl = gaussian_kl_to_standard(agg_mean, agg_cov)
    mi = 0.5 * torch.logdet(agg_cov) - s.log().sum()
    return q, lg.prior, float(mi + kl), float(mi), float(kl)


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_encoder_matches_exact_population_values(seed):
    torch.manual_seed(seed)
    q, prior, rate, mi, kl = linear_encoder_case(6000, seed)
    est = information.information_terms(q, prior)
    assert kl > 0.3 and 0.5 < mi < 3  # a case where both terms matter
    for name, exact in (
        ("rate", rate),
        ("mutual_information", mi),
        ("marginal_kl", kl),
    ):
        value, se = getattr(est, name), getattr(est, f"{name}_se")
        assert 0 < se < 0.02, (name, se)
        assert abs(value - exact) < 4 * se, (
            f"{name}: estimate {value:.4f} +- {se:.4f}, exact {exact:.4f}"
        )
    assert est.mutual_information + est.marginal_kl == pytest.approx(
        est.rate, abs=1e-9
    )  # the split is exact
    assert est.n == 6000 and est.log_n == pytest.approx(math.log(6000))


def test_exact_posterior_has_prior_as_aggregate():
    # q(z|x) = p(z|x) (full covariance) and x ~ p(x): the aggregate posterior is p(z) itself, so
    # KL(q(z) || p(z)) = 0 and I(x; z) = 1/2 log det(I + W^T W / sigma^2)
    torch.manual_seed(3)
    lg = LinearGaussian.random(
        5, 2, sigma=0.8, seed=3, learnable=False, dtype=torch.float64
    )
    x, _ = lg.sample(6000, torch.Generator().manual_seed(4))
    post = lg.posterior(x)
    exact_mi = 0.5 * float(
        torch.logdet(
            torch.eye(2, dtype=torch.float64) + lg.weight.T @ lg.weight / lg.sigma**2
        )
    )
    est = information.information_terms(
        post, lg.prior
    )  # no closed-form KL(MVN || Independent): sampled rate
    assert abs(est.marginal_kl) < 4 * est.marginal_kl_se + 1e-3, est
    assert abs(est.mutual_information - exact_mi) < 4 * est.mutual_information_se, (
        est,
        exact_mi,
    )
    assert abs(est.rate - exact_mi) < 4 * est.rate_se, (est, exact_mi)


def test_standard_errors_match_the_spread_over_data_sets():
    # the reported SE is the spread of the estimate over independent data sets and samples
    values, ses = [], []
    for rep in range(40):
        torch.manual_seed(100 + rep)
        q, prior, *_ = linear_encoder_case(
            500, seed=10, data_seed=1000 + rep
        )  # same model, fresh data points x
        est = information.information_terms(q, prior)
        values.append(est.mutual_information)
        ses.append(est.mutual_information_se)
    spread, mean_se = torch.tensor(values).std().item(), sum(ses) / len(ses)
    assert 0.65 < spread / mean_se < 1.45, (
        spread,
        mean_se,
    )  # 40 repeats: the std's own error is ~11%


def test_mutual_information_of_separated_points_is_log_n():
    # N narrow posteriors far apart: z identifies the point, I = log N; the rate is the Gaussian KL
    n = 50
    loc = torch.arange(n, dtype=torch.float64)[:, None] * 10.0 - 250
    q = diag_gaussian(loc, torch.full((n, 1), 0.1, dtype=torch.float64))
    prior = Independent(
        Normal(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)),
        1,
    )
    est = information.information_terms(q, prior, samples=4)
    assert est.mutual_information == pytest.approx(math.log(n), abs=1e-9)
    exact_rate = float(0.5 * (0.01 + loc[:, 0] ** 2 - 1 - math.log(0.01)).mean())
    assert est.rate == pytest.approx(exact_rate, rel=1e-12)


def test_identical_posteriors_carry_no_information():
    n = 30
    q = diag_gaussian(
        torch.full((n, 3), 0.5, dtype=torch.float64),
        torch.full((n, 3), 0.7, dtype=torch.float64),
    )
    prior = Independent(
        Normal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)),
        1,
    )
    est = information.information_terms(q, prior)
    assert est.mutual_information == pytest.approx(0, abs=1e-9)
    exact_kl = (
        3 * 0.5 * (0.49 + 0.25 - 1 - math.log(0.49))
    )  # 3 x KL(N(0.5, 0.7^2) || N(0, 1))
    assert est.marginal_kl == pytest.approx(
        exact_kl, abs=1e-9
    ) and est.rate == pytest.approx(exact_kl, abs=1e-9)


def test_aggregate_log_prob_is_the_mixture_and_chunking_does_not_matter():
    torch.manual_seed(0)
    loc, scale = (
        torch.randn(7, 2, dtype=torch.float64),
        torch.rand(7, 2, dtype=torch.float64) + 0.3,
    )
    q = diag_gaussian(loc, scale)
    z = torch.randn(11, 2, dtype=torch.float64)
    brute = torch.stack(
        [
            torch.log(
                sum(
                    torch.exp(Normal(loc[n], scale[n]).log_prob(zi).sum())
                    for n in range(7)
                )
                / 7
            )
            for zi in z
        ]
    )
    torch.testing.assert_close(
        information.aggregate_log_prob(q, z), brute, atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        information.aggregate_log_prob(q, z, max_elements=1), brute, atol=1e-12, rtol=0
    )


def test_latent_information_on_a_model_matches_information_terms():
    import vaekit

    torch.manual_seed(0)
    model = vaekit.VAE.mlp(x_shape=(1, 4, 4), latent_dim=3, hidden=(8,))
    x = torch.rand(40, 1, 4, 4)
    torch.manual_seed(1)
    a = information.latent_information(model, x, batch_size=7)
    torch.manual_seed(1)
    b = information.information_terms(model.encode(x), model.prior)
    for u, v in zip(a, b):
        assert u == pytest.approx(v, rel=1e-5, abs=1e-6)


def test_bad_input_is_refused_naming_it():
    q = diag_gaussian(torch.zeros(5, 2), torch.ones(5, 2))
    prior = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    with pytest.raises(TypeError, match="q must be"):
        information.information_terms("q", prior)
    with pytest.raises(ValueError, match="batch shape"):
        information.information_terms(
            Normal(torch.zeros(5, 2), torch.ones(5, 2)), prior
        )
    with pytest.raises(ValueError, match="at least two"):
        information.information_terms(
            diag_gaussian(torch.zeros(1, 2), torch.ones(1, 2)), prior
        )
    with pytest.raises(ValueError, match="prior must have"):
        information.information_terms(
            q, Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
        )
    with pytest.raises(ValueError, match="samples"):
        information.information_terms(q, prior, samples=0)
    with pytest.raises(ValueError, match="z must be"):
        information.aggregate_log_prob(q, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="max_elements"):
        information.aggregate_log_prob(q, torch.zeros(4, 2), max_elements=0)


def test_rate_distortion_explorer_moves_the_point_and_the_images():
    from vaekit.figures import rates as information_viz

    points = {0.5: (30.0, 85.0), 1: (24.0, 90.0), 2: (15.0, 105.0)}
    images = {b: torch.full((4, 1, 5, 5), v) for b, v in zip(points, (0.1, 0.5, 0.9))}
    ex = information_viz.RateDistortionExplorer(points, images, ncols=2)
    marker = next(t for t in ex.view.data if t.name == "selected")
    assert ex.beta == 1 and (marker.x[0], marker.y[0]) == (24.0, 90.0)
    ex.slider.value = 1  # log2 beta = 1: beta = 2
    heat = next(t for t in ex.view.data if t.type == "heatmap")
    assert ex.beta == 2 and (marker.x[0], marker.y[0]) == (15.0, 105.0)
    assert abs(float(max(max(r) for r in heat.z)) - 0.9) < 1e-6
    assert "D + R = 120.0" in ex.view.layout.title.text
    with pytest.raises(ValueError, match="power of two"):
        information_viz.RateDistortionExplorer(
            {3: (1.0, 2.0)}, {3: torch.zeros(1, 1, 2, 2)}
        )
    with pytest.raises(ValueError, match="one entry per"):
        information_viz.RateDistortionExplorer(points, {1: torch.zeros(1, 1, 2, 2)})
    with pytest.raises(ValueError, match="finite"):
        information_viz.rate_distortion_figure({"a": (float("nan"), 1.0)})


def test_iso_elbo_lines_pass_through_the_best_and_worst_points():
    from vaekit.figures import rates as information_viz

    points = {"a": (10.0, 100.0), "b": (20.0, 95.0), "c": (5.0, 130.0)}
    assert information_viz.iso_elbo_levels(points, n=3) == [110.0, 122.5, 135.0]
    fig = information_viz.rate_distortion_figure(points)
    iso = [
        t for t in fig.data if t.mode == "lines"
    ]  # the default: 5 levels from the best to the worst D + R
    levels = [110.0, 116.25, 122.5, 128.75, 135.0]
    assert len(iso) == 5 and all(
        abs(t.x[i] + t.y[i] - lv) < 1e-9 for t, lv in zip(iso, levels) for i in (0, 1)
    )


def test_aggregate_posterior_figure_draws_one_panel_per_prior():
    from vaekit.figures import rates as information_viz

    prior = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    fig = information_viz.aggregate_posterior_figure(
        {"a": (prior, torch.randn(30, 2)), "b": (prior, torch.randn(30, 2))},
        labels=torch.arange(30) % 10,
    )
    types = [t.type for t in fig.data]
    assert (
        types == (["contour"] + ["scatter"] * 10) * 2
    )  # per panel: the prior, then one trace per digit
    assert (
        sum(t.showlegend for t in fig.data) == 10
        and sum(len(t.x) for t in fig.data[1:11]) == 30
    )
    shade = fig.data[
        0
    ].z  # N(0, I)'s log-density: peak -log(2 pi) at the origin, clipped 8 nats below it
    assert shade.max() == pytest.approx(
        -math.log(2 * math.pi), abs=1e-3
    ) and shade.min() == pytest.approx(shade.max() - 8, abs=1e-4)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        information_viz.aggregate_posterior_figure({"a": (prior, torch.randn(30, 3))})
