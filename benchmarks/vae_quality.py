"""Test NLL of the canonical PyTorch example VAE trained for as long as helps it, and of vaekit's VAE.

The reference is the VAE of the PyTorch examples repository (``examples/vae/main.py``), copied
as it is (``canonical_vae.py``): 784-400-20 MLPs with ReLU, a sigmoid decoder trained with binary
cross-entropy on the grey-level images, Adam with lr 1e-3, batch size 128, a shuffling
``DataLoader``. It trains on the 4,000 embedded real MNIST digits (``vaekit.data.embedded_digits``).

**Best over epochs** (the default): the example is trained for ``--epochs`` passes; every
``--eval-every`` epochs its importance-sampled NLL on the 1,000 held-out digits (binarized once
with seed 0) is estimated with ``--eval-k`` samples per digit, and the epoch with the lowest
estimate is then scored with ``--k`` = 5000 samples. Choosing the epoch on the held-out digits
favours the baseline (it is the best the example reaches on them, not a number it could have
known in advance): the number any model on the same digits has to beat.

**Equal time** (``--seconds S``): the example and vaekit's ``VAE.mlp`` (AEVB's settings: M = 100,
L = 1, analytic KL, dynamic binarization) each train for S CPU seconds (``time.process_time``, so
other jobs on a shared machine do not change the result), and are scored the same way, with the
paired difference of their NLLs and its standard error over the test digits.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/vae_quality.py [--epochs 300] [--eval-every 5] [--eval-k 200] [--k 5000]
    OMP_NUM_THREADS=1 python benchmarks/vae_quality.py --seconds 120
    python benchmarks/vae_quality.py --smoke

Prints markdown tables (test NLL and -ELBO in nats; lower is better).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import vaekit
from vaekit import metrics, objectives
from vaekit.data import binarize, binarize_static, embedded_digits
from canonical_vae import CanonicalVAE, canonical_step


def train_example(
    x_train: torch.Tensor, seconds: float, seed: int
) -> tuple[CanonicalVAE, int]:
    """The example's training loop, stopped when ``seconds`` of CPU time are spent."""
    torch.manual_seed(seed)
    model = CanonicalVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_train), batch_size=128, shuffle=True)
    start, steps = time.process_time(), 0
    while time.process_time() - start < seconds:
        model.train()
        for (data,) in loader:
            canonical_step(model, optimizer, data)
            steps += 1
            if time.process_time() - start >= seconds:
                break
    return model.eval(), steps


def example_best_over_epochs(
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    epochs: int,
    eval_every: int,
    eval_k: int,
    seed: int,
) -> tuple[CanonicalVAE, int, list[tuple[int, float]]]:
    """The example's loop for ``epochs`` passes; every ``eval_every`` epochs its test NLL with
    ``eval_k`` samples. Returns the model of the best evaluated epoch, that epoch, and the curve."""
    torch.manual_seed(seed)
    model = CanonicalVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_train), batch_size=128, shuffle=True)
    curve, best = [], (math.inf, 0, None)
    for epoch in range(1, epochs + 1):
        model.train()
        for (data,) in loader:
            canonical_step(model, optimizer, data)
        if epoch % eval_every == 0 or epoch == epochs:
            model.eval()
            torch.manual_seed(seed + 1)
            nll = (
                -metrics.log_likelihood(model, x_test, k=eval_k, progress=False)
                .mean()
                .item()
            )
            curve.append((epoch, nll))
            print(f"  epoch {epoch:4d}: test NLL (k = {eval_k}) {nll:.2f}", flush=True)
            if nll < best[0]:
                best = (nll, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    return model.eval(), best[1], curve


class CPUBudget:
    """A ``vaekit.fit`` callback that stops training once ``seconds`` of CPU time are spent."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.process_time()

    def on_step(self, state) -> None:
        state.stop = time.process_time() - self.start >= self.seconds


def train_vaekit(
    x_train: torch.Tensor, seconds: float, seed: int, hidden: tuple[int, ...]
) -> tuple[vaekit.VAE, int]:
    """vaekit's VAE with AEVB's settings (M = 100, L = 1, analytic KL), dynamic binarization."""
    torch.manual_seed(seed)
    model = vaekit.VAE.mlp(latent_dim=20, hidden=hidden)
    budget = CPUBudget(seconds)
    history = vaekit.fit(
        model,
        lambda m, x: -objectives.elbo(m, x),
        x_train,
        epochs=10**6,
        batch_size=100,
        transform=binarize,
        device="cpu",
        seed=seed,
        callbacks=[budget],
        progress=False,
    )
    return model.eval(), history.last["step"]


def score(model, x_test: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, float]:
    """Per-digit NLL ``[N]`` (k importance samples from the model's encoder) and the test -ELBO."""
    torch.manual_seed(seed + 1)
    ll = metrics.log_likelihood(model, x_test, k=k, progress=False)  # (N,)
    return -ll, -metrics.evaluate_elbo(model, x_test)["elbo"]


def best_over_epochs(args, x_train, x_test) -> None:
    print(
        f"the example trained for {args.epochs} epochs, its test NLL estimated every {args.eval_every} "
        f"with k = {args.eval_k}"
    )
    t0 = time.process_time()
    model, epoch, _ = example_best_over_epochs(
        x_train, x_test, args.epochs, args.eval_every, args.eval_k, args.seed
    )
    nll, neg_elbo = score(model, x_test, args.k, args.seed)
    steps = epoch * math.ceil(len(x_train) / 128)
    se = nll.std().item() / math.sqrt(len(nll))
    print(f"\n({time.process_time() - t0:.0f} CPU s)\n")
    print(
        f"| model | best epoch (steps) | test NLL (k = {args.k}), nats | test -ELBO, nats |"
    )
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| PyTorch example VAE (784-400-20, grey-level BCE, batch 128) | {epoch} ({steps:,}) | "
        f"{nll.mean().item():.2f} ± {se:.2f} | {neg_elbo:.2f} |"
    )


def equal_time(args, x_train, x_test) -> None:
    print(f"budget: {args.seconds:.0f} CPU seconds of training per model")
    rows, nll = [], {}
    runs = [
        (
            "PyTorch example VAE (784-400-20, grey-level BCE, batch 128)",
            lambda: train_example(x_train, args.seconds, args.seed),
        ),
        (
            f"vaekit VAE.mlp (784-{'-'.join(map(str, args.hidden))}-20, AEVB M=100 L=1, dynamic binarization)",
            lambda: train_vaekit(x_train, args.seconds, args.seed, tuple(args.hidden)),
        ),
    ]
    for name, train_fn in runs:
        model, steps = train_fn()
        nll[name], neg_elbo = score(model, x_test, args.k, args.seed)
        rows.append((name, steps, nll[name].mean().item(), neg_elbo))
        print(f"  {name}: {steps} steps, NLL {rows[-1][2]:.2f}", flush=True)
    print(
        f"\n| model | steps in {args.seconds:.0f} CPU s | test NLL (k={args.k}) | test -ELBO |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name, steps, n, e in rows:
        print(f"| {name} | {steps} | {n:.2f} | {e:.2f} |")
    (_, ref_nll), (_, ours_nll) = list(nll.items())
    diff = ours_nll - ref_nll  # (N,) paired over test digits
    se = diff.std().item() / math.sqrt(len(diff))
    print(
        f"\nvaekit minus example: {diff.mean().item():+.2f} nats (standard error {se:.2f}); "
        f"{'vaekit is no worse' if diff.mean().item() <= 0 else 'the example is better'}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--epochs",
        type=int,
        default=300,
        help="epochs of the example (best over epochs)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=5,
        help="epochs between the example's test evaluations",
    )
    parser.add_argument(
        "--eval-k",
        type=int,
        default=200,
        help="importance samples per digit when choosing the epoch",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="instead: train the example and vaekit's VAE for this many CPU seconds each",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=5000,
        help="importance samples per test digit for the final scores",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[400],
        help="vaekit's hidden layer sizes (equal time)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few epochs (or 5 s), k = 50, 200 test digits",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.eval_every, args.eval_k, args.k = 4, 2, 10, 50
        args.seconds = 5.0 if args.seconds is not None else None
    torch.set_num_threads(1)
    vaekit.seed_everything(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, test = embedded_digits("train"), embedded_digits("test")
    x_train = train.images
    x_test = binarize_static(test.images, seed=0)
    if args.smoke:
        x_test = x_test[:200]
    print(
        f"data: {train.source}; {len(x_train)} training digits, {len(x_test)} test digits (binarized with seed 0); "
        f"torch threads: {torch.get_num_threads()}"
    )
    if args.seconds is None:
        best_over_epochs(args, x_train, x_test)
    else:
        equal_time(args, x_train, x_test)


if __name__ == "__main__":
    main()
