"""Variational objectives, one value per example (shape ``[B]``, nats).

A model is anything with ``encode(x) -> q(z|x)``, ``decode(z) -> p(x|z)`` and ``prior -> p(z)``,
all ``torch.distributions`` objects with the latent as their event. Pass ``q`` explicitly to use
a variational distribution that does not come from an encoder (per-data-point inference).

Every bound checks its ``x`` once per call: a tensor with at least one example, floating point,
with the model's dtype and device, and, when the decoder's likelihood is Bernoulli, values in
[0, 1] (:func:`check_likelihood_input`; the one check that reads values, skipped inside
:func:`vaekit.train.fit` after its first batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Independent,
    kl_divergence,
)

from ..utils import (
    check_likelihood_input,
    check_matches,
    check_positive_int,
    check_tensor,  # noqa: F401 (re-exported)
    value_checks_enabled,
)


class ELBOTerms(NamedTuple):
    elbo: torch.Tensor  # (B,) reconstruction - beta * kl
    reconstruction: torch.Tensor  # (B,) E_q[log p(x|z)], Monte Carlo over k samples
    kl: torch.Tensor  # (B,) KL(q(z|x) || p(z)): analytic, or the same samples' estimate


def is_bernoulli(px) -> bool:
    """Whether the distribution ``px`` (through any ``Independent`` wrappers) has Bernoulli pixels."""
    while isinstance(px, Independent):
        px = px.base_dist
    return isinstance(px, (Bernoulli, ContinuousBernoulli))


def check_input(
    model, x: torch.Tensor, name: str = "x", device: bool = True
) -> torch.Tensor:
    """``x`` is a floating tensor with at least one example and the model's dtype (and device)."""
    check_tensor(name, x, floating=True, nonempty=True)
    if isinstance(model, torch.nn.Module):
        check_matches(name, x, model, device=device)
    return x


def check_model_data(model, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """:func:`check_input` (dtype; the device is left to callers that move ``x`` in batches) plus the
    range of the model's likelihood, for functions that only encode ``x`` (active units, KL per
    dimension, information terms): 0-255 pixels fed to a Bernoulli model's encoder mean nothing.
    The likelihood is read from one decoder call (skipped with the value checks)."""
    check_input(model, x, name, device=False)
    if value_checks_enabled():
        px = model_likelihood(model)
        if px is not None:
            check_likelihood_input(px, x, name)
    return x


@torch.no_grad()
def model_likelihood(model):
    """p(x|z) of ``model`` at z = 0 (one decoder call, no random numbers drawn, so checking does
    not change a seeded run): what its data will be scored under. None where the model has no
    ``decode`` and ``prior`` with an event shape."""
    prior, decode = getattr(model, "prior", None), getattr(model, "decode", None)
    shape = getattr(prior, "event_shape", None)
    if not callable(decode) or shape is None or not isinstance(model, torch.nn.Module):
        return None
    ref = next((p for p in model.parameters() if p.is_floating_point()), None)
    if ref is None:
        return None
    return decode(torch.zeros((1, *shape), dtype=ref.dtype, device=ref.device))


def closed_form_kl(q, p) -> torch.Tensor | None:
    """KL(q || p) from ``torch.distributions``' registry, or ``None`` when no closed form is registered."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


def elbo_terms(
    model,
    x: torch.Tensor,
    k: int = 1,
    analytic_kl: bool = True,
    beta: float = 1.0,
    free_bits: float = 0.0,
    q=None,
) -> ELBOTerms:
    """The ELBO and its two parts, each ``[B]``. See :func:`elbo`."""
    check_input(model, x)
    check_positive_int(k=k)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if free_bits < 0:
        raise ValueError(
            f"free_bits must be >= 0 (nats per latent dimension), got {free_bits!r}"
        )
    q = model.encode(x) if q is None else q
    prior = model.prior
    z = q.rsample((k,))  # (k, B, D)
    px = model.decode(z)
    rec = px.log_prob(check_likelihood_input(px, x)).mean(0)  # (B,)
    kl = None
    if free_bits > 0:
        kl_d = (
            closed_form_kl(q.base_dist, prior.base_dist)
            if hasattr(q, "base_dist") and hasattr(prior, "base_dist")
            else None
        )
        if kl_d is None or kl_d.dim() != 2:
            raise ValueError(
                "free_bits needs q and p(z) with per-dimension KLs (Independent(Normal) over a [B, D] latent)"
            )
        # Free bits (Kingma et al. 2016): each dimension's batch-mean KL counts as at least free_bits.
        below = kl_d.mean(0, keepdim=True) < free_bits  # (1, D)
        kl_obj = torch.where(below, torch.full_like(kl_d, free_bits), kl_d).sum(-1)
        kl = kl_d.sum(-1)
    elif analytic_kl:
        kl = closed_form_kl(q, prior)
    if kl is None:  # sampled KL on the same samples: this is the SGVB "A" estimator
        kl = (q.log_prob(z) - prior.log_prob(z)).mean(0)
    if free_bits <= 0:
        kl_obj = kl
    return ELBOTerms(rec - beta * kl_obj, rec, kl)


def elbo(
    model,
    x: torch.Tensor,
    k: int = 1,
    analytic_kl: bool = True,
    beta: float = 1.0,
    free_bits: float = 0.0,
    q=None,
) -> torch.Tensor:
    """Monte Carlo ELBO per example, ``[B]`` nats, with ``k`` reparameterized samples per example.

    ``analytic_kl=True``: E_q[log p(x|z)] - KL(q || p), the KL in closed form when
    ``torch.distributions`` has it registered (Kingma & Welling's SGVB "B" estimator), otherwise
    sampled. ``analytic_kl=False``: E_q[log p(x,z) - log q(z|x)] on the samples (estimator "A").
    ``beta`` weights the KL (beta-VAE, KL warm-up); ``free_bits`` > 0 counts each latent
    dimension's batch-mean KL as at least that many nats.
    """
    return elbo_terms(model, x, k, analytic_kl, beta, free_bits, q).elbo


def log_weights(model, x: torch.Tensor, k: int, q=None) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i|x) for ``k`` reparameterized z_i ~ q(z|x): shape ``[k, B]``."""
    check_input(model, x)
    check_positive_int(k=k)
    q = model.encode(x) if q is None else q
    if tuple(q.batch_shape) != (
        x.shape[0],
    ):  # a shared q would pair sample i with example i
        raise ValueError(
            f"q must have batch shape [B] = [{x.shape[0]}] (one distribution per example), "
            f"got {list(q.batch_shape)}"
        )
    z = q.rsample((k,))  # (k, B, D)
    px = model.decode(z)
    return (
        px.log_prob(check_likelihood_input(px, x))
        + model.prior.log_prob(z)
        - q.log_prob(z)
    )


def normalized_weights(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """w_k / sum_j w_j from log-weights (a softmax along ``dim``)."""
    return torch.softmax(log_w, dim)


def effective_sample_size(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """(sum w)^2 / sum w^2 along ``dim``: K for equal weights, 1 when one weight dominates."""
    return torch.exp(2 * torch.logsumexp(log_w, dim) - torch.logsumexp(2 * log_w, dim))


def iwae_bound(model, x: torch.Tensor, k: int, q=None) -> torch.Tensor:
    """The importance-weighted bound L_k = log (1/k) sum_i p(x, z_i)/q(z_i|x), ``[B]`` nats.

    Differentiable: its gradient is the normalised-weight average of the per-sample gradients
    (Burda et al. 2016, eq. 14), which autograd gives exactly through ``logsumexp``. With k = 1 it
    is the single-sample ELBO on the same sample. For large k without gradients use
    :func:`vaekit.metrics.log_likelihood`, which works in chunks of bounded memory.
    """
    return torch.logsumexp(log_weights(model, x, k, q), 0) - math.log(k)


def vae_k_bound(model, x: torch.Tensor, k: int, q=None) -> torch.Tensor:
    """The mean of k single-sample ELBOs, ``[B]``: the "VAE with k samples" of Burda et al."""
    return log_weights(model, x, k, q).mean(0)


@dataclass
class KLWarmup:
    """KL warm-up: beta rises linearly from ``start`` to 1 over ``steps`` optimiser steps.

    Use it as a :func:`vaekit.train.fit` callback and read ``.beta`` in the objective:
    ``fit(model, lambda m, x: -elbo(m, x, beta=warm.beta), ..., callbacks=[warm])``.
    """

    steps: int
    start: float = 0.0
    step: int = 0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps!r}")

    @property
    def beta(self) -> float:
        return min(1.0, self.start + (1.0 - self.start) * self.step / self.steps)

    def on_step(self, state) -> None:
        self.step = state.step

    def state_dict(self) -> dict:
        """What a :func:`vaekit.train.fit` checkpoint saves, so a resumed run uses the same beta."""
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


@torch.no_grad()
def expected_bounds(
    model, x: torch.Tensor, ks, q=None, reps: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo E[L_k] for several k from shared draws: ``([len(ks), B], [len(ks)])`` nats.

    Each of ``reps`` repetitions draws max(ks) samples per example and cuts them into
    max(ks) / k groups of k (every k must divide max(ks)); the first tensor is the mean over
    groups and repetitions, the second the standard error of its mean over the examples,
    estimated from the spread between repetitions (NaN for ``reps=1``). Checking
    ``L_1 <= L_5 <= ... <= log p(x)`` (Burda et al., Theorem 1) on a model reads the first.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1 or any(max(ks) % k for k in ks):
        raise ValueError(
            f"ks must be positive integers that all divide max(ks), got {ks}"
        )
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    values = []
    for _ in range(reps):
        lw = log_weights(model, x, max(ks), q=q)  # (k_max, B)
        values.append(
            torch.stack(
                [
                    torch.logsumexp(lw.reshape(max(ks) // k, k, -1), 1).mean(0)
                    - math.log(k)
                    for k in ks
                ]
            )
        )  # (len(ks), B)
    values = torch.stack(values)  # (reps, len(ks), B)
    se = (
        values.mean(2).std(0) / math.sqrt(reps)
        if reps > 1
        else torch.full((len(ks),), math.nan, device=values.device, dtype=values.dtype)
    )
    return values.mean(0), se


@torch.no_grad()
def weighted_draws(model, x: torch.Tensor, k: int, n_resample: int = 0) -> dict:
    """``k`` draws z ~ q(z|x) per example with their importance weights, and ``n_resample`` of
    them drawn again in proportion to the weights (sampling-importance-resampling).

    Returns ``dict(z [k, B, D], log_w [k, B], w [k, B] normalised over the k draws, ess [B],
    resampled [B, n_resample, D])``; ``log_w`` is :func:`log_weights` on the same draws (the same
    random numbers are used in the same order), so ``log_mean_exp(log_w) = L_k`` and
    ``log_w.mean(0)`` is the mean of k single-sample ELBOs."""
    check_input(model, x)
    check_positive_int(k=k)
    if (
        isinstance(n_resample, bool)
        or not isinstance(n_resample, int)
        or n_resample < 0
    ):
        raise ValueError(f"n_resample must be a non-negative int, got {n_resample!r}")
    q = model.encode(x)
    z = q.rsample((k,))  # (k, B, D)
    px = model.decode(z)
    lw = (
        px.log_prob(check_likelihood_input(px, x))
        + model.prior.log_prob(z)
        - q.log_prob(z)
    )  # (k, B)
    w = normalized_weights(lw, 0)  # (k, B)
    out = dict(z=z, log_w=lw, w=w, ess=effective_sample_size(lw, 0))
    if n_resample:
        pick = torch.multinomial(
            w.T, n_resample, replacement=True
        )  # (B, n) indices into the k draws
        out["resampled"] = torch.stack(
            [z[pick[j], j] for j in range(x.shape[0])]
        )  # (B, n, D)
    return out


@torch.no_grad()
def elbo_draws(
    model, x: torch.Tensor, reps: int, analytic_kl: bool = True
) -> torch.Tensor:
    """``reps`` independent single-sample ELBO estimates per example, ``[reps, B]`` nats:
    Kingma & Welling's estimator A (``analytic_kl=False``, every term sampled) or B (the KL in
    closed form). Their spread over the repetitions is the estimator's noise."""
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 2:
        raise ValueError(
            f"reps must be an int >= 2 (a spread needs two draws), got {reps!r}"
        )
    return torch.stack([elbo(model, x, analytic_kl=analytic_kl) for _ in range(reps)])
