"""Vector quantization, the VQ-VAE and the PixelCNN prior over code grids."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from vaekit.models import pixelcnn
from vaekit.models import vqvae
from vaekit.models.pixelcnn import PixelCNN
from vaekit.models.vq import VectorQuantizer
from vaekit.models.vqvae import VQVAE


def quantizer(k=6, d=3, **kw):
    torch.manual_seed(0)
    q = VectorQuantizer(k, d, **kw)
    q.codebook.data.copy_(torch.randn(k, d))
    if q.ema:
        q.ema_sum.copy_(q.codebook)
    return q


# --- the quantizer ------------------------------------------------------------------------------
def test_indices_are_nearest_codes_and_round_trip_to_the_quantized_tensor():
    q = quantizer(k=7, d=4).eval()
    z = torch.randn(5, 4, 3, 2)
    out = q(z)
    assert out.indices.shape == (5, 3, 2) and out.indices.dtype == torch.int64
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, q.codebook).argmin(1)
    assert torch.equal(out.indices.reshape(-1), brute)
    assert torch.equal(
        q.lookup(out.indices), out.quantized
    )  # exactly: value of quantized is e
    assert torch.allclose(
        out.quantized.permute(0, 2, 3, 1).reshape(-1, 4), q.codebook[brute]
    )


def test_straight_through_gradient_is_the_decoder_gradient_at_the_quantized_point():
    q = quantizer(k=5, d=3, beta=0.0).eval()
    torch.manual_seed(1)
    decoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh())
    target = torch.randn(2, 4, 4, 4)

    def loss_of(t):
        return ((decoder(t) - target) ** 2).sum()

    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = q(z)
    loss_of(out.quantized).backward()
    e = q.lookup(out.indices).clone().requires_grad_(True)
    loss_of(e).backward()
    assert not torch.allclose(z.detach(), e.detach())  # the two points differ ...
    assert torch.allclose(
        z.grad, e.grad, atol=1e-6
    )  # ... the encoder gets the gradient at e, unchanged
    assert z.grad.abs().sum() > 0


def test_commitment_and_codebook_losses_have_the_right_gradients():
    q = quantizer(k=4, d=2, beta=0.25, ema=False, restart=False).eval()
    z = torch.randn(3, 2, 2, 2, requires_grad=True)
    out = q(z)
    e = q.lookup(out.indices).detach()
    torch.testing.assert_close(
        out.commitment_loss, 0.25 * ((z - e) ** 2).sum((1, 2, 3))
    )
    torch.testing.assert_close(out.codebook_loss, ((z - e) ** 2).sum((1, 2, 3)))
    out.loss.sum().backward()
    # d/dz_e of beta ||z_e - sg[e]||^2 only: the codebook term sends nothing to the encoder
    torch.testing.assert_close(z.grad, 2 * 0.25 * (z - e).detach())
    # d/de_k of ||sg[z_e] - e_k||^2 summed over the vectors assigned to k
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 2)
    idx = out.indices.reshape(-1)
    want = torch.stack([2 * (q.codebook[k] - flat[idx == k]).sum(0) for k in range(4)])
    torch.testing.assert_close(q.codebook.grad, want.detach())


def test_ema_update_matches_the_formula_and_moves_codes_towards_their_vectors():
    eps = 0.1  # large enough that leaving out the Laplace smoothing would show
    q = quantizer(k=4, d=2, decay=0.9, eps=eps, restart=False).train()
    before = q.codebook.clone()
    z = before[torch.tensor([0, 0, 1, 2, 2, 2])] + 0.5 * torch.randn(
        6, 2
    )  # vectors near codes 0, 1, 2
    z = z.T.reshape(1, 2, 2, 3)  # (B=1, D=2, H=2, W=3)
    out = q(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    onehot = F.one_hot(out.indices.reshape(-1), 4).float()
    n = 0.9 * 1.0 + 0.1 * onehot.sum(0)  # cluster sizes start at 1
    m = 0.9 * before + 0.1 * onehot.T @ flat
    smoothed = (n + eps) / (n.sum() + 4 * eps) * n.sum()
    torch.testing.assert_close(q.codebook, m / smoothed[:, None])
    used = onehot.sum(0) > 0
    means = (onehot.T @ flat)[used] / onehot.sum(0)[used, None]
    assert (
        (q.codebook[used] - means).norm(dim=1) < (before[used] - means).norm(dim=1)
    ).all()


def test_ema_codes_converge_to_the_means_of_their_vectors():
    q = quantizer(k=4, d=2, decay=0.9, restart=False).train()
    z = q.codebook[torch.tensor([0, 0, 1, 2, 2, 2])].detach() + 0.5 * torch.randn(6, 2)
    z = z.T.reshape(1, 2, 2, 3)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for _ in range(300):  # the same vectors again and again: online k-means settles
        q(z)
    idx = q.eval()(z).indices.reshape(-1)
    for k in idx.unique():
        torch.testing.assert_close(
            q.codebook[k], flat[idx == k].mean(0), atol=1e-3, rtol=0
        )


def test_ema_codebook_gets_no_gradient_and_loss_excludes_the_codebook_term():
    q = quantizer(ema=True)
    assert "codebook" not in dict(q.named_parameters())
    out = q(torch.randn(2, 3, 2, 2))
    torch.testing.assert_close(out.loss, out.commitment_loss)


@pytest.mark.parametrize("ema", [True, False])
def test_dead_codes_are_restarted_from_recent_encoder_outputs(ema):
    q = quantizer(k=4, d=2, ema=ema, restart=True, dead_after=3).train()
    q.codebook.data[3] = torch.tensor(
        [100.0, 100.0]
    )  # far from every input: never chosen
    if ema:
        q.ema_sum[3] = q.codebook[3]
    batches = [torch.randn(2, 2, 3, 3) for _ in range(3)]
    for b in batches[:2]:
        q(b)
    assert q.codebook[3].min() > 99.9  # not dead yet
    assert int(q.steps_unused[3]) == 2
    q(batches[2])  # third step without use: re-seeded from this batch's vectors
    flat = batches[2].permute(0, 2, 3, 1).reshape(-1, 2)
    assert (flat == q.codebook[3]).all(1).any(), (
        "a dead code must become one of the batch's encoder outputs"
    )
    assert int(q.steps_unused[3]) == 0
    out = q.eval()(batches[2])
    assert (out.indices == 3).any(), "the restarted code is used again"


def test_without_restart_dead_codes_stay_dead():
    q = quantizer(k=4, d=2, restart=False, dead_after=1).train()
    q.codebook.data[3] = 100.0
    q.ema_sum[3] = 100.0
    for _ in range(5):
        q(torch.randn(2, 2, 3, 3))
    assert int(q.steps_unused[3]) == 5
    assert q.codebook[3].min() > 50


def test_kmeans_init_finds_well_separated_clusters():
    torch.manual_seed(0)
    centers = torch.randn(8, 3) * 10
    flat = centers.repeat(50, 1) + 0.01 * torch.randn(400, 3)
    z = flat.reshape(4, 10, 10, 3).permute(0, 3, 1, 2)  # (B, D, H, W)
    q = VectorQuantizer(8, 3, kmeans_init=True).train()
    q(z)
    assert bool(q.initialized)
    dist = torch.cdist(centers, q.codebook)  # (8 clusters, 8 codes)
    assert (dist.min(1).values < 0.1).all(), "every cluster centre gets a code"
    assert q.eval()(z).perplexity > 7.9


def test_device_and_dtype_follow_the_caller():
    q = VectorQuantizer(8, 4, device="meta")
    out = q(torch.empty(2, 4, 3, 3, device="meta"))
    assert out.quantized.device.type == "meta" and out.indices.shape == (2, 3, 3)
    with torch.device("meta"):
        model, prior = (
            VQVAE(8, 4, hidden=8, kmeans_init=True),
            PixelCNN(8, channels=4, layers=2),
        )
    px, vq = model(torch.empty(3, 1, 28, 28, device="meta"))
    assert px.mean.device.type == "meta" and px.mean.shape == (3, 1, 28, 28)
    assert prior.log_prob(vq.indices).device.type == "meta"
    q64 = VectorQuantizer(8, 4).double().train()
    out = q64(torch.randn(2, 4, 3, 3, dtype=torch.float64))
    assert out.quantized.dtype == torch.float64 and out.loss.dtype == torch.float64
    if torch.cuda.is_available():
        m = VQVAE(8, 4, hidden=8).cuda()
        assert m(torch.rand(2, 1, 28, 28, device="cuda"))[1].indices.is_cuda


def test_bad_input_names_the_argument():
    q = VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match="z_e"):
        q(torch.randn(2, 5, 3, 3))
    with pytest.raises(ValueError, match="indices"):
        q.lookup(torch.full((1, 2, 2), 8))
    with pytest.raises(ValueError, match="num_codes"):
        VectorQuantizer(0, 4)


# --- the VQ-VAE ---------------------------------------------------------------------------------
def test_vqvae_objective_is_reconstruction_plus_quantizer_loss():
    torch.manual_seed(0)
    model = VQVAE(16, 4, hidden=8).eval()
    x = torch.rand(3, 1, 28, 28).bernoulli()
    parts = vqvae.objective(model, x)
    assert parts["loss"].shape == (3,)
    torch.testing.assert_close(
        parts["loss"], parts["reconstruction"] + parts["commitment"]
    )
    px = model.decode_indices(model.codes(x))
    torch.testing.assert_close(parts["reconstruction"], -px.log_prob(x))
    # with a uniform prior over grids, the bound is the reconstruction NLL plus 49 log K
    uniform = type(
        "Uniform",
        (),
        {"log_prob": lambda self, idx: torch.full((idx.shape[0],), -49 * math.log(16))},
    )()
    torch.testing.assert_close(
        model.nll_bound(x, uniform), parts["reconstruction"] + 49 * math.log(16)
    )


# --- the PixelCNN prior -------------------------------------------------------------------------
def test_pixelcnn_log_prob_is_normalised_on_a_tiny_grid():
    torch.manual_seed(0)
    prior = PixelCNN(3, grid=(2, 3), channels=8, layers=3)
    with torch.no_grad():  # non-trivial conditionals
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    grids = torch.tensor(list(itertools.product(range(3), repeat=6))).view(
        -1, 2, 3
    )  # all 729 grids
    logp = prior.log_prob(grids)
    assert logp.shape == (729,)
    assert logp.std() > 0.3, "the test needs a non-uniform distribution"
    torch.testing.assert_close(
        torch.logsumexp(logp.double(), 0),
        torch.tensor(0.0, dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )


def test_pixelcnn_is_causal_without_a_blind_spot():
    torch.manual_seed(0)
    prior = PixelCNN(5, channels=8).double()
    z = torch.randint(5, (1, 7, 7))
    emb = {}

    def keep(module, inputs, output):
        output.retain_grad()
        emb["e"] = output

    hook = prior.embed.register_forward_hook(keep)
    try:
        for q in range(49):
            prior.logits(z)[0, :, q // 7, q % 7].pow(2).sum().backward()
            g = (
                emb["e"].grad[0].abs().sum(-1).reshape(-1)
            )  # influence of each position on position q
            assert (g[q:] == 0).all(), (
                f"position {divmod(q, 7)} sees itself or the future"
            )
            assert (g[:q] > 0).all(), (
                f"position {divmod(q, 7)} is blind to {divmod(int((g[:q] == 0).nonzero()[0]), 7)}"
            )
    finally:
        hook.remove()


def test_pixelcnn_samples_follow_log_prob():
    torch.manual_seed(0)
    prior = PixelCNN(3, grid=(1, 2), channels=8, layers=2)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    s = prior.sample(6000, generator=torch.Generator().manual_seed(1))
    assert (
        s.shape == (6000, 1, 2)
        and s.dtype == torch.int64
        and s.min() >= 0
        and s.max() <= 2
    )
    grids = torch.tensor(list(itertools.product(range(3), repeat=2))).view(9, 1, 2)
    p = prior.log_prob(grids).exp().detach()
    freq = torch.stack([(s == g).all(-1).all(-1).float().mean() for g in grids])
    se = (p * (1 - p) / 6000).sqrt()
    assert ((freq - p).abs() < 4 * se + 1e-3).all(), (freq, p)


def test_pixelcnn_fits_and_samples_the_default_grid():
    torch.manual_seed(0)
    prior = PixelCNN(4, channels=8, layers=2)
    codes = torch.randint(2, (64, 7, 7))  # only codes 0 and 1 occur
    from vaekit import fit

    h = fit(
        prior,
        pixelcnn.nll,
        codes,
        steps=60,
        batch_size=32,
        lr=1e-2,
        device="cpu",
        progress=False,
    )
    assert (
        h["loss"][-1] < 49 * math.log(2) + 3
    )  # close to the true 49 log 2 nats, far below 49 log 4
    s = prior.sample(5)
    assert s.shape == (5, 7, 7) and (s < 2).float().mean() > 0.9


def test_pixelcnn_nll_monitor_records_the_log_prob_of_its_grids_every_few_steps():
    torch.manual_seed(0)
    prior = PixelCNN(4, channels=8, layers=2)
    codes = torch.randint(2, (64, 7, 7))
    held_out = torch.randint(4, (10, 7, 7))
    monitor = pixelcnn.NLLMonitor({"train": codes[:16], "held out": held_out}, every=5)
    from vaekit import fit

    fit(
        prior,
        pixelcnn.nll,
        codes,
        steps=20,
        batch_size=32,
        lr=1e-2,
        device="cpu",
        progress=False,
        callbacks=[monitor],
    )
    assert monitor.steps == [5, 10, 15, 20]
    with torch.no_grad():  # the last measurement is the trained model's
        assert monitor.nll["train"][-1] == pytest.approx(
            -prior.log_prob(codes[:16]).mean().item(), rel=1e-6
        )
        assert monitor.nll["held out"][-1] == pytest.approx(
            -prior.log_prob(held_out).mean().item(), rel=1e-6
        )
    assert monitor.nll["train"][-1] < monitor.nll["train"][0] < 49 * math.log(4) + 5
    with pytest.raises(TypeError, match="grids"):
        pixelcnn.NLLMonitor({"x": torch.zeros(2, 7, 7)})
    with pytest.raises(ValueError, match="every"):
        pixelcnn.NLLMonitor({"x": codes}, every=0)


def test_pixelcnn_sampling_row_by_row_matches_the_full_grid_conditionals():
    torch.manual_seed(0)
    prior = PixelCNN(5, channels=8, layers=3).eval()
    z = torch.randint(5, (3, 7, 7))
    with torch.no_grad():
        full = prior.logits(z)  # (3, K, 7, 7)
        for i in range(7):  # what sample() computes for row i: the grid cut after row i
            torch.testing.assert_close(
                prior.logits(z[:, : i + 1])[:, :, i], full[:, :, i]
            )


# --- the two-sample test on generated images -----------------------------------------------------
def test_nearest_neighbour_accuracy_is_a_half_for_one_distribution_one_when_apart_zero_for_copies():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    acc = vqvae.nearest_neighbour_accuracy(a, b)
    assert abs(acc - 0.5) < 4 * (0.25 / 800) ** 0.5, (
        acc
    )  # null: a half, within 4 standard errors
    assert vqvae.nearest_neighbour_accuracy(a + 10, b) == 1.0  # disjoint sets
    assert (
        vqvae.nearest_neighbour_accuracy(b + 1e-3 * a, b) == 0.0
    )  # copies: each one's neighbour is its twin
    binary = (
        torch.rand(300, 1, 6, 6, generator=g) < 0.3
    ).float()  # images, any shape [N, ...]
    assert (
        vqvae.nearest_neighbour_accuracy(
            binary, (torch.rand(300, 1, 6, 6, generator=g) < 0.7).float()
        )
        > 0.95
    )
    with pytest.raises(ValueError, match="samples and real"):
        vqvae.nearest_neighbour_accuracy(a, b[:10])
    with pytest.raises(TypeError, match="real"):
        vqvae.nearest_neighbour_accuracy(a, b.long())


# --- figures and the code editor of notebook 14 --------------------------------------------------
def test_vq_figures_label_their_axes_and_the_code_editor_redraws_the_decoded_grid():
    import numpy as np

    from vaekit.figures import codebooks as vq_viz

    torch.manual_seed(0)
    model = VQVAE(8, 4, hidden=8).eval()
    x = torch.rand(6, 1, 28, 28).bernoulli()
    monitor = vqvae.CodebookMonitor(x, every=1)
    monitor.measure(model, 0)
    monitor.measure(model, 1)
    monitors = {"a": monitor, "b": monitor}
    curves = vq_viz.usage_curves(monitors, 8)
    assert len(curves.data) == 4 and curves.layout.xaxis.title.text == "training step"
    assert (
        curves.layout.yaxis.title.text
        and curves.layout.yaxis2.title.text == "codes unused on 6 digits (%)"
    )
    assert (
        len(vq_viz.usage_heatmaps(monitors).data) == 2
        and len(vq_viz.usage_histogram(monitors).data) == 2
    )

    pca = vq_viz.codebook_pca({"m": model}, x)
    assert (
        pca.layout.xaxis.title.text == "1st principal direction"
        and pca.layout.yaxis.title.text == "2nd principal direction"
    )
    assert (
        len(pca.data[1].x) + len(pca.data[2].x) == 8
    )  # every code drawn once, used or unused
    assert np.var(pca.data[0].x) >= np.var(
        pca.data[0].y
    )  # the first principal direction has the larger spread
    z = vq_viz.encoder_outputs(model, x)
    assert z.shape == (6 * 49, 4)
    torch.testing.assert_close(
        z[:49], model.encode(x[:1]).permute(0, 2, 3, 1).reshape(49, 4).detach()
    )

    editor = vq_viz.CodeEditor(model, model.codes(x))
    new = (editor.sliders["code"].value + 1) % 8
    editor.sliders["code"].value = new  # drives the redraw
    assert editor.panel.data[0].z[3][3] == new
    with torch.no_grad():
        expected = model.decode_indices(editor.edited_grid()[None]).mean[0, 0].numpy()
    np.testing.assert_allclose(np.asarray(editor.panel.data[1].z), expected, rtol=1e-6)
    editor.sliders["row"].value = 1
    assert editor.panel.layout.shapes[0].y0 == 0.5
    with pytest.raises(ValueError, match="grids"):
        vq_viz.CodeEditor(model, torch.full((1, 7, 7), 8))


def test_codebook_summary_code_views_and_swaps():
    from vaekit import metrics
    from vaekit.figures import codebooks as vq_viz

    torch.manual_seed(0)
    model = VQVAE(8, 4, hidden=8).eval()
    x = (
        torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3
    ).float()
    s = vq_viz.codebook_summary(model, x, x * 0.5)
    codes = model.codes(x)
    assert s["perplexity"] == metrics.codebook_perplexity(codes, 8) and s[
        "dead"
    ] == metrics.dead_code_fraction(codes, 8)
    with torch.no_grad():
        nll = -model.decode_indices(codes).log_prob(x).mean().item()
        mse = ((model.reconstruct(x * 0.5) - x * 0.5) ** 2).mean().item()
    assert s["recon_nll"] == pytest.approx(nll) and s["recon_mse"] == pytest.approx(mse)
    v = vq_viz.code_views(model, x)
    assert v["decoded"].shape == (8, 1, 28, 28) and v["mean_patch"].shape == (8, 4, 4)
    assert (
        v["usage"].sum() == codes.numel() and (v["usage"][v["order"]].diff() <= 0).all()
    )  # most used first
    top = int(v["order"][0])
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)[:, 0]  # (N, 7, 7, 4, 4)
    torch.testing.assert_close(v["mean_patch"][0], patches[codes == top].mean(0))
    unused = v["usage"][v["order"]] == 0
    assert (v["mean_patch"][unused] == 0).all()
    swaps = vq_viz.code_swaps(model, codes[0], [(3, 3), (2, 4)], v["order"][:3])
    assert swaps.shape == (6, 1, 28, 28)
    grid = codes[0].clone()
    grid[2, 4] = v["order"][1]
    with torch.no_grad():
        torch.testing.assert_close(
            swaps[4], model.decode_indices(grid[None]).mean[0]
        )  # row 2: position (2, 4), code 1
