"""Loss pieces used by more than one training script."""

from __future__ import annotations

import torch

__all__ = ["expectile_loss", "flow_matching_loss"]


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric squared loss L2^tau(u) = |tau - 1(u < 0)| u^2, elementwise.

    diff: u = target - prediction, any shape; returns the same shape. With tau > 0.5 the prediction is pushed towards
    an upper expectile of the target (IQL's V, FAN's Z); tau = 0.5 gives half the squared error.
    """
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.square()


def flow_matching_loss(
    flow: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Conditional flow matching on straight paths: E[ ||v(s, x_t, t) - (x1 - x0)||^2 ] (mean over batch and A).

    x0 = noise, x1 = actions, x_t = (1 - t) x0 + t x1; the flow is called on concat[s, x_t, t] with t a raw scalar.
    obs (B, S), actions (B, A), noise (B, A) ~ N(0, I), t (B, 1) ~ U[0, 1] -> scalar.
    """
    x_t = (1.0 - t) * noise + t * actions
    return (flow(torch.cat([obs, x_t, t], -1)) - (actions - noise)).square().mean()
