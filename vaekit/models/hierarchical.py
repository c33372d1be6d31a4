"""A top-down hierarchical VAE with L stochastic layers (Ladder VAE, Sønderby et al.
2016; NVAE, Vahdat & Kautz 2020).

Layer 1 is nearest the data, layer L at the top. The generative model is a chain

    p(z_L) = N(0, I),
    p(z_l | z_{l+1}) = N(mu_p(h_l), diag sigma_p(h_l)^2),
    p(x | z_1),

with h_l = top_down[l](z_{l+1}) a deterministic feature of the layer above. Inference
runs a bottom-up pass d_1 = f_1(x), d_2 = f_2(d_1), ... once, then the *same* top-down
pass as generation, each layer's posterior reading both the top-down feature and the
bottom-up one:

    q(z_L | x) = N(head_L(d_L)),
    q(z_l | z_{l+1}, x) = N(head_l([h_l, d_l])).

``residual=True`` is NVAE's residual normal: the head gives (dmu, dsigma) *relative to
the prior*, mu_q = mu_p + dmu and sigma_q = sigma_p * dsigma, and each layer's KL has
the closed form 1/2 (dmu^2 / sigma_p^2 + dsigma^2 - log dsigma^2 - 1)
(:func:`residual_normal_kl`). ``residual=False`` gives mu_q and sigma_q directly. Both
describe the same family of posteriors.

The model offers the interface of :class:`vaekit.VAE` to the library's bounds:
``encode(x)`` is a ``torch.distributions`` object over all the latents concatenated, z =
[z_1, ..., z_L] ``[..., sum D_l]`` (layer 1 first), whose ``rsample`` runs the top-down
pass and whose ``log_prob`` scores a z layer by layer; ``prior`` is the same over p;
``decode(z)`` is p(x | z_1). So ``vaekit.elbo`` (with the KL sampled: a hierarchy has no
closed-form KL overall), ``iwae_bound``, ``metrics.log_likelihood`` and ``fit`` work
unchanged. :meth:`HierarchicalVAE.terms` gives the reconstruction and each layer's KL,
analytic given the samples of the layers above, and :func:`hierarchical_elbo` the
training objective built from them, with KL warm-up (``beta``) and free bits per layer.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal, constraints

from ..device import module_device
from ..nets import Decoder, _activation, mlp
from ..utils import (
    check_likelihood_input,
    check_matches,
    check_positive_int,
    check_tensor,
)

SCALE_SHIFT = math.log(
    math.e - 1
)  # softplus(0 + SCALE_SHIFT) = 1: a head that outputs 0 gives scale 1
MIN_SCALE = 1e-4


def positive_scale(pre: torch.Tensor) -> torch.Tensor:
    """A scale > 0 from a head's raw output: softplus(pre + log(e - 1)) + 1e-4 (1 at
    ``pre = 0``)."""
    return F.softplus(pre + SCALE_SHIFT) + MIN_SCALE


def positive_scale_inverse(scale: torch.Tensor) -> torch.Tensor:
    """The raw output that :func:`positive_scale` maps to ``scale`` (> 1e-4)."""
    s = scale - MIN_SCALE
    return s + torch.log(-torch.expm1(-s)) - SCALE_SHIFT


def residual_normal_kl(
    delta_mu: torch.Tensor, delta_sigma: torch.Tensor, sigma_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_p + dmu, (sigma_p dsigma)^2) || N(mu_p, sigma_p^2)) per dimension,
    elementwise: 1/2 (dmu^2 / sigma_p^2 + dsigma^2 - log dsigma^2 - 1) (Vahdat & Kautz
    2020, eq. 2)."""
    return 0.5 * (
        (delta_mu / sigma_p) ** 2 + delta_sigma**2 - 2 * torch.log(delta_sigma) - 1
    )


class Layer(NamedTuple):
    """One stochastic layer after a top-down pass (tensors ``[*sample, B, D_l]``)."""

    z: torch.Tensor  # the latent drawn (or given)
    p: Independent  # p(z_l | z_{l+1}) (N(0, I) at the top)
    q: Independent | None  # q(z_l | z_{l+1}, x); None in a pass of the prior alone
    kl: (
        torch.Tensor | None
    )  # KL(q || p) per example ``[*sample, B]``, analytic given the layers above


class HierarchicalTerms(NamedTuple):
    reconstruction: torch.Tensor  # (B,) E_q[log p(x | z_1)], Monte Carlo over k samples
    # (L, B) each layer's KL given the layers above, layer 1 first, mean over k samples
    kl: torch.Tensor


def _normal(loc: torch.Tensor, scale: torch.Tensor) -> Independent:
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


class HierarchicalVAE(nn.Module):
    """Top-down hierarchical VAE; see the module's docstring. Build one with
    :meth:`mlp`, or from parts:

    bottom_up: L modules, d_l = bottom_up[l-1](d_{l-1}) with d_0 = x.
    top_down: L - 1 modules, h_l = top_down[l-1](z_{l+1}).
    prior_heads: L - 1 modules, h_l -> ``2 D_l`` (the prior's mean and raw scale).
    posterior_heads: L modules; for l < L, ``[h_l, d_l]`` -> ``2 D_l``; at the top,
        d_L -> ``2 D_L``.
    decoder: z_1 ``[..., D_1]`` -> p(x | z_1), a distribution with the image as its event.
    latent_dims: (D_1, ..., D_L), layer 1 first.
    """

    def __init__(
        self,
        bottom_up: Sequence[nn.Module],
        top_down: Sequence[nn.Module],
        prior_heads: Sequence[nn.Module],
        posterior_heads: Sequence[nn.Module],
        decoder: nn.Module,
        latent_dims: Sequence[int],
        residual: bool = True,
    ):
        super().__init__()
        if (
            isinstance(latent_dims, int)
            or not isinstance(latent_dims, Sequence)
            or len(latent_dims) < 1
        ):
            raise ValueError(
                "latent_dims must be a sequence of L >= 1 layer sizes, "
                f"got {latent_dims!r}"
            )
        for i, d in enumerate(latent_dims):
            check_positive_int(**{f"latent_dims[{i}]": d})
        n = len(latent_dims)
        for name, mods, want in (
            ("bottom_up", bottom_up, n),
            ("top_down", top_down, n - 1),
            ("prior_heads", prior_heads, n - 1),
            ("posterior_heads", posterior_heads, n),
        ):
            if len(mods) != want:
                raise ValueError(
                    f"{name} must hold {want} modules for L = {n} layers, "
                    f"got {len(mods)}"
                )
        if not isinstance(residual, bool):
            raise TypeError(f"residual must be True or False, got {residual!r}")
        self.bottom_up, self.top_down = (
            nn.ModuleList(bottom_up),
            nn.ModuleList(top_down),
        )
        self.prior_heads, self.posterior_heads = (
            nn.ModuleList(prior_heads),
            nn.ModuleList(posterior_heads),
        )
        self.decoder, self.latent_dims, self.residual = (
            decoder,
            tuple(int(d) for d in latent_dims),
            residual,
        )
        self.register_buffer("top_loc", torch.zeros(latent_dims[-1]))
        self.register_buffer("top_scale", torch.ones(latent_dims[-1]))

    # -- sizes and helpers ---

    @property
    def layers(self) -> int:
        return len(self.latent_dims)

    @property
    def latent_dim(self) -> int:
        """All latents together: sum of D_l."""
        return sum(self.latent_dims)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.decoder.x_shape)

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """z ``[..., sum D_l]`` -> [z_1, ..., z_L], each ``[..., D_l]``."""
        check_tensor("z", z, floating=True)
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z must have {self.latent_dim} = "
                f"{' + '.join(map(str, self.latent_dims))} latents (layers "
                f"1..{self.layers}) in its last axis, got shape {tuple(z.shape)}"
            )
        return list(z.split(self.latent_dims, dim=-1))

    def _check_layer(self, layer) -> int:
        if (
            isinstance(layer, bool)
            or not isinstance(layer, int)
            or not 1 <= layer <= self.layers
        ):
            raise ValueError(
                "layer must be an int from 1 (nearest the data) to "
                f"{self.layers}, got {layer!r}"
            )
        return layer

    # -- the two passes ---

    def bottom_up_pass(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[d_1, ..., d_L], each ``[B, F_l]``."""
        check_tensor("x", x, floating=True, nonempty=True)
        check_matches("x", x, self)
        if tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.x_shape))}], "
                f"got {tuple(x.shape)}"
            )
        d, out = x.flatten(1), []
        for f in self.bottom_up:
            d = f(d)
            out.append(d)
        return out

    def top_down_pass(
        self,
        features: list[torch.Tensor] | None = None,
        z: torch.Tensor | None = None,
        sample_shape=torch.Size(),
        mean: bool = False,
        fixed: dict[int, torch.Tensor] | None = None,
    ) -> list[Layer]:
        """The shared top-down pass, layer L down to 1; returns the layers, layer 1
        first.

        features: the bottom-up features (posterior pass) or None (the prior alone).
        z: all latents ``[..., sum D_l]`` to score instead of drawing (``log_prob``);
            else each layer is drawn, reparameterized, from q (or p without features),
            with ``sample_shape`` in front (or its mean, ``mean=True``); ``fixed`` maps
            a layer number to a value to use for that layer.
        """
        given = None if z is None else self.split(z)
        fixed = fixed or {}
        top = self.layers - 1
        if given is not None:
            lead = given[top].shape[:-1]
        else:
            lead = torch.Size(sample_shape) + (
                features[0].shape[:1] if features is not None else torch.Size()
            )
        layers: list[Layer] = [None] * self.layers
        above = None  # z_{l+1}
        for i in reversed(range(self.layers)):
            if i == top:  # p(z_L) = N(0, I), spread over every sample and example
                mu_p, sigma_p = (
                    self.top_loc.expand(*lead, -1),
                    self.top_scale.expand(*lead, -1),
                )  # (*S, B, D_L)
            else:
                h = self.top_down[i](
                    above
                )  # (*S, B, H_l): the top-down feature, shared by p and q
                mu_p, pre_p = self.prior_heads[i](h).chunk(
                    2, dim=-1
                )  # (*S, B, D_l) each
                sigma_p = positive_scale(pre_p)
            p = dist = _normal(mu_p, sigma_p)
            q = kl = None
            if features is not None:
                d = features[i]  # (B, F_l)
                inp = (
                    d
                    if i == top
                    else torch.cat([h, d.expand(*h.shape[:-1], d.shape[-1])], -1)
                )
                a, pre = (
                    self.posterior_heads[i](inp)
                    .expand(*mu_p.shape[:-1], -1)
                    .chunk(2, dim=-1)
                )  # (*S, B, D_l)
                if self.residual:  # NVAE: relative to the prior
                    delta_sigma = positive_scale(pre)
                    q = _normal(mu_p + a, sigma_p * delta_sigma)
                    kl = residual_normal_kl(a, delta_sigma, sigma_p).sum(-1)  # (*S, B)
                else:
                    q = _normal(a, positive_scale(pre))
                    kl = torch.distributions.kl_divergence(
                        q.base_dist, p.base_dist
                    ).sum(-1)  # (*S, B)
                dist = q
            if (i + 1) in fixed:
                zi = fixed[i + 1].expand(*dist.batch_shape, -1)
            elif given is not None:
                zi = given[i]
            else:
                zi = dist.mean if mean else dist.rsample()
            layers[i] = Layer(zi, p, q, kl)
            above = zi
        return layers

    # -- the VAE interface ---

    def encode(self, x: torch.Tensor) -> "HierarchicalPosterior":
        """q(z | x) over all the latents, ``[B]`` batch, ``[sum D_l]`` event."""
        return HierarchicalPosterior(self, self.bottom_up_pass(x))

    @property
    def prior(self) -> "HierarchicalPrior":
        """p(z) over all the latents, ``[sum D_l]`` event."""
        return HierarchicalPrior(self)

    def decode(self, z: torch.Tensor):
        """p(x | z_1) for all the latents z ``[..., sum D_l]`` (only layer 1 reaches the
        pixels)."""
        return self.decoder(self.split(z)[0])

    def terms(self, x: torch.Tensor, k: int = 1) -> HierarchicalTerms:
        """One bottom-up and one top-down pass with ``k`` reparameterized samples per
        example: the reconstruction ``[B]`` and each layer's KL ``[L, B]`` (analytic
        given the layers above)."""
        check_positive_int(k=k)
        layers = self.top_down_pass(self.bottom_up_pass(x), sample_shape=(k,))
        px = self.decoder(layers[0].z)  # batch (k, B)
        rec = px.log_prob(check_likelihood_input(px, x)).mean(0)  # (B,)
        return HierarchicalTerms(
            rec, torch.stack([layer.kl.mean(0) for layer in layers])
        )

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True) -> torch.Tensor:
        """``n`` new images ``[n, *x_shape]``: z_L, ..., z_1 drawn layer by layer, then
        E[x|z_1] (``mean=True``) or x ~ p(x|z_1)."""
        check_positive_int(n=n)
        px = self.decode(self.prior.sample((n,)))
        return px.mean if mean else px.sample()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z_1] along the posterior's mean path (each layer at its mean given the
        ones above)."""
        return self.decode(self.encode(x).mean).mean

    @torch.no_grad()
    def resample(
        self, x: torch.Tensor, layer: int, n: int, mean: bool = True
    ) -> torch.Tensor:
        """What the layers above ``layer`` hold about each digit: those layers fixed at
        the posterior's mean path for ``x``, layer ``layer`` and the ones below drawn
        ``n`` times from the prior's conditionals. ``[n, B, *x_shape]``; ``layer = L``
        gives unconditional samples."""
        self._check_layer(layer)
        check_positive_int(n=n)
        path = self.top_down_pass(
            self.bottom_up_pass(x), mean=True
        )  # each layer (B, D_l)
        fixed = {l: path[l - 1].z for l in range(layer + 1, self.layers + 1)}
        layers = self.top_down_pass(sample_shape=(n, x.shape[0]), fixed=fixed)
        px = self.decoder(layers[0].z)  # batch (n, B)
        return px.mean if mean else px.sample()

    def top_layer_decoder(self) -> "TopLayerDecoder":
        """A view with ``decode(z_L)`` and ``latent_dim = D_L``: the layers below at
        their prior means given z_L, then E[x | z_1]. For sliders over the top layer."""
        return TopLayerDecoder(self)

    @classmethod
    def mlp(
        cls,
        x_shape: Sequence[int] = (1, 28, 28),
        latent_dims: Sequence[int] = (32, 16),
        hidden: Sequence[int] = (200, 100),
        activation: str = "relu",
        likelihood: str = "bernoulli",
        sigma: float | None = None,
        residual: bool = True,
    ) -> "HierarchicalVAE":
        """MLPs throughout: the bottom-up pass x -> hidden[0] -> ... -> hidden[L-1]
        (each followed by ``activation``), the top-down features h_l =
        act(Linear(z_{l+1})) of size hidden[l-1], linear heads, and a decoder z_1 ->
        hidden[0] -> pixels."""
        if isinstance(latent_dims, int) or isinstance(hidden, int):
            raise ValueError(
                "latent_dims and hidden must be sequences, one size per layer "
                f"(e.g. (32, 16) and (200, 100)), got {latent_dims!r} and {hidden!r}"
            )
        if len(latent_dims) < 1:
            raise ValueError(
                f"latent_dims must give L >= 1 layer sizes, got {tuple(latent_dims)}"
            )
        if len(hidden) != len(latent_dims):
            raise ValueError(
                "hidden must give one feature size per layer "
                f"({len(latent_dims)}), got {tuple(hidden)}"
            )
        for i, h in enumerate(hidden):
            check_positive_int(**{f"hidden[{i}]": h})
        for i, d in enumerate(latent_dims):
            check_positive_int(**{f"latent_dims[{i}]": d})
        act = _activation(activation)
        sizes = [math.prod(x_shape), *hidden]
        bottom_up = [
            nn.Sequential(nn.Linear(a, b), act()) for a, b in zip(sizes[:-1], sizes[1:])
        ]
        top_down = [
            nn.Sequential(nn.Linear(latent_dims[i + 1], hidden[i]), act())
            for i in range(len(hidden) - 1)
        ]
        prior_heads = [
            nn.Linear(hidden[i], 2 * latent_dims[i]) for i in range(len(hidden) - 1)
        ]
        posterior_heads = [
            nn.Linear(2 * hidden[i], 2 * latent_dims[i]) for i in range(len(hidden) - 1)
        ]
        posterior_heads.append(nn.Linear(hidden[-1], 2 * latent_dims[-1]))
        decoder = Decoder(
            mlp([latent_dims[0], hidden[0], math.prod(x_shape)], activation),
            x_shape,
            likelihood,
            sigma,
        )
        return cls(
            bottom_up,
            top_down,
            prior_heads,
            posterior_heads,
            decoder,
            latent_dims,
            residual,
        )


class TopLayerDecoder(nn.Module):
    """``decode(z_L)``: z_L ``[..., D_L]`` -> p(x | z_1) with z_{L-1}, ..., z_1 at their
    prior means."""

    def __init__(self, model: HierarchicalVAE):
        super().__init__()
        self.model = model
        self.latent_dim = model.latent_dims[-1]

    def decode(self, z_top: torch.Tensor):
        check_tensor("z_top", z_top, floating=True)
        if z_top.dim() == 0 or z_top.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z_top must have the top layer's {self.latent_dim} latents in its "
                "last axis, "
                f"got shape {tuple(z_top.shape)}"
            )
        m, above = self.model, z_top
        for i in reversed(range(m.layers - 1)):
            above = m.prior_heads[i](m.top_down[i](above)).chunk(2, dim=-1)[0]
        return m.decoder(above)


class HierarchicalPosterior(Distribution):
    """q(z | x) = q(z_L | x) prod_l q(z_l | z_{l+1}, x) over z = [z_1, ..., z_L], batch
    ``[B]``."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: HierarchicalVAE, features: list[torch.Tensor]):
        self.model, self.features = model, features
        super().__init__(
            features[0].shape[:1], torch.Size([model.latent_dim]), validate_args=False
        )

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        layers = self.model.top_down_pass(self.features, sample_shape=sample_shape)
        return torch.cat([layer.z for layer in layers], -1)  # (*S, B, sum D)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        layers = self.model.top_down_pass(self.features, z=z)
        return sum(layer.q.log_prob(layer.z) for layer in layers)

    def layers(self, sample_shape=torch.Size()) -> list[Layer]:
        """One top-down pass: each layer's sample, prior, posterior and KL."""
        return self.model.top_down_pass(self.features, sample_shape=sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        """The mean path: each layer at its posterior mean given the layers above at
        theirs (E_q[z|x] exactly at the top layer and wherever the top-down maps are
        linear)."""
        return torch.cat(
            [layer.z for layer in self.model.top_down_pass(self.features, mean=True)],
            -1,
        )


class HierarchicalPrior(Distribution):
    """p(z) = p(z_L) prod_l p(z_l | z_{l+1}) over z = [z_1, ..., z_L]."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, model: HierarchicalVAE):
        self.model = model
        super().__init__(
            torch.Size(), torch.Size([model.latent_dim]), validate_args=False
        )

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return torch.cat(
            [layer.z for layer in self.model.top_down_pass(sample_shape=sample_shape)],
            -1,
        )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return sum(layer.p.log_prob(layer.z) for layer in self.model.top_down_pass(z=z))

    @property
    def mean(self) -> torch.Tensor:
        """The mean path of the prior (exact where the top-down maps are linear)."""
        return torch.cat([layer.z for layer in self.model.top_down_pass(mean=True)], -1)


def hierarchical_elbo(
    model: HierarchicalVAE,
    x: torch.Tensor,
    k: int = 1,
    beta: float = 1.0,
    free_bits: float = 0.0,
) -> torch.Tensor:
    """The ELBO per example ``[B]`` (nats) from :meth:`HierarchicalVAE.terms`:
    reconstruction minus ``beta`` times the sum of the layers' analytic KLs. ``beta`` <
    1 for KL warm-up; ``free_bits`` > 0 counts each layer's batch-mean KL as at least
    that many nats (free bits per group, Kingma et al. 2016), so the top layer is not
    pushed to zero before it is used. At ``beta = 1, free_bits = 0`` it equals, in
    expectation, ``vaekit.elbo(model, x)``, whose KL is sampled."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    if (
        isinstance(free_bits, bool)
        or not isinstance(free_bits, (int, float))
        or not free_bits >= 0
    ):
        raise ValueError(
            f"free_bits must be a number >= 0 (nats per layer), got {free_bits!r}"
        )
    t = model.terms(x, k)
    kl = t.kl  # (L, B)
    if free_bits > 0:
        below = kl.mean(1, keepdim=True) < free_bits  # (L, 1)
        kl = torch.where(below, torch.full_like(kl, free_bits), kl)
    return t.reconstruction - beta * kl.sum(0)


__all__ = [
    "HierarchicalVAE",
    "HierarchicalPosterior",
    "HierarchicalPrior",
    "HierarchicalTerms",
    "Layer",
    "TopLayerDecoder",
    "hierarchical_elbo",
    "positive_scale",
    "positive_scale_inverse",
    "residual_normal_kl",
]
