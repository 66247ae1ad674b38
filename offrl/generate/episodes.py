"""One episode of OGBench's data collection, as its own scripts run it: the environment, the official oracles and
noise, seeded from (seed, episode index) so that a seed gives the same episode in any process (`EpisodeRunner`)."""

from __future__ import annotations

import copy
import warnings

import numpy as np

from offrl.generate.specs import (
    MARKOV_MAX_NOISE,
    MARKOV_MIN_NORM,
    MARKOV_NOISE_SCALES,
    MAX_SCENE_ATTEMPTS,
    PLAN_NOISE,
    PLAN_NOISE_SMOOTHING,
    POINT_ACTION_NOISE,
    SCENE_CUBE_MARKOV_MAX_STEP,
    STITCH_GOAL_DISTANCE,
    DatasetSpec,
)

__all__ = ["EpisodeRunner"]


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
