"""Monte Carlo estimators of the marginal likelihood p(x) = E_{p(z)}[p(x|z)] and their diagnostics.

Importance sampling with a proposal q(z) rewrites the integral as an expectation under q:

    p(x) = E_q[ p(x, z) / q(z) ] ~= (1/K) sum_k w_k,    w_k = p(x, z_k) / q(z_k),  z_k ~ q.

The estimate of p(x) is unbiased; its log is biased downwards (Jensen), by less as K grows and as
q approaches the posterior p(z|x), where every w_k equals p(x) and the variance is zero. Prior
sampling is the special case q = p(z). Estimates are returned in log space and combined across
chunks of samples with ``logsumexp``, so memory stays bounded for any K.

A model is anything with ``prior`` (p(z)) and ``decode(z)`` (p(x|z)): :class:`vaekit.models.mixture.GaussianMixture`,
:class:`vaekit.models.linear_gaussian.LinearGaussian`, :class:`vaekit.VAE`. A proposal is a
``torch.distributions`` object over z with batch shape ``[]`` (shared by all examples) or ``[B]``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import nn

from .variational import PerExampleGaussian, frozen
from .objectives import effective_sample_size, elbo, normalized_weights
from ..train import fit
from ..utils import check_positive_int, check_tensor


class ISEstimate(NamedTuple):
    log_marginal: torch.Tensor  # (B,) log of (1/K) sum_k w_k
    ess: torch.Tensor  # (B,) effective sample size (sum w)^2 / sum w^2, in [1, K]
    k: int  # samples per example


def _sample(q, k: int, batch: int) -> torch.Tensor:
    """k draws per example: ``[k, B, ...]`` whether q is shared (batch ``[]``) or per example (batch ``[B]``)."""
    if len(q.batch_shape) == 0:
        return q.sample((k, batch))
    if q.batch_shape[0] != batch:
        raise ValueError(
            f"q must have batch shape [] or [B] = [{batch}], got {list(q.batch_shape)}"
        )
    return q.sample((k,))


@torch.no_grad()
def log_importance_weights(model, x: torch.Tensor, k: int, q=None) -> torch.Tensor:
    """log w_k = log p(x, z_k) - log q(z_k) for k draws z_k ~ q per example: ``[k, B]``.

    ``q=None`` samples from the prior (then log w_k = log p(x | z_k)).
    """
    check_tensor("x", x, floating=True)
    check_positive_int(k=k)
    prior = model.prior
    q = prior if q is None else q
    z = _sample(q, k, x.shape[0])  # (k, B, ...)
    log_px_z = model.decode(z).log_prob(x)  # (k, B)
    if q is prior:
        return log_px_z
    return log_px_z + prior.log_prob(z) - q.log_prob(z)


@torch.no_grad()
def importance_sampling(
    model,
    x: torch.Tensor,
    k: int,
    q=None,
    chunk_size: int | None = None,
    max_elements: int = 2**22,
) -> ISEstimate:
    """The importance-sampling estimate log (1/K) sum_k p(x, z_k)/q(z_k), z_k ~ q, per example.

    The K samples are drawn ``chunk_size`` at a time (default: as many as keep one chunk's
    decoder output near ``max_elements`` numbers) and combined exactly: the running
    ``logsumexp`` of the log-weights and of twice the log-weights give the estimate and the
    effective sample size. ``q=None``: the prior (prior sampling).
    """
    check_tensor("x", x, floating=True)
    check_positive_int(k=k)
    batch = x.shape[0]
    if chunk_size is None:
        chunk_size = max(
            1, min(k, max_elements // max(1, batch * math.prod(x.shape[1:])))
        )
    check_positive_int(chunk_size=chunk_size)
    lse = lse2 = None
    for start in range(0, k, chunk_size):
        lw = log_importance_weights(model, x, min(chunk_size, k - start), q)  # (c, B)
        a, b = torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0)
        lse, lse2 = (
            (a, b)
            if lse is None
            else (torch.logaddexp(lse, a), torch.logaddexp(lse2, b))
        )
    return ISEstimate(lse - math.log(k), torch.exp(2 * lse - lse2), k)


def prior_sampling(
    model, x: torch.Tensor, k: int, chunk_size: int | None = None
) -> ISEstimate:
    """log of p_hat(x) = (1/K) sum_k p(x | z_k), z_k ~ p(z): importance sampling with q = p(z)."""
    return importance_sampling(model, x, k, None, chunk_size)


def useful_fraction(
    log_w: torch.Tensor, mass: float = 0.99, dim: int = 0
) -> torch.Tensor:
    """The smallest fraction of the samples whose normalised weights add up to ``mass``."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    w = torch.sort(normalized_weights(log_w, dim), dim=dim, descending=True).values
    needed = (torch.cumsum(w, dim) < mass).sum(dim) + 1
    return needed.clamp(max=log_w.shape[dim]) / log_w.shape[dim]


def fit_proposal(
    model,
    x: torch.Tensor,
    steps: int = 500,
    lr: float = 0.05,
    k: int = 8,
    init: PerExampleGaussian | None = None,
    seed: int | None = 0,
    progress: bool = False,
):
    """Fit one diagonal Gaussian q_n per data point by minimising KL(q_n || p(z | x_n)).

    KL(q || p(z|x)) = log p(x) - ELBO(q), and log p(x) does not depend on q, so this maximises
    ``vaekit.elbo(model, x, k=k, q=q)`` with reparameterized gradients through
    :func:`vaekit.train.fit` (full batch). The model itself is left unchanged. Starts from the
    prior N(0, I) unless ``init`` is given; ``seed`` seeds the samples as in ``fit``. Returns ``(proposal, history)``; ``proposal()`` is q,
    ``history["elbo"]`` the mean ELBO per step.
    """

    check_tensor("x", x, floating=True)
    check_positive_int(steps=steps)
    prior = model.prior
    if init is None:
        d = prior.event_shape[0]
        init = PerExampleGaussian(
            x.shape[0],
            d,
            loc=torch.zeros(x.shape[0], d, dtype=x.dtype, device=x.device),
        )

    def objective(proposal, xb, idx):
        value = elbo(model, xb, k=k, q=proposal(idx))
        return {"loss": -value, "elbo": value}

    with frozen(model) if isinstance(model, nn.Module) else nullcontext():
        history = fit(
            init,
            objective,
            (x, torch.arange(x.shape[0], device=x.device)),
            epochs=steps,
            batch_size=x.shape[0],
            lr=lr,
            device=x.device,
            seed=seed,
            progress=progress,
            desc="fitting q",
        )
    return init, history
