"""Reconstruction error of vaekit's VectorQuantizer against vector-quantize-pytorch's VectorQuantize.

Both quantizers sit between the same encoder (``vaekit.nets.conv_trunk``) and decoder
(``vaekit.nets.deconv_trunk``), with the same K, D, Bernoulli reconstruction loss, commitment
weight 0.25, EMA decay 0.99, optimiser, seed, batches and number of steps; only the quantizer
differs. vector-quantize-pytorch's commitment loss is a mean over latent elements, so it is
multiplied by D*7*7 to weigh the same as vaekit's per-example sum.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/vq_reconstruction.py [--epochs 10] [--seeds 0 1 2] [--smoke]

Prints a markdown table: test reconstruction MSE (pixel probabilities against grey levels),
test reconstruction NLL (nats per image, statically binarized test set) and test perplexity.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

import vaekit
from vaekit import metrics
from vaekit.models import vqvae
from vaekit.data import binarize, binarize_static, mnist
from vaekit.distributions import bernoulli
from vaekit.nets import conv_trunk, deconv_trunk


class LibraryVQVAE(nn.Module):
    """The VQ-VAE of :mod:`vaekit.models.vqvae` with vector-quantize-pytorch's ``VectorQuantize`` in the middle."""

    def __init__(self, num_codes: int, code_dim: int, hidden: int, **vq_kwargs):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.num_codes = num_codes
        self.encoder = conv_trunk(1, hidden, code_dim)
        self.quantizer = VectorQuantize(
            dim=code_dim, codebook_size=num_codes, accept_image_fmap=True, **vq_kwargs
        )
        self.decoder = deconv_trunk(code_dim, hidden, 1)

    def forward(self, x):
        z_q, idx, commit = self.quantizer(self.encoder(x))
        return bernoulli(self.decoder(z_q), 3), idx, commit * z_q[0].numel()

    @torch.no_grad()
    def codes(self, x):
        self.eval()
        return self(x)[1]


def library_objective(model: LibraryVQVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    px, _, commit = model(x)
    rec = -px.log_prob(x)
    return {"loss": rec + commit, "reconstruction": rec}


def evaluate(
    model, x_test: torch.Tensor, x_test_bin: torch.Tensor, num_codes: int
) -> dict[str, float]:
    """Test MSE of the pixel probabilities, Bernoulli NLL of the binarized images, code perplexity."""
    model.eval()
    with torch.no_grad():
        px = model(x_test)[0]  # both models return p(x | z_q) first
        return {
            "mse": float(((px.mean - x_test) ** 2).mean()),
            "nll": float(-px.log_prob(x_test_bin).mean()),
            "perplexity": metrics.codebook_perplexity(model.codes(x_test), num_codes),
        }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--num-codes", type=int, default=64)
    ap.add_argument("--code-dim", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--smoke", action="store_true", help="one epoch, one seed")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.seeds = 1, args.seeds[:1]
    warnings.filterwarnings("ignore", category=vaekit.data.EmbeddedDigitsWarning)
    train, test = mnist("train"), mnist("test")
    print(f"data: {train.source}; {len(train)} train / {len(test)} test images")
    x_test_bin = binarize_static(test.images, seed=0)
    k, d, hdn = args.num_codes, args.code_dim, args.hidden
    common = dict(decay=0.99, commitment_weight=0.25)
    contenders = {
        "vaekit VectorQuantizer (EMA + dead-code restart)": (
            lambda: vqvae.VQVAE(k, d, hdn, ema=True, restart=True),
            vqvae.objective,
        ),
        "vaekit VectorQuantizer (loss-learned codebook, no restart)": (
            lambda: vqvae.VQVAE(k, d, hdn, ema=False, restart=False),
            vqvae.objective,
        ),
        "vector-quantize-pytorch VectorQuantize (EMA)": (
            lambda: LibraryVQVAE(k, d, hdn, **common),
            library_objective,
        ),
        "vector-quantize-pytorch VectorQuantize (EMA + kmeans init + dead-code threshold 2)": (
            lambda: LibraryVQVAE(
                k, d, hdn, kmeans_init=True, threshold_ema_dead_code=2, **common
            ),
            library_objective,
        ),
    }
    print(
        f"K={k}, D={d}, hidden={hdn}, {args.epochs} epochs of batch 128, Adam lr {args.lr}, seeds {args.seeds}\n"
    )
    rows = []
    for name, (build, objective) in contenders.items():
        results, t0 = [], time.perf_counter()
        for seed in args.seeds:
            vaekit.seed_everything(seed)
            model = build()
            vaekit.fit(
                model,
                objective,
                train.images,
                epochs=args.epochs,
                batch_size=128,
                lr=args.lr,
                device="cpu",
                seed=seed,
                transform=binarize,
                progress=False,
            )
            results.append(evaluate(model, test.images, x_test_bin, k))
        seconds = (time.perf_counter() - t0) / len(args.seeds)
        mean = {key: statistics.mean(r[key] for r in results) for key in results[0]}
        spread = {
            key: (
                statistics.stdev(r[key] for r in results) if len(results) > 1 else 0.0
            )
            for key in results[0]
        }
        rows.append((name, mean, spread, seconds))
    print(
        "| quantizer | test MSE | test recon NLL (nats) | test perplexity | s / run |"
    )
    print("|---|---|---|---|---|")
    for name, mean, spread, seconds in rows:
        print(
            f"| {name} | {mean['mse']:.4f} ± {spread['mse']:.4f} | {mean['nll']:.1f} ± {spread['nll']:.1f} "
            f"| {mean['perplexity']:.1f} ± {spread['perplexity']:.1f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
