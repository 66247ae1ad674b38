"""What a run records: TensorBoard scalars and results.json (`RunLogger`), W&B (`start_tracking`), provenance.

results.json is rewritten atomically after every evaluation; `software_versions` and `git_commit` record what made a
result (every results.json and sweep.json carries them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from offrl.atomic import atomic_write

__all__ = ["RunLogger", "git_commit", "jsonable", "read_status", "software_versions", "start_tracking"]


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
            "args": jsonable(dict(args)),
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
        self.results.update(jsonable(fields))
        self._eval_seconds, self._eval_episodes = 0.0, 0
        # purge_step: events at or after it, left by the interrupted process, are dropped by TensorBoard
        with _no_root_logdir_warning():
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
        self.results.update(jsonable(fields))
        text = json.dumps(self.results, indent=2)
        atomic_write(self.results_path, lambda file: file.write(text))

    def close(self) -> None:
        self.writer.close()


def jsonable(value: Any) -> Any:
    """`value` with mappings, lists and tuples turned into JSON's own types (other objects as their str)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def read_status(run_dir: pathlib.Path) -> str | None:
    """The status results.json in `run_dir` records (running, finished, interrupted, failed), or None."""
    try:
        return json.loads((run_dir / "results.json").read_text()).get("status")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


@contextlib.contextmanager
def _no_root_logdir_warning():
    """Drop one W&B warning while the TensorBoard writer starts: with `sync_tensorboard`, W&B compares the event files'
    folder with its root folder (the working directory unless told) and prints "Found log directory outside of given
    root_logdir" for every run directory elsewhere (another disk, a sweep's root), then syncs the files all the same.
    Passing the run directory as that root instead changes how W&B names and steps the synced scalars."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        yield
        return
    warn = wandb.termwarn

    def termwarn(message: str, *args: Any, **kwargs: Any) -> None:
        if "outside of given root_logdir" not in str(message):
            warn(message, *args, **kwargs)

    wandb.termwarn = termwarn
    try:
        yield
    finally:
        wandb.termwarn = warn


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
    config = {**dataclasses.asdict(args), "algo": algo, **jsonable(dict(fields))}
    try:
        return wandb.init(
            project=args.wandb_project,
            entity=args.wandb_entity,
            name=run_dir.name,
            id=previous or uuid.uuid4().hex[:8],
            resume="allow",
            dir=str(run_dir),
            config=jsonable(config),
            sync_tensorboard=True,
            save_code=True,
        )
    except Exception as error:  # noqa: BLE001  (login, network, bad entity: say so in one line)
        message = " ".join(str(error).split())[:300] or type(error).__name__
        if os.environ.get("WANDB_MODE", "").lower() == "offline":
            hint = "WANDB_MODE=offline is set, so the cause is on this machine (wandb's install, <run_dir>/wandb)"
        else:
            hint = "Run `wandb login`, or set WANDB_MODE=offline to keep the run here and `wandb sync` it later"
        raise SystemExit(f"error: --track: W&B could not start ({message}). {hint}.") from None
