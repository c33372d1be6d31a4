"""Evaluation: importance-sampled log-likelihood, test ELBO, active units, KL per dimension,
codebook perplexity, bits per dimension. Values are nats per example unless named otherwise."""

from __future__ import annotations

import functools
import math

import torch
from tqdm.auto import tqdm

from ..device import bf16_autocast_available, chunk_elements, module_device
from ..inference.objectives import (
    check_input,
    check_likelihood_input,
    check_model_data,
    elbo_terms,
)
from ..models.vq import (
    codebook_perplexity,
    codebook_usage,
    dead_code_fraction,
    perplexity_of_counts,
)
from ..utils import check_labels, check_positive_int, check_tensor, value_checks_enabled

LN2 = math.log(2.0)


def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log (1/n) sum exp(a) along ``dim``, stable through ``logsumexp``."""
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def _batches(x: torch.Tensor, batch_size: int):
    check_positive_int(batch_size=batch_size)
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


def _log_px(model, x: torch.Tensor, z: torch.Tensor, autocast: bool) -> torch.Tensor:
    """log p(x|z) ``[c, B]`` for a chunk of samples z ``[c, B, D]``; with ``autocast`` the decoder
    runs under bfloat16 autocast (the likelihood itself is computed in float32)."""
    if not autocast:  # no autocast context at all: devices such as "meta" have none
        return model.decode(z).log_prob(x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        log_px = model.decode(z).log_prob(x)  # (c, B)
    return log_px.float() if log_px.dtype in (torch.bfloat16, torch.float16) else log_px


@functools.cache
def _compiled(fn):
    return torch.compile(fn, dynamic=False)


@torch.no_grad()
def log_likelihood(
    model,
    x: torch.Tensor,
    k: int = 5000,
    batch_size: int | None = None,
    max_elements: int | None = None,
    progress: bool = True,
    compile: bool = False,
    autocast: bool = False,
) -> torch.Tensor:
    """Importance-sampled log p(x) per example, ``[N]`` nats: L_k with the encoder as proposal.

    Examples are processed ``batch_size`` at a time. Each batch's k samples z ~ q(z|x) are drawn
    at once (``k * batch_size * latent`` numbers), then decoded in near-equal chunks, so that one
    decoder call holds at most about ``max_elements`` numbers of output (default:
    :func:`chunk_elements` for the model's device): memory stays bounded for any k, and the
    estimate does not depend on the chunking. Results stay on the model's device.

    compile: ``torch.compile`` the decoder and likelihood (a one-time cost of seconds to a minute;
        worth it for large evaluations such as k = 5000 on thousands of examples).
    autocast: run the decoder under bfloat16 autocast (faster matrix products where the hardware
        has them); estimates move by hundredths of a nat (``tests/test_speed_paths.py``).
    """
    device = module_device(model)
    check_input(
        model, x, device=False
    )  # x may live elsewhere: batches move to the model's device
    check_positive_int(k=k)
    per_sample = math.prod(x.shape[1:])
    max_elements = chunk_elements(device) if max_elements is None else max_elements
    if not isinstance(max_elements, int) or max_elements < 1:
        raise ValueError(
            f"max_elements must be a positive int or None, got {max_elements!r}"
        )
    if (
        batch_size is None
    ):  # enough examples that one chunk of all k samples fits, at least one
        batch_size = max(1, min(x.shape[0], max_elements // (k * per_sample)))
    n_chunks = math.ceil(k / max(1, max_elements // (batch_size * per_sample)))
    sizes = [
        k // n_chunks + (i < k % n_chunks) for i in range(n_chunks)
    ]  # near-equal: few shapes to compile
    log_px_fn = _compiled(_log_px) if compile else _log_px
    autocast = autocast and bf16_autocast_available(device)
    out = []
    unchecked = value_checks_enabled()
    for xb in tqdm(
        list(_batches(x, batch_size)),
        desc=f"log p(x), k={k}",
        disable=not progress,
        leave=False,
    ):
        xb = xb.to(device, non_blocking=True)
        q = model.encode(xb)
        if (
            unchecked
        ):  # decoding one latent shows the likelihood: check all of x against it, once
            try:  # before sampling, which a NaN in x can break with a less clear error
                check_likelihood_input(model.decode(q.mean[:1]), x)
                unchecked = False
            except (
                AttributeError,
                NotImplementedError,
            ):  # a q without a mean: after sampling
                pass
        z = q.sample((k,))  # (k, b, D)
        if unchecked:
            check_likelihood_input(model.decode(z[0, :1]), x)
            unchecked = False
        log_px = torch.cat(
            [log_px_fn(model, xb, zc, autocast) for zc in z.split(sizes)]
        )  # (k, b)
        out.append(log_mean_exp(log_px + model.prior.log_prob(z) - q.log_prob(z), 0))
    return torch.cat(out)


def autocast_gap(model, x: torch.Tensor, k: int = 5000, seed: int = 0) -> float:
    """Mean absolute change of the per-example :func:`log_likelihood` (nats) when the decoder runs
    under bfloat16 autocast instead of float32, on the same draws (each run after
    ``torch.manual_seed(seed)``): how much precision the fast path costs."""
    values = []
    for low in (False, True):
        torch.manual_seed(seed)
        values.append(log_likelihood(model, x, k=k, progress=False, autocast=low))
    return (values[0] - values[1]).abs().mean().item()


@torch.no_grad()
def evaluate_elbo(
    model, x: torch.Tensor, batch_size: int = 1000, **elbo_kwargs
) -> dict[str, float]:
    """Mean ELBO, reconstruction term and KL over a dataset (nats per example), summed in float64."""
    device = module_device(model)
    check_input(model, x, device=False)
    sums = torch.zeros(3, device=device, dtype=torch.float64)
    for xb in _batches(x, batch_size):  # elbo_terms checks each batch, so all of x once
        t = elbo_terms(model, xb.to(device), **elbo_kwargs)
        sums += torch.stack(
            [
                t.elbo.double().sum(),
                t.reconstruction.double().sum(),
                t.kl.double().sum(),
            ]
        )
    elbo_, rec, kl = (sums / x.shape[0]).tolist()
    return {"elbo": elbo_, "reconstruction": rec, "kl": kl}


def elbo_evaluator(sets: dict[str, torch.Tensor], batch_size: int = 1000):
    """A :func:`vaekit.fit` ``evaluate`` hook: ``model -> {name: mean ELBO of sets[name]}`` (nats),
    e.g. ``{"train_elbo": x_train_eval, "test_elbo": x_test}`` for training curves."""
    if not isinstance(sets, dict) or not sets:
        raise ValueError(
            f"sets must be a non-empty dict {{name: examples}}, got {sets!r}"
        )
    return lambda model: {
        name: evaluate_elbo(model, x, batch_size)["elbo"] for name, x in sets.items()
    }


@torch.no_grad()
def posterior_means(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z|x] for every example, ``[N, D]`` on the model's device."""
    check_model_data(model, x)
    check_positive_int(batch_size=batch_size)
    device = module_device(model)
    return torch.cat(
        [model.encode(xb.to(device)).mean for xb in _batches(x, batch_size)]
    )


@torch.no_grad()
def active_units(
    model, x: torch.Tensor, threshold: float = 0.01, batch_size: int = 1000
) -> tuple[int, torch.Tensor]:
    """Burda et al.'s active units: dimensions u with Cov_x(E_q[u|x]) > ``threshold``.

    Returns the count and the per-dimension variances ``[D]``.
    """
    check_tensor("x", x, nonempty=True)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(
            f"threshold must be a number >= 0 (a variance), got {type(threshold).__name__} {threshold!r}"
        )
    if not 0 <= threshold < math.inf:
        raise ValueError(
            f"threshold must be a number >= 0 (a variance), got {threshold!r}"
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"x must hold at least two examples to estimate a variance, got shape {tuple(x.shape)}"
        )
    var = posterior_means(model, x, batch_size).var(0)
    return int((var > threshold).sum()), var


def nearest_centre_accuracy(
    z_train: torch.Tensor,
    y_train: torch.Tensor,
    z_test: torch.Tensor,
    y_test: torch.Tensor,
) -> float:
    """How well latent codes separate the classes: each test code gets the label of the nearest
    class centre (mean code of that label's training codes); the fraction right."""
    check_tensor("z_train", z_train, ndim=2, floating=True)
    check_tensor("z_test", z_test, ndim=2, floating=True)
    check_labels(
        "y_train", y_train
    )  # float labels compare only by accident; [N, 1] would broadcast
    check_labels("y_test", y_test)
    if len(z_train) != len(y_train) or len(z_test) != len(y_test):
        raise ValueError(
            f"codes and labels must pair up, got {len(z_train)} and {len(y_train)} training, "
            f"{len(z_test)} and {len(y_test)} test"
        )
    classes = torch.unique(y_train)
    centres = torch.stack([z_train[y_train == c].mean(0) for c in classes])  # (C, D)
    return (
        (classes[torch.cdist(z_test, centres).argmin(1)] == y_test)
        .float()
        .mean()
        .item()
    )


@torch.no_grad()
def dequantization_gap(
    model, x: torch.Tensor, samples: int = 50
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Theis et al.'s dequantization bound against the discrete probability, per pixel, for a model
    with discretized-logistic pixels at z = each image's posterior mean: ``(gap [B, P], se [B],
    edge [B, P])``, gap = log P(x|z) - (E_u[log p((n + u)/256 | z)] - log 256) in nats (at least 0 in
    expectation), the standard error of each image's summed gap, and which pixels sit in an end
    bin (n = 0 or 255), where the bound is loose."""
    from ..discretized import dequantized_bound

    px = model.decode(
        model.encode(x).mean
    ).base_dist  # DiscretizedLogistic, (B, C, H, W)
    log_p, (lower, lower_se) = px.log_prob(x), dequantized_bound(px, x, samples=samples)
    return (
        (log_p - lower).flatten(1),
        lower_se.flatten(1).pow(2).sum(1).sqrt(),
        (x % 1 == 0).flatten(1),
    )


@torch.no_grad()
def kl_per_dim(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Mean KL(q(z_d|x) || p(z_d)) per latent dimension, ``[D]`` nats (diagonal Gaussian q and prior)."""
    check_model_data(model, x)
    check_positive_int(batch_size=batch_size)
    device = module_device(model)
    total = None
    for xb in _batches(x, batch_size):
        q, p = model.encode(xb.to(device)), model.prior
        kl = torch.distributions.kl_divergence(q.base_dist, p.base_dist).sum(0)
        total = kl if total is None else total + kl
    return total / x.shape[0]


def bits_per_dim(nll_nats: float | torch.Tensor, dims: int) -> float | torch.Tensor:
    """Convert a negative log-likelihood in nats per example to bits per dimension."""
    if dims < 1:
        raise ValueError(f"dims must be positive, got {dims!r}")
    return nll_nats / (dims * LN2)
