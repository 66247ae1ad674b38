"""Policy evaluation on vectorized gymnasium environments.

`evaluate` runs exactly `num_episodes` episodes over `num_envs` environments with one batched policy call per step
and returns the mean success, return, normalized score and episode length.

Episode seeds. Episode i of an evaluation with seed `seed` resets its environment with
`EVAL_SEED_OFFSET + seed * MAX_EVAL_EPISODES + i` (see `episode_seeds`): distinct for every (seed, i) pair, far from
the small seeds training and data generation use, and independent of how episodes are spread over environments.
A policy that is deterministic given the observation therefore gets the same result for any `num_envs`. A stochastic
policy draws its noise for a whole batch at once, so its result also depends on `num_envs`; it is still
deterministic: `evaluate` runs inside a forked torch RNG seeded from `seed` (the caller's RNG state is left as it
was, so evaluating does not change the course of training).

Observations. Dict/Tuple observation spaces (e.g. Minari's AntMaze) are flattened (`offrl.observations`) inside
`evaluate`, so the policy always sees a flat float32 vector.

Video. With `video_path`, environment 0 is made with `make_env(render_mode="rgb_array")` and records the episode it
runs first (`offrl.video.FirstEpisodeVideo`): no episode is replayed, so the results are those of an evaluation
without video. When rendering fails, `evaluate` warns once and returns its results without a video.

Threads. On CPU the policy runs with one torch thread during evaluation (restored afterwards): batches are tiny,
and idle OpenMP workers spinning between policy calls take the cores the simulators need.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from offrl.observations import flatten_observation_env
from offrl.scores import normalized_score
from offrl.video import FirstEpisodeVideo

EVAL_SEED_OFFSET = 1_000_000_000
"""Added to every evaluation seed, so evaluation episodes never reuse a training or data-generation seed."""

MAX_EVAL_EPISODES = 100_000
"""Episodes per evaluation seed: the seed blocks of consecutive `seed` values do not overlap."""

# Under "fork" the worker processes inherit the parent's gymnasium registry (e.g. the ids `import ogbench` adds);
# under "spawn"/"forkserver" a fresh interpreter would not know those ids.
_ASYNC_START_METHOD = "fork" if sys.platform.startswith("linux") else None


def episode_seeds(seed: int, num_episodes: int) -> list[int]:
    """The reset seeds of an evaluation's episodes: episode i gets `EVAL_SEED_OFFSET + seed * MAX_EVAL_EPISODES + i`.

    Args:
        seed: the evaluation seed (usually the training run's seed).
        num_episodes: how many episodes, at most `MAX_EVAL_EPISODES`.

    Returns:
        `num_episodes` distinct non-negative ints.
    """
    if not 0 < num_episodes <= MAX_EVAL_EPISODES:
        raise ValueError(f"num_episodes must be in [1, {MAX_EVAL_EPISODES}], got {num_episodes}")
    base = EVAL_SEED_OFFSET + seed * MAX_EVAL_EPISODES
    if base < 0:
        raise ValueError(f"seed {seed} is too negative: episode seeds must be non-negative")
    return [base + i for i in range(num_episodes)]


def _make_flat_env(make_env: Callable[..., gymnasium.Env], **kwargs: Any) -> gymnasium.Env:
    """`flatten_observation_env(make_env(**kwargs))`; a module-level function so that a partial of it pickles."""
    return flatten_observation_env(make_env(**kwargs))


def _make_eval_env(make_env: Callable[..., gymnasium.Env], video_path: Path | None = None) -> gymnasium.Env:
    """A flat-observation environment; with `video_path`, one made with render_mode="rgb_array" that records its
    first episode (`FirstEpisodeVideo`). A `make_env` that takes no `render_mode` records nothing, with a reason."""
    if video_path is None:
        return FirstEpisodeVideo(_make_flat_env(make_env), None)
    try:
        with warnings.catch_warnings():  # gymnasium notes envs (OGBench's) that list no render modes yet render
            warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
            env = _make_flat_env(make_env, render_mode="rgb_array")
    except TypeError as error:
        return FirstEpisodeVideo(_make_flat_env(make_env), video_path, f"make_env(render_mode=...) failed: {error}")
    return FirstEpisodeVideo(env, video_path)


@contextlib.contextmanager
def _single_threaded_cpu(device: torch.device) -> Iterator[None]:
    """On CPU, run the block with one torch thread.

    Evaluation batches are tiny, and between two policy calls idle OpenMP workers spin on the cores the simulators
    need: on 2 cores a 4 x 512 MLP policy made evaluation 8x slower with 2 threads than with 1.
    """
    if device.type != "cpu":
        yield
        return
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(num_threads)


@contextlib.contextmanager
def _seeded_torch_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the CPU (and `device`'s CUDA) torch RNG seeded with `seed`, then restore the old state."""
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda_devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def _policy_actions(
    policy: Callable[[torch.Tensor], torch.Tensor],
    observations: np.ndarray,
    action_space: gymnasium.spaces.Space,
    device: torch.device,
) -> np.ndarray:
    """One batched policy call: observations (B, obs_dim) -> actions (B, *action_shape) as a checked numpy array."""
    obs = torch.as_tensor(observations, dtype=torch.float32).to(device)
    with torch.inference_mode():
        actions = policy(obs)
    if not isinstance(actions, torch.Tensor):
        raise TypeError(f"policy must return a torch.Tensor, got {type(actions).__name__}")
    expected = (obs.shape[0], *action_space.shape)
    if tuple(actions.shape) != expected:
        raise ValueError(
            f"policy returned actions of shape {tuple(actions.shape)}, expected {expected} "
            f"(batch of {obs.shape[0]} observations x action shape {action_space.shape})"
        )
    actions = actions.detach().cpu().numpy()
    finite = np.isfinite(actions).reshape(actions.shape[0], -1).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"policy returned non-finite actions (NaN or inf) for batch rows {np.flatnonzero(~finite).tolist()}"
        )
    return actions.astype(action_space.dtype, copy=False)


def run_episodes(
    policy: Callable[[torch.Tensor], torch.Tensor],
    envs: gymnasium.vector.VectorEnv,
    seeds: Sequence[int],
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray | float]:
    """Run episode i with reset seed `seeds[i]` for every i, handing out episodes to environments as they finish.

    The loop behind `evaluate`, for callers who want per-episode results. Environment j starts episode j; whenever
    an environment finishes, it takes the next episode not yet started. Finished environments are reset here
    (`reset_mask`), with the next episode's seed, or with no seed once no episode is left: those keep being stepped,
    so that the policy batch keeps its shape, and their results are ignored.

    Args:
        policy: observations (B, obs_dim) float32 on `device` -> actions (B, *action_shape); B = envs.num_envs.
        envs: a vector env with `autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED` and flat observations,
            at most `len(seeds)` environments.
        seeds: one reset seed per episode, E = len(seeds).
        device: where the observations are put for the policy.

    Returns:
        per-episode arrays "return" (E,) undiscounted, "length" (E,), "success" (E,) (`info["success"]` at the
        episode's last step, NaN where the env reported none), and "seconds", the wall time of the whole loop.
    """
    return run_member_episodes(policy, envs, [seeds], device)[0]


def run_member_episodes(
    policy: Callable[[torch.Tensor], torch.Tensor],
    envs: gymnasium.vector.VectorEnv,
    member_seeds: Sequence[Sequence[int]],
    device: str | torch.device = "cpu",
) -> list[dict[str, np.ndarray | float]]:
    """`run_episodes` for K members at once: environments j*N..(j+1)*N-1 of the vector env (N = num_envs / K)
    belong to member j and run its episodes, `member_seeds[j]`, as `run_episodes` would; one policy call per step
    acts for every environment. Returns `run_episodes`' results for each member."""
    members, num_episodes, num_envs = len(member_seeds), len(member_seeds[0]), envs.num_envs
    per_member = num_envs // members
    if any(len(seeds) != num_episodes for seeds in member_seeds) or per_member * members != num_envs:
        raise ValueError(f"{members} members of {num_episodes} episodes each cannot share {num_envs} environments")
    if per_member > num_episodes:
        raise ValueError(f"more environments ({per_member}) than episodes ({num_episodes}) per member")
    if envs.metadata.get("autoreset_mode") != gymnasium.vector.AutoresetMode.DISABLED:
        raise ValueError(
            f"envs must be built with autoreset_mode=AutoresetMode.DISABLED, got {envs.metadata.get('autoreset_mode')}"
        )
    device = torch.device(device)
    seeds = np.asarray(member_seeds, dtype=np.int64)  # (K, E)
    member_of = np.repeat(np.arange(members), per_member)  # the member each environment belongs to
    episode_returns = np.zeros((members, num_episodes))
    episode_lengths = np.zeros((members, num_episodes), dtype=np.int64)
    episode_success = np.full((members, num_episodes), np.nan)
    env_episode = np.tile(np.arange(per_member), members)  # the member's episode each environment runs; -1: none
    next_episode = np.full(members, per_member)
    running_return = np.zeros(num_envs)
    running_length = np.zeros(num_envs, dtype=np.int64)

    start = time.perf_counter()
    observations, _ = envs.reset(seed=[int(seeds[m, e]) for m, e in zip(member_of, env_episode, strict=True)])
    while True:
        actions = _policy_actions(policy, observations, envs.single_action_space, device)
        observations, rewards, terminations, truncations, infos = envs.step(actions)
        running_return += rewards
        running_length += 1
        done = terminations | truncations
        for env_index in np.flatnonzero(done & (env_episode >= 0)):
            member, episode = member_of[env_index], env_episode[env_index]
            episode_returns[member, episode] = running_return[env_index]
            episode_lengths[member, episode] = running_length[env_index]
            if "success" in infos and infos["_success"][env_index]:
                episode_success[member, episode] = float(infos["success"][env_index])
            following = next_episode[member]
            env_episode[env_index] = following if following < num_episodes else -1
            next_episode[member] += 1
        if (env_episode < 0).all():
            break
        if done.any():
            reset_seeds = [
                int(seeds[m, e]) if d and e >= 0 else None for d, m, e in zip(done, member_of, env_episode, strict=True)
            ]
            observations, _ = envs.reset(seed=reset_seeds, options={"reset_mask": done})
            running_return[done] = 0.0
            running_length[done] = 0
    seconds = time.perf_counter() - start
    return [
        {"return": episode_returns[m], "length": episode_lengths[m], "success": episode_success[m], "seconds": seconds}
        for m in range(members)
    ]


def evaluate(
    policy: Callable[[torch.Tensor], torch.Tensor],
    make_env: Callable[[], gymnasium.Env],
    num_episodes: int,
    num_envs: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
    ref_scores: tuple[float, float] | None = None,
    video_path: str | os.PathLike | None = None,
    asynchronous: bool | None = None,
) -> dict[str, float | None]:
    """Run `num_episodes` episodes of `policy` on vectorized copies of `make_env()` and average their results.

    Each step makes one batched call `policy(obs)` under `torch.inference_mode()`, obs a float32 tensor
    (B, obs_dim) on `device` holding every environment's observation (flattened if the space is not a 1-D Box),
    B = min(num_envs, num_episodes); it must return actions (B, *action_shape), which are passed to the
    environments unclipped. Episode i is reset with seed `episode_seeds(seed, num_episodes)[i]`, whichever
    environment runs it, and is counted once, when it terminates or is truncated. Environments with no episode left
    keep stepping (so B stays constant) and are ignored.

    Args:
        policy: maps observations (B, obs_dim) to actions (B, *action_shape).
        make_env: builds one environment, e.g. `functools.partial(gymnasium.make, "cube-single-singletask-task1-v0")`.
            With `asynchronous`, it runs in forked worker processes (Linux) or is pickled (elsewhere). For a video,
            `make_env(render_mode="rgb_array")` must work too.
        num_episodes: how many episodes to run and average over.
        num_envs: how many environments run side by side.
        seed: the evaluation seed; episode seeds and the policy's torch RNG derive from it (module docstring).
        device: where the observations are put for the policy.
        ref_scores: (random, expert) reference returns for the D4RL normalized score (`offrl.scores`), or None.
        video_path: if set, environment 0 is made with `make_env(render_mode="rgb_array")` and episode 0, the
            first it runs, is rendered step by step to this path (mp4 with imageio-ffmpeg installed, else a gif at
            the same path with the suffix .gif). The results are the same as without a video. Any rendering failure
            is a warning, never an error.
        asynchronous: run the environments in worker processes (`gymnasium.vector.AsyncVectorEnv`) instead of in
            this process (`SyncVectorEnv`); None (default) does so when the machine has a core to spare per
            environment, i.e. more CPU cores than environments. The results are the same either way.

    Returns:
        "success": mean of `info["success"]` at the episodes' last step, over the episodes whose env reported one
        (None if none did; OGBench and gymnasium-robotics mazes report it, MuJoCo locomotion does not),
        "return": mean undiscounted return, "normalized_score": `normalized_score(mean return, *ref_scores)` or
        None, "episode_length": mean length, "num_episodes", "env_steps_per_second": counted episode steps
        per second of wall time, policy and resets included, "asynchronous": whether worker processes ran them,
        and "video": the path written, or None (no `video_path`, or rendering failed).
    """
    results = evaluate_members(
        lambda obs: _one_member(policy(obs[0])), make_env, num_episodes, num_envs, [seed], device, ref_scores,
        [video_path], asynchronous, stacklevel=3,
    )  # fmt: skip
    return results[0]


def evaluate_members(
    policy: Callable[[torch.Tensor], torch.Tensor],
    make_env: Callable[[], gymnasium.Env],
    num_episodes: int,
    num_envs: int,
    seeds: Sequence[int],
    device: str | torch.device = "cpu",
    ref_scores: tuple[float, float] | None = None,
    video_paths: Sequence[str | os.PathLike | None] | None = None,
    asynchronous: bool | None = None,
    stacklevel: int = 2,
) -> list[dict[str, float | None]]:
    """`evaluate` for K members at once (`offrl.members`), in one vector env of K x min(num_envs, num_episodes)
    environments: `policy` maps observations (K, N, obs_dim) to actions (K, N, *action_shape), member k's episodes
    use the seeds of a single run of seed `seeds[k]` (`episode_seeds`), and `video_paths[k]` (or None) records its
    first episode. Returns `evaluate`'s results for each member. With one member it is `evaluate`."""
    if num_episodes <= 0:
        raise ValueError(f"num_episodes must be positive, got {num_episodes}")
    if num_envs <= 0:
        raise ValueError(f"num_envs must be positive, got {num_envs}")
    device = torch.device(device)
    members, per_member = len(seeds), min(num_envs, num_episodes)
    member_seeds = [episode_seeds(seed, num_episodes) for seed in seeds]
    video_paths = list(video_paths or [None] * members)
    env_fns = [functools.partial(_make_eval_env, make_env)] * (members * per_member)
    for member, video_path in enumerate(video_paths):
        if video_path is not None:
            env_fns[member * per_member] = functools.partial(_make_eval_env, make_env, Path(video_path))
    disabled = gymnasium.vector.AutoresetMode.DISABLED
    if asynchronous is None:
        asynchronous = len(env_fns) > 1 and (os.cpu_count() or 1) > len(env_fns)

    def flat_policy(obs: torch.Tensor) -> torch.Tensor:  # (K * N, S) -> (K * N, A)
        actions = policy(obs.unflatten(0, (members, per_member)))
        return actions.flatten(0, 1) if isinstance(actions, torch.Tensor) else actions  # else refused as it is

    with _seeded_torch_rng(member_seeds[0][0], device), _single_threaded_cpu(device):
        if asynchronous:
            envs = gymnasium.vector.AsyncVectorEnv(env_fns, context=_ASYNC_START_METHOD, autoreset_mode=disabled)
        else:
            envs = gymnasium.vector.SyncVectorEnv(env_fns, autoreset_mode=disabled)
        try:
            results = run_member_episodes(flat_policy, envs, member_seeds, device)
            videos = envs.call("video_result")
        finally:
            envs.close()
    return [
        _summary(episodes, num_episodes, ref_scores, asynchronous, video_path, videos[member * per_member], stacklevel)
        for member, (episodes, video_path) in enumerate(zip(results, video_paths, strict=True))
    ]


def _one_member(actions: Any) -> Any:
    return actions[None] if isinstance(actions, torch.Tensor) else actions


def _summary(
    episodes: dict[str, Any],
    num_episodes: int,
    ref_scores: tuple[float, float] | None,
    asynchronous: bool,
    video_path: str | os.PathLike | None,
    video_result: tuple[str | None, str | None],
    stacklevel: int,
) -> dict[str, float | None]:
    """One member's results from its episodes (see `evaluate`)."""
    video, video_error = video_result
    if video_path is not None and video is None:
        video_error = video_error or "episode 0 did not finish"
        warnings.warn(
            f"evaluation video skipped ({video_error}). Rendering MuJoCo without a display needs MUJOCO_GL=egl (or "
            "osmesa) set before mujoco is imported (offrl.video.choose_gl_backend picks one), and make_env "
            "must accept render_mode.",
            stacklevel=stacklevel + 1,
        )
    success = episodes["success"][~np.isnan(episodes["success"])]
    mean_return = float(np.mean(episodes["return"]))
    return {
        "success": float(np.mean(success)) if success.size else None,
        "return": mean_return,
        "normalized_score": float(normalized_score(mean_return, *ref_scores)) if ref_scores is not None else None,
        "episode_length": float(np.mean(episodes["length"])),
        "num_episodes": num_episodes,
        "env_steps_per_second": float(np.sum(episodes["length"]) / episodes["seconds"]),
        "asynchronous": asynchronous,
        "video": video,
    }
