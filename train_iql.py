"""Implicit Q-Learning (IQL), offline, with the update compiled by torch.compile.

IQL never queries the critic at actions outside the dataset. Three losses, one Adam step over all of them:
    value   L_V  = E[ L2^tau( min_i Qbar_i(s, a) - V(s) ) ],  L2^tau(u) = |tau - 1(u < 0)| u^2   (Qbar: target critic)
    critic  L_Q  = E[ sum_i (Q_i(s, a) - y)^2 ],  y = r + gamma * mask * V(s')
    actor   L_pi = -E[ min(exp(alpha * (min_i Q_i(s, a) - V(s))), 100) * log pi(a | s) ]   (AWR; Q, V stop-gradient)
The actor is a Gaussian with constant std, evaluated at its mean. `--actor-loss ddpgbc` swaps AWR for
`-Q(s, pi(s)) / sg(mean|Q|) - alpha * log pi(a | s)`.

Paper: Kostrikov, Nair, Levine, "Offline Reinforcement Learning with Implicit Q-Learning", https://arxiv.org/abs/2110.06169
Usage: python train_iql.py --env-name cube-single-play-singletask-task1-v0
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
from offrl.losses import expectile_loss
from offrl.members import per_member
from offrl.networks import MLP, EnsembleMLP, GaussianActor, polyak_update_
from offrl.run import Agent, Run


@dataclass
class Args(RunArgs):
    # Algorithm
    discount: float = arg(0.99, at_least=0, at_most=1, per_member=True)
    """discount gamma (0.995 for antsoccer, humanoidmaze and antmaze-giant)"""
    tau: float = arg(0.005, at_least=0, at_most=1)
    """target critic Polyak rate, every step"""
    lr: float = arg(3e-4, above=0)
    """Adam learning rate for all networks"""
    hidden_dims: tuple[int, ...] = arg((512, 512, 512, 512), at_least=1, shape=True)
    """hidden layer widths of the actor, critic and value networks (D4RL in the IQL paper: 256 256)"""
    layer_norm: bool = arg(True, shape=True)
    """LayerNorm in the critic and value networks"""
    expectile: float = arg(0.9, above=0, below=1, per_member=True)
    """expectile tau of the value loss (0.7 for D4RL locomotion)"""
    actor_loss: Literal["awr", "ddpgbc"] = "awr"
    """actor extraction: awr (advantage-weighted regression) or ddpgbc (Q maximisation + log-likelihood BC)"""
    alpha: float = arg(10.0, at_least=0, per_member=True)
    """AWR inverse temperature (exp(alpha * advantage)); with ddpgbc, the BC coefficient. D4RL locomotion: 3"""
    actor_cosine_decay: bool = False
    """cosine decay of the actor learning rate to 0 over all updates, offline and online (the IQL paper's D4RL
    setting)"""


# Recommended settings per domain, applied to every run (flags given win; --no-presets: off).
FQL_README = "FQL repository README, https://github.com/seohongpark/fql (the exact flags of each published run)"
OGATA_POST = 'Mark Ogata, "Offline RL: SAC+BC, IQL, and Flow Q-Learning" (blog post), best of alpha 5, 10, 15, 30'
IQL_PAPER = "Kostrikov et al., IQL, https://arxiv.org/abs/2110.06169, Appendix B (D4RL settings)"
PRESETS = (
    Preset(r"antsoccer-|humanoidmaze-|antmaze-giant-", {"discount": 0.995}, FQL_README),
    Preset(r"cube-single-", {"alpha": 10.0}, OGATA_POST),
    Preset(r"antsoccer-", {"alpha": 30.0}, OGATA_POST),
    Preset(r"humanoidmaze-", {"alpha": 10.0}, FQL_README + ", IQL on humanoidmaze-medium"),
    Preset(r"mujoco/", {"expectile": 0.7, "alpha": 3.0, "actor_cosine_decay": True}, IQL_PAPER + ", locomotion"),
    Preset(r"D4RL/antmaze/", {"expectile": 0.9, "alpha": 10.0, "actor_cosine_decay": True}, IQL_PAPER + ", antmaze"),
)


MAX_AWR_WEIGHT = 100.0


def awr_weights(advantage: torch.Tensor, alpha: float) -> torch.Tensor:
    """min(exp(alpha * A), 100): advantage (B,) -> weights (B,)."""
    return torch.exp(alpha * advantage).clamp(max=MAX_AWR_WEIGHT)


@per_member  # a group of members (--seeds 0 1 2): these losses run once for all of them (offrl.members)
def iql_losses(batch: dict[str, torch.Tensor], nets: dict[str, torch.nn.Module], args: Args):
    """The three IQL losses on one batch. Returns (total loss, detached metrics).

    batch: observations (B, S), actions (B, A), rewards (B,), next_observations (B, S), masks (B,).
    nets: actor, critic (2 heads -> (2, B)), target_critic, value.
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

    if args.actor_loss == "awr":
        # L_pi = -E[min(exp(alpha * (min_i Q_i(s, a) - V(s))), 100) * log pi(a | s)]
        advantage = q.detach().min(0).values - v.detach()
        log_prob = nets["actor"].log_prob(obs, actions)
        actor_loss = -(awr_weights(advantage, args.alpha) * log_prob).mean()
    else:
        # L_pi = -E[Q(s, clip(mu(s))) / sg(mean|Q|)] - alpha * E[log pi(a | s)]
        policy_q = nets["critic"](torch.cat([obs, nets["actor"].mode(obs).clamp(-1, 1)], -1)).squeeze(-1).min(0).values
        log_prob = nets["actor"].log_prob(obs, actions)
        advantage = policy_q.detach() - v.detach()
        actor_loss = -(policy_q.mean() / policy_q.abs().mean().detach()) - args.alpha * log_prob.mean()

    metrics = {
        "loss/value": value_loss,
        "loss/critic": critic_loss,
        "loss/actor": actor_loss,
        "value/v_mean": v.mean(),
        "critic/q_mean": q.mean(),
        "critic/q_max": q.max(),
        "critic/q_min": q.min(),
        "actor/advantage_mean": advantage.mean(),
        "actor/log_prob": log_prob.mean(),
    }
    return value_loss + critic_loss + actor_loss, {k: v.detach() for k, v in metrics.items()}


def build(args: Args, data: OfflineDataset, device: torch.device) -> Agent:
    """Actor (Gaussian, constant std), twin critic ensemble with its target copy, value network; one Adam over all."""
    obs_dim, action_dim = data.observation_dim, data.action_dim
    critic = EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    nets = {
        "actor": GaussianActor(obs_dim, action_dim, args.hidden_dims, tanh_squash=False, std="constant"),
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
        "value": MLP(obs_dim, args.hidden_dims, 1, layer_norm=args.layer_norm),
    }
    nets = {name: net.to(device) for name, net in nets.items()}
    critic_and_value = [*nets["critic"].parameters(), *nets["value"].parameters()]
    optimizer = make_optimizer(
        torch.optim.Adam,
        [{"params": critic_and_value, "lr": args.lr}, {"params": list(nets["actor"].parameters()), "lr": args.lr}],
        device,
    )
    actor_lr = optimizer.param_groups[1]["lr"]
    updates = args.total_steps + args.online_steps
    lr_decay = CosineDecay(optimizer.param_groups[1], args.lr, updates) if args.actor_cosine_decay else None
    critic_params, target_params = list(nets["critic"].parameters()), list(nets["target_critic"].parameters())

    def update() -> dict[str, torch.Tensor]:
        loss, metrics = iql_losses(data.sample(args.batch_size), nets, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        if lr_decay is not None:
            lr_decay()  # actor lr <- lr0 * (1 + cos(pi * step / (total_steps + online_steps))) / 2
        return {**metrics, "actor/lr": actor_lr.clone()}

    def validation() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, metrics = iql_losses(sample_batch(data.val, args.batch_size), nets, args)
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return nets["actor"].mode(obs).clamp(-1.0, 1.0)

    def explore(obs: torch.Tensor) -> torch.Tensor:  # online: clip(a), a ~ N(mu(s), sigma^2)
        return nets["actor"].sample(obs)[0].clamp(-1.0, 1.0)

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
