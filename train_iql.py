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
import dataclasses
import math
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
from offrl.losses import expectile_loss
from offrl.networks import MLP, EnsembleMLP, GaussianActor, polyak_update_
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
    """where this run writes (default: runs/<env>__iql__<seed>__<time>)"""
    save_every: int = 100_000
    """checkpoint every this many steps (and at the end)"""
    resume: str | None = None
    """continue an interrupted run from this checkpoint (or run directory); the run directory is reused"""
    video: bool = False
    """record the first episode of each evaluation to <run_dir>/videos (set MUJOCO_GL=egl when headless)"""

    # Algorithm
    discount: float = 0.99
    """discount gamma (0.995 for antsoccer, humanoidmaze and antmaze-giant)"""
    tau: float = 0.005
    """target critic Polyak rate, every step"""
    lr: float = 3e-4
    """Adam learning rate for all networks"""
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layer widths of the actor, critic and value networks (D4RL in the IQL paper: 256 256)"""
    layer_norm: bool = True
    """LayerNorm in the critic and value networks"""
    expectile: float = 0.9
    """expectile tau of the value loss (0.7 for D4RL locomotion)"""
    actor_loss: Literal["awr", "ddpgbc"] = "awr"
    """actor extraction: awr (advantage-weighted regression) or ddpgbc (Q maximisation + log-likelihood BC)"""
    alpha: float = 10.0
    """AWR inverse temperature (exp(alpha * advantage)); with ddpgbc, the BC coefficient. D4RL locomotion: 3"""
    actor_cosine_decay: bool = False
    """cosine decay of the actor learning rate to 0 over total_steps (the IQL paper's D4RL setting)"""
    reward_mode: Literal["auto", "none", "antmaze", "locomotion"] = "auto"
    """reward processing: auto (per dataset family), none, antmaze (r - 1), locomotion (1000 / return range)"""


MAX_AWR_WEIGHT = 100.0


def awr_weights(advantage: torch.Tensor, alpha: float) -> torch.Tensor:
    """min(exp(alpha * A), 100): advantage (B,) -> weights (B,)."""
    return torch.exp(alpha * advantage).clamp(max=MAX_AWR_WEIGHT)


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


def build_networks(obs_dim: int, action_dim: int, args: Args, device: torch.device) -> dict[str, torch.nn.Module]:
    """Actor (Gaussian, constant std), twin critic ensemble with its target copy, and value network."""
    critic = EnsembleMLP(2, obs_dim + action_dim, args.hidden_dims, 1, layer_norm=args.layer_norm)
    nets = {
        "actor": GaussianActor(obs_dim, action_dim, args.hidden_dims, tanh_squash=False, std="constant"),
        "critic": critic,
        "target_critic": copy.deepcopy(critic).requires_grad_(False),
        "value": MLP(obs_dim, args.hidden_dims, 1, layer_norm=args.layer_norm),
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
    # Learning rates are tensors so a schedule can change them without recompiling the update.
    critic_lr, actor_lr = torch.tensor(args.lr, device=device), torch.tensor(args.lr, device=device)
    optimizer = torch.optim.Adam(
        [
            {"params": list(nets["critic"].parameters()) + list(nets["value"].parameters()), "lr": critic_lr},
            {"params": list(nets["actor"].parameters()), "lr": actor_lr},
        ],
        lr=args.lr,
        **optimizer_options(device),
    )
    critic_params = list(nets["critic"].parameters())
    target_params = list(nets["target_critic"].parameters())

    optimizer_step = optimizer_step_for(optimizer, device)

    def update() -> dict[str, torch.Tensor]:
        batch = sample_batch(train, args.batch_size)
        loss, metrics = iql_losses(batch, nets, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer_step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        return metrics

    def validation_metrics() -> dict[str, torch.Tensor]:
        with torch.no_grad():
            _, metrics = iql_losses(sample_batch(val, args.batch_size), nets, args)
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    update_step = compile_update(update, args.compile, args.cudagraphs, device)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return nets["actor"].mode(obs).clamp(-1.0, 1.0)

    checkpointed = {**nets, "optimizer": optimizer}
    start_step = 0
    if args.resume:
        payload = load_checkpoint(args.resume, checkpointed, device)
        start_step = payload["step"]
        run_dir = payload["run_dir"]
        optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"] = critic_lr, actor_lr  # set by schedule
    else:
        run_dir = str(args.run_dir or default_run_dir(args.env_name, "iql", args.seed))
    logger = RunLogger(run_dir, "iql", args.env_name, dataclasses.asdict(args), resume_step=start_step or None)
    print(f"[iql] {data.name}: {len(data):,} transitions ({data.metadata['source']}), run dir {run_dir}", flush=True)

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

    def lr_schedule(step: int) -> None:
        if args.actor_cosine_decay:
            actor_lr.fill_(args.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, args.total_steps) / args.total_steps)))

    wall_start = time.perf_counter()
    last_eval = run_evaluation(0) if start_step == 0 else (logger.results["evals"] or [None])[-1]
    train_seconds, compile_seconds, timed_steps = 0.0, 0.0, 0
    warmup = warmup_calls(update_step)  # first calls that compile (or capture the CUDA graph), timed apart
    last_checked = start_step
    step = start_step
    lr_schedule(step)
    status, exit_code = "finished", 0
    bar = tqdm(total=args.total_steps, initial=start_step, desc="iql", dynamic_ncols=True, file=sys.stdout)
    with StopRequest() as stop:
        try:
            interval_start = time.perf_counter()
            while step < args.total_steps:
                if stop.requested:
                    break
                metrics = update_step()
                step += 1
                lr_schedule(step)
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
                        values["actor/lr"] = actor_lr.item()
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
            print(f"\n[iql] error: {error}", file=sys.stderr, flush=True)
        bar.close()
        if stop.requested:
            save(step)
            status, exit_code = "interrupted", 128 + stop.signal
            print(f"\n[iql] interrupted at step {step}; checkpoint saved. Continue with --resume {run_dir}")
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
        print(f"[iql] final score at step {step}: {score}; run dir {run_dir}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
