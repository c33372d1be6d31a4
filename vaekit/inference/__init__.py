"""Inference and learning: the objectives and the estimators that train and evaluate the models.

objectives (ELBO, IWAE bound, importance weights, KL warm-up), estimators (prior and importance
sampling of p(x), fitted proposals), variational (exact variational inference on the linear
Gaussian model: exact ELBO, mean-field optimum, per-example, amortized and variational EM),
gradients (score-function and pathwise estimators), hmc (Hamiltonian Monte Carlo and its
marginal-likelihood estimator), wake_sleep (wake-sleep, reweighted wake-sleep, Monte Carlo EM).

May import: the models and the core. ``vaekit.inference.NAME`` also gives the names of
:mod:`vaekit.inference.variational` (``exact_elbo``, ``Amortized``, ...), as before the layout.
"""

from . import estimators, gradients, hmc, objectives, variational, wake_sleep
from .variational import (
    Amortized,
    PerExampleFullGaussian,
    PerExampleGaussian,
    PerExampleVI,
    as_multivariate,
    exact_elbo,
    frozen,
    kl_to_posterior,
    mean_field_optimum,
    ppca_max_likelihood,
    variational_em,
)

__all__ = [
    "estimators",
    "gradients",
    "hmc",
    "objectives",
    "variational",
    "wake_sleep",
    "Amortized",
    "PerExampleFullGaussian",
    "PerExampleGaussian",
    "PerExampleVI",
    "as_multivariate",
    "exact_elbo",
    "frozen",
    "kl_to_posterior",
    "mean_field_optimum",
    "ppca_max_likelihood",
    "variational_em",
]
