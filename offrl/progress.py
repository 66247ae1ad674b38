"""How a run shows its progress: a progress bar in a terminal, a plain status line every so often in a log file.

Redirected to a file (a Slurm job, `nohup`), a progress bar's redraws are ~10 `\\r`-separated lines a second (about
11 MB per million steps); `progress_display` gives a `StatusLines` there instead, which prints one line every
`STATUS_EVERY_SECONDS` (step, updates/s, the latest score, the time left) and the lines the run writes (evaluations,
notes). Both take the same calls: `update`, `set_postfix`, `set_description`, `write`, `close`.

`TrainingClock` times a run's updates with compilation, evaluation, logging and saving left out: the updates/s that
the progress line, TensorBoard and results.json show.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import torch
from tqdm import tqdm

__all__ = [
    "ESTIMATE_AFTER_STEPS",
    "STATUS_EVERY_SECONDS",
    "StatusLines",
    "TrainingClock",
    "long_run_note",
    "progress_display",
]

STATUS_EVERY_SECONDS = 60.0
"""How often a run whose output is not a terminal prints its status line."""
ESTIMATE_AFTER_STEPS = 20
"""Timed (post-warm-up) steps after which a run estimates how long the rest will take."""
LONG_RUN_HOURS = 3.0
"""A run whose estimate exceeds this says so (`long_run_note`), with `QUICK_RUN_FLAGS`."""
QUICK_RUN_FLAGS = "--total-steps 20000 --hidden-dims 256 256 --eval-every 5000 --eval-episodes 20"


class TrainingClock:
    """The training time of a run's steps: each step's clock runs from the step's start to its first bookkeeping
    (`pause`: logging, evaluating, saving) or its end; warm-up steps (compilation, CUDA graph capture) count apart.

    Attributes: train_seconds and timed_steps (offline steps), online_seconds and online_timed_steps (online steps:
    an environment step and an update), compile_seconds (warm-up steps).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.train_seconds, self.online_seconds, self.compile_seconds = 0.0, 0.0, 0.0
        self.timed_steps, self.online_timed_steps = 0, 0
        self._start: float | None = None
        self._paused, self._warming, self._online = True, False, False

    def start_step(self, warming: bool, online: bool) -> None:
        """A step begins: a warm-up step (timed apart), an online step or an offline one."""
        if self._start is None:
            self._start = time.perf_counter()
        self._warming, self._online, self._paused = warming, online, False

    def end_step(self) -> None:
        """The step ended: count it, and start the next step's clock now if bookkeeping paused this one."""
        if self._warming:  # compilation is kept out of the throughput
            self.pause()
        elif self._online:
            self.online_timed_steps += 1
        else:
            self.timed_steps += 1
        if self._paused:
            self._start = time.perf_counter()
        self._paused = False

    def pause(self) -> None:
        """Stop this step's clock (the first bookkeeping call of a step; later calls do nothing). On CUDA, waits for
        the queued kernels first, so that their time counts."""
        if self._paused or self._start is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self._start
        if self._warming:
            self.compile_seconds += seconds
        elif self._online:
            self.online_seconds += seconds
        else:
            self.train_seconds += seconds
        self._paused = True

    def catch_up(self) -> None:
        """Add the time since the clock last started to the totals; the clock goes on running."""
        if not self._paused and self._start is not None:
            self.pause()
            self._start, self._paused = time.perf_counter(), False

    @property
    def timed(self) -> int:
        """Steps timed so far (offline and online), warm-up excluded."""
        return self.timed_steps + self.online_timed_steps

    @property
    def steps_per_second(self) -> float | None:
        """Offline updates per second so far, compilation, evaluation and logging excluded (None before any)."""
        return self.timed_steps / self.train_seconds if self.timed_steps and self.train_seconds > 0 else None

    @property
    def online_steps_per_second(self) -> float | None:
        """Online steps (environment step + update) per second so far, as `steps_per_second` (None before any)."""
        seconds, count = self.online_seconds, self.online_timed_steps
        return count / seconds if count and seconds > 0 else None


def long_run_note(
    rate: float | None, steps_left: int, eval_every: int, eval_episodes: int, seconds_per_episode: float, device: str
) -> str | None:
    """What a run says when the rest would take more than `LONG_RUN_HOURS` at `rate` updates/s on `device`
    (evaluations included), with the flags of a quick run; None when it would not (or no rate is known yet)."""
    if rate is None:
        return None
    evaluations = steps_left // eval_every + 1
    hours = (steps_left / rate + evaluations * eval_episodes * seconds_per_episode) / 3600
    if hours <= LONG_RUN_HOURS:
        return None
    return (
        f"at {rate:,.0f} updates/s on {device}, the remaining {steps_left:,} steps and {evaluations} evaluations "
        f"take about {hours:,.0f} h. For a quick run: {QUICK_RUN_FLAGS}"
    )


def progress_display(
    total: int, initial: int, name: str, stream: TextIO | None = None, unit: str = "step"
) -> tqdm | StatusLines:
    """A tqdm progress bar over `unit`s `initial`..`total` when `stream` (default: stdout) is a terminal, else
    `StatusLines` over the same."""
    stream = sys.stdout if stream is None else stream
    if stream.isatty():
        return tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True, file=stream, unit=unit[:3])
    return StatusLines(total, initial, name, stream, unit=unit)


class StatusLines:
    """Progress for a log file: a line `[name] step 1,000 / 20,000 (5%), sps 81, success 0.300, about 3 min left`
    every `every` seconds of steps, and the run's own lines as they come; no redraws."""

    def __init__(
        self,
        total: int,
        initial: int,
        name: str,
        stream: TextIO,
        every: float = STATUS_EVERY_SECONDS,
        unit: str = "step",
    ):
        self.total, self.n, self.name, self.stream, self.every, self.unit = total, initial, name, stream, every, unit
        self.postfix: dict[str, Any] = {}
        self._start_step, self._start = initial, time.monotonic()
        self._last = self._start

    def update(self, steps: int = 1) -> None:
        self.n += steps
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.write(self.status(now))

    def status(self, now: float | None = None) -> str:
        """The status line: step, share done, the postfix (updates/s, the latest score) and the time left."""
        now = time.monotonic() if now is None else now
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"[{self.name}] {self.unit} {self.n:,} / {self.total:,}{share}"]
        parts += [f"{key} {value}" for key, value in self.postfix.items()]
        done, seconds = self.n - self._start_step, now - self._start
        if done > 0 and seconds > 0:
            parts.append(f"about {_duration((self.total - self.n) * seconds / done)} left")
        return ", ".join(parts)

    def set_postfix(self, postfix: dict[str, Any] | None = None, refresh: bool = True, **values: Any) -> None:
        self.postfix = {**(postfix or {}), **values}

    def set_description(self, name: str, refresh: bool = True) -> None:
        self.name = name

    def write(self, line: str, file: TextIO | None = None) -> None:
        print(line, file=file or self.stream, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> StatusLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
