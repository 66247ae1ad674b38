"""train_fan.py: losses against hand-computed values, end-to-end runs (eager and compiled), resume."""

import pytest
import torch
from torch import nn

import train_fan
from offrl.losses import expectile_loss
from tests.helpers import Constant, hand_batch, random_data

S, A = 1, 2  # hand cases: one observation feature, two action dimensions


class Recording(nn.Module):
    """Wraps a function of the input; records every input it sees. Output (B, A) or (2, B, 1) + a trainable offset."""

    def __init__(self, function):
        super().__init__()
        self.function, self.inputs = function, []
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, inputs):
        self.inputs.append(inputs.detach().clone())
        return self.function(inputs) + self.offset


def linear_flow():
    """v(s, x, t) = W concat[s, x, t] + b with set weights (S = 1, A = 2)."""
    flow = nn.Linear(S + A + 1, A)
    with torch.no_grad():
        flow.weight.copy_(torch.tensor([[1.0, 0.5, 0.0, 2.0], [0.0, 0.0, -1.0, 1.0]]))
        flow.bias.copy_(torch.tensor([0.1, -0.2]))
    return flow


def test_flow_anchor_by_hand_gradient_to_actions_not_to_the_flow():
    flow = linear_flow()
    obs, noise, t = torch.tensor([[1.0]]), torch.tensor([[-1.0, 1.0]]), torch.tensor([[0.25]])
    actions = torch.tensor([[0.5, -0.5]], requires_grad=True)
    residual = train_fan.flow_anchor(flow, obs, noise, actions, t)
    # point on the path: 0.75 eps + 0.25 a = (-0.625, 0.625); v = (1.2875, -0.575) (as in test_losses)
    # residual = (a - eps - v)^2 = (0.5 + 1 - 1.2875, -0.5 - 1 + 0.575)^2
    expected = torch.tensor([[0.2125**2, 0.925**2]])
    torch.testing.assert_close(residual, expected)
    residual.sum().backward()
    assert flow.weight.grad is None and flow.bias.grad is None  # v's parameters get no gradient from the anchor
    # d/da sum_k r_k^2 with r = a - eps - W_x ((1 - t) eps + t a) - ...: 2 (I - t W_x)^T r
    r = torch.tensor([0.2125, -0.925])
    w_x = flow.weight[:, 1:3].detach()
    torch.testing.assert_close(actions.grad[0], 2 * (torch.eye(2) - 0.25 * w_x).T @ r)


def hand_case(policy_actions=((1.5, -0.5), (0.5, 0.25)), flow_velocity=(0.25, -0.5)):
    batch = hand_batch()
    policy = torch.tensor(policy_actions)
    nets = {
        "flow": Recording(lambda x: torch.tensor(flow_velocity).expand(x.shape[0], A)),
        "actor": Recording(lambda x: policy),
        "critic": Recording(lambda x: torch.stack([x[:, S + A :].sum(-1), 2 * x[:, S + A :].sum(-1)]).unsqueeze(-1)),
        "target_critic": Recording(lambda x: torch.stack([x[:, S : S + A].sum(-1), 3 * x[:, 0]]).unsqueeze(-1)),
        "z": Constant([[1.0, 2.0], [3.0, -2.0]]),  # the same Z(s, a) at s and s': heads (1, 2) and (3, -2)
    }
    return batch, nets


def test_critic_uses_the_same_noise_for_the_next_action_and_for_q():
    torch.manual_seed(0)
    batch, nets = hand_case()
    train_fan.fan_losses(batch, nets, train_fan.Args())
    next_action_noise = nets["actor"].inputs[0][:, S:]  # first actor call: f(s', eps)
    assert torch.equal(nets["actor"].inputs[0][:, :S], batch["next_observations"])
    q_inputs = nets["critic"].inputs[0]  # first critic call: Q(s, a, eps) in L_Q
    assert torch.equal(q_inputs[:, : S + A], torch.cat([batch["observations"], batch["actions"]], -1))
    assert torch.equal(q_inputs[:, S + A :], next_action_noise)
    # the actor's Q term and the Z target draw fresh noise
    assert not torch.equal(nets["critic"].inputs[1][:, S + A :], next_action_noise)
    assert not torch.equal(nets["target_critic"].inputs[0][:, S + A :], next_action_noise)


@pytest.mark.parametrize(("z_agg", "next_z"), [("mean", torch.tensor([2.0, 0.0])), ("min", torch.tensor([1.0, -2.0]))])
def test_critic_target_by_hand(z_agg, next_z):
    torch.manual_seed(0)
    batch, nets = hand_case()
    args = train_fan.Args(discount=0.5, alpha2=3.0, z_agg=z_agg)
    _, metrics = train_fan.fan_losses(batch, nets, args)
    eps = nets["actor"].inputs[0][:, S:]
    next_actions = torch.tensor([[1.0, -0.5], [0.5, 0.25]])  # clipped
    br = (next_actions - eps - torch.tensor([0.25, -0.5])).square().sum(-1)  # the flow's velocity is constant here
    y = batch["rewards"] + 0.5 * batch["masks"] * (next_z - 3.0 * br)
    q = torch.stack([eps.sum(-1), 2 * eps.sum(-1)])  # Q_i(s, a, eps) of the hand critic
    assert metrics["loss/critic"].item() == pytest.approx((q - y).square().mean().item(), rel=1e-6)
    assert metrics["critic/next_anchor"].item() == pytest.approx(br.mean().item(), rel=1e-6)


def test_z_regresses_toward_the_target_critic_at_the_expectile():
    torch.manual_seed(0)
    batch, nets = hand_case()
    loss, metrics = train_fan.fan_losses(batch, nets, train_fan.Args(expectile=0.9))
    # target: mean_j Qbar_j(s, a, n) = (sum_A a + 3 s) / 2 = (0.5, 1.0); online Q (different) must not enter
    target = torch.tensor([0.5, 1.0])
    z = torch.tensor([[1.0, 2.0], [3.0, -2.0]])
    assert metrics["loss/z"].item() == pytest.approx(expectile_loss(target - z, 0.9).mean().item())
    loss.backward()
    # Z learns from L_Z only (the actor's -Z term reaches the action, not Z's parameters): d/dw mean(L2(T - Z - w))
    weights = torch.where(target - z < 0, 0.1, 0.9)
    assert nets["z"].weight.grad.item() == pytest.approx((-2 * weights * (target - z)).mean().item())
    assert nets["target_critic"].offset.grad is None


def test_actor_loss_terms_and_gradients():
    torch.manual_seed(0)
    batch, nets = hand_case(policy_actions=((0.5, 0.0), (1.5, -0.5)), flow_velocity=(0.0, 0.0))
    args = train_fan.Args(alpha1=2.0)
    loss, metrics = train_fan.fan_losses(batch, nets, args)
    # anchor: the second actor call is f(s, eps); with v = 0 the residual is (f - eps)^2, mean over B and A
    eps = nets["actor"].inputs[1][:, S:]
    policy = torch.tensor([[0.5, 0.0], [1.5, -0.5]])
    assert metrics["loss/anchor"].item() == pytest.approx((policy - eps).square().mean().item(), rel=1e-6)
    # Q and Z at the clipped action: Z is constant, Q_i depends only on the fresh noise n2 of the third critic call
    n2 = nets["critic"].inputs[1][:, S + A :]
    assert torch.equal(nets["critic"].inputs[1][:, S : S + A], policy.clamp(-1, 1))
    assert metrics["actor/policy_q"].item() == pytest.approx((1.5 * n2.sum(-1)).mean().item(), rel=1e-6)
    assert metrics["actor/policy_z"].item() == pytest.approx(((1.0 + 3.0) / 2 + (2.0 - 2.0) / 2) / 2)
    loss.backward()
    # the actor's offset o moves every action entry; anchor gradient alpha1 * mean(2 (f + o - eps)); Q and Z here
    # do not depend on the action, so that is all of it (the critic's offset gets L_Q's gradient only)
    assert nets["actor"].offset.grad.item() == pytest.approx((2.0 * 2 * (policy - eps)).mean().item(), rel=1e-5)
    # the flow's offset learns from L_flow only (both anchors call v frozen): d/do mean((v + o - (a - x0))^2) at v = 0,
    # with x0 recovered from the flow-matching call's input x_t = (1 - t) x0 + t a
    x_t, t = nets["flow"].inputs[1][:, S : S + A], nets["flow"].inputs[1][:, -1:]
    x0 = (x_t - t * batch["actions"]) / (1 - t)
    expected = (2 * (x0 - batch["actions"])).mean()
    assert nets["flow"].offset.grad.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-6)


def test_real_networks_shapes():
    args = train_fan.Args(hidden_dims=(16, 16))
    nets = train_fan.build(args, random_data(5, 3), torch.device("cpu")).nets
    obs = torch.randn(7, 5)
    assert nets["critic"](torch.randn(7, 5 + 3 + 3)).shape == (2, 7, 1)
    assert nets["z"](torch.randn(7, 5 + 3)).shape == (2, 7, 1)
    batch = {"observations": obs, "actions": torch.rand(7, 3) * 2 - 1, "rewards": torch.zeros(7),
             "next_observations": obs, "masks": torch.ones(7), "terminals": torch.zeros(7)}  # fmt: skip
    loss, metrics = train_fan.fan_losses(batch, nets, args)
    assert loss.dim() == 0 and all(torch.isfinite(v) for v in metrics.values())
