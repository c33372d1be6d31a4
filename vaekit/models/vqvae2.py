"""A two-level VQ-VAE in the manner of VQ-VAE-2 (Razavi, van den Oord & Vinyals, 2019), for 28x28 digits.

Two grids of discrete codes: a *top* grid on a coarse 7x7 grid and a *bottom* grid on a finer
14x14 grid, each quantized by its own :class:`~vaekit.models.vq.VectorQuantizer`:

    h       = E_b(x)                           (B, hidden, 14, 14)   bottom features
    z_top   = VQ_top(E_t(h))                   (B, D, 7, 7)          coarse codes
    u       = U(z_top)                         (B, hidden, 14, 14)   the top codes, upsampled
    z_bot   = VQ_bot(P(cat[h, u]))             (B, D, 14, 14)        fine codes, encoded given the top
    p(x|z)  = Bernoulli(D(cat[z_bot, u]))      (B, 1, 28, 28)        decoded from both levels

The objective per example (nats) is the reconstruction NLL plus both quantizers' losses. The
generative model reads the other way: a prior p(z_top) over top grids, a prior p(z_bot | z_top)
over bottom grids given the top, then p(x | z_top, z_bot). With a point-mass posterior at the
encoder's codes (as for the one-level VQ-VAE), the sum over all code grids is at least its term at
the encoded grids, so

    -log p(x)  <=  -log p(x | z_top, z_bot) - log p(z_top) - log p(z_bot | z_top)

(:meth:`VQVAE2.bound_terms`). :class:`BottomPrior` is a gated PixelCNN over the 14x14 bottom grid
whose every layer receives features of the whole top grid (upsampled to 14x14); the top prior is a
plain (optionally class-conditional) :class:`~vaekit.models.pixelcnn.PixelCNN`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..device import module_device
from ..distributions import bernoulli
from ..utils import check_data, check_likelihood_input, check_positive_int, check_tensor
from .pixelcnn import PixelCNN
from .vq import VectorQuantizer, VQOutput
from .vqvae import VQVAE


def _check_code_grid(name: str, codes: torch.Tensor, num_codes: int) -> None:
    """A grid of code indices ``[B, H, W]`` with values in 0 .. num_codes - 1, or a clear error."""
    check_tensor(
        name, codes, ndim=3, integer=True, min_value=0, max_value=num_codes - 1
    )


class VQVAE2Output(NamedTuple):
    """What :meth:`VQVAE2.forward` returns."""

    px: torch.distributions.Distribution  # p(x | z_top, z_bot), event shape (C, 28, 28)
    top: VQOutput  # quantized (B, D, 7, 7), indices (B, 7, 7), losses (B,)
    bottom: VQOutput  # quantized (B, D, 14, 14), indices (B, 14, 14), losses (B,)


class BoundTerms(NamedTuple):
    """The bound on -log p(x) and its three terms, each ``[N]`` nats; ``total`` is their sum."""

    reconstruction: torch.Tensor  # -log p(x | z_top, z_bot)
    top: torch.Tensor  # -log p(z_top)
    bottom: torch.Tensor  # -log p(z_bot | z_top)
    total: torch.Tensor


class VQVAE2(nn.Module):
    """Two-level convolutional VQ-VAE for ``[B, C, 28, 28]`` images: a 7x7 top grid, a 14x14 bottom grid.

    Args:
        num_codes_top: K_top, the top codebook's size.
        num_codes_bottom: K_bot, the bottom codebook's size.
        code_dim: D, the size of each code vector (both levels).
        hidden: channels of the convolutional layers.
        channels: image channels.
        **vq_kwargs: passed to both :class:`~vaekit.models.vq.VectorQuantizer` (``beta``, ``ema``,
            ``restart``, ``dead_after``, ...).
    """

    top_grid, bottom_grid = (7, 7), (14, 14)

    def __init__(
        self,
        num_codes_top: int = 16,
        num_codes_bottom: int = 4,
        code_dim: int = 16,
        hidden: int = 32,
        channels: int = 1,
        **vq_kwargs,
    ):
        super().__init__()
        check_positive_int(
            num_codes_top=num_codes_top,
            num_codes_bottom=num_codes_bottom,
            code_dim=code_dim,
            hidden=hidden,
            channels=channels,
        )
        self.num_codes_top, self.num_codes_bottom = num_codes_top, num_codes_bottom
        self.code_dim, self.x_shape = code_dim, (channels, 28, 28)
        h, d = hidden, code_dim
        self.enc_bottom = nn.Sequential(
            nn.Conv2d(channels, h, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, h, 14, 14)
            nn.Conv2d(h, h, 3, padding=1),
            nn.ReLU(),
        )
        self.enc_top = nn.Sequential(
            nn.Conv2d(h, h, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, h, 7, 7)
            nn.Conv2d(h, d, 1),
        )  # (B, D, 7, 7)
        self.upsample_top = nn.Sequential(
            nn.Conv2d(d, h, 3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(h, h, 4, stride=2, padding=1),
            nn.ReLU(),
        )  # (B, h, 14, 14)
        self.pre_bottom = nn.Conv2d(2 * h, d, 1)  # cat[h, u] -> (B, D, 14, 14)
        self.decoder = nn.Sequential(
            nn.Conv2d(d + h, h, 3, padding=1),
            nn.ReLU(),  # (B, h, 14, 14)
            nn.ConvTranspose2d(h, channels, 4, stride=2, padding=1),
        )  # (B, C, 28, 28)
        self.vq_top = VectorQuantizer(num_codes_top, code_dim, **vq_kwargs)
        self.vq_bottom = VectorQuantizer(num_codes_bottom, code_dim, **vq_kwargs)

    @property
    def device(self) -> torch.device:
        return module_device(self)

    @property
    def code_bits(self) -> float:
        """Bits in one pair of code grids: 49 log2 K_top + 196 log2 K_bot."""
        return 49 * math.log2(self.num_codes_top) + 196 * math.log2(
            self.num_codes_bottom
        )

    def forward(self, x: torch.Tensor) -> VQVAE2Output:
        check_data("x", x, self, ndim=4, shape=self.x_shape)
        h = self.enc_bottom(x)  # (B, h, 14, 14)
        top = self.vq_top(self.enc_top(h))  # quantized (B, D, 7, 7)
        u = self.upsample_top(top.quantized)  # (B, h, 14, 14)
        bottom = self.vq_bottom(
            self.pre_bottom(torch.cat([h, u], 1))
        )  # quantized (B, D, 14, 14)
        logits = self.decoder(torch.cat([bottom.quantized, u], 1))  # (B, C, 28, 28)
        return VQVAE2Output(bernoulli(logits, 3), top, bottom)

    def _check_codes(self, top: torch.Tensor, bottom: torch.Tensor) -> None:
        _check_code_grid("top", top, self.num_codes_top)
        _check_code_grid("bottom", bottom, self.num_codes_bottom)
        if (
            tuple(top.shape[1:]) != self.top_grid
            or tuple(bottom.shape[1:]) != self.bottom_grid
            or top.shape[0] != bottom.shape[0]
        ):
            raise ValueError(
                f"top must be [B, {', '.join(map(str, self.top_grid))}] and bottom "
                f"[B, {', '.join(map(str, self.bottom_grid))}] with the same B, got "
                f"{tuple(top.shape)} and {tuple(bottom.shape)}"
            )

    def decode_indices(self, top: torch.Tensor, bottom: torch.Tensor):
        """p(x | z_top, z_bot) from code indices ``[B, 7, 7]`` and ``[B, 14, 14]``: Bernoulli pixels."""
        self._check_codes(top, bottom)
        dev = self.device
        u = self.upsample_top(self.vq_top.lookup(top.to(dev)))  # (B, h, 14, 14)
        logits = self.decoder(torch.cat([self.vq_bottom.lookup(bottom.to(dev)), u], 1))
        return bernoulli(logits, 3)

    @torch.no_grad()
    def codes(
        self, x: torch.Tensor, batch_size: int = 500
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The code grids of ``x`` (eval mode: no codebook updates): top ``[N, 7, 7]``, bottom ``[N, 14, 14]``."""
        check_positive_int(batch_size=batch_size)
        check_data("x", x, ndim=4, shape=self.x_shape)
        was_training, dev = self.training, self.device
        self.eval()
        tops, bottoms = [], []
        try:
            for i in range(0, x.shape[0], batch_size):
                out = self(x[i : i + batch_size].to(dev))
                tops.append(out.top.indices)
                bottoms.append(out.bottom.indices)
        finally:
            self.train(was_training)
        return torch.cat(tops), torch.cat(bottoms)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of the decoded code grids, ``[B, C, 28, 28]``."""
        return self.decode_indices(*self.codes(x)).mean

    @torch.no_grad()
    def sample(
        self,
        top_prior: PixelCNN,
        bottom_prior: BottomPrior,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling: z_top ~ p(z_top [| label]), z_bot ~ p(z_bot | z_top), x's pixel probabilities
        ``[n, C, 28, 28]``."""
        check_positive_int(n=n)
        top = top_prior.sample(n, labels=labels, generator=generator)
        bottom = bottom_prior.sample(top, generator=generator)
        return self.decode_indices(top, bottom).mean

    @torch.no_grad()
    def bound_terms(
        self,
        x: torch.Tensor,
        top_prior: PixelCNN,
        bottom_prior: BottomPrior,
        batch_size: int = 500,
    ) -> BoundTerms:
        """The bound -log p(x | z) - log p(z_top) - log p(z_bot | z_top) at the encoded grids, per example.

        A class-conditional top prior enters through its exact marginal over classes.
        """
        check_positive_int(batch_size=batch_size)
        check_data("x", x, ndim=4, shape=self.x_shape)
        dev, parts = self.device, []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(dev)
            top, bottom = self.codes(xb)
            px = self.decode_indices(top, bottom)
            parts.append(
                (
                    -px.log_prob(check_likelihood_input(px, xb)),
                    -top_prior.log_prob(top.to(top_prior.device)),
                    -bottom_prior.log_prob(
                        bottom.to(bottom_prior.device), top.to(bottom_prior.device)
                    ),
                )
            )
        rec, t, b = (torch.cat([p[k].to(dev) for p in parts]) for k in range(3))
        return BoundTerms(rec, t, b, rec + t + b)


def objective(model: VQVAE2, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two-level loss for :func:`vaekit.fit`, per example in nats: reconstruction NLL plus both
    quantizers' losses; also logs ``reconstruction`` and each level's batch perplexity."""
    out = model(x)
    rec = -out.px.log_prob(check_likelihood_input(out.px, x))  # (B,)
    return {
        "loss": rec + out.top.loss + out.bottom.loss,
        "reconstruction": rec,
        "perplexity_top": out.top.perplexity,
        "perplexity_bottom": out.bottom.perplexity,
    }


class BottomPrior(nn.Module):
    """p(z_bot | z_top): a gated PixelCNN over the bottom grid that sees the whole top grid.

    The top codes are embedded, passed through a 3x3 convolution (each top cell sees its
    neighbours) and upsampled by a transposed convolution to the bottom grid; the result enters
    every layer of a :class:`~vaekit.models.pixelcnn.PixelCNN` with ``cond_channels`` (unmasked:
    the top grid is known before any bottom code is drawn).

    Args:
        num_codes: K_bot, the bottom codebook's size.
        num_codes_top: K_top, the top codebook's size.
        channels, layers, kernel_size: of the PixelCNN (and ``channels`` of the conditioning network).
    """

    def __init__(
        self,
        num_codes: int,
        num_codes_top: int,
        channels: int = 32,
        layers: int = 4,
        kernel_size: int = 3,
        device=None,
    ):
        super().__init__()
        check_positive_int(
            num_codes=num_codes, num_codes_top=num_codes_top, channels=channels
        )
        self.num_codes, self.num_codes_top = num_codes, num_codes_top
        c = channels
        self.top_embed = nn.Embedding(num_codes_top, c, device=device)
        self.condition = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, device=device),
            nn.ReLU(),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1, device=device),
        )
        self.pixelcnn = PixelCNN(
            num_codes,
            grid=(14, 14),
            channels=c,
            layers=layers,
            kernel_size=kernel_size,
            device=device,
            cond_channels=c,
        )

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def _check_top(self, top: torch.Tensor) -> None:
        _check_code_grid("top", top, self.num_codes_top)
        if top.device != self.device:
            raise ValueError(
                f"top is on {top.device} but the model is on {self.device}: move one to the other"
            )

    def features(self, top: torch.Tensor) -> torch.Tensor:
        """Conditioning features of the top grid ``[B, h, w]`` -> ``[B, channels, 2h, 2w]``."""
        self._check_top(top)
        return self.condition(self.top_embed(top.long()).permute(0, 3, 1, 2))

    def logits(self, bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Logits of p(z_bot,ij | z_bot,<ij, z_top): ``[B, K_bot, 2h, 2w]``."""
        return self.pixelcnn.logits(bottom, self.features(top))

    def log_prob(self, bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """log p(z_bot | z_top), ``[B]`` nats."""
        return self.pixelcnn.log_prob(bottom, self.features(top))

    @torch.no_grad()
    def sample(
        self,
        top: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One bottom grid ``[B, 2h, 2w]`` per top grid ``[B, h, w]``, drawn in raster order."""
        was_training = self.training
        self.eval()
        try:
            return self.pixelcnn.sample(
                top.shape[0],
                temperature=temperature,
                generator=generator,
                cond=self.features(top),
            )
        finally:
            self.train(was_training)


def bottom_nll(
    model: BottomPrior, bottom: torch.Tensor, top: torch.Tensor
) -> torch.Tensor:
    """-log p(z_bot | z_top) per example, ``[B]`` nats: the bottom prior's objective for :func:`vaekit.fit`
    (``vaekit.fit(prior, bottom_nll, (bottom_codes, top_codes), ...)``)."""
    return -model.log_prob(bottom, top)


class FineVQVAE(VQVAE):
    """The one-level baseline on the bottom grid: a VQ-VAE with one 14x14 grid of ``num_codes`` codes.

    Its encoder and decoder are :class:`VQVAE2`'s bottom path without the top level (28x28 -> 14x14
    features -> D-dimensional vectors -> codes -> 28x28 logits); everything else (``codes``,
    ``decode_indices``, ``nll_bound``, ``sample``, :func:`vaekit.models.vqvae.objective`) is
    :class:`~vaekit.models.vqvae.VQVAE`'s.
    """

    def __init__(
        self,
        num_codes: int = 8,
        code_dim: int = 16,
        hidden: int = 32,
        channels: int = 1,
        **vq_kwargs,
    ):
        nn.Module.__init__(self)
        check_positive_int(
            num_codes=num_codes, code_dim=code_dim, hidden=hidden, channels=channels
        )
        self.num_codes, self.code_dim, self.x_shape = (
            num_codes,
            code_dim,
            (channels, 28, 28),
        )
        h, d = hidden, code_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, h, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, h, 14, 14)
            nn.Conv2d(h, h, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(h, d, 1),
        )  # (B, D, 14, 14)
        self.quantizer = VectorQuantizer(num_codes, code_dim, **vq_kwargs)
        self.decoder = nn.Sequential(
            nn.Conv2d(d, h, 3, padding=1),
            nn.ReLU(),  # (B, h, 14, 14)
            nn.ConvTranspose2d(h, channels, 4, stride=2, padding=1),
        )  # (B, C, 28, 28)

    @property
    def code_bits(self) -> float:
        """Bits in one code grid: 196 log2 K."""
        return 196 * math.log2(self.num_codes)
