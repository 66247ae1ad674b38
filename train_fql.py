"""Flow Q-Learning (FQL), offline, with the update compiled by torch.compile.

A BC flow v(s, x_t, t) models the behaviour actions; a one-step policy mu(s, z) is distilled from it and steered by Q:
    flow     L_flow = E[ ||v(s, x_t, t) - (a - x0)||^2 ],  x0 ~ N(0, I), t ~ U[0, 1], x_t = (1 - t) x0 + t a
    distill  L_d    = E[ ||mu(s, z) - sg(clip(flow(s, z)))||^2 ],  flow(s, z): 10 Euler steps of v from z ~ N(0, I)
    actor    L_pi   = L_flow + alpha * L_d - E[ mean_i Q_i(s, clip(mu(s, z))) ]   (mu's output unclipped in L_d)
    critic   L_Q    = E[ (Q_i(s, a) - y)^2 ],  y = r + gamma * mask * mean_j Qbar_j(s', clip(mu(s', z')))
alpha is the distillation (behaviour-regularisation) knob: 300 on cube-single/cube-double/scene, 1000 on puzzle,
10 on antmaze and antsoccer. Evaluation acts with clip(mu(s, z)), z ~ N(0, I): one network call, no ODE.

Paper: Park, Li, Levine, "Flow Q-Learning", https://arxiv.org/abs/2502.02538
Usage: python train_fql.py --env-name cube-single-play-singletask-task1-v0 --alpha 300
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
from offrl.losses import flow_matching_loss
from offrl.members import per_member
from offrl.networks import MLP, EnsembleMLP, call_frozen, polyak_update_
from offrl.run import Agent, Run


@dataclass
class Args(RunArgs):
    # Algorithm
    discount: float = arg(0.99, at_least=0, at_most=1, per_member=True)
    """discount gamma (0.995 for antsoccer and humanoidmaze)"""
    tau: float = arg(0.005, at_least=0, at_most=1)
    """target critic Polyak rate, every step"""
    lr: float = arg(3e-4, above=0)
    """Adam learning rate (one optimizer over the flow, the one-step policy and the critic)"""
    hidden_dims: tuple[int, ...] = arg((512, 512, 512, 512), at_least=1, shape=True)
    """hidden layer widths of the BC flow, the one-step policy and the critics"""
    layer_norm: bool = arg(True, shape=True)
    """LayerNorm in the critics"""
    actor_layer_norm: bool = arg(False, shape=True)
    """LayerNorm in the BC flow and the one-step policy"""
    alpha: float = arg(300.0, at_least=0, per_member=True)
    """distillation coefficient: 300 cube/scene, 1000 puzzle, 10 antmaze/antsoccer, 30 humanoidmaze (D4RL antmaze 10)"""
    flow_steps: int = arg(10, at_least=1)
    """Euler steps of the BC flow that produce the distillation target"""
    q_agg: Literal["mean", "min"] = "mean"
    """how the two target critics combine in the backup (min for antmaze-large/giant)"""
    normalize_q_loss: bool = False
    """divide the actor's Q term by sg(mean |Q|)"""


# Recommended settings per domain, applied to every run (flags given win; --no-presets: off). Every value is the one in
# the FQL README's list of the exact flags of each published run; where a domain is not listed, the defaults stand.
# online=True: its offline-to-online runs (--online-steps), where they differ (they train 1M offline steps on D4RL).
FQL_README = "FQL repository README, https://github.com/seohongpark/fql"
PRESETS = (
    Preset(r"antsoccer-|humanoidmaze-|antmaze-giant-", {"discount": 0.995}, FQL_README),
    Preset(r"cube-(single|double)-|scene-", {"alpha": 300.0}, FQL_README),
    Preset(r"puzzle-(3x3|4x4)-", {"alpha": 1000.0}, FQL_README),
    Preset(r"antmaze-(large|giant)-", {"alpha": 10.0, "q_agg": "min"}, FQL_README),
    Preset(r"antsoccer-", {"alpha": 10.0}, FQL_README),
    Preset(r"humanoidmaze-", {"alpha": 30.0}, FQL_README),
    Preset(r"D4RL/", {"total_steps": 500_000}, FQL_README + " (--offline_steps=500000 on D4RL)", online=False),
    Preset(r"D4RL/antmaze/", {"alpha": 10.0}, FQL_README),
    Preset(r"D4RL/antmaze/large-", {"alpha": 3.0}, FQL_README),
    Preset(r"D4RL/(pen|door|hammer|relocate)/", {"q_agg": "min", "alpha": 30000.0}, FQL_README),
    Preset(r"D4RL/pen/(human|cloned)-|D4RL/hammer/cloned-|D4RL/relocate/human-", {"alpha": 10000.0}, FQL_README),
    Preset(r"D4RL/pen/expert-", {"alpha": 3000.0}, FQL_README),
    Preset(r"humanoidmaze-", {"alpha": 100.0}, FQL_README + ", offline-to-online", online=True),
    Preset(r"antsoccer-", {"alpha": 30.0}, FQL_README + ", offline-to-online", online=True),
    Preset(r"D4RL/(pen|door|hammer)/cloned-", {"alpha": 1000.0}, FQL_README + ", offline-to-online", online=True),
    Preset(r"D4RL/relocate/cloned-", {"alpha": 10000.0}, FQL_README + ", offline-to-online", online=True),
)


def euler_flow(flow: torch.nn.Module, obs: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate dx/dt = v(s, x, t) from x = noise at t = 0 to t = 1 with `steps` Euler steps, then clip.

    obs (B, S), noise (B, A) -> actions (B, A) in [-1, 1].
    """
    actions = noise
    for i in range(steps):
        t = torch.full_like(noise[:, :1], i / steps)
        actions = actions + flow(torch.cat([obs, actions, t], -1)) / steps
    return actions.clamp(-1.0, 1.0)


@per_member  # a group of members (--seeds 0 1 2): these losses run once for all of them (offrl.members)
def fql_losses(batch: dict[str, torch.Tensor], nets: dict[str, torch.nn.Module], args: Args):
    """The FQL losses on one batch. Returns (total loss, detached metrics).

    batch: observations (B, S), actions (B, A), rewards (B,), next_observations (B, S), masks (B,).
    nets: flow v(concat[s, x_t, t]) -> (B, A), actor mu(concat[s, z]) -> (B, A), critic (2 heads -> (2, B)),
    target_critic.
    """
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    # L_Q = E[(Q_i(s, a) - y)^2],  y = r + gamma * mask * agg_j Qbar_j(s', clip(mu(s', z'))),  mean over heads
    with torch.no_grad():
        next_actions = nets["actor"](torch.cat([next_obs, torch.randn_like(actions)], -1)).clamp(-1.0, 1.0)
        next_qs = nets["target_critic"](torch.cat([next_obs, next_actions], -1)).squeeze(-1)
        next_q = next_qs.min(0).values if args.q_agg == "min" else next_qs.mean(0)
        target = batch["rewards"] + args.discount * batch["masks"] * next_q
    q = nets["critic"](torch.cat([obs, actions], -1)).squeeze(-1)
    critic_loss = (q - target).square().mean()

    # L_flow = E[||v(s, x_t, t) - (a - x0)||^2],  x0 ~ N(0, I), t ~ U[0, 1], x_t = (1 - t) x0 + t a
    x0, t = torch.randn_like(actions), torch.rand_like(actions[:, :1])
    flow_loss = flow_matching_loss(nets["flow"], obs, actions, x0, t)
    # L_d = E[||mu(s, z) - sg(clip(flow(s, z)))||^2]: the policy's own output is not clipped here
    noise = torch.randn_like(actions)
    with torch.no_grad():
        flow_actions = euler_flow(nets["flow"], obs, noise, args.flow_steps)
    policy_actions = nets["actor"](torch.cat([obs, noise], -1))
    distill_loss = (policy_actions - flow_actions).square().mean()
    # -E[mean_i Q_i(s, clip(mu(s, z)))], the critic frozen (its parameters learn from L_Q only)
    policy_q = call_frozen(nets["critic"], torch.cat([obs, policy_actions.clamp(-1.0, 1.0)], -1)).squeeze(-1).mean(0)
    q_loss = -policy_q.mean()
    if args.normalize_q_loss:
        q_loss = q_loss / policy_q.abs().mean().detach()
    actor_loss = flow_loss + args.alpha * distill_loss + q_loss

    metrics = {
        "loss/critic": critic_loss,
        "loss/actor": actor_loss,
        "loss/flow": flow_loss,
        "loss/distill": distill_loss,
        "loss/q": q_loss,
        "critic/q_mean": q.mean(),
        "critic/q_max": q.max(),
        "critic/q_min": q.min(),
        "actor/policy_q": policy_q.mean(),
        "actor/mse": (policy_actions.detach().clamp(-1.0, 1.0) - actions).square().mean(),
    }
    return critic_loss + actor_loss, {k: v.detach() for k, v in metrics.items()}


def build(args: Args, data: OfflineDataset, device: torch.device) -> Agent:
    """BC flow v(s, x_t, t), one-step policy mu(s, z), twin critic ensemble with its target copy; one Adam over all."""
    obs_dim, action_dim = data.observation_dim, data.action_dim
    critic = EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    nets = {
        "flow": MLP(obs_dim + action_dim + 1, args.hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        "actor": MLP(obs_dim + action_dim, args.hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
    }
    nets = {name: net.to(device) for name, net in nets.items()}
    trained = [p for name in ("flow", "actor", "critic") for p in nets[name].parameters()]
    optimizer = make_optimizer(torch.optim.Adam, [{"params": trained, "lr": args.lr}], device)
    critic_params, target_params = list(nets["critic"].parameters()), list(nets["target_critic"].parameters())

    def update() -> dict[str, torch.Tensor]:
        loss, metrics = fql_losses(data.sample(args.batch_size), nets, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        return metrics

    def validation() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, metrics = fql_losses(sample_batch(data.val, args.batch_size), nets, args)
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    def policy(obs: torch.Tensor) -> torch.Tensor:  # clip(mu(s, z)), z ~ N(0, I)
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
