"""The semi-supervised VAE (``vaekit.ssvae``): the enumerated unlabelled bound against the explicit
sum over the classes and against a sampled-y estimator, both bounds against the exact log p(x) of
a linear Gaussian M2 (where the bound is tight at the true posterior), the importance-sampled
log p(x), the training objective, the helpers, and argument errors.

The exact answers come from an M2 whose decoder is linear Gaussian, p(x|y, z) = N(W z + V y + b,
sigma^2 I): then p(x|y) = N(V y + b, W W^T + sigma^2 I), p(z|x, y) is Gaussian, and
p(y|x) is proportional to p(y) p(x|y), all in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, MultivariateNormal

import vaekit
from vaekit import ssvae
from vaekit.distributions import diag_gaussian

X_DIM, Z_DIM, K = 6, 2, 10


class LinearGaussianDecoder(nn.Module):
    """cat([z, onehot(y)]) -> N(W z + V y + b, sigma^2 I) over ``[X_DIM]``."""

    def __init__(self, W, V, b, sigma):
        super().__init__()
        self.W, self.V, self.b, self.sigma, self.x_shape = W, V, b, sigma, (W.shape[0],)

    def forward(self, zy):
        z, y1 = zy[..., :Z_DIM], zy[..., Z_DIM:]
        return diag_gaussian(
            z @ self.W.T + y1 @ self.V.T + self.b,
            torch.full_like(self.b, self.sigma).expand(*zy.shape[:-1], X_DIM),
        )


class ExactEncoder(nn.Module):
    """q(z|x, y) = p(z|x, y) of the linear Gaussian model (diagonal because W has orthogonal columns)."""

    def __init__(self, dec: LinearGaussianDecoder, shift: float = 0.0):
        super().__init__()
        self.dec, self.shift = dec, shift
        wtw = (dec.W * dec.W).sum(0)  # (Z,): W^T W is diagonal
        self.var = 1.0 / (1.0 + wtw / dec.sigma**2)  # (Z,)

    def forward(self, x, y1):
        resid = x - (y1 @ self.dec.V.T + self.dec.b)  # (..., B, X)
        mean = self.var * (resid @ self.dec.W) / self.dec.sigma**2
        return diag_gaussian(mean + self.shift, self.var.sqrt().expand_as(mean))


class ExactClassifier(nn.Module):
    """q(y|x) = p(y|x), or a tempered version of it (``temperature`` != 1) to make it wrong on purpose."""

    def __init__(self, model_ref: list, temperature: float = 1.0):
        super().__init__()
        self.model_ref, self.temperature = model_ref, temperature

    def forward(self, x):
        return Categorical(
            logits=log_joint_exact(self.model_ref[0], x) / self.temperature
        )


def log_px_given_y_exact(m: ssvae.M2, x: torch.Tensor) -> torch.Tensor:
    """log p(x|y) for every class, ``[B, K]``."""
    dec = m.decoder
    cov = dec.W @ dec.W.T + dec.sigma**2 * torch.eye(X_DIM, dtype=x.dtype)
    means = dec.V.T + dec.b  # (K, X)
    return MultivariateNormal(means, covariance_matrix=cov).log_prob(
        x[:, None, :]
    )  # (B, K)


def log_joint_exact(m: ssvae.M2, x: torch.Tensor) -> torch.Tensor:
    """log p(x, y) for every class, ``[B, K]``."""
    return log_px_given_y_exact(m, x) - math.log(K)


def linear_m2(
    exact_q: bool = True, temperature: float = 1.0, shift: float = 0.0, seed: int = 0
) -> ssvae.M2:
    g = torch.Generator().manual_seed(seed)
    W = torch.linalg.qr(torch.randn(X_DIM, Z_DIM, generator=g, dtype=torch.float64))[
        0
    ] * torch.tensor([2.0, 1.2], dtype=torch.float64)
    V = 1.5 * torch.randn(X_DIM, K, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(X_DIM, generator=g, dtype=torch.float64)
    dec = LinearGaussianDecoder(W, V, b, 0.7)
    ref: list = []
    enc = (
        ExactEncoder(dec, shift)
        if exact_q
        else ssvae.ConditionalEncoder((X_DIM,), K, Z_DIM, 16).double()
    )
    m = ssvae.M2(ExactClassifier(ref, temperature), enc, dec, Z_DIM, K).double()
    ref.append(m)
    return m


def sample_x(m: ssvae.M2, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(K, (n,), generator=g)
    z = torch.randn(n, Z_DIM, generator=g, dtype=torch.float64)
    px = m.decode(z, y)
    return px.mean + px.stddev * torch.randn(n, X_DIM, generator=g, dtype=torch.float64)


def small_m2(seed: int = 0, x_shape=(1, 28, 28), peaked: float = 4.0) -> ssvae.M2:
    torch.manual_seed(seed)
    m = ssvae.M2.mlp(x_shape, latent_dim=4, hidden=32)
    with (
        torch.no_grad()
    ):  # a confident, non-uniform q(y|x), so that the weighting by q(y|x) matters
        m.classifier.net[-1][-1].weight.mul_(peaked)
    return m


def binary_x(n: int, shape=(1, 28, 28), seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, *shape), 0.2), generator=g)


# ---- the unlabelled bound enumerates y exactly ----


def test_unlabelled_bound_is_the_explicit_sum_over_the_ten_classes():
    m = small_m2().double()
    x = binary_x(5).double()
    eps = torch.randn(
        3, K, 5, 4, dtype=torch.float64
    )  # common random numbers for both computations
    u = ssvae.unlabelled_bound(m, x, k=3, eps=eps)
    probs = torch.softmax(m.classifier.net(x), -1)  # (B, K)
    explicit = sum(
        probs[:, c]
        * ssvae.labelled_bound(m, x, torch.full((5,), c), k=3, eps=eps[:, c])
        for c in range(K)
    )
    explicit = explicit - (probs * probs.log()).sum(-1)
    assert u.shape == (5,)
    assert torch.allclose(u, explicit, atol=1e-10, rtol=0)
    assert (probs.max(-1).values > 0.3).all(), (
        "the test needs a non-uniform q(y|x) to check the weighting"
    )


def test_class_bounds_columns_are_the_labelled_bounds():
    m = small_m2().double()
    x = binary_x(4).double()
    eps = torch.randn(2, K, 4, 4, dtype=torch.float64)
    table = ssvae.class_bounds(m, x, k=2, eps=eps)
    assert table.shape == (4, K)
    for c in (0, 3, 9):
        assert torch.allclose(
            table[:, c],
            ssvae.labelled_bound(m, x, torch.full((4,), c), k=2, eps=eps[:, c]),
            atol=1e-10,
        )


def test_enumerated_bound_is_the_expectation_of_the_sampled_y_estimator():
    m = small_m2(x_shape=(12,), peaked=2.0)
    x = binary_x(4, (12,))
    reps = 20000
    xr = x.repeat(reps, 1)  # (reps * 4, 12): example i at rows i, i + 4, ...
    torch.manual_seed(3)
    with torch.no_grad():
        sampled = (
            ssvae.sampled_unlabelled_bound(m, xr).reshape(reps, 4).double()
        )  # (reps, 4)
        enumerated = ssvae.unlabelled_bound(m, xr).reshape(reps, 4).double()
    diff = sampled.mean(0) - enumerated.mean(0)
    se = (sampled.var(0) / reps + enumerated.var(0) / reps).sqrt()
    assert (diff.abs() < 4 * se).all(), (
        f"difference {diff.tolist()} vs standard errors {se.tolist()}"
    )
    entropy = m.classify(x).entropy()
    assert (4 * se < entropy).all(), (
        "the check must be able to see a missing entropy term"
    )
    assert (sampled.var(0) > enumerated.var(0)).all(), "sampling y should add variance"


# ---- the bounds against the exact log p(x) of a linear Gaussian M2 ----


def test_bounds_are_tight_at_the_true_posterior():
    m = linear_m2()
    x = sample_x(m, 50)
    log_pxy = log_joint_exact(m, x)  # (B, K)
    log_px = torch.logsumexp(log_pxy, -1)
    # estimator A on one sample: log p(x, y, z) - log q(z|x, y) is constant at the true posterior
    assert torch.allclose(
        ssvae.class_bounds(m, x, analytic_kl=False), log_pxy, atol=1e-9
    )
    assert torch.allclose(
        ssvae.unlabelled_bound(m, x, analytic_kl=False), log_px, atol=1e-9
    )
    # estimator B (analytic KL) has the same expectation
    u_b = ssvae.unlabelled_bound(m, x[:20], k=5000)
    assert (u_b - log_px[:20]).abs().max() < 0.1


def test_bounds_lie_below_the_exact_log_likelihood():
    # q(z|x, y) off the posterior (shifted, or an untrained network): both bounds have a gap;
    # q(z|x, y) exact but q(y|x) wrong (tempered): L(x, y) is tight, U(x) is not
    for m, z_wrong in (
        (linear_m2(shift=0.5), True),
        (linear_m2(exact_q=False), True),
        (linear_m2(temperature=3.0), False),
    ):
        x = sample_x(m, 20)
        log_pxy = log_joint_exact(m, x)
        log_px = torch.logsumexp(log_pxy, -1)
        with torch.no_grad():
            table = ssvae.class_bounds(m, x, k=2000)
            u = ssvae.unlabelled_bound(m, x, k=2000)
        if z_wrong:
            assert (table < log_pxy).all(), "L(x, y) must lie below log p(x, y)"
        else:
            assert (table - log_pxy).abs().max() < 0.2, (
                "with the exact q(z|x, y), L(x, y) = log p(x, y) in expectation"
            )
        assert (u < log_px).all(), "U(x) must lie below log p(x)"
        assert (log_px - u).mean() > 0.3, "a wrong q should leave a visible gap"


def test_importance_sampled_log_marginal_matches_the_exact_value():
    m = linear_m2(shift=0.15)
    x = sample_x(m, 20)
    log_px = torch.logsumexp(log_joint_exact(m, x), -1)
    est = ssvae.log_marginal(m, x, k=5000)
    assert est.shape == (20,)
    assert (est - log_px).abs().max() < 0.02
    u = ssvae.unlabelled_bound(m, x, k=2000)
    assert (u < est).all(), "the bound must lie below the importance-sampled log p(x)"


def test_bounds_lie_below_the_importance_sampled_log_likelihood_of_a_network_m2():
    m = small_m2(x_shape=(12,))
    x = binary_x(20, (12,))
    with torch.no_grad():
        est = ssvae.log_marginal(m, x, k=3000)
        u = torch.stack([ssvae.unlabelled_bound(m, x, k=50) for _ in range(20)]).mean(0)
        joint = torch.stack([ssvae.class_bounds(m, x, k=50) for _ in range(20)]).mean(
            0
        )  # (B, K)
    assert (u < est).all()
    assert (torch.logsumexp(joint, -1) < est + 1e-3).all(), (
        "log sum_y exp L(x, y) <= log p(x)"
    )


# ---- training objective, helpers ----


def test_m2_objective_trains_the_classifier_from_both_terms():
    m = small_m2(x_shape=(12,))
    xl, yl = binary_x(20, (12,)), torch.arange(20) % K
    obj = ssvae.M2Objective(
        xl, yl, n_unlabelled=80, alpha_per_digit=0.1, labelled_batch=10
    )
    out = obj(m, binary_x(16, (12,), seed=5))
    assert set(out) == {"loss", "labelled_bound", "unlabelled_bound", "log_qy"}
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for p in m.classifier.parameters()
    )
    m.zero_grad()
    ssvae.unlabelled_bound(
        m, binary_x(16, (12,))
    ).mean().backward()  # the unlabelled term alone reaches q(y|x)
    assert m.classifier.net[-1][-1].weight.grad.abs().sum() > 0


def test_m2_objective_weights():
    m = small_m2(x_shape=(12,))
    xl, yl, xu = binary_x(10, (12,)), torch.arange(10), binary_x(8, (12,), seed=7)
    obj = ssvae.M2Objective(
        xl, yl, n_unlabelled=30, alpha_per_digit=0.5, labelled_batch=10
    )
    torch.manual_seed(0)
    out = obj(m, xu)
    expected = -(
        0.25 * out["labelled_bound"]
        + 0.75 * out["unlabelled_bound"]
        + 0.5 * out["log_qy"]
    )
    assert torch.allclose(out["loss"], expected)


def test_fit_trains_m2_and_the_classifier_learns():
    torch.manual_seed(0)
    centres = torch.bernoulli(torch.full((K, 12), 0.5))
    y = torch.arange(400) % K
    x = (torch.rand(400, 12) < (0.1 + 0.8 * centres[y])).float()
    m = ssvae.M2.mlp((12,), latent_dim=2, hidden=32)
    before = ssvae.error_rate(m.classifier, x, y)
    obj = ssvae.M2Objective(
        x[:50], y[:50], n_unlabelled=350, alpha_per_digit=1.0, labelled_batch=50
    )
    vaekit.fit(
        m, obj, x[50:], steps=300, batch_size=50, lr=3e-3, progress=False, device="cpu"
    )
    assert ssvae.error_rate(m.classifier, x, y) < min(0.2, before - 0.3)


def test_shapes():
    m = small_m2()
    x = binary_x(3)
    y = torch.tensor([0, 4, 9])
    assert m.classify(x).probs.shape == (3, K)
    q = m.encode(x, y)
    assert q.batch_shape == (3,) and q.event_shape == (4,)
    assert m.decode(q.rsample(), y).batch_shape == (3,)
    assert m.decode(torch.randn(7, 3, 4), y).batch_shape == (7, 3)
    assert ssvae.labelled_bound(m, x, y, k=5).shape == (3,)
    assert ssvae.class_bounds(m, x).shape == (3, K)
    assert ssvae.unlabelled_bound(m, x).shape == (3,)
    assert ssvae.sampled_unlabelled_bound(m, x).shape == (3,)
    assert ssvae.log_marginal(m, x, k=7).shape == (3,)
    assert ssvae.predict(m.classifier, x).dtype == torch.int64


def test_balanced_labels():
    y = torch.arange(100) % 5
    g = torch.Generator().manual_seed(0)
    idx = ssvae.balanced_labels(y, 3, g)
    assert torch.bincount(y[idx]).tolist() == [3] * 5
    other = ssvae.balanced_labels(y, 4, g, exclude=idx)
    assert not set(idx.tolist()) & set(other.tolist())
    with pytest.raises(ValueError, match="per_class"):
        ssvae.balanced_labels(y, 21)


def test_paired_error_difference():
    y = torch.tensor([0, 1, 2, 3])
    a, b = (
        torch.tensor([0, 1, 0, 0]),
        torch.tensor([0, 0, 2, 3]),
    )  # a wrong on 2, b wrong on 1
    d, se = ssvae.paired_error_difference(a, b, y)
    assert d == pytest.approx(0.25)
    diffs = torch.tensor([0.0, -1.0, 1.0, 1.0])
    assert se == pytest.approx(float(diffs.std() / 2))


def test_bad_input_names_the_argument():
    m = small_m2()
    x = binary_x(3)
    with pytest.raises(ValueError, match="y must lie"):
        ssvae.labelled_bound(m, x, torch.tensor([0, 1, 10]))
    with pytest.raises(TypeError, match="y must be an integer"):
        ssvae.labelled_bound(m, x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"y must have shape \[B\]"):
        ssvae.labelled_bound(m, x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="x must have shape"):
        ssvae.unlabelled_bound(m, torch.zeros(3, 784))
    with pytest.raises(TypeError, match="x must be a floating"):
        ssvae.class_bounds(m, x.long())
    with pytest.raises(ValueError, match="k must be a positive int"):
        ssvae.unlabelled_bound(m, x, k=0)
    with pytest.raises(ValueError, match="eps must have shape"):
        ssvae.unlabelled_bound(m, x, eps=torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="z must have 4 latent"):
        m.decode(torch.randn(3, 5), torch.tensor([0, 1, 2]))


def test_class_decoder_and_analogies():
    m = small_m2()
    x, y = binary_x(3), torch.tensor([1, 5, 7])
    fixed = ssvae.ClassDecoder(m, label=4)
    z = torch.randn(2, 4)
    assert torch.allclose(fixed.decode(z).mean, m.decode(z, torch.tensor([4, 4])).mean)
    fixed.label = 6
    assert torch.allclose(fixed.decode(z).mean, m.decode(z, torch.tensor([6, 6])).mean)
    grid = ssvae.analogies(m, x, y)
    assert grid.shape == (3, K, 1, 28, 28)
    z0 = m.encode(x, y).mean
    for c in (0, 9):
        assert torch.allclose(
            grid[:, c], m.decode(z0, torch.full((3,), c)).mean, atol=1e-6
        )


def test_fit_classifier_picks_the_weight_decay_by_validation_error():
    torch.manual_seed(0)
    w = torch.randn(5, 3)
    x = torch.randn(300, 5)
    y = (x @ w).argmax(-1)
    clf, errors = ssvae.fit_classifier(
        x[:60],
        y[:60],
        x[60:],
        y[60:],
        weight_decays=(0.0, 10.0),
        steps=200,
        lr=1e-2,
        num_classes=3,
    )
    assert set(errors) == {0.0, 10.0}
    assert errors[0.0] < errors[10.0] and errors[0.0] < 0.15
    assert ssvae.error_rate(clf, x[60:], y[60:]) == errors[0.0]


def test_best_on_validation_keeps_the_best_parameters():
    torch.manual_seed(0)
    clf = ssvae.Classifier((4,), 2, ())
    x = torch.randn(50, 4)
    y = (x[:, 0] > 0).long()
    keep = ssvae.BestOnValidation(x, y, every=10, classify=lambda m: m)
    with torch.no_grad():
        clf.net[-1][-1].weight.copy_(torch.tensor([[-1.0, 0, 0, 0], [1.0, 0, 0, 0]]))
        clf.net[-1][-1].bias.zero_()
    assert keep.score(clf, 10) == 0.0
    good = {k: v.clone() for k, v in clf.state_dict().items()}
    with torch.no_grad():
        clf.net[-1][-1].weight.neg_()
    assert keep.score(clf, 20) == 1.0
    assert (
        keep.best_error == 0.0
        and keep.best_step == 10
        and keep.steps == [10, 20]
        and keep.errors == [0.0, 1.0]
    )
    assert all(torch.equal(keep.best_state[k], good[k]) for k in good)


def test_best_on_validation_as_a_fit_callback_scores_every_n_steps():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    y = (x[:, 0] > 0).long()
    clf = ssvae.Classifier((4,), 2, ())
    keep = ssvae.BestOnValidation(x, y, every=7, classify=lambda m: m)
    vaekit.fit(
        clf,
        ssvae.cross_entropy_objective,
        (x, y),
        steps=30,
        batch_size=20,
        lr=0.05,
        callbacks=[keep],
        progress=False,
        device="cpu",
    )
    assert keep.steps == [7, 14, 21, 28]
    assert keep.best_error == min(keep.errors) < 0.2
    assert (
        clf.training is False
    )  # fit leaves the model in eval mode; the callback restored train mode in between


# ---- M1 + M2: M2 on a VAE's latent features ----


def small_m1m2(seed: int = 0, n: int = 200):
    torch.manual_seed(seed)
    m1 = vaekit.VAE.mlp(latent_dim=3, hidden=(16,), activation="softplus")
    x = binary_x(n)
    moments = ssvae.posterior_moments(m1, x, batch_size=64)
    m2 = ssvae.M2.on_features(3, latent_dim=2, hidden=8)
    return ssvae.M1M2(m1, m2, moments), m1, m2, x, moments


def test_feature_decoder_is_a_diagonal_gaussian_with_a_learned_scale_per_dimension():
    torch.manual_seed(0)
    dec = ssvae.FeatureDecoder(4, 3, (8,))
    with torch.no_grad():
        dec.log_sigma.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    z, f = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    p = dec(z)
    assert p.batch_shape == (2, 5) and p.event_shape == (3,)
    by_hand = (
        torch.distributions.Normal(dec.body(z), torch.tensor([-1.0, 0.0, 0.5]).exp())
        .log_prob(f)
        .sum(-1)
    )
    assert torch.allclose(p.log_prob(f), by_hand, atol=1e-6)


def test_posterior_moments_are_the_encoders_means_and_standard_deviations():
    _, m1, _, x, moments = small_m1m2()
    q = m1.encode(x)
    assert moments.shape == (200, 2, 3)
    assert torch.allclose(moments[:, 0], q.mean, atol=1e-6) and torch.allclose(
        moments[:, 1], q.stddev, atol=1e-6
    )


def test_m1m2_standardizes_z1_to_zero_mean_and_unit_spread():
    # loc and scale are the mean and sd of z1 ~ q(z1|x) over the digits (means' spread plus posterior variance)
    stacked, _, _, _, moments = small_m1m2()
    reps = 200
    f = stacked.sample_features(moments.repeat(reps, 1, 1))  # (reps * 200, 3)
    se = 1 / math.sqrt(f.shape[0])
    assert (f.mean(0).abs() < 4 * se).all(), f.mean(0)
    assert ((f.var(0) - 1).abs() < 0.05).all(), f.var(0)
    # scaling by the spread of the means alone would give a variance of 1 + E[sd^2] / var(mean), far above 1
    assert (moments[:, 1].pow(2).mean(0) / moments[:, 0].var(0) > 0.2).any(), (
        "the test needs a noisy latent"
    )


def test_m1m2_classifies_encodes_and_decodes_through_m1():
    stacked, m1, m2, x, _ = small_m1m2()
    xb, y = x[:4], torch.tensor([0, 3, 7, 9])
    f = (m1.encode(xb).mean - stacked.loc) / stacked.scale
    assert torch.allclose(stacked.features(xb), f)
    assert torch.allclose(stacked(xb).logits, m2.classify(f).logits)
    assert torch.allclose(stacked.encode(xb, y).mean, m2.encode(f, y).mean)
    z = torch.randn(4, 2)
    expected = m1.decode(m2.decode(z, y).mean * stacked.scale + stacked.loc).mean
    assert torch.allclose(stacked.decode(z, y).mean, expected)
    assert ssvae.predict(stacked, xb).shape == (4,)
    grid = ssvae.analogies(stacked, xb, y)
    assert grid.shape == (4, K, 1, 28, 28)
    assert torch.allclose(
        grid[:, 5],
        stacked.decode(stacked.encode(xb, y).mean, torch.full((4,), 5)).mean,
        atol=1e-6,
    )
    fixed = ssvae.ClassDecoder(stacked, label=2)
    assert fixed.latent_dim == 2 and fixed.decode(z).mean.shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="moments must have shape"):
        ssvae.M1M2(m1, m2, torch.zeros(5, 3))


def test_feature_m2_bounds_lie_below_the_importance_sampled_log_likelihood():
    torch.manual_seed(0)
    m = ssvae.M2.on_features(5, latent_dim=2, hidden=16)
    f = torch.randn(10, 5)
    with torch.no_grad():
        est = ssvae.log_marginal(m, f, k=3000)
        u = torch.stack([ssvae.unlabelled_bound(m, f, k=50) for _ in range(20)]).mean(0)
    assert (u < est).all()
    assert (est - u).mean() > 0.1, "an untrained q should leave a visible gap"


def test_fit_trains_m1m2_on_sampled_features():
    torch.manual_seed(0)
    centres = 3 * torch.randn(K, 4)
    y = torch.arange(500) % K
    moments = torch.stack(
        [centres[y] + 0.5 * torch.randn(500, 4), torch.full((500, 4), 0.3)], 1
    )  # (N, 2, 4)
    m2 = ssvae.M2.on_features(4, latent_dim=2, hidden=32)
    stacked = ssvae.M1M2(nn.Identity(), m2, moments)
    f_mean = (moments[:, 0] - stacked.loc) / stacked.scale
    obj = ssvae.M2Objective(
        moments[:50],
        y[:50],
        n_unlabelled=450,
        alpha_per_digit=1.0,
        labelled_batch=50,
        labelled_weight=1.0,
        transform=stacked.sample_features,
    )
    vaekit.fit(
        m2,
        obj,
        moments[50:],
        steps=300,
        batch_size=50,
        lr=3e-3,
        transform=stacked.sample_features,
        progress=False,
        device="cpu",
    )
    assert ssvae.error_rate(m2.classifier, f_mean, y) < 0.1


def test_fit_m2_leaves_the_model_at_its_lowest_validation_error():
    torch.manual_seed(0)
    centres = torch.bernoulli(torch.full((K, 12), 0.5))
    y = torch.arange(400) % K
    x = (torch.rand(400, 12) < (0.1 + 0.8 * centres[y])).float()
    m = ssvae.M2.mlp((12,), latent_dim=2, hidden=32)
    log = ssvae.fit_m2(
        m,
        x[:50],
        y[:50],
        x[100:],
        x[50:100],
        y[50:100],
        steps=200,
        alpha_per_digit=1.0,
        every=40,
        labelled_weight=1.0,
        batch_size=50,
        lr=3e-3,
        progress=False,
        device="cpu",
    )
    assert log.steps == [40, 80, 120, 160, 200, 200]
    assert log.best_error == min(log.errors) < 0.3
    assert ssvae.error_rate(m.classifier, x[50:100], y[50:100]) == log.best_error
