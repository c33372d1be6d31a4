"""Figures of a two-dimensional Gaussian mixture (notebook 01): the points coloured by the
component that drew them or by their responsibilities p(z|x), and the density p(x) with every
component's 2σ ellipse.

Models are :class:`vaekit.models.mixture.GaussianMixture` objects with two-dimensional components; points
are ``[N, 2]`` tensors. Each function returns a plotly figure with equal axis scales.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

COLOURS = ("rgb(31,119,180)", "rgb(214,39,40)", "rgb(44,160,44)")
PALETTE = np.array([[31, 119, 180], [214, 39, 40], [44, 160, 44]], dtype=float)


def _square(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
    fig.update_layout(
        title=title, xaxis_title="x₁", yaxis_title="x₂", height=height, **layout
    )
    fig.update_yaxes(scaleanchor="x")
    return fig


def responsibility_colours(resp: torch.Tensor) -> list[str]:
    """One colour per point, the mix of the three component colours by its responsibilities ``[N, 3]``."""
    resp = torch.as_tensor(resp).detach().cpu()
    if resp.dim() != 2 or resp.shape[1] != len(PALETTE):
        raise ValueError(
            f"resp must be [N, {len(PALETTE)}] responsibilities, got shape {list(resp.shape)}"
        )
    return [f"rgb({a:.0f},{b:.0f},{c:.0f})" for a, b, c in resp.numpy() @ PALETTE]


def clusters(
    x: torch.Tensor, z: torch.Tensor, model, title: str, radius: float = 2.0
) -> go.Figure:
    """The points ``x`` coloured by their component ``z``, with each component's ellipse at ``radius``
    standard deviations."""
    ellipses = model.ellipses(radius=radius).detach().numpy()
    fig = go.Figure()
    for k in range(ellipses.shape[0]):
        pts = x[z == k]
        fig.add_trace(
            go.Scatter(
                x=pts[:, 0],
                y=pts[:, 1],
                mode="markers",
                name=f"z = {k}",
                marker=dict(size=4, color=COLOURS[k % len(COLOURS)], opacity=0.6),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=ellipses[k, :, 0],
                y=ellipses[k, :, 1],
                mode="lines",
                name=f"{radius:g}σ ellipse of component {k}",
                line=dict(color=COLOURS[k % len(COLOURS)], width=2),
            )
        )
    return _square(fig, title, 500)


def responsibilities(x: torch.Tensor, resp: torch.Tensor, title: str) -> go.Figure:
    """The points ``x`` coloured by :func:`responsibility_colours`, p(z|x) shown on hover."""
    resp = torch.as_tensor(resp).detach().cpu()
    fig = go.Figure(
        go.Scatter(
            x=x[:, 0],
            y=x[:, 1],
            mode="markers",
            marker=dict(size=5, color=responsibility_colours(resp)),
            customdata=resp.numpy(),
            name="data",
            hovertemplate="p(z|x) = (%{customdata[0]:.2f}, %{customdata[1]:.2f}, %{customdata[2]:.2f})<extra></extra>",
        )
    )
    return _square(fig, title, 500)


def grid_points(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """The points of the grid ``t1`` x ``t2``, ``[len(t2) * len(t1), 2]``, rows following x2 (so a
    density on them reshapes to ``[len(t2), len(t1)]`` for a contour plot)."""
    g2, g1 = torch.meshgrid(t2, t1, indexing="ij")
    return torch.stack([g1, g2], -1).reshape(-1, 2)


@torch.no_grad()
def density(
    model,
    x: torch.Tensor,
    ellipses: dict,
    title: str,
    t1: torch.Tensor,
    t2: torch.Tensor,
) -> go.Figure:
    """Contours of ``model``'s density p(x) on the grid ``t1`` x ``t2``, the points ``x``, and the 2σ
    ellipses of each model in ``ellipses[label] = (model, colour, dash)``, one legend entry per label."""
    dens = (
        model.log_marginal(grid_points(t1, t2)).exp().reshape(len(t2), len(t1)).numpy()
    )
    fig = go.Figure(
        go.Contour(
            x=t1.numpy(),
            y=t2.numpy(),
            z=dens,
            colorscale="Blues",
            ncontours=15,
            colorbar=dict(title="p(x)"),
            name="learned density",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x[:, 0],
            y=x[:, 1],
            mode="markers",
            marker=dict(size=3, color="rgba(0,0,0,0.35)"),
            name="data",
        )
    )
    for label, (other, colour, dash) in ellipses.items():
        ell = other.ellipses(radius=2.0).numpy()
        for k in range(ell.shape[0]):
            fig.add_trace(
                go.Scatter(
                    x=ell[k, :, 0],
                    y=ell[k, :, 1],
                    mode="lines",
                    line=dict(color=colour, dash=dash, width=2),
                    name=label,
                    legendgroup=label,
                    showlegend=k == 0,
                )
            )
    return _square(fig, title, 580, legend=dict(orientation="h", y=-0.15))


__all__ = [
    "COLOURS",
    "responsibility_colours",
    "grid_points",
    "clusters",
    "responsibilities",
    "density",
]
