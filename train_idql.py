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
from offrl.diffusion import (
    DDPMSchedule,
    LNResNetDenoiser,
    ddpm_schedule,
    noise_prediction_loss,
    sample_actions,
    vp_beta_schedule,
)
from offrl.evaluation import evaluate
from offrl.losses import expectile_loss
from offrl.networks import MLP, EnsembleMLP, polyak_update_
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
    """transitions per gradient step, one batch for the critics and the denoiser (IDQL code: 512; paper: 256 for the
    critics, 1024 for the denoiser)"""
    eval_every: int = 100_000
    """evaluate every this many steps (and at step 0 and at the end)"""
    eval_episodes: int = 50
    """episodes per evaluation"""
    eval_envs: int = 8
    """environments run side by side during evaluation"""
    log_every: int = 5_000
    """read metrics back from the device, log them and check them for NaN every this many steps"""
    compile: bool = True
    """compile the update and the action sampler with torch.compile"""
    cudagraphs: bool = False
    """replay the update and the policy as CUDA graphs, captured at their third call (CUDA only; ignored on CPU)"""
    run_dir: str | None = None
    """where this run writes (default: runs/<env>__idql__<seed>__<time>)"""
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
    """Adam learning rate of the critic and value networks"""
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layer widths of the critic and value networks: 4 x 512, the OGBench default all scripts share (the IDQL
    paper and code on D4RL: 256 256, ReLU, LayerNorm only at V's input)"""
    layer_norm: bool = True
    """LayerNorm in the critic and value networks"""
    expectile: float = 0.9
    """expectile tau of the value loss and of the resampling weights (0.9 OGBench and antmaze, 0.7 D4RL locomotion)"""
    diffusion_steps: int = 5
    """DDPM steps T (variance-preserving beta schedule)"""
    num_candidates: int = 64
    """actions N sampled per state at evaluation (the paper: 32 antmaze, 128 locomotion, 64 with one setting)"""
    extraction: Literal["argmax", "resample"] = "argmax"
    """argmax: the candidate with the highest min_i Qbar_i(s, a); resample: draw one with probability ~ |tau - 1(Q < V)|
    (the paper's implicit policy, expectile weights)"""
    actor_lr: float = 3e-4
    """AdamW learning rate of the denoiser"""
    actor_weight_decay: float = 1e-4
    """AdamW (decoupled) weight decay of the denoiser"""
    actor_cosine_decay: bool = True
    """cosine decay of the denoiser's learning rate to 0 over total_steps"""
    ema_rate: float = 0.001
    """rate of the denoiser's exponential moving average (the copy that samples), every step"""
    denoiser_hidden_dim: int = 256
    """width of the LN-ResNet denoiser (its residual blocks expand to 4x this)"""
    denoiser_blocks: int = 3
    """residual blocks of the denoiser"""
    denoiser_time_dim: int = 128
    """Fourier features of the diffusion step t"""
    denoiser_activation: Literal["swish", "mish"] = "swish"
    """denoiser activation: swish (the newest IDQL code) or mish (the paper's first version)"""
    dropout: float = 0.1
    """dropout rate in the denoiser's residual blocks (training only)"""
    reward_mode: Literal["auto", "none", "antmaze", "locomotion"] = "auto"
    """reward processing: auto (per dataset family), none, antmaze (r - 1), locomotion (1000 / return range)"""


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


def build_networks(obs_dim: int, action_dim: int, args: Args, device: torch.device) -> dict[str, torch.nn.Module]:
    """Twin critic ensemble with its target copy, value network, LN-ResNet denoiser and its EMA copy (eval mode)."""
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
    return {name: net.to(device) for name, net in nets.items()}


def main(args: Args) -> int:
    positive = ("total_steps", "batch_size", "eval_every", "eval_episodes", "eval_envs", "log_every", "save_every")
    for name in (*positive, "diffusion_steps", "num_candidates"):
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
    schedule = ddpm_schedule(vp_beta_schedule(args.diffusion_steps)).to(device)
    # One AdamW: without weight decay it is Adam (critics); the denoiser gets decoupled weight decay. Learning rates
    # are tensors so the cosine schedule can change them without recompiling the update.
    critic_lr, actor_lr = torch.tensor(args.lr, device=device), torch.tensor(args.actor_lr, device=device)
    critic_and_value = list(nets["critic"].parameters()) + list(nets["value"].parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": critic_and_value, "lr": critic_lr, "weight_decay": 0.0},
            {"params": list(nets["denoiser"].parameters()), "lr": actor_lr, "weight_decay": args.actor_weight_decay},
        ],
        lr=args.lr,
        **optimizer_options(device),
    )
    critic_params, target_params = list(nets["critic"].parameters()), list(nets["target_critic"].parameters())
    denoiser_params, ema_params = list(nets["denoiser"].parameters()), list(nets["ema_denoiser"].parameters())

    optimizer_step = optimizer_step_for(optimizer, device)

    def update() -> dict[str, torch.Tensor]:
        batch = sample_batch(train, args.batch_size)
        loss, metrics = idql_losses(batch, nets, schedule, args)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer_step()
        polyak_update_(target_params, critic_params, args.tau)  # Qbar <- (1 - tau) Qbar + tau Q
        polyak_update_(ema_params, denoiser_params, args.ema_rate)  # EMA <- (1 - rate) EMA + rate theta
        return metrics

    def validation_metrics() -> dict[str, torch.Tensor]:
        nets["denoiser"].eval()  # the validation DDPM loss without dropout
        with torch.no_grad():
            _, metrics = idql_losses(sample_batch(val, args.batch_size), nets, schedule, args)
        nets["denoiser"].train()
        return {f"val/{k.split('/', 1)[1]}": v for k, v in metrics.items() if k.startswith("loss/")}

    update_step = compile_update(update, args.compile, args.cudagraphs, device)

    def select(obs: torch.Tensor) -> torch.Tensor:  # evaluate() keeps obs (min(eval_envs, eval_episodes), S)
        return select_actions(obs, nets, schedule, data.action_dim, args)

    policy = compile_update(select, args.compile, args.cudagraphs, device, name="policy")  # one compiled shape

    checkpointed = {**nets, "optimizer": optimizer}
    start_step = 0
    if args.resume:
        payload = load_checkpoint(args.resume, checkpointed, device)
        start_step = payload["step"]
        run_dir = payload["run_dir"]
        optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"] = critic_lr, actor_lr  # set by schedule
    else:
        run_dir = str(args.run_dir or default_run_dir(args.env_name, "idql", args.seed))
    logger = RunLogger(run_dir, "idql", args.env_name, dataclasses.asdict(args), resume_step=start_step or None)
    print(f"[idql] {data.name}: {len(data):,} transitions ({data.metadata['source']}), run dir {run_dir}", flush=True)

    ref_scores = None
    if data.metadata["ref_min_score"] is not None:
        ref_scores = (data.metadata["ref_min_score"], data.metadata["ref_max_score"])

    def run_evaluation(step: int) -> dict:
        # No train/eval switching: the policy only runs the EMA denoiser (always in eval mode) and the critics.
        start = time.perf_counter()
        video = f"{run_dir}/videos/step_{step}.mp4" if args.video else None
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
        seconds = time.perf_counter() - start
        return logger.evaluation(step, result, wall_time=time.perf_counter() - wall_start, seconds=seconds)

    def save(step: int) -> None:
        save_checkpoint(f"{run_dir}/checkpoint.pt", step, checkpointed, run_dir=run_dir, args=dataclasses.asdict(args))

    def lr_schedule(step: int) -> None:
        if args.actor_cosine_decay:
            progress = min(step, args.total_steps) / args.total_steps
            actor_lr.fill_(args.actor_lr * 0.5 * (1.0 + math.cos(math.pi * progress)))

    wall_start = time.perf_counter()
    last_eval = run_evaluation(0) if start_step == 0 else (logger.results["evals"] or [None])[-1]
    train_seconds, compile_seconds, timed_steps = 0.0, 0.0, 0
    warmup = warmup_calls(update_step)  # first calls that compile (or capture the CUDA graph), timed apart
    last_checked = start_step
    step = start_step
    lr_schedule(step)
    status, exit_code = "finished", 0
    bar = tqdm(total=args.total_steps, initial=start_step, desc="idql", dynamic_ncols=True, file=sys.stdout)
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
            print(f"\n[idql] error: {error}", file=sys.stderr, flush=True)
        bar.close()
        if stop.requested:
            save(step)
            status, exit_code = "interrupted", 128 + stop.signal
            print(f"\n[idql] interrupted at step {step}; checkpoint saved. Continue with --resume {run_dir}")
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
        print(f"[idql] final score at step {step}: {score}; run dir {run_dir}", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
