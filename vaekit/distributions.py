"""Builders on ``torch.distributions``: diagonal Gaussians, pixel likelihoods, and a prior held
as buffers so that ``module.to(device)`` moves it."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from .utils import check_positive_int


def diag_gaussian(
    loc: torch.Tensor, scale: torch.Tensor, event_dims: int = 1
) -> Independent:
    """N(loc, diag(scale^2)) with the last ``event_dims`` dimensions forming one event."""
    return Independent(
        Normal(loc, scale, validate_args=False), event_dims, validate_args=False
    )


def bernoulli(logits: torch.Tensor, event_dims: int) -> Independent:
    """Independent Bernoulli pixels given logits; ``log_prob`` sums over the last ``event_dims``."""
    return Independent(
        Bernoulli(logits=logits, validate_args=False), event_dims, validate_args=False
    )


class StandardNormal(nn.Module):
    """The prior p(z) = N(0, I) over ``dim`` latents. Its parameters are buffers, so it follows
    ``.to(device)`` and ``.to(dtype)`` with the model that owns it."""

    def __init__(self, dim: int):
        super().__init__()
        check_positive_int(dim=dim)
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self) -> Independent:
        return diag_gaussian(self.loc, self.scale)
