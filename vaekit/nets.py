"""Encoders and decoders that return distributions.

An encoder maps x ``[B, C, H, W]`` (or ``[B, D_x]``) to q(z|x) = N(mu, diag sigma^2) with event
shape ``[D]``. A decoder maps z ``[..., D]`` (any leading sample dimensions) to p(x|z) with event
shape ``x_shape``: independent Bernoulli pixels, or Gaussian pixels with a fixed or learned scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .distributions import bernoulli, diag_gaussian

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}
LIKELIHOODS = ("bernoulli", "gaussian")


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        )
    return ACTIVATIONS[name]


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    act = _activation(activation)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def conv_trunk(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """28x28 -> 7x7: two stride-2 convolutions and a 1x1 projection. ``[B, C, 28, 28] -> [B, out, 7, 7]``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 4, stride=2, padding=1),
        nn.ReLU(),  # (B, h, 14, 14)
        nn.Conv2d(hidden, hidden, 4, stride=2, padding=1),
        nn.ReLU(),  # (B, h, 7, 7)
        nn.Conv2d(hidden, out_channels, 1),  # (B, out, 7, 7)
    )


def deconv_trunk(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    """7x7 -> 28x28, the mirror of :func:`conv_trunk`. ``[B, in, 7, 7] -> [B, out, 28, 28]``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(),  # (B, h, 7, 7)
        nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1),
        nn.ReLU(),  # (B, h, 14, 14)
        nn.ConvTranspose2d(
            hidden, out_channels, 4, stride=2, padding=1
        ),  # (B, out, 28, 28)
    )


class GaussianEncoder(nn.Module):
    """x -> q(z|x) = N(mu(x), diag sigma(x)^2). ``body`` maps x to ``[B, features]``."""

    def __init__(
        self, body: nn.Module, features: int, latent_dim: int, x_shape: Sequence[int]
    ):
        super().__init__()
        self.body, self.latent_dim, self.x_shape = body, latent_dim, tuple(x_shape)
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: torch.Tensor):
        if tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.x_shape))}], got {tuple(x.shape)}"
            )
        mu, pre_scale = self.head(self.body(x)).chunk(2, dim=-1)  # (B, D) each
        return diag_gaussian(mu, F.softplus(pre_scale) + 1e-6)

    @classmethod
    def mlp(cls, x_shape=(1, 28, 28), latent_dim=20, hidden=(400,), activation="relu"):
        n = math.prod(x_shape)
        body = nn.Sequential(
            nn.Flatten(), mlp([n, *hidden], activation), _activation(activation)()
        )
        return cls(body, hidden[-1] if hidden else n, latent_dim, x_shape)

    @classmethod
    def conv(cls, x_shape=(1, 28, 28), latent_dim=20, hidden=32):
        c, h, w = x_shape
        if (h, w) != (28, 28):
            raise ValueError(
                f"the convolutional encoder expects 28x28 images, got x_shape={tuple(x_shape)}"
            )
        body = nn.Sequential(conv_trunk(c, hidden, hidden), nn.ReLU(), nn.Flatten())
        return cls(body, hidden * 49, latent_dim, x_shape)


class Decoder(nn.Module):
    """z ``[..., D]`` -> p(x|z) with event shape ``x_shape``.

    ``likelihood="bernoulli"``: the body's outputs are logits. ``"gaussian"``: they pass through a
    sigmoid to give means in [0, 1]; the scale is ``sigma`` if given, else a learned per-pixel scale.
    """

    def __init__(
        self,
        body: nn.Module,
        x_shape: Sequence[int],
        likelihood: str = "bernoulli",
        sigma: float | None = None,
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}"
            )
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be positive or None (learned), got {sigma!r}")
        self.body, self.x_shape, self.likelihood = body, tuple(x_shape), likelihood
        if likelihood == "gaussian":
            if sigma is None:
                self.log_sigma = nn.Parameter(torch.full(self.x_shape, -1.0))
            else:
                self.register_buffer(
                    "log_sigma", torch.full(self.x_shape, math.log(sigma))
                )

    def forward(self, z: torch.Tensor):
        lead = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1])).reshape(
            *lead, *self.x_shape
        )  # (..., C, H, W)
        if self.likelihood == "bernoulli":
            return bernoulli(out, len(self.x_shape))
        return diag_gaussian(
            torch.sigmoid(out), self.log_sigma.exp().expand_as(out), len(self.x_shape)
        )

    @classmethod
    def mlp(
        cls,
        x_shape=(1, 28, 28),
        latent_dim=20,
        hidden=(400,),
        activation="relu",
        likelihood="bernoulli",
        sigma=None,
    ):
        n = math.prod(x_shape)
        return cls(
            mlp([latent_dim, *hidden, n], activation), x_shape, likelihood, sigma
        )

    @classmethod
    def conv(
        cls,
        x_shape=(1, 28, 28),
        latent_dim=20,
        hidden=32,
        likelihood="bernoulli",
        sigma=None,
    ):
        c, h, w = x_shape
        if (h, w) != (28, 28):
            raise ValueError(
                f"the convolutional decoder expects 28x28 images, got x_shape={tuple(x_shape)}"
            )
        body = nn.Sequential(
            nn.Linear(latent_dim, hidden * 49),
            nn.ReLU(),
            nn.Unflatten(-1, (hidden, 7, 7)),
            deconv_trunk(hidden, hidden, c),
        )
        return cls(body, x_shape, likelihood, sigma)


from .discretized import discretized_logistic  # noqa: E402  (grey-level pixels for the decoder below)


class DiscretizedLogisticDecoder(nn.Module):
    """z ``[..., D]`` -> p(x|z) over 8-bit grey levels: independent discretized-logistic pixels
    (:class:`vaekit.discretized.DiscretizedLogistic`) with a location and a scale per pixel, both
    computed from z. The body maps z to ``2 * prod(x_shape)`` numbers: the locations and the
    pre-softplus scales; ``min_scale`` (on the [0, 1) axis) keeps the scales away from zero.
    """

    def __init__(
        self,
        body: nn.Module,
        x_shape: Sequence[int],
        bins: int = 256,
        min_scale: float = 1e-3,
    ):
        super().__init__()
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}")
        self.body, self.x_shape, self.bins, self.min_scale = (
            body,
            tuple(x_shape),
            bins,
            min_scale,
        )

    def forward(self, z: torch.Tensor):
        lead = z.shape[:-1]
        out = self.body(z.reshape(-1, z.shape[-1])).reshape(
            *lead, 2, *self.x_shape
        )  # (..., 2, C, H, W)
        loc, pre_scale = out.unbind(len(lead))  # (..., C, H, W) each
        return discretized_logistic(
            loc, F.softplus(pre_scale) + self.min_scale, len(self.x_shape), self.bins
        )

    @classmethod
    def mlp(
        cls,
        x_shape=(1, 28, 28),
        latent_dim=20,
        hidden=(400,),
        activation="relu",
        bins=256,
        min_scale=1e-3,
    ):
        return cls(
            mlp([latent_dim, *hidden, 2 * math.prod(x_shape)], activation),
            x_shape,
            bins,
            min_scale,
        )
