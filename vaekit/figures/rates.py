"""Figures and a widget for what the latent carries: the rate-distortion plane (Alemi et al. 2018)
with the ELBO's iso-lines, and a 2-D latent's aggregate posterior drawn over its prior.

:class:`RateDistortionExplorer` is a slider ``log₂ β`` over models trained at several β: the
chosen model's point is highlighted on the plane and its decoded images are shown beside it. The
images are computed once, up front, so dragging the slider only redraws.
"""

from __future__ import annotations

import math
from typing import Mapping

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .latents import DIGIT_COLORS
from .plots import tile


def _check_points(points: Mapping) -> None:
    if not points:
        raise ValueError("points must map at least one label to (rate, distortion)")
    for label, rd in points.items():
        if len(rd) != 2 or not all(math.isfinite(float(v)) for v in rd):
            raise ValueError(
                f"points[{label!r}] must be a finite (rate, distortion) pair in nats, got {rd!r}"
            )


def iso_elbo_levels(points: Mapping, n: int = 5) -> list[float]:
    """``n`` values of D + R (= -ELBO) for iso-lines: the smallest among ``points``, then evenly spaced
    up to the largest."""
    _check_points(points)
    sums = [float(r) + float(d) for r, d in points.values()]
    lo, hi = min(sums), max(sums)
    step = (hi - lo) / max(1, n - 1)
    return [lo + i * step for i in range(n)] if hi > lo else [lo]


def add_rate_distortion(
    fig: go.Figure, points: Mapping, highlight=None, row=None, col=None
) -> go.Figure:
    """Draw ``points`` (label -> (rate R, distortion D), nats) joined in order, the iso-lines D + R = const
    through them (dashed), and ``highlight`` (one label) as a large red marker, on ``fig`` (a subplot
    with ``row``/``col``)."""
    _check_points(points)
    rates = [float(r) for r, _ in points.values()]
    dists = [float(d) for _, d in points.values()]
    r_hi = max(rates) * 1.15 + 1
    where = dict(row=row, col=col) if row is not None else {}
    for level in iso_elbo_levels(points):
        r = np.linspace(0, r_hi, 2)
        fig.add_trace(
            go.Scatter(
                x=r,
                y=level - r,
                mode="lines",
                line=dict(color="#bbbbbb", dash="dash", width=1),
                hoverinfo="skip",
                showlegend=False,
            ),
            **where,
        )
    fig.add_trace(
        go.Scatter(
            x=rates,
            y=dists,
            mode="lines+markers+text",
            text=[str(k) for k in points],
            textposition="top right",
            marker=dict(size=8, color="#1f77b4"),
            line=dict(color="#1f77b4"),
            name="models",
            showlegend=False,
            hovertemplate="R = %{x:.2f}, D = %{y:.2f} nats<extra>%{text}</extra>",
        ),
        **where,
    )
    hx, hy = (
        ([float(points[highlight][0])], [float(points[highlight][1])])
        if highlight is not None
        else ([], [])
    )
    fig.add_trace(
        go.Scatter(
            x=hx,
            y=hy,
            mode="markers",
            marker=dict(
                size=16, color="#d62728", symbol="circle-open", line=dict(width=3)
            ),
            name="selected",
            showlegend=False,
            hoverinfo="skip",
        ),
        **where,
    )
    d_lo, d_hi = min(dists), max(dists)
    pad = 0.1 * (d_hi - d_lo) + 1
    fig.update_xaxes(
        title_text="rate R = E KL(q(z|x) ‖ p(z)) (nats)", range=[0, r_hi], **where
    )
    fig.update_yaxes(
        title_text="distortion D = −E log p(x|z) (nats)",
        range=[d_lo - pad, d_hi + pad],
        **where,
    )
    return fig


def rate_distortion_figure(
    points: Mapping,
    title: str = "Rate and distortion across β (dashed: D + R = const)",
    highlight=None,
    height: int = 460,
) -> go.Figure:
    """The rate-distortion plane for ``points`` (label -> (R, D) in nats), with ELBO iso-lines."""
    fig = add_rate_distortion(go.Figure(), points, highlight)
    fig.update_layout(title=title, height=height)
    return fig


class RateDistortionExplorer(widgets.VBox):
    """A slider ``log₂ β`` over the models of ``points`` (β -> (R, D)); ``images`` (β -> ``[n, 1, H, W]``
    in [0, 1], e.g. decoded samples and reconstructions of that β's model) are shown beside the plane.
    Every β must be a power of two (the slider moves in steps of one)."""

    def __init__(
        self,
        points: Mapping[float, tuple],
        images: Mapping[float, torch.Tensor],
        ncols: int = 8,
        title: str = "β-VAE on the rate-distortion plane",
    ):
        _check_points(points)
        if set(points) != set(images):
            raise ValueError(
                f"images must have one entry per β of points, got {sorted(images)} for {sorted(points)}"
            )
        logs = {b: math.log2(b) for b in points}
        if any(abs(v - round(v)) > 1e-9 for v in logs.values()):
            raise ValueError(f"every β must be a power of two, got {sorted(points)}")
        self.by_log = {int(round(v)): b for b, v in logs.items()}
        self.points, self.ncols, self.title = dict(points), ncols, title
        self.tiles = {b: tile(im, ncols)[::-1] for b, im in images.items()}
        start = 0 if 0 in self.by_log else min(self.by_log)
        self.slider = widgets.FloatSlider(
            value=start,
            min=min(self.by_log),
            max=max(self.by_log),
            step=1,
            description="log₂ β",
            readout_format=".0f",
            continuous_update=True,
        )
        fig = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.5, 0.5],
            horizontal_spacing=0.12,
            subplot_titles=("rate and distortion (nats)", "decoded images"),
        )
        labels = {f"β={b:g}": rd for b, rd in sorted(self.points.items())}
        add_rate_distortion(fig, labels, row=1, col=1)
        fig.add_trace(
            go.Heatmap(
                z=self.tiles[self.by_log[start]],
                colorscale="Greys",
                zmin=0,
                zmax=1,
                showscale=False,
                hoverinfo="skip",
            ),
            row=1,
            col=2,
        )
        fig.update_xaxes(visible=False, row=1, col=2)
        fig.update_yaxes(visible=False, scaleanchor="x2", row=1, col=2)
        fig.update_layout(height=460, margin=dict(t=90))
        self.view = go.FigureWidget(fig)
        self.slider.observe(self.redraw, names="value")
        self.redraw()
        super().__init__([self.slider, self.view])

    @property
    def beta(self) -> float:
        return self.by_log[int(round(self.slider.value))]

    def redraw(self, change=None) -> None:
        b = self.beta
        r, d = self.points[b]
        marker = next(t for t in self.view.data if t.name == "selected")
        heat = next(t for t in self.view.data if isinstance(t, go.Heatmap))
        with self.view.batch_update():
            marker.x, marker.y = [float(r)], [float(d)]
            heat.z = self.tiles[b]
            self.view.layout.title.text = (
                f"{self.title}: β = {b:g}<br><sub>R = {float(r):.1f}, D = {float(d):.1f}, "
                f"D + R = {float(r) + float(d):.1f} nats (−ELBO)</sub>"
            )


def aggregate_posterior_figure(
    panels: Mapping[str, tuple],
    labels: torch.Tensor | None = None,
    limit: float = 4.5,
    title: str = "Aggregate posterior (dots: posterior means) over the prior (shading: log-density)",
    height: int = 430,
) -> go.Figure:
    """One panel per prior: ``panels`` maps a short title to (prior, means ``[N, 2]``); the prior's
    log-density is shaded on [-limit, limit]^2 down to 8 nats below its peak (darker: more mass), so that
    sharp mixture components stay visible, and the posterior means are drawn as dots, one colour and
    legend entry per value of ``labels`` (e.g. the digit)."""
    if not panels:
        raise ValueError("panels must hold at least one (prior, means) pair")
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.05
    )
    t = torch.linspace(-limit, limit, 121)
    grid = torch.cartesian_prod(t, t)  # (G, 2): z1 slow, z2 fast
    groups = (
        [(None, slice(None))]
        if labels is None
        else [(int(v), labels == v) for v in torch.unique(labels)]
    )
    for col, (name, (prior, means)) in enumerate(panels.items(), start=1):
        if means.dim() != 2 or means.shape[1] != 2:
            raise ValueError(
                f"panels[{name!r}] must hold means of shape [N, 2], got {tuple(means.shape)}"
            )
        with torch.no_grad():
            logp = (
                prior.log_prob(grid.to(prior.mean.device, prior.mean.dtype))
                .float()
                .cpu()
                .reshape(len(t), len(t))
            )
        shade = logp.T.clamp(
            min=logp.max().item() - 8.0
        )  # log-density, the 8 nats below the peak: sharp priors stay visible
        fig.add_trace(
            go.Contour(
                x=t.numpy(),
                y=t.numpy(),
                z=shade.numpy(),
                colorscale="Greys",
                showscale=False,
                ncontours=10,
                contours=dict(coloring="fill"),
                line=dict(width=0),
                opacity=0.55,
                hoverinfo="skip",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
        m = means.detach().float().cpu()
        for value, rows in groups:
            fig.add_trace(
                go.Scatter(
                    x=m[rows, 0].numpy(),
                    y=m[rows, 1].numpy(),
                    mode="markers",
                    marker=dict(
                        size=3,
                        color=DIGIT_COLORS[value % 10]
                        if value is not None
                        else "#333333",
                    ),
                    name=str(value) if value is not None else "posterior means",
                    legendgroup=str(value),
                    showlegend=col == 1,
                    hovertemplate="z = (%{x:.2f}, %{y:.2f})<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="z1", range=[-limit, limit], row=1, col=col)
        fig.update_yaxes(
            title_text="z2" if col == 1 else None, range=[-limit, limit], row=1, col=col
        )
    fig.update_layout(
        title=title,
        height=height,
        legend=dict(title="digit", itemsizing="constant", orientation="h", y=-0.22),
    )
    return fig
