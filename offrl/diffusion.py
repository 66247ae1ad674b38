"""DDPM behaviour models for continuous actions (IDQL): noise schedule, loss, sampler and the LN-ResNet denoiser.

A denoiser `eps_theta(s, a_t, t)` predicts the noise that was mixed into an action. With `alpha_t = 1 - beta_t` and
`alpha_bar_t = prod_{k <= t} alpha_k` (steps t = 0 .. T-1 here, 1 .. T in the paper):
    forward   q(a_t | a) = N( sqrt(alpha_bar_t) a, (1 - alpha_bar_t) I )
    loss      L = E_{t ~ U{0..T-1}, eps ~ N(0, I)}[ sum_A (eps_theta(s, a_t, t) - eps)^2 ],
              a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps
    reverse   a_{t-1} = clip( (a_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(s, a_t, t)) / sqrt(alpha_t)
              + 1(t > 0) sqrt(beta_t) z ),  z ~ N(0, I),  from a_T ~ N(0, I)
The reverse step adds noise of variance beta_t (DDPM's sigma_t^2 = beta_t choice, as the IDQL code does) and clips to
[-1, 1] after every step. The number of steps is a Python int, so the sampler unrolls into a fixed graph that
`torch.compile` traces without data-dependent control flow.

Shapes: B batch, S observation dim, A action dim, T diffusion steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import nn

from offrl.networks import LAYER_NORM_EPS, MLP, glorot_linear

__all__ = [
    "DDPMSchedule",
    "FourierFeatures",
    "LNResNetDenoiser",
    "ddpm_schedule",
    "noise_prediction_loss",
    "q_sample",
    "reverse_step",
    "sample_actions",
    "vp_beta_schedule",
]


def vp_beta_schedule(num_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    """Variance-preserving schedule: `beta_t = 1 - exp(-b_min / T - (b_max - b_min) (2t - 1) / (2 T^2))`, t = 1..T.

    Returns betas (T,) float32, increasing (T = 5: about 0.20, 0.46, 0.64, 0.75, 0.84; alpha_bar_T = 0.0064).
    """
    t = torch.arange(1, num_steps + 1, dtype=torch.float64)
    alphas = torch.exp(-beta_min / num_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / num_steps**2)
    return (1.0 - alphas).float()


class DDPMSchedule(NamedTuple):
    """The per-step constants of a DDPM, each (T,): betas, alphas = 1 - betas, alpha_bars = cumprod(alphas)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    def to(self, device: str | torch.device) -> DDPMSchedule:
        return DDPMSchedule(*(value.to(device) for value in self))


def ddpm_schedule(betas: torch.Tensor) -> DDPMSchedule:
    """betas (T,) -> DDPMSchedule with alphas and alpha_bars (the cumulative products, computed in float64)."""
    alphas = 1.0 - betas.double()
    return DDPMSchedule(betas.float(), alphas.float(), torch.cumprod(alphas, 0).float())


def q_sample(schedule: DDPMSchedule, actions: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward noising `a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps`.

    actions (B, A), t (B,) integer steps in [0, T), noise (B, A) -> noisy actions (B, A).
    """
    alpha_bar = schedule.alpha_bars[t].unsqueeze(-1)
    return alpha_bar.sqrt() * actions + (1.0 - alpha_bar).sqrt() * noise


def noise_prediction_loss(
    denoiser: nn.Module, schedule: DDPMSchedule, obs: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """DDPM loss `E[ sum_A (eps_theta(s, a_t, t) - eps)^2 ]`, t ~ U{0..T-1}, eps ~ N(0, I); obs (B, S), actions (B, A).

    Draws t and eps from the torch RNG on the actions' device (no host sync). Returns a scalar (mean over B).
    """
    t = torch.randint(schedule.num_steps, actions.shape[:1], device=actions.device)
    noise = torch.randn_like(actions)
    predicted = denoiser(obs, q_sample(schedule, actions, t, noise), t)
    return (predicted - noise).square().sum(-1).mean()


def reverse_step(
    denoiser: nn.Module,
    schedule: DDPMSchedule,
    obs: torch.Tensor,
    noisy_actions: torch.Tensor,
    t: int,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One reverse step a_t -> a_{t-1} (module docstring), clipped to [-1, 1]; no noise is added at t = 0.

    obs (B, S), noisy_actions (B, A), t a Python int in [0, T), noise z (B, A) (unused at t = 0) -> (B, A).
    """
    steps = torch.full(noisy_actions.shape[:1], t, device=noisy_actions.device)
    predicted = denoiser(obs, noisy_actions, steps)
    beta, alpha, alpha_bar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    mean = (noisy_actions - beta / (1.0 - alpha_bar).sqrt() * predicted) / alpha.sqrt()
    if t > 0:
        mean = mean + beta.sqrt() * noise
    return mean.clamp(-1.0, 1.0)


def sample_actions(denoiser: nn.Module, schedule: DDPMSchedule, obs: torch.Tensor, action_dim: int) -> torch.Tensor:
    """Full reverse process from a_T ~ N(0, I): obs (B, S) -> actions (B, A) in [-1, 1].

    Uses the torch RNG on the observations' device. Call it with the denoiser in eval mode (dropout off).
    """
    actions = torch.randn(obs.shape[0], action_dim, device=obs.device)
    for t in reversed(range(schedule.num_steps)):
        noise = torch.randn_like(actions) if t > 0 else None
        actions = reverse_step(denoiser, schedule, obs, actions, t, noise)
    return actions


class FourierFeatures(nn.Module):
    """Learnable Fourier features of the diffusion step: `[cos(2 pi t W^T), sin(2 pi t W^T)]`, W ~ N(0, 0.2^2).

    t (B, 1) -> (B, out_dim); W has shape (out_dim / 2, 1).
    """

    def __init__(self, out_dim: int, in_dim: int = 1, init_std: float = 0.2) -> None:
        super().__init__()
        if out_dim % 2:
            raise ValueError(f"out_dim must be even, got {out_dim}")
        self.weight = nn.Parameter(torch.randn(out_dim // 2, in_dim) * init_std)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim)."""
        angles = 2.0 * math.pi * t @ self.weight.T
        return torch.cat([angles.cos(), angles.sin()], -1)


def lecun_normal_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """`nn.Linear` initialised as flax's `nn.Dense` default (LeCun normal: a normal truncated at two standard
    deviations, scaled to variance 1 / in_dim), with zero biases: the residual blocks of IDQL's code set no init."""
    layer = nn.Linear(in_dim, out_dim)
    std = math.sqrt(1.0 / in_dim) / 0.87962566103423978  # the std of N(0, 1) truncated to [-2, 2] is 0.8796...
    nn.init.trunc_normal_(layer.weight, std=std, a=-2.0 * std, b=2.0 * std)
    nn.init.zeros_(layer.bias)
    return layer


class ResidualBlock(nn.Module):
    """`x + Dense(H)(act(Dense(4H)(LayerNorm(Dropout(x)))))`: (B, H) -> (B, H)."""

    def __init__(self, hidden_dim: int, dropout: float, activation: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(hidden_dim, eps=LAYER_NORM_EPS),  # flax's default epsilon, as IDQL's code
            lecun_normal_linear(hidden_dim, 4 * hidden_dim),
            activation(),
            lecun_normal_linear(4 * hidden_dim, hidden_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"swish": nn.SiLU, "mish": nn.Mish}


class LNResNetDenoiser(nn.Module):
    """IDQL's "LN_Resnet" noise predictor eps_theta(s, a_t, t).

    time features: t -> FourierFeatures(time_dim) -> Dense(2 time_dim) -> act -> Dense(2 time_dim)
    trunk: concat[a_t, s, time features] -> Dense(H) -> num_blocks x ResidualBlock -> act -> Dense(A)

    Args:
        obs_dim, action_dim: S and A.
        hidden_dim: width H of the residual trunk (the blocks expand to 4H); 256 in IDQL.
        num_blocks: residual blocks; 3 in IDQL.
        dropout: dropout rate at the input of each block; 0.1 in IDQL. Only active in train mode.
        time_dim: number of Fourier features of t; 128 in the newest IDQL code (64 in its first version).
        activation: "swish" (SiLU; the newest IDQL code's default, used here) or "mish" (the paper's first version).

    The time MLP and the trunk's input and output layers use Glorot-uniform initialisation (`offrl.networks`), the
    residual blocks' layers LeCun normal (`lecun_normal_linear`), as IDQL's code has them.
    `forward(obs (B, S), noisy_actions (B, A), t (B,) integer or float steps) -> predicted noise (B, A)`.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        dropout: float = 0.1,
        time_dim: int = 128,
        activation: Literal["swish", "mish"] = "swish",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        act = _ACTIVATIONS[activation]
        self.time_features = FourierFeatures(time_dim)
        self.time_mlp = MLP(time_dim, (2 * time_dim,), 2 * time_dim, activation=act)
        self.input = glorot_linear(action_dim + obs_dim + 2 * time_dim, hidden_dim)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden_dim, dropout, act) for _ in range(num_blocks)))
        self.output = nn.Sequential(act(), glorot_linear(hidden_dim, action_dim))

    def forward(self, obs: torch.Tensor, noisy_actions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """obs (B, S), noisy_actions (B, A), t (B,) -> predicted noise (B, A)."""
        time = self.time_mlp(self.time_features(t.to(noisy_actions.dtype).unsqueeze(-1)))
        return self.output(self.blocks(self.input(torch.cat([noisy_actions, obs, time], -1))))
