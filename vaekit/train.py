"""One training loop for every model in the series.

``fit(model, objective, data, ...)`` knows nothing about the model: ``objective(model, batch)``
returns per-example losses ``[B]`` (or a scalar) to minimise, or a dict with a ``"loss"`` entry
and any other per-example or scalar quantities to log. Data are tensors already on the training
device, shuffled and gathered there; per-step numbers are accumulated on the device and read once
per epoch (and every ``check_every`` steps for the NaN guard), so the loop does not wait on the
host. Adam and AdamW use the fused implementation where the device has one (else ``foreach``);
``compile=True`` and ``autocast=True`` are the two optional fast paths.

Nothing is accepted silently: the first batch runs every input check of the library's entry
points (data ranges for Bernoulli likelihoods, dtypes, devices), the objective's output shape is
checked, a checkpoint is resumed only by the run that wrote it (see :func:`fingerprint`), and a
non-finite or diverging loss stops training with the model restored to its last finite state.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
import re
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .device import bf16_autocast_available, default_device, module_device
from .utils import atomic_write, check_positive_int, check_positive_number, input_checks

Objective = Callable[
    [torch.nn.Module, torch.Tensor], "torch.Tensor | dict[str, torch.Tensor]"
]


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

    ``history["loss"]`` is the list of epoch means (NaN for an epoch that did not log the key, e.g.
    an evaluation run every few epochs); a key no epoch logged raises a KeyError naming the keys
    there are. ``history.records`` holds the raw epoch dicts.
    """

    records: list[dict] = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        if self.records and not any(key in r for r in self.records):
            raise KeyError(f"{key!r} is not in the history; it has {self.keys()}")
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


class KeepBest:
    """A :func:`fit` ``evaluate`` hook that scores the model (``score(model) -> float``, higher is
    better: a validation ELBO, say), logs it under ``name`` and keeps a copy of the weights at the
    best score so far (the first, on a tie); :meth:`restore` loads them back: early stopping
    without stopping."""

    def __init__(self, score: Callable[[torch.nn.Module], float], name: str = "valid"):
        self.score, self.name = score, name
        self.best, self.state = -math.inf, None

    def __call__(self, model: torch.nn.Module) -> dict:
        value = float(self.score(model))
        if value > self.best:
            self.best, self.state = value, copy.deepcopy(model.state_dict())
        return {self.name: value}

    def restore(self, model: torch.nn.Module) -> float:
        """Load the best weights into ``model``; returns their score."""
        if self.state is None:
            raise RuntimeError(
                "KeepBest has scored nothing yet: pass it to fit as evaluate="
            )
        model.load_state_dict(self.state)
        return self.best


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (or diverged: see :func:`fit`'s ``divergence``)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a different run (model, optimiser, data, ...) than the one resuming it."""


RESERVED_KEYS = ("epoch", "step", "seconds")  # every epoch record has these


def _check_parts(parts: dict, batch: int) -> None:
    """Each logged value is one number per example ``[B]`` or a scalar."""
    for k, v in parts.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f"objective's {k!r} must be a tensor, got {type(v).__name__}"
            )
        if v.dim() > 1 or (v.dim() == 1 and v.shape[0] != batch):
            raise ValueError(
                f"objective's {k!r} must have shape [B] = [{batch}] (one value per example) or be a "
                f"scalar, got shape {list(v.shape)}: sum over the other dimensions first"
            )


def _as_parts(out) -> dict[str, torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return {"loss": out}
    if isinstance(out, dict) and "loss" in out:
        return out
    raise TypeError(
        "objective(model, batch) must return a loss tensor or a dict with a 'loss' entry, "
        f"got {type(out).__name__}"
    )


def make_optimizer(
    params, name: str = "adam", lr: float = 1e-3, **kwargs
) -> torch.optim.Optimizer:
    """Adam/AdamW/SGD with the fastest implementation the device offers (fused, else foreach)."""
    params = list(params)
    classes = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
    }
    if name not in classes:
        raise ValueError(
            f"optimizer must be one of {sorted(classes)} or a torch.optim.Optimizer, got {name!r}"
        )
    cls = classes[name]
    if name in ("adam", "adamw"):
        try:
            return cls(params, lr=lr, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(params, lr=lr, foreach=True, **kwargs)


def _plain(v) -> str:
    """A value as the same text in every process (no memory addresses): numbers and strings by repr,
    functions and classes by name, anything else by its type."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_plain(u) for u in v) + ")"
    if isinstance(v, types.CodeType):
        return v.co_name
    return getattr(v, "__qualname__", None) or type(v).__qualname__


def _name(fn) -> str | None:
    """A function's name with what it binds: a partial's arguments and, for a lambda or a local
    function, its defaults and closure and (lambdas) the names and constants its code uses; all
    lambdas share the name ``<lambda>``, and a loop's lambda binds its k as a default."""
    if fn is None:
        return None
    bound = []
    if isinstance(fn, functools.partial):
        bound += [_plain(a) for a in fn.args] + [
            f"{k}={_plain(v)}" for k, v in sorted(fn.keywords.items())
        ]
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    code = getattr(fn, "__code__", None)
    if isinstance(code, types.CodeType) and ("<lambda>" in name or "<locals>" in name):
        defaults = getattr(fn, "__defaults__", None) or ()
        names = code.co_varnames[code.co_argcount - len(defaults) : code.co_argcount]
        bound += [f"{k}={_plain(v)}" for k, v in zip(names, defaults)]
        bound += [
            f"{k}={_plain(v)}"
            for k, v in sorted((getattr(fn, "__kwdefaults__", None) or {}).items())
        ]
        for k, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
            try:
                bound.append(f"{k}={_plain(cell.cell_contents)}")
            except ValueError:  # an empty cell
                pass
        uses = (
            [*code.co_names, *(_plain(c) for c in code.co_consts if c is not None)]
            if code.co_name == "<lambda>"
            else []
        )
        name += f" using {_plain(tuple(uses))}" if uses else ""
    return f"{name} binding ({', '.join(bound)})" if bound else name


def _data_hash(tensors) -> str:
    """Shapes, dtypes and the bytes of up to 64 evenly spaced examples of each tensor: cheap, and the
    same on every device."""
    h = hashlib.sha1()
    for t in tensors:
        n = t.shape[0]
        idx = torch.linspace(0, n - 1, min(n, 64)).long().to(t.device)
        rows = t.detach().index_select(0, idx).cpu().contiguous().reshape(-1)
        h.update(f"{list(t.shape)} {t.dtype}".encode())
        h.update(rows.view(torch.uint8).numpy().tobytes() if rows.numel() else b"")
    return h.hexdigest()[:16]


def fingerprint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data,
    *,
    batch_size: int,
    seed: int | None,
    objective=None,
    transform=None,
    callbacks: Sequence = (),
) -> dict:
    """What identifies a training run, as stored in its checkpoint: the model's structure (module
    classes, parameter and buffer names, shapes, dtypes), the optimiser's class and settings (its
    constructor defaults, not the implementation flags fused/foreach), the batch size, the seed,
    the data's size and a hash of 64 evenly spaced examples, the objective's and transform's names
    (with a partial's arguments, a lambda's or local function's defaults and closure, and the names
    and constants a lambda's code uses), and the classes of the callbacks with state. Resuming checks that the run is the same."""
    tensors = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    structure = [type(m).__qualname__ for m in model.modules()]
    structure += [
        f"{k}:{list(v.shape)}:{v.dtype}" for k, v in model.state_dict().items()
    ]
    settings = {
        k: (float(v) if isinstance(v, torch.Tensor) else v)
        for k, v in sorted(optimizer.defaults.items())
        if k not in ("fused", "foreach", "capturable", "differentiable")
    }
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "model": f"{type(model).__qualname__} with {n_params:,} parameters, structure "
        + hashlib.sha1("|".join(structure).encode()).hexdigest()[:16],
        "optimizer": f"{type(optimizer).__qualname__}({', '.join(f'{k}={v}' for k, v in settings.items())})",
        "batch_size": batch_size,
        "seed": seed,
        "data": f"{tensors[0].shape[0]} examples, {[list(t.shape[1:]) for t in tensors]}, hash {_data_hash(tensors)}",
        "objective": _name(objective),
        "transform": _name(transform),
        "callbacks": [
            type(cb).__qualname__ for cb in callbacks if hasattr(cb, "state_dict")
        ],
    }


def _save_checkpoint(
    path: Path, state: TrainState, rng: torch.Generator, fp: dict, callbacks
) -> None:
    with atomic_write(
        path
    ) as f:  # an interrupted save leaves the previous checkpoint intact
        torch.save(
            {
                "model": state.model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "step": state.step,
                "epoch": state.epoch,
                "history": state.history.records,
                "rng": rng.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all()
                if torch.cuda.is_available()
                else None,
                "fingerprint": fp,
                "callbacks": [
                    (type(cb).__qualname__, cb.state_dict())
                    for cb in callbacks
                    if hasattr(cb, "state_dict")
                ],
            },
            f,
        )


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files that a save of ``path`` killed midway left (atomic_write's names)."""
    pattern = re.compile(re.escape(path.name) + r"[a-z0-9_]{8}\.tmp")
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            if pattern.fullmatch(p.name):
                p.unlink(missing_ok=True)


def _resume(path: Path, saved: dict, fp: dict, resume, callbacks) -> None:
    """Refuse a checkpoint from a different run (unless ``resume="force"``); restore callback state."""
    old = saved.get("fingerprint")
    if old is None:
        diffs = ["it has no fingerprint (written by an older vaekit)"]
    else:
        diffs = [
            f"{k}: checkpoint {old.get(k)!r}, now {v!r}"
            for k, v in fp.items()
            if old.get(k) != v
        ]
    if diffs:
        msg = f"checkpoint {path} was written by a different run: " + "; ".join(diffs)
        if resume != "force":
            raise CheckpointMismatchError(
                msg + ". Pass resume=False to start afresh (the file is overwritten), "
                'resume="force" to resume it anyway, or use another checkpoint file.'
            )
        warnings.warn(msg + '; resuming anyway (resume="force")', stacklevel=3)
    states = list(saved.get("callbacks", []))
    for cb in (cb for cb in callbacks if hasattr(cb, "state_dict")):
        if (
            states
            and states[0][0] == type(cb).__qualname__
            and hasattr(cb, "load_state_dict")
        ):
            cb.load_state_dict(states.pop(0)[1])


def _snapshot(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> tuple:
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        copy.deepcopy(opt.state_dict()),
        step,
    )


def _restore(model: torch.nn.Module, opt: torch.optim.Optimizer, snap: tuple) -> int:
    model.load_state_dict(snap[0])
    opt.load_state_dict(snap[1])
    return snap[2]


def _check_data(data) -> tuple[torch.Tensor, ...]:
    tensors = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(
            "data must be a tensor or a tuple of tensors with the examples along dimension 0"
        )
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(
            f"data tensors must have the same length, got {[t.shape[0] for t in tensors]}"
        )
    if n == 0:
        raise ValueError("data is empty")
    return tensors


def fit(
    model: torch.nn.Module,
    objective: Objective,
    data,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    optimizer: str | torch.optim.Optimizer = "adam",
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int | None = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    eval_every: int = 1,
    callbacks: Sequence = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool | str = True,
    compile: bool = False,
    autocast: bool = False,
    clip_grad: float | None = None,
    check_every: int = 100,
    progress: bool = True,
    desc: str = "training",
    divergence: float | None = 1e4,
) -> History:
    """Train ``model`` to minimise ``objective`` on ``data``; return the :class:`History`.

    data: a tensor ``[N, ...]`` or a tuple of tensors (e.g. images and labels), moved once to
        ``device``; the objective is called as ``objective(model, *batch)``.
    epochs / steps: how long (at least one of them); with both, whichever comes first.
    device: default: the model's device if it has parameters off the CPU, else
        :func:`vaekit.default_device`.
    transform: applied to the first tensor of each batch on the device, e.g.
        :func:`vaekit.data.binarize` for dynamic binarization.
    evaluate: ``evaluate(model) -> dict`` of numbers, run every ``eval_every`` epochs (in
        ``torch.no_grad`` and ``model.eval()``); its entries join the epoch's record and must not
        reuse its keys (``epoch``, ``step``, ``seconds`` and what the objective logs, e.g. ``loss``).
    callbacks: objects with any of ``on_step(state)``, ``on_epoch_end(state)``; those with
        ``state_dict()`` and ``load_state_dict(d)`` have their state saved in the checkpoint and
        restored on resume (as :class:`vaekit.objectives.KLWarmup` does), so a resumed run
        equals an uninterrupted one.
    checkpoint: a file written atomically after every epoch, carrying the run's
        :func:`fingerprint`; temporary files a killed save left beside it are removed.
    resume: ``True``: an existing checkpoint is loaded first and training continues from it,
        provided its fingerprint matches this run (else :class:`CheckpointMismatchError` names
        what differs); ``"force"``: resume even so (with a warning); ``False``: start afresh.
    clip_grad: clip the gradient's total norm to this (> 0), or None.
    compile: ``torch.compile`` the transform and the objective (forward and backward). Off by
        default: compiling takes seconds to a minute (it needs a C compiler on the CPU) and pays off
        only in long runs; on a CPU, where the matrix products dominate, it saves little.
    autocast: bfloat16 autocast for the transform and objective where the device supports it
        (CPUs, recent GPUs): faster matrix products; the ELBO of a batch moves by about 0.1% of
        its value (``tests/test_speed_paths.py``).
    check_every: steps between checks for a non-finite loss (one host sync each); on one the
        loop stops with :class:`NonFiniteLossError` naming the step and the last finite loss, and
        the model and optimiser are restored to their state at the last check that passed (at most
        ``check_every`` steps back; ``check_every=1`` loses no finite step).
    divergence: the guard also stops training when a loss exceeds ``L0 + divergence * (|L0| + 1)``,
        with ``L0`` the first loss of this call (a loss grown ten-thousandfold by default, which
        no healthy run comes near; Adam at lr = 1e6 passes it within a few steps). None: off.
    """
    if epochs is None and steps is None:
        raise ValueError("give epochs or steps (or both)")
    counts = dict(
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        check_every=check_every,
    )
    check_positive_int(**{name: v for name, v in counts.items() if v is not None})
    if clip_grad is not None and (
        isinstance(clip_grad, bool)
        or not isinstance(clip_grad, (int, float))
        or not 0 < clip_grad < math.inf
    ):
        raise ValueError(
            f"clip_grad must be a positive number (the largest gradient norm) or None, got {clip_grad!r}"
        )
    if divergence is not None and (
        isinstance(divergence, bool)
        or not isinstance(divergence, (int, float))
        or not divergence > 0
    ):
        raise ValueError(
            f"divergence must be a positive number or None, got {divergence!r}"
        )
    if resume not in (True, False, "force"):
        raise ValueError(f"resume must be True, False or 'force', got {resume!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if checkpoint is not None and Path(checkpoint).is_dir():
        raise ValueError(f"checkpoint must name a file, got the folder {checkpoint}")
    tensors = _check_data(data)
    if isinstance(optimizer, str):
        check_positive_number(lr=lr)
    if device is None:
        md = module_device(model)
        device = md if md.type != "cpu" else default_device()
    device = torch.device(device)
    model.to(device)
    tensors = tuple(t.to(device, non_blocking=True) for t in tensors)
    n = tensors[0].shape[0]
    batch_size = min(batch_size, n)
    opt = (
        optimizer
        if isinstance(optimizer, torch.optim.Optimizer)
        else make_optimizer(model.parameters(), optimizer, lr)
    )
    state = TrainState(model, opt, history=History())
    rng = torch.Generator(device="cpu")
    rng.manual_seed(0 if seed is None else seed)
    if seed is not None:
        torch.manual_seed(seed)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    fp = None
    if ckpt is not None:
        _remove_stale_temporaries(ckpt)
        fp = fingerprint(
            model,
            opt,
            tensors,
            batch_size=batch_size,
            seed=seed,
            objective=objective,
            transform=transform,
            callbacks=callbacks,
        )
    if ckpt is not None and resume and ckpt.exists():
        try:
            saved = torch.load(ckpt, map_location=device, weights_only=False)
            if not isinstance(saved, dict) or not {
                "model",
                "optimizer",
                "step",
                "epoch",
                "history",
            } <= set(saved):
                raise ValueError("not a fit checkpoint")
        except Exception as e:  # truncated, not a torch file, or another program's file
            raise ValueError(
                f"checkpoint {ckpt} cannot be read as a fit checkpoint ({type(e).__name__}: {e}); "
                "delete it, or pass resume=False to start afresh and overwrite it"
            ) from e
        _resume(ckpt, saved, fp, resume, callbacks)
        model.load_state_dict(saved["model"])
        saved_opt = str(
            (saved.get("fingerprint") or {}).get("optimizer", type(opt).__qualname__)
        ).split("(")[0]
        try:
            if saved_opt != type(opt).__qualname__:
                raise ValueError(f"it is {saved_opt}'s")
            opt.load_state_dict(saved["optimizer"])
        except (
            KeyError,
            ValueError,
        ) as e:  # only under resume="force": another optimiser's state
            warnings.warn(
                f"the optimizer state in {ckpt} does not fit this optimizer ({e}); it starts afresh",
                stacklevel=2,
            )
        state.step, state.epoch = saved["step"], saved["epoch"]
        state.history.records = list(saved["history"])
        rng.set_state(saved["rng"])
        torch.set_rng_state(
            saved["torch_rng"]
        )  # the objective's own sampling continues where it stopped
        if saved.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
    steps_per_epoch = (
        n // batch_size
    )  # drop the ragged last batch: every step sees batch_size examples
    total_epochs = epochs if epochs is not None else math.ceil(steps / steps_per_epoch)
    if steps is not None:
        total_epochs = min(total_epochs, math.ceil(steps / steps_per_epoch))
    use_autocast = autocast and bf16_autocast_available(device)

    def forward(
        batch,
    ):  # batch means of the loss and of everything else the objective logs
        if transform is not None:
            batch = (transform(batch[0]),) + batch[1:]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            parts = _as_parts(objective(model, *batch))
        _check_parts(parts, batch[0].shape[0])
        return {k: v.float().mean() for k, v in parts.items()}

    forward_fn = torch.compile(forward) if compile else forward

    def step_fn(batch, fwd):
        logs = fwd(batch)
        opt.zero_grad(set_to_none=True)
        logs["loss"].backward()
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        return {k: v.detach() for k, v in logs.items()}

    bar = tqdm(
        total=total_epochs * steps_per_epoch,
        initial=min(state.step, total_epochs * steps_per_epoch),
        desc=desc,
        disable=not progress,
        dynamic_ncols=True,
    )
    last_finite = math.nan
    guard = _Guard(model, opt, state.step, divergence)
    first = True
    checks = input_checks(
        False
    )  # value checks (ranges, NaNs) run on the first batch only
    checks.__enter__()
    try:
        while (
            state.epoch < total_epochs
            and not state.stop
            and (steps is None or state.step < steps)
        ):
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=rng).to(device)
            sums: dict[str, torch.Tensor] = {}
            losses = torch.empty(steps_per_epoch, device=device)
            done = checked = 0
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                batch = tuple(t.index_select(0, idx) for t in tensors)
                if first:  # eagerly and with the library's value checks on: bad input fails here, named
                    with input_checks(True):
                        logs = step_fn(batch, forward)
                    first = False
                else:
                    logs = step_fn(batch, forward_fn)
                for k, v in logs.items():
                    sums[k] = sums[k] + v if k in sums else v
                losses[i] = logs["loss"]
                state.step += 1
                done += 1
                for cb in callbacks:
                    if hasattr(cb, "on_step"):
                        cb.on_step(state)
                ending = state.stop or (steps is not None and state.step >= steps)
                if (
                    done % check_every == 0 or i == steps_per_epoch - 1 or ending
                ):  # every step is checked
                    last_finite = guard.check(
                        losses[checked:done], state.step - done + checked, last_finite
                    )
                    checked = done
                    bar.n = min(state.step, bar.total)
                    bar.set_postfix(loss=f"{last_finite:.4g}", refresh=False)
                    bar.refresh()
                if ending:
                    break
            record = {
                "epoch": state.epoch + 1,
                "step": state.step,
                "seconds": time.perf_counter() - t0,
            }
            record.update(
                {
                    k: v / done
                    for k, v in zip(sums, torch.stack(list(sums.values())).tolist())
                }
            )  # one sync
            state.epoch += 1
            if evaluate is not None and (
                state.epoch % eval_every == 0 or state.epoch == total_epochs
            ):
                model.eval()
                with torch.no_grad(), input_checks(True):
                    result = evaluate(model)
                if not isinstance(result, dict):
                    raise TypeError(
                        f"evaluate(model) must return a dict of numbers, got {type(result).__name__}"
                    )
                clash = sorted(set(result) & set(record))
                if clash:
                    raise ValueError(
                        f"evaluate(model) returned {clash}, which the epoch record already holds "
                        f"({sorted(record)}): rename them, e.g. 'test_{clash[0]}'"
                    )
                record.update(result)
            state.history.records.append(record)
            bar.set_postfix(
                {
                    k: f"{v:.4g}"
                    for k, v in record.items()
                    if k not in ("epoch", "step", "seconds")
                }
            )
            for cb in callbacks:
                if hasattr(cb, "on_epoch_end"):
                    cb.on_epoch_end(state)
            if ckpt is not None:
                _save_checkpoint(ckpt, state, rng, fp, callbacks)
    finally:
        checks.__exit__(None, None, None)
        bar.close()
        model.eval()
    return state.history


class _Guard:
    """The non-finite and divergence guard. Each check reads a window of losses and whether the
    parameters are finite (one host sync); on success it snapshots the model and optimiser, on
    failure it restores the last snapshot and raises :class:`NonFiniteLossError`."""

    def __init__(self, model, opt, step: int, divergence: float | None):
        self.model, self.opt, self.divergence = model, opt, divergence
        self.snap = _snapshot(model, opt, step)
        self.bound = math.inf

    def check(self, losses: torch.Tensor, first_step: int, last_finite: float) -> float:
        params = [p.detach() for p in self.model.parameters()]
        ok = (
            torch.stack([torch.isfinite(p).all() for p in params]).all()
            if params
            else torch.tensor(True)
        )
        *values, params_ok = torch.cat(
            [losses.float(), ok.to(losses.device, torch.float32)[None]]
        ).tolist()
        if (
            self.bound == math.inf
            and self.divergence is not None
            and math.isfinite(values[0])
        ):
            self.bound = values[0] + self.divergence * (abs(values[0]) + 1)
        for i, v in enumerate(values):
            if not math.isfinite(v) or v > self.bound:
                prev = values[i - 1] if i > 0 else last_finite
                what = (
                    f"loss became {v}"
                    if not math.isfinite(v)
                    else f"loss diverged to {v:.6g}, past the bound {self.bound:.6g} (divergence={self.divergence:g})"
                )
                self._fail(
                    f"{what} at step {first_step + i + 1}; last finite loss {prev:.6g}"
                )
        if not params_ok:
            self._fail(
                f"the parameters became non-finite by step {first_step + len(values)}; "
                f"last finite loss {values[-1]:.6g}"
            )
        self.snap = _snapshot(self.model, self.opt, first_step + len(values))
        return values[-1]

    def _fail(self, msg: str):
        step = _restore(self.model, self.opt, self.snap)
        raise NonFiniteLossError(
            f"{msg}; the model and optimizer are restored to their state after step {step}"
        )
