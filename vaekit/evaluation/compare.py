"""Several trainings of a model, side by side: train each on the same data, score each on the
same test digits, and set the numbers out as one table.

A comparison in the notebooks is a few variants (estimators, latent sizes, beta, the VAE against
the IWAE at each k) trained by :func:`vaekit.fit` with the same budget and scored with the same
estimator; the differences are paired over the test digits, so their standard errors are those
of a per-digit difference (:func:`paired`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch

from . import metrics
from ..train import fit


def seeded(seed: int, build: Callable, *args, **kwargs):
    """``build(*args, **kwargs)`` after ``torch.manual_seed(seed)``: the same initial weights for
    every model built with the same seed and arguments."""
    torch.manual_seed(seed)
    return build(*args, **kwargs)


def fit_each(
    setup: Callable, names: Iterable, data, *, report: bool = True, **common
) -> tuple[dict, dict, dict]:
    """Train one model per name: ``setup(name)`` returns ``(model, objective)`` or ``(model,
    objective, kwargs)``, and ``fit(model, objective, data, **common, **kwargs)`` trains it (the
    per-run ``kwargs`` win). Returns ``(models, histories, cpu_seconds)``, dicts keyed by name.
    ``report`` prints a line per run: its steps, CPU seconds and last logged numbers."""
    models, histories, seconds = {}, {}, {}
    for name in names:
        parts = setup(name)
        if not isinstance(parts, tuple) or len(parts) not in (2, 3):
            raise TypeError(
                f"setup({name!r}) must return (model, objective) or (model, objective, kwargs), got {parts!r}"
            )
        model, objective, extra = (*parts, {}) if len(parts) == 2 else parts
        kwargs = {"desc": str(name), **common, **extra}
        t0 = time.process_time()
        histories[name] = fit(model, objective, data, **kwargs)
        models[name], seconds[name] = model, time.process_time() - t0
        if report:
            last = histories[name].last
            numbers = ", ".join(
                f"{key} {v:.2f}"
                for key, v in last.items()
                if key not in ("epoch", "step", "seconds")
                and isinstance(v, (int, float))
            )
            print(
                f"{kwargs['desc']}: {last.get('step', 0):,} steps in {seconds[name]:.0f} s of CPU time; last epoch: {numbers}"
            )
    return models, histories, seconds


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of the per-example difference ``a - b`` and its standard error, ``(mean, se)``."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape or a.dim() != 1 or len(a) < 2:
        raise ValueError(
            f"a and b must be 1-D of the same length >= 2 (one value per example), "
            f"got shapes {list(a.shape)} and {list(b.shape)}"
        )
    for name, t in (("a", a), ("b", b)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{name} must be finite, got {int((~torch.isfinite(t)).sum())} NaN or infinite values"
            )
    d = a - b
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


def paired_draws(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Two estimators drawn ``R`` times on the same ``B`` examples, ``a``, ``b``: ``[R, B]``.
    Returns ``dict(diff [B]`` (per example, mean of a minus mean of b), ``se`` (the standard error
    of ``diff.mean()``, from the within-example variances), ``std_a, std_b`` (the standard
    deviation of one draw, averaged over examples)``)``: do they agree in expectation, and which
    is the noisier?"""
    if a.shape != b.shape or a.dim() != 2 or a.shape[0] < 2:
        raise ValueError(
            f"a and b must both be [R, B] with R >= 2 draws, got shapes {list(a.shape)} and {list(b.shape)}"
        )
    diff = a.mean(0) - b.mean(0)  # (B,)
    se = ((a.var(0) + b.var(0)) / a.shape[0]).mean().sqrt() / math.sqrt(len(diff))
    return dict(
        diff=diff,
        se=se.item(),
        std_a=a.std(0).mean().item(),
        std_b=b.std(0).mean().item(),
    )


def score(
    model,
    x: torch.Tensor,
    k: int,
    seed: int | None = None,
    elbo: bool = True,
    autocast: bool = False,
) -> dict:
    """One model on test digits ``x``: the ELBO and its terms (if ``elbo``; drawn first, from the
    current random state), then, after ``torch.manual_seed(seed)`` when a seed is given, the
    importance-sampled log p(x) per digit with ``k`` samples, the active units and the KL per
    dimension. Returns ``dict(elbo, reconstruction, kl, ll [N] on the CPU, nll, active, cov [D],
    kl_dims [D])`` (nats; ``cov`` and ``kl_dims`` on the CPU)."""
    out = metrics.evaluate_elbo(model, x) if elbo else {}
    if seed is not None:
        torch.manual_seed(seed)
    ll = metrics.log_likelihood(
        model, x, k=k, progress=False, autocast=autocast
    ).cpu()  # (N,)
    active, cov = metrics.active_units(model, x)
    kl_dims = (
        metrics.kl_per_dim(model, x).cpu()
        if hasattr(model.prior, "base_dist")
        else None
    )
    return dict(
        out, ll=ll, nll=-ll.mean().item(), active=active, cov=cov.cpu(), kl_dims=kl_dims
    )


def score_each(
    models: dict,
    x: torch.Tensor,
    k: int,
    seed: int | None = None,
    reference=None,
    **kwargs,
) -> dict:
    """:func:`score` for every model; with ``reference`` (a key of ``models``) each result also
    holds ``dnll, se``: its NLL minus the reference's, paired over the digits (0, 0 for itself)."""
    results = {name: score(m, x, k, seed=seed, **kwargs) for name, m in models.items()}
    if reference is not None:
        if reference not in results:
            raise KeyError(
                f"reference must be one of {list(results)}, got {reference!r}"
            )
        for r in results.values():
            r["dnll"], r["se"] = paired(
                results[reference]["ll"], r["ll"]
            )  # NLL difference = minus the ll one
    return results


COLUMNS = {  # result key -> (header, how a cell reads)
    "elbo": ("test ELBO (nats)", lambda r: f"{r['elbo']:.2f}"),
    "neg_elbo": ("test −ELBO (nats)", lambda r: f"{-r['elbo']:.2f}"),
    "reconstruction": ("reconstruction (nats)", lambda r: f"{r['reconstruction']:.2f}"),
    "kl": ("KL (nats)", lambda r: f"{r['kl']:.2f}"),
    "nll": ("test NLL (nats)", lambda r: f"{r['nll']:.2f}"),
    "dnll": ("NLL − reference's (nats)", lambda r: f"{r['dnll']:+.2f} ± {r['se']:.2f}"),
    "active": ("active units", lambda r: str(r["active"])),
}


def table(
    results: dict,
    columns: Iterable[str] = ("elbo", "reconstruction", "kl", "nll", "dnll", "active"),
    first: str = "model",
    headers: dict | None = None,
) -> str:
    """:func:`score_each` results as a markdown table, one row per model (named in the first
    column, headed ``first``), the ``columns`` named by their keys in :data:`COLUMNS`;
    ``headers`` renames some of them (e.g. ``{"nll": "test NLL, k = 100 (nats)"}``)."""
    columns, headers = list(columns), headers or {}
    unknown = [c for c in columns + list(headers) if c not in COLUMNS]
    if unknown:
        raise ValueError(f"columns must be among {list(COLUMNS)}, got {unknown}")
    rows = [[name] + [COLUMNS[c][1](r) for c in columns] for name, r in results.items()]
    return markdown_table(
        [first] + [headers.get(c, COLUMNS[c][0]) for c in columns],
        rows,
        align="l" + "r" * len(columns),
    )


def markdown_table(
    header: list[str], rows: Iterable[Iterable], align: str | None = None
) -> str:
    """A markdown table: ``header`` names, ``rows`` of cells (already formatted or anything with
    ``str``), ``align`` one letter per column, ``l`` or ``r`` (default: all right)."""
    header = list(header)
    align = align or "r" * len(header)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(
            f"align must be one 'l' or 'r' per column ({len(header)}), got {align!r}"
        )
    rows = [list(map(str, r)) for r in rows]
    for r in rows:
        if len(r) != len(header):
            raise ValueError(
                f"every row must have {len(header)} cells like the header, got {len(r)}: {r}"
            )
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" if a == "l" else "---:" for a in align) + " |",
    ]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


__all__ = [
    "seeded",
    "fit_each",
    "paired",
    "paired_draws",
    "score",
    "score_each",
    "COLUMNS",
    "table",
    "markdown_table",
]
