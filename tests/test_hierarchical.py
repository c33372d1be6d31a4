"""The hierarchical VAE against exact answers.

A two-layer *linear Gaussian* hierarchy (z_2 ~ N(0, I), z_1 | z_2 ~ N(A z_2 + a, diag
s_p^2), x | z_1 ~ N(W z_1 + b, s_x^2 I)) with an affine posterior is Gaussian
throughout: its prior density, its posterior density, log p(x), the ELBO and the gap
KL(q(z|x) || p(z|x)) all have closed forms, computed here from the matrices alone and
compared with what the model computes through its top-down pass. With one latent per
layer the exact posterior lies in the family, so at it every importance weight equals
p(x); both parameterizations (residual and direct) reach it.
"""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

import vaekit
from vaekit import metrics, objectives
from vaekit.models.hierarchical import (
    HierarchicalVAE,
    hierarchical_elbo,
    positive_scale,
    positive_scale_inverse,
    residual_normal_kl,
)

DT = torch.float64


class LinearGaussianDecoder(nn.Module):
    """z_1 -> N(W z_1 + b, s_x^2 I), the image a vector of ``dx`` numbers."""

    def __init__(self, W, b, sx):
        super().__init__()
        self.lin = nn.Linear(W.shape[1], W.shape[0]).to(DT)
        with torch.no_grad():
            self.lin.weight.copy_(W)
            self.lin.bias.copy_(b)
        self.sx, self.x_shape = sx, (W.shape[0],)

    def forward(self, z1):
        loc = self.lin(z1)
        return Independent(Normal(loc, torch.full_like(loc, self.sx)), 1)


def _linear(weight, bias):
    lin = nn.Linear(weight.shape[1], weight.shape[0]).to(DT)
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    return lin


def random_params(d1, d2, dx, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return s * torch.randn(*shape, generator=g, dtype=DT)

    def pos(*shape):
        return 0.5 + torch.rand(*shape, generator=g, dtype=DT)

    gen = dict(
        A=r(d1, d2), a=r(d1, s=0.5), sp=pos(d1), W=r(dx, d1), b=r(dx, s=0.3), sx=0.7
    )
    post = dict(
        K2=r(d2, dx, s=0.3),
        k2=r(d2, s=0.3),
        s2=pos(d2) * 0.6,
        C=r(d1, d2, s=0.5),
        E=r(d1, dx, s=0.3),
        e0=r(d1, s=0.3),
        s1=pos(d1) * 0.6,
    )
    return gen, post


def build(gen, post, residual):
    """The linear hierarchy as a HierarchicalVAE: d_1 = d_2 = x, h_1 = z_2, affine heads
    with constant scales."""
    d1, d2 = gen["A"].shape
    dx = gen["W"].shape[0]
    zeros = torch.zeros
    prior_head = _linear(
        torch.cat([gen["A"], zeros(d1, d2, dtype=DT)]),
        torch.cat([gen["a"], positive_scale_inverse(gen["sp"])]),
    )
    top_head = _linear(
        torch.cat([post["K2"], zeros(d2, dx, dtype=DT)]),
        torch.cat([post["k2"], positive_scale_inverse(post["s2"])]),
    )
    if residual:  # q relative to p: dmu = mu_q - mu_p, dsigma = sigma_q / sigma_p
        w = torch.cat([post["C"] - gen["A"], post["E"]], 1)
        bias = torch.cat(
            [post["e0"] - gen["a"], positive_scale_inverse(post["s1"] / gen["sp"])]
        )
    else:
        w, bias = (
            torch.cat([post["C"], post["E"]], 1),
            torch.cat([post["e0"], positive_scale_inverse(post["s1"])]),
        )
    low_head = _linear(torch.cat([w, zeros(d1, d2 + dx, dtype=DT)]), bias)
    return HierarchicalVAE(
        [nn.Identity(), nn.Identity()],
        [nn.Identity()],
        [prior_head],
        [low_head, top_head],
        LinearGaussianDecoder(gen["W"], gen["b"], gen["sx"]),
        (d1, d2),
        residual=residual,
    ).to(DT)


def joint_p(gen):
    """Mean and covariance of v = [z_1, z_2, x] under the generative model."""
    A, a, sp, W, b, sx = (gen[k] for k in ("A", "a", "sp", "W", "b", "sx"))
    d1, d2 = A.shape
    dx = W.shape[0]
    L = torch.zeros(d1 + d2 + dx, d1 + d2 + dx, dtype=DT)
    L[:d1, :d1], L[:d1, d1 : d1 + d2] = torch.diag(sp), A
    L[d1 : d1 + d2, d1 : d1 + d2] = torch.eye(d2, dtype=DT)
    L[d1 + d2 :, :d1], L[d1 + d2 :, d1 : d1 + d2] = W @ torch.diag(sp), W @ A
    L[d1 + d2 :, d1 + d2 :] = sx * torch.eye(dx, dtype=DT)
    mu = torch.cat([a, torch.zeros(d2, dtype=DT), W @ a + b])
    return mu, L @ L.T


def q_joint(post, x):
    """Mean [B, d1 + d2] and covariance of q(z_1, z_2 | x) for the affine posterior."""
    C, s1, s2 = post["C"], post["s1"], post["s2"]
    d1, d2 = C.shape
    m2 = x @ post["K2"].T + post["k2"]  # (B, d2)
    m1 = m2 @ C.T + x @ post["E"].T + post["e0"]  # (B, d1)
    Lq = torch.zeros(d1 + d2, d1 + d2, dtype=DT)
    Lq[:d1, :d1], Lq[:d1, d1:] = torch.diag(s1), C @ torch.diag(s2)
    Lq[d1:, d1:] = torch.diag(s2)
    return torch.cat([m1, m2], 1), Lq @ Lq.T


def exact(gen, post, x):
    """log p(x), the closed-form ELBO and KL(q(z|x) || p(z|x)), each [B]."""
    mu, S = joint_p(gen)
    dz = sum(gen["A"].shape)
    n = S.shape[0]
    log_px = MultivariateNormal(mu[dz:], S[dz:, dz:]).log_prob(x)
    mq, Sq = q_joint(post, x)
    Si = torch.linalg.inv(S)
    mv = torch.cat([mq, x], 1) - mu  # (B, n)
    Sv = torch.zeros(n, n, dtype=DT)
    Sv[:dz, :dz] = Sq
    e_log_joint = -0.5 * (
        n * math.log(2 * math.pi)
        + torch.logdet(S)
        + ((mv @ Si) * mv).sum(1)
        + torch.trace(Si @ Sv)
    )
    entropy = 0.5 * (dz * (1 + math.log(2 * math.pi)) + torch.logdet(Sq))
    gain = S[:dz, dz:] @ torch.linalg.inv(S[dz:, dz:])  # (dz, dx)
    post_mean = mu[:dz] + (x - mu[dz:]) @ gain.T
    post_cov = S[:dz, :dz] - gain @ S[dz:, :dz]
    kl = kl_divergence(
        MultivariateNormal(mq, Sq), MultivariateNormal(post_mean, post_cov)
    )
    return log_px, e_log_joint + entropy, kl


def exact_posterior(gen, x_dim):
    """The affine posterior equal to p(z|x) when d1 = d2 = 1 (then it lies in the
    family)."""
    mu, S = joint_p(gen)
    # p(z2 | x): condition row 1 on the x block
    x_idx = list(range(2, 2 + x_dim))
    g2 = S[1, x_idx] @ torch.linalg.inv(S[x_idx][:, x_idx])  # (dx,)
    v2 = S[1, 1] - g2 @ S[x_idx, 1]
    # p(z1 | z2, x): condition row 0 on [z2, x]
    r = [1, *x_idx]
    g1 = S[0, r] @ torch.linalg.inv(S[r][:, r])  # (1 + dx,)
    v1 = S[0, 0] - g1 @ S[r, 0]
    return dict(
        K2=g2[None],
        k2=(mu[1] - g2 @ mu[x_idx])[None],
        s2=v2.sqrt()[None],
        C=g1[None, :1],
        E=g1[None, 1:],
        e0=(mu[0] - g1 @ mu[r])[None],
        s1=v1.sqrt()[None],
    )


def data(gen, n, seed=1):
    """``n`` draws of x from the model's marginal."""
    mu, S = joint_p(gen)
    dz = sum(gen["A"].shape)
    g = torch.Generator().manual_seed(seed)
    return (
        mu[dz:]
        + torch.randn(n, S.shape[0] - dz, generator=g, dtype=DT)
        @ torch.linalg.cholesky(S[dz:, dz:]).T
    )


# --- closed forms


@pytest.mark.parametrize("residual", [True, False])
def test_densities_are_the_joint_gaussians(residual):
    gen, post = random_params(3, 2, 4)
    model = build(gen, post, residual)
    x = data(gen, 5)
    z = torch.randn(7, 5, 5, dtype=DT)  # (k, B, d1 + d2)
    mu, S = joint_p(gen)
    p_z = MultivariateNormal(mu[:5], S[:5, :5])
    torch.testing.assert_close(
        model.prior.log_prob(z), p_z.log_prob(z), atol=1e-10, rtol=0
    )
    mq, Sq = q_joint(post, x)
    torch.testing.assert_close(
        model.encode(x).log_prob(z),
        MultivariateNormal(mq, Sq).log_prob(z),
        atol=1e-10,
        rtol=0,
    )
    torch.testing.assert_close(
        model.encode(x).mean, mq, atol=1e-12, rtol=0
    )  # the mean path is the mean (linear maps)


def test_closed_forms_agree_log_px_minus_elbo_is_the_kl_to_the_posterior():
    gen, post = random_params(3, 2, 4, seed=3)
    x = data(gen, 6)
    log_px, elbo, kl = exact(gen, post, x)
    torch.testing.assert_close(log_px - elbo, kl, atol=1e-9, rtol=0)
    assert (kl > 0.05).all()  # a diagonal q against a correlated posterior: a real gap


@pytest.mark.parametrize("residual", [True, False])
def test_monte_carlo_elbos_match_the_closed_form(residual):
    gen, post = random_params(3, 2, 4, seed=4)
    model = build(gen, post, residual)
    x = data(gen, 4)
    _, elbo_exact, _ = exact(gen, post, x)
    torch.manual_seed(0)
    k = 40_000
    with torch.no_grad():
        log_w = objectives.log_weights(
            model, x, k
        )  # (k, B): the sampled-KL ELBO, as vaekit.elbo computes it
        se = log_w.std(0) / math.sqrt(k)
        assert ((log_w.mean(0) - elbo_exact).abs() < 5 * se).all()
        torch.manual_seed(1)
        reps = x.repeat_interleave(k // 4, 0)  # k / 4 independent draws per example
        per = hierarchical_elbo(model, reps).view(
            4, -1
        )  # the analytic-KL-per-layer estimator
        se = per.std(1) / math.sqrt(per.shape[1])
        assert ((per.mean(1) - elbo_exact).abs() < 5 * se).all()
        torch.manual_seed(2)
        plain = objectives.elbo(
            model, x, k=100
        )  # no closed-form KL overall: sampled on the same draws
        torch.manual_seed(2)
        torch.testing.assert_close(
            plain, objectives.log_weights(model, x, 100).mean(0), atol=1e-10, rtol=0
        )


def test_layer_kls_are_analytic_given_the_layer_above():
    gen, post = random_params(3, 2, 4, seed=5)
    x = data(gen, 3)
    for residual in (True, False):
        model = build(gen, post, residual)
        torch.manual_seed(0)
        layers = model.encode(x).layers((6,))
        top_q = MultivariateNormal(
            x @ post["K2"].T + post["k2"], torch.diag(post["s2"] ** 2)
        )
        torch.testing.assert_close(
            layers[1].kl,
            kl_divergence(
                top_q,
                MultivariateNormal(torch.zeros(2, dtype=DT), torch.eye(2, dtype=DT)),
            ).expand(6, 3),
        )
        z2 = layers[1].z  # (6, B, 2)
        mu_q = z2 @ post["C"].T + x @ post["E"].T + post["e0"]
        mu_p = z2 @ gen["A"].T + gen["a"]
        want = kl_divergence(Normal(mu_q, post["s1"]), Normal(mu_p, gen["sp"])).sum(-1)
        torch.testing.assert_close(layers[0].kl, want, atol=1e-12, rtol=0)


def test_residual_normal_kl_is_the_gaussian_kl_and_its_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mu_p, sp = (
        torch.randn(50, generator=g, dtype=DT),
        0.3 + torch.rand(50, generator=g, dtype=DT),
    )
    dmu, ds = (
        torch.randn(50, generator=g, dtype=DT),
        0.2 + 2 * torch.rand(50, generator=g, dtype=DT),
    )
    q, p = Normal(mu_p + dmu, sp * ds), Normal(mu_p, sp)
    closed = residual_normal_kl(dmu, ds, sp)
    torch.testing.assert_close(closed, kl_divergence(q, p), atol=1e-12, rtol=0)
    torch.manual_seed(0)
    z = q.sample((200_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    se = log_ratio.std(0) / math.sqrt(z.shape[0])
    assert ((log_ratio.mean(0) - closed).abs() < 5 * se).all()
    assert (
        closed[ds == ds].min() >= 0
        and float(residual_normal_kl(torch.zeros(1), torch.ones(1), torch.ones(1))) == 0
    )


def test_positive_scale_inverts():
    s = torch.tensor([1e-3, 0.1, 1.0, 5.0], dtype=DT)
    torch.testing.assert_close(
        positive_scale(positive_scale_inverse(s)), s, atol=1e-12, rtol=0
    )
    assert float(positive_scale(torch.zeros(1))) == pytest.approx(1.0, abs=2e-4)


# --- the two parameterizations


def test_residual_and_direct_are_the_same_posterior_on_the_same_random_numbers():
    gen, post = random_params(3, 2, 4, seed=6)
    x = data(gen, 5)
    res, direct = build(gen, post, True), build(gen, post, False)
    z = torch.randn(4, 5, 5, dtype=DT)
    torch.testing.assert_close(
        res.encode(x).log_prob(z), direct.encode(x).log_prob(z), atol=1e-10, rtol=0
    )
    out = []
    for model in (res, direct):
        torch.manual_seed(3)
        out.append((model.encode(x).rsample((8,)), hierarchical_elbo(model, x, k=8)))
    torch.testing.assert_close(out[0][0], out[1][0], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[0][1], out[1][1], atol=1e-9, rtol=0)


@pytest.mark.parametrize("residual", [True, False])
def test_at_the_exact_posterior_every_weight_is_p_of_x(residual):
    gen, _ = random_params(1, 1, 3, seed=7)
    post = exact_posterior(gen, 3)
    model = build(gen, post, residual)
    x = data(gen, 6)
    log_px, elbo, kl = exact(gen, post, x)
    torch.testing.assert_close(kl, torch.zeros_like(kl), atol=1e-9, rtol=0)
    torch.manual_seed(0)
    with torch.no_grad():
        log_w = objectives.log_weights(model, x, 100)  # (100, B)
        torch.testing.assert_close(log_w, log_px.expand(100, -1), atol=1e-9, rtol=0)
        torch.testing.assert_close(
            metrics.log_likelihood(model, x, k=10, progress=False),
            log_px,
            atol=1e-9,
            rtol=0,
        )
        torch.testing.assert_close(
            objectives.iwae_bound(model, x, 5), log_px, atol=1e-9, rtol=0
        )


@pytest.mark.parametrize("residual", [True, False])
def test_both_parameterizations_train_to_the_same_optimum(residual):
    """From a random affine posterior, training q alone reaches log p(x) (the posterior
    is in the family)."""
    gen, post = random_params(1, 1, 3, seed=8)
    _, start = random_params(1, 1, 3, seed=9)
    model = build(gen, start, residual)
    for m in (model.prior_heads, model.decoder):
        m.requires_grad_(False)
    x = data(gen, 32)
    log_px = exact(gen, post, x)[0]
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.03)
    for step in range(700):
        opt.zero_grad()
        (-hierarchical_elbo(model, x, k=16).mean()).backward()
        opt.step()
    with torch.no_grad():
        log_w = objectives.log_weights(model, x, 2000)
    gap = (log_px - log_w.mean(0)).mean()
    assert 0 <= float(gap) < 5e-3, f"mean gap {gap:.4f} nats"


# --- the digits-sized model


def small(residual=True, seed=0, dims=(4, 3, 2), hidden=(16, 12, 8)):
    torch.manual_seed(seed)
    return HierarchicalVAE.mlp(
        (1, 4, 4), latent_dims=dims, hidden=hidden, residual=residual
    )


def binary(n=8, seed=0):
    return torch.bernoulli(
        torch.full((n, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_any_number_of_layers_works_with_the_library(layers):
    dims, hidden = (4, 3, 2)[:layers], (16, 12, 8)[:layers]
    model = small(dims=dims, hidden=hidden)
    x = binary()
    assert objectives.elbo(model, x, k=3).shape == (8,)
    assert objectives.iwae_bound(model, x, 4).shape == (8,)
    assert metrics.log_likelihood(model, x, k=20, progress=False).shape == (8,)
    assert model.terms(x, 2).kl.shape == (layers, 8)
    assert model.sample(5).shape == (5, 1, 4, 4)
    assert model.resample(x[:3], layers, 4).shape == (4, 3, 1, 4, 4)
    n, var = metrics.active_units(model, x)
    assert var.shape == (sum(dims),)
    history = vaekit.fit(
        model,
        lambda m, xb: -hierarchical_elbo(m, xb),
        x,
        steps=3,
        batch_size=4,
        progress=False,
    )
    assert len(history["loss"]) >= 1


def test_the_sampled_and_analytic_elbos_agree_on_average():
    model = small().double()
    x = binary(4).double()
    torch.manual_seed(0)
    with torch.no_grad():
        sampled = objectives.log_weights(model, x, 40_000)
        analytic = hierarchical_elbo(model, x.repeat_interleave(10_000, 0)).view(4, -1)
    se = torch.hypot(sampled.std(0) / 200, analytic.std(1) / 100)
    assert ((sampled.mean(0) - analytic.mean(1)).abs() < 5 * se).all()


def test_free_bits_and_beta():
    model = small()
    x = binary()
    torch.manual_seed(0)
    t = model.terms(x)
    torch.manual_seed(0)
    assert torch.allclose(hierarchical_elbo(model, x, beta=0.0), t.reconstruction)
    torch.manual_seed(0)
    assert torch.allclose(
        hierarchical_elbo(model, x, free_bits=1e3), t.reconstruction - 3e3
    )
    torch.manual_seed(0)
    torch.testing.assert_close(
        hierarchical_elbo(model, x, beta=0.5), t.reconstruction - 0.5 * t.kl.sum(0)
    )


def test_sampling_layer_by_layer_has_the_prior_moments():
    gen, post = random_params(2, 2, 3, seed=10)
    model = build(gen, post, True)
    mu, S = joint_p(gen)
    torch.manual_seed(0)
    z = model.prior.sample((100_000,))  # (n, 4)
    se = (S[:4, :4].diagonal() / z.shape[0]).sqrt()
    assert ((z.mean(0) - mu[:4]).abs() < 5 * se).all()
    assert torch.allclose(torch.cov(z.T), S[:4, :4], atol=0.05)


def test_resample_keeps_the_layers_above():
    model = small(dims=(4, 3), hidden=(16, 12))
    x = binary(3)
    torch.manual_seed(0)
    a = model.resample(x, 1, 5)
    b = model.resample(x, 1, 5)
    assert not torch.allclose(a, b)  # layer 1 is redrawn
    top = model.top_layer_decoder()
    zL = model.encode(x).mean[:, 4:]
    assert top.decode(zL).mean.shape == (3, 1, 4, 4)


def test_dtype_and_device_follow_the_model():
    model = small().double()
    x = binary().double()
    assert objectives.elbo(model, x).dtype == DT and model.sample(2).dtype == DT
    assert model.prior.sample((3,)).dtype == DT
    if torch.cuda.is_available():
        model = small().cuda()
        assert objectives.iwae_bound(model, binary().cuda(), 3).device.type == "cuda"


# --- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(latent_dims=()), "latent_dims"),
        (dict(latent_dims=(4, 0), hidden=(8, 8)), "latent_dims"),
        (dict(latent_dims=(4, 2), hidden=(8,)), "hidden"),
        (dict(latent_dims=4), "latent_dims"),
        (dict(hidden=(8, -1)), "hidden"),
        (dict(residual="yes"), "residual"),
        (dict(activation="swish"), "activation"),
    ],
)
def test_bad_construction_is_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        HierarchicalVAE.mlp(
            (1, 4, 4), **{"latent_dims": (4, 2), "hidden": (8, 8), **kwargs}
        )


def test_mismatched_parts_are_refused():
    with pytest.raises(ValueError, match="top_down"):
        HierarchicalVAE(
            [nn.Identity()] * 2,
            [],
            [nn.Identity()],
            [nn.Identity()] * 2,
            nn.Identity(),
            (2, 2),
        )


@pytest.mark.parametrize(
    "label, bad, errors",
    [
        ("not a tensor", [[0.0]], TypeError),
        ("empty", torch.zeros(0, 1, 4, 4), ValueError),
        ("integer", torch.zeros(2, 1, 4, 4, dtype=torch.long), TypeError),
        ("float64", torch.zeros(2, 1, 4, 4, dtype=DT), TypeError),
        ("wrong shape", torch.zeros(2, 1, 5, 5), ValueError),
        ("0-255", torch.full((2, 1, 4, 4), 255.0), ValueError),
        ("NaN", torch.full((2, 1, 4, 4), float("nan")), ValueError),
    ],
)
def test_bad_x_is_refused_naming_it(label, bad, errors):
    model = small()
    for call in (
        lambda: hierarchical_elbo(model, bad),
        lambda: objectives.elbo(model, bad),
        lambda: (
            model.resample(bad, 1, 2)
            if label not in ("0-255", "NaN")
            else hierarchical_elbo(model, bad)
        ),
    ):
        with pytest.raises(errors) as caught:
            call()
        assert "x" in str(caught.value)


def test_bad_arguments_are_refused_naming_them():
    model, x = small(), binary()
    for call, name in [
        (lambda: hierarchical_elbo(model, x, k=0), "k"),
        (lambda: hierarchical_elbo(model, x, beta=-1), "beta"),
        (lambda: hierarchical_elbo(model, x, free_bits=-0.1), "free_bits"),
        (lambda: model.resample(x, 4, 2), "layer"),
        (lambda: model.resample(x, 1, 0), "n"),
        (lambda: model.decode(torch.zeros(2, 5)), "z"),
        (lambda: model.sample(0), "n"),
        (lambda: model.top_layer_decoder().decode(torch.zeros(2, 3)), "z_top"),
    ]:
        with pytest.raises((ValueError, TypeError), match=name):
            call()
