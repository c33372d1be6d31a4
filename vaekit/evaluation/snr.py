"""The signal-to-noise ratio of stochastic gradients (Rainforth et al. 2018, "Tighter variational
bounds are not necessarily better").

For a gradient estimate g of one parameter coordinate, SNR = |E[g]| / std[g]. For the
importance-weighted bound L_k with reparameterized samples, Rainforth et al. show that as k grows
the decoder's SNR rises like sqrt(k) while the encoder's falls like 1/sqrt(k): the encoder's true
gradient vanishes faster than its noise. :func:`gradient_samples` draws independent gradient
estimates, :func:`snr` turns them into per-coordinate ratios, :func:`gradient_snr` does both for
the encoder and the decoder of a VAE.

With R repeats, even a coordinate with no signal at all (E[g] = 0) shows an SNR of about
sqrt(2 / (pi R)) (0.15 for R = 30): the estimator's noise floor. :func:`noise_floor` measures it
on the same gradient noise (the samples with their mean removed and random signs), so a measured
SNR can be read against it.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from ..inference.objectives import iwae_bound
from ..utils import check_positive_int, check_tensor

Objective = Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor]


def gradient_samples(
    model: torch.nn.Module,
    x: torch.Tensor,
    k: int,
    repeats: int,
    params: Iterable[torch.Tensor],
    objective: Objective = iwae_bound,
    progress: bool = False,
) -> torch.Tensor:
    """``repeats`` independent estimates of d/dtheta mean_b objective(model, x, k)_b: ``[repeats, P]``.

    Each repeat draws fresh samples; ``params`` (e.g. ``model.decoder.parameters()``) are the
    coordinates returned, flattened in order. The model's own gradients are left untouched.
    """
    check_tensor("x", x, floating=True)
    check_positive_int(k=k)
    check_positive_int(repeats=repeats)
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params must contain at least one tensor that requires grad")
    out = []
    for _ in tqdm(
        range(repeats), desc=f"gradients, k={k}", disable=not progress, leave=False
    ):
        value = objective(model, x, k).mean()
        grads = torch.autograd.grad(value, params, allow_unused=True)
        out.append(
            torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g).reshape(-1)
                    for g, p in zip(grads, params)
                ]
            )
        )
    return torch.stack(out)  # (repeats, P)


def snr(samples: torch.Tensor) -> torch.Tensor:
    """Per-coordinate |mean| / std of ``[R, P]`` gradient samples, ``[P]``; coordinates whose
    samples are all equal (no noise, e.g. no gradient at all) are dropped."""
    check_tensor("samples", samples, ndim=2, floating=True)
    if samples.shape[0] < 2:
        raise ValueError(
            f"samples must hold at least 2 repeats, got shape {tuple(samples.shape)}"
        )
    mean, std = samples.mean(0), samples.std(0)  # (P,)
    keep = std > 0
    return mean[keep].abs() / std[keep]


def noise_floor(
    samples: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The SNR that :func:`snr` reports for ``[R, P]`` samples of the same noise with no signal,
    ``[P]``: each sample's deviation from its coordinate's mean, its sign flipped at random
    (independently per sample and coordinate: zero mean, the same spread). Its mean over many
    coordinates is close to sqrt(2 / (pi R)) for any noise distribution."""
    check_tensor("samples", samples, ndim=2, floating=True)
    signs = (
        torch.randint(0, 2, samples.shape, generator=generator).to(samples) * 2 - 1
    )  # (R, P)
    return snr((samples - samples.mean(0)) * signs)


def gradient_snr(
    model: torch.nn.Module,
    x: torch.Tensor,
    k: int,
    repeats: int = 100,
    objective: Objective = iwae_bound,
    groups: dict[str, Iterable[torch.Tensor]] | None = None,
    progress: bool = False,
    floor: bool = False,
):
    """Per-coordinate SNR of the gradient of ``objective(model, x, k)`` for each parameter group.

    ``groups`` defaults to ``{"encoder": model.encoder.parameters(), "decoder":
    model.decoder.parameters()}``. Returns ``{name: [P_group]}``; summarise with a mean or median.
    All groups are estimated from the same ``repeats`` draws. ``floor=True`` returns a second dict,
    the :func:`noise_floor` of each group on the same draws.
    """
    if groups is None:
        if not (hasattr(model, "encoder") and hasattr(model, "decoder")):
            raise ValueError(
                "give groups={name: parameters} for a model without .encoder and .decoder"
            )
        groups = {
            "encoder": model.encoder.parameters(),
            "decoder": model.decoder.parameters(),
        }
    groups = {name: [p for p in ps if p.requires_grad] for name, ps in groups.items()}
    sizes = [sum(p.numel() for p in ps) for ps in groups.values()]
    flat = gradient_samples(
        model,
        x,
        k,
        repeats,
        [p for ps in groups.values() for p in ps],
        objective,
        progress,
    )
    parts = dict(zip(groups, flat.split(sizes, dim=1)))
    ratios = {name: snr(part) for name, part in parts.items()}
    return (
        (ratios, {name: noise_floor(part) for name, part in parts.items()})
        if floor
        else ratios
    )


def snr_against_k(
    model: torch.nn.Module,
    x: torch.Tensor,
    ks: Iterable[int],
    repeats: int = 100,
    objective: Objective = iwae_bound,
) -> tuple[dict, dict]:
    """:func:`gradient_snr` with its noise floor for each k in turn (from the current random
    state): ``(means, floors)``, each ``{"encoder": [one mean SNR per k], "decoder": [...]}``."""
    means, floors = {"encoder": [], "decoder": []}, {"encoder": [], "decoder": []}
    for k in ks:
        ratios, floor = gradient_snr(
            model, x, k, repeats=repeats, objective=objective, floor=True
        )
        for part in means:
            means[part].append(ratios[part].mean().item())
            floors[part].append(floor[part].mean().item())
    return means, floors


__all__ = ["gradient_samples", "snr", "noise_floor", "gradient_snr", "snr_against_k"]
