"""What the latent carries: the rate of a VAE split into mutual information and the aggregate KL.

For data x_1 .. x_N and an encoder q(z|x), the *aggregate posterior* is the mixture
q(z) = (1/N) sum_n q(z|x_n). The average KL of the ELBO, the **rate** R, splits exactly
(Hoffman & Johnson 2016, "ELBO surgery") as

    R = (1/N) sum_n KL(q(z|x_n) || p(z)) = I_q(x; z) + KL(q(z) || p(z)),

with x uniform over the N data points: I_q(x; z) is what z tells about which data point it came
from (at most log N nats), KL(q(z) || p(z)) how far the aggregate posterior is from the prior.

:func:`information_terms` estimates both with one z_n ~ q(z|x_n) per data point (or more):
log q(z_n) is the exact log-density of the N-component mixture (a logsumexp over all pairs, in
chunks of bounded memory), so I_q(x; z) = E[log q(z_n|x_n) - log q(z_n)] is estimated without bias
for the empirical data distribution (exactly 0 when all posteriors are equal, exactly log N when
they do not overlap), and KL(q(z) || p(z)) = R - I_q, with R in closed form where
``torch.distributions`` has it (else sampled on the same z_n), so that the split is exact. Standard errors are those of
the mean of the per-point terms. For N data points drawn from a population, the same numbers
estimate the population's I and KL with a bias of about (rho - 1) / (2N) (rho = E[q(z|x) / q(z)]
under z ~ q(z|x)), negligible beside the standard error when I is well below log N.

:func:`latent_information` runs it on a model's encoder for a data set.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..device import module_device
from ..distributions import diag_gaussian
from ..inference.objectives import check_model_data, closed_form_kl
from ..utils import check_positive_int


class Information(NamedTuple):
    """Nats per data point; ``*_se`` are standard errors of the means over the data points."""

    rate: float  # (1/N) sum_n KL(q(z|x_n) || p(z))
    mutual_information: float  # I_q(x; z), x uniform over the N points
    marginal_kl: float  # KL(q(z) || p(z)) of the aggregate posterior
    rate_se: float
    mutual_information_se: float
    marginal_kl_se: float
    n: int  # data points: I_q(x; z) <= log n

    @property
    def log_n(self) -> float:
        """log N, the most information z can carry about which of N data points it came from."""
        return math.log(self.n)


def aggregate_log_prob(q, z: torch.Tensor, max_elements: int = 2**22) -> torch.Tensor:
    """log q(z) = log (1/N) sum_n q(z|x_n) for the mixture of the N distributions in ``q``.

    q: a distribution with batch shape ``[N]`` and event ``[D]`` (e.g. an encoder's output).
    z: ``[M, D]`` points. Returns ``[M]``. Rows of z are done a chunk at a time, so that a chunk holds
    at most about ``max_elements`` numbers (``rows * N * D``).
    """
    _check_q(q)
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1:] != q.event_shape:
        raise ValueError(
            f"z must be a tensor [M, {', '.join(map(str, q.event_shape))}] of points, "
            f"got {tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
        )
    n, d = q.batch_shape[0], max(1, math.prod(q.event_shape))
    check_positive_int(max_elements=max_elements)
    rows = max(1, max_elements // (n * d))
    out = [
        torch.logsumexp(q.log_prob(zc[:, None]), 1) for zc in z.split(rows)
    ]  # each (rows,) from (rows, N)
    return torch.cat(out) - math.log(n)


def _check_q(q) -> None:
    if not isinstance(q, torch.distributions.Distribution):
        raise TypeError(
            f"q must be a torch.distributions.Distribution, got {type(q).__name__}"
        )
    if len(q.batch_shape) != 1 or len(q.event_shape) != 1:
        raise ValueError(
            f"q must have batch shape [N] (one distribution per data point) and event shape [D], "
            f"got batch {list(q.batch_shape)} and event {list(q.event_shape)}"
        )


def _mean_se(t: torch.Tensor) -> tuple[float, float]:
    t = t.double()
    se = t.std() / math.sqrt(t.shape[0]) if t.shape[0] > 1 else torch.tensor(math.nan)
    return float(t.mean()), float(se)


@torch.no_grad()
def information_terms(
    q, prior, samples: int = 1, max_elements: int = 2**22
) -> Information:
    """Rate, I_q(x; z) and KL(q(z) || p(z)) for the N posteriors in ``q`` (batch ``[N]``, event ``[D]``).

    prior: p(z), any distribution over the same event with ``log_prob`` (N(0, I), a mixture, ...).
    samples: draws z ~ q(z|x_n) per data point (their mean per point is one term of the average).
    """
    _check_q(q)
    check_positive_int(samples=samples)
    n = q.batch_shape[0]
    if n < 2:
        raise ValueError(
            f"q must hold at least two data points (batch shape [N] with N >= 2), got N = {n}"
        )
    if tuple(prior.event_shape) != tuple(q.event_shape):
        raise ValueError(
            f"prior must have q's event shape {list(q.event_shape)}, got {list(prior.event_shape)}"
        )
    z = q.sample((samples,))  # (S, N, D)
    log_q_own = q.log_prob(z)  # (S, N)
    log_prior = prior.log_prob(z)  # (S, N)
    log_agg = aggregate_log_prob(q, z.reshape(-1, z.shape[-1]), max_elements).reshape(
        samples, n
    )  # (S, N)
    rate_n = closed_form_kl(q, prior)
    if rate_n is None or tuple(rate_n.shape) != (n,):
        rate_n = (log_q_own - log_prior).mean(0)  # sampled on the same z
    mi_n = (log_q_own - log_agg).mean(0)  # (N,) per-point terms of I_q(x; z)
    rate, rate_se = _mean_se(rate_n)
    mi, mi_se = _mean_se(mi_n)
    kl, kl_se = _mean_se(rate_n - mi_n)
    return Information(rate, mi, kl, rate_se, mi_se, kl_se, n)


@torch.no_grad()
def encode_all(model, x: torch.Tensor, batch_size: int = 1000):
    """q(z|x) for every example of ``x`` as one diagonal Gaussian with batch ``[N]`` (encoded in batches
    on the model's device). The encoder must return a diagonal Gaussian (``Independent(Normal)``)."""
    check_model_data(model, x)
    check_positive_int(batch_size=batch_size)
    device = module_device(model)
    locs, scales = [], []
    for xb in x.split(batch_size):
        q = model.encode(xb.to(device))
        base = getattr(q, "base_dist", None)
        if not isinstance(base, torch.distributions.Normal) or len(q.event_shape) != 1:
            raise TypeError(
                f"the model's encoder must return a diagonal Gaussian (Independent(Normal) over [D]), "
                f"got {type(q).__name__}"
            )
        locs.append(base.loc)
        scales.append(base.scale)
    return diag_gaussian(torch.cat(locs), torch.cat(scales))


@torch.no_grad()
def latent_information(
    model,
    x: torch.Tensor,
    samples: int = 1,
    batch_size: int = 1000,
    max_elements: int = 2**22,
) -> Information:
    """:func:`information_terms` for the model's encoder on the data ``x`` (x uniform over its N examples)
    and the model's prior ``model.prior``."""
    return information_terms(
        encode_all(model, x, batch_size), model.prior, samples, max_elements
    )
