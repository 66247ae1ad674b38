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

pytestmark = pytest.mark.slow  # minutes each: `python -m pytest -m "not slow"` leaves them out

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


# IDQL's denoiser at a toy size (its default is 256 wide with 128 time features: same results, five times slower)
IDQL_SMALL = ["--denoiser-hidden-dim", "64", "--denoiser-time-dim", "32"]
# script -> (flags of the run that must pass, {what is broken: flags of a run that must fail})
CASES = {
    "train_iql.py": ([], {"no bootstrapping": ["--discount", "0"],
                          "no advantage weighting (plain BC)": ["--alpha", "0"]}),
    "train_sacbc.py": (["--alpha", "3"], {"no bootstrapping": ["--alpha", "3", "--discount", "0"],
                                          "BC only": ["--alpha", "10000"]}),
    "train_fql.py": (["--alpha", "3"], {"no bootstrapping": ["--alpha", "3", "--discount", "0"],
                                        "distillation only": ["--alpha", "10000"]}),
    "train_fan.py": (["--alpha1", "1"], {"no bootstrapping": ["--alpha1", "1", "--discount", "0"],
                                         "anchoring only": ["--alpha1", "10000"]}),
    "train_idql.py": (IDQL_SMALL, {"no bootstrapping": [*IDQL_SMALL, "--discount", "0"],
                                   "no selection (one candidate)": [*IDQL_SMALL, "--num-candidates", "1"]}),
}  # fmt: skip
BROKEN = [(script, broken, flags) for script, (_, variants) in CASES.items() for broken, flags in variants.items()]


@pytest.mark.parametrize("script", CASES)
def test_beats_the_behaviour_data(script, toy_dir, tmp_path):
    success = success_rate(script, toy_dir, tmp_path / "run", *CASES[script][0])
    assert success >= toy_task.PASS_SUCCESS, success


@pytest.mark.parametrize(("script", "broken", "flags"), BROKEN, ids=[f"{s}-{b}" for s, b, _ in BROKEN])
def test_fails_when_broken(script, broken, flags, toy_dir, tmp_path):
    success = success_rate(script, toy_dir, tmp_path / "run", *flags)
    assert success < toy_task.PASS_SUCCESS - 0.2, f"{broken}: {success}"


# --- Offline-to-online fine-tuning --------------------------------------------------------------------------------
# Data whose goal mode stops short of the goal (tests/toy_task.py, SHORT_REACH): no episode succeeds, so the offline
# phase cannot learn where the goal is; the online phase's exploration finds it, and the agent must learn from that.
ONLINE_OFFLINE_STEPS, ONLINE_STEPS = 1000, 3000


@pytest.fixture(scope="module")
def short_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("toy_short")
    toy_task.make_toy_dataset(directory, toy_task.SHORT_DATASET_ID, goal_reach=toy_task.SHORT_REACH)
    return directory


def test_fine_tuning_online_learns_what_the_offline_data_cannot_show(short_dir, tmp_path):
    """IQL, 1000 offline steps then 3000 online steps with balanced batches, against 4000 offline steps: only the run
    that uses its online transitions reaches the goal."""
    assert toy_task.behaviour_success(short_dir, toy_task.SHORT_DATASET_ID) == 0.0
    common = ["--env-name", toy_task.SHORT_DATASET_ID, "--dataset-dir", str(short_dir), "--eval-every", "1000", *SMALL]
    total = ONLINE_OFFLINE_STEPS + ONLINE_STEPS
    run_script("train_iql.py", *common, "--total-steps", str(total), "--run-dir", str(tmp_path / "offline"),
               env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    run_script("train_iql.py", *common, "--total-steps", str(ONLINE_OFFLINE_STEPS), "--online-steps",
               str(ONLINE_STEPS), "--balanced-sampling", "--run-dir", str(tmp_path / "online"),
               env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    offline = json.loads((tmp_path / "offline" / "results.json").read_text())["evals"]
    online = json.loads((tmp_path / "online" / "results.json").read_text())["evals"]
    before = next(e for e in online if e["step"] == ONLINE_OFFLINE_STEPS)
    assert before["phase"] == "offline" and before["success"] <= 0.1, before  # the offline phase learned nothing
    assert offline[-1]["step"] == total and offline[-1]["success"] <= 0.1, offline[-1]  # nor do more offline steps
    assert online[-1]["step"] == total and online[-1]["success"] >= toy_task.PASS_SUCCESS, online[-1]


def test_a_group_learns_as_its_single_runs_do(toy_dir, tmp_path):
    """FQL, two seeds x alpha 3 (passes as a single run) and 10000 (distillation only: fails as a single run), as four
    members of one process: each member lands on the side of the bar its single run does."""
    run_script(
        "train_fql.py", "--env-name", toy_task.DATASET_ID, "--dataset-dir", str(toy_dir), "--total-steps", "3000",
        "--eval-every", "3000", "--run-dir", str(tmp_path), *SMALL, "--seeds", "0", "1",
        "--member-values", "alpha=3,10000", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    final = {
        path.name.split("__", 2)[2]: json.loads((path / "results.json").read_text())["evals"][-1]["success"]
        for path in tmp_path.iterdir()
        if path.is_dir()
    }
    assert sorted(final) == ["0__alpha10000", "0__alpha3", "1__alpha10000", "1__alpha3"]
    for member, success in final.items():
        if member.endswith("alpha3"):
            assert success >= toy_task.PASS_SUCCESS, (member, success)
        else:
            assert success < toy_task.PASS_SUCCESS - 0.2, (member, success)
