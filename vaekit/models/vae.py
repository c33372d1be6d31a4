"""The variational autoencoder: an encoder q(z|x), a decoder p(x|z) and a prior p(z) = N(0, I)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..device import module_device
from ..distributions import StandardNormal
from ..nets import Decoder, GaussianEncoder
from ..utils import check_positive_int, check_tensor


class VAE(nn.Module):
    """``encode(x)`` gives q(z|x), ``decode(z)`` gives p(x|z), ``prior`` is p(z), ``sample(n)`` draws x.

    Build one with :meth:`mlp` or :meth:`conv`, or from any encoder/decoder pair that return
    distributions. Everything it creates lives on the device and dtype of its parameters.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim
        self.prior_net = StandardNormal(latent_dim)

    @property
    def prior(self):
        return self.prior_net()

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.decoder.x_shape)

    def encode(self, x: torch.Tensor):
        return self.encoder(x)

    def decode(self, z: torch.Tensor):
        check_tensor("z", z, floating=True)
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z must have {self.latent_dim} latent dimensions in its last axis, got shape {tuple(z.shape)}"
            )
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` new images ``[n, *x_shape]``: z ~ p(z), then E[x|z] (``mean=True``) or x ~ p(x|z)."""
        check_positive_int(n=n)
        px = self.decode(self.prior.sample((n,)))
        return px.mean if mean else px.sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = mean of q(z|x)]: the decoder's output at the posterior mean."""
        return self.decode(self.encode(x).mean).mean

    @property
    def device(self) -> torch.device:
        return module_device(self)

    @classmethod
    def mlp(
        cls,
        x_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 20,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        likelihood: str = "bernoulli",
        sigma: float | None = None,
    ) -> "VAE":
        """MLP encoder and decoder with the same hidden sizes (mirrored), e.g. 784-400-20."""
        enc = GaussianEncoder.mlp(x_shape, latent_dim, tuple(hidden), activation)
        dec = Decoder.mlp(
            x_shape, latent_dim, tuple(reversed(hidden)), activation, likelihood, sigma
        )
        return cls(enc, dec, latent_dim)

    @classmethod
    def conv(
        cls,
        x_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 20,
        hidden: int = 32,
        likelihood: str = "bernoulli",
        sigma: float | None = None,
    ) -> "VAE":
        """Small convolutional encoder and decoder (28x28 -> 7x7 -> 28x28)."""
        return cls(
            GaussianEncoder.conv(x_shape, latent_dim, hidden),
            Decoder.conv(x_shape, latent_dim, hidden, likelihood, sigma),
            latent_dim,
        )
