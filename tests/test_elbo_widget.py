"""The ELBO explorer widget of notebook 04: its numbers are the exact ELBO and KL, and the sliders redraw it."""

import math

import pytest
import torch

from vaekit import inference
from vaekit.distributions import diag_gaussian
from vaekit.models.linear_gaussian import LinearGaussian
from vaekit.figures.widgets import ElboExplorer


def line_model():
    model = LinearGaussian.random(
        3, 1, sigma=1.0, seed=2, learnable=False, dtype=torch.float64
    )
    return model, model.sample(1, generator=torch.Generator().manual_seed(3))[0]


def test_terms_are_the_exact_elbo_and_kl_and_add_up_to_log_px():
    model, x = line_model()
    view = ElboExplorer(model, x)
    q = diag_gaussian(
        torch.tensor([[0.7]], dtype=torch.float64),
        torch.tensor([[0.4]], dtype=torch.float64),
    )
    bound, gap, density = view.terms(0.7, math.log(0.4))
    assert bound == pytest.approx(inference.exact_elbo(model, x, q).item(), abs=1e-12)
    assert gap == pytest.approx(
        inference.kl_to_posterior(model, x, q).item(), abs=1e-12
    )
    assert bound + gap == pytest.approx(model.log_marginal(x).item(), abs=1e-10)
    assert float(density.sum() * (view.z_grid[1] - view.z_grid[0])) == pytest.approx(
        1.0, abs=1e-3
    )  # q's density on the grid
    assert view.terms(view.post_mean, view.post_log_scale)[1] == pytest.approx(
        0.0, abs=1e-10
    )  # zero KL at the posterior


def test_sliders_redraw_the_bars_and_static_has_one_column_per_setting():
    model, x = line_model()
    view = ElboExplorer(model, x)
    before = list(view.view.data[3].y)
    view.scale_slider.value = -1.0
    after = list(view.view.data[3].y)
    assert after != before and after[0] + after[1] == pytest.approx(
        view.log_px, abs=1e-10
    )
    assert list(view.view.data[3].base) == [
        0,
        after[0],
        0,
    ]  # the KL bar sits on the ELBO bar
    fig = view.static({"a": (0.0, 0.0), "b": (1.0, -1.0)})
    assert [a.text for a in fig.layout.annotations] == ["a", "b"] and len(fig.data) == 6


def test_bad_input_is_named():
    model, x = line_model()
    with pytest.raises(ValueError, match="z_dim"):
        ElboExplorer(LinearGaussian.random(3, 2, seed=0, learnable=False), x)
    with pytest.raises(ValueError, match="x must be one observation"):
        ElboExplorer(model, x.expand(2, -1))
