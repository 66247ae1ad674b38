"""Training updates per second of the authors' JAX code and of offrl, on the same cores, side by side.

    python parity/speed.py fql --repo PATH/TO/fql --dataset-dir DIR
    python parity/speed.py fql --repo PATH/TO/fql --dataset-dir DIR --cores 2    # both on two cores
    python parity/speed.py iql --repo PATH/TO/fql --dataset-dir DIR
    python parity/speed.py fan --repo PATH/TO/FAN --dataset-dir DIR

For each width (`--widths`, default 2x64 2x256 4x512, actor and critic alike): the authors' agent with their config at
that width (FQL alpha 300, FAN discount 0.99: the settings `parity/one_update.py` compares at), trained as their
`main.py` trains it (`train_dataset.sample(256)`, then the jitted `agent.update(batch)`), and offrl's script on the same
file with the same settings, its `update()` (which draws its own batch) eager and compiled. Everything runs in this one
process, pinned to one core (`os.sched_setaffinity`, before jax or torch start a thread), with one thread each where the
libraries allow it: XLA with `--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`, torch with
`torch.set_num_threads(1)`; the table's CPU/wall column (process CPU seconds per second of a block) shows one core.
`--cores N` pins it to N cores instead, XLA with its own threads and torch with N.
After warm-up (compilation timed apart), `--rounds` rounds follow; in each, every implementation runs a block of
updates, the order rotating from round to round, so neighbouring blocks see the same machine. The table gives each one's
median updates/s and the median over rounds of its ratio to the authors' block of the same round.

The limit: the same run's rate of a (256 x 512) @ (512 x 512) matrix product (GFLOP/s, torch, on those cores), and the
fraction of it each update reaches, from the FLOPs of one offrl update (`torch.utils.flop_counter`; the authors'
update does the same products).

`--repo` is a checkout of https://github.com/seohongpark/fql (FQL, IQL) or https://github.com/brianlsy98/FAN (FAN);
DIR holds `cube-single-play-v0.npz` and its `-val` file (official or regenerated: `python -m offrl.generate
cube-single-play-v0 --dataset-dir DIR --output-name cube-single-play-v0`). Needs jax, flax, optax, distrax and
ml_collections next to offrl (docs/parity.md).
"""

from __future__ import annotations

import os
import sys


def cores_asked(argv: list[str]) -> int:
    """The value of --cores (read before anything starts a thread; argparse checks it again later)."""
    for index, token in enumerate(argv):
        if token == "--cores" and index + 1 < len(argv) and argv[index + 1].isdigit():
            return max(1, int(argv[index + 1]))
        if token.startswith("--cores=") and token.split("=", 1)[1].isdigit():
            return max(1, int(token.split("=", 1)[1]))
    return 1


# The cores: XLA's CPU client of recent jax keeps a thread pool that its single-thread flags no longer limit (a jitted
# matmul ran at 1.9 CPU-seconds per second with them), so the process is pinned to its cores before any library
# starts a thread; torch gets as many threads.
CORES = cores_asked(sys.argv)
if CORES == 1:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    ).strip()
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:CORES]))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from one_update import ENV_NAME, SCRIPTS, offrl_args, ogbench_home, reference_config  # noqa: E402

from offrl.compile import compiled, warmup_calls  # noqa: E402
from offrl.datasets import load_data  # noqa: E402
from offrl.tools.bench import machine  # noqa: E402
from offrl.tools.bench_members import width  # noqa: E402

CPU = torch.device("cpu")
MATMUL = (256, 512, 512)  # (batch, in, out): a hidden layer of the default networks on a batch


def matmul_gflops(seconds: float = 2.0) -> float:
    """GFLOP/s of a (256 x 512) @ (512 x 512) product in torch (its threads), repeated for about `seconds`."""
    n, k, m = MATMUL
    a, b = torch.randn(n, k), torch.randn(k, m)
    for _ in range(20):
        torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            torch.mm(a, b)
        count += 50
    return 2 * n * k * m * count / (time.perf_counter() - start) / 1e9


def authors_step(algo: str, dataset_dir: Path, hidden_dims: tuple[int, ...]) -> tuple[Callable, Callable]:
    """One step of the authors' training loop at this width (sample a batch with numpy, the jitted update), and the
    same step waiting for its result (jax dispatches asynchronously)."""
    import jax  # noqa: PLC0415

    agents_module = importlib.import_module("agents")
    env_utils = importlib.import_module("envs.env_utils")
    with ogbench_home(dataset_dir):
        _, _, train_dataset, _ = env_utils.make_env_and_datasets(ENV_NAME)
    config = reference_config(algo, hidden_dims)
    example = train_dataset.sample(1)
    agent_class = agents_module.agents[config["agent_name"]]
    if algo == "fan":
        agent = agent_class.create(0, example, config)
    else:
        agent = agent_class.create(0, example["observations"], example["actions"], config)
    state = {"agent": agent}

    def step() -> None:
        batch = train_dataset.sample(config["batch_size"])
        state["agent"], info = state["agent"].update(batch)
        state["info"] = info

    def synced() -> None:
        step()
        jax.block_until_ready(state["info"])

    return step, synced


def offrl_step(algo: str, dataset_dir: Path, hidden_dims: tuple[int, ...], compile_: bool) -> tuple:
    """offrl's update at this width (it samples its own batch), eager or compiled; and the FLOPs of one update."""
    script = importlib.import_module(SCRIPTS[algo])
    config = reference_config(algo, hidden_dims)
    args = dataclasses.replace(offrl_args(algo, script, config), dataset_dir=str(dataset_dir), compile=compile_)
    data = load_data(args, CPU)
    torch.manual_seed(0)
    agent = script.build(args, data, CPU)
    flops = None
    if not compile_:
        with FlopCounterMode(display=False) as counter:
            agent.update()
        flops = counter.get_total_flops()
    return compiled(agent.update, compile_, False, CPU), flops


def measure(algo: str, dataset_dir: Path, hidden: tuple[int, ...], steps: int, rounds: int) -> list:
    """Rows for one width: the authors' update, offrl eager and compiled, taking turns."""
    authors, authors_synced = authors_step(algo, dataset_dir, hidden)
    eager, flops = offrl_step(algo, dataset_dir, hidden, False)
    compiled_update, _ = offrl_step(algo, dataset_dir, hidden, True)
    runs = {"authors (JAX)": (authors, authors_synced), "offrl eager": (eager, eager),
            "offrl compiled": (compiled_update, compiled_update)}  # fmt: skip
    warm = {}
    for name, (step, synced) in runs.items():  # compilation (jit, torch.compile) timed apart
        start = time.perf_counter()
        for _ in range(2 if name == "authors (JAX)" else warmup_calls(step)):
            synced()
        warm[name] = time.perf_counter() - start
        for _ in range(steps):  # warm-up
            step()
        synced()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    busy: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for index in range(rounds):
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            step, synced = runs[name]
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps - 1):
                step()
            synced()
            seconds = time.perf_counter() - start
            rates[name].append(steps / seconds)
            busy[name].append((time.process_time() - cpu) / seconds)
    base = rates["authors (JAX)"]
    return [
        {"algo": algo, "width": f"{len(hidden)} x {hidden[0]}", "implementation": name, "rounds": rates[name],
         "updates_per_second": statistics.median(rates[name]),
         "ratio_to_authors": statistics.median(r / b for r, b in zip(rates[name], base, strict=True)),
         "gflop_per_update": flops / 1e9, "warmup_seconds": warm[name], "cpu_per_wall": statistics.median(busy[name])}
        for name in runs
    ]  # fmt: skip


def table(rows: list[dict], limit: float) -> str:
    lines = [
        "| width | implementation | updates/s | vs authors (median of rounds) | GFLOP/s | of matmul | CPU/wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rate = row["updates_per_second"] * row["gflop_per_update"]
        lines.append(
            f"| {row['width']} | {row['implementation']} | {row['updates_per_second']:.1f} | "
            f"{row['ratio_to_authors']:.2f}x | {rate:.0f} | {rate / limit:.0%} | {row['cpu_per_wall']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("algo", choices=["fql", "iql", "fan"])
    parser.add_argument("--repo", type=Path, required=True, help="checkout of the authors' code")
    parser.add_argument("--dataset-dir", type=Path, required=True, help="folder with cube-single-play-v0.npz")
    parser.add_argument("--widths", nargs="+", default=["2x64", "2x256", "4x512"], help="LAYERSxSIZE (both networks)")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=None, help="updates per block, one per width (default: 1000, 300, 30)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of blocks (default: 5)")
    parser.add_argument(
        "--cores", type=int, default=1, help="cores the process is pinned to, and torch's threads (default: 1)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not (args.repo / "agents").is_dir():
        parser.error(f"--repo {args.repo}: not a checkout of the authors' repository for {args.algo}")
    if not (args.dataset_dir / "cube-single-play-v0.npz").is_file():
        parser.error(f"--dataset-dir {args.dataset_dir}: no cube-single-play-v0.npz there")
    defaults = {"2x64": 1000, "2x256": 300, "4x512": 30}
    steps = args.steps or [defaults.get(w, 100) for w in args.widths]
    if len(steps) != len(args.widths):
        parser.error("--steps takes one value per width")
    if args.cores < 1:
        parser.error("--cores must be at least 1")
    torch.set_num_threads(CORES)
    sys.path.insert(0, str(args.repo.resolve()))
    rows = []
    limit = matmul_gflops()
    for text, count in zip(args.widths, steps, strict=True):
        rows += measure(args.algo, args.dataset_dir, width(text), count, args.rounds)
        print(f"[speed] {args.algo} {text} done", file=sys.stderr, flush=True)
    limit = statistics.mean([limit, matmul_gflops()])  # before and after, on a drifting machine
    where = "one core" if CORES == 1 else f"{CORES} cores, torch with {CORES} threads"
    print(f"{args.algo}, {where}, {machine()}; matmul {MATMUL} with that many threads: {limit:.0f} GFLOP/s")
    print(table(rows, limit))
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine(), "cores": CORES, "matmul_gflops": limit, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
