"""A small offline-RL task for learning tests: reach a goal from data that heads to one of three targets.

Environment `OffrlToyPoint-v0` (`ToyPointEnv`), a point on the plane and a goal on a circle about the origin:
    observation (4,) float32: [x, y, goal_x, goal_y]; the goal's angle is uniform, drawn at every reset.
    action (2,) in [-1, 1]^2, scaled into the unit disc: `position += STEP_SIZE * a / max(1, |a|)` (the same top
        speed in every direction), position clipped to [-ARENA, ARENA]^2.
    start: position uniform in [-START_SPREAD, START_SPREAD]^2, goal at distance GOAL_DISTANCE.
    success: `|position - goal| <= GOAL_RADIUS`; the episode then terminates (the dataset's mask is 0).
    reward: OGBench's single-task convention, `success - 1`: 0 on the step that reaches the goal, -1 otherwise.
    horizon: MAX_EPISODE_STEPS = 20 (gymnasium's TimeLimit truncates; a truncation is not a terminal).
The fastest way to the goal takes exactly OPTIMAL_STEPS = 4 steps from every start (return -3). The reward is that
far away, so a critic without the TD backup (gamma = 0, or no next-state value) sees -1 for every action at the
start and cannot tell the good one from the bad ones there.

Behaviour data (`make_toy_dataset`): each episode heads to one of NUM_MODES = 3 targets with equal probability:
the goal, or the goal rotated by +-120 degrees about the origin (distractors that give nothing, where the behaviour
then lingers until the horizon), with Gaussian action noise. About a third of the episodes succeed
(BEHAVIOUR_SUCCESS). The modes share the start region and leave it in directions 120 degrees apart, so their mean
action at the start is zero: behaviour cloning's Gaussian mean stays near the start (success ~0.1). An agent that
learns Q with bootstrapping and extracts the rewarded mode goes straight to the goal (success ~1.0). The goal
changes from episode to episode and is read from the observation, so a critic that learned nothing (random Q) has
no consistent preference for the goal direction and cannot pass by luck, as it could half the time with one fixed
goal and two modes.

Measured on this task (1000 episodes, seed 0; 2-core CPU, one torch thread per run; 2 x 64 MLPs, LayerNorm in
the critics; batch 256, Adam 3e-4, 3000 gradient steps, gamma 0.99, Polyak 0.005; 100 evaluation episodes with
deterministic actions; training seeds 0-2), success rate:
    behaviour data 0.32 (expected 1/3); Gaussian behaviour cloning 0.11-0.18.
    IQL (expectile 0.9, AWR alpha 10 or 3): 1.00 in every seed, already at 1000 steps (about 6 s of training).
    IQL broken: gamma = 0 0.00-0.03; uniform AWR weights (alpha = 0) 0.16-0.17; untrained critic 0.08-0.28;
    frozen target critic 0.28; advantage sign flipped 0.00.
    DDPG+BC (tanh actor, `-Q + (3 / |A|) ||pi(s) - a||^2`) 0.87-0.99; TD3+BC form (2.5 Q / mean|Q|) 0.78-0.88;
    broken (gamma = 0, untrained critic, no Q term) 0.14-0.21.
    The repository's train_iql.py (defaults, 2 x 64) 1.00 x 3 seeds, with --discount 0 0.00, --alpha 0 0.17;
    train_sacbc.py --alpha 3 0.96-1.00, with --discount 0 0.07; its default alpha 300 is all BC here (0.18).
    train_fql.py --alpha 3 0.87-0.93 (alpha 1 0.88-1.00, 10 0.39, default 300 0.14: all distillation at this Q scale),
    with --discount 0 0.13, --alpha 10000 0.13; --alpha 0 (no distillation) still 0.88.
    train_fan.py --alpha1 1 0.95-0.99 (alpha1 3 0.84, 10 0.29, default 100 0.08), with --discount 0 0.12,
    --alpha1 10000 0.08; --alpha1 0 (no anchoring) 0.52.
Fine-tuning (`SHORT_REACH` data, where no episode reaches the goal; same settings, IQL defaults, 100 evaluation
episodes, seeds 0-2): 5000 offline steps 0.00 (seeds 0, 1); 1000 offline steps then 4000 online steps with
`--balanced-sampling` 0.00 at the end of the offline phase, 0.26-0.47 after 1000 online steps and 1.00 from 2000
on; 2000 offline then 3000 online steps with uniform batches 0.29-0.63 at the end.
Not caught by this task (leave them to the loss tests): ignoring the mask, and bootstrapping from V(s) instead of
V(s') (IQL still reaches 1.00 with either, even after 10000 steps); a missing behaviour regulariser (the task has no
out-of-distribution trap); FQL distilling toward the flow at a different noise than the policy's (1.00); FAN's
critic conditioned on fresh noise instead of the one that made a' (0.99).
A learning test should assert success >= PASS_SUCCESS. On CPU, train with one torch thread (`OMP_NUM_THREADS=1`):
with two threads these tiny updates ran about 7 times slower on the 2-core machine above.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import warnings

import gymnasium
import numpy as np
import torch

from offrl.datasets.minari import minari_root

ENV_ID = "OffrlToyPoint-v0"
DATASET_ID = "toy/point/mixed-v0"

STEP_SIZE = 0.2
"""Distance moved per step at full speed (|action| >= 1)."""
GOAL_DISTANCE = 1.1
"""The goal lies on the circle of this radius about the origin."""
GOAL_RADIUS = 0.4
"""Success when the point is this close to the goal."""
START_SPREAD = 0.05
"""Start position uniform in [-START_SPREAD, START_SPREAD]^2."""
ARENA = 1.5
"""The position is clipped to [-ARENA, ARENA]^2."""
MAX_EPISODE_STEPS = 20
"""Horizon of an episode (evaluation and data)."""
OPTIMAL_STEPS = 4
"""Steps the fastest policy needs from every start: the goal region is 0.63 to 0.78 away, 3 steps cover 0.6."""

NUM_MODES = 3
"""The behaviour heads to one of this many targets: the goal, or the goal rotated about the origin by a multiple of
360 / NUM_MODES degrees (distractors that give nothing)."""
BEHAVIOUR_NOISE = 0.3
"""Standard deviation of the Gaussian noise added to the behaviour's actions (then clipped to [-1, 1])."""
NUM_EPISODES = 1000
"""Default number of behaviour episodes in the dataset (about 15k transitions)."""

REF_MIN_SCORE = -float(MAX_EPISODE_STEPS)
"""Return of a policy that never reaches the goal (normalized score 0)."""
REF_MAX_SCORE = -float(OPTIMAL_STEPS - 1)
"""Return of the fastest policy, the same from every start (normalized score 100)."""

SHORT_DATASET_ID = "toy/point/short-v0"
SHORT_REACH = 0.4
"""Fine-tuning data (`make_toy_dataset(..., SHORT_DATASET_ID, goal_reach=SHORT_REACH)`): the goal mode heads to the
point 0.4 of the way to the goal (0.44 from the origin, 0.66 from the goal, outside its radius), so no episode of
the 1000 succeeds (at 0.5 of the way, 2.1% do, and offline IQL then learns the goal by 5000 steps: 0.54)."""

BEHAVIOUR_SUCCESS = 1.0 / NUM_MODES
"""Expected success rate of the behaviour episodes: each heads to the goal with probability 1 / NUM_MODES."""
PASS_SUCCESS = 0.7
"""Success a learning test should require: far above the behaviour (1/3) and every broken variant measured
(<= 0.28), below what working IQL (1.00), SAC+BC and DDPG+BC (>= 0.78) reached."""


class ToyPointEnv(gymnasium.Env):
    """A point on the plane that must reach a goal on a circle about the origin (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self):
        bound = np.float32(ARENA)
        self.observation_space = gymnasium.spaces.Box(-bound, bound, shape=(4,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.position = np.zeros(2)
        self.goal = np.array([GOAL_DISTANCE, 0.0])

    def _observation(self) -> np.ndarray:
        return np.concatenate([self.position, self.goal]).astype(np.float32)

    def _success(self) -> bool:
        return bool(np.linalg.norm(self.position - self.goal) <= GOAL_RADIUS)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        angle = self.np_random.uniform(0.0, 2.0 * np.pi)
        self.goal = GOAL_DISTANCE * np.array([np.cos(angle), np.sin(angle)])
        self.position = self.np_random.uniform(-START_SPREAD, START_SPREAD, size=2)
        return self._observation(), {"success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        action = action / max(1.0, float(np.linalg.norm(action)))  # same top speed in every direction
        self.position = np.clip(self.position + STEP_SIZE * action, -ARENA, ARENA)
        success = self._success()
        return self._observation(), float(success) - 1.0, success, False, {"success": success}


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="tests.toy_task:ToyPointEnv", max_episode_steps=MAX_EPISODE_STEPS)


# ----------------------------------------------------------------------------------------------------------------
# Policies


def heading_action(positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The action that moves straight to `targets`, at full speed until the last step: (B, 2), (B, 2) -> (B, 2).

    Each row is the direction to the target scaled so the step covers the distance (at most a unit vector, so
    every action stays in [-1, 1]^2).
    """
    offsets = (targets - positions) / STEP_SIZE
    lengths = np.linalg.norm(offsets, axis=-1, keepdims=True)
    return offsets / np.maximum(lengths, 1.0)


def optimal_policy(observations: torch.Tensor) -> torch.Tensor:
    """Scripted optimal policy: straight to the goal. (B, 4) -> (B, 2)."""
    observations = observations.cpu().numpy()
    return torch.as_tensor(heading_action(observations[:, :2], observations[:, 2:]), dtype=torch.float32)


def mode_targets(goals: np.ndarray, modes: np.ndarray | int) -> np.ndarray:
    """The target of behaviour mode k: the goal rotated by 2 pi k / NUM_MODES (mode 0 is the goal). (B, 2) -> (B, 2)."""
    angles = 2.0 * np.pi * np.asarray(modes, dtype=np.float64) / NUM_MODES
    cos, sin = np.cos(angles), np.sin(angles)
    return np.stack([cos * goals[..., 0] - sin * goals[..., 1], sin * goals[..., 0] + cos * goals[..., 1]], axis=-1)


def distractor_policy(observations: torch.Tensor, mode: int = 1) -> torch.Tensor:
    """Scripted policy of an unrewarded behaviour mode: straight to that mode's target. (B, 4) -> (B, 2)."""
    observations = observations.cpu().numpy()
    targets = mode_targets(observations[:, 2:], mode)
    return torch.as_tensor(heading_action(observations[:, :2], targets), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# Dataset


def _behaviour_episodes(num_episodes: int, seed: int, goal_reach: float = 1.0) -> list:
    """Roll out the behaviour (module docstring): episode i resets with seed `seed * 1_000_003 + i`, and one
    generator seeded with `seed` draws every episode's mode and action noise. The goal mode heads to the point
    `goal_reach` of the way from the origin to the goal (1: the goal itself)."""
    from minari.data_collector import EpisodeBuffer

    env = gymnasium.make(ENV_ID)
    rng = np.random.default_rng(seed)
    buffers = []
    for episode in range(num_episodes):
        episode_seed = seed * 1_000_003 + episode
        observation, _ = env.reset(seed=episode_seed)
        mode = int(rng.integers(NUM_MODES))  # 0: the goal, others: distractors
        observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
        done = False
        while not done:
            target = mode_targets(observation[None, 2:], mode) * (goal_reach if mode == 0 else 1.0)
            action = heading_action(observation[None, :2], target)[0] + BEHAVIOUR_NOISE * rng.standard_normal(2)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            observation, reward, terminated, truncated, _ = env.step(action)
            observations.append(observation)
            actions.append(action)
            rewards.append(reward)
            terminations.append(terminated)
            truncations.append(truncated)
            done = terminated or truncated
        buffers.append(
            EpisodeBuffer(
                id=episode,
                seed=episode_seed,
                observations=np.stack(observations),
                actions=np.stack(actions),
                rewards=np.asarray(rewards, dtype=np.float64),
                terminations=np.asarray(terminations),
                truncations=np.asarray(truncations),
            )
        )
    env.close()
    return buffers


def make_toy_dataset(
    dataset_dir: str | os.PathLike,
    dataset_id: str = DATASET_ID,
    num_episodes: int = NUM_EPISODES,
    seed: int = 0,
    goal_reach: float = 1.0,
) -> str:
    """Write the behaviour dataset as a Minari dataset under `dataset_dir` and return its id.

    The same (num_episodes, seed, goal_reach) gives the same data; with `goal_reach` < 1 the goal mode stops short
    of the goal (SHORT_REACH: data that never succeeds, for fine-tuning tests). The dataset records `ENV_ID` as its
    (evaluation) environment and (REF_MIN_SCORE, REF_MAX_SCORE) as its reference returns. An existing dataset of that id
    under `dataset_dir` is replaced. Load it with `offrl.datasets.load_dataset(dataset_id, dataset_dir=dataset_dir)`.
    """
    import minari
    from minari.storage import get_dataset_path

    buffers = _behaviour_episodes(num_episodes, seed, goal_reach)
    pathlib.Path(dataset_dir).mkdir(parents=True, exist_ok=True)
    with minari_root(dataset_dir), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(code_permalink|author).*", category=UserWarning)
        shutil.rmtree(get_dataset_path(dataset_id), ignore_errors=True)
        env = gymnasium.make(ENV_ID)
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env,
            eval_env=env,
            algorithm_name=f"{NUM_MODES}-mode scripted behaviour (noise {BEHAVIOUR_NOISE}, goal reach {goal_reach}), "
            f"seed {seed}",
            ref_min_score=REF_MIN_SCORE,
            ref_max_score=REF_MAX_SCORE,
            description=f"Toy point task: each episode heads to the goal or to one of {NUM_MODES - 1} distractors.",
        )
        env.close()
    return dataset_id


def behaviour_success(dataset_dir: str | os.PathLike, dataset_id: str = DATASET_ID) -> float:
    """Fraction of the dataset's episodes that reach the goal (end in a termination)."""
    import minari

    with minari_root(dataset_dir):
        dataset = minari.load_dataset(dataset_id)
        outcomes = [bool(episode.terminations[-1]) for episode in dataset.iterate_episodes()]
    return float(np.mean(outcomes))
