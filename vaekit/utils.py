"""Small shared helpers: seeding, argument checks, k-means++ seeding, atomic file writes."""
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
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def check_tensor(name: str, x, *, ndim: int | tuple[int, ...] | None = None, floating: bool = False,
                 integer: bool = False, min_value: float | None = None, max_value: float | None = None) -> torch.Tensor:
    """Raise a clear error naming ``name`` when ``x`` is not a tensor of the expected kind."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if integer and x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer tensor (int64 or int32), got dtype {x.dtype}")
    if x.device.type != "meta" and x.numel() and (min_value is not None or max_value is not None):
        lo, hi = x.min(), x.max()
        if (min_value is not None and bool(lo < min_value)) or (max_value is not None and bool(hi > max_value)):
            raise ValueError(f"{name} must lie in [{min_value}, {max_value}], got values in [{float(lo):.4g}, {float(hi):.4g}]")
    return x


def kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices ``[k]`` of rows of ``x`` ``[N, D]`` chosen by k-means++ seeding: the first uniformly,
    each next one with probability proportional to its squared distance to the nearest chosen."""
    idx = torch.randint(x.shape[0], (1,), generator=generator, device=x.device)
    for _ in range(k - 1):
        d2 = torch.cdist(x, x[idx]).min(-1).values ** 2  # (N,)
        idx = torch.cat([idx, torch.multinomial(d2 + 1e-12, 1, generator=generator)])
    return idx


def smoke_requested(smoke: bool = False) -> bool:
    """True when a notebook's ``smoke`` parameter is set or ``$VAEKIT_SMOKE`` asks for it (as under nbval)."""
    return bool(smoke) or os.environ.get("VAEKIT_SMOKE", "").lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", suffix: str = ".tmp"):
    """Write ``path`` through a temporary file beside it: on success the file replaces ``path`` in
    one rename, on any error (or interruption) it is removed, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=suffix)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
