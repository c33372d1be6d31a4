"""The learning algorithms AEVB replaced: wake-sleep, reweighted wake-sleep and Monte Carlo EM,
and the Helmholtz machine they were made for.

A model is anything with ``encode(x) -> q(z|x)``, ``decode(z) -> p(x|z)`` and ``prior -> p(z)``
(as in :mod:`vaekit.objectives`); θ are the parameters of ``decode`` and ``prior``, φ those of
``encode``. Losses are per example, ``[B]`` nats, to minimise.

**Wake-sleep** (Hinton, Dayan, Frey & Neal 1995). Wake: z ~ q(z|x) for a data x, *not*
differentiated through, and θ ascends log p_θ(x, z). Sleep: a dream z ~ p(z), x ~ p_θ(x|z), and
φ ascends log q_φ(z|x). The sleep gradient is an unbiased estimate of
-∇_φ E_{x ~ p_θ(x)} KL(p_θ(z|x) ‖ q_φ(z|x)): the KL the other way round from the ELBO's, averaged
over the model's own x rather than the data. :func:`wake_sleep_loss` returns the sum of both
losses: the wake loss depends on θ only and the sleep loss on φ only, so its gradient *is* the
wake-θ update in θ and the sleep-φ update in φ, and one optimiser over all parameters (Adam
updates each parameter from its own gradient) trains both phases with :func:`vaekit.fit`.

**Reweighted wake-sleep** (Bornschein & Bengio 2015). k draws z_i ~ q(z|x) with normalised
importance weights w̃_i ∝ p(x, z_i)/q(z_i|x) (notebook 07): θ ascends Σ_i w̃_i log p(x, z_i) (the
IWAE's θ-gradient) and, in the wake-φ update, φ ascends Σ_i w̃_i log q(z_i|x), an estimate of
-∇_φ KL(p(z|x) ‖ q(z|x)) at the data x itself.

**Monte Carlo EM**: no encoder. One persistent chain per training image; the E-step moves it by
Hamiltonian Monte Carlo on p_θ(z|x) (:mod:`vaekit.inference.hmc`), the M-step takes gradient steps on
log p_θ(x, z) at the sampled z (Kingma & Welling 2014, Appendix E: 10 leapfrog steps with the step
size tuned to 90 % acceptance, then 5 weight updates).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Independent
from tqdm.auto import tqdm

from . import hmc
from .objectives import check_model_data
from ..distributions import bernoulli
from ..nets import mlp
from ..train import History, TrainState, make_optimizer
from ..utils import (
    check_data,
    check_likelihood_input,
    check_positive_int,
    check_positive_number,
    check_tensor,
    input_checks,
    value_checks_enabled,
)


def wake_theta_loss(model, x: torch.Tensor) -> torch.Tensor:
    """-log p_θ(x, z) ``[B]`` with z ~ q(z|x) drawn without gradient: only θ is trained by it."""
    check_data("x", x, model)
    with torch.no_grad():
        z = model.encode(x).sample()  # (B, D)
    px = model.decode(z)
    return -(px.log_prob(check_likelihood_input(px, x)) + model.prior.log_prob(z))


def dream(model, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples from the model: (x ``[n, ...]``, z ``[n, D]``), z ~ p(z), x ~ p(x|z), no gradient."""
    check_positive_int(n=n)
    with torch.no_grad():
        z = model.prior.sample((n,))
        return model.decode(z).sample(), z


def sleep_phi_loss(model, n: int) -> torch.Tensor:
    """-log q_φ(z|x) ``[n]`` on ``n`` dreams: only φ is trained by it."""
    x, z = dream(model, n)
    return -model.encode(x).log_prob(z)


def wake_sleep_loss(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Wake-θ plus sleep-φ loss, one dream per data image; ``"loss"`` is for :func:`vaekit.fit`."""
    wake, sleep = wake_theta_loss(model, x), sleep_phi_loss(model, x.shape[0])
    return {"loss": wake + sleep, "wake": wake, "sleep": sleep}


def rws_loss(
    model, x: torch.Tensor, k: int = 5, sleep: bool = False
) -> dict[str, torch.Tensor]:
    """Reweighted wake-sleep with k samples: wake-θ and wake-φ (plus sleep-φ if ``sleep``).

    The surrogate -Σ_i w̃_i [log p(x, z_i) + log q(z_i|x)] with the weights and z held fixed
    has gradient -Σ_i w̃_i ∇_θ log p(x, z_i) in θ and -Σ_i w̃_i ∇_φ log q(z_i|x) in φ.
    """
    check_data("x", x, model)
    check_positive_int(k=k)
    q = model.encode(x)
    with torch.no_grad():
        z = q.sample((k,))  # (k, B, D)
    px = model.decode(z)
    log_joint = px.log_prob(check_likelihood_input(px, x)) + model.prior.log_prob(
        z
    )  # (k, B)
    log_q = q.log_prob(z)  # (k, B)
    w = torch.softmax((log_joint - log_q).detach(), 0)  # (k, B) normalised weights
    loss = -(w * (log_joint + log_q)).sum(0)
    out = {"bound": (torch.logsumexp(log_joint - log_q, 0) - math.log(k)).detach()}
    if sleep:
        out["sleep"] = sleep_phi_loss(model, x.shape[0])
        loss = loss + out["sleep"]
    out["loss"] = loss
    return out


@torch.no_grad()
def sampled_log_weights(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x, z_i) - log q(z_i|x) ``[k, B]`` for z_i ~ q(z|x) by ``sample`` (discrete latents too):
    their mean over k is the ELBO, their log-mean-exp L_k (notebook 07)."""
    check_data("x", x, model)
    check_positive_int(k=k)
    q = model.encode(x)
    z = q.sample((k,))  # (k, B, D)
    check_likelihood_input(model.decode(z[:1, :1]), x)
    chunk = max(
        1, 2**20 // max(1, x[0].numel() * x.shape[0])
    )  # decoder outputs per call stay cache-sized
    log_px = torch.cat([model.decode(c).log_prob(x) for c in z.split(chunk)])  # (k, B)
    return log_px + model.prior.log_prob(z) - q.log_prob(z)


def kl_both_ways(
    p, loc: torch.Tensor, scale: torch.Tensor, grid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(q ‖ p) and KL(p ‖ q) for 1-D Gaussians q = N(loc, scale²) against a 1-D density ``p``, by
    the trapezoidal rule on ``grid`` ``[G]`` (wide and fine enough for both); loc and scale broadcast."""
    check_tensor("grid", grid, ndim=1, floating=True)
    lq = torch.distributions.Normal(loc[..., None], scale[..., None]).log_prob(
        grid
    )  # (..., G)
    lp = p.log_prob(grid)  # (G,)
    kl_qp = torch.trapezoid(lq.exp() * (lq - lp), grid)
    kl_pq = torch.trapezoid(lp.exp() * (lp - lq), grid)
    return kl_qp, kl_pq


class HelmholtzMachine(nn.Module):
    """Bernoulli latents and Bernoulli pixels (Dayan, Hinton, Neal & Zemel 1995).

    p(z) = Π_j Bernoulli(sigmoid(a_j)) with learned logits a, p(x|z) and q(z|x) factorised
    Bernoulli with logits from MLPs (``hidden=()`` gives the one-layer sigmoid belief net).
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 64,
        hidden: Sequence[int] = (200,),
        activation: str = "tanh",
    ):
        super().__init__()
        check_positive_int(latent_dim=latent_dim)
        self.x_shape, self.latent_dim = tuple(x_shape), latent_dim
        n = math.prod(self.x_shape)
        self.prior_logits = nn.Parameter(torch.zeros(latent_dim))
        self.generative = mlp([latent_dim, *hidden, n], activation)
        self.recognition = nn.Sequential(
            nn.Flatten(), mlp([n, *hidden, latent_dim], activation)
        )

    @property
    def prior(self) -> Independent:
        return bernoulli(self.prior_logits, 1)

    def encode(self, x: torch.Tensor) -> Independent:
        if tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.x_shape))}], got {tuple(x.shape)}"
            )
        return bernoulli(self.recognition(x), 1)

    def decode(self, z: torch.Tensor) -> Independent:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z must have {self.latent_dim} units in its last axis, got shape {tuple(z.shape)}"
            )
        logits = self.generative(z.reshape(-1, self.latent_dim)).reshape(
            *z.shape[:-1], *self.x_shape
        )
        return bernoulli(logits, len(self.x_shape))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` images: z ~ p(z), then E[x|z] (``mean=True``) or x ~ p(x|z)."""
        px = self.decode(self.prior.sample((n,)))
        return px.mean if mean else px.sample()


class EvaluateAt:
    """A :func:`vaekit.fit` (and :func:`fit_mcem`) callback: ``fn(model)`` -> dict at the given
    steps, kept in ``.records`` with the step and ``cpu_seconds``, the process CPU time since the
    callback was made minus the time spent in ``fn`` (make it just before training). The global
    random state is saved around ``fn``, so evaluating does not change the training run."""

    def __init__(self, steps: Sequence[int], fn: Callable[[nn.Module], dict]):
        self.steps, self.fn, self.records = set(steps), fn, []
        self.start, self.spent = time.process_time(), 0.0

    def on_step(self, state) -> None:
        if state.step in self.steps:
            t0, was_training = time.process_time(), state.model.training
            state.model.eval()
            with torch.random.fork_rng(devices=[]):
                out = self.fn(state.model)
            self.records.append(
                {"step": state.step, "cpu_seconds": t0 - self.start - self.spent, **out}
            )
            state.model.train(was_training)
            self.spent += time.process_time() - t0

    def __getitem__(self, key: str) -> list:
        return [r[key] for r in self.records]


def mcem_m_loss(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The M-step loss -log p_θ(x, z) ``[B]`` at sampled latents z ``[..., B, D]`` (mean over samples)."""
    check_data("x", x, model)
    check_tensor("z", z, floating=True)
    px = model.decode(z)
    lp = px.log_prob(check_likelihood_input(px, x)) + model.prior.log_prob(z)
    return -(lp.mean(0) if lp.dim() > 1 else lp)


class MCEMChains:
    """One persistent HMC chain (and step size) per training image for Monte Carlo EM."""

    def __init__(
        self,
        model,
        n: int,
        step_size: float = 0.05,
        n_leapfrog: int = 10,
        target_accept: float = 0.9,
        adapt_rate: float = 0.3,
    ):
        check_positive_int(n=n, n_leapfrog=n_leapfrog)
        check_positive_number(step_size=step_size)
        with torch.no_grad():
            self.z = model.prior.sample((n,))  # (N, D)
        self.step_size = torch.full(
            (n,), float(step_size), dtype=self.z.dtype, device=self.z.device
        )
        self.n_leapfrog, self.target_accept, self.adapt_rate = (
            n_leapfrog,
            target_accept,
            adapt_rate,
        )
        self.accept = torch.zeros_like(self.step_size)

    def e_step(
        self, model, x: torch.Tensor, idx: torch.Tensor, transitions: int = 1
    ) -> torch.Tensor:
        """Move the chains of images ``idx`` by HMC on p_θ(z|x); adapt their step sizes; return z ``[B, D]``."""
        lp = hmc.log_joint(model, x)
        state, eps = hmc.init_state(lp, self.z[idx]), self.step_size[idx]
        for _ in range(transitions):
            state, a = hmc.hmc_step(lp, state, eps, self.n_leapfrog)
            eps = hmc.adapt_step_size(eps, a, self.target_accept, self.adapt_rate)
        self.z[idx], self.step_size[idx], self.accept[idx] = state.z, eps, a
        return state.z


def fit_mcem(
    model,
    x: torch.Tensor,
    steps: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    m_steps: int = 5,
    n_leapfrog: int = 10,
    transitions: int = 1,
    transform: Callable | None = None,
    callbacks: Sequence = (),
    seed: int = 0,
    progress: bool = True,
    desc: str = "MCEM",
) -> History:
    """Monte Carlo EM on the images ``x`` ``[N, ...]`` for ``steps`` E-steps: each draws a minibatch,
    moves its chains by ``transitions`` HMC transitions of ``n_leapfrog`` leapfrog steps, then
    takes ``m_steps`` Adam steps on -log p_θ(x, z). ``state.step`` (what callbacks see) counts
    E-steps, so ``step * batch_size`` is the number of training images evaluated."""
    check_positive_int(
        steps=steps,
        batch_size=batch_size,
        m_steps=m_steps,
        n_leapfrog=n_leapfrog,
        transitions=transitions,
    )
    check_positive_number(lr=lr)
    device = next(model.parameters()).device
    check_data("x", x)
    x = x.to(device)
    check_data("x", x, model)  # the model's dtype (the device is the model's now)
    if (
        transform is None
    ):  # every image, once (else the first transformed batch is checked)
        check_model_data(model, x)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    chains = MCEMChains(model, x.shape[0], n_leapfrog=n_leapfrog)
    opt = make_optimizer(model.parameters(), "adam", lr)
    state = TrainState(model, opt, history=History())
    batch_size, t0, losses = min(batch_size, x.shape[0]), time.perf_counter(), []
    model.train()
    first = value_checks_enabled()
    for i in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        with input_checks(
            first and i == 0
        ):  # values checked on the first batch, then skipped (a host sync each)
            idx = torch.randperm(x.shape[0], generator=g)[:batch_size].to(device)
            xb = x[idx] if transform is None else transform(x[idx])
            z = chains.e_step(model, xb, idx, transitions)
            for _ in range(m_steps):
                loss = mcem_m_loss(model, xb, z).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            losses.append(loss.detach())
            state.step += 1
            for cb in callbacks:
                if hasattr(cb, "on_step"):
                    cb.on_step(state)
    state.history.records.append(
        {
            "step": state.step,
            "seconds": time.perf_counter() - t0,
            "loss": float(torch.stack(losses).mean()),
            "accept_rate": float(chains.accept.mean()),
        }
    )
    model.eval()
    return state.history
