"""Member-updates per second of a group (`offrl.members`) against one member: `python -m offrl.tools.bench_members`.

For each script, network width and mode, the script's own `build()` makes a single run and groups of K members
(`build_members`, as `--seeds` does) on a small regenerated cube-single set (observation 28, action 5, batch 256), all
in one process. After compilation (timed apart) and `--steps` warm-up updates of each, `--repeats` rounds follow; in
each round every K runs a block of `--steps` updates, the order rotating from round to round, so that neighbouring
blocks see the same machine. A group of K does K member-updates per update; the table gives each K's member-updates/s
(median over rounds) and the median over rounds of its ratio to the single run's block of the same round: above 1, a
group trains its members faster than one process would train them one after another.

Usage: python -m offrl.tools.bench_members                                  # fql, 2 x 64 / 2 x 256 / 4 x 512
       python -m offrl.tools.bench_members --scripts iql --widths 2x256 --members 1 2 4 --modes eager --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from offrl.args import import_script, per_member_fields
from offrl.args import parse_args as parse_script_args
from offrl.checkpoint import seed_everything
from offrl.compile import compiled, warmup_calls
from offrl.datasets import load_data
from offrl.devices import resolve_device
from offrl.members import build_members
from offrl.tools.bench import REPO_ROOT, machine


def width(text: str) -> tuple[int, ...]:
    """'2x256' -> (256, 256)."""
    layers, _, size = text.partition("x")
    return (int(size),) * int(layers)


def group_rates(script: str, hidden: tuple[int, ...], mode: str, args: argparse.Namespace, data_dir: Path) -> list:
    """One row per K: member-updates/s (median over rounds), the median per-round ratio to K = 1, compile time."""
    module = import_script(Path(args.scripts_dir) / f"train_{script}.py")
    cli = ["--device", args.device, "--dataset-dir", str(data_dir), "--generate-episodes", str(args.episodes),
           "--hidden-dims", *map(str, hidden), "--no-compile" if mode == "eager" else "--compile"]  # fmt: skip
    script_args = parse_script_args(module.Args, module.PRESETS, cli).args
    device = resolve_device(script_args.device)
    updates, compile_seconds = {}, {}
    for count in args.members:
        data = load_data(script_args, device)
        if count == 1:  # the single run, as `--seed 0` trains it
            seed_everything(0)
            agent = module.build(script_args, data, device)
        else:
            members = [script_args.__class__(**{**vars(script_args), "seed": seed}) for seed in range(count)]
            agent, _ = build_members(
                module.build, members, per_member_fields(module.Args), data, device, seed_everything
            )
        update = compiled(agent.update, mode != "eager", False, device)
        start = time.perf_counter()
        for _ in range(warmup_calls(update)):
            update()
        compile_seconds[count], updates[count] = time.perf_counter() - start, update
        for _ in range(args.steps):
            update()
    rates: dict[int, list[float]] = {count: [] for count in args.members}
    order = list(args.members)
    for round_index in range(args.repeats):
        shift = round_index % len(order)
        for count in order[shift:] + order[:shift]:
            start = time.perf_counter()
            for _ in range(args.steps):
                updates[count]()
            rates[count].append(count * args.steps / (time.perf_counter() - start))
    base = rates[order[0]]
    return [
        {
            "script": f"train_{script}.py",
            "width": f"{len(hidden)} x {hidden[0]}",
            "mode": mode,
            "members": count,
            "member_updates_per_second": statistics.median(rates[count]),
            "ratio_to_one": statistics.median(r / b for r, b in zip(rates[count], base, strict=True)),
            "rounds": [round(r, 2) for r in rates[count]],
            "compile_seconds": compile_seconds[count],
        }  # fmt: skip
        for count in order
    ]


def table(rows: list[dict]) -> str:
    lines = [
        "| script | width | mode | members K | member-updates/s (median) | per member vs K = 1 (median of rounds) "
        "| compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['script']}` | {row['width']} | {row['mode']} | {row['members']} "
            f"| {row['member_updates_per_second']:.1f} | {row['ratio_to_one']:.2f}x | {row['compile_seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offrl.tools.bench_members", description=__doc__.split("\n")[0])
    parser.add_argument("--scripts", nargs="+", default=["fql"], help="algorithms (default: fql)")
    parser.add_argument("--scripts-dir", default=str(REPO_ROOT), help="where the train_*.py files are")
    parser.add_argument("--widths", nargs="+", default=["2x64", "2x256", "4x512"], help="LAYERSxSIZE network widths")
    parser.add_argument("--members", nargs="+", type=int, default=[1, 2, 4, 8], help="group sizes; the first is 1")
    parser.add_argument("--modes", nargs="+", choices=["eager", "compile"], default=["eager", "compile"])
    parser.add_argument("--steps", type=int, default=20, help="updates per block (default: 20)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of blocks (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as the scripts)")
    parser.add_argument("--device", default="auto", help="torch device (default: auto)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes of the regenerated set (default: 10)")
    parser.add_argument("--dataset-dir", default=None, help="where the regenerated set goes (default: a temp dir)")
    parser.add_argument("--output", default="bench_members.json", help="the rows as JSON (default: bench_members.json)")
    args = parser.parse_args(argv)
    if args.members[0] != 1 or any(k < 1 for k in args.members):
        parser.error("--members must start with 1 (the single run every ratio is to) and be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        data_dir = Path(args.dataset_dir or temporary)
        for script in args.scripts:
            for text in args.widths:
                for mode in args.modes:
                    rows += group_rates(script, width(text), mode, args, data_dir)
                    print(table(rows[-len(args.members) :]), flush=True)
    info = {**machine(), "torch_threads": torch.get_num_threads()}
    Path(args.output).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    print(f"\n{info}\n\n{table(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
