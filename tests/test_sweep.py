"""offrl.tools.sweep: job lists (with the scripts' presets), and tiny sweeps run for real.

The tiny sweeps (2 algorithms x 1 env x 2 seeds, 40 steps, CPU) go through the local process path and through
submitit's local executor; a rerun must start no job, an interrupted run must be resumed, a failed one skipped.
"""

import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from offrl.args import import_script, member_args, parse_args, per_member_fields
from offrl.member_runs import MemberRuns
from offrl.tools import jobs as sweep_jobs
from offrl.tools import report, sweep
from tests.helpers import REPO_ROOT

ENV = "test/pendulum/random-v0"
TINY = ["--total-steps", "40", "--eval-every", "20", "--log-every", "20", "--save-every", "20", "--eval-episodes", "2",
        "--eval-envs", "2", "--hidden-dims", "16", "16", "--batch-size", "32", "--no-compile"]  # fmt: skip


def sweep_args(root, minari_dir, *extra: str) -> list[str]:
    return ["--algos", "iql", "fql", "--envs", ENV, "--seeds", "0", "1", "--root", str(root),
            "--dataset-dir", str(minari_dir), "--jobs", "2", *extra, "--", *TINY]  # fmt: skip


def results_of(root: pathlib.Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))}


# ---------------------------------------------------------------------------------------------------------------
# Job lists


def test_grid_is_a_cross_product_and_overrides_the_recommended_values(tmp_path):
    grid = sweep.parse_grid(["alpha=100,300", "q-agg=mean,min"])
    assert grid == [{"alpha": "100", "q_agg": "mean"}, {"alpha": "100", "q_agg": "min"},
                    {"alpha": "300", "q_agg": "mean"}, {"alpha": "300", "q_agg": "min"}]  # fmt: skip
    jobs = sweep.build_jobs(["fql"], ["puzzle-3x3-play-singletask-task4-v0"], [0, 1], grid, tmp_path, ["--lr", "1e-4"])
    assert len(jobs) == 8 and len({job.run_dir for job in jobs}) == 8
    first = jobs[0]
    assert first.run_dir == str(
        tmp_path / "puzzle-3x3-play-singletask-task4-v0" / "fql" / "alpha=100,q_agg=mean" / "seed0"
    )
    assert first.flags.count("--alpha") == 1 and first.flags[first.flags.index("--alpha") + 1] == "100"
    assert first.flags[-2:] == ["--lr", "1e-4"] and first.presets == {}  # the grid sets alpha
    # without a grid the script applies its preset alpha itself (the sweep only records it); a flag wins over it
    (plain,) = sweep.build_jobs(["fql"], ["puzzle-3x3-play-singletask-task4-v0"], [0], [{}], tmp_path, [])
    assert "--alpha" not in plain.flags and plain.presets == {"alpha": 1000.0}
    (own,) = sweep.build_jobs(["fql"], ["puzzle-3x3-play-singletask-task4-v0"], [0], [{}], tmp_path, ["--alpha", "5"])
    assert own.flags.count("--alpha") == 1 and own.flags[-2:] == ["--alpha", "5"] and own.presets == {}
    (off,) = sweep.build_jobs(["fql"], ["puzzle-3x3-play-singletask-task4-v0"], [0], [{}], tmp_path, ["--no-presets"])
    assert off.presets == {}
    with pytest.raises(ValueError, match="both"):
        sweep.build_jobs(["fql"], ["scene-play-singletask-v0"], [0], [{"alpha": "1"}], tmp_path, ["--alpha", "2"])
    for grouped in (["--seeds", "0", "1"], ["--member-values", "alpha=3,10"]):  # a job is one run directory
        with pytest.raises(ValueError, match="give the seeds to the sweep's own --seeds"):
            sweep.build_jobs(["fql"], ["scene-play-singletask-v0"], [0], [{}], tmp_path, grouped)
    for bad in (["alpha"], ["alpha="], ["alpha=1", "alpha=2"]):
        with pytest.raises(ValueError):
            sweep.parse_grid(bad)


def test_bad_sweep_input_is_explained(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--algos", "td3", "--envs", ENV])
    assert "train_td3.py is not in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(["--algos", "iql", "--envs", ENV, "--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="not-a-dataset"):
        sweep.main(["--algos", "iql", "--envs", "not-a-dataset", "--root", str(tmp_path), "--no-download"])
    assert sweep.main(["--algos", "iql", "--envs", ENV, "--root", str(tmp_path), "--grid", "alpha", "--", *TINY]) == 2


# ---------------------------------------------------------------------------------------------------------------
# Tiny sweeps, run for real


@pytest.mark.slow
def test_local_sweep_runs_every_job_then_a_rerun_starts_none(tmp_path, minari_dir, monkeypatch, capsys):
    root = tmp_path / "sweep"
    assert sweep.main(sweep_args(root, minari_dir)) == 0
    results = results_of(root)
    assert sorted(results) == [f"test-pendulum-random-v0/{a}/seed{s}" for a in ("fql", "iql") for s in (0, 1)]
    for name, result in results.items():
        assert result["status"] == "finished" and [e["step"] for e in result["evals"]] == [0, 20, 40]
        assert result["args"]["seed"] == int(name[-1]) and result["args"]["total_steps"] == 40
    record = json.loads((root / "sweep.json").read_text())
    assert len(record["jobs"]) == 4 and "offrl.tools.sweep" in record["invocations"][0]["command"]
    versions = record["invocations"][0]["versions"]
    assert versions["torch"] == torch.__version__ and {"ogbench", "gymnasium", "mujoco", "minari"} <= set(versions)
    assert "git" in record["invocations"][0]  # the scripts' commit (None outside a git checkout)

    def no_job(*args, **kwargs):
        raise AssertionError("a finished job was started again")

    monkeypatch.setattr(sweep, "run_process", no_job)
    capsys.readouterr()
    assert sweep.main(sweep_args(root, minari_dir)) == 0
    assert "4 done (of 4 jobs)" in capsys.readouterr().out
    assert results_of(root) == results

    # the report of that sweep: one row per algorithm, two seeds each, and a plot
    out = tmp_path / "report"
    assert report.main([str(root), "--output", str(out)]) == 0
    text = (out / "report.md").read_text()
    for algo in ("fql", "iql"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {ENV} | {algo} |"))
        assert "| 2 | 40 |" in row
    assert (out / f"curves-{ENV.replace('/', '-')}.png").stat().st_size > 1000


@pytest.mark.slow
def test_submitit_local_executor_runs_the_same_jobs(tmp_path, minari_dir):
    pytest.importorskip("submitit")
    root = tmp_path / "sweep"
    assert sweep.main(sweep_args(root, minari_dir, "--executor", "submitit-local", "--jobs-per-task", "2")) == 0
    results = results_of(root)
    assert len(results) == 4 and all(r["status"] == "finished" for r in results.values())
    assert len(list((root / "submitit").glob("*_result.pkl"))) == 2  # two tasks of two jobs each


@pytest.mark.slow
def test_interrupted_jobs_resume_failed_ones_are_skipped_locked_ones_left_alone(tmp_path, minari_dir, capsys):
    root = tmp_path / "sweep"
    one_algo = ["--algos", "iql", "--envs", ENV, "--seeds", "0", "1", "2", "--root", str(root),
                "--dataset-dir", str(minari_dir), "--jobs", "2", "--", *TINY]  # fmt: skip
    assert sweep.main(one_algo) == 0
    jobs = {int(p.name[-1]): p for p in (root / "test-pendulum-random-v0" / "iql").iterdir()}
    # seed 0: interrupted after its checkpoint; seed 1: failed; seed 2: being run by another sweep
    interrupted = json.loads((jobs[0] / "results.json").read_text())
    (jobs[0] / "results.json").write_text(json.dumps({**interrupted, "status": "interrupted"}))
    failed = json.loads((jobs[1] / "results.json").read_text())
    (jobs[1] / "results.json").write_text(json.dumps({**failed, "status": "failed"}))
    (jobs[2] / "results.json").write_text(json.dumps({**failed, "status": "running"}))
    with open(jobs[2] / sweep_jobs.LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        capsys.readouterr()
        assert sweep.main(one_algo) == 1  # not everything finished: one failed, one still running elsewhere
        out = capsys.readouterr().out
    assert "1 resume, 1 failed, 1 locked" in out
    assert "--resume" in (jobs[0] / "sweep.log").read_text()
    assert json.loads((jobs[0] / "results.json").read_text())["status"] == "finished"
    assert json.loads((jobs[1] / "results.json").read_text())["status"] == "failed"
    # --retry-failed keeps the failed run aside and runs the job again; seed 2 (no longer locked) resumes
    assert sweep.main(one_algo[: -len(TINY) - 1] + ["--retry-failed", "--", *TINY]) == 0
    assert all(json.loads((jobs[s] / "results.json").read_text())["status"] == "finished" for s in (1, 2))
    (kept,) = (root / ".superseded").rglob("results.json")
    assert json.loads(kept.read_text())["status"] == "failed"


def test_jobs_differing_in_seed_and_member_coefficients_are_packed_as_the_group_names_them(tmp_path):
    grid = sweep.parse_grid(["alpha=3,10", "hidden_dims=64 64"])
    env = "cube-single-play-singletask-task1-v0"
    jobs = sweep.build_jobs(["fql"], [env], [0, 1, 2], grid, tmp_path, ["--total-steps", "9"], members_per_process=4)
    groups: dict[str, list] = {}
    for job in jobs:
        groups.setdefault(job.group, []).append(job)
    base = tmp_path / env / "fql" / "hidden_dims=64-64"
    # 2 alphas x 2 seeds fill a group of 4; seed 2's two alphas make a group of 2
    assert sorted(groups) == [str(base / "group-seeds0-1__alpha=3-10"), str(base / "group-seeds2__alpha=3-10")]
    module = import_script(REPO_ROOT / "train_fql.py")
    for folder, members in groups.items():
        flags = members[0].group_flags
        assert flags[-2:] == ["--total-steps", "9"] and "--member-values" in flags
        args = parse_args(module.Args, module.PRESETS, flags).args
        planned = MemberRuns.plan(args, member_args(args, per_member_fields(module.Args)), ("alpha",), "fql")
        assert planned.folder == pathlib.Path(folder)
        assert sorted(str(m.run_dir) for m in planned) == sorted(job.run_dir for job in members)
        for job in members:  # a member's own flags are its single run's, in the same directory
            single = parse_args(module.Args, module.PRESETS, job.flags).args
            assert single.run_dir == job.run_dir and single.alpha == float(job.grid["alpha"])
    # both alphas fit in a group of 2: a group per seed
    jobs = sweep.build_jobs(["fql"], [env], [0, 1, 2], grid, tmp_path, [], members_per_process=2)
    assert sorted({pathlib.Path(j.group).name for j in jobs}) == [f"group-seeds{s}__alpha=3-10" for s in range(3)]
    # more combinations than fit: a group per alpha; a group of one stays a single job
    grid = sweep.parse_grid(["alpha=3,10,30"])
    jobs = sweep.build_jobs(["fql"], [env], [0, 1, 2], grid, tmp_path, [], members_per_process=2)
    by_seed_alpha = {(j.seed, j.grid["alpha"]): j for j in jobs}
    assert pathlib.Path(by_seed_alpha[(0, "3")].group).name == "group-seeds0-1__alpha=3"
    assert by_seed_alpha[(0, "3")].group == by_seed_alpha[(1, "3")].group != by_seed_alpha[(0, "10")].group
    assert by_seed_alpha[(2, "3")].group is None and by_seed_alpha[(2, "3")].run_dir.endswith("alpha=3/seed2")
    # a field members cannot set each their own way (hidden_dims) never varies within a group
    grid = sweep.parse_grid(["hidden_dims=8,16"])
    jobs = sweep.build_jobs(["fql"], [env], [0, 1], grid, tmp_path, [], members_per_process=4)
    assert len({job.group for job in jobs}) == 2
    assert all(len({j.grid["hidden_dims"] for j in jobs if j.group == job.group}) == 1 for job in jobs)


def test_a_group_starts_and_resumes_as_one_process_and_a_mixture_goes_on_alone(tmp_path):
    env = "cube-single-play-singletask-task1-v0"
    jobs = sweep.build_jobs(["iql"], [env], [0, 1], [{}], tmp_path, [], members_per_process=2)
    folder = jobs[0].group
    states = {job.run_dir: "new" for job in jobs}
    (process,) = sweep_jobs.processes_for(jobs, states, jobs)
    assert process.flags == jobs[0].group_flags and "--resume" not in process.flags and len(process.jobs) == 2
    pathlib.Path(folder).mkdir(parents=True)
    (pathlib.Path(folder) / "group.json").write_text("{}")
    states = {jobs[0].run_dir: "resume", jobs[1].run_dir: "failed"}  # a member stopped alone; the group resumes
    (process,) = sweep_jobs.processes_for(jobs[:1], states, jobs)
    assert process.flags[-2:] == ["--resume", folder] and process.jobs == jobs[:1]
    states = {jobs[0].run_dir: "done", jobs[1].run_dir: "new"}  # a failed member retried: alone, in its directory
    (process,) = sweep_jobs.processes_for(jobs[1:], states, jobs)
    assert process.flags == jobs[1].flags and process.folder == jobs[1].run_dir


@pytest.mark.slow
def test_a_packed_sweep_trains_groups_resumes_them_and_reruns_a_failed_member_alone(tmp_path, minari_dir, capsys):
    root = tmp_path / "sweep"
    command = ["--algos", "iql", "--envs", ENV, "--seeds", "0", "1", "2", "--root", str(root), "--dataset-dir",
               str(minari_dir), "--jobs", "2", "--members-per-process", "2", "--", *TINY]  # fmt: skip
    assert sweep.main(command) == 0
    out = capsys.readouterr().out
    assert "3 job(s) in 2 process(es), 1 of them groups of members" in out
    folder = root / "test-pendulum-random-v0" / "iql" / "group-seeds0-1"
    members = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name for p in members] == ["test-pendulum-random-v0__iql__0", "test-pendulum-random-v0__iql__1"]
    results = results_of(root)
    assert len(results) == 3 and all(r["status"] == "finished" for r in results.values())
    assert [results[str(p.relative_to(root))]["group_size"] for p in members] == [2, 2]
    assert "--seeds 0 1" in (folder / "sweep.log").read_text()
    table = report.main([str(root), "--output", str(tmp_path / "report")])
    assert table == 0 and "| 3 |" in (tmp_path / "report" / "report.md").read_text()  # three seeds, one row
    # the group interrupted (checkpoints saved): a rerun resumes it as one process
    for member in members:
        result = json.loads((member / "results.json").read_text())
        (member / "results.json").write_text(json.dumps({**result, "status": "interrupted"}))
    assert sweep.main(command) == 0
    assert "2 resume" in capsys.readouterr().out and f"--resume {folder}" in (folder / "sweep.log").read_text()
    # one member failed: --retry-failed trains it again alone, in its own directory
    result = json.loads((members[1] / "results.json").read_text())
    (members[1] / "results.json").write_text(json.dumps({**result, "status": "failed"}))
    assert sweep.main([*command[: -len(TINY) - 1], "--retry-failed", "--", *TINY]) == 0
    assert "--seed 1" in (members[1] / "sweep.log").read_text()
    assert json.loads((members[1] / "results.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_missing_ogbench_data_is_generated_once_before_the_jobs(tmp_path, capsys):
    data = tmp_path / "data"
    args = ["--algos", "iql", "--envs", "cube-single-play-singletask-task1-v0", "--seeds", "0", "1",
            "--root", str(tmp_path / "sweep"), "--dataset-dir", str(data), "--generate-episodes", "1", "--jobs", "2",
            "--", *TINY, "--eval-episodes", "1", "--eval-envs", "1", "--total-steps", "20"]  # fmt: skip
    assert sweep.main(args) == 0
    assert "dataset for cube-single-play-singletask-task1-v0" in capsys.readouterr().out
    assert sorted(p.name for p in (data / "generated").iterdir()) == [
        "cube-single-play-v0-1ep-seed0-val.npz", "cube-single-play-v0-1ep-seed0.npz"]  # fmt: skip
    for log in (tmp_path / "sweep").rglob("sweep.log"):
        assert "generating" not in log.read_text()


def test_prepare_dataset_explains_bad_requests(tmp_path):
    from offrl.datasets import DatasetError, prepare_dataset

    with pytest.raises(DatasetError, match="OGBench names only"):
        prepare_dataset("mujoco/hopper/medium-v0", tmp_path, generate_episodes=3)
    with pytest.raises(DatasetError, match="download-only"):
        prepare_dataset("antsoccer-arena-navigate-singletask-task1-v0", tmp_path, download=False)


def test_slurm_submission_without_a_cluster(tmp_path, minari_dir, monkeypatch):
    """The Slurm path up to sbatch, with stand-ins for `srun` and `sbatch` that record what they were given."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\nfor last; do :; done\ncp "$last" "$(dirname "$0")/submitted.sh"\necho "Submitted batch job 4242"\n'
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    root = tmp_path / "sweep"
    args = sweep_args(root, minari_dir, "--executor", "slurm", "--jobs-per-task", "2", "--slurm-partition", "gpu",
                      "--slurm-time", "90", "--no-wait")  # fmt: skip
    assert sweep.main(args) == 0
    script = (bin_dir / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --gpus-per-node=1", "#SBATCH --partition=gpu", "#SBATCH --time=90"):
        assert line in script
    assert not list(root.rglob("results.json"))  # submitted, nothing run here
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SystemExit, match="srun"):
        sweep.main(args)


def processes_mentioning(text: str) -> list[int]:
    """Pids of the live processes whose command line contains `text`."""
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "submitit-local"])
def test_killing_the_sweep_stops_its_jobs_and_a_rerun_resumes_them(executor, tmp_path, minari_dir):
    if executor != "local":
        pytest.importorskip("submitit")
    root = tmp_path / "sweep"
    endless = ["--total-steps", "1000000", "--eval-every", "500000", "--save-every", "500000", "--log-every", "100"]
    command = [sys.executable, "-m", "offrl.tools.sweep", "--algos", "iql", "--envs", ENV, "--seeds", "0", "1",
               "--root",
               str(root), "--dataset-dir", str(minari_dir), "--jobs", "2", "--executor", executor,
               "--jobs-per-task", "2", "--", *TINY, *endless]  # fmt: skip
    run_dirs = [root / "test-pendulum-random-v0" / "iql" / f"seed{seed}" for seed in (0, 1)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not all((d / "results.json").exists() for d in run_dirs) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # both jobs past their first evaluation, training
        assert all(sweep_jobs.is_locked(d) for d in run_dirs)  # each job holds its own run directory
        process.kill()  # SIGKILL: the sweep cannot clean up after itself
        process.wait(timeout=30)
        deadline = time.time() + 120
        while any(sweep_jobs.is_locked(d) for d in run_dirs) and time.time() < deadline:
            time.sleep(0.2)
        for run_dir in run_dirs:
            assert not sweep_jobs.is_locked(run_dir)
            assert json.loads((run_dir / "results.json").read_text())["status"] == "interrupted"
            assert (run_dir / "checkpoint.pt").is_file()
        while processes_mentioning(str(root)) and time.time() < deadline:  # the jobs' processes end too
            time.sleep(0.2)
        assert processes_mentioning(str(root)) == []  # no orphan left training
        jobs = sweep.build_jobs(["iql"], [ENV], [0, 1], [{}], root, [*TINY, *endless])
        assert [sweep.job_state(job) for job in jobs] == ["resume", "resume"]
    finally:
        for pid in processes_mentioning(str(root)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_thread_count_the_user_set_is_kept(tmp_path, minari_dir, monkeypatch):
    one_job = ["--algos", "iql", "--envs", ENV, "--dataset-dir", str(minari_dir), "--jobs", "1", "--", *TINY,
               "--total-steps", "2", "--eval-every", "2"]  # fmt: skip
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert sweep.main(["--root", str(tmp_path / "set"), *one_job]) == 0
    (result,) = results_of(tmp_path / "set").values()
    assert result["torch_threads"] == 1


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not hasattr(os, "sched_getaffinity"), reason="needs 2 cores")
def test_threads_default_to_the_cores_this_process_may_use(tmp_path, minari_dir, monkeypatch):
    """Without a user setting, a job gets cores / jobs threads, counting the cores of the sweep's CPU affinity
    (a Slurm task's share), not the machine's."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    one_job = ["--algos", "iql", "--envs", ENV, "--dataset-dir", str(minari_dir), "--jobs", "1", "--", *TINY,
               "--total-steps", "2", "--eval-every", "2"]  # fmt: skip
    assert sweep.main(["--root", str(tmp_path / "one-core"), *one_job]) == 0
    (result,) = results_of(tmp_path / "one-core").values()
    assert result["torch_threads"] == 1
    # one process to run (a job, or a group of members) gets every core even when --jobs would allow more
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    two_jobs = [*one_job[: one_job.index("--jobs")], "--jobs", "2", *one_job[one_job.index("--jobs") + 2 :]]
    assert sweep.main(["--root", str(tmp_path / "two-cores"), *two_jobs]) == 0
    (result,) = results_of(tmp_path / "two-cores").values()
    assert result["torch_threads"] == 2


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--grid", "notaflag=1"], "Unrecognized options: --notaflag"),
        (["--", "--total-step", "40"], "Perhaps you meant"),
        (["--grid", "expectile=abc"], "Error parsing --expectile"),
        (["--grid", "expectile=0.7,2"], "--expectile must be less than 1, got 2.0"),
    ],
)
def test_the_jobs_flags_are_checked_before_any_job_starts(tmp_path, capsys, flags, said):
    """A flag the scripts would refuse is one line naming the job and the reason, in --dry-run too, and nothing starts
    (today: `restart after 0.0 min` and the reason in each job's sweep.log)."""
    argv = ["--algos", "iql", "--envs", "cube-single-play-singletask-task1-v0", "--root", str(tmp_path / "root")]
    for dry_run in ([], ["--dry-run"]):
        assert sweep.main([*argv, *dry_run, *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: iql cube-single-play-singletask-task1-v0") and said in err, err
        assert "train_iql.py refuses its flags" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "root").exists()


def test_set_aside_copies_of_a_job_do_not_pile_up(tmp_path):
    root = tmp_path / "root"
    run_dir = root / "env" / "iql" / "seed0"
    for attempt in range(6):
        run_dir.mkdir(parents=True)
        (run_dir / "attempt").write_text(str(attempt))
        sweep_jobs.set_aside(run_dir, root)
    kept = sorted((root / ".superseded" / "env" / "iql").iterdir())
    assert len(kept) == sweep_jobs.SUPERSEDED_KEPT
    assert sorted(int((p / "attempt").read_text()) for p in kept) == [3, 4, 5]  # the newest


@pytest.mark.slow
def test_a_failed_job_shows_its_last_error_lines_in_the_sweeps_own_output(tmp_path, minari_dir, capsys):
    code = sweep.main(["--algos", "iql", "--envs", ENV, "--root", str(tmp_path / "root"), "--dataset-dir",
                       str(minari_dir), "--jobs", "1", "--", *TINY, "--lr", "1e12", "--no-layer-norm"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "failed after" in out
    assert "error: loss/" in out and ("became nan" in out or "became inf" in out), out
