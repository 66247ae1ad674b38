"""How a run shows its progress: a progress bar in a terminal, a plain status line every so often in a log file.

Redirected to a file (a Slurm job, `nohup`), a progress bar's redraws are ~10 `\\r`-separated lines a second (about
11 MB per million steps); `progress_display` gives a `StatusLines` there instead, which prints one line every
`STATUS_EVERY_SECONDS` (step, updates/s, the latest score, the time left) and the lines the run writes (evaluations,
notes). Both take the same calls: `update`, `set_postfix`, `set_description`, `write`, `close`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

__all__ = [
    "ESTIMATE_AFTER_STEPS",
    "STATUS_EVERY_SECONDS",
    "StatusLines",
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
