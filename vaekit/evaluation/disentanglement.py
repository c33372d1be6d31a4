"""Disentanglement scores of a code against factors that are known: the mutual information gap
(MIG, Chen et al. 2018) and the FactorVAE score (Kim & Mnih 2018).

A *code* is one vector per image ``[N, D]``: the means of q(z|x), not samples, as the papers do.
*Factors* are the true generative factors as class indices ``[N, K]`` (the index of each value
on its grid, e.g. :attr:`vaekit.shapes.Shapes.classes`).

MIG. Each code dimension is discretised into ``bins`` equal-width bins between its smallest and
largest value (20 bins, as in Locatello et al.'s library; a constant dimension falls in one bin).
The mutual information I(z_j; v_k) between a binned dimension and a factor is the plug-in
estimate from their joint histogram over the N images, in nats. For each factor, the gap between
the largest and the second largest I(z_j; v_k) over the code dimensions, divided by the factor's
entropy H(v_k), is in [0, 1]; MIG is the mean over factors (factors with one value, H = 0, are left
out). One dimension per factor, informative only about it, scores 1; a constant code scores 0; two
dimensions that copy the same factor score 0 on it (the gap is the difference of equal numbers).

FactorVAE score. Each dimension of the code is divided by its standard deviation over the N
images; dimensions whose standard deviation is ``min_std`` or less are pruned. A *vote*: fix a
factor k at a random value, draw ``batch`` images with that value (the other factors at random),
and take the code dimension d with the smallest variance over them; the vote is (d, k). The
majority-vote classifier maps each d to the factor with most votes; the score is its accuracy on
the votes, sum_d max_k votes[d, k] / total. ``n_votes`` votes per factor, the same number for
every factor. A code with every dimension pruned scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..utils import check_positive_int, check_tensor

BINS = 20


def _check(codes: torch.Tensor, classes: torch.Tensor) -> None:
    check_tensor("codes", codes, ndim=2, floating=True, nonempty=True)
    check_tensor("classes", classes, ndim=2, nonempty=True)
    if classes.dtype.is_floating_point or classes.dtype == torch.bool:
        raise ValueError(
            f"classes must hold integer class indices, got dtype {classes.dtype}"
        )
    if len(codes) != len(classes):
        raise ValueError(
            f"codes and classes must have one row per image, got {len(codes)} and {len(classes)} rows"
        )


def discretize(codes: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Each column of ``codes [N, D]`` into ``bins`` equal-width bins between its min and max:
    class indices ``[N, D]`` in 0 .. bins-1 (the max falls in the last bin; a constant column in bin 0)."""
    check_tensor("codes", codes, ndim=2, floating=True, nonempty=True)
    check_positive_int(bins=bins)
    codes = codes.double()
    lo, hi = codes.min(0).values, codes.max(0).values  # (D,)
    width = torch.where(hi > lo, (hi - lo) / bins, torch.ones_like(hi))
    return ((codes - lo) / width).floor().long().clamp(0, bins - 1)  # (N, D)


def _relabel(a: torch.Tensor) -> tuple[torch.Tensor, int]:
    values, idx = torch.unique(a, return_inverse=True)
    return idx, len(values)


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """Plug-in mutual information (nats) between two discrete variables given as ``[N]`` labels."""
    a, na = _relabel(a)
    b, nb = _relabel(b)
    joint = torch.bincount(a * nb + b, minlength=na * nb).reshape(
        na, nb
    ).double() / len(a)  # (na, nb)
    pa, pb = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    return float(
        (joint[nz] * (joint[nz].log() - (pa * pb)[nz].log())).sum().clamp(min=0)
    )


def entropy(a: torch.Tensor) -> float:
    """Plug-in entropy (nats) of a discrete variable given as ``[N]`` labels."""
    counts = torch.unique(a, return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(p * p.log()).sum())


def mutual_information_matrix(
    binned: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """I(z_j; v_k) in nats, ``[D, K]``, from discretised codes ``[N, D]`` and factor classes ``[N, K]``."""
    return torch.tensor(
        [
            [
                mutual_information(binned[:, j], classes[:, k])
                for k in range(classes.shape[1])
            ]
            for j in range(binned.shape[1])
        ],
        dtype=torch.float64,
    )


@dataclass
class MIGResult:
    score: float  # MIG: the mean of ``gaps`` over the factors with H > 0
    gaps: (
        torch.Tensor
    )  # (K,) (largest - second largest I(z_j; v_k)) / H(v_k); NaN where H(v_k) = 0
    mi: torch.Tensor  # (D, K) I(z_j; v_k), nats
    entropies: torch.Tensor  # (K,) H(v_k), nats
    best: torch.Tensor  # (K,) the code dimension with the largest I(z_j; v_k)


def mig(codes: torch.Tensor, classes: torch.Tensor, bins: int = BINS) -> MIGResult:
    """The mutual information gap of ``codes [N, D]`` (D >= 2) against ``classes [N, K]``; see the module."""
    _check(codes, classes)
    if codes.shape[1] < 2:
        raise ValueError(
            f"codes must have at least 2 dimensions for a gap, got shape {tuple(codes.shape)}"
        )
    codes, classes = (
        codes.detach().cpu(),
        classes.cpu(),
    )  # histograms on the host, whatever device the code came from
    mi = mutual_information_matrix(discretize(codes, bins), classes)  # (D, K)
    h = torch.tensor(
        [entropy(classes[:, k]) for k in range(classes.shape[1])], dtype=torch.float64
    )  # (K,)
    top2 = mi.topk(2, dim=0)  # values (2, K)
    gaps = (top2.values[0] - top2.values[1]) / h
    gaps[h == 0] = math.nan
    if not (h > 0).any():
        raise ValueError(
            "every factor has a single value (zero entropy): there is nothing to disentangle"
        )
    return MIGResult(float(gaps[h > 0].mean()), gaps, mi, h, top2.indices[0])


@dataclass
class FactorVAEResult:
    score: float  # accuracy of the majority-vote classifier on the votes
    votes: (
        torch.Tensor
    )  # (D, K) how often dimension d had the smallest variance with factor k fixed
    active: (
        torch.Tensor
    )  # (D,) bool, the dimensions kept (standard deviation > min_std)


def factor_vae_score(
    codes: torch.Tensor,
    classes: torch.Tensor,
    n_votes: int = 200,
    batch: int = 64,
    min_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> FactorVAEResult:
    """The FactorVAE score of ``codes [N, D]`` against ``classes [N, K]``; see the module. ``generator``
    (a CPU generator) makes the votes reproducible."""
    _check(codes, classes)
    check_positive_int(n_votes=n_votes, batch=batch)
    codes, classes = codes.detach().double().cpu(), classes.cpu()
    d, k = codes.shape[1], classes.shape[1]
    std = codes.std(0)  # (D,)
    active = std > min_std
    votes = torch.zeros(d, k, dtype=torch.long)
    if not active.any():
        return FactorVAEResult(0.0, votes, active)
    z = (
        codes[:, active] / std[active]
    )  # (N, D_active) each dimension to unit standard deviation
    where = active.nonzero()[:, 0]
    for factor in range(k):
        values = classes[:, factor].unique()
        groups = [(classes[:, factor] == v).nonzero()[:, 0] for v in values]
        for _ in range(n_votes):
            members = groups[int(torch.randint(len(groups), (1,), generator=generator))]
            pick = members[
                torch.randint(len(members), (batch,), generator=generator)
            ]  # (batch,) images with the factor fixed
            votes[where[z[pick].var(0).argmin()], factor] += 1
    return FactorVAEResult(
        votes.max(1).values.sum().item() / votes.sum().item(), votes, active
    )
