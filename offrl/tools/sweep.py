"""Run many training jobs: algorithms x env names x seeds (x a hyperparameter grid), locally or on a cluster.

    python -m offrl.tools.sweep --algos fql iql --envs cube-single-play-singletask-task1-v0 --seeds 0 1 2 \\
        --grid alpha=100,300 -- --total-steps 200000

Each job is one `train_<algo>.py` run (any such script in --scripts-dir, a copied and renamed one too). The script
applies its own per-domain presets (its `PRESETS` table, which the sweep reads to show and record them); the grid
values and the flags after `--` (given to every job) are command-line flags, so they win over the presets. A job's
run directory is fixed by what identifies it,
`<root>/<env>/<algo>[/<grid values>]/seed<k>`, and the sweep decides from it what to do:
    results.json says finished               skip (a rerun of the sweep starts no job)
    interrupted or killed, checkpoint saved  resume from the checkpoint (`--resume`), nothing repeated
    no checkpoint yet                         start again (the old folder is kept under <root>/.superseded)
    failed (NaN losses)                       skip and report, unless --retry-failed
    a process is training in it               skip (the lock the run itself holds in its directory)
Missing datasets are downloaded or generated once, before any job starts, never by concurrent jobs.

With --members-per-process K, jobs that differ only in seed (and in --grid coefficients the script lets members set
each their own way, such as alpha) train as members of one process (`--seeds`, `--member-values`): up to K of them in
a group folder `<root>/<env>/<algo>[/<other grid values>]/group-seeds<...>`, each member still a run directory of its
own there (what the report reads). A group starts, and resumes, as one process; when its members' states differ (a
failed member retried with --retry-failed), each unfinished member goes on alone in its own directory.

Executors:
    local           concurrent processes on this machine: --jobs at a time (default: 4 per GPU as in the FQL
                    author's runs, or one per CPU core), each with its own GPU slot or CPU threads;
    submitit-local  the same job groups through submitit's local executor (what the tests use); its tasks stop
                    with the sweep that waits for them (killed or interrupted), except with --no-wait;
    slurm           job groups submitted as a Slurm array through submitit: each array task gets one GPU and runs
                    --jobs-per-task jobs side by side on it.
Every job's output goes to <run_dir>/sweep.log (a group's to <group folder>/sweep.log); the sweep's command, machine
and job list to <root>/sweep.json.
`--report DIR` runs `python -m offrl.tools.report` on the root when the jobs are done.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import queue
import shlex
import subprocess
import sys
import threading
import time
from typing import Any

from offrl.args import find_scripts
from offrl.datasets import DatasetError, prepare_dataset
from offrl.records import git_commit, software_versions
from offrl.stopping import STOP_WITH_PARENT
from offrl.tools import report
from offrl.tools.bench import machine
from offrl.tools.jobs import (
    JOB_RECORD,
    TO_RUN,
    Job,
    TrainingProcess,
    build_jobs,
    is_locked,
    job_flag_error,
    job_state,
    parse_grid,
    processes_for,
    set_aside,
    state_from_files,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
EXECUTORS = ("local", "submitit-local", "slurm")


class _SweepWatch:
    """Stops a task's jobs when the sweep that waits for it is gone (submitit-local, where a task is not the sweep's
    child and so a job's parent-death signal would name the task, not the sweep).

    The waiting sweep holds an exclusive lock on `alive_file` (`_hold_alive_file`); the kernel drops it when the
    sweep dies, however it dies. A thread checks the lock every second; once it is free, running jobs get SIGTERM
    (they save a checkpoint and exit, so a rerun resumes them) and no new job starts.
    """

    def __init__(self, alive_file: str | None) -> None:
        self.gone = False
        self._processes: set[subprocess.Popen] = set()
        self._guard = threading.Lock()
        if alive_file is not None:
            threading.Thread(target=self._watch, args=(alive_file,), daemon=True).start()

    def _watch(self, alive_file: str) -> None:
        while not _lock_is_free(alive_file):
            time.sleep(1.0)
        with self._guard:
            self.gone = True
            for process in self._processes:
                with contextlib.suppress(OSError):
                    process.terminate()

    def started(self, process: subprocess.Popen) -> bool:
        """Register a job's process; False (and the process is stopped) if the sweep is already gone."""
        with self._guard:
            if self.gone:
                process.terminate()
                return False
            self._processes.add(process)
            return True

    def ended(self, process: subprocess.Popen) -> None:
        with self._guard:
            self._processes.discard(process)


def _lock_is_free(path: str) -> bool:
    try:
        with open(path, "a") as file:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hold_alive_file(folder: pathlib.Path):
    """The file whose lock says this sweep is alive (see `_SweepWatch`), held while the block runs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sweep-{os.getpid()}-{time.time_ns()}.alive"
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield str(path)
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)
    path.unlink(missing_ok=True)


def run_process(
    process: TrainingProcess, scripts_dir: str, env: dict[str, str], watch: _SweepWatch | None = None
) -> list[dict[str, Any]]:
    """Run one process to its end (a job's run, resumed if it has a checkpoint, or a group of members); returns the
    outcome of each of its jobs.

    A run holds the lock of its run directory (a group: of each member's) for its whole life, so a second sweep
    over the same root sees it running and skips it (and a job started twice stops at once, saying so).
    """
    folder = pathlib.Path(process.folder)
    start = time.perf_counter()
    if any(is_locked(pathlib.Path(job.run_dir)) for job in process.jobs):
        return [{"job": job.name, "state": "locked", "returncode": None, "seconds": 0.0} for job in process.jobs]
    states = [state_from_files(pathlib.Path(job.run_dir)) for job in process.jobs]
    if all(state in ("done", "failed") for state in states):
        return [
            {"job": job.name, "state": state, "returncode": 0, "seconds": 0.0}
            for job, state in zip(process.jobs, states, strict=True)
        ]
    command = [sys.executable, str(pathlib.Path(scripts_dir) / f"train_{process.algo}.py"), *process.flags]
    folder.mkdir(parents=True, exist_ok=True)
    for job in process.jobs:
        pathlib.Path(job.run_dir).mkdir(parents=True, exist_ok=True)
        record = {**dataclasses.asdict(job), "command": command, "log": str(folder / "sweep.log")}
        (pathlib.Path(job.run_dir) / JOB_RECORD).write_text(json.dumps(record, indent=2))
    with open(folder / "sweep.log", "a") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        # the job stops (saving a checkpoint) when this process dies, even by SIGKILL: offrl.stopping.stop_with_parent
        job_env = {**os.environ, **env, STOP_WITH_PARENT: str(os.getpid())}
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=job_env)
        if watch is not None:
            watch.started(child)
        try:
            returncode = child.wait()
        except BaseException:
            child.wait()  # a Ctrl-C reached the job too: let it save its checkpoint
            raise
        finally:
            if watch is not None:
                watch.ended(child)
    seconds = time.perf_counter() - start
    return [
        {"job": job.name, "state": state_from_files(pathlib.Path(job.run_dir)), "returncode": returncode,
         "seconds": seconds, "log": str(folder / "sweep.log")}
        for job in process.jobs
    ]  # fmt: skip


def run_group(
    processes: list[TrainingProcess],
    concurrency: int,
    scripts_dir: str,
    progress: bool = False,
    sweep_alive_file: str | None = None,
) -> list[dict[str, Any]]:
    """Run `processes` on this machine, `concurrency` at a time, each in its own GPU slot (round robin over the
    visible GPUs) or with its share of the CPU cores as threads. This is what a local sweep and each cluster task
    run. Returns the outcome of each job.

    With `sweep_alive_file` (a submitit-local task), the jobs stop when the sweep holding that file's lock is gone.
    """
    import torch

    watch = _SweepWatch(sweep_alive_file)

    gpus = torch.cuda.device_count()
    # cores / processes running at once, measured best on 2 cores (python -m offrl.tools.bench --threads 1 2 --jobs
    # 1 2): one job trains 1.5-1.7x faster with both cores than with one, two jobs 3x slower each with two threads
    # than with one; fewer processes than --jobs (a group of members, the last job) share the cores among them
    threads = max(1, usable_cores() // max(1, min(concurrency, len(processes))))
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(concurrency):
        slots.put(slot)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_ids = visible.split(",") if visible else [str(i) for i in range(gpus)]

    def run_in_slot(process: TrainingProcess) -> list[dict[str, Any]]:
        slot = slots.get()
        if watch.gone:
            slots.put(slot)
            return [{"job": j.name, "state": job_state(j), "returncode": None, "seconds": 0.0} for j in process.jobs]
        try:
            # a thread count the user set is theirs (torch reads MKL_NUM_THREADS over OMP_NUM_THREADS, so either one
            # leaves both alone); otherwise each job gets its share of the cores
            names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
            env = {} if any(name in os.environ for name in names) else {name: str(threads) for name in names}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpu_ids[slot % len(gpu_ids)]
            return run_process(process, scripts_dir, env, watch)
        finally:
            slots.put(slot)

    outcomes = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency)
    try:
        futures = {pool.submit(run_in_slot, process): process for process in processes}
        total = sum(len(process.jobs) for process in processes)
        for future in concurrent.futures.as_completed(futures):
            for outcome, job in zip(future.result(), futures[future].jobs, strict=True):
                outcomes.append(outcome)
                if progress:
                    print(f"[sweep] {len(outcomes)}/{total} {_describe(outcome, job)}", flush=True)
    except KeyboardInterrupt:
        # The running jobs got the same Ctrl-C: they save a checkpoint and exit. Start no new one.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return outcomes


def _describe(outcome: dict[str, Any], job: Job) -> str:
    text = f"{job.name}: {outcome['state']} after {outcome['seconds'] / 60:.1f} min"
    results = pathlib.Path(job.run_dir) / "results.json"
    with contextlib.suppress(OSError, json.JSONDecodeError, IndexError, KeyError):
        last = json.loads(results.read_text())["evals"][-1]
        score = last["success"] if last["success"] is not None else last["normalized_score"]
        text += f", score {score:.3f} at step {last['step']}"
    if outcome["state"] != "done":
        log = outcome.get("log", f"{job.run_dir}/sweep.log")
        text += f" (log: {log})" + "".join(f"\n    {line}" for line in _last_error_lines(log))
    return text


def _last_error_lines(log: str, most: int = 3) -> list[str]:
    """A job's last words in its sweep.log: the lines from the last that starts with 'error' or a traceback's last
    line, else its last lines (at most `most`)."""
    with contextlib.suppress(OSError):
        lines = [line.rstrip() for line in pathlib.Path(log).read_text().splitlines()]
        lines = [line for line in lines if line.strip() and not line.startswith("$ ")]
        errors = [i for i, line in enumerate(lines) if "error" in line.lower()]
        return lines[errors[-1] :][:most] if errors else lines[-most:]
    return []


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a Slurm task's or container's share), not the machine's
    count, which would oversubscribe a task given 8 of 64 cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return max(1, os.cpu_count() or 1)


def _default_concurrency(jobs_per_gpu: int) -> int:
    import torch

    gpus = torch.cuda.device_count()
    return gpus * jobs_per_gpu if gpus else usable_cores()


def _record(root: pathlib.Path, argv: list[str], jobs: list[Job], scripts_dir: str = ".") -> None:
    """Append this invocation to <root>/sweep.json: command, machine, library versions, the scripts' git commit, and
    the job list (merged by run directory)."""
    path = root / "sweep.json"
    record: dict[str, Any] = {"invocations": [], "jobs": {}}
    if path.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            record = json.loads(path.read_text())
    record["invocations"].append(
        {"command": shlex.join(["python", "-m", "offrl.tools.sweep", *argv]),
         "time": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "versions": software_versions(),
         "git": git_commit(scripts_dir)}
    )  # fmt: skip
    for job in jobs:
        record["jobs"][os.path.relpath(job.run_dir, root)] = dataclasses.asdict(job)
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, common = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        prog="python -m offrl.tools.sweep",
        description="Run train_<algo>.py jobs over algorithms x env names x seeds (x a grid) with each domain's "
        "recommended hyperparameters, locally or through submitit (Slurm). Flags after '--' go to every job. "
        "Finished jobs are skipped and interrupted ones resumed, so a sweep can be rerun until it is complete.",
        epilog="example: python -m offrl.tools.sweep --algos fql iql --envs cube-single-play-singletask-task1-v0 "
        "--seeds 0 1 2 -- --total-steps 200000",
    )
    parser.add_argument(
        "--algos", nargs="+", required=True,
        help="algorithms to run: the <algo> of any train_<algo>.py in --scripts-dir (fql, iql, sacbc, fan, idql, ...)",
    )  # fmt: skip
    parser.add_argument("--envs", nargs="+", required=True, help="OGBench single-task names or Minari ids")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="NAME=V1,V2",
        help="a hyperparameter axis, e.g. alpha=100,300,1000 (repeat for a cross product; values override the "
        "recommended ones)",
    )  # fmt: skip
    parser.add_argument("--root", default="runs/sweep", help="where the run directories go (default: runs/sweep)")
    parser.add_argument("--dataset-dir", default=None, help="dataset folder passed to every job")
    parser.add_argument(
        "--generate-episodes", type=int, default=None,
        help="OGBench: train on a locally generated set of this many episodes (generated once, before the jobs)",
    )  # fmt: skip
    parser.add_argument("--no-download", action="store_true", help="never try official downloads")
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="where jobs run (default: local)")
    parser.add_argument(
        "--jobs", type=int, default=None,
        help="local: jobs at a time (default: --jobs-per-gpu per GPU, else one per CPU core)",
    )  # fmt: skip
    parser.add_argument("--jobs-per-gpu", type=int, default=4, help="concurrent jobs per GPU (default: 4)")
    parser.add_argument(
        "--members-per-process", type=int, default=1, metavar="K",
        help="train up to K jobs that differ only in seed (and in --grid coefficients the script lets members set "
        "each their own way, e.g. alpha) in one process, as members of one vectorized update; each member is still "
        "its own run directory (default: 1, a process per job)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs-per-task", type=int, default=None,
        help="submitit: jobs run side by side in one task (default: --jobs-per-gpu for slurm, 1 for submitit-local)",
    )  # fmt: skip
    parser.add_argument("--slurm-partition", default=None, help="slurm: partition")
    parser.add_argument("--slurm-account", default=None, help="slurm: account")
    parser.add_argument("--slurm-time", type=int, default=24 * 60, help="slurm: minutes per task (default: 1440)")
    parser.add_argument("--slurm-cpus", type=int, default=8, help="slurm: CPUs per task (default: 8)")
    parser.add_argument("--slurm-mem-gb", type=int, default=32, help="slurm: memory per task in GB (default: 32)")
    parser.add_argument("--slurm-parallelism", type=int, default=64, help="slurm: array tasks at once (default: 64)")
    parser.add_argument("--no-wait", action="store_true", help="submitit: exit once the tasks are submitted")
    parser.add_argument("--retry-failed", action="store_true", help="rerun jobs whose runs failed (kept aside)")
    parser.add_argument("--dry-run", action="store_true", help="print what each job would do, start nothing")
    parser.add_argument("--report", default=None, metavar="DIR", help="write `offrl.tools.report` into DIR at the end")
    parser.add_argument("--readme", default=None, help="with --report: also update this README's results section")
    parser.add_argument(
        "--scripts-dir", default=str(REPO_ROOT), help="folder holding train_<algo>.py (default: the repository)"
    )
    args = parser.parse_args(own)
    for name in ("jobs", "jobs_per_gpu", "jobs_per_task", "generate_episodes", "members_per_process"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.readme and not args.report:
        parser.error("--readme needs --report")
    missing = [a for a in args.algos if not (pathlib.Path(args.scripts_dir) / f"train_{a}.py").is_file()]
    if missing:
        there = ", ".join(find_scripts(args.scripts_dir)) or "none"
        parser.error(
            f"train_{missing[0]}.py is not in {args.scripts_dir} (scripts there: {there}); run the sweep from a clone "
            "of the repository (pip install -e .) or pass --scripts-dir"
        )
    dataset_flags = []
    if args.dataset_dir:
        dataset_flags += ["--dataset-dir", args.dataset_dir]
    if args.generate_episodes:
        dataset_flags += ["--generate-episodes", str(args.generate_episodes)]
    return args, dataset_flags + common


def _prepare_datasets(args: argparse.Namespace) -> None:
    for env_name in args.envs:
        try:
            where = prepare_dataset(
                env_name, args.dataset_dir, args.generate_episodes if "/" not in env_name else None,
                download=not args.no_download,
            )  # fmt: skip
        except (DatasetError, ValueError) as error:
            raise SystemExit(f"error: {env_name}: {error}") from None
        print(f"[sweep] dataset for {env_name}: {where}", flush=True)


def _submit(
    args: argparse.Namespace, processes: list[TrainingProcess], root: pathlib.Path
) -> list[dict[str, Any]] | None:
    try:
        import submitit
    except ImportError:
        raise SystemExit(
            "error: --executor submitit-local/slurm needs submitit: pip install 'offrl[cluster]'"
        ) from None
    per_task = args.jobs_per_task or (args.jobs_per_gpu if args.executor == "slurm" else 1)
    groups = [processes[i : i + per_task] for i in range(0, len(processes), per_task)]
    folder = root / "submitit"
    if args.executor == "slurm":
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as error:  # no srun on this machine
            raise SystemExit(f"error: --executor slurm: {error} Run the sweep on a Slurm login node.") from None
        extra = {"account": args.slurm_account} if args.slurm_account else {}
        executor.update_parameters(
            timeout_min=args.slurm_time, gpus_per_node=1, cpus_per_task=args.slurm_cpus, mem_gb=args.slurm_mem_gb,
            slurm_array_parallelism=args.slurm_parallelism, name="offrl-sweep", slurm_additional_parameters=extra,
            **({"slurm_partition": args.slurm_partition} if args.slurm_partition else {}),
        )  # fmt: skip
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="local")
        executor.update_parameters(timeout_min=args.slurm_time)
    # A waiting submitit-local sweep takes its tasks with it when it dies (`_SweepWatch`); Slurm tasks and
    # --no-wait tasks are meant to outlive the process that submitted them (scancel stops Slurm ones).
    tied = args.executor == "submitit-local" and not args.no_wait
    with _hold_alive_file(folder) if tied else contextlib.nullcontext() as alive_file:
        n = len(groups)
        submitted = executor.map_array(
            run_group, groups, [per_task] * n, [args.scripts_dir] * n, [False] * n, [alive_file] * n
        )
        print(f"[sweep] submitted {n} task(s) of up to {per_task} process(es): {[j.job_id for j in submitted]}")
        print(f"[sweep] submitit logs: {folder}", flush=True)
        if args.no_wait:
            return None
        outcomes = []
        for task in submitted:
            try:
                outcomes += task.result()
            except Exception as error:  # noqa: BLE001  (a task that died: say which, keep collecting the others)
                print(f"[sweep] task {task.job_id} failed: {error}", file=sys.stderr)
                outcomes.append({"job": f"task {task.job_id}", "state": "error", "returncode": None, "seconds": 0.0})
    return outcomes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, common_flags = parse_args(argv)
    root = pathlib.Path(args.root)
    try:
        jobs = build_jobs(
            args.algos, args.envs, args.seeds, parse_grid(args.grid), root, common_flags, args.scripts_dir,
            args.members_per_process,
        )  # fmt: skip
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    refused = [(job, why) for job in jobs if (why := job_flag_error(job, args.scripts_dir)) is not None]
    if refused:  # before any job starts (and in a --dry-run): a flag the scripts would refuse
        (job, why), more = refused[0], len(refused) - 1
        others = f" ({more} more job(s) refused likewise)" if more else ""
        print(f"error: {job.name}: train_{job.algo}.py refuses its flags: {why}{others}", file=sys.stderr)
        return 2
    states = {job.run_dir: job_state(job) for job in jobs}
    if args.retry_failed:
        for job in jobs:
            if states[job.run_dir] == "failed":
                print(f"[sweep] {job.name}: failed run moved to {set_aside(pathlib.Path(job.run_dir), root)}")
                states[job.run_dir] = "new"
    counts = {s: sum(v == s for v in states.values()) for s in ("new", "resume", "restart", "done", "failed", "locked")}
    print("[sweep] " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" (of {len(jobs)} jobs)", flush=True)
    for job in jobs:
        done_record = pathlib.Path(job.run_dir) / JOB_RECORD
        if states[job.run_dir] == "done" and done_record.is_file():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                if json.loads(done_record.read_text()).get("flags") != job.flags:
                    print(f"[sweep] note: {job.name} finished with other flags; use a new --root to rerun it.")
    todo = [job for job in jobs if states[job.run_dir] in TO_RUN]
    processes = processes_for(todo, states, jobs)
    if args.dry_run:
        for job in jobs:
            presets = " ".join(f"{k}={v}" for k, v in job.presets.items())
            print(
                f"  {states[job.run_dir]:>7}  train_{job.algo}.py {shlex.join(job.flags)}"
                + (f"   (presets: {presets})" if presets else "")
            )
        for process in processes:
            if len(process.jobs) > 1:
                print(
                    f"  {len(process.jobs)} members in one process: train_{process.algo}.py {shlex.join(process.flags)}"
                )
        return 0
    _record(root, argv, jobs, args.scripts_dir)
    if todo:
        _prepare_datasets(args)
        for job in todo:
            if states[job.run_dir] == "restart":
                moved = set_aside(pathlib.Path(job.run_dir), root)
                print(f"[sweep] {job.name}: no checkpoint to resume from; old folder moved to {moved}")
        if args.executor == "local":
            concurrency = args.jobs or _default_concurrency(args.jobs_per_gpu)
            grouped = sum(len(process.jobs) > 1 for process in processes)
            packed = f" in {len(processes)} process(es), {grouped} of them groups of members" if grouped else ""
            where = "<run_dir>/sweep.log" + (" (a group's: <group folder>/sweep.log)" if grouped else "")
            print(f"[sweep] running {len(todo)} job(s){packed}, {concurrency} at a time; logs in {where}")
            try:
                outcomes = run_group(processes, concurrency, args.scripts_dir, progress=True)
            except KeyboardInterrupt:
                print("\n[sweep] interrupted: running jobs saved checkpoints. Rerun the same command to resume.")
                return 130
        else:
            outcomes = _submit(args, processes, root)
            if outcomes is None:
                return 0
        unfinished = [o for o in outcomes if o["state"] != "done"]
        if unfinished:
            print(f"[sweep] {len(unfinished)} job(s) did not finish: " + "; ".join(o["job"] for o in unfinished))
    else:
        print("[sweep] nothing to run.")
    if args.report:
        report_args = [str(root), "--output", args.report] + (["--readme", args.readme] if args.readme else [])
        report.main(report_args)
    final = [job_state(job) for job in jobs]
    return 0 if all(state == "done" for state in final) else 1


if __name__ == "__main__":
    sys.exit(main())
