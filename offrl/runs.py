"""What every training run shares around its update, written once: `Run`, and the pieces it is made of.

A `train_<algo>.py` script keeps its algorithm (networks, losses, `build()`) and a visible loop of a dozen lines:

    with Run(__file__, Args, PRESETS, argv) as run:        # flags > presets > defaults; run dir, dataset, logger
        agent = build(run.args, run.data, run.device)     # networks, optimizer, update(), policy()
        update = compile_update(agent.update, run.args.compile, run.args.cudagraphs, run.device)
        for step in run.steps(agent, warmup=warmup_calls(update)):  # resumes; evaluates at step 0
            metrics = update()
            if run.log_due(step):
                run.log(step, metrics, agent.validation)  # reads metrics back, checks them for NaN
            if run.eval_due(step):
                run.evaluate(step, agent.policy)
            if run.save_due(step):
                run.save(step)
    return run.exit_code

`Run` owns the bookkeeping: argument checks common to all scripts (`RunArgs`, `parse_args`), the per-domain presets
(`Preset`), the run directory (one run per directory, held by a lock), resume, the logger (`RunLogger`: TensorBoard
and `results.json`), the first lines printed, timing with compilation excluded, Ctrl-C/SIGTERM (`StopRequest`), the
NaN check, checkpoints (`save_checkpoint` / `load_checkpoint`) and exit codes. The rest are building blocks:
`resolve_device`, `seed_everything`, `default_run_dir`, `atomic_write`, `compile_update` (with `CUDAGraphed`,
`warmup_calls`), `make_optimizer` and `CosineDecay`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pathlib
import random
import re
import signal
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import torch
import tyro

__all__ = [
    "Agent",
    "CUDAGraphed",
    "CosineDecay",
    "NonFiniteLossError",
    "Preset",
    "Run",
    "RunArgs",
    "RunLogger",
    "StopRequest",
    "algo_name",
    "apply_presets",
    "atomic_write",
    "atomic_write_files",
    "check_finite",
    "compile_update",
    "default_run_dir",
    "import_script",
    "load_checkpoint",
    "load_data",
    "make_optimizer",
    "parse_args",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "settle_gl_backend",
    "software_versions",
    "start_tracking",
    "git_commit",
    "warmup_calls",
]

LOCK_NAME = ".lock"
"""The lock file a live run holds in its run directory (`offrl.sweep` reads it to tell a running job)."""


@dataclasses.dataclass
class RunArgs:
    """The command-line fields every `train_<algo>.py` shares; a script's `Args` adds its algorithm's after them."""

    env_name: str = "cube-single-play-singletask-task1-v0"
    """dataset: an OGBench single-task name, a Minari id (mujoco/hopper/medium-v0) or a D4RL name (hopper-medium-v2)"""
    dataset_dir: Annotated[
        str | None, tyro.conf.arg(help_behavior_hint="(default: ~/.ogbench/data for OGBench, Minari's own for Minari)")
    ] = None
    """where datasets live"""
    generate_episodes: int | None = None
    """OGBench: train on a small locally generated set of this many episodes (quick runs) instead of the official"""
    presets: bool = True
    """apply the script's recommended settings for --env-name (its PRESETS table); flags given always win"""
    seed: int = 0
    """random seed (networks, sampling; evaluation seeds are derived from it but never equal training seeds)"""
    device: str = "auto"
    """torch device; auto = cuda when available, else cpu"""
    total_steps: int = 1_000_000
    """offline gradient steps"""
    online_steps: int = 0
    """offline-to-online fine-tuning: after the offline steps, this many online steps, each one environment step with
    the exploration policy and one gradient step on the replay buffer (the dataset plus the online transitions);
    0 = offline only"""
    balanced_sampling: bool = False
    """online phase: draw half of each batch from the dataset and half from the online transitions (default: uniform
    over both together)"""
    batch_size: int = 256
    """transitions per gradient step"""
    eval_every: int = 100_000
    """evaluate every this many steps (and at step 0 and at the end)"""
    eval_episodes: int = 50
    """episodes per evaluation"""
    eval_envs: int = 8
    """environments run side by side during evaluation"""
    log_every: int = 5_000
    """read metrics back from the device, log them and check them for NaN every this many steps (and at every
    evaluation and checkpoint)"""
    compile: bool = True
    """compile the update with torch.compile"""
    cudagraphs: bool = False
    """replay the whole update as one CUDA graph, captured at its third call (CUDA only; ignored on CPU)"""
    run_dir: Annotated[
        str | None, tyro.conf.arg(help_behavior_hint="(default: runs/<env>__<algo>__<seed>__<time>)")
    ] = None
    """where this run writes"""
    save_every: int = 100_000
    """checkpoint every this many steps (and at the end)"""
    resume: str | None = None
    """continue an interrupted run in this run directory (or from this checkpoint file, in its directory); its
    settings are the defaults, flags given override them"""
    track: bool = False
    """log the run to Weights & Biases (pip install 'offrl[track]'): its config, the TensorBoard scalars and the
    videos; with WANDB_MODE=offline the run is kept on this machine, in <run_dir>/wandb (upload it later with
    `wandb sync`)"""
    wandb_project: str = "offrl"
    """W&B project of --track"""
    wandb_entity: str | None = None
    """W&B entity (user or team) of --track; default: your W&B default"""
    success_timing: Literal["pre", "post"] | None = None
    """OGBench single-task: whether reward, success and termination are computed from the state before the action
    ('pre', OGBench's default since 1.2.0) or after it ('post', OGBench 1.1, with which the FQL paper's numbers were
    made); default: the installed OGBench's own"""
    video: bool = False
    """record the first episode of each evaluation to <run_dir>/videos; the OpenGL backend (MUJOCO_GL if set, else
    glfw with a display, egl or osmesa) is tried before training, and without one the run trains without video"""


class Preset(NamedTuple):
    """Recommended settings of one algorithm for the env names that `pattern` matches (`re.match`, from the start).

    values: `{Args field: value}`; source: where the values come from (paper, repository, post, with a link);
    online: None (every run), True (only runs with --online-steps > 0: offline-to-online settings) or False (only
    offline runs).
    """

    pattern: str
    values: dict[str, Any]
    source: str
    online: bool | None = None


def algo_name(script: str | os.PathLike) -> str:
    """The algorithm a script trains, from its file name: 'train_fql.py' -> 'fql' (a copy names its runs itself)."""
    return pathlib.Path(script).stem.removeprefix("train_")


def apply_presets(presets: Sequence[Preset], env_name: str, online: bool = False) -> dict[str, tuple[Any, str]]:
    """`{field: (value, source)}` of every preset whose pattern matches `env_name` (and whose `online` is None or
    equals `online`, whether the run fine-tunes online); later presets win."""
    chosen: dict[str, tuple[Any, str]] = {}
    for preset in presets:
        if re.match(preset.pattern, env_name) and preset.online in (None, online):
            chosen.update({name: (value, preset.source) for name, value in preset.values.items()})
    return chosen


# Fields that identify a run: resuming with another value would continue a different experiment.
RESUME_MUST_MATCH = ("env_name", "seed", "generate_episodes", "reward_mode")
# Fields that change the networks' shapes (checked by name so the message can say which one changed).
NETWORK_SIZE_FIELD = re.compile(r"(^|_)(hidden_dims|dims|dim|blocks)$|layer_norm$")
# Fields about the bookkeeping, not the optimisation: they may change on resume without a warning.
BOOKKEEPING = frozenset(
    ("total_steps", "eval_every", "eval_episodes", "eval_envs", "log_every", "save_every", "compile", "cudagraphs",
     "device", "video", "run_dir", "resume", "dataset_dir", "presets", "track", "wandb_project", "wandb_entity",
     "online_steps")
)  # fmt: skip


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _fields_of(args_type: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(args_type)}


def _from_saved(args_type: type, saved: Mapping[str, Any]) -> Any:
    """An `args_type` instance from a checkpoint's saved args (JSON-like: lists back to tuples; unknown keys
    dropped; fields the saved run did not have keep their defaults)."""
    fields = _fields_of(args_type)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in fields}
    return args_type(**values)


def _checkpoint_path(resume: str) -> pathlib.Path:
    path = pathlib.Path(resume)
    return path / "checkpoint.pt" if path.is_dir() else path


def _read_checkpoint(path: pathlib.Path, device: torch.device | str = "cpu", what: str = "--resume") -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"error: {what} {path}: no such checkpoint file (or run directory with one).")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001  (any unreadable file: say which and why, in one line)
        message = str(error).splitlines()[0] if str(error) else ""
        raise SystemExit(
            f"error: {what} {path}: not a readable checkpoint ({type(error).__name__}: {message})"
        ) from None


class ParsedArgs(NamedTuple):
    """What `parse_args` found: the args, the presets applied and overridden, and on resume what changed."""

    args: Any
    presets_applied: dict[str, dict[str, Any]]
    presets_overridden: dict[str, dict[str, Any]]
    resume_changes: dict[str, list[Any]]
    d4rl_name: str | None = None


def _resolve_d4rl(args: Any) -> tuple[Any, str | None]:
    """args with a D4RL --env-name replaced by its Minari id, and the D4RL name (None when none was given)."""
    from offrl.datasets import DatasetError, d4rl_to_minari

    try:
        minari_id = d4rl_to_minari(args.env_name)
    except DatasetError as error:
        raise SystemExit(f"error: --env-name: {error}") from None
    if minari_id is None:
        return args, None
    return dataclasses.replace(args, env_name=minari_id), args.env_name


def parse_args(
    args_type: type,
    presets: Sequence[Preset] = (),
    argv: Sequence[str] | None = None,
    positive: Sequence[str] = (),
) -> ParsedArgs:
    """Parse a script's command line: flags given > presets for --env-name > the script's defaults.

    With `--resume`, the checkpoint's saved settings replace the defaults (and presets are not applied again): a
    flag given that changes the env name, seed or network size is refused; a changed optimisation setting is kept
    with a warning and recorded. Checks that every count (`positive`, and the run's own) is at least 1 and that
    hidden layer widths are given. Errors are one-line `SystemExit`s.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    plain = tyro.cli(args_type, args=argv)  # --help exits here, with the script's own defaults
    plain, d4rl_name = _resolve_d4rl(plain)  # a D4RL name means its Minari dataset (and that dataset's presets)
    applied: dict[str, dict[str, Any]] = {}
    overridden: dict[str, dict[str, Any]] = {}
    changes: dict[str, list[Any]] = {}
    if plain.resume:
        payload = _read_checkpoint(_checkpoint_path(plain.resume))
        # the run directory is where the checkpoint is, wherever the run was started from
        saved = dataclasses.replace(_from_saved(args_type, payload.get("args", {})), run_dir=None, resume=None)
        args, _ = _resolve_d4rl(tyro.cli(args_type, args=argv, default=saved))
        for name in _fields_of(args_type):
            before, after = getattr(saved, name), getattr(args, name)
            if before == after or name in ("resume", "run_dir"):
                continue
            if name in RESUME_MUST_MATCH or NETWORK_SIZE_FIELD.search(name):
                what = name.replace("_", " ") if name in RESUME_MUST_MATCH else "network size"
                raise SystemExit(
                    f"error: --resume {plain.resume}: the run was trained with {_flag(name)} {_shown(before)}, not "
                    f"{_shown(after)}; a resumed run keeps its {what}. Drop the flag, or start a new run."
                )
            changes[name] = [_jsonable(before), _jsonable(after)]
    else:
        chosen = apply_presets(presets, plain.env_name, online=plain.online_steps > 0) if plain.presets else {}
        unknown = sorted(set(chosen) - set(_fields_of(args_type)))
        if unknown:
            raise SystemExit(f"error: PRESETS name {unknown}, which are not fields of {args_type.__name__}.")
        defaults = dataclasses.replace(args_type(), **{name: value for name, (value, _) in chosen.items()})
        args = dataclasses.replace(tyro.cli(args_type, args=argv, default=defaults), env_name=plain.env_name)
        for name, (value, source) in chosen.items():
            if getattr(args, name) == value:
                applied[name] = {"value": _jsonable(value), "source": source}
            else:
                overridden[name] = {"preset": _jsonable(value), "given": _jsonable(getattr(args, name))}
    check_args(args, positive)
    return ParsedArgs(args, applied, overridden, changes, d4rl_name)


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def check_args(args: Any, positive: Sequence[str] = ()) -> None:
    """One-line errors for counts below 1 and empty or non-positive hidden layer widths."""
    counts = ("total_steps", "batch_size", "eval_every", "eval_episodes", "eval_envs", "log_every", "save_every")
    for name in (*counts, *positive):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: {_flag(name)} must be positive, got {getattr(args, name)}")
    if getattr(args, "online_steps", 0) < 0:
        raise SystemExit(f"error: --online-steps must be at least 0, got {args.online_steps}")
    if args.generate_episodes is not None and args.generate_episodes <= 0:
        raise SystemExit(f"error: --generate-episodes must be positive, got {args.generate_episodes}")
    for name in _fields_of(type(args)):
        if name.endswith("hidden_dims"):
            widths = getattr(args, name)
            if not widths or any(width <= 0 for width in widths):
                raise SystemExit(f"error: {_flag(name)} needs one or more positive layer widths, e.g. 512 512")
    if args.resume and args.run_dir:
        resumed_dir = _checkpoint_path(args.resume).parent.resolve()
        if pathlib.Path(args.run_dir).resolve() != resumed_dir:
            raise SystemExit(f"error: --resume continues in {resumed_dir}; drop --run-dir {args.run_dir}.")


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


RECORDED_PACKAGES = ("torch", "numpy", "ogbench", "gymnasium", "gymnasium-robotics", "mujoco", "minari", "offrl")
"""The packages whose versions every results.json and sweep.json records."""


def software_versions() -> dict[str, str | None]:
    """Python's and `RECORDED_PACKAGES`' installed versions ({name: version, or None when not installed})."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: str | os.PathLike) -> dict[str, Any] | None:
    """The git commit checked out where `path` (a file or folder) lives: {"commit", "dirty"} (dirty: tracked files
    differ from the commit), or None outside a git work tree or without git."""
    import subprocess

    folder = pathlib.Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write a file through `write(file)` into a temporary file beside `path`, then rename it over `path`.

    The data reach the disk (fsync) before the rename, so a crash leaves the old file or the new one, never a part;
    on failure the temporary file is removed. The file gets the permissions of an ordinary new file (0666 less the
    umask), not the temporary file's 0600.
    """
    atomic_write_files([(path, write)], mode)


def atomic_write_files(files: Sequence[tuple[str | os.PathLike, Callable[[Any], None]]], mode: str = "w") -> None:
    """`atomic_write` for several files that belong together: every file is written to its temporary file first,
    then all are renamed, in the given order; if any write fails, none of the files is replaced."""
    umask = os.umask(0)
    os.umask(umask)
    temporary: list[tuple[str, pathlib.Path]] = []
    try:
        for path, write in files:
            path = pathlib.Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temporary.append((name, path))
            with os.fdopen(descriptor, mode) as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(name, 0o666 & ~umask)
        for name, path in temporary:
            os.replace(name, path)
    except BaseException:
        for name, _ in temporary:
            pathlib.Path(name).unlink(missing_ok=True)
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
        # Random numbers come from Inductor's own generator: the same distributions as eager, not the same numbers.
        # ATen's generator (`fallback_random`) would match eager draws, but with it torch 2.13 merged identical
        # `randn_like` calls into one tensor (FQL's three noises became one): tests/test_runs.py checks they differ.
        fn = torch.compile(fn, dynamic=False)
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


def make_optimizer(
    optimizer_type: type[torch.optim.Optimizer],
    param_groups: Sequence[Mapping[str, Any]],
    device: torch.device,
    **options: Any,
) -> torch.optim.Optimizer:
    """An optimizer set up for a compiled update on `device`; the update calls a plain `optimizer.step()`.

    Each group's learning rate is held in a tensor (`group["lr"]`), so a schedule changes it in place without
    recompiling the update, and a resume keeps that tensor (`load_checkpoint` copies the saved value into it).
    CUDA: `capturable=True`, so the step counts live on the GPU and the step can run inside torch.compile's graph and
    CUDA graphs. CPU: `fused=True`, one fused kernel over all parameters (the default is a Python loop over the
    parameter tensors, several times slower at 4 x 512 sizes: about 14 ms against 3 ms per step for IQL's 3.2M
    parameters), run eagerly even inside a compiled update (`torch.compiler.disable`): torch.compile's traced version
    of the CPU step was slower than the fused kernel it replaces (IQL on 2 CPU cores: 14.5 against 19.4 updates/s).

    param_groups: `[{"params": [...], "lr": 3e-4, ...}, ...]`, as torch.optim takes them.
    """
    groups = [{**group, "lr": torch.tensor(float(group["lr"]), device=device)} for group in param_groups]
    device_options = {"capturable": True} if device.type == "cuda" else {"fused": True}
    optimizer = optimizer_type(groups, **device_options, **options)
    if device.type != "cuda":
        optimizer.step = torch.compiler.disable(optimizer.step)
    return optimizer


class CosineDecay(torch.nn.Module):
    """Cosine decay of one optimizer group's learning rate to 0 over `total_steps`, computed on the device.

    Calling it (inside the update, after `optimizer.step()`) counts one step k and sets
    lr <- lr0 * (1 + cos(pi * min(k, K) / K)) / 2 in place: no host sync, no recompilation, safe in a CUDA graph.
    The step count is a buffer, so the schedule goes into the checkpoint (`Agent.state`) and a resume continues it
    (loading it sets the learning rate that its step implies).
    """

    def __init__(self, group: dict[str, Any], initial_lr: float, total_steps: int) -> None:
        super().__init__()
        self.lr = group["lr"]  # the optimizer's own tensor, changed in place
        self.initial_lr, self.total_steps = initial_lr, total_steps
        self.register_buffer("step_count", torch.zeros((), device=self.lr.device))

    def forward(self) -> None:
        self.step_count += 1
        self._set_lr()

    def _set_lr(self) -> None:
        progress = self.step_count.clamp(max=self.total_steps) / self.total_steps
        self.lr.copy_(self.initial_lr * 0.5 * (1.0 + torch.cos(math.pi * progress)))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Restore the step count and set the learning rate it implies (with this run's initial lr)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        with torch.no_grad():
            self._set_lr()
        return result


class Agent(NamedTuple):
    """What a script's `build()` returns.

    nets: the networks by name (put in eval mode while evaluating).
    update: one gradient step, eager (`compile_update` compiles it): () -> detached metrics {name: scalar tensor}.
    policy: the acting policy at evaluation: observations (B, S) -> actions (B, A) in [-1, 1].
    state: everything a checkpoint holds (networks, optimizer, schedules): {name: object with a state_dict}.
    validation: the losses on a validation batch, () -> {"val/<loss>": scalar tensor}, or None.
    explore: the acting policy of the online phase, observations (B, S) -> actions (B, A) (None: `policy`).
    """

    nets: dict[str, torch.nn.Module]
    update: Callable[[], dict[str, torch.Tensor]]
    policy: Callable[[torch.Tensor], torch.Tensor]
    state: dict[str, Any]
    validation: Callable[[], dict[str, torch.Tensor]] | None = None
    explore: Callable[[torch.Tensor], torch.Tensor] | None = None


def load_data(args: Any, device: torch.device):
    """The run's dataset on `device` (`offrl.datasets.load_dataset`); a one-line `SystemExit` says what is wrong."""
    from offrl.datasets import DatasetError, load_dataset

    try:
        return load_dataset(
            args.env_name,
            dataset_dir=args.dataset_dir,
            device=device,
            reward_mode=getattr(args, "reward_mode", "auto"),
            generate_episodes=args.generate_episodes,
            success_timing=getattr(args, "success_timing", None),
        )
    except (DatasetError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


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

    def __exit__(self, *exc) -> None:
        self.stop._at_once = False


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | os.PathLike, step: int, objects: Mapping[str, Any], **extra: Any) -> pathlib.Path:
    """Save `{name: module/optimizer/scheduler}.state_dict()`, the RNG states and `step` atomically to `path`.

    Temporary files left beside `path` by an earlier save that was killed are removed first (a run directory holds
    one run, so no other process is writing them).
    """
    path = pathlib.Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    payload = {
        "step": step,
        "state": {name: obj.state_dict() for name, obj in objects.items()},
        "rng": _rng_state(),
        **extra,
    }
    atomic_write(path, lambda file: torch.save(payload, file), mode="wb")
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
    path = _checkpoint_path(str(path))
    payload = _read_checkpoint(path, device)
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
    _set_rng_state(payload["rng"])
    return payload


ESTIMATE_AFTER_STEPS = 20
"""Timed (post-warm-up) steps after which a run estimates how long the rest will take."""
LONG_RUN_HOURS = 3.0
"""A run whose estimate exceeds this says so, with `QUICK_RUN_FLAGS`."""
QUICK_RUN_FLAGS = "--total-steps 20000 --hidden-dims 256 256 --eval-every 5000 --eval-episodes 20"

STOP_WITH_PARENT = "OFFRL_STOP_WITH_PARENT"
"""Environment variable `offrl.sweep` sets to its process id for the jobs it starts (see `_stop_with_parent`)."""


def _stop_with_parent() -> None:
    """Under `offrl.sweep` (`OFFRL_STOP_WITH_PARENT` set to the sweep's pid): ask Linux to send this process SIGTERM
    when the sweep dies, however it dies (`PR_SET_PDEATHSIG`), so a killed sweep leaves no job training on: each one
    saves its checkpoint and exits, and a rerun of the sweep resumes it. Elsewhere (no variable, not Linux): nothing."""
    parent = os.environ.get(STOP_WITH_PARENT)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if str(os.getppid()) != parent:  # the sweep died before the request took effect
        raise SystemExit(f"error: the sweep that started this job (pid {parent}) is gone; rerun the sweep.")


def _read_status(run_dir: pathlib.Path) -> str | None:
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def start_tracking(run_dir: pathlib.Path, algo: str, args: Any, fields: Mapping[str, Any]):
    """Start (or, for a resumed run, continue) the W&B run of `--track`, CleanRL's way: the config is the args (and
    `fields`: presets, versions, dataset), the TensorBoard scalars are synced (`sync_tensorboard`), the run's files
    live in <run_dir>/wandb. The W&B id is the one results.json recorded, so a resumed run continues its W&B run.
    WANDB_MODE=offline works without a network. One-line `SystemExit` when wandb is missing or cannot start."""
    try:
        import wandb
    except ImportError:
        raise SystemExit("error: --track needs wandb: pip install 'offrl[track]' (or pip install wandb).") from None
    try:
        previous = json.loads((run_dir / "results.json").read_text()).get("wandb_id")
    except (OSError, json.JSONDecodeError, AttributeError):
        previous = None
    config = {**dataclasses.asdict(args), "algo": algo, **_jsonable(dict(fields))}
    try:
        return wandb.init(
            project=args.wandb_project,
            entity=args.wandb_entity,
            name=run_dir.name,
            id=previous or uuid.uuid4().hex[:8],
            resume="allow",
            dir=str(run_dir),
            config=_jsonable(config),
            sync_tensorboard=True,
            save_code=True,
        )
    except Exception as error:  # noqa: BLE001  (login, network, bad entity: say so in one line)
        message = " ".join(str(error).split())[:300] or type(error).__name__
        raise SystemExit(
            f"error: --track: W&B could not start ({message}). Run `wandb login`, or set WANDB_MODE=offline to keep "
            "the run on this machine and `wandb sync` it later."
        ) from None


def settle_gl_backend(video: bool, name: str) -> bool:
    """Settle MuJoCo's OpenGL backend before anything imports mujoco: for `video` the first that renders (without
    one, go on without video: returns False); otherwise only drop a MUJOCO_GL whose library is missing. `name`
    prefixes the line printed.

    When no backend can work, MUJOCO_GL becomes "disable" for this process: importing mujoco (with OGBench) then
    neither fails (osmesa without libOSMesa) nor sets up a backend that aborts the process later.
    """
    from offrl.evaluation import choose_gl_backend, missing_gl_library

    if "mujoco" in sys.modules:
        return video
    if not video:
        missing = missing_gl_library()
        if missing:
            print(f"[{name}] MUJOCO_GL={os.environ['MUJOCO_GL']} ignored ({missing}); this run renders nothing")
            os.environ["MUJOCO_GL"] = "disable"
        return False
    backend, why = choose_gl_backend()
    if backend is not None:
        return True
    if os.environ.get("MUJOCO_GL"):
        hint = "unset MUJOCO_GL to let --video try glfw, egl and osmesa, or install the library it needs"
    else:
        hint = "install EGL (a GPU driver, or Mesa's libegl1) or OSMesa (libosmesa6)"
    os.environ["MUJOCO_GL"] = "disable"
    print(
        f"[{name}] --video off, going on without it: no OpenGL backend renders here ({why}); {hint}.",
        file=sys.stderr,
    )
    return False


class Run:
    """One training run of a script, from its command line to its exit code (see the module docstring).

    Args:
        script: the script's `__file__`; its name names the algorithm ('train_fql.py' -> 'fql').
        args_type: the script's `Args` dataclass (a `RunArgs` with the algorithm's fields after the common ones).
        presets: the script's `PRESETS`, applied for --env-name unless --no-presets or a flag says otherwise.
        argv: the command line without the program name (default: `sys.argv[1:]`).
        positive: the algorithm's count fields that must be at least 1 (e.g. "flow_steps").

    Attributes: args, device, data (after entering), run_dir, step, start_step, final_step (total_steps +
    online_steps), online_env (the `offrl.online.OnlineEnv` of the online phase, or None), exit_code (after leaving).
    """

    def __init__(
        self,
        script: str | os.PathLike,
        args_type: type,
        presets: Sequence[Preset] = (),
        argv: Sequence[str] | None = None,
        positive: Sequence[str] = (),
    ) -> None:
        self.algo = algo_name(script)
        self.script = pathlib.Path(script).resolve()
        self.parsed = parse_args(args_type, presets, argv, positive)
        self.args = args = self.parsed.args
        self.device = resolve_device(args.device)
        self.resuming = bool(args.resume)
        if self.resuming:
            self.run_dir = _checkpoint_path(args.resume).parent
        else:
            self.run_dir = pathlib.Path(args.run_dir or default_run_dir(args.env_name, self.algo, args.seed))
        self.data = None
        self.logger: RunLogger | None = None
        self.agent: Agent | None = None
        self.stop = StopRequest()
        self.step = self.start_step = 0
        self.final_step = args.total_steps + args.online_steps
        self.online_env = None
        self._checkpointed: dict[str, Any] = {}  # what a checkpoint holds: the agent's state (+ the online phase's)
        self.exit_code = 0
        self.last_eval: dict[str, Any] | None = None
        self.video = bool(args.video)
        self.tracker = None  # the W&B run of --track
        self._score_postfix: dict[str, str] = {}
        self.saved_step: int | None = None
        self.train_seconds, self.compile_seconds, self.timed_steps = 0.0, 0.0, 0
        self.online_seconds, self.online_timed_steps = 0.0, 0
        self._lock = None
        self._bar = None
        self._interval_start: float | None = None
        self._paused, self._warming = True, False
        self._last_checked = 0
        self._wall_start = time.perf_counter()

    # ------------------------------------------------------------------------------------------------------------
    # Entering: the run directory, the signals, the dataset, the first lines

    def __enter__(self) -> Run:
        _stop_with_parent()
        self._take_run_dir()
        self.stop.__enter__()
        try:
            seed_everything(self.args.seed)
            if self.parsed.d4rl_name:
                from offrl.datasets import d4rl_note

                print(f"[{self.algo}] {d4rl_note(self.parsed.d4rl_name, self.args.env_name)}", flush=True)
            with self.stop.at_once():
                self._settle_gl_backend()
                self.data = load_data(self.args, self.device)
            if self.args.online_steps:  # the dataset becomes the start of the replay buffer (before build())
                self.data.start_replay(self.args.online_steps, self.args.balanced_sampling)
        except Interrupted as interrupted:
            self._release()
            print(f"\n[{self.algo}] interrupted while loading the dataset; nothing was trained.", file=sys.stderr)
            raise SystemExit(128 + interrupted.signal) from None
        except BaseException:
            self._release()
            raise
        self._print_first_lines()
        return self

    def _settle_gl_backend(self) -> None:
        self.video = settle_gl_backend(self.video, self.algo)

    def _take_run_dir(self) -> None:
        """Create and lock the run directory; refuse one that holds another run (unless resuming it)."""
        run_dir = self.run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = open(run_dir / LOCK_NAME, "a")  # noqa: SIM115  (held open for the run's whole life)
        except OSError as error:
            raise SystemExit(f"error: cannot write to the run directory {run_dir}: {error.strerror or error}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise SystemExit(
                f"error: {run_dir} holds a run in progress (another process is training in it); wait for it, or pick "
                "another --run-dir."
            ) from None
        if not self.resuming and ((run_dir / "results.json").exists() or (run_dir / "checkpoint.pt").exists()):
            lock.close()
            status = _read_status(run_dir) or "unknown status"
            if (run_dir / "checkpoint.pt").exists() and status != "finished":
                hint = f"continue it with --resume {run_dir}, or pick another --run-dir"
            elif status == "finished":
                hint = "pick another --run-dir (or leave --run-dir out for a new timestamped one)"
            else:
                hint = "it has no checkpoint to resume from: remove the directory, or pick another --run-dir"
            raise SystemExit(f"error: {run_dir} already holds a run ({status}); {hint}.")
        self._lock = lock

    def _release(self) -> None:
        self.stop.__exit__()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def _print_first_lines(self) -> None:
        name, parsed = self.algo, self.parsed
        if parsed.presets_applied:
            settings = ", ".join(f"{_flag(k)} {_shown(v['value'])}" for k, v in parsed.presets_applied.items())
            sources = "; ".join(dict.fromkeys(v["source"] for v in parsed.presets_applied.values()))
            print(f"[{name}] presets for {self.args.env_name}: {settings} (from {sources}; --no-presets: off)")
        for field, value in parsed.presets_overridden.items():
            print(
                f"[{name}] preset {_flag(field)} {_shown(value['preset'])} not applied: {_shown(value['given'])} given"
            )
        data = self.data
        print(f"[{name}] {data.name}: {len(data):,} transitions ({data.metadata['source']}), run dir {self.run_dir}")
        if self.args.online_steps:
            sampling = "half dataset, half online" if self.args.balanced_sampling else "uniform over both"
            print(
                f"[{name}] {self.args.total_steps:,} offline steps, then {self.args.online_steps:,} online steps "
                f"(one environment step and one update each; batches {sampling})"
            )
        sys.stdout.flush()

    # ------------------------------------------------------------------------------------------------------------
    # The loop

    def steps(self, agent: Agent, warmup: int = 1) -> Iterator[int]:
        """Yield the steps to train, 1..total_steps + online_steps (after a resume: from the checkpoint's step + 1);
        the steps after total_steps are the online phase (`online`, `act`).

        Before the first: makes the online phase's environment (with --online-steps), restores the --resume
        checkpoint into `agent.state` (and the replay buffer and the episode in progress), opens the logger and
        evaluates at step 0 (a new run). Between steps: the training clock (the first `warmup` steps of this process,
        which compile or capture the update, and of the online phase, whose acting policy may compile, are timed
        apart), the progress bar, and a stop requested by Ctrl-C/SIGTERM.
        """
        self.agent, args = agent, self.args
        self._wall_start = time.perf_counter()  # wall times of the evaluations count from here (data loaded)
        fields: dict[str, Any] = {}
        self._checkpointed = dict(agent.state)
        if args.online_steps:
            from offrl.online import OnlineEnv

            self.online_env = OnlineEnv(
                self.data.make_env, self.data.replay, self.data.process_rewards, args.seed, self.device
            )
            self._checkpointed.update(replay_buffer=self.data.replay, online_env=self.online_env)
        if self.resuming:
            payload = load_checkpoint(
                args.resume, self._checkpointed, self.device, optional=("replay_buffer", "online_env")
            )
            self.start_step = self.saved_step = payload["step"]
            self._check_online_resume(payload)
            self._print_resume()
        else:
            fields = {
                "presets_applied": self.parsed.presets_applied,
                "presets_overridden": self.parsed.presets_overridden,
                "d4rl_name": self.parsed.d4rl_name,
            }
        self.step = self._last_checked = self.start_step
        made_by = {"versions": software_versions(), "git": git_commit(self.script)}  # what produced this result
        fields.update(
            script=str(self.script), success_timing=self.data.metadata.get("success_timing"), **made_by
        )  # fmt: skip
        if args.track:  # before the TensorBoard writer exists, so that W&B follows it
            self.tracker = start_tracking(self.run_dir, self.algo, args, {**fields, "dataset": self.data.metadata})
            fields["wandb_id"] = self.tracker.id
        self.logger = RunLogger(
            self.run_dir, self.algo, args.env_name, dataclasses.asdict(args),
            resume_step=self.start_step if self.resuming else None, **fields,
        )  # fmt: skip
        segments = [s for s in self.logger.results.get("segments", []) if s["start_step"] < self.start_step]
        changed = self.parsed.resume_changes if self.resuming else {}
        segment = {"start_step": self.start_step, "changed": changed, **made_by}
        self.logger.write_results(status="running", segments=[*segments, segment])
        if self.start_step == 0:
            with self.stop.at_once():
                self.evaluate(0, agent.policy)
        else:
            self.last_eval = (self.logger.results["evals"] or [None])[-1]
        self._bar = _progress_bar(self.final_step, self.start_step, self._phase_name(self.start_step + 1))
        self._interval_start = time.perf_counter()
        while self.step < self.final_step and not self.stop.requested:
            self.step += 1
            if self.step == args.total_steps + 1 and args.online_steps:
                self._bar.set_description(self._phase_name(self.step), refresh=False)
            # the first `warmup` steps of this process and of the online phase (whose acting policy may compile)
            self._warming = self.step - self.start_step <= warmup or 0 < self.step - args.total_steps <= warmup
            self._paused = False
            yield self.step
            if self._warming:  # compilation is kept out of the throughput
                self._pause()
            elif self.online(self.step):
                self.online_timed_steps += 1
            else:
                self.timed_steps += 1
            if not self._warming and self.timed_steps + self.online_timed_steps == ESTIMATE_AFTER_STEPS:
                self._say_if_long()
            if self._paused:
                self._interval_start = time.perf_counter()
            self._paused = False
            self._bar.update(1)

    def _phase_name(self, step: int) -> str:
        if not self.args.online_steps:
            return self.algo
        return f"{self.algo} {'online' if self.online(step) else 'offline'}"

    def _check_online_resume(self, payload: Mapping[str, Any]) -> None:
        """Refuse a resume whose online phase would not continue where it stopped (a changed --total-steps)."""
        if self.online_env is None:
            return
        taken = self.online_env.env_steps if "online_env" in payload["state"] else 0
        if taken != max(0, self.start_step - self.args.total_steps):
            saved = payload.get("args", {}).get("total_steps")
            raise SystemExit(
                f"error: --resume {self.run_dir}: the checkpoint of step {self.start_step} has {taken:,} online "
                f"steps, which does not fit --total-steps {self.args.total_steps:,} (the run had {saved}); resume "
                f"with --total-steps {saved} and the --online-steps you want."
            )

    def online(self, step: int) -> bool:
        """Whether `step` is in the online phase (after the --total-steps offline steps): act before updating."""
        return step > self.args.total_steps

    def act(self, explore: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """The online step's interaction, before its update: `explore` (observations (1, S) -> actions (1, A), the
        networks in eval mode; None: the agent's evaluation policy) acts once in the environment; the transition
        joins the replay buffer, and an episode that ends is logged (TensorBoard `online/*`, results.json
        `online_episodes`)."""
        with _eval_mode(self.agent.nets):
            finished = self.online_env.step(explore or self.agent.policy)
        if finished is not None:
            self.logger.online_episode(self.step, self.online_env.episode - 1, finished)

    def _say_if_long(self) -> None:
        """After the first timed steps: if the rest of the run would take more than `LONG_RUN_HOURS` at this speed,
        say so (the estimate, and the flags of a quick run) once, above the progress bar."""
        self._pause()  # brings the training clock up to date
        rate, args = self.online_steps_per_second or self.steps_per_second, self.args
        if rate is None:
            return
        left = self.final_step - self.step
        evaluations = left // args.eval_every + 1
        per_episode = self.logger.results.get("eval_seconds_per_episode") or 0.0
        hours = (left / rate + evaluations * args.eval_episodes * per_episode) / 3600
        if hours > LONG_RUN_HOURS:
            self._bar.write(
                f"[{self.algo}] note: at {rate:,.0f} updates/s on {self.device.type}, the remaining {left:,} steps and "
                f"{evaluations} evaluations take about {hours:,.0f} h. For a quick run: {QUICK_RUN_FLAGS}",
                file=sys.stderr,
            )

    def _print_resume(self) -> None:
        print(f"[{self.algo}] resuming at step {self.start_step} in {self.run_dir}", flush=True)
        changed = {k: v for k, v in self.parsed.resume_changes.items() if k not in BOOKKEEPING}
        if changed:
            text = ", ".join(f"{_flag(k)} {_shown(old)} -> {_shown(new)}" for k, (old, new) in changed.items())
            print(
                f"[{self.algo}] warning: resumed with other settings than the run had ({text}); the change is "
                "recorded in results.json under 'segments'.",
                file=sys.stderr,
                flush=True,
            )

    def log_due(self, step: int) -> bool:
        """A log step: every --log-every steps, and at every evaluation and checkpoint (metrics are checked first)."""
        return step % self.args.log_every == 0 or self.eval_due(step) or self.save_due(step)

    def eval_due(self, step: int) -> bool:
        """Every --eval-every steps, at the end of the offline phase and at the end."""
        return step % self.args.eval_every == 0 or step in (self.args.total_steps, self.final_step)

    def save_due(self, step: int) -> bool:
        """Every --save-every steps, at the end of the offline phase and at the end."""
        return step % self.args.save_every == 0 or step in (self.args.total_steps, self.final_step)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pause(self) -> None:
        """Stop this step's training clock (the first bookkeeping call of a step; later calls do nothing)."""
        if self._paused or self._interval_start is None:
            return
        self._sync()
        seconds = time.perf_counter() - self._interval_start
        if self._warming:
            self.compile_seconds += seconds
        elif self.online(self.step):
            self.online_seconds += seconds
        else:
            self.train_seconds += seconds
        self._paused = True

    @property
    def steps_per_second(self) -> float | None:
        """Offline updates per second so far, compilation, evaluation and logging excluded (None before any)."""
        return self.timed_steps / self.train_seconds if self.timed_steps and self.train_seconds > 0 else None

    @property
    def online_steps_per_second(self) -> float | None:
        """Online steps (environment step + update) per second so far, as `steps_per_second` (None before any)."""
        seconds, count = self.online_seconds, self.online_timed_steps
        return count / seconds if count and seconds > 0 else None

    def log(
        self,
        step: int,
        metrics: Mapping[str, torch.Tensor],
        validation: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        """Read the update's metrics back (the only host sync), check them for NaN/inf, add the validation losses
        (when the dataset has a validation split) and the throughput, and log them to TensorBoard."""
        self._pause()
        values = {name: value.item() for name, value in metrics.items()}
        check_finite(values, step, self._last_checked)
        self._last_checked = step
        if validation is not None and self.data.val is not None:
            values.update({name: value.item() for name, value in validation().items()})
        rate, online_rate = self.steps_per_second, self.online_steps_per_second
        values["time/train_seconds"] = self.train_seconds + self.online_seconds
        if rate is not None:
            values["time/steps_per_second"] = rate
        if online_rate is not None:
            values["time/online_steps_per_second"] = online_rate
        if self.online_env is not None:
            values["online/env_steps"] = self.online_env.env_steps
        shown = online_rate if self.online(step) else rate
        if shown is not None:
            self._bar.set_postfix({"sps": f"{shown:.0f}", **self._score_postfix}, refresh=False)
        self.logger.scalars(step, values)

    def evaluate(self, step: int, policy: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
        """Run --eval-episodes episodes of `policy` (the networks in eval mode) and record them (results.json,
        TensorBoard); returns the results.json row."""
        from offrl.evaluation import evaluate

        self._pause()
        args, data = self.args, self.data
        start = time.perf_counter()
        nets = self.agent.nets if self.agent is not None else {}
        ref = data.metadata.get("ref_min_score"), data.metadata.get("ref_max_score")
        with _eval_mode(nets):
            result = evaluate(
                policy,
                data.make_env,
                args.eval_episodes,
                num_envs=args.eval_envs,
                seed=args.seed,
                device=self.device,
                ref_scores=ref if ref[0] is not None else None,
                video_path=self.run_dir / "videos" / f"step_{step}.mp4" if self.video else None,
            )
        if self.tracker is not None and result["video"] is not None:
            import wandb

            self.tracker.log({"videos/evaluation": wandb.Video(result["video"]), "global_step": step})
        if self.video and result["video"] is None:  # a backend that failed once is not tried again in this process
            self.video = False
            print(f"[{self.algo}] --video off for the rest of this run (the warning above says why)", file=sys.stderr)
        seconds = time.perf_counter() - start
        phase: dict[str, Any] = {}
        if args.online_steps:
            online = self.online(step)
            phase = {"phase": "online" if online else "offline", "env_steps": max(0, step - args.total_steps)}
        self.last_eval = self.logger.evaluation(
            step, result, wall_time=time.perf_counter() - self._wall_start, seconds=seconds, **phase
        )
        # the score the dataset family has: success, else normalized score, else return; a line per evaluation
        name = next(k for k in ("success", "normalized_score", "return") if self.last_eval[k] is not None)
        shown = {"normalized_score": "normalized"}.get(name, name)
        self._score_postfix = {shown: f"{self.last_eval[name]:.3f}"}
        where = f" (online, {phase['env_steps']:,} env steps)" if phase.get("phase") == "online" else ""
        line = f"[{self.algo}] step {step:,}{where}: {shown} {self.last_eval[name]:.3f} ({seconds:.0f} s)"
        if self._bar is not None:
            rate = self.online_steps_per_second if self.online(step) else self.steps_per_second
            self._bar.set_postfix({"sps": f"{rate or 0:.0f}", **self._score_postfix})
            self._bar.write(line)
        else:
            print(line, flush=True)
        return self.last_eval

    def save(self, step: int) -> None:
        """Write the checkpoint (`agent.state`, in the online phase's runs also the replay buffer's online rows and
        the episode in progress; RNG states, step and args) atomically to <run_dir>/checkpoint.pt."""
        self._pause()
        if not _all_finite(self.agent.nets):  # metrics are read before the last update: check what is saved too
            raise NonFiniteLossError(f"the networks' parameters became non-finite by step {step}.")
        save_checkpoint(
            self.run_dir / "checkpoint.pt", step, self._checkpointed or self.agent.state, run_dir=str(self.run_dir),
            args=dataclasses.asdict(self.args),
        )  # fmt: skip
        self.saved_step = step

    # ------------------------------------------------------------------------------------------------------------
    # Leaving: status, results.json, messages, exit code

    def __exit__(self, exc_type, exc, traceback) -> bool:
        name, messages, errors = self.algo, [], []
        handled, status = True, "failed"
        kept = (
            f"the checkpoint of step {self.saved_step} is kept" if self.saved_step is not None
            else "no checkpoint had been saved yet"
        )  # fmt: skip
        try:
            if exc_type is None and self.stop.requested and self.step < self.final_step:
                status, self.exit_code = "interrupted", 128 + self.stop.signal
                self.stop.saving = True  # from here on, further signals wait for the checkpoint
                if self.agent is not None and _all_finite(self.agent.nets):
                    try:
                        self.save(self.step)
                        messages.append(
                            f"interrupted at step {self.step}; checkpoint saved. Continue with --resume {self.run_dir}"
                        )
                    except OSError as error:
                        errors.append(f"error: interrupted at step {self.step}, but saving failed: {error}; {kept}.")
                else:
                    messages.append(
                        f"interrupted at step {self.step}; parameters are not finite, so not saved ({kept})"
                    )
            elif exc_type is None:
                status, self.exit_code = "finished", 0
            elif issubclass(exc_type, NonFiniteLossError):
                self.exit_code = 1
                errors.append(f"error: {exc} The run is stopped; {kept}. Lower the learning rate or check the rewards.")
            elif issubclass(exc_type, Interrupted):  # during the evaluation before training
                status, self.exit_code = "interrupted", 128 + exc.signal
                messages.append("interrupted during the evaluation at step 0, before any training; nothing was kept")
            elif issubclass(exc_type, KeyboardInterrupt):  # a second Ctrl-C while stopping
                status, self.exit_code = "interrupted", 130
                messages.append(f"stopped at once by a second signal at step {self.step}; {kept}")
            elif issubclass(exc_type, OSError):
                self.exit_code = 1
                where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                errors.append(
                    f"error: writing the run failed at step {self.step}{where}: {exc.strerror or exc}; {kept}."
                )
            else:
                handled = False  # a refusal (SystemExit) or a defect: its own message or traceback follows
                self.exit_code = 1
        finally:
            if self._bar is not None:
                self._bar.close()
            self._pause()
            if self.logger is not None:
                self._finish_results(status, errors)
                if status == "interrupted" and self.step == 0 and not self.resuming:
                    self._forget_fresh_run()
            if self.online_env is not None:
                self.online_env.close()
            if self.tracker is not None:
                self.tracker.summary.update({"status": status})
                self.tracker.finish(exit_code=self.exit_code)  # after the TensorBoard writer closed: W&B has it all
            self._release()
        for message in messages:
            print(f"\n[{name}] {message}", flush=True)
        for error in errors:
            print(f"\n[{name}] {error}", file=sys.stderr, flush=True)
        if status == "finished" and self.last_eval is not None and not errors:
            score = {
                k: self.last_eval[k] for k in ("success", "return", "normalized_score") if self.last_eval[k] is not None
            }
            print(f"[{name}] final score at step {self.step}: {score}; run dir {self.run_dir}", flush=True)
        return handled

    def _finish_results(self, status: str, errors: list[str]) -> None:
        online = {}
        if self.online_env is not None:
            online = {"online_steps_per_second": self.online_steps_per_second, "env_steps": self.online_env.env_steps}
        try:
            self.logger.write_results(
                status=status,
                final_step=self.step,
                train_steps_per_second=self.steps_per_second,
                **online,
                compile_seconds=self.compile_seconds,
                dataset=self.data.metadata,
                torch_threads=torch.get_num_threads(),
            )
        except OSError as error:
            errors.append(f"error: could not write {self.logger.results_path}: {error.strerror or error}")
            self.exit_code = self.exit_code or 1
        finally:
            self.logger.close()

    def _forget_fresh_run(self) -> None:
        """Interrupted before any training: remove what this run wrote, so the same command can start it again."""
        for path in [self.run_dir / "results.json", *self.run_dir.glob("events.out.tfevents.*")]:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _eval_mode(nets: Mapping[str, torch.nn.Module]) -> Iterator[None]:
    """The networks in eval mode for the block (acting, evaluating), then each back in the mode it had."""
    training = {name: net.training for name, net in nets.items()}
    for net in nets.values():
        net.eval()
    try:
        yield
    finally:
        for name, net in nets.items():
            net.train(training[name])


def _all_finite(nets: Mapping[str, torch.nn.Module]) -> bool:
    tensors = [
        t.detach().isfinite().all() for net in nets.values() for t in net.state_dict().values() if t.is_floating_point()
    ]
    return bool(torch.stack(tensors).all()) if tensors else True


def _progress_bar(total: int, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True, file=sys.stdout)


class RunLogger:
    """TensorBoard scalars plus `results.json` for one run directory.

    Args:
        run_dir: the run's directory (created).
        algo, env_name: recorded in results.json.
        args: the hyperparameters (a flat dict), written to results.json and to TensorBoard as a text table.
        resume_step: when resuming from a checkpoint at this step, the TensorBoard points and evaluations after it
            are discarded (the resumed run writes them again); those at the step itself are kept.
        fields: more top-level fields of results.json (e.g. the presets applied).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        algo: str,
        env_name: str,
        args: Mapping[str, Any],
        resume_step: int | None = None,
        **fields: Any,
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
            try:
                previous = json.loads(self.results_path.read_text())
            except (OSError, json.JSONDecodeError):
                previous = {}
            self.results["evals"] = [e for e in previous.get("evals", []) if e["step"] <= resume_step]
            episodes = previous.get("online_episodes")
            if episodes is not None:
                self.results["online_episodes"] = [e for e in episodes if e["step"] <= resume_step]
            self.results.update({k: v for k, v in previous.items() if k not in self.results})
        self.results.update(_jsonable(fields))
        self._eval_seconds, self._eval_episodes = 0.0, 0
        # purge_step: events at or after it, left by the interrupted process, are dropped by TensorBoard
        self.writer = SummaryWriter(str(self.run_dir), purge_step=None if resume_step is None else resume_step + 1)
        table = "\n".join(f"|{k}|{v}|" for k, v in self.results["args"].items())
        self.writer.add_text("hyperparameters", f"|parameter|value|\n|-|-|\n{table}", resume_step or 0)

    def scalars(self, step: int, metrics: Mapping[str, float]) -> None:
        """Write each metric as a TensorBoard scalar at `step`."""
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def evaluation(
        self, step: int, result: Mapping[str, Any], wall_time: float, seconds: float | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Record one evaluation (TensorBoard `eval/*` and a row in results.json, rewritten atomically); `extra`
        goes into the row too (e.g. the phase of a fine-tuning run and its environment steps).

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
            **extra,
        }
        self.results["evals"] = [e for e in self.results["evals"] if e["step"] != step] + [row]
        numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and v is not None}
        self.scalars(step, {f"eval/{k}": v for k, v in numbers.items()})
        self.write_results()
        return row

    def online_episode(self, step: int, episode: int, result: Mapping[str, Any]) -> None:
        """Record an online episode that ended at `step`: TensorBoard `online/return`, `online/length`,
        `online/success` (when the environment reports it) and a row of results.json's `online_episodes` (written
        with the next evaluation)."""
        row = {"step": step, "episode": episode, **{k: result[k] for k in ("return", "length", "success")}}
        self.results.setdefault("online_episodes", []).append(row)
        self.scalars(step, {f"online/{k}": v for k, v in row.items() if k not in ("step", "episode") and v is not None})

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


def import_script(path: str | os.PathLike):
    """Import a `train_<algo>.py` file as a module (its `Args`, `PRESETS`, `build`), without running its `main`."""
    import importlib.util

    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no script {path}")
    name = f"offrl_script_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module
