"""The torch device a run trains on: `resolve_device` turns --device into one, or says in one line why it cannot."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | None) -> torch.device:
    """`None`/"auto" -> cuda when available, else cpu; otherwise the named device (clear error if unavailable)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise SystemExit(
            f"error: --device {device} is not a torch device; use auto, cpu, cuda or cuda:<index>."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {device} was asked for, but this PyTorch build sees no CUDA device.")
    return resolved
