"""The semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014): M2, and M1's features.

M2 is a generative model p(y) p(z) p(x|y, z) with the class y a latent variable that is sometimes
observed. Three networks, each returning a ``torch.distributions`` object:

* ``classify(x)``: q(y|x), a ``Categorical`` over ``num_classes`` (the classifier);
* ``encode(x, y)``: q(z|x, y), a diagonal Gaussian over the style latent z;
* ``decode(z, y)``: p(x|y, z), the class-conditional decoder (Bernoulli or Gaussian pixels).

The bounds, in nats per example (shape ``[B]``):

* labelled, L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z)) <= log p(x, y);
* unlabelled, U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) <= log p(x), with the sum over the classes
  done exactly: all ten L(x, y) of a batch come from one pass over ``[10, B]`` rows.

:class:`M2Objective` combines them with the classification term as Kingma et al. do (their Eq. 9);
:func:`log_marginal` estimates log p(x) by importance sampling for checks. M1 is a plain
:class:`vaekit.VAE`: :func:`vaekit.metrics.posterior_means` gives its features, and
:func:`fit_classifier` trains a classifier on them (or on pixels: the supervised baseline).
:class:`M1M2` stacks them as Kingma et al. did for their best numbers: an M2 built with
:meth:`M2.on_features` (Gaussian p(z1|y, z2), :class:`FeatureDecoder`) models M1's standardized
latents z1, and reads and writes pixels through M1's encoder and decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, kl_divergence

from ..device import module_device
from ..distributions import StandardNormal, diag_gaussian
from ..nets import Decoder, _activation, mlp
from ..train import fit
from ..utils import (
    check_data,
    check_labels,
    check_likelihood_input,
    check_positive_int,
    check_positive_number,
    check_tensor,
)


class Classifier(nn.Module):
    """x ``[B, *x_shape]`` -> q(y|x) = Categorical(logits = MLP(x)); ``hidden=()`` is logistic regression."""

    def __init__(
        self,
        x_shape: Sequence[int],
        num_classes: int = 10,
        hidden: Sequence[int] = (500,),
        activation: str = "softplus",
    ):
        super().__init__()
        self.x_shape, self.num_classes = tuple(x_shape), num_classes
        self.net = nn.Sequential(
            nn.Flatten(), mlp([math.prod(x_shape), *hidden, num_classes], activation)
        )

    def forward(self, x: torch.Tensor) -> Categorical:
        _check_x(x, self.x_shape, self)
        return Categorical(logits=self.net(x), validate_args=False)


class ConditionalEncoder(nn.Module):
    """(x, one-hot y) -> q(z|x, y) = N(mu, diag sigma^2) with a first layer A x + B y: the image's
    projection A x ``[B, H]`` is computed once and broadcast against every class's B y ``[K, 1, H]``."""

    def __init__(
        self,
        x_shape: Sequence[int],
        num_classes: int,
        latent_dim: int,
        hidden: int = 500,
        activation: str = "softplus",
    ):
        super().__init__()
        self.x_shape, self.latent_dim = tuple(x_shape), latent_dim
        self.x_proj = nn.Linear(math.prod(x_shape), hidden)
        self.y_proj = nn.Linear(num_classes, hidden, bias=False)
        self.act = _activation(activation)()
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: torch.Tensor, y_onehot: torch.Tensor):
        h = self.act(self.x_proj(x.flatten(1)) + self.y_proj(y_onehot))  # (..., B, H)
        mu, pre_scale = self.head(h).chunk(2, dim=-1)  # (..., B, D) each
        return diag_gaussian(mu, F.softplus(pre_scale) + 1e-6)


class M2(nn.Module):
    """Kingma et al.'s M2: p(y) uniform, p(z) = N(0, I), p(x|y, z); q(y|x) and q(z|x, y).

    Build one with :meth:`mlp`, or from any classifier, conditional encoder and decoder (the
    decoder receives ``cat([z, onehot(y)], -1)``). Labels ``y`` are int64 class indices.
    """

    def __init__(
        self,
        classifier: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        num_classes: int = 10,
    ):
        super().__init__()
        check_positive_int(latent_dim=latent_dim, num_classes=num_classes)
        self.classifier, self.encoder, self.decoder = classifier, encoder, decoder
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.prior_net = StandardNormal(latent_dim)

    @property
    def prior(self):
        """p(z) = N(0, I)."""
        return self.prior_net()

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.decoder.x_shape)

    @property
    def log_py(self) -> float:
        """log p(y) of the uniform class prior."""
        return -math.log(self.num_classes)

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        check_tensor("y", y, integer=True, min_value=0, max_value=self.num_classes - 1)
        return F.one_hot(y, self.num_classes).to(self.prior_net.loc.dtype)

    def classify(self, x: torch.Tensor) -> Categorical:
        return self.classifier(x)

    def encode(self, x: torch.Tensor, y: torch.Tensor):
        """q(z|x, y) for labels ``y`` ``[B]`` (int64), or one-hot rows ``[..., B, K]`` (float)."""
        _check_x(x, self.x_shape, self)
        return self.encoder(x, y if y.is_floating_point() else self.onehot(y))

    def decode(self, z: torch.Tensor, y: torch.Tensor):
        """p(x|y, z) for z ``[..., D]`` and labels (or one-hot rows) broadcastable against it."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"z must have {self.latent_dim} latent dimensions in its last axis, got shape {tuple(z.shape)}"
            )
        y1 = y if y.is_floating_point() else self.onehot(y)
        y1 = y1.expand(*z.shape[:-1], self.num_classes)
        return self.decoder(torch.cat([z, y1], -1))

    @property
    def device(self) -> torch.device:
        return module_device(self)

    @classmethod
    def mlp(
        cls,
        x_shape: Sequence[int] = (1, 28, 28),
        latent_dim: int = 50,
        hidden: int = 500,
        num_classes: int = 10,
        activation: str = "softplus",
        likelihood: str = "bernoulli",
        sigma: float | None = None,
    ) -> "M2":
        """One hidden layer of ``hidden`` units in each network (Kingma et al.: 500, softplus, z of 50)."""
        return cls(
            Classifier(x_shape, num_classes, (hidden,), activation),
            ConditionalEncoder(x_shape, num_classes, latent_dim, hidden, activation),
            Decoder.mlp(
                x_shape,
                latent_dim + num_classes,
                (hidden,),
                activation,
                likelihood,
                sigma,
            ),
            latent_dim,
            num_classes,
        )

    @classmethod
    def on_features(
        cls,
        feature_dim: int,
        latent_dim: int = 10,
        hidden: int = 500,
        num_classes: int = 10,
        activation: str = "softplus",
        classifier_hidden: Sequence[int] | None = None,
    ) -> "M2":
        """M2 over real feature vectors ``[feature_dim]`` (the stacked M1 + M2): Gaussian p(x|y, z)
        (:class:`FeatureDecoder`); ``classifier_hidden`` defaults to ``(hidden,)``."""
        clf_hidden = (
            (hidden,) if classifier_hidden is None else tuple(classifier_hidden)
        )
        return cls(
            Classifier((feature_dim,), num_classes, clf_hidden, activation),
            ConditionalEncoder(
                (feature_dim,), num_classes, latent_dim, hidden, activation
            ),
            FeatureDecoder(
                latent_dim + num_classes, feature_dim, (hidden,), activation
            ),
            latent_dim,
            num_classes,
        )


class FeatureDecoder(nn.Module):
    """z ``[..., D_in]`` -> N(mu, diag sigma^2) over real feature vectors ``[F]`` (M1's latents, for
    M1 + M2): an MLP gives the mean, and the scale is learned per feature dimension."""

    def __init__(
        self,
        in_dim: int,
        feature_dim: int,
        hidden: Sequence[int] = (500,),
        activation: str = "softplus",
    ):
        super().__init__()
        self.x_shape = (feature_dim,)
        self.body = mlp([in_dim, *hidden, feature_dim], activation)
        self.log_sigma = nn.Parameter(torch.zeros(feature_dim))

    def forward(self, z: torch.Tensor):
        mu = self.body(z)  # (..., F)
        return diag_gaussian(mu, self.log_sigma.exp().expand_as(mu))


def _check_x(x, x_shape, model=None) -> None:
    check_data("x", x, model)
    if tuple(x.shape[1:]) != tuple(x_shape):
        raise ValueError(
            f"x must have shape [B, {', '.join(map(str, x_shape))}], got {tuple(x.shape)}"
        )


def _bound(
    model: M2,
    x: torch.Tensor,
    y1: torch.Tensor,
    k: int,
    eps: torch.Tensor | None,
    analytic_kl: bool = True,
) -> torch.Tensor:
    """L(x, y) for one-hot rows ``y1`` broadcastable to ``[..., B, K]``: shape ``[..., B]``."""
    q = model.encode(x, y1)  # batch (..., B)
    if eps is None:
        z = q.rsample((k,))  # (k, ..., B, D)
    else:
        if tuple(eps.shape) != (k, *q.batch_shape, model.latent_dim):
            raise ValueError(
                f"eps must have shape {[k, *q.batch_shape, model.latent_dim]}, got {list(eps.shape)}"
            )
        z = q.mean + q.stddev * eps
    px = model.decode(z, y1)
    log_px = px.log_prob(check_likelihood_input(px, x))  # (k, ..., B)
    if analytic_kl:
        return log_px.mean(0) + model.log_py - kl_divergence(q, model.prior)
    return (log_px + model.prior.log_prob(z) - q.log_prob(z)).mean(0) + model.log_py


def labelled_bound(
    model: M2,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int = 1,
    eps: torch.Tensor | None = None,
    analytic_kl: bool = True,
) -> torch.Tensor:
    """L(x, y) ``[B]`` nats, a lower bound on log p(x, y), with ``k`` reparameterized samples of z
    each (or the standard-normal noise ``eps`` ``[k, B, D]`` given, for common random numbers).
    ``analytic_kl``: the KL to p(z) in closed form (estimator B); else log p(z) - log q(z|x, y) on
    the same samples (estimator A, exact with one sample when q is the true posterior)."""
    check_positive_int(k=k)
    _check_x(x, model.x_shape, model)
    check_labels("y", y, model.num_classes, n=x.shape[0])
    return _bound(model, x, model.onehot(y), k, eps, analytic_kl)


def class_bounds(
    model: M2,
    x: torch.Tensor,
    k: int = 1,
    eps: torch.Tensor | None = None,
    analytic_kl: bool = True,
) -> torch.Tensor:
    """L(x, y) for every class y at once, ``[B, K]``: one pass over ``[K, B]`` rows (``eps``: ``[k, K, B, D]``)."""
    check_positive_int(k=k)
    _check_x(x, model.x_shape, model)
    eye = torch.eye(
        model.num_classes, dtype=model.prior_net.loc.dtype, device=x.device
    )[:, None, :]  # (K, 1, K)
    return _bound(model, x, eye, k, eps, analytic_kl).T  # (K, B) -> (B, K)


def unlabelled_bound(
    model: M2,
    x: torch.Tensor,
    k: int = 1,
    eps: torch.Tensor | None = None,
    analytic_kl: bool = True,
) -> torch.Tensor:
    """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)), ``[B]`` nats: a lower bound on log p(x), y summed exactly."""
    qy = model.classify(x)
    return (qy.probs * class_bounds(model, x, k, eps, analytic_kl)).sum(
        -1
    ) + qy.entropy()


def sampled_unlabelled_bound(model: M2, x: torch.Tensor, k: int = 1) -> torch.Tensor:
    """One-sample estimate of U(x), ``[B]``: y ~ q(y|x), then L(x, y) - log q(y|x). Unbiased for U(x)
    (its expectation over y is the enumerated sum), but noisier, and its gradient with respect to
    the classifier would need a score-function estimator: the reason M2 sums over y instead."""
    qy = model.classify(x)
    y = qy.sample()
    return labelled_bound(model, x, y, k) - qy.log_prob(y)


@torch.no_grad()
def log_marginal(model: M2, x: torch.Tensor, k: int = 1000) -> torch.Tensor:
    """Importance-sampled log p(x) = log sum_y p(y) p(x|y), ``[B]`` nats: for each class,
    log p(x|y) ~= log (1/k) sum_i p(x|y, z_i) p(z_i) / q(z_i|x, y) with z_i ~ q(z|x, y). Its
    expectation is a lower bound that tightens to log p(x) as ``k`` grows."""
    check_positive_int(k=k)
    _check_x(x, model.x_shape, model)
    eye = torch.eye(
        model.num_classes, dtype=model.prior_net.loc.dtype, device=x.device
    )[:, None, :]  # (K, 1, K)
    q = model.encode(x, eye)  # batch (K, B)
    z = q.sample((k,))  # (k, K, B, D)
    px = model.decode(z, eye)
    lw = (
        px.log_prob(check_likelihood_input(px, x))
        + model.prior.log_prob(z)
        - q.log_prob(z)
    )  # (k, K, B)
    log_px_given_y = torch.logsumexp(lw, 0) - math.log(k)  # (K, B)
    return torch.logsumexp(log_px_given_y + model.log_py, 0)


@dataclass
class M2Objective:
    """Kingma et al.'s semi-supervised objective (their Eq. 9) as a loss per step for :func:`vaekit.fit`:

    J^alpha = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha * E_labelled[log q(y|x)],

    divided by the number N of digits, the sums estimated from the unlabelled minibatch ``x`` that
    ``fit`` passes and a labelled minibatch of ``labelled_batch`` drawn here each step. With the
    paper's alpha = 0.1 N the classification term weighs ``alpha_per_digit = 0.1`` nats per nat of
    bound. ``transform`` (e.g. dynamic binarization) is applied to the labelled batch; ``fit``'s
    own ``transform`` does the unlabelled one.
    """

    x_labelled: torch.Tensor
    y_labelled: torch.Tensor
    n_unlabelled: int
    alpha_per_digit: float = 0.1
    labelled_batch: int = 100
    transform: object = None
    labelled_weight: float | None = None

    def __call__(self, model: M2, x: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = torch.randint(
            self.x_labelled.shape[0],
            (self.labelled_batch,),
            device=self.x_labelled.device,
        )
        xl, yl = self.x_labelled[idx], self.y_labelled[idx]
        xl = self.transform(xl) if self.transform is not None else xl
        n_l = self.x_labelled.shape[0]
        w_l, w_u = (
            n_l / (n_l + self.n_unlabelled),
            self.n_unlabelled / (n_l + self.n_unlabelled),
        )
        if self.labelled_weight is not None:
            w_l = self.labelled_weight
        bound_l, bound_u = (
            labelled_bound(model, xl, yl).mean(),
            unlabelled_bound(model, x).mean(),
        )
        log_qy = model.classify(xl).log_prob(yl).mean()
        loss = -(w_l * bound_l + w_u * bound_u + self.alpha_per_digit * log_qy)
        return {
            "loss": loss,
            "labelled_bound": bound_l,
            "unlabelled_bound": bound_u,
            "log_qy": log_qy,
        }


@torch.no_grad()
def posterior_moments(
    vae: nn.Module, x: torch.Tensor, batch_size: int = 1000
) -> torch.Tensor:
    """Mean and standard deviation of a VAE's q(z|x) for every digit, ``[N, 2, D]`` (``[:, 0]`` the
    means, ``[:, 1]`` the standard deviations), in batches on the VAE's device; returned there."""
    check_positive_int(batch_size=batch_size)
    device = module_device(vae)
    parts = []
    for i in range(0, x.shape[0], batch_size):
        q = vae.encode(x[i : i + batch_size].to(device))
        parts.append(torch.stack([q.mean, q.stddev], 1))  # (b, 2, D)
    return torch.cat(parts)


class M1M2(nn.Module):
    """Kingma et al.'s stacked model: an M2 whose "images" are the latents z1 of a trained VAE (M1).

    ``features(x)`` standardizes E[q(z1|x)] with ``loc`` and ``scale``, the mean and standard deviation
    of z1 ~ q(z1|x) over the digits whose ``moments`` (:func:`posterior_moments`) are given: the
    spread of the means plus the mean posterior variance, so an unused latent (mean near 0,
    variance near 1) stays near 0 instead of being blown up to unit spread. ``sample_features``
    draws standardized z1 ~ q(z1|x) from moments ``[B, 2, D]`` (a :func:`vaekit.fit` transform).
    ``classify``, ``encode`` and ``decode`` take and give pixels, so :func:`analogies`,
    :class:`ClassDecoder` and :func:`predict` (``forward`` is ``classify``) work on it as on M2:
    ``decode(z, y)`` is M1's p(x | z1 = E[z1 | y, z]).
    """

    def __init__(self, m1: nn.Module, m2: M2, moments: torch.Tensor):
        super().__init__()
        if (
            moments.dim() != 3
            or moments.shape[1] != 2
            or moments.shape[2] != m2.x_shape[0]
        ):
            raise ValueError(
                f"moments must have shape [N, 2, {m2.x_shape[0]}] (posterior_moments), got {list(moments.shape)}"
            )
        self.m1, self.m2 = m1, m2
        self.latent_dim, self.num_classes = m2.latent_dim, m2.num_classes
        mean, sd = moments[:, 0], moments[:, 1]
        self.register_buffer("loc", mean.mean(0))
        self.register_buffer(
            "scale", (mean.var(0, unbiased=False) + sd.pow(2).mean(0)).sqrt()
        )

    def sample_features(self, moments: torch.Tensor) -> torch.Tensor:
        z1 = moments[:, 0] + moments[:, 1] * torch.randn_like(moments[:, 0])  # (B, D)
        return (z1 - self.loc) / self.scale

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.m1.encode(x).mean - self.loc) / self.scale

    def classify(self, x: torch.Tensor) -> Categorical:
        return self.m2.classify(self.features(x))

    forward = classify

    def encode(self, x: torch.Tensor, y: torch.Tensor):
        return self.m2.encode(self.features(x), y)

    def decode(self, z: torch.Tensor, y: torch.Tensor):
        return self.m1.decode(self.m2.decode(z, y).mean * self.scale + self.loc)


class ClassDecoder(nn.Module):
    """M2's decoder with the class held fixed: ``decode(z)`` is p(x|y = ``label``, z) and
    ``latent_dim`` is M2's, so the VAE tools (``vaekit.figures.widgets.latent_sliders``, traversals) work
    on one class at a time. Set ``label`` to switch class."""

    def __init__(self, model: M2, label: int = 0):
        super().__init__()
        self.model, self.label, self.latent_dim = model, label, model.latent_dim

    def decode(self, z: torch.Tensor):
        return self.model.decode(
            z,
            torch.full(
                z.shape[:-1], int(self.label), dtype=torch.long, device=z.device
            ),
        )


@torch.no_grad()
def analogies(model: M2, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kingma et al.'s Fig. 1: fix each image's style z = E[q(z|x, y)] and decode it with every
    class. Returns the means E[x|y', z], ``[N, K, *x_shape]`` on the CPU in x's dtype; row i, column y'."""
    check_data("x", x, model)
    check_labels("y", y, model.num_classes, n=x.shape[0])
    z = model.encode(x, y).mean  # (N, D)
    labels = torch.arange(model.num_classes, device=z.device)[:, None].expand(
        -1, z.shape[0]
    )  # (K, N)
    return (
        model.decode(z.expand(model.num_classes, *z.shape), labels)
        .mean.transpose(0, 1)
        .cpu()
    )


class BestOnValidation:
    """Early stopping chosen on validation digits, never on test ones: a :func:`vaekit.fit` callback
    that every ``every`` optimizer steps scores ``classify(model)`` on a labelled validation set, logs
    ``steps`` and ``errors``, and keeps a copy of the parameters with the lowest error (``best_state``,
    ``best_error``, ``best_step``). Counting steps, not epochs, keeps its schedule the same for any data size."""

    def __init__(
        self,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        every: int = 100,
        classify=lambda m: m.classifier,
    ):
        check_positive_int(every=every)
        self.x_val, self.y_val, self.every, self.classify = (
            x_val,
            y_val,
            every,
            classify,
        )
        self.best_error, self.best_state, self.best_step, self.steps, self.errors = (
            math.inf,
            None,
            0,
            [],
            [],
        )

    def on_step(self, state) -> None:
        if state.step % self.every == 0:
            state.model.eval()
            self.score(state.model, state.step)
            state.model.train()

    def score(self, model: nn.Module, step: int) -> float:
        err = error_rate(self.classify(model), self.x_val, self.y_val)
        self.steps.append(step)
        self.errors.append(err)
        if err < self.best_error:
            self.best_error, self.best_step = err, step
            self.best_state = {
                k: v.detach().clone() for k, v in model.state_dict().items()
            }
        return err


def fit_m2(
    model: M2,
    x_labelled: torch.Tensor,
    y_labelled: torch.Tensor,
    x_unlabelled: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    steps: int,
    alpha_per_digit: float = 0.1,
    every: int = 100,
    labelled_weight: float | None = None,
    transform=None,
    classify=lambda m: m.classifier,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    device=None,
    desc: str = "M2",
    progress: bool = True,
) -> BestOnValidation:
    """Train ``model`` on :class:`M2Objective` for ``steps`` optimizer steps with :func:`vaekit.fit`,
    scoring ``classify(model)`` on the validation digits every ``every`` steps and at the end, and
    leave ``model`` at its lowest validation error (early stopping on validation digits). Returns the
    :class:`BestOnValidation` log (``steps``, ``errors``, ``best_step``, ``best_error``)."""
    check_positive_int(steps=steps, every=every, batch_size=batch_size)
    check_positive_number(lr=lr)
    alpha = alpha_per_digit
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not 0 <= alpha < math.inf
    ):
        raise ValueError(
            f"alpha_per_digit must be a number >= 0, got {alpha_per_digit!r}"
        )
    # with a transform (M1 + M2: posterior moments in, sampled features out) the data reach M2 only through
    # it, and the validation digits reach ``classify`` as they are: their shapes are those callables' business
    shape = model.x_shape if transform is None else None
    for name, x in (
        ("x_labelled", x_labelled),
        ("x_unlabelled", x_unlabelled),
        ("x_val", x_val),
    ):
        check_data(name, x, shape=shape)
    check_labels("y_labelled", y_labelled, model.num_classes, n=x_labelled.shape[0])
    check_labels("y_val", y_val, model.num_classes, n=x_val.shape[0])
    if device is not None:
        model.to(device)
    dev = module_device(model)
    objective = M2Objective(
        x_labelled.to(dev),
        y_labelled.to(dev),
        n_unlabelled=x_unlabelled.shape[0],
        alpha_per_digit=alpha_per_digit,
        labelled_batch=batch_size,
        transform=transform,
        labelled_weight=labelled_weight,
    )
    keep = BestOnValidation(x_val, y_val, every=every, classify=classify)
    fit(
        model,
        objective,
        x_unlabelled,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        transform=transform,
        device=dev,
        seed=seed,
        desc=desc,
        callbacks=[keep],
        progress=progress,
    )
    keep.score(model, steps)
    model.load_state_dict(keep.best_state)
    return keep


@torch.no_grad()
def predict(classifier, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The most probable class under ``classifier(x)`` (a ``Categorical``; M2's ``classify``), ``[N]`` int64."""
    check_positive_int(batch_size=batch_size)
    check_tensor("x", x, floating=True, nonempty=True)
    device = module_device(classifier)
    return torch.cat(
        [
            classifier(x[i : i + batch_size].to(device)).logits.argmax(-1)
            for i in range(0, x.shape[0], batch_size)
        ]
    )


def error_rate(classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``classifier`` (x -> Categorical) labels wrongly."""
    check_tensor("x", x, floating=True, nonempty=True)
    check_labels(
        "y", y, n=x.shape[0]
    )  # [N, 1] against [N] would broadcast to an [N, N] comparison
    return float((predict(classifier, x).cpu() != y.cpu()).double().mean())


def balanced_labels(
    y: torch.Tensor,
    per_class: int,
    generator: torch.Generator | None = None,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of ``per_class`` random examples of every class in ``y`` ``[N]`` (none from ``exclude``)."""
    check_positive_int(per_class=per_class)
    check_labels("y", y)
    allowed = torch.ones_like(y, dtype=torch.bool)
    if exclude is not None:
        allowed[exclude] = False
    picks = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero((y == c) & allowed).flatten()
        if idx.numel() < per_class:
            raise ValueError(
                f"class {c} has {idx.numel()} examples, fewer than per_class={per_class}"
            )
        picks.append(idx[torch.randperm(idx.numel(), generator=generator)[:per_class]])
    return torch.cat(picks)


def cross_entropy_objective(
    classifier, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """-log q(y|x) per example, ``[B]``: the supervised loss, as a :func:`vaekit.fit` objective."""
    return -classifier(x).log_prob(y)


def fit_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    hidden: Sequence[int] = (),
    weight_decays: Sequence[float] = (0.0, 1e-3, 1e-2),
    steps: int = 500,
    lr: float = 1e-3,
    batch_size: int = 100,
    num_classes: int = 10,
    transform=None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Classifier, dict[float, float]]:
    """Train a :class:`Classifier` on (x, y) with Adam for ``steps`` steps, once per weight decay;
    return the one with the lowest error on the validation set and {weight decay: validation error}."""
    check_positive_int(steps=steps, batch_size=batch_size, num_classes=num_classes)
    check_positive_number(lr=lr)
    check_data("x", x)
    check_data("x_val", x_val, shape=tuple(x.shape[1:]))
    check_labels(
        "y", y, num_classes, n=x.shape[0]
    )  # a label of 3.7 is refused, not truncated to 3
    check_labels("y_val", y_val, num_classes, n=x_val.shape[0])
    errors, models = {}, {}
    for wd in weight_decays:
        torch.manual_seed(seed)
        models[wd] = clf = Classifier(tuple(x.shape[1:]), num_classes, tuple(hidden))
        opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=wd)
        fit(
            clf,
            cross_entropy_objective,
            (x, y),
            steps=steps,
            batch_size=batch_size,
            optimizer=opt,
            transform=transform,
            seed=seed,
            progress=progress,
            desc=f"classifier, weight decay {wd:g}",
        )
        errors[wd] = error_rate(clf, x_val, y_val)
    return models[min(errors, key=errors.get)], errors


def paired_error_difference(
    pred_a: torch.Tensor, pred_b: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """Error of ``a`` minus error of ``b`` on the same examples and its paired standard error
    (the standard error of the mean of the per-example differences of the 0/1 errors)."""
    check_labels("y", y)
    check_labels("pred_a", pred_a, n=y.shape[0])
    check_labels("pred_b", pred_b, n=y.shape[0])
    d = (pred_a.cpu() != y.cpu()).double() - (
        pred_b.cpu() != y.cpu()
    ).double()  # (N,) in {-1, 0, 1}
    return float(d.mean()), float(d.std() / math.sqrt(d.numel()))
