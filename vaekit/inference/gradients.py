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

import math
from typing import Callable, NamedTuple

import torch
from torch import nn

from ..distributions import diag_gaussian
from .objectives import elbo
from ..train import fit
from ..utils import check_positive_int


def score_function_surrogate(
    f: torch.Tensor, log_prob: torch.Tensor, baseline=None
) -> torch.Tensor:
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
        raise ValueError(
            f"f and log_prob must have the same shape [S, ...], got {tuple(f.shape)} and {tuple(log_prob.shape)}"
        )
    fd = f.detach()
    if baseline is None:
        b = 0.0
    elif isinstance(baseline, str):
        if baseline != "loo":
            raise ValueError(
                f"baseline must be None, a number, a tensor or 'loo', got {baseline!r}"
            )
        s = fd.shape[0]
        if s < 2:
            raise ValueError(
                "baseline='loo' (leave-one-out) needs at least 2 samples along dim 0"
            )
        b = (fd.sum(0, keepdim=True) - fd) / (s - 1)  # (S, ...) mean of the others
    else:
        b = torch.as_tensor(baseline, dtype=fd.dtype, device=fd.device).detach()
    # log_prob - log_prob.detach() is zero in value and grad log q in gradient
    return f + (fd - b) * (log_prob - log_prob.detach())


def score_function_estimate(
    fn: Callable[[torch.Tensor], torch.Tensor], q, n: int, baseline=None
) -> torch.Tensor:
    """The ``n``-sample REINFORCE surrogate of E_q[fn(z)]: z ~ q without gradient, ``[*batch]``."""
    check_positive_int(n=n)
    z = q.sample((n,))  # (n, *batch, *event), no path to q's parameters
    return score_function_surrogate(fn(z), q.log_prob(z), baseline).mean(0)


def pathwise_estimate(
    fn: Callable[[torch.Tensor], torch.Tensor], q, n: int
) -> torch.Tensor:
    """The ``n``-sample reparameterized estimate of E_q[fn(z)]: z = q.rsample(), ``[*batch]``."""
    check_positive_int(n=n)
    if not q.has_rsample:
        raise TypeError(
            f"{type(q).__name__} has no rsample: the pathwise estimator needs a reparameterizable q "
            "(use the score function estimator for discrete latents)"
        )
    return fn(q.rsample((n,))).mean(0)


def score_function_elbo(
    model, x: torch.Tensor, q, k: int = 1, baseline=None
) -> torch.Tensor:
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


def estimate(
    fn: Callable[[torch.Tensor], torch.Tensor],
    q,
    n: int,
    method: str = "pathwise",
    baseline=None,
) -> torch.Tensor:
    """The ``n``-sample surrogate of E_q[fn(z)] by ``method``: ``"pathwise"`` (reparameterized,
    :func:`pathwise_estimate`) or ``"score"`` (REINFORCE, :func:`score_function_estimate` with
    ``baseline``: None, a value, or ``"loo"``). ``[*batch]``."""
    if method == "pathwise":
        if baseline is not None:
            raise ValueError("baseline applies to method='score' only")
        return pathwise_estimate(fn, q, n)
    if method == "score":
        return score_function_estimate(fn, q, n, baseline)
    raise ValueError(f"method must be 'pathwise' or 'score', got {method!r}")


def elbo_estimate(
    model,
    x: torch.Tensor,
    q,
    k: int = 1,
    method: str = "pathwise",
    analytic_kl: bool = True,
    baseline=None,
) -> torch.Tensor:
    """The ``k``-sample ELBO per example ``[B]`` with the gradient for q's parameters chosen by ``method``:
    ``"pathwise"`` is :func:`vaekit.objectives.elbo` (``analytic_kl=True``: Kingma & Welling's SGVB
    estimator B, ``False``: A); ``"score"`` is :func:`score_function_elbo` with ``baseline``."""
    if method == "pathwise":
        if baseline is not None:
            raise ValueError("baseline applies to method='score' only")
        return elbo(model, x, k, analytic_kl=analytic_kl, q=q)
    if method == "score":
        return score_function_elbo(model, x, q, k, baseline)
    raise ValueError(f"method must be 'pathwise' or 'score', got {method!r}")


def gaussian_from_params(theta: torch.Tensor):
    """The diagonal Gaussian with parameters ``theta [..., 2d]`` = (mean, log standard deviation):
    batch ``[...]``, event ``[d]`` -- the variational parameters as one flat vector."""
    if theta.dim() < 1 or theta.shape[-1] % 2:
        raise ValueError(
            f"theta must be [..., 2d] (means, then log standard deviations), got shape {tuple(theta.shape)}"
        )
    d = theta.shape[-1] // 2
    return diag_gaussian(theta[..., :d], theta[..., d:].exp())


def gradient_estimates(
    estimate: Callable[[torch.Tensor], torch.Tensor], param: torch.Tensor, repeats: int
) -> torch.Tensor:
    """``repeats`` independent gradient estimates at ``param``, shape ``[repeats, *param.shape]``.

    ``estimate(theta)`` receives ``repeats`` copies of ``param`` stacked as ``[repeats, *param.shape]``
    and must return ``[repeats]`` values, the r-th an estimate that depends only on ``theta[r]`` and
    its own random draws. One backward pass then gives every copy's gradient.
    """
    check_positive_int(repeats=repeats)
    theta = (
        param.detach()
        .unsqueeze(0)
        .repeat(repeats, *([1] * param.dim()))
        .requires_grad_(True)
    )
    out = estimate(theta)
    if out.shape != (repeats,):
        raise ValueError(
            f"estimate(theta) must return one value per repeat, shape [{repeats}], got {tuple(out.shape)}"
        )
    (grad,) = torch.autograd.grad(out.sum(), theta)
    return grad  # (repeats, *param.shape)


class EstimatorStats(NamedTuple):
    mean: torch.Tensor  # (*shape) average of the estimates
    variance: (
        float  # total variance: sum over coordinates of each coordinate's variance
    )
    std_error: torch.Tensor  # (*shape) standard error of the mean, per coordinate
    z_scores: (
        torch.Tensor | None
    )  # (*shape) (mean - exact) / std_error, when exact is given


def estimator_stats(
    estimates: torch.Tensor, exact: torch.Tensor | None = None
) -> EstimatorStats:
    """Mean, total variance and standard error of ``[R, ...]`` independent estimates.

    With ``exact``, z-scores of the mean against it: for an unbiased estimator they are
    approximately standard normal, so ``|z| < 4`` everywhere is the test of unbiasedness.
    """
    if estimates.dim() < 1 or estimates.shape[0] < 2:
        raise ValueError(
            f"estimates must be [R, ...] with R >= 2 repeats, got shape {tuple(estimates.shape)}"
        )
    est = estimates.detach().double()
    mean = est.mean(0)
    var = est.var(0)  # (*shape), unbiased over repeats
    se = (var / est.shape[0]).sqrt()
    z = None
    if exact is not None:
        z = (
            mean - torch.as_tensor(exact, dtype=est.dtype, device=est.device)
        ) / se.clamp_min(1e-300)
    return EstimatorStats(mean, float(var.sum()), se, z)


class ParameterTrace:
    """A :func:`vaekit.train.fit` callback that keeps a copy of ``param`` after every step.

    ``trace.values`` is ``[steps + 1, *param.shape]`` (the starting value first).
    """

    def __init__(self, param: torch.Tensor):
        self.param = param
        self._values = [
            param.detach().clone()
        ]  # kept on the device: no host sync per step

    def on_step(self, state) -> None:
        self._values.append(self.param.detach().clone())

    @property
    def values(self) -> torch.Tensor:
        """On the CPU."""
        return torch.stack(self._values).cpu()


def iwae_gradient_parts(
    model: nn.Module, x: torch.Tensor, k: int
) -> tuple[torch.Tensor, ...]:
    """The IWAE gradient taken apart, for one example ``x`` ``[1, ...]``: k draws z_i ~ q (from the
    current random state) and the gradients g_i of log w_i = log p(x, z_i) - log q(z_i|x) over all
    of the model's parameters, flattened. Returns ``(w [k], autograd [P], weighted [P], uniform
    [P])``: the normalised weights; autograd's gradient of L_k = logsumexp(log w) - log k on these
    draws; sum_i w_i g_i (Burda et al. 2016, eq. 14, which autograd should equal); and the plain
    mean of the g_i (the gradient of the mean of k single-sample ELBOs, the VAE's)."""
    from .objectives import log_weights

    check_positive_int(k=k)
    if x.shape[0] != 1:
        raise ValueError(
            f"x must hold one example, shape [1, ...], got shape {list(x.shape)}"
        )
    params = list(model.parameters())
    flat = lambda grads: torch.cat([g.reshape(-1) for g in grads])
    lw = log_weights(model, x, k)[:, 0]  # (k,)
    auto = flat(
        torch.autograd.grad(
            torch.logsumexp(lw, 0) - math.log(k), params, retain_graph=True
        )
    )
    w = torch.softmax(lw.detach(), 0)  # (k,)
    each = [
        flat(torch.autograd.grad(lw[i], params, retain_graph=True)) for i in range(k)
    ]
    return (
        w,
        auto,
        sum(w[i] * each[i] for i in range(k)),
        sum(each[i] for i in range(k)) / k,
    )


__all__ = [
    "iwae_gradient_parts",
    "score_function_surrogate",
    "score_function_estimate",
    "pathwise_estimate",
    "score_function_elbo",
    "estimate",
    "elbo_estimate",
    "gaussian_from_params",
    "loglog_slope",
    "descend",
    "compare_estimators",
    "gradient_estimates",
    "EstimatorStats",
    "estimator_stats",
    "ParameterTrace",
]


def loglog_slope(values: dict) -> float:
    """Least-squares slope of log y against log x for ``{x: y}`` (positive both): -1 for y proportional to 1/x."""
    if len(values) < 2 or any(not (k > 0 and v > 0) for k, v in values.items()):
        raise ValueError(
            f"values must map at least two positive x to positive y, got {values!r}"
        )
    lx = torch.tensor([math.log(k) for k in values], dtype=torch.float64)
    ly = torch.tensor([math.log(v) for v in values.values()], dtype=torch.float64)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / lx.pow(2).sum())


def descend(
    loss: Callable[[torch.Tensor], torch.Tensor],
    theta0: torch.Tensor,
    steps: int,
    lr: float,
    optimizer: str = "adam",
    seed: int = 0,
) -> torch.Tensor:
    """Minimise a stochastic ``loss(theta)`` (e.g. minus an estimator's surrogate) by ``steps`` steps of
    ``optimizer`` (``"adam"`` or ``"sgd"``) from ``theta0``, with :func:`vaekit.train.fit` on a dummy
    one-example dataset (all the randomness is in the loss). Returns every iterate, ``[steps + 1, *theta0.shape]``
    on the CPU, ``theta0`` first."""
    params = nn.ParameterDict({"theta": nn.Parameter(theta0.detach().clone())})
    trace = ParameterTrace(params["theta"])
    fit(
        params,
        lambda m, _: loss(m["theta"]),
        torch.zeros(1, 1, device=theta0.device),
        steps=steps,
        batch_size=1,
        optimizer=optimizer,
        lr=lr,
        device=theta0.device,
        seed=seed,
        callbacks=[trace],
        progress=False,
    )
    return trace.values


def compare_estimators(
    estimators: dict,
    param: torch.Tensor,
    sizes,
    repeats: int,
    exact: torch.Tensor | None = None,
    min_size: int = 1,
    needs_two=lambda name: False,
) -> dict:
    """:func:`estimator_stats` of ``repeats`` gradient estimates at ``param`` for every estimator and sample size:
    ``{name: {n: EstimatorStats}}``. ``estimators`` maps a display name to ``estimate(theta, n)``, the
    ``n``-sample surrogate for ``repeats`` stacked copies of ``param`` (see :func:`gradient_estimates`);
    sizes below ``min_size``, or below 2 where ``needs_two(name)`` (a leave-one-out baseline), are skipped."""
    out = {}
    for name, estimate in estimators.items():
        out[name] = {}
        for n in sizes:
            if n < min_size or (n < 2 and needs_two(name)):
                continue
            grads = gradient_estimates(lambda theta: estimate(theta, n), param, repeats)
            out[name][n] = estimator_stats(grads, exact)
    return out
