"""SAC+BC: soft actor-critic with a behaviour-cloning penalty, offline, with the update compiled by torch.compile.

Twin critics, a tanh-Gaussian actor with state-dependent std and a learned entropy temperature beta:
    critic  L_Q  = E[ sum_i (Q_i(s, a) - y)^2 ],  y = r + gamma * mask * mean_j Qbar_j(s', a'),  a' ~ pi(. | s')
            (no entropy term in the backup; the MEAN of the two target critics, not the min)
    actor   L_pi = E[ -mean_i Q_i(s, a_pi) + (alpha / |A|) ||a - a_pi||^2 + beta * log pi(a_pi | s) ],  a_pi ~ pi(. | s)
    beta    L_b  = beta * (H - H_target),  H = -E[log pi(a_pi | s)] (stop-gradient),  H_target = -|A| / 2
alpha is the behaviour-cloning knob (300 on cube-single, 3 on antsoccer; sweep 30-1000). Evaluation uses tanh(mean).

Papers: Haarnoja et al., "Soft Actor-Critic", https://arxiv.org/abs/1801.01290 (+ a BC term as in TD3+BC,
https://arxiv.org/abs/2106.06860); the OGBench/FQL baselines, https://arxiv.org/abs/2502.02538
Usage: python train_sacbc.py --env-name cube-single-play-singletask-task1-v0 --alpha 300
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass

import torch

from offrl.args import Preset, RunArgs, arg
from offrl.compile import compiled, make_optimizer
from offrl.datasets import OfflineDataset, sample_batch
from offrl.members import per_member
from offrl.networks import EnsembleMLP, GaussianActor, call_frozen, polyak_update_
from offrl.run import Agent, Run


@dataclass
class Args(RunArgs):
    # Algorithm
    discount: float = arg(0.99, at_least=0, at_most=1, per_member=True)
    """discount gamma (0.995 for antsoccer, humanoidmaze and antmaze-giant)"""
    tau: float = arg(0.005, at_least=0, at_most=1)
    """target critic Polyak rate, every step"""
    lr: float = arg(3e-4, above=0)
    """Adam learning rate for the critic, the actor and the temperature"""
    hidden_dims: tuple[int, ...] = arg((512, 512, 512, 512), at_least=1, shape=True)
    """hidden layer widths of the actor and critic networks"""
    layer_norm: bool = arg(True, shape=True)
    """LayerNorm in the critic networks"""
    alpha: float = arg(300.0, at_least=0, per_member=True)
    """behaviour-cloning coefficient: the actor pays (alpha / |A|) ||a - a_pi||^2 (cube-single 300, antsoccer 3)"""
    target_entropy_multiplier: float = 0.5
    """target entropy H_target = -multiplier * |A|"""
    initial_temperature: float = arg(1.0, above=0)
    """initial entropy temperature beta"""


# Recommended settings per domain, applied to every run (flags given win; --no-presets: off).
OGATA_POST = 'Mark Ogata, "Offline RL: SAC+BC, IQL, and Flow Q-Learning" (blog post), best of alpha 30, 100, 300, 1000'
FQL_README = "FQL repository README, https://github.com/seohongpark/fql (discount of FQL and its baselines there)"
PRESETS = (
    Preset(r"antsoccer-|humanoidmaze-|antmaze-giant-", {"discount": 0.995}, FQL_README),
    Preset(r"cube-single-", {"alpha": 300.0}, OGATA_POST),
    Preset(r"antsoccer-", {"alpha": 3.0}, OGATA_POST),
)


def critic_target(rewards: torch.Tensor, masks: torch.Tensor, next_q: torch.Tensor, discount: float) -> torch.Tensor:
    """y = r + gamma * mask * mean_j Qbar_j(s', a'): rewards, masks (B,), next_q (2, B) -> (B,). No entropy term."""
    return rewards + discount * masks * next_q.mean(0)


@per_member  # a group of members (--seeds 0 1 2): these losses run once for all of them (offrl.members)
def sacbc_losses(batch: dict[str, torch.Tensor], nets: dict[str, torch.nn.Module], args: Args):
    """The SAC+BC losses on one batch. Returns (total loss, detached metrics).

    batch: observations (B, S), actions (B, A), rewards (B,), next_observations (B, S), masks (B,).
    nets: actor (tanh-Gaussian), critic (2 heads -> (2, B)), target_critic, log_temperature (scalar parameter).
    """
    obs, actions = batch["observations"], batch["actions"]
    action_dim = actions.shape[-1]
    temperature = nets["log_temperature"].log_value.exp()
    # L_Q = E[sum_i (Q_i(s, a) - y)^2],  y = r + gamma * mask * mean_j Qbar_j(s', a'),  a' ~ pi(. | s')
    with torch.no_grad():
        next_actions, _ = nets["actor"].sample(batch["next_observations"])
        next_q = nets["target_critic"](torch.cat([batch["next_observations"], next_actions], -1)).squeeze(-1)
        target = critic_target(batch["rewards"], batch["masks"], next_q, args.discount)
    q = nets["critic"](torch.cat([obs, actions], -1)).squeeze(-1)
    critic_loss = (q - target).square().sum(0).mean()
    # L_pi = E[-mean_i Q_i(s, a_pi) + (alpha / |A|) ||a - a_pi||^2 + beta * log pi(a_pi | s)]  (critic, beta frozen)
    policy_actions, log_prob = nets["actor"].sample(obs)
    policy_q = call_frozen(nets["critic"], torch.cat([obs, policy_actions], -1)).squeeze(-1).mean(0)
    bc = (actions - policy_actions).square().sum(-1)
    actor_loss = (-policy_q + (args.alpha / action_dim) * bc + temperature.detach() * log_prob).mean()
    # L_beta = beta * (H - H_target),  H = -E[log pi] (stop-gradient)
    entropy = -log_prob.detach().mean()
    temperature_loss = temperature * (entropy + args.target_entropy_multiplier * action_dim)

    metrics = {
        "loss/critic": critic_loss,
        "loss/actor": actor_loss,
        "loss/temperature": temperature_loss,
        "critic/q_mean": q.mean(),
        "critic/q_max": q.max(),
        "critic/q_min": q.min(),
        "actor/policy_q": policy_q.mean(),
        "actor/bc_mse": bc.mean() / action_dim,
        "actor/entropy": entropy,
        "actor/temperature": temperature,
    }
    return critic_loss + actor_loss + temperature_loss, {k: v.detach() for k, v in metrics.items()}


class LogScalar(torch.nn.Module):
    """A learnable scalar stored as its log (the entropy temperature beta = exp(log_value))."""

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.log_value = torch.nn.Parameter(torch.tensor(math.log(initial)))


def build(args: Args, data: OfflineDataset, device: torch.device) -> Agent:
    """tanh-Gaussian actor (state-dependent std), twin critic ensemble with its target copy, temperature; one Adam."""
    obs_dim, action_dim = data.observation_dim, data.action_dim
    critic = EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    nets = {
        "actor": GaussianActor(obs_dim, action_dim, args.hidden_dims, tanh_squash=True, std="state"),
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
        "log_temperature": LogScalar(args.initial_temperature),
    }
    nets = {name: net.to(device) for name, net in nets.items()}
    trained = [p for name in ("critic", "actor", "log_temperature") for p in nets[name].parameters()]
    optimizer = make_optimizer(torch.optim.Adam, [{"params": trained, "lr": args.lr}], device)
    critic_params, target_params = list(nets["critic"].parameters()), list(nets["target_critic"].parameters())

    def update() -> dict[str, torch.Tensor]:
        loss, metrics = sacbc_losses(data.sample(args.batch_size), nets, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        return metrics

    def validation() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, metrics = sacbc_losses(sample_batch(data.val, args.batch_size), nets, args)
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    def policy(obs: torch.Tensor) -> torch.Tensor:  # tanh(mean)
        return nets["actor"].mode(obs).clamp(-1.0, 1.0)

    def explore(obs: torch.Tensor) -> torch.Tensor:  # online: a ~ pi(. | s), the tanh-Gaussian's sample
        return nets["actor"].sample(obs)[0]

    state = {**nets, "optimizer": optimizer}
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
