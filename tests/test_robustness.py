"""Bad input fails at once with a message naming the argument: data outside a Bernoulli likelihood's
[0, 1], the wrong dtype or device, empty batches, and the edge inputs of the metrics and the mixture."""

import pytest
import torch

import vaekit
from vaekit import metrics, objectives
from vaekit.models.mixture import GaussianMixture


@pytest.fixture(scope="module")
def digits():
    return vaekit.data.embedded_digits("test").images[:64]


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return vaekit.VAE.mlp(latent_dim=3, hidden=(16,))


BOUNDS = {
    "elbo": lambda m, x: objectives.elbo(m, x),
    "elbo_terms": lambda m, x: objectives.elbo_terms(m, x),
    "iwae_bound": lambda m, x: objectives.iwae_bound(m, x, 3),
    "vae_k_bound": lambda m, x: objectives.vae_k_bound(m, x, 3),
    "log_weights": lambda m, x: objectives.log_weights(m, x, 3),
    "log_likelihood": lambda m, x: metrics.log_likelihood(m, x, k=4, progress=False),
    "evaluate_elbo": lambda m, x: metrics.evaluate_elbo(m, x, batch_size=16),
}


@pytest.mark.parametrize("bound", BOUNDS)
def test_bernoulli_bounds_reject_pixels_outside_unit_interval(vae, digits, bound):
    with pytest.raises(
        ValueError,
        match=r"x must lie in \[0, 1\] for a Bernoulli likelihood, got values in \[0, 255\]; "
        r"scale 0-255 pixels with x / 255",
    ):
        BOUNDS[bound](vae, 255 * digits)
    late = digits.clone()
    late[
        -1, 0, 0, 0
    ] = -0.5  # only in the last batch (evaluate_elbo, log_likelihood work in batches)
    with pytest.raises(
        ValueError, match=r"x must lie in \[0, 1\].*got values in \[-0.5, 1\]"
    ):
        BOUNDS[bound](vae, late)
    nan = digits.clone()
    nan[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        BOUNDS[bound](vae, nan)
    assert torch.isfinite(
        torch.as_tensor(
            BOUNDS[bound](vae, digits)[0]
            if bound == "elbo_terms"
            else list(BOUNDS[bound](vae, digits).values())
            if bound == "evaluate_elbo"
            else BOUNDS[bound](vae, digits)
        )
    ).all()


def test_gaussian_likelihood_accepts_any_real_data(digits):
    torch.manual_seed(0)
    model = vaekit.VAE.mlp(latent_dim=3, hidden=(16,), likelihood="gaussian", sigma=0.5)
    assert torch.isfinite(objectives.elbo(model, 3 * digits - 1)).all()
    assert torch.isfinite(
        metrics.log_likelihood(model, 3 * digits - 1, k=4, progress=False)
    ).all()


@pytest.mark.parametrize("bound", BOUNDS)
def test_bounds_name_dtype_and_emptiness(vae, digits, bound):
    with pytest.raises(
        TypeError,
        match="x has dtype torch.float64 but the model's parameters are torch.float32",
    ):
        BOUNDS[bound](vae, digits.double())
    with pytest.raises(
        ValueError,
        match=r"x must hold at least one example along dimension 0, got shape \(0, 1, 28, 28\)",
    ):
        BOUNDS[bound](vae, digits[:0])
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        BOUNDS[bound](vae, (255 * digits).byte())


@pytest.mark.parametrize("bound", ["elbo", "iwae_bound", "log_weights"])
def test_bounds_name_a_device_mismatch(vae, digits, bound):
    with pytest.raises(ValueError, match="x is on meta but the model is on cpu"):
        BOUNDS[bound](vae, digits.to("meta"))


def test_binarize_rejects_intensities_outside_unit_interval(digits, vae):
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] for binarization"):
        vaekit.data.binarize(255 * digits)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] for binarization"):
        vaekit.data.binarize_static(digits - 0.1)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        vaekit.data.binarize((255 * digits).byte())
    with pytest.raises(
        ValueError, match=r"x must lie in \[0, 1\] for binarization"
    ):  # fit's first batch
        vaekit.fit(
            vae,
            lambda m, xb: -vaekit.elbo(m, xb),
            255 * digits,
            epochs=1,
            batch_size=32,
            progress=False,
            device="cpu",
            transform=vaekit.data.binarize,
        )


def test_checks_can_be_switched_off_and_are_restored(vae, digits):
    with vaekit.utils.input_checks(False):
        assert not vaekit.utils.value_checks_enabled()
        objectives.elbo(
            vae, 255 * digits
        )  # the caller's responsibility inside the block
    assert vaekit.utils.value_checks_enabled()
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        objectives.elbo(vae, 255 * digits)


def test_evaluate_elbo_sums_in_float64(vae):
    x = vaekit.data.embedded_digits("train").images[:3000]
    torch.manual_seed(5)
    got = metrics.evaluate_elbo(vae, x, batch_size=1000)
    torch.manual_seed(5)
    with torch.no_grad():
        terms = [objectives.elbo_terms(vae, xb) for xb in x.split(1000)]
    exact = sum(t.elbo.double().sum() for t in terms) / len(x)
    assert got["elbo"] == pytest.approx(float(exact), rel=1e-12, abs=0)
    float32 = float(sum(t.elbo.sum() for t in terms) / len(x))
    assert float32 != float(exact), "the float32 sum this replaces differs"


def test_edge_inputs_of_the_metrics_raise(vae, digits):
    with pytest.raises(ValueError, match="at least two examples"):
        metrics.active_units(vae, digits[:1])
    with pytest.raises(ValueError, match="at least one example"):
        metrics.active_units(vae, digits[:0])
    with pytest.raises(ValueError, match="at least one example"):
        metrics.kl_per_dim(vae, digits[:0])
    count, var = metrics.active_units(vae, digits[:2])
    assert var.shape == (3,) and torch.isfinite(var).all()


@pytest.mark.parametrize("codes", [[0, 1, 4], [-1, 0, 1], [0, 1, 7]])
def test_codebook_metrics_reject_codes_out_of_range(codes):
    idx = torch.tensor(codes)
    for fn in (
        metrics.codebook_perplexity,
        metrics.dead_code_fraction,
        metrics.codebook_usage,
    ):
        with pytest.raises(
            ValueError, match=r"indices must be codes in \[0, 3\] \(num_codes=4\)"
        ):
            fn(idx, 4)


def test_codebook_metrics_in_range():
    idx = torch.tensor([0, 1, 2, 3, 3, 3])
    assert metrics.codebook_perplexity(idx, 4) == pytest.approx(
        float(
            torch.exp(
                torch.distributions.Categorical(
                    probs=torch.tensor([1, 1, 1, 3]) / 6
                ).entropy()
            )
        )
    )
    assert metrics.dead_code_fraction(idx, 5) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="num_codes must be a positive int"):
        metrics.codebook_perplexity(idx, 0)


def test_mixture_decode_rejects_indices_out_of_range():
    gm = GaussianMixture(torch.tensor([[0.0, 0.0], [3.0, 3.0]]))
    with pytest.raises(
        ValueError,
        match=r"z must be component indices in \[0, 1\], got values in \[-1, 0\]",
    ):
        gm.decode(torch.tensor([0, -1]))
    with pytest.raises(ValueError, match=r"z must be component indices in \[0, 1\]"):
        gm.decode(torch.tensor([2]))
    assert torch.equal(
        gm.decode(torch.tensor([1, 0])).mean, torch.tensor([[3.0, 3.0], [0.0, 0.0]])
    )


def test_integer_latents_are_refused_naming_z():
    model = vaekit.VAE.mlp(latent_dim=2, hidden=(8,))
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        model.decode(torch.zeros(3, 2, dtype=torch.int64))
    assert model.decode(torch.zeros(3, 2)).mean.shape[0] == 3
