"""Dequantization: q(u | x) is a density on the unit cube, a uniform q gives Theis et al.'s bound
exactly, and no dequantized bound lies above the exact log-probability of the discretized model."""

from __future__ import annotations

import math

import pytest
import torch

import vaekit
from vaekit import discretized, nets
from vaekit.models import dequantization
from vaekit.models.dequantization import LogisticDequantizer, dequantized_elbo


def perturbed(dq: LogisticDequantizer, seed: int = 0) -> LogisticDequantizer:
    """A dequantizer that is not uniform, with scales below 1 (a density that vanishes at the faces of
    the cube, so that a midpoint rule converges fast)."""
    g = torch.Generator().manual_seed(seed)
    last = dq.body[-1]
    d = last.out_features // 2
    with torch.no_grad():
        last.weight.copy_(
            0.02 * torch.randn(last.weight.shape, generator=g, dtype=last.weight.dtype)
        )
        last.bias[:d] = torch.randn(d, generator=g, dtype=last.bias.dtype)  # locations
        last.bias[d:] = -0.7 + 0.1 * torch.randn(
            d, generator=g, dtype=last.bias.dtype
        )  # log scales
    return dq


def test_q_integrates_to_one_on_the_unit_interval():
    dq = perturbed(LogisticDequantizer(x_shape=(1,), hidden=(8,)).double())
    x = torch.tensor(
        [[0.0], [100 / 255], [1.0]], dtype=torch.float64
    )  # [3, 1] grey levels
    m = 200_000
    u = ((torch.arange(m, dtype=torch.float64) + 0.5) / m)[
        :, None, None
    ]  # [m, 1, 1] midpoints
    mass = dq(x).log_prob(u.expand(m, 3, 1)).exp().mean(0)  # [3]
    assert torch.allclose(
        mass, torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-6
    ), mass


def test_q_integrates_to_one_on_the_unit_square():
    dq = perturbed(LogisticDequantizer(x_shape=(2,), hidden=(8,)).double(), seed=1)
    x = torch.tensor([[0.0, 1.0], [30 / 255, 200 / 255]], dtype=torch.float64)  # [2, 2]
    m = 1500
    t = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(
        -1, 1, 2
    )  # [m * m, 1, 2]
    mass = dq(x).log_prob(grid.expand(-1, 2, 2)).exp().mean(0)  # [2]
    assert torch.allclose(
        mass, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-5
    ), mass


def test_the_reparameterized_draws_and_their_log_q_agree_with_torch_distributions():
    dq = perturbed(LogisticDequantizer(x_shape=(1, 3, 3), hidden=(8,)).double(), seed=2)
    x = torch.rand(
        5, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    x = (x * 255).round() / 255
    u, log_q = dq.rsample_with_log_prob(x, torch.Generator().manual_seed(1))
    assert u.shape == x.shape and log_q.shape == (5,)
    assert bool(((u > 0) & (u < 1)).all())
    assert torch.allclose(log_q, dq(x).log_prob(u), rtol=0, atol=1e-9)
    loc, scale = dq.params(
        x
    )  # the draws are the logistic's quantiles of the uniforms, through a sigmoid
    v = torch.rand(
        x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    assert torch.allclose(
        u, torch.sigmoid(loc + scale * (v.log() - torch.log1p(-v))), rtol=0, atol=1e-12
    )


def small_vae(x_shape=(1, 3, 3), latent_dim=2, bins=256, gaussian=False):
    torch.manual_seed(0)
    enc = nets.GaussianEncoder.mlp(x_shape, latent_dim=latent_dim, hidden=(8,))
    dec = (
        nets.Decoder.mlp(x_shape, latent_dim, (8,), likelihood="gaussian")
        if gaussian
        else nets.DiscretizedLogisticDecoder.mlp(x_shape, latent_dim, (8,), bins=bins)
    )
    return vaekit.VAE(enc, dec, latent_dim)


@pytest.mark.parametrize("gaussian", [False, True])
def test_a_uniform_q_gives_the_uniform_bound_exactly(gaussian):
    model = small_vae(gaussian=gaussian).double()
    dq = LogisticDequantizer(x_shape=(1, 3, 3), hidden=(8,)).double()  # starts uniform
    x = (
        torch.rand(
            7, 1, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64
        )
        * 255
    ).round() / 255
    torch.manual_seed(5)
    variational = dequantized_elbo(
        model, x, dq, generator=torch.Generator().manual_seed(4)
    )
    torch.manual_seed(5)
    uniform = dequantized_elbo(
        model, x, None, generator=torch.Generator().manual_seed(4)
    )
    assert torch.allclose(variational, uniform, rtol=0, atol=1e-9), (
        (variational - uniform).abs().max()
    )
    _, log_q = dq.rsample_with_log_prob(x)
    assert log_q.abs().max() < 1e-9  # the density of a uniform q is 1


def test_the_uniform_bound_is_the_density_elbo_at_dequantized_data_minus_d_log_bins():
    model = small_vae().double()
    x = (
        torch.rand(
            4, 1, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64
        )
        * 255
    ).round() / 255
    torch.manual_seed(1)
    ours = dequantized_elbo(model, x, generator=torch.Generator().manual_seed(2))
    y = discretized.dequantize(
        x, generator=torch.Generator().manual_seed(2)
    )  # the same u
    torch.manual_seed(1)
    q = model.encode(x)
    px = model.decode(q.rsample()).base_dist
    expected = (
        px.continuous_log_prob(y).flatten(1).sum(1)
        - torch.distributions.kl_divergence(q, model.prior)
        - 9 * math.log(256)
    )
    assert torch.allclose(ours, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("uniform", [True, False])
def test_no_bound_lies_above_the_exact_log_probability(uniform):
    """One pixel, 4 grey levels, one latent: log P(n) = log of the integral of p(z) P(n | z) over z, by
    quadrature; the dequantized bound (a 40,000-draw average) lies below it, for every value."""
    bins = 4
    model = small_vae(x_shape=(1,), latent_dim=1, bins=bins).double()
    dq = (
        None
        if uniform
        else perturbed(LogisticDequantizer(x_shape=(1,), hidden=(8,)).double(), seed=3)
    )
    z = torch.linspace(-9, 9, 6001, dtype=torch.float64)[:, None]  # [Z, 1]
    log_pz = model.prior.log_prob(z)  # [Z]
    levels = torch.arange(bins, dtype=torch.float64) / (bins - 1)  # [bins]
    log_pn_z = model.decode(z).base_dist.log_prob(
        levels.expand(len(z), bins)
    )  # [Z, bins]: discretized, tails in the edge bins
    dz = z[1, 0] - z[0, 0]
    exact = torch.logsumexp(log_pz[:, None] + log_pn_z, 0) + dz.log()  # [bins]
    assert torch.allclose(
        exact.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-6
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for n in range(bins):
            x = levels[n].expand(40_000, 1).clone()
            b = dequantized_elbo(
                model, x, dq, bins=bins, generator=torch.Generator().manual_seed(n)
            )
            se = b.std() / math.sqrt(len(b))
            assert b.mean() <= exact[n] + 3 * se, (
                n,
                b.mean().item(),
                exact[n].item(),
                se.item(),
            )


def test_device_and_dtype_follow_the_input():
    for dtype in (torch.float32, torch.float64):
        model = small_vae().to(dtype)
        dq = LogisticDequantizer(x_shape=(1, 3, 3), hidden=(8,)).to(dtype)
        x = torch.zeros(2, 1, 3, 3, dtype=dtype)
        for q in (None, dq):
            b = dequantized_elbo(model, x, q)
            assert b.dtype == dtype and b.shape == (2,)
        u, log_q = dq.rsample_with_log_prob(x)
        assert u.dtype == dtype and log_q.dtype == dtype
    if torch.cuda.is_available():
        model, dq = (
            small_vae().cuda(),
            LogisticDequantizer(x_shape=(1, 3, 3), hidden=(8,)).cuda(),
        )
        b = dequantized_elbo(model, torch.zeros(2, 1, 3, 3, device="cuda"), dq)
        assert b.device.type == "cuda"


def test_training_the_dequantizer_tightens_the_bound_of_a_fixed_model():
    """A sharp logistic decoder (scales of a fraction of a bin) rewards noise that sits where its
    density is: a few hundred updates of q alone raise the bound above the uniform one."""
    model = small_vae(x_shape=(1, 2, 2), latent_dim=1).double()
    with torch.no_grad():
        model.decoder.body[-1].weight.zero_()
        model.decoder.body[-1].bias.copy_(
            torch.tensor([0.1, 0.5, 0.9, 0.3, -8.0, -8.0, -8.0, -8.0])
        )
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64)
    x = ((x * 256).floor() / 255).reshape(1, 1, 2, 2).expand(64, 1, 2, 2).clone()
    dq = LogisticDequantizer(x_shape=(1, 2, 2), hidden=(8,)).double()
    opt = torch.optim.Adam(dq.parameters(), lr=3e-2)
    torch.manual_seed(0)
    for _ in range(300):
        opt.zero_grad()
        (-dequantized_elbo(model, x, dq).mean()).backward()
        opt.step()
    with torch.no_grad():
        var = torch.cat([dequantized_elbo(model, x, dq) for _ in range(20)])
        uni = torch.cat([dequantized_elbo(model, x) for _ in range(20)])
    assert var.mean() > uni.mean() + 0.1, (var.mean().item(), uni.mean().item())


@pytest.mark.parametrize(
    "make, arg, error",
    [
        (
            lambda m, dq, x: dequantized_elbo(m, x * 255, dq),
            "x",
            ValueError,
        ),  # 0-255 pixels
        (
            lambda m, dq, x: dequantized_elbo(m, x + 0.5 / 255, dq),
            "x",
            ValueError,
        ),  # off the grid of grey levels
        (
            lambda m, dq, x: dequantized_elbo(m, x.double(), dq),
            "x",
            TypeError,
        ),  # another dtype than the model
        (lambda m, dq, x: dequantized_elbo(m, x[:0], dq), "x", ValueError),  # empty
        (
            lambda m, dq, x: dequantized_elbo(m, x.reshape(2, 9), dq),
            "x",
            ValueError,
        ),  # another image shape
        (lambda m, dq, x: dequantized_elbo(m, x.long(), dq), "x", TypeError),
        (lambda m, dq, x: dequantized_elbo(m, x, "uniform"), "dequantizer", TypeError),
        (lambda m, dq, x: dequantized_elbo(m, x, dq, bins=0), "bins", ValueError),
        (lambda m, dq, x: dq.rsample_with_log_prob(x.reshape(2, 9)), "x", ValueError),
        (lambda m, dq, x: dq.rsample_with_log_prob(x.double()), "x", TypeError),
        (lambda m, dq, x: LogisticDequantizer(x_shape=()), "x_shape", ValueError),
        (lambda m, dq, x: LogisticDequantizer(x_shape=(1, 0)), "x_shape", ValueError),
        (lambda m, dq, x: LogisticDequantizer(hidden=(0,)), "hidden", ValueError),
        (
            lambda m, dq, x: LogisticDequantizer(max_log_scale=0.0),
            "max_log_scale",
            ValueError,
        ),
    ],
)
def test_bad_input_is_refused_naming_the_argument(make, arg, error):
    model, dq = small_vae(), LogisticDequantizer(x_shape=(1, 3, 3), hidden=(8,))
    x = torch.full((2, 1, 3, 3), 128 / 255)
    with pytest.raises(error) as caught:
        make(model, dq, x)
    assert arg in str(caught.value), caught.value


def test_it_is_exported():
    assert vaekit.models.dequantization is dequantization
    assert "dequantization" in vaekit.models.__all__
