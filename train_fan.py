"""FAN: flow anchoring and noise-conditioned Q-learning, offline, with the update compiled by torch.compile.

A BC flow v(s, x_t, t), a one-step policy f(s, eps), a noise-conditioned critic Q(s, a, eps) (target copy Qbar) and a
value Z(s, a) that tracks the upper end over eps of Q. No ODE is integrated anywhere in training:
    flow    L_flow = E[ ||v(s, x_t, t) - (a - x0)||^2 ],  x0 ~ N(0, I), t ~ U[0, 1], x_t = (1 - t) x0 + t a
    anchor  br(s, eps, t) = (f(s, eps) - eps - v(s, (1 - t) eps + t f(s, eps), t))^2   (v's parameters frozen)
    critic  L_Q = E[ (Q_i(s, a, eps) - y)^2 ],  y = r + gamma * mask * (mean_j Z_j(s', a') - alpha2 * sum_A br'),
            a' = clip(f(s', eps)) with the SAME eps that conditions Q
    value   L_Z = E[ L2^0.9( mean_j Qbar_j(s, a, n) - Z_i(s, a) ) ],  n ~ N(0, I) fresh
    actor   L_pi = L_flow + alpha1 * mean br - E[ mean_j Q_j(s, clip(f(s, eps)), n2) + mean_j Z_j(s, clip(f(s, eps))) ]
(alpha1, alpha2) per domain: cube-double (100, 0), scene and puzzle (100, 3), antsoccer (10, 0.1); cube-single has no
published setting, (100, 0) is the default here. Evaluation acts with clip(f(s, eps)), eps ~ N(0, I). Fine-tuning
online (--online-steps), (alpha1, alpha2) become (--online-alpha1, --online-alpha2) from the first online update.

Paper: "Flow-Anchored Noise-conditioned Q-Learning" (FAN), ICML 2026, https://arxiv.org/abs/2605.01663
Usage: python train_fan.py --env-name cube-double-play-singletask-task2-v0 --alpha1 100 --alpha2 0
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Literal

import torch

from offrl.args import Preset, RunArgs, arg
from offrl.compile import compiled, make_optimizer
from offrl.datasets import OfflineDataset, sample_batch
from offrl.losses import expectile_loss, flow_matching_loss
from offrl.members import per_member
from offrl.networks import MLP, EnsembleMLP, call_frozen, polyak_update_
from offrl.run import Agent, Run


@dataclass
class Args(RunArgs):
    # Algorithm
    discount: float = arg(0.995, at_least=0, at_most=1, per_member=True)
    """discount gamma (OGBench 0.995; D4RL 0.99)"""
    tau: float = arg(0.005, at_least=0, at_most=1)
    """target critic Polyak rate, every step"""
    lr: float = arg(3e-4, above=0)
    """Adam learning rate (one optimizer over the flow, the one-step policy, the critic and Z)"""
    hidden_dims: tuple[int, ...] = arg((512, 512, 512, 512), at_least=1, shape=True)
    """hidden layer widths of the BC flow, the one-step policy, the critics and Z"""
    layer_norm: bool = arg(True, shape=True)
    """LayerNorm in the critics and Z"""
    actor_layer_norm: bool = arg(False, shape=True)
    """LayerNorm in the BC flow and the one-step policy"""
    alpha1: float = arg(100.0, at_least=0, per_member=True)
    """actor flow-anchoring coefficient: 100 cube/scene/puzzle, 10 antsoccer (D4RL antmaze 3)"""
    alpha2: float = arg(0.0, at_least=0, per_member=True)
    """critic flow-anchoring penalty in the backup: 0 cube, 3 scene/puzzle, 0.1 antsoccer (D4RL antmaze 0.03)"""
    online_alpha1: float | None = arg(None, at_least=0)
    """alpha1 from the first online update of --online-steps on (FAN's fine-tuning scripts: 30 cube-double, 10
    scene/puzzle-3x3/antsoccer, 100 puzzle-4x4); default: alpha1"""
    online_alpha2: float | None = arg(None, at_least=0)
    """alpha2 from the first online update on (0 in FAN's fine-tuning scripts); default: alpha2"""
    expectile: float = arg(0.9, above=0, below=1, per_member=True)
    """expectile of the Z loss (Z tracks an upper expectile over the noise of the target Q)"""
    z_agg: Literal["mean", "min"] = "mean"
    """how the two Z heads combine in the backup (min for D4RL)"""
    normalize_value_loss: bool = False
    """divide the actor's Q and Z terms each by sg(mean |.|)"""


# Recommended settings per domain, applied to every run (flags given win; --no-presets: off): the FAN repository's
# scripts of the published runs. cube-single has no published setting: the defaults (100, 0) stand.
FAN_SCRIPTS = "FAN repository, https://github.com/brianlsy98/FAN, bash_scripts/<domain>/fan.sh"
FAN_O2O = "FAN repository, https://github.com/brianlsy98/FAN, offline-to-online/bash_scripts/<domain>/fan.sh"
PRESETS = (
    Preset(r"antsoccer-", {"alpha1": 10.0, "alpha2": 0.1}, FAN_SCRIPTS),
    Preset(r"cube-double-", {"alpha1": 100.0, "alpha2": 0.0}, FAN_SCRIPTS),
    Preset(r"puzzle-(3x3|4x4)-|scene-", {"alpha1": 100.0, "alpha2": 3.0}, FAN_SCRIPTS),
    Preset(r"D4RL/", {"discount": 0.99, "z_agg": "min", "total_steps": 500_000}, FAN_SCRIPTS),
    Preset(r"D4RL/antmaze/", {"alpha1": 3.0, "alpha2": 0.03}, FAN_SCRIPTS),
    Preset(r"antsoccer-", {"alpha2": 0.0, "online_alpha1": 10.0, "online_alpha2": 0.0}, FAN_O2O, online=True),
    Preset(r"cube-double-", {"online_alpha1": 30.0, "online_alpha2": 0.0}, FAN_O2O, online=True),
    Preset(r"puzzle-3x3-|scene-", {"online_alpha1": 10.0, "online_alpha2": 0.0}, FAN_O2O, online=True),
    Preset(r"puzzle-4x4-", {"online_alpha1": 100.0, "online_alpha2": 0.0}, FAN_O2O, online=True),
)


def flow_anchor(
    flow: torch.nn.Module, obs: torch.Tensor, noise: torch.Tensor, actions: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The flow-anchoring residual (a - eps - v(s, (1 - t) eps + t a, t))^2, elementwise, with v's parameters frozen.

    One velocity call: a straight path from eps to a has velocity a - eps; the residual measures how far the BC flow's
    velocity at a point on that path is from it. Gradient reaches `actions` (both places), not the flow's parameters.
    obs (B, S), noise (B, A), actions (B, A), t (B, 1) -> (B, A).
    """
    interpolated = (1.0 - t) * noise + t * actions
    velocity = call_frozen(flow, torch.cat([obs, interpolated, t], -1))
    return (actions - noise - velocity).square()


@per_member  # a group of members (--seeds 0 1 2): these losses run once for all of them (offrl.members)
def fan_losses(
    batch: dict[str, torch.Tensor],
    nets: dict[str, torch.nn.Module],
    args: Args,
    alpha1: float | torch.Tensor | None = None,
    alpha2: float | torch.Tensor | None = None,
):
    """The FAN losses on one batch, with the coefficients alpha1 and alpha2 (numbers or device scalars; default:
    args.alpha1, args.alpha2). Returns (total loss, detached metrics).

    batch: observations (B, S), actions (B, A), rewards (B,), next_observations (B, S), masks (B,).
    nets: flow v(concat[s, x_t, t]) -> (B, A), actor f(concat[s, eps]) -> (B, A), critic Q(concat[s, a, eps])
    (2 heads -> (2, B)), target_critic, z Z(concat[s, a]) (2 heads -> (2, B), no target copy).
    """
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    alpha1 = args.alpha1 if alpha1 is None else alpha1
    alpha2 = args.alpha2 if alpha2 is None else alpha2
    # L_Q = E[(Q_i(s, a, eps) - y)^2],  y = r + gamma * mask * (agg_j Z_j(s', a') - alpha2 * sum_A br'),  a' from eps
    noise = torch.randn_like(actions)
    with torch.no_grad():
        next_actions = nets["actor"](torch.cat([next_obs, noise], -1)).clamp(-1.0, 1.0)
        next_anchor = flow_anchor(nets["flow"], next_obs, noise, next_actions, torch.rand_like(actions[:, :1])).sum(-1)
        next_zs = nets["z"](torch.cat([next_obs, next_actions], -1)).squeeze(-1)
        next_z = next_zs.min(0).values if args.z_agg == "min" else next_zs.mean(0)
        target = batch["rewards"] + args.discount * batch["masks"] * (next_z - alpha2 * next_anchor)
    q = nets["critic"](torch.cat([obs, actions, noise], -1)).squeeze(-1)
    q_loss = (q - target).square().mean()
    # L_Z = E[L2^tau(mean_j Qbar_j(s, a, n) - Z_i(s, a))],  n ~ N(0, I)
    with torch.no_grad():
        target_z = nets["target_critic"](torch.cat([obs, actions, torch.randn_like(actions)], -1)).squeeze(-1).mean(0)
    z = nets["z"](torch.cat([obs, actions], -1)).squeeze(-1)
    z_loss = expectile_loss(target_z - z, args.expectile).mean()

    # L_flow = E[||v(s, x_t, t) - (a - x0)||^2],  x0 ~ N(0, I), t ~ U[0, 1], x_t = (1 - t) x0 + t a
    x0, t = torch.randn_like(actions), torch.rand_like(actions[:, :1])
    flow_loss = flow_matching_loss(nets["flow"], obs, actions, x0, t)
    # alpha1 * E[br(s, eps, t)]: the one-step policy is anchored to the BC flow's velocity field, one call, no ODE
    policy_noise = torch.randn_like(actions)
    policy_actions = nets["actor"](torch.cat([obs, policy_noise], -1))
    anchor_loss = flow_anchor(nets["flow"], obs, policy_noise, policy_actions, torch.rand_like(t)).mean()
    # -E[mean_j Q_j(s, clip(a), n2)] - E[mean_j Z_j(s, clip(a))], Q and Z frozen (they learn from L_Q and L_Z only)
    clipped = policy_actions.clamp(-1.0, 1.0)
    policy_q = call_frozen(nets["critic"], torch.cat([obs, clipped, torch.randn_like(actions)], -1)).squeeze(-1).mean(0)
    policy_z = call_frozen(nets["z"], torch.cat([obs, clipped], -1)).squeeze(-1).mean(0)
    actor_q_loss, actor_z_loss = -policy_q.mean(), -policy_z.mean()
    if args.normalize_value_loss:
        actor_q_loss = actor_q_loss / policy_q.abs().mean().detach()
        actor_z_loss = actor_z_loss / policy_z.abs().mean().detach()
    actor_loss = flow_loss + alpha1 * anchor_loss + actor_q_loss + actor_z_loss

    metrics = {
        "loss/critic": q_loss,
        "loss/z": z_loss,
        "loss/actor": actor_loss,
        "loss/flow": flow_loss,
        "loss/anchor": anchor_loss,
        "critic/q_mean": q.mean(),
        "critic/q_max": q.max(),
        "critic/q_min": q.min(),
        "critic/z_mean": z.mean(),
        "critic/next_anchor": next_anchor.mean(),
        "actor/policy_q": policy_q.mean(),
        "actor/policy_z": policy_z.mean(),
        "actor/mse": (clipped.detach() - actions).square().mean(),
    }
    return q_loss + z_loss + actor_loss, {k: v.detach() for k, v in metrics.items()}


def build(args: Args, data: OfflineDataset, device: torch.device) -> Agent:
    """BC flow v(s, x_t, t), one-step policy f(s, eps), noise-conditioned critic Q(s, a, eps) + target copy, Z(s, a);
    one Adam over all."""
    obs_dim, action_dim = data.observation_dim, data.action_dim
    critic = EnsembleMLP(2, obs_dim + 2 * action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    nets = {
        "flow": MLP(obs_dim + action_dim + 1, args.hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        "actor": MLP(obs_dim + action_dim, args.hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
        "z": EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm),
    }
    nets = {name: net.to(device) for name, net in nets.items()}
    trained = [p for name in ("flow", "actor", "critic", "z") for p in nets[name].parameters()]
    optimizer = make_optimizer(torch.optim.Adam, [{"params": trained, "lr": args.lr}], device)
    critic_params, target_params = list(nets["critic"].parameters()), list(nets["target_critic"].parameters())

    def coefficients() -> tuple[float | torch.Tensor | None, float | torch.Tensor | None]:
        """(alpha1, alpha2); fine-tuning with --online-alpha1/2, theirs once the buffer holds online transitions
        (decided on the device: no host sync, no recompilation)."""
        if data.replay is None or (args.online_alpha1 is None and args.online_alpha2 is None):
            return None, None  # fan_losses reads args.alpha1, args.alpha2 (a group's members: each its own)
        online = data.replay.filled > data.replay.num_offline
        online_alpha1 = args.alpha1 if args.online_alpha1 is None else args.online_alpha1
        online_alpha2 = args.alpha2 if args.online_alpha2 is None else args.online_alpha2
        return torch.where(online, online_alpha1, args.alpha1), torch.where(online, online_alpha2, args.alpha2)

    def update() -> dict[str, torch.Tensor]:
        loss, metrics = fan_losses(data.sample(args.batch_size), nets, args, *coefficients())
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        return metrics

    def validation() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, metrics = fan_losses(sample_batch(data.val, args.batch_size), nets, args, *coefficients())
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    def policy(obs: torch.Tensor) -> torch.Tensor:  # clip(f(s, eps)), eps ~ N(0, I)
        noise = torch.randn(obs.shape[0], action_dim, device=obs.device)
        return nets["actor"](torch.cat([obs, noise], -1)).clamp(-1.0, 1.0)

    state = {**nets, "optimizer": optimizer}
    return Agent(nets=nets, update=update, policy=policy, state=state, validation=validation, explore=policy)


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
