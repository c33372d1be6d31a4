"""Figures and widgets (plotly, ipywidgets), one module per topic.

plots (shared builders: image grids, curves, bars, heatmaps, the notebooks' plotly setup), latents
(a VAE's latent space), bounds (importance-weighted bounds), mixtures (2-D Gaussian mixtures),
codebooks (a VQ-VAE's codebook), factors (codes against known factors: seeds, mutual information),
rates (the rate-distortion plane, aggregate posteriors), hierarchy (VQ-VAE-2's two levels of codes:
swapped between digits, bottom codes redrawn for a fixed top), widgets (latent sliders, the latent
explorer across models, the ELBO explorer).

May import: evaluation, inference, the models and the core.
"""

from . import (
    bounds,
    codebooks,
    factors,
    hierarchy,
    latents,
    mixtures,
    plots,
    rates,
    widgets,
)

__all__ = [
    "bounds",
    "codebooks",
    "factors",
    "hierarchy",
    "latents",
    "mixtures",
    "plots",
    "rates",
    "widgets",
]
