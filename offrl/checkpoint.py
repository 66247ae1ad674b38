"""Checkpoints: a run's state (networks, optimizers, schedules, RNG states, step) saved atomically and restored;
`seed_everything` seeds the RNGs whose states a checkpoint keeps.

`save_checkpoint` writes `{name: obj.state_dict()}` with the RNG states and the step through `offrl.atomic`;
`load_checkpoint` restores them (an optimizer keeps this command line's settings, its moments come from the file);
`read_checkpoint` reads one for the arguments it saved. Every error is a one-line `SystemExit`.
"""

from __future__ import annotations

import io
import os
import pathlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from offrl.atomic import atomic_write

__all__ = ["checkpoint_path", "load_checkpoint", "read_checkpoint", "save_checkpoint", "seed_everything"]

CHECKPOINT_NAME = "checkpoint.pt"
"""The checkpoint file in a run directory."""


def checkpoint_path(path: str | pathlib.Path) -> pathlib.Path:
    """The checkpoint file that `path` names: the file itself, or a run directory's `checkpoint.pt`."""
    path = pathlib.Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: pathlib.Path, device: torch.device | str = "cpu", what: str = "--resume") -> dict[str, Any]:
    """The payload of the checkpoint file `path` (tensors on `device`); a one-line `SystemExit` names the flag `what`
    when it is missing or unreadable."""
    if not path.is_file():
        raise SystemExit(f"error: {what} {path}: no such checkpoint file (or run directory with one).")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001  (any unreadable file: say which and why, in one line)
        message = str(error).splitlines()[0] if str(error) else ""
        raise SystemExit(
            f"error: {what} {path}: not a readable checkpoint ({type(error).__name__}: {message})"
        ) from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The Python, NumPy and torch (CPU, and CUDA when present) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the RNG states `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | os.PathLike, step: int, objects: Mapping[str, Any], **extra: Any) -> pathlib.Path:
    """Save `{name: module/optimizer/scheduler}.state_dict()`, the RNG states and `step` atomically to `path`.

    Temporary files left beside `path` by an earlier save that was killed are removed first (a run directory holds
    one run, so no other process is writing them). The checkpoint is serialized in memory and then written, so a full
    disk is an `OSError` (torch's own writer reports it as an opaque RuntimeError) and the old file stays.
    """
    path = pathlib.Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    payload = {
        "step": step,
        "state": {name: obj.state_dict() for name, obj in objects.items()},
        "rng": rng_state(),
        **extra,
    }
    serialized = io.BytesIO()
    torch.save(payload, serialized)
    atomic_write(path, lambda file: file.write(serialized.getbuffer()), mode="wb")
    return path


def load_checkpoint(
    path: str | os.PathLike, objects: Mapping[str, Any], device: torch.device, optional: Sequence[str] = ()
) -> dict[str, Any]:
    """Restore the objects' state dicts and the RNG states saved by `save_checkpoint`; returns the payload.

    `path` is a checkpoint file or a run directory holding `checkpoint.pt`. An optimizer keeps its own settings (the
    learning-rate tensors, the same objects, which schedules and captured CUDA graphs hold; weight decay, ...): a
    resume with another `--lr` trains with it. Its state (moments, step counts) comes from the checkpoint. Errors
    (missing, unreadable, from another algorithm or network size) are one-line `SystemExit`s. The `optional` objects
    may be missing from the checkpoint (e.g. the online phase's, in an offline run's checkpoint): they keep their state.
    """
    path = checkpoint_path(path)
    payload = read_checkpoint(path, device)
    missing = set(objects) - set(payload.get("state", {})) - set(optional)
    if missing:
        raise SystemExit(f"error: --resume {path}: checkpoint has no {sorted(missing)} (from another algorithm?)")
    for name, obj in objects.items():
        if name not in payload["state"]:
            continue
        # an optimizer's settings (lr tensors, weight decay, ...) are this command line's; its state (moments, step
        # counts) is the checkpoint's. The lr tensors stay the same objects, which schedules and CUDA graphs hold.
        settings = [{k: v for k, v in g.items() if k != "params"} for g in getattr(obj, "param_groups", [])]
        try:
            obj.load_state_dict(payload["state"][name])
        except (RuntimeError, ValueError, KeyError) as error:
            first = str(error).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:2])
            hint = (
                "resume with --online-steps at least the online steps it has taken" if name == "replay_buffer"
                else "was it trained with other network sizes or by another script?"
            )  # fmt: skip
            raise SystemExit(
                f"error: --resume {path}: its '{name}' does not fit this script's ({detail[:300]}); {hint}"
            ) from None
        if isinstance(obj, torch.optim.Optimizer):
            for group, own in zip(obj.param_groups, settings, strict=True):
                group.update(own)
    set_rng_state(payload["rng"])
    return payload
