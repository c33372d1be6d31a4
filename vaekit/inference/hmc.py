"""Hamiltonian (Hybrid) Monte Carlo on latent posteriors p(z|x) ∝ p(z) p(x|z), many chains at once,
and the marginal-likelihood estimator Kingma & Welling (2014, Appendix D) built on its samples.

``log_prob(z)`` maps z ``[..., D]`` to ``[...]``: every leading index is an independent chain
(for example ``[chains, B, D]`` against a batch of B images), with its own step size and its own
Metropolis accept/reject. The momentum is N(0, I) (unit mass matrix); each transition draws a
fresh momentum, runs ``n_leapfrog`` leapfrog steps and accepts with probability
min(1, exp(H_old - H_new)), so the target is left exactly invariant whatever the step size.
The step size is adapted (towards ``target_accept``) only during burn-in, so the kept samples
come from a fixed, valid kernel.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch.distributions import MultivariateNormal
from tqdm.auto import tqdm

from .objectives import check_model_data
from ..utils import (
    check_data,
    check_finite,
    check_likelihood_input,
    check_positive_int,
    check_positive_number,
    check_tensor,
)

LogProb = Callable[[torch.Tensor], torch.Tensor]


def log_joint(model, x: torch.Tensor) -> LogProb:
    """z ``[..., B, D]`` -> log p(x, z) ``[..., B]`` = log p(x|z) + log p(z): the unnormalised log p(z|x)."""
    return lambda z: model.decode(z).log_prob(x) + model.prior.log_prob(z)


def value_and_grad(
    log_prob: LogProb, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log_prob(z) ``[...]`` and its gradient in z ``[..., D]``, both detached (model parameters get no gradient)."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lp = log_prob(z)
        (grad,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach(), grad


class HMCState(NamedTuple):
    z: torch.Tensor  # (..., D) current positions
    log_prob: torch.Tensor  # (...,) log_prob at z
    grad: torch.Tensor  # (..., D) its gradient


def init_state(log_prob: LogProb, z: torch.Tensor) -> HMCState:
    """The state at positions ``z`` ``[..., D]``."""
    check_tensor("z", z, floating=True)
    return HMCState(z.detach(), *value_and_grad(log_prob, z))


def hmc_step(
    log_prob: LogProb,
    state: HMCState,
    step_size: torch.Tensor | float,
    n_leapfrog: int,
    jitter: float = 0.2,
) -> tuple[HMCState, torch.Tensor]:
    """One HMC transition for every chain. ``step_size``: a number or one per chain ``[...]``.

    Each chain's step size is multiplied by a uniform draw from [1 - jitter, 1 + jitter] (drawn
    independently of the state, so the target stays invariant); without it a fixed trajectory
    length can come close to a period of the dynamics and the chain hardly moves in that direction.
    Returns the new state and the acceptance probability of each chain's proposal ``[...]``.
    """
    z0, lp0, g0 = state
    eps = torch.as_tensor(step_size, dtype=z0.dtype, device=z0.device).expand(
        z0.shape[:-1]
    )
    eps = (eps * (1 + jitter * (2 * torch.rand_like(eps) - 1))).unsqueeze(
        -1
    )  # (..., 1)
    p0 = torch.randn_like(z0)
    z, p, lp, g = z0, p0 + 0.5 * eps * g0, lp0, g0  # half step in momentum
    for i in range(n_leapfrog):
        z = z + eps * p
        lp, g = value_and_grad(log_prob, z)
        p = (
            p + (eps if i < n_leapfrog - 1 else 0.5 * eps) * g
        )  # the last momentum step is a half step
    log_ratio = lp - lp0 - 0.5 * (p**2).sum(-1) + 0.5 * (p0**2).sum(-1)  # H_old - H_new
    log_ratio = torch.nan_to_num(
        log_ratio, nan=-math.inf
    )  # a diverged trajectory is rejected
    accept = torch.rand_like(lp0).log() < log_ratio
    a = accept.unsqueeze(-1)
    new = HMCState(
        torch.where(a, z, z0), torch.where(accept, lp, lp0), torch.where(a, g, g0)
    )
    return new, log_ratio.clamp(max=0).exp()


def adapt_step_size(
    step_size: torch.Tensor,
    accept_prob: torch.Tensor,
    target: float = 0.9,
    rate: float = 0.1,
) -> torch.Tensor:
    """One Robbins-Monro step on log step size: up when chains accept more often than ``target``."""
    return step_size * torch.exp(rate * (accept_prob - target))


class HMCSamples(NamedTuple):
    samples: torch.Tensor  # (n, ..., D) kept positions
    accept_rate: torch.Tensor  # (...,) mean acceptance probability after burn-in
    step_size: torch.Tensor  # (...,) the step size used after burn-in
    state: HMCState  # the last state, to continue the chains


def sample(
    log_prob: LogProb,
    z0: torch.Tensor,
    n_samples: int,
    step_size: float | torch.Tensor = 0.1,
    n_leapfrog: int = 10,
    burn_in: int = 0,
    target_accept: float = 0.9,
    adapt: bool = True,
    adapt_rate: float = 0.3,
    progress: bool = False,
) -> HMCSamples:
    """Run chains from ``z0`` ``[..., D]``: ``burn_in`` transitions (adapting the step size if
    ``adapt``), then ``n_samples`` kept transitions with the step size fixed."""
    check_positive_int(n_samples=n_samples, n_leapfrog=n_leapfrog)
    if not isinstance(step_size, torch.Tensor):
        check_positive_number(step_size=step_size)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"burn_in must be a non-negative int, got {burn_in!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1), got {target_accept!r}")
    state = init_state(log_prob, z0)
    eps = (
        torch.as_tensor(step_size, dtype=z0.dtype, device=z0.device)
        .expand(z0.shape[:-1])
        .clone()
    )
    kept, acc = [], torch.zeros_like(eps)
    for t in tqdm(
        range(burn_in + n_samples), desc="HMC", disable=not progress, leave=False
    ):
        state, a = hmc_step(log_prob, state, eps, n_leapfrog)
        if t < burn_in:
            eps = adapt_step_size(eps, a, target_accept, adapt_rate) if adapt else eps
        else:
            kept.append(state.z)
            acc += a
    return HMCSamples(torch.stack(kept), acc / n_samples, eps, state)


def effective_sample_size(chain: torch.Tensor) -> torch.Tensor:
    """ESS of each coordinate of a chain ``[n, ...]``: n / (1 + 2 sum_t rho_t), the sum of
    autocorrelations cut at the first pair of lags whose sum is negative (Geyer's initial
    positive sequence)."""
    check_tensor("chain", chain, floating=True, nonempty=True)
    check_finite("chain", chain)
    n = chain.shape[0]
    x = chain - chain.mean(0)
    # a chain that never moved (or moves by rounding error) has no autocorrelation to speak of:
    # its variance is 0 and the ratio below would be 0/0 (NaN) or n * 1e12; its ESS is 1
    still = x.abs().amax(0) <= 64 * torch.finfo(chain.dtype).eps * chain.abs().amax(
        0
    )  # (...,) rounding only
    f = torch.fft.rfft(x, n=2 * n, dim=0)
    acov = torch.fft.irfft(f * f.conj(), n=2 * n, dim=0)[:n] / n  # (n, ...)
    rho = acov / acov[0].clamp_min(1e-300)
    pairs = (
        rho[: n - n % 2].reshape(n // 2, 2, *rho.shape[1:]).sum(1)
    )  # (n/2, ...) rho_2t + rho_2t+1
    keep = torch.cumprod((pairs > 0).to(rho.dtype), 0)  # up to the first negative pair
    tau = -1 + 2 * (pairs * keep).sum(0)  # 1 + 2 sum_{t>=1} rho_t
    return torch.where(still, torch.ones_like(tau), n / tau.clamp_min(1e-12))


def _chunk(x: torch.Tensor) -> int:
    """Samples per decoder call so that one call's outputs hold about 2**20 numbers (cache-sized)."""
    return max(1, 2**20 // max(1, x[0].numel() * x.shape[0]))


def sir_init(model, x: torch.Tensor, k: int = 200, chains: int = 1) -> torch.Tensor:
    """Starting points ``[chains, B, D]`` for chains on p(z|x): ``k`` prior draws per image,
    ``chains`` of them resampled in proportion to p(x|z) (sampling importance resampling)."""
    check_positive_int(k=k, chains=chains)
    check_data("x", x, model)
    with torch.no_grad():
        z = model.prior.sample((k, x.shape[0]))  # (k, B, D)
        check_likelihood_input(
            model.decode(z[:1, :1]), x
        )  # the likelihood's type: one decoder call
        logw = torch.cat(
            [model.decode(c).log_prob(x) for c in z.split(_chunk(x))]
        )  # (k, B)
        pick = torch.multinomial(
            torch.softmax(logw, 0).T, chains, replacement=True
        )  # (B, chains)
    return z.gather(0, pick.T.unsqueeze(-1).expand(-1, -1, z.shape[-1]))


class MarginalEstimate(NamedTuple):
    kingma_welling: torch.Tensor  # (B,) Appendix D's estimate of log p(x)
    importance: (
        torch.Tensor
    )  # (B,) importance sampling with the fitted Gaussian as proposal
    accept_rate: torch.Tensor  # (B,) mean HMC acceptance probability


@torch.no_grad()
def log_marginal(
    model,
    x: torch.Tensor,
    n_samples: int = 50,
    burn_in: int = 30,
    n_leapfrog: int = 4,
    chains: int = 2,
    k_importance: int = 500,
    init: torch.Tensor | None = None,
    step_size: float = 0.05,
) -> MarginalEstimate:
    """log p(x) per image ``[B]`` two ways, from HMC samples of p(z|x) (Kingma & Welling 2014, App. D).

    1. HMC chains (``init`` ``[chains, B, D]``, default :func:`sir_init`) burn in, then give
       ``n_samples`` draws each; a full-covariance Gaussian q(z) is fitted to them per image.
    2. ``kingma_welling``: ``n_samples`` further draws z_l from the chains, and
       1/p(x) ~= (1/L) sum_l q(z_l) / p(x, z_l) (unbiased for 1/p(x), so its log leans high).
    3. ``importance``: ``k_importance`` draws from the fitted Gaussian, widened by 1.2, and
       log (1/K) sum_k p(x, z_k) / q(z_k) (a stochastic lower bound, as in notebook 03).
    Reliable for small latents (the paper: fewer than 5 dimensions).
    """
    check_positive_int(
        n_samples=n_samples,
        chains=chains,
        k_importance=k_importance,
        n_leapfrog=n_leapfrog,
    )
    check_positive_number(step_size=step_size)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"burn_in must be an int >= 0, got {burn_in!r}")
    check_data("x", x, model)
    check_model_data(model, x)  # 0-255 pixels are no Bernoulli data
    if init is not None:
        check_tensor("init", init, ndim=3, floating=True)
        check_finite("init", init)
    lp = log_joint(model, x)
    z0 = sir_init(model, x, chains=chains) if init is None else init
    first = sample(
        lp, z0, n_samples, step_size, n_leapfrog, burn_in
    )  # (n, chains, B, D)
    second = sample(
        lp, first.state.z, n_samples, first.step_size, n_leapfrog, 0, adapt=False
    )
    d = z0.shape[-1]
    zs = first.samples.flatten(0, 1).transpose(0, 1)  # (B, n * chains, D)
    mean = zs.mean(1)
    cov = torch.einsum("bni,bnj->bij", zs - mean[:, None], zs - mean[:, None]) / (
        zs.shape[1] - 1
    )
    cov = cov + 1e-6 * torch.eye(d, dtype=cov.dtype, device=cov.device)
    q = MultivariateNormal(mean, covariance_matrix=cov)
    z2 = second.samples.flatten(0, 1)  # (n * chains, B, D)
    kw = -torch.logsumexp(q.log_prob(z2) - lp(z2), 0) + math.log(z2.shape[0])
    wide = MultivariateNormal(mean, covariance_matrix=1.44 * cov)
    lw = torch.cat(
        [
            lp(z) - wide.log_prob(z)
            for z in wide.sample((k_importance,)).split(_chunk(x))
        ]
    )  # (K, B)
    imp = torch.logsumexp(lw, 0) - math.log(k_importance)
    return MarginalEstimate(
        kw, imp, (first.accept_rate.mean(0) + second.accept_rate.mean(0)) / 2
    )
