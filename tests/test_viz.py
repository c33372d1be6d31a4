"""Figure builders: what goes in comes out as traces, on the axes asked for; and the small
helpers the notebooks call around them."""

import math

import pytest
import torch

import vaekit
from vaekit import metrics, schedules, viz
from vaekit.figures import bounds as bound_viz
from vaekit.figures import latents as latent_viz
from vaekit.train import History, KeepBest


def test_xy_lines_takes_mappings_and_pairs():
    fig = viz.xy_lines(
        {"a": {4: 1.0, 1: 3.0}, "b": ([1, 2], [5.0, 6.0])},
        "t",
        "S (samples)",
        "variance",
        log_x=True,
        log_y=True,
        tick_at_points=True,
    )
    assert [list(t.x) for t in fig.data] == [[1, 4], [1, 2]] and list(
        fig.data[0].y
    ) == [3.0, 1.0]
    assert (
        fig.layout.xaxis.type == "log"
        and fig.layout.yaxis.type == "log"
        and list(fig.layout.xaxis.tickvals) == [1, 2, 4]
    )
    assert (
        fig.layout.xaxis.title.text == "S (samples)"
        and fig.layout.yaxis.title.text == "variance"
    )
    with pytest.raises(ValueError, match="'c' has 2 x values and 1 y values"):
        viz.xy_lines({"c": ([1, 2], [1.0])}, "t", "x", "y")


def _history(records):
    return History(
        records=[dict(epoch=i + 1, seconds=0.0, **r) for i, r in enumerate(records)]
    )


def test_history_panels_one_colour_per_run_markers_where_sparse():
    h = {
        "a": _history([dict(step=10, loss=3.0), dict(step=20, loss=2.0, valid=5.0)]),
        "b": _history(
            [dict(step=10, loss=4.0, valid=6.0), dict(step=20, loss=1.0, valid=4.0)]
        ),
    }
    fig = viz.history_panels(
        h, {"loss": ("objective", "nats"), "valid": ("validation", "NLL, nats")}, "t"
    )
    assert len(fig.data) == 4 and [t.name for t in fig.data] == ["a", "a", "b", "b"]
    assert (
        list(fig.data[1].x) == [20]
        and list(fig.data[1].y) == [5.0]
        and fig.data[1].mode == "lines+markers"
    )
    assert (
        list(fig.data[0].x) == [10, 20]
        and fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    )
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    assert (
        fig.layout.yaxis2.title.text == "NLL, nats"
        and fig.layout.xaxis.title.text == "optimiser step"
    )


def test_bar_panels_checks_lengths():
    fig = viz.bar_panels(
        ["x", "y"],
        {"p": ([1.0, 2.0], [0.1, 0.2], "nats"), "q": ([3.0, 4.0], None, "KL")},
        "t",
    )
    assert (
        list(fig.data[0].error_y.array) == [0.1, 0.2]
        and fig.data[1].error_y.array is None
    )
    assert (
        fig.layout.yaxis.title.text == "nats" and fig.layout.yaxis2.title.text == "KL"
    )
    with pytest.raises(ValueError, match="panel 'p' must have one value"):
        viz.bar_panels(["x"], {"p": ([1.0, 2.0], None, "nats")}, "t")


def test_activity_figure_sorts_and_kl_bars_threshold():
    fig = latent_viz.activity_figure({"m": torch.tensor([0.001, 0.5, 0.02])}, title="t")
    assert (
        list(fig.data[0].y) == pytest.approx([0.5, 0.02, 0.001])
        and fig.layout.yaxis.type == "log"
    )
    assert fig.layout.shapes[0].y0 == 0.01


def test_bound_against_k_draws_only_resolved_gaps_and_a_one_over_k_line():
    ks, exact = [1, 10, 100], -5.0
    fig = bound_viz.bound_against_k(
        ks,
        torch.tensor([-7.0, -5.2, -5.0001]),
        torch.tensor([0.01, 0.01, 0.01]),
        exact,
        -7.0,
        100,
    )
    gap = fig.data[1]
    assert list(gap.x) == [1, 10] and list(gap.y) == pytest.approx(
        [2.0, 0.2]
    )  # the last gap is below 3 s.e.
    assert list(fig.data[2].y) == pytest.approx([20.0, 0.2]) and list(
        fig.data[2].x
    ) == [0.1, 10]  # slope -1
    with pytest.raises(ValueError, match="no gap exceeds 3 standard errors"):
        bound_viz.bound_against_k(
            ks, torch.full((3,), exact), torch.ones(3), exact, -7.0, 100
        )


def test_proposal_panels_and_explorer_redraw():
    curves = {
        (w, s): torch.tensor([-2.0 * w - s, -1.0])
        for s in (0.0, 1.0)
        for w in (0.5, 2.0)
    }
    fig = bound_viz.proposal_panels([1, 10], curves, -1.0)
    assert len(fig.data) == 4 and [t.name for t in fig.data[:2]] == [
        "width x0.5",
        "width x2",
    ]
    calls = []
    box = bound_viz.proposal_explorer(
        [1, 10],
        lambda w, s: calls.append((w, s)) or torch.tensor([w, s]),
        -1.0,
        5,
        start=torch.tensor([0.0, 0.0]),
    )
    assert calls == [] and list(box.figure.data[0].y) == [0.0, 0.0]
    box.sliders[1].value = 2.0
    assert calls == [(1.0, 2.0)] and list(box.figure.data[0].y) == [1.0, 2.0]
    assert (
        box.figure.layout.title.text == "Move q: width 1.00, shift 2.0"
        and box.sliders[1].description == "q shift (sd)"
    )


def test_weighted_draws_figure_marks_heavy_draws():
    z = torch.randn(50, 2, 3, generator=torch.Generator().manual_seed(0))
    w = torch.zeros(50, 2)
    w[:3, 1] = torch.tensor([0.7, 0.3, 1e-5])
    fig = bound_viz.weighted_draws(
        {"m": (z, w, torch.tensor([1.0, 1.7]))}, {"m": [2, 0]}, 1, "t"
    )
    heavy = fig.data[1]
    assert (
        list(heavy.x) == z[:2, 1, 2].tolist() and list(heavy.y) == z[:2, 1, 0].tolist()
    )  # 1e-5 < 1e-3 * 0.7
    assert (
        heavy.marker.size[0] == pytest.approx(20.0)
        and fig.layout.annotations[0].text == "m: ESS 1.7"
    )


def test_snr_against_k_figure_rates_through_the_first_point():
    fig = bound_viz.snr_against_k(
        [1, 100],
        {"encoder": [0.2, 0.02], "decoder": [0.1, 1.0]},
        [0.04, 0.04],
        400,
        "t",
    )
    assert list(fig.data[1].y) == pytest.approx([0.2, 0.02]) and list(
        fig.data[3].y
    ) == pytest.approx([0.1, 1.0])
    assert fig.data[-1].name == "noise floor (400 repeats)"
    with pytest.raises(ValueError, match="has 1 values for 2 ks"):
        bound_viz.snr_against_k([1, 100], {"encoder": [0.2]}, [0.04, 0.04], 400, "t")


def test_nll_against_k_and_results_figure():
    fig = bound_viz.nll_against_k({100: -90.0, 1: -95.0}, -96.0, 10)
    assert (
        list(fig.data[0].x) == [1, 100]
        and list(fig.data[0].y) == [95.0, 90.0]
        and fig.layout.shapes[0].y0 == 96.0
    )
    res = {"a": dict(dnll=0.0, se=0.0, kl=3.0), "b": dict(dnll=1.5, se=0.25, kl=2.0)}
    fig = vaekit.viz.score_figure(res, "t", reference="a")
    assert list(fig.data[0].y) == [0.0, 1.5] and list(fig.data[0].error_y.array) == [
        0.0,
        0.5,
    ]
    assert fig.layout.annotations[0].text == "test NLL minus a's" and list(
        fig.data[1].y
    ) == [3.0, 2.0]


def test_crossfade_interpolation_rows_and_prior_rows():
    a, b = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    fade = latent_viz.crossfade(a, b, 5)
    assert fade.shape == (5, 1, 4, 4) and fade[:, 0, 0, 0].tolist() == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]
    with pytest.raises(ValueError, match="steps must be an int >= 2"):
        latent_viz.crossfade(a, b, 1)
    torch.manual_seed(0)
    model = vaekit.VAE.mlp((1, 4, 4), latent_dim=2, hidden=(5,))
    rows = latent_viz.interpolation_rows(model, a, b, 4, pixels=(b, a))
    assert (
        list(rows) == ["latent, linear", "pixels (cross-fade)", "latent, slerp"]
        and rows["pixels (cross-fade)"][0].mean() == 1
    )
    torch.testing.assert_close(rows["latent, linear"][0], model.reconstruct(a[None])[0])
    torch.manual_seed(1)
    prior = latent_viz.prior_rows(model, rows=2, per_row=3)
    torch.manual_seed(1)
    z = model.prior.sample((6,))
    assert list(prior) == ["E[x|z], z 1-3", "E[x|z], z 4-6", "x ~ p(x|z), z 1-3"]
    torch.testing.assert_close(
        prior["E[x|z], z 4-6"], latent_viz.decode_mean(model, z[3:])
    )
    assert set(prior["x ~ p(x|z), z 1-3"].unique().tolist()) <= {
        0.0,
        1.0,
    }  # Bernoulli pixels drawn


def test_nearest_centre_accuracy_and_elbo_evaluator():
    z_train = torch.tensor([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
    y_train = torch.tensor([3, 3, 7, 7])
    z_test, y_test = (
        torch.tensor([[0.1, 0.1], [4.0, 4.0], [1.0, 1.0]]),
        torch.tensor([3, 7, 7]),
    )
    assert metrics.nearest_centre_accuracy(
        z_train, y_train, z_test, y_test
    ) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="codes and labels must pair up"):
        metrics.nearest_centre_accuracy(z_train, y_train[:3], z_test, y_test)
    torch.manual_seed(0)
    model, x = (
        vaekit.VAE.mlp((1, 4, 4), latent_dim=2, hidden=(5,)),
        (torch.rand(8, 1, 4, 4) < 0.5).float(),
    )
    hook = metrics.elbo_evaluator({"a": x, "b": x[:4]})
    torch.manual_seed(2)
    out = hook(model)
    torch.manual_seed(2)
    assert out == {
        "a": metrics.evaluate_elbo(model, x)["elbo"],
        "b": metrics.evaluate_elbo(model, x[:4])["elbo"],
    }


def test_keep_best_keeps_the_first_best_weights_and_every_step_steps():
    model = torch.nn.Linear(1, 1, bias=False)
    scores = iter([1.0, 3.0, 3.0, 2.0])
    keep = KeepBest(lambda m: next(scores), name="v")
    with pytest.raises(RuntimeError, match="scored nothing yet"):
        keep.restore(model)
    for value in (1.0, 2.0, 3.0, 4.0):
        with torch.no_grad():
            model.weight.fill_(value)
        assert set(keep(model)) == {"v"}
    assert (
        keep.restore(model) == 3.0 and model.weight.item() == 2.0
    )  # the first of the two 3.0s
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    cb = schedules.EveryStep(
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, 4, eta_min=0.0)
    )
    for _ in range(2):
        opt.step()
        cb.on_step(None)
    assert (
        opt.param_groups[0]["lr"] == pytest.approx(0.5)
        and cb.state_dict()["last_epoch"] == 2
    )
    with pytest.raises(TypeError, match="scheduler must be"):
        schedules.EveryStep(object())


def test_keep_best_in_fit_restores_the_best_validation_weights():
    torch.manual_seed(0)
    model, x = (
        vaekit.VAE.mlp((1, 4, 4), latent_dim=2, hidden=(5,)),
        (torch.rand(64, 1, 4, 4) < 0.5).float(),
    )
    keep = KeepBest(lambda m: metrics.evaluate_elbo(m, x)["elbo"], name="valid_elbo")
    h = vaekit.fit(
        model,
        lambda m, xb: -vaekit.elbo(m, xb),
        x,
        steps=20,
        batch_size=16,
        lr=0.05,
        evaluate=keep,
        progress=False,
    )
    assert keep.best == max(h["valid_elbo"]) and not math.isinf(keep.best)
    keep.restore(model)
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), keep.state.values())
    )


def test_dequantization_gap_is_the_bound_at_the_posterior_mean():
    from vaekit import discretized
    from vaekit.nets import DiscretizedLogisticDecoder, GaussianEncoder

    torch.manual_seed(0)
    model = vaekit.VAE(
        GaussianEncoder.mlp((1, 4, 4), latent_dim=2, hidden=(8,)),
        DiscretizedLogisticDecoder.mlp((1, 4, 4), latent_dim=2, hidden=(8,)),
        2,
    )
    x = (
        torch.randint(
            0, 256, (6, 1, 4, 4), generator=torch.Generator().manual_seed(1)
        ).float()
        / 255
    )
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # two end bins
    torch.manual_seed(3)
    gap, se, edge = metrics.dequantization_gap(model, x, samples=20)
    assert gap.shape == edge.shape == (6, 16) and se.shape == (6,)
    assert edge[0, :2].all() and edge.sum() == (x.flatten(1) % 1 == 0).sum()
    with torch.no_grad():
        px = model.decode(model.encode(x).mean).base_dist
        torch.manual_seed(3)
        lower, lower_se = discretized.dequantized_bound(px, x, samples=20)
    torch.testing.assert_close(gap, (px.log_prob(x) - lower).flatten(1))
    torch.testing.assert_close(se, lower_se.flatten(1).pow(2).sum(1).sqrt())
    assert (
        gap.sum(1) > -4 * se
    ).all()  # the dequantized density never beats the discrete probability


def test_bars_heatmap_line_groups_and_paths():
    fig = viz.bars(
        ["a", "b"],
        {
            "y": [1.0, 2.0],
            "on top": dict(y=[0.5, 0.5], base=[1.0, 2.0], error=[0.1, 0.2]),
        },
        "t",
        "x",
        "nats",
    )
    assert (
        list(fig.data[1].base) == [1.0, 2.0]
        and list(fig.data[1].error_y.array) == [0.1, 0.2]
        and fig.data[0].error_y.array is None
    )
    with pytest.raises(ValueError, match="series 'y' has 1 values for 2 categories"):
        viz.bars(["a", "b"], {"y": [1.0]}, "t", "x", "y")
    fig = viz.heatmap(
        [0, 1, 2],
        [5, 6],
        torch.arange(6.0).reshape(2, 3),
        "t",
        "x",
        "y",
        "c",
        text=torch.ones(2, 3),
        zmid=0,
    )
    assert (
        fig.data[0].z.shape == (2, 3)
        and fig.data[0].colorbar.title.text == "c"
        and fig.data[0].zmid == 0
    )
    with pytest.raises(
        ValueError, match=r"z must have shape \[len\(y\), len\(x\)\] = \[2, 2\]"
    ):
        viz.heatmap([0, 1], [5, 6], torch.zeros(3, 2), "t", "x", "y", "c")
    fig = viz.line_groups(
        {"a": {"log p(x)": [1, 2], "ELBO": [0, 1]}, "b": {"log p(x)": [3]}},
        "t",
        "epoch",
        "nats",
    )
    assert [t.name for t in fig.data] == [
        "a: log p(x)",
        "a: ELBO",
        "b: log p(x)",
    ] and list(fig.data[0].x) == [1, 2]
    assert (
        fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
        and fig.data[1].line.dash == "dash"
    )
    grid = torch.linspace(0, 1, 3)
    fig = viz.paths_on_contour(
        grid,
        torch.zeros(3, 3),
        {"p": torch.tensor([[0.0, 0.0], [0.5, 0.5]])},
        [1, 1],
        "t",
        "μ₁",
        "μ₂",
        "L",
        point_name="optimum c",
    )
    assert (
        list(fig.data[1].x) == [0.0, 0.5]
        and fig.data[2].name == "optimum c"
        and fig.layout.yaxis.scaleanchor == "x"
    )


def test_kl_bars_sort_each_model_and_draw_the_threshold():
    from vaekit.figures import latents as latent_viz

    fig = latent_viz.kl_bars(
        {"a": torch.tensor([0.1, 2.0, 0.005]), "b": torch.tensor([1.0, 0.0, 3.0])},
        "KL",
        threshold=0.01,
    )
    assert [list(t.y) for t in fig.data] == [
        pytest.approx([2.0, 0.1, 0.005]),
        pytest.approx([3.0, 1.0, 0.0]),
    ]
    assert list(fig.data[0].customdata) == [2, 1, 3] and list(
        fig.data[1].customdata
    ) == [3, 1, 2]  # original dimensions
    assert [s.y0 for s in fig.layout.shapes] == [
        0.01
    ] and "nats" in fig.layout.yaxis.title.text


def test_kl_directions_draws_one_capped_panel_per_divergence_with_its_minimum():
    mus, sigmas = torch.linspace(-1, 1, 3), torch.linspace(0.5, 2, 4)
    a, b = torch.arange(12.0).reshape(3, 4), torch.full((3, 4), 20.0)
    fig = bound_viz.kl_directions(
        mus, sigmas, {"A": a, "B": b}, {"A": (-1.0, 0.5), "B": (0.0, 2.0)}, cap=8
    )
    contours = [t for t in fig.data if t.type == "contour"]
    assert (
        len(contours) == 2 and contours[0].z.max() == 8 and (contours[1].z == 8).all()
    )
    assert (
        list(contours[0].x) == sigmas.tolist() and list(contours[0].y) == mus.tolist()
    )
    marks = [t for t in fig.data if t.type == "scatter"]
    assert [(t.x[0], t.y[0]) for t in marks] == [(0.5, -1.0), (2.0, 0.0)]
    assert (
        fig.layout.xaxis.title.text == "σ of q"
        and fig.layout.yaxis2.title.text == "μ of q"
    )
    with pytest.raises(ValueError, match="surface 'A' must have shape"):
        bound_viz.kl_directions(mus, sigmas, {"A": a.T}, {"A": (0.0, 1.0)})
    with pytest.raises(ValueError, match="must name the same panels"):
        bound_viz.kl_directions(mus, sigmas, {"A": a}, {"B": (0.0, 1.0)})
