"""offrl.report on hand-made results.json files: grouping, final/best mean +- std, published numbers, README update."""

import json
import statistics

import pytest

from offrl import report

TASK1 = "cube-single-play-singletask-task1-v0"


def write_run(root, name, algo, env_name, seed, successes, status="finished", **args):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    evals = [{"step": 1000 * i, "success": s, "return": None, "normalized_score": None, "episode_length": 200,
              "wall_time": float(i)} for i, s in enumerate(successes)]  # fmt: skip
    results = {"algo": algo, "env_name": env_name, "status": status, "evals": evals,
               "args": {"seed": seed, "total_steps": 1000 * (len(successes) - 1), "alpha": 300.0, **args},
               "dataset": {"source": "generated", "path": "/data/x-1000ep-seed0.npz"},
               "train_steps_per_second": 100.0}  # fmt: skip
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
    # finals 60 and 90; bests 80 and 90 (percent); the interrupted seed is left out
    assert fql[3:7] == [
        "2",
        "2,000",
        f"75.0 ± {statistics.stdev([60, 90]):.1f}",
        f"85.0 ± {statistics.stdev([80, 90]):.1f}",
    ]
    assert "100 final (this task, Ogata's post)" in fql[7] and "96 (FQL paper" in fql[7]
    assert '- Ogata\'s post: M. Ogata, "Offline RL: SAC+BC, IQL, and Flow Q-Learning"' in text
    # IQL's two alphas are two configurations; the superseded run does not count
    assert row(text, "task1", "iql", "alpha=10.0")[3:7] == ["1", "1,000", "40.0", "40.0"]
    assert row(text, "task1", "iql", "alpha=30.0")[3:7] == ["1", "1,000", "30.0", "30.0"]
    assert "### cube-single" in text and "### scene" in text
    assert row(text, "task2", "fql", "recommended")[5] == "25.0"
    assert "fql2" in text and "(interrupted)" in text
    assert "**Reduced scale**: fewer gradient steps than the papers' 1M. Not comparable" in text
    assert (out / f"curves-{TASK1}.png").is_file()


def test_mean_std_and_published():
    assert report.mean_std([]) == "-"
    assert report.mean_std([50.0]) == "50.0"
    assert report.mean_std([40.0, 60.0]) == "50.0 ± 14.1"
    assert report.published("puzzle-3x3-play-singletask-task4-v0", "fan") == "100 (FAN paper, 5-task mean)"
    assert report.published("puzzle-3x3-play-singletask-task4-v0", "sacbc") == "-"


def test_readme_section_is_replaced(runs_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{report.README_BEGIN}\nold table\n{report.README_END}\nafter\n")
    out = tmp_path / "docs" / "results"
    assert report.main([str(runs_root), "--output", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title\n\nbefore\n") and text.endswith("after\n")
    assert f"(docs/results/curves-{TASK1}.png)" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers|offrl.report"):
        report.main([str(runs_root), "--output", str(out), "--readme", str(readme)])


def test_nothing_to_report(tmp_path, capsys):
    assert report.main([str(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert "no results.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "missing")])
