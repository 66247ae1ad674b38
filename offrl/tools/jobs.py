"""What a sweep runs: its jobs (algorithms x env names x grid points x seeds, each one run directory), the state each
job's directory is in, and the check of each job's flags against its script before anything starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import io
import itertools
import json
import os
import pathlib
import re
import shutil
import time
from typing import Any

from offrl.args import apply_presets, import_script, parse_args
from offrl.rundir import LOCK_NAME

__all__ = [
    "JOB_RECORD",
    "Job",
    "build_jobs",
    "is_locked",
    "job_flag_error",
    "job_state",
    "parse_grid",
    "set_aside",
    "state_from_files",
]

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
JOB_RECORD = "sweep_job.json"
"""The file in a job's run directory that records how the sweep started it."""
SUPERSEDED_KEPT = 3
"""How many set-aside copies of one job's run directory <root>/.superseded keeps (the newest)."""


@dataclasses.dataclass
class Job:
    """One training run: its identity, run directory and the flags it is started with."""

    algo: str
    env_name: str
    seed: int
    grid: dict[str, str]
    run_dir: str
    flags: list[str]
    presets: dict[str, Any] = dataclasses.field(default_factory=dict)
    """the script's presets this job's run will apply (those no flag overrides): shown and recorded only"""

    @property
    def name(self) -> str:
        grid = "".join(f" {k}={v}" for k, v in self.grid.items())
        return f"{self.algo} {self.env_name}{grid} seed {self.seed}"


def _safe(text: str) -> str:
    return re.sub(r"[^\w.=,-]+", "-", text).strip("-")


def parse_grid(specs: list[str]) -> list[dict[str, str]]:
    """['alpha=100,300', 'q_agg=mean,min'] -> the cross product as [{'alpha': '100', 'q_agg': 'mean'}, ...]."""
    axes: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().removeprefix("--").replace("-", "_")
        if not sep or not name.isidentifier() or not values.strip():
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,... (e.g. alpha=100,300,1000)")
        if name in axes:
            raise ValueError(f"--grid names {name!r} twice")
        axes[name] = [v.strip() for v in values.split(",") if v.strip()]
    return [dict(zip(axes, combination, strict=True)) for combination in itertools.product(*axes.values())]


def _fields_set_by(flags: list[str]) -> set[str]:
    """The Args fields that flags set: ['--total-steps', '10', '--no-compile'] -> {total_steps, compile}."""
    fields = set()
    for token in flags:
        if token.startswith("--"):
            name = token[2:].split("=", 1)[0].replace("-", "_")
            fields.add(name)
            fields.add(name.removeprefix("no_"))
    return fields


def _fine_tunes_online(flags: list[str]) -> bool:
    """Whether flags ask for an online phase: ['--online-steps', '1000'] or ['--online-steps=1000'] -> True."""
    for index, token in enumerate(flags):
        name, _, value = token.partition("=")
        if name == "--online-steps":
            value = value or (flags[index + 1] if index + 1 < len(flags) else "0")
            try:
                return int(value) > 0
            except ValueError:
                return False  # the script itself says what is wrong with the value
    return False


def _grid_flags(grid: dict[str, str]) -> list[str]:
    flags: list[str] = []
    for name, value in grid.items():
        flags += [f"--{name.replace('_', '-')}", *value.split()]
    return flags


@functools.cache
def script_presets(scripts_dir: str, algo: str) -> tuple:
    """The `PRESETS` of `<scripts_dir>/train_<algo>.py` (empty if it has none)."""
    return tuple(getattr(import_script(pathlib.Path(scripts_dir) / f"train_{algo}.py"), "PRESETS", ()))


def build_jobs(
    algos: list[str],
    envs: list[str],
    seeds: list[int],
    grid: list[dict[str, str]],
    root: pathlib.Path,
    common_flags: list[str],
    scripts_dir: str | os.PathLike = REPO_ROOT,
) -> list[Job]:
    """Every (algo, env, grid point, seed) as a Job; its run applies the script's presets, then the grid values, then
    the common flags (the flags win)."""
    explicit = _fields_set_by(common_flags)
    grouped = explicit & {"seeds", "member_values"}
    if grouped:  # each job is one run directory the sweep tracks; a group of members is a folder of them
        raise ValueError(
            f"--{sorted(grouped)[0].replace('_', '-')} after '--' would make every job a group of members; give the "
            "seeds to the sweep's own --seeds (packing them into one process is not available in the sweep yet)"
        )
    jobs = []
    for algo, env_name, point, seed in itertools.product(algos, envs, grid, seeds):
        clash = explicit & set(point)
        if clash:
            raise ValueError(f"{sorted(clash)} set both by --grid and by the flags after '--'")
        presets = {}
        if "no_presets" not in explicit:
            online = _fine_tunes_online([*_grid_flags(point), *common_flags])
            chosen = apply_presets(script_presets(str(scripts_dir), algo), env_name, online=online)
            presets = {k: v for k, (v, _) in chosen.items() if k not in explicit | set(point)}
        variant = ",".join(f"{k}={v.replace(' ', '-')}" for k, v in point.items())
        run_dir = root / _safe(env_name) / algo / _safe(variant) / f"seed{seed}" if variant else None
        run_dir = run_dir or root / _safe(env_name) / algo / f"seed{seed}"
        flags = ["--env-name", env_name, "--seed", str(seed), "--run-dir", str(run_dir), *_grid_flags(point),
                 *common_flags]  # fmt: skip
        jobs.append(Job(algo, env_name, seed, dict(point), str(run_dir), flags, presets))
    return jobs


def job_state(job: Job) -> str:
    """'new', 'done', 'failed', 'resume' (checkpoint saved), 'restart' (no checkpoint) or 'locked' (running)."""
    run_dir = pathlib.Path(job.run_dir)
    if is_locked(run_dir):
        return "locked"
    if not (run_dir / "results.json").is_file() and not (run_dir.exists() and any(run_dir.iterdir())):
        return "new"
    return state_from_files(run_dir)


def state_from_files(run_dir: pathlib.Path) -> str:
    """'done', 'failed', 'resume' or 'restart', from the run's results.json and checkpoint."""
    results = run_dir / "results.json"
    if results.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            status = json.loads(results.read_text()).get("status")
            if status in ("finished", "failed"):
                return "done" if status == "finished" else "failed"
    return "resume" if (run_dir / "checkpoint.pt").is_file() else "restart"


def is_locked(run_dir: pathlib.Path) -> bool:
    path = run_dir / LOCK_NAME
    if not path.is_file():
        return False
    with open(path) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(file, fcntl.LOCK_UN)
    return False


def set_aside(run_dir: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    """Move an unusable run directory to <root>/.superseded/<relative path>-<time>, out of the report's way; of one
    job's set-aside copies only the newest `SUPERSEDED_KEPT` stay, so reruns do not pile them up."""
    relative = run_dir.resolve().relative_to(root.resolve())
    target = root / ".superseded" / f"{relative}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    while target.exists():  # set aside twice within a second
        target = target.with_name(target.name + "+")
    run_dir.rename(target)
    copies = sorted(target.parent.glob(f"{relative.name}-*"), key=lambda path: path.stat().st_mtime)
    for old in copies[:-SUPERSEDED_KEPT]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def job_flag_error(job: Job, scripts_dir: str | os.PathLike) -> str | None:
    """Why `train_<algo>.py` would refuse this job's flags, in one line (an unknown flag, a value of the wrong type
    or out of its field's range), or None: the sweep checks every job before it starts any."""
    module = import_script(pathlib.Path(scripts_dir) / f"train_{job.algo}.py")
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            parse_args(module.Args, getattr(module, "PRESETS", ()), job.flags)
    except SystemExit as refusal:
        if isinstance(refusal.code, str):
            return refusal.code.removeprefix("error: ")
        lines = [line.strip(" │|-") for line in said.getvalue().splitlines()]  # tyro's box, unwrapped
        lines = [line for line in lines if line and "--help" not in line]
        detail = "; ".join(lines[1:4]) if len(lines) > 1 else "; ".join(lines) or "refused"
        return re.sub(r"\s+", " ", detail)
    return None
