"""Evaluation: importance-sampled log-likelihood, test ELBO, active units, KL per dimension,
codebook perplexity, bits per dimension. Values are nats per example unless named otherwise."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .objectives import elbo_terms, log_weights
from .utils import check_tensor

LN2 = math.log(2.0)


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) sum exp(a) along ``dim``, stable through ``logsumexp``."""
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def _batches(x: torch.Tensor, batch_size: int):
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for i in range(0, x.shape[0], batch_size):
        yield x[i:i + batch_size]


def _model_device(model):
    return next(iter(model.parameters())).device


@torch.no_grad()
def log_likelihood(model, x: torch.Tensor, k: int = 5000, batch_size: int | None = None,
                   max_elements: int = 2**25, progress: bool = True) -> torch.Tensor:
    """Importance-sampled log p(x) per example, ``[N]`` nats: L_k with the encoder as proposal.

    Examples are processed ``batch_size`` at a time and the k samples in chunks, so that one
    decoder call holds at most about ``max_elements`` numbers of output (memory stays bounded
    for any k). Chunks are combined exactly with ``logsumexp``.
    """
    check_tensor("x", x, floating=True)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    device = _model_device(model)
    per_sample = math.prod(x.shape[1:])
    if batch_size is None:  # enough examples that one chunk of all k samples fits, at least one
        batch_size = max(1, min(x.shape[0], max_elements // (k * per_sample)))
    chunk = max(1, min(k, max_elements // (batch_size * per_sample)))
    out = []
    for xb in tqdm(list(_batches(x, batch_size)), desc=f"log p(x), k={k}", disable=not progress, leave=False):
        xb = xb.to(device, non_blocking=True)
        q = model.encode(xb)
        lw = torch.cat([log_weights(model, xb, min(chunk, k - s), q=q) for s in range(0, k, chunk)])  # (k, b)
        out.append(log_mean_exp(lw, 0))
    return torch.cat(out)


@torch.no_grad()
def evaluate_elbo(model, x: torch.Tensor, batch_size: int = 1000, **elbo_kwargs) -> dict[str, float]:
    """Mean ELBO, reconstruction term and KL over a dataset (nats per example)."""
    check_tensor("x", x, floating=True)
    device = _model_device(model)
    sums = torch.zeros(3, device=device)
    for xb in _batches(x, batch_size):
        t = elbo_terms(model, xb.to(device), **elbo_kwargs)
        sums += torch.stack([t.elbo.sum(), t.reconstruction.sum(), t.kl.sum()])
    elbo_, rec, kl = (sums / x.shape[0]).tolist()
    return {"elbo": elbo_, "reconstruction": rec, "kl": kl}


@torch.no_grad()
def posterior_means(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] for every example, ``[N, D]`` on the model's device."""
    device = _model_device(model)
    return torch.cat([model.encode(xb.to(device)).mean for xb in _batches(x, batch_size)])


@torch.no_grad()
def active_units(model, x: torch.Tensor, threshold: float = 0.01, batch_size: int = 1000) -> tuple[int, torch.Tensor]:
    """Burda et al.'s active units: dimensions u with Cov_x(E_q[u|x]) > ``threshold``.

    Returns the count and the per-dimension variances ``[D]``.
    """
    var = posterior_means(model, x, batch_size).var(0)
    return int((var > threshold).sum()), var


@torch.no_grad()
def kl_per_dim(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Mean KL(q(z_d|x) || p(z_d)) per latent dimension, ``[D]`` nats (diagonal Gaussian q and prior)."""
    device = _model_device(model)
    total = None
    for xb in _batches(x, batch_size):
        q, p = model.encode(xb.to(device)), model.prior
        kl = torch.distributions.kl_divergence(q.base_dist, p.base_dist).sum(0)
        total = kl if total is None else total + kl
    return total / x.shape[0]


def codebook_usage(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """How often each of ``num_codes`` codes occurs in ``indices`` (any shape): counts ``[K]``."""
    if indices.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
    return torch.bincount(indices.reshape(-1).long(), minlength=num_codes)[:num_codes]


def codebook_perplexity(indices: torch.Tensor, num_codes: int) -> float:
    """exp(entropy of code usage): 1 if one code is used, ``num_codes`` if all are used equally."""
    p = codebook_usage(indices, num_codes).double()
    p = p / p.sum()
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum()))


def dead_code_fraction(indices: torch.Tensor, num_codes: int) -> float:
    """Fraction of codes never used in ``indices``."""
    return float((codebook_usage(indices, num_codes) == 0).double().mean())


def bits_per_dim(nll_nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    if dims < 1:
        raise ValueError(f"dims must be positive, got {dims!r}")
    return nll_nats / (dims * LN2)
