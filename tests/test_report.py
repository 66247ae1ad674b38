"""offrl.tools.report on hand-made results.json files: grouping, final/best mean +- std, published numbers, README
update."""

import json
import statistics

import numpy as np
import pytest

from offrl.tools import report

TASK1 = "cube-single-play-singletask-task1-v0"


def write_run(root, name, algo, env_name, seed, successes, status="finished", **args):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    evals = [{"step": 1000 * i, "success": s, "return": None, "normalized_score": None, "episode_length": 200,
              "wall_time": float(i)} for i, s in enumerate(successes)]  # fmt: skip
    results = {"algo": algo, "env_name": env_name, "status": status, "evals": evals,
               "args": {"seed": seed, "total_steps": 1000 * (len(successes) - 1), "alpha": 300.0, **args},
               "dataset": {"source": "generated", "path": "/data/x-1000ep-seed0.npz"},
               "train_steps_per_second": 100.0, "success_timing": "pre"}  # fmt: skip
    (run_dir / "results.json").write_text(json.dumps(results))


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "fql0", "fql", TASK1, 0, [0.0, 0.8, 0.6])
    write_run(root, "fql1", "fql", TASK1, 1, [0.0, 0.5, 0.9])
    write_run(root, "fql2", "fql", TASK1, 2, [0.0, 0.2], status="interrupted", total_steps=2000)  # not counted
    write_run(root, "iql-a10", "iql", TASK1, 0, [0.1, 0.4], alpha=10.0)
    write_run(root, "iql-a30", "iql", TASK1, 0, [0.1, 0.3], alpha=30.0)
    write_run(root, ".superseded/old", "iql", TASK1, 0, [1.0, 1.0], alpha=10.0)  # skipped: hidden folder
    write_run(root, "scene", "fql", "scene-play-singletask-task2-v0", 0, [0.0, 0.25])
    return root


def row(text: str, task: str, algo: str, settings: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:3] == [task, algo, settings]:
            return cells
    raise AssertionError(f"no row {task} {algo} {settings} in\n{text}")


def test_report_table_values(runs_root, tmp_path):
    out = tmp_path / "out"
    assert report.main([str(runs_root), "--output", str(out)]) == 0
    text = (out / "report.md").read_text()
    fql = row(text, "task1", "fql", "recommended")
    # finals 60 and 90; last three 46.7 and 46.7; bests 80 and 90 (percent); the interrupted seed is left out
    assert fql[3:8] == [
        "2",
        "2,000",
        f"75.0 ± {statistics.stdev([60, 90]):.1f}",
        "46.7 ± 0.0",
        f"85.0 ± {statistics.stdev([80, 90]):.1f}",
    ]
    # this task's published results, each read against the column it names; not the domain's 5-task mean
    assert fql[8] == "97 ± 2, last 3 (FQL paper Table 3); 100, final (Ogata's post, alpha 300, 1 run)"
    assert "still to be checked" not in text
    assert '- Ogata\'s post: M. Ogata, "Offline RL: SAC+BC, IQL, and Flow Q-Learning"' in text
    # IQL's two alphas are two configurations; the superseded run does not count
    assert row(text, "task1", "iql", "alpha=10.0")[3:8] == ["1", "1,000", "40.0", "25.0", "40.0"]
    assert row(text, "task1", "iql", "alpha=30.0")[3:8] == ["1", "1,000", "30.0", "20.0", "30.0"]
    assert "\n## cube-single\n" in text and "\n## scene\n" in text
    assert row(text, "task2", "fql", "recommended")[5] == "25.0"
    for which in ("**final**, each run's last evaluation", "**last 3**, the mean of each run's last three", "**best**"):
        assert which in text  # the report says which evaluation each column is
    assert "fql2" in text and "(interrupted)" in text
    assert "**Reduced scale**: fewer gradient steps than the papers' 1M. Not comparable" in text
    assert (out / f"curves-{TASK1}.png").is_file()


def test_mean_std_and_published():
    assert report.mean_std([]) == "-"
    assert report.mean_std([50.0]) == "50.0"
    assert report.mean_std([40.0, 60.0]) == "50.0 ± 14.1"
    entries = report.published("puzzle-3x3-play-singletask-task4-v0", "fql")
    assert report.published_cell(entries, 1) == "16 ± 5, last 3 (FQL paper Table 3)"
    assert report.published_cell(report.published("puzzle-3x3-play-singletask-task4-v0", "sacbc"), 1) == "-"
    assert report.published("puzzle-3x3-play-singletask-task4-v0", "fan") == []  # only a 5-task mean is published


def test_readme_section_is_replaced(runs_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{report.README_BEGIN}\nold table\n{report.README_END}\nafter\n")
    out = tmp_path / "docs" / "results"
    assert report.main([str(runs_root), "--output", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title\n\nbefore\n") and text.endswith("after\n")
    assert f"(docs/results/curves-{TASK1}.png)" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers|offrl.report: begin"):
        report.main([str(runs_root), "--output", str(out), "--readme", str(readme)])


def test_nothing_to_report(tmp_path, capsys):
    assert report.main([str(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert "no results.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "missing")])


def domain_row(text: str, domain: str, algo: str) -> list[str]:
    """The row of `algo` in the mean-over-tasks table under `### domain`."""
    section = text.split(f"\n## {domain}\n", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [algo, "recommended"] and cells[2].isdigit():
            return cells
    raise AssertionError(f"no {algo} row under {domain} in\n{text}")


def test_domain_means_and_an_iqm_whose_interval_is_known(tmp_path):
    """Two tasks, two seeds: task1's finals are 0 and 100, task2's 50 and 50. Resampling the runs within each task
    gives task1 (0, 0), (0, 100), (100, 0) or (100, 100) with task2 fixed, so the bootstrap IQM is 25, 50, 50 or 75:
    the 95% interval is [25, 75] and the IQM of {0, 100, 50, 50} is 50."""
    root = tmp_path / "runs"
    for seed, (first, second) in enumerate([(0.0, 0.5), (1.0, 0.5)]):
        write_run(root, f"t1-{seed}", "fql", "puzzle-3x3-play-singletask-task1-v0", seed, [0.0, 0.2, 0.4, first])
        write_run(root, f"t2-{seed}", "fql", "puzzle-3x3-play-singletask-task2-v0", seed, [0.0, 0.2, 0.4, second])
    # seed 9 has no task1: it is in task2's row, not in the mean over tasks
    write_run(root, "t2-9", "fql", "puzzle-3x3-play-singletask-task2-v0", 9, [0.0, 1.0], total_steps=3000)
    out = tmp_path / "out"
    assert report.main([str(root), "--output", str(out), "--no-plots", "--bootstrap-reps", "4000"]) == 0
    text = (out / "report.md").read_text()
    cells = domain_row(text, "puzzle-3x3", "fql")
    # seed means over the tasks: 25 and 75; last three: (20+40+0)/3 and (20+40+50)/3 -> 15, (20+40+100)/3, ...
    assert cells[2:5] == ["2", "2", f"50.0 ± {statistics.stdev([25, 75]):.1f}"]
    last3 = [statistics.mean([(20 + 40 + 0) / 3, (20 + 40 + 50) / 3]), statistics.mean([(20 + 40 + 100) / 3, 110 / 3])]
    assert cells[5] == report.mean_std(last3)
    assert cells[7] == "50.0 [25.0, 75.0]"
    # two of puzzle-3x3's five tasks: the published 5-task mean is not set beside them as if it were comparable
    assert cells[8] == "not comparable: 2 of the 5 tasks here; 5-task mean 30 ± 1, last 3 (FQL paper Table 2)"


def test_the_iqm_agrees_with_a_stratified_bootstrap_written_out(tmp_path):
    rng = np.random.default_rng(0)
    finals = rng.uniform(0, 1, size=(4, 5)).round(2)  # 4 seeds x 5 tasks
    root = tmp_path / "runs"
    for seed in range(4):
        for task in range(5):
            env = f"cube-double-play-singletask-task{task + 1}-v0"
            write_run(root, f"{seed}-{task}", "fql", env, seed, [0.0, float(finals[seed, task])])
    point, low, high = report.iqm_with_ci((100 * finals).tolist(), reps=20_000)
    flat = np.sort(100 * finals.ravel())
    assert point == pytest.approx(flat[5:15].mean())  # 20 runs: the middle 10
    # the same interval by hand: resample the 4 seeds within each task, IQM of the 20, 2.5 and 97.5 percentiles
    picks = rng.integers(0, 4, size=(20_000, 4, 5))
    resampled = np.take_along_axis(np.broadcast_to(100 * finals, (20_000, 4, 5)), picks, axis=1).reshape(20_000, 20)
    iqms = np.sort(resampled, axis=1)[:, 5:15].mean(axis=1)
    assert low == pytest.approx(np.percentile(iqms, 2.5), abs=1.0)
    assert high == pytest.approx(np.percentile(iqms, 97.5), abs=1.0)
    out = tmp_path / "out"
    assert report.main([str(root), "--output", str(out), "--no-plots", "--bootstrap-reps", "20000"]) == 0
    cells = domain_row((out / "report.md").read_text(), "cube-double", "fql")
    assert cells[2:4] == ["5", "4"] and cells[7].startswith(f"{point:.1f} [")
    assert cells[8] == "29 ± 2, last 3 (FQL paper Table 2)"  # all five tasks: the published mean compares


def test_every_evaluation_of_every_run_is_in_the_csv(runs_root, tmp_path):
    import csv

    out = tmp_path / "out"
    assert report.main([str(runs_root), "--output", str(out), "--no-plots"]) == 0
    with (out / "curves.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 + 3 + 2 + 2 + 2 + 2  # every visible run's evaluations, the interrupted one's too
    fql0 = [r for r in rows if r["run_dir"].endswith("fql0")]
    assert [(r["step"], r["score"], r["success"]) for r in fql0] == [("0", "0.0", "0.0"), ("1000", "80.0", "0.8"),
                                                                       ("2000", "60.0", "0.6")]  # fmt: skip
    assert {r["settings"] for r in rows if r["algo"] == "iql"} == {"alpha=10.0", "alpha=30.0"}
    assert fql0[0]["domain"] == "cube-single" and fql0[0]["seed"] == "0"


def test_fine_tuning_runs_are_described_as_such(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "o2o", "fql", TASK1, 0, [0.0, 0.5, 0.9], online_steps=1000, balanced_sampling=True)
    out = tmp_path / "out"
    assert report.main([str(root), "--output", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "- Fine-tuning online: 1000 online steps after the offline ones, balanced sampling True." in text


def test_a_report_has_a_title_and_says_what_its_numbers_mean(runs_root, tmp_path):
    out = tmp_path / "out"
    readme = tmp_path / "README.md"
    readme.write_text(f"## Results\n{report.README_BEGIN}\n{report.README_END}\n")
    assert report.main([str(runs_root), "--output", str(out), "--no-plots", "--readme", str(readme)]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# Results: cube-single, scene (fql, iql)\n") and "\n## cube-single\n" in text
    assert "± is the sample standard deviation over seeds (n - 1 in the denominator)" in text
    assert "not a standard error or a confidence interval" in text
    assert "- Success timing: pre (OGBench >= 1.2: success is checked before the action" in text
    assert "FQL paper's numbers were made with OGBench 1.1" in text
    in_readme = readme.read_text()
    assert "# Results:" not in in_readme and "\n### cube-single\n" in in_readme  # under the README's own heading
    assert "[the full report](out/report.md)" in in_readme and "IQM of final" not in in_readme  # a README stays short


def test_success_is_drawn_on_a_0_to_100_axis_even_when_every_score_is_0(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    root = tmp_path / "runs"
    write_run(root, "zero0", "sacbc", TASK1, 0, [0.0, 0.0, 0.0])
    write_run(root, "zero1", "sacbc", TASK1, 1, [0.0, 0.0, 0.0])
    figure = report.curve_figure(report.group_runs(report.collect_runs([root])), TASK1)
    low, high = figure.axes[0].get_ylim()
    plt.close(figure)
    assert low <= 0 and high >= 100  # not matplotlib's -0.04 to 0.04 around a flat line
