"""Variational inference on the linear Gaussian model, where every gap can be computed exactly.

* Exact quantities for Gaussian q: :func:`exact_elbo` (the ELBO in closed form, computed without
  the posterior), :func:`kl_to_posterior` (KL(q || p(z|x))), and :func:`mean_field_optimum`,
  the best diagonal Gaussian q for a Gaussian posterior.
* Richer than diagonal: :class:`PerExampleFullGaussian`, one full-covariance q per data point
  (a Cholesky factor), whose approximation gap vanishes on the linear Gaussian model.
* Three ways to learn with the ELBO: one q per data point (:class:`PerExampleGaussian`) trained
  jointly with the model (black-box VI) or alternately with it (:func:`variational_em`), and an
  encoder shared by all data points (:class:`Amortized`). All training goes through
  :func:`vaekit.train.fit`.
* :func:`ppca_max_likelihood`: the closed-form maximum-likelihood linear Gaussian model (Tipping &
  Bishop 1999), the ceiling that every ELBO-trained model is compared with.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence
from tqdm.auto import tqdm

from ..distributions import diag_gaussian
from ..models.linear_gaussian import LinearGaussian
from .objectives import elbo
from ..train import History, fit
from ..utils import check_positive_int, check_tensor


def as_multivariate(q) -> MultivariateNormal:
    """A Gaussian q (``MultivariateNormal`` or ``Independent(Normal)`` with event ``[d]``) as a
    ``MultivariateNormal``, so that ``kl_divergence`` against a full-covariance Gaussian applies."""
    if isinstance(q, MultivariateNormal):
        return q
    if (
        isinstance(q, Independent)
        and isinstance(q.base_dist, Normal)
        and q.reinterpreted_batch_ndims == 1
    ):
        return MultivariateNormal(
            q.base_dist.loc, scale_tril=torch.diag_embed(q.base_dist.scale)
        )
    raise TypeError(
        f"q must be a MultivariateNormal or an Independent(Normal) over a vector latent, got {q!r}"
    )


def kl_to_posterior(model: LinearGaussian, x: torch.Tensor, q) -> torch.Tensor:
    """Exact KL(q || p(z|x)) per example, ``[B]`` nats, for a Gaussian q with batch ``[B]``."""
    return kl_divergence(as_multivariate(q), model.posterior(x))


def exact_elbo(model: LinearGaussian, x: torch.Tensor, q) -> torch.Tensor:
    """The ELBO E_q[log p(x|z)] - KL(q || p(z)) in closed form, ``[B]`` nats, for a Gaussian q.

    With q = N(m, S) and p(x|z) = N(W z + b, sigma^2 I_D):
    E_q[log p(x|z)] = -D/2 log(2 pi sigma^2) - (||x - W m - b||^2 + tr(W S W^T)) / (2 sigma^2).
    Nothing here uses the posterior, so ``exact_elbo + kl_to_posterior == log_marginal`` is a
    genuine check of the decomposition log p(x) = ELBO + KL(q || p(z|x)).
    """
    q = as_multivariate(q)
    s2 = model.sigma**2
    resid = x - q.mean @ model.weight.T - model.bias  # (B, D)
    trace = (
        (model.weight @ q.scale_tril).pow(2).sum((-2, -1))
    )  # (B,) tr(W S W^T) = ||W L||_F^2
    rec = -0.5 * model.x_dim * torch.log(2 * math.pi * s2) - (
        resid.pow(2).sum(-1) + trace
    ) / (2 * s2)
    prior = model.prior.base_dist
    p = MultivariateNormal(prior.loc, scale_tril=torch.diag_embed(prior.scale))
    return rec - kl_divergence(q, p)


def mean_field_optimum(posterior: MultivariateNormal) -> Independent:
    """argmin over diagonal Gaussians q of KL(q || posterior): the posterior mean and variances
    1 / Lambda_ii, where Lambda is the posterior precision (narrower than the marginals)."""
    precision = posterior.precision_matrix  # (B, d, d)
    return diag_gaussian(
        posterior.mean, torch.diagonal(precision, dim1=-2, dim2=-1).rsqrt()
    )


def _check_loc(loc: torch.Tensor | None, n: int, z_dim: int) -> torch.Tensor | None:
    """The initial means of a per-example family: None, or a floating tensor ``[n, z_dim]``."""
    if loc is not None:
        check_tensor("loc", loc, ndim=2, floating=True)
        if tuple(loc.shape) != (n, z_dim):
            raise ValueError(
                f"loc must have shape [n, z_dim] = [{n}, {z_dim}], got {tuple(loc.shape)}"
            )
    return loc


class PerExampleGaussian(nn.Module):
    """One diagonal Gaussian q_i(z) = N(m_i, diag s_i^2) per data point: the non-amortized family.

    ``q(idx)`` returns the distributions for the examples ``idx`` (batch ``[len(idx)]``, event ``[d]``).
    """

    def __init__(
        self,
        n: int,
        z_dim: int,
        loc: torch.Tensor | None = None,
        log_scale: float = 0.0,
    ):
        super().__init__()
        check_positive_int(n=n, z_dim=z_dim)
        _check_loc(loc, n, z_dim)
        self.loc = nn.Parameter(
            torch.zeros(n, z_dim) if loc is None else loc.detach().clone()
        )  # (N, d)
        self.log_scale = nn.Parameter(
            torch.full(
                (n, z_dim),
                float(log_scale),
                dtype=self.loc.dtype,
                device=self.loc.device,
            )
        )  # (N, d)

    def forward(self, idx: torch.Tensor | None = None) -> Independent:
        if idx is None:
            return diag_gaussian(self.loc, self.log_scale.exp())
        return diag_gaussian(self.loc[idx], self.log_scale[idx].exp())


class PerExampleFullGaussian(nn.Module):
    """One full-covariance Gaussian q_i(z) = N(m_i, L_i L_i^T) per data point.

    ``L_i`` is a Cholesky factor: lower triangular with a positive diagonal, stored as an unconstrained
    ``[N, d, d]`` tensor whose strict lower triangle is used as it is and whose diagonal is the log of
    ``L_i``'s diagonal (the upper triangle is ignored), so every value of the parameters gives a
    valid covariance. It starts at N(0, I). ``q(idx)`` returns a ``MultivariateNormal`` with batch
    ``[len(idx)]`` (all N without ``idx``) and event ``[d]``; on a Gaussian posterior (the linear
    Gaussian model) this family contains the posterior, so the ELBO's approximation gap can close.
    """

    def __init__(
        self,
        n: int,
        z_dim: int,
        loc: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        device=None,
    ):
        super().__init__()
        check_positive_int(n=n, z_dim=z_dim)
        if _check_loc(loc, n, z_dim) is not None:
            dtype, device = loc.dtype, loc.device
        zeros = torch.zeros(n, z_dim, dtype=dtype, device=device)
        self.loc = nn.Parameter(
            zeros if loc is None else loc.detach().clone()
        )  # (N, d)
        self.raw_tril = nn.Parameter(
            torch.zeros(n, z_dim, z_dim, dtype=self.loc.dtype, device=self.loc.device)
        )  # (N, d, d)

    def scale_tril(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The Cholesky factors ``[N, d, d]`` (or ``[len(idx), d, d]``)."""
        raw = self.raw_tril if idx is None else self.raw_tril[idx]
        return torch.tril(raw, -1) + torch.diag_embed(
            raw.diagonal(dim1=-2, dim2=-1).exp()
        )

    def forward(self, idx: torch.Tensor | None = None) -> MultivariateNormal:
        loc = self.loc if idx is None else self.loc[idx]
        return MultivariateNormal(loc, scale_tril=self.scale_tril(idx))


class PerExampleVI(nn.Module):
    """A model and one q per data point, trained together on ``(x, index)`` batches (black-box VI)."""

    def __init__(self, model: nn.Module, q: PerExampleGaussian):
        super().__init__()
        self.model, self.q = model, q

    def loss(self, x: torch.Tensor, idx: torch.Tensor, k: int = 1) -> torch.Tensor:
        """-ELBO per example ``[B]``, reparameterized, with the analytic KL to the prior."""
        return -elbo(self.model, x, k, q=self.q(idx))


class Amortized(nn.Module):
    """An encoder network q(z|x) in front of a model with ``decode`` and ``prior``, so that
    :func:`vaekit.objectives.elbo` (and every other bound) uses the encoder as q."""

    def __init__(self, encoder: nn.Module, model: nn.Module):
        super().__init__()
        self.encoder, self.model = encoder, model

    def encode(self, x: torch.Tensor):
        return self.encoder(x)

    def decode(self, z: torch.Tensor):
        return self.model.decode(z)

    @property
    def prior(self):
        return self.model.prior


@contextmanager
def frozen(module: nn.Module):
    """Inside the block the parameters of ``module`` do not require gradients."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def variational_em(
    vi: PerExampleVI,
    x: torch.Tensor,
    rounds: int,
    e_epochs: int = 5,
    m_epochs: int = 1,
    batch_size: int = 100,
    lr: float = 1e-2,
    k: int = 1,
    evaluate=None,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Variational EM: alternate ``e_epochs`` of ELBO ascent on the q_i (model fixed) and
    ``m_epochs`` on the model (q_i fixed), for ``rounds`` rounds.

    Each optimiser keeps its state across rounds. ``evaluate(vi) -> dict`` runs after every round;
    the returned :class:`History` has one record per round with the mean -ELBO of both steps.
    """
    check_positive_int(rounds=rounds)
    idx = torch.arange(x.shape[0], device=x.device)
    opt_q = torch.optim.Adam(vi.q.parameters(), lr=lr)
    opt_m = torch.optim.Adam(vi.model.parameters(), lr=lr)
    history = History()
    for r in tqdm(
        range(rounds), desc="variational EM", disable=not progress, dynamic_ncols=True
    ):
        with frozen(vi.model):  # E-step: the q_i move, the model stays
            e = fit(
                vi.q,
                lambda q, xb, ib: -elbo(vi.model, xb, k, q=q(ib)),
                (x, idx),
                epochs=e_epochs,
                batch_size=batch_size,
                optimizer=opt_q,
                seed=seed + 2 * r,
                progress=False,
                device=x.device,
            )
        with frozen(vi.q):  # M-step: the model moves, the q_i stay
            m = fit(
                vi.model,
                lambda mod, xb, ib: -elbo(mod, xb, k, q=vi.q(ib)),
                (x, idx),
                epochs=m_epochs,
                batch_size=batch_size,
                optimizer=opt_m,
                seed=seed + 2 * r + 1,
                progress=False,
                device=x.device,
            )
        rec = {"round": r + 1, "e_loss": e.last["loss"], "loss": m.last["loss"]}
        if evaluate is not None:
            with torch.no_grad():
                rec.update(evaluate(vi))
        history.records.append(rec)
    return history


@torch.no_grad()
def ppca_max_likelihood(x: torch.Tensor, z_dim: int) -> LinearGaussian:
    """The maximum-likelihood linear Gaussian model for data ``x [N, D]`` in closed form.

    b = mean of x; sigma^2 = the mean of the D - d smallest eigenvalues of the (1/N) covariance;
    W = U_d (Lambda_d - sigma^2 I)^{1/2} with the d leading eigenvectors U_d (up to a rotation).
    """
    check_tensor("x", x, ndim=2, floating=True)
    n, d_x = x.shape
    if not isinstance(z_dim, int) or not 1 <= z_dim < d_x:
        raise ValueError(
            f"z_dim must be an int in [1, {d_x - 1}] (fewer latents than data dimensions), got {z_dim!r}"
        )
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / n  # (D, D)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0), evecs.flip(1)
    s2 = evals[z_dim:].mean()
    weight = evecs[:, :z_dim] * (evals[:z_dim] - s2).clamp_min(0).sqrt()  # (D, d)
    return LinearGaussian(weight, mean, float(s2.sqrt()), learnable=False)
