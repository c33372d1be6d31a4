"""Evaluation: what is measured on a trained model, and how trainings are compared.

metrics (importance-sampled log-likelihood, test ELBO, active units, bits per dimension, codebook
perplexity), compare (several trainings side by side, paired differences and their standard
errors), snr (signal-to-noise ratio of gradients), information (the rate split into I_q(x; z) and
KL(q(z) || p(z))), disentanglement (MIG and the FactorVAE score against known factors), protocols
(Burda et al.'s training protocols), collapse (posterior-collapse recipes, trained and measured).

May import: inference, the models and the core.
"""

from . import collapse, compare, disentanglement, information, metrics, protocols, snr

__all__ = [
    "collapse",
    "compare",
    "disentanglement",
    "information",
    "metrics",
    "protocols",
    "snr",
]
