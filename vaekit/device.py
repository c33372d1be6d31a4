"""Where tensors live: one helper that picks a device, and nothing that hard-codes one."""
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
            raise ValueError(f"{ENV_VAR}={name!r} is not a torch device name (try 'cpu', 'cuda', 'cuda:1', 'mps')") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{ENV_VAR}={name!r} but CUDA is not available on this machine")
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

