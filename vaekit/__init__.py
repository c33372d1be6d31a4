"""vaekit: latent-variable generative models, from Gaussian mixtures to VQ-VAE, on any device."""
from . import data, distributions, hmc, metrics, nets, objectives, ssvae, train, viz, wake_sleep
from .device import default_device, module_device
from .objectives import elbo, iwae_bound
from .recorder import record, recorded
from .train import fit
from .utils import seed_everything, smoke_requested
from .vae import VAE

__version__ = "0.1.0"
__all__ = ["data", "distributions", "hmc", "metrics", "nets", "objectives", "ssvae", "train", "viz", "wake_sleep", "default_device", "module_device",
           "elbo", "iwae_bound", "record", "recorded", "fit", "seed_everything", "smoke_requested", "VAE"]
