"""The linear Gaussian model (probabilistic PCA): a continuous latent variable model with an exact answer.

    p(z) = N(0, I_d),    p(x|z) = N(W z + b, sigma^2 I_D)

Both the marginal and the posterior are Gaussian in closed form:

    p(x)   = N(b, W W^T + sigma^2 I_D)
    p(z|x) = N(S W^T (x - b) / sigma^2, S),    S = (I_d + W^T W / sigma^2)^{-1}

so every estimator and bound in the series can be checked against the exact log p(x) and p(z|x).
The model has the ``decode`` / ``prior`` interface of :mod:`vaekit.objectives`, so
``elbo(model, x, q=...)`` and ``iwae_bound(model, x, k, q=...)`` work on it directly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from ..utils import check_positive_int, check_tensor


class LinearGaussian(nn.Module):
    """p(z) = N(0, I_d), p(x|z) = N(W z + b, sigma^2 I_D) (probabilistic PCA).

    weight ``[D, d]``, bias ``[D]``, sigma > 0. With ``learnable=True`` W, b and log sigma are
    ``nn.Parameter`` s (maximum likelihood by gradient ascent on :meth:`log_marginal` works);
    otherwise they are buffers and the model is a fixed ground truth.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        sigma: float,
        learnable: bool = True,
    ):
        super().__init__()
        weight = torch.as_tensor(weight)
        if not weight.is_floating_point():
            weight = weight.float()
        check_tensor("weight", weight, ndim=2, floating=True)
        bias = torch.as_tensor(bias, dtype=weight.dtype, device=weight.device)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"bias must have shape [D] = [{weight.shape[0]}] to match weight [D, d] = "
                f"{list(weight.shape)}, got {list(bias.shape)}"
            )
        sigma = torch.as_tensor(sigma, dtype=weight.dtype, device=weight.device)
        if sigma.dim() != 0 or not bool(sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        params = {
            "weight": weight.detach().clone(),
            "bias": bias.detach().clone(),
            "log_sigma": sigma.log(),
        }
        for name, value in params.items():
            if learnable:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    @classmethod
    def random(
        cls,
        x_dim: int,
        z_dim: int,
        sigma: float = 0.5,
        seed: int = 0,
        learnable: bool = True,
        dtype: torch.dtype | None = None,
        device=None,
    ) -> "LinearGaussian":
        """A model with W ~ N(0, 1) entries ``[x_dim, z_dim]`` and b ~ N(0, 1), drawn with ``seed``.

        Each latent dimension moves x by about one unit per unit of z, so the posterior narrows
        as ``x_dim`` grows and ``sigma`` shrinks. ``dtype`` defaults to torch's default dtype.
        """
        check_positive_int(x_dim=x_dim, z_dim=z_dim)
        g = torch.Generator().manual_seed(seed)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        w = torch.randn(x_dim, z_dim, generator=g, dtype=dtype)
        b = torch.randn(x_dim, generator=g, dtype=dtype)
        return cls(w.to(device), b.to(device), sigma, learnable)

    @property
    def z_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def x_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    @property
    def prior(self) -> Independent:
        """p(z) = N(0, I_d), on the module's device and dtype."""
        zeros = self.weight.new_zeros(self.z_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def decode(self, z: torch.Tensor) -> Independent:
        """p(x|z) = N(W z + b, sigma^2 I) for z ``[..., d]``: batch ``[...]``, event ``[D]``."""
        check_tensor("z", z, floating=True)
        if z.shape[-1] != self.z_dim:
            raise ValueError(
                f"z must have {self.z_dim} latent dimensions in its last axis, got shape {tuple(z.shape)}"
            )
        loc = z @ self.weight.T + self.bias  # (..., D)
        return Independent(Normal(loc, self.sigma.expand_as(loc)), 1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x|z) + log p(z); z ``[..., B, d]`` against x ``[B, D]`` gives ``[..., B]``."""
        return self.decode(z).log_prob(x) + self.prior.log_prob(z)

    def _check_x(self, x: torch.Tensor) -> None:
        check_tensor("x", x, ndim=2, floating=True)
        if x.shape[1] != self.x_dim:
            raise ValueError(f"x must be [B, {self.x_dim}], got shape {tuple(x.shape)}")

    def marginal(self) -> MultivariateNormal:
        """p(x) = N(b, W W^T + sigma^2 I_D)."""
        eye = torch.eye(self.x_dim, dtype=self.weight.dtype, device=self.weight.device)
        cov = self.weight @ self.weight.T + self.sigma**2 * eye  # (D, D)
        return MultivariateNormal(self.bias, scale_tril=torch.linalg.cholesky(cov))

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) for x ``[B, D]``: ``[B]`` nats."""
        self._check_x(x)
        return self.marginal().log_prob(x)

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """Exact p(z|x) for x ``[B, D]``: a MultivariateNormal with batch ``[B]`` and event ``[d]``."""
        self._check_x(x)
        s2 = self.sigma**2
        eye = torch.eye(self.z_dim, dtype=self.weight.dtype, device=self.weight.device)
        precision = eye + self.weight.T @ self.weight / s2  # (d, d)
        cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))  # (d, d)
        cov = 0.5 * (cov + cov.T)
        mean = (x - self.bias) @ self.weight @ cov / s2  # (B, d); cov is symmetric
        scale_tril = torch.linalg.cholesky(cov).expand(x.shape[0], -1, -1)  # (B, d, d)
        return MultivariateNormal(mean, scale_tril=scale_tril)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: z ~ p(z), then x ~ p(x|z). Returns (x ``[n, D]``, z ``[n, d]``)."""
        check_positive_int(n=n)
        kw = dict(
            dtype=self.weight.dtype, device=self.weight.device, generator=generator
        )
        z = torch.randn(n, self.z_dim, **kw)
        x = (
            z @ self.weight.T
            + self.bias
            + self.sigma * torch.randn(n, self.x_dim, **kw)
        )
        return x, z

    def extra_repr(self) -> str:
        return f"x_dim={self.x_dim}, z_dim={self.z_dim}, sigma={float(self.sigma.detach()):.4g}"
