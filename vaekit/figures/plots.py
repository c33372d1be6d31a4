"""plotly figure builders shared by the notebooks.

:func:`setup` picks the renderer: JupyterLab's native plotly output, plus a PNG copy of every
figure when ``$VAEKIT_STATIC_FIGURES`` is set (how the committed notebooks are executed, so that
a reader browsing the repository, where plotly's JSON does not render, still sees each figure).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

STATIC_ENV = "VAEKIT_STATIC_FIGURES"
TEMPLATE = "plotly_white"


def setup() -> str:
    """Configure plotly for the notebooks; returns the renderer name in use."""
    pio.templates.default = TEMPLATE
    renderer = "plotly_mimetype"
    if os.environ.get(STATIC_ENV):
        renderer += "+png"
        pio.renderers["png"].width = pio.renderers["png"].height = (
            None  # each figure's own size
        )
        pio.renderers["png"].scale = 1
    pio.renderers.default = renderer
    return renderer


def _to_numpy_images(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(
                f"images must be grayscale [N, 1, H, W], got shape {images.shape}"
            )
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(
            f"images must be [N, H, W] or [N, 1, H, W], got shape {images.shape}"
        )
    return images


def tile(
    images, ncols: int | None = None, pad: int = 1, pad_value: float = 0.15
) -> np.ndarray:
    """Arrange ``[N, (1,) H, W]`` images into one 2-D array, ``ncols`` per row, row-major."""
    images = _to_numpy_images(images)
    n, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    out = np.full(
        (nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value, dtype=np.float32
    )
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = im
    return out


def image_grid(
    images,
    ncols: int | None = None,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    height: int | None = None,
) -> go.Figure:
    """A grid of grayscale images (values in [0, 1], 1 = ink shown dark) as one heatmap figure."""
    grid = tile(images, ncols)
    fig = go.Figure(
        go.Heatmap(
            z=grid[::-1],
            colorscale="Greys",
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="pixel value %{z:.2f}<extra></extra>",
        )
    )
    h = height or int(min(700, max(180, 34 * grid.shape[0] / 29 * 3)))
    fig.update_layout(
        title=title, height=h, width=None, margin=dict(l=10, r=10, t=50, b=10)
    )
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", constrain="domain")
    if row_labels:
        rows = len(row_labels)
        for i, label in enumerate(row_labels):
            y = grid.shape[0] * (1 - (i + 0.5) / rows)
            fig.add_annotation(x=-2, y=y, text=label, showarrow=False, xanchor="right")
        fig.update_layout(margin=dict(l=110))
    return fig


def curves(
    series: dict[str, Sequence[float]],
    title: str,
    xaxis: str = "epoch",
    yaxis: str = "nats",
    x: Sequence[float] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """Several named lines on one figure, e.g. training and test ELBO per epoch."""
    fig = go.Figure()
    for name, ys in series.items():
        ys = list(ys)
        fig.add_trace(
            go.Scatter(
                x=list(x) if x is not None else list(range(1, len(ys) + 1)),
                y=ys,
                mode="lines+markers" if len(ys) < 60 else "lines",
                name=name,
            )
        )
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=420)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def xy_lines(
    series: dict,
    title: str,
    xaxis: str,
    yaxis: str,
    log_x: bool = False,
    log_y: bool = False,
    height: int = 450,
    tick_at_points: bool = False,
) -> go.Figure:
    """Named lines with markers, each given as a mapping ``{x: y}`` or a pair ``(xs, ys)``; on log axes
    when asked (``tick_at_points`` puts the x ticks at the union of the xs, for a few sizes on a log axis)."""
    fig = go.Figure()
    xs_all = set()
    for name, values in series.items():
        xs, ys = (
            (sorted(values), [values[k] for k in sorted(values)])
            if isinstance(values, dict)
            else values
        )
        xs, ys = list(xs), list(ys)
        if len(xs) != len(ys):
            raise ValueError(
                f"series {name!r} has {len(xs)} x values and {len(ys)} y values"
            )
        xs_all.update(xs)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=height)
    fig.update_xaxes(
        type="log" if log_x else "linear",
        tickvals=sorted(xs_all) if tick_at_points else None,
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def history_panels(
    histories: dict, panels: dict[str, tuple[str, str]], title: str, height: int = 440
) -> go.Figure:
    """Training histories side by side: one panel per logged key, ``panels[key] = (subplot title,
    y-axis title)``, one colour per run (``histories[name]``: a :class:`vaekit.train.History`),
    against the optimiser step, only at the epochs that logged the key (validation every few epochs),
    with markers where there are fewer than 60 points; the legend names each run once."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=len(panels),
        horizontal_spacing=0.2,  # room for the second panel's y title
        subplot_titles=[t for t, _ in panels.values()],
    )
    colors = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
    ]
    for i, (name, h) in enumerate(histories.items()):
        for col, key in enumerate(panels, start=1):
            points = [(r["step"], r[key]) for r in h.records if key in r]
            fig.add_trace(
                go.Scatter(
                    x=[s for s, _ in points],
                    y=[v for _, v in points],
                    name=str(name),
                    mode="lines+markers" if len(points) < 60 else "lines",
                    legendgroup=str(name),
                    showlegend=col == 1,
                    line_color=colors[i % len(colors)],
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="optimiser step")
    for col, (_, ytitle) in enumerate(panels.values(), start=1):
        fig.update_yaxes(title_text=ytitle, row=1, col=col)
    fig.update_layout(title=title, height=height)
    return fig


def bar_panels(
    names: Sequence[str], panels: dict[str, tuple], title: str, height: int = 460
) -> go.Figure:
    """The same runs ``names`` as bars in side-by-side panels: ``panels[subplot title] = (values,
    errors or None, y-axis title)``, one value (and error-bar half-width) per name."""
    from plotly.subplots import make_subplots

    names = list(names)
    fig = make_subplots(
        rows=1, cols=len(panels), horizontal_spacing=0.16, subplot_titles=list(panels)
    )
    for col, (panel, (values, errors, ytitle)) in enumerate(panels.items(), start=1):
        values = list(values)
        if len(values) != len(names) or (
            errors is not None and len(list(errors)) != len(names)
        ):
            raise ValueError(
                f"panel {panel!r} must have one value (and error) per name ({len(names)})"
            )
        fig.add_trace(
            go.Bar(
                x=names,
                y=values,
                error_y=None if errors is None else dict(array=list(errors)),
            ),
            1,
            col,
        )
        fig.update_yaxes(title_text=ytitle, row=1, col=col)
    fig.update_layout(title=title, height=height, showlegend=False).update_xaxes(
        tickangle=-30
    )
    return fig


def bars(
    categories: Sequence[str],
    series: dict,
    title: str,
    xaxis: str,
    yaxis: str,
    barmode: str = "group",
    height: int = 450,
) -> go.Figure:
    """Bars over ``categories``, one trace per entry of ``series``: a list of heights, or a dict with
    ``y`` and optionally ``base`` (where each bar starts) and ``error`` (error-bar half-widths)."""
    categories = list(categories)
    fig = go.Figure()
    for name, spec in series.items():
        spec = dict(spec) if isinstance(spec, dict) else {"y": spec}
        y = list(spec["y"])
        if len(y) != len(categories):
            raise ValueError(
                f"series {name!r} has {len(y)} values for {len(categories)} categories"
            )
        error = spec.get("error")
        fig.add_trace(
            go.Bar(
                x=categories,
                y=y,
                base=spec.get("base"),
                name=name,
                error_y=None if error is None else dict(type="data", array=list(error)),
            )
        )
    fig.update_layout(
        title=title,
        barmode=barmode,
        height=height,
        xaxis_title=xaxis,
        yaxis_title=yaxis,
    )
    return fig


def heatmap(
    x: Sequence[float],
    y: Sequence[float],
    z,
    title: str,
    xaxis: str,
    yaxis: str,
    colorbar: str,
    hover: str | None = None,
    text=None,
    zmid: float | None = None,
    colorscale: str = "RdBu_r",
    height: int = 480,
) -> go.Figure:
    """A heatmap ``z`` ``[len(y), len(x)]`` with a titled colour bar; ``hover`` a plotly hover
    template (it may show ``text``, an array of the same shape)."""
    z = (
        np.asarray(torch.as_tensor(z).detach().cpu())
        if isinstance(z, torch.Tensor)
        else np.asarray(z)
    )
    if z.shape != (len(y), len(x)):
        raise ValueError(
            f"z must have shape [len(y), len(x)] = [{len(y)}, {len(x)}], got {list(z.shape)}"
        )
    text = None if text is None else np.asarray(torch.as_tensor(text).detach().cpu())
    fig = go.Figure(
        go.Heatmap(
            x=list(x),
            y=list(y),
            z=z,
            colorscale=colorscale,
            zmid=zmid,
            colorbar=dict(title=colorbar),
            text=text,
            hovertemplate=hover,
        )
    )
    fig.update_layout(title=title, height=height, xaxis_title=xaxis, yaxis_title=yaxis)
    return fig


def line_groups(
    groups: dict[str, dict[str, Sequence[float]]],
    title: str,
    xaxis: str,
    yaxis: str,
    colors: Sequence[str] | None = None,
    dashes: Sequence[str] = ("solid", "dash", "dot"),
    height: int = 520,
) -> go.Figure:
    """Lines in groups: one colour per group, its lines (``groups[name][label]``, one value per
    epoch from 1) in successive dash styles, each named ``"name: label"``."""
    colors = list(
        colors or ["black", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    )
    fig = go.Figure()
    for i, (name, lines) in enumerate(groups.items()):
        for j, (label, ys) in enumerate(lines.items()):
            ys = list(ys)
            fig.add_trace(
                go.Scatter(
                    x=list(range(1, len(ys) + 1)),
                    y=ys,
                    mode="lines",
                    name=f"{name}: {label}",
                    line=dict(
                        color=colors[i % len(colors)], dash=dashes[j % len(dashes)]
                    ),
                )
            )
    fig.update_layout(title=title, height=height, xaxis_title=xaxis, yaxis_title=yaxis)
    return fig


def paths_on_contour(
    grid: torch.Tensor,
    surface: torch.Tensor,
    paths: dict,
    point: Sequence[float],
    title: str,
    xaxis: str,
    yaxis: str,
    colorbar: str,
    contours: dict | None = None,
    point_name: str = "optimum",
) -> go.Figure:
    """Optimisation paths ``paths[name]`` (``[steps + 1, 2]``) over the contours of a loss
    ``surface`` ``[len(grid), len(grid)]`` on a square ``grid``, the optimum ``point`` a star; equal
    axis scales."""
    fig = go.Figure(
        go.Contour(
            x=grid,
            y=grid,
            z=surface,
            colorscale="Greys",
            showscale=True,
            opacity=0.45,
            contours=contours,
            colorbar=dict(title=colorbar),
            name="exact loss",
        )
    )
    for name, path in paths.items():
        fig.add_trace(
            go.Scatter(
                x=path[:, 0],
                y=path[:, 1],
                mode="lines+markers",
                marker=dict(size=3),
                name=name,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[point[0]],
            y=[point[1]],
            mode="markers",
            marker=dict(symbol="star", size=16, color="black"),
            name=point_name,
        )
    )
    fig.update_layout(
        title=title,
        height=600,
        width=700,
        xaxis_title=xaxis,
        yaxis_title=yaxis,
        legend=dict(x=0.01, y=0.99),
    )
    fig.update_yaxes(scaleanchor="x")
    return fig


def score_figure(results: dict, title: str, reference: str = "reference"):
    """:func:`vaekit.compare.score_each` results (with a reference) as two bar panels: each model's NLL minus the
    reference's with bars of two paired standard errors, and its KL."""
    return bar_panels(
        results,
        {
            f"test NLL minus {reference}'s": (
                [r["dnll"] for r in results.values()],
                [2 * r["se"] for r in results.values()],
                "Δ NLL, nats (bars: ± 2 paired s.e.)",
            ),
            "KL, test digits": ([r["kl"] for r in results.values()], None, "KL (nats)"),
        },
        title,
    )
