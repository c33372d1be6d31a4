"""The grey-level likelihoods of ``vaekit.discretized`` against exact answers: the discretized
logistic's probabilities sum to one over the 256 values, equal a numerical integral of the
logistic density over each bin, and give the edge bins the tails; uniform dequantization lands in
the right bin and is uniform there; Theis et al.'s bound holds; the categorical baseline counts."""

from __future__ import annotations

import math

import pytest
import torch

from vaekit.discretized import (
    DiscretizedLogistic,
    dequantize,
    dequantized_bound,
    discretized_logistic,
    pixel_categorical,
    to_levels,
)

LOCS = torch.tensor(
    [-0.3, 0.0, 0.002, 0.2, 0.5, 0.77, 0.999, 1.0, 1.4], dtype=torch.float64
)
SCALES = torch.tensor(
    [1e-4, 3e-3, 0.01, 0.05, 0.1, 0.3, 1.0, 0.02, 2e-3], dtype=torch.float64
)


def all_levels(dist):
    return dist.enumerate_support()  # (256, *batch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probabilities_sum_to_one(dtype):
    loc, scale = torch.meshgrid(
        LOCS.to(dtype), SCALES.to(dtype), indexing="ij"
    )  # every pair, (9, 9)
    d = DiscretizedLogistic(loc, scale)
    p = d.log_prob(all_levels(d)).exp()  # (256, 9, 9)
    assert torch.isfinite(d.log_prob(all_levels(d))).all()
    assert torch.allclose(p.sum(0), torch.ones((), dtype=dtype), atol=1e-5, rtol=0)


def test_interior_bins_match_a_numerical_integral_of_the_density():
    loc, scale = (
        torch.tensor([0.3], dtype=torch.float64),
        torch.tensor([0.05], dtype=torch.float64),
    )
    d = DiscretizedLogistic(loc, scale)
    for n in (1, 40, 77, 100, 200, 254):
        y = torch.linspace(n / 256, (n + 1) / 256, 2001, dtype=torch.float64)[
            :, None
        ]  # (2001, 1)
        integral = torch.trapezoid(d.continuous_log_prob(y).exp(), y, dim=0)
        p = d.log_prob(torch.tensor([n / 255], dtype=torch.float64)).exp()
        assert torch.allclose(p, integral, rtol=1e-6, atol=1e-12), n


def test_continuous_density_is_the_logistic():
    loc, scale = (
        torch.tensor(0.3, dtype=torch.float64),
        torch.tensor(0.07, dtype=torch.float64),
    )
    logistic = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(
            torch.tensor(0.0, dtype=torch.float64),
            torch.tensor(1.0, dtype=torch.float64),
        ),
        [
            torch.distributions.SigmoidTransform().inv,
            torch.distributions.AffineTransform(loc, scale),
        ],
    )
    y = torch.linspace(-0.5, 1.5, 101, dtype=torch.float64)
    assert torch.allclose(
        DiscretizedLogistic(loc, scale).continuous_log_prob(y),
        logistic.log_prob(y),
        atol=1e-10,
    )


def test_edge_bins_take_the_tails():
    loc, scale = (
        torch.tensor([0.4, 0.0, 1.0], dtype=torch.float64),
        torch.tensor([0.1, 0.01, 0.01], dtype=torch.float64),
    )
    d = DiscretizedLogistic(loc, scale)
    p0 = d.log_prob(torch.zeros(3, dtype=torch.float64)).exp()
    p255 = d.log_prob(torch.ones(3, dtype=torch.float64)).exp()
    assert torch.allclose(
        p0, torch.sigmoid((1 / 256 - loc) / scale), rtol=1e-12
    )  # all mass below 1/256
    assert torch.allclose(
        p255, torch.sigmoid(-(255 / 256 - loc) / scale), rtol=1e-12
    )  # all mass above 255/256
    assert (
        p0[1] > 0.5 and p255[2] > 0.5
    )  # a location on the edge gives its bin the whole tail: more than half


def test_far_tails_are_finite_and_accurate():
    # 0.5 of the axis away at scale 1e-3: about -500 nats, not -inf; the formula in float64 as reference
    d = DiscretizedLogistic(torch.tensor([0.0]), torch.tensor([1e-3]))
    lp = d.log_prob(torch.tensor([128 / 255]))
    a, b = (129 / 256) / 1e-3, (128 / 256) / 1e-3
    exact = -a + math.log(
        math.expm1(a - b)
    )  # log(sigmoid(-b) - sigmoid(-a)) for large a, b
    assert torch.isfinite(lp).all() and abs(lp.item() - exact) < 1e-3 * abs(exact)
    grad_loc = torch.tensor([0.2], requires_grad=True)
    DiscretizedLogistic(grad_loc, torch.tensor([1e-4])).log_prob(
        torch.tensor([1.0])
    ).sum().backward()
    assert torch.isfinite(grad_loc.grad).all()


def test_mean_and_samples():
    loc, scale = (
        torch.tensor([0.02, 0.5, 0.9], dtype=torch.float64),
        torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64),
    )
    d = DiscretizedLogistic(loc, scale)
    values = all_levels(d)
    exact_mean = (d.log_prob(values).exp() * values).sum(0)
    assert torch.allclose(d.mean, exact_mean, atol=1e-10)
    torch.manual_seed(0)
    x = d.sample((40000,))  # (40000, 3)
    assert set((x * 255).round().unique().tolist()) <= set(range(256))
    assert torch.allclose(x.mean(0), exact_mean, atol=4 * x.std(0).max().item() / 200)
    frac0 = (x[:, 0] == 0).double().mean()
    assert abs(frac0 - d.log_prob(torch.zeros(3, dtype=torch.float64))[0].exp()) < 0.01


def test_independent_image_event_and_expand():
    loc = torch.rand(5, 1, 28, 28)
    px = discretized_logistic(loc, torch.full_like(loc, 0.1), 3)
    x = torch.randint(0, 256, (5, 1, 28, 28)) / 255
    assert px.log_prob(x).shape == (5,)
    assert px.mean.shape == (5, 1, 28, 28)
    e = DiscretizedLogistic(torch.tensor([0.3]), torch.tensor([0.1])).expand((4, 1))
    assert e.batch_shape == (4, 1) and e.log_prob(torch.zeros(4, 1)).shape == (4, 1)


def test_dequantize_lands_in_the_bin_uniformly():
    n = torch.arange(256).repeat(400)  # every level 400 times
    g = torch.Generator().manual_seed(0)
    y = dequantize(n / 255, generator=g)
    assert y.dtype == torch.float32 and (y >= 0).all() and (y < 1).all()
    assert torch.equal(torch.floor(y * 256).long(), n)  # in the bin of its own value
    u = y * 256 - n
    assert abs(u.mean().item() - 0.5) < 4 * math.sqrt(
        1 / 12 / len(u)
    )  # U(0, 1) inside the bin
    assert abs(u.var().item() - 1 / 12) < 0.005
    assert dequantize(torch.zeros(3, dtype=torch.float64)).dtype == torch.float64


def test_theis_bound_holds_and_is_tight_for_a_smooth_density():
    # E_u[log p((n + u) / 256)] - log 256 <= log P(n), with near equality where p is flat over a bin
    d = DiscretizedLogistic(
        torch.tensor([0.45], dtype=torch.float64),
        torch.tensor([0.08], dtype=torch.float64),
    )
    n = torch.arange(1, 255, dtype=torch.float64)  # the interior bins, (254,)
    u = (
        torch.arange(1000, dtype=torch.float64)[:, None] + 0.5
    ) / 1000  # midpoint rule over the bin, (1000, 1)
    expected = d.continuous_log_prob((n + u) / 256).mean(0) - math.log(
        256
    )  # E_u[...] by quadrature, (254,)
    exact = d.log_prob(n / 255)
    assert (expected <= exact).all()
    assert (exact - expected).max() < 1e-3
    g = torch.Generator().manual_seed(1)
    y = dequantize(
        (n / 255).repeat(2000, 1), generator=g
    )  # the same expectation by dequantizing, (2000, 254)
    sampled = d.continuous_log_prob(y) - math.log(256)
    se = sampled.std(0) / math.sqrt(len(y))
    assert ((sampled.mean(0) - expected).abs() < 4 * se + 1e-12).all()


def test_to_levels_and_errors():
    assert torch.equal(
        to_levels(torch.tensor([0.0, 1 / 255, 1.0])), torch.tensor([0, 1, 255])
    )
    with pytest.raises(ValueError, match="x must lie in"):
        to_levels(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="grid"):
        to_levels(torch.tensor([0.5 / 255]))
    with pytest.raises(TypeError, match="floating-point"):
        to_levels(torch.tensor([1]))
    with pytest.raises(ValueError, match="bins"):
        DiscretizedLogistic(torch.zeros(1), torch.ones(1), bins=1)
    with pytest.raises(ValueError, match="smoothing"):
        pixel_categorical(torch.zeros(2, 3), smoothing=0)


def test_pixel_categorical_is_add_one_smoothed_counts():
    x = (
        torch.tensor([[0, 0], [0, 3], [0, 3], [255, 3]], dtype=torch.float32) / 255
    )  # 4 images of 2 pixels
    base = pixel_categorical(x)
    probs = base.base_dist.probs  # (2, 256)
    assert probs.shape == (2, 256) and torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.isclose(probs[0, 0], torch.tensor(4 / 260)) and torch.isclose(
        probs[0, 255], torch.tensor(2 / 260)
    )
    assert torch.isclose(probs[1, 3], torch.tensor(4 / 260)) and torch.isclose(
        probs[1, 7], torch.tensor(1 / 260)
    )
    lp = base.log_prob(to_levels(torch.tensor([[0.0, 7 / 255]])))
    assert torch.isclose(
        lp, torch.log(torch.tensor(4 / 260)) + torch.log(torch.tensor(1 / 260))
    )


def test_dequantized_bound_of_an_image_model():
    torch.manual_seed(0)
    loc = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    px = discretized_logistic(loc, torch.full_like(loc, 0.2), 3)
    x = (
        torch.randint(1, 255, (3, 1, 4, 4)).double() / 255
    )  # interior values: the bound is tight to ~1e-3
    bound, se = dequantized_bound(
        px, x, samples=400, generator=torch.Generator().manual_seed(0)
    )
    assert bound.shape == se.shape == (3,)
    assert (bound <= px.log_prob(x) + 4 * se).all() and (
        px.log_prob(x) - bound < 16 * 1e-3 + 4 * se
    ).all()
    edge = torch.zeros(
        3, 1, 4, 4, dtype=torch.float64
    )  # at value 0 the edge bin's tail makes the bound loose
    b0, _ = dequantized_bound(px, edge, samples=50)
    assert (b0 < px.log_prob(edge)).all()
    per_pixel, _ = dequantized_bound(
        px.base_dist, x, samples=400, generator=torch.Generator().manual_seed(0)
    )
    assert per_pixel.shape == (3, 1, 4, 4) and torch.allclose(
        per_pixel.flatten(1).sum(1), bound, rtol=1e-12
    )
    with pytest.raises(TypeError, match="DiscretizedLogistic"):
        dequantized_bound(
            torch.distributions.Independent(torch.distributions.Normal(loc, 1.0), 3), x
        )


def test_discretized_logistic_decoder_in_a_vae():
    import vaekit
    from vaekit.nets import DiscretizedLogisticDecoder, GaussianEncoder

    torch.manual_seed(0)
    model = vaekit.VAE(
        GaussianEncoder.mlp(latent_dim=3, hidden=(16,)),
        DiscretizedLogisticDecoder.mlp(latent_dim=3, hidden=(16,)),
        3,
    )
    x = torch.randint(0, 256, (5, 1, 28, 28)) / 255
    px = model.decode(torch.randn(7, 5, 3))  # leading sample dimensions pass through
    assert px.batch_shape == (7, 5) and px.event_shape == (1, 28, 28)
    assert (px.base_dist.scale >= 1e-3).all()
    lp = px.log_prob(x)  # (7, 5): a probability of each 8-bit image
    assert lp.shape == (7, 5) and (lp < 0).all()
    elbo = vaekit.elbo(model, x)
    assert elbo.shape == (5,) and torch.isfinite(elbo).all()
    assert model.sample(2).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="min_scale"):
        DiscretizedLogisticDecoder.mlp(min_scale=0.0)
