"""vaekit: latent-variable generative models, from Gaussian mixtures through the VAE, the IWAE and VQ-VAE to richer priors and the semi-supervised VAE, on any device."""
from . import (autoregressive, compare, data, distributions, hmc, information, metrics, nets, objectives, priors, ssvae,
               train, viz, wake_sleep)
from .device import default_device, module_device
from .objectives import elbo, iwae_bound
from .recorder import record, recorded
from .train import fit
from .utils import seed_everything, smoke_requested
from .vae import VAE

__version__ = "0.1.0"
__all__ = ["autoregressive", "compare", "data", "distributions", "hmc", "information", "metrics", "nets", "objectives",
           "priors", "ssvae", "train", "viz", "wake_sleep", "default_device", "module_device",
           "elbo", "iwae_bound", "record", "recorded", "fit", "seed_everything", "smoke_requested", "VAE"]
