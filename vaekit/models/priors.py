"""Priors richer than N(0, I) for a VAE: a learned mixture of Gaussians and the VampPrior.

A prior is an ``nn.Module`` whose ``forward()`` returns a ``torch.distributions`` object over the
latent ``[D]`` (as :class:`vaekit.distributions.StandardNormal` does); :class:`vaekit.VAE` reads
it through ``model.prior`` (``model.prior_net()``), so swapping one in is an assignment::

    model = vaekit.VAE.mlp(latent_dim=2)
    model.prior_net = priors.VampPrior(model.encoder, n_pseudo=100)

The objectives then use a sampled KL (no closed form is registered for a mixture), and
:func:`vaekit.metrics.log_likelihood`, ``model.sample`` and :mod:`vaekit.evaluation.information` work
unchanged. Both priors are ``MixtureSameFamily`` of diagonal Gaussians, with exact ``log_prob``.

* :class:`MixturePrior`: K components with learned weights, means and scales.
* :class:`VampPrior` (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z|u_k), the encoder's own
  posteriors at K learned pseudo-inputs u_k = sigmoid(logits_k) in [0, 1]. The prior holds the
  model's encoder (shared, not copied: ``model.parameters()`` lists each weight once).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ..distributions import StandardNormal
from ..utils import check_positive_int, check_tensor

PRIORS = ("standard", "mog", "vamp")


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(mu_k, diag sigma_k^2) over ``dim`` latents with ``components`` learned
    components. Means start spread as N(0, ``spread``^2) draws (from ``seed``), scales at ``scale``,
    weights equal."""

    def __init__(
        self,
        dim: int,
        components: int = 10,
        spread: float = 1.0,
        scale: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        check_positive_int(dim=dim, components=components)
        for name, v in (("spread", spread), ("scale", scale)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(
                    f"{name} must be a number, got {type(v).__name__} {v!r}"
                )
        if not spread >= 0 or not scale > 0:
            raise ValueError(
                f"spread must be >= 0 and scale > 0, got spread={spread!r}, scale={scale!r}"
            )
        g = torch.Generator().manual_seed(seed)
        self.loc = nn.Parameter(
            spread * torch.randn(components, dim, generator=g)
        )  # (K, D)
        self.log_scale = nn.Parameter(
            torch.full((components, dim), math.log(scale))
        )  # (K, D)
        self.logits = nn.Parameter(torch.zeros(components))  # (K,)

    def forward(self) -> MixtureSameFamily:
        comp = Independent(
            Normal(self.loc, self.log_scale.exp(), validate_args=False),
            1,
            validate_args=False,
        )
        return MixtureSameFamily(
            Categorical(logits=self.logits, validate_args=False),
            comp,
            validate_args=False,
        )


class VampPrior(nn.Module):
    """The VampPrior p(z) = (1/K) sum_k q(z|u_k) with K = ``n_pseudo`` learned pseudo-inputs.

    encoder: the VAE's encoder (x ``[B, *x_shape]`` -> a diagonal Gaussian over ``[D]``), shared.
    x_shape: the shape of one input; default the encoder's ``x_shape``.
    init: starting pseudo-inputs ``[K, *x_shape]`` in [0, 1] (e.g. K training digits, clamped to
        [0.01, 0.99] before the logit); default: all pixels at ``init_value``.
    The pseudo-inputs are sigmoid(logits), so they stay images in [0, 1] while being learned.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_pseudo: int = 100,
        x_shape: Sequence[int] | None = None,
        init: torch.Tensor | None = None,
        init_value: float = 0.1,
    ):
        super().__init__()
        check_positive_int(n_pseudo=n_pseudo)
        if x_shape is None:
            x_shape = getattr(encoder, "x_shape", None)
            if x_shape is None:
                raise ValueError(
                    "x_shape must be given when the encoder has no x_shape attribute"
                )
        x_shape = tuple(int(s) for s in x_shape)
        enc_shape = getattr(encoder, "x_shape", None)
        if enc_shape is not None and tuple(enc_shape) != x_shape:
            raise ValueError(
                f"x_shape {list(x_shape)} does not match the encoder's x_shape {list(enc_shape)}"
            )
        if init is None:
            if not 0 < init_value < 1:
                raise ValueError(f"init_value must lie in (0, 1), got {init_value!r}")
            init = torch.full((n_pseudo, *x_shape), float(init_value))
        check_tensor("init", init, floating=True, min_value=0.0, max_value=1.0)
        if tuple(init.shape) != (n_pseudo, *x_shape):
            raise ValueError(
                f"init must have shape [n_pseudo, *x_shape] = {[n_pseudo, *x_shape]}, got {list(init.shape)}"
            )
        self.encoder, self.x_shape = encoder, x_shape
        ref = next(
            (p for p in encoder.parameters() if p.is_floating_point()), None
        )  # the encoder's device and dtype
        self.pseudo_logits = nn.Parameter(
            torch.logit(init.detach().clamp(0.01, 0.99)).to(
                dtype=_param_dtype(encoder),
                device=init.device if ref is None else ref.device,
            )
        )

    @property
    def n_pseudo(self) -> int:
        return self.pseudo_logits.shape[0]

    def pseudo_inputs(self) -> torch.Tensor:
        """The pseudo-inputs u_k ``[K, *x_shape]`` in [0, 1]."""
        return torch.sigmoid(self.pseudo_logits)

    def forward(self) -> MixtureSameFamily:
        q = self.encoder(self.pseudo_inputs())  # batch (K,), event (D,)
        k = self.n_pseudo
        weights = Categorical(
            logits=torch.zeros(
                k, device=self.pseudo_logits.device, dtype=self.pseudo_logits.dtype
            ),
            validate_args=False,
        )
        return MixtureSameFamily(weights, q, validate_args=False)


def _param_dtype(module: nn.Module) -> torch.dtype:
    ref = next((p for p in module.parameters() if p.is_floating_point()), None)
    return torch.get_default_dtype() if ref is None else ref.dtype


def make_prior(
    name: str,
    model,
    components: int = 10,
    n_pseudo: int = 100,
    init: torch.Tensor | None = None,
    seed: int = 0,
) -> nn.Module:
    """The prior ``name`` for ``model`` (a :class:`vaekit.VAE`): ``"standard"`` N(0, I), ``"mog"`` a
    :class:`MixturePrior` with ``components``, ``"vamp"`` a :class:`VampPrior` on the model's encoder
    with ``n_pseudo`` pseudo-inputs (started at ``init`` if given). On the model's device and dtype."""
    if name not in PRIORS:
        raise ValueError(f"name must be one of {PRIORS}, got {name!r}")
    ref = next(model.parameters())
    if name == "standard":
        prior = StandardNormal(model.latent_dim)
    elif name == "mog":
        prior = MixturePrior(model.latent_dim, components, seed=seed)
    else:
        prior = VampPrior(
            model.encoder,
            n_pseudo,
            model.x_shape,
            init=None if init is None else init.to(ref.dtype),
        )
    return prior.to(device=ref.device, dtype=ref.dtype)
