"""train_sacbc.py: losses against hand-computed values, end-to-end runs (eager and compiled), resume."""

import math

import pytest
import torch
from torch import nn

import train_sacbc
from tests.helpers import Constant, hand_batch, random_data


def test_critic_target_is_mean_of_target_qs_with_masks():
    rewards, masks = torch.tensor([-1.0, 0.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    next_q = torch.tensor([[2.0, 5.0, -4.0], [4.0, 7.0, 0.0]])  # mean (3, 6, -2); min would be (2, 5, -4)
    target = train_sacbc.critic_target(rewards, masks, next_q, discount=0.5)
    torch.testing.assert_close(target, torch.tensor([-1.0 + 0.5 * 3.0, 0.0, -1.0 + 0.5 * -2.0]))


class FixedActor(nn.Module):
    """sample(obs) returns fixed actions (B, 2) shifted by a trainable offset, and fixed log-probs."""

    def __init__(self, actions, log_prob):
        super().__init__()
        self.actions, self.log_prob_value = torch.tensor(actions), torch.tensor(log_prob)
        self.offset = nn.Parameter(torch.zeros(()))

    def sample(self, obs):
        return self.actions + self.offset, self.log_prob_value + 0.0 * self.offset


class LinearCritic(nn.Module):
    """Q_i(s, a) = w_i . a for the two heads (input: concat[s (1 dim), a (2 dims)]) -> (2, B, 1)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))

    def forward(self, x):
        return (x[:, 1:] @ self.w.T).T.unsqueeze(-1)


def hand_case(temperature=2.0, next_log_prob=-1.0):
    batch = hand_batch()
    log_temperature = train_sacbc.LogScalar(temperature)
    nets = {
        "actor": FixedActor([[0.0, 1.0], [1.0, 0.0]], [-2.0, next_log_prob]),
        "critic": LinearCritic(),
        "target_critic": Constant([[2.0, 4.0], [4.0, 8.0]]),  # mean over heads (3, 6)
        "log_temperature": log_temperature,
    }
    return batch, nets


def test_sacbc_losses_by_hand():
    args = train_sacbc.Args(discount=0.5, alpha=4.0, target_entropy_multiplier=0.5)
    batch, nets = hand_case()
    _, metrics = train_sacbc.sacbc_losses(batch, nets, args)
    # y = r + gamma * mask * mean_j Qbar_j = (-1 + 0.5 * 3, 0) = (0.5, 0); Q_i(s, a) = w_i . a
    q1, q2 = torch.tensor([1.5, -1.0]), torch.tensor([1.0, -3.0])
    expected_critic = ((q1 - torch.tensor([0.5, 0.0])) ** 2 + (q2 - torch.tensor([0.5, 0.0])) ** 2).mean()
    assert metrics["loss/critic"].item() == pytest.approx(expected_critic.item())
    # actor: a_pi = ((0, 1), (1, 0)); mean_i Q_i(s, a_pi) = ((2 - 1) / 2, (1 + 3) / 2) = (0.5, 2)
    # BC: ||a - a_pi||^2 = (0.25 + 0.25, 4 + 0) = (0.5, 4), divided by |A| = 2, times alpha = 4
    # entropy term: beta * log pi(a_pi | s) = 2 * (-2, -1)
    per_sample = torch.tensor([-0.5 + 2.0 * 0.5 + 2.0 * -2.0, -2.0 + 2.0 * 4.0 + 2.0 * -1.0])
    assert metrics["loss/actor"].item() == pytest.approx(per_sample.mean().item())
    # temperature: beta * (H - H_target), H = -mean(log pi) = 1.5, H_target = -0.5 * 2 = -1
    assert metrics["loss/temperature"].item() == pytest.approx(2.0 * (1.5 + 1.0))
    assert metrics["actor/temperature"].item() == pytest.approx(2.0)


def test_sacbc_backup_has_no_entropy_term():
    args = train_sacbc.Args(discount=0.5)
    batch, nets = hand_case(temperature=2.0, next_log_prob=-1.0)
    _, base = train_sacbc.sacbc_losses(batch, nets, args)
    batch, nets = hand_case(temperature=50.0, next_log_prob=-30.0)  # a backup with entropy would change a lot
    _, other = train_sacbc.sacbc_losses(batch, nets, args)
    assert base["loss/critic"] == other["loss/critic"]


def test_sacbc_gradients_go_where_they_should():
    args = train_sacbc.Args(discount=0.5, alpha=4.0)
    batch, nets = hand_case()
    loss, _ = train_sacbc.sacbc_losses(batch, nets, args)
    loss.backward()
    # critic weights: only from the critic loss. d/dw_1 sum_b (w_1 . a_b - y_b)^2 / 2 = sum_b (q1_b - y_b) a_b
    q1, y = torch.tensor([1.5, -1.0]), torch.tensor([0.5, 0.0])
    expected = ((q1 - y).unsqueeze(-1) * batch["actions"]).sum(0)
    torch.testing.assert_close(nets["critic"].w.grad[0], expected)
    # actor offset shifts a_pi: d/dc of mean_b[-mean_i w_i.(a_pi + c) + (alpha/|A|) ||a - a_pi - c||^2]
    w_mean_sum = (torch.tensor([1.0, 2.0]) + torch.tensor([3.0, -1.0])).sum() / 2
    residual = (batch["actions"] - torch.tensor([[0.0, 1.0], [1.0, 0.0]])).sum(-1)
    expected_offset = (-w_mean_sum - 2.0 * (4.0 / 2) * residual).mean()
    assert nets["actor"].offset.grad.item() == pytest.approx(expected_offset.item())
    # temperature: d/d log beta of beta * (H - H_target) = beta * 2.5 = 5
    assert nets["log_temperature"].log_value.grad.item() == pytest.approx(5.0)
    assert nets["target_critic"].weight.grad is None


def test_real_networks_shapes_and_init():
    args = train_sacbc.Args(hidden_dims=(16, 16))
    nets = train_sacbc.build(args, random_data(5, 3), torch.device("cpu")).nets
    assert nets["log_temperature"].log_value.item() == pytest.approx(math.log(1.0))
    obs = torch.randn(7, 5)
    actions, log_prob = nets["actor"].sample(obs)
    assert actions.shape == (7, 3) and log_prob.shape == (7,) and actions.abs().max() <= 1
    batch = {"observations": obs, "actions": actions.detach().clamp(-0.99, 0.99), "rewards": torch.zeros(7),
             "next_observations": obs, "masks": torch.ones(7), "terminals": torch.zeros(7)}  # fmt: skip
    loss, metrics = train_sacbc.sacbc_losses(batch, nets, args)
    assert loss.dim() == 0 and all(torch.isfinite(v) for v in metrics.values())
