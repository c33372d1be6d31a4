"""The models: each a joint p(x, z) with whatever inference network belongs to it.

mixture (Gaussian mixture, exact likelihood and EM), linear_gaussian (probabilistic PCA, exact
posterior), vae (the VAE), priors (mixture-of-Gaussians prior, VampPrior), autoregressive (a
conditional MADE decoder), ssvae (M1, M2, M1 + M2), vq (vector quantization and codebook usage),
vqvae (the VQ-VAE), pixelcnn (a prior over code grids, optionally conditioned on a feature map
and a class), hierarchical (a top-down hierarchical VAE with L stochastic layers, NVAE's residual
normal), vqvae2 (VQ-VAE-2: two levels of codes and the prior of the bottom codes given the top),
dequantization (a learned noise distribution q(u | x) and the dequantized bound for 8-bit data).

May import: the core (vaekit.data, device, distributions, discretized, nets, train, schedules, utils).
"""

from . import (
    autoregressive,
    dequantization,
    hierarchical,
    linear_gaussian,
    mixture,
    pixelcnn,
    priors,
    ssvae,
    vae,
    vq,
    vqvae,
    vqvae2,
)

__all__ = [
    "autoregressive",
    "dequantization",
    "hierarchical",
    "linear_gaussian",
    "mixture",
    "pixelcnn",
    "priors",
    "ssvae",
    "vae",
    "vq",
    "vqvae",
    "vqvae2",
]
