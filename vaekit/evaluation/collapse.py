"""Posterior collapse, measured: the recipes that let an autoregressive decoder (or a plain MLP
decoder, for comparison) keep its latent code, how one is trained, and what is measured on it.

:data:`RECIPES` names decoder knobs (``context``, ``dropout`` of
:class:`vaekit.models.autoregressive.AutoregressiveDecoder`) and training knobs (free bits, KL warm-up);
:func:`train_run` trains one recipe at beta = 1, :func:`evaluate_run` reports its KL, active units,
ELBO, importance-sampled NLL and I_q(x; z).
"""

from __future__ import annotations

import math

import torch

from .. import data as _data
from ..device import default_device
from ..inference.objectives import KLWarmup, elbo
from ..models.autoregressive import autoregressive_vae
from ..models.vae import VAE
from ..schedules import EveryStep
from ..train import fit, make_optimizer
from ..utils import check_positive_int, check_tensor
from . import information as _information
from . import metrics as _metrics


# The recipes of the collapse table: decoder knobs and training knobs (values chosen on validation digits).
RECIPES: dict[str, dict] = {
    "MLP decoder": dict(decoder="mlp"),
    "autoregressive": dict(),
    "free bits": dict(free_bits=0.25),
    "KL warm-up": dict(warmup=0.5),
    "short context": dict(context=28),
}


def train_run(
    x_train: torch.Tensor,
    *,
    decoder: str = "autoregressive",
    context: int | None = None,
    dropout: float = 0.0,
    free_bits: float = 0.0,
    warmup: float = 0.0,
    steps: int = 1000,
    batch_size: int = 100,
    lr: float = 3e-3,
    latent_dim: int = 20,
    hidden: int = 400,
    seed: int = 0,
    device=None,
    progress: bool = True,
    desc: str | None = None,
):
    """Train one VAE at beta = 1 on intensities ``x_train`` ``[N, 1, 28, 28]`` (dynamically binarized);
    returns ``(model, history)`` with the model in ``eval()`` mode.

    decoder: ``"autoregressive"`` (:func:`autoregressive_vae`, ``hidden`` units everywhere) or ``"mlp"``
    (:meth:`vaekit.VAE.mlp`, the plain factorized decoder, for comparison). context, dropout: the
    autoregressive decoder's knobs (:class:`AutoregressiveDecoder`). free_bits: nats per latent
    dimension (``vaekit.elbo``'s free bits). warmup: the fraction of ``steps`` over which beta rises
    linearly from 0 to 1 (:class:`vaekit.objectives.KLWarmup`); 0: none. Adam's learning rate falls
    from ``lr`` along a cosine to 5% of it. Budgets are in optimizer steps, so any data size costs the same.
    """
    if decoder not in ("autoregressive", "mlp"):
        raise ValueError(f"decoder must be 'autoregressive' or 'mlp', got {decoder!r}")
    if decoder == "mlp" and (context is not None or dropout):
        raise ValueError(
            "context and dropout are knobs of the autoregressive decoder; decoder='mlp' has neither"
        )
    if (
        isinstance(warmup, bool)
        or not isinstance(warmup, (int, float))
        or not 0 <= warmup < 1
    ):
        raise ValueError(
            f"warmup must be a fraction of the steps in [0, 1), got {warmup!r}"
        )
    if (
        isinstance(free_bits, bool)
        or not isinstance(free_bits, (int, float))
        or not free_bits >= 0
    ):
        raise ValueError(
            f"free_bits must be >= 0 (nats per latent dimension), got {free_bits!r}"
        )
    check_positive_int(steps=steps, hidden=hidden, latent_dim=latent_dim)
    check_tensor("x_train", x_train, floating=True, nonempty=True)
    torch.manual_seed(seed)
    if decoder == "mlp":
        model = VAE.mlp(tuple(x_train.shape[1:]), latent_dim, (hidden,))
    else:
        model = autoregressive_vae(
            latent_dim,
            hidden,
            tuple(x_train.shape[1:]),
            hidden=hidden,
            z_hidden=hidden,
            context=context,
            dropout=dropout,
        )
    callbacks = []
    if warmup > 0:
        warm = KLWarmup(steps=max(1, int(warmup * steps)))
        callbacks.append(warm)
        objective = lambda m, x: -elbo(m, x, beta=warm.beta, free_bits=free_bits)  # noqa: E731
    else:
        objective = lambda m, x: -elbo(m, x, free_bits=free_bits)  # noqa: E731
    device = default_device() if device is None else torch.device(device)
    model.to(
        device
    )  # before the optimizer, which picks its implementation for the device
    optimizer = make_optimizer(model.parameters(), "adam", lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, steps, eta_min=0.05 * lr
    )
    callbacks.append(EveryStep(cosine))
    history = fit(
        model,
        objective,
        x_train,
        steps=steps,
        batch_size=batch_size,
        optimizer=optimizer,
        device=device,
        seed=seed,
        transform=_data.binarize,
        callbacks=callbacks,
        progress=progress,
        desc=desc or "training",
    )
    return model.eval(), history


@torch.no_grad()
def evaluate_run(model, x_test: torch.Tensor, k: int = 50, seed: int = 0) -> dict:
    """What the recipe table shows, on binary test digits ``x_test``: the KL (nats, mean over digits),
    ``active`` units (of ``latent_dim``), the ELBO, the importance-sampled ``nll`` with ``k`` samples
    (mean, and ``nll_digits`` per digit for paired comparisons) and I_q(x; z) (``mi``, ``mi_se``, by
    :func:`vaekit.information.latent_information` with x uniform over ``x_test``: at most log N)."""
    was_training = model.training
    model.eval()
    try:
        x_test = x_test.to(model.device)
        torch.manual_seed(seed)
        ev = _metrics.evaluate_elbo(model, x_test)
        nll_digits = -_metrics.log_likelihood(model, x_test, k=k, progress=False)
        active, _ = _metrics.active_units(model, x_test)
        info = _information.latent_information(model, x_test)
    finally:
        model.train(was_training)
    return dict(
        kl=ev["kl"],
        elbo=ev["elbo"],
        active=active,
        nll=float(nll_digits.mean()),
        nll_se=float(nll_digits.std() / math.sqrt(len(nll_digits))),
        nll_digits=nll_digits.cpu(),
        mi=info.mutual_information,
        mi_se=info.mutual_information_se,
    )
