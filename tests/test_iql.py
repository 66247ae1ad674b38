"""train_iql.py: losses against hand-computed values, end-to-end runs, resume, interruption, NaN guard."""

import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

import train_iql
from tests.helpers import REPO_ROOT, Constant, read_scalars, run_full_and_resumed, run_script, run_tiny_ogbench

TINY = ["--hidden-dims", "32", "32", "--batch-size", "64", "--eval-episodes", "2", "--eval-envs", "2"]


# ----------------------------------------------------------------------------------------------------------------
# Losses on hand-made batches


def test_expectile_loss_both_signs():
    diff = torch.tensor([2.0, -2.0, 0.5, -0.5])
    expected = torch.tensor([0.9 * 4.0, 0.1 * 4.0, 0.9 * 0.25, 0.1 * 0.25])
    torch.testing.assert_close(train_iql.expectile_loss(diff, 0.9), expected)
    torch.testing.assert_close(train_iql.expectile_loss(diff, 0.7), torch.tensor([2.8, 1.2, 0.175, 0.075]))


def test_awr_weights_are_clipped_at_100():
    advantage = torch.tensor([-1.0, 0.0, 0.2, 0.5, 3.0])
    expected = torch.tensor([math.exp(-10.0), 1.0, math.exp(2.0), 100.0, 100.0])  # exp(5) = 148 > 100
    torch.testing.assert_close(train_iql.awr_weights(advantage, 10.0), expected)


class ValueOf(nn.Module):
    """V(s) = the first feature of s, plus a trainable offset."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, obs):
        return obs[:, :1] + self.offset


def hand_batch():
    return {
        "observations": torch.tensor([[1.0, 0.0], [2.0, 0.0]]),
        "actions": torch.tensor([[0.5], [-0.5]]),
        "rewards": torch.tensor([-1.0, 0.0]),
        "next_observations": torch.tensor([[3.0, 0.0], [5.0, 0.0]]),
        "masks": torch.tensor([1.0, 0.0]),
        "terminals": torch.tensor([0.0, 1.0]),  # must not matter: IQL bootstraps on masks
    }


def hand_nets():
    actor = train_iql.GaussianActor(2, 1, (4,), std="constant")
    return {
        "actor": actor,
        "critic": Constant([[1.5, 4.0], [2.5, 1.0]]),  # Q_1 = (1.5, 4), Q_2 = (2.5, 1)
        "target_critic": Constant([[0.0, 3.0], [2.0, 1.0]]),  # min_i Qbar_i = (0, 1)
        "value": ValueOf(),  # V(s) = (1, 2); V(s') = (3, 5)
    }


def test_iql_losses_by_hand():
    args = train_iql.Args(discount=0.5, expectile=0.9, alpha=1.0)
    nets, batch = hand_nets(), hand_batch()
    _, metrics = train_iql.iql_losses(batch, nets, args)
    # value: u = min Qbar - V = (0 - 1, 1 - 2) = (-1, -1): both below 0 -> weight 0.1
    assert metrics["loss/value"].item() == pytest.approx(0.1 * 1.0)
    # critic: y = r + gamma * mask * V(s') = (-1 + 0.5 * 1 * 3, 0 + 0) = (0.5, 0)
    # sum over heads, mean over batch: ((1.5 - .5)^2 + (2.5 - .5)^2 + (4 - 0)^2 + (1 - 0)^2) / 2
    assert metrics["loss/critic"].item() == pytest.approx((1.0 + 4.0 + 16.0 + 1.0) / 2)
    # actor: A = min Q - V = (1.5 - 1, 1 - 2) = (0.5, -1); weights exp(A)
    log_prob = nets["actor"].log_prob(batch["observations"], batch["actions"])
    expected = -(torch.tensor([math.exp(0.5), math.exp(-1.0)]) * log_prob).mean()
    assert metrics["loss/actor"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_iql_backup_uses_masks_not_terminals():
    args = train_iql.Args(discount=0.5)
    batch = hand_batch()
    _, with_masks = train_iql.iql_losses(batch, hand_nets(), args)
    batch["terminals"] = torch.tensor([1.0, 0.0])  # swapped: the loss must not change
    _, swapped_terminals = train_iql.iql_losses(batch, hand_nets(), args)
    assert with_masks["loss/critic"] == swapped_terminals["loss/critic"]
    batch["masks"] = torch.tensor([1.0, 1.0])  # bootstrapping now also on the second row: y = (0.5, 2.5)
    _, both = train_iql.iql_losses(batch, hand_nets(), args)
    assert both["loss/critic"].item() == pytest.approx((1.0 + 4.0 + 1.5**2 + 1.5**2) / 2)


def test_iql_gradients_go_where_they_should():
    args = train_iql.Args(discount=0.5)
    nets, batch = hand_nets(), hand_batch()
    loss, _ = train_iql.iql_losses(batch, nets, args)
    loss.backward()
    assert nets["target_critic"].weight.grad is None  # target critic: no gradient
    # dL/dV offset: only the value loss (the critic target and AWR weights use V under stop-gradient)
    # d/dc mean(0.1 * (u - c)^2) at u = -1 -> mean(-0.2 * u) = 0.2
    assert nets["value"].offset.grad.item() == pytest.approx(0.2)


def test_ddpgbc_loss_by_hand():
    args = train_iql.Args(actor_loss="ddpgbc", alpha=2.0)
    nets, batch = hand_nets(), hand_batch()
    _, metrics = train_iql.iql_losses(batch, nets, args)
    q = torch.tensor([1.5, 1.0])  # the constant critic ignores the action: min_i Q_i
    log_prob = nets["actor"].log_prob(batch["observations"], batch["actions"])
    expected = -(q.mean() / q.abs().mean()) - 2.0 * log_prob.mean()
    assert metrics["loss/actor"].item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# End to end


def check_results(run_dir, steps, env_name, success_expected):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == "iql" and results["env_name"] == env_name and results["status"] == "finished"
    assert [e["step"] for e in results["evals"]] == steps
    for row in results["evals"]:
        assert set(row) == {"step", "success", "return", "normalized_score", "episode_length", "wall_time"}
        assert (row["success"] is not None) == success_expected
        assert (row["normalized_score"] is not None) != success_expected  # Minari has ref scores, OGBench not
    assert results["train_steps_per_second"] > 0 and results["compile_seconds"] is not None
    assert (run_dir / "checkpoint.pt").is_file()
    return results


@pytest.mark.parametrize("compile_flag", ["--no-compile", "--compile"])
def test_end_to_end_ogbench(ogbench_dir, tmp_path, compile_flag):
    run_dir = tmp_path / "run"
    result = run_tiny_ogbench("train_iql.py", ogbench_dir, run_dir, compile_flag, *TINY)
    assert "final score at step 20" in result.stdout and str(run_dir) in result.stdout
    check_results(run_dir, [0, 10, 20], "cube-single-play-singletask-task1-v0", success_expected=True)
    scalars = read_scalars(run_dir)
    for tag in ("loss/critic", "loss/value", "loss/actor", "val/critic", "critic/q_mean", "time/steps_per_second"):
        assert sorted(scalars[tag]) == [5, 10, 15, 20], tag
    assert "eval/success" in scalars


@pytest.mark.parametrize("compile_flag", ["--no-compile", "--compile"])
def test_end_to_end_minari(minari_dir, tmp_path, compile_flag):
    run_dir = tmp_path / "run"
    run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir),
        "--total-steps", "10", "--eval-every", "10", "--log-every", "5", "--run-dir", str(run_dir), compile_flag,
        "--actor-loss", "ddpgbc", "--actor-cosine-decay", *TINY,
    )  # fmt: skip
    check_results(run_dir, [0, 10], "test/pendulum/random-v0", success_expected=False)
    assert read_scalars(run_dir)["actor/lr"][10] == pytest.approx(0.0, abs=1e-12)  # cosine decayed to 0


def test_resume_matches_uninterrupted_run(minari_dir, tmp_path):
    full, part = run_full_and_resumed("train_iql.py", minari_dir, tmp_path, *TINY, resume_checkpoint_file=True)
    full_scalars, part_scalars = read_scalars(full), read_scalars(part)
    for tag in ("loss/critic", "loss/value", "loss/actor", "critic/q_mean"):
        assert part_scalars[tag] == full_scalars[tag], tag  # every step 5..30, exactly
    strip = lambda evals: [{k: v for k, v in e.items() if k != "wall_time"} for e in evals]  # noqa: E731
    full_evals = json.loads((full / "results.json").read_text())["evals"]
    part_evals = json.loads((part / "results.json").read_text())["evals"]
    assert strip(part_evals) == strip(full_evals) and [e["step"] for e in full_evals] == [0, 10, 20, 30]


def test_sigterm_saves_and_resume_finishes(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--eval-every", "500000", "--log-every", "100", *TINY]  # fmt: skip
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "train_iql.py"),
            *common,
            "--total-steps",
            "1000000",
            "--run-dir",
            str(run_dir),
        ],
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
    resumed = run_script("train_iql.py", *common, "--total-steps", str(step + 5), "--resume", str(run_dir))
    assert f"final score at step {step + 5}" in resumed.stdout
    assert json.loads((run_dir / "results.json").read_text())["status"] == "finished"


def test_nan_loss_stops_the_run_naming_the_loss(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
        "--total-steps", "200", "--eval-every", "1000", "--log-every", "10", "--save-every", "1000",
        "--run-dir", str(run_dir), "--lr", "1e12", "--no-layer-norm", *TINY, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "became nan" in result.stderr or "became inf" in result.stderr
    assert "between steps" in result.stderr and "Traceback" not in result.stderr
    assert json.loads((run_dir / "results.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoint.pt").exists()  # nothing non-finite was saved


def test_bad_input_messages(tmp_path):
    result = run_script("train_iql.py", "--env-name", "hopper-medium-v2", check=False)
    assert result.returncode == 1 and "Unknown dataset name" in result.stderr and "Traceback" not in result.stderr
    result = run_script("train_iql.py", "--total-steps", "0", check=False)
    assert "--total-steps must be positive" in result.stderr
    result = run_script("train_iql.py", "--resume", str(tmp_path / "missing.pt"), "--dataset-dir", str(tmp_path),
                        "--generate-episodes", "1", check=False)  # fmt: skip
    assert result.returncode == 1 and "no such checkpoint" in result.stderr


def test_help_explains_every_flag():
    result = run_script("train_iql.py", "--help")
    for field in train_iql.Args.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in result.stdout, field
    assert "(default: " in result.stdout and "expectile" in result.stdout
