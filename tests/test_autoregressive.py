"""The autoregressive decoder p(x|z): its masks (by gradients), exact normalisation over every
image of a tiny size, sampling against log_prob, broadcasting over [k, B, D] latents through the
library's bounds and importance-sampled likelihood (against quadrature in a 1-D latent), devices,
the training helpers, and bad input.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats
from torch.distributions import Normal

import vaekit
from vaekit import metrics
from vaekit.evaluation.collapse import RECIPES, evaluate_run, train_run
from vaekit.models.autoregressive import (
    AutoregressiveDecoder,
    autoregressive_vae,
    made_masks,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device"
        ),
    ),
]


def sharpened(
    decoder: AutoregressiveDecoder, scale: float = 3.0
) -> AutoregressiveDecoder:
    """Scale every weight so that the conditionals are far from 1/2 and depend strongly on x_<i and z."""
    with torch.no_grad():
        for p in decoder.parameters():
            p.mul_(scale)
    return decoder


def all_images(shape) -> torch.Tensor:
    n = math.prod(shape)
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n))).reshape(
        -1, *shape
    )  # (2^n, *shape)


def jacobian(
    decoder: AutoregressiveDecoder, x_flat: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """d logit_i / d x_j ``[n, n]`` at one image (the network accepts any real inputs)."""
    return torch.autograd.functional.jacobian(lambda v: decoder.logits(v, z), x_flat)


@pytest.mark.parametrize("context", [None, 1, 4, 7])
def test_logit_i_depends_only_on_the_context_before_pixel_i(context):
    torch.manual_seed(0)
    dec = sharpened(
        AutoregressiveDecoder(
            (1, 4, 5), latent_dim=3, hidden=64, z_hidden=8, context=context
        ),
        1.0,
    )
    n = 20
    jac = jacobian(dec, torch.rand(n), torch.randn(3)).abs()  # (n, n)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    allowed = (j < i) & ((j >= i - context) if context is not None else True)
    assert jac[~allowed].max() == 0, (
        "a logit depends on its own pixel, a later one, or one outside its context"
    )
    # and it does use what it may see: the previous pixel, and the first pixel of the window
    assert (jac[1:, :].diagonal() > 0).all()
    first = [(r, max(0, r - (context or r))) for r in range(1, n)]
    assert all(jac[r, c] > 0 for r, c in first)


def test_masks_of_context_c_cover_exactly_the_c_previous_pixels_through_the_hidden_layer():
    m_in, m_out, m_direct = made_masks(50, 200, context=6)
    through_hidden = (
        m_out @ m_in
    ) > 0  # (n, n): output i reaches input j through some hidden unit
    i, j = torch.meshgrid(torch.arange(50), torch.arange(50), indexing="ij")
    window = (j < i) & (j >= i - 6)
    assert (through_hidden <= window).all() and (m_direct.bool() == window).all()
    assert through_hidden[window & (i >= 12)].all(), (
        "with a unit per degree every pixel of the window is reachable"
    )
    m_in, m_out, _ = made_masks(50, 200)
    assert (((m_out @ m_in) > 0) == (j < i)).all()


@pytest.mark.parametrize(
    "shape,context", [((1, 2, 2), None), ((1, 3, 3), None), ((1, 3, 3), 2)]
)
def test_log_prob_sums_to_one_over_all_images(shape, context):
    torch.manual_seed(1)
    dec = sharpened(
        AutoregressiveDecoder(
            shape, latent_dim=2, hidden=16, z_hidden=8, context=context
        )
    ).double()
    z = torch.randn(3, 2, dtype=torch.float64)  # three latents at once
    x = all_images(shape).double()  # (2^n, *shape)
    logp = dec(z[:, None]).log_prob(x)  # (3, 2^n)
    assert logp.shape == (3, 2 ** math.prod(shape))
    torch.testing.assert_close(
        torch.logsumexp(logp, 1),
        torch.zeros(3, dtype=torch.float64),
        atol=1e-10,
        rtol=0,
    )
    assert logp.exp().max() < 0.9, "the test needs a non-degenerate distribution"


def test_samples_follow_log_prob():
    torch.manual_seed(2)
    shape = (1, 2, 2)
    dec = sharpened(
        AutoregressiveDecoder(shape, latent_dim=2, hidden=16, z_hidden=8), 2.0
    )
    px = dec(torch.randn(2))
    with torch.no_grad():
        probs = px.log_prob(all_images(shape)).exp()  # (16,)
    n = 40_000
    draws = px.sample((n,))  # (n, 1, 2, 2)
    assert draws.shape == (n, *shape) and set(draws.unique().tolist()) <= {0.0, 1.0}
    codes = (
        (draws.reshape(n, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    )  # image index, as in all_images
    counts = torch.bincount(codes, minlength=16).double()
    expected = probs.double() * n
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2 / expected)[keep]).sum())
    assert stats.chi2.sf(chi2, int(keep.sum()) - 1) > 1e-3, (
        f"sample frequencies differ from exp(log_prob): chi2 = {chi2:.1f}"
    )


def test_mean_is_the_exact_marginal_for_the_first_pixels_and_deterministic():
    torch.manual_seed(3)
    shape = (1, 2, 2)
    dec = sharpened(
        AutoregressiveDecoder(shape, latent_dim=2, hidden=16, z_hidden=8), 2.0
    )
    z = torch.randn(5, 2)
    px = dec(z)
    mean = px.mean  # (5, 1, 2, 2)
    assert mean.shape == (5, *shape) and ((mean >= 0) & (mean <= 1)).all()
    torch.testing.assert_close(mean, dec(z).mean)
    x = all_images(shape)  # (16, 1, 2, 2)
    p = dec(z[:, None]).log_prob(x).exp()  # (5, 16)
    marginal = (p[:, :, None] * x.reshape(1, 16, 4)).sum(
        1
    )  # (5, 4): the exact E[x_i | z]
    torch.testing.assert_close(
        mean.reshape(5, 4)[:, 0], marginal[:, 0]
    )  # pixel 0 has nothing before it
    assert (mean.reshape(5, 4) - marginal).abs().max() < 0.5


@pytest.mark.parametrize("context", [None, 28])
def test_sequential_pass_agrees_with_teacher_forcing_on_full_size_images(context):
    """The mean is the fixed point m = sigmoid(logits(m)) (each logit sees only earlier pixels), and a
    sample's log_prob is the sum of the per-pixel log-probabilities its draws were made from."""
    torch.manual_seed(9)
    dec = sharpened(
        AutoregressiveDecoder(
            (1, 28, 28), latent_dim=3, hidden=48, z_hidden=16, context=context
        ),
        1.5,
    )
    z = torch.randn(2, 4, 3)
    with torch.no_grad():
        px = dec(z)
        mean = px.mean  # (2, 4, 1, 28, 28)
        torch.testing.assert_close(
            torch.sigmoid(dec.logits(mean.flatten(-3), z)),
            mean.flatten(-3),
            atol=1e-5,
            rtol=0,
        )
        assert 0.01 < float(mean.std()) and ((mean > 0) & (mean < 1)).all()
        x = px.sample()  # (2, 4, 1, 28, 28)
        lp = px.log_prob(x)  # (2, 4)
    assert x.shape == (2, 4, 1, 28, 28) and set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.isfinite(lp).all() and (lp < 0).all()


def test_log_prob_broadcasts_over_k_samples_and_equals_one_by_one():
    torch.manual_seed(4)
    dec = AutoregressiveDecoder((1, 28, 28), latent_dim=4, hidden=32, z_hidden=16)
    x = (torch.rand(6, 1, 28, 28) < 0.3).float()
    z = torch.randn(5, 6, 4)  # (k, B, D)
    px = dec(z)
    assert px.batch_shape == (5, 6) and px.event_shape == (1, 28, 28)
    lp = px.log_prob(x)  # (k, B)
    assert lp.shape == (5, 6)
    one_by_one = torch.stack(
        [torch.stack([dec(z[i, b]).log_prob(x[b]) for b in range(6)]) for i in range(5)]
    )
    torch.testing.assert_close(lp, one_by_one, rtol=1e-5, atol=1e-4)
    assert px.sample().shape == (5, 6, 1, 28, 28)


def test_library_bounds_and_metrics_accept_the_decoder():
    torch.manual_seed(5)
    model = autoregressive_vae(latent_dim=3, encoder_hidden=32, hidden=32, z_hidden=16)
    x = (torch.rand(8, 1, 28, 28) < 0.3).float()
    e = vaekit.elbo(model, x, k=2)
    iw = vaekit.iwae_bound(model, x, k=10)
    assert (
        e.shape == iw.shape == (8,)
        and torch.isfinite(e).all()
        and torch.isfinite(iw).all()
    )
    ll = metrics.log_likelihood(
        model, x, k=200, progress=False, max_elements=4 * 784 * 8
    )
    assert ll.shape == (8,) and (ll.mean() > e.mean())
    au, var = metrics.active_units(model, x)
    assert 0 <= au <= 3 and var.shape == (3,)
    assert metrics.kl_per_dim(model, x).shape == (3,)
    assert model.sample(2, mean=False).shape == (2, 1, 28, 28)
    assert model.reconstruct(x[:2]).shape == (2, 1, 28, 28)
    loss = -vaekit.elbo(model, x).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_importance_sampled_likelihood_matches_quadrature_in_a_one_dimensional_latent():
    torch.manual_seed(6)
    shape = (1, 2, 3)
    model = vaekit.VAE(
        vaekit.nets.GaussianEncoder.mlp(shape, 1, (8,)),
        sharpened(
            AutoregressiveDecoder(shape, latent_dim=1, hidden=16, z_hidden=8), 2.0
        ),
        1,
    ).double()
    x = all_images(shape).double()[[3, 17, 40, 63]]  # (4, 1, 2, 3)
    grid = torch.linspace(-9, 9, 4001, dtype=torch.float64)  # (G,)
    with torch.no_grad():
        log_joint = (
            model.decode(grid[:, None, None]).log_prob(x)
            + Normal(0.0, 1.0).log_prob(grid)[:, None]
        )  # (G, 4)
    exact = torch.logsumexp(log_joint, 0) + math.log(
        grid[1] - grid[0]
    )  # (4,): log p(x) by the trapezoid rule
    est = metrics.log_likelihood(model, x, k=20_000, progress=False)
    torch.testing.assert_close(est, exact, atol=0.03, rtol=0)
    # summed over all 64 images, p(x) integrates to one
    with torch.no_grad():
        log_joint_all = (
            model.decode(grid[:, None, None]).log_prob(all_images(shape).double())
            + Normal(0.0, 1.0).log_prob(grid)[:, None]
        )
    total = torch.logsumexp(
        torch.logsumexp(log_joint_all, 0) + math.log(grid[1] - grid[0]), 0
    )
    assert abs(float(total)) < 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_models_device_and_dtype(device):
    torch.manual_seed(7)
    model = autoregressive_vae(
        latent_dim=2, encoder_hidden=16, x_shape=(1, 3, 3), hidden=16, z_hidden=8
    )
    model = model.to(device=device, dtype=torch.float64)
    x = all_images((1, 3, 3)).to(device, torch.float64)[:10]
    for value in (
        vaekit.elbo(model, x),
        vaekit.iwae_bound(model, x, k=4),
        metrics.log_likelihood(model, x, k=8, progress=False),
        model.sample(3, mean=False),
        model.sample(3),
    ):
        assert value.device.type == device and value.dtype == torch.float64


def test_meta_device_gives_shapes():
    dec = AutoregressiveDecoder((1, 3, 3), latent_dim=2, hidden=16, z_hidden=8).to(
        "meta"
    )
    lp = dec(torch.empty(4, 5, 2, device="meta")).log_prob(
        torch.empty(5, 1, 3, 3, device="meta")
    )
    assert lp.shape == (4, 5) and lp.device.type == "meta"


def test_input_dropout_only_in_training_mode():
    torch.manual_seed(8)
    dec = AutoregressiveDecoder(
        (1, 28, 28), latent_dim=2, hidden=32, z_hidden=8, dropout=0.5
    )
    x, z = (torch.rand(3, 1, 28, 28) < 0.3).float(), torch.randn(3, 2)
    dec.eval()
    torch.testing.assert_close(dec(z).log_prob(x), dec(z).log_prob(x))
    dec.train()
    assert not torch.allclose(dec(z).log_prob(x), dec(z).log_prob(x))
    assert dec.training, "sampling must leave the mode as it found it"
    dec(z).sample()
    assert dec.training


def test_train_run_recipes_and_evaluate_run_smoke():
    x = vaekit.data.embedded_digits("train").images[:64]
    assert set(RECIPES) >= {
        "MLP decoder",
        "autoregressive",
        "free bits",
        "KL warm-up",
        "short context",
    }
    for name in ("MLP decoder", "short context", "KL warm-up"):
        model, hist = train_run(
            x,
            **RECIPES[name],
            steps=3,
            batch_size=32,
            hidden=16,
            latent_dim=3,
            progress=False,
        )
        assert not model.training and hist.last["step"] == 3
        r = evaluate_run(model, vaekit.data.binarize_static(x[:20]), k=5)
        assert (
            math.isfinite(r["nll"])
            and r["kl"] >= 0
            and 0 <= r["active"] <= 3
            and r["nll_digits"].shape == (20,)
        )
    assert isinstance(model.decoder, AutoregressiveDecoder)


def test_bad_input_errors_name_the_argument():
    dec = AutoregressiveDecoder((1, 3, 3), latent_dim=2, hidden=8, z_hidden=8)
    px = dec(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x must be binary"):
        px.log_prob(torch.full((4, 1, 3, 3), 0.5))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        px.log_prob(torch.full((4, 1, 3, 3), 255.0))
    with pytest.raises(ValueError, match="x must have shape"):
        px.log_prob(torch.zeros(4, 9))
    with pytest.raises(ValueError, match="x's leading shape"):
        px.log_prob(torch.zeros(3, 1, 3, 3))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        px.log_prob(torch.zeros(4, 1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="z must have shape"):
        dec(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="dropout"):
        AutoregressiveDecoder((1, 3, 3), dropout=1.0)
    for context in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match="context must be a positive int"):
            AutoregressiveDecoder((1, 3, 3), context=context)
    with pytest.raises(ValueError, match="hidden"):
        AutoregressiveDecoder((1, 3, 3), hidden=0)
    x = torch.rand(8, 1, 28, 28)
    with pytest.raises(ValueError, match="decoder"):
        train_run(x, decoder="pixelcnn", steps=1)
    with pytest.raises(ValueError, match="context and dropout"):
        train_run(x, decoder="mlp", context=3, steps=1)
    with pytest.raises(ValueError, match="warmup"):
        train_run(x, warmup=1.0, steps=1)
    with pytest.raises(ValueError, match="free_bits"):
        train_run(x, free_bits=-1, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_run(x, steps=0)
    model = autoregressive_vae(latent_dim=2, encoder_hidden=8, hidden=8, z_hidden=8)
    with pytest.raises(
        ValueError, match="x must lie in"
    ):  # metrics' entry point reaches the same check
        metrics.log_likelihood(model, x * 255, k=2, progress=False)
