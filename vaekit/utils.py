"""Small shared helpers: seeding, argument checks, k-means++ seeding, atomic file writes.

Input checks that need the data's values (a range, a NaN) cost one host sync each. They run at
the public entry points once per call; :func:`vaekit.train.fit` runs them on its first batch and
then turns them off with :func:`input_checks` for the rest of its loop (a process-wide switch).
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a CPU generator seeded the same way."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_positive_int(**values) -> None:
    """Raise a ValueError naming the first argument that is not a positive int (bools are not ints here)."""
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(
                f"{name} must be a positive int, got {type(v).__name__} {v!r}"
            )


_CHECKS = {
    "values": True
}  # whether checks that read tensor values (one host sync each) run


def value_checks_enabled() -> bool:
    """Whether checks that read tensor values run (see :func:`input_checks`)."""
    return _CHECKS["values"]


@contextlib.contextmanager
def input_checks(enabled: bool):
    """Inside the block, checks that read tensor values (ranges, NaNs) run only if ``enabled``.
    :func:`vaekit.train.fit` runs them on its first batch, then skips them in its hot loop."""
    before = _CHECKS["values"]
    _CHECKS["values"] = bool(enabled)
    try:
        yield
    finally:
        _CHECKS["values"] = before


def check_unit_interval(
    name: str, x: torch.Tensor, why: str = "a Bernoulli likelihood"
) -> torch.Tensor:
    """Raise a ValueError naming ``name`` unless every value of ``x`` lies in [0, 1] (one host sync;
    NaN fails). Skipped where :func:`input_checks` turned value checks off."""
    if not _CHECKS["values"] or x.device.type == "meta" or not x.numel():
        return x
    lo, hi = torch.aminmax(x.detach())
    if not bool((lo >= 0) & (hi <= 1)):
        raise ValueError(
            f"{name} must lie in [0, 1] for {why}, got values in [{float(lo):.4g}, {float(hi):.4g}]"
            + ("; scale 0-255 pixels with x / 255" if float(hi) > 1 else "")
        )
    return x


def check_matches(
    name: str, x: torch.Tensor, module: torch.nn.Module, *, device: bool = True
) -> torch.Tensor:
    """Raise a clear error naming ``name`` when ``x`` does not match ``module``'s floating-point
    parameters (or buffers) in dtype (floating ``x`` only) or, with ``device=True``, in device."""
    ref = next(
        (t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()),
        None,
    )
    if ref is None or not isinstance(x, torch.Tensor):
        return x
    if x.is_floating_point() and x.dtype != ref.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model's parameters are {ref.dtype}: "
            f"convert one to the other (e.g. {name}.to({ref.dtype}))"
        )
    if device and x.device != ref.device:
        raise ValueError(
            f"{name} is on {x.device} but the model is on {ref.device}: move one to the other"
        )
    return x


def check_tensor(
    name: str,
    x,
    *,
    ndim: int | tuple[int, ...] | None = None,
    floating: bool = False,
    integer: bool = False,
    min_value: float | None = None,
    max_value: float | None = None,
    nonempty: bool = False,
) -> torch.Tensor:
    """Raise a clear error naming ``name`` when ``x`` is not a tensor of the expected kind.
    ``nonempty``: at least one example along dimension 0."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if nonempty and (x.dim() == 0 or x.shape[0] == 0):
        raise ValueError(
            f"{name} must hold at least one example along dimension 0, got shape {tuple(x.shape)}"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(x.shape)}"
            )
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and x.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{name} must be an integer tensor (int64 or int32), got dtype {x.dtype}"
        )
    if (
        x.device.type != "meta"
        and x.numel()
        and (min_value is not None or max_value is not None)
    ):
        lo, hi = x.min(), x.max()
        if (min_value is not None and bool(lo < min_value)) or (
            max_value is not None and bool(hi > max_value)
        ):
            raise ValueError(
                f"{name} must lie in [{min_value}, {max_value}], got values in [{float(lo):.4g}, {float(hi):.4g}]"
            )
    return x


def check_positive_number(**values) -> None:
    """Raise a clear error naming the first argument that is not a finite number > 0 (a step size,
    a learning rate, a scale): TypeError for a string or a bool, ValueError for 0, negatives, NaN, inf."""
    for name, v in values.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(
                f"{name} must be a positive number, got {type(v).__name__} {v!r}"
            )
        if not 0 < v < float("inf"):
            raise ValueError(f"{name} must be a positive, finite number, got {v!r}")


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise a ValueError naming ``name`` when ``x`` holds a NaN or an infinity (one host sync;
    skipped where :func:`input_checks` turned value checks off)."""
    if (
        not _CHECKS["values"]
        or not isinstance(x, torch.Tensor)
        or x.device.type == "meta"
        or not x.numel()
    ):
        return x
    if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{name} must be finite, got {bad} NaN or infinite value{'s' * (bad != 1)} of {x.numel()}"
        )
    return x


def unit_interval_likelihood(px) -> str | None:
    """A few words naming ``px``'s likelihood when it scores only values in [0, 1] (Bernoulli and
    continuous-Bernoulli pixels, discretized grey levels n / (bins - 1)), else None."""
    from torch.distributions import (
        Bernoulli,
        ContinuousBernoulli,
        Independent,
        constraints,
    )

    while isinstance(px, Independent):
        px = px.base_dist
    if isinstance(px, (Bernoulli, ContinuousBernoulli)):
        return "a Bernoulli likelihood"
    if (
        getattr(px, "bins", None) is not None
        and getattr(px, "support", None) is constraints.unit_interval
    ):
        return "a discretized likelihood of grey levels n / (bins - 1)"
    return None


def check_likelihood_input(px, x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Raise a ValueError naming ``name`` when ``x`` cannot be scored under the likelihood ``px``:
    values outside [0, 1] for Bernoulli or discretized pixels (``validate_args=False`` would score
    255-valued pixels as nonsense without a word), a NaN or an infinity for any. One host sync;
    skipped where :func:`input_checks` turned value checks off."""
    if not _CHECKS["values"]:
        return x
    why = unit_interval_likelihood(px)
    return check_unit_interval(name, x, why) if why else check_finite(name, x)


def check_data(
    name: str,
    x,
    model: torch.nn.Module | None = None,
    *,
    ndim: int | tuple[int, ...] | None = None,
    shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """The one check of data handed to a public entry point: a floating tensor with at least one
    example, ``ndim`` dimensions or per-example ``shape`` where given, and ``model``'s dtype and
    device, and finite values (one host sync, skipped where :func:`input_checks` turned value checks
    off; the range a likelihood needs is checked where it is scored: :func:`check_likelihood_input`)."""
    check_tensor(name, x, floating=True, nonempty=True, ndim=ndim)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape [B, {', '.join(map(str, shape))}], got {tuple(x.shape)}"
        )
    if isinstance(model, torch.nn.Module):
        check_matches(name, x, model)
    return check_finite(name, x)


def check_labels(
    name: str, y, num_classes: int | None = None, n: int | None = None
) -> torch.Tensor:
    """Class labels (or counts): an int64/int32 tensor of shape ``[n]`` with values in
    [0, num_classes). Float labels are refused, never truncated (3.7 is not class 3), and ``[N, 1]``
    is refused rather than broadcast against ``[N]``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of integer labels, got {type(y).__name__}"
        )
    if y.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{name} must be an integer tensor of labels (int64 or int32), got dtype {y.dtype}"
            + (
                "; convert whole-number labels with .long()"
                if y.is_floating_point()
                else ""
            )
        )
    if y.dim() != 1:
        raise ValueError(
            f"{name} must have shape [B] (one label per example), got {list(y.shape)}"
            + ("; flatten it with .view(-1)" if y.dim() == 2 and 1 in y.shape else "")
        )
    if n is not None and y.shape[0] != n:
        raise ValueError(
            f"{name} must have shape [B] = [{n}] (one label per example), got {list(y.shape)}"
        )
    if (
        num_classes is not None
        and _CHECKS["values"]
        and y.numel()
        and y.device.type != "meta"
    ):
        lo, hi = torch.aminmax(y)
        if bool(lo < 0) or bool(hi >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes - 1}], got values in [{int(lo)}, {int(hi)}]"
            )
    return y


def kmeans_pp(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Indices ``[k]`` of rows of ``x`` ``[N, D]`` chosen by k-means++ seeding: the first uniformly,
    each next one with probability proportional to its squared distance to the nearest chosen."""
    idx = torch.randint(x.shape[0], (1,), generator=generator, device=x.device)
    for _ in range(k - 1):
        d2 = torch.cdist(x, x[idx]).min(-1).values ** 2  # (N,)
        idx = torch.cat([idx, torch.multinomial(d2 + 1e-12, 1, generator=generator)])
    return idx


def smoke_requested(smoke: bool = False) -> bool:
    """True when a notebook's ``smoke`` parameter is set or ``$VAEKIT_SMOKE`` asks for it (as under nbval)."""
    return bool(smoke) or os.environ.get("VAEKIT_SMOKE", "").lower() not in (
        "",
        "0",
        "false",
        "no",
    )


def _umask() -> int:
    """The process's umask, read without changing it where /proc allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", suffix: str = ".tmp"):
    """Write ``path`` through a temporary file beside it: on success the file replaces ``path`` in
    one rename, on any error (or interruption) it is removed, so readers never see half a file.
    The file gets the mode a plain ``open`` would give it (0666 less the umask).

    The temporary file is named ``path.name`` + 8 random characters + ``suffix``; a process killed
    outright can leave one behind (:func:`vaekit.train.fit` removes its checkpoint's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=suffix)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(
            tmp, 0o666 & ~_umask()
        )  # mkstemp makes 0600: give the file the user's normal mode
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
