"""Test NLL of vaekit's VAE against the canonical PyTorch example VAE, for the same training time.

The reference is the VAE of the PyTorch examples repository (``examples/vae/main.py``), copied
as it is: 784-400-20 MLPs with ReLU, a sigmoid decoder trained with binary cross-entropy on the
grey-level images, Adam with lr 1e-3, batch size 128, a shuffling ``DataLoader``. vaekit's
model is ``VAE.mlp`` (a 20-D latent, one or two hidden layers) trained by ``vaekit.fit`` with
Kingma & Welling's AEVB settings: minibatches of M = 100, L = 1, the analytic-KL estimator, and
dynamic binarization (a fresh 0/1 sample of every digit each time it is seen).

Both train on the same 4,000 embedded real MNIST digits (``vaekit.data.embedded_digits``) for
the same budget of CPU seconds, counted with ``time.process_time`` so that other jobs on a shared
machine do not change the result (with ``OMP_NUM_THREADS=1`` it is the wall time of an idle
machine). Both are then evaluated the same way on the 1,000 held-out digits, binarized once
with a fixed seed: the importance-sampled log-likelihood with k = 5000 samples from each model's
own encoder (``vaekit.metrics.log_likelihood``), and the ELBO.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/vae_quality.py [--seconds 120] [--k 5000] [--seed 0] [--smoke]

Prints a markdown table (test NLL and ELBO in nats, lower NLL is better) and the paired
difference of the NLLs with its standard error over the test digits.
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import vaekit
from vaekit import metrics, objectives
from vaekit.data import binarize, binarize_static, embedded_digits
from canonical_vae import CanonicalVAE, canonical_step


def train_example(x_train: torch.Tensor, seconds: float, seed: int) -> tuple[CanonicalVAE, int]:
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


class CPUBudget:
    """A ``vaekit.fit`` callback that stops training once ``seconds`` of CPU time are spent."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.process_time()

    def on_step(self, state) -> None:
        state.stop = time.process_time() - self.start >= self.seconds


def train_vaekit(x_train: torch.Tensor, seconds: float, seed: int, hidden: tuple[int, ...]) -> tuple[vaekit.VAE, int]:
    """vaekit's VAE with AEVB's settings (M = 100, L = 1, analytic KL), dynamic binarization."""
    torch.manual_seed(seed)
    model = vaekit.VAE.mlp(latent_dim=20, hidden=hidden)
    budget = CPUBudget(seconds)
    history = vaekit.fit(model, lambda m, x: -objectives.elbo(m, x), x_train, epochs=10**6, batch_size=100,
                         transform=binarize, device="cpu", seed=seed, callbacks=[budget], progress=False)
    return model.eval(), history.last["step"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="CPU seconds of training for each model")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per test digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400], help="vaekit's hidden layer sizes")
    parser.add_argument("--smoke", action="store_true", help="5 s of training, k = 50, 200 test digits")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.k = 5.0, 50
    torch.set_num_threads(1)
    vaekit.seed_everything(args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, test = embedded_digits("train"), embedded_digits("test")
    x_train = train.images
    x_test = binarize_static(test.images, seed=0)
    if args.smoke:
        x_test = x_test[:200]
    print(f"data: {train.source}; {len(x_train)} training digits, {len(x_test)} test digits (binarized with seed 0)")
    print(f"budget: {args.seconds:.0f} CPU seconds of training per model, torch threads: {torch.get_num_threads()}")

    rows, nll = [], {}
    runs = [("PyTorch example VAE (784-400-20, grey-level BCE, batch 128)", lambda: train_example(x_train, args.seconds, args.seed)),
            (f"vaekit VAE.mlp (784-{'-'.join(map(str, args.hidden))}-20, AEVB M=100 L=1, dynamic binarization)",
             lambda: train_vaekit(x_train, args.seconds, args.seed, tuple(args.hidden)))]
    for name, train_fn in runs:
        model, steps = train_fn()
        torch.manual_seed(args.seed + 1)
        ll = metrics.log_likelihood(model, x_test, k=args.k, progress=False)  # (N,)
        elbo = metrics.evaluate_elbo(model, x_test)["elbo"]
        nll[name] = -ll
        rows.append((name, steps, -ll.mean().item(), -elbo))
        print(f"  {name}: {steps} steps, NLL {-ll.mean().item():.2f}", flush=True)

    print(f"\n| model | steps in {args.seconds:.0f} CPU s | test NLL (k={args.k}) | test -ELBO |")
    print("| --- | ---: | ---: | ---: |")
    for name, steps, n, e in rows:
        print(f"| {name} | {steps} | {n:.2f} | {e:.2f} |")
    (ref, ref_nll), (ours, ours_nll) = list(nll.items())
    diff = ours_nll - ref_nll  # (N,) paired over test digits
    se = diff.std().item() / math.sqrt(len(diff))
    print(f"\nvaekit minus example: {diff.mean().item():+.2f} nats (standard error {se:.2f}); "
          f"{'vaekit is no worse' if diff.mean().item() <= 0 else 'the example is better'}")


if __name__ == "__main__":
    main()
