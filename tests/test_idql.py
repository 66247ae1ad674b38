"""train_idql.py: losses against hand-computed values, action selection, the sampler's options and schedules in real
runs. The behaviour every script shares (end to end on both dataset families, resume, SIGTERM, NaN guard, --help) is
in tests/test_scripts.py; learning on the toy task is in tests/test_learning.py."""

import math

import pytest
import torch
from torch import nn

import train_idql
from offrl.diffusion import ddpm_schedule, noise_prediction_loss, sample_actions, vp_beta_schedule
from tests.helpers import Constant, ValueOf, random_data, read_scalars, run_script, value_hand_batch
from tests.test_scripts import check_results

TINY = ["--hidden-dims", "32", "32", "--batch-size", "64", "--eval-episodes", "2", "--eval-envs", "2",
        "--num-candidates", "4", "--denoiser-hidden-dim", "32", "--denoiser-time-dim", "16"]  # fmt: skip
SCHEDULE = ddpm_schedule(vp_beta_schedule(5))


# ----------------------------------------------------------------------------------------------------------------
# Losses on hand-made batches


class LinearNoise(nn.Module):
    """eps_theta(s, a_t, t) = w * a_t: a denoiser with one parameter."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.5))

    def forward(self, obs, noisy_actions, t):
        return self.weight * noisy_actions


def hand_nets():
    return {
        "critic": Constant([[1.5, 4.0], [2.5, 1.0]]),  # Q_1 = (1.5, 4), Q_2 = (2.5, 1)
        "target_critic": Constant([[0.0, 3.0], [2.0, 1.0]]),  # min_i Qbar_i = (0, 1)
        "value": ValueOf(),  # V(s) = (1, 2); V(s') = (3, 5)
        "denoiser": LinearNoise(),
        "ema_denoiser": LinearNoise().requires_grad_(False),
    }


def test_idql_losses_by_hand():
    args = train_idql.Args(discount=0.5, expectile=0.9)
    nets, batch = hand_nets(), value_hand_batch()
    torch.manual_seed(3)
    _, metrics = train_idql.idql_losses(batch, nets, SCHEDULE, args)
    # value: u = min Qbar - V = (0 - 1, 1 - 2) = (-1, -1): both below 0 -> weight 0.1
    assert metrics["loss/value"].item() == pytest.approx(0.1 * 1.0)
    # critic: y = r + gamma * mask * V(s') = (-1 + 0.5 * 1 * 3, 0 + 0) = (0.5, 0)
    # sum over heads, mean over batch: ((1.5 - .5)^2 + (2.5 - .5)^2 + (4 - 0)^2 + (1 - 0)^2) / 2
    assert metrics["loss/critic"].item() == pytest.approx((1.0 + 4.0 + 16.0 + 1.0) / 2)
    # diffusion: the DDPM noise-prediction loss, the same draws as offrl.diffusion makes
    torch.manual_seed(3)
    expected = noise_prediction_loss(nets["denoiser"], SCHEDULE, batch["observations"], batch["actions"])
    assert metrics["loss/diffusion"].item() == pytest.approx(expected.item())
    torch.manual_seed(3)  # and by hand: sum_A (w * a_t - eps)^2 with a_t = sqrt(abar_t) a + sqrt(1 - abar_t) eps
    t, noise = torch.randint(5, (2,)), torch.randn(2, 1)
    alpha_bar = SCHEDULE.alpha_bars[t].unsqueeze(-1)
    noisy = alpha_bar.sqrt() * batch["actions"] + (1 - alpha_bar).sqrt() * noise
    assert metrics["loss/diffusion"].item() == pytest.approx(((0.5 * noisy - noise) ** 2).sum(-1).mean().item())


def test_idql_backup_uses_masks_not_terminals():
    args = train_idql.Args(discount=0.5)
    batch = value_hand_batch()
    _, with_masks = train_idql.idql_losses(batch, hand_nets(), SCHEDULE, args)
    batch["terminals"] = torch.tensor([1.0, 0.0])  # swapped: the loss must not change
    _, swapped_terminals = train_idql.idql_losses(batch, hand_nets(), SCHEDULE, args)
    assert with_masks["loss/critic"] == swapped_terminals["loss/critic"]
    batch["masks"] = torch.tensor([1.0, 1.0])  # bootstrapping now also on the second row: y = (0.5, 2.5)
    _, both = train_idql.idql_losses(batch, hand_nets(), SCHEDULE, args)
    assert both["loss/critic"].item() == pytest.approx((1.0 + 4.0 + 1.5**2 + 1.5**2) / 2)


def test_idql_gradients_go_where_they_should():
    args = train_idql.Args(discount=0.5)
    nets, batch = hand_nets(), value_hand_batch()
    loss, _ = train_idql.idql_losses(batch, nets, SCHEDULE, args)
    loss.backward()
    assert nets["target_critic"].weight.grad is None  # target critic: no gradient
    assert nets["ema_denoiser"].weight.grad is None  # EMA denoiser: no gradient
    assert nets["critic"].weight.grad is not None and nets["denoiser"].weight.grad is not None
    # dL/dV offset: only the value loss (the critic target uses V(s') under stop-gradient)
    # d/dc mean(0.1 * (u - c)^2) at u = -1 -> mean(-0.2 * u) = 0.2
    assert nets["value"].offset.grad.item() == pytest.approx(0.2)


def test_real_networks_gradients():
    args = train_idql.Args(hidden_dims=(8,), denoiser_hidden_dim=8, denoiser_time_dim=4)
    nets = train_idql.build(args, random_data(2, 1), torch.device("cpu")).nets
    assert not nets["ema_denoiser"].training and nets["denoiser"].training
    loss, _ = train_idql.idql_losses(value_hand_batch(), nets, SCHEDULE, args)
    loss.backward()
    for name in ("target_critic", "ema_denoiser"):
        assert all(p.grad is None and not p.requires_grad for p in nets[name].parameters()), name
    for name in ("critic", "value", "denoiser"):
        assert all(p.grad is not None for p in nets[name].parameters()), name


# ----------------------------------------------------------------------------------------------------------------
# Action selection


class SecondActionCritic(nn.Module):
    """Qbar_1(s, a) = a_1, Qbar_2(s, a) = -a_1, so min_i Qbar_i = -|a_1|. Input concat[s (3), a (2)]."""

    def forward(self, obs_actions):
        second = obs_actions[:, 4]
        return torch.stack([second, -second]).unsqueeze(-1)


class ConstantValue(nn.Module):
    """V(s) = a fixed number for every state: (B, S) -> (B, 1)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, obs):
        return torch.full((obs.shape[0], 1), self.value)


def selection_nets(value: float = 0.0):
    torch.manual_seed(0)
    denoiser = train_idql.LNResNetDenoiser(3, 2, hidden_dim=16, time_dim=8).eval()
    return {"ema_denoiser": denoiser, "target_critic": SecondActionCritic(), "value": ConstantValue(value)}


def test_argmax_takes_the_best_candidate_under_the_min_of_the_target_critics():
    nets, obs = selection_nets(), torch.randn(5, 3)
    args = train_idql.Args(num_candidates=16)
    torch.manual_seed(0)
    actions = train_idql.select_actions(obs, nets, SCHEDULE, 2, args)
    torch.manual_seed(0)
    candidates = sample_actions(nets["ema_denoiser"], SCHEDULE, obs.repeat_interleave(16, 0), 2).view(5, 16, 2)
    best = candidates[:, :, 1].abs().argmin(1)  # argmax of -|a_1|: the min over the heads, not their mean
    torch.testing.assert_close(actions, candidates[torch.arange(5), best])
    assert actions.shape == (5, 2) and actions.abs().max() <= 1.0
    assert train_idql.select_actions(obs[:1], nets, SCHEDULE, 2, args).shape == (1, 2)  # any batch size


def test_resampling_follows_the_expectile_weights():
    nets, obs = selection_nets(), torch.zeros(4000, 3)
    args = train_idql.Args(num_candidates=4, extraction="resample", expectile=0.9)
    torch.manual_seed(1)
    candidates = sample_actions(nets["ema_denoiser"], SCHEDULE, obs.repeat_interleave(4, 0), 2).view(4000, 4, 2)
    q = -candidates[:, :, 1].abs()
    nets["value"].value = q.median().item()  # V(s): half the candidates above it
    torch.manual_seed(1)
    actions = train_idql.select_actions(obs, nets, SCHEDULE, 2, args)
    above = q >= nets["value"].value  # Qbar(s, a_k) >= V(s): weight tau, else 1 - tau
    weights = torch.where(above, 0.9, 0.1)
    chosen = (candidates == actions[:, None]).all(-1)
    assert (chosen.sum(1) >= 1).all()  # always one of the candidates
    expected = (weights * above).sum(1) / weights.sum(1)  # P(the pick is above V) per state
    picked_above = (chosen & above).any(1).float()
    assert 0.1 < expected.mean() < 0.9  # both kinds of candidates occur
    assert picked_above.mean().item() == pytest.approx(expected.mean().item(), abs=4 * 0.5 / math.sqrt(4000))


# ----------------------------------------------------------------------------------------------------------------
# Runs


@pytest.mark.slow
@pytest.mark.parametrize("compile_flag", ["--no-compile", "--compile"])
def test_resampling_mish_and_cosine_schedule_in_a_run(minari_dir, tmp_path, compile_flag):
    run_dir = tmp_path / "run"
    run_script(
        "train_idql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir),
        "--total-steps", "10", "--eval-every", "10", "--log-every", "5", "--run-dir", str(run_dir), compile_flag,
        "--extraction", "resample", "--denoiser-activation", "mish", *TINY,
    )  # fmt: skip
    check_results(run_dir, "train_idql.py", "test/pendulum/random-v0", [0, 10], ogbench=False)
    scalars = read_scalars(run_dir)
    for tag in ("loss/critic", "loss/value", "loss/diffusion", "critic/q_mean", "value/v_mean"):
        assert sorted(scalars[tag]) == [5, 10], tag
    lr = scalars["actor/lr"]  # cosine decay of the denoiser's learning rate over --total-steps
    assert lr[5] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-5)
    assert lr[10] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_target_and_ema_copies_follow_their_rates(minari_dir, tmp_path):
    def one_step(rate: str) -> dict:  # one update; its online networks do not depend on the rates
        run_script(
            "train_idql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
            "--total-steps", "1", "--eval-every", "1", "--run-dir", str(tmp_path / rate), "--tau", rate,
            "--ema-rate", rate, *TINY,
        )  # fmt: skip
        return torch.load(tmp_path / rate / "checkpoint.pt", weights_only=False)["state"]

    frozen, half, full = one_step("0"), one_step("0.5"), one_step("1")
    for online, copy in (("critic", "target_critic"), ("denoiser", "ema_denoiser")):
        for key, after in half[online].items():
            torch.testing.assert_close(frozen[online][key], after, rtol=0, atol=0)
            torch.testing.assert_close(full[copy][key], after, rtol=0, atol=0)  # rate 1: copy <- online
            initial = frozen[copy][key]  # rate 0: the copy keeps its initial value
            torch.testing.assert_close(half[copy][key], (initial + after) / 2)  # copy <- (1 - rate) copy + rate online
        assert any(not torch.equal(frozen[copy][k], v) for k, v in half[online].items())  # the update moved it


def test_bad_input_messages():
    for flag in ("--num-candidates", "--diffusion-steps"):
        result = run_script("train_idql.py", flag, "0", check=False)
        assert result.returncode == 1 and f"{flag} must be positive" in result.stderr, flag
        assert "Traceback" not in result.stderr
    result = run_script("train_idql.py", "--extraction", "softmax", check=False)
    assert result.returncode != 0 and "extraction" in result.stderr and "Traceback" not in result.stderr
