"""train_fql.py: losses against hand-computed values, end-to-end runs (eager and compiled), resume."""

import pytest
import torch
from torch import nn

import train_fql
from offrl.networks import EnsembleLayerNorm
from tests.helpers import hand_batch, random_data


class TimeVelocity(nn.Module):
    """v(s, x, t) = scale * t + rate * x (input concat[s (1 dim), x (A dims), t])."""

    def __init__(self, scale=0.0, rate=0.0):
        super().__init__()
        self.scale, self.rate = scale, rate

    def forward(self, inputs):
        return self.scale * inputs[:, -1:] + self.rate * inputs[:, 1:-1]


def test_euler_flow_takes_ten_euler_steps_then_clips():
    obs = torch.zeros(3, 1)
    noise = torch.tensor([[0.1, -0.9], [0.0, 0.2], [0.8, -0.8]])
    # v = t: x_10 = z + sum_{i<10} (i / 10) / 10 = z + 0.45 (the exact ODE solution would add 0.5), then clip
    actions = train_fql.euler_flow(TimeVelocity(scale=1.0), obs, noise, steps=10)
    torch.testing.assert_close(actions, (noise + 0.45).clamp(-1, 1))
    assert actions[2, 0] == 1.0  # 1.25 clipped
    # v = x / 2: x_10 = z (1 + 0.05)^10
    actions = train_fql.euler_flow(TimeVelocity(rate=0.5), obs, noise * 0.5, steps=10)
    torch.testing.assert_close(actions, noise * 0.5 * 1.05**10)


class FixedPolicy(nn.Module):
    """mu(s, z) = fixed actions (B, A) + a trainable offset, ignoring its input."""

    def __init__(self, actions):
        super().__init__()
        self.actions = torch.tensor(actions)
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, inputs):
        return self.actions + self.offset


class LinearCritic(nn.Module):
    """Q_i(s, a) = w_i . a + c for the two heads (input: concat[s (1 dim), a (2 dims)]) -> (2, B, 1)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.c = nn.Parameter(torch.zeros(()))

    def forward(self, inputs):
        return (inputs[:, 1:] @ self.w.T).T.unsqueeze(-1) + self.c


def hand_case(policy_actions, flow_velocity=5.0):
    batch = hand_batch()
    nets = {
        "flow": TimeVelocity(scale=flow_velocity / 0.45),  # 10 Euler steps move z by flow_velocity
        "actor": FixedPolicy(policy_actions),
        "critic": LinearCritic([[1.0, 2.0], [3.0, -1.0]]),
        "target_critic": LinearCritic([[2.0, 0.0], [0.0, 4.0]]),
    }
    return batch, nets


def test_critic_backs_up_the_clipped_one_step_action_with_mean_or_min():
    torch.manual_seed(0)
    batch, nets = hand_case([[1.5, -0.5], [0.5, 0.25]])  # clip -> (1, -0.5), (0.5, 0.25)
    # Qbar_1(s', a') = 2 a'_1 = (2, 1);  Qbar_2 = 4 a'_2 = (-2, 1);  mean (0, 1), min (-2, 1)
    # Q(s, a): head 1 = a_1 + 2 a_2 = (1.5, -1), head 2 = 3 a_1 - a_2 = (1, -3)
    for q_agg, next_q in (("mean", 0.0), ("min", -2.0)):
        _, metrics = train_fql.fql_losses(batch, nets, train_fql.Args(discount=0.5, q_agg=q_agg))
        y = torch.tensor([-1.0 + 0.5 * next_q, 0.0])  # second row: mask 0, no bootstrap
        q = torch.tensor([[1.5, -1.0], [1.0, -3.0]])
        assert metrics["loss/critic"].item() == pytest.approx((q - y).square().mean().item())


def test_distillation_reaches_the_policy_outside_the_unit_box():
    torch.manual_seed(0)
    batch, nets = hand_case([[1.5, 1.5], [1.5, 1.5]])  # one-step output outside [-1, 1]
    args = train_fql.Args(alpha=10.0)
    loss, metrics = train_fql.fql_losses(batch, nets, args)
    # target: clip(z + 5) = 1 everywhere (z > -4); the policy's output is NOT clipped in this term
    assert metrics["loss/distill"].item() == pytest.approx(0.25)
    loss.backward()
    # d/d offset: alpha * d mean((1.5 + o - 1)^2) = alpha * 2 * 0.5; the Q term sees clip(1.5 + o) = 1: no gradient
    assert nets["actor"].offset.grad.item() == pytest.approx(10.0)
    # the flow target is under stop-gradient and the critic is frozen in the actor loss
    assert metrics["actor/policy_q"].item() == pytest.approx((3.0 + 2.0) / 2)  # Q_1 = 1 + 2, Q_2 = 3 - 1 at (1, 1)


def test_q_term_gradient_and_normalization():
    torch.manual_seed(0)
    batch, nets = hand_case([[0.5, 0.0], [0.0, -0.5]], flow_velocity=0.0)  # inside the box
    nets["flow"] = TimeVelocity()  # v = 0: the flow returns clip(z); distill gradient computed below by hand
    args = train_fql.Args(alpha=0.0)
    loss, metrics = train_fql.fql_losses(batch, nets, args)
    loss.backward()
    # policy Q: mean_i Q_i = (a_1 + 2 a_2 + 3 a_1 - a_2) / 2 = 2 a_1 + a_2 / 2 -> rows 1.0, -0.25
    assert metrics["actor/policy_q"].item() == pytest.approx((1.0 - 0.25) / 2)
    # -E[mean_i Q_i] with an offset o on both action dims: d/do = -(2 + 0.5) per row
    assert nets["actor"].offset.grad.item() == pytest.approx(-2.5)
    assert nets["critic"].w.grad is not None  # from the critic loss only
    critic_only = nets["critic"].w.grad.clone()
    nets["critic"].w.grad = None
    q = nets["critic"](torch.cat([batch["observations"], batch["actions"]], -1)).squeeze(-1)
    (q - train_fql_target(batch, nets)).square().mean().backward()
    torch.testing.assert_close(nets["critic"].w.grad, critic_only)
    assert nets["target_critic"].w.grad is None
    _, normalized = train_fql.fql_losses(batch, nets, train_fql.Args(alpha=0.0, normalize_q_loss=True))
    assert normalized["loss/q"].item() == pytest.approx(-0.375 / ((1.0 + 0.25) / 2))


def train_fql_target(batch, nets):
    """y with mean aggregation, gamma 0.99, for the hand case whose next one-step actions are fixed."""
    next_actions = nets["actor"].actions.clamp(-1, 1)
    next_q = nets["target_critic"](torch.cat([batch["next_observations"], next_actions], -1)).squeeze(-1).mean(0)
    return (batch["rewards"] + 0.99 * batch["masks"] * next_q).detach()


def test_real_networks_shapes():
    args = train_fql.Args(hidden_dims=(16, 16))
    nets = train_fql.build(args, random_data(5, 3), torch.device("cpu")).nets
    for name in ("flow", "actor"):  # no LayerNorm in the actors by default; the critics have it
        assert not any(isinstance(m, nn.LayerNorm) for m in nets[name].modules()), name
    assert any(isinstance(m, EnsembleLayerNorm) for m in nets["critic"].modules())
    obs = torch.randn(7, 5)
    batch = {"observations": obs, "actions": torch.rand(7, 3) * 2 - 1, "rewards": torch.zeros(7),
             "next_observations": obs, "masks": torch.ones(7), "terminals": torch.zeros(7)}  # fmt: skip
    loss, metrics = train_fql.fql_losses(batch, nets, args)
    assert loss.dim() == 0 and all(torch.isfinite(v) for v in metrics.values())
    assert train_fql.euler_flow(nets["flow"], obs, torch.randn(7, 3), 10).shape == (7, 3)
