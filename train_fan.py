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
published setting, (100, 0) is the default here. Evaluation acts with clip(f(s, eps)), eps ~ N(0, I).

Paper: "Flow Anchoring and Noise-conditioned Q-learning" (FAN), ICML 2026, https://arxiv.org/abs/2605.01663
Usage: python train_fan.py --env-name cube-double-play-singletask-task2-v0 --alpha1 100 --alpha2 0
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from tqdm import tqdm

from offrl.datasets import DatasetError, load_dataset, sample_batch
from offrl.evaluation import evaluate
from offrl.losses import expectile_loss, flow_matching_loss
from offrl.networks import MLP, EnsembleMLP, call_frozen, polyak_update_
from offrl.runs import (
    NonFiniteLossError,
    RunLogger,
    StopRequest,
    check_finite,
    compile_update,
    default_run_dir,
    load_checkpoint,
    optimizer_options,
    optimizer_step_for,
    resolve_device,
    save_checkpoint,
    seed_everything,
    warmup_calls,
)


@dataclass
class Args:
    env_name: str = "cube-single-play-singletask-task1-v0"
    """dataset: an OGBench single-task name or a Minari id (e.g. mujoco/hopper/medium-v0)"""
    dataset_dir: str | None = None
    """where datasets live (default: ~/.ogbench/data for OGBench, Minari's own folder for Minari)"""
    generate_episodes: int | None = None
    """OGBench: train on a small locally generated set of this many episodes (quick runs) instead of the official"""
    seed: int = 0
    """random seed (networks, sampling; evaluation seeds are derived from it but never equal training seeds)"""
    device: str = "auto"
    """torch device; auto = cuda when available, else cpu"""
    total_steps: int = 1_000_000
    """gradient steps"""
    batch_size: int = 256
    """transitions per gradient step"""
    eval_every: int = 100_000
    """evaluate every this many steps (and at step 0 and at the end)"""
    eval_episodes: int = 50
    """episodes per evaluation"""
    eval_envs: int = 8
    """environments run side by side during evaluation"""
    log_every: int = 5_000
    """read metrics back from the device, log them and check them for NaN every this many steps"""
    compile: bool = True
    """compile the update with torch.compile"""
    cudagraphs: bool = False
    """replay the whole update as one CUDA graph, captured at its third call (CUDA only; ignored on CPU)"""
    run_dir: str | None = None
    """where this run writes (default: runs/<env>__fan__<seed>__<time>)"""
    save_every: int = 100_000
    """checkpoint every this many steps (and at the end)"""
    resume: str | None = None
    """continue an interrupted run from this checkpoint (or run directory); the run directory is reused"""
    video: bool = False
    """record the first episode of each evaluation to <run_dir>/videos (set MUJOCO_GL=egl when headless)"""

    # Algorithm
    discount: float = 0.995
    """discount gamma (OGBench 0.995; D4RL 0.99)"""
    tau: float = 0.005
    """target critic Polyak rate, every step"""
    lr: float = 3e-4
    """Adam learning rate (one optimizer over the flow, the one-step policy, the critic and Z)"""
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layer widths of the BC flow, the one-step policy, the critics and Z"""
    layer_norm: bool = True
    """LayerNorm in the critics and Z"""
    actor_layer_norm: bool = False
    """LayerNorm in the BC flow and the one-step policy"""
    alpha1: float = 100.0
    """actor flow-anchoring coefficient: 100 cube/scene/puzzle, 10 antsoccer (D4RL antmaze 3)"""
    alpha2: float = 0.0
    """critic flow-anchoring penalty in the backup: 0 cube, 3 scene/puzzle, 0.1 antsoccer (D4RL antmaze 0.03)"""
    expectile: float = 0.9
    """expectile of the Z loss (Z tracks an upper expectile over the noise of the target Q)"""
    z_agg: Literal["mean", "min"] = "mean"
    """how the two Z heads combine in the backup (min for D4RL)"""
    normalize_value_loss: bool = False
    """divide the actor's Q and Z terms each by sg(mean |.|)"""
    reward_mode: Literal["auto", "none", "antmaze", "locomotion"] = "auto"
    """reward processing: auto (per dataset family), none, antmaze (r - 1), locomotion (1000 / return range)"""


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


def fan_losses(batch: dict[str, torch.Tensor], nets: dict[str, torch.nn.Module], args: Args):
    """The FAN losses on one batch. Returns (total loss, detached metrics).

    batch: observations (B, S), actions (B, A), rewards (B,), next_observations (B, S), masks (B,).
    nets: flow v(concat[s, x_t, t]) -> (B, A), actor f(concat[s, eps]) -> (B, A), critic Q(concat[s, a, eps])
    (2 heads -> (2, B)), target_critic, z Z(concat[s, a]) (2 heads -> (2, B), no target copy).
    """
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    # L_Q = E[(Q_i(s, a, eps) - y)^2],  y = r + gamma * mask * (agg_j Z_j(s', a') - alpha2 * sum_A br'),  a' from eps
    noise = torch.randn_like(actions)
    with torch.no_grad():
        next_actions = nets["actor"](torch.cat([next_obs, noise], -1)).clamp(-1.0, 1.0)
        next_anchor = flow_anchor(nets["flow"], next_obs, noise, next_actions, torch.rand_like(actions[:, :1])).sum(-1)
        next_zs = nets["z"](torch.cat([next_obs, next_actions], -1)).squeeze(-1)
        next_z = next_zs.min(0).values if args.z_agg == "min" else next_zs.mean(0)
        target = batch["rewards"] + args.discount * batch["masks"] * (next_z - args.alpha2 * next_anchor)
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
    actor_loss = flow_loss + args.alpha1 * anchor_loss + actor_q_loss + actor_z_loss

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


def build_networks(obs_dim: int, action_dim: int, args: Args, device: torch.device) -> dict[str, torch.nn.Module]:
    """BC flow v(s, x_t, t), one-step policy f(s, eps), noise-conditioned critic Q(s, a, eps) + target copy, Z(s, a)."""
    critic = EnsembleMLP(2, obs_dim + 2 * action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    nets = {
        "flow": MLP(obs_dim + action_dim + 1, args.hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        "actor": MLP(obs_dim + action_dim, args.hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
        "z": EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm),
    }
    return {name: net.to(device) for name, net in nets.items()}


def main(args: Args) -> int:
    for name in ("total_steps", "batch_size", "eval_every", "eval_episodes", "eval_envs", "log_every", "save_every"):
        if getattr(args, name) <= 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.resume and not (Path(args.resume).is_file() or (Path(args.resume) / "checkpoint.pt").is_file()):
        raise SystemExit(f"error: --resume {args.resume}: no such checkpoint file (or run directory with one).")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    try:
        data = load_dataset(
            args.env_name,
            dataset_dir=args.dataset_dir,
            device=device,
            reward_mode=args.reward_mode,
            generate_episodes=args.generate_episodes,
        )
    except (DatasetError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    train, val = data.train, data.val

    nets = build_networks(data.observation_dim, data.action_dim, args, device)
    optimizer = torch.optim.Adam(
        [p for name in ("flow", "actor", "critic", "z") for p in nets[name].parameters()],
        lr=args.lr,
        **optimizer_options(device),
    )
    critic_params = list(nets["critic"].parameters())
    target_params = list(nets["target_critic"].parameters())

    optimizer_step = optimizer_step_for(optimizer, device)

    def update() -> dict[str, torch.Tensor]:
        batch = sample_batch(train, args.batch_size)
        loss, metrics = fan_losses(batch, nets, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer_step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        return metrics

    def validation_metrics() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, metrics = fan_losses(sample_batch(val, args.batch_size), nets, args)
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    update_step = compile_update(update, args.compile, args.cudagraphs, device)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(obs.shape[0], data.action_dim, device=obs.device)
        return nets["actor"](torch.cat([obs, noise], -1)).clamp(-1.0, 1.0)

    checkpointed = {**nets, "optimizer": optimizer}
    start_step = 0
    if args.resume:
        payload = load_checkpoint(args.resume, checkpointed, device)
        start_step = payload["step"]
        run_dir = payload["run_dir"]
    else:
        run_dir = str(args.run_dir or default_run_dir(args.env_name, "fan", args.seed))
    logger = RunLogger(run_dir, "fan", args.env_name, dataclasses.asdict(args), resume_step=start_step or None)
    print(f"[fan] {data.name}: {len(data):,} transitions ({data.metadata['source']}), run dir {run_dir}", flush=True)

    ref_scores = None
    if data.metadata["ref_min_score"] is not None:
        ref_scores = (data.metadata["ref_min_score"], data.metadata["ref_max_score"])

    def run_evaluation(step: int) -> dict:
        start = time.perf_counter()
        video = f"{run_dir}/videos/step_{step}.mp4" if args.video else None
        for net in nets.values():
            net.eval()
        result = evaluate(
            policy,
            data.make_env,
            args.eval_episodes,
            num_envs=args.eval_envs,
            seed=args.seed,
            device=device,
            ref_scores=ref_scores,
            video_path=video,
        )
        for net in nets.values():
            net.train()
        seconds = time.perf_counter() - start
        return logger.evaluation(step, result, wall_time=time.perf_counter() - wall_start, seconds=seconds)

    def save(step: int) -> None:
        save_checkpoint(f"{run_dir}/checkpoint.pt", step, checkpointed, run_dir=run_dir, args=dataclasses.asdict(args))

    wall_start = time.perf_counter()
    last_eval = run_evaluation(0) if start_step == 0 else (logger.results["evals"] or [None])[-1]
    train_seconds, compile_seconds, timed_steps = 0.0, 0.0, 0
    warmup = warmup_calls(update_step)  # first calls that compile (or capture the CUDA graph), timed apart
    last_checked = start_step
    step = start_step
    status, exit_code = "finished", 0
    bar = tqdm(total=args.total_steps, initial=start_step, desc="fan", dynamic_ncols=True, file=sys.stdout)
    with StopRequest() as stop:
        try:
            interval_start = time.perf_counter()
            while step < args.total_steps:
                if stop.requested:
                    break
                metrics = update_step()
                step += 1
                if step - start_step <= warmup:  # compilation is kept out of the throughput
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    compile_seconds += time.perf_counter() - interval_start
                    interval_start = time.perf_counter()
                else:
                    timed_steps += 1
                bar.update(1)
                log_now = step % args.log_every == 0 or step == args.total_steps
                eval_now = step % args.eval_every == 0 or step == args.total_steps
                save_now = step % args.save_every == 0 or step == args.total_steps
                if log_now or save_now or eval_now:
                    values = {k: v.item() for k, v in metrics.items()}  # the only host sync: here
                    train_seconds += time.perf_counter() - interval_start
                    check_finite(values, step, last_checked)
                    last_checked = step
                    if log_now:
                        steps_per_second = timed_steps / max(train_seconds, 1e-9)
                        if val is not None:
                            values.update({k: v.item() for k, v in validation_metrics().items()})
                        values["time/steps_per_second"] = steps_per_second
                        values["time/train_seconds"] = train_seconds
                        logger.scalars(step, values)
                        bar.set_postfix(sps=f"{steps_per_second:.0f}", refresh=False)
                    if eval_now:
                        last_eval = run_evaluation(step)
                        score = last_eval["success"] if last_eval["success"] is not None else last_eval["return"]
                        bar.set_postfix(sps=f"{timed_steps / max(train_seconds, 1e-9):.0f}", score=f"{score:.3f}")
                    if save_now:
                        save(step)
                    interval_start = time.perf_counter()
        except NonFiniteLossError as error:
            status, exit_code = "failed", 1
            print(f"\n[fan] error: {error}", file=sys.stderr, flush=True)
        bar.close()
        if stop.requested:
            save(step)
            status, exit_code = "interrupted", 128 + stop.signal
            print(f"\n[fan] interrupted at step {step}; checkpoint saved. Continue with --resume {run_dir}")
    logger.write_results(
        status=status,
        final_step=step,
        train_steps_per_second=timed_steps / max(train_seconds, 1e-9),
        compile_seconds=compile_seconds,
        dataset=data.metadata,
    )
    logger.close()
    if last_eval is not None and status == "finished":
        score = {k: last_eval[k] for k in ("success", "return", "normalized_score") if last_eval[k] is not None}
        print(f"[fan] final score at step {step}: {score}; run dir {run_dir}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
