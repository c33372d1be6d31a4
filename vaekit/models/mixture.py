"""The Gaussian mixture as a latent variable model with a discrete latent z in {0, ..., K-1}:

    p(z) = Categorical(pi),    p(x | z = k) = N(mu_k, L_k L_k^T),
    p(x) = sum_k pi_k N(x; mu_k, L_k L_k^T),    p(z = k | x) = pi_k N(x; mu_k, L_k L_k^T) / p(x).

Everything is a ``torch.distributions`` object: ``prior`` (Categorical), ``decode(z)``
(MultivariateNormal with ``scale_tril``), ``distribution()`` (MixtureSameFamily). The parameters
are unconstrained, so gradient ascent on :meth:`GaussianMixture.log_marginal` needs no projection:
``logits`` for pi, ``means``, and a lower-triangular ``raw_tril`` whose diagonal holds the log of
the Cholesky factor's (positive) diagonal. :func:`fit_em` is the classical alternative.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from ..utils import check_positive_int, check_tensor, kmeans_pp


def _tril_to_raw(scale_tril: torch.Tensor) -> torch.Tensor:
    """Cholesky factors ``[K, D, D]`` -> unconstrained form: strictly-lower part, log on the diagonal."""
    return torch.tril(scale_tril, -1) + torch.diag_embed(
        torch.diagonal(scale_tril, dim1=-2, dim2=-1).log()
    )


class GaussianMixture(nn.Module):
    """A K-component Gaussian mixture in D dimensions with learnable weights, means and covariances.

    means ``[K, D]``; covariances ``[K, D, D]`` (default: identity); weights ``[K]`` (default:
    uniform). Use :meth:`log_marginal` for the exact log p(x), :meth:`responsibilities` for
    p(z|x), :meth:`sample` for ancestral sampling.
    """

    def __init__(self, means, covariances=None, weights=None):
        super().__init__()
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.float()
        check_tensor("means", means, ndim=2)
        k, d = means.shape
        kw = dict(dtype=means.dtype, device=means.device)
        covs = (
            torch.eye(d, **kw).expand(k, d, d)
            if covariances is None
            else torch.as_tensor(covariances, **kw)
        )
        if covs.shape != (k, d, d):
            raise ValueError(
                f"covariances must be [K, D, D] = [{k}, {d}, {d}] to match means, got {list(covs.shape)}"
            )
        try:
            tril = torch.linalg.cholesky(covs)
        except RuntimeError as e:  # torch.linalg.LinAlgError
            raise ValueError("covariances must be symmetric positive definite") from e
        w = (
            torch.full((k,), 1.0 / k, **kw)
            if weights is None
            else torch.as_tensor(weights, **kw)
        )
        if w.shape != (k,) or not bool((w > 0).all()):
            raise ValueError(
                f"weights must be [K] = [{k}] positive numbers, got {w.tolist() if w.dim() < 2 else list(w.shape)}"
            )
        self.means = nn.Parameter(means.detach().clone())  # (K, D)
        self.raw_tril = nn.Parameter(_tril_to_raw(tril).detach().clone())  # (K, D, D)
        self.logits = nn.Parameter((w / w.sum()).log().detach().clone())  # (K,)

    @classmethod
    def init_from_data(
        cls, x: torch.Tensor, num_components: int, seed: int = 0
    ) -> "GaussianMixture":
        """A starting point for gradient ascent and for EM alike: means picked among the data by
        k-means++ seeding (each next mean drawn with probability proportional to the squared
        distance to the nearest one already picked), the data covariance for every component,
        uniform weights."""
        check_tensor("x", x, ndim=2, floating=True)
        if not isinstance(num_components, int) or not 1 <= num_components <= x.shape[0]:
            raise ValueError(
                f"num_components must be an int in [1, {x.shape[0]}], got {num_components!r}"
            )
        idx = kmeans_pp(
            x.detach().cpu(), num_components, torch.Generator().manual_seed(seed)
        ).to(x.device)
        cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
        return cls(x[idx].detach(), cov.expand(num_components, -1, -1))

    # ----- parameters in their natural form
    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def weights(self) -> torch.Tensor:
        """pi ``[K]``: softmax of the logits."""
        return torch.softmax(self.logits, -1)

    @property
    def scale_tril(self) -> torch.Tensor:
        """Cholesky factors L_k ``[K, D, D]`` with a positive diagonal."""
        return torch.tril(self.raw_tril, -1) + torch.diag_embed(
            torch.diagonal(self.raw_tril, dim1=-2, dim2=-1).exp()
        )

    @property
    def covariances(self) -> torch.Tensor:
        """Sigma_k = L_k L_k^T ``[K, D, D]``."""
        tril = self.scale_tril
        return tril @ tril.transpose(-1, -2)

    # ----- the latent variable model
    @property
    def prior(self) -> Categorical:
        """p(z) over {0, ..., K-1}."""
        return Categorical(logits=self.logits)

    def components(self) -> MultivariateNormal:
        """All K conditionals p(x | z = k) as one MultivariateNormal with batch ``[K]``."""
        return MultivariateNormal(self.means, scale_tril=self.scale_tril)

    def decode(self, z: torch.Tensor) -> MultivariateNormal:
        """p(x | z) for integer z of any shape ``[...]``: batch ``[...]``, event ``[D]``."""
        if (
            not isinstance(z, torch.Tensor)
            or z.is_floating_point()
            or z.dtype == torch.bool
        ):
            raise TypeError(
                f"z must be an integer tensor of component indices, got {getattr(z, 'dtype', type(z).__name__)}"
            )
        if z.numel() and not bool(
            (z.min() >= 0) & (z.max() < self.num_components)
        ):  # negative would wrap around
            raise ValueError(
                f"z must be component indices in [0, {self.num_components - 1}], "
                f"got values in [{int(z.min())}, {int(z.max())}]"
            )
        return MultivariateNormal(self.means[z], scale_tril=self.scale_tril[z])

    def distribution(self) -> MixtureSameFamily:
        """p(x) = sum_k pi_k N(x; mu_k, Sigma_k) as one ``torch.distributions`` object."""
        return MixtureSameFamily(self.prior, self.components())

    def _check_x(self, x: torch.Tensor) -> None:
        check_tensor("x", x, floating=True)
        if x.dim() < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must be [..., {self.dim}] (points in {self.dim}-D), got shape {tuple(x.shape)}"
            )

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, z = k) for every k: ``[..., K]`` for x ``[..., D]``."""
        self._check_x(x)
        return self.components().log_prob(x.unsqueeze(-2)) + torch.log_softmax(
            self.logits, -1
        )  # (..., K)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) ``[...]`` for x ``[..., D]``, through ``MixtureSameFamily``."""
        self._check_x(x)
        return self.distribution().log_prob(x)

    def log_marginal_by_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The same log p(x), written as the sum over z: logsumexp_k [log p(z = k) + log p(x | z = k)]."""
        return torch.logsumexp(self.log_joint(x), -1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(z = k | x) ``[..., K]``: Bayes' rule, normalised with a softmax over k."""
        return torch.softmax(self.log_joint(x), -1)

    def posterior(self, x: torch.Tensor) -> Categorical:
        """p(z | x) as a Categorical with batch ``[...]``."""
        return Categorical(logits=torch.log_softmax(self.log_joint(x), -1))

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: z ~ p(z), then x ~ p(x | z). Returns (x ``[n, D]``, z ``[n]``)."""
        check_positive_int(n=n)
        z = torch.multinomial(
            self.weights, n, replacement=True, generator=generator
        )  # (n,)
        eps = torch.randn(
            n,
            self.dim,
            1,
            dtype=self.means.dtype,
            device=self.means.device,
            generator=generator,
        )
        x = self.means[z] + (self.scale_tril[z] @ eps).squeeze(-1)  # (n, D)
        return x, z

    @torch.no_grad()
    def ellipses(self, radius: float = 2.0, points: int = 100) -> torch.Tensor:
        """Contours {mu_k + radius * L_k u : |u| = 1} of each component, ``[K, points, 2]`` (2-D only).

        For a 2-D Gaussian the ellipse at Mahalanobis radius r holds 1 - exp(-r^2 / 2) of its mass
        (r = 2: 86%).
        """
        if self.dim != 2:
            raise ValueError(
                f"ellipses are drawn for 2-D mixtures, this one is {self.dim}-D"
            )
        t = torch.linspace(
            0, 2 * math.pi, points, dtype=self.means.dtype, device=self.means.device
        )
        circle = torch.stack([t.cos(), t.sin()], -1)  # (P, 2)
        return self.means.unsqueeze(1) + radius * circle @ self.scale_tril.transpose(
            -1, -2
        )  # (K, P, 2)

    def extra_repr(self) -> str:
        return f"components={self.num_components}, dim={self.dim}"

    @torch.no_grad()
    def set_parameters(
        self, means=None, covariances=None, weights=None
    ) -> "GaussianMixture":
        """Overwrite any of the parameters in place (used by EM and by widgets); returns self."""
        if means is not None:
            self.means.copy_(
                torch.as_tensor(means, dtype=self.means.dtype, device=self.means.device)
            )
        if covariances is not None:
            covs = torch.as_tensor(
                covariances, dtype=self.means.dtype, device=self.means.device
            )
            self.raw_tril.copy_(_tril_to_raw(torch.linalg.cholesky(covs)))
        if weights is not None:
            w = torch.as_tensor(
                weights, dtype=self.means.dtype, device=self.means.device
            )
            if not bool((w > 0).all()):
                raise ValueError(f"weights must be positive, got {w.tolist()}")
            self.logits.copy_((w / w.sum()).log())
        return self


@torch.no_grad()
def em_step(model: GaussianMixture, x: torch.Tensor, reg: float = 1e-6) -> float:
    """One EM iteration in place; returns the average log p(x) *before* the update.

    E step: r_nk = p(z = k | x_n). M step: N_k = sum_n r_nk, pi_k = N_k / N,
    mu_k = sum_n r_nk x_n / N_k, Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k + reg I.
    """
    log_joint = model.log_joint(x)  # (N, K)
    loglik = torch.logsumexp(log_joint, -1)  # (N,)
    r = torch.exp(log_joint - loglik.unsqueeze(-1))  # (N, K)
    nk = r.sum(0)  # (K,)
    means = (r.T @ x) / nk.unsqueeze(-1)  # (K, D)
    diff = x.unsqueeze(1) - means  # (N, K, D)
    covs = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk.reshape(
        -1, 1, 1
    )  # (K, D, D)
    covs = covs + reg * torch.eye(model.dim, dtype=x.dtype, device=x.device)
    model.set_parameters(means, covs, nk / nk.sum())
    return float(loglik.mean())


@torch.no_grad()
def fit_em(
    model: GaussianMixture,
    x: torch.Tensor,
    iterations: int = 200,
    tol: float = 1e-7,
    reg: float = 1e-6,
) -> list[float]:
    """Run EM in place until the average log-likelihood improves by less than ``tol`` nats.

    Returns the average log p(x) after every iteration (never decreasing: EM's guarantee).
    """
    check_tensor("x", x, ndim=2, floating=True)
    check_positive_int(iterations=iterations)
    trace = []
    for _ in range(iterations):
        em_step(model, x, reg)
        trace.append(float(model.log_marginal(x).mean()))
        if len(trace) > 1 and trace[-1] - trace[-2] < tol:
            break
    return trace


def match_components(model: GaussianMixture, means: torch.Tensor) -> list[int]:
    """The permutation ``perm`` for which ``model.means[perm]`` is closest (summed squared distance)
    to ``means`` ``[K, D]``: mixture components are only identified up to relabelling.
    Tries every permutation, so K is limited to 8."""
    means = torch.as_tensor(means, dtype=model.means.dtype, device=model.means.device)
    k = model.num_components
    if means.shape != (k, model.dim):
        raise ValueError(f"means must be [{k}, {model.dim}], got {list(means.shape)}")
    if k > 8:
        raise ValueError(
            f"match_components tries all K! permutations; K = {k} is too many (at most 8)"
        )
    cost = (
        torch.cdist(means, model.means.detach()) ** 2
    ).tolist()  # (K, K): reference i vs model j
    best = min(
        itertools.permutations(range(k)),
        key=lambda p: sum(cost[i][j] for i, j in enumerate(p)),
    )
    return list(best)


def brute_force_log_marginal(means, covariances, weights, x) -> "np.ndarray":  # noqa: F821  (numpy is imported inside)
    """log sum_k pi_k N(x; mu_k, Sigma_k) with every Gaussian density written out in NumPy float64,
    ``[N]`` nats for ``x [N, D]``: an evaluation independent of ``torch.distributions``, to check it.

    N(x; mu, Sigma) = det(2 pi Sigma)^(-1/2) exp(-(x - mu)^T Sigma^-1 (x - mu) / 2). The densities
    are summed before the log, so points far from every component underflow to -inf (which is
    what ``logsumexp`` avoids).
    """
    import numpy as np

    def numpy64(a):
        return (
            a.detach().cpu().double().numpy()
            if isinstance(a, torch.Tensor)
            else np.asarray(a, dtype=np.float64)
        )

    means, covariances, weights, x = (
        numpy64(means),
        numpy64(covariances),
        numpy64(weights),
        numpy64(x),
    )
    if (
        x.ndim != 2
        or means.ndim != 2
        or covariances.shape != means.shape + means.shape[-1:]
        or weights.shape != means.shape[:1]
    ):
        raise ValueError(
            f"expected x [N, D], means [K, D], covariances [K, D, D], weights [K]; got {x.shape}, "
            f"{means.shape}, {covariances.shape}, {weights.shape}"
        )
    total = np.zeros(len(x))
    for mu, cov, w in zip(means, covariances, weights):
        diff = x - mu  # (N, D)
        maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        total += w * np.exp(-0.5 * maha) / np.sqrt(np.linalg.det(2 * np.pi * cov))
    with np.errstate(divide="ignore"):
        return np.log(total)
