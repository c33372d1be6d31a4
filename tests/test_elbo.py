"""The ELBO against exact answers on the linear Gaussian model, where log p(x) and p(z|x) are known.

log p(x) = ELBO(q) + KL(q || p(z|x)) is checked three ways: the closed-form ELBO of
``vaekit.inference``, and ``vaekit.objectives.elbo``'s Monte Carlo estimators A (sampled KL) and
B (analytic KL), each against log p(x) - KL(q || p(z|x)) from ``torch.distributions``.
Tolerances are a few standard errors, far below a wrong constant such as log(2 pi) / 2 = 0.92 nats.
"""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vaekit import inference
from vaekit.distributions import diag_gaussian
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.nets import GaussianEncoder
from vaekit.inference.objectives import elbo, elbo_terms
from vaekit.train import fit

F64 = torch.float64


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = LinearGaussian.random(5, 2, sigma=0.7, seed=4, learnable=False, dtype=F64)
    x, _ = model.sample(3, torch.Generator().manual_seed(5))  # (3, 5)
    post = model.posterior(x)
    best = inference.mean_field_optimum(post)
    qs = {  # diagonal q's near and far from the posterior: gaps of about 0.1 and 5 nats
        "near": diag_gaussian(post.mean + 0.3 * best.stddev, best.stddev * 1.2),
        "far": diag_gaussian(post.mean - 2.5 * best.stddev, best.stddev * 2.5),
    }
    return model, x, post, qs


def _repeated_estimates(model, x, q, analytic: bool, repeats: int):
    """``repeats`` independent single-sample ELBO estimates per example: ``[repeats, B]``."""
    b = x.shape[0]
    xs = x.repeat(repeats, 1)  # (R*B, D)
    qs = diag_gaussian(
        q.base_dist.loc.repeat(repeats, 1), q.base_dist.scale.repeat(repeats, 1)
    )
    return elbo(model, xs, 1, analytic_kl=analytic, q=qs).reshape(repeats, b)


def test_exact_elbo_plus_kl_is_log_marginal(setup):
    model, x, post, qs = setup
    full = MultivariateNormal(post.mean - 0.5, scale_tril=post.scale_tril * 1.5)
    for q in [*qs.values(), full, post, inference.mean_field_optimum(post)]:
        total = inference.exact_elbo(model, x, q) + inference.kl_to_posterior(
            model, x, q
        )
        torch.testing.assert_close(total, model.log_marginal(x), rtol=0, atol=1e-10)
    assert torch.all(
        inference.exact_elbo(model, x, qs["far"]) < model.log_marginal(x) - 0.1
    )


@pytest.mark.parametrize(
    "analytic", [False, True], ids=["A_sampled_kl", "B_analytic_kl"]
)
@pytest.mark.parametrize("which", ["near", "far"])
def test_monte_carlo_elbo_is_log_marginal_minus_kl(setup, analytic, which):
    model, x, post, qs = setup
    q = qs[which]
    est = _repeated_estimates(model, x, q, analytic, 20000)  # (R, B)
    want = model.log_marginal(x) - kl_divergence(
        inference.as_multivariate(q), post
    )  # exact, (B,)
    se = est.std(0) / math.sqrt(est.shape[0])
    assert torch.all((est.mean(0) - want).abs() < 4.5 * se), (est.mean(0), want, se)
    assert torch.all(4.5 * se < 0.5)  # well below a missing log(2 pi)/2 = 0.92 nats


def test_elbo_with_k_samples_averages_single_sample_terms(setup):
    # elbo(k) is the mean of k single-sample estimates: same expectation, k times smaller variance
    model, x, post, qs = setup
    q = qs["near"]
    reps = 4000
    one = _repeated_estimates(model, x, q, False, reps)[:, 0]
    xs = x[:1].repeat(reps, 1)
    qk = diag_gaussian(
        q.base_dist.loc[:1].repeat(reps, 1), q.base_dist.scale[:1].repeat(reps, 1)
    )
    eight = elbo(model, xs, 8, analytic_kl=False, q=qk)
    assert abs(eight.mean() - one.mean()) < 4.5 * math.sqrt(
        one.var() / reps + eight.var() / reps
    )
    assert 5 < float(one.var() / eight.var()) < 12.5


def test_analytic_and_sampled_kl_agree_in_expectation(setup):
    model, x, post, qs = setup
    q = qs["far"]
    reps = 20000
    xs = x.repeat(reps, 1)
    qr = diag_gaussian(
        q.base_dist.loc.repeat(reps, 1), q.base_dist.scale.repeat(reps, 1)
    )
    a = elbo_terms(model, xs, 1, analytic_kl=False, q=qr)
    b = elbo_terms(model, xs, 1, analytic_kl=True, q=qr)
    # the analytic KL is the closed form KL(N(m, s^2) || N(0, 1)) = 1/2 sum(s^2 + m^2 - 1 - log s^2)
    m, s = q.base_dist.loc, q.base_dist.scale
    closed = 0.5 * (s**2 + m**2 - 1 - 2 * s.log()).sum(-1)
    torch.testing.assert_close(
        b.kl.reshape(reps, -1)[0], closed, rtol=1e-10, atol=1e-10
    )
    sampled = a.kl.reshape(reps, -1)  # (R, B), one-sample estimates of the same KL
    se = sampled.std(0) / math.sqrt(reps)
    assert torch.all((sampled.mean(0) - closed).abs() < 4.5 * se)
    # elbo = reconstruction - kl in both, and beta weights the KL
    torch.testing.assert_close(a.elbo, a.reconstruction - a.kl)
    beta = elbo_terms(
        model, xs[:3], 1, analytic_kl=True, beta=0.25, q=diag_gaussian(m, s)
    )
    torch.testing.assert_close(beta.elbo, beta.reconstruction - 0.25 * closed)


@pytest.mark.parametrize("analytic", [False, True])
def test_gap_is_zero_at_the_exact_posterior(setup, analytic):
    # at q = p(z|x) every sample's log p(x, z) - log q(z) equals log p(x): zero bias and zero variance
    model, x, post, _ = setup
    xs = x.repeat(500, 1)
    est = elbo(
        model, xs, 1, analytic_kl=analytic, q=model.posterior(xs)
    )  # MVN q: KL(MVN || Normal) is sampled
    torch.testing.assert_close(est, model.log_marginal(xs), rtol=0, atol=1e-10)
    torch.testing.assert_close(
        inference.kl_to_posterior(model, x, post),
        torch.zeros(3, dtype=F64),
        rtol=0,
        atol=1e-10,
    )
    torch.testing.assert_close(
        inference.exact_elbo(model, x, post), model.log_marginal(x), rtol=0, atol=1e-10
    )


def test_mean_field_optimum_maximises_the_elbo_over_diagonal_q(setup):
    model, x, post, _ = setup
    best = inference.mean_field_optimum(post)
    top = inference.exact_elbo(model, x, best)
    g = torch.Generator().manual_seed(7)
    for _ in range(20):
        loc = best.mean + 0.05 * torch.randn(3, 2, generator=g, dtype=F64)
        scale = best.stddev * torch.exp(
            0.05 * torch.randn(3, 2, generator=g, dtype=F64)
        )
        assert torch.all(
            inference.exact_elbo(model, x, diag_gaussian(loc, scale)) < top
        )
    # a correlated posterior leaves a positive approximation gap; its variances are 1 / precision_jj
    assert torch.all(inference.kl_to_posterior(model, x, best) > 0)
    torch.testing.assert_close(
        best.stddev**-2, torch.diagonal(post.precision_matrix, dim1=-2, dim2=-1)
    )


def test_ppca_max_likelihood_is_a_stationary_point_and_beats_the_truth():
    truth = LinearGaussian.random(6, 2, sigma=0.5, seed=0, learnable=False, dtype=F64)
    x, _ = truth.sample(500, torch.Generator().manual_seed(0))
    mle = inference.ppca_max_likelihood(x, 2)
    learn = LinearGaussian(mle.weight, mle.bias, float(mle.sigma), learnable=True)
    ll = learn.log_marginal(x).mean()
    ll.backward()
    for p in learn.parameters():
        assert p.grad.abs().max() < 1e-8
    assert ll > truth.log_marginal(x).mean()
    with pytest.raises(ValueError, match="z_dim"):
        inference.ppca_max_likelihood(x, 6)


def test_per_example_q_and_amortized_wrapper_plug_into_elbo():
    model = LinearGaussian.random(4, 2, seed=0)
    x, _ = model.sample(10, torch.Generator().manual_seed(0))
    q = inference.PerExampleGaussian(10, 2)
    idx = torch.tensor([1, 3])
    assert elbo(model, x[idx], q=q(idx)).shape == (2,)
    assert q().batch_shape == (10,) and q().event_shape == (2,)
    with pytest.raises(ValueError, match="loc"):
        inference.PerExampleGaussian(10, 2, loc=torch.zeros(3, 2))
    amortized = inference.Amortized(GaussianEncoder.mlp((4,), 2, (8,), "tanh"), model)
    assert elbo(amortized, x).shape == (10,)
    assert inference.kl_to_posterior(model, x, amortized.encode(x)).shape == (10,)
    with pytest.raises(TypeError, match="q must be"):
        inference.as_multivariate(torch.distributions.Normal(0.0, 1.0))


def test_variational_em_and_joint_vi_tighten_the_bound():
    torch.manual_seed(0)
    truth = LinearGaussian.random(4, 1, sigma=0.5, seed=0, learnable=False)
    x, _ = truth.sample(100, torch.Generator().manual_seed(1))

    @torch.no_grad()
    def gap(vi):
        return float(
            (
                vi.model.log_marginal(x) - inference.exact_elbo(vi.model, x, vi.q())
            ).mean()
        )

    vem = inference.PerExampleVI(
        LinearGaussian.random(4, 1, sigma=1.0, seed=1),
        inference.PerExampleGaussian(100, 1),
    )
    before = gap(vem)
    h = inference.variational_em(
        vem,
        x,
        rounds=5,
        e_epochs=4,
        batch_size=50,
        lr=0.05,
        progress=False,
        evaluate=lambda v: {"gap": gap(v)},
    )
    assert len(h) == 5 and h["gap"][-1] < 0.5 * before
    assert all(p.requires_grad for p in vem.parameters())  # freezing is undone

    joint = inference.PerExampleVI(
        LinearGaussian.random(4, 1, sigma=1.0, seed=1),
        inference.PerExampleGaussian(100, 1),
    )
    start = float(joint.model.log_marginal(x).mean().detach())
    fit(
        joint,
        lambda v, xb, ib: v.loss(xb, ib),
        (x, torch.arange(100)),
        epochs=20,
        batch_size=50,
        lr=0.05,
        progress=False,
        device="cpu",
    )
    assert float(joint.model.log_marginal(x).mean().detach()) > start + 1.0


def test_full_covariance_q_starts_at_the_prior_and_stays_valid():
    q = inference.PerExampleFullGaussian(5, 3, dtype=torch.float64)
    dist = q()
    assert (
        dist.batch_shape == (5,)
        and dist.event_shape == (3,)
        and dist.loc.dtype == torch.float64
    )
    assert torch.equal(
        dist.covariance_matrix, torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    )
    with torch.no_grad():
        q.raw_tril.normal_(
            generator=torch.Generator().manual_seed(0)
        )  # any value: a valid Cholesky factor
    L = q.scale_tril()
    assert torch.equal(L, torch.tril(L)) and bool(
        (L.diagonal(dim1=-2, dim2=-1) > 0).all()
    )
    assert torch.allclose(q(torch.tensor([1, 3])).scale_tril, L[[1, 3]])
    with pytest.raises(ValueError, match="loc"):
        inference.PerExampleFullGaussian(5, 3, loc=torch.zeros(4, 3))


def test_full_covariance_q_fitted_by_the_elbo_reaches_the_exact_posterior():
    # two nearly parallel columns of W: a strongly correlated posterior that no diagonal q can match
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    w, u = (
        torch.randn(6, generator=g, dtype=torch.float64),
        torch.randn(6, generator=g, dtype=torch.float64),
    )
    model = LinearGaussian(
        torch.stack([w, w + 0.3 * u], 1),
        torch.zeros(6, dtype=torch.float64),
        0.5,
        learnable=False,
    )
    x, _ = model.sample(8, generator=torch.Generator().manual_seed(1))
    post = model.posterior(x)
    kl_min = inference.kl_to_posterior(model, x, inference.mean_field_optimum(post))
    assert bool((kl_min > 0.5).all())  # the diagonal family's gap here
    q = inference.PerExampleFullGaussian(8, 2, dtype=torch.float64)
    opt = torch.optim.Adam(q.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 2000, eta_min=1e-4)
    for _ in range(2000):
        opt.zero_grad()
        (-elbo(model, x, 16, analytic_kl=False, q=q()).sum()).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        kl = inference.kl_to_posterior(model, x, q())
        gap = model.log_marginal(x) - inference.exact_elbo(model, x, q())
    assert torch.allclose(
        gap, kl, atol=1e-10
    )  # the gap is the KL to the posterior, exactly
    assert (
        float(kl.max()) < 0.01 < float(kl_min.min()) / 50
    )  # the full-covariance q closes it
    assert torch.allclose(q().mean, post.mean, atol=0.05)
    assert torch.allclose(
        q().covariance_matrix, post.covariance_matrix, rtol=0.1, atol=1e-3
    )
