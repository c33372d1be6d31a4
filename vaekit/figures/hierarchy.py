"""Taking a two-level VQ-VAE apart (notebook 15): digits decoded from swapped levels, and a widget
that keeps a digit's top codes and draws new bottom codes from the prior p(z_bot | z_top).

:func:`level_swaps` decodes the top codes of one digit with the bottom codes of another;
:func:`bottom_resamples` decodes one top grid with several bottom grids drawn from the bottom
prior; :class:`BottomResampler` is an ipywidgets box (two sliders and a ``FigureWidget``) that
redraws the second on the model's device at every change.
"""

from __future__ import annotations

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..utils import check_positive_int, check_tensor


@torch.no_grad()
def level_swaps(
    model, top: torch.Tensor, bottom: torch.Tensor, pairs
) -> dict[str, torch.Tensor]:
    """For each pair ``(a, b)`` of indices into the code grids ``top`` ``[N, 7, 7]`` and ``bottom``
    ``[N, 14, 14]``: digit a and digit b decoded from their own codes, a's top with b's bottom, and
    b's top with a's bottom. Returns four ``[P, C, 28, 28]`` tensors of pixel probabilities (CPU)."""
    a = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    b = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    ta, tb, ba, bb = top[a], top[b], bottom[a], bottom[b]
    dec = lambda t, s: model.decode_indices(t, s).mean.cpu()
    return {
        "digit a": dec(ta, ba),
        "digit b": dec(tb, bb),
        "top of a, bottom of b": dec(ta, bb),
        "top of b, bottom of a": dec(tb, ba),
    }


@torch.no_grad()
def bottom_resamples(
    model, bottom_prior, top: torch.Tensor, n: int, seed: int = 0
) -> torch.Tensor:
    """One top grid ``[7, 7]`` decoded with ``n`` bottom grids drawn from ``bottom_prior`` given it:
    pixel probabilities ``[n, C, 28, 28]`` (CPU). The draws use a generator seeded with ``seed`` on
    the prior's device, so a seed always gives the same digits on one machine."""
    check_tensor("top", top, ndim=2, integer=True)
    check_positive_int(n=n)
    dev = bottom_prior.device
    g = torch.Generator(dev).manual_seed(int(seed))
    tops = top.to(dev).expand(n, -1, -1).contiguous()  # (n, 7, 7)
    bottoms = bottom_prior.sample(tops, generator=g)  # (n, 14, 14)
    return model.decode_indices(tops, bottoms).mean.cpu()


class BottomResampler(widgets.VBox):
    """Sliders "digit" and "draw" above two images: the chosen digit decoded from its own codes (left),
    and decoded from its own top codes with bottom codes drawn from p(z_bot | z_top) (right; the
    draw number seeds the sampler). ``tops`` ``[N, 7, 7]`` and ``bottoms`` ``[N, 14, 14]``: code
    grids of, e.g., test digits. ``self.panel`` is the ``FigureWidget``.
    """

    def __init__(
        self,
        model,
        bottom_prior,
        tops: torch.Tensor,
        bottoms: torch.Tensor,
        draws: int = 100,
    ):
        check_tensor("tops", tops, ndim=3, integer=True)
        check_tensor("bottoms", bottoms, ndim=3, integer=True)
        if tops.shape[0] != bottoms.shape[0]:
            raise ValueError(
                f"tops and bottoms must hold the same digits, got {tops.shape[0]} and {bottoms.shape[0]}"
            )
        check_positive_int(draws=draws)
        self.model, self.prior = model, bottom_prior
        self.tops, self.bottoms = tops.cpu(), bottoms.cpu()
        self.sliders = {
            "digit": widgets.IntSlider(
                value=0, min=0, max=len(self.tops) - 1, description="digit"
            ),
            "draw": widgets.IntSlider(
                value=1, min=0, max=draws - 1, description="draw"
            ),
        }
        left, right = self.images()
        self.panel = go.FigureWidget(
            make_subplots(
                rows=1,
                cols=2,
                subplot_titles=(
                    "its own top and bottom codes",
                    "its top codes, bottom codes drawn from p(z_bot | z_top)",
                ),
            )
        )
        for col, img in ((1, left), (2, right)):
            self.panel.add_trace(
                go.Heatmap(
                    z=img,
                    colorscale="Greys",
                    zmin=0,
                    zmax=1,
                    showscale=col == 2,
                    colorbar=dict(title="p(pixel = 1)"),
                    hovertemplate="pixel (%{y}, %{x}): %{z:.2f}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            self.panel.update_yaxes(
                autorange="reversed",
                scaleanchor=f"x{'' if col == 1 else col}",
                row=1,
                col=col,
                title_text="pixel row",
            )
            self.panel.update_xaxes(title_text="pixel column", row=1, col=col)
        self.panel.update_layout(
            title="Keep the top codes, draw new bottom codes", height=420, width=760
        )
        for s in self.sliders.values():
            s.observe(self.redraw, names="value")
        super().__init__([widgets.HBox(list(self.sliders.values())), self.panel])

    @torch.no_grad()
    def images(self):
        """The two ``[28, 28]`` arrays the figure shows for the current slider values."""
        i, draw = self.sliders["digit"].value, self.sliders["draw"].value
        own = (
            self.model.decode_indices(self.tops[i : i + 1], self.bottoms[i : i + 1])
            .mean[0, 0]
            .cpu()
            .numpy()
        )
        new = bottom_resamples(self.model, self.prior, self.tops[i], 1, seed=draw)[
            0, 0
        ].numpy()
        return own, new

    def redraw(self, change=None) -> None:
        left, right = self.images()
        with self.panel.batch_update():
            self.panel.data[0].z = left
            self.panel.data[1].z = right
