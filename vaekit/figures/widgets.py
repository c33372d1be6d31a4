"""ipywidgets wiring: sliders that move a VAE's latent variables and redraw the decoded image.

:class:`LatentSliders` is one ``FloatSlider`` per latent dimension (described ``z1``, ``z2``,
...) beside a plotly ``FigureWidget`` that shows E[x|z]; every slider change decodes the new z
on the model's device and redraws the image in place. Display it as the last expression of a
cell. Executed headlessly, or read in a saved notebook, widgets are not live: show
:func:`static_sliders` next to it, the same view frozen at a few slider positions.

:class:`TraversalExplorer` picks one of several models (one per beta, say) and one of its latents, and
moves that latent alone with one slider.

:class:`ElboExplorer` moves a one-dimensional q(z) against the exact posterior of a linear Gaussian
model and shows ELBO + KL(q || p(z|x)) = log p(x) as bars.
"""

from __future__ import annotations

import math
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..distributions import diag_gaussian
from ..inference.variational import exact_elbo, kl_to_posterior
from ..utils import check_tensor
from .latents import as_numpy_image, compact_images, decode_mean, traversal
from .plots import image_grid

MAX_SLIDERS = 32


def _decoded_image_widget(
    image: torch.Tensor, title: str, size: int, top: int
) -> go.FigureWidget:
    """A square heatmap of a decoded mean image E[x|z] in [0, 1], for the widgets below to redraw."""
    fig = go.FigureWidget(
        go.Heatmap(
            z=as_numpy_image(image),
            colorscale="Greys",
            zmin=0,
            zmax=1,
            colorbar=dict(title="E[x|z]"),
            hovertemplate="pixel (%{x}, %{y}): %{z:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        width=size,
        height=size,
        margin=dict(l=50, r=20, t=top, b=40),
        xaxis_title="pixel column",
        yaxis_title="pixel row (from the bottom)",
    )
    fig.update_yaxes(scaleanchor="x", constrain="domain")
    return fig


class LatentSliders(widgets.HBox):
    """Sliders ``z1 .. zD`` (left) driving the decoded image E[x|z] (right).

    ``model``: anything with ``decode(z) -> p(x|z)`` and a ``latent_dim``; ``z0``: the starting
    latent ``[D]``, e.g. the posterior mean of a test digit. Each slider spans at least
    ``[-limit, limit]`` (prior standard deviations), widened to include its starting value.
    """

    def __init__(
        self,
        model,
        z0: torch.Tensor,
        limit: float = 3.0,
        step: float = 0.05,
        title: str = "Decoded image E[x|z]",
        continuous_update: bool = True,
    ):
        check_tensor("z0", z0, ndim=1, floating=True)
        d = z0.shape[0]
        if d > MAX_SLIDERS:
            raise ValueError(
                f"z0 has {d} dimensions; one slider each is only readable up to {MAX_SLIDERS}"
            )
        if getattr(model, "latent_dim", d) != d:
            raise ValueError(
                f"z0 must have the model's {model.latent_dim} latent dimensions, got {d}"
            )
        if not limit > 0 or not step > 0:
            raise ValueError(
                f"limit and step must be positive, got limit={limit!r}, step={step!r}"
            )
        self.model, self.title = model, title
        self.z0 = z0.detach().float().cpu()
        self.sliders = []
        for i, v in enumerate(self.z0.tolist()):
            bound = max(limit, math.ceil(abs(v) / step) * step + step)
            self.sliders.append(
                widgets.FloatSlider(
                    value=round(v / step) * step,
                    min=-bound,
                    max=bound,
                    step=step,
                    description=f"z{i + 1}",
                    continuous_update=continuous_update,
                    readout_format=".2f",
                    layout=widgets.Layout(width="340px"),
                )
            )
        self.figure = _decoded_image_widget(
            self._decode(), self._title(), size=430, top=70
        )
        for s in self.sliders:
            s.observe(self._redraw, names="value")
        reset = widgets.Button(
            description="reset to the digit", layout=widgets.Layout(width="340px")
        )
        reset.on_click(lambda _: self.set_latent(self.z0))
        super().__init__([widgets.VBox([*self.sliders, reset]), self.figure])

    def latent(self) -> torch.Tensor:
        """The slider values as a latent ``[D]``."""
        return torch.tensor([s.value for s in self.sliders])

    def set_latent(self, z: torch.Tensor) -> None:
        """Move every slider to ``z`` ``[D]`` and redraw once."""
        with self.figure.batch_update():
            for s, v in zip(self.sliders, torch.as_tensor(z).tolist()):
                s.unobserve(self._redraw, names="value")
                s.value = min(max(v, s.min), s.max)
                s.observe(self._redraw, names="value")
        self._redraw()

    def _decode(self) -> torch.Tensor:
        return decode_mean(self.model, self.latent()[None])[0]  # (C, H, W)

    def _title(self) -> str:
        return f"{self.title}<br><sub>z = ({', '.join(f'{s.value:.2f}' for s in self.sliders)})</sub>"

    def _redraw(self, change=None) -> None:
        with self.figure.batch_update():
            self.figure.data[0].z = as_numpy_image(self._decode())
            self.figure.layout.title.text = self._title()


def latent_sliders(model, z0: torch.Tensor, **kwargs) -> LatentSliders:
    """The live slider panel; see :class:`LatentSliders`."""
    return LatentSliders(model, z0, **kwargs)


def static_sliders(
    model,
    z0: torch.Tensor,
    values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    dims: Sequence[int] | None = None,
    title: str | None = None,
) -> go.Figure:
    """The slider panel frozen: row ``zi`` shows E[x|z] as slider ``zi`` takes each of ``values``
    (in order, left to right) while the others stay at ``z0``. For headless runs and readers."""
    images = traversal(model, z0, values, dims)  # (R, V, C, H, W)
    dims = list(range(z0.shape[0])) if dims is None else list(dims)
    title = title or (
        "The sliders frozen: row zi moves slider zi through "
        + ", ".join(f"{v:g}" for v in values)
        + ", the others at the digit's encoding"
    )
    return compact_images(
        image_grid(
            images.reshape(-1, *images.shape[2:]),
            ncols=len(values),
            title=title,
            row_labels=[f"z{d + 1}" for d in dims],
        )
    )


class ElboExplorer(widgets.VBox):
    """Sliders ``q mean`` and ``q log-scale`` moving q(z) = N(mean, exp(log_scale)^2) against the exact
    posterior of a linear Gaussian model with a one-dimensional latent, for one observation ``x [1, D]``.

    Left panel: q(z), p(z|x) and p(z) on ``z_grid``; right panel: the exact ELBO, KL(q || p(z|x))
    stacked on it, and log p(x) computed independently -- the top of the KL bar is always level with
    log p(x). :meth:`terms` gives the three numbers, :meth:`static` the same view frozen at a few
    settings (for readers of an executed notebook, where widgets are not live).
    """

    COLOURS = ["#1f77b4", "#d62728", "black"]

    def __init__(
        self,
        model,
        x: torch.Tensor,
        mean: float | None = None,
        log_scale: float = 0.0,
        span: float = 3.0,
    ):

        if getattr(model, "z_dim", None) != 1:
            raise ValueError(
                f"model must have a one-dimensional latent (z_dim = 1), got z_dim = {getattr(model, 'z_dim', None)}"
            )
        check_tensor("x", x, ndim=2, floating=True)
        if x.shape != (1, model.x_dim):
            raise ValueError(
                f"x must be one observation of shape [1, {model.x_dim}], got {tuple(x.shape)}"
            )
        self._elbo, self._kl = exact_elbo, kl_to_posterior
        self.model, self.x = model, x
        with torch.no_grad():
            post = model.posterior(x)
            self.post_mean, self.post_log_scale = (
                post.mean.item(),
                post.stddev.log().item(),
            )
            self.log_px = model.log_marginal(x).item()
            self.z_grid = torch.linspace(
                self.post_mean - span - 1, self.post_mean + span + 1, 401, dtype=x.dtype
            )  # (G,)
            self.posterior_density = post.log_prob(self.z_grid[:, None]).exp().numpy()
            self.prior_density = (
                model.prior.log_prob(self.z_grid[:, None]).exp().numpy()
            )
        start = round(self.post_mean + 1.0, 1) if mean is None else mean
        self.mean_slider = widgets.FloatSlider(
            value=start,
            min=round(self.post_mean - span, 1),
            max=round(self.post_mean + span, 1),
            step=0.05,
            description="q mean",
            continuous_update=True,
        )
        self.scale_slider = widgets.FloatSlider(
            value=log_scale,
            min=-3.0,
            max=1.0,
            step=0.05,
            description="q log-scale",
            continuous_update=True,
        )
        self.view = go.FigureWidget(
            make_subplots(
                rows=1,
                cols=2,
                column_widths=[0.62, 0.38],
                subplot_titles=("q(z) against the posterior", "ELBO + KL (nats)"),
            )
        )
        z = self.z_grid.numpy()
        self.view.add_scatter(
            x=z,
            y=self.prior_density,
            name="prior p(z)",
            line=dict(color="gray", dash="dot"),
            row=1,
            col=1,
        )
        self.view.add_scatter(
            x=z,
            y=self.posterior_density,
            name="posterior p(z|x)",
            line=dict(color="black"),
            row=1,
            col=1,
        )
        self.view.add_scatter(
            x=z,
            y=self.posterior_density,
            name="q(z)",
            line=dict(color="#d62728"),
            fill="tozeroy",
            row=1,
            col=1,
        )
        self.view.add_bar(
            x=["ELBO", "KL(q‖p(z|x))", "log p(x)"],
            y=[0, 0, self.log_px],
            base=[0, 0, 0],
            showlegend=False,
            marker_color=self.COLOURS,
            row=1,
            col=2,
        )
        self.view.update_xaxes(title_text="z (latent)", row=1, col=1)
        self.view.update_yaxes(title_text="density", row=1, col=1)
        self.view.update_yaxes(title_text="nats", row=1, col=2)
        self.view.update_layout(
            height=420, legend=dict(x=0.35, y=0.98), margin=dict(t=90)
        )
        for s in (self.mean_slider, self.scale_slider):
            s.observe(self.redraw, names="value")
        self.redraw()
        super().__init__(
            [widgets.HBox([self.mean_slider, self.scale_slider]), self.view]
        )

    def terms(self, mean: float, log_scale: float) -> tuple[float, float, torch.Tensor]:
        """Exact ELBO and KL(q || p(z|x)) in nats for q = N(mean, exp(log_scale)^2), and q's density on ``z_grid``."""
        with torch.no_grad():
            q = diag_gaussian(
                torch.tensor([[mean]], dtype=self.x.dtype),
                torch.tensor([[log_scale]], dtype=self.x.dtype).exp(),
            )
            bound, gap = (
                self._elbo(self.model, self.x, q).item(),
                self._kl(self.model, self.x, q).item(),
            )
            return bound, gap, q.log_prob(self.z_grid[:, None, None]).exp()[:, 0]

    def redraw(self, change=None) -> None:
        bound, gap, density = self.terms(
            self.mean_slider.value, self.scale_slider.value
        )
        with self.view.batch_update():
            self.view.data[2].y = density.numpy()
            self.view.data[3].y = [bound, gap, self.log_px]
            self.view.data[3].base = [0, bound, 0]
            self.view.layout.title.text = f"ELBO {bound:.3f} + KL {gap:.3f} = {bound + gap:.3f}<br>log p(x) = {self.log_px:.3f} nats"
            self.view.layout.yaxis2.range = [min(bound, self.log_px) * 1.1, 0.5]

    def static(
        self,
        settings: dict[str, tuple[float, float]],
        title: str = "q against p(z|x), and ELBO + KL = log p(x)",
    ) -> go.Figure:
        """The view frozen at ``settings`` (name -> (mean, log_scale)), one column each."""
        terms = {name: self.terms(m, s) for name, (m, s) in settings.items()}
        low = 1.1 * min(min(b for b, _, _ in terms.values()), self.log_px)
        fig = make_subplots(
            rows=2,
            cols=len(terms),
            subplot_titles=list(terms),
            row_heights=[0.55, 0.45],
            vertical_spacing=0.15,
        )
        z = self.z_grid.numpy()
        for col, (name, (bound, gap, density)) in enumerate(terms.items(), start=1):
            fig.add_scatter(
                x=z,
                y=self.posterior_density,
                line=dict(color="black"),
                name="posterior p(z|x)",
                showlegend=col == 1,
                row=1,
                col=col,
            )
            fig.add_scatter(
                x=z,
                y=density.numpy(),
                line=dict(color="#d62728"),
                name="q(z)",
                showlegend=col == 1,
                row=1,
                col=col,
            )
            fig.add_bar(
                x=["ELBO", "KL", "log p(x)"],
                y=[bound, gap, self.log_px],
                base=[0, bound, 0],
                showlegend=False,
                marker_color=self.COLOURS,
                text=[f"{v:.2f}" for v in (bound, gap, self.log_px)],
                row=2,
                col=col,
            )
            fig.update_xaxes(title_text="z (latent)", row=1, col=col)
            fig.update_yaxes(
                title_text="nats" if col == 1 else None,
                range=[low, 0.5],
                row=2,
                col=col,
            )
        fig.update_yaxes(title_text="density", row=1, col=1)
        fig.update_layout(title=title, height=650)
        return fig


class TraversalExplorer(widgets.VBox):
    """Pick a model (``model`` dropdown, e.g. one per beta) and one of its latents (``latent`` dropdown),
    then drag ``z value``: the figure shows E[x|z] with that latent moved and the others held at the
    model's encoding of one image. ``models``: name -> model; ``z0``: name -> starting latent ``[D]``;
    ``labels``: name -> one description per latent (what it encodes, say), shown in the dropdown and
    the title. Changing the model or the latent puts the slider back at the starting value.
    """

    def __init__(
        self,
        models: dict,
        z0: dict,
        labels: dict | None = None,
        limit: float = 3.0,
        step: float = 0.05,
        title: str = "E[x|z] as one latent moves",
    ):
        if not models:
            raise ValueError("models must name at least one model")
        if set(z0) != set(models) or (
            labels is not None and set(labels) != set(models)
        ):
            raise ValueError(
                f"z0 (and labels) must have the same keys as models: {list(models)}"
            )
        for name, z in z0.items():
            check_tensor(f"z0[{name!r}]", z, ndim=1, floating=True)
            if getattr(models[name], "latent_dim", z.shape[0]) != z.shape[0]:
                raise ValueError(
                    f"z0[{name!r}] must have the model's {models[name].latent_dim} latent dimensions, got {z.shape[0]}"
                )
        self.models, self.z0, self.title, self.step = (
            models,
            {k: v.detach().float().cpu() for k, v in z0.items()},
            title,
            step,
        )
        self.labels = labels or {
            k: [f"z{i + 1}" for i in range(len(v))] for k, v in self.z0.items()
        }
        for name, lab in self.labels.items():
            if len(lab) != len(self.z0[name]):
                raise ValueError(
                    f"labels[{name!r}] must have one entry per latent ({len(self.z0[name])}), got {len(lab)}"
                )
        first = next(iter(models))
        self.model_menu = widgets.Dropdown(
            options=list(models), value=first, description="model"
        )
        self.latent_menu = widgets.Dropdown(
            options=self._latent_options(first),
            value=0,
            description="latent",
            layout=widgets.Layout(width="420px"),
        )
        bound = max(limit, max(float(z.abs().max()) for z in self.z0.values()) + step)
        self.slider = widgets.FloatSlider(
            value=self._start(),
            min=-bound,
            max=bound,
            step=step,
            description="z value",
            continuous_update=True,
            readout_format=".2f",
            layout=widgets.Layout(width="420px"),
        )
        self.figure = _decoded_image_widget(
            self.image(), self._title(), size=460, top=80
        )
        self.model_menu.observe(self._model_changed, names="value")
        self.latent_menu.observe(self._latent_changed, names="value")
        self.slider.observe(self.redraw, names="value")
        super().__init__(
            [
                widgets.HBox([self.model_menu, self.latent_menu]),
                self.slider,
                self.figure,
            ]
        )

    def _latent_options(self, name: str) -> list[tuple[str, int]]:
        return [(label, i) for i, label in enumerate(self.labels[name])]

    def _start(self) -> float:
        """The chosen latent's starting value, on the slider's grid."""
        return (
            round(
                float(self.z0[self.model_menu.value][self.latent_menu.value])
                / self.step
            )
            * self.step
        )

    def latent(self) -> torch.Tensor:
        """The latent ``[D]`` shown: the starting one with the chosen dimension at the slider's value."""
        z = self.z0[self.model_menu.value].clone()
        z[self.latent_menu.value] = self.slider.value
        return z

    def image(self) -> torch.Tensor:
        return decode_mean(self.models[self.model_menu.value], self.latent()[None])[
            0
        ]  # (C, H, W)

    def _title(self) -> str:
        label = self.labels[self.model_menu.value][self.latent_menu.value]
        return f"{self.title}<br><sub>{self.model_menu.value}: {label} = {self.slider.value:.2f}</sub>"

    def _reset_slider(self) -> None:
        self.slider.unobserve(self.redraw, names="value")
        self.slider.value = min(max(self._start(), self.slider.min), self.slider.max)
        self.slider.observe(self.redraw, names="value")
        self.redraw()

    def _model_changed(self, change=None) -> None:
        self.latent_menu.unobserve(self._latent_changed, names="value")
        self.latent_menu.options = self._latent_options(self.model_menu.value)
        self.latent_menu.value = 0
        self.latent_menu.observe(self._latent_changed, names="value")
        self._reset_slider()

    def _latent_changed(self, change=None) -> None:
        self._reset_slider()

    def redraw(self, change=None) -> None:
        with self.figure.batch_update():
            self.figure.data[0].z = as_numpy_image(self.image())
            self.figure.layout.title.text = self._title()
