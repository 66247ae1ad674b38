"""offrl.tools.bench: interval rates from the scripts' cumulative logs, and a tiny run of the whole benchmark."""

import json
import statistics
import subprocess
import sys

import pytest

from offrl.tools.bench import interval_rates, markdown_table, paired_table
from tests.helpers import REPO_ROOT


def run_bench(*args: str) -> subprocess.CompletedProcess:
    """`python -m offrl.tools.bench <args>` from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "offrl.tools.bench", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )


def test_interval_rates_from_cumulative_logs():
    # cumulative train seconds at steps 10, 20, 30: 9, 11, 16 -> intervals of 2 s and 5 s (logged out of order)
    assert interval_rates({20: 11.0, 10: 9.0, 30: 16.0}, 10) == pytest.approx([10 / 2.0, 10 / 5.0])


def test_markdown_table_gives_the_ratio_to_eager():
    rows = [
        {"script": "train_fql.py", "mode": "eager", "updates_per_second": 100.0, "compile_seconds": 0.1,
         "eval_seconds_per_50_episodes": 30.0},
        {"script": "train_fql.py", "mode": "compile", "updates_per_second": 450.0, "compile_seconds": 40.0,
         "eval_seconds_per_50_episodes": 31.0},
    ]  # fmt: skip
    table = markdown_table(rows)
    assert "| `train_fql.py` | compile | 450.0 | 4.50x | 40.0 | 31 |" in table


@pytest.mark.slow
def test_bench_runs_the_scripts_and_writes_the_table(ogbench_dir, tmp_path):
    output = tmp_path / "bench.json"
    result = run_bench("--scripts", "sacbc", "--modes", "eager", "compile", "--steps", "3", "--repeats", "2",
                       "--rounds", "2", "--episodes", "2", "--eval-episodes", "1", "--dataset-dir", str(ogbench_dir),
                       "--output", str(output))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| `train_sacbc.py` | compile |" in result.stdout
    report = json.loads(output.read_text())
    assert [row["mode"] for row in report["rows"]] == ["eager", "compile"]
    for row in report["rows"]:
        assert len(row["repeats"]) == 4 and row["rounds"] == 2  # two rounds of two repeats, pooled
        assert row["updates_per_second"] == statistics.median(row["repeats"]) and row["compile_seconds"] > 0
        assert row["eval_seconds_per_50_episodes"] > 0
    assert report["machine"]["torch"] and report["config"]["steps"] == 3


@pytest.mark.slow
def test_online_bench_times_the_online_phase(ogbench_dir, tmp_path):
    output = tmp_path / "bench.json"
    result = run_bench("--online", "--scripts", "iql", "--modes", "eager", "--steps", "4", "--repeats", "2",
                       "--episodes", "2", "--eval-episodes", "1", "--script-flags", "--hidden-dims 32 32",
                       "--dataset-dir", str(ogbench_dir), "--output", str(output))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "online steps (environment step + update)" in result.stdout and "online steps/s (median)" in result.stdout
    (row,) = json.loads(output.read_text())["rows"]
    assert len(row["repeats"]) == 2 and row["updates_per_second"] > 0
    run = json.loads((tmp_path / "bench.json").read_text())["config"]
    assert run["online"] is True


def test_bench_refuses_cuda_graphs_without_cuda():
    result = subprocess.run(
        [sys.executable, "-m", "offrl.tools.bench", "--device", "cpu", "--modes", "cudagraphs"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "needs a CUDA device" in result.stderr


@pytest.mark.slow
def test_profile_writes_the_operator_table_and_a_trace(ogbench_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "offrl.tools.bench", "--profile", "fql", "--modes", "eager", "--device", "cpu",
         "--steps", "2",
         "--profile-steps", "3", "--episodes", "2", "--dataset-dir", str(ogbench_dir), "--profile-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "fql-eager.txt").read_text()
    assert table.startswith("train_fql.py, eager: 3 updates profiled after 5") and "aten::addmm" in table
    assert json.loads((tmp_path / "fql-eager.trace.json").read_text())["traceEvents"]


def test_paired_table_gives_the_median_ratio_of_rounds():
    row = {"script": "train_idql.py", "mode": "compile", "updates_per_second": 12.7, "paired_ratio": 1.031,
           "paired_ratio_range": [0.916, 1.382], "rounds_faster_than_eager": 8, "repeats": [12.0] * 12,
           "compile_seconds": 2.2}  # fmt: skip
    assert "| `train_idql.py` | compile | 12.7 | 1.031x | 0.92-1.38 | 8/12 | 2.2 |" in paired_table([row])


@pytest.mark.slow
def test_paired_bench_times_the_modes_in_turns_in_one_process(ogbench_dir, tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "offrl.tools.bench", "--paired", "--scripts", "iql", "--device", "cpu", "--steps", "2",
         "--repeats", "3", "--episodes", "2", "--dataset-dir", str(ogbench_dir), "--output", str(output)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| `train_iql.py` | compile |" in result.stdout
    eager, compiled = json.loads(output.read_text())["rows"]
    assert (eager["mode"], compiled["mode"]) == ("eager", "compile")
    assert eager["paired_ratio"] == 1.0 and len(compiled["repeats"]) == 3 and compiled["compile_seconds"] > 0
    low, high = compiled["paired_ratio_range"]
    assert low <= compiled["paired_ratio"] <= high
    ratios = [c / e for c, e in zip(compiled["repeats"], eager["repeats"], strict=True)]  # rounded rates: approx
    assert compiled["paired_ratio"] == pytest.approx(statistics.median(ratios), rel=0.05)
    assert 0 <= compiled["rounds_faster_than_eager"] <= 3 and eager["rounds_faster_than_eager"] == 0


def test_paired_bench_needs_eager():
    result = subprocess.run(
        [sys.executable, "-m", "offrl.tools.bench", "--paired", "--device", "cpu", "--modes", "compile"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "include eager" in result.stderr


@pytest.mark.slow
def test_threads_bench_runs_copies_side_by_side_with_each_thread_count(ogbench_dir, tmp_path):
    output = tmp_path / "threads.json"
    result = subprocess.run(
        [sys.executable, "-m", "offrl.tools.bench", "--scripts", "iql", "--modes", "eager", "--steps", "3",
         "--repeats", "2", "--episodes", "2", "--eval-episodes", "1", "--threads", "1", "2", "--jobs", "2",
         "--script-flags", "--hidden-dims 16 16 --batch-size 32", "--dataset-dir", str(ogbench_dir),
         "--output", str(output)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| `train_iql.py` | eager | 2 | 2 |" in result.stdout
    report = json.loads(output.read_text())
    assert [(row["jobs"], row["threads"]) for row in report["rows"]] == [(2, 1), (2, 2)]
    for row in report["rows"]:
        assert len(row["repeats"]) == 4  # two copies of two repeats
        assert row["total_updates_per_second"] > row["updates_per_second"] > 0


def test_bench_members_times_groups_against_one_member(ogbench_dir, tmp_path):
    from offrl.tools import bench_members

    output = tmp_path / "members.json"
    argv = ["--widths", "2x16", "--members", "1", "2", "--modes", "eager", "--steps", "2", "--repeats", "2",
            "--episodes", "2", "--dataset-dir", str(ogbench_dir), "--output", str(output)]  # fmt: skip
    assert bench_members.main(argv) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [(row["members"], row["width"], row["mode"]) for row in rows] == [
        (1, "2 x 16", "eager"),
        (2, "2 x 16", "eager"),
    ]
    assert rows[0]["ratio_to_one"] == 1.0 and rows[1]["member_updates_per_second"] > 0 and len(rows[1]["rounds"]) == 2
    with pytest.raises(SystemExit):
        bench_members.main(["--members", "2", "4"])  # every ratio is to a single run: K = 1 first
