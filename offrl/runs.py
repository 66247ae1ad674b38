"""What every training run shares around its update: run directory, logging, results, checkpoints, signals.

The `train_*.py` scripts keep their loop in the file (a reader never leaves it); the pieces here are the ones that
would otherwise be copied into every script:

- `resolve_device`, `seed_everything`, `default_run_dir`, `compile_update` (with `CUDAGraphed`, `warmup_calls`);
- `RunLogger`: TensorBoard scalars, the hyperparameters as text, and `results.json` rewritten atomically after
  every evaluation (`{"algo", "env_name", "args", "status", "evals": [{"step", "success", "return",
  "normalized_score", "episode_length", "wall_time"}, ...]}`);
- `save_checkpoint` / `load_checkpoint`: modules, optimizers, RNG states and the step, written atomically;
- `StopRequest`: turns SIGINT/SIGTERM into a flag the loop checks between steps, so a run can save and exit;
- `check_finite`: stops a run whose losses became NaN or infinite, naming the loss and the steps.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import re
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "CUDAGraphed",
    "NonFiniteLossError",
    "RunLogger",
    "StopRequest",
    "atomic_write",
    "check_finite",
    "compile_update",
    "default_run_dir",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "warmup_calls",
]


def resolve_device(device: str | None) -> torch.device:
    """`None`/"auto" -> cuda when available, else cpu; otherwise the named device (clear error if unavailable)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {device} was asked for, but this PyTorch build sees no CUDA device.")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(env_name: str, algo: str, seed: int, root: str | os.PathLike = "runs") -> pathlib.Path:
    """`runs/<env>__<algo>__<seed>__<YYYYmmdd-HHMMSS>` (slashes in Minari ids become '-')."""
    safe_env = re.sub(r"[^\w.-]+", "-", env_name)
    return pathlib.Path(root) / f"{safe_env}__{algo}__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write a file through `write(file)` into a temporary file beside `path`, then rename it over `path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def compile_update(
    fn: Callable, enabled: bool, cudagraphs: bool, device: torch.device, name: str = "update"
) -> Callable:
    """`torch.compile` an update function; with `cudagraphs` on CUDA, also replay it as one CUDA graph.

    `cudagraphs` wraps the (compiled or eager) function in `CUDAGraphed`: after a few ordinary calls the whole call
    (forward, backward, optimizer step, target update) is captured once and then replayed with a single launch, which
    removes the per-kernel launch cost that dominates small RL networks. CUDA graphs need CUDA: on another device the
    flag is ignored with a warning. `warmup_calls(result)` tells how many first calls compile or capture.
    """
    if cudagraphs and device.type != "cuda":
        warnings.warn(f"--cudagraphs needs a CUDA device; ignored on {device.type}", stacklevel=2)
        cudagraphs = False
    if enabled:
        # On CPU, random numbers come from ATen's generator rather than Inductor's: Inductor's CPU random kernels are
        # slower than ATen's (IDQL's dropout masks took 2x as long), and compiled draws then match eager ones.
        options = {"fallback_random": True} if device.type == "cpu" else None
        fn = torch.compile(fn, dynamic=False, options=options)
    return CUDAGraphed(fn, name=name) if cudagraphs else fn


def warmup_calls(update: Callable) -> int:
    """How many first calls of a `compile_update` result compile or capture (timed apart from training): 1, or the
    warm-up calls plus the capturing call of a `CUDAGraphed`."""
    return getattr(update, "warmup_calls", 1)


class CUDAGraphed:
    """Call `fn(*tensors)` through a CUDA graph: ordinary calls first, then one capture, then replays.

    For each signature of the positional tensor arguments (shapes, dtypes, devices): the first `warmup` calls run
    `fn` normally on a side stream (compilation, lazy optimizer state and cuBLAS workspaces happen there, as capture
    requires); the next call captures `fn` into a `torch.cuda.CUDAGraph` and replays it; every later call copies its
    arguments into the graph's static input buffers and replays. A replay re-runs every kernel of the captured call
    (compiled or eager, the backward pass and the optimizer step included) from one CPU call.

    A function is safe to capture when every tensor it touches keeps its address between calls (parameters, gradients
    kept with `zero_grad(set_to_none=False)`, optimizer state with `capturable=True`, the dataset, learning rates
    held in tensors and changed in place), it draws random numbers from the CUDA generator (graph-safe: each replay
    draws new ones), never reads a tensor back to the host, and makes no Python decision that changes between calls.
    The train_*.py updates are written that way.

    The returned tensors are the graph's static outputs: the next call overwrites them, so read (or clone) them first.
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 2, name: str = "update") -> None:
        self.fn, self.warmup, self.name = fn, warmup, name
        self.warmup_calls = warmup + 1
        self._ordinary_calls: dict[tuple, int] = {}
        self._graphs: dict[tuple, tuple[list[torch.Tensor], Any, torch.cuda.CUDAGraph]] = {}

    def __call__(self, *args: torch.Tensor) -> Any:
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        graph = self._graphs.get(key)
        if graph is None:
            calls = self._ordinary_calls.get(key, 0)
            if calls < self.warmup:
                self._ordinary_calls[key] = calls + 1
                return self._side_stream_call(args)
            graph = self._graphs[key] = self._capture(args)
        static_inputs, static_outputs, cuda_graph = graph
        for buffer, value in zip(static_inputs, args, strict=True):
            buffer.copy_(value)
        cuda_graph.replay()
        return static_outputs

    def _side_stream_call(self, args: tuple[torch.Tensor, ...]) -> Any:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            outputs = self.fn(*args)
        torch.cuda.current_stream().wait_stream(stream)
        return outputs

    def _capture(self, args: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], Any, torch.cuda.CUDAGraph]:
        static_inputs = [a.clone() for a in args]
        cuda_graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        try:
            with torch.cuda.graph(cuda_graph):
                static_outputs = self.fn(*static_inputs)
        except RuntimeError as error:
            raise RuntimeError(
                f"capturing the {self.name} in a CUDA graph failed: {error}\nRun without --cudagraphs (the "
                "compiled update is unaffected), and please report this with the command that produced it."
            ) from error
        return static_inputs, static_outputs, cuda_graph


def optimizer_options(device: torch.device) -> dict[str, bool]:
    """Keyword arguments for `torch.optim.Adam`/`AdamW` that suit the device and a compiled update.

    CUDA: `capturable=True`, so the step counts live on the GPU and the step can run inside CUDA graphs.
    CPU: `fused=True`, one fused kernel over all parameters; the default there is a Python loop over the parameter
    tensors, several times slower at 4 x 512 sizes (about 14 ms against 3 ms per step for IQL's 3.2M parameters).
    Both accept learning rates held in tensors, which the scripts use for schedules.
    """
    return {"capturable": True} if device.type == "cuda" else {"fused": True}


def optimizer_step_for(optimizer: torch.optim.Optimizer, device: torch.device) -> Callable[[], Any]:
    """`optimizer.step` as a compiled update should call it.

    CUDA: the step itself, which torch.compile traces into the update's graph (and CUDA graphs capture).
    CPU: the fused kernel run eagerly (`torch.compiler.disable`): torch.compile's traced version of the CPU step was
    slower than the fused kernel it replaces (IQL on 2 CPU cores: 14.5 against 19.4 updates/s).
    """
    return optimizer.step if device.type == "cuda" else torch.compiler.disable(optimizer.step)


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or infinite."""


def check_finite(metrics: Mapping[str, float], step: int, last_checked_step: int) -> None:
    """Raise `NonFiniteLossError` naming the first non-finite metric and the steps it appeared between."""
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{name} became {value} between steps {last_checked_step} and {step}. The run is stopped; the last "
                f"checkpoint saved before it is kept. Lower the learning rate or check the dataset's rewards."
            )


class StopRequest:
    """Context manager: SIGINT (Ctrl-C) and SIGTERM set `self.signal` instead of killing the process.

    The training loop checks `stop.requested` once per step (a Python attribute, no device sync), saves a checkpoint
    and `results.json`, and exits. A second signal while stopping interrupts immediately.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # second Ctrl-C: give up on saving
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, step: int, objects: Mapping[str, Any], **extra: Any) -> pathlib.Path:
    """Save `{name: module/optimizer/scheduler}.state_dict()`, the RNG states and `step` atomically to `path`."""
    payload = {
        "step": step,
        "state": {name: obj.state_dict() for name, obj in objects.items()},
        "rng": _rng_state(),
        **extra,
    }
    atomic_write(path, lambda file: torch.save(payload, file), mode="wb")
    return pathlib.Path(path)


def load_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Restore the objects' state dicts and the RNG states saved by `save_checkpoint`; returns the payload."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise SystemExit(f"error: --resume {path}: no such checkpoint file.")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001
        raise SystemExit(
            f"error: --resume {path}: not a readable checkpoint ({type(error).__name__}: {error})"
        ) from None
    missing = set(objects) - set(payload["state"])
    if missing:
        raise SystemExit(f"error: --resume {path}: checkpoint has no {sorted(missing)} (from another algorithm?)")
    for name, obj in objects.items():
        obj.load_state_dict(payload["state"][name])
    _set_rng_state(payload["rng"])
    return payload


class RunLogger:
    """TensorBoard scalars plus `results.json` for one run directory.

    Args:
        run_dir: the run's directory (created).
        algo, env_name: recorded in results.json.
        args: the hyperparameters (a flat dict), written to results.json and to TensorBoard as a text table.
        resume_step: when resuming, TensorBoard events after this step are discarded and evals after it dropped.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        algo: str,
        env_name: str,
        args: Mapping[str, Any],
        resume_step: int | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = pathlib.Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = self.run_dir / "results.json"
        self.results: dict[str, Any] = {
            "algo": algo,
            "env_name": env_name,
            "args": _jsonable(dict(args)),
            "status": "running",
            "evals": [],
        }
        if resume_step is not None and self.results_path.is_file():
            previous = json.loads(self.results_path.read_text())
            self.results["evals"] = [e for e in previous.get("evals", []) if e["step"] <= resume_step]
            self.results.update({k: v for k, v in previous.items() if k not in self.results})
        self._eval_seconds, self._eval_episodes = 0.0, 0
        self.writer = SummaryWriter(str(self.run_dir), purge_step=resume_step)
        table = "\n".join(f"|{k}|{v}|" for k, v in self.results["args"].items())
        self.writer.add_text("hyperparameters", f"|parameter|value|\n|-|-|\n{table}", 0)

    def scalars(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write each metric as a TensorBoard scalar at `step`."""
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def evaluation(
        self, step: int, result: Mapping[str, Any], wall_time: float, seconds: float | None = None
    ) -> dict[str, Any]:
        """Record one evaluation (TensorBoard `eval/*` and a row in results.json, rewritten atomically).

        `seconds`, the evaluation's own duration, is logged as `time/eval_seconds`, and results.json keeps the mean
        cost of an episode over this run's evaluations (`eval_seconds_per_episode`, environment creation included).
        """
        if seconds is not None and result.get("num_episodes"):
            self._eval_seconds += seconds
            self._eval_episodes += result["num_episodes"]
            self.scalars(step, {"time/eval_seconds": seconds})
            self.results["eval_seconds_per_episode"] = self._eval_seconds / self._eval_episodes
        row = {
            "step": step,
            "success": result.get("success"),
            "return": result.get("return"),
            "normalized_score": result.get("normalized_score"),
            "episode_length": result.get("episode_length"),
            "wall_time": wall_time,
        }
        self.results["evals"] = [e for e in self.results["evals"] if e["step"] != step] + [row]
        self.scalars(step, {f"eval/{k}": v for k, v in row.items() if k != "step" and v is not None})
        self.write_results()
        return row

    def write_results(self, **fields: Any) -> None:
        """Update top-level fields (e.g. status, steps_per_second) and rewrite results.json atomically."""
        self.results.update(_jsonable(fields))
        text = json.dumps(self.results, indent=2)
        atomic_write(self.results_path, lambda file: file.write(text))

    def close(self) -> None:
        self.writer.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
