"""Results of many runs as Markdown tables next to the published numbers, plus learning curves.

    python -m offrl.tools.report runs/sweep --output results/            # results/report.md (+ curves-*.png)
    python -m offrl.tools.report runs/sweep --output docs/results --readme README.md

Reads every `results.json` under the given folders (folders whose name starts with '.' are skipped: the sweep keeps
superseded runs there). Runs are grouped by env name, algorithm and the hyperparameters that differ between runs of
the same algorithm on the same env (the seed aside). Each run's score is taken three ways (`EVALUATIONS`):
    final   its last evaluation
    last 3  the mean of its last three evaluations
    best    its best evaluation (optimistic)
Per domain, a first table gives each configuration's mean over the domain's tasks and over the seeds that finished
every task (the FQL and FAN papers' 5-task means), and the interquartile mean (IQM) of the final scores over all
(seed, task) runs with its 95% stratified-bootstrap confidence interval (`rliable`, `pip install 'offrl[report]'`);
a second table has one row per task (mean +- std over seeds; std is the sample standard deviation). Only finished
runs count; unfinished ones are listed below the tables. Scores are in percent (OGBench success x 100; Minari:
normalized score). The published column (`offrl.tools.published`) compares like with like: a task's row holds that
task's published results, a domain row the published 5-task mean only when it covers the same tasks (else it says it
is not comparable), and each entry names the column it corresponds to (the FQL paper's protocol is **last 3**) and
its source, listed in full at the end of every report. `curves.csv` holds every evaluation of every run. The curves
(one figure per env: the mean over seeds, shaded +- one std, success on a 0-100 axis) need matplotlib
(`pip install 'offrl[plot]'`); without it the tables are written and the plots skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from offrl.tools.published import DOMAIN, SOURCES, TASK, Published

README_BEGIN = "<!-- offrl.report: begin -->"
README_END = "<!-- offrl.report: end -->"

# Arguments that never tell two configurations apart.
_NOT_HYPERPARAMETERS = {
    "seed", "run_dir", "resume", "device", "video", "dataset_dir", "eval_envs", "log_every", "save_every", "compile",
    "cudagraphs", "env_name", "presets", "track", "wandb_project", "wandb_entity", "seeds", "member_values",
}  # fmt: skip


@dataclass
class Run:
    """One run directory's results.json."""

    path: pathlib.Path
    algo: str
    env_name: str
    args: dict[str, Any]
    status: str
    evals: list[dict[str, Any]]
    results: dict[str, Any]

    def scores(self) -> list[tuple[int, float]]:
        """(step, score in percent) of every evaluation: success x 100, else the normalized score, else the return."""
        points = []
        for row in sorted(self.evals, key=lambda e: e["step"]):
            if row.get("success") is not None:
                points.append((row["step"], 100.0 * row["success"]))
            elif row.get("normalized_score") is not None:
                points.append((row["step"], row["normalized_score"]))
            elif row.get("return") is not None:
                points.append((row["step"], row["return"]))
        return points


@dataclass
class Group:
    """The runs of one configuration (env, algo, hyperparameters), one per seed."""

    env_name: str
    algo: str
    variant: str
    runs: list[Run] = field(default_factory=list)

    @property
    def finished(self) -> list[Run]:
        return [run for run in self.runs if run.status == "finished" and run.scores()]

    def final(self) -> list[float]:
        return [run.scores()[-1][1] for run in self.finished]

    def best(self) -> list[float]:
        return [max(score for _, score in run.scores()) for run in self.finished]

    def last3(self) -> list[float]:
        return [statistics.mean(score for _, score in run.scores()[-3:]) for run in self.finished]

    def by_seed(self, which: str) -> dict[Any, float]:
        """{seed: that seed's score}, `which` one of `EVALUATIONS` (a seed run twice: its last run counts)."""
        values = {"final": self.final, "last 3": self.last3, "best": self.best}[which]()
        return {run.args.get("seed"): value for run, value in zip(self.finished, values, strict=True)}


EVALUATIONS = {
    "final": "each run's last evaluation",
    "last 3": "the mean of each run's last three evaluations (less noisy than one evaluation; the FQL paper's "
    "protocol, whose evaluations were at 800K, 900K and 1M steps)",
    "best": "each run's best evaluation (optimistic: it selects on the evaluation episodes themselves)",
}
"""Which evaluation of a run a column reports."""


def domain_of(env_name: str) -> str:
    """The benchmark domain of an env name, the unit the papers average over.

    'cube-single-play-singletask-task1-v0' -> 'cube-single'; 'puzzle-3x3-play-singletask-v0' -> 'puzzle-3x3';
    'D4RL/antmaze/medium-play-v1' -> 'D4RL/antmaze'; 'mujoco/hopper/medium-v0' -> 'mujoco/hopper'.
    Other names are their own domain.
    """
    if "/" in env_name:
        return env_name.rsplit("/", 1)[0]
    match = re.fullmatch(r"(?P<domain>.+)-[a-z]+-singletask(-task\d+)?-v\d+", env_name)
    return match["domain"] if match else env_name


def collect_runs(roots: list[str | pathlib.Path]) -> list[Run]:
    """Every readable results.json under `roots`, skipping folders whose name starts with '.'."""
    runs = []
    for root in map(pathlib.Path, roots):
        for path in sorted(root.rglob("results.json")):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            try:
                results = json.loads(path.read_text())
                runs.append(
                    Run(path.parent, results["algo"], results["env_name"], results.get("args", {}),
                        results.get("status", "unknown"), results.get("evals", []), results)
                )  # fmt: skip
            except (OSError, json.JSONDecodeError, KeyError) as error:
                print(f"[report] skipping {path}: not a readable results.json ({error})", file=sys.stderr)
    return runs


def group_runs(runs: list[Run]) -> list[Group]:
    """Group runs by (env, algo, the hyperparameters that differ between that env and algo's runs)."""
    by_task: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        by_task[(run.env_name, run.algo)].append(run)
    groups = []
    for (env_name, algo), task_runs in sorted(by_task.items()):
        keys = sorted({k for run in task_runs for k in run.args} - _NOT_HYPERPARAMETERS)
        varying = [k for k in keys if len({json.dumps(run.args.get(k)) for run in task_runs}) > 1]
        variants: dict[str, Group] = {}
        for run in task_runs:
            variant = ", ".join(f"{k}={_short(run.args.get(k))}" for k in varying)
            variants.setdefault(variant, Group(env_name, algo, variant)).runs.append(run)
        groups += [variants[v] for v in sorted(variants)]
    return groups


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def mean_std(values: list[float]) -> str:
    """'81.0 ± 3.2' (sample std over seeds); just the mean for one seed; '-' for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def published(env_name: str, algo: str) -> list[Published]:
    """The published results on this very task (not its domain's mean: that is compared in the domain table)."""
    return TASK.get((env_name, algo), [])


def published_for_domain(row: DomainRow) -> list[Published]:
    """The published mean of this row's domain, if any."""
    entry = DOMAIN.get((row.domain, row.algo))
    return [entry] if entry else []


def published_cell(entries: list[Published], tasks: int) -> str:
    """The table cell: each entry read against the column it names; a mean over other tasks said to be one."""
    cells = []
    for entry in entries:
        if entry.tasks == tasks:
            cells.append(entry.cell())
        else:
            cells.append(
                f"not comparable: {tasks} of the {entry.tasks} tasks here; {entry.tasks}-task mean {entry.cell()}"
            )
    return "; ".join(cells) or "-"


def _task_label(env_name: str) -> str:
    match = re.search(r"singletask-(task\d+)", env_name)
    return match[1] if match else env_name


def _safe(text: str) -> str:
    return re.sub(r"[^\w.-]+", "-", text).strip("-")


_SOURCES = {
    "official": "the official OGBench download",
    "generated": "regenerated locally with OGBench's oracles and data-collection procedure (not the official file)",
    "file": "a dataset file given by path",
}


def _describe_data(dataset: dict[str, Any]) -> str:
    source = dataset.get("source")
    name = pathlib.Path(str(dataset.get("path"))).name
    if source in _SOURCES:
        return f"{_SOURCES[source]}, `{name}`"
    if source == "minari":
        return f"Minari dataset ({dataset.get('num_episodes')} episodes)"
    return "not recorded"


def settings_summary(runs: list[Run]) -> list[str]:
    """Lines describing what the runs shared: steps, sizes, evaluation, data."""

    def common(key: str) -> str:
        values = {json.dumps(run.args.get(key)) for run in runs}
        return ", ".join(sorted(_short(json.loads(v)) for v in values))

    sources = sorted({_describe_data(run.results.get("dataset") or {}) for run in runs})
    rates = [r.results["train_steps_per_second"] for r in runs if r.results.get("train_steps_per_second")]
    lines = [
        f"- Training: {common('total_steps')} gradient steps, batch {common('batch_size')}, hidden layers "
        f"{common('hidden_dims')}, torch.compile {common('compile')}.",
        f"- Evaluation: every {common('eval_every')} steps (and at step 0), {common('eval_episodes')} episodes.",
        f"- Data: {'; '.join(sources)}.",
        *timing_line(runs),
    ]
    if any(run.args.get("online_steps") for run in runs):  # fine-tuning runs: say so next to the offline steps
        balanced = common("balanced_sampling")
        lines.insert(
            1, f"- Fine-tuning online: {common('online_steps')} online steps after the offline ones, balanced "
            f"sampling {balanced}.",
        )  # fmt: skip
    reduced = []
    if any(run.args.get("total_steps", 0) < 1_000_000 for run in runs if "/" not in run.env_name):
        reduced.append("fewer gradient steps than the papers' 1M")
    if any(list(run.args.get("hidden_dims") or [512] * 4) != [512] * 4 for run in runs):
        reduced.append("smaller networks than the papers' 4 x 512")
    if any(run.args.get("eval_episodes", 50) < 50 for run in runs):
        reduced.append("fewer evaluation episodes than the papers' 50")
    if reduced:
        lines.append(f"- **Reduced scale**: {', '.join(reduced)}. Not comparable with the published numbers.")
    if rates:
        spread = f"{min(rates):.0f}" if round(min(rates)) == round(max(rates)) else f"{min(rates):.0f}-{max(rates):.0f}"
        lines.append(f"- Training speed: {spread} updates/s per run (compilation and evaluation excluded).")
    return lines


def report_title(groups: list[Group]) -> str:
    """'Results: cube-single (fan, fql, iql)': the domains and algorithms the report covers."""
    domains = ", ".join(sorted({domain_of(g.env_name) for g in groups}))
    algos = ", ".join(sorted({g.algo for g in groups}))
    return f"Results: {domains} ({algos})"


_TIMINGS = {
    "pre": "pre (OGBench >= 1.2: success is checked before the action; the FQL paper's numbers were made with "
    "OGBench 1.1, which checks it after the action, `post`: the same policy can score differently)",
    "post": "post (success checked after the action, as OGBench 1.1 and the FQL paper's numbers)",
}


def timing_line(runs: list[Run]) -> list[str]:
    """The OGBench success timing of the runs, and what it means for comparisons with the papers."""
    timings = sorted({str(run.results.get("success_timing")) for run in runs if "/" not in run.env_name})
    timings = [t for t in timings if t != "None"]
    if not timings:
        return []
    return [f"- Success timing: {'; '.join(_TIMINGS.get(t, t) for t in timings)}."]


@dataclass
class DomainRow:
    """One configuration over the tasks of a domain: the (seeds x tasks) score matrices of the seeds every task has."""

    domain: str
    algo: str
    variant: str
    tasks: list[str]
    seeds: list[Any]
    scores: dict[str, list[list[float]]]  # evaluation -> [seed][task], percent


def domain_rows(groups: list[Group]) -> list[DomainRow]:
    """Per domain and configuration (algorithm, settings), the scores of the seeds that finished on every task."""
    by_config: dict[tuple[str, str, str], list[Group]] = defaultdict(list)
    for group in groups:
        if group.finished:
            by_config[(domain_of(group.env_name), group.algo, group.variant)].append(group)
    rows = []
    for (domain, algo, variant), task_groups in sorted(by_config.items()):
        task_groups = sorted(task_groups, key=lambda g: g.env_name)
        seeds = sorted(set.intersection(*(set(g.by_seed("final")) for g in task_groups)), key=str)
        if not seeds:
            continue
        scores = {which: [[g.by_seed(which)[seed] for g in task_groups] for seed in seeds] for which in EVALUATIONS}
        rows.append(DomainRow(domain, algo, variant, [g.env_name for g in task_groups], seeds, scores))
    return rows


def mean_over_tasks(matrix: list[list[float]]) -> str:
    """Mean over tasks and seeds, +- the std over seeds of each seed's mean over tasks ('-' without scores)."""
    return mean_std([statistics.mean(row) for row in matrix])


def iqm_with_ci(matrix: list[list[float]], reps: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean of a (runs x tasks) score matrix and its 95% stratified-bootstrap confidence interval
    (runs resampled within each task), with `rliable` (Agarwal et al., "Deep RL at the Edge of the Statistical
    Precipice", NeurIPS 2021, https://arxiv.org/abs/2108.13264). Returns (iqm, low, high)."""
    import warnings

    import numpy as np
    from rliable import library, metrics

    scores = {"x": np.asarray(matrix, dtype=np.float64)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arch's note on RandomState, which rliable passes
        point, interval = library.get_interval_estimates(
            scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps, random_state=np.random.RandomState(seed)
        )
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def write_curves_csv(runs: list[Run], groups: list[Group], path: pathlib.Path) -> None:
    """Every evaluation of every run, one row each: where the run is, what it is, the step and its metrics."""
    import csv

    variant_of = {id(run): group.variant for group in groups for run in group.runs}
    columns = ["run_dir", "env_name", "domain", "algo", "settings", "seed", "status", "step", "score", "success",
               "return", "normalized_score", "episode_length", "wall_time"]  # fmt: skip
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for run in runs:
            scores = dict(run.scores())
            for row in sorted(run.evals, key=lambda e: e["step"]):
                writer.writerow(
                    [str(run.path), run.env_name, domain_of(run.env_name), run.algo, variant_of.get(id(run), ""),
                     run.args.get("seed"), run.status, row["step"], scores.get(row["step"]), row.get("success"),
                     row.get("return"), row.get("normalized_score"), row.get("episode_length"), row.get("wall_time")]
                )  # fmt: skip


def domain_table(rows: list[DomainRow], reps: int, iqm: bool) -> list[str]:
    """The per-domain table: mean over tasks and seeds of each evaluation, the IQM and its 95% CI, published."""
    lines = [
        "| algorithm | settings | tasks | seeds | final (%) | last 3 (%) | best (%) | IQM of final, 95% CI (%) "
        "| published (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not iqm:
            interval = "rliable not installed"
        elif len(row.seeds) * len(row.tasks) < 2:
            interval = "-"
        else:
            point, low, high = iqm_with_ci(row.scores["final"], reps)
            interval = f"{point:.1f} [{low:.1f}, {high:.1f}]"
        shown = published_cell(published_for_domain(row), len(row.tasks))
        lines.append(
            f"| {row.algo} | {row.variant or 'recommended'} | {len(row.tasks)} | {len(row.seeds)} "
            f"| {mean_over_tasks(row.scores['final'])} | {mean_over_tasks(row.scores['last 3'])} "
            f"| {mean_over_tasks(row.scores['best'])} | {interval} | {shown} |"
        )
    return lines


def markdown(
    groups: list[Group],
    runs: list[Run],
    sweep: dict[str, Any] | None,
    plots: dict[str, str],
    title: bool = True,
    reps: int = 10_000,
    full_report: str | None = None,
) -> str:
    """The whole report as Markdown: how it was made, which evaluations it reports, then per domain the mean over
    its tasks (with the IQM and its confidence interval), one row per task, and the curves. With `full_report` (a
    link to report.md, for a README): how it was made, the per-task tables and the curves, then that link."""
    lines = [f"# {report_title(groups)}", ""] if title else []
    heading = "##" if title else "###"  # the README has its own "## Results" above the report
    if sweep:
        invocations = sweep.get("invocations", [])
        for invocation in invocations[-1:]:
            info = invocation.get("machine", {})
            hardware = info.get("gpu") or f"{info.get('cpu')} ({info.get('cpu_cores')} cores)"
            then = "" if "--report" in invocation["command"] else ", then `python -m offrl.tools.report`"
            lines += [
                f"Made by `{invocation['command']}`{then} on {hardware}, torch {info.get('torch')} (sweep started "
                f"{invocations[0].get('time')}, last invoked {invocation.get('time')}).",
                "",
            ]
    lines += settings_summary(runs) + [""]
    try:
        import rliable  # noqa: F401

        iqm = True
    except ImportError:
        iqm = False
    ways = "; ".join(f"**{name}**, {meaning}" for name, meaning in EVALUATIONS.items())
    explained = [
        f"Scores are percent. A run's score is taken three ways: {ways}.",
        "± is the sample standard deviation over seeds (n - 1 in the denominator), as in the FQL paper's tables: a "
        "spread of the seeds, not a standard error or a confidence interval. Per domain, the first table averages "
        "over its tasks (the papers' 5-task means) and over the seeds that finished every task (± the std over "
        "seeds of their mean over tasks); its IQM is the interquartile mean of the final scores of all (seed, task) "
        f"runs, with a 95% stratified-bootstrap confidence interval ({reps:,} resamples of the runs within each "
        "task; rliable, Agarwal et al. 2021, https://arxiv.org/abs/2108.13264). Every run's curve is in `curves.csv`.",
        "",
    ]
    lines += [] if full_report else explained
    if not iqm and not full_report:
        lines += ["IQM and confidence intervals need rliable: `pip install 'offrl[report]'`.", ""]
    rows = domain_rows(groups)
    by_domain: dict[str, list[Group]] = defaultdict(list)
    for group in groups:
        by_domain[domain_of(group.env_name)].append(group)
    for domain, domain_groups in sorted(by_domain.items()):
        lines += [f"{heading} {domain}", ""]
        here = [row for row in rows if row.domain == domain]
        if here and not full_report:
            lines += domain_table(here, reps, iqm) + [""]
        lines += [
            "| task | algorithm | settings | seeds | steps | final (%) | last 3 (%) | best (%) | published (%) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for group in domain_groups:
            steps = sorted({run.scores()[-1][0] for run in group.finished})
            lines.append(
                f"| {_task_label(group.env_name)} | {group.algo} | {group.variant or 'recommended'} "
                f"| {len(group.finished)} | {', '.join(f'{s:,}' for s in steps) or '-'} | {mean_std(group.final())} "
                f"| {mean_std(group.last3())} | {mean_std(group.best())} "
                f"| {published_cell(published(group.env_name, group.algo), 1)} |"
            )
        unfinished = [run for group in domain_groups for run in group.runs if run not in group.finished]
        lines.append("")
        if unfinished:
            lines += [f"Not counted (unfinished): {', '.join(f'`{r.path}` ({r.status})' for r in unfinished)}.", ""]
        for env_name in sorted({group.env_name for group in domain_groups}):
            if env_name in plots:
                lines += [f"![learning curves on {env_name}]({plots[env_name]})", ""]
    entries = [e for g in groups for e in published(g.env_name, g.algo)] + [
        e for r in rows for e in published_for_domain(r)
    ]
    cited = [name for name in SOURCES if any(entry.source == name for entry in entries)]
    if full_report:
        lines += [
            f"Scores in percent, ± the sample std over seeds; what each column means, the mean over each domain's "
            f"tasks with its IQM, and the published numbers' sources: [the full report]({full_report}).",
        ]
    elif cited:
        lines += ["Published numbers:", ""] + [f"- {name}: {SOURCES[name]}" for name in cited] + [""]
    return "\n".join(lines).rstrip() + "\n"


def curve_figure(groups: list[Group], env_name: str):
    """A matplotlib figure of one env: each configuration's mean score over seeds against steps, shaded +- one std.
    Success rates are drawn on a 0-100 axis, whatever the scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    scores = []
    for group in (g for g in groups if g.env_name == env_name and g.finished):
        curves = [dict(run.scores()) for run in group.finished]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        means = [statistics.mean(c[s] for c in curves) for s in steps]
        stds = [statistics.stdev(c[s] for c in curves) if len(curves) > 1 else 0.0 for s in steps]
        label = f"{group.algo}" + (f" ({group.variant})" if group.variant else "") + f", {len(curves)} seeds"
        (line,) = axis.plot(steps, means, label=label)
        low = [m - s for m, s in zip(means, stds, strict=True)]
        high = [m + s for m, s in zip(means, stds, strict=True)]
        if "/" not in env_name:  # a success rate stays within [0, 100]
            low, high = [max(v, 0.0) for v in low], [min(v, 100.0) for v in high]
        axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        scores += low + high
    if "/" not in env_name:
        axis.set_ylim(-2, 102)
    elif scores and max(scores) - min(scores) < 1e-6:  # one flat line: matplotlib would zoom to +-0.04
        axis.set_ylim(min(scores) - 1, max(scores) + 1)
    axis.set_xlabel("gradient steps")
    axis.set_ylabel("success (%)" if "/" not in env_name else "normalized score")
    axis.set_title(env_name, fontsize=10)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_curves(groups: list[Group], output: pathlib.Path) -> dict[str, str]:
    """One PNG per env (`curve_figure`); returns {env name: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    for env_name in sorted({group.env_name for group in groups}):
        figure = curve_figure(groups, env_name)
        name = f"curves-{_safe(env_name)}.png"
        figure.savefig(output / name, dpi=120)
        plt.close(figure)
        files[env_name] = name
    return files


def update_readme(readme: pathlib.Path, text: str) -> None:
    """Replace what lies between the README's report markers with `text`."""
    content = readme.read_text()
    if README_BEGIN not in content or README_END not in content:
        raise SystemExit(f"error: {readme} has no '{README_BEGIN}' ... '{README_END}' section to update")
    before, rest = content.split(README_BEGIN, 1)
    _, after = rest.split(README_END, 1)
    readme.write_text(f"{before}{README_BEGIN}\n{text}{README_END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offrl.tools.report",
        description="Tables (final and best score, mean ± std over seeds, next to the published numbers) and "
        "learning curves from the results.json files of many runs.",
    )
    parser.add_argument("roots", nargs="+", help="folders to search for results.json (e.g. a sweep's --root)")
    parser.add_argument("--output", default="report", help="folder for report.md and the plots (default: report)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--readme", default=None, help="also put the report in this README, between its markers")
    parser.add_argument(
        "--bootstrap-reps", type=int, default=10_000, help="bootstrap resamples for the IQM's 95%% CI (default 10000)"
    )
    args = parser.parse_args(argv)
    if args.bootstrap_reps < 100:
        parser.error(f"--bootstrap-reps must be at least 100, got {args.bootstrap_reps}")
    missing = [root for root in args.roots if not pathlib.Path(root).is_dir()]
    if missing:
        parser.error(f"no such folder: {', '.join(missing)}")
    runs = collect_runs(args.roots)
    if not runs:
        print(f"error: no results.json under {', '.join(args.roots)}", file=sys.stderr)
        return 1
    groups = group_runs(runs)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if not args.no_plots:
        try:
            plots = plot_curves(groups, output)
        except ImportError:
            print("[report] matplotlib is not installed: no plots (pip install 'offrl[plot]')", file=sys.stderr)
    sweep = None
    sweep_files = [pathlib.Path(root) / "sweep.json" for root in args.roots]
    if len(sweep_files) == 1 and sweep_files[0].is_file():
        sweep = json.loads(sweep_files[0].read_text())
    write_curves_csv(runs, groups, output / "curves.csv")
    text = markdown(groups, runs, sweep, plots, reps=args.bootstrap_reps)
    (output / "report.md").write_text(text)
    print(text)
    print(
        f"[report] {len(runs)} runs in {len(groups)} configurations; written to {output / 'report.md'} and every "
        f"evaluation to {output / 'curves.csv'}"
    )
    if args.readme:
        readme = pathlib.Path(args.readme)
        relative = pathlib.Path(os.path.relpath(output.resolve(), readme.resolve().parent)).as_posix()
        images = {k: f"{relative}/{v}" for k, v in plots.items()}
        text = markdown(groups, runs, sweep, images, False, args.bootstrap_reps, f"{relative}/report.md")
        update_readme(readme, text)
        print(f"[report] updated {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
