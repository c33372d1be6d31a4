"""A learned prior over code grids: a small gated PixelCNN (van den Oord et al., 2016).

The grid ``[H, W]`` of code indices is modelled autoregressively in raster order,

    p(z) = prod_{i,j} p(z_ij | z_<ij),    z_<ij = rows above, and the same row to the left,

with each conditional a softmax over the K codes. Masked convolutions keep every output at
position (i, j) blind to z_ij and everything after it. Two stacks avoid the blind spot of a plain
masked PixelCNN: a *vertical* stack that sees every row above (the whole width), and a
*horizontal* stack that sees the current row to the left and receives the vertical stack's
features. Layers use the gated activation tanh(a) * sigmoid(b).

``log_prob(indices)`` is exact (one forward pass, nats per grid); ``sample(n)`` draws new grids one
position at a time. Train it on the code indices of a dataset with
``vaekit.fit(prior, vaekit.models.pixelcnn.nll, codes, steps=...)``; :class:`NLLMonitor` records the
negative log-likelihood of fixed grids (training and test) every few steps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..device import module_device
from ..utils import check_positive_int, check_tensor


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is multiplied by a fixed 0/1 ``mask`` ``[kh, kw]`` (same padding)."""

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor):
        kh, kw = mask.shape
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2),
                         device=mask.device)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def vertical_mask(k: int, include_center_row: bool, device=None) -> torch.Tensor:
    """``[k, k]`` mask keeping the rows above the centre (and the centre row if asked), all columns."""
    m = torch.zeros(k, k, device=device)
    m[:k // 2 + (1 if include_center_row else 0)] = 1
    return m


def horizontal_mask(k: int, include_center: bool, device=None) -> torch.Tensor:
    """``[1, k]`` mask keeping the positions left of the centre (and the centre if asked)."""
    m = torch.zeros(1, k, device=device)
    m[0, :k // 2 + (1 if include_center else 0)] = 1
    return m


class GatedLayer(nn.Module):
    """One gated PixelCNN layer: (vertical, horizontal) features ``[B, C, H, W]`` each -> the same.

    ``first=True`` excludes the current position (mask "A"); later layers include it (mask "B"),
    which is safe because their inputs at (i, j) already depend only on positions before (i, j).
    """

    def __init__(self, channels: int, kernel_size: int, first: bool = False, device=None):
        super().__init__()
        c = channels
        self.first = first
        self.v_conv = MaskedConv2d(c, 2 * c, vertical_mask(kernel_size, not first, device))
        self.h_conv = MaskedConv2d(c, 2 * c, horizontal_mask(kernel_size, not first, device))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1, device=device)
        self.h_out = nn.Conv2d(c, c, 1, device=device)

    @staticmethod
    def gate(a: torch.Tensor) -> torch.Tensor:
        x, g = a.chunk(2, dim=1)
        return torch.tanh(x) * torch.sigmoid(g)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.v_conv(v)  # (B, 2C, H, W): rows strictly above
        h_pre = self.h_conv(h) + self.v_to_h(v_pre)  # (B, 2C, H, W): row to the left + rows above
        h_new = self.h_out(self.gate(h_pre))
        return self.gate(v_pre), h_new if self.first else h + h_new  # residual after the first layer


class PixelCNN(nn.Module):
    """Autoregressive prior p(z) over grids of ``num_codes``-way code indices ``[B, H, W]``.

    Args:
        num_codes: K, the number of categories per position.
        grid: default grid shape ``(H, W)`` for :meth:`sample` (any grid works for ``log_prob``).
        channels: feature channels of both stacks.
        layers: number of gated layers (the receptive field grows by ``kernel_size // 2`` per layer).
        kernel_size: odd kernel width of the masked convolutions.
    """

    def __init__(self, num_codes: int, grid: tuple[int, int] = (7, 7), channels: int = 32, layers: int = 6,
                 kernel_size: int = 3, device=None):
        super().__init__()
        check_positive_int(num_codes=num_codes, channels=channels, layers=layers)
        if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd int >= 3, got {kernel_size!r}")
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid must be (H, W) with positive sizes, got {grid!r}")
        self.num_codes, self.grid = num_codes, tuple(int(g) for g in grid)
        self.embed = nn.Embedding(num_codes, channels, device=device)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel_size, first=(i == 0), device=device)
                                    for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1, device=device), nn.ReLU(),
                                  nn.Conv2d(channels, num_codes, 1, device=device))

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def _check(self, indices: torch.Tensor) -> None:
        check_tensor("indices", indices, ndim=3, integer=True, min_value=0, max_value=self.num_codes - 1)

    def logits(self, indices: torch.Tensor) -> torch.Tensor:
        """Logits of p(z_ij | z_<ij) for every position: ``[B, H, W]`` -> ``[B, K, H, W]``."""
        self._check(indices)
        return self._logits(indices)

    def _logits(self, indices: torch.Tensor) -> torch.Tensor:  # unchecked: for codes made here
        x = self.embed(indices.long()).permute(0, 3, 1, 2)  # (B, C, H, W)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)  # (B, K, H, W)

    def log_prob(self, indices: torch.Tensor) -> torch.Tensor:
        """log p(z) of each grid, ``[B]`` nats (sum of the H*W conditional log-probabilities)."""
        logp = -F.cross_entropy(self.logits(indices), indices.long(), reduction="none")  # (B, H, W)
        return logp.sum((1, 2))

    @torch.no_grad()
    def sample(self, n: int, grid: tuple[int, int] | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` code grids ``[n, H, W]`` drawn position by position in raster order."""
        check_positive_int(n=n)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        h, w = self.grid if grid is None else grid
        was_training = self.training
        self.eval()
        z = torch.zeros(n, h, w, dtype=torch.long, device=self.device)
        try:
            for i in range(h):
                for j in range(w):
                    # rows below i cannot reach row i (causal masks): compute rows 0..i only
                    probs = torch.softmax(self._logits(z[:, :i + 1])[:, :, i, j] / temperature, dim=1)  # (n, K)
                    z[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        finally:
            self.train(was_training)
        return z


def nll(model: PixelCNN, indices: torch.Tensor) -> torch.Tensor:
    """-log p(indices) per grid, ``[B]`` nats: the prior's training objective for :func:`vaekit.fit`."""
    return -model.log_prob(indices)


class NLLMonitor:
    """A :func:`vaekit.fit` callback: every ``every`` steps, the mean -log p(z) of fixed code grids.

    ``grids`` maps a name (e.g. "training grids", "test grids") to integer grids ``[N, H, W]``.
    Each measurement appends the step to ``steps`` and the mean negative log-likelihood (nats per
    grid, in eval mode, without gradients) to ``nll[name]``. Measuring by steps, not epochs, keeps
    the curve's resolution the same whatever the size of the training set.
    """

    def __init__(self, grids: dict[str, torch.Tensor], every: int = 10):
        check_positive_int(every=every)
        if not isinstance(grids, dict) or not grids:
            raise ValueError(f"grids must be a non-empty dict of name -> [N, H, W] code grids, got {type(grids).__name__}")
        for name, g in grids.items():
            check_tensor(f"grids[{name!r}]", g, ndim=3, integer=True)
        self.grids, self.every = grids, every
        self.steps: list[int] = []
        self.nll: dict[str, list[float]] = {name: [] for name in grids}

    @torch.no_grad()
    def measure(self, model: PixelCNN, step: int) -> None:
        was_training = model.training
        model.eval()
        try:
            for name, g in self.grids.items():
                self.nll[name].append(float(-model.log_prob(g.to(model.device)).mean()))
        finally:
            model.train(was_training)
        self.steps.append(step)

    def on_step(self, state) -> None:
        if state.step % self.every == 0:
            self.measure(state.model, state.step)
