"""Looking at a VQ-VAE's codebook: usage over training, the code vectors among the encoder outputs,
and a widget that edits one code of a digit's grid.

The figures take the :class:`~vaekit.models.vqvae.CodebookMonitor` records and models of notebook 14 and
return plotly figures; :class:`CodeEditor` is an ipywidgets box (sliders and a ``FigureWidget``)
that decodes the edited grid on the model's device at every change.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..evaluation import metrics
from ..utils import check_tensor

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def usage_curves(monitors: dict, num_codes: int) -> go.Figure:
    """Perplexity (left) and percentage of dead codes (right) over training, one line per monitor."""
    n_digits = len(next(iter(monitors.values())).x)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Codebook perplexity", "Dead codes"),
        horizontal_spacing=0.16,
    )
    for (name, m), colour in zip(monitors.items(), COLOURS):
        fig.add_trace(
            go.Scatter(x=m.steps, y=m.perplexity, name=name, line=dict(color=colour)),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=m.steps,
                y=[100 * d for d in m.dead_fraction],
                name=name,
                line=dict(color=colour),
                showlegend=False,
            ),
            row=1,
            col=2,
        )
    fig.add_hline(y=num_codes / 3, line_dash="dot", annotation_text="K/3", row=1, col=1)
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(title_text="perplexity (codes)", row=1, col=1)
    fig.update_yaxes(
        title_text=f"codes unused on {n_digits} digits (%)",
        range=[0, 100],
        row=1,
        col=2,
    )
    fig.update_layout(
        title=f"Codebook usage during training, K = {num_codes}",
        height=420,
        legend=dict(orientation="h", y=-0.22),
    )
    return fig


def usage_heatmaps(monitors: dict) -> go.Figure:
    """Each code's share of the code choices over training (log10), codes sorted by final usage."""
    fig = make_subplots(
        rows=1,
        cols=len(monitors),
        subplot_titles=list(monitors),
        horizontal_spacing=0.06,
    )
    for col, (name, m) in enumerate(monitors.items(), start=1):
        usage = torch.stack(m.usage).double()  # (T, K)
        share = (usage / usage.sum(1, keepdim=True)).float()
        order = torch.argsort(usage[-1], descending=True)
        fig.add_trace(
            go.Heatmap(
                z=torch.log10(share[:, order].T + 1e-5).numpy(),
                x=m.steps,
                y=list(range(usage.shape[1])),
                colorscale="Viridis",
                zmin=-5,
                zmax=0,
                showscale=(col == len(monitors)),
                colorbar=dict(title="log10 share"),
                hovertemplate="step %{x}<br>code rank %{y}<br>log10 share %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="training step")
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="code (sorted by final usage)", row=1, col=1)
    fig.update_layout(
        title="Code usage over training (log10 of each code's share)", height=460
    )
    return fig


def usage_histogram(monitors: dict) -> go.Figure:
    """Each code's share of the code choices at the last measurement, codes sorted by usage (log scale)."""
    fig = go.Figure()
    for (name, m), colour in zip(monitors.items(), COLOURS):
        final = m.usage[-1].double()
        fig.add_trace(
            go.Bar(
                x=list(range(len(final))),
                y=(100 * final / final.sum()).sort(descending=True).values.numpy(),
                name=name,
                marker_color=colour,
                opacity=0.75,
            )
        )
    fig.update_layout(
        title="Code usage at the end of training",
        barmode="overlay",
        xaxis_title="code rank",
        yaxis_title="share of code choices (%)",
        yaxis_type="log",
        yaxis_dtick=1,
        height=400,
    )  # powers of ten only
    return fig


@torch.no_grad()
def encoder_outputs(model, x: torch.Tensor) -> torch.Tensor:
    """The encoder's output vectors z_e for images ``x``, one row per grid position: ``[N*H*W, D]`` on the CPU."""
    z = model.encode(x.to(model.device))  # (N, D, H, W)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).cpu()


def codebook_pca(
    models: dict, x: torch.Tensor, max_points: int = 3000, seed: int = 0
) -> go.Figure:
    """Code vectors among the encoder outputs of ``x``, projected on the encoder outputs' top two
    principal directions: one panel per model; used codes coloured by log10 uses on ``x``, unused as crosses."""
    fig = make_subplots(
        rows=1, cols=len(models), subplot_titles=list(models), horizontal_spacing=0.12
    )
    g = torch.Generator().manual_seed(seed)
    for col, (name, model) in enumerate(models.items(), start=1):
        z = encoder_outputs(model, x)  # (N*49, D)
        mean = z.mean(0)
        v = torch.linalg.svd(z - mean, full_matrices=False).Vh[:2]  # (2, D)
        pz = (
            (z[torch.randperm(len(z), generator=g)[:max_points]] - mean) @ v.T
        ).numpy()
        pb = ((model.quantizer.codebook.detach().cpu() - mean) @ v.T).numpy()  # (K, 2)
        usage = metrics.codebook_usage(model.codes(x), model.num_codes).cpu().double()
        used = (usage > 0).numpy()
        fig.add_trace(
            go.Scatter(
                x=pz[:, 0],
                y=pz[:, 1],
                mode="markers",
                marker=dict(size=3, color="lightgrey"),
                name=f"encoder outputs ({len(pz):,} of {len(z):,})",
                showlegend=(col == 1),
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=pb[used, 0],
                y=pb[used, 1],
                mode="markers",
                name="used codes",
                showlegend=(col == 1),
                marker=dict(
                    size=9,
                    color=torch.log10(usage[used]).numpy(),
                    colorscale="Viridis",
                    cmin=0,
                    cmax=math.log10(len(z)),
                    showscale=(col == len(models)),
                    colorbar=dict(title="log10 uses"),
                    line=dict(width=1, color="black"),
                ),
                text=[f"code {k}" for k in np.flatnonzero(used)],
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=pb[~used, 0],
                y=pb[~used, 1],
                mode="markers",
                name="unused codes",
                showlegend=(col == len(models)),
                marker=dict(size=9, symbol="x", color="#d62728"),
                text=[f"code {k}" for k in np.flatnonzero(~used)],
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="1st principal direction")
    fig.update_yaxes(title_text="2nd principal direction", row=1, col=1)
    fig.update_layout(
        title="Code vectors among the encoder outputs (PCA)",
        height=520,
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


@torch.no_grad()
def codebook_summary(model, x_bin: torch.Tensor, x_grey: torch.Tensor) -> dict:
    """How a VQ-VAE uses its codebook on test images: ``dict(perplexity`` of the codes chosen for
    ``x_bin`` (of K), ``dead`` (fraction of the K codes never chosen), ``recon_nll`` (mean -log
    p(x_bin|z_q), nats), ``recon_mse`` (mean squared error of the reconstructions of the grey
    ``x_grey``)``)``."""
    codes = model.codes(x_bin)  # (N, H, W)
    px = model.decode_indices(codes)
    return dict(
        perplexity=metrics.codebook_perplexity(codes, model.num_codes),
        dead=metrics.dead_code_fraction(codes, model.num_codes),
        recon_nll=-px.log_prob(x_bin.to(model.device)).mean().item(),
        recon_mse=((model.reconstruct(x_grey).cpu() - x_grey) ** 2).mean().item(),
    )


@torch.no_grad()
def code_views(model, x: torch.Tensor) -> dict:
    """What each code means, codes sorted by use on images ``x`` ``[N, 1, H, W]``: ``dict(codes
    [N, h, w], usage [K], order [K]`` (most used first), ``decoded [K, 1, H, W]`` (the decoder's
    view: each code over the whole grid), ``mean_patch [K, H/h, W/w]`` (the encoder's view: the
    mean image patch under each code, zeros for an unused one)``)``."""
    codes = model.codes(x)  # (N, h, w)
    h, w = codes.shape[1:]
    usage = metrics.codebook_usage(codes, model.num_codes).cpu()
    order = torch.argsort(usage, descending=True)
    decoded = model.decode_indices(
        order[:, None, None].expand(len(order), h, w).to(model.device)
    ).mean.cpu()
    ph, pw = x.shape[2] // h, x.shape[3] // w
    patches, codes_cpu = (
        x.cpu().unfold(2, ph, ph).unfold(3, pw, pw)[:, 0],
        codes.cpu(),
    )  # (N, h, w, ph, pw)
    mean_patch = torch.stack(
        [
            patches[codes_cpu == k].mean(0) if usage[k] > 0 else torch.zeros(ph, pw)
            for k in order.tolist()
        ]
    )
    return dict(
        codes=codes, usage=usage, order=order, decoded=decoded, mean_patch=mean_patch
    )


@torch.no_grad()
def code_swaps(
    model, grid: torch.Tensor, positions, codes: torch.Tensor
) -> torch.Tensor:
    """Decode one code grid ``[h, w]`` with one position set to each of ``codes`` in turn, for each
    position ``(row, column)`` of ``positions``: E[x|z_q] images ``[len(positions) * len(codes), 1, H, W]``
    on the CPU, one row per position."""
    rows = []
    for r, c in positions:
        grids = grid.repeat(len(codes), 1, 1)  # (n, h, w)
        grids[:, r, c] = codes
        rows.append(model.decode_indices(grids.to(model.device)).mean.cpu())
    return torch.cat(rows)


class CodeEditor(widgets.VBox):
    """Sliders (digit, row, column, code) above a figure: the chosen digit's code grid with one
    position replaced (left, the edited cell boxed) and the decoded digit E[x|z] (right).

    ``grids``: code grids ``[N, H, W]`` (e.g. of test digits). ``self.panel`` is the ``FigureWidget``;
    ``self.sliders`` maps "digit", "row", "column", "code" to the sliders.
    """

    def __init__(self, model, grids: torch.Tensor, row: int = 3, column: int = 3):
        check_tensor(
            "grids",
            grids,
            ndim=3,
            integer=True,
            min_value=0,
            max_value=model.num_codes - 1,
        )
        self.model, self.grids = model, grids.cpu()
        n, h, w = self.grids.shape
        self.sliders = {
            "digit": widgets.IntSlider(value=0, min=0, max=n - 1, description="digit"),
            "row": widgets.IntSlider(value=row, min=0, max=h - 1, description="row"),
            "column": widgets.IntSlider(
                value=column, min=0, max=w - 1, description="column"
            ),
            "code": widgets.IntSlider(
                value=int(self.grids[0, row, column]),
                min=0,
                max=model.num_codes - 1,
                description="code",
            ),
        }
        grid = self.edited_grid()
        self.panel = go.FigureWidget(
            make_subplots(
                rows=1,
                cols=2,
                column_widths=[0.45, 0.55],
                subplot_titles=(
                    "code grid (edited cell boxed)",
                    "decoded digit E[x|z]",
                ),
            )
        )
        self.panel.add_trace(
            go.Heatmap(
                z=grid.numpy(),
                text=grid.numpy(),
                texttemplate="%{text}",
                colorscale="Viridis",
                zmin=0,
                zmax=model.num_codes - 1,
                showscale=False,
                hovertemplate="row %{y}, column %{x}: code %{z}<extra></extra>",
            ),
            row=1,
            col=1,
        )
        self.panel.add_trace(
            go.Heatmap(
                z=self.decoded(grid),
                colorscale="Greys",
                zmin=0,
                zmax=1,
                colorbar=dict(title="p(pixel = 1)"),
                hovertemplate="pixel (%{y}, %{x}): %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=2,
        )
        self.panel.add_shape(
            type="rect",
            x0=column - 0.5,
            x1=column + 0.5,
            y0=row - 0.5,
            y1=row + 0.5,
            line=dict(color="red", width=3),
            row=1,
            col=1,
        )
        self.panel.update_yaxes(autorange="reversed", scaleanchor="x", row=1, col=1)
        self.panel.update_yaxes(autorange="reversed", scaleanchor="x2", row=1, col=2)
        self.panel.update_layout(
            title="Edit one code of a digit's code grid", height=420, width=700
        )
        for s in self.sliders.values():
            s.observe(self.redraw, names="value")
        super().__init__([widgets.HBox(list(self.sliders.values())), self.panel])

    def edited_grid(self) -> torch.Tensor:
        """The chosen digit's grid ``[H, W]`` with the chosen position set to the chosen code."""
        s = {k: v.value for k, v in self.sliders.items()}
        grid = self.grids[s["digit"]].clone()
        grid[s["row"], s["column"]] = s["code"]
        return grid

    @torch.no_grad()
    def decoded(self, grid: torch.Tensor) -> np.ndarray:
        """E[x|z] of one grid ``[H, W]`` as a ``[28, 28]`` array."""
        return (
            self.model.decode_indices(grid[None].to(self.model.device))
            .mean[0, 0]
            .cpu()
            .numpy()
        )

    def redraw(self, change=None) -> None:
        grid, r, c = (
            self.edited_grid(),
            self.sliders["row"].value,
            self.sliders["column"].value,
        )
        with self.panel.batch_update():
            self.panel.data[0].z, self.panel.data[0].text = grid.numpy(), grid.numpy()
            self.panel.data[1].z = self.decoded(grid)
            self.panel.layout.shapes[0].update(
                x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5
            )
