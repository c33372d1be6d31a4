"""One training loop for every model in the series.

``fit(model, objective, data, ...)`` knows nothing about the model: ``objective(model, batch)``
returns per-example losses ``[B]`` (or a scalar) to minimise, or a dict with a ``"loss"`` entry
and any other per-example or scalar quantities to log. Data are tensors already on the training
device, shuffled and gathered there; per-step numbers are accumulated on the device and read once
per epoch (and every ``check_every`` steps for the NaN guard), so the loop does not wait on the
host. Adam and AdamW use the fused implementation where the device has one (else ``foreach``);
``compile=True`` and ``autocast=True`` are the two optional fast paths.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .device import default_device, module_device
from .utils import atomic_write, check_positive_int

Objective = Callable[[torch.nn.Module, torch.Tensor], "torch.Tensor | dict[str, torch.Tensor]"]


@dataclass
class TrainState:
    """What callbacks see: the model, optimiser, counters and the history so far."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0
    epoch: int = 0
    history: "History" = None
    stop: bool = False  # a callback sets this to end training after the current step


@dataclass
class History:
    """Per-epoch means of everything the objective logged, plus evaluation results.

    ``history["loss"]`` is the list of epoch means; ``history.records`` the raw epoch dicts.
    """

    records: list[dict] = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        return [r.get(key, math.nan) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def _as_parts(out) -> dict[str, torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return {"loss": out}
    if isinstance(out, dict) and "loss" in out:
        return out
    raise TypeError("objective(model, batch) must return a loss tensor or a dict with a 'loss' entry, "
                    f"got {type(out).__name__}")


def make_optimizer(params, name: str = "adam", lr: float = 1e-3, **kwargs) -> torch.optim.Optimizer:
    """Adam/AdamW/SGD with the fastest implementation the device offers (fused, else foreach)."""
    params = list(params)
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if name not in classes:
        raise ValueError(f"optimizer must be one of {sorted(classes)} or a torch.optim.Optimizer, got {name!r}")
    cls = classes[name]
    if name in ("adam", "adamw"):
        try:
            return cls(params, lr=lr, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(params, lr=lr, foreach=True, **kwargs)


def bf16_autocast_available(device: torch.device) -> bool:
    """Whether bfloat16 autocast pays on ``device``: CPUs whose oneDNN has bfloat16 kernels
    (AVX-512 and newer), CUDA devices that support bfloat16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _save_checkpoint(path: Path, state: TrainState, rng: torch.Generator) -> None:
    with atomic_write(path) as f:  # an interrupted save leaves the previous checkpoint intact
        torch.save({"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                    "step": state.step, "epoch": state.epoch, "history": state.history.records,
                    "rng": rng.get_state(), "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, f)


def _check_data(data) -> tuple[torch.Tensor, ...]:
    tensors = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("data must be a tensor or a tuple of tensors with the examples along dimension 0")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"data tensors must have the same length, got {[t.shape[0] for t in tensors]}")
    if n == 0:
        raise ValueError("data is empty")
    return tensors


def fit(model: torch.nn.Module, objective: Objective, data, *, epochs: int | None = None,
        steps: int | None = None, batch_size: int = 128, optimizer: str | torch.optim.Optimizer = "adam",
        lr: float = 1e-3, device: str | torch.device | None = None, seed: int | None = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        evaluate: Callable[[torch.nn.Module], dict] | None = None, eval_every: int = 1,
        callbacks: Sequence = (), checkpoint: str | os.PathLike | None = None, resume: bool = True,
        compile: bool = False, autocast: bool = False, clip_grad: float | None = None,
        check_every: int = 100, progress: bool = True, desc: str = "training") -> History:
    """Train ``model`` to minimise ``objective`` on ``data``; return the :class:`History`.

    data: a tensor ``[N, ...]`` or a tuple of tensors (e.g. images and labels), moved once to
        ``device``; the objective is called as ``objective(model, *batch)``.
    epochs / steps: how long (at least one of them); with both, whichever comes first.
    device: default: the model's device if it has parameters off the CPU, else
        :func:`vaekit.default_device`.
    transform: applied to the first tensor of each batch on the device, e.g.
        :func:`vaekit.data.binarize` for dynamic binarization.
    evaluate: ``evaluate(model) -> dict`` of numbers, run every ``eval_every`` epochs (in
        ``torch.no_grad`` and ``model.eval()``); its entries join the epoch's record.
    callbacks: objects with any of ``on_step(state)``, ``on_epoch_end(state)``.
    checkpoint: a file written atomically after every epoch; with ``resume=True`` an existing
        one is loaded first and training continues from it.
    compile: ``torch.compile`` the transform and the objective (forward and backward). Off by
        default: compiling takes seconds to a minute (it needs a C compiler on the CPU) and pays off
        only in long runs; on a CPU, where the matrix products dominate, it saves little.
    autocast: bfloat16 autocast for the transform and objective where the device supports it
        (CPUs, recent GPUs): faster matrix products; the ELBO of a batch moves by about 0.1% of
        its value (``tests/test_speed_paths.py``).
    check_every: steps between checks for a non-finite loss (one host sync each); on one the
        loop stops with :class:`NonFiniteLossError` naming the step and the last finite loss.
    """
    if epochs is None and steps is None:
        raise ValueError("give epochs or steps (or both)")
    counts = dict(epochs=epochs, steps=steps, batch_size=batch_size, eval_every=eval_every, check_every=check_every)
    check_positive_int(**{name: v for name, v in counts.items() if v is not None})
    tensors = _check_data(data)
    if device is None:
        md = module_device(model)
        device = md if md.type != "cpu" else default_device()
    device = torch.device(device)
    model.to(device)
    tensors = tuple(t.to(device, non_blocking=True) for t in tensors)
    n = tensors[0].shape[0]
    batch_size = min(batch_size, n)
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(model.parameters(), optimizer, lr)
    state = TrainState(model, opt, history=History())
    rng = torch.Generator(device="cpu")
    rng.manual_seed(0 if seed is None else seed)
    if seed is not None:
        torch.manual_seed(seed)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state.step, state.epoch = saved["step"], saved["epoch"]
        state.history.records = list(saved["history"])
        rng.set_state(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])  # the objective's own sampling continues where it stopped
        if saved.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
    steps_per_epoch = n // batch_size  # drop the ragged last batch: every step sees batch_size examples
    total_epochs = epochs if epochs is not None else math.ceil(steps / steps_per_epoch)
    if steps is not None:
        total_epochs = min(total_epochs, math.ceil(steps / steps_per_epoch))
    use_autocast = autocast and bf16_autocast_available(device)

    def forward(batch):  # batch means of the loss and of everything else the objective logs
        if transform is not None:
            batch = (transform(batch[0]),) + batch[1:]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            parts = _as_parts(objective(model, *batch))
        return {k: v.float().mean() for k, v in parts.items()}

    forward_fn = torch.compile(forward) if compile else forward

    def step_fn(batch):
        logs = forward_fn(batch)
        opt.zero_grad(set_to_none=True)
        logs["loss"].backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        return {k: v.detach() for k, v in logs.items()}

    bar = tqdm(total=total_epochs * steps_per_epoch, initial=min(state.step, total_epochs * steps_per_epoch),
               desc=desc, disable=not progress, dynamic_ncols=True)
    last_finite = math.nan
    try:
        while state.epoch < total_epochs and not state.stop and (steps is None or state.step < steps):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=rng).to(device)
            sums: dict[str, torch.Tensor] = {}
            losses = torch.empty(steps_per_epoch, device=device)
            done = checked = 0
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size:(i + 1) * batch_size]
                logs = step_fn(tuple(t.index_select(0, idx) for t in tensors))
                for k, v in logs.items():
                    sums[k] = sums[k] + v if k in sums else v
                losses[i] = logs["loss"]
                state.step += 1
                done += 1
                for cb in callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(state)
                if done % check_every == 0 or i == steps_per_epoch - 1:
                    last_finite = _check_finite(losses[checked:done], state.step - done + checked, last_finite)
                    checked = done
                    bar.n = min(state.step, bar.total)
                    bar.set_postfix(loss=f"{last_finite:.4g}", refresh=False)
                    bar.refresh()
                if state.stop or (steps is not None and state.step >= steps):
                    break
            record = {"epoch": state.epoch + 1, "step": state.step, "seconds": time.perf_counter() - t0}
            record.update({k: v / done for k, v in zip(sums, torch.stack(list(sums.values())).tolist())})  # one sync
            state.epoch += 1
            if evaluate is not None and (state.epoch % eval_every == 0 or state.epoch == total_epochs):
                model.eval()
                with torch.no_grad():
                    record.update(evaluate(model))
            state.history.records.append(record)
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k not in ("epoch", "step", "seconds")})
            for cb in callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(state)
            if ckpt is not None:
                _save_checkpoint(ckpt, state, rng)
    finally:
        bar.close()
        model.eval()
    return state.history


def _check_finite(losses: torch.Tensor, first_step: int, last_finite: float) -> float:
    """One host sync: raise on the first non-finite loss, else return the latest finite one."""
    bad = ~torch.isfinite(losses)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        prev = float(losses[i - 1]) if i > 0 else last_finite
        raise NonFiniteLossError(f"loss became {float(losses[i])} at step {first_step + i + 1}; "
                                 f"last finite loss {prev:.6g}")
    return float(losses[-1])
