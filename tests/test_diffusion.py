"""offrl.diffusion: the VP schedule, forward noising, DDPM loss and reverse steps against hand-computed values,
clipping, the LN-ResNet denoiser, and a bimodal fit that a Gaussian cannot make."""

import math

import pytest
import torch
from torch import nn

from offrl.diffusion import (
    FourierFeatures,
    LNResNetDenoiser,
    ddpm_schedule,
    noise_prediction_loss,
    q_sample,
    reverse_step,
    sample_actions,
    vp_beta_schedule,
)

# VP schedule by hand for T = 5, b_min = 0.1, b_max = 10: alpha_t = exp(-b_min / T - 0.5 (b_max - b_min)(2t - 1) / T^2)
ALPHAS = [math.exp(-0.1 / 5 - 0.5 * 9.9 * (2 * t - 1) / 25) for t in range(1, 6)]
BETAS = [1.0 - a for a in ALPHAS]
ALPHA_BARS = [math.prod(ALPHAS[: t + 1]) for t in range(5)]


class FixedNoise(nn.Module):
    """A denoiser that predicts the same noise for every input and records what it was called with."""

    def __init__(self, noise):
        super().__init__()
        self.noise = torch.as_tensor(noise, dtype=torch.float32)
        self.calls = []

    def forward(self, obs, noisy_actions, t):
        self.calls.append((obs.clone(), noisy_actions.clone(), t.clone()))
        return self.noise.expand_as(noisy_actions)


# ----------------------------------------------------------------------------------------------------------------
# Schedule, forward process, loss, reverse step


def test_vp_schedule_matches_the_formula():
    assert BETAS == pytest.approx([0.19587, 0.45882, 0.63578, 0.75488, 0.83503], abs=1e-5)  # written out
    torch.testing.assert_close(vp_beta_schedule(5), torch.tensor(BETAS))
    schedule = ddpm_schedule(vp_beta_schedule(5))
    torch.testing.assert_close(schedule.alphas, torch.tensor(ALPHAS))
    torch.testing.assert_close(schedule.alpha_bars, torch.tensor(ALPHA_BARS))
    assert schedule.num_steps == 5 and ALPHA_BARS[-1] == pytest.approx(0.0064, abs=1e-4)  # nearly pure noise at T


def test_forward_noising_by_hand():
    schedule = ddpm_schedule(vp_beta_schedule(5))
    actions = torch.tensor([[0.5, -1.0], [0.2, 0.0]])
    noise = torch.tensor([[1.0, 2.0], [-0.5, 0.3]])
    t = torch.tensor([2, 0])

    def noised(a, n, t):  # sqrt(abar_t) a + sqrt(1 - abar_t) eps
        return math.sqrt(ALPHA_BARS[t]) * a + math.sqrt(1 - ALPHA_BARS[t]) * n

    expected = [[noised(0.5, 1.0, 2), noised(-1.0, 2.0, 2)], [noised(0.2, -0.5, 0), noised(0.0, 0.3, 0)]]
    torch.testing.assert_close(q_sample(schedule, actions, t, noise), torch.tensor(expected))


def test_noise_prediction_loss_by_hand():
    schedule = ddpm_schedule(vp_beta_schedule(5))
    denoiser = FixedNoise([0.5, -0.5])
    obs, actions = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1
    torch.manual_seed(7)
    loss = noise_prediction_loss(denoiser, schedule, obs, actions)
    torch.manual_seed(7)  # the same draws, in the same order: t ~ U{0..T-1}, then eps ~ N(0, I)
    t = torch.randint(5, (6,))
    noise = torch.randn(6, 2)
    _, noisy_actions, called_t = denoiser.calls[0]
    torch.testing.assert_close(called_t, t)
    torch.testing.assert_close(noisy_actions, q_sample(schedule, actions, t, noise))
    expected = ((torch.tensor([0.5, -0.5]) - noise) ** 2).sum(-1).mean()  # sum over A, mean over B
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_reverse_step_by_hand():
    schedule = ddpm_schedule(vp_beta_schedule(5))
    eps, x, z = [0.1, -0.2], [0.3, -0.4], [0.5, -0.25]
    denoiser = FixedNoise(eps)
    obs = torch.zeros(1, 3)
    for t in (3, 1):
        out = reverse_step(denoiser, schedule, obs, torch.tensor([x]), t, torch.tensor([z]))
        beta, alpha, alpha_bar = BETAS[t], ALPHAS[t], ALPHA_BARS[t]
        expected = [
            (xi - beta / math.sqrt(1 - alpha_bar) * ei) / math.sqrt(alpha) + math.sqrt(beta) * zi
            for xi, ei, zi in zip(x, eps, z, strict=True)
        ]
        assert all(abs(v) < 1 for v in expected)  # these values need no clipping
        torch.testing.assert_close(out, torch.tensor([expected]))
        assert denoiser.calls[-1][2].tolist() == [t]
    # t = 0: no noise is added (none needs to be passed)
    out = reverse_step(denoiser, schedule, obs, torch.tensor([x]), 0, None)
    scale = BETAS[0] / math.sqrt(1 - ALPHA_BARS[0])
    expected = [(xi - scale * ei) / math.sqrt(ALPHAS[0]) for xi, ei in zip(x, eps, strict=True)]
    torch.testing.assert_close(out, torch.tensor([expected]))
    # a step that would leave [-1, 1] is clipped: eps = 1 pushes x = -0.9 down at t = 4
    out = reverse_step(FixedNoise([1.0, -1.0]), schedule, obs, torch.tensor([[-0.9, 0.9]]), 4, torch.zeros(1, 2))
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0]]))


@pytest.mark.parametrize("push", [-50.0, 50.0])
def test_sampling_never_leaves_the_action_box(push):
    schedule = ddpm_schedule(vp_beta_schedule(5))
    denoiser = FixedNoise([push, -push])  # predicted noise this large drives every step far outside [-1, 1]
    torch.manual_seed(0)
    actions = sample_actions(denoiser, schedule, torch.zeros(64, 3), 2)
    assert actions.shape == (64, 2) and actions.abs().max() <= 1.0
    sign = -1.0 if push > 0 else 1.0
    torch.testing.assert_close(actions, torch.tensor([[sign, -sign]]).expand(64, 2))
    assert [call[2][0].item() for call in denoiser.calls] == [4, 3, 2, 1, 0]  # T reverse steps, t = T-1 .. 0
    for _, noisy_actions, _ in denoiser.calls[1:]:  # every step's output was clipped before the next step saw it
        assert noisy_actions.abs().max() <= 1.0


@pytest.mark.slow
def test_sampling_traces_into_one_graph():
    schedule = ddpm_schedule(vp_beta_schedule(5))
    denoiser = LNResNetDenoiser(3, 2, hidden_dim=16, num_blocks=1, time_dim=8).eval()
    compiled = torch.compile(lambda obs: sample_actions(denoiser, schedule, obs, 2), fullgraph=True, backend="eager")
    actions = compiled(torch.randn(5, 3))  # fullgraph=True: any data-dependent Python control flow would raise
    assert actions.shape == (5, 2) and actions.abs().max() <= 1.0


# ----------------------------------------------------------------------------------------------------------------
# The denoiser


def test_fourier_features():
    torch.manual_seed(0)
    features = FourierFeatures(2000)
    assert features.weight.shape == (1000, 1) and features.weight.std().item() == pytest.approx(0.2, rel=0.1)
    t = torch.tensor([[0.0], [2.0]])
    out = features(t)
    angles = 2 * math.pi * 2.0 * features.weight[:, 0]
    torch.testing.assert_close(out[0], torch.cat([torch.ones(1000), torch.zeros(1000)]))  # cos(0), sin(0)
    torch.testing.assert_close(out[1], torch.cat([angles.cos(), angles.sin()]))
    assert features.weight.requires_grad  # learnable


def test_ln_resnet_denoiser_structure_and_dropout():
    denoiser = LNResNetDenoiser(5, 3)
    assert len(denoiser.blocks) == 3 and isinstance(denoiser.output[0], nn.SiLU)  # swish: the newest code's default
    assert denoiser.input.in_features == 3 + 5 + 256 and denoiser.input.out_features == 256
    block = denoiser.blocks[0].net
    assert [type(m) for m in block] == [nn.Dropout, nn.LayerNorm, nn.Linear, nn.SiLU, nn.Linear]
    assert block[0].p == 0.1 and block[2].out_features == 1024 and block[4].out_features == 256
    assert isinstance(LNResNetDenoiser(5, 3, activation="mish").output[0], nn.Mish)
    with pytest.raises(ValueError, match="activation"):
        LNResNetDenoiser(5, 3, activation="relu")
    obs, noisy, t = torch.randn(4, 5), torch.randn(4, 3), torch.tensor([0, 1, 2, 4])
    assert denoiser(obs, noisy, t).shape == (4, 3)
    assert not torch.equal(denoiser(obs, noisy, t), denoiser(obs, noisy, t))  # train mode: dropout
    denoiser.eval()
    torch.testing.assert_close(denoiser(obs, noisy, t), denoiser(obs, noisy, t), rtol=0, atol=0)
    assert not torch.allclose(denoiser(obs, noisy, t), denoiser(obs, noisy, t + 1))  # the step matters


# ----------------------------------------------------------------------------------------------------------------
# Expressivity: a bimodal action distribution


MODES = torch.tensor([[0.6, 0.6], [-0.6, -0.6]])


def bimodal_actions(n: int) -> torch.Tensor:
    return MODES[torch.randint(2, (n,))] + 0.05 * torch.randn(n, 2)


def mode_fractions(samples: torch.Tensor) -> tuple[float, float, float]:
    """Fractions of samples within 0.3 of each mode, and in the middle third of the segment between the modes."""
    at_plus = ((samples - MODES[0]).norm(dim=-1) < 0.3).float().mean().item()
    at_minus = ((samples - MODES[1]).norm(dim=-1) < 0.3).float().mean().item()
    between = (samples.mean(-1).abs() < 0.2).float().mean().item()
    return at_plus, at_minus, between


def captures_both_modes(samples: torch.Tensor) -> bool:
    at_plus, at_minus, between = mode_fractions(samples)
    return at_plus >= 0.25 and at_minus >= 0.25 and between < 0.15


def test_diffusion_captures_two_modes_and_a_gaussian_does_not():
    torch.manual_seed(0)
    schedule = ddpm_schedule(vp_beta_schedule(5))
    denoiser = LNResNetDenoiser(1, 2, hidden_dim=64, time_dim=16)
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=1e-3, weight_decay=1e-4)
    obs = torch.zeros(256, 1)  # a constant state
    for _ in range(1500):
        loss = noise_prediction_loss(denoiser, schedule, obs, bimodal_actions(256))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        samples = sample_actions(denoiser.eval(), schedule, torch.zeros(4000, 1), 2)
    assert captures_both_modes(samples), mode_fractions(samples)

    # The maximum-likelihood Gaussian (empirical mean and full covariance) of the same data puts its mass between.
    data = bimodal_actions(4000)
    gaussian = torch.distributions.MultivariateNormal(data.mean(0), torch.cov(data.T)).sample((4000,))
    assert not captures_both_modes(gaussian), mode_fractions(gaussian)
    assert mode_fractions(gaussian)[2] > 0.2


def test_residual_blocks_start_as_flax_dense_defaults():
    """IDQL's residual blocks leave flax's Dense init (LeCun normal, truncated at 2 std); the other layers Glorot."""
    torch.manual_seed(0)
    denoiser = LNResNetDenoiser(obs_dim=20, action_dim=4, hidden_dim=256, num_blocks=1)
    expand, project = (m for m in denoiser.blocks[0].net if isinstance(m, torch.nn.Linear))
    for layer, fan_in in ((expand, 256), (project, 1024)):
        std = layer.weight.std().item()
        assert std == pytest.approx(math.sqrt(1.0 / fan_in), rel=0.02)
        assert layer.weight.abs().max().item() <= 2 * math.sqrt(1.0 / fan_in) / 0.87962566103423978
        assert torch.all(layer.bias == 0)
    glorot_limit = math.sqrt(6.0 / (denoiser.input.in_features + 256))
    assert denoiser.input.weight.abs().max().item() <= glorot_limit
