"""Why a run stops early: Ctrl-C/SIGTERM (`StopRequest`), a dying sweep (`stop_with_parent`), NaN losses.

`StopRequest` turns SIGINT and SIGTERM into a request the loop checks between steps, so the run saves a checkpoint
and exits cleanly; work with no step to stop at (loading data, the first evaluation) is interrupted at once.
`check_finite` and `all_finite` find non-finite metrics and parameters (`NonFiniteLossError`).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "STOP_WITH_PARENT",
    "Interrupted",
    "NonFiniteLossError",
    "StopRequest",
    "all_finite",
    "check_finite",
    "failure",
    "out_of_memory",
    "stop_with_parent",
]

STOP_WITH_PARENT = "OFFRL_STOP_WITH_PARENT"
"""Environment variable `offrl.tools.sweep` sets to its process id for the jobs it starts (see `stop_with_parent`)."""


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or infinite."""


def check_finite(metrics: Mapping[str, float], step: int, last_checked_step: int) -> None:
    """Raise `NonFiniteLossError` naming the first non-finite metric and the steps it appeared between."""
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(f"{name} became {value} between steps {last_checked_step} and {step}.")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while the run could not stop between steps (loading data, the first evaluation)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signum


DUPLICATE_SIGNAL_SECONDS = 1.0
"""The same signal again within this time of the first is the same stop request, not a second one."""


class StopRequest:
    """Context manager: SIGINT (Ctrl-C) and SIGTERM set `self.signal` instead of killing the process.

    The training loop checks `stop.requested` once per step (a Python attribute, no device sync), saves a checkpoint
    and `results.json`, and exits. Inside `with stop.at_once():` (work that has no step to stop at: loading or
    generating the dataset, the evaluation before training) a signal raises `Interrupted` right away. A second signal
    before the stop is reached (e.g. during a long evaluation) interrupts at once (`KeyboardInterrupt`), except the
    same signal again within `DUPLICATE_SIGNAL_SECONDS` (one request delivered twice); while the final checkpoint is
    written (`saving`), further signals are ignored, so that checkpoint is never lost.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.saving = False  # while the last checkpoint is written, further signals wait for it
        self._first_at = 0.0
        self._at_once = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        if self._at_once:
            self.signal = signum
            raise Interrupted(signum)
        if self.signal is not None and not self.saving:
            if signum == self.signal and time.monotonic() - self._first_at < DUPLICATE_SIGNAL_SECONDS:
                return  # the same request delivered twice (a dying sweep's SIGTERM can arrive twice): one stop
            raise KeyboardInterrupt  # a second Ctrl-C: give up on what the run is doing
        if self.signal is None:
            self.signal, self._first_at = signum, time.monotonic()

    def at_once(self) -> _AtOnce:
        """A context in which a signal raises `Interrupted` at once."""
        return _AtOnce(self)

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class _AtOnce:
    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop

    def __enter__(self) -> None:
        if self.stop.requested:
            raise Interrupted(self.stop.signal)
        self.stop._at_once = True

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.stop._at_once = False
        if self.stop.requested and not isinstance(exc, Interrupted):
            # The handler set the request before it raised `Interrupted` inside whatever was running; a library may
            # have turned that into its own error (MuJoCo's XML parser: a ValueError) or swallowed it. Either way
            # the block was interrupted, and that is what the run reports.
            raise Interrupted(self.stop.signal) from None


def all_finite(nets: Mapping[str, torch.nn.Module]) -> bool:
    """Whether every floating-point tensor of the networks' state dicts is finite (one host sync)."""
    tensors = [
        t.detach().isfinite().all() for net in nets.values() for t in net.state_dict().values() if t.is_floating_point()
    ]
    return bool(torch.stack(tensors).all()) if tensors else True


def stop_with_parent() -> None:
    """Under `offrl.tools.sweep` (`OFFRL_STOP_WITH_PARENT` set to the sweep's pid): ask Linux to send this process
    SIGTERM when the sweep dies, however it dies (`PR_SET_PDEATHSIG`), so a killed sweep leaves no job training on:
    each one saves its checkpoint and exits, and a rerun of the sweep resumes it. Elsewhere (no variable, not Linux):
    nothing."""
    parent = os.environ.get(STOP_WITH_PARENT)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != parent:  # the sweep died before the request took effect
        raise SystemExit(f"error: the sweep that started this job (pid {parent}) is gone; rerun the sweep.")


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed (CUDA's `OutOfMemoryError`, the CPU allocator's RuntimeError)."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def failure(error: BaseException, step: int, kept: str, device: torch.device) -> tuple[str, int, str] | None:
    """How a run that `error` ended is recorded: (status, exit code, the line to print: "error: ..." or a note) for
    what a run can say in one line (NaN, a signal before or while stopping, a write that failed, memory); None for the
    rest (a refusal's `SystemExit` says its own line, a defect shows its traceback). `kept`: what checkpoint is left."""
    if isinstance(error, NonFiniteLossError):
        return "failed", 1, f"error: {error} The run is stopped; {kept}. Lower the learning rate or check the rewards."
    if isinstance(error, Interrupted):  # during the evaluation before training
        note = "interrupted during the evaluation at step 0, before any training; nothing was kept"
        return "interrupted", 128 + error.signal, note
    if isinstance(error, KeyboardInterrupt):  # a second Ctrl-C while stopping
        return "interrupted", 130, f"stopped at once by a second signal at step {step}; {kept}"
    if isinstance(error, OSError):
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        return "failed", 1, f"error: writing the run failed at step {step}{where}: {error.strerror or error}; {kept}."
    if out_of_memory(error):
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        return (
            "failed", 1,
            f"error: out of {device.type} memory at step {step} ({first}); lower --batch-size or the network sizes; "
            f"{kept}.",
        )  # fmt: skip
    return None
