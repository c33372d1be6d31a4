"""ipywidgets wiring: sliders that move a VAE's latent variables and redraw the decoded image.

:class:`LatentSliders` is one ``FloatSlider`` per latent dimension (described ``z1``, ``z2``,
...) beside a plotly ``FigureWidget`` that shows E[x|z]; every slider change decodes the new z
on the model's device and redraws the image in place. Display it as the last expression of a
cell. Executed headlessly, or read in a saved notebook, widgets are not live: show
:func:`static_sliders` next to it, the same view frozen at a few slider positions.
"""
from __future__ import annotations

import math
from typing import Sequence

import ipywidgets as widgets
import plotly.graph_objects as go
import torch

from .latent_viz import as_numpy_image, compact_images, decode_mean, traversal
from .utils import check_tensor
from .viz import image_grid

MAX_SLIDERS = 32


class LatentSliders(widgets.HBox):
    """Sliders ``z1 .. zD`` (left) driving the decoded image E[x|z] (right).

    ``model``: anything with ``decode(z) -> p(x|z)`` and a ``latent_dim``; ``z0``: the starting
    latent ``[D]``, e.g. the posterior mean of a test digit. Each slider spans at least
    ``[-limit, limit]`` (prior standard deviations), widened to include its starting value.
    """

    def __init__(self, model, z0: torch.Tensor, limit: float = 3.0, step: float = 0.05,
                 title: str = "Decoded image E[x|z]", continuous_update: bool = True):
        check_tensor("z0", z0, ndim=1, floating=True)
        d = z0.shape[0]
        if d > MAX_SLIDERS:
            raise ValueError(f"z0 has {d} dimensions; one slider each is only readable up to {MAX_SLIDERS}")
        if getattr(model, "latent_dim", d) != d:
            raise ValueError(f"z0 must have the model's {model.latent_dim} latent dimensions, got {d}")
        if not limit > 0 or not step > 0:
            raise ValueError(f"limit and step must be positive, got limit={limit!r}, step={step!r}")
        self.model, self.title = model, title
        self.z0 = z0.detach().float().cpu()
        self.sliders = []
        for i, v in enumerate(self.z0.tolist()):
            bound = max(limit, math.ceil(abs(v) / step) * step + step)
            self.sliders.append(widgets.FloatSlider(
                value=round(v / step) * step, min=-bound, max=bound, step=step, description=f"z{i + 1}",
                continuous_update=continuous_update, readout_format=".2f",
                layout=widgets.Layout(width="340px")))
        self.figure = go.FigureWidget(go.Heatmap(z=as_numpy_image(self._decode()), colorscale="Greys", zmin=0, zmax=1,
                                                 colorbar=dict(title="E[x|z]"),
                                                 hovertemplate="pixel (%{x}, %{y}): %{z:.2f}<extra></extra>"))
        self.figure.update_layout(title=self._title(), width=430, height=430, margin=dict(l=50, r=20, t=70, b=40),
                                  xaxis_title="pixel column", yaxis_title="pixel row (from the bottom)")
        self.figure.update_yaxes(scaleanchor="x", constrain="domain")
        for s in self.sliders:
            s.observe(self._redraw, names="value")
        reset = widgets.Button(description="reset to the digit", layout=widgets.Layout(width="340px"))
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


def static_sliders(model, z0: torch.Tensor, values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
                   dims: Sequence[int] | None = None, title: str | None = None) -> go.Figure:
    """The slider panel frozen: row ``zi`` shows E[x|z] as slider ``zi`` takes each of ``values``
    (in order, left to right) while the others stay at ``z0``. For headless runs and readers."""
    images = traversal(model, z0, values, dims)  # (R, V, C, H, W)
    dims = list(range(z0.shape[0])) if dims is None else list(dims)
    title = title or ("The sliders frozen: row zi moves slider zi through "
                      + ", ".join(f"{v:g}" for v in values) + ", the others at the digit's encoding")
    return compact_images(image_grid(images.reshape(-1, *images.shape[2:]), ncols=len(values), title=title,
                                     row_labels=[f"z{d + 1}" for d in dims]))
