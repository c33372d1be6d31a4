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
        pio.renderers["png"].width = pio.renderers["png"].height = None  # each figure's own size
        pio.renderers["png"].scale = 1
    pio.renderers.default = renderer
    return renderer


def _to_numpy_images(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"images must be grayscale [N, 1, H, W], got shape {images.shape}")
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"images must be [N, H, W] or [N, 1, H, W], got shape {images.shape}")
    return images


def tile(images, ncols: int | None = None, pad: int = 1, pad_value: float = 0.15) -> np.ndarray:
    """Arrange ``[N, (1,) H, W]`` images into one 2-D array, ``ncols`` per row, row-major."""
    images = _to_numpy_images(images)
    n, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value, dtype=np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = im
    return out


def image_grid(images, ncols: int | None = None, title: str = "", row_labels: Sequence[str] | None = None,
               height: int | None = None) -> go.Figure:
    """A grid of grayscale images (values in [0, 1], 1 = ink shown dark) as one heatmap figure."""
    grid = tile(images, ncols)
    fig = go.Figure(go.Heatmap(z=grid[::-1], colorscale="Greys", zmin=0, zmax=1, showscale=False,
                               hovertemplate="pixel value %{z:.2f}<extra></extra>"))
    h = height or int(min(700, max(180, 34 * grid.shape[0] / 29 * 3)))
    fig.update_layout(title=title, height=h, width=None, margin=dict(l=10, r=10, t=50, b=10))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x", constrain="domain")
    if row_labels:
        rows = len(row_labels)
        for i, label in enumerate(row_labels):
            y = grid.shape[0] * (1 - (i + 0.5) / rows)
            fig.add_annotation(x=-2, y=y, text=label, showarrow=False, xanchor="right")
        fig.update_layout(margin=dict(l=110))
    return fig


def curves(series: dict[str, Sequence[float]], title: str, xaxis: str = "epoch", yaxis: str = "nats",
           x: Sequence[float] | None = None, log_y: bool = False) -> go.Figure:
    """Several named lines on one figure, e.g. training and test ELBO per epoch."""
    fig = go.Figure()
    for name, ys in series.items():
        ys = list(ys)
        fig.add_trace(go.Scatter(x=list(x) if x is not None else list(range(1, len(ys) + 1)), y=ys,
                                 mode="lines+markers" if len(ys) < 60 else "lines", name=name))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=420)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def xy_lines(series: dict, title: str, xaxis: str, yaxis: str, log_x: bool = False, log_y: bool = False,
             height: int = 450, tick_at_points: bool = False) -> go.Figure:
    """Named lines with markers, each given as a mapping ``{x: y}`` or a pair ``(xs, ys)``; on log axes
    when asked (``tick_at_points`` puts the x ticks at the union of the xs, for a few sizes on a log axis)."""
    fig = go.Figure()
    xs_all = set()
    for name, values in series.items():
        xs, ys = (sorted(values), [values[k] for k in sorted(values)]) if isinstance(values, dict) else values
        xs, ys = list(xs), list(ys)
        if len(xs) != len(ys):
            raise ValueError(f"series {name!r} has {len(xs)} x values and {len(ys)} y values")
        xs_all.update(xs)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=height)
    fig.update_xaxes(type="log" if log_x else "linear", tickvals=sorted(xs_all) if tick_at_points else None)
    if log_y:
        fig.update_yaxes(type="log")
    return fig
