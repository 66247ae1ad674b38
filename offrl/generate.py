"""Regenerate OGBench datasets offline with the scripted agents that ship inside the `ogbench` package.

OGBench builds its manipulation datasets (cube, scene, puzzle) with scripted oracles and its point-maze
datasets with a BFS subgoal oracle; both ship with `pip install ogbench`, so those datasets can be rebuilt
without network access. This module follows OGBench's own procedure (`data_gen_scripts/generate_manipspace.py`,
`generate_locomaze.py` and the per-dataset flags in `commands.sh`):

- manipulation: env `<domain>-v0` with `terminate_at_goal=False, mode='data_collection'`; 'play' uses the plan
  oracles (noise 0.1, smoothing 0.5), 'noisy' the Markov oracles (min_norm 0.4) plus Gaussian action noise with
  per-episode level xi ~ U(0, 0.1) and per-dimension scales [xi, xi, xi, 3 xi, 10 xi], and a uniformly random
  action with probability 0.1 (cube, scene) or 0.2 (puzzle). Whenever the oracle finishes, the env samples a new
  target with a per-episode cube-stacking probability. Scene episodes that leave the cube out of view are redone.
- point maze: action = unit vector towards the oracle subgoal + N(0, 0.5) noise, clipped to [-1, 1]; 'navigate'
  samples a new vertex-cell goal whenever the goal is reached, 'stitch' uses one goal 4 cells away (BFS).

Output is OGBench's file format: `<name>.npz` (N train episodes) and `<name>-val.npz` (max(1, N // 10) val
episodes; OGBench uses N // 10, the floor of one keeps tiny sets loadable) with `observations` (float32),
`actions` (float32), `terminals` (bool), `qpos`, `qvel` (float32) and, for scene and puzzle, `button_states`
(int64). They load with `ogbench.make_env_and_datasets(name, dataset_path=...)`.

Unlike the official scripts (whose seed flag is never used), every episode is seeded from (seed, episode index):
numpy's global RNG (used by the oracles and the maze env), `env.reset(seed=...)` and the random-action sampler,
and every manipulation episode starts from the env state of a new process (targets and MuJoCo model restored;
`env.reset` alone keeps the targets of earlier episodes). A seed therefore gives identical arrays for any number
of worker processes, and the first k train episodes do not depend on N. The data follow the official distribution
but are not the arrays of the downloadable files.

Usage:
    python -m offrl.generate cube-single-play-v0 --workers 2
    python -m offrl.generate scene-play-v0 --num-episodes 20 --max-episode-steps 200 --dataset-dir ./datasets
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import multiprocessing
import os
import pathlib
import re
import signal
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

DEFAULT_DATASET_DIR = "~/.ogbench/data"
DATASET_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"

# Official generation constants (commands.sh and the generator flags' defaults).
PLAN_NOISE = 0.1
PLAN_NOISE_SMOOTHING = 0.5
MARKOV_MIN_NORM = 0.4
MARKOV_MAX_NOISE = 0.1
MARKOV_NOISE_SCALES = np.array([1.0, 1.0, 1.0, 3.0, 10.0])  # x, y, z, yaw, gripper
SCENE_CUBE_MARKOV_MAX_STEP = 100
POINT_ACTION_NOISE = 0.5
STITCH_GOAL_DISTANCE = 4  # in maze cells
MAX_SCENE_ATTEMPTS = 1000  # unhealthy scene episodes are rare; this only guards against an endless loop


class GenerationError(ValueError):
    """Raised for a dataset name or setting that cannot be generated; the message says what to do instead."""


@dataclass(frozen=True)
class DatasetSpec:
    """How OGBench generated one dataset: its env, agent, type and official size."""

    env_name: str
    """Gymnasium id of the environment the data is collected in, e.g. `cube-single-v0`."""
    family: str
    """`manipspace` (cube, scene, puzzle) or `pointmaze`."""
    dataset_type: str
    """`play` or `noisy` (manipulation), `navigate` or `stitch` (point maze)."""
    num_episodes: int
    """Official number of train episodes."""
    max_episode_steps: int
    """Official episode length in stored steps."""
    p_random_action: float = 0.0
    """Probability of replacing the oracle's action with a uniformly random one (noisy manipulation)."""


def _official_specs() -> dict[str, DatasetSpec]:
    specs = {}
    manipulation_episodes = {
        "cube-single": 1000,
        "cube-double": 1000,
        "cube-triple": 3000,
        "cube-quadruple": 5000,
        "scene": 1000,
        "puzzle-3x3": 1000,
        "puzzle-4x4": 1000,
        "puzzle-4x5": 3000,
        "puzzle-4x6": 5000,
    }
    for domain, episodes in manipulation_episodes.items():
        env_name = f"{domain}-v0"
        p_random_action = 0.2 if domain.startswith("puzzle") else 0.1
        specs[f"{domain}-play-v0"] = DatasetSpec(env_name, "manipspace", "play", episodes, 1001)
        specs[f"{domain}-noisy-v0"] = DatasetSpec(env_name, "manipspace", "noisy", episodes, 1001, p_random_action)
    for maze in ("medium", "large", "giant", "teleport"):
        env_name = f"pointmaze-{maze}-v0"
        episodes, steps = (500, 2001) if maze == "giant" else (1000, 1001)
        specs[f"pointmaze-{maze}-navigate-v0"] = DatasetSpec(env_name, "pointmaze", "navigate", episodes, steps)
        specs[f"pointmaze-{maze}-stitch-v0"] = DatasetSpec(env_name, "pointmaze", "stitch", 5000, 201)
    return specs


OFFICIAL_SPECS: dict[str, DatasetSpec] = _official_specs()

# Single-core steps/s measured on a 2-core x86 CPU (only used for the time estimate shown to users).
_STEPS_PER_SECOND = {
    "cube-single": 500.0,
    "cube-double": 480.0,
    "cube-triple": 350.0,
    "cube-quadruple": 300.0,
    "scene": 420.0,
    "puzzle-3x3": 450.0,
    "puzzle-4x4": 350.0,
    "puzzle-4x5": 330.0,
    "puzzle-4x6": 330.0,
    "pointmaze-medium": 6000.0,
    "pointmaze-large": 4000.0,
    "pointmaze-giant": 3500.0,
    "pointmaze-teleport": 5000.0,
}

_DOWNLOAD_ONLY = [
    (re.compile(r"^visual-.+-v0$"), "visual datasets store rendered images, which this generator does not produce"),
    (
        re.compile(r"^(antmaze|humanoidmaze)-(arena|medium|large|giant|teleport)-(navigate|stitch|explore)-v0$"),
        "it is collected by a trained expert locomotion policy whose weights do not ship with ogbench",
    ),
    (
        re.compile(r"^antsoccer-(arena|medium)-(navigate|stitch)-v0$"),
        "it is collected by trained expert ant and ball policies whose weights do not ship with ogbench",
    ),
    (re.compile(r"^powderworld-(easy|medium|hard)-play-v0$"), "powderworld is not covered by this generator"),
]


def download_only_message(dataset_name: str, reason: str, dataset_dir: str | os.PathLike | None = None) -> str:
    """What to do with a download-only OGBench dataset (no oracle here to regenerate it), and why (`reason`)."""
    directory = dataset_dir if dataset_dir is not None else f"the default {DEFAULT_DATASET_DIR}"
    return (
        f"OGBench dataset '{dataset_name}' is download-only ({reason}): get {DATASET_URL}/{dataset_name}.npz and "
        f"{DATASET_URL}/{dataset_name}-val.npz on a machine with network and put them at "
        f"<dataset_dir>/{dataset_name}.npz and <dataset_dir>/{dataset_name}-val.npz, <dataset_dir> being {directory} "
        "(or pass --dataset-dir to where they are; ogbench.make_env_and_datasets downloads them there when online)."
    )


def download_only_reason(dataset_name: str) -> str | None:
    """Why a dataset cannot be generated offline (expert policies that do not ship, images), or None."""
    return next((reason for pattern, reason in _DOWNLOAD_ONLY if pattern.match(dataset_name)), None)


def _lookup(dataset_name: str) -> DatasetSpec:
    """Return the spec of a generatable dataset or raise a `GenerationError` that says what to do instead."""
    if not isinstance(dataset_name, str):
        raise GenerationError(f"dataset name must be a string, got {dataset_name!r}")
    if dataset_name in OFFICIAL_SPECS:
        return OFFICIAL_SPECS[dataset_name]
    splits = dataset_name.split("-")
    for marker in ("singletask", "oraclerep"):
        if marker in splits:
            position = splits.index(marker)
            base = "-".join(splits[:position] + splits[-1:])
            raise GenerationError(
                f"'{dataset_name}' is an environment/task name, not a dataset name: all {marker} variants share "
                f"one dataset file. Pass the dataset name '{base}' instead."
            )
    reason = download_only_reason(dataset_name)
    if reason is not None:
        raise GenerationError(download_only_message(dataset_name, reason))
    raise GenerationError(
        f"unknown dataset '{dataset_name}'. Offline generation supports OGBench's "
        "cube-{single,double,triple,quadruple}, scene and puzzle-{3x3,4x4,4x5,4x6} datasets of type play or noisy, "
        "and pointmaze-{medium,large,giant,teleport} of type navigate or stitch, "
        "e.g. 'cube-single-play-v0', 'puzzle-3x3-noisy-v0' or 'pointmaze-medium-navigate-v0'."
    )


def can_generate(dataset_name: str) -> bool:
    """True if `dataset_name` (e.g. `cube-single-play-v0`) can be regenerated offline by this module."""
    return isinstance(dataset_name, str) and dataset_name in OFFICIAL_SPECS


def official_num_episodes(dataset_name: str) -> int:
    """Number of train episodes in the official dataset; raises `GenerationError` if it is not generatable."""
    return _lookup(dataset_name).num_episodes


def num_val_episodes(num_episodes: int) -> int:
    """Validation episodes generated alongside `num_episodes` train episodes: OGBench's N // 10, at least 1."""
    return max(1, num_episodes // 10)


def estimate_seconds(dataset_name: str, num_episodes: int | None = None, workers: int = 1) -> float:
    """Rough wall-clock seconds to generate train + val episodes at the official episode length.

    Based on single-core steps/s measured on a small x86 CPU; parallel speed-up is capped by the CPU count.
    """
    spec = _lookup(dataset_name)
    num_episodes = spec.num_episodes if num_episodes is None else _check_int("num_episodes", num_episodes, 1)
    workers = _check_int("workers", workers, 1)
    steps = (num_episodes + num_val_episodes(num_episodes)) * spec.max_episode_steps
    parallel = max(1, min(workers, os.cpu_count() or 1, num_episodes))
    speedup = 1 + 0.75 * (parallel - 1)  # 2 workers on 2 cores measured 1.75x faster than 1
    startup = 3.0  # imports and building the MuJoCo model, once per process
    compress = steps * 1.5e-5  # savez_compressed runs at roughly 60k-120k steps/s
    return startup + steps / (_STEPS_PER_SECOND[spec.env_name.removesuffix("-v0")] * speedup) + compress


def _episode_seeds(seed: int, episode: int, attempt: int) -> tuple[int, int, int]:
    """Three independent 32-bit seeds (numpy global RNG, env reset, action space) for one episode attempt."""
    words = np.random.SeedSequence([seed, episode, attempt]).generate_state(3)
    return int(words[0]), int(words[1]), int(words[2])


def _make_env(spec: DatasetSpec, max_episode_steps: int):
    import gymnasium

    if spec.family == "manipspace":
        import ogbench.manipspace  # noqa: F401  (registers the envs)

        kwargs = dict(mode="data_collection")
    else:
        import ogbench.locomaze  # noqa: F401

        kwargs = {}
    # No env checker: it reads the manipulation envs' observation space, which resets them once without a seed and
    # leaves random targets behind; without it, a new env holds its constructor's values until the seeded reset.
    kwargs["disable_env_checker"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's float64 -> float32 Box bounds notice
        return gymnasium.make(spec.env_name, terminate_at_goal=False, max_episode_steps=max_episode_steps, **kwargs)


def _make_oracles(env, spec: DatasetSpec) -> dict:
    """The official oracle per task kind (`info['privileged/target_task']`) for this domain and dataset type."""
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    domain = spec.env_name.split("-")[0]
    if spec.dataset_type == "noisy":
        markov = dict(env=env, min_norm=MARKOV_MIN_NORM)
        if domain == "cube":
            return {"cube": CubeMarkovOracle(**markov)}
        if domain == "scene":
            return {
                "cube": CubeMarkovOracle(max_step=SCENE_CUBE_MARKOV_MAX_STEP, **markov),
                "button": ButtonMarkovOracle(**markov),
                "drawer": DrawerMarkovOracle(**markov),
                "window": WindowMarkovOracle(**markov),
            }
        return {"button": ButtonMarkovOracle(gripper_always_closed=True, **markov)}
    plan = dict(env=env, noise=PLAN_NOISE, noise_smoothing=PLAN_NOISE_SMOOTHING)
    if domain == "cube":
        return {"cube": CubePlanOracle(**plan)}
    if domain == "scene":
        return {
            "cube": CubePlanOracle(**plan),
            "button": ButtonPlanOracle(**plan),
            "drawer": DrawerPlanOracle(**plan),
            "window": WindowPlanOracle(**plan),
        }
    return {"button": ButtonPlanOracle(gripper_always_closed=True, **plan)}


def _draw_p_stack(env_name: str) -> float:
    """Per-episode probability that a new cube target is on top of another cube (official ranges)."""
    if "single" in env_name:
        return 0.0
    if "double" in env_name:
        return np.random.uniform(0.0, 0.25)
    if "triple" in env_name:
        return np.random.uniform(0.05, 0.35)
    if "quadruple" in env_name:
        return np.random.uniform(0.1, 0.5)
    return 0.5


def _scene_is_healthy(qpos: np.ndarray) -> bool:
    """Scene health check on `qpos` (T, nq): the cube must stay in camera view unless it is inside the drawer."""
    cube_xyz = qpos[:, 14:17]  # the cube's free joint follows the 14 arm and gripper joints
    too_far_right = cube_xyz[:, 1] >= 0.29
    outside_drawer = (cube_xyz[:, 2] < 0.06) | (cube_xyz[:, 2] > 0.08)
    too_far_left = (cube_xyz[:, 1] <= -0.3) & outside_drawer
    return not (too_far_right.any() or too_far_left.any())


def _maze_cells(maze_map: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """All free cells, and the free cells that are not straight corridor pieces (goal candidates)."""
    free_cells, vertex_cells = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            free_cells.append((i, j))
            vertical_corridor = maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0 and maze_map[i, j - 1] == 1
            vertical_corridor = vertical_corridor and maze_map[i, j + 1] == 1
            horizontal_corridor = maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0 and maze_map[i - 1, j] == 1
            horizontal_corridor = horizontal_corridor and maze_map[i + 1, j] == 1
            if not (vertical_corridor or horizontal_corridor):
                vertex_cells.append((i, j))
    return free_cells, vertex_cells


def _cells_at_distance(maze_map: np.ndarray, start: tuple[int, int], distance: int) -> list[tuple[int, int]]:
    """Free cells exactly `distance` moves from `start` (4-connected BFS), in BFS discovery order."""
    steps = np.full(maze_map.shape, -1, dtype=np.int64)
    steps[start] = 0
    queue, found = [start], []
    while queue:
        i, j = queue.pop(0)
        for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
            ni, nj = i + di, j + dj
            inside = 0 <= ni < maze_map.shape[0] and 0 <= nj < maze_map.shape[1]
            if inside and maze_map[ni, nj] == 0 and steps[ni, nj] == -1:
                steps[ni, nj] = steps[i, j] + 1
                queue.append((ni, nj))
                if steps[ni, nj] == distance:
                    found.append((ni, nj))
    return found


def _model_arrays(model) -> list[tuple[str, np.ndarray]]:
    """The writable parameter arrays of a `mujoco.MjModel` (positions, colours, damping, ...), by field name.

    Leaves out the asset data (meshes, textures, their bounding volumes: 60 MB for scene) that no env edits.
    """
    arrays = []
    for name in dir(model):
        if name.startswith(("_", "tex_", "mesh_", "bvh_", "hfield_", "skin_", "flex", "oct_")):
            continue
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and value.flags.writeable:
            arrays.append((name, value))
    return arrays


class EpisodeRunner:
    """Owns one environment (and its oracles) and produces any episode from its index.

    An episode depends only on (seed, episode index), never on the episodes this runner produced before.
    """

    def __init__(self, spec: DatasetSpec, seed: int, max_episode_steps: int):
        self.spec = spec
        self.seed = seed
        self.env = _make_env(spec, max_episode_steps)
        self.unwrapped = self.env.unwrapped
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Manipulation envs build a new, unseeded Box on every `action_space` access: keep one and seed it.
            # The maze env's is a plain attribute that its reset also samples from, so seeding it covers both.
            self.action_space = self.env.action_space
        if spec.family == "manipspace":
            self.oracles = _make_oracles(self.env, spec)
            self.has_button_states = hasattr(self.unwrapped, "_cur_button_states")
            self._snapshot_first_episode_state()
        else:
            self.maze_map = np.asarray(self.unwrapped.maze_map)
            self.free_cells, self.vertex_cells = _maze_cells(self.maze_map)

    def close(self) -> None:
        self.env.close()

    def _snapshot_first_episode_state(self) -> None:
        """Record what a manipulation env's reset leaves alone, so every episode can start as the first one does.

        `env.reset` resets the MuJoCo data but not the model, and a new target only sets the fields of its own
        kind: a drawer target moves the model's target site, a button target sets `_target_button` and one entry
        of the target button states. Without a restore, an episode starts with the targets of earlier episodes in
        the same process, and the oracle's first action after a task switch (it acts once on the previous step's
        info, as in the official script) depends on them, so the data would depend on the number of workers.
        """
        env = self.unwrapped
        self._first_targets = {
            key: copy.deepcopy(value) for key, value in vars(env).items() if key.startswith("_target_")
        }
        env.reset(seed=0)  # builds and compiles the model
        env.compile_model_and_data()  # a fresh model that no episode has modified yet
        self._first_model = {name: array.copy() for name, array in _model_arrays(env._model)}

    def _restore_first_episode_state(self) -> None:
        env = self.unwrapped
        for key, value in self._first_targets.items():
            setattr(env, key, copy.deepcopy(value))
        model = env._model
        for name, array in self._first_model.items():
            np.copyto(getattr(model, name), array)

    def _seed_everything(self, episode: int, attempt: int) -> int:
        numpy_seed, reset_seed, action_seed = _episode_seeds(self.seed, episode, attempt)
        np.random.seed(numpy_seed)
        self.action_space.seed(action_seed)
        return reset_seed

    def run(self, episode: int) -> tuple[dict[str, np.ndarray], int]:
        """Generate episode `episode`; returns (arrays of length T = max_episode_steps, attempts used).

        Arrays: observations (T, obs_dim) float32, actions (T, A) float32, terminals (T,) bool (True at the last
        step), qpos (T, nq) and qvel (T, nv) float32, button_states (T, num_buttons) int64 for scene and puzzle.
        """
        if self.spec.family == "pointmaze":
            return self._run_pointmaze(episode), 1
        for attempt in range(MAX_SCENE_ATTEMPTS):
            arrays, healthy = self._run_manipspace(episode, attempt)
            if healthy:
                return arrays, attempt + 1
        raise RuntimeError(f"episode {episode}: {MAX_SCENE_ATTEMPTS} scene attempts in a row failed the health check")

    def _run_manipspace(self, episode: int, attempt: int) -> tuple[dict[str, np.ndarray], bool]:
        reset_seed = self._seed_everything(episode, attempt)
        self._restore_first_episode_state()
        env, noisy = self.env, self.spec.dataset_type == "noisy"
        ob, info = env.reset(seed=reset_seed)
        p_stack = _draw_p_stack(self.spec.env_name)
        noise_scales = np.random.uniform(0, MARKOV_MAX_NOISE) * MARKOV_NOISE_SCALES if noisy else None
        oracle = self.oracles[info["privileged/target_task"]]
        oracle.reset(ob, info)

        keys = ["observations", "actions", "terminals", "qpos", "qvel"]
        keys += ["button_states"] if self.has_button_states else []
        record = {key: [] for key in keys}
        done = False
        while not done:
            # Drawn on every step, also for 'play' (probability 0), as the official script does.
            if np.random.rand() < self.spec.p_random_action:
                action = self.action_space.sample()
            else:
                action = np.array(oracle.select_action(ob, info))
                if noisy:
                    action = action + np.random.normal(0, noise_scales, action.shape)
            action = np.clip(action, -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if oracle.done:
                target_ob, target_info = self.unwrapped.set_new_target(p_stack=p_stack)
                oracle = self.oracles[target_info["privileged/target_task"]]
                oracle.reset(target_ob, target_info)
            record["observations"].append(ob)
            record["actions"].append(action)
            record["terminals"].append(done)
            record["qpos"].append(info["prev_qpos"])
            record["qvel"].append(info["prev_qvel"])
            if self.has_button_states:
                record["button_states"].append(info["prev_button_states"])
            ob = next_ob
        # Checked on the float64 positions, as the official script does, before they are stored as float32.
        healthy = not self.spec.env_name.startswith("scene") or _scene_is_healthy(np.asarray(record["qpos"]))
        return _as_arrays(record), healthy

    def _run_pointmaze(self, episode: int) -> dict[str, np.ndarray]:
        reset_seed = self._seed_everything(episode, 0)
        env, maze = self.env, self.unwrapped
        init_ij = self.free_cells[np.random.randint(len(self.free_cells))]
        if self.spec.dataset_type == "navigate":
            goal_ij = self.vertex_cells[np.random.randint(len(self.vertex_cells))]
        else:
            nearby = _cells_at_distance(self.maze_map, init_ij, STITCH_GOAL_DISTANCE)
            goal_ij = nearby[np.random.randint(len(nearby))] if nearby else init_ij
        ob, _ = env.reset(seed=reset_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))

        record = {key: [] for key in ("observations", "actions", "terminals", "qpos", "qvel")}
        done = False
        while not done:
            xy = maze.get_xy()
            subgoal_xy, _ = maze.get_oracle_subgoal(xy, maze.cur_goal_xy)
            direction = subgoal_xy - xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            action = np.clip(direction + np.random.normal(0, POINT_ACTION_NOISE, direction.shape), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if info["success"] and self.spec.dataset_type == "navigate":
                maze.set_goal(self.vertex_cells[np.random.randint(len(self.vertex_cells))])
            record["observations"].append(ob)
            record["actions"].append(action)
            record["terminals"].append(done)
            record["qpos"].append(info["prev_qpos"])
            record["qvel"].append(info["prev_qvel"])
            ob = next_ob
        return _as_arrays(record)


_DTYPES = {"terminals": np.bool_, "button_states": np.int64}


def _as_arrays(record: dict[str, list]) -> dict[str, np.ndarray]:
    return {key: np.asarray(values, dtype=_DTYPES.get(key, np.float32)) for key, values in record.items()}


_worker_runner: EpisodeRunner | None = None
_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas_in_children():
    """Start worker processes with one BLAS thread each (unless the user set a count).

    Each worker already keeps a core busy; with multi-threaded BLAS the workers' small IK solves spin-wait on
    each other's cores and 2 workers ran slower than 1 on a 2-core machine.
    """
    saved = {name: os.environ.get(name) for name in _BLAS_THREAD_VARIABLES}
    os.environ.update({name: "1" for name, value in saved.items() if value is None})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _init_worker(spec: DatasetSpec, seed: int, max_episode_steps: int) -> None:
    global _worker_runner
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the parent
    _worker_runner = EpisodeRunner(spec, seed, max_episode_steps)


def _run_in_worker(episode: int) -> tuple[dict[str, np.ndarray], int]:
    return _worker_runner.run(episode)


def _allocate(episode: dict[str, np.ndarray], num_episodes: int) -> dict[str, np.ndarray]:
    """Empty arrays for `num_episodes` episodes shaped like `episode`: (num_episodes * T, ...) per key."""
    return {key: np.empty((num_episodes * len(v), *v.shape[1:]), dtype=v.dtype) for key, v in episode.items()}


def _check_int(name: str, value, minimum: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GenerationError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise GenerationError(f"{name} must be at least {minimum}{why}, got {value}")
    return int(value)


GENERATED_SUBDIR = "generated"


def generated_path(
    dataset_dir: str | os.PathLike,
    dataset_name: str,
    num_episodes: int | None = None,
    seed: int = 0,
    max_episode_steps: int | None = None,
) -> pathlib.Path:
    """Default location of a generated set: `<dataset_dir>/generated/<name>-<N>ep-seed<S>[-<T>steps].npz`.

    The episode count and seed (and a non-official episode length) are part of the name, and the folder is separate,
    so a regenerated set is never mistaken for the official download `<dataset_dir>/<name>.npz`. `offrl.datasets`
    looks for generated sets here.
    """
    spec = _lookup(dataset_name)
    stem = f"{dataset_name}-{spec.num_episodes if num_episodes is None else num_episodes}ep-seed{seed}"
    if max_episode_steps is not None and max_episode_steps != spec.max_episode_steps:
        stem += f"-{max_episode_steps}steps"
    return pathlib.Path(dataset_dir).expanduser() / GENERATED_SUBDIR / f"{stem}.npz"


def _output_paths(dataset_dir: str | os.PathLike, stem: str) -> tuple[pathlib.Path, pathlib.Path]:
    stem = stem.removesuffix(".npz")
    if not stem or os.sep in stem or "/" in stem or stem in (".", ".."):
        raise GenerationError(f"output name must be a plain file stem like 'my-cube-single-play-v0', got {stem!r}")
    if stem.endswith("-val"):
        raise GenerationError(f"output name {stem!r} must not end in '-val' (that suffix marks the val file)")
    directory = pathlib.Path(dataset_dir).expanduser()
    return directory / f"{stem}.npz", directory / f"{stem}-val.npz"


def _write_npz_files(files: list[tuple[pathlib.Path, dict[str, np.ndarray]]]) -> None:
    """Write the files together (`offrl.runs.atomic_write_files`): all or none, renamed in the given order, so list the
    file a loader checks for (the train file) last."""
    from offrl.runs import atomic_write_files

    writers = [(path, lambda file, arrays=arrays: np.savez_compressed(file, **arrays)) for path, arrays in files]
    atomic_write_files(writers, mode="wb")


def generate_dataset(
    dataset_name: str,
    dataset_dir: str | os.PathLike,
    num_episodes: int | None = None,
    seed: int = 0,
    workers: int = 1,
    max_episode_steps: int | None = None,
    output_name: str | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Generate an OGBench dataset offline and write `<dataset_dir>/<stem>.npz` and `<stem>-val.npz`.

    Args:
        dataset_name: OGBench dataset name, e.g. `cube-single-play-v0` (see `can_generate`).
        dataset_dir: Directory for the files (`~` is expanded; created if missing).
        num_episodes: Train episodes N (default: the official count); N // 10 (at least 1) val episodes are added.
        seed: Non-negative seed; episode i is seeded from (seed, i), so the output does not depend on `workers`.
        workers: Worker processes (1 = generate in this process).
        max_episode_steps: Steps T per episode (default: the official length, 1001 for most datasets).
        output_name: File stem to write in `dataset_dir` (`<output_name>.npz`); default `generated_path(...)`:
            `<dataset_dir>/generated/<name>-<N>ep-seed<S>.npz`, never the official file name.
        progress: Show a tqdm bar over episodes and print a closing summary line.

    Returns:
        Path of the train file; the val file is the same path ending in `-val.npz`. Each file holds
        observations (E*T, obs_dim) float32, actions (E*T, A) float32, terminals (E*T,) bool,
        qpos (E*T, nq) float32, qvel (E*T, nv) float32 and, for scene/puzzle, button_states (E*T, B) int64,
        with E the episode count of that split.

    Raises:
        GenerationError: unknown, download-only or single-task name, or an invalid count/setting.
    """
    spec = _lookup(dataset_name)
    num_episodes = spec.num_episodes if num_episodes is None else _check_int("num_episodes", num_episodes, 1)
    max_episode_steps = (
        spec.max_episode_steps
        if max_episode_steps is None
        else _check_int("max_episode_steps", max_episode_steps, 2, " (an episode of one step has no transition)")
    )
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)
    if output_name is None:
        default = generated_path(dataset_dir, dataset_name, num_episodes, seed, max_episode_steps)
        train_path, val_path = _output_paths(default.parent, default.stem)
    else:
        train_path, val_path = _output_paths(dataset_dir, output_name)
    try:  # fail now rather than after hours of generation
        train_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenerationError(f"cannot create the dataset directory {train_path.parent}: {error}") from error
    if not os.access(train_path.parent, os.W_OK):
        raise GenerationError(f"the dataset directory {train_path.parent} is not writable")

    num_val = num_val_episodes(num_episodes)
    total = num_episodes + num_val
    workers = min(workers, total)
    # Every episode lasts exactly max_episode_steps (no early termination), so each one is copied straight into
    # preallocated train/val arrays: the full dataset is held in memory once, in its final dtypes.
    splits: list[dict[str, np.ndarray]] = []
    retries = 0
    start = time.perf_counter()
    with tqdm(total=total, desc=dataset_name, unit="ep", disable=not progress, dynamic_ncols=True) as bar:
        if workers == 1:
            runner = EpisodeRunner(spec, seed, max_episode_steps)
            results = map(runner.run, range(total))
            pool = contextlib.closing(runner)
        else:
            context = multiprocessing.get_context("spawn")
            with _single_threaded_blas_in_children():  # the workers read these variables when they start
                pool = context.Pool(workers, initializer=_init_worker, initargs=(spec, seed, max_episode_steps))
            results = pool.imap(_run_in_worker, range(total))
        with pool:
            for episode, (arrays, attempts) in enumerate(results):
                if len(arrays["terminals"]) != max_episode_steps:
                    raise RuntimeError(
                        f"episode {episode} has {len(arrays['terminals'])} steps, not {max_episode_steps}"
                    )
                if not splits:
                    splits = [_allocate(arrays, num_episodes), _allocate(arrays, num_val)]
                split, row = (splits[0], episode) if episode < num_episodes else (splits[1], episode - num_episodes)
                for key, value in arrays.items():
                    split[key][row * max_episode_steps : (row + 1) * max_episode_steps] = value
                retries += attempts - 1
                bar.update(1)
                steps_per_second = (episode + 1) * max_episode_steps / (time.perf_counter() - start)
                bar.set_postfix(steps_per_s=f"{steps_per_second:.0f}", refresh=False)
    generation_seconds = time.perf_counter() - start
    total_steps = total * max_episode_steps

    _write_npz_files([(val_path, splits[1]), (train_path, splits[0])])
    if progress:
        retried = f", {retries} unhealthy scene episodes redone" if retries else ""
        print(
            f"{dataset_name}: {total_steps} steps ({num_episodes} train + {num_val} val episodes) in "
            f"{generation_seconds:.1f} s, {total_steps / generation_seconds:.0f} steps/s with {workers} "
            f"worker(s){retried}; wrote {train_path} and {val_path}",
            flush=True,
        )
    return train_path


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m offrl.generate NAME [--num-episodes N] [--dataset-dir DIR] [--workers W] ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m offrl.generate",
        description="Regenerate an OGBench dataset offline with OGBench's own oracles and generation procedure.",
    )
    parser.add_argument("name", help="dataset name, e.g. cube-single-play-v0 or pointmaze-medium-navigate-v0")
    parser.add_argument("--num-episodes", type=int, default=None, help="train episodes (default: official count)")
    parser.add_argument("--dataset-dir", default=DEFAULT_DATASET_DIR, help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed; files depend only on it (default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores, %(default)s)"
    )
    parser.add_argument("--max-episode-steps", type=int, default=None, help="steps per episode (default: official)")
    parser.add_argument(
        "--output-name",
        default=None,
        help="write DIR/<output-name>.npz (default: DIR/generated/<name>-<N>ep-seed<S>.npz, where offrl.datasets "
        "looks for generated sets; never the official file name)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    args = parser.parse_args(argv)
    try:
        generate_dataset(
            args.name,
            args.dataset_dir,
            num_episodes=args.num_episodes,
            seed=args.seed,
            workers=args.workers,
            max_episode_steps=args.max_episode_steps,
            output_name=args.output_name,
            progress=not args.no_progress,
        )
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no dataset file was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
