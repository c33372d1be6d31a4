"""Figures of the two-dimensional mixture (notebook 01): what goes in comes out as traces."""

import pytest
import torch

from vaekit import data
from vaekit.figures import mixtures as mixture_viz
from vaekit.models.mixture import GaussianMixture


def test_responsibility_colours_mix_the_component_colours():
    cols = mixture_viz.responsibility_colours(
        torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    )
    assert (
        cols[0] == "rgb(31,119,180)" and cols[1] == "rgb(129,100,42)"
    )  # (214 + 44) / 2, (39 + 160) / 2, (40 + 44) / 2
    with pytest.raises(ValueError, match=r"resp must be \[N, 3\]"):
        mixture_viz.responsibility_colours(torch.ones(2, 2))


def test_clusters_responsibilities_and_density_figures():
    truth = GaussianMixture(data.TOY_MEANS, data.TOY_COVARIANCES)
    x, z = data.gaussian_clusters(60, data.TOY_MEANS, data.TOY_COVARIANCES, seed=0)
    fig = mixture_viz.clusters(x, z, truth, title="t")
    assert (
        len(fig.data) == 6
        and fig.data[0].name == "z = 0"
        and len(fig.data[0].x) == int((z == 0).sum())
    )
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.xaxis.title.text == "x₁"
    with torch.no_grad():
        resp = truth.responsibilities(x)
    fig = mixture_viz.responsibilities(x, resp, "t")
    assert list(fig.data[0].marker.color) == mixture_viz.responsibility_colours(resp)
    t1, t2 = torch.linspace(-5, 5, 11), torch.linspace(-3, 6, 7)
    grid = mixture_viz.grid_points(t1, t2)
    assert (
        grid.shape == (77, 2)
        and grid[1].tolist() == [-4.0, -3.0]
        and grid[11].tolist() == [-5.0, -1.5]
    )  # rows follow x2
    fig = mixture_viz.density(truth, x, {"truth": (truth, "black", "dot")}, "t", t1, t2)
    with torch.no_grad():
        dens = truth.log_marginal(grid).exp().reshape(7, 11).numpy()
    assert (fig.data[0].z == dens).all() and [t.showlegend for t in fig.data[2:]] == [
        True,
        False,
        False,
    ]
