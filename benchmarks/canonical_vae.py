"""The canonical PyTorch example VAE (pytorch/examples ``vae/main.py``), layer for layer, with its
loss: the baseline of ``bench_speed.py`` and ``vae_quality.py``.

It also offers ``encode``/``decode``/``prior`` returning distributions, so that vaekit's
evaluators can score it (the decoder's logits are the pre-sigmoid outputs: the same model as the
example's sigmoid probabilities).
"""

import torch
import torch.nn.functional as F
from torch import nn

from vaekit.distributions import bernoulli, diag_gaussian


class CanonicalVAE(nn.Module):
    """The PyTorch example VAE, layer for layer, plus ``encode``/``decode``/``prior`` returning
    distributions so that vaekit's evaluators can score it (the decoder's logits are the
    pre-sigmoid outputs, the same model as the sigmoid probabilities)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    # --- the example's own code
    def _encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def _decode_logits(self, z):
        return self.fc4(F.relu(self.fc3(z)))

    def forward(self, x):
        mu, logvar = self._encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return torch.sigmoid(self._decode_logits(z)), mu, logvar

    # --- the interface vaekit.metrics expects
    def encode(self, x):
        mu, logvar = self._encode(x.reshape(x.shape[0], 784))
        return diag_gaussian(mu, torch.exp(0.5 * logvar))

    def decode(self, z):
        return bernoulli(self._decode_logits(z).unflatten(-1, (1, 28, 28)), 3)

    @property
    def prior(self):
        w = self.fc1.weight
        return diag_gaussian(w.new_zeros(20), w.new_ones(20))


def canonical_loss(recon_x, x, mu, logvar):
    """The example's loss: BCE summed over pixels plus the analytic KL, summed over the batch."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def canonical_step(
    model: CanonicalVAE, optimizer: torch.optim.Optimizer, data: torch.Tensor
) -> torch.Tensor:
    """One step of the example's training loop; returns the batch's summed loss."""
    optimizer.zero_grad()
    recon_batch, mu, logvar = model(data)
    loss = canonical_loss(recon_batch, data, mu, logvar)
    loss.backward()
    optimizer.step()
    return loss
