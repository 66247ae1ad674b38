"""Learning tests: on the toy task (tests/toy_task.py) each algorithm must clearly beat the behaviour data, and the
same run with its bootstrapping or its policy extraction switched off must not.

Behaviour data succeeds in about a third of the episodes and a Gaussian behaviour clone in about a tenth; only an
agent whose critic learns through the TD backup which of the three modes reaches the goal, and whose actor extracts
that mode, passes.
"""

import json

import pytest

from tests import toy_task
from tests.helpers import run_script

SMALL = ["--hidden-dims", "64", "64", "--batch-size", "256", "--eval-episodes", "100", "--eval-envs", "10",
         "--log-every", "500", "--save-every", "100000", "--no-compile"]  # fmt: skip


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("toy")
    toy_task.make_toy_dataset(directory)
    return directory


def success_rate(script: str, toy_dir, run_dir, *extra: str, steps: int = 3000) -> float:
    """Train `script` on the toy data and return the success rate of its final evaluation (100 episodes)."""
    run_script(
        script, "--env-name", toy_task.DATASET_ID, "--dataset-dir", str(toy_dir), "--total-steps", str(steps),
        "--eval-every", str(steps), "--run-dir", str(run_dir), *SMALL, *extra,
        env={"OMP_NUM_THREADS": "1"},  # these tiny updates run several times slower with two threads on two cores
    )  # fmt: skip
    return json.loads((run_dir / "results.json").read_text())["evals"][-1]["success"]


def test_behaviour_data_is_mediocre(toy_dir):
    assert 0.25 <= toy_task.behaviour_success(toy_dir) <= 0.42


def test_iql_beats_the_behaviour_data(toy_dir, tmp_path):
    success = success_rate("train_iql.py", toy_dir, tmp_path / "iql")
    assert success >= toy_task.PASS_SUCCESS, success


@pytest.mark.parametrize(
    ("broken", "flags"),
    [("no bootstrapping", ["--discount", "0"]), ("no advantage weighting (plain BC)", ["--alpha", "0"])],
)
def test_iql_fails_when_broken(toy_dir, tmp_path, broken, flags):
    success = success_rate("train_iql.py", toy_dir, tmp_path / "iql", *flags)
    assert success < toy_task.PASS_SUCCESS - 0.2, f"{broken}: {success}"


def test_sacbc_beats_the_behaviour_data(toy_dir, tmp_path):
    success = success_rate("train_sacbc.py", toy_dir, tmp_path / "sacbc", "--alpha", "3")
    assert success >= toy_task.PASS_SUCCESS, success


@pytest.mark.parametrize(
    ("broken", "flags"),
    [("no bootstrapping", ["--alpha", "3", "--discount", "0"]), ("BC only", ["--alpha", "10000"])],
)
def test_sacbc_fails_when_broken(toy_dir, tmp_path, broken, flags):
    success = success_rate("train_sacbc.py", toy_dir, tmp_path / "sacbc", *flags)
    assert success < toy_task.PASS_SUCCESS - 0.2, f"{broken}: {success}"


def test_fql_beats_the_behaviour_data(toy_dir, tmp_path):
    success = success_rate("train_fql.py", toy_dir, tmp_path / "fql", "--alpha", "3")
    assert success >= toy_task.PASS_SUCCESS, success


@pytest.mark.parametrize(
    ("broken", "flags"),
    [("no bootstrapping", ["--alpha", "3", "--discount", "0"]), ("distillation only", ["--alpha", "10000"])],
)
def test_fql_fails_when_broken(toy_dir, tmp_path, broken, flags):
    success = success_rate("train_fql.py", toy_dir, tmp_path / "fql", *flags)
    assert success < toy_task.PASS_SUCCESS - 0.2, f"{broken}: {success}"


def test_fan_beats_the_behaviour_data(toy_dir, tmp_path):
    success = success_rate("train_fan.py", toy_dir, tmp_path / "fan", "--alpha1", "1")
    assert success >= toy_task.PASS_SUCCESS, success


@pytest.mark.parametrize(
    ("broken", "flags"),
    [("no bootstrapping", ["--alpha1", "1", "--discount", "0"]), ("anchoring only", ["--alpha1", "10000"])],
)
def test_fan_fails_when_broken(toy_dir, tmp_path, broken, flags):
    success = success_rate("train_fan.py", toy_dir, tmp_path / "fan", *flags)
    assert success < toy_task.PASS_SUCCESS - 0.2, f"{broken}: {success}"
