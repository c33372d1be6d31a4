"""Shapes whose factors are known: a deterministic generator of dSprites-style images.

dSprites (Matthey et al. 2017) is 737,280 binary 64x64 images of a white shape (square, ellipse,
heart) drawn at every combination of 6 scales, 40 orientations and 32 x 32 positions. It was made
by a program from independent factors, so a program can make the same kind of data offline, at
any resolution, on a grid small enough for a CPU: :func:`generate` draws every combination of

- ``shape``: square, ellipse, heart (categorical, values 0, 1, 2);
- ``scale``: ``n_scale`` values linearly spaced in [0.5, 1] (half-width of the shape at scale 1:
  ``extent`` of the image width);
- ``rotation``: ``n_rotation`` angles in [0, ``max_rotation``), anticlockwise, in radians;
- ``x``, ``y``: ``n_position`` positions each, linearly spaced in [0, 1] across the middle of the
  image (``x`` to the right, ``y`` upwards), with a margin that keeps every shape inside.

A pixel is 1 when its centre lies inside the shape, else 0 (no noise, no anti-aliasing). Images
come in the order of :func:`itertools.product` over the factors (shape slowest, y fastest), each
combination exactly once, so the factors are independent and uniform over the data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .utils import check_positive_int

SHAPES = ("square", "ellipse", "heart")
FACTORS = ("shape", "scale", "rotation", "x", "y")


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether the points (u, v), in the shape's own frame (unit half-width), are inside it."""
    if shape == 0:  # square of half-width 1
        return (u.abs() <= 1) & (v.abs() <= 1)
    if shape == 1:  # ellipse with semi-axes 1 (along u) and 0.5
        return u**2 + (v / 0.5) ** 2 <= 1
    if (
        shape == 2
    ):  # heart: (a^2 + b^2 - 1)^3 - a^2 b^3 <= 0, centred on its bounding box and scaled to half-width 1
        a, b = u * 1.14, v * 1.14 + 0.1
        return (a**2 + b**2 - 1) ** 3 - a**2 * b**3 <= 0
    raise ValueError(
        f"shape must be 0 (square), 1 (ellipse) or 2 (heart), got {shape!r}"
    )


def render(
    shape: torch.Tensor,
    scale: torch.Tensor,
    rotation: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    size: int = 32,
    extent: float = 0.18,
    chunk: int = 4096,
) -> torch.Tensor:
    """Binary images ``[N, 1, size, size]`` of the shapes with the given factor values (each ``[N]``):
    ``shape`` in {0, 1, 2}, ``scale`` (half-width ``scale * extent * size`` pixels), ``rotation``
    (radians, anticlockwise), ``x``, ``y`` in [0, 1] (left to right, bottom to top)."""
    check_positive_int(size=size, chunk=chunk)
    shape, scale, rotation, x, y = (
        torch.as_tensor(t, dtype=torch.float32).reshape(-1)
        for t in (shape, scale, rotation, x, y)
    )
    if not len({len(t) for t in (shape, scale, rotation, x, y)}) == 1:
        raise ValueError("shape, scale, rotation, x and y must have the same length")
    if not torch.isin(shape, torch.arange(len(SHAPES), dtype=shape.dtype)).all():
        raise ValueError(
            f"shape must be 0 (square), 1 (ellipse) or 2 (heart), got values {shape.unique().tolist()}"
        )
    lo, hi = _margin(extent), 1 - _margin(extent)
    centre = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres, in pixels
    px, py = (
        centre[None, None, :],
        (size - centre)[None, :, None],
    )  # (1, 1, W) columns, (1, H, 1) rows counted from the bottom
    out = torch.zeros(len(shape), 1, size, size)
    for start in range(0, len(shape), chunk):
        sl = slice(start, start + chunk)
        cx = (lo + (hi - lo) * x[sl])[
            :, None, None
        ] * size  # (n, 1, 1) centre in pixels
        cy = (lo + (hi - lo) * y[sl])[:, None, None] * size
        half = (scale[sl] * extent * size)[:, None, None]
        cos, sin = rotation[sl].cos()[:, None, None], rotation[sl].sin()[:, None, None]
        dx, dy = px - cx, py - cy  # (n, H, W)
        u, v = (
            (cos * dx + sin * dy) / half,
            (-sin * dx + cos * dy) / half,
        )  # rotate the pixel grid by -rotation
        img = torch.zeros(u.shape, dtype=torch.bool)
        for s in range(len(SHAPES)):
            pick = shape[sl] == s
            if pick.any():
                img[pick] = _inside(s, u[pick], v[pick])
        out[sl, 0] = img.float()
    return out


def _margin(extent: float) -> float:
    """Centres stay this far (a fraction of the width) from the border: a rotated square of scale 1 fits."""
    return extent * math.sqrt(2) + 0.02


@dataclass
class Shapes:
    """The data set: ``images [N, 1, H, W]`` in {0, 1}, ``factors [N, 5]`` (values), ``classes [N, 5]``
    (index of each value on its grid), ``values`` (the grid of each factor) and ``names``."""

    images: torch.Tensor
    factors: torch.Tensor
    classes: torch.Tensor
    values: list[torch.Tensor]
    names: tuple[str, ...] = FACTORS

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sizes(self) -> list[int]:
        """The number of values of each factor."""
        return [len(v) for v in self.values]

    def index(self, classes: torch.Tensor) -> torch.Tensor:
        """The image indices ``[M]`` of the class combinations ``classes [M, 5]`` (the inverse of ``classes``)."""
        strides = torch.tensor(
            [math.prod(self.sizes[i + 1 :]) for i in range(len(self.sizes))]
        )
        return (torch.as_tensor(classes) * strides).sum(-1)


def generate(
    size: int = 32,
    n_scale: int = 4,
    n_rotation: int = 8,
    n_position: int = 8,
    max_rotation: float = 2 * math.pi,
    extent: float = 0.18,
) -> Shapes:
    """Every combination of 3 shapes x ``n_scale`` x ``n_rotation`` x ``n_position`` x ``n_position``,
    rendered at ``size x size`` (see the module's docstring); deterministic."""
    check_positive_int(
        size=size, n_scale=n_scale, n_rotation=n_rotation, n_position=n_position
    )
    if not 0 < max_rotation <= 2 * math.pi:
        raise ValueError(f"max_rotation must be in (0, 2 pi], got {max_rotation!r}")
    if not 0 < extent < 0.3:
        raise ValueError(
            f"extent (half-width of a scale-1 shape, as a fraction of the width) must be in (0, 0.3), got {extent!r}"
        )
    values = [
        torch.arange(len(SHAPES), dtype=torch.float64),
        torch.linspace(0.5, 1.0, n_scale, dtype=torch.float64)
        if n_scale > 1
        else torch.ones(1, dtype=torch.float64),
        torch.arange(n_rotation, dtype=torch.float64) * (max_rotation / n_rotation),
        torch.linspace(0, 1, n_position, dtype=torch.float64)
        if n_position > 1
        else torch.full((1,), 0.5, dtype=torch.float64),
        torch.linspace(0, 1, n_position, dtype=torch.float64)
        if n_position > 1
        else torch.full((1,), 0.5, dtype=torch.float64),
    ]
    classes = torch.cartesian_prod(
        *[torch.arange(len(v)) for v in values]
    )  # (N, 5), shape slowest, y fastest
    factors = torch.stack(
        [v[classes[:, i]] for i, v in enumerate(values)], dim=1
    )  # (N, 5)
    images = render(*factors.T, size=size, extent=extent)
    return Shapes(images, factors.float(), classes, [v.float() for v in values])
