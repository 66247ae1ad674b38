"""What a sweep runs: its jobs (algorithms x env names x grid points x seeds, each one run directory), the state each
job's directory is in, the check of each job's flags against its script before anything starts, and the processes
that train them: one per job, or with `--members-per-process K` one per group of up to K jobs that differ only in
seed and in coefficients the script lets members set each their own way (`offrl.members`).
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
from collections import defaultdict
from typing import Any

from offrl.args import apply_presets, import_script, parse_args, per_member_fields
from offrl.member_runs import member_dir
from offrl.rundir import GROUP_NAME, LOCK_NAME

__all__ = [
    "JOB_RECORD",
    "TO_RUN",
    "Job",
    "TrainingProcess",
    "build_jobs",
    "is_locked",
    "job_flag_error",
    "job_state",
    "parse_grid",
    "processes_for",
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
    group: str | None = None
    """the folder of the group of members this job trains in (--members-per-process), or None: a process of its own"""
    group_flags: list[str] = dataclasses.field(default_factory=list)
    """that group's command line (every member's seed and coefficients)"""

    @property
    def name(self) -> str:
        grid = "".join(f" {k}={v}" for k, v in self.grid.items())
        return f"{self.algo} {self.env_name}{grid} seed {self.seed}"


@dataclasses.dataclass
class TrainingProcess:
    """One process the sweep starts: a single job's run, or a group of jobs trained as members of one update."""

    jobs: list[Job]
    flags: list[str]
    """the script's command line"""
    folder: str
    """where its log (sweep.log) goes: the job's run directory, or the group's folder"""

    @property
    def algo(self) -> str:
        return self.jobs[0].algo

    @property
    def name(self) -> str:
        if len(self.jobs) == 1:
            return self.jobs[0].name
        return f"{self.jobs[0].algo} {self.jobs[0].env_name}: {len(self.jobs)} members in {self.folder}"


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
    members_per_process: int = 1,
) -> list[Job]:
    """Every (algo, env, grid point, seed) as a Job; its run applies the script's presets, then the grid values, then
    the common flags (the flags win). With `members_per_process` > 1, jobs are packed into groups (`_pack`)."""
    explicit = _fields_set_by(common_flags)
    grouped = explicit & {"seeds", "member_values"}
    if grouped:  # each job is one run directory the sweep tracks; a group of members is a folder of them
        raise ValueError(
            f"--{sorted(grouped)[0].replace('_', '-')} after '--' would make every job a group of members; give the "
            "seeds to the sweep's own --seeds (and coefficients to --grid), and --members-per-process K to train up to "
            "K of them in one process"
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
    if members_per_process > 1:
        _pack(jobs, members_per_process, root, common_flags, str(scripts_dir))
    return jobs


@functools.cache
def script_member_fields(scripts_dir: str, algo: str) -> tuple[str, ...]:
    """The fields `train_<algo>.py`'s members may set each their own way (`offrl.args.per_member_fields`)."""
    return per_member_fields(import_script(pathlib.Path(scripts_dir) / f"train_{algo}.py").Args)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pack(jobs: list[Job], size: int, root: pathlib.Path, common_flags: list[str], scripts_dir: str) -> None:
    """Put jobs that differ only in seed and in per-member coefficients into groups of at most `size` members, in
    place: each such job gets the group's folder, `<root>/<env>/<algo>[/<other grid values>]/group-seeds<...>`, its
    member directory inside it (as the group names it) and the group's command line.

    A group is every combination of its coefficients' values for each of its seeds (as --member-values and --seeds
    make it): all of a grid point's coefficient combinations with as many seeds as fit, or, when the combinations
    alone are more than `size`, one combination with up to `size` seeds. A group that would have one member stays a
    single job."""
    by_rest: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        fields = script_member_fields(scripts_dir, job.algo)
        own = tuple(name for name, value in job.grid.items() if name in fields and _is_number(value))
        rest = tuple((name, value) for name, value in job.grid.items() if name not in own)
        by_rest[(job.algo, job.env_name, rest, own)].append(job)
    for (algo, env_name, rest, own), alike in by_rest.items():
        combos = list(dict.fromkeys(tuple(job.grid[name] for name in own) for job in alike))
        seeds = list(dict.fromkeys(job.seed for job in alike))
        if len(combos) <= size:
            per = size // len(combos)
            chunks = [(combos, seeds[i : i + per]) for i in range(0, len(seeds), per)]
        else:
            chunks = [([combo], seeds[i : i + size]) for combo in combos for i in range(0, len(seeds), size)]
        variant = ",".join(f"{k}={v.replace(' ', '-')}" for k, v in rest)
        base = root / _safe(env_name) / algo / _safe(variant) if variant else root / _safe(env_name) / algo
        for chunk_combos, chunk_seeds in chunks:
            if len(chunk_combos) * len(chunk_seeds) == 1:
                continue
            values = {name: list(dict.fromkeys(combo[i] for combo in chunk_combos)) for i, name in enumerate(own)}
            fixed = {name: vals[0] for name, vals in values.items() if len(vals) == 1}
            varying = {name: vals for name, vals in values.items() if len(vals) > 1}
            label = "".join(f"__{name}={'-'.join(vals)}" for name, vals in values.items())
            folder = base / _safe(f"group-seeds{'-'.join(map(str, chunk_seeds))}{label}")
            flags = ["--env-name", env_name, "--seeds", *map(str, chunk_seeds), "--run-dir", str(folder),
                     *_grid_flags(dict(rest)), *_grid_flags(fixed)]  # fmt: skip
            if varying:
                flags += ["--member-values", *(f"{name}={','.join(vals)}" for name, vals in varying.items())]
            flags += common_flags
            for job in alike:
                if job.seed in chunk_seeds and tuple(job.grid[name] for name in own) in chunk_combos:
                    run_dir = member_dir(folder, env_name, algo, job.seed, {n: float(job.grid[n]) for n in varying})
                    job.flags[job.flags.index("--run-dir") + 1] = job.run_dir = str(run_dir)
                    job.group, job.group_flags = str(folder), flags


TO_RUN = ("new", "resume", "restart")
"""The job states a sweep starts a process for."""


def processes_for(todo: list[Job], states: dict[str, str], jobs: list[Job]) -> list[TrainingProcess]:
    """The processes that train `todo` (jobs whose `states`, by run directory, are in `TO_RUN`).

    A job of no group is its own process (resumed from its checkpoint in state 'resume'). A group whose members
    all wait to start ('new', 'restart') starts as one; one whose members were all interrupted with checkpoints
    (but those that failed) resumes as one from its folder (`--resume FOLDER`, which leaves the failed ones as they
    are). Any other mixture (a failed member retried, a member finished) trains each unfinished member alone."""
    members: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.group is not None:
            members[job.group].append(job)
    processes, seen = [], set()
    for job in todo:
        if job.group is None or job.group in seen:
            if job.group is None:
                processes.append(_alone(job, states[job.run_dir]))
            continue
        seen.add(job.group)
        group, group_states = members[job.group], [states[member.run_dir] for member in members[job.group]]
        waiting = [member for member in group if states[member.run_dir] in TO_RUN]
        record = (pathlib.Path(job.group) / GROUP_NAME).is_file()
        if all(state in ("new", "restart") for state in group_states):
            processes.append(TrainingProcess(group, job.group_flags, job.group))
        elif record and "resume" in group_states and all(s in ("resume", "failed") for s in group_states):
            processes.append(TrainingProcess(waiting, [*job.group_flags, "--resume", job.group], job.group))
        else:
            processes += [_alone(member, states[member.run_dir]) for member in waiting]
    return processes


def _alone(job: Job, state: str) -> TrainingProcess:
    return TrainingProcess([job], [*job.flags, *(["--resume", job.run_dir] if state == "resume" else [])], job.run_dir)


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
