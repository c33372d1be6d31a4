"""The fast paths give the numbers of the plain ones: chunked NLL equals unchunked on the same
samples and is exact with the exact posterior, bfloat16 autocast stays within its stated
tolerance, and compiled training and evaluation follow the eager ones."""

import math
import shutil

import pytest
import torch

import vaekit
from vaekit import metrics
from vaekit.inference import Amortized
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.train import bf16_autocast_available, fit

needs_compiler = pytest.mark.skipif(
    not (shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")),
    reason="torch.compile on CPU needs a C compiler",
)
needs_bf16 = pytest.mark.skipif(
    not bf16_autocast_available("cpu"), reason="this CPU has no bfloat16 kernels"
)


def digits(n, split="test", seed=0):
    return vaekit.data.binarize_static(
        vaekit.data.embedded_digits(split).images[:n], seed=seed
    )


@pytest.fixture(scope="module")
def trained_vae():
    """A small VAE trained for a few epochs, so that its logits are as confident as a real model's."""
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=8, hidden=(128,))
    x = vaekit.data.embedded_digits("train").images[:2000]
    fit(
        model,
        lambda m, xb: -vaekit.elbo(m, xb),
        x,
        epochs=5,
        batch_size=100,
        lr=3e-3,
        transform=vaekit.data.binarize,
        progress=False,
        device="cpu",
    )
    return model


def reference_log_likelihood(model, x, k, batch_size):
    """The estimate written out: per batch, all k samples in one decoder call."""
    out = []
    for xb in x.split(batch_size):
        q = model.encode(xb)
        z = q.sample((k,))  # (k, b, D)
        lw = (
            model.decode(z).log_prob(xb) + model.prior.log_prob(z) - q.log_prob(z)
        )  # (k, b)
        out.append(torch.logsumexp(lw, 0) - math.log(k))
    return torch.cat(out)


@torch.no_grad()
def test_chunked_log_likelihood_equals_unchunked_on_the_same_samples(trained_vae):
    x, k = digits(6), 300
    torch.manual_seed(3)
    ref = reference_log_likelihood(trained_vae, x, k, batch_size=3)
    results = []
    for max_elements in (
        2**25,
        784 * 3 * 40,
        784 * 3 * 7,
    ):  # one chunk; 8 chunks; 43 chunks of 6 or 7 samples
        torch.manual_seed(3)
        results.append(
            metrics.log_likelihood(
                trained_vae,
                x,
                k,
                batch_size=3,
                max_elements=max_elements,
                progress=False,
            )
        )
    for r in results:
        assert r.shape == (6,)
        assert torch.allclose(r, ref, atol=1e-3, rtol=0), (
            f"chunked estimate {r} differs from unchunked {ref}"
        )
    assert (ref < 0).all() and (ref > -400).all()


@torch.no_grad()
def test_log_likelihood_is_exact_with_the_exact_posterior():
    # Every importance weight equals p(x), so any k and any chunking give log p(x) exactly:
    # a missing log k, a sign or a chunk counted twice would show.
    lg = LinearGaussian.random(x_dim=6, z_dim=2, sigma=0.5, seed=1, dtype=torch.float64)
    x, _ = lg.sample(10, generator=torch.Generator().manual_seed(2))
    exact = lg.log_marginal(x)
    for k, max_elements in ((1, None), (37, 6 * 5), (500, 6 * 64)):
        est = metrics.log_likelihood(
            Amortized(lg.posterior, lg), x, k, max_elements=max_elements, progress=False
        )
        assert est.dtype == torch.float64
        assert torch.allclose(est, exact, rtol=0, atol=1e-9), (
            f"k={k}: {est} vs exact {exact}"
        )


def test_chunk_budget_is_cache_sized_on_cpu_and_arguments_are_checked():
    assert metrics.chunk_elements(torch.device("cpu")) == 2**19
    model = vaekit.VAE.mlp(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="max_elements must be a positive int"):
        metrics.log_likelihood(model, digits(2), 10, max_elements=0, progress=False)
    with pytest.raises(ValueError, match="k must be a positive int"):
        metrics.log_likelihood(model, digits(2), 0, progress=False)


@needs_bf16
@torch.no_grad()
def test_bf16_log_likelihood_within_stated_tolerance(trained_vae):
    # Stated tolerance: bfloat16 autocast of the decoder moves each estimate by less than 0.25 nats
    # and the mean over examples by less than 0.05 nats (the samples z are the same).
    x, k = digits(50), 200
    torch.manual_seed(4)
    fp32 = metrics.log_likelihood(trained_vae, x, k, progress=False)
    torch.manual_seed(4)
    bf16 = metrics.log_likelihood(trained_vae, x, k, progress=False, autocast=True)
    diff = bf16 - fp32
    assert diff.abs().max() > 0, (
        "autocast=True must actually run the decoder in bfloat16"
    )
    assert diff.abs().max() < 0.25, (
        f"largest bf16 - fp32 difference {diff.abs().max():.3f} nats"
    )
    assert diff.mean().abs() < 0.05, (
        f"mean bf16 - fp32 difference {diff.mean():.3f} nats"
    )


@torch.no_grad()
def test_bf16_autocast_elbo_within_stated_tolerance(trained_vae):
    # fit(autocast=True) runs the objective under bfloat16 autocast: on the same samples the ELBO
    # moves by less than 0.5% of its value per example and 0.1 nats on average.
    x = digits(256, split="train")
    torch.manual_seed(5)
    fp32 = vaekit.elbo(trained_vae, x)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = vaekit.elbo(trained_vae, x).float()
    rel = ((bf16 - fp32) / fp32).abs()
    assert rel.max() > 0 and rel.max() < 5e-3, (
        f"largest relative ELBO change {rel.max():.2e}"
    )
    assert (bf16 - fp32).mean().abs() < 0.1


@needs_bf16
def test_bf16_fit_follows_the_fp32_loss_curve():
    x = vaekit.data.embedded_digits("train").images[:1000]
    curves = {}
    for autocast in (False, True):
        torch.manual_seed(0)
        model = vaekit.VAE.mlp(latent_dim=8, hidden=(64,))
        curves[autocast] = fit(
            model,
            lambda m, xb: -vaekit.elbo(m, xb),
            x,
            epochs=4,
            batch_size=100,
            lr=3e-3,
            transform=vaekit.data.binarize,
            autocast=autocast,
            progress=False,
            device="cpu",
        )["loss"]
    assert curves[False][-1] < curves[False][0] - 50, "the fp32 run must learn"
    for a, b in zip(curves[False], curves[True]):
        assert abs(a - b) < 0.02 * a, (
            f"bf16 loss curve {curves[True]} strays from fp32 {curves[False]}"
        )


@pytest.mark.slow
@needs_compiler
def test_compiled_fit_follows_eager():
    # With inductor drawing its random numbers like eager (fallback_random), compiled training sees
    # the same binarizations and samples, so the loss curves agree up to floating-point rounding.
    from torch._inductor import config

    x = vaekit.data.embedded_digits("train").images[:640]
    curves = {}
    with config.patch(fallback_random=True):
        for compile in (False, True):
            torch.manual_seed(0)
            model = vaekit.VAE.mlp(latent_dim=4, hidden=(32,))
            curves[compile] = fit(
                model,
                lambda m, xb: -vaekit.elbo(m, xb),
                x,
                epochs=3,
                batch_size=64,
                transform=vaekit.data.binarize,
                compile=compile,
                progress=False,
                device="cpu",
            )["loss"]
    for a, b in zip(curves[False], curves[True]):
        assert abs(a - b) < 1e-3 * abs(a), (
            f"compiled loss curve {curves[True]} vs eager {curves[False]}"
        )


@pytest.mark.slow
@needs_compiler
@torch.no_grad()
def test_compiled_log_likelihood_equals_eager(trained_vae):
    x = digits(4)
    torch.manual_seed(6)
    eager = metrics.log_likelihood(trained_vae, x, 100, progress=False)
    torch.manual_seed(6)
    compiled = metrics.log_likelihood(trained_vae, x, 100, progress=False, compile=True)
    assert torch.allclose(eager, compiled, atol=1e-3), (
        f"compiled {compiled} vs eager {eager}"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_fit_and_log_likelihood_on_cuda(autocast):
    """The GPU path end to end: data moved once, fused Adam, no host sync per step, results on the device."""
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=4, hidden=(64,))
    x = vaekit.data.embedded_digits("train").images[:1024]
    history = fit(
        model,
        lambda m, xb: -vaekit.elbo(m, xb),
        x,
        epochs=3,
        batch_size=128,
        lr=3e-3,
        device="cuda",
        transform=vaekit.data.binarize,
        autocast=autocast,
        progress=False,
    )
    assert all(p.is_cuda for p in model.parameters())
    assert (
        all(math.isfinite(v) for v in history["loss"])
        and history["loss"][-1] < history["loss"][0]
    )
    test = digits(16).cuda()
    ll = metrics.log_likelihood(model, test, k=256, progress=False, autocast=autocast)
    with torch.no_grad():
        elbo = vaekit.elbo(
            model, test, k=64
        )  # the ELBO averaged over 64 samples per digit
    assert ll.is_cuda and ll.shape == (16,) and torch.isfinite(ll).all()
    assert ll.mean() > elbo.mean() - 0.5  # L_256 lies above the ELBO
