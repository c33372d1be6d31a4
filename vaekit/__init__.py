"""vaekit: latent-variable generative models, from Gaussian mixtures through the VAE, the IWAE and
VQ-VAE to richer priors and the semi-supervised VAE, on any device.

The package, by role (each layer may import only from the layers above it in this list):

- the core, at the top level: ``data`` (MNIST, the embedded digits, binarization), ``device``
  (picking a device, bfloat16 support, chunk sizes), ``distributions`` and ``discretized``
  (likelihoods on torch.distributions), ``nets`` (encoders and decoders), ``shapes`` (images
  whose generative factors are known), ``train`` (one model-agnostic training loop),
  ``schedules``, ``utils`` (seeding, input checks, atomic writes);
- ``models``: mixture, linear_gaussian, vae, priors, autoregressive, ssvae, vq, vqvae, pixelcnn;
- ``inference``: objectives (ELBO, IWAE), estimators, variational, gradients, hmc, wake_sleep;
- ``evaluation``: metrics, compare, snr, information, disentanglement, protocols, collapse;
- ``figures``: plotly figure builders and ipywidgets, one module per topic;
- ``runner``: the ``vaekit`` command and the recorder of headline numbers.

The names below (``vaekit.VAE``, ``vaekit.elbo``, ``vaekit.metrics``, ...) are the public API.
"""

from . import (
    data,
    device,
    distributions,
    discretized,
    nets,
    schedules,
    shapes,
    train,
    utils,
)  # the core
from . import models, inference, evaluation, figures, runner  # noqa: I001  (in order of the layers)
from .device import default_device, module_device
from .evaluation import compare, information, metrics
from .figures import plots as viz
from .inference import hmc, objectives, wake_sleep
from .inference.objectives import elbo, iwae_bound
from .models import autoregressive, priors, ssvae
from .models.vae import VAE
from .runner.recorder import record, recorded
from .train import fit
from .utils import seed_everything, smoke_requested

__version__ = "0.1.0"
__all__ = [
    "data",
    "device",
    "distributions",
    "discretized",
    "nets",
    "schedules",
    "shapes",
    "train",
    "utils",
    "models",
    "inference",
    "evaluation",
    "figures",
    "runner",
    "autoregressive",
    "compare",
    "hmc",
    "information",
    "metrics",
    "objectives",
    "priors",
    "ssvae",
    "viz",
    "wake_sleep",
    "default_device",
    "module_device",
    "elbo",
    "iwae_bound",
    "record",
    "recorded",
    "fit",
    "seed_everything",
    "smoke_requested",
    "VAE",
]
