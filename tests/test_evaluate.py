"""`python -m offrl.tools.evaluate`: a real checkpoint evaluated again (the run's own numbers come back) and exported
to a
file that a fresh Python process, which can import nothing but torch, loads and acts with: the same actions as the
live policy on the same observations and noise, for all five algorithms (IDQL's sampler included)."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from offrl.tools.evaluate import load_agent
from tests.helpers import REPO_ROOT, run_script

SCRIPTS = ["train_iql.py", "train_sacbc.py", "train_fql.py", "train_fan.py", "train_idql.py"]
TINY = ["--hidden-dims", "16", "16", "--batch-size", "32", "--eval-episodes", "3", "--eval-envs", "2", "--no-compile"]
ALGO_TINY = {"train_idql.py": ["--denoiser-hidden-dim", "16", "--denoiser-blocks", "1", "--diffusion-steps", "3"]}

TORCH_ONLY = textwrap.dedent(
    """
    import sys
    for name in ("offrl", "tests", "gymnasium", "mujoco", "ogbench", "minari", "tyro"):
        sys.modules[name] = None  # importing any of them fails
    import torch

    observations = torch.load(sys.argv[2])
    policy = torch.export.load(sys.argv[1]).module()
    actions = {}
    for batch in (1, len(observations)):
        torch.manual_seed(123)
        actions[batch] = policy(observations[:batch])
    torch.save(actions, sys.argv[3])
    """
)


def python_module(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "extra"),
    [*((s, []) for s in SCRIPTS), ("train_idql.py", ["--extraction", "resample"])],
    ids=[*SCRIPTS, "train_idql.py-resample"],
)
def test_a_checkpoint_is_evaluated_again_and_exported_for_torch_alone(script, extra, minari_dir, tmp_path):
    run_dir, exported = tmp_path / "run", tmp_path / "policy.pt2"
    run_script(
        script, "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), *TINY,
        *ALGO_TINY.get(script, []), *extra, "--total-steps", "10", "--eval-every", "10", "--run-dir", str(run_dir),
    )  # fmt: skip
    logged = json.loads((run_dir / "results.json").read_text())["evals"][-1]

    result = python_module("offrl.tools.evaluate", str(run_dir), "--export", str(exported), "--device", "cpu")
    assert "step 10, 3 episodes, seed 0: " in result.stdout and "exported the policy of step 10" in result.stdout
    again = json.loads((run_dir / "evaluations" / "step_10-seed_0-episodes_3.json").read_text())
    for key in ("return", "normalized_score", "episode_length"):  # the same episodes, the same policy, no compile
        assert again[key] == pytest.approx(logged[key], rel=1e-6), key

    agent, args, data, step, _ = load_agent(run_dir, device="cpu", compile=False)
    assert step == 10 and all(not net.training for net in agent.nets.values())
    observations = torch.randn(6, data.observation_dim, generator=torch.Generator().manual_seed(0))
    torch.save(observations, tmp_path / "observations.pt")
    child = subprocess.run(
        [sys.executable, "-I", "-c", TORCH_ONLY, str(exported), str(tmp_path / "observations.pt"),
         str(tmp_path / "actions.pt")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    actions = torch.load(tmp_path / "actions.pt")
    for batch, exported_actions in actions.items():
        torch.manual_seed(123)
        with torch.inference_mode():
            live = agent.policy(observations[:batch])
        assert exported_actions.shape == (batch, data.action_dim)
        torch.testing.assert_close(exported_actions, live, atol=1e-5, rtol=1e-5)
    if script != "train_iql.py" and script != "train_sacbc.py":  # the noise is drawn, not fixed: seeds matter
        torch.manual_seed(124)
        other = agent.policy(observations)
        assert not torch.allclose(other, actions[len(observations)])


@pytest.mark.slow
def test_evaluate_refuses_what_it_cannot_use_in_one_line(minari_dir, tmp_path):
    missing = python_module("offrl.tools.evaluate", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 1 and "no such run directory" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = python_module("offrl.tools.evaluate", str(tmp_path / "empty"), check=False)
    assert empty.returncode == 1 and "has no checkpoint.pt" in empty.stderr and "Traceback" not in empty.stderr
    run_dir = tmp_path / "run"
    run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), *TINY,
        "--total-steps", "2", "--run-dir", str(run_dir),
    )  # fmt: skip
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    corrupt = python_module("offrl.tools.evaluate", str(tmp_path / "corrupt"), check=False)
    assert (
        corrupt.returncode == 1 and "not a readable checkpoint" in corrupt.stderr and "Traceback" not in corrupt.stderr
    )
    fql = str(REPO_ROOT / "train_fql.py")
    other = python_module("offrl.tools.evaluate", str(run_dir), "--script", fql, check=False)
    assert other.returncode == 1 and "does not fit" in other.stderr and "Traceback" not in other.stderr
    flags = python_module("offrl.tools.evaluate", str(run_dir), "--episodes", "0", check=False)
    assert flags.returncode == 2 and "--episodes must be positive" in flags.stderr


@pytest.mark.slow
def test_evaluate_takes_the_checkpoint_file_and_stops_on_a_signal_in_one_line(minari_dir, tmp_path):
    """`RUN_DIR/checkpoint.pt` is accepted as --resume accepts it; Ctrl-C or SIGTERM while it evaluates is one line
    (exit 130 or 143), not a KeyboardInterrupt traceback or nothing at all."""
    run_dir = tmp_path / "run"
    run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), *TINY,
        "--total-steps", "2", "--run-dir", str(run_dir),
    )  # fmt: skip
    by_file = python_module("offrl.tools.evaluate", str(run_dir / "checkpoint.pt"), "--episodes", "2")
    assert "step 2, 2 episodes" in by_file.stdout and (run_dir / "evaluations").is_dir()
    for signum in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(
            [sys.executable, "-m", "offrl.tools.evaluate", str(run_dir), "--episodes", "100000", "--eval-envs", "1"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(8)  # loading the run and the first episodes
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 128 + signum, stderr
        assert f"interrupted ({signal.Signals(signum).name})" in stderr and "Traceback" not in stderr, stderr
