"""Vector quantization: the discrete bottleneck of a VQ-VAE.

:class:`VectorQuantizer` maps an encoder output ``z_e`` ``[B, D, H, W]`` to the nearest of ``K``
code vectors ``e_1..e_K`` at every grid position, and lets gradients through with the
straight-through estimator: the forward value is the code ``e``, the backward pass copies the
decoder's gradient at ``e`` to ``z_e`` unchanged. Per example (sums over ``D, H, W``) it returns

- the codebook loss ``||sg[z_e] - e||^2``, which moves the codes towards the encoder outputs, and
- the commitment loss ``beta ||z_e - sg[e]||^2``, which keeps the encoder near its codes.

The codebook is learned in one of two ways, chosen by ``ema``:

- ``ema=False``: the codebook is a parameter trained by the codebook loss (``loss`` includes it).
- ``ema=True`` (default): the codebook is a buffer updated, in training mode, inside ``forward``
  by exponential moving averages of the assigned vectors (decay 0.99) with Laplace-smoothed
  cluster sizes; the codebook loss is still reported but not part of ``loss``.

Codes that no vector chose for ``dead_after`` consecutive training steps are *dead*: with
``restart=True`` they are re-seeded, inside ``forward``, from random encoder outputs of the
current batch. ``kmeans_init=True`` sets the codebook by k-means (k-means++ seeding) on the first
training batch.
All bookkeeping is tensor arithmetic without host synchronisation, on the caller's device.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import check_positive_int, check_tensor, kmeans_pp, value_checks_enabled


def codebook_usage(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """How often each of ``num_codes`` codes occurs in ``indices`` (any shape): counts ``[K]``."""
    check_tensor("indices", indices, integer=True)
    check_positive_int(num_codes=num_codes)
    if value_checks_enabled() and indices.numel():
        lo, hi = torch.aminmax(indices.reshape(-1))
        if not bool((lo >= 0) & (hi < num_codes)):
            raise ValueError(
                f"indices must be codes in [0, {num_codes - 1}] (num_codes={num_codes}), "
                f"got values in [{int(lo)}, {int(hi)}]"
            )
    return torch.bincount(indices.reshape(-1).long(), minlength=num_codes)[:num_codes]


def perplexity_of_counts(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the distribution proportional to ``counts`` ``[K]``, as a tensor on their device."""
    p = counts / counts.sum()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum())


def codebook_perplexity(indices: torch.Tensor, num_codes: int) -> float:
    """exp(entropy of code usage): 1 if one code is used, ``num_codes`` if all are used equally."""
    return float(perplexity_of_counts(codebook_usage(indices, num_codes).double()))


def dead_code_fraction(indices: torch.Tensor, num_codes: int) -> float:
    """Fraction of codes never used in ``indices``."""
    return float((codebook_usage(indices, num_codes) == 0).double().mean())


def _nearest(flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Row-wise index of the nearest row of ``codes`` ``[K, D]`` for ``flat`` ``[N, D]`` -> ``[N]``."""
    d = (
        flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(1)
    )  # (N, K)
    return d.argmin(1)


class VQOutput(NamedTuple):
    """What :class:`VectorQuantizer` returns. Losses are per example, ``[B]``."""

    quantized: torch.Tensor  # (B, D, H, W), straight-through: value e, gradient to z_e
    indices: torch.Tensor  # (B, H, W) int64
    codebook_loss: torch.Tensor  # (B,)  ||sg[z_e] - e||^2
    commitment_loss: torch.Tensor  # (B,)  beta ||z_e - sg[e]||^2
    loss: torch.Tensor  # (B,)  what to add to the reconstruction loss
    perplexity: torch.Tensor  # ()  exp(entropy of code usage) in this batch


class VectorQuantizer(nn.Module):
    """Nearest-code quantization of ``[B, D, H, W]`` with a codebook of ``num_codes`` vectors of size ``code_dim``.

    Args:
        num_codes: K, the codebook size.
        code_dim: D, the length of each code vector (the encoder's channel count).
        beta: weight of the commitment loss (0.25 as in van den Oord et al., 2017).
        ema: learn the codebook by exponential moving averages (True) or by the codebook loss.
        decay: EMA decay of cluster sizes and sums.
        eps: Laplace smoothing of the EMA cluster sizes.
        restart: re-seed dead codes from encoder outputs of the current batch.
        dead_after: training steps without any assignment after which a code counts as dead.
        kmeans_init: initialise the codebook by k-means (k-means++ seeding) on the first training batch.
        kmeans_iters: Lloyd iterations for that initialisation.
        device, dtype: where the codebook is created (default: torch's defaults).
    """

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        beta: float = 0.25,
        *,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart: bool = True,
        dead_after: int = 20,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        device=None,
        dtype=None,
    ):
        super().__init__()
        check_positive_int(
            num_codes=num_codes,
            code_dim=code_dim,
            dead_after=dead_after,
            kmeans_iters=kmeans_iters,
        )
        if not beta >= 0:
            raise ValueError(f"beta must be non-negative, got {beta!r}")
        if not 0 <= decay < 1:
            raise ValueError(f"decay must lie in [0, 1), got {decay!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, float(beta)
        self.ema, self.decay, self.eps = ema, float(decay), float(eps)
        self.restart, self.dead_after = restart, dead_after
        self.kmeans_init, self.kmeans_iters = kmeans_init, kmeans_iters
        factory = {"device": device, "dtype": dtype}
        init = torch.empty(num_codes, code_dim, **factory)
        if init.device.type != "meta":
            init.uniform_(
                -1.0 / num_codes, 1.0 / num_codes
            )  # as in common PyTorch VQ-VAE implementations (the paper gives none)
        if ema:
            self.register_buffer("codebook", init)  # (K, D)
            self.register_buffer(
                "ema_count", torch.ones(num_codes, **factory)
            )  # (K,) N_k
            self.register_buffer("ema_sum", init.clone())  # (K, D) m_k = N_k e_k
        else:
            self.codebook = nn.Parameter(init)  # (K, D)
        self.register_buffer(
            "steps_unused", torch.zeros(num_codes, dtype=torch.long, device=device)
        )  # (K,)
        self.register_buffer(
            "initialized", torch.tensor(not kmeans_init, device=device)
        )
        self._initialized = (
            not kmeans_init
        )  # host-side copy: the buffer is read once, not every step

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, code_dim={self.code_dim}, beta={self.beta}, ema={self.ema}, "
            f"restart={self.restart}, kmeans_init={self.kmeans_init}"
        )

    # --- lookup -------------------------------------------------------------------------------
    def _check(self, z_e: torch.Tensor) -> None:
        check_tensor("z_e", z_e, ndim=4, floating=True)
        if z_e.shape[1] != self.code_dim:
            raise ValueError(
                f"z_e must have shape [B, {self.code_dim}, H, W] (code_dim channels), got {tuple(z_e.shape)}"
            )

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of ``flat`` ``[N, D]`` -> ``[N]``."""
        return _nearest(flat, self.codebook)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``[B, H, W]`` -> quantized tensor ``[B, D, H, W]`` (no gradient tricks)."""
        check_tensor(
            "indices",
            indices,
            ndim=3,
            integer=True,
            min_value=0,
            max_value=self.num_codes - 1,
        )
        return F.embedding(indices.long(), self.codebook).permute(
            0, 3, 1, 2
        )  # (B, D, H, W)

    # --- forward ------------------------------------------------------------------------------
    def forward(self, z_e: torch.Tensor) -> VQOutput:
        self._check(z_e)
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)  # (N, D), N = B H W
        if self.training and not self._initialized:
            self._kmeans_init(flat.detach())
        idx = self.nearest(flat.detach())  # (N,)
        e = (
            F.embedding(idx, self.codebook).view(b, h, w, d).permute(0, 3, 1, 2)
        )  # (B, D, H, W)
        codebook_loss = (z_e.detach() - e).pow(2).sum((1, 2, 3))  # (B,)
        commitment_loss = self.beta * (z_e - e.detach()).pow(2).sum((1, 2, 3))  # (B,)
        loss = commitment_loss if self.ema else codebook_loss + commitment_loss
        quantized = e.detach() + (
            z_e - z_e.detach()
        )  # straight-through: value exactly e, d/dz_e = identity
        onehot = F.one_hot(idx, self.num_codes).type_as(flat)  # (N, K)
        counts = onehot.sum(0)  # (K,)
        if (
            self.training
        ):  # codebook updates come after the lookup: this batch used the old codes
            with torch.no_grad():
                if self.ema:
                    self._ema_update(flat.detach(), onehot, counts)
                self._track_and_restart(flat.detach(), counts)
        perplexity = perplexity_of_counts(counts)
        return VQOutput(
            quantized,
            idx.view(b, h, w),
            codebook_loss,
            commitment_loss,
            loss,
            perplexity,
        )

    # --- codebook learning --------------------------------------------------------------------
    def _ema_update(
        self, flat: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor
    ) -> None:
        """N_k <- g N_k + (1-g) n_k;  m_k <- g m_k + (1-g) sum_{i->k} z_i;  e_k = m_k / N~_k (Laplace-smoothed)."""
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(
            onehot.t() @ flat, alpha=1 - self.decay
        )  # (K, D)
        n = self.ema_count.sum()
        smoothed = (
            (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        )  # (K,)
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))

    def _track_and_restart(self, flat: torch.Tensor, counts: torch.Tensor) -> None:
        """Count steps without assignments; re-seed codes dead for ``dead_after`` steps from ``flat``."""
        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        if not self.restart:
            return
        dead = self.steps_unused >= self.dead_after  # (K,)
        pick = torch.randint(
            flat.shape[0], (self.num_codes,), device=flat.device
        )  # (K,)
        fresh = flat[pick]  # (K, D) random recent encoder outputs
        self.codebook.data.copy_(
            torch.where(dead.unsqueeze(1), fresh, self.codebook.data)
        )
        if self.ema:
            self.ema_sum.copy_(torch.where(dead.unsqueeze(1), fresh, self.ema_sum))
            self.ema_count.masked_fill_(dead, 1.0)
        self.steps_unused.masked_fill_(dead, 0)

    @torch.no_grad()
    def _kmeans_init(self, flat: torch.Tensor) -> None:
        """k-means on ``flat`` ``[N, D]`` (k-means++ seeding, then Lloyd iterations); sets the codebook."""
        centers = flat[kmeans_pp(flat, self.num_codes)]  # (K, D)
        for _ in range(self.kmeans_iters):
            onehot = F.one_hot(_nearest(flat, centers), self.num_codes).type_as(
                flat
            )  # (N, K)
            counts = onehot.sum(0)  # (K,)
            means = onehot.t() @ flat / counts.clamp_min(1).unsqueeze(1)  # (K, D)
            centers = torch.where(
                (counts > 0).unsqueeze(1), means, centers
            )  # empty clusters stay put
        self.codebook.data.copy_(centers)
        if self.ema:
            self.ema_sum.copy_(centers)
            self.ema_count.fill_(1.0)
        self.initialized.fill_(True)
        self._initialized = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.initialized.device.type != "meta":
            self._initialized = bool(self.initialized)
