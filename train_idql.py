"""Implicit Diffusion Q-Learning (IDQL), offline, with the update and the sampler compiled by torch.compile.

IDQL trains IQL's critic and, separately, a diffusion model of the behaviour policy; the two meet only at evaluation.
Three losses, one optimizer step over all of them (Adam for the critics, AdamW with cosine decay for the denoiser):
    value      L_V   = E[ L2^tau(min_i Qbar_i(s, a) - V(s)) ],  L2^tau(u) = |tau - 1(u < 0)| u^2   (Qbar: target critic)
    critic     L_Q   = E[ sum_i (Q_i(s, a) - y)^2 ],  y = r + gamma * mask * V(s')
    diffusion  L_eps = E[ sum_A (eps_theta(s, sqrt(abar_t) a + sqrt(1 - abar_t) eps, t) - eps)^2 ],  t ~ U{0..T-1}
The policy: sample N actions a_k from the EMA copy of the denoiser (T reverse DDPM steps, clipped to [-1, 1] after
every step) and take argmax_k min_i Qbar_i(s, a_k); `--extraction resample` draws a_k with probability proportional
to the expectile weight |tau - 1(Qbar(s, a_k) < V(s))| instead (the paper's implicit policy).

Paper: Hansen-Estruch et al., "IDQL: Implicit Q-Learning as an Actor-Critic Method with Diffusion Policies",
https://arxiv.org/abs/2304.10573
Usage: python train_idql.py --env-name cube-single-play-singletask-task1-v0
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Literal

import torch

from offrl.args import Preset, RunArgs, arg
from offrl.compile import CosineDecay, compiled, make_optimizer
from offrl.datasets import OfflineDataset, sample_batch
from offrl.diffusion import (
    DDPMSchedule,
    LNResNetDenoiser,
    ddpm_schedule,
    noise_prediction_loss,
    sample_actions,
    vp_beta_schedule,
)
from offrl.losses import expectile_loss
from offrl.members import per_member
from offrl.networks import MLP, EnsembleMLP, polyak_update_
from offrl.run import Agent, Run


@dataclass
class Args(RunArgs):
    # Algorithm
    discount: float = arg(0.99, at_least=0, at_most=1, per_member=True)
    """discount gamma (0.995 for antsoccer, humanoidmaze and antmaze-giant)"""
    tau: float = arg(0.005, at_least=0, at_most=1)
    """target critic Polyak rate, every step"""
    lr: float = arg(3e-4, above=0)
    """Adam learning rate of the critic and value networks"""
    hidden_dims: tuple[int, ...] = arg((512, 512, 512, 512), at_least=1, shape=True)
    """hidden layer widths of the critic and value networks: 4 x 512, the OGBench default all scripts share (the IDQL
    paper and code on D4RL: 256 256, ReLU, LayerNorm only at V's input)"""
    layer_norm: bool = arg(True, shape=True)
    """LayerNorm in the critic and value networks"""
    expectile: float = arg(0.9, above=0, below=1, per_member=True)
    """expectile tau of the value loss and of the resampling weights (0.9 OGBench and antmaze, 0.7 D4RL locomotion)"""
    diffusion_steps: int = arg(5, at_least=1)
    """DDPM steps T (variance-preserving beta schedule)"""
    num_candidates: int = arg(64, at_least=1)
    """actions N sampled per state at evaluation (the paper: 32 antmaze, 128 locomotion, 64 with one setting)"""
    extraction: Literal["argmax", "resample"] = "argmax"
    """argmax: the candidate with the highest min_i Qbar_i(s, a); resample: draw one with probability ~ |tau - 1(Q < V)|
    (the paper's implicit policy, expectile weights)"""
    actor_lr: float = arg(3e-4, above=0)
    """AdamW learning rate of the denoiser"""
    actor_weight_decay: float = arg(1e-4, at_least=0)
    """AdamW (decoupled) weight decay of the denoiser"""
    actor_cosine_decay: bool = True
    """cosine decay of the denoiser's learning rate to 0 over all updates (offline and online)"""
    ema_rate: float = arg(0.001, at_least=0, at_most=1)
    """rate of the denoiser's exponential moving average (the copy that samples), every step"""
    denoiser_hidden_dim: int = arg(256, at_least=1, shape=True)
    """width of the LN-ResNet denoiser (its residual blocks expand to 4x this)"""
    denoiser_blocks: int = arg(3, at_least=0, shape=True)
    """residual blocks of the denoiser"""
    denoiser_time_dim: int = arg(128, at_least=1, shape=True)
    """Fourier features of the diffusion step t"""
    denoiser_activation: Literal["swish", "mish"] = "swish"
    """denoiser activation: swish (the newest IDQL code) or mish (the paper's first version)"""
    dropout: float = arg(0.1, at_least=0, below=1)
    """dropout rate in the denoiser's residual blocks (training only)"""


# Recommended settings per domain, applied to every run (flags given win; --no-presets: off).
IDQL_PAPER = "Hansen-Estruch et al., IDQL, https://arxiv.org/abs/2304.10573, Section 6 and Appendix (D4RL settings)"
FQL_README = "FQL repository README, https://github.com/seohongpark/fql (discount of FQL and its baselines there)"
PRESETS = (
    Preset(r"antsoccer-|humanoidmaze-|antmaze-giant-", {"discount": 0.995}, FQL_README),
    Preset(r"mujoco/", {"expectile": 0.7, "num_candidates": 128}, IDQL_PAPER + ", locomotion"),
    Preset(r"D4RL/antmaze/", {"expectile": 0.9, "num_candidates": 32}, IDQL_PAPER + ", antmaze"),
)


@per_member  # a group of members (--seeds 0 1 2): these losses run once for all of them (offrl.members)
def idql_losses(batch: dict[str, torch.Tensor], nets: dict[str, torch.nn.Module], schedule: DDPMSchedule, args: Args):
    """The three IDQL losses on one batch. Returns (total loss, detached metrics).

    batch: observations (B, S), actions (B, A), rewards (B,), next_observations (B, S), masks (B,).
    nets: critic (2 heads -> (2, B, 1)), target_critic, value ((B, 1)), denoiser (eps_theta(s, a_t, t) -> (B, A)).
    """
    obs, actions = batch["observations"], batch["actions"]
    obs_actions = torch.cat([obs, actions], -1)
    # L_V = E[L2^tau(min_i Qbar_i(s, a) - V(s))]
    with torch.no_grad():
        target_q = nets["target_critic"](obs_actions).squeeze(-1).min(0).values
    v = nets["value"](obs).squeeze(-1)
    value_loss = expectile_loss(target_q - v, args.expectile).mean()
    # L_Q = E[sum_i (Q_i(s, a) - (r + gamma * mask * V(s')))^2]
    with torch.no_grad():
        next_v = nets["value"](batch["next_observations"]).squeeze(-1)
        target = batch["rewards"] + args.discount * batch["masks"] * next_v
    q = nets["critic"](obs_actions).squeeze(-1)
    critic_loss = (q - target).square().sum(0).mean()
    # L_eps = E[sum_A (eps_theta(s, sqrt(abar_t) a + sqrt(1 - abar_t) eps, t) - eps)^2],  t ~ U{0..T-1}, eps ~ N(0, I)
    diffusion_loss = noise_prediction_loss(nets["denoiser"], schedule, obs, actions)

    metrics = {
        "loss/value": value_loss,
        "loss/critic": critic_loss,
        "loss/diffusion": diffusion_loss,
        "value/v_mean": v.mean(),
        "critic/q_mean": q.mean(),
        "critic/q_max": q.max(),
        "critic/q_min": q.min(),
    }
    return value_loss + critic_loss + diffusion_loss, {k: v.detach() for k, v in metrics.items()}


def select_actions(
    obs: torch.Tensor, nets: dict[str, torch.nn.Module], schedule: DDPMSchedule, action_dim: int, args: Args
) -> torch.Tensor:
    """obs (B, S) -> actions (B, A): N candidates per state from the EMA denoiser, one chosen with the target critic.

    All B * N candidates go through each denoising step in one batch; shapes depend only on B and N.
    """
    batch, num = obs.shape[0], args.num_candidates
    repeated = obs.repeat_interleave(num, 0)  # row b * N + k: candidate k of state b
    candidates = sample_actions(nets["ema_denoiser"], schedule, repeated, action_dim)
    q = nets["target_critic"](torch.cat([repeated, candidates], -1)).squeeze(-1).min(0).values.view(batch, num)
    if args.extraction == "argmax":
        chosen = q.argmax(-1)  # pi(s) = argmax_k min_i Qbar_i(s, a_k)
    else:
        # a ~ Categorical(w_k / sum_j w_j),  w_k = |tau - 1(Qbar(s, a_k) < V(s))|
        weights = torch.where(q < nets["value"](obs), 1.0 - args.expectile, args.expectile)
        # drawn as argmax_k w_k / E_k, E_k ~ Exp(1) (P(k) = w_k / sum_j w_j): unlike torch.multinomial on CUDA, this
        # never checks its input on the host, so it needs no sync and can be captured in a CUDA graph
        chosen = (weights / torch.empty_like(weights).exponential_()).argmax(-1)
    return candidates.view(batch, num, action_dim)[torch.arange(batch, device=obs.device), chosen]


def build(args: Args, data: OfflineDataset, device: torch.device) -> Agent:
    """Twin critic ensemble with its target copy, value network, LN-ResNet denoiser and its EMA copy (eval mode).

    One AdamW: without weight decay it is Adam (critic and value); the denoiser gets decoupled weight decay and, by
    default, a cosine decay of its learning rate. The policy (N candidates, one chosen) is compiled here too.
    """
    obs_dim, action_dim = data.observation_dim, data.action_dim
    critic = EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    denoiser = LNResNetDenoiser(
        obs_dim,
        action_dim,
        hidden_dim=args.denoiser_hidden_dim,
        num_blocks=args.denoiser_blocks,
        dropout=args.dropout,
        time_dim=args.denoiser_time_dim,
        activation=args.denoiser_activation,
    )
    nets = {
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
        "value": MLP(obs_dim, args.hidden_dims, 1, layer_norm=args.layer_norm),
        "denoiser": denoiser,
        "ema_denoiser": copy.deepcopy(denoiser).requires_grad_(False).eval(),  # only samples: dropout always off
    }
    nets = {name: net.to(device) for name, net in nets.items()}
    schedule = ddpm_schedule(vp_beta_schedule(args.diffusion_steps)).to(device)
    critic_and_value = [*nets["critic"].parameters(), *nets["value"].parameters()]
    optimizer = make_optimizer(
        torch.optim.AdamW,
        [
            {"params": critic_and_value, "lr": args.lr, "weight_decay": 0.0},
            {
                "params": list(nets["denoiser"].parameters()),
                "lr": args.actor_lr,
                "weight_decay": args.actor_weight_decay,
            },
        ],
        device,
    )
    actor_lr = optimizer.param_groups[1]["lr"]
    lr_decay = (
        CosineDecay(optimizer.param_groups[1], args.actor_lr, args.total_steps + args.online_steps)
        if args.actor_cosine_decay
        else None
    )
    critic_params, target_params = list(nets["critic"].parameters()), list(nets["target_critic"].parameters())
    denoiser_params, ema_params = list(nets["denoiser"].parameters()), list(nets["ema_denoiser"].parameters())

    def update() -> dict[str, torch.Tensor]:
        loss, metrics = idql_losses(data.sample(args.batch_size), nets, schedule, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        polyak_update_(ema_params, denoiser_params, args.ema_rate)  # EMA <- (1 - rate) EMA + rate theta
        if lr_decay is not None:
            lr_decay()  # denoiser lr <- lr0 * (1 + cos(pi * step / (total_steps + online_steps))) / 2
        return {**metrics, "actor/lr": actor_lr.clone()}

    def validation() -> dict[str, torch.Tensor]:
        nets["denoiser"].eval()  # the validation DDPM loss without dropout
        with torch.no_grad():
            _, metrics = idql_losses(sample_batch(data.val, args.batch_size), nets, schedule, args)
        nets["denoiser"].train()
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    def select(obs: torch.Tensor) -> torch.Tensor:  # evaluation keeps obs (min(eval_envs, eval_episodes), S)
        return select_actions(obs, nets, schedule, action_dim, args)

    def select_online(obs: torch.Tensor) -> torch.Tensor:  # online: one observation (1, S), the same selection
        return select_actions(obs, nets, schedule, action_dim, args)

    policy = compiled(select, args.compile, args.cudagraphs, device, name="policy")  # one compiled shape
    explore = compiled(select_online, args.compile, args.cudagraphs, device, name="explore")
    state = {**nets, "optimizer": optimizer, **({"actor_lr_decay": lr_decay} if lr_decay is not None else {})}
    return Agent(nets=nets, update=update, policy=policy, state=state, validation=validation, explore=explore)


def main(argv: list[str] | None = None) -> int:
    with Run(__file__, Args, PRESETS, argv) as run:
        agent = run.build(build)  # build(run.args, run.data, run.device); with --seeds, once per member
        update = compiled(agent.update, run.args.compile, run.args.cudagraphs, run.device)
        run.start(agent)  # --resume: restores its checkpoint; a new run: evaluates at step 0
        for step in run.steps():  # to --total-steps (+ --online-steps), or until Ctrl-C/SIGTERM
            if run.in_online_phase(step):  # --online-steps: one environment step, its transition into the buffer
                run.act(agent.explore)
            metrics = update()
            if run.log_due(step):
                run.log(step, metrics, agent.validation)
            if run.eval_due(step):
                run.evaluate(step, agent.policy)
            if run.save_due(step):
                run.save(step)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
