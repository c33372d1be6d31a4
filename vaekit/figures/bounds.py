"""Figures of importance-weighted bounds: E[L_k] against k with its gap to log p(x), the bound
for several proposals, the draws of q that carry the weight, and gradient SNRs against k.

Each function takes numbers already computed (tensors or lists, nats) and returns a plotly
figure; none runs a model.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _values(v) -> list[float]:
    return torch.as_tensor(v).detach().cpu().double().tolist()


def bound_against_k(
    ks: Sequence[int], bound, se, exact: float, elbo: float, n_points: int
) -> go.Figure:
    """Left: E[L_k] (error bars 3 s.e.) rising to ``exact`` log p(x) from the ``elbo`` of q; right:
    the gap log p(x) - E[L_k] on log axes, where it exceeds 3 s.e., with a 1/k line through its
    last resolved point. ``bound``, ``se``: ``[len(ks)]``, means over ``n_points`` examples."""
    ks, bound, se = list(ks), _values(bound), _values(se)
    if not len(ks) == len(bound) == len(se):
        raise ValueError(
            f"ks, bound and se must have the same length, got {len(ks)}, {len(bound)}, {len(se)}"
        )
    gap = [exact - b for b in bound]
    resolved = [i for i in range(len(ks)) if gap[i] > 3 * se[i]]  # gaps above the noise
    if not resolved:
        raise ValueError(
            "no gap exceeds 3 standard errors: nothing to draw on the log axis"
        )
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.14,
        subplot_titles=(
            "the bound rises to log p(x)",
            "the gap closes, in the end like 1/k",
        ),
    )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=bound,
            mode="lines+markers",
            name="E[L_k]",
            error_y=dict(array=[3 * s for s in se]),
        ),
        row=1,
        col=1,
    )
    fig.add_hline(
        y=exact, line_dash="dash", annotation_text="exact log p(x)", row=1, col=1
    )
    fig.add_hline(
        y=elbo, line_dash="dot", annotation_text="exact ELBO of q", row=1, col=1
    )
    fig.add_trace(
        go.Scatter(
            x=[ks[i] for i in resolved],
            y=[gap[i] for i in resolved],
            mode="lines+markers",
            name="log p(x) - E[L_k]",
        ),
        row=1,
        col=2,
    )
    k_ref, g_ref = (
        ks[resolved[-1]],
        gap[resolved[-1]],
    )  # 1/k through the last resolved point
    fig.add_trace(
        go.Scatter(
            x=[k_ref / 100, k_ref],
            y=[g_ref * 100, g_ref],
            mode="lines",
            line_dash="dot",
            name="slope -1 (1/k)",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(type="log", title_text="k, importance samples (log scale)")
    fig.update_yaxes(title_text=f"nats (mean over {n_points} points)", row=1, col=1)
    fig.update_yaxes(type="log", title_text="gap, nats (log scale)", row=1, col=2)
    fig.update_layout(title="E[L_k] against k on the linear Gaussian model", height=420)
    return fig


def nll_against_k(
    bounds: dict, elbo: float, n_points: int, title: str | None = None
) -> go.Figure:
    """The importance-sampled NLL -L_k against k (``bounds[k] = L_k``, nats, means over
    ``n_points`` examples) on a log k axis, with the -ELBO of the same examples dotted."""
    ks = sorted(bounds)
    fig = go.Figure(
        go.Scatter(x=ks, y=[-bounds[k] for k in ks], mode="lines+markers", name="-L_k")
    )
    fig.add_hline(
        y=-elbo, line_dash="dot", annotation_text=f"-ELBO (the same {n_points} digits)"
    )
    fig.update_xaxes(type="log")
    fig.update_layout(
        title=title
        or f"Importance-sampled NLL -L_k against k ({n_points} test digits)",
        height=380,
        xaxis_title="k, importance samples per digit (log scale)",
        yaxis_title="-L_k (nats per digit)",
    )
    return fig


def proposal_panels(ks: Sequence[int], curves: dict, exact: float) -> go.Figure:
    """E[L_k] against k for proposals ``curves[(width, shift)]`` (``[len(ks)]`` each): one panel
    per shift, one line per width, the exact log p(x) dashed."""
    shifts = list(dict.fromkeys(s for _, s in curves))
    widths = list(dict.fromkeys(w for w, _ in curves))
    fig = make_subplots(
        rows=1,
        cols=len(shifts),
        shared_yaxes=True,
        subplot_titles=[f"q shifted by {s:g} sd" for s in shifts],
    )
    for col, shift in enumerate(shifts, start=1):
        for j, width in enumerate(widths):
            if (width, shift) in curves:
                fig.add_trace(
                    go.Scatter(
                        x=list(ks),
                        y=_values(curves[width, shift]),
                        mode="lines+markers",
                        name=f"width x{width:g}",
                        legendgroup=str(width),
                        showlegend=col == 1,
                        line_color=COLORS[j % len(COLORS)],
                    ),
                    row=1,
                    col=col,
                )
        fig.add_hline(y=exact, line_dash="dash", row=1, col=col)
    fig.update_xaxes(type="log", title_text="k (log scale)")
    fig.update_yaxes(title_text="E[L_k], nats", row=1, col=1)
    fig.update_layout(
        title="E[L_k] for proposals of other widths (dashed: log p(x))", height=420
    )
    return fig


def proposal_explorer(
    ks: Sequence[int],
    curve: Callable[[float, float], torch.Tensor],
    exact: float,
    n_points: int,
    start=None,
) -> widgets.VBox:
    """Two sliders, ``q width`` (a factor on the proposal's standard deviations) and ``q shift
    (sd)`` (its mean moved by that many of them), redrawing ``curve(width, shift)`` (E[L_k] at
    each k, mean over ``n_points`` examples) against the curve at width 1, shift 1 (dotted) and
    the exact log p(x) (dashed); ``start``: that reference curve if already computed (default
    ``curve(1, 1)``). The returned box has ``.sliders`` and ``.figure``."""
    width = widgets.FloatLogSlider(
        value=1.0,
        base=10,
        min=-0.5,
        max=0.7,
        step=0.05,
        description="q width",
        readout_format=".2f",
        continuous_update=False,
    )
    shift = widgets.FloatSlider(
        value=1.0,
        min=0.0,
        max=2.0,
        step=0.1,
        description="q shift (sd)",
        continuous_update=False,
    )
    start = _values(curve(1.0, 1.0) if start is None else start)
    fig = go.FigureWidget()
    fig.add_scatter(x=list(ks), y=start, mode="lines+markers", name="E[L_k], this q")
    fig.add_scatter(
        x=list(ks), y=start, mode="lines", line_dash="dot", name="width 1, shift 1"
    )
    fig.add_hline(y=exact, line_dash="dash", annotation_text="exact log p(x)")
    fig.update_layout(
        title="Move q: width 1, shift 1",
        xaxis_type="log",
        xaxis_title="k (log scale)",
        yaxis_title=f"E[L_k], nats (mean over {n_points} points)",
        height=420,
    )

    def redraw(change):
        fig.data[0].y = _values(curve(width.value, shift.value))
        fig.layout.title.text = (
            f"Move q: width {width.value:.2f}, shift {shift.value:.1f}"
        )

    width.observe(redraw, names="value")
    shift.observe(redraw, names="value")
    box = widgets.VBox([widgets.HBox([width, shift]), fig])
    box.sliders, box.figure = [width, shift], fig
    return box


def weighted_draws(draws: dict, dims: dict, digit: int, title: str) -> go.Figure:
    """One panel per model: the draws ``z [k, B, D]`` of q for example ``digit`` (1,000 of them,
    grey) and those with a weight above 1e-3 of the largest (area ~ weight), on the model's two
    dimensions ``dims[name]``. ``draws[name] = (z, w [k, B], ess [B])``."""
    fig = make_subplots(
        rows=1,
        cols=len(draws),
        horizontal_spacing=0.16,
        subplot_titles=[
            f"{name}: ESS {float(d[2][digit]):.1f}" for name, d in draws.items()
        ],
    )
    for col, (name, (z, w, _)) in enumerate(draws.items(), start=1):
        d0, d1 = dims[name]
        k = z.shape[0]
        few = torch.arange(0, k, max(1, k // 1000))  # 1,000 of the draws
        heavy = torch.nonzero(w[:, digit] > 1e-3 * w[:, digit].max()).squeeze(
            1
        )  # every draw with a noticeable weight
        fig.add_trace(
            go.Scatter(
                x=z[few, digit, d0],
                y=z[few, digit, d1],
                mode="markers",
                name="z ~ q(z|x)",
                marker=dict(size=4, color="lightgrey"),
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )
        size = (w[heavy, digit] / w[:, digit].max()).sqrt().mul(18).add(2).tolist()
        fig.add_trace(
            go.Scatter(
                x=z[heavy, digit, d0],
                y=z[heavy, digit, d1],
                mode="markers",
                name="weighted draws (area ~ weight)",
                showlegend=col == 1,
                marker=dict(size=size, color="#1f77b4", opacity=0.6),
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=f"z{d0 + 1} (most active)", row=1, col=col)
        fig.update_yaxes(title_text=f"z{d1 + 1} (second most active)", row=1, col=col)
    fig.update_layout(title=title, height=500, legend=dict(orientation="h", y=-0.22))
    return fig


def snr_against_k(
    ks: Sequence[int], means: dict, floor: Sequence[float], repeats: int, title: str
) -> go.Figure:
    """Mean gradient SNR against k per parameter group (``means[name]``: one value per k), with
    the lines k^(+1/2) for the decoder and k^(-1/2) for the others through the first point, and
    the noise floor of ``repeats`` draws dashed; log axes."""
    ks = list(ks)
    fig = go.Figure()
    for part, vals in means.items():
        vals = list(vals)
        if len(vals) != len(ks):
            raise ValueError(f"means[{part!r}] has {len(vals)} values for {len(ks)} ks")
        fig.add_trace(go.Scatter(x=ks, y=vals, mode="lines+markers", name=part))
        slope = 0.5 if part == "decoder" else -0.5
        fig.add_trace(
            go.Scatter(
                x=[ks[0], ks[-1]],
                y=[vals[0], vals[0] * (ks[-1] / ks[0]) ** slope],
                mode="lines",
                line_dash="dot",
                name=f"{part}: k^{slope:+g}, the large-k rate",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=list(floor),
            mode="lines",
            line_dash="dash",
            line_color="grey",
            name=f"noise floor ({repeats} repeats)",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="k (log scale)",
        yaxis_title="mean |E g| / std g (log scale)",
        height=420,
    )
    return fig


__all__ = [
    "bound_against_k",
    "nll_against_k",
    "proposal_panels",
    "proposal_explorer",
    "weighted_draws",
    "snr_against_k",
]


def kl_directions(
    mus,
    sigmas,
    surfaces: dict,
    minima: dict,
    cap: float = 8.0,
    title: str = "KL(q‖p) and KL(p‖q) over Gaussians q = N(μ, σ²)",
) -> go.Figure:
    """Side-by-side contour maps of two divergences over a grid of Gaussians q = N(μ, σ²).

    ``surfaces``: name -> tensor [len(mus), len(sigmas)] in nats (drawn capped at ``cap``);
    ``minima``: name -> (μ, σ) of each surface's minimum, marked with a cross. The names are the
    panel titles.
    """
    if set(surfaces) != set(minima):
        raise ValueError(
            f"surfaces and minima must name the same panels, got {sorted(surfaces)} "
            f"and {sorted(minima)}"
        )
    shape = (len(mus), len(sigmas))
    for name, s in surfaces.items():
        if tuple(s.shape) != shape:
            raise ValueError(
                f"surface {name!r} must have shape [len(mus), len(sigmas)] = {shape}, "
                f"got {tuple(s.shape)}"
            )
    names = list(surfaces)
    fig = make_subplots(
        rows=1,
        cols=len(names),
        subplot_titles=[f"{n} (nats)" for n in names],
        horizontal_spacing=0.12,
    )
    for col, name in enumerate(names, start=1):
        fig.add_trace(
            go.Contour(
                x=_values(sigmas),
                y=_values(mus),
                z=torch.as_tensor(surfaces[name]).clamp(max=cap).cpu().numpy(),
                colorscale="Viridis",
                ncontours=24,
                showscale=col == len(names),
                colorbar=dict(title=f"nats (capped at {cap:g})"),
            ),
            row=1,
            col=col,
        )
        mu, sigma = minima[name]
        fig.add_trace(
            go.Scatter(
                x=[sigma],
                y=[mu],
                mode="markers",
                name="minimum",
                showlegend=False,
                marker=dict(color="red", size=11, symbol="x"),
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="σ of q", row=1, col=col)
        fig.update_yaxes(title_text="μ of q", row=1, col=col)
    fig.update_layout(title=title, height=430)
    return fig
