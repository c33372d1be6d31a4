"""Looking inside a VAE's latent space: the decoded manifold, posterior means, traversals and
interpolations, and the KL carried by each latent dimension.

The functions that compute return tensors on the CPU (images ``[N, C, H, W]`` in [0, 1]) and run
the model on its own device; the ``*_figure`` functions turn them into plotly figures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torch.distributions import Normal

from ..device import module_device
from ..utils import check_tensor
from .plots import image_grid

DIGIT_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _device(model) -> torch.device:
    return (
        module_device(model)
        if isinstance(model, torch.nn.Module)
        else torch.device("cpu")
    )


@torch.no_grad()
def decode_mean(model, z: torch.Tensor) -> torch.Tensor:
    """E[x|z] for latents ``z`` ``[N, D]``, on the CPU: ``[N, *x_shape]``."""
    check_tensor("z", z, ndim=2, floating=True)
    return model.decode(z.to(_device(model))).mean.float().cpu()


def gaussian_grid(n: int = 20, margin: float = 0.05) -> torch.Tensor:
    """An ``n`` x ``n`` grid of 2-D latents, ``[n*n, 2]``, row-major from the top left.

    Coordinates are evenly spaced on the unit square (from ``margin`` to ``1 - margin``) and
    mapped through the inverse CDF of the standard normal, as in Kingma & Welling (2014, Fig. 4):
    each cell of the grid then holds an equal share of the prior's probability mass. Rows run
    from high z2 (top) to low z2, columns from low z1 (left) to high z1.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not 0 < margin < 0.5:
        raise ValueError(f"margin must lie in (0, 0.5), got {margin!r}")
    u = torch.linspace(margin, 1 - margin, n)
    q = Normal(0.0, 1.0).icdf(u)  # (n,)
    z1 = q.repeat(n)  # columns: left to right
    z2 = q.flip(0).repeat_interleave(n)  # rows: top to bottom
    return torch.stack([z1, z2], dim=1)  # (n*n, 2)


def manifold(model, n: int = 20, margin: float = 0.05) -> torch.Tensor:
    """The learned 2-D data manifold: E[x|z] on :func:`gaussian_grid`, ``[n*n, *x_shape]``."""
    if getattr(model, "latent_dim", 2) != 2:
        raise ValueError(
            f"model must have a 2-D latent for the manifold, got latent_dim={model.latent_dim}"
        )
    return decode_mean(model, gaussian_grid(n, margin))


def compact_images(fig: go.Figure) -> go.Figure:
    """Store the grey levels of a figure's image heatmaps (``zmin=0, zmax=1``) as bytes 0..255.

    Four times smaller in a saved notebook than float32, and the same picture: a 20 x 20
    manifold drops from about 1.8 MB to 0.45 MB. Changes ``fig`` in place and returns it.
    """
    for trace in fig.data:
        if trace.type == "heatmap" and trace.zmin == 0 and trace.zmax == 1:
            z = np.clip(np.asarray(trace.z, dtype=np.float32), 0.0, 1.0)
            trace.update(
                z=np.round(z * 255).astype(np.uint8),
                zmax=255,
                hovertemplate="ink %{z}/255<extra></extra>",
            )
    return fig


def manifold_figure(
    model, n: int = 20, margin: float = 0.05, title: str | None = None
) -> go.Figure:
    """:func:`manifold` drawn as one image grid, with the latent coordinates of the corners in the title."""
    images = manifold(model, n, margin)
    lo, hi = Normal(0.0, 1.0).icdf(torch.tensor([margin, 1 - margin])).tolist()
    title = title or (
        f"Learned 2-D manifold: E[x|z] on a {n}x{n} grid of prior quantiles<br><sub>z1 from {lo:.2f} "
        f"(left) to {hi:.2f} (right), z2 from {hi:.2f} (top) to {lo:.2f} (bottom)</sub>"
    )
    fig = compact_images(image_grid(images, ncols=n, title=title, height=650))
    return fig.update_layout(margin=dict(t=90))


def latent_scatter(
    z: torch.Tensor,
    labels: torch.Tensor,
    title: str,
    dims: tuple[int, int] = (0, 1),
    max_points: int | None = None,
) -> go.Figure:
    """Posterior means ``z`` ``[N, D]`` as points in the plane of ``dims``, one colour per label."""
    check_tensor("z", z, ndim=2)
    check_tensor("labels", labels, ndim=1)
    if z.shape[0] != labels.shape[0]:
        raise ValueError(
            f"z and labels must have the same length, got {z.shape[0]} and {labels.shape[0]}"
        )
    z, labels = z.detach().float().cpu(), labels.cpu()
    if max_points is not None:
        z, labels = z[:max_points], labels[:max_points]
    fig = go.Figure()
    for c in sorted(labels.unique().tolist()):
        m = labels == c
        fig.add_trace(
            go.Scattergl(
                x=z[m, dims[0]].numpy(),
                y=z[m, dims[1]].numpy(),
                mode="markers",
                name=str(c),
                marker=dict(size=5, color=DIGIT_COLORS[int(c) % 10], opacity=0.8),
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title=f"z{dims[0] + 1} (posterior mean)",
        yaxis_title=f"z{dims[1] + 1} (posterior mean)",
        legend_title="digit",
        height=520,
    )
    fig.update_yaxes(scaleanchor="x")
    return fig


def interpolation_path(
    z_a: torch.Tensor, z_b: torch.Tensor, steps: int = 10, mode: str = "linear"
) -> torch.Tensor:
    """``steps`` latents from ``z_a`` to ``z_b`` (both ``[D]``), endpoints included: ``[steps, D]``.

    ``"linear"``: (1 - t) z_a + t z_b. ``"spherical"``: slerp, which keeps the norm near that of
    the endpoints instead of cutting through the low-norm middle of the Gaussian prior, where
    little of its mass lies in high dimensions.
    """
    check_tensor("z_a", z_a, ndim=1, floating=True)
    check_tensor("z_b", z_b, ndim=1, floating=True)
    if z_a.shape != z_b.shape:
        raise ValueError(
            f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device)[
        :, None
    ]  # (steps, 1)
    if mode == "linear":
        return (1 - t) * z_a + t * z_b
    if mode == "spherical":
        cos = torch.dot(z_a, z_b) / (z_a.norm() * z_b.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1.0, 1.0))
        if (
            torch.sin(omega) < 1e-3
        ):  # (anti)parallel endpoints: no unique great circle, go straight
            return (1 - t) * z_a + t * z_b
        return (
            torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b
        ) / torch.sin(omega)
    raise ValueError(f"mode must be 'linear' or 'spherical', got {mode!r}")


@torch.no_grad()
def prior_rows(model, rows: int = 3, per_row: int = 12) -> dict[str, torch.Tensor]:
    """``rows * per_row`` draws z ~ p(z) (from the current random state), for :func:`digit_strip`:
    rows of E[x|z], then one row of images x ~ p(x|z) drawn for the first ``per_row`` of them."""
    z = model.prior.sample(
        (rows * per_row,)
    )  # (rows * per_row, D) on the model's device
    px = model.decode(z)
    out = {
        f"E[x|z], z {i * per_row + 1}-{(i + 1) * per_row}": px.mean[
            i * per_row : (i + 1) * per_row
        ].cpu()
        for i in range(rows)
    }
    return out | {f"x ~ p(x|z), z 1-{per_row}": px.sample()[:per_row].cpu()}


def crossfade(x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """The pixel-space path from image ``x_a`` to ``x_b`` (both ``[C, H, W]``), (1 - t) x_a + t x_b
    for ``steps`` values of t from 0 to 1: ``[steps, C, H, W]``, the baseline a latent path is
    compared with (a double exposure, not a digit, half-way)."""
    check_tensor("x_a", x_a, ndim=3, floating=True)
    if x_b.shape != x_a.shape:
        raise ValueError(
            f"x_a and x_b must have the same shape, got {tuple(x_a.shape)} and {tuple(x_b.shape)}"
        )
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    t = torch.linspace(0, 1, steps, dtype=x_a.dtype, device=x_a.device)[
        :, None, None, None
    ]  # (steps, 1, 1, 1)
    return (1 - t) * x_a + t * x_b


def interpolate(
    model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10, mode: str = "linear"
) -> torch.Tensor:
    """Decode the path between the posterior means of two images ``[C, H, W]``: ``[steps, C, H, W]``."""
    device = _device(model)
    with torch.no_grad():
        z = model.encode(torch.stack([x_a, x_b]).to(device)).mean  # (2, D)
    return decode_mean(model, interpolation_path(z[0], z[1], steps, mode))


def interpolation_rows(
    model,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    steps: int = 10,
    pixels: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Three ways from image ``x_a`` to ``x_b``, as rows for :func:`digit_strip`: decoded along
    the straight latent line, the cross-fade of the pixels (of ``pixels``, e.g. the grey-level
    originals of binarized inputs, default the inputs), and decoded along the slerp."""
    fade = crossfade(*(pixels or (x_a, x_b)), steps)
    return {
        "latent, linear": interpolate(model, x_a, x_b, steps, mode="linear"),
        "pixels (cross-fade)": fade,
        "latent, slerp": interpolate(model, x_a, x_b, steps, mode="spherical"),
    }


def traversal(
    model, z0: torch.Tensor, values: Sequence[float], dims: Sequence[int] | None = None
) -> torch.Tensor:
    """Move one latent dimension at a time through ``values``, the others held at ``z0`` ``[D]``.

    Returns ``[len(dims), len(values), *x_shape]``: row ``i`` varies dimension ``dims[i]``
    (all dimensions by default). What a slider per dimension shows, frozen at a few positions.
    """
    check_tensor("z0", z0, ndim=1, floating=True)
    dims = list(range(z0.shape[0])) if dims is None else list(dims)
    if not dims or min(dims) < 0 or max(dims) >= z0.shape[0]:
        raise ValueError(
            f"dims must be indices into the {z0.shape[0]} latent dimensions, got {dims}"
        )
    vals = torch.as_tensor(list(values), dtype=z0.dtype)
    z = z0.detach().cpu().repeat(len(dims), len(vals), 1)  # (R, V, D)
    for i, d in enumerate(dims):
        z[i, :, d] = vals
    images = decode_mean(model, z.reshape(-1, z0.shape[0]))
    return images.reshape(len(dims), len(vals), *images.shape[1:])


def kl_bars(
    kls: dict[str, torch.Tensor], title: str, threshold: float | None = None
) -> go.Figure:
    """KL per latent dimension (nats) for several models, as grouped bars, dimensions sorted by
    decreasing KL within each model so that the number of informative units reads off directly."""
    fig = go.Figure()
    for name, kl in kls.items():
        kl = torch.as_tensor(kl).detach().float().cpu()
        order = torch.argsort(kl, descending=True)
        fig.add_trace(
            go.Bar(
                x=list(range(1, len(kl) + 1)),
                y=kl[order].numpy(),
                name=name,
                customdata=(order + 1).numpy(),
                hovertemplate="z%{customdata}: %{y:.3f} nats",
            )
        )
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dot", annotation_text=f"{threshold} nats")
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="latent dimension, sorted by its KL (rank)",
        yaxis_title="KL(q(z_d|x) || p(z_d)), nats (mean over test digits)",
        height=420,
    )
    return fig


def activity_figure(
    covs: dict[str, torch.Tensor], title: str, threshold: float = 0.01
) -> go.Figure:
    """Burda et al.'s activity Cov_x(E_q[z_u|x]) of every latent dimension, sorted, one line per
    model (``covs[name]``: ``[D]``), on a log axis with the active-unit threshold dotted."""
    fig = go.Figure()
    for name, cov in covs.items():
        cov = torch.as_tensor(cov).detach().float().cpu()
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(cov) + 1)),
                y=torch.sort(cov, descending=True).values.tolist(),
                mode="lines+markers",
                name=name,
            )
        )
    fig.add_hline(
        y=threshold, line_dash="dot", annotation_text=f"threshold {threshold:g}"
    )
    fig.update_layout(
        title=title,
        yaxis_type="log",
        xaxis_title="latent dimension, sorted by activity (rank)",
        yaxis_title="Cov_x(E_q[z_u | x]) (log scale)",
        height=420,
    )
    return fig


def digit_strip(rows: dict[str, torch.Tensor], title: str) -> go.Figure:
    """Several equally long rows of images ``[n, C, H, W]``, labelled, in one figure."""
    names = list(rows)
    lengths = {r.shape[0] for r in rows.values()}
    if len(lengths) != 1:
        raise ValueError(
            f"every row must hold the same number of images, got {sorted(lengths)}"
        )
    images = torch.cat(
        [torch.as_tensor(r).detach().float().cpu() for r in rows.values()]
    )
    return compact_images(
        image_grid(images, ncols=lengths.pop(), title=title, row_labels=names)
    )


def as_numpy_image(image: torch.Tensor) -> np.ndarray:
    """One image ``[1, H, W]`` or ``[H, W]`` as an ``[H, W]`` array flipped for a heatmap (row 0 at the top)."""
    image = torch.as_tensor(image).detach().float().cpu()
    if image.dim() == 3:
        image = image[0]
    return image.flip(0).numpy()
