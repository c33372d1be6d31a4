"""Mixture-of-Gaussians and VampPrior priors against brute-force sums, and inside a VAE."""

import math

import pytest
import torch
from torch.distributions import Normal

import vaekit
from vaekit import metrics, objectives, priors


def normal_log_density(z, loc, scale):
    """log N(z; loc, scale^2) written out, summed over the last axis."""
    return (
        -0.5 * ((z - loc) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
    ).sum(-1)


def test_mixture_log_prob_is_the_weighted_sum_of_components():
    torch.manual_seed(0)
    prior = priors.MixturePrior(3, components=4, seed=1).double()
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.0]))
        prior.log_scale.add_(0.3 * torch.randn(4, 3, dtype=torch.float64))
    z = 2 * torch.randn(9, 3, dtype=torch.float64)
    w = torch.softmax(prior.logits.detach(), 0)
    brute = torch.stack(
        [
            torch.log(
                sum(
                    w[k]
                    * torch.exp(
                        normal_log_density(zi, prior.loc[k], prior.log_scale[k].exp())
                    )
                    for k in range(4)
                )
            )
            for zi in z
        ]
    ).detach()
    torch.testing.assert_close(prior().log_prob(z).detach(), brute, atol=1e-12, rtol=0)


def test_mixture_density_integrates_to_one_on_a_grid():
    prior = priors.MixturePrior(2, components=3, spread=1.5, scale=0.5, seed=2).double()
    t = torch.linspace(-9, 9, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        mass = prior().log_prob(grid).exp().sum() * (t[1] - t[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-6)


def test_mixture_samples_have_the_mixture_moments():
    prior = priors.MixturePrior(2, components=3, spread=2.0, scale=0.7, seed=3).double()
    p = prior()
    torch.manual_seed(0)
    n = 40_000
    s = p.sample((n,))
    mean, var = p.mean.detach(), p.variance.detach()
    # 5 standard errors: mean's SE is sqrt(var / n), the variance's about var * sqrt(2 / n) (kurtosis aside: x2)
    assert ((s.mean(0) - mean).abs() < 5 * (var / n).sqrt()).all()
    assert ((s.var(0) - var).abs() < 10 * var * math.sqrt(2 / n)).all()


def small_vae(latent=2, seed=0):
    torch.manual_seed(seed)
    return vaekit.VAE.mlp(x_shape=(1, 4, 4), latent_dim=latent, hidden=(16,)).double()


def test_vamp_prior_with_one_pseudo_input_is_the_encoders_gaussian():
    model = small_vae(latent=3)
    u = torch.rand(1, 1, 4, 4, dtype=torch.float64) * 0.8 + 0.1
    prior = priors.VampPrior(model.encoder, 1, (1, 4, 4), init=u)
    z = torch.randn(6, 3, dtype=torch.float64)
    with torch.no_grad():
        q = model.encoder(prior.pseudo_inputs())
        torch.testing.assert_close(
            prior().log_prob(z), q.log_prob(z), atol=1e-12, rtol=0
        )
        torch.testing.assert_close(
            prior.pseudo_inputs(), u, atol=1e-12, rtol=0
        )  # sigmoid(logit(u)) = u


def test_vamp_prior_is_the_mean_of_the_encoders_posteriors():
    model = small_vae(latent=2)
    u = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    prior = priors.VampPrior(model.encoder, 5, init=u)
    z = torch.randn(7, 2, dtype=torch.float64)
    with torch.no_grad():
        q = model.encoder(prior.pseudo_inputs())
        loc, scale = q.base_dist.loc, q.base_dist.scale  # (5, 2)
        brute = torch.stack(
            [
                torch.log(
                    sum(
                        torch.exp(normal_log_density(zi, loc[k], scale[k]))
                        for k in range(5)
                    )
                    / 5
                )
                for zi in z
            ]
        )
        torch.testing.assert_close(prior().log_prob(z), brute, atol=1e-12, rtol=0)
    assert prior.pseudo_inputs().min() >= 0 and prior.pseudo_inputs().max() <= 1


def test_vamp_prior_shares_the_encoder_and_learns_pseudo_inputs():
    model = small_vae()
    model.prior_net = priors.VampPrior(model.encoder, 4)
    names = [n for n, _ in model.named_parameters()]
    own = len(list(model.encoder.parameters())) + len(list(model.decoder.parameters()))
    assert (
        len(list(model.parameters())) == own + 1
    )  # each shared weight once, plus the pseudo-inputs
    assert "prior_net.pseudo_logits" in names and not any(
        n.startswith("prior_net.encoder") for n in names
    )
    loss = -model.prior.log_prob(torch.randn(3, 2, dtype=torch.float64)).sum()
    loss.backward()
    assert model.prior_net.pseudo_logits.grad.abs().sum() > 0
    assert (
        model.encoder.head.weight.grad.abs().sum() > 0
    )  # the prior's gradient reaches the shared encoder


@pytest.mark.parametrize("name", ["mog", "vamp"])
def test_a_vae_with_a_richer_prior_trains_and_is_evaluated(name):
    model = small_vae()
    model.prior_net = priors.make_prior(name, model, components=3, n_pseudo=3)
    x = (torch.rand(64, 1, 4, 4) > 0.5).double()
    before = [p.detach().clone() for p in model.prior_net.parameters()]
    vaekit.fit(
        model,
        lambda m, xb: -objectives.elbo(m, xb),
        x,
        steps=20,
        batch_size=16,
        progress=False,
        device="cpu",
    )
    assert any(
        not torch.equal(b, p) for b, p in zip(before, model.prior_net.parameters())
    )  # the prior is learned
    torch.manual_seed(0)
    bound = objectives.elbo(
        model, x, k=1
    ).mean()  # a sampled KL: no closed form for a mixture prior
    torch.manual_seed(0)
    ll = metrics.log_likelihood(model, x, k=200, progress=False)
    assert torch.isfinite(ll).all() and ll.mean() >= bound - 0.05
    assert model.sample(5).shape == (5, 1, 4, 4)


def test_make_prior_follows_the_model_dtype_and_standard_is_n01():
    model = small_vae(latent=2)
    for name in priors.PRIORS:
        prior = priors.make_prior(name, model, components=2, n_pseudo=2)
        assert prior().sample((3,)).dtype == torch.float64
    p = priors.make_prior("standard", model)()
    z = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(
        p.log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1).double()
    )


def test_bad_input_is_refused_naming_it():
    model = small_vae()
    with pytest.raises(ValueError, match="dim"):
        priors.MixturePrior(0)
    with pytest.raises(ValueError, match="components"):
        priors.MixturePrior(2, components=0)
    with pytest.raises(ValueError, match="scale"):
        priors.MixturePrior(2, scale=0.0)
    with pytest.raises(ValueError, match="n_pseudo"):
        priors.VampPrior(model.encoder, 0)
    with pytest.raises(ValueError, match="x_shape"):
        priors.VampPrior(model.encoder, 2, x_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="init must"):
        priors.VampPrior(model.encoder, 2, init=torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="init must lie"):
        priors.VampPrior(model.encoder, 2, init=torch.full((2, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match="init_value"):
        priors.VampPrior(model.encoder, 2, init_value=1.0)
    with pytest.raises(ValueError, match="name must be"):
        priors.make_prior("gaussian", model)
