"""Behaviour every train_<algo>.py shares, run as subprocesses the way a user runs them.

End to end on both dataset families (eager and compiled), results.json and TensorBoard contents, resume equal to an
uninterrupted run, SIGTERM, the NaN guard, bad-input messages and `--help`.
"""

import importlib
import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from offrl.args import parse_args
from offrl.datasets import load_data
from tests.helpers import REPO_ROOT, read_scalars, run_full_and_resumed, run_script, run_tiny_ogbench

TINY = ["--hidden-dims", "32", "32", "--batch-size", "64", "--eval-episodes", "2", "--eval-envs", "2"]
# script -> (scalars it logs at every log step, flags exercising its options in the Minari run)
SCRIPTS = {
    "train_iql.py": (("loss/critic", "loss/value", "loss/actor", "val/critic", "critic/q_mean"),
                     ["--actor-loss", "ddpgbc", "--actor-cosine-decay"]),
    "train_sacbc.py": (("loss/critic", "loss/actor", "loss/temperature", "val/critic", "actor/temperature"), []),
    "train_fql.py": (("loss/critic", "loss/actor", "loss/flow", "loss/distill", "val/critic", "val/flow", "actor/mse"),
                     ["--q-agg", "min", "--normalize-q-loss", "--flow-steps", "3"]),
    "train_fan.py": (("loss/critic", "loss/z", "loss/actor", "loss/anchor", "val/critic", "val/z", "critic/z_mean"),
                     ["--z-agg", "min", "--normalize-value-loss", "--alpha2", "0.1"]),
    "train_idql.py": (("loss/critic", "loss/value", "loss/diffusion", "val/critic", "val/diffusion", "critic/q_mean"),
                      ["--extraction", "resample", "--denoiser-activation", "mish"]),
}  # fmt: skip
# extra flags that make a script's networks tiny too
TINY_EXTRA = {"train_idql.py": ["--denoiser-hidden-dim", "32", "--denoiser-time-dim", "16", "--num-candidates", "4"]}


def tiny(script: str) -> list[str]:
    return [*TINY, *TINY_EXTRA.get(script, [])]


ROW_KEYS = {"step", "success", "return", "normalized_score", "episode_length", "wall_time"}


def algo(script: str) -> str:
    return script.removeprefix("train_").removesuffix(".py")


def check_results(run_dir, script, env_name, steps, ogbench: bool) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == algo(script) and results["env_name"] == env_name and results["status"] == "finished"
    assert [e["step"] for e in results["evals"]] == steps
    for row in results["evals"]:
        assert set(row) == ROW_KEYS
        if ogbench:  # success rate; OGBench has no reference scores
            assert 0.0 <= row["success"] <= 1.0 and row["normalized_score"] is None
        else:  # Minari: no success signal, a normalized score from the dataset's reference scores
            assert row["success"] is None and row["normalized_score"] is not None
    assert results["train_steps_per_second"] > 0 and results["compile_seconds"] is not None
    assert results["eval_seconds_per_episode"] > 0
    assert (run_dir / "checkpoint.pt").is_file()
    return results


@pytest.mark.parametrize("script", SCRIPTS)
def test_end_to_end_ogbench(script, ogbench_dir, tmp_path):
    """The quick tier's one end-to-end run per script (eager); compiled end to end: test_end_to_end_minari."""
    run_dir = tmp_path / "run"
    result = run_tiny_ogbench(script, ogbench_dir, run_dir, "--no-compile", *tiny(script))
    assert "final score at step 20" in result.stdout and str(run_dir) in result.stdout
    assert "\r" not in result.stdout and "\r" not in result.stderr  # a log file gets lines, not a bar's redraws
    for step in (0, 10, 20):  # a line per evaluation, with the score the dataset family has
        assert f"[{algo(script)}] step {step}: success " in result.stdout
    check_results(run_dir, script, "cube-single-play-singletask-task1-v0", [0, 10, 20], ogbench=True)
    scalars = read_scalars(run_dir)
    for tag in (*SCRIPTS[script][0], "time/steps_per_second", "time/train_seconds"):
        assert sorted(scalars[tag]) == [5, 10, 15, 20], tag
    assert sorted(scalars["eval/success"]) == [0, 10, 20]


# IDQL's options compiled end to end: tests/test_idql.py::test_resampling_mish_and_cosine_schedule_in_a_run
MINARI_RUNS = [
    (s, f) for f in ("--no-compile", "--compile") for s in SCRIPTS if (s, f) != ("train_idql.py", "--compile")
]


@pytest.mark.slow
@pytest.mark.parametrize(("script", "compile_flag"), MINARI_RUNS)
def test_end_to_end_minari(script, compile_flag, minari_dir, tmp_path):
    """Each script's options (SCRIPTS[script][1]) end to end, eager and compiled."""
    run_dir = tmp_path / "run"
    run_script(
        script, "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--total-steps", "10",
        "--eval-every", "10", "--log-every", "5", "--run-dir", str(run_dir), compile_flag, *SCRIPTS[script][1],
        *tiny(script),
    )  # fmt: skip
    check_results(run_dir, script, "test/pendulum/random-v0", [0, 10], ogbench=False)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_matches_uninterrupted_run(script, minari_dir, tmp_path):
    by_file = script in ("train_iql.py", "train_fql.py")  # --resume takes a checkpoint file or a run dir: test both
    # the first part stops by --total-steps 10, which would also shorten a schedule that spans --total-steps
    extra = ["--no-actor-cosine-decay"] if script == "train_idql.py" else []
    full, part = run_full_and_resumed(
        script, minari_dir, tmp_path, *tiny(script), *extra, resume_checkpoint_file=by_file
    )
    full_scalars, part_scalars = read_scalars(full), read_scalars(part)
    for tag in (tag for tag in SCRIPTS[script][0] if not tag.startswith("val/")):  # the Minari set has no val split
        assert part_scalars[tag] == full_scalars[tag], tag  # every step 5..30, exactly
    strip = lambda evals: [{k: v for k, v in e.items() if k != "wall_time"} for e in evals]  # noqa: E731
    full_evals = json.loads((full / "results.json").read_text())["evals"]
    part_evals = json.loads((part / "results.json").read_text())["evals"]
    assert strip(part_evals) == strip(full_evals) and [e["step"] for e in full_evals] == [0, 10, 20, 30]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_explains_every_flag(script):
    module = importlib.import_module(script.removesuffix(".py"))
    result = run_script(script, "--help")
    for field in module.Args.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in result.stdout, field
    assert "(default: " in result.stdout
    flat = " ".join(line.strip("│ ") for line in result.stdout.splitlines())  # tyro's box, unwrapped
    for flag, what in (("--run-dir", "where this run writes"), ("--dataset-dir", "where datasets live")):
        text = flat.split(what, 1)[1].split(" --", 1)[0]
        assert text.count("default") == 1, (flag, text)  # its own default, said once


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_sigterm_saves_and_resume_finishes(script, minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--eval-every", "500000", "--log-every", "100", *tiny(script)]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / script), *common, "--total-steps", "1000000", "--run-dir", str(run_dir)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (run_dir / "results.json").exists() and time.time() < deadline:  # written by the step-0 evaluation
        time.sleep(0.2)
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "interrupted at step" in stdout and "--resume" in stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "interrupted" and results["final_step"] > 0
    step = torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"]
    assert step == results["final_step"]
    resumed = run_script(script, *common, "--total-steps", str(step + 5), "--resume", str(run_dir))
    assert f"final score at step {step + 5}" in resumed.stdout
    assert json.loads((run_dir / "results.json").read_text())["status"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_nan_loss_stops_the_run_naming_the_loss(script, minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_script(
        script, "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
        "--total-steps", "200", "--eval-every", "1000", "--log-every", "10", "--save-every", "1000",
        "--run-dir", str(run_dir), "--lr", "1e12", "--no-layer-norm", *tiny(script), check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "became nan" in result.stderr or "became inf" in result.stderr
    assert "between steps" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoint.pt").exists()  # nothing non-finite was saved


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_input_messages(script, tmp_path):
    result = run_script(script, "--env-name", "hoper-medium-v2", "--run-dir", str(tmp_path / "run"), check=False)
    assert result.returncode == 1 and "Unknown dataset name" in result.stderr and "Traceback" not in result.stderr
    assert "Did you mean D4RL's 'hopper-medium'" in result.stderr
    result = run_script(script, "--total-steps", "0", check=False)
    assert "--total-steps must be positive" in result.stderr
    result = run_script(script, "--resume", str(tmp_path / "missing.pt"), "--dataset-dir", str(tmp_path),
                        "--generate-episodes", "1", check=False)  # fmt: skip
    assert result.returncode == 1 and "no such checkpoint" in result.stderr


HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_update_never_reads_a_tensor_back_to_the_host(script, minari_dir, monkeypatch):
    """The script's own `build()` on the Minari set, its update called with every host read guarded: any `.item()`,
    `.cpu()`, `.tolist()`, `.numpy()`, `bool/float/int(tensor)` made from the script's or offrl's code inside the
    update fails (on a GPU each would stall the pipeline). Reads at log steps, outside the update, are allowed."""
    module = importlib.import_module(script.removesuffix(".py"))
    own_code = (str(REPO_ROOT / script), str(REPO_ROOT / "offrl"))
    argv = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile", *tiny(script)]
    args = parse_args(module.Args, module.PRESETS, argv).args
    agent = module.build(args, load_data(args, torch.device("cpu")), torch.device("cpu"))
    reads, inside = [], [False]

    def guard(name):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if inside[0] and caller.startswith(own_code):
                reads.append(f"{name} from {caller}:{sys._getframe(1).f_lineno}")
            return original(self, *args, **kwargs)

        return guarded

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, guard(name))
    inside[0] = True
    for _ in range(3):
        metrics = agent.update()
    inside[0] = False
    assert metrics and all(torch.isfinite(value) for value in metrics.values())
    assert reads == [], reads


@pytest.mark.slow
def test_a_run_that_would_take_hours_says_so_with_the_flags_of_a_quick_run(minari_dir, tmp_path):
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--log-every", "100", *tiny("train_iql.py")]  # fmt: skip
    short = run_script("train_iql.py", *common, "--total-steps", "40", "--run-dir", str(tmp_path / "short"))
    assert "note: at" not in short.stderr  # 40 steps take seconds: nothing to say
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "train_iql.py"), *common, "--total-steps", "1000000000", "--eval-every",
         "100000000", "--run-dir", str(tmp_path / "long")],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines = []
        deadline = time.time() + 180
        while time.time() < deadline:
            line = process.stderr.readline()
            lines.append(line)
            if "note: at" in line or not line:
                break
        note = lines[-1]
        assert "updates/s on cpu, the remaining" in note and " h. For a quick run: --total-steps 20000" in note, lines
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)


MISTAKES = {  # script -> flags that are almost surely mistakes, and what the refusal says
    "train_iql.py": [(["--lr", "-1"], "--lr must be greater than 0, got -1.0"),
                     (["--expectile", "2"], "--expectile must be less than 1, got 2.0")],
    "train_fql.py": [(["--discount", "1.5"], "--discount must be at most 1, got 1.5"),
                     (["--alpha", "-3"], "--alpha must be at least 0, got -3.0")],
    "train_idql.py": [(["--dropout", "1"], "--dropout must be less than 1, got 1.0"),
                      (["--ema-rate", "2"], "--ema-rate must be at most 1, got 2.0")],
    "train_fan.py": [(["--expectile", "0"], "--expectile must be greater than 0, got 0.0")],
    "train_sacbc.py": [(["--seed", "-1"], "--seed must be at least 0, got -1"),
                       (["--tau", "-0.1"], "--tau must be at least 0, got -0.1")],
}  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS)
def test_values_that_are_almost_surely_mistakes_are_refused_or_warned_about(script):
    """Each script declares its fields' valid ranges (`offrl.args.arg`): a value outside is one line before any work;
    flags that do nothing with the others given are warned about."""
    module = importlib.import_module(script.removesuffix(".py"))
    for flags, message in MISTAKES[script]:
        with pytest.raises(SystemExit, match=re.escape(message)):
            parse_args(module.Args, module.PRESETS, flags)
    warnings = parse_args(module.Args, module.PRESETS, ["--balanced-sampling", "--wandb-entity", "me"]).warnings
    assert any("--balanced-sampling does nothing without --online-steps" in w for w in warnings)
    assert any("--wandb-entity does nothing without --track" in w for w in warnings)
    assert parse_args(module.Args, module.PRESETS, []).warnings == ()


def test_an_unknown_device_is_one_line():
    from offrl.devices import resolve_device

    with pytest.raises(SystemExit, match="--device foo is not a torch device"):
        resolve_device("foo")


@pytest.mark.slow
def test_a_batch_too_large_to_allocate_is_one_line(minari_dir, tmp_path):
    result = run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
        "--total-steps", "2", "--eval-episodes", "1", "--eval-envs", "1", "--batch-size", "100000000000",
        "--run-dir", str(tmp_path / "run"), check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "is larger than the dataset" in result.stderr  # warned before the work
    assert "error: out of cpu memory at step 1" in result.stderr and "lower --batch-size" in result.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "failed"


def test_a_run_logged_to_a_file_prints_a_status_line_every_so_often():
    import io

    from offrl.progress import StatusLines

    log = io.StringIO()
    status = StatusLines(total=1000, initial=0, name="fql", stream=log, every=0.0)
    status.set_postfix({"sps": "81", "success": "0.300"})
    status.update(100)
    status.write("[fql] step 100: success 0.300 (2 s)")
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("[fql] step 100 / 1,000 (10%), sps 81, success 0.300, about ") and "left" in lines[0]
    assert lines[1] == "[fql] step 100: success 0.300 (2 s)" and "\r" not in log.getvalue()
    quiet = io.StringIO()
    StatusLines(total=1000, initial=0, name="fql", stream=quiet).update(1)  # within the minute: nothing yet
    assert quiet.getvalue() == ""


def test_help_says_each_default_once():
    result = run_script("train_fql.py", "--help")
    flat = " ".join(line.strip("│ ") for line in result.stdout.splitlines())  # tyro's box, unwrapped
    flags = ("--generate-episodes", "--balanced-sampling", "--resume", "--wandb-entity", "--success-timing")
    for flag, next_flag in zip(
        flags, ("--reward-mode", "--batch-size", "--track", "--success-timing", "--video"), strict=True
    ):
        text = flat.split(flag, 1)[1].split(next_flag, 1)[0]
        assert text.count("default") == 1 and "(default: None)" not in text, (flag, text)
    assert "a network size is refused" in " ".join(flat.split())
