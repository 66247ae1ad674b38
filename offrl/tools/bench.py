"""Training-throughput benchmark of the five scripts: `python -m offrl.tools.bench`.

Each measurement runs a script itself, as a user would (its own compiled update, not a re-implementation), on a
small regenerated cube-single set (observation 28, action 5) at the script's default sizes (batch 256, 4 x 512
networks; IDQL's denoiser 256 wide), once per mode:
    eager      --no-compile
    compile    --compile                       (torch.compile, default mode)
    cudagraphs --compile --cudagraphs          (CUDA only: the compiled update replayed as one CUDA graph)
A run trains `(repeats + 1) * steps` updates and logs every `steps`: the first interval is warm-up (it holds the
compilation and the first steps after it) and each later interval is one repeat; the table gives the median over
repeats of updates per second. With `--rounds R` every (script, mode) run is made R times, the modes taking turns
(eager, compile, eager, compile, ...), and the median is over all R x repeats intervals: on a shared machine whose
speed drifts, both modes then see the same conditions. Those rates come from the script's own TensorBoard log
(`time/train_seconds`, cumulative training time with compilation, evaluation and logging excluded), so they are
what real runs achieve. Compile time is the wall time of the first update (with CUDA graphs: of the first three, the
last of which captures the graph; `compile_seconds` in results.json).
Evaluation cost is the script's own measure (`eval_seconds_per_episode`, environment creation included) times 50.

With `--paired`, each script instead runs once, in one process: its own update is built in every mode (sharing the
networks, optimizer and data), and after warm-up the modes run blocks of `steps` updates in turns, `repeats` rounds.
Each mode's ratio to eager is the median over rounds of (its block's rate / the eager block's rate of that round):
on a shared machine whose speed drifts, this resolves differences of a few percent that separate runs cannot.

Usage: python -m offrl.tools.bench                      # every script, every mode this machine has
       python -m offrl.tools.bench --scripts fql --repeats 5 --steps 500 --output bench.json
       python -m offrl.tools.bench --rounds 3                # modes interleaved, three runs of each
       python -m offrl.tools.bench --paired                  # modes in one process, blocks taking turns: steady ratios
       python -m offrl.tools.bench --online --modes eager   # online steps/s of fine-tuning (environment step + update)
       python -m offrl.tools.bench --profile fql             # torch.profiler table + Chrome trace of FQL's update
       python -m offrl.tools.bench --scripts iql --modes compile --threads 1 2 --jobs 1 2   # threads per job
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from offrl.args import find_scripts, import_script
from offrl.args import parse_args as parse_script_args
from offrl.checkpoint import seed_everything
from offrl.compile import compiled, warmup_calls
from offrl.datasets import load_data
from offrl.devices import resolve_device

MODE_FLAGS = {"eager": ["--no-compile"], "compile": ["--compile"], "cudagraphs": ["--compile", "--cudagraphs"]}
REPO_ROOT = Path(__file__).resolve().parents[2]


def interval_rates(train_seconds: dict[int, float], interval: int) -> list[float]:
    """Updates/s of each logging interval after the first, from the cumulative training time logged at its ends.

    `train_seconds` maps a log step k * interval to the training time so far (compilation, evaluation and logging
    excluded). Returns one rate per interval from the second: interval / (seconds at its end - seconds at its start).
    """
    steps = sorted(train_seconds)
    return [interval / (train_seconds[b] - train_seconds[a]) for a, b in zip(steps, steps[1:], strict=False)]


def read_scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """The `tag` scalars of a run directory's TensorBoard logs: {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values.update({e.step: e.value for e in accumulator.Scalars(tag)})
    return values


def _command(script: str, mode: str, args: argparse.Namespace, dataset_dir: Path, run_dir: Path) -> list[str]:
    total = (args.repeats + 1) * args.steps
    # --online: the warm-up interval is the offline phase, the repeats are online steps
    phases = ["--total-steps", str(args.steps), "--online-steps", str(total - args.steps)] if args.online else [
        "--total-steps", str(total)]  # fmt: skip
    return [
        sys.executable, str(Path(args.scripts_dir) / f"train_{script}.py"), "--device", args.device,
        "--dataset-dir", str(dataset_dir), "--generate-episodes", str(args.episodes),
        *phases, "--log-every", str(args.steps), "--eval-every", str(total),
        "--eval-episodes", str(args.eval_episodes), "--save-every", str(total), "--run-dir", str(run_dir),
        *MODE_FLAGS[mode], *args.script_flags,
    ]  # fmt: skip


def _row(script: str, mode: str, args: argparse.Namespace, run_dir: Path, seconds: float) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    rates = interval_rates(read_scalars(run_dir, "time/train_seconds"), args.steps)
    return {
        "script": f"train_{script}.py",
        "mode": mode,
        "updates_per_second": statistics.median(rates),
        "repeats": [round(r, 2) for r in rates],
        "compile_seconds": results["compile_seconds"],
        "eval_seconds_per_50_episodes": 50 * results["eval_seconds_per_episode"],
        "run_seconds": seconds,
        # --online: the offline phase's updates/s in the same run (its warm-up steps excluded), for the ratio
        **({"offline_updates_per_second": results["train_steps_per_second"]} if args.online else {}),
    }


def _failure(script: str, mode: str, returncode: int, output: str) -> RuntimeError:
    tail = "\n".join(output.strip().splitlines()[-15:])
    return RuntimeError(f"train_{script}.py ({mode}) exited {returncode}:\n{tail}")


def measure(
    script: str, mode: str, args: argparse.Namespace, dataset_dir: Path, work_dir: Path, round_index: int = 0
) -> dict:
    """Run one script in one mode and return its row of the table."""
    run_dir = work_dir / f"{script}-{mode}-{round_index}"
    command = _command(script, mode, args, dataset_dir, run_dir)
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=args.timeout)
    if process.returncode != 0:
        raise _failure(script, mode, process.returncode, process.stdout + process.stderr)
    return _row(script, mode, args, run_dir, time.perf_counter() - start)


def measure_threads(
    script: str, mode: str, args: argparse.Namespace, dataset_dir: Path, work_dir: Path, threads: int, jobs: int
) -> dict:
    """Run `jobs` copies of one script side by side (as `offrl.tools.sweep --jobs` does), each with `threads` torch
    threads (OMP_NUM_THREADS and MKL_NUM_THREADS); the row gives the median copy's rate and the copies' sum."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    run_dirs = [work_dir / f"{script}-{mode}-t{threads}-j{jobs}-{k}" for k in range(jobs)]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            _command(script, mode, args, dataset_dir, run_dir),
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for run_dir in run_dirs
    ]
    outputs = [process.communicate(timeout=args.timeout)[0] for process in processes]
    seconds = time.perf_counter() - start
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise _failure(script, mode, process.returncode, output)
    rows = [_row(script, mode, args, run_dir, seconds) for run_dir in run_dirs]
    rates = [row["updates_per_second"] for row in rows]
    return {
        **rows[0],
        "threads": threads,
        "jobs": jobs,
        "updates_per_second": statistics.median(rates),
        "total_updates_per_second": sum(rates),
        "repeats": [rate for row in rows for rate in row["repeats"]],
        "compile_seconds": statistics.median(row["compile_seconds"] for row in rows),
    }


def threads_table(rows: list[dict]) -> str:
    """The --threads rows as a Markdown table, each rate also as a ratio to the same script, mode and job count
    with one thread."""
    one = {(r["script"], r["mode"], r["jobs"]): r["updates_per_second"] for r in rows if r["threads"] == 1}
    lines = [
        "| script | mode | jobs side by side | threads per job | updates/s per job | vs 1 thread | all jobs |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = one.get((row["script"], row["mode"], row["jobs"]))
        ratio = f"{row['updates_per_second'] / base:.2f}x" if base else "-"
        lines.append(
            f"| `{row['script']}` | {row['mode']} | {row['jobs']} | {row['threads']} "
            f"| {row['updates_per_second']:,.1f} | {ratio} | {row['total_updates_per_second']:,.1f} |"
        )
    return "\n".join(lines)


def pool_rounds(rows: list[dict]) -> dict:
    """One row from the rounds of a (script, mode): the median over all their repeats, medians of the rest."""
    repeats = [rate for row in rows for rate in row["repeats"]]
    pooled = {
        **rows[0],
        "updates_per_second": statistics.median(repeats),
        "repeats": repeats,
        "rounds": len(rows),
    }
    for key in ("compile_seconds", "eval_seconds_per_50_episodes", "run_seconds"):
        pooled[key] = statistics.median(row[key] for row in rows)
    return pooled


def machine() -> dict:
    """What the numbers were measured on."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def markdown_table(rows: list[dict], unit: str = "updates/s") -> str:
    """The rows as a Markdown table, with each mode's speed-up over eager for the same script."""
    eager = {row["script"]: row["updates_per_second"] for row in rows if row["mode"] == "eager"}
    lines = [
        f"| script | mode | {unit} (median) | vs eager | compile s | eval s / 50 episodes |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["updates_per_second"] / eager[row["script"]] if row["script"] in eager else float("nan")
        lines.append(
            f"| `{row['script']}` | {row['mode']} | {row['updates_per_second']:,.1f} | {ratio:.2f}x "
            f"| {row['compile_seconds']:.1f} | {row['eval_seconds_per_50_episodes']:.0f} |"
        )
    return "\n".join(lines)


def _built(script: str, args: argparse.Namespace, dataset_dir: Path, mode: str = "compile"):
    """train_<script>.py's own `build()` at its default sizes on the regenerated set: (agent, device)."""
    module = import_script(Path(args.scripts_dir) / f"train_{script}.py")
    cli = ["--device", args.device, "--dataset-dir", str(dataset_dir), "--generate-episodes", str(args.episodes),
           *MODE_FLAGS[mode]]  # fmt: skip
    script_args = parse_script_args(module.Args, module.PRESETS, cli).args
    device = resolve_device(script_args.device)
    seed_everything(script_args.seed)
    return module.build(script_args, load_data(script_args, device), device), device


def paired(script: str, args: argparse.Namespace, dataset_dir: Path, work_dir: Path) -> list[dict]:
    """Time one script's update in every mode in one process, in blocks that take turns; one row per mode.

    The script's own `build()` makes its networks, optimizer and `update()` once; the update is compiled once per
    mode (all modes share the networks, the optimizer and the data). After compilation (timed) and `steps` warm-up
    calls of each, `repeats` rounds follow; in each round every mode runs a block of `steps` updates, the order
    rotating from round to round. On a machine whose speed drifts, neighbouring blocks see the same conditions, so the
    ratio of a mode's block to the eager block of the same round is a steadier measure than the ratio of separate
    runs: the table gives the median of those per-round ratios.
    """
    agent, device = _built(script, args, dataset_dir)
    sync = torch.cuda.synchronize if args.cuda else (lambda: None)
    updates, compile_seconds = {}, {}
    for mode in args.modes:  # eager first (MODE order), so lazy optimizer state is created outside any graph
        update = compiled(agent.update, mode != "eager", mode == "cudagraphs", device)
        sync()
        start = time.perf_counter()
        for _ in range(warmup_calls(update)):
            update()
        sync()
        compile_seconds[mode], updates[mode] = time.perf_counter() - start, update
    for _ in range(args.steps):
        for update in updates.values():
            update()
    rates: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for round_index in range(args.repeats):
        shift = round_index % len(args.modes)
        for mode in args.modes[shift:] + args.modes[:shift]:
            update = updates[mode]
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                update()
            sync()
            rates[mode].append(args.steps / (time.perf_counter() - start))
    rows = []
    for mode in args.modes:
        ratios = [rate / eager for rate, eager in zip(rates[mode], rates["eager"], strict=True)]
        rows.append(
            {
                "script": f"train_{script}.py",
                "mode": mode,
                "updates_per_second": statistics.median(rates[mode]),
                "repeats": [round(rate, 2) for rate in rates[mode]],
                "paired_ratio": statistics.median(ratios),
                "paired_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "rounds_faster_than_eager": sum(ratio > 1.0 for ratio in ratios),
                "compile_seconds": compile_seconds[mode],
            }
        )
    return rows


def paired_table(rows: list[dict]) -> str:
    """Paired rows as a Markdown table: median rate, the median per-round ratio to eager, its range, and in how many
    rounds the mode's block was faster than eager's."""
    lines = [
        "| script | mode | updates/s (median) | vs eager (median of rounds) | range over rounds "
        "| rounds faster than eager | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["paired_ratio_range"]
        faster = "-" if row["mode"] == "eager" else f"{row['rounds_faster_than_eager']}/{len(row['repeats'])}"
        lines.append(
            f"| `{row['script']}` | {row['mode']} | {row['updates_per_second']:,.1f} | {row['paired_ratio']:.3f}x "
            f"| {low:.2f}-{high:.2f} | {faster} | {row['compile_seconds']:.1f} |"
        )
    return "\n".join(lines)


def profile(script: str, mode: str, args: argparse.Namespace, dataset_dir: Path, work_dir: Path) -> str:
    """Profile `profile_steps` updates of one script (after `steps` of warm-up) with torch.profiler, in this process.

    The update is the script's own (`build()` of train_<script>.py, compiled as its `main` compiles it in `mode`).
    Writes `<profile_dir>/<script>-<mode>.txt` (the operator table, sorted by self time on the device, or on the CPU
    without CUDA) and a Chrome trace beside it, and returns the table.
    """
    from torch.profiler import ProfilerActivity, schedule

    agent, device = _built(script, args, dataset_dir, mode)
    update = compiled(agent.update, mode != "eager", mode == "cudagraphs", device)
    cuda = args.cuda
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    warmup = max(args.steps, warmup_calls(update))  # compilation (or capture) happens in these
    profiler = torch.profiler.profile(
        activities=activities, schedule=schedule(wait=warmup, warmup=3, active=args.profile_steps, repeat=1)
    )
    with profiler:
        for _ in range(warmup + 3 + args.profile_steps):
            update()
            profiler.step()
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = profiler.key_averages()
    table = averages.table(sort_by=sort_by, row_limit=25)
    header = f"train_{script}.py, {mode}: {args.profile_steps} updates profiled after {warmup + 3}"
    if cuda:
        kernels = sum(event.count for event in averages if event.device_type == torch.autograd.DeviceType.CUDA)
        header += f"; {kernels / args.profile_steps:.0f} device kernels per update"
    out = Path(args.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{script}-{mode}.txt").write_text(f"{header}\n{table}\n")
    profiler.export_chrome_trace(str(out / f"{script}-{mode}.trace.json"))
    return f"{header}\n{table}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m offrl.tools.bench",
        description="Training updates per second of each train_<algo>.py in eager, compiled and CUDA-graph modes, "
        "measured by running the scripts themselves on a small regenerated cube-single set.",
    )
    parser.add_argument(
        "--scripts", nargs="+", default=None, metavar="ALGO",
        help="the train_<ALGO>.py scripts to measure (default: every train_*.py in --scripts-dir)",
    )  # fmt: skip
    parser.add_argument(
        "--scripts-dir", default=str(REPO_ROOT), help="folder holding train_<algo>.py (default: the repository)"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODE_FLAGS), default=None,
        help="modes to measure (default: eager and compile, plus cudagraphs on CUDA)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="torch device passed to the scripts (default: auto)")
    parser.add_argument(
        "--steps", type=int, default=None,
        help="updates per repeat (default: 100 on CPU, 2000 on CUDA; with --paired, updates per block: 20 on CPU, "
        "500 on CUDA)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=None,
        help="timed repeats after one warm-up interval (default: 3; with --paired, rounds of blocks: 12)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each (script, mode), modes taking turns (default: 1)"
    )
    parser.add_argument("--episodes", type=int, default=10, help="episodes of the regenerated dataset (default: 10)")
    parser.add_argument(
        "--eval-episodes", type=int, default=None,
        help="episodes per evaluation, from which the cost of 50 is given (default: 50 on CUDA, 4 on CPU)",
    )  # fmt: skip
    parser.add_argument("--dataset-dir", default=None, help="where the regenerated set goes (default: a temp dir)")
    parser.add_argument("--output", default="bench.json", help="where the table goes as JSON (default: bench.json)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run (default: 3600)")
    parser.add_argument(
        "--paired", action="store_true",
        help="instead of separate runs: time the modes' updates in one process per script, in blocks of --steps "
        "updates that take turns, and give each mode's median per-round ratio to eager (steadier on a drifting "
        "machine; no evaluation is timed)",
    )  # fmt: skip
    parser.add_argument(
        "--online", action="store_true",
        help="time the online phase of fine-tuning instead: --steps offline updates (the warm-up, compilation "
        "included), then --repeats x --steps online steps, each one environment step and one update; the table "
        "gives online steps per second (= environment steps per second)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None,
        help="instead of the mode table: separate runs with each of these torch thread counts (OMP_NUM_THREADS), "
        "--jobs copies side by side; what offrl.tools.sweep's default thread count rests on",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, nargs="+", default=[1],
        help="with --threads: how many copies of a run train side by side, as offrl.tools.sweep --jobs (default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--script-flags", default="",
        help="extra flags for every run, one string, e.g. '--hidden-dims 32 32 --batch-size 64' (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", default=None, metavar="ALGO",
        help="instead of the table: profile this script's update with torch.profiler (in the first of --modes, "
        "default compile), after --steps updates of warm-up",
    )  # fmt: skip
    parser.add_argument(
        "--profile-steps", type=int, default=None, help="updates profiled (default: 50 on CUDA, 10 on CPU)"
    )
    parser.add_argument(
        "--profile-dir", default="profiles", help="where the profile table and Chrome trace go (default: profiles)"
    )
    args = parser.parse_args(argv)
    profile_modes = args.modes
    cuda = args.cuda = torch.cuda.is_available() if args.device == "auto" else args.device.startswith("cuda")
    args.modes = args.modes or (["eager", "compile", "cudagraphs"] if cuda else ["eager", "compile"])
    if "cudagraphs" in args.modes and not cuda:
        parser.error("--modes cudagraphs needs a CUDA device")
    if args.paired:
        args.modes = sorted(args.modes, key=list(MODE_FLAGS).index)
        if args.modes[0] != "eager":
            parser.error("--paired compares with eager: include eager in --modes")
        defaults = (500 if cuda else 20, 12)
    else:
        defaults = (2000 if cuda else 100, 3)
    args.steps = defaults[0] if args.steps is None else args.steps
    args.repeats = defaults[1] if args.repeats is None else args.repeats
    args.eval_episodes = args.eval_episodes or (50 if cuda else 4)
    args.profile_steps = args.profile_steps or (50 if cuda else 10)
    if args.profile:
        args.modes = profile_modes[:1] if profile_modes else ["compile"]
    for name in ("steps", "repeats", "rounds", "episodes", "eval_episodes", "profile_steps"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if any(n <= 0 for n in (args.threads or []) + args.jobs):
        parser.error("--threads and --jobs must be positive")
    if args.online and (args.paired or args.profile or args.threads):
        parser.error("--online times separate runs; it does not combine with --paired, --profile or --threads")
    found = find_scripts(args.scripts_dir)
    args.scripts = args.scripts or found
    for script in [*args.scripts, *([args.profile] if args.profile else [])]:
        if script not in found:
            parser.error(f"no train_{script}.py in {args.scripts_dir} (found: {', '.join(found) or 'none'})")
    args.script_flags = shlex.split(args.script_flags)
    return args


def separate_rows(script: str, args: argparse.Namespace, dataset_dir: Path, work_dir: Path) -> list[dict]:
    """One row per mode from `args.rounds` separate runs of each mode (taking turns), printing each run."""
    runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for round_index in range(args.rounds):
        for mode in args.modes:
            row = measure(script, mode, args, dataset_dir, work_dir, round_index)
            runs[mode].append(row)
            print(
                f"  train_{script}.py {mode:>10}: {row['updates_per_second']:8.1f} {_unit(args)} "
                f"(repeats {row['repeats']}), compile {row['compile_seconds']:.1f} s"
                + (f", offline {row['offline_updates_per_second']:.1f} updates/s" if args.online else ""),
                flush=True,
            )
    return [pool_rounds(runs[mode]) for mode in args.modes]


def _unit(args: argparse.Namespace) -> str:
    return "online steps/s" if getattr(args, "online", False) else "updates/s"


def paired_rows(script: str, args: argparse.Namespace, dataset_dir: Path, work_dir: Path) -> list[dict]:
    """`paired`'s rows for one script, printing each."""
    rows = paired(script, args, dataset_dir, work_dir)
    for row in rows:
        print(
            f"  {row['script']} {row['mode']:>10}: {row['updates_per_second']:8.1f} updates/s, "
            f"{row['paired_ratio']:.3f}x eager (rounds {row['paired_ratio_range']}, "
            f"faster in {row['rounds_faster_than_eager']}/{len(row['repeats'])}), "
            f"compile {row['compile_seconds']:.1f} s",
            flush=True,
        )
    return rows


def threads_main(args: argparse.Namespace, info: dict) -> int:
    """`--threads`: every (script, mode, jobs, threads) in turn, the thread counts taking turns innermost."""
    print(f"threads {args.threads} x jobs side by side {args.jobs}; {args.repeats} repeats x {args.steps} updates")
    rows = []
    with tempfile.TemporaryDirectory(prefix="offrl-bench-") as work:
        dataset_dir = Path(args.dataset_dir or Path(work) / "data")
        for script in args.scripts:
            for mode in args.modes:
                for jobs in args.jobs:
                    for threads in args.threads:
                        try:
                            row = measure_threads(script, mode, args, dataset_dir, Path(work), threads, jobs)
                        except (RuntimeError, subprocess.TimeoutExpired) as error:
                            print(f"error: {error}", file=sys.stderr)
                            return 1
                        rows.append(row)
                        print(
                            f"  train_{script}.py {mode:>8} jobs {jobs} threads {threads}: "
                            f"{row['updates_per_second']:8.1f} updates/s per job",
                            flush=True,
                        )
    print(threads_table(rows))
    report = {"machine": info, "config": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows}
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"offrl.tools.bench on {info['gpu'] or info['cpu']} ({info['cpu_cores']} cores), torch {info['torch']}")
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="offrl-profile-") as work:
            dataset_dir = Path(args.dataset_dir or Path(work) / "data")
            print(profile(args.profile, args.modes[0], args, dataset_dir, Path(work)))
        print(f"written to {args.profile_dir}/{args.profile}-{args.modes[0]}.txt (and .trace.json)")
        return 0
    if args.threads:
        return threads_main(args, info)
    if args.paired:
        print(f"paired: {args.repeats} rounds of one {args.steps}-update block per mode, after {args.steps} of warm-up")
    else:
        what = "online steps (environment step + update)" if args.online else "updates"
        print(
            f"{args.rounds} round(s) of {args.repeats} repeats x {args.steps} {what} after a warm-up of {args.steps} "
            "updates, batch 256, default sizes"
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="offrl-bench-") as work:
        dataset_dir = Path(args.dataset_dir or Path(work) / "data")
        for script in args.scripts:
            try:
                rows += (paired_rows if args.paired else separate_rows)(script, args, dataset_dir, Path(work))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            except SystemExit as error:  # the script refused its arguments or data (paired runs it in-process)
                print(f"train_{script}.py stopped: {error}", file=sys.stderr)
                return 1
    print(paired_table(rows) if args.paired else markdown_table(rows, _unit(args)))
    report = {"machine": info, "config": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows}
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
