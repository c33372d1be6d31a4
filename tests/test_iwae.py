"""The importance-weighted bound (Burda et al. 2016): its value, its ordering in k, its gradient,
the chunked evaluator and the gradient signal-to-noise ratio (Rainforth et al. 2018), checked
against exact answers on the linear Gaussian model."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

import vaekit
from vaekit import metrics, objectives, schedules
from vaekit.evaluation import snr
from vaekit.distributions import diag_gaussian
from vaekit.inference.gradients import estimator_stats
from vaekit.inference import Amortized, exact_elbo, mean_field_optimum
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.inference.objectives import elbo, iwae_bound, log_weights, vae_k_bound

DT = torch.float64


def small_vae(seed=0, x_shape=(1, 4, 4), latent=2, hidden=(6,)):
    torch.manual_seed(seed)
    return vaekit.VAE.mlp(
        x_shape, latent_dim=latent, hidden=hidden, activation="tanh"
    ).to(DT)


def binary_batch(n, x_shape=(1, 4, 4), seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *x_shape, generator=g) < 0.4).to(DT)


@pytest.fixture(scope="module")
def lg():
    """A linear Gaussian model, data from it, and a deliberately imperfect Gaussian proposal."""
    model = LinearGaussian.random(8, 3, sigma=0.7, seed=0, learnable=False, dtype=DT)
    x, _ = model.sample(20, generator=torch.Generator().manual_seed(1))
    post = model.posterior(x)
    tril = post.scale_tril  # (B, d, d)
    # Shifted by half a posterior sd along every axis of the posterior and 30 % wider in every
    # direction: the weights vary, but p(z|x)/q(z) stays bounded, so their variance is finite.
    q = MultivariateNormal(post.mean + 0.5 * tril.sum(-1), scale_tril=1.3 * tril)
    return model, x, q, model.log_marginal(x)


def test_k1_is_the_single_sample_elbo_on_the_same_sample():
    model, x = small_vae(), binary_batch(7)
    torch.manual_seed(3)
    l1 = iwae_bound(model, x, 1)
    torch.manual_seed(3)
    e1 = elbo(model, x, k=1, analytic_kl=False)
    torch.manual_seed(3)
    v1 = vae_k_bound(model, x, 1)
    torch.testing.assert_close(l1, e1, atol=1e-12, rtol=0)
    torch.testing.assert_close(v1, e1, atol=1e-12, rtol=0)
    torch.manual_seed(
        4
    )  # another sample gives other values: the match above is sample by sample
    assert (iwae_bound(model, x, 1) - e1).abs().max() > 1e-3


def test_k1_is_the_single_sample_elbo_with_a_given_q(lg):
    model, x, q, _ = lg
    torch.manual_seed(0)
    l1 = iwae_bound(model, x, 1, q=q)
    torch.manual_seed(0)
    torch.testing.assert_close(
        l1, elbo(model, x, k=1, analytic_kl=False, q=q), atol=1e-12, rtol=0
    )


def _expected_bounds(model, x, q, ks, reps, seed=0):
    """Monte Carlo E[L_k] (mean over examples) and its standard error, for each k."""
    torch.manual_seed(seed)
    out = {}
    for k in ks:
        with torch.no_grad():
            lk = torch.stack(
                [iwae_bound(model, x, k, q=q) for _ in range(reps)]
            )  # (reps, B)
        per_rep = lk.mean(1)  # (reps,) average over the examples
        out[k] = (per_rep.mean().item(), per_rep.std().item() / math.sqrt(reps))
    return out


def test_bound_rises_with_k_towards_log_p_in_expectation(lg):
    model, x, q, exact = lg
    ks = (1, 2, 5, 20, 100)
    est = _expected_bounds(model, x, q, ks, reps=400)
    log_p = exact.mean().item()
    # L_1 is the ELBO: its expectation is the closed-form ELBO of q (catches a wrong constant).
    elbo_exact = exact_elbo(model, x, q).mean().item()
    assert abs(est[1][0] - elbo_exact) < 4 * est[1][1], (est[1], elbo_exact)
    for a, b in zip(ks, ks[1:]):
        (ma, sa), (mb, sb) = est[a], est[b]
        assert mb - ma > 3 * math.hypot(sa, sb), (
            f"E[L_{b}] = {mb:.4f} is not above E[L_{a}] = {ma:.4f}"
        )
    for k in ks:
        assert est[k][0] < log_p + 3 * est[k][1], (
            f"E[L_{k}] = {est[k][0]:.4f} above log p(x) = {log_p:.4f}"
        )
    # the gap log p - E[L_k] shrinks roughly like 1/k for large k (Burda et al. / delta method)
    gap20, gap100 = log_p - est[20][0], log_p - est[100][0]
    assert 2.5 < gap20 / gap100 < 8, (gap20, gap100)


def test_bound_rises_with_k_on_a_vae():
    model, x = small_vae(seed=2), binary_batch(16)
    est = _expected_bounds(model, x, None, (1, 4, 16), reps=300)
    for a, b in ((1, 4), (4, 16)):
        assert est[b][0] - est[a][0] > 3 * math.hypot(est[a][1], est[b][1]), est


def test_l5000_matches_the_exact_log_marginal(lg):
    model, x, q, exact = lg
    torch.manual_seed(0)
    with torch.no_grad():
        l5000 = iwae_bound(model, x, 5000, q=q)
        l1 = iwae_bound(model, x, 1, q=q)
    # Var(w / p(x)) is about 0.8 here, so L_5000 has a standard deviation of about 0.013 nats per
    # example and a bias of about 1e-4; a wrong constant (log 2 pi / 2, log k) is off by far more.
    err = l5000 - exact
    assert err.abs().max() < 0.06 and abs(err.mean()) < 0.012, (
        f"L_5000 - log p(x): {err}"
    )
    assert (exact - l1).mean() > 0.1, (
        "the proposal should be poor enough for L_1 to be visibly loose"
    )


def test_exact_posterior_gives_log_p_for_every_k(lg):
    model, x, _, exact = lg
    post = model.posterior(x)
    for k in (1, 3, 50):
        torch.testing.assert_close(
            iwae_bound(model, x, k, q=post), exact, atol=1e-9, rtol=0
        )


def _flat_grad(value, params, retain=False):
    grads = torch.autograd.grad(value, params, retain_graph=retain, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for g, p in zip(grads, params)
        ]
    )


def test_iwae_gradient_is_the_normalised_weight_average():
    """d L_k / d theta = sum_i w~_i d log w_i / d theta, with w~ = softmax(log w) (Burda et al. eq. 14)."""
    model, x = small_vae(seed=5), binary_batch(3)
    params = [p for p in model.parameters()]
    k = 6
    torch.manual_seed(11)
    auto = _flat_grad(iwae_bound(model, x, k).sum(), params)
    torch.manual_seed(11)
    lw = log_weights(model, x, k)  # (k, B), the same samples
    w = torch.softmax(lw.detach(), 0)  # (k, B)
    per_sample = torch.stack(
        [
            torch.stack(
                [_flat_grad(lw[i, b], params, retain=True) for b in range(x.shape[0])]
            )
            for i in range(k)
        ]
    )  # (k, B, P) gradients of each log w_i
    explicit = (w[..., None] * per_sample).sum((0, 1))  # (P,)
    uniform = per_sample.mean(0).sum(0)  # (P,) the VAE-with-k-samples gradient
    torch.testing.assert_close(auto, explicit, atol=1e-10, rtol=1e-8)
    # the weights matter: the uniform average is a different vector ...
    assert (auto - uniform).norm() > 0.05 * auto.norm()
    # ... and it is exactly vae_k_bound's gradient on the same samples
    torch.manual_seed(11)
    torch.testing.assert_close(
        _flat_grad(vae_k_bound(model, x, k).sum(), params),
        uniform,
        atol=1e-10,
        rtol=1e-8,
    )
    # both networks receive gradient (the encoder through the reparameterized samples)
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    assert auto[:n_enc].abs().max() > 0 and auto[n_enc:].abs().max() > 0


def test_iwae_gradient_approaches_the_exact_score_for_large_k(lg):
    """For the decoder parameters, E[grad L_k] -> grad log p(x) as k grows (the bias is O(1/k))."""
    _, x, q, _ = lg
    model = LinearGaussian.random(8, 3, sigma=0.7, seed=0, learnable=True, dtype=DT)
    exact = _flat_grad(model.log_marginal(x).sum(), [model.weight])
    torch.manual_seed(0)
    errs = {}
    for k in (1, 1000):
        g = _flat_grad(iwae_bound(model, x, k, q=q).sum(), [model.weight])
        errs[k] = ((g - exact).norm() / exact.norm()).item()
    assert errs[1000] < 0.05 and errs[1000] < 0.2 * errs[1], errs


class _ReplayQ:
    """A diagonal Gaussian whose draws come, in order, from a fixed array of standard normals."""

    def __init__(self, q, eps):
        self.q, self.eps, self.used = q, eps, 0  # eps (K, b, D)

    def rsample(self, shape=torch.Size()):
        n = shape[0]
        e = self.eps[self.used : self.used + n]
        self.used += n
        return self.q.mean + self.q.stddev * e

    sample = rsample

    def log_prob(self, z):
        return self.q.log_prob(z)


class _Replay(nn.Module):
    """A VAE whose encoder returns :class:`_ReplayQ`: examples in order take their own rows of eps."""

    def __init__(self, vae, eps):
        super().__init__()
        self.vae, self.eps, self.offset, self.qs = vae, eps, 0, []

    def encode(self, x):
        q = _ReplayQ(
            self.vae.encode(x), self.eps[:, self.offset : self.offset + x.shape[0]]
        )
        self.offset += x.shape[0]
        self.qs.append(q)
        return q

    def decode(self, z):
        return self.vae.decode(z)

    @property
    def prior(self):
        return self.vae.prior


def test_chunked_log_likelihood_equals_unchunked_on_the_same_samples():
    vae, x = small_vae(seed=7), binary_batch(10)
    k = 50
    eps = torch.randn(
        k,
        x.shape[0],
        vae.latent_dim,
        generator=torch.Generator().manual_seed(0),
        dtype=DT,
    )
    replay = _Replay(vae, eps)
    # 3 digits per batch (the last one ragged) and chunks of at most 7 samples: 8 uneven chunks per batch
    chunked = metrics.log_likelihood(
        replay, x, k=k, batch_size=3, max_elements=3 * 16 * 7, progress=False
    )
    assert len(replay.qs) == 4 and all(q.used == k for q in replay.qs), (
        "every digit should use all k samples"
    )
    with torch.no_grad():
        q = vae.encode(x)
        z = q.mean + q.stddev * eps  # (k, N, D): the same samples in one piece
        lw = vae.decode(z).log_prob(x) + vae.prior.log_prob(z) - q.log_prob(z)  # (k, N)
    unchunked = torch.logsumexp(lw, 0) - math.log(k)
    torch.testing.assert_close(chunked, unchunked, atol=1e-10, rtol=0)
    torch.manual_seed(
        0
    )  # ... and it is what iwae_bound computes from those log-weights
    with torch.no_grad():
        bound = iwae_bound(vae, x, k)
    torch.manual_seed(0)
    with torch.no_grad():
        torch.testing.assert_close(
            bound, metrics.log_mean_exp(log_weights(vae, x, k), 0), atol=1e-12, rtol=0
        )


def test_log_likelihood_with_an_encoder_matches_the_exact_marginal(lg):
    model, x, q, exact = lg

    class FixedEncoder(
        nn.Module
    ):  # returns the imperfect proposal of the fixture for these 20 points
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros((), dtype=DT))

        def forward(self, xb):
            assert torch.equal(xb, x), "all 20 points should come in one batch"
            return q

    torch.manual_seed(0)  # 20 points per batch, 5000 samples in 50 chunks of 100
    ll = metrics.log_likelihood(
        Amortized(FixedEncoder(), model),
        x,
        k=5000,
        batch_size=20,
        max_elements=20 * 8 * 100,
        progress=False,
    )
    assert ll.dtype == DT
    err = ll - exact
    assert err.abs().max() < 0.06 and abs(err.mean()) < 0.012, err


def test_a_shared_q_is_refused(lg):
    model, x, _, _ = lg
    with pytest.raises(ValueError, match=r"q must have batch shape \[B\] = \[20\]"):
        iwae_bound(
            model, x, 20, q=model.prior
        )  # batch shape []: would silently pair z_i with x_i


def test_bad_k_is_named():
    model, x = small_vae(), binary_batch(2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive int"):
            iwae_bound(model, x, bad)
        with pytest.raises(ValueError, match="k must be a positive int"):
            metrics.log_likelihood(model, x, k=bad, progress=False)


# ---------------------------------------------------------------- gradient signal-to-noise ratio


class LinearEncoder(nn.Module):
    """q(z|x) = N(x A^T + c, diag s^2) with learnable A, c and log s."""

    def __init__(self, weight, bias, scale):
        super().__init__()
        self.weight, self.bias = (
            nn.Parameter(weight.clone()),
            nn.Parameter(bias.clone()),
        )
        self.log_scale = nn.Parameter(scale.log().clone())

    def forward(self, x):
        return diag_gaussian(
            x @ self.weight.T + self.bias, self.log_scale.exp().expand(x.shape[0], -1)
        )


def snr_setup(seed=0):
    """A linear Gaussian model, data from another one (so its gradient is far from zero), and a
    linear encoder close to the model's posterior mean with the mean-field scales."""
    truth = LinearGaussian.random(8, 3, sigma=0.7, seed=100, dtype=DT)
    x, _ = truth.sample(10, generator=torch.Generator().manual_seed(1))
    model = LinearGaussian.random(8, 3, sigma=0.7, seed=0, learnable=True, dtype=DT)
    with torch.no_grad():
        post = model.posterior(x)
        a = (
            model.weight @ post.covariance_matrix[0] / model.sigma**2
        )  # (D, d): E[z|x] = (x - b) a
        scale = mean_field_optimum(post).base_dist.scale[0]
    noise = 0.05 * torch.randn(
        3, 8, dtype=DT, generator=torch.Generator().manual_seed(seed)
    )
    return Amortized(LinearEncoder(a.T + noise, -(model.bias @ a), scale), model), x


def test_snr_of_known_samples():
    g = torch.Generator().manual_seed(0)
    mean, std = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 4.0, 0.25])
    samples = torch.cat(
        [mean + std * torch.randn(20000, 3, generator=g), torch.ones(20000, 1)], 1
    )  # (R, 4)
    ratio = snr.snr(samples)
    assert ratio.shape == (3,), "the noiseless last coordinate should be dropped"
    torch.testing.assert_close(ratio, mean.abs() / std, rtol=0.05, atol=0)
    with pytest.raises(ValueError, match="at least 2 repeats"):
        snr.snr(samples[:1])


def test_gradient_samples_are_unbiased_for_the_exact_elbo_gradient():
    am, x = snr_setup()
    params = list(am.model.parameters()) + list(am.encoder.parameters())
    torch.manual_seed(0)
    g = snr.gradient_samples(
        am,
        x,
        1,
        400,
        params,
        objective=lambda m, xb, k: elbo(m, xb, k, analytic_kl=False),
    )
    exact = _flat_grad(exact_elbo(am.model, x, am.encode(x)).mean(), params)
    stats = estimator_stats(g, exact)
    assert stats.z_scores.abs().max() < 4.5, stats.z_scores
    assert all(p.grad is None for p in params), (
        "gradient_samples must leave .grad alone"
    )


def test_decoder_snr_rises_and_encoder_snr_falls_with_k():
    """Rainforth et al. (2018): SNR = O(sqrt(k)) for the model, O(1/sqrt(k)) for the encoder."""
    am, x = snr_setup()
    groups = lambda: {
        "encoder": am.encoder.parameters(),
        "decoder": am.model.parameters(),
    }  # noqa: E731
    torch.manual_seed(0)
    low, high = (
        snr.gradient_snr(am, x, k, repeats=50, groups=groups()) for k in (1, 1000)
    )
    assert high["decoder"].mean() > 2 * low["decoder"].mean(), (
        low["decoder"].mean(),
        high["decoder"].mean(),
    )
    assert high["encoder"].mean() < low["encoder"].mean(), (
        low["encoder"].mean(),
        high["encoder"].mean(),
    )
    with pytest.raises(ValueError, match="groups"):
        snr.gradient_snr(am, x, 1, repeats=2)


def test_noise_floor_is_the_snr_of_pure_noise():
    """With no signal, |mean| / std over R repeats is |t_{R-1}| / sqrt(R): mean about sqrt(2 / (pi R))."""
    g = torch.Generator().manual_seed(0)
    for reps in (30, 400):
        noise = torch.randn(reps, 20000, generator=g, dtype=DT) * torch.linspace(
            0.1, 10, 20000, dtype=DT
        )
        expected = math.sqrt(2 / (math.pi * reps))
        assert abs(snr.snr(noise).mean().item() - expected) < 0.05 * expected
        # the floor of signal + noise is that of the noise alone: the signal is removed
        floor = snr.noise_floor(noise + 5.0, generator=g)
        assert abs(floor.mean().item() - expected) < 0.05 * expected, (
            reps,
            floor.mean().item(),
            expected,
        )
        assert snr.snr(noise + 5.0).mean() > 10 * floor.mean()


def test_gradient_snr_returns_the_floor_of_the_same_draws():
    am, x = snr_setup()
    groups = {
        "encoder": list(am.encoder.parameters()),
        "decoder": list(am.model.parameters()),
    }
    torch.manual_seed(0)
    ratios, floors = snr.gradient_snr(am, x, 10, repeats=200, groups=groups, floor=True)
    assert set(floors) == set(ratios) and all(
        floors[n].shape == ratios[n].shape for n in ratios
    )
    for name in ratios:
        assert abs(
            floors[name].mean().item() - math.sqrt(2 / (math.pi * 200))
        ) < 0.1 * math.sqrt(2 / (math.pi * 200))
        assert ratios[name].mean() > 2 * floors[name].mean(), name


def test_expected_bounds_matches_iwae_bound_on_the_same_draws(lg):
    model, x, q, exact = lg
    ks = (1, 2, 5, 10)
    torch.manual_seed(0)
    lk, se = objectives.expected_bounds(model, x, ks, q=q, reps=1)
    torch.manual_seed(0)
    lw = log_weights(model, x, 10, q=q)  # (10, B): the same draws
    assert lk.shape == (4, x.shape[0]) and torch.isnan(se).all()
    torch.testing.assert_close(lk[0], lw.mean(0))  # k = 1: the mean of the log-weights
    torch.testing.assert_close(
        lk[-1], torch.logsumexp(lw, 0) - math.log(10)
    )  # k = max: one group
    halves = torch.logsumexp(lw.reshape(5, 2, -1), 1).mean(0) - math.log(
        2
    )  # k = 2: five groups of two
    torch.testing.assert_close(lk[1], halves)


def test_expected_bounds_rise_with_k_and_stay_below_log_p(lg):
    model, x, q, exact = lg
    torch.manual_seed(1)
    lk, se = objectives.expected_bounds(model, x, (1, 4, 20, 100), q=q, reps=20)
    curve, exact = lk.mean(1), exact.mean().item()
    assert (se > 0).all() and (se < 0.05).all()
    assert (curve[1:] > curve[:-1] + 3 * se[1:]).all(), (
        curve
    )  # Theorem 1, beyond noise here
    assert (curve < exact + 3 * se).all() and exact - curve[-1] < 0.1, (curve, exact)


def test_expected_bounds_checks_its_arguments(lg):
    model, x, q, _ = lg
    with pytest.raises(ValueError, match="divide"):
        objectives.expected_bounds(model, x, (1, 3, 10), q=q)
    with pytest.raises(ValueError, match="reps"):
        objectives.expected_bounds(model, x, (1, 10), q=q, reps=0)


def _fake_state(lr):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    return type("State", (), {"optimizer": opt, "step": 0})()


def test_stepwise_lr_follows_its_boundaries_by_step():
    sched = schedules.StepwiseLR([10, 30], [1.0, 0.5, 0.1])
    assert [sched.lr_at(s) for s in (0, 9, 10, 29, 30, 10**6)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.1,
        0.1,
    ]
    state = _fake_state(sched.lr_at(0))
    for step in (5, 10, 31):
        state.step = step
        sched.on_step(state)
        assert state.optimizer.param_groups[0]["lr"] == sched.lr_at(step)
    with pytest.raises(ValueError, match="one more"):
        schedules.StepwiseLR([10], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        schedules.StepwiseLR([10, 10], [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="learning rate"):
        schedules.StepwiseLR([10], [1.0, -0.5])


def test_burda_schedule_has_the_papers_passes():
    """Burda et al. (2016), Section 5: pass i lasts 3^i epochs at 0.001 * 10^(-i/7), i = 0..7."""
    steps_per_epoch = 3000
    sched = schedules.StepwiseLR.burda(3280 * steps_per_epoch, lr=1e-3, passes=8)
    starts = [0] + sched.boundaries
    assert starts == [steps_per_epoch * sum(3**j for j in range(i)) for i in range(8)]
    for i, start in enumerate(starts):
        assert math.isclose(sched.lr_at(start), 1e-3 * 10 ** (-i / 7))
    assert math.isclose(sched.lr_at(10**9), 1e-4)
    short = schedules.StepwiseLR.burda(
        8, passes=8
    )  # every pass keeps at least one step
    assert short.boundaries == list(range(1, 8))
    with pytest.raises(ValueError, match="steps"):
        schedules.StepwiseLR.burda(5, passes=8)


def test_exponential_lr_runs_from_lr_to_final():
    sched = schedules.ExponentialLR(3e-3, 3e-4, steps=1000)
    assert math.isclose(sched.lr_at(0), 3e-3) and math.isclose(sched.lr_at(1000), 3e-4)
    assert math.isclose(sched.lr_at(500), math.sqrt(3e-3 * 3e-4)) and math.isclose(
        sched.lr_at(5000), 3e-4
    )
    with pytest.raises(ValueError, match="final"):
        schedules.ExponentialLR(1e-3, 0.0, steps=10)


def test_a_schedule_drives_fit_and_a_resumed_run_agrees(tmp_path):
    """The rate is a function of the step counter, so an interrupted and resumed run trains the same."""
    x = binary_batch(40)
    sched = schedules.StepwiseLR([7, 15], [1e-2, 1e-3, 1e-4])

    def run(epochs, ckpt=None):
        model = small_vae(seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=sched.lr_at(0))
        vaekit.fit(
            model,
            lambda m, xb: -iwae_bound(m, xb, 3),
            x,
            epochs=epochs,
            batch_size=8,
            optimizer=opt,
            callbacks=[sched],
            checkpoint=ckpt,
            progress=False,
            seed=0,
            device="cpu",
        )
        return model, opt

    whole, opt = run(5)
    assert opt.param_groups[0]["lr"] == 1e-4  # 25 steps: past both boundaries
    run(2, tmp_path / "c.pt")
    resumed, _ = run(5, tmp_path / "c.pt")
    for a, b in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_iwae_gradient_parts_agree_with_autograd_and_vae_k_bound():
    model, x = small_vae(seed=5), binary_batch(1)
    params, k = list(model.parameters()), 6
    torch.manual_seed(11)
    w, auto, weighted, uniform = vaekit.inference.gradients.iwae_gradient_parts(
        model, x, k
    )
    torch.manual_seed(11)
    torch.testing.assert_close(
        auto, _flat_grad(iwae_bound(model, x, k).sum(), params), atol=1e-12, rtol=1e-10
    )
    torch.testing.assert_close(
        auto, weighted, atol=1e-10, rtol=1e-8
    )  # Burda et al., eq. 14
    torch.manual_seed(11)
    torch.testing.assert_close(
        uniform,
        _flat_grad(vae_k_bound(model, x, k).sum(), params),
        atol=1e-10,
        rtol=1e-8,
    )
    assert (
        w.shape == (k,)
        and abs(w.sum().item() - 1) < 1e-12
        and (auto - uniform).norm() > 0.05 * auto.norm()
    )
    with pytest.raises(ValueError, match="x must hold one example"):
        vaekit.inference.gradients.iwae_gradient_parts(model, binary_batch(2), k)


def test_weighted_draws_are_log_weights_and_resample_in_proportion():
    model, x = small_vae(seed=2), binary_batch(3)
    torch.manual_seed(4)
    d = objectives.weighted_draws(model, x, 50, n_resample=20000)
    torch.manual_seed(4)
    torch.testing.assert_close(
        d["log_w"], log_weights(model, x, 50)
    )  # the same draws, in the same order
    assert d["z"].shape == (50, 3, 2) and d["resampled"].shape == (3, 20000, 2)
    torch.testing.assert_close(d["w"].sum(0), torch.ones(3, dtype=DT))
    torch.testing.assert_close(d["ess"], d["w"].sum(0) ** 2 / (d["w"] ** 2).sum(0))
    for j in range(
        3
    ):  # each draw comes back about w_i * n times: within 5 binomial standard deviations
        hits = (d["resampled"][j][:, None, :] == d["z"][None, :, j, :]).all(
            -1
        )  # (n, k)
        assert hits.any(1).all(), "every resampled z is one of the k draws"
        freq, w = hits.double().mean(0), d["w"][:, j]
        assert ((freq - w).abs() <= 5 * (w * (1 - w) / 20000).sqrt() + 1e-9).all()
    assert "resampled" not in objectives.weighted_draws(model, x, 5)
    with pytest.raises(ValueError, match="n_resample must be a non-negative int"):
        objectives.weighted_draws(model, x, 5, n_resample=-1)


def test_snr_against_k_is_gradient_snr_per_k_in_turn():
    am, x = small_vae(seed=1), binary_batch(1)
    torch.manual_seed(0)
    means, floors = snr.snr_against_k(am, x, (1, 10), repeats=50)
    torch.manual_seed(0)
    for i, k in enumerate((1, 10)):
        ratios, floor = snr.gradient_snr(am, x, k, repeats=50, floor=True)
        for part in ("encoder", "decoder"):
            assert (
                means[part][i] == ratios[part].mean().item()
                and floors[part][i] == floor[part].mean().item()
            )


def test_autocast_gap_is_the_mean_change_of_the_estimates_under_bf16():
    from vaekit.train import bf16_autocast_available

    if not bf16_autocast_available(torch.device("cpu")):
        pytest.skip(
            "no bfloat16 autocast on this CPU: the gap would be 0 by construction"
        )
    model, x = small_vae(seed=3).float(), binary_batch(10).float()
    gap = metrics.autocast_gap(model, x, k=20, seed=1)
    runs = []
    for low in (False, True):
        torch.manual_seed(1)
        runs.append(
            metrics.log_likelihood(model, x, k=20, progress=False, autocast=low)
        )
    assert gap == pytest.approx((runs[0] - runs[1]).abs().mean().item(), rel=1e-6)
    assert 0 < gap < 0.05  # bf16 changes the estimates, by hundredths of a nat at most
