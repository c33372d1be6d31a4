"""Gradient estimators for expectations E_{q_phi(z)}[f(z)], and tools to measure them.

Two unbiased estimators of the gradient with respect to the parameters phi of q:

* score function (likelihood ratio, REINFORCE): E_q[(f(z) - b) grad log q(z)] + E_q[grad f(z)],
  for any q that can be sampled and scored, discrete included; ``b`` is a baseline (control variate).
* pathwise (reparameterization): z = g(eps, phi) with eps independent of phi, so the gradient is
  E_eps[grad f(g(eps, phi))]; needs ``rsample`` and an f that is differentiable in z.

Each is written as a *surrogate*: a tensor whose value is the Monte Carlo estimate of E_q[f] and
whose autograd gradient is the estimator. :func:`gradient_estimates` draws many independent
estimates at once (one backward pass), and :func:`estimator_stats` summarises them.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .utils import check_positive_int


def score_function_surrogate(f: torch.Tensor, log_prob: torch.Tensor, baseline=None) -> torch.Tensor:
    """Per-sample REINFORCE surrogate, same shape as ``f`` (``[S, ...]``, samples along dim 0).

    f: f(z_s) at samples z_s drawn *without* reparameterization (``q.sample``); any direct
        dependence of f on the parameters keeps its ordinary gradient.
    log_prob: log q(z_s) with gradient to q's parameters (the samples themselves detached).
    baseline: ``None`` (none), a number or tensor broadcastable to ``f`` (must not depend on
        z_s), or ``"loo"``: for each sample the mean of f over the *other* S - 1 samples, which
        keeps the estimator unbiased (needs S >= 2).

    The value equals ``f``; the gradient is grad f + (f - b) grad log q. Average over dim 0 for
    the S-sample estimate.
    """
    if f.shape != log_prob.shape:
        raise ValueError(f"f and log_prob must have the same shape [S, ...], got {tuple(f.shape)} and {tuple(log_prob.shape)}")
    fd = f.detach()
    if baseline is None:
        b = 0.0
    elif isinstance(baseline, str):
        if baseline != "loo":
            raise ValueError(f"baseline must be None, a number, a tensor or 'loo', got {baseline!r}")
        s = fd.shape[0]
        if s < 2:
            raise ValueError("baseline='loo' (leave-one-out) needs at least 2 samples along dim 0")
        b = (fd.sum(0, keepdim=True) - fd) / (s - 1)  # (S, ...) mean of the others
    else:
        b = torch.as_tensor(baseline, dtype=fd.dtype, device=fd.device).detach()
    # log_prob - log_prob.detach() is zero in value and grad log q in gradient
    return f + (fd - b) * (log_prob - log_prob.detach())


def score_function_estimate(fn: Callable[[torch.Tensor], torch.Tensor], q, n: int, baseline=None) -> torch.Tensor:
    """The ``n``-sample REINFORCE surrogate of E_q[fn(z)]: z ~ q without gradient, ``[*batch]``."""
    check_positive_int(n=n)
    z = q.sample((n,))  # (n, *batch, *event), no path to q's parameters
    return score_function_surrogate(fn(z), q.log_prob(z), baseline).mean(0)


def pathwise_estimate(fn: Callable[[torch.Tensor], torch.Tensor], q, n: int) -> torch.Tensor:
    """The ``n``-sample reparameterized estimate of E_q[fn(z)]: z = q.rsample(), ``[*batch]``."""
    check_positive_int(n=n)
    if not q.has_rsample:
        raise TypeError(f"{type(q).__name__} has no rsample: the pathwise estimator needs a reparameterizable q "
                        "(use the score function estimator for discrete latents)")
    return fn(q.rsample((n,))).mean(0)


def score_function_elbo(model, x: torch.Tensor, q, k: int = 1, baseline=None) -> torch.Tensor:
    """The ELBO E_q[log p(x, z) - log q(z)] per example ``[B]`` with a REINFORCE gradient for q.

    Same value as ``vaekit.objectives.elbo(model, x, k, analytic_kl=False, q=q)`` would estimate;
    only the gradient with respect to q's parameters differs (score function instead of pathwise).
    Gradients for the model's parameters are the usual ones through log p(x, z).
    """
    check_positive_int(k=k)
    z = q.sample((k,))  # (k, B, d)
    log_q = q.log_prob(z)  # (k, B)
    f = model.decode(z).log_prob(x) + model.prior.log_prob(z) - log_q
    return score_function_surrogate(f, log_q, baseline).mean(0)


def gradient_estimates(estimate: Callable[[torch.Tensor], torch.Tensor], param: torch.Tensor, repeats: int) -> torch.Tensor:
    """``repeats`` independent gradient estimates at ``param``, shape ``[repeats, *param.shape]``.

    ``estimate(theta)`` receives ``repeats`` copies of ``param`` stacked as ``[repeats, *param.shape]``
    and must return ``[repeats]`` values, the r-th an estimate that depends only on ``theta[r]`` and
    its own random draws. One backward pass then gives every copy's gradient.
    """
    check_positive_int(repeats=repeats)
    theta = param.detach().unsqueeze(0).repeat(repeats, *([1] * param.dim())).requires_grad_(True)
    out = estimate(theta)
    if out.shape != (repeats,):
        raise ValueError(f"estimate(theta) must return one value per repeat, shape [{repeats}], got {tuple(out.shape)}")
    (grad,) = torch.autograd.grad(out.sum(), theta)
    return grad  # (repeats, *param.shape)


class EstimatorStats(NamedTuple):
    mean: torch.Tensor  # (*shape) average of the estimates
    variance: float  # total variance: sum over coordinates of each coordinate's variance
    std_error: torch.Tensor  # (*shape) standard error of the mean, per coordinate
    z_scores: torch.Tensor | None  # (*shape) (mean - exact) / std_error, when exact is given


def estimator_stats(estimates: torch.Tensor, exact: torch.Tensor | None = None) -> EstimatorStats:
    """Mean, total variance and standard error of ``[R, ...]`` independent estimates.

    With ``exact``, z-scores of the mean against it: for an unbiased estimator they are
    approximately standard normal, so ``|z| < 4`` everywhere is the test of unbiasedness.
    """
    if estimates.dim() < 1 or estimates.shape[0] < 2:
        raise ValueError(f"estimates must be [R, ...] with R >= 2 repeats, got shape {tuple(estimates.shape)}")
    est = estimates.detach().double()
    mean = est.mean(0)
    var = est.var(0)  # (*shape), unbiased over repeats
    se = (var / est.shape[0]).sqrt()
    z = None
    if exact is not None:
        z = (mean - torch.as_tensor(exact, dtype=est.dtype, device=est.device)) / se.clamp_min(1e-300)
    return EstimatorStats(mean, float(var.sum()), se, z)


class ParameterTrace:
    """A :func:`vaekit.train.fit` callback that keeps a copy of ``param`` after every step.

    ``trace.values`` is ``[steps + 1, *param.shape]`` (the starting value first).
    """

    def __init__(self, param: torch.Tensor):
        self.param = param
        self._values = [param.detach().clone()]  # kept on the device: no host sync per step

    def on_step(self, state) -> None:
        self._values.append(self.param.detach().clone())

    @property
    def values(self) -> torch.Tensor:
        """On the CPU."""
        return torch.stack(self._values).cpu()


__all__ = ["score_function_surrogate", "score_function_estimate", "pathwise_estimate", "score_function_elbo",
           "gradient_estimates", "EstimatorStats", "estimator_stats", "ParameterTrace"]
