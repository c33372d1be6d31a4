"""A learned prior over code grids: a small gated PixelCNN (van den Oord et al., 2016).

The grid ``[H, W]`` of code indices is modelled autoregressively in raster order,

    p(z) = prod_{i,j} p(z_ij | z_<ij),    z_<ij = rows above, and the same row to the left,

with each conditional a softmax over the K codes. Masked convolutions keep every output at
position (i, j) blind to z_ij and everything after it. Two stacks avoid the blind spot of a plain
masked PixelCNN: a *vertical* stack that sees every row above (the whole width), and a
*horizontal* stack that sees the current row to the left and receives the vertical stack's
features. Layers use the gated activation tanh(a) * sigmoid(b).

``log_prob(indices)`` is exact (one forward pass, nats per grid); ``sample(n)`` draws new grids one
position at a time.

**Conditioning** (van den Oord et al., 2016, §2.3): with ``cond_channels > 0`` every layer also
receives a feature map ``cond`` ``[B, cond_channels, H, W]`` of something known in advance (e.g. the
coarser code grid of a two-level VQ-VAE), through unmasked 1x1 convolutions added to both stacks'
gate pre-activations; with ``num_classes > 0`` a learned embedding of a class label is added the same
way. The conditioning carries no information about the grid being modelled, so the masks need not
touch it. A class-conditional prior gives the unconditional ``log p(z) = log sum_y p(y) p(z | y)``
exactly (uniform ``p(y)``) when ``log_prob`` is called without ``labels``. Train it on the code indices of a dataset with
``vaekit.fit(prior, vaekit.models.pixelcnn.nll, codes, steps=...)``; :class:`NLLMonitor` records the
negative log-likelihood of fixed grids (training and test) every few steps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..device import module_device
from ..utils import check_positive_int, check_positive_number, check_tensor


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel is multiplied by a fixed 0/1 ``mask`` ``[kh, kw]`` (same padding)."""

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor):
        kh, kw = mask.shape
        super().__init__(
            in_channels,
            out_channels,
            (kh, kw),
            padding=(kh // 2, kw // 2),
            device=mask.device,
        )
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def vertical_mask(k: int, include_center_row: bool, device=None) -> torch.Tensor:
    """``[k, k]`` mask keeping the rows above the centre (and the centre row if asked), all columns."""
    check_positive_int(k=k)
    m = torch.zeros(k, k, device=device)
    m[: k // 2 + (1 if include_center_row else 0)] = 1
    return m


def horizontal_mask(k: int, include_center: bool, device=None) -> torch.Tensor:
    """``[1, k]`` mask keeping the positions left of the centre (and the centre if asked)."""
    check_positive_int(k=k)
    m = torch.zeros(1, k, device=device)
    m[0, : k // 2 + (1 if include_center else 0)] = 1
    return m


class GatedLayer(nn.Module):
    """One gated PixelCNN layer: (vertical, horizontal) features ``[B, C, H, W]`` each -> the same.

    ``first=True`` excludes the current position (mask "A"); later layers include it (mask "B"),
    which is safe because their inputs at (i, j) already depend only on positions before (i, j).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        first: bool = False,
        device=None,
        conditioned: bool = False,
    ):
        super().__init__()
        c = channels
        self.first = first
        self.v_conv = MaskedConv2d(
            c, 2 * c, vertical_mask(kernel_size, not first, device)
        )
        self.h_conv = MaskedConv2d(
            c, 2 * c, horizontal_mask(kernel_size, not first, device)
        )
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1, device=device)
        self.h_out = nn.Conv2d(c, c, 1, device=device)
        if (
            conditioned
        ):  # V_v c and V_h c: unmasked 1x1 projections of the conditioning features
            self.v_cond = nn.Conv2d(c, 2 * c, 1, bias=False, device=device)
            self.h_cond = nn.Conv2d(c, 2 * c, 1, bias=False, device=device)
        self.conditioned = conditioned

    @staticmethod
    def gate(a: torch.Tensor) -> torch.Tensor:
        x, g = a.chunk(2, dim=1)
        return torch.tanh(x) * torch.sigmoid(g)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.v_conv(v)  # (B, 2C, H, W): rows strictly above
        h_pre = self.h_conv(h) + self.v_to_h(
            v_pre
        )  # (B, 2C, H, W): row to the left + rows above
        if (
            cond is not None
        ):  # (B, C, H, W) or (B, C, 1, 1): known in advance, reaches every position
            v_pre = v_pre + self.v_cond(cond)
            h_pre = h_pre + self.h_cond(cond)
        h_new = self.h_out(self.gate(h_pre))
        return self.gate(
            v_pre
        ), h_new if self.first else h + h_new  # residual after the first layer


class PixelCNN(nn.Module):
    """Autoregressive prior p(z) over grids of ``num_codes``-way code indices ``[B, H, W]``.

    Args:
        num_codes: K, the number of categories per position.
        grid: default grid shape ``(H, W)`` for :meth:`sample` (any grid works for ``log_prob``).
        channels: feature channels of both stacks.
        layers: number of gated layers (the receptive field grows by ``kernel_size // 2`` per layer).
        kernel_size: odd kernel width of the masked convolutions.
        cond_channels: channels of a conditioning feature map ``cond`` ``[B, cond_channels, H, W]``
            (0: none).
        num_classes: number of class labels to condition on (0: none).
    """

    def __init__(
        self,
        num_codes: int,
        grid: tuple[int, int] = (7, 7),
        channels: int = 32,
        layers: int = 6,
        kernel_size: int = 3,
        device=None,
        *,
        cond_channels: int = 0,
        num_classes: int = 0,
    ):
        super().__init__()
        check_positive_int(num_codes=num_codes, channels=channels, layers=layers)
        for name, v in (("cond_channels", cond_channels), ("num_classes", num_classes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(
                    f"{name} must be a non-negative int (0: no conditioning), got {v!r}"
                )
        if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be an odd int >= 3, got {kernel_size!r}"
            )
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid must be (H, W) with positive sizes, got {grid!r}")
        self.num_codes, self.grid = num_codes, tuple(int(g) for g in grid)
        self.embed = nn.Embedding(num_codes, channels, device=device)
        conditioned = cond_channels > 0 or num_classes > 0
        self.layers = nn.ModuleList(
            GatedLayer(
                channels,
                kernel_size,
                first=(i == 0),
                device=device,
                conditioned=conditioned,
            )
            for i in range(layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1, device=device),
            nn.ReLU(),
            nn.Conv2d(channels, num_codes, 1, device=device),
        )
        self.cond_channels, self.num_classes = cond_channels, num_classes
        if cond_channels:  # created after the unconditional modules: an unconditional prior is unchanged
            self.cond_proj = nn.Conv2d(cond_channels, channels, 1, device=device)
        if num_classes:
            self.class_embed = nn.Embedding(num_classes, channels, device=device)

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def _check(self, indices: torch.Tensor) -> None:
        check_tensor(
            "indices",
            indices,
            ndim=3,
            integer=True,
            min_value=0,
            max_value=self.num_codes - 1,
        )
        if indices.device != self.device:
            raise ValueError(
                f"indices is on {indices.device} but the model is on {self.device}: move one to the other"
            )

    def _check_conditioning(self, n: int, hw: tuple[int, int], cond, labels) -> None:
        if self.cond_channels:
            if cond is None:
                raise ValueError(
                    f"cond is required: this prior is conditioned on a [B, {self.cond_channels}, H, W] feature map"
                )
            check_tensor("cond", cond, ndim=4, floating=True)
            if tuple(cond.shape) != (n, self.cond_channels, *hw):
                raise ValueError(
                    f"cond must have shape {(n, self.cond_channels, *hw)} ([B, cond_channels, H, W]), "
                    f"got {tuple(cond.shape)}"
                )
            if cond.device != self.device:
                raise ValueError(
                    f"cond is on {cond.device} but the model is on {self.device}: move one to the other"
                )
        elif cond is not None:
            raise ValueError("cond was given but this prior has cond_channels=0")
        if labels is not None:
            if not self.num_classes:
                raise ValueError("labels were given but this prior has num_classes=0")
            check_tensor(
                "labels",
                labels,
                ndim=1,
                integer=True,
                min_value=0,
                max_value=self.num_classes - 1,
            )
            if labels.shape[0] != n:
                raise ValueError(
                    f"labels must have shape [{n}] (one per grid), got {tuple(labels.shape)}"
                )
            if labels.device != self.device:
                raise ValueError(
                    f"labels is on {labels.device} but the model is on {self.device}: move one to the other"
                )

    def logits(
        self,
        indices: torch.Tensor,
        cond: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of p(z_ij | z_<ij [, cond, label]) for every position: ``[B, H, W]`` -> ``[B, K, H, W]``.

        A class-conditional prior needs ``labels`` here (see :meth:`log_prob` for the marginal).
        """
        self._check(indices)
        self._check_conditioning(
            indices.shape[0], tuple(indices.shape[1:]), cond, labels
        )
        if self.num_classes and labels is None:
            raise ValueError(
                f"labels are required: this prior is conditioned on {self.num_classes} classes"
            )
        return self._logits(indices, cond, labels)

    def _features(
        self, cond: torch.Tensor | None, labels: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The conditioning features every layer receives: ``[B, C, H, W]``, ``[B, C, 1, 1]`` or None."""
        f = None
        if cond is not None:
            f = self.cond_proj(cond)  # (B, C, H, W)
        if labels is not None:
            y = self.class_embed(labels.long())[:, :, None, None]  # (B, C, 1, 1)
            f = y if f is None else f + y
        return f

    def _logits(
        self,
        indices: torch.Tensor,
        cond: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:  # unchecked: for codes made here
        x = self.embed(indices.long()).permute(0, 3, 1, 2)  # (B, C, H, W)
        f = self._features(cond, labels)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, f)
        return self.head(h)  # (B, K, H, W)

    def log_prob(
        self,
        indices: torch.Tensor,
        cond: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log p(z [| cond, label]) of each grid, ``[B]`` nats (sum of the H*W conditional log-probabilities).

        For a class-conditional prior called without ``labels``: the marginal
        ``log p(z) = logsumexp_y [log p(z | y) - log num_classes]`` (uniform p(y)), exact.
        """
        if self.num_classes and labels is None:
            self._check(indices)
            self._check_conditioning(
                indices.shape[0], tuple(indices.shape[1:]), cond, None
            )
            n = indices.shape[0]
            ys = torch.arange(
                self.num_classes, device=indices.device
            ).repeat_interleave(n)  # (Y n,)
            z = indices.repeat(self.num_classes, 1, 1)  # (Y n, H, W)
            c = None if cond is None else cond.repeat(self.num_classes, 1, 1, 1)
            logp = self.log_prob(z, c, ys).view(
                self.num_classes, n
            )  # (Y, n): log p(z | y)
            return torch.logsumexp(logp, 0) - math.log(self.num_classes)
        logp = -F.cross_entropy(
            self.logits(indices, cond, labels), indices.long(), reduction="none"
        )  # (B, H, W)
        return logp.sum((1, 2))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        grid: tuple[int, int] | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        cond: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``n`` code grids ``[n, H, W]`` drawn position by position in raster order.

        ``cond`` ``[n, cond_channels, H, W]`` (its shape sets the grid) and ``labels`` ``[n]``: the
        conditioning, where the prior has it; a class-conditional prior without ``labels`` first
        draws a class per grid uniformly.
        """
        check_positive_int(n=n)
        check_positive_number(temperature=temperature)
        h, w = (
            (tuple(cond.shape[2:]) if cond is not None else self.grid)
            if grid is None
            else grid
        )
        self._check_conditioning(n, (h, w), cond, labels)
        if self.num_classes and labels is None:
            labels = torch.randint(
                self.num_classes, (n,), device=self.device, generator=generator
            )
        was_training = self.training
        self.eval()
        z = torch.zeros(n, h, w, dtype=torch.long, device=self.device)
        try:
            for i in range(h):
                c = None if cond is None else cond[:, :, : i + 1]
                for j in range(w):
                    # rows below i cannot reach row i (causal masks, 1x1 conditioning): compute rows 0..i only
                    logits = self._logits(z[:, : i + 1], c, labels)[
                        :, :, i, j
                    ]  # (n, K)
                    probs = torch.softmax(logits / temperature, dim=1)
                    z[:, i, j] = torch.multinomial(
                        probs, 1, generator=generator
                    ).squeeze(1)
        finally:
            self.train(was_training)
        return z


def nll(
    model: PixelCNN, indices: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(indices [| labels]) per grid, ``[B]`` nats: the prior's training objective for :func:`vaekit.fit`
    (``vaekit.fit(prior, nll, (codes, labels), ...)`` trains a class-conditional prior)."""
    return -model.log_prob(indices, labels=labels)


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
            raise ValueError(
                f"grids must be a non-empty dict of name -> [N, H, W] code grids, got {type(grids).__name__}"
            )
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
