"""Score-function and pathwise gradient estimators against exact gradients.

Toy problem: L(mu) = E_{x ~ N(mu, I)} ||x - c||^2 = ||mu - c||^2 + D, gradient 2 (mu - c).
Per sample, the pathwise estimate 2 (x - c) has total variance 4 D exactly; the score-function
estimate ||x - c||^2 (x - mu) has total variance E||eps||^6 = 48 at mu = c (D = 2).
"""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from vaekit import inference
from vaekit.inference import gradients
from vaekit.distributions import diag_gaussian
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.inference.objectives import elbo
from vaekit.train import fit

C = torch.tensor([5.0, 5.0])


def toy_loss(x):
    return (x - C).pow(2).sum(-1)


def toy_q(mu):
    return Independent(Normal(mu, torch.ones_like(mu)), 1)


def toy_grads(kind, mu, n, repeats, baseline=None):
    def estimate(theta):
        if kind == "pathwise":
            return gradients.pathwise_estimate(toy_loss, toy_q(theta), n)
        return gradients.score_function_estimate(toy_loss, toy_q(theta), n, baseline)

    return gradients.gradient_estimates(estimate, mu, repeats)


def test_score_surrogate_value_and_gradient_match_the_formula():
    torch.manual_seed(0)
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    q = toy_q(mu)
    x = q.sample((16,))
    f = toy_loss(x)
    for baseline, b in ((None, 0.0), (3.0, 3.0), ("loo", (f.sum() - f) / 15)):
        surrogate = gradients.score_function_surrogate(f, q.log_prob(x), baseline)
        torch.testing.assert_close(
            surrogate, f
        )  # the value is the plain Monte Carlo integrand
        (grad,) = torch.autograd.grad(surrogate.mean(), mu)
        want = ((f - b)[:, None] * (x - mu.detach())).mean(
            0
        )  # (f - b) grad_mu log N(x; mu, I)
        torch.testing.assert_close(grad, want)


def test_score_surrogate_keeps_the_direct_gradient_of_f():
    # f depending on the parameter directly: the estimator is grad f + f grad log q
    torch.manual_seed(1)
    mu = torch.tensor([0.3], requires_grad=True)
    q = Independent(Normal(mu, torch.ones(1)), 1)
    x = q.sample((4,))
    f = (x[:, 0] * mu).pow(2)  # (4,)
    (grad,) = torch.autograd.grad(
        gradients.score_function_surrogate(f, q.log_prob(x)).sum(), mu
    )
    want = (2 * x[:, 0] ** 2 * mu.detach() + f.detach() * (x[:, 0] - mu.detach())).sum()
    torch.testing.assert_close(grad, want.reshape(1))


@pytest.mark.parametrize(
    "kind,n,baseline",
    [
        ("pathwise", 1, None),
        ("pathwise", 5, None),
        ("score", 1, None),
        ("score", 5, None),
        ("score", 5, "loo"),
        ("score", 1, 40.0),
    ],
)
def test_toy_estimators_are_unbiased(kind, n, baseline):
    torch.manual_seed(2)
    mu = torch.tensor([1.0, -0.5])
    g = toy_grads(kind, mu, n, 20000, baseline)
    stats = gradients.estimator_stats(g, 2 * (mu - C))
    assert stats.z_scores.abs().max() < 4.5, (stats.mean, stats.z_scores)
    assert (
        stats.std_error.max() < 0.2 * (2 * (mu - C)).abs().min()
    )  # precise enough to see a bias of 20%


def test_pathwise_variance_is_exact_and_far_below_reinforce():
    torch.manual_seed(3)
    mu = torch.zeros(2)
    for n in (1, 4):
        path = gradients.estimator_stats(toy_grads("pathwise", mu, n, 20000)).variance
        assert abs(path * n / 8 - 1) < 0.05  # 4 D / n, D = 2
    path1 = gradients.estimator_stats(toy_grads("pathwise", mu, 1, 20000)).variance
    score1 = gradients.estimator_stats(toy_grads("score", mu, 1, 20000)).variance
    loo = gradients.estimator_stats(toy_grads("score", mu, 4, 20000, "loo")).variance
    score4 = gradients.estimator_stats(toy_grads("score", mu, 4, 20000)).variance
    assert score1 > 300 * path1  # measured about 800 at mu = 0
    assert loo < score4 / 4  # the baseline removes most of the variance


def test_reinforce_variance_at_the_optimum_matches_gaussian_moments():
    torch.manual_seed(4)
    var = gradients.estimator_stats(toy_grads("score", C.clone(), 1, 40000)).variance
    assert abs(var / 48 - 1) < 0.15  # E||eps||^6 = 2 * 4 * 6 for D = 2


def test_bernoulli_score_function_is_unbiased_and_pathwise_refuses():
    torch.manual_seed(5)
    phi = torch.tensor(0.4)
    p = torch.sigmoid(phi)
    f = lambda z: (z - 0.45) ** 2  # noqa: E731
    exact = p * (1 - p) * (f(torch.tensor(1.0)) - f(torch.tensor(0.0)))
    g = gradients.gradient_estimates(
        lambda th: gradients.score_function_estimate(f, Bernoulli(logits=th), 2, "loo"),
        phi,
        40000,
    )
    stats = gradients.estimator_stats(g, exact)
    assert abs(float(stats.z_scores)) < 4.5 and float(stats.std_error) < 0.1 * float(
        exact
    )
    with pytest.raises(TypeError, match="rsample"):
        gradients.pathwise_estimate(f, Bernoulli(logits=phi), 1)


def test_both_elbo_gradients_are_unbiased_and_pathwise_is_less_noisy():
    torch.manual_seed(6)
    model = LinearGaussian.random(4, 2, sigma=0.6, seed=1, learnable=False)
    x, _ = model.sample(1, torch.Generator().manual_seed(2))
    best = inference.mean_field_optimum(model.posterior(x))
    theta0 = torch.cat([best.mean[0] + 0.4, best.stddev[0].log() + 0.2])

    def q_of(theta):
        return diag_gaussian(theta[..., :2], theta[..., 2:].exp())

    theta = theta0.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(
        -inference.kl_to_posterior(model, x, q_of(theta[None])).sum(), theta
    )
    xs = x.expand(20000, -1)
    path = gradients.gradient_estimates(
        lambda th: elbo(model, xs, 2, q=q_of(th)), theta0, 20000
    )
    score = gradients.gradient_estimates(
        lambda th: gradients.score_function_elbo(model, xs, q_of(th), 2, "loo"),
        theta0,
        20000,
    )
    sp, ss = (
        gradients.estimator_stats(path, exact),
        gradients.estimator_stats(score, exact),
    )
    assert sp.z_scores.abs().max() < 4.5 and ss.z_scores.abs().max() < 4.5
    assert ss.std_error.max() < 0.25 * exact.abs().max()
    assert ss.variance > 5 * sp.variance


def test_score_function_elbo_has_the_elbo_as_its_value():
    torch.manual_seed(7)
    model = LinearGaussian.random(
        4, 2, sigma=0.6, seed=1, learnable=False, dtype=torch.float64
    )
    x, _ = model.sample(3, torch.Generator().manual_seed(2))
    q = diag_gaussian(
        torch.zeros(3, 2, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64)
    )
    est = gradients.score_function_elbo(model, x, q, k=20000)
    assert est.shape == (3,) and est.dtype == torch.float64
    assert torch.all((est - inference.exact_elbo(model, x, q)).abs() < 0.2)


def test_parameter_trace_records_every_fit_step():
    m = nn.ParameterDict({"mu": nn.Parameter(torch.zeros(2))})
    trace = gradients.ParameterTrace(m["mu"])
    fit(
        m,
        lambda mod, _: gradients.pathwise_estimate(toy_loss, toy_q(mod["mu"]), 4),
        torch.zeros(1, 1),
        steps=30,
        batch_size=1,
        optimizer="sgd",
        lr=0.1,
        device="cpu",
        progress=False,
        callbacks=[trace],
    )
    assert trace.values.shape == (31, 2)
    torch.testing.assert_close(trace.values[0], torch.zeros(2))
    assert (trace.values[-1] - C).norm() < 1.0


def test_bad_arguments_are_named():
    f = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="at least 2 samples"):
        gradients.score_function_surrogate(f, torch.zeros(1, 3), "loo")
    with pytest.raises(ValueError, match="same shape"):
        gradients.score_function_surrogate(f, torch.zeros(3), None)
    with pytest.raises(ValueError, match="baseline"):
        gradients.score_function_surrogate(f, torch.zeros(1, 3), "mean")
    with pytest.raises(ValueError, match="n must be a positive int"):
        gradients.pathwise_estimate(toy_loss, toy_q(torch.zeros(2)), 0)
    with pytest.raises(ValueError, match="one value per repeat"):
        gradients.gradient_estimates(lambda th: th.sum(), torch.zeros(2), 5)
    with pytest.raises(ValueError, match="R >= 2"):
        gradients.estimator_stats(torch.zeros(1, 2))


def test_estimates_follow_the_parameter_dtype():
    mu = torch.zeros(2, dtype=torch.float64)
    g = toy_grads("pathwise", mu, 2, 10)
    assert g.dtype == torch.float64 and g.shape == (10, 2)
    assert math.isfinite(gradients.estimator_stats(g).variance)


def test_estimate_dispatches_to_the_named_estimator():
    mu = torch.zeros(2)
    for method, baseline, direct in (
        ("pathwise", None, lambda q: gradients.pathwise_estimate(toy_loss, q, 3)),
        ("score", None, lambda q: gradients.score_function_estimate(toy_loss, q, 3)),
        (
            "score",
            "loo",
            lambda q: gradients.score_function_estimate(toy_loss, q, 3, "loo"),
        ),
    ):
        grads = []
        for run in (
            lambda q: gradients.estimate(toy_loss, q, 3, method, baseline),
            direct,
        ):
            torch.manual_seed(0)
            grads.append(
                gradients.gradient_estimates(lambda th: run(toy_q(th)), mu, 50)
            )
        torch.testing.assert_close(grads[0], grads[1])  # same draws, same gradients
    with pytest.raises(ValueError, match="method"):
        gradients.estimate(toy_loss, toy_q(mu), 3, "reparam")
    with pytest.raises(ValueError, match="baseline"):
        gradients.estimate(toy_loss, toy_q(mu), 3, "pathwise", "loo")


def test_elbo_estimate_dispatches_and_gaussian_from_params_splits_theta():
    model = LinearGaussian.random(4, 2, sigma=0.5, seed=0, learnable=False)
    x = model.sample(3, torch.Generator().manual_seed(1))[0]
    theta = torch.tensor([0.3, -0.2, -1.0, 0.5])
    q = gradients.gaussian_from_params(theta.expand(3, 4))
    torch.testing.assert_close(q.mean, torch.tensor([0.3, -0.2]).expand(3, 2))
    torch.testing.assert_close(q.stddev, torch.tensor([-1.0, 0.5]).exp().expand(3, 2))
    for kwargs, direct in (
        (dict(method="pathwise"), lambda: elbo(model, x, 4, analytic_kl=True, q=q)),
        (
            dict(method="pathwise", analytic_kl=False),
            lambda: elbo(model, x, 4, analytic_kl=False, q=q),
        ),
        (
            dict(method="score", baseline="loo"),
            lambda: gradients.score_function_elbo(model, x, q, 4, "loo"),
        ),
    ):
        torch.manual_seed(0)
        got = gradients.elbo_estimate(model, x, q, 4, **kwargs)
        torch.manual_seed(0)
        torch.testing.assert_close(got, direct())
    with pytest.raises(ValueError, match="method"):
        gradients.elbo_estimate(model, x, q, 4, method="reinforce")
    with pytest.raises(ValueError, match="theta"):
        gradients.gaussian_from_params(torch.zeros(3))


def test_loglog_slope():
    assert gradients.loglog_slope({1: 8.0, 2: 4.0, 8: 1.0}) == pytest.approx(-1.0)
    assert gradients.loglog_slope({1: 1.0, 10: 100.0}) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        gradients.loglog_slope({0: 1.0, 1: 2.0})


def test_descend_returns_every_iterate_and_reaches_the_optimum():
    path = gradients.descend(
        lambda mu: gradients.estimate(toy_loss, toy_q(mu), 4, "pathwise"),
        torch.zeros(2),
        300,
        0.02,
        optimizer="sgd",
    )
    assert path.shape == (301, 2) and torch.equal(path[0], torch.zeros(2))
    assert (path[-50:] - C).norm(
        dim=-1
    ).mean() < 0.3  # SGD on E||x - c||^2 settles near c


def test_compare_estimators_measures_every_estimator_and_size():
    estimators = {
        "pathwise": lambda th, n: gradients.estimate(toy_loss, toy_q(th), n),
        "leave-one-out": lambda th, n: gradients.estimate(
            toy_loss, toy_q(th), n, "score", "loo"
        ),
    }
    stats = gradients.compare_estimators(
        estimators,
        torch.zeros(2),
        [1, 4],
        4000,
        exact=2 * (torch.zeros(2) - C),
        needs_two=lambda name: "leave" in name,
    )
    assert set(stats["pathwise"]) == {1, 4} and set(stats["leave-one-out"]) == {4}
    assert abs(stats["pathwise"][4].variance * 4 / 8 - 1) < 0.15  # 8 / S exactly
    assert all(s.z_scores.abs().max() < 4.5 for d in stats.values() for s in d.values())
