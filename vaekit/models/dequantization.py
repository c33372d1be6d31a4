"""Dequantization: a continuous density on 8-bit images as a lower bound on a discrete likelihood.

Grey levels are stored as x = n / (bins - 1); value n owns the bin [n / bins, (n + 1) / bins) of the
continuous axis (as in :mod:`vaekit.discretized`). A density p(y) on that axis gives the discrete
model P(n) = integral of p over the bin of n = bins^-D * integral over u in [0, 1)^D of
p((n + u) / bins). For any density q(u | x) on the unit cube, Jensen's inequality gives

    E_{u ~ q}[log p((n + u) / bins) - log q(u | x)] - D log(bins)  <=  log P(n),

with equality when q(u | x) is proportional to p((n + u) / bins). q uniform is the bound of Theis,
van den Oord & Bethge (2016); a learned q is variational dequantization (Ho et al. 2019, Flow++).

:class:`LogisticDequantizer` is such a q: per pixel, u = sigmoid(eps) with eps logistic, its
location and scale computed from the 8-bit image x. At location 0 and scale 1, sigmoid(eps) is
exactly uniform, which is where it starts. :func:`dequantized_elbo` is the bound for a VAE whose
decoder is read as a density (a Gaussian decoder, or the logistic density behind
:class:`vaekit.nets.DiscretizedLogisticDecoder`), with q(z | x) conditioned on the 8-bit image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (
    AffineTransform,
    Independent,
    SigmoidTransform,
    TransformedDistribution,
    Uniform,
    kl_divergence,
)

from ..discretized import density_log_prob, to_levels
from ..nets import mlp
from ..utils import check_data, check_positive_int, value_checks_enabled


class LogisticDequantizer(nn.Module):
    """q(u | x) on [0, 1)^D: per pixel u = sigmoid(loc + scale * e), e ~ Logistic(0, 1), independent
    given x; loc and log(scale) come from an MLP of the 8-bit image x (``[B, *x_shape]``, grey levels).

    The MLP's last layer starts at zero, so q starts as the uniform distribution. ``forward(x)`` is
    the distribution (a ``TransformedDistribution`` of a uniform through logit, affine, sigmoid, one
    event per image); :meth:`rsample_with_log_prob` draws u with the reparameterization trick and
    computes log q(u | x) through the logistic, stable where u rounds to 0 or 1.
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
        max_log_scale: float = 5.0,
    ):
        super().__init__()
        if not isinstance(x_shape, (tuple, list, torch.Size)) or not x_shape:
            raise ValueError(
                f"x_shape must be a non-empty sequence of positive ints, got {x_shape!r}"
            )
        check_positive_int(**{f"x_shape[{i}]": s for i, s in enumerate(x_shape)})
        check_positive_int(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        if not max_log_scale > 0:
            raise ValueError(f"max_log_scale must be positive, got {max_log_scale!r}")
        self.x_shape, self.max_log_scale = tuple(x_shape), float(max_log_scale)
        d = math.prod(self.x_shape)
        self.body = mlp([d, *hidden, 2 * d], activation)
        nn.init.zeros_(self.body[-1].weight)  # loc = 0, scale = 1: q(u | x) uniform
        nn.init.zeros_(self.body[-1].bias)

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logistic's location and scale, each ``[B, *x_shape]``."""
        check_data("x", x, self, shape=self.x_shape)
        out = self.body(x.flatten(1) - 0.5).reshape(x.shape[0], 2, *self.x_shape)
        loc, log_scale = out.unbind(1)
        log_scale = log_scale.clamp(-self.max_log_scale, self.max_log_scale)
        return loc, log_scale.exp()

    def forward(self, x: torch.Tensor) -> Independent:
        loc, scale = self.params(x)
        base = Uniform(torch.zeros_like(loc), torch.ones_like(loc), validate_args=False)
        transforms = [
            SigmoidTransform().inv,
            AffineTransform(loc, scale),
            SigmoidTransform(),
        ]
        return Independent(
            TransformedDistribution(base, transforms, validate_args=False),
            len(self.x_shape),
            validate_args=False,
        )

    def rsample_with_log_prob(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """u ~ q(u | x), ``[B, *x_shape]`` in [0, 1], and log q(u | x), ``[B]`` (nats, summed over pixels).

        Draws the uniforms with ``torch.rand`` (``generator`` if given), as
        :func:`vaekit.discretized.dequantize` does, so a q at location 0 and scale 1 reproduces its
        u to rounding, with log q = 0.
        """
        loc, scale = self.params(x)
        v = torch.rand(
            loc.shape, generator=generator, device=loc.device, dtype=loc.dtype
        )
        tiny = torch.finfo(loc.dtype).tiny
        e = v.clamp_min(tiny).log() - torch.log1p(
            -v
        )  # Logistic(0, 1) by the inverse CDF
        eps = loc + scale * e
        # log q(u) = log Logistic(eps; loc, scale) - log sigmoid'(eps)
        log_q = (-e - 2 * F.softplus(-e) - scale.log()) - (
            F.logsigmoid(eps) + F.logsigmoid(-eps)
        )
        return torch.sigmoid(eps), log_q.flatten(1).sum(1)


def dequantized_elbo(
    model,
    x: torch.Tensor,
    dequantizer: LogisticDequantizer | None = None,
    bins: int = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A one-sample estimate of the dequantized ELBO of 8-bit images, ``[B]`` nats: a lower bound on
    log P(x) of the model's density discretized over the bins (edge bins need not take the tails).

        E_{q(z|x)} E_{q(u|x)}[log p((n + u) / bins | z) - log q(u | x)] - KL(q(z|x) || p(z)) - D log(bins)

    model: a VAE (``encode``, ``decode``, ``prior``) whose encoder reads the 8-bit image x and whose
    decoder is read as a density (:func:`vaekit.discretized.density_log_prob`). x: grey levels n / (bins - 1),
    ``[B, *x_shape]``. dequantizer: q(u | x); None is the uniform (Theis et al.'s bound, with
    u drawn as :func:`vaekit.discretized.dequantize` does). u is drawn before z, with ``generator``
    if given; z with torch's global generator.
    """
    check_positive_int(bins=bins)
    check_data("x", x, model, shape=getattr(model, "x_shape", None))
    # the values n; to_levels refuses values off the grid of grey levels (skipped inside fit's loop)
    n = (
        to_levels(x, bins).to(x.dtype)
        if value_checks_enabled()
        else (x * (bins - 1)).round()
    )
    if dequantizer is None:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        log_q = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    elif isinstance(dequantizer, LogisticDequantizer):
        u, log_q = dequantizer.rsample_with_log_prob(x, generator)
    else:
        raise TypeError(
            f"dequantizer must be a LogisticDequantizer or None, got {type(dequantizer).__name__}"
        )
    qz = model.encode(x)
    z = qz.rsample()  # [B, latent]
    log_p = density_log_prob(model.decode(z), (n + u) / bins)  # [B]
    dims = math.prod(x.shape[1:])
    return log_p - log_q - kl_divergence(qz, model.prior) - dims * math.log(bins)
