"""offrl.losses: the shared loss pieces against values computed by hand."""

import torch
from torch import nn

from offrl.losses import expectile_loss, flow_matching_loss


def test_expectile_loss_both_signs():
    diff = torch.tensor([2.0, -2.0, 0.5, -0.5])
    expected = torch.tensor([0.9 * 4.0, 0.1 * 4.0, 0.9 * 0.25, 0.1 * 0.25])
    torch.testing.assert_close(expectile_loss(diff, 0.9), expected)
    torch.testing.assert_close(expectile_loss(diff, 0.7), torch.tensor([2.8, 1.2, 0.175, 0.075]))


def test_flow_matching_regresses_onto_x1_minus_x0():
    # v(s, x, t) = W concat[s, x, t] + b with set weights; S = 1, A = 2
    flow = nn.Linear(4, 2)
    with torch.no_grad():
        flow.weight.copy_(torch.tensor([[1.0, 0.5, 0.0, 2.0], [0.0, 0.0, -1.0, 1.0]]))
        flow.bias.copy_(torch.tensor([0.1, -0.2]))
    obs = torch.tensor([[1.0], [-1.0]])
    actions = torch.tensor([[0.5, -0.5], [1.0, 0.0]])  # x1
    noise = torch.tensor([[-1.0, 1.0], [0.0, 2.0]])  # x0
    t = torch.tensor([[0.25], [0.5]])
    # x_t = 0.75 x0 + 0.25 x1 = (-0.625, 0.625); 0.5 x0 + 0.5 x1 = (0.5, 1.0)
    # v row 1: (1 + 0.5 * -0.625 + 2 * 0.25 + 0.1, -0.625 + 0.25 - 0.2) = (1.2875, -0.575); target x1 - x0 = (1.5, -1.5)
    # v row 2: (-1 + 0.5 * 0.5 + 2 * 0.5 + 0.1, -1.0 + 0.5 - 0.2) = (0.35, -0.7);         target = (1.0, -2.0)
    expected = ((1.2875 - 1.5) ** 2 + (-0.575 + 1.5) ** 2 + (0.35 - 1.0) ** 2 + (-0.7 + 2.0) ** 2) / 4
    loss = flow_matching_loss(flow, obs, actions, noise, t)
    assert abs(loss.item() - expected) < 1e-6
    # at t = 1 the point is the action, at t = 0 the noise: the velocity is regressed onto x1 - x0 either way
    zero = nn.Linear(4, 2)
    nn.init.zeros_(zero.weight), nn.init.zeros_(zero.bias)
    for time in (0.0, 1.0):
        loss = flow_matching_loss(zero, obs, actions, noise, torch.full((2, 1), time))
        torch.testing.assert_close(loss, (actions - noise).square().mean())
