"""Figures for codes scored against known factors: numbers over a hyperparameter with every seed
shown, and the mutual information between each latent and each factor."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def seed_panels(
    xs: Sequence[float],
    panels: dict[str, tuple],
    title: str,
    xaxis: str = "β",
    seeds: Sequence | None = None,
    log_x: bool = True,
    height: int = 460,
    width: int = 980,
) -> go.Figure:
    """Side-by-side panels, ``panels[subplot title] = (values [len(xs), seeds], y-axis title)``: every
    seed as a dot (one colour per seed, the same in every panel, named ``seed s`` for ``s`` in ``seeds``,
    default 1, 2, ...) and the mean over seeds as a black line with error bars of one standard deviation
    over seeds."""
    xs = list(xs)
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=list(panels), horizontal_spacing=0.1
    )
    for col, (panel, (values, ytitle)) in enumerate(panels.items(), start=1):
        v = np.asarray(torch.as_tensor(values, dtype=torch.float64))
        if v.ndim != 2 or v.shape[0] != len(xs):
            raise ValueError(
                f"panel {panel!r} must have values of shape [len(xs), seeds] = [{len(xs)}, S], got {list(v.shape)}"
            )
        sd = v.std(1, ddof=1) if v.shape[1] > 1 else np.zeros(len(xs))
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=v.mean(1),
                error_y=dict(type="data", array=sd),
                mode="lines+markers",
                line=dict(color="black"),
                name="mean ± sd over seeds",
                legendgroup="mean",
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )
        for s in range(v.shape[1]):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=v[:, s],
                    mode="markers",
                    marker=dict(color=COLORS[s % len(COLORS)], size=9, opacity=0.8),
                    name=f"seed {s + 1 if seeds is None else list(seeds)[s]}",
                    legendgroup=f"seed{s}",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_yaxes(title_text=ytitle, row=1, col=col)
        fig.update_xaxes(
            title_text=xaxis,
            type="log" if log_x else "linear",
            tickvals=xs,
            row=1,
            col=col,
        )
    fig.update_layout(
        title=title,
        height=height,
        width=width,
        margin=dict(t=110),
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="center", x=0.5),
    )
    return fig


def information_matrices(
    mi: dict[str, torch.Tensor], factors: Sequence[str], title: str, height: int = 380
) -> go.Figure:
    """One heatmap per model, ``mi[name]`` = I(z_j; v_k) / H(v_k) ``[D, K]``: rows the latents, columns the factors,
    the number written in each cell (a disentangled code has one bright cell per column, in different rows)."""
    fig = make_subplots(
        rows=1, cols=len(mi), subplot_titles=list(mi), horizontal_spacing=0.08
    )
    for col, (name, m) in enumerate(mi.items(), start=1):
        m = np.asarray(torch.as_tensor(m, dtype=torch.float64))
        if m.ndim != 2 or m.shape[1] != len(factors):
            raise ValueError(
                f"mi[{name!r}] must have shape [D, {len(factors)}], got {list(m.shape)}"
            )
        rows = [f"z{j + 1}" for j in range(m.shape[0])]
        fig.add_trace(
            go.Heatmap(
                z=m,
                x=list(factors),
                y=rows,
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=col == len(mi),
                colorbar=dict(title="I / H"),
                text=np.round(m, 2),
                texttemplate="%{text}",
                hovertemplate="%{y}, %{x}: I/H = %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(
            autorange="reversed",
            title_text="latent" if col == 1 else None,
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="factor", row=1, col=col)
    fig.update_layout(title=title, height=height)
    return fig
