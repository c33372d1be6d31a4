"""The two-level VQ-VAE, the conditional PixelCNN and the prior over bottom codes given the top."""

import itertools
import math

import pytest
import torch

from vaekit import fit
from vaekit.models import pixelcnn, vqvae, vqvae2
from vaekit.models.pixelcnn import PixelCNN
from vaekit.models.vqvae2 import BottomPrior, FineVQVAE, VQVAE2


def perturbed(module, scale=0.5):
    """Non-trivial conditionals: random weights pushed away from their small initial values."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


# --- the conditional PixelCNN --------------------------------------------------------------------
def test_an_unconditional_pixelcnn_has_no_conditioning_parameters():
    names = {
        n.split(".")[-2]
        for n, _ in PixelCNN(5, channels=8, layers=3).named_parameters()
    }
    assert not names & {"v_cond", "h_cond", "cond_proj", "class_embed"}
    names = {
        n.split(".")[-2]
        for n, _ in PixelCNN(
            5, channels=8, layers=3, cond_channels=2, num_classes=3
        ).named_parameters()
    }
    assert {"v_cond", "h_cond", "cond_proj", "class_embed"} <= names


def test_conditional_pixelcnn_sees_no_future_code_and_the_conditioning_reaches_every_position():
    torch.manual_seed(0)
    h, w, cc = 4, 5, 3
    prior = perturbed(
        PixelCNN(4, grid=(h, w), channels=8, layers=5, cond_channels=cc, num_classes=3)
    ).double()
    z = torch.randint(4, (1, h, w))
    cond = torch.randn(1, cc, h, w, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1])
    emb = {}

    def keep(module, inputs, output):
        output.retain_grad()
        emb["e"] = output

    hook = prior.embed.register_forward_hook(keep)
    try:
        for q in range(h * w):
            cond.grad = None
            prior.logits(z, cond, labels)[0, :, q // w, q % w].pow(2).sum().backward()
            g = (
                emb["e"].grad[0].abs().sum(-1).reshape(-1)
            )  # influence of each code on position q
            assert (g[q:] == 0).all(), (
                f"position {divmod(q, w)} sees itself or a later code"
            )
            assert (g[:q] > 0).all(), (
                f"position {divmod(q, w)} is blind to an earlier code"
            )
            assert cond.grad[0, :, q // w, q % w].abs().sum() > 0, (
                f"the conditioning does not reach {divmod(q, w)}"
            )
    finally:
        hook.remove()


def test_bottom_prior_sees_no_future_bottom_code_and_every_position_sees_the_top_grid():
    torch.manual_seed(0)
    prior = perturbed(BottomPrior(3, 4, channels=8, layers=3)).double()
    top, bottom = torch.randint(4, (1, 3, 3)), torch.randint(3, (1, 6, 6))
    top_emb = {}

    def keep(module, inputs, output):
        output.retain_grad()
        top_emb["e"] = output

    hook = prior.top_embed.register_forward_hook(keep)
    try:
        for q in range(36):
            prior.logits(bottom, top)[0, :, q // 6, q % 6].pow(2).sum().backward()
            g = (
                top_emb["e"].grad[0].abs().sum()
            )  # influence of the top codes on bottom position q
            assert g > 0, f"the top grid does not reach bottom position {divmod(q, 6)}"
    finally:
        hook.remove()
    # changing one bottom code changes no earlier position's conditional
    with torch.no_grad():
        base = prior.logits(bottom, top)
        later = bottom.clone()
        later[0, 3, 2] = (later[0, 3, 2] + 1) % 3
        changed = (prior.logits(later, top) - base).abs().sum(1)[0].reshape(-1)  # (36,)
    assert (changed[: 3 * 6 + 2 + 1] == 0).all() and changed[3 * 6 + 3 :].sum() > 0


def test_conditional_log_probs_sum_to_one_over_a_tiny_code_space():
    torch.manual_seed(0)
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).view(
        -1, 2, 2
    )  # all 81 grids, K = 3
    prior = perturbed(
        PixelCNN(3, grid=(2, 2), channels=8, layers=3, cond_channels=2, num_classes=4)
    )
    cond = torch.randn(1, 2, 2, 2).expand(81, -1, -1, -1)
    for label in range(4):
        logp = prior.log_prob(grids, cond, torch.full((81,), label))
        assert logp.std() > 0.3, "the test needs a non-uniform distribution"
        torch.testing.assert_close(
            torch.logsumexp(logp.double(), 0).item(), 0.0, atol=1e-5, rtol=0
        )
    marginal = prior.log_prob(grids, cond)  # sum over classes with p(y) = 1/4
    torch.testing.assert_close(
        torch.logsumexp(marginal.double(), 0).item(), 0.0, atol=1e-5, rtol=0
    )
    per_class = torch.stack(
        [prior.log_prob(grids, cond, torch.full((81,), y)) for y in range(4)]
    )  # (4, 81)
    torch.testing.assert_close(marginal, torch.logsumexp(per_class, 0) - math.log(4))


def test_two_level_prior_sums_to_one_over_all_pairs_of_top_and_bottom_grids():
    torch.manual_seed(0)
    top_prior = perturbed(PixelCNN(2, grid=(1, 1), channels=8, layers=2, num_classes=3))
    bottom_prior = perturbed(BottomPrior(2, 2, channels=8, layers=2))
    tops = torch.tensor([[[0]], [[1]]])  # all 1x1 top grids, K_top = 2
    bottoms = torch.tensor(list(itertools.product(range(2), repeat=4))).view(
        -1, 2, 2
    )  # all 2x2 bottom grids
    t = tops.repeat_interleave(16, 0)  # (32, 1, 1)
    b = bottoms.repeat(2, 1, 1)  # (32, 2, 2)
    logp = top_prior.log_prob(t) + bottom_prior.log_prob(b, t)
    assert logp.std() > 0.3
    torch.testing.assert_close(
        torch.logsumexp(logp.double(), 0).item(), 0.0, atol=1e-5, rtol=0
    )


def test_conditional_samples_follow_log_prob():
    torch.manual_seed(0)
    prior = perturbed(PixelCNN(3, grid=(1, 2), channels=8, layers=2, num_classes=2))
    labels = torch.ones(6000, dtype=torch.long)
    s = prior.sample(6000, labels=labels, generator=torch.Generator().manual_seed(1))
    grids = torch.tensor(list(itertools.product(range(3), repeat=2))).view(9, 1, 2)
    p = prior.log_prob(grids, labels=torch.ones(9, dtype=torch.long)).exp().detach()
    freq = torch.stack([(s == g).all(-1).all(-1).float().mean() for g in grids])
    se = (p * (1 - p) / 6000).sqrt()
    assert ((freq - p).abs() < 4 * se + 1e-3).all(), (freq, p)


def test_bottom_prior_sampling_row_by_row_matches_the_full_grid_conditionals():
    torch.manual_seed(0)
    prior = perturbed(BottomPrior(3, 4, channels=8, layers=3)).eval()
    top, bottom = torch.randint(4, (2, 7, 7)), torch.randint(3, (2, 14, 14))
    with torch.no_grad():
        cond = prior.features(top)
        full = prior.pixelcnn.logits(bottom, cond)
        for i in (0, 5, 13):
            torch.testing.assert_close(
                prior.pixelcnn.logits(bottom[:, : i + 1], cond[:, :, : i + 1])[:, :, i],
                full[:, :, i],
            )
    s = prior.sample(top, generator=torch.Generator().manual_seed(0))
    assert (
        s.shape == (2, 14, 14)
        and s.dtype == torch.int64
        and 0 <= s.min()
        and s.max() <= 2
    )


# --- the two-level VQ-VAE ------------------------------------------------------------------------
def test_two_level_pass_shapes_and_the_bound_decomposes_exactly_into_its_terms():
    torch.manual_seed(0)
    model = VQVAE2(num_codes_top=5, num_codes_bottom=3, code_dim=4, hidden=8).eval()
    x = torch.rand(6, 1, 28, 28).bernoulli()
    out = model(x)
    assert out.top.indices.shape == (6, 7, 7) and out.bottom.indices.shape == (
        6,
        14,
        14,
    )
    assert out.px.mean.shape == (6, 1, 28, 28)
    assert model.code_bits == pytest.approx(49 * math.log2(5) + 196 * math.log2(3))
    top_prior = PixelCNN(5, channels=8, layers=2, num_classes=3)
    bottom_prior = BottomPrior(3, 5, channels=8, layers=2)
    terms = model.bound_terms(x, top_prior, bottom_prior, batch_size=4)
    top, bottom = model.codes(x)
    with torch.no_grad():
        rec = -model.decode_indices(top, bottom).log_prob(x)
        torch.testing.assert_close(terms.reconstruction, rec)
        torch.testing.assert_close(terms.top, -top_prior.log_prob(top))
        torch.testing.assert_close(terms.bottom, -bottom_prior.log_prob(bottom, top))
        torch.testing.assert_close(out.px.log_prob(x), -rec)
        torch.testing.assert_close(
            terms.total,
            rec - top_prior.log_prob(top) - bottom_prior.log_prob(bottom, top),
        )
    assert (terms.top > 0).all() and (terms.bottom > 0).all()


def test_objective_is_reconstruction_plus_both_quantizer_losses_and_training_lowers_it():
    torch.manual_seed(0)
    model = VQVAE2(num_codes_top=4, num_codes_bottom=3, code_dim=4, hidden=8)
    x = torch.rand(64, 1, 28, 28).round()
    with torch.no_grad():
        model.eval()
        logs = vqvae2.objective(model, x[:8])
        out = model(x[:8])
    torch.testing.assert_close(
        logs["loss"], logs["reconstruction"] + out.top.loss + out.bottom.loss
    )
    h = fit(
        model,
        vqvae2.objective,
        x,
        steps=30,
        batch_size=32,
        lr=3e-3,
        device="cpu",
        progress=False,
    )
    assert h["reconstruction"][-1] < h["reconstruction"][0]


def test_fine_vqvae_is_a_one_level_model_on_the_bottom_grid():
    torch.manual_seed(0)
    model = FineVQVAE(num_codes=4, code_dim=4, hidden=8)
    x = torch.rand(5, 1, 28, 28).round()
    assert model.codes(x).shape == (5, 14, 14) and model.code_bits == 196 * 2
    prior = PixelCNN(4, grid=(14, 14), channels=8, layers=2, num_classes=2)
    bound = model.nll_bound(x, prior)
    with torch.no_grad():
        codes = model.codes(x)
        torch.testing.assert_close(
            bound, -model.decode_indices(codes).log_prob(x) - prior.log_prob(codes)
        )
    logs = vqvae.objective(model, x)
    assert logs["loss"].shape == (5,)


def test_ancestral_and_class_conditional_sampling():
    torch.manual_seed(0)
    model = VQVAE2(num_codes_top=4, num_codes_bottom=3, code_dim=4, hidden=8)
    top_prior = PixelCNN(4, channels=8, layers=2, num_classes=10)
    bottom_prior = BottomPrior(3, 4, channels=8, layers=2)
    s = model.sample(
        top_prior,
        bottom_prior,
        3,
        labels=torch.tensor([0, 4, 9]),
        generator=torch.Generator().manual_seed(0),
    )
    assert s.shape == (3, 1, 28, 28) and 0 <= s.min() and s.max() <= 1
    fit(
        bottom_prior,
        vqvae2.bottom_nll,
        (torch.randint(3, (16, 14, 14)), torch.randint(4, (16, 7, 7))),
        steps=2,
        batch_size=8,
        device="cpu",
        progress=False,
    )
    fit(
        top_prior,
        pixelcnn.nll,
        (torch.randint(4, (16, 7, 7)), torch.randint(10, (16,))),
        steps=2,
        batch_size=8,
        device="cpu",
        progress=False,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_follow_the_module(dtype):
    device = torch.device("meta")
    model = VQVAE2(num_codes_top=4, num_codes_bottom=3, code_dim=4, hidden=8).to(
        device, dtype
    )
    out = model(torch.zeros(2, 1, 28, 28, device=device, dtype=dtype))
    assert out.top.quantized.device == device and out.bottom.quantized.dtype == dtype
    prior = BottomPrior(3, 4, channels=8, layers=2).to(device, dtype)
    logp = prior.log_prob(
        torch.zeros(2, 14, 14, dtype=torch.long, device=device),
        torch.zeros(2, 7, 7, dtype=torch.long, device=device),
    )
    assert logp.device == device and logp.dtype == dtype and logp.shape == (2,)
    cpu = VQVAE2(num_codes_top=4, num_codes_bottom=3, code_dim=4, hidden=8).double()
    assert (
        cpu.reconstruct(torch.zeros(2, 1, 28, 28, dtype=torch.float64)).dtype
        == torch.float64
    )


def test_bad_input_names_the_argument():
    model = VQVAE2(num_codes_top=4, num_codes_bottom=3, code_dim=4, hidden=8)
    with pytest.raises(ValueError, match="num_codes_top"):
        VQVAE2(num_codes_top=0)
    with pytest.raises(ValueError, match="x"):
        model(torch.zeros(2, 1, 14, 14))
    with pytest.raises(ValueError, match="bottom"):
        model.decode_indices(
            torch.zeros(2, 7, 7, dtype=torch.long), torch.full((2, 14, 14), 3)
        )
    with pytest.raises(ValueError, match="top"):
        model.decode_indices(
            torch.zeros(2, 6, 6, dtype=torch.long),
            torch.zeros(2, 14, 14, dtype=torch.long),
        )
    prior = PixelCNN(3, channels=8, layers=2, cond_channels=2, num_classes=4)
    z = torch.zeros(2, 7, 7, dtype=torch.long)
    with pytest.raises(ValueError, match="cond"):
        prior.log_prob(z)
    with pytest.raises(ValueError, match="cond"):
        prior.log_prob(z, torch.zeros(2, 3, 7, 7))
    with pytest.raises(ValueError, match="labels"):
        prior.log_prob(z, torch.zeros(2, 2, 7, 7), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="labels"):
        prior.logits(z, torch.zeros(2, 2, 7, 7))
    with pytest.raises(ValueError, match="labels"):
        PixelCNN(3, channels=8, layers=2).log_prob(z, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        PixelCNN(3, num_classes=-1)
    with pytest.raises(ValueError, match="top"):
        BottomPrior(3, 4, channels=8, layers=2).log_prob(
            torch.zeros(2, 14, 14, dtype=torch.long), torch.full((2, 7, 7), 4)
        )


# --- the figures of notebook 15 ------------------------------------------------------------------
def test_level_swaps_bottom_resamples_and_the_resampler_widget_redraws():
    import numpy as np

    from vaekit.figures import hierarchy

    torch.manual_seed(0)
    model = VQVAE2(num_codes_top=4, num_codes_bottom=3, code_dim=4, hidden=8).eval()
    prior = perturbed(BottomPrior(3, 4, channels=8, layers=2))
    top, bottom = model.codes(torch.rand(5, 1, 28, 28).round())
    views = hierarchy.level_swaps(model, top, bottom, [(0, 1), (2, 3)])
    assert list(views) == [
        "digit a",
        "digit b",
        "top of a, bottom of b",
        "top of b, bottom of a",
    ]
    assert all(v.shape == (2, 1, 28, 28) for v in views.values())
    with torch.no_grad():
        torch.testing.assert_close(
            views["top of a, bottom of b"][1],
            model.decode_indices(top[2:3], bottom[3:4]).mean[0],
        )
    r1 = hierarchy.bottom_resamples(model, prior, top[0], 3, seed=1)
    assert r1.shape == (3, 1, 28, 28)
    torch.testing.assert_close(
        r1, hierarchy.bottom_resamples(model, prior, top[0], 3, seed=1)
    )  # a seed, the same digits
    widget = hierarchy.BottomResampler(model, prior, top, bottom, draws=10)
    before = np.asarray(widget.panel.data[1].z).copy()
    widget.sliders["draw"].value = 5
    assert np.abs(np.asarray(widget.panel.data[1].z) - before).max() > 0
    assert widget.panel.layout.title.text
    with pytest.raises(ValueError, match="tops and bottoms"):
        hierarchy.BottomResampler(model, prior, top, bottom[:2])
