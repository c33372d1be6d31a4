"""An autoregressive decoder p(x|z) for binary images: a conditional MADE with an exact log_prob.

The decoder models the pixels of one image in raster order, each given the pixels before it and z,

    p(x|z) = prod_i p(x_i | x_<i, z),    p(x_i = 1 | x_<i, z) = sigmoid(logit_i(x_<i, z)),

with a MADE-style masked MLP (Germain et al. 2015, one ordering) plus a masked direct connection
(the fully visible sigmoid belief net). Masks keep every logit_i blind to x_i and every later pixel;
z enters through a small MLP whose output is added to the masked hidden layer (a conditional MADE).

Such a decoder can model the digits well without z, and trained at beta = 1 it usually does: the
KL goes to about zero and no unit stays active ("posterior collapse", Bowman et al. 2016; Chen et al.
2017). Two knobs weaken it so that z pays for itself: ``context`` (each pixel sees only the previous
``context`` pixels in reading order, e.g. 28 = one row) and ``dropout`` (during training, each input
pixel is hidden from the network with that probability, the pixel analogue of word dropout). Free bits
(``vaekit.elbo(..., free_bits=...)``) and KL warm-up (:class:`vaekit.objectives.KLWarmup`) change the
training instead; :mod:`vaekit.evaluation.collapse` trains and measures those recipes.

``decoder(z)`` returns :class:`AutoregressiveBernoulli`, a ``torch.distributions.Distribution``
whose ``log_prob(x)`` is exact (teacher forcing: one pass of the masked network, broadcast over any
leading sample dimensions of z), so ``vaekit.elbo``, ``vaekit.iwae_bound`` and
``vaekit.metrics.log_likelihood`` work unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from ..nets import GaussianEncoder, _activation
from ..utils import (
    check_positive_int,
    check_tensor,
    check_unit_interval,
    value_checks_enabled,
)
from .vae import VAE


def made_masks(
    n: int, hidden: int, context: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """0/1 masks of a one-hidden-layer MADE over ``n`` inputs in their natural order.

    Returns ``(m_in [hidden, n], m_out [n, hidden], m_direct [n, n])`` such that output i depends only
    on inputs j < i, and, with ``context`` c, only on i - c <= j < i. Hidden unit k gets the degree
    d_k (spread evenly over 0..n-2) and sees inputs j <= d_k; output i sees units with d_k < i. With a
    context, unit k sees only d_k - a < j <= d_k and output i only units with i - b <= d_k, where
    a + b - 1 = c, so that the window holds exactly the c previous pixels.
    """
    check_positive_int(n=n, hidden=hidden)
    if context is not None and (
        isinstance(context, bool) or not isinstance(context, int) or context < 1
    ):
        raise ValueError(
            f"context must be a positive int (pixels seen before each one) or None (all), got {context!r}"
        )
    j = torch.arange(n)
    deg = (
        torch.floor(torch.arange(hidden) * max(n - 1, 1) / hidden)
        .long()
        .clamp(max=max(n - 2, 0))
    )  # (hidden,)
    m_in = j[None, :] <= deg[:, None]  # (hidden, n)
    m_out = deg[None, :] < j[:, None]  # (n, hidden)
    m_direct = j[None, :] < j[:, None]  # (n, n)
    if context is not None:
        a = (context + 1) // 2
        b = context - a + 1
        m_in &= j[None, :] > deg[:, None] - a
        m_out &= deg[None, :] >= j[:, None] - b
        m_direct &= j[None, :] >= j[:, None] - context
    return m_in.float(), m_out.float(), m_direct.float()


class AutoregressiveDecoder(nn.Module):
    """z ``[..., D]`` -> :class:`AutoregressiveBernoulli` over binary images of shape ``x_shape``.

    Args:
        x_shape: the image shape, e.g. ``(1, 28, 28)``; pixels are ordered as ``x.flatten()``.
        latent_dim: D.
        hidden: units of the masked hidden layer (the autoregressive part).
        z_hidden: units of the MLP that maps z to offsets of the masked hidden layer.
        context: each pixel sees only the ``context`` (>= 1) pixels before it in raster order (None:
            all of them). A limited receptive field: 28 is one row of a 28x28 image.
        dropout: probability that an input pixel is hidden from the network (set to 0, halfway
            between the codes -1 and +1 of black and white) during training (``module.train()``);
            never in ``eval()`` mode.
    """

    def __init__(
        self,
        x_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 20,
        hidden: int = 400,
        z_hidden: int = 400,
        context: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        check_positive_int(latent_dim=latent_dim, hidden=hidden, z_hidden=z_hidden)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(
                f"dropout must be a probability in [0, 1), got {dropout!r}"
            )
        self.x_shape, self.latent_dim = tuple(int(s) for s in x_shape), latent_dim
        self.context, self.dropout = context, float(dropout)
        n = math.prod(self.x_shape)
        check_positive_int(n_pixels=n)
        m_in, m_out, m_direct = made_masks(n, hidden, context)
        self.register_buffer("m_in", m_in)
        self.register_buffer("m_out", m_out)
        self.register_buffer("m_direct", m_direct)
        self.x_to_h = nn.Linear(n, hidden)
        self.h_to_logits = nn.Linear(hidden, n)
        self.direct = nn.Linear(n, n, bias=False)
        self.act = _activation(activation)()
        self.z_net = nn.Sequential(
            nn.Linear(latent_dim, z_hidden),
            _activation(activation)(),
            nn.Linear(z_hidden, hidden),
        )
        with (
            torch.no_grad()
        ):  # masked-out weights are never used; zero them so norms mean something
            self.x_to_h.weight.mul_(m_in)
            self.h_to_logits.weight.mul_(m_out)
            self.direct.weight.mul_(m_direct)

    @property
    def n_pixels(self) -> int:
        return self.m_direct.shape[0]

    def forward(self, z: torch.Tensor) -> "AutoregressiveBernoulli":
        check_tensor("z", z, floating=True)
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z must have shape [..., {self.latent_dim}] (latent_dim in its last axis), got {tuple(z.shape)}"
            )
        return AutoregressiveBernoulli(self, z)

    def _x_terms(self, x_flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary pixels ``[..., n]`` -> the masked pre-activations ``[..., hidden]`` and direct logits ``[..., n]``.
        Inputs are coded -1/+1 (probabilities p as 2p - 1); hidden (dropped) inputs are 0."""
        inp = 2 * x_flat - 1
        if self.training and self.dropout > 0:
            inp = inp * (torch.rand_like(inp) >= self.dropout).to(inp.dtype)
        pre = F.linear(inp, self.x_to_h.weight * self.m_in, self.x_to_h.bias)
        return pre, F.linear(inp, self.direct.weight * self.m_direct)

    def logits(self, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """logit of p(x_i = 1 | x_<i, z) for every pixel: x ``[..., n]`` and z ``[..., D]`` (broadcast) -> ``[..., n]``."""
        pre, direct = self._x_terms(
            x_flat
        )  # computed once per image, shared by all its z samples
        h = self.act(
            pre + self.z_net(z)
        )  # (..., hidden): z's offsets broadcast over its samples
        return (
            F.linear(h, self.h_to_logits.weight * self.m_out, self.h_to_logits.bias)
            + direct
        )


class AutoregressiveBernoulli(Distribution):
    """p(x|z) of an :class:`AutoregressiveDecoder` for latents z ``[*batch, D]``: binary images of
    shape ``x_shape``, batch shape ``batch``.

    ``log_prob(x)``: exact, nats per image, by teacher forcing; x ``[*b, *x_shape]`` with ``b``
    broadcastable against the batch shape (z ``[k, B, D]`` and x ``[B, C, H, W]`` give ``[k, B]``).
    ``sample()``: pixel by pixel in raster order (as cheap as one network pass). ``mean``: an
    approximation of E[x|z] (the marginals are intractable): the same sequential pass feeding each
    pixel's probability, instead of a sampled pixel, to the pixels after it. Deterministic.
    """

    arg_constraints: dict = {}
    support = constraints.boolean
    has_rsample = False

    def __init__(self, decoder: AutoregressiveDecoder, z: torch.Tensor):
        self.decoder, self.z = decoder, z
        super().__init__(
            batch_shape=z.shape[:-1],
            event_shape=torch.Size(decoder.x_shape),
            validate_args=False,
        )

    def _check_x(self, x: torch.Tensor) -> None:
        check_tensor("x", x, floating=True)
        k = len(self.event_shape)
        if tuple(x.shape[x.dim() - k :]) != tuple(self.event_shape) or x.dim() < k:
            raise ValueError(
                f"x must have shape [..., {', '.join(map(str, self.event_shape))}], got {tuple(x.shape)}"
            )
        try:
            torch.broadcast_shapes(x.shape[: x.dim() - k], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"x's leading shape {list(x.shape[: x.dim() - k])} does not broadcast against the batch "
                f"shape {list(self.batch_shape)} of z"
            ) from None
        if x.dtype != self.z.dtype or x.device != self.z.device:
            raise ValueError(
                f"x must have z's dtype and device ({self.z.dtype}, {self.z.device}), got ({x.dtype}, {x.device})"
            )
        if value_checks_enabled() and x.device.type != "meta" and x.numel():
            check_unit_interval("x", x, "an autoregressive Bernoulli likelihood")
            if not bool(((x == 0) | (x == 1)).all()):
                raise ValueError(
                    "x must be binary (0 or 1) for an autoregressive Bernoulli likelihood: its pixels are "
                    "the network's inputs; binarize first (vaekit.data.binarize)"
                )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel conditional logits ``[*broadcast, *x_shape]`` given x (teacher forcing)."""
        self._check_x(x)
        k = len(self.event_shape)
        return self.decoder.logits(x.flatten(x.dim() - k), self.z).unflatten(
            -1, self.event_shape
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        x = x.expand_as(logits)
        return (
            -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            .flatten(-len(self.event_shape))
            .sum(-1)
        )

    @torch.no_grad()
    def _sequential(self, sample_shape: torch.Size, draw: bool) -> torch.Tensor:
        """Pixel by pixel: the hidden pre-activations are updated as each pixel is set (a unit only
        reaches a logit once all its inputs are set), so one image costs one pass of the network."""
        dec, n = self.decoder, self.decoder.n_pixels
        shape = torch.Size(sample_shape) + self.batch_shape
        z = self.z.expand(shape + self.z.shape[-1:])
        w_in = dec.x_to_h.weight * dec.m_in  # (hidden, n)
        w_out = dec.h_to_logits.weight * dec.m_out  # (n, hidden)
        w_direct = dec.direct.weight * dec.m_direct  # (n, n)
        pre = dec.x_to_h.bias + dec.z_net(z)  # (..., hidden): no pixel set yet
        inp = torch.zeros(
            shape + (n,), dtype=z.dtype, device=z.device
        )  # pixels coded -1/+1 (probabilities 2p - 1)
        x = torch.zeros_like(inp)
        for i in range(n):  # no input dropout while generating
            logit = (
                dec.act(pre) @ w_out[i] + dec.h_to_logits.bias[i] + inp @ w_direct[i]
            )  # (...)
            p = torch.sigmoid(logit)
            x[..., i] = torch.bernoulli(p) if draw else p
            inp[..., i] = 2 * x[..., i] - 1
            pre = pre + inp[..., i, None] * w_in[:, i]
        return x.unflatten(-1, self.event_shape)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Images ``[*sample_shape, *batch, *x_shape]`` drawn pixel by pixel."""
        return self._sequential(torch.Size(sample_shape), draw=True)

    @property
    def mean(self) -> torch.Tensor:
        return self._sequential(torch.Size(), draw=False)


def autoregressive_vae(
    latent_dim: int = 20,
    encoder_hidden: int = 400,
    x_shape: Sequence[int] = (1, 28, 28),
    **decoder_kwargs,
) -> VAE:
    """A :class:`vaekit.VAE` with an MLP encoder and an :class:`AutoregressiveDecoder` (``decoder_kwargs``)."""
    enc = GaussianEncoder.mlp(x_shape, latent_dim, (encoder_hidden,))
    return VAE(
        enc, AutoregressiveDecoder(x_shape, latent_dim, **decoder_kwargs), latent_dim
    )
