"""train_iql.py: losses against hand-computed values, end-to-end runs, resume, interruption, NaN guard."""

import math

import pytest
import torch

import train_iql
from tests.helpers import Constant, ValueOf, read_scalars, run_script, value_hand_batch

TINY = ["--hidden-dims", "32", "32", "--batch-size", "64", "--eval-episodes", "2", "--eval-envs", "2"]


# ----------------------------------------------------------------------------------------------------------------
# Losses on hand-made batches


def test_awr_weights_are_clipped_at_100():
    advantage = torch.tensor([-1.0, 0.0, 0.2, 0.5, 3.0])
    expected = torch.tensor([math.exp(-10.0), 1.0, math.exp(2.0), 100.0, 100.0])  # exp(5) = 148 > 100
    torch.testing.assert_close(train_iql.awr_weights(advantage, 10.0), expected)


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
    nets, batch = hand_nets(), value_hand_batch()
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
    batch = value_hand_batch()
    _, with_masks = train_iql.iql_losses(batch, hand_nets(), args)
    batch["terminals"] = torch.tensor([1.0, 0.0])  # swapped: the loss must not change
    _, swapped_terminals = train_iql.iql_losses(batch, hand_nets(), args)
    assert with_masks["loss/critic"] == swapped_terminals["loss/critic"]
    batch["masks"] = torch.tensor([1.0, 1.0])  # bootstrapping now also on the second row: y = (0.5, 2.5)
    _, both = train_iql.iql_losses(batch, hand_nets(), args)
    assert both["loss/critic"].item() == pytest.approx((1.0 + 4.0 + 1.5**2 + 1.5**2) / 2)


def test_iql_gradients_go_where_they_should():
    args = train_iql.Args(discount=0.5)
    nets, batch = hand_nets(), value_hand_batch()
    loss, _ = train_iql.iql_losses(batch, nets, args)
    loss.backward()
    assert nets["target_critic"].weight.grad is None  # target critic: no gradient
    # dL/dV offset: only the value loss (the critic target and AWR weights use V under stop-gradient)
    # d/dc mean(0.1 * (u - c)^2) at u = -1 -> mean(-0.2 * u) = 0.2
    assert nets["value"].offset.grad.item() == pytest.approx(0.2)


def test_ddpgbc_loss_by_hand():
    args = train_iql.Args(actor_loss="ddpgbc", alpha=2.0)
    nets, batch = hand_nets(), value_hand_batch()
    _, metrics = train_iql.iql_losses(batch, nets, args)
    q = torch.tensor([1.5, 1.0])  # the constant critic ignores the action: min_i Q_i
    log_prob = nets["actor"].log_prob(batch["observations"], batch["actions"])
    expected = -(q.mean() / q.abs().mean()) - 2.0 * log_prob.mean()
    assert metrics["loss/actor"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.slow
def test_actor_cosine_decay_reaches_zero(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
        "--total-steps", "10", "--eval-every", "10", "--log-every", "5", "--run-dir", str(run_dir),
        "--actor-cosine-decay", *TINY,
    )  # fmt: skip
    lr = read_scalars(run_dir)["actor/lr"]
    assert lr[5] == pytest.approx(3e-4 * 0.5, rel=1e-5) and lr[10] == pytest.approx(0.0, abs=1e-12)
