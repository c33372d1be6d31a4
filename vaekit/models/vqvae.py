"""The VQ-VAE (van den Oord et al., 2017): a convolutional encoder to a 7x7 grid of D-dimensional
vectors, a :class:`~vaekit.models.vq.VectorQuantizer` that snaps each to one of K codes, and a decoder
from the code grid back to Bernoulli pixels.

The objective per example (nats), minimised by :func:`objective` through :func:`vaekit.fit`:

    -log p(x | z_q(x))  +  ||sg[z_e(x)] - e||^2  +  beta ||z_e(x) - sg[e]||^2

(the codebook term is left out when the quantizer learns its codebook by EMA). Pixels are
Bernoulli, as in the VAE notebooks, so that the reconstruction term is a log-likelihood in nats on
binarized digits and, once a prior p(z) over code grids is learned, ``-log p(x|z_q) - log p(z_q)``
is an upper bound on ``-log p(x)`` comparable with a VAE's negative ELBO (:meth:`VQVAE.nll_bound`).

:func:`nearest_neighbour_accuracy` compares generated images with real ones by a two-sample test
on draws, which, unlike the entropy of the pixel probabilities, gives nothing for overconfidence.
"""

from __future__ import annotations

import torch
from torch import nn

from ..device import module_device
from ..distributions import bernoulli
from ..nets import conv_trunk, deconv_trunk
from ..utils import check_data, check_likelihood_input, check_positive_int, check_tensor
from .vq import VectorQuantizer, VQOutput, codebook_usage, perplexity_of_counts


class VQVAE(nn.Module):
    """Convolutional VQ-VAE for ``[B, 1, 28, 28]`` images with a ``[7, 7]`` grid of codes.

    Args:
        num_codes: K, the codebook size.
        code_dim: D, the size of each code vector.
        hidden: channels of the convolutional encoder and decoder.
        channels: image channels.
        **vq_kwargs: passed to :class:`~vaekit.models.vq.VectorQuantizer` (``beta``, ``ema``, ``restart``,
            ``dead_after``, ``kmeans_init``, ``decay``, ...).
    """

    def __init__(
        self,
        num_codes: int = 64,
        code_dim: int = 16,
        hidden: int = 32,
        channels: int = 1,
        **vq_kwargs,
    ):
        super().__init__()
        self.num_codes, self.code_dim, self.x_shape = (
            num_codes,
            code_dim,
            (channels, 28, 28),
        )
        self.encoder = conv_trunk(
            channels, hidden, code_dim
        )  # (B, C, 28, 28) -> (B, D, 7, 7)
        self.quantizer = VectorQuantizer(num_codes, code_dim, **vq_kwargs)
        self.decoder = deconv_trunk(
            code_dim, hidden, channels
        )  # (B, D, 7, 7) -> (B, C, 28, 28) logits

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output z_e(x), ``[B, D, 7, 7]``."""
        check_data("x", x, self, ndim=4, shape=self.x_shape)
        return self.encoder(x)

    def quantize(self, z_e: torch.Tensor) -> VQOutput:
        return self.quantizer(z_e)

    def decode(self, z_q: torch.Tensor):
        """p(x | z_q): independent Bernoulli pixels, event shape ``[C, 28, 28]``."""
        return bernoulli(self.decoder(z_q), 3)

    def decode_indices(self, indices: torch.Tensor):
        """p(x | codes) for a code grid ``[B, 7, 7]``."""
        return self.decode(self.quantizer.lookup(indices))

    def forward(self, x: torch.Tensor):
        """(p(x|z_q), quantizer output) for a batch ``x``."""
        vq = self.quantize(self.encode(x))
        return self.decode(vq.quantized), vq

    @torch.no_grad()
    def codes(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Code grid of every image, ``[N, 7, 7]`` int64 on the model's device (eval mode: no codebook updates)."""
        check_positive_int(batch_size=batch_size)
        check_data("x", x, ndim=4, shape=self.x_shape)
        was_training, dev = self.training, self.device
        self.eval()
        try:
            return torch.cat(
                [
                    self.quantize(self.encode(x[i : i + batch_size].to(dev))).indices
                    for i in range(0, x.shape[0], batch_size)
                ]
            )
        finally:
            self.train(was_training)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of the decoded code grid, ``[B, C, 28, 28]``."""
        return self.decode_indices(self.codes(x)).mean

    @torch.no_grad()
    def sample(self, prior, n: int, **sample_kwargs) -> torch.Tensor:
        """``n`` new images: code grids from ``prior.sample(n)``, decoded to pixel probabilities."""
        return self.decode_indices(
            prior.sample(n, **sample_kwargs).to(self.device)
        ).mean

    @torch.no_grad()
    def nll_bound(self, x: torch.Tensor, prior, batch_size: int = 500) -> torch.Tensor:
        """Upper bound on -log p(x), ``[N]`` nats: -log p(x | z_q(x)) - log p(z_q(x)).

        The sum over code grids p(x) = sum_z p(x|z) p(z) is at least its term at z = z_q(x).
        """
        check_positive_int(batch_size=batch_size)
        check_data("x", x, ndim=4, shape=self.x_shape)
        dev, out = self.device, []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(dev)
            idx = self.codes(xb)
            px = self.decode_indices(idx)
            out.append(
                -px.log_prob(check_likelihood_input(px, xb)) - prior.log_prob(idx)
            )
        return torch.cat(out)


def objective(model: VQVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The VQ-VAE loss for :func:`vaekit.fit`, per example in nats, plus logged parts.

    ``loss`` = reconstruction NLL + the quantizer's loss; also logs ``reconstruction``,
    ``codebook``, ``commitment`` (per example) and the batch ``perplexity``.
    """
    px, vq = model(x)
    rec = -px.log_prob(
        check_likelihood_input(px, x)
    )  # (B,): pixels in [0, 1], not 0-255
    return {
        "loss": rec + vq.loss,
        "reconstruction": rec,
        "codebook": vq.codebook_loss,
        "commitment": vq.commitment_loss,
        "perplexity": vq.perplexity,
    }


class CodebookMonitor:
    """A :func:`vaekit.fit` callback that watches the codebook during training.

    Every ``every`` steps it encodes the fixed images ``x`` and appends the step, the code
    perplexity, the fraction of dead codes and the usage counts ``[K]`` (on the CPU) to its lists.
    """

    def __init__(self, x: torch.Tensor, every: int = 10):
        check_positive_int(every=every)
        self.x, self.every = x, every
        self.steps: list[int] = []
        self.perplexity: list[float] = []
        self.dead_fraction: list[float] = []
        self.usage: list[torch.Tensor] = []

    def measure(self, model: VQVAE, step: int) -> None:
        usage = codebook_usage(
            model.codes(self.x), model.num_codes
        ).cpu()  # one transfer
        self.steps.append(step)
        self.perplexity.append(float(perplexity_of_counts(usage.double())))
        self.dead_fraction.append(float((usage == 0).double().mean()))
        self.usage.append(usage)

    def on_step(self, state) -> None:
        if state.step % self.every == 0:
            self.measure(state.model, state.step)


@torch.no_grad()
def nearest_neighbour_accuracy(samples: torch.Tensor, real: torch.Tensor) -> float:
    """Leave-one-out 1-nearest-neighbour two-sample test: the accuracy, in [0, 1].

    Pool ``samples`` and ``real`` (two sets of the same shape ``[N, ...]``), label each image by its
    set, and classify every image by the set of its nearest *other* image (Euclidean distance).
    About 0.5 when both sets come from one distribution (a little below, since an image is never its
    own neighbour); 1 when the sets are told apart every time; near 0 when the samples are copies of
    the real images (each one's neighbour is its twin). A classifier two-sample test in the sense of
    Lopez-Paz & Oquab (ICLR 2017). Given draws x ~ p(x), a model gains nothing by overconfidence.
    """
    check_tensor("samples", samples, floating=True)
    check_tensor("real", real, floating=True)
    if samples.shape != real.shape or samples.shape[0] < 2:
        raise ValueError(
            "samples and real must have the same shape [N, ...] with N >= 2, got "
            f"{tuple(samples.shape)} and {tuple(real.shape)}"
        )
    x = torch.cat([samples, real.to(samples.device, samples.dtype)]).flatten(
        1
    )  # (2N, P)
    d = torch.cdist(x, x)  # (2N, 2N)
    d.fill_diagonal_(float("inf"))
    is_sample = torch.arange(x.shape[0], device=x.device) < samples.shape[0]  # (2N,)
    return float((is_sample[d.argmin(1)] == is_sample).double().mean())
