"""Learning-rate schedules set by optimiser step, as :func:`vaekit.train.fit` callbacks.

A schedule is a function of the step counter only (not of the epoch), so the same schedule means
the same training whatever the size of the data set, and a resumed run, whose step counter is
restored from its checkpoint, follows it exactly. ``on_step`` sets the rate for the *next* step;
build the optimiser with ``lr=schedule.lr_at(0)`` for the first.

:class:`StepwiseLR` is piecewise constant; :meth:`StepwiseLR.burda` is the schedule of Burda et
al. (2016, Section 5): passes i = 0, ..., P-1 of length proportional to 3^i at rate lr * 10^(-i/7),
here squeezed into a given number of steps. :class:`ExponentialLR` decays smoothly from one rate
to another.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

from .utils import check_positive_int


def _check_rate(name: str, value) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < math.inf
    ):
        raise ValueError(
            f"{name} must be a positive finite learning rate, got {value!r}"
        )
    return float(value)


class _Schedule:
    def lr_at(self, step: int) -> float:  # pragma: no cover - defined by the subclasses
        raise NotImplementedError

    def on_step(self, state) -> None:
        """fit callback: after step ``state.step`` has run, set the rate of the next one."""
        lr = self.lr_at(state.step)
        for group in state.optimizer.param_groups:
            group["lr"] = lr


class StepwiseLR(_Schedule):
    """Rate ``lrs[j]`` for steps ``boundaries[j-1] <= step < boundaries[j]`` (``lrs[0]`` before
    ``boundaries[0]``, the last rate after the last boundary)."""

    def __init__(self, boundaries: Sequence[int], lrs: Sequence[float]):
        boundaries, lrs = (
            [int(b) for b in boundaries],
            [_check_rate("lrs[i]", lr) for lr in lrs],
        )
        if len(lrs) != len(boundaries) + 1:
            raise ValueError(
                f"lrs must have one more entry than boundaries, got {len(lrs)} rates "
                f"and {len(boundaries)} boundaries"
            )
        if any(b <= a for a, b in zip([0] + boundaries, boundaries)):
            raise ValueError(
                f"boundaries must be positive and strictly increasing, got {boundaries}"
            )
        self.boundaries, self.lrs = boundaries, lrs

    def lr_at(self, step: int) -> float:
        return self.lrs[bisect.bisect_right(self.boundaries, step)]

    @classmethod
    def burda(cls, steps: int, lr: float = 1e-3, passes: int = 8) -> "StepwiseLR":
        """Burda et al.'s passes i = 0..passes-1 at ``lr * 10**(-i/7)``, pass i lasting a share
        3^i / sum_j 3^j of ``steps`` (rounded; every pass at least one step)."""
        check_positive_int(steps=steps, passes=passes)
        if steps < passes:
            raise ValueError(f"steps must be at least passes ({passes}), got {steps}")
        total = sum(3**i for i in range(passes))
        ends = [
            round(steps * sum(3**j for j in range(i + 1)) / total)
            for i in range(passes - 1)
        ]
        ends = [max(e, i + 1) for i, e in enumerate(ends)]
        return cls(
            ends, [_check_rate("lr", lr) * 10 ** (-i / 7) for i in range(passes)]
        )


class ExponentialLR(_Schedule):
    """Rate ``lr * (final / lr) ** (step / steps)``: from ``lr`` at step 0 to ``final`` at
    ``steps``, constant after."""

    def __init__(self, lr: float, final: float, steps: int):
        check_positive_int(steps=steps)
        self.lr, self.final, self.steps = (
            _check_rate("lr", lr),
            _check_rate("final", final),
            steps,
        )

    def lr_at(self, step: int) -> float:
        return self.lr * (self.final / self.lr) ** (min(step, self.steps) / self.steps)


__all__ = ["StepwiseLR", "ExponentialLR", "EveryStep"]


class EveryStep:
    """A fit callback that steps a ``torch.optim.lr_scheduler`` scheduler after every optimiser
    step (e.g. ``CosineAnnealingLR(optimizer, T_max=steps)``: a cosine from the optimiser's rate
    to ``eta_min`` over the run). Its state is saved in fit's checkpoints."""

    def __init__(self, scheduler):
        if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
            raise TypeError(
                f"scheduler must be a torch.optim.lr_scheduler scheduler, got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler

    def on_step(self, state) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
