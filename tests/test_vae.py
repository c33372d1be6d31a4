"""The VAE end to end: shapes and devices, the two ELBO estimators and the importance-sampled
log-likelihood against exact answers, checkpoints through ``fit``, the latent visualisations and
the slider widget, and argument errors that name the argument.

The exact answers come from a VAE whose decoder is linear Gaussian (probabilistic PCA): for it
log p(x) is known in closed form (``vaekit.linear_gaussian``), and so is the ELBO of any
diagonal Gaussian q(z|x).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import vaekit
from vaekit import metrics, objectives
from vaekit.figures import latents as latent_viz
from vaekit.figures import widgets
from vaekit.inference import exact_elbo
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.nets import GaussianEncoder
from vaekit.train import fit

X_DIM, Z_DIM = 6, 2
DEVICES = [
    "cpu",
    "meta",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device"
        ),
    ),
]


class LinearGaussianDecoder(nn.Module):
    """p(x|z) = N(W z + b, sigma^2 I) as a VAE decoder (the decoder of ``LinearGaussian``)."""

    def __init__(self, truth: LinearGaussian):
        super().__init__()
        self.truth, self.x_shape = truth, (truth.x_dim,)

    def forward(self, z):
        return self.truth.decode(z)


@pytest.fixture(scope="module")
def linear_vae():
    """A ``vaekit.VAE`` with a linear Gaussian decoder and a linear encoder that is near, but not
    at, the exact posterior (so the ELBO gap and the gains of importance sampling are visible)."""
    torch.manual_seed(0)
    truth = LinearGaussian.random(
        X_DIM, Z_DIM, sigma=0.7, seed=1, learnable=False, dtype=torch.float64
    )
    encoder = GaussianEncoder(nn.Identity(), X_DIM, Z_DIM, (X_DIM,)).double()
    model = vaekit.VAE(encoder, LinearGaussianDecoder(truth), Z_DIM).double()
    x, _ = truth.sample(64, generator=torch.Generator().manual_seed(2))
    post = truth.posterior(x)
    # The encoder's mean: the exact posterior mean shifted by one posterior standard deviation;
    # its scale: 2.5 times the posterior's.
    w, *_ = torch.linalg.lstsq(
        torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1), post.mean
    )
    std = post.covariance_matrix[0].diagonal().sqrt()
    with torch.no_grad():
        encoder.head.weight[:Z_DIM] = w[:-1].T
        encoder.head.bias[:Z_DIM] = w[-1] + std
        encoder.head.weight[Z_DIM:] = 0
        encoder.head.bias[Z_DIM:] = torch.log(torch.expm1(2.5 * std))  # softplus^-1
    return model, truth, x


# --------------------------------------------------------------------------- statistics


def test_the_closed_form_elbo_is_right(linear_vae):
    """Guard for the reference: at the exact posterior the ELBO is log p(x)."""
    _, truth, x = linear_vae
    post = truth.posterior(x)
    q = Independent(
        Normal(post.mean, post.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()), 1
    )
    # with a diagonal q the gap is KL(q || p(z|x)) > 0; with the exact (full-covariance) one it is 0
    assert torch.allclose(
        objectives.elbo(truth, x, k=1, q=post, analytic_kl=False),
        truth.log_marginal(x),
        atol=1e-9,
    )
    assert (exact_elbo(truth, x, q) < truth.log_marginal(x)).all()


@pytest.mark.parametrize(
    "analytic", [True, False], ids=["B_analytic_kl", "A_sampled_kl"]
)
def test_both_estimators_are_unbiased_for_the_exact_elbo(linear_vae, analytic):
    model, truth, x = linear_vae
    torch.manual_seed(3)
    with torch.no_grad():
        exact = exact_elbo(truth, x, model.encode(x))  # (B,)
        draws = vaekit.elbo(model, x.repeat(4000, 1), k=1, analytic_kl=analytic).view(
            4000, -1
        )  # (R, B) independent
    se = draws.std(0) / math.sqrt(draws.shape[0])
    z = (draws.mean(0) - exact) / se
    assert z.abs().max() < 4.5, f"largest standardised error {z.abs().max():.2f}"
    # tight enough to catch a wrong constant: half a log(2 pi) is 0.92 nats
    assert abs((draws.mean(0) - exact).mean()) < 0.05


def test_analytic_kl_has_lower_variance_here_and_k_samples_average(linear_vae):
    model, _, x = linear_vae
    torch.manual_seed(4)
    xr = x.repeat(2000, 1)  # 2000 independent estimates per example in one call
    with torch.no_grad():
        a = vaekit.elbo(model, xr, analytic_kl=False).view(2000, -1)  # (R, B)
        b = vaekit.elbo(model, xr, analytic_kl=True).view(2000, -1)
        b10 = vaekit.elbo(model, xr, k=10, analytic_kl=True).view(2000, -1)
    assert abs(a.mean() - b.mean()) < 4 * math.sqrt(
        (a.var(0).mean() + b.var(0).mean()) / a.numel()
    )
    # k samples per example: the variance of the reconstruction term falls by 1/k
    ratio = (b10.var(0) / b.var(0)).mean()
    assert 0.07 < ratio < 0.14, (
        f"variance ratio for k = 10 is {ratio:.3f}, expected 0.1"
    )


def test_importance_sampled_nll_lies_between_the_truth_and_the_negative_elbo(
    linear_vae,
):
    model, truth, x = linear_vae
    log_p = truth.log_marginal(x)  # (B,) exact
    torch.manual_seed(5)
    with torch.no_grad():
        elbo = exact_elbo(truth, x, model.encode(x))
    nll = {}
    for k, reps in (
        (1, 2000),
        (10, 1000),
        (100, 500),
        (1000, 100),
    ):  # E[-L_k]: many independent estimates
        nll[k] = (
            -metrics.log_likelihood(model, x.repeat(reps, 1), k=k, progress=False)
            .view(reps, -1)
            .mean(0)
        )
    nll[5000] = -metrics.log_likelihood(model, x, k=5000, progress=False)
    means = [v.mean().item() for v in nll.values()]
    gaps = [
        m + log_p.mean().item() for m in means
    ]  # E[-L_k] - (-log p): about 4.6, 0.2, 0.02, 0.004, 0.001
    assert abs(means[0] + elbo.mean().item()) < 0.1, "L_1 is the ELBO in expectation"
    assert all(a > b for a, b in zip(means[:4], means[1:4])), (
        f"the NLL estimate should fall with k: {means}"
    )
    assert gaps[1] < 0.1 * gaps[0] and gaps[2] < 0.2 * gaps[1], (
        f"gaps to the true NLL {gaps} should shrink about as 1/k"
    )
    for k, v in nll.items():
        assert v.mean() <= -elbo.mean() + 0.05, (
            f"k = {k}: the NLL estimate is above -ELBO"
        )
        if (
            k < 5000
        ):  # averaged over many estimates: their expectation is above the true NLL
            assert v.mean() >= -log_p.mean() - 0.003, (
                f"k = {k}: the mean NLL estimate is below the true NLL"
            )
    assert abs(gaps[4]) < 0.02 and torch.allclose(nll[5000], -log_p, atol=0.1), (
        "L_5000 should match log p(x)"
    )


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_estimators_agree_on_an_mlp_vae(likelihood):
    torch.manual_seed(6)
    model = vaekit.VAE.mlp(latent_dim=4, hidden=(32,), likelihood=likelihood)
    x = torch.rand(16, 1, 28, 28)
    x = torch.bernoulli(x) if likelihood == "bernoulli" else x
    with torch.no_grad():
        xr = x.repeat(1000, 1, 1, 1)
        a = vaekit.elbo(model, xr, analytic_kl=False).view(
            1000, -1
        )  # (R, B) independent estimates
        b = vaekit.elbo(model, xr, analytic_kl=True).view(1000, -1)
        ll = metrics.log_likelihood(model, x, k=2000, progress=False)
    se = ((a.var(0) + b.var(0)) / a.shape[0]).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() / se).max() < 4.5
    assert (ll >= b.mean(0) - 4 * b.std(0) / math.sqrt(b.shape[0])).all()


# --------------------------------------------------------------------------- shapes and devices


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "build",
    [
        lambda: vaekit.VAE.mlp(latent_dim=3, hidden=(16,)),
        lambda: vaekit.VAE.mlp(latent_dim=3, hidden=(16, 8), likelihood="gaussian"),
        lambda: vaekit.VAE.conv(latent_dim=3, hidden=4),
        lambda: vaekit.VAE.conv(
            latent_dim=3, hidden=4, likelihood="gaussian", sigma=0.1
        ),
    ],
    ids=[
        "mlp-bernoulli",
        "mlp-gaussian-learned",
        "conv-bernoulli",
        "conv-gaussian-fixed",
    ],
)
def test_shapes_and_devices(build, device):
    torch.manual_seed(0)
    model = build().to(device)
    x = torch.rand(5, 1, 28, 28).to(device)
    assert model.device.type == device and model.prior.mean.device.type == device
    q = model.encode(x)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    px = model.decode(q.rsample((7,)))  # (7, 5, D) latents
    assert px.batch_shape == (7, 5) and px.event_shape == (1, 28, 28)
    for t in (
        vaekit.elbo(model, x),
        vaekit.elbo(model, x, k=3, analytic_kl=False),
        vaekit.elbo(model, x, beta=4.0),
        vaekit.elbo(model, x, free_bits=0.5),
        vaekit.iwae_bound(model, x, 4),
        metrics.log_likelihood(model, x, k=6, progress=False),
    ):
        assert t.shape == (5,) and t.device.type == device
    s = model.sample(2)
    assert s.shape == (2, 1, 28, 28) and s.device.type == device
    assert model.reconstruct(x).shape == x.shape
    assert metrics.kl_per_dim(model, x).shape == (3,)
    if device != "meta":
        assert all(math.isfinite(v) for v in metrics.evaluate_elbo(model, x).values())
        n, var = metrics.active_units(model, x)
        assert 0 <= n <= 3 and var.shape == (3,)


def test_double_precision_follows_the_model():
    model = vaekit.VAE.mlp(latent_dim=2, hidden=(8,)).double()
    x = torch.bernoulli(torch.rand(3, 1, 28, 28, dtype=torch.float64))
    assert vaekit.elbo(model, x).dtype == torch.float64
    assert model.sample(2).dtype == torch.float64
    assert metrics.log_likelihood(model, x, k=4, progress=False).dtype == torch.float64


# --------------------------------------------------------------------------- metrics on a VAE


def test_active_units_count_switched_off_dimensions_and_kl_adds_up():
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=6, hidden=(32,))
    with torch.no_grad():  # the means of z1..z2 ignore x; the others vary strongly
        model.encoder.head.weight[:2] = 0
        model.encoder.head.weight[2:6] *= 20
    x = torch.bernoulli(torch.rand(200, 1, 28, 28))
    n, var = metrics.active_units(model, x)
    assert n == 4 and (var[:2] < 1e-10).all() and (var[2:6] > 0.01).all()
    with torch.no_grad():
        kl = torch.distributions.kl_divergence(model.encode(x), model.prior).mean()
    assert torch.allclose(
        metrics.kl_per_dim(model, x, batch_size=64).sum(), kl, rtol=1e-5
    )


def test_free_bits_counts_each_dimension_as_at_least_lambda():
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=4, hidden=(16,))
    x = torch.bernoulli(torch.rand(8, 1, 28, 28))
    torch.manual_seed(1)
    t = objectives.elbo_terms(model, x, free_bits=0.3)
    torch.manual_seed(1)
    plain = objectives.elbo_terms(model, x)
    q = model.encode(x)
    kl_d = torch.distributions.kl_divergence(
        q.base_dist, model.prior.base_dist
    )  # (B, D)
    counted = torch.where(kl_d.mean(0) < 0.3, torch.full_like(kl_d, 0.3), kl_d).sum(-1)
    assert torch.allclose(t.elbo, plain.reconstruction - counted, atol=1e-5)
    assert torch.allclose(t.kl, plain.kl, atol=1e-5), "the reported KL is the true KL"


def test_kl_warmup_schedule_inside_fit():
    warm = objectives.KLWarmup(steps=10)
    betas = []
    model = vaekit.VAE.mlp(latent_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.rand(40, 1, 28, 28))

    def objective(m, xb):
        betas.append(warm.beta)
        return -vaekit.elbo(m, xb, beta=warm.beta)

    fit(
        model,
        objective,
        x,
        steps=15,
        batch_size=4,
        callbacks=[warm],
        progress=False,
        device="cpu",
    )
    assert (
        betas[0] == 0.0 and betas[5] == pytest.approx(0.5) and betas[10:] == [1.0] * 5
    )


# --------------------------------------------------------------------------- checkpoints


def test_train_checkpoint_reload_evaluate(tmp_path):
    x = torch.bernoulli(
        torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    )
    ckpt = tmp_path / "vae.pt"

    def train(model, epochs):
        return fit(
            model,
            lambda m, xb: -vaekit.elbo(m, xb),
            x,
            epochs=epochs,
            batch_size=16,
            transform=vaekit.data.binarize,
            checkpoint=ckpt,
            progress=False,
            device="cpu",
        )

    def evaluate(model):
        torch.manual_seed(7)
        return metrics.log_likelihood(model, x[:8], k=50, progress=False)

    torch.manual_seed(0)
    straight = vaekit.VAE.mlp(latent_dim=3, hidden=(16,))
    h = train(straight, 2)
    assert ckpt.exists() and len(h) == 2

    torch.manual_seed(
        123
    )  # different initial weights: everything must come from the file
    reloaded = vaekit.VAE.mlp(latent_dim=3, hidden=(16,))
    h2 = train(reloaded, 2)  # nothing left to do: loads and returns
    assert h2.records == h.records
    for (k, a), b in zip(straight.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(evaluate(straight), evaluate(reloaded))

    h3 = train(reloaded, 3)  # resumes and trains one more epoch
    assert len(h3) == 3 and h3.last["step"] == 3 * 4
    if (
        torch.cuda.is_available()
    ):  # the same file evaluates on the GPU without code changes
        on_gpu = vaekit.VAE.mlp(latent_dim=3, hidden=(16,)).cuda()
        on_gpu.load_state_dict(torch.load(ckpt, map_location="cuda")["model"])
        assert on_gpu.prior.mean.is_cuda
        assert torch.allclose(evaluate(on_gpu).cpu(), evaluate(reloaded), atol=0.05)


# --------------------------------------------------------------------------- latent space tools


def test_gaussian_grid_is_evenly_spaced_in_prior_probability():
    g = latent_viz.gaussian_grid(5, margin=0.1)
    assert g.shape == (25, 2)
    u = Normal(0.0, 1.0).cdf(g)
    assert torch.allclose(
        u[:5, 0], torch.linspace(0.1, 0.9, 5), atol=1e-6
    )  # first row: z1 left to right
    assert torch.allclose(
        u[::5, 1], torch.linspace(0.9, 0.1, 5), atol=1e-6
    )  # first column: z2 top to bottom
    assert torch.allclose(
        u[:, 1].reshape(5, 5), u[::5, 1][:, None].expand(5, 5)
    )  # rows share z2


def test_manifold_interpolation_and_traversal():
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=2, hidden=(16,))
    images = latent_viz.manifold(model, n=4)
    assert images.shape == (16, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    fig = latent_viz.manifold_figure(model, n=4)
    assert fig.data[0].z.dtype == np.uint8 and fig.data[0].z.shape == (4 * 29 - 1,) * 2
    x = torch.bernoulli(torch.rand(2, 1, 28, 28))
    path = latent_viz.interpolate(model, x[0], x[1], steps=5)
    assert path.shape == (5, 1, 28, 28)
    assert torch.allclose(path[0], model.reconstruct(x[:1])[0], atol=1e-6)
    assert torch.allclose(path[-1], model.reconstruct(x[1:])[0], atol=1e-6)
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    arc = latent_viz.interpolation_path(a, b, 7, mode="spherical")
    assert torch.allclose(arc.norm(dim=1), torch.full((7,), 3.0), atol=1e-5)
    assert latent_viz.interpolation_path(a, b, 7).norm(dim=1)[3] == pytest.approx(
        3 / math.sqrt(2)
    )
    z0 = torch.tensor([0.5, -0.5])
    rows = latent_viz.traversal(model, z0, [-1.0, 0.0, 1.0], dims=[1])
    assert rows.shape == (1, 3, 1, 28, 28)
    expected = latent_viz.decode_mean(
        model, torch.tensor([[0.5, -1.0], [0.5, 0.0], [0.5, 1.0]])
    )
    assert torch.allclose(rows[0], expected)


def test_latent_sliders_redraw_and_static_fallback():
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=3, hidden=(16,))
    z0 = torch.tensor([0.2, -3.4, 1.0])
    panel = widgets.latent_sliders(model, z0)
    assert [s.description for s in panel.sliders] == ["z1", "z2", "z3"]
    assert panel.sliders[1].min <= -3.4 and torch.allclose(
        panel.latent(), z0, atol=0.03
    )
    before = np.array(panel.figure.data[0].z)
    expected = latent_viz.decode_mean(model, panel.latent()[None])[0, 0].flip(0).numpy()
    assert np.allclose(before, expected)
    panel.sliders[0].value = 2.0
    after = np.array(panel.figure.data[0].z)
    assert not np.allclose(before, after) and "2.00" in panel.figure.layout.title.text
    panel.set_latent(z0)
    assert np.allclose(np.array(panel.figure.data[0].z), before, atol=1e-2)
    fig = widgets.static_sliders(model, z0, values=(-1, 0, 1))
    assert fig.data[0].z.shape == (3 * 29 - 1, 3 * 29 - 1)
    assert [a.text for a in fig.layout.annotations] == ["z1", "z2", "z3"]


def test_traversal_explorer_moves_one_latent_of_the_chosen_model():
    torch.manual_seed(0)
    models = {
        "a": vaekit.VAE.mlp(x_shape=(1, 8, 8), latent_dim=3, hidden=(16,)),
        "b": vaekit.VAE.mlp(x_shape=(1, 8, 8), latent_dim=2, hidden=(16,)),
    }
    z0 = {"a": torch.tensor([0.2, -1.0, 0.5]), "b": torch.tensor([1.0, 0.3])}
    panel = widgets.TraversalExplorer(
        models, z0, labels={"a": ["x", "y", "none"], "b": ["shape", "scale"]}
    )
    assert (
        panel.slider.description == "z value"
        and panel.slider.value == pytest.approx(0.2)
    )
    before = np.array(panel.figure.data[0].z)
    assert np.allclose(
        before,
        latent_viz.decode_mean(models["a"], z0["a"][None])[0, 0].flip(0).numpy(),
        atol=1e-2,
    )
    panel.latent_menu.value = 1  # another latent: the slider starts at its value
    assert (
        panel.slider.value == pytest.approx(-1.0)
        and "y = -1.00" in panel.figure.layout.title.text
    )
    panel.slider.value = 2.0
    assert torch.allclose(panel.latent(), torch.tensor([0.2, 2.0, 0.5]))
    expected = (
        latent_viz.decode_mean(models["a"], torch.tensor([[0.2, 2.0, 0.5]]))[0, 0]
        .flip(0)
        .numpy()
    )
    assert np.allclose(np.array(panel.figure.data[0].z), expected)
    panel.model_menu.value = "b"  # another model: its first latent, at its value
    assert [o[0] for o in panel.latent_menu.options] == [
        "shape",
        "scale",
    ] and panel.latent_menu.value == 0
    assert panel.slider.value == pytest.approx(1.0) and torch.allclose(
        panel.latent(), z0["b"]
    )
    with pytest.raises(ValueError, match="same keys"):
        widgets.TraversalExplorer(models, {"a": z0["a"]})
    with pytest.raises(ValueError, match="latent dimensions"):
        widgets.TraversalExplorer(models, {"a": z0["b"], "b": z0["b"]})


# --------------------------------------------------------------------------- errors name the argument


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda m, x: vaekit.elbo(m, x.long()), TypeError, "x"),
        (lambda m, x: vaekit.elbo(m, x, k=0), ValueError, "k"),
        (lambda m, x: vaekit.elbo(m, x, beta=-1.0), ValueError, "beta"),
        (lambda m, x: vaekit.elbo(m, x, free_bits=-0.1), ValueError, "free_bits"),
        (lambda m, x: vaekit.elbo(m, x[:, :, :14]), ValueError, "x"),
        (lambda m, x: metrics.log_likelihood(m, x, k=0), ValueError, "k"),
        (lambda m, x: metrics.log_likelihood(m, x.long()), TypeError, "x"),
        (lambda m, x: m.decode(torch.zeros(2, 5)), ValueError, "z"),
        (lambda m, x: m.sample(0), ValueError, "n"),
        (lambda m, x: vaekit.VAE.mlp(likelihood="poisson"), ValueError, "likelihood"),
        (
            lambda m, x: vaekit.VAE.mlp(likelihood="gaussian", sigma=-1.0),
            ValueError,
            "sigma",
        ),
        (
            lambda m, x: fit(
                m, lambda mm, xb: -vaekit.elbo(mm, xb), x, steps=0, progress=False
            ),
            ValueError,
            "steps",
        ),
        (lambda m, x: objectives.KLWarmup(steps=0), ValueError, "steps"),
        (lambda m, x: latent_viz.gaussian_grid(1), ValueError, "n"),
        (lambda m, x: latent_viz.manifold(m), ValueError, "latent_dim"),
        (
            lambda m, x: latent_viz.interpolation_path(torch.zeros(3), torch.zeros(4)),
            ValueError,
            "z_a and z_b",
        ),
        (
            lambda m, x: latent_viz.interpolation_path(
                torch.zeros(3), torch.ones(3), mode="cubic"
            ),
            ValueError,
            "mode",
        ),
        (
            lambda m, x: latent_viz.traversal(m, torch.zeros(3), [0.0], dims=[5]),
            ValueError,
            "dims",
        ),
        (lambda m, x: widgets.latent_sliders(m, torch.zeros(4)), ValueError, "z0"),
        (lambda m, x: widgets.latent_sliders(m, torch.zeros(1, 3)), ValueError, "z0"),
    ],
)
def test_bad_input_names_the_argument(call, error, name):
    model = vaekit.VAE.mlp(latent_dim=3, hidden=(8,))
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))
    with pytest.raises(error, match=rf"\b{name}\b"):
        call(model, x)
