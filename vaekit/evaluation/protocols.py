"""Training protocols for comparing the VAE and the IWAE at equal k (Burda et al. 2016, Table 1).

``PROTOCOLS["paper"]`` is Burda et al.'s Section 5 for MNIST with one stochastic layer:
784-200-200-50 encoder and decoder with tanh units, Bernoulli pixels, dynamically binarized
digits, minibatches of 20, Adam with beta1 = 0.9, beta2 = 0.999, eps = 1e-4, passes i = 0, ..., 7
of 3^i epochs at learning rate 0.001 * 10^(-i/7) (3,280 epochs, 3,280 * 3,000 = 9.84 million
updates on 60,000 digits from random weights), then the test NLL with k = 5000 on all 10,000
test digits. ``PROTOCOLS["fast"]`` is notebook 07's, minutes on one CPU core: 784-400-50 with
ReLU units, minibatches of 100; a shared start, a VAE (k = 1) trained for 2,500 steps at learning
rate 3e-3; then 600 steps of each model on its own objective, the learning rate decaying from
1e-3 to 1e-4; bfloat16 matrix products; 500 training digits held out for validation; the test
NLL on the first 1,000 test digits.
"""

from __future__ import annotations

import copy

import torch

from ..schedules import ExponentialLR, StepwiseLR

PROTOCOLS = {
    "paper": {
        "hidden": (200, 200),
        "latent_dim": 50,
        "activation": "tanh",
        "batch_size": 20,
        "pretrain_steps": 0,
        "pretrain_lr": None,
        "schedule": "burda",
        "lr": 1e-3,
        "adam_eps": 1e-4,
        "final_lr": None,
        "steps": 3280 * 3000,
        "autocast": False,
        "n_valid": 0,
        "n_test": None,
    },
    "fast": {
        "hidden": (400,),
        "latent_dim": 50,
        "activation": "relu",
        "batch_size": 100,
        "pretrain_steps": 2500,
        "pretrain_lr": 3e-3,
        "schedule": "exponential",
        "lr": 1e-3,
        "final_lr": 1e-4,
        "adam_eps": 1e-8,
        "steps": 600,
        "autocast": True,
        "n_valid": 500,
        "n_test": 1000,
    },
}


def protocol(name: str, **overrides) -> dict:
    """A copy of ``PROTOCOLS[name]`` with every override that is not None put in place (e.g.
    ``steps=100``); an override must name one of the protocol's settings."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    cfg = copy.deepcopy(PROTOCOLS[name])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(
            f"overrides {unknown} are not settings of the {name!r} protocol; it has {sorted(cfg)}"
        )
    cfg.update({key: v for key, v in overrides.items() if v is not None})
    if cfg["pretrain_steps"] > 0 and cfg["pretrain_lr"] is None:
        raise ValueError(
            f"pretrain_steps = {cfg['pretrain_steps']} needs a pretrain_lr (the {name!r} protocol has none)"
        )
    return cfg


def build_model(cfg: dict, seed: int | None = None):
    """The protocol's VAE (hidden layers, activation, latent size), built after
    ``torch.manual_seed(seed)`` when a seed is given (the same initial weights every time)."""
    from ..models.vae import VAE

    if seed is not None:
        torch.manual_seed(seed)
    return VAE.mlp(
        latent_dim=cfg["latent_dim"], hidden=cfg["hidden"], activation=cfg["activation"]
    )


def lr_schedule(cfg: dict, steps: int):
    """The protocol's learning-rate schedule over ``steps`` optimiser steps (a fit callback):
    Burda et al.'s eight stepwise passes, or an exponential decay from ``lr`` to ``final_lr``."""
    if cfg["schedule"] == "burda":
        return StepwiseLR.burda(steps, cfg["lr"])
    if cfg["schedule"] == "exponential":
        return ExponentialLR(cfg["lr"], cfg["final_lr"], steps)
    raise ValueError(
        f"cfg['schedule'] must be 'burda' or 'exponential', got {cfg['schedule']!r}"
    )


def optimizer(cfg: dict, model: torch.nn.Module, schedule) -> torch.optim.Adam:
    """Adam with the protocol's betas (0.9, 0.999) and epsilon, at the schedule's first rate."""
    return torch.optim.Adam(
        model.parameters(),
        lr=schedule.lr_at(0),
        betas=(0.9, 0.999),
        eps=cfg["adam_eps"],
    )


__all__ = ["PROTOCOLS", "protocol", "build_model", "lr_schedule", "optimizer"]
