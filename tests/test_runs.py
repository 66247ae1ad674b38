"""The run bookkeeping every script shares (`offrl.run.Run`), driven through a script as a user runs it.

Resume in the directory given, what a resume may change, one run per directory, TensorBoard after a resume, stale
checkpoint temporaries, the throughput of a run stopped early, signals before training, the NaN message, and
one-line errors for an unwritable run directory, a full disk and empty layer widths. Most use train_iql.py, the
fastest script; the bookkeeping is the same for all five.
"""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers import REPO_ROOT, collect_minari, run_script

TINY = ["--hidden-dims", "16", "16", "--batch-size", "32", "--eval-episodes", "2", "--eval-envs", "2", "--no-compile"]


def pendulum(minari_dir, *args: str) -> list[str]:
    return ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), *TINY, *args]


def ten_then(minari_dir, run_dir, *args: str) -> list[str]:
    """A 10-step run (evaluation, checkpoint at 10, logs every 5) into `run_dir`; returns the flags to continue it."""
    common = pendulum(minari_dir, "--eval-every", "10", "--log-every", "5", "--save-every", "10", *args)
    run_script("train_iql.py", *common, "--total-steps", "10", "--run-dir", str(run_dir))
    return common


def results(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def tensorboard_scalars(run_dir) -> dict[str, list[int]]:
    """The steps of each scalar as TensorBoard shows them: one reader over the whole directory, which honours the
    purge markers a resumed run writes (events of the interrupted process after the resumed step are dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: [e.step for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def assert_one_line_error(result, *phrases: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


@pytest.mark.slow
def test_resume_continues_in_the_directory_given(minari_dir, tmp_path):
    first, moved = tmp_path / "first", tmp_path / "moved"
    common = ten_then(minari_dir, first)
    shutil.move(first, moved)  # a copied or moved run (or a relative run dir resumed from elsewhere)
    run_script("train_iql.py", *common, "--total-steps", "20", "--resume", str(moved))
    assert not first.exists()
    assert results(moved)["status"] == "finished" and [e["step"] for e in results(moved)["evals"]] == [0, 10, 20]


@pytest.mark.slow
def test_a_resume_keeps_the_run_identity_and_records_other_changes(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ten_then(minari_dir, run_dir)
    before = (run_dir / "results.json").read_bytes()
    for flags in (["--seed", "1"], ["--env-name", "test/other-v0"], ["--hidden-dims", "32", "32"]):
        result = run_script("train_iql.py", *common, *flags, "--resume", str(run_dir), check=False)
        assert_one_line_error(result, "error:", "a resumed run keeps its", flags[0])
        assert (run_dir / "results.json").read_bytes() == before  # nothing written
    # only --resume: the run's own settings continue it (here to its end, nothing left to do)
    assert run_script("train_iql.py", "--resume", str(run_dir)).returncode == 0
    result = run_script("train_iql.py", *common, "--lr", "1e-4", "--total-steps", "20", "--resume", str(run_dir))
    assert "warning" in result.stderr and "--lr 0.0003 -> 0.0001" in result.stderr
    done = results(run_dir)
    assert done["status"] == "finished" and done["args"]["lr"] == 1e-4
    first, last = done["segments"][0], done["segments"][-1]
    assert (first["start_step"], first["changed"]) == (0, {})
    assert (last["start_step"], last["changed"]) == (10, {"lr": [3e-4, 1e-4], "total_steps": [10, 20]})
    assert last["versions"]["torch"] == torch.__version__  # each process that trained says what it ran with


@pytest.mark.slow
def test_a_run_directory_holds_one_run(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ten_then(minari_dir, run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    result = run_script("train_iql.py", *common, "--total-steps", "10", "--run-dir", str(run_dir), check=False)
    assert_one_line_error(result, "already holds a run (finished)", "pick another --run-dir")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    # a run in progress: a second process into its directory stops at once
    busy = tmp_path / "busy"
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train_iql.py"), *pendulum(minari_dir), "--total-steps", "1000000",
         "--eval-every", "500000", "--log-every", "100", "--save-every", "50", "--run-dir", str(busy)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (busy / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        for flags in ([], ["--resume", str(busy)]):
            second = run_script("train_iql.py", *pendulum(minari_dir), "--run-dir", str(busy), *flags, check=False)
            assert_one_line_error(second, "holds a run in progress")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    assert results(busy)["status"] == "interrupted"


@pytest.mark.slow
def test_tensorboard_keeps_the_checkpoint_steps_points_after_a_resume(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ten_then(minari_dir, run_dir)
    run_script("train_iql.py", *common, "--total-steps", "20", "--resume", str(run_dir))
    scalars = tensorboard_scalars(run_dir)
    assert scalars["loss/critic"] == [5, 10, 15, 20]
    assert scalars["eval/return"] == [0, 10, 20]


@pytest.mark.slow
def test_stale_checkpoint_temporaries_are_cleaned_on_the_next_save(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ten_then(minari_dir, run_dir)
    stale = run_dir / ".checkpoint.pt.k1ll3d.tmp"  # what a save killed half-way leaves
    stale.write_bytes(b"partial")
    run_script("train_iql.py", *common, "--total-steps", "20", "--resume", str(run_dir))
    assert not list(run_dir.glob(".checkpoint.pt.*.tmp"))


def start(script_args: list[str], script: str = "train_iql.py") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO_ROOT / script), *script_args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(process: subprocess.Popen, path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert path.exists(), process.communicate(timeout=60)


@pytest.mark.slow
def test_throughput_of_a_run_stopped_before_its_first_log(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    process = start(pendulum(minari_dir, "--total-steps", "1000000", "--eval-every", "500000", "--log-every",
                             "500000", "--save-every", "500000", "--run-dir", str(run_dir)))  # fmt: skip
    wait_for(process, run_dir / "results.json")
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    done = results(run_dir)
    assert done["status"] == "interrupted" and done["final_step"] > 10
    # tiny networks on a CPU: tens to a few thousand updates per second, never 1e12
    assert 1.0 < done["train_steps_per_second"] < 1e5, done["train_steps_per_second"]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_first_evaluation_exits_cleanly(minari_dir, tmp_path, signum):
    run_dir = tmp_path / "run"
    process = start(pendulum(minari_dir, "--eval-episodes", "100000", "--eval-envs", "1", "--run-dir", str(run_dir)))
    wait_for(process, run_dir / "results.json")  # written as the run starts, before the step-0 evaluation
    time.sleep(1.0)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, (stdout, stderr)
    assert "Traceback" not in stderr and "interrupted during the evaluation at step 0" in stdout
    assert not (run_dir / "results.json").exists()  # nothing trained, nothing kept: the same command starts again


@pytest.mark.slow
def test_a_signal_during_data_generation_exits_cleanly(tmp_path):
    process = start(["--dataset-dir", str(tmp_path / "data"), "--generate-episodes", "500", "--run-dir",
                     str(tmp_path / "run"), *TINY])  # fmt: skip
    deadline = time.time() + 60
    while not list((tmp_path / "data").rglob("*")) and time.time() < deadline:  # the generated/ folder appears
        time.sleep(0.1)
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, (stdout, stderr)
    assert "Traceback" not in stderr and "interrupted while loading the dataset" in stderr
    assert not list((tmp_path / "data").rglob("*.npz"))  # no half-written dataset


@pytest.mark.slow
def test_the_nan_message_claims_a_checkpoint_only_when_there_is_one(minari_dir, tmp_path):
    flags = ["--total-steps", "200", "--eval-every", "1000", "--log-every", "10", "--save-every", "1000", "--lr",
             "1e12", "--no-layer-norm"]  # fmt: skip
    result = run_script("train_iql.py", *pendulum(minari_dir, *flags, "--run-dir", str(tmp_path / "a")), check=False)
    assert_one_line_error(result, "between steps", "no checkpoint had been saved yet")
    assert "checkpoint saved before it is kept" not in result.stderr
    # with a checkpoint at step 10, the same blow-up after a resume keeps it
    run_dir = tmp_path / "b"
    common = ten_then(minari_dir, run_dir, "--no-layer-norm")
    result = run_script("train_iql.py", *common, "--total-steps", "200", "--lr", "1e12", "--save-every", "1000",
                        "--log-every", "10", "--resume", str(run_dir), check=False)  # fmt: skip
    assert_one_line_error(result, "between steps", "the checkpoint of step 10 is kept")
    import torch

    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 10
    assert results(run_dir)["status"] == "failed"


def test_an_unwritable_run_directory_is_one_line(minari_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_script("train_iql.py", *pendulum(minari_dir, "--run-dir", str(blocker / "run")), check=False)
    assert_one_line_error(result, "cannot write to the run directory")


def test_empty_hidden_dims_is_one_line(minari_dir, tmp_path):
    result = run_script("train_iql.py", *pendulum(minari_dir, "--hidden-dims", "--run-dir", str(tmp_path)), check=False)
    assert_one_line_error(result, "--hidden-dims needs one or more values")


FULL_DISK = """
import errno, runpy, sys, torch
saves = [0]
def save(*args, **kwargs):
    saves[0] += 1
    raise OSError(errno.ENOSPC, "No space left on device")
torch.save = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_full_disk_while_saving_is_one_line_and_not_left_running(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(REPO_ROOT / "train_iql.py"),
         *pendulum(minari_dir, "--total-steps", "10", "--eval-every", "10", "--run-dir", str(run_dir))],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert_one_line_error(result, "No space left on device")
    assert results(run_dir)["status"] == "failed"


@pytest.mark.slow
def test_run_files_respect_the_umask(minari_dir, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        ten_then(minari_dir, tmp_path / "run")
    finally:
        os.umask(previous)
    for name in ("results.json", "checkpoint.pt"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name  # not the temporary file's 0600


@pytest.mark.slow
def test_a_headless_run_prints_only_what_concerns_the_user(ogbench_dir, minari_dir, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    common = [*TINY, "--total-steps", "4", "--eval-every", "2", "--log-every", "2"]
    runs = {
        "ogbench": ["--dataset-dir", str(ogbench_dir), "--generate-episodes", "2"],
        "minari": ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir)],
    }
    for family, flags in runs.items():
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "train_iql.py"), *common, *flags, "--run-dir", str(tmp_path / family)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "GLFWError" not in result.stderr and "DISPLAY" not in result.stderr, result.stderr
        assert "precision lowered" not in result.stderr, result.stderr
        # a log names the score it shows: a success rate, or a normalized score (never a raw return called "score")
        assert ("step 4: success " if family == "ogbench" else "step 4: normalized ") in result.stdout
        assert "\r" not in result.stdout  # lines, not a progress bar's redraws


@pytest.mark.slow
def test_the_compiled_fql_update_draws_independent_noises(tmp_path, monkeypatch):
    """train_fql.py's update draws three Gaussian noises (the next action's, the flow's source x0 and the policy's z).
    A copy of the script that also reports whether they are equal is compiled: each must be a fresh draw."""
    import importlib

    import torch

    from offrl.compile import compiled
    from tests.helpers import random_data

    source = (REPO_ROOT / "train_fql.py").read_text()
    inline = 'nets["actor"](torch.cat([next_obs, torch.randn_like(actions)], -1))'
    assert inline in source and '"actor/mse": ' in source
    source = source.replace(inline, 'nets["actor"](torch.cat([next_obs, next_noise], -1))')
    source = source.replace(
        "    with torch.no_grad():\n        next_actions",
        "    with torch.no_grad():\n        next_noise = torch.randn_like(actions)\n        next_actions",
        1,
    )
    source = source.replace(
        '"actor/mse": ',
        '"same/x0_next": (x0 == next_noise).float().mean(), "same/z_x0": (noise == x0).float().mean(), "actor/mse": ',
    )
    (tmp_path / "train_fql_noises.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("train_fql_noises")
    torch.manual_seed(0)
    agent = module.build(module.Args(hidden_dims=(16, 16), batch_size=8), random_data(5, 3, 64), torch.device("cpu"))
    metrics = compiled(agent.update, True, False, torch.device("cpu"))()
    assert metrics["same/x0_next"].item() == 0.0 and metrics["same/z_x0"].item() == 0.0


@pytest.mark.slow
def test_results_say_what_produced_them(ogbench_dir, tmp_path):
    """Versions of the libraries that decide a result, the project's git commit, and OGBench's success timing."""
    from importlib import metadata

    import ogbench  # noqa: F401

    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    common = ["--dataset-dir", str(ogbench_dir), "--generate-episodes", "2", *TINY, "--total-steps", "2"]
    run_script("train_iql.py", *common, "--run-dir", str(tmp_path / "default"))
    run_script("train_iql.py", *common, "--success-timing", "post", "--run-dir", str(tmp_path / "post"))
    default, post = results(tmp_path / "default"), results(tmp_path / "post")
    for name in ("torch", "ogbench", "gymnasium", "mujoco", "minari"):
        assert default["versions"][name] == metadata.version(name)
    if commit.returncode == 0:  # a git checkout (the tests also run from an unpacked source tree)
        assert default["git"]["commit"] == commit.stdout.strip()
    assert default["script"] == str(REPO_ROOT / "train_iql.py")
    assert default["success_timing"] == "pre" and post["success_timing"] == "post"  # ogbench >= 1.2's default: pre
    assert post["args"]["success_timing"] == "post" and default["args"]["success_timing"] is None


def test_success_timing_reaches_the_evaluation_environment(ogbench_dir):
    from offrl.datasets import DatasetError, load_dataset

    name = "cube-single-play-singletask-task1-v0"
    for timing in ("pre", "post"):
        data = load_dataset(name, dataset_dir=ogbench_dir, generate_episodes=2, success_timing=timing)
        env = data.make_env()
        assert env.unwrapped._success_timing == timing and data.metadata["success_timing"] == timing
        env.close()
    with pytest.raises(DatasetError, match="success_timing apply to OGBench names only"):
        load_dataset("test/pendulum/random-v0", success_timing="post")


@pytest.mark.slow
def test_a_d4rl_name_trains_on_its_minari_dataset_with_its_presets(tmp_path):
    collect_minari(tmp_path / "minari", "mujoco/hopper/medium-v0", "Hopper-v5", 4, max_episode_steps=20)
    common = ["--dataset-dir", str(tmp_path / "minari"), *TINY, "--total-steps", "2"]
    result = run_script("train_iql.py", "--env-name", "hopper-medium-v2", *common, "--run-dir", str(tmp_path / "run"))
    line = "[iql] D4RL name hopper-medium-v2 -> Minari dataset mujoco/hopper/medium-v0 ("
    assert result.stdout.count(line) == 1 and "differ from D4RL's" in result.stdout
    done = results(tmp_path / "run")
    assert done["env_name"] == "mujoco/hopper/medium-v0" and done["d4rl_name"] == "hopper-medium-v2"
    assert done["presets_applied"]["expectile"]["value"] == 0.7  # the Minari id's (D4RL locomotion) presets
    refused = run_script("train_iql.py", "--env-name", "hopper-medium-replay-v2", *common, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "has no Minari port, nor does anything stand in for it: for hopper" in refused.stderr


def test_a_signal_delivered_twice_is_one_stop_and_a_second_ctrl_c_stops_at_once(monkeypatch):
    """A dying sweep's SIGTERM can reach its jobs twice within milliseconds: that must still save a checkpoint. A
    different second signal (a Ctrl-C after SIGTERM), or the same one later, gives up at once."""
    import os

    from offrl import stopping

    with stopping.StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the same request again
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(stopping, "DUPLICATE_SIGNAL_SECONDS", 0.0)
    with stopping.StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the same signal, but not within the window: a second request


def test_a_signal_that_a_library_turns_into_its_own_error_is_still_an_interruption():
    """SIGTERM while MuJoCo parsed a model for the step-0 evaluation came out as MuJoCo's `ValueError` (its parser
    turned the `Interrupted` raised inside it into its own error): a traceback and a `failed` run. Whatever a library
    makes of the interruption, or if it swallows it, the block ends in `Interrupted`."""
    import os

    from offrl import stopping

    def parse_a_model(swallow: bool) -> None:  # a library that converts or swallows what is raised inside it
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except BaseException as error:
            if not swallow:
                raise ValueError(f"Line 72: error while parsing element <geom>: {error!r} is not valid") from None

    for swallow in (False, True):
        with stopping.StopRequest() as stop:
            with pytest.raises(stopping.Interrupted) as interrupted, stop.at_once():
                parse_a_model(swallow)
            assert interrupted.value.signal == signal.SIGTERM and stop.signal == signal.SIGTERM


def file_size_limit(limit_bytes: int):
    """A `preexec_fn` that makes writes past `limit_bytes` fail (EFBIG, "File too large") as a full disk makes them
    fail (ENOSPC): the process ignores SIGXFSZ, so the write returns the error instead of killing it."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_for_a_checkpoint_and_for_a_generated_dataset(minari_dir, tmp_path):
    """Not a stand-in for torch.save: the real writers onto a file system that refuses the bytes. torch's own
    checkpoint writer reported it as a 35-line `RuntimeError: [enforce fail at inline_container.cc...]`, the dataset
    generator as an `OSError` traceback. Now: one line, and nothing half-written left."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train_iql.py"), "--env-name", "test/pendulum/random-v0", "--dataset-dir",
         str(minari_dir), "--no-compile", "--hidden-dims", "256", "256", "--total-steps", "4", "--eval-every", "4",
         "--eval-episodes", "1", "--eval-envs", "1", "--run-dir", str(run_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, preexec_fn=file_size_limit(1_000_000),
    )  # fmt: skip
    assert_one_line_error(result, "error: writing the run failed at step 4", "File too large")
    assert results(run_dir)["status"] == "failed"
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith((".checkpoint", "checkpoint"))]

    data_dir = tmp_path / "data"
    generated = subprocess.run(
        [sys.executable, "-m", "offrl.generate", "cube-single-play-v0", "--num-episodes", "2", "--max-episode-steps",
         "50", "--workers", "1", "--no-progress", "--dataset-dir", str(data_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, preexec_fn=file_size_limit(4_000),
    )  # fmt: skip
    assert generated.returncode == 2 and "Traceback" not in generated.stderr, generated.stderr
    assert "could not write the dataset" in generated.stderr and "File too large" in generated.stderr
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


@pytest.mark.slow
def test_a_run_resumed_on_another_machine_does_not_make_its_old_dataset_folder(minari_dir, tmp_path):
    """A checkpoint records the --dataset-dir of the machine it was made on (e.g. under another user's home); resumed
    where that folder does not exist, the run stops in one line instead of creating it and regenerating data there."""
    elsewhere = tmp_path / "other-machine" / "datasets"
    shutil.copytree(minari_dir, elsewhere)
    run_dir = tmp_path / "run"
    common = ["--env-name", "test/pendulum/random-v0", *TINY, "--eval-every", "10", "--save-every", "10"]
    run_script("train_iql.py", *common, "--dataset-dir", str(elsewhere), "--total-steps", "10", "--run-dir",
               str(run_dir))  # fmt: skip
    shutil.rmtree(tmp_path / "other-machine")  # the run is now "on another machine"
    refused = run_script("train_iql.py", "--total-steps", "20", "--resume", str(run_dir), check=False)
    assert_one_line_error(refused, f"the run's --dataset-dir {elsewhere} does not exist on this machine")
    assert not (tmp_path / "other-machine").exists()
    resumed = run_script("train_iql.py", "--total-steps", "20", "--dataset-dir", str(minari_dir), "--resume",
                         str(run_dir))  # fmt: skip
    assert "final score at step 20" in resumed.stdout
