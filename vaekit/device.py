"""Where tensors live, and what a device can do: the helper that picks a device, the device of a
module, whether bfloat16 autocast pays, and how large a chunk of work fits in memory. Nothing
hard-codes a device."""

from __future__ import annotations

import os

import torch

ENV_VAR = "VAEKIT_DEVICE"


def default_device() -> torch.device:
    """The best available device: ``$VAEKIT_DEVICE`` if set, else CUDA, then Apple MPS, then CPU."""
    name = os.environ.get(ENV_VAR, "").strip()
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError as e:
            raise ValueError(
                f"{ENV_VAR}={name!r} is not a torch device name (try 'cpu', 'cuda', 'cuda:1', 'mps')"
            ) from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"{ENV_VAR}={name!r} but CUDA is not available on this machine"
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


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


def chunk_elements(device: torch.device) -> int:
    """How many decoder outputs one chunk of :func:`vaekit.metrics.log_likelihood` may hold on ``device``.

    CPU: 2**19 (2 MiB of float32), so that each chunk's outputs stay in cache between the matrix
    product that makes them and the likelihood that reads them. CUDA: a quarter of the free
    memory, counting ~32 bytes per output for the temporaries, at most 2**28. Elsewhere: 2**25.
    """
    if device.type == "cpu":
        return 2**19
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(2**28, max(2**20, free // (4 * 32))))
    return 2**25
