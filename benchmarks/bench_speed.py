"""Speed of ``vaekit.train.fit`` and ``vaekit.metrics.log_likelihood`` next to plain PyTorch.

Two measurements, each run in one process with the contenders alternating (ABBA order), on the
device from ``vaekit.default_device()`` (``--device`` overrides it):

fit   One epoch of the canonical PyTorch VAE example (pytorch/examples ``vae/main.py``:
      ``DataLoader`` over a ``TensorDataset``, MLP VAE 784-400-20, Adam 1e-3, batch 128, summed
      BCE plus analytic KL), written out below as the baseline, against one epoch of
      ``vaekit.train.fit`` on ``vaekit.VAE.mlp(latent_dim=20, hidden=(400,))`` with ``-vaekit.elbo``,
      same data, batch size and optimizer settings.
nll   k = 5000 importance-sampled NLL of 1,000 test digits: a straightforward batched version (one
      digit's 5,000 samples per decoder call) against ``vaekit.metrics.log_likelihood``.

Each is also compared with its *matmul floor*: the floating-point work of the matrix products
the computation cannot avoid (forward and backward of every linear layer for fit; the encoder and
decoder products for the NLL), divided by the rate ``torch.mm`` reaches on this machine at those
exact shapes (for the NLL, at the fastest of several numbers of samples per product); the floor is
timed alternating with the contenders, under the same conditions. With ``--bf16`` the same
products are also timed in bfloat16 (``floor[bf16]``). For fit, ``floor+adam+binarize`` adds to
the products, done on the model's own weights, the two other things every step with these
settings does: one Adam update and one binarization of a batch. It leaves out all elementwise
work, autograd and data handling: a real float32 loop does all of it and more. Times are the best of the
repetitions (the median and the process CPU time are printed too); ``--clock cpu`` bases the
final ratios on the process CPU time instead, steadier when other work shares the machine.

Usage::

    python benchmarks/bench_speed.py --compile --bf16   # both, full size, every variant (~9 min on 2 cores)
    python benchmarks/bench_speed.py fit --quick        # a fast sanity run
    OMP_NUM_THREADS=1 python benchmarks/bench_speed.py  # on one core

The last lines are the ratios, one per line, e.g. ``fit/canonical ratio 0.42``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import torch
from torch import nn

import vaekit
from vaekit import metrics
from vaekit.data import binarize, binarize_static, embedded_digits
from vaekit.train import bf16_autocast_available, fit, make_optimizer

from canonical_vae import CanonicalVAE, canonical_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``, the device synchronised on both sides."""
    sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w, time.process_time() - c


def alternate(
    contenders: dict, reps: int, device: torch.device
) -> dict[str, list[tuple[float, float]]]:
    """Run each contender ``reps`` times, in ABBA order so that slow drifts of the machine cancel."""
    names, times = list(contenders), {name: [] for name in contenders}
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(contenders[name], device))
    return times


def gemm_pass(
    shapes: list[tuple[int, int, int, str]],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
):
    """A function doing one ``torch.mm`` at each of ``shapes``: (m, k, n, layout) for an (m, k) @ (k, n)
    product; layout "nt" multiplies by a transposed weight, "tn" a transposed activation (as autograd does)."""
    ops = []
    for m, k, n, layout in shapes:

        def rand(*size):
            return torch.randn(*size, device=device, dtype=dtype)

        if layout == "nt":
            a, b = rand(m, k), rand(n, k).t()
        elif layout == "tn":
            a, b = rand(k, m).t(), rand(k, n)
        else:
            a, b = rand(m, k), rand(k, n)
        ops.append((a, b))
    return lambda: [torch.mm(a, b) for a, b in ops]


def gemm_seconds(shapes, device: torch.device, rounds: int) -> float:
    """Best time of one pass over ``shapes`` (see :func:`gemm_pass`)."""
    run = gemm_pass(shapes, device)
    return min(timed(run, device)[0] for _ in range(rounds))


def repeat(fn, times: int):
    def run():
        for _ in range(times):
            fn()

    return run


def flops(shapes) -> int:
    return sum(2 * m * k * n for m, k, n, _ in shapes)


BF16_FLOOR = "matmul floor[bf16]"
LOWER_BOUND = "floor+adam+binarize"


def report(
    times: dict[str, list[tuple[float, float]]],
    baseline: str,
    variants: list[str],
    clock: str,
) -> list[str]:
    """Print best and median times; return the ratio lines of the best times on ``clock`` ("wall" or "cpu")."""
    for name, runs in times.items():
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"  {name:30s} best {min(wall):8.3f} s   median {statistics.median(wall):8.3f} s   "
            f"process CPU {min(cpu):8.3f} s"
        )

    def ratios(which):
        column = {"wall": 0, "cpu": 1}[which]
        best = {name: min(run[column] for run in runs) for name, runs in times.items()}
        floor = best["matmul floor"]
        lines = [
            f"{name}/{baseline} ratio {best[name] / best[baseline]:.2f}"
            for name in variants
        ]
        lines.append(f"{baseline}/floor ratio {best[baseline] / floor:.2f}")
        lines += [f"{name}/floor ratio {best[name] / floor:.2f}" for name in variants]
        if (
            BF16_FLOOR in best
        ):  # the bf16 variants against the products done in bfloat16
            lines += [
                f"{name}/floor[bf16] ratio {best[name] / best[BF16_FLOOR]:.2f}"
                for name in variants
                if "bf16" in name
            ]
        if LOWER_BOUND in best:
            lines.append(
                f"{LOWER_BOUND}/{baseline} ratio {best[LOWER_BOUND] / best[baseline]:.2f}"
            )
        return lines

    other = "wall" if clock == "cpu" else "cpu"
    print(
        f"  (ratios in {'wall-clock' if other == 'wall' else 'process CPU'} time: "
        + ", ".join(line.replace(" ratio ", " ") for line in ratios(other))
        + ")"
    )
    return ratios(clock)


# --------------------------------------------------------------------------------------------
# fit: the canonical example loop
# --------------------------------------------------------------------------------------------


def lower_bound_step(batch: torch.Tensor, device: torch.device):
    """One step of what every float32 loop with these settings does: the layers' products on the
    model's own weights (weight gradients written into its .grad), one binarization of a batch and
    one Adam update, back to back. No elementwise work, no autograd, no data gathering, and the
    same activations every step."""
    model = vaekit.VAE.mlp(latent_dim=20, hidden=(400,)).to(device)
    opt = make_optimizer(model.parameters(), "adam", lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    acts = [
        (
            torch.randn(128, lin.in_features, device=device),
            torch.randn(128, lin.out_features, device=device),
        )
        for lin in layers
    ]

    def step():
        for i, (lin, (a, g)) in enumerate(zip(layers, acts)):
            torch.mm(a, lin.weight.t())  # forward
            torch.mm(g.t(), a, out=lin.weight.grad)  # weight gradient
            if i > 0:
                torch.mm(g, lin.weight)  # input gradient
        binarize(batch)
        opt.step()

    return step


def canonical_epoch(model, optimizer, train_loader, device):
    model.train()
    train_loss = 0
    for (data,) in train_loader:
        data = binarize(
            data.to(device)
        )  # the same dynamic binarization as fit's transform
        train_loss += canonical_step(model, optimizer, data).item()
    return train_loss / len(train_loader.dataset)


def neg_elbo(model, x):
    return -vaekit.elbo(model, x)


def bench_fit(args, device) -> list[str]:
    n = 6_400 if args.quick else 60_000
    digits = embedded_digits("train").images  # (4000, 1, 28, 28) grey levels in [0, 1]
    x = digits.repeat(math.ceil(n / len(digits)), 1, 1, 1)[:n]
    print(
        f"fit: {n:,} samples = the {len(digits):,} embedded real MNIST digits tiled {n / len(digits):g}x, "
        f"binarized afresh in every batch; batch 128, Adam lr 1e-3; device {device}, "
        f"{torch.get_num_threads()} CPU thread(s)"
    )
    torch.manual_seed(0)
    canon = CanonicalVAE().to(device)
    canon_opt = torch.optim.Adam(canon.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x), batch_size=128, shuffle=True
    )
    x_dev = x.to(device)  # fit takes the data on the device once; it never leaves it
    contenders = {
        "canonical": lambda: canonical_epoch(canon, canon_opt, loader, device)
    }
    variants = {"fit": {}}
    if args.compile:
        variants["fit[compile]"] = {"compile": True}
    if args.bf16:
        variants["fit[bf16]"] = {"autocast": True}
    if args.compile and args.bf16:
        variants["fit[compile+bf16]"] = {"compile": True, "autocast": True}
    seeds = iter(range(1, 10**6))
    for name, kwargs in variants.items():
        torch.manual_seed(0)
        model = vaekit.VAE.mlp(latent_dim=20, hidden=(400,)).to(device)
        opt = make_optimizer(model.parameters(), "adam", lr=1e-3)

        def run(model=model, opt=opt, kwargs=kwargs, **extra):
            return fit(
                model,
                neg_elbo,
                x_dev,
                batch_size=128,
                optimizer=opt,
                transform=binarize,
                device=device,
                seed=next(seeds),
                progress=False,
                **{"epochs": 1, **kwargs, **extra},
            )

        w, _ = timed(
            lambda: run(steps=20), device
        )  # warm-up (and compilation for fit[compile])
        if kwargs.get("compile"):
            print(f"  {name} warm-up with compilation: {w:.1f} s (one-time)")
        contenders[name] = run
    warm_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:2560]), batch_size=128, shuffle=True
    )
    canonical_epoch(
        canon, canon_opt, warm_loader, device
    )  # warm-up of the baseline: 20 steps
    layers = [
        m for m in model.modules() if isinstance(m, nn.Linear)
    ]  # 784-400, 400-40 | 20-400, 400-784
    step = []
    for i, lin in enumerate(layers):
        a, b = lin.in_features, lin.out_features
        step.append((128, a, b, "nt"))  # forward: x @ W^T
        step.append((b, 128, a, "tn"))  # weight gradient: g^T @ x
        if (
            i > 0
        ):  # input gradient g @ W (none for the first layer: the data need no gradient)
            step.append((128, b, a, "nn"))
    steps = n // 128
    contenders["matmul floor"] = repeat(
        gemm_pass(step, device), steps
    )  # the epoch's products, nothing else
    if (
        args.bf16
    ):  # the same products in bfloat16: what the bf16 variants could reach at best
        contenders[BF16_FLOOR] = repeat(gemm_pass(step, device, torch.bfloat16), steps)
    contenders[LOWER_BOUND] = repeat(lower_bound_step(x_dev[:128], device), steps)
    times = alternate(contenders, args.reps, device)
    print(f"seconds per epoch, {args.reps} alternating repetitions:")
    lines = report(times, "canonical", list(variants), args.clock)
    for floor in ("matmul floor", BF16_FLOOR)[: 1 + args.bf16]:
        print(
            f"  ({floor}: {flops(step) * steps / 1e9:.1f} GFLOP per epoch, {steps} steps of torch.mm at the "
            f"layers' shapes, {flops(step) * steps / min(w for w, _ in times[floor]) / 1e9:.0f} GFLOP/s)"
        )
    return lines


# --------------------------------------------------------------------------------------------
# nll: a straightforward batched importance-sampling estimate
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def straightforward_nll(model, x, k):
    """-log p(x) per digit: one digit's k samples per batch, log-mean-exp of the log weights."""
    out = []
    for xi in x:
        xi = xi.unsqueeze(0)  # (1, 1, 28, 28)
        q = model.encode(xi)
        z = q.sample((k,))  # (k, 1, D)
        log_w = (
            model.decode(z).log_prob(xi) + model.prior.log_prob(z) - q.log_prob(z)
        )  # (k, 1)
        out.append(torch.logsumexp(log_w, 0) - math.log(k))
    return -torch.cat(out)


def bench_nll(args, device) -> list[str]:
    n, k = (20, 5000) if args.quick else (1000, 5000)
    torch.manual_seed(0)
    train = embedded_digits("train").images.to(device)
    x = binarize_static(embedded_digits("test").images[:n]).to(device)
    model = vaekit.VAE.mlp(latent_dim=20, hidden=(400,)).to(device)
    epochs = 1 if args.quick else 10
    fit(
        model,
        neg_elbo,
        train,
        epochs=epochs,
        transform=binarize,
        device=device,
        progress=False,
    )
    print(
        f"nll: k = {k} importance samples for each of {n} statically binarized embedded test digits; "
        f"MLP VAE 784-400-20 trained for {epochs} epoch(s) on the 4,000 training digits; device {device}, "
        f"{torch.get_num_threads()} CPU thread(s)"
    )
    check = x[
        :5
    ]  # with the same random state both draw the same samples: the estimates must agree
    torch.manual_seed(1)
    a = straightforward_nll(model, check, k)
    torch.manual_seed(1)
    b = -metrics.log_likelihood(model, check, k, progress=False)
    print(
        f"  same samples, 5 digits: largest difference between the two estimates "
        f"{(a - b).abs().max().item():.2e} nats"
    )
    results = {}

    def keep(name, fn):
        def run():
            results[name] = fn().mean().item()

        return run

    def nll(**kwargs):
        return -metrics.log_likelihood(model, x, k, progress=False, **kwargs)

    contenders = {
        "straightforward": keep(
            "straightforward", lambda: straightforward_nll(model, x, k)
        ),
        "log_likelihood": keep("log_likelihood", nll),
    }
    variants = ["log_likelihood"]
    for flag, name, kwargs in (
        (args.compile, "log_likelihood[compile]", {"compile": True}),
        (args.bf16, "log_likelihood[bf16]", {"autocast": True}),
        (
            args.compile and args.bf16,
            "log_likelihood[compile+bf16]",
            {"compile": True, "autocast": True},
        ),
    ):
        if flag:
            variants.append(name)
            contenders[name] = keep(name, lambda kwargs=kwargs: nll(**kwargs))
            w, _ = timed(
                lambda: metrics.log_likelihood(
                    model, x[:2], k, progress=False, **kwargs
                ),
                device,
            )
            print(f"  {name} warm-up on 2 digits: {w:.1f} s")
    # Matmul floor: the encoder on all digits, the decoder on all n * k samples in products of the
    # fastest of a few sizes (a fraction of one digit's samples, or several digits' on a GPU).
    enc = [(n, 784, 400, "nt"), (n, 400, 40, "nt")]

    def dec(rows):
        return [(rows, 20, 400, "nt"), (rows, 400, 784, "nt")]

    sizes = {math.ceil(k / c) for c in (1, 2, 4, 8, 16)} | (
        {8 * k, 64 * k} if device.type == "cuda" else set()
    )
    probe = {
        rows: gemm_seconds(dec(rows), device, rounds=10) / rows
        for rows in sorted(sizes)
    }
    rows = min(probe, key=probe.get)
    passes = math.ceil(n * k / rows)
    enc_pass, dec_pass = gemm_pass(enc, device), gemm_pass(dec(rows), device)
    contenders["matmul floor"] = lambda: (enc_pass(), repeat(dec_pass, passes)())
    if args.bf16:  # the decoder's products in bfloat16, as under autocast
        dec_bf16 = gemm_pass(dec(rows), device, torch.bfloat16)
        contenders[BF16_FLOOR] = lambda: (enc_pass(), repeat(dec_bf16, passes)())
    total_flops = flops(enc) + flops(dec(n * k))
    times = alternate(contenders, args.reps, device)
    scale = (
        n * k / (passes * rows)
    )  # the floor's products covered passes * rows >= n * k samples
    floors = ("matmul floor", BF16_FLOOR)[: 1 + args.bf16]
    for floor in floors:
        times[floor] = [(w * scale, cpu * scale) for w, cpu in times[floor]]
    print(f"seconds for the {n} digits, {args.reps} alternating repetitions:")
    lines = report(times, "straightforward", variants, args.clock)
    for floor in floors:
        print(
            f"  ({floor}: {total_flops / 1e9:.0f} GFLOP, torch.mm on {rows} samples per product, the fastest of "
            f"{sorted(probe)} in float32: {total_flops / min(w for w, _ in times[floor]) / 1e9:.0f} GFLOP/s)"
        )
    print(
        "mean NLL (nats): "
        + ", ".join(f"{name} {v:.3f}" for name, v in results.items())
    )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=("fit", "nll", "all"), default="all")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a sanity run of a minute or two",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions of each contender (default 3 fit, 2 nll)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time the torch.compile paths"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="also time the bfloat16 autocast paths"
    )
    parser.add_argument(
        "--device", default=None, help="default: vaekit.default_device()"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="which times the final ratios use: wall-clock (default), or the process CPU time, "
        "steadier on a machine shared with other work (meaningful with one thread)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else vaekit.default_device()
    warnings.filterwarnings("ignore", category=UserWarning)
    print(
        f"torch {torch.__version__}; device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    if args.bf16 and not bf16_autocast_available(device):
        print(
            f"note: {device} has no fast bfloat16 products, so the [bf16] variants run in float32"
        )
    lines = []
    if args.what in ("fit", "all"):
        args_fit = argparse.Namespace(**{**vars(args), "reps": args.reps or 3})
        lines += bench_fit(args_fit, device)
    if args.what in ("nll", "all"):
        args_nll = argparse.Namespace(**{**vars(args), "reps": args.reps or 2})
        lines += bench_nll(args_nll, device)
    print(
        f"\nratios of the best {'wall-clock' if args.clock == 'wall' else 'process CPU'} times:"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
