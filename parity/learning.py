"""Learning curves of offrl's FQL (or FAN, IDQL) and the authors' on the same dataset, same settings, several seeds.

    python parity/learning.py --repo PATH/TO/fql --dataset-dir DIR --out parity-runs/fql --seeds 0 1 2 3 4 5 6 7
    python parity/learning.py --algo fan --repo PATH/TO/FAN --dataset-dir DIR --out parity-runs/fan --seeds 0 1 2 3
    python parity/learning.py --algo idql --repo PATH/TO/IDQL --dataset-dir DIR --out parity-runs/idql --seeds 0 1

Each run trains `--steps` updates and evaluates every `--eval-every` with `--eval-episodes` episodes. Runs go one
per core of `--cores`, each pinned to its core (`taskset`) with one thread, the two sides alternating so that both
see the same machine. Each finished run's success curve is added to `--results` (by default
parity/results/<algo>-cube-single.json, kept in the repository), together with the settings and the SHA-256 of the
dataset file: a run already there is not repeated, so seeds add up across machines and sessions, and a results file
made with other settings or another dataset file is refused. The summary table is written to `--out`/summary.md and
summary.json at the end.

The authors' code runs unchanged (`main.py` of a checkout of https://github.com/seohongpark/fql, or of
https://github.com/brianlsy98/FAN with `--algo fan`), with Weights & Biases disabled (IDQL's code has no OGBench
entry point: `--algo idql` runs its learner through parity/idql_reference.py, which says how) and HOME pointed at a
folder whose `.ogbench/data` is DIR, so that both load the same files: DIR holds
`cube-single-play-v0.npz` and `cube-single-play-v0-val.npz` (official, or regenerated:
`python -m offrl.generate cube-single-play-v0 --dataset-dir DIR --output-name cube-single-play-v0`). Run it with a
Python that has jax, flax, optax, distrax, ml_collections and wandb next to offrl.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import hashlib
import itertools
import json
import math
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_NAME = "cube-single-play-singletask-task1-v0"
# The authors' main.py with Weights & Biases switched off (it would try to reach the network), and the settings newer
# wandb releases no longer take (start_method) left out.
REFERENCE_LAUNCHER = (
    "import runpy, sys, wandb; init, settings = wandb.init, wandb.Settings; "
    "wandb.init = lambda **kwargs: init(**{**kwargs, 'mode': 'disabled'}); "
    "wandb.Settings = lambda **kwargs: settings(**{k: v for k, v in kwargs.items() if k in settings.model_fields}); "
    "sys.argv = ['main.py', *sys.argv[1:]]; runpy.run_path('main.py', run_name='__main__')"
)
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def reference_command(args: argparse.Namespace, seed: int, save_dir: Path) -> list[str]:
    if args.algo == "idql":
        return [
            sys.executable, str(ROOT / "parity" / "idql_reference.py"), "--repo", str(args.repo),
            "--env-name", ENV_NAME, "--dataset-dir", str(args.dataset_dir), "--save-dir", str(save_dir),
            "--seed", str(seed), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
            "--eval-episodes", str(args.eval_episodes), "--hidden-dims", *(str(d) for d in args.hidden_dims),
            "--expectile", str(args.expectile),
        ]  # fmt: skip
    dims = "(" + ",".join(str(d) for d in args.hidden_dims) + ",)"
    if args.algo == "fql":
        algo_flags = [f"--offline_steps={args.steps}", "--agent=agents/fql.py", f"--agent.alpha={args.alpha}"]
    else:  # FAN's main.py names its step count train_steps and can leave wandb out by itself
        algo_flags = [
            f"--train_steps={args.steps}", "--enable_wandb=0", "--agent=agents/fan.py",
            f"--agent.alpha1={args.alpha1}", f"--agent.alpha2={args.alpha2}", f"--agent.discount={args.discount}",
        ]  # fmt: skip
    return [
        sys.executable, "-c", REFERENCE_LAUNCHER,
        f"--env_name={ENV_NAME}", f"--seed={seed}", *algo_flags,
        f"--eval_interval={args.eval_every}", f"--eval_episodes={args.eval_episodes}",
        f"--log_interval={args.eval_every}", f"--save_interval={10 * args.steps}", f"--save_dir={save_dir}",
        f"--agent.actor_hidden_dims={dims}", f"--agent.value_hidden_dims={dims}",
    ]  # fmt: skip


def offrl_command(args: argparse.Namespace, seed: int, run_dir: Path) -> list[str]:
    if args.algo == "fql":
        algo_flags = ["--alpha", str(args.alpha)]
    elif args.algo == "idql":  # the IDQL code's critic has no LayerNorm (its V has one at the input only)
        algo_flags = ["--expectile", str(args.expectile), "--no-layer-norm"]
    else:
        algo_flags = ["--alpha1", str(args.alpha1), "--alpha2", str(args.alpha2), "--discount", str(args.discount)]
    return [
        sys.executable, str(ROOT / f"train_{args.algo}.py"), "--env-name", ENV_NAME,
        "--dataset-dir", str(args.dataset_dir), "--seed", str(seed), "--total-steps", str(args.steps),
        "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
        "--log-every", str(args.eval_every), "--save-every", str(10 * args.steps), *algo_flags,
        "--hidden-dims", *(str(d) for d in args.hidden_dims), "--run-dir", str(run_dir),
        *(["--no-compile"] if not args.compile else []),
    ]  # fmt: skip


def reference_curve(save_dir: Path) -> dict[int, float] | None:
    files = list(save_dir.glob("**/eval.csv"))
    if not files:
        return None
    with open(files[0]) as f:
        rows = list(csv.DictReader(f))
    return {int(float(row["step"])): float(row["evaluation/success"]) for row in rows}


def offrl_curve(run_dir: Path) -> dict[int, float] | None:
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    if results.get("status") != "finished":
        return None
    return {int(row["step"]): float(row["success"]) for row in results["evals"]}


def dataset_sha256(dataset_dir: Path) -> str:
    """SHA-256 of the training file both sides load (the validation file is made in the same generation run)."""
    digest = hashlib.sha256()
    with open(dataset_dir / "cube-single-play-v0.npz", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings(args: argparse.Namespace) -> dict:
    """What a run's curve depends on besides its seed: two results files are combined only when these are equal."""
    common = {
        "algo": args.algo,
        "env_name": ENV_NAME,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "hidden_dims": list(args.hidden_dims),
        "offrl_compile": args.compile,
    }
    if args.algo == "fql":
        return {**common, "alpha": args.alpha}
    if args.algo == "idql":
        return {**common, "expectile": args.expectile, "offrl_layer_norm": False}
    return {**common, "alpha1": args.alpha1, "alpha2": args.alpha2, "discount": args.discount}


def load_results(args: argparse.Namespace) -> dict:
    """The results file for these settings and this dataset file; a new one where there is none yet."""
    expected = {"settings": settings(args), "dataset_sha256": args.sha256}
    if not args.results.is_file():
        return {**expected, "runs": {"reference": {}, "offrl": {}}}
    try:
        results = json.loads(args.results.read_text())
    except json.JSONDecodeError as error:
        sys.exit(f"--results {args.results}: not valid JSON ({error}); fix or move it")
    for key, value in expected.items():
        if results.get(key) != value:
            sys.exit(
                f"--results {args.results}: its runs were made with {key} {results.get(key)}, these would be made "
                f"with {value}; pass another --results file to keep the two apart"
            )
    return results


def add_run(args: argparse.Namespace, results: dict, side: str, seed: int, curve: dict[int, float]) -> None:
    """Adds one finished run to the results file, merged with what other processes added to it meanwhile."""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if args.results.is_file():
            for name, runs in load_results(args)["runs"].items():
                results["runs"][name].update(runs)
        results["runs"][side][str(seed)] = {str(step): value for step, value in sorted(curve.items())}
        temporary = args.results.with_suffix(".tmp")
        temporary.write_text(json.dumps(results, indent=1) + "\n")
        temporary.replace(args.results)


def take_claim(claim: Path) -> bool:
    """Claims a run for this process: a file holding its PID. A claim whose process is gone (killed) is taken over;
    one without a PID (made by hand to hold a run back) is left alone."""
    try:
        with open(claim, "x") as f:
            f.write(str(os.getpid()))
        return True
    except FileExistsError:
        pass
    try:
        os.kill(int(claim.read_text()), 0)
    except ProcessLookupError:
        claim.write_text(str(os.getpid()))
        return True
    except (ValueError, OSError):
        pass
    return False


def run_all(args: argparse.Namespace, results: dict) -> None:
    jobs: queue.Queue = queue.Queue()
    for seed in args.seeds:
        for side in ("reference", "offrl"):
            if str(seed) in results["runs"][side]:
                continue
            out = args.out / side / f"seed{seed}"
            done = reference_curve(out) if side == "reference" else offrl_curve(out)
            if done is not None and max(done) >= args.steps:  # finished in --out before it was recorded
                add_run(args, results, side, seed, done)
            else:
                jobs.put((side, seed, out))
    total = jobs.qsize()
    print(f"{total} runs to do, one at a time on each of cores {args.cores}", flush=True)
    started = time.time()
    lock = threading.Lock()

    def worker(core: int) -> None:
        while True:
            try:
                side, seed, out = jobs.get_nowait()
            except queue.Empty:
                return
            out.parent.mkdir(parents=True, exist_ok=True)
            with lock:
                recorded = args.results.is_file() and str(seed) in load_results(args)["runs"][side]
            claim = out.with_name(out.name + ".running")
            if recorded or not take_claim(claim):  # another learning.py on this --out may have taken it meanwhile
                print(f"{side} seed {seed}: recorded or running elsewhere ({claim}), skipped", flush=True)
                continue
            try:
                run_one(side, seed, out, core)
            finally:
                claim.unlink(missing_ok=True)

    def run_one(side: str, seed: int, out: Path, core: int) -> None:
        shutil.rmtree(out, ignore_errors=True)  # what an interrupted run left: both sides start afresh
        if side == "reference":
            cwd = ROOT if args.algo == "idql" else args.repo
            command, home = reference_command(args, seed, out), args.out / "home"
        else:
            command, cwd, home = offrl_command(args, seed, out), ROOT, Path.home()
        env = {**os.environ, **ONE_THREAD, "HOME": str(home), "WANDB_MODE": "disabled"}
        log = args.out / "logs" / f"{side}-seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        begin = time.time()
        with open(log, "w") as f:
            rc = subprocess.run(["taskset", "-c", str(core), *command], cwd=cwd, env=env, stdout=f, stderr=f).returncode
        curve = reference_curve(out) if side == "reference" else offrl_curve(out)
        if rc == 0 and curve is not None and max(curve) >= args.steps:
            with lock:
                add_run(args, results, side, seed, curve)
            status = f"ok, added to {args.results}"
        else:
            status = f"FAILED (exit {rc}, see {log})"
        print(f"{side} seed {seed} on core {core}: {status} in {time.time() - begin:.0f} s", flush=True)

    home = args.out / "home" / ".ogbench"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "data").exists():
        (home / "data").symlink_to(args.dataset_dir.resolve())
    threads = [threading.Thread(target=worker, args=(core,)) for core in args.cores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"all runs done in {(time.time() - started) / 60:.1f} min", flush=True)


def permutation_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the difference of means of `a` and `b` under exchangeable labels: the fraction of all
    ways to split the pooled values into groups of their sizes whose difference is at least as large as the one
    observed (exact; a fixed-seed sample of 100,000 splits where there are more)."""
    pooled, size = a + b, len(a)
    observed = abs(statistics.fmean(a) - statistics.fmean(b)) - 1e-12
    total = sum(pooled)
    if math.comb(len(pooled), size) <= 100_000:
        splits = itertools.combinations(range(len(pooled)), size)
    else:
        draw = random.Random(0)
        splits = (draw.sample(range(len(pooled)), size) for _ in range(100_000))
    extreme = count = 0
    for split in splits:
        first = sum(pooled[i] for i in split)
        extreme += abs(first / size - (total - first) / (len(pooled) - size)) >= observed
        count += 1
    return extreme / count


def summarize(args: argparse.Namespace, results: dict) -> dict:
    """Every finished run in the results file, whatever --seeds says."""
    curves = {
        side: {int(seed): {int(step): value for step, value in curve.items()} for seed, curve in runs.items()}
        for side, runs in results["runs"].items()
    }
    steps = sorted({s for s in range(args.eval_every, args.steps + 1, args.eval_every)})
    rows = []
    for step in steps:
        row = {"step": step}
        for side in ("reference", "offrl"):
            values = [curves[side][seed][step] for seed in sorted(curves[side]) if step in curves[side][seed]]
            row[side] = {
                "per_seed": values,
                "mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "min": min(values, default=None),
                "max": max(values, default=None),
            }
        ref, ours = row["reference"]["per_seed"], row["offrl"]["per_seed"]
        row["difference"] = statistics.fmean(ours) - statistics.fmean(ref) if ref and ours else None
        row["p"] = permutation_p(ours, ref) if len(ref) > 1 and len(ours) > 1 else None
        rows.append(row)
    setting = {
        "fql": f"alpha {args.alpha}",
        "fan": f"alpha1 {args.alpha1}, alpha2 {args.alpha2}",
        "idql": f"expectile {args.expectile}, offrl without LayerNorm",
    }[args.algo]
    lines = [
        f"{args.algo.upper()} on {ENV_NAME}, {setting}, hidden dims {args.hidden_dims}, "
        f"{args.eval_episodes} evaluation episodes; seeds: reference {sorted(curves['reference'])}, "
        f"offrl {sorted(curves['offrl'])}; dataset SHA-256 {args.sha256[:16]}...",
        "",
        "| step | reference mean (sd) | reference seeds | offrl mean (sd) | offrl seeds"
        " | offrl mean within the reference's range | offrl - reference (permutation p) |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(stats: dict) -> str:
        if stats["mean"] is None:
            return "- | -"
        sd = f" ({stats['std']:.2f})" if stats["std"] is not None else ""
        return f"{stats['mean']:.2f}{sd} | " + " ".join(f"{v:.2f}" for v in stats["per_seed"])

    for row in rows:
        ref, ours = row["reference"], row["offrl"]
        within = "-" if ref["mean"] is None or ours["mean"] is None else str(ref["min"] <= ours["mean"] <= ref["max"])
        difference = "-" if row["p"] is None else f"{row['difference']:+.2f} ({row['p']:.2f})"
        lines.append(f"| {row['step']} | {cell(ref)} | {cell(ours)} | {within} | {difference} |")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "curves": curves}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", choices=("fql", "fan", "idql"), default="fql")
    parser.add_argument("--repo", type=Path, required=True, help="checkout of the authors' code (fql, FAN or IDQL)")
    parser.add_argument("--dataset-dir", type=Path, required=True, help="folder with cube-single-play-v0.npz")
    parser.add_argument("--out", type=Path, required=True, help="where the runs and the summary go")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--alpha", type=float, default=300.0, help="FQL's alpha")
    parser.add_argument("--alpha1", type=float, default=100.0, help="FAN's alpha1 (offrl's default)")
    parser.add_argument("--alpha2", type=float, default=0.0, help="FAN's alpha2 (offrl's default)")
    parser.add_argument("--discount", type=float, default=0.995, help="FAN's discount (both defaults)")
    parser.add_argument("--expectile", type=float, default=0.9, help="IDQL's expectile (offrl's OGBench default)")
    parser.add_argument(
        "--cores", type=int, nargs="+", default=[0, 1], help="CPU cores to use, one run at a time on each"
    )
    parser.add_argument(
        "--results", type=Path, help="JSON file of finished runs (default: parity/results/<algo>-cube-single.json)"
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="offrl: torch.compile")
    parser.add_argument("--summary-only", action="store_true", help="only (re)write the summary of finished runs")
    args = parser.parse_args(argv)
    entry = "jaxrl5" if args.algo == "idql" else "main.py"
    if not (args.repo / entry).exists():
        parser.error(f"--repo {args.repo}: no {entry}; pass a checkout of the authors' repository")
    if not (args.dataset_dir / "cube-single-play-v0.npz").is_file():
        parser.error(f"--dataset-dir {args.dataset_dir}: no cube-single-play-v0.npz there")
    usable = sorted(os.sched_getaffinity(0))
    if not set(args.cores) <= set(usable):
        parser.error(f"--cores {args.cores}: this process may run on cores {usable} only")
    args.results = args.results or ROOT / "parity" / "results" / f"{args.algo}-cube-single.json"
    args.out.mkdir(parents=True, exist_ok=True)
    args.repo, args.out = args.repo.resolve(), args.out.resolve()
    args.sha256 = dataset_sha256(args.dataset_dir)
    results = load_results(args)
    if not args.summary_only:
        run_all(args, results)
    summarize(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
