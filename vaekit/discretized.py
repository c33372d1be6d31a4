"""Likelihoods for 8-bit grey levels: a discretized logistic over the pixel values, uniform
dequantization, and the per-pixel categorical baseline.

Pixel values are stored as x = n / (bins - 1), n in {0, ..., bins - 1} (``vaekit.data`` keeps 8-bit
images as n / 255). On the continuous axis, value n owns the bin [n / bins, (n + 1) / bins): that is
where uniform dequantization, y = (n + u) / bins with u ~ U(0, 1), puts it. A density p on that axis
then gives each value the probability P(n) = integral of p over its bin; giving the first bin
everything below it and the last bin everything above it makes the probabilities of the ``bins``
values sum to exactly one. By Jensen's inequality (Theis, van den Oord & Bethge 2016, Sec. 3.1),

    E_u[log p((n + u) / bins)] - log(bins)  <=  log P(n),

so a continuous density's log-likelihood on dequantized data, minus log(bins) per dimension, is a
lower bound on a discrete log-likelihood; :class:`DiscretizedLogistic` offers both sides
(``continuous_log_prob`` and ``log_prob``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Distribution, Independent, constraints
from torch.distributions.utils import broadcast_all

from .utils import check_positive_int, check_tensor


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d (Maechler 2012)."""
    d = d.clamp_min(torch.finfo(d.dtype).tiny)
    return torch.where(
        d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d))
    )


def to_levels(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Grey levels x = n / (bins - 1) in [0, 1] -> the integers n (``torch.long``)."""
    check_positive_int(bins=bins)
    check_tensor("x", x)
    if not torch.is_floating_point(x):
        raise TypeError(
            f"x must be a floating-point tensor of grey levels in [0, 1], got dtype {x.dtype}"
        )
    if x.numel():
        lo, hi = torch.aminmax(x)
        if not bool(
            (lo >= 0) & (hi <= 1)
        ):  # a NaN fails here too (it is no grey level)
            raise ValueError(
                f"x must lie in [0, 1] (and not be NaN), got values in [{lo.item():.4g}, {hi.item():.4g}]"
                + (f" with {int(x.isnan().sum())} NaN" if bool(x.isnan().any()) else "")
            )
    n = x * (bins - 1)
    if x.numel() and (n - n.round()).abs().max() > 1e-3:
        raise ValueError(f"x must be on the grid n / {bins - 1} of {bins} grey levels")
    return n.round().long()


def dequantize(
    x: torch.Tensor, bins: int = 256, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform dequantization: grey levels n / (bins - 1) -> y = (n + u) / bins, u ~ U(0, 1) per pixel.

    y lies in the bin [n / bins, (n + 1) / bins) of value n, in [0, 1); on the caller's device and dtype.
    """
    n = to_levels(x, bins).to(x.dtype)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (n + u) / bins


class DiscretizedLogistic(Distribution):
    """A logistic density on the continuous axis, integrated over the bins of ``bins`` grey levels.

    loc, scale: the logistic's location and scale on the continuous axis [0, 1) (any shape; they
    broadcast). A value is a grey level x = n / (bins - 1); its probability is the logistic's mass
    on [n / bins, (n + 1) / bins), with the first bin extended to -inf and the last to +inf, so the
    ``bins`` probabilities sum to one. ``log_prob`` is computed from log-sigmoids, stable far in the
    tails and for small scales. Wrap it in ``Independent`` to make an image one event.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_enumerate_support = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        bins: int = 256,
        validate_args: bool | None = None,
    ):
        check_positive_int(bins=bins)
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        self.loc, self.scale = broadcast_all(loc, scale)
        self.bins = bins
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        new.loc, new.scale, new.bins = (
            self.loc.expand(batch_shape),
            self.scale.expand(batch_shape),
            self.bins,
        )
        super(DiscretizedLogistic, new).__init__(
            torch.Size(batch_shape), validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def _standardize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.loc) / self.scale

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        n = (
            to_levels(value, self.bins)
            if self._validate_args
            else (value * (self.bins - 1)).round()
        )
        n = n.to(self.loc.dtype)
        upper = self._standardize(
            (n + 1) / self.bins
        )  # standardized bin edges, upper > lower
        lower = self._standardize(n / self.bins)
        # interior bins: log(sigmoid(upper) - sigmoid(lower)), computed on the side of the logistic
        # where the CDF is small (sigmoid(-t) = 1 - sigmoid(t) mirrors a right-tail bin to the left)
        right = (upper + lower) > 0
        hi, lo = torch.where(right, -lower, upper), torch.where(right, -upper, lower)
        log_hi, log_lo = F.logsigmoid(hi), F.logsigmoid(lo)
        interior = log_hi + _log1mexp(log_hi - log_lo)
        first, last = (
            F.logsigmoid(upper),
            F.logsigmoid(-lower),
        )  # the edge bins take the tails
        return torch.where(
            n <= 0, first, torch.where(n >= self.bins - 1, last, interior)
        )

    def continuous_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """log of the logistic density at y on the continuous axis (e.g. dequantized data)."""
        t = self._standardize(y)
        return -t - self.scale.log() - 2 * F.softplus(-t)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """P(X <= value) for a grey level ``value``: the logistic CDF at the upper edge of its bin."""
        n = (value * (self.bins - 1)).round()
        upper = torch.sigmoid(self._standardize((n + 1) / self.bins))
        return torch.where(n >= self.bins - 1, torch.ones_like(upper), upper)

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        """The ``bins`` grey levels ``[bins, *batch_shape]`` (or ``[bins, 1, ...]`` with expand=False)."""
        values = torch.linspace(
            0, 1, self.bins, device=self.loc.device, dtype=self.loc.dtype
        )
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1,) + self.batch_shape) if expand else values

    @property
    def mean(self) -> torch.Tensor:
        # E[n] = sum_{m=1}^{bins-1} P(n >= m) = sum_m sigmoid(-(m / bins - loc) / scale); one pass per edge
        total = torch.zeros_like(self.loc)
        for m in range(1, self.bins):
            total = total + torch.sigmoid(-self._standardize(m / self.bins))
        return total / (self.bins - 1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = self._extended_shape(sample_shape)
            u = torch.rand(shape, device=self.loc.device, dtype=self.loc.dtype).clamp(
                1e-6, 1 - 1e-6
            )
            y = self.loc + self.scale * (
                u.log() - torch.log1p(-u)
            )  # a logistic draw on the continuous axis
            n = torch.floor(y * self.bins).clamp(0, self.bins - 1)
            return n / (self.bins - 1)


def discretized_logistic(
    loc: torch.Tensor, scale: torch.Tensor, event_dims: int, bins: int = 256
) -> Independent:
    """Independent discretized-logistic pixels; ``log_prob`` sums over the last ``event_dims``."""
    return Independent(
        DiscretizedLogistic(loc, scale, bins, validate_args=False),
        event_dims,
        validate_args=False,
    )


def pixel_categorical(
    x: torch.Tensor, bins: int = 256, smoothing: float = 1.0
) -> Independent:
    """Independent per-pixel categoricals over the ``bins`` grey levels, fitted to images ``x [N, ...]``.

    Each pixel's probabilities are its counts plus ``smoothing`` (add-one / Laplace smoothing by
    default), normalised, so a value never seen at a pixel still has a finite log-probability. The
    result is one event per image; score images with ``log_prob(to_levels(x))``.
    """
    if not smoothing > 0:
        raise ValueError(
            f"smoothing must be positive (else unseen values get probability 0), got {smoothing!r}"
        )
    n = to_levels(x, bins).flatten(1)  # (N, D)
    d = n.shape[1]
    offsets = torch.arange(d, device=n.device) * bins  # (D,)
    counts = torch.zeros(d * bins, device=x.device, dtype=torch.float64)
    for chunk in n.split(4096):  # bounded memory on full MNIST
        counts += torch.bincount((chunk + offsets).flatten(), minlength=d * bins).to(
            counts
        )
    probs = (counts.reshape(*x.shape[1:], bins) + smoothing).to(x.dtype)
    return Independent(
        Categorical(probs=probs / probs.sum(-1, keepdim=True), validate_args=False),
        x.dim() - 1,
        validate_args=False,
    )


def density_log_prob(px, y: torch.Tensor) -> torch.Tensor:
    """log p(y) of a decoder's distribution read as a density on the continuous axis, per event.

    px: an ``Independent`` over ``DiscretizedLogistic`` pixels (its logistic density is used), a
    ``DiscretizedLogistic`` itself, or any distribution with a density (a ``Normal``: its ``log_prob``).
    """
    base = px.base_dist if isinstance(px, Independent) else px
    if isinstance(base, DiscretizedLogistic):
        lp = base.continuous_log_prob(y)
        dims = px.reinterpreted_batch_ndims if isinstance(px, Independent) else 0
        return lp.flatten(-dims).sum(-1) if dims else lp
    return px.log_prob(y)


def dequantized_bound(
    px: "Independent | DiscretizedLogistic",
    x: torch.Tensor,
    samples: int = 50,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Theis et al.'s lower bound on log P(x) from the density behind ``px``, per image.

    px: an ``Independent`` over :class:`DiscretizedLogistic` pixels (e.g. a decoder's p(x|z)), or
    a ``DiscretizedLogistic`` itself for one value per pixel; x: grey levels of px's shape. Returns
    the Monte Carlo estimate of E_u[log p((n + u) / bins)] - D log(bins) over ``samples``
    dequantizations (D: the event's size), in nats, per event, and its standard error: in
    expectation at most ``px.log_prob(x)``.
    """
    check_positive_int(samples=samples)
    check_tensor("x", x, floating=True)
    base, dims = (
        (px, 0)
        if isinstance(px, DiscretizedLogistic)
        else (px.base_dist, px.reinterpreted_batch_ndims)
    )
    if not isinstance(base, DiscretizedLogistic):
        raise TypeError(
            f"px must be a DiscretizedLogistic or an Independent over one, got {type(base).__name__}"
        )

    event = math.prod(x.shape[x.dim() - dims :]) if dims else 1  # D, pixels per event

    def one_draw():  # log p(y) at one dequantization, per event, minus log(bins) per pixel
        y = dequantize(x, base.bins, generator)
        return density_log_prob(px, y) - event * math.log(base.bins)

    draws = torch.stack([one_draw() for _ in range(samples)])  # (samples, *batch)
    se = (
        draws.std(0) / math.sqrt(samples)
        if samples > 1
        else torch.full_like(draws[0], math.nan)
    )
    return draws.mean(0), se
