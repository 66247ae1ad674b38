"""Evaluation: exact episode counting, seeding, OGBench and MuJoCo environments, errors and videos."""

import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import ogbench  # noqa: F401  (registers the OGBench environments)
import pytest
import torch

from offrl.evaluation import (
    EVAL_SEED_OFFSET,
    MAX_EVAL_EPISODES,
    episode_seeds,
    evaluate,
    evaluate_members,
    run_episodes,
)
from offrl.observations import flatten_observation_env, flatten_observations
from offrl.scores import normalized_score, reference_scores


class CountingEnv(gymnasium.Env):
    """A deterministic toy whose episodes are known from the reset seed s.

    The episode lasts 1 + s % 4 steps, each with reward 1 + s % 3; it terminates with success for even s and is
    truncated without success for odd s. Observations are a Dict (flattened by `evaluate`): "a" the step count,
    "b" (s % 97, 7). A reset without a seed draws s from the env's generator. Every reset seed is appended to
    `resets` when a list is given (in-process environments only).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None, report_success=True, resets=None):
        self.observation_space = gymnasium.spaces.Dict(
            {"b": gymnasium.spaces.Box(-np.inf, np.inf, (2,)), "a": gymnasium.spaces.Box(0, np.inf, (1,))}
        )
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,))
        self.render_mode = render_mode
        self.report_success = report_success
        self.resets = resets

    def _observation(self):
        return {
            "a": np.array([self.t], dtype=np.float32),
            "b": np.array([self.episode_seed % 97, 7.0], dtype=np.float32),
        }

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episode_seed = seed if seed is not None else int(self.np_random.integers(1000))
        self.t = 0
        if self.resets is not None:
            self.resets.append(seed)
        return self._observation(), {}

    def step(self, action):
        assert self.t < episode_length(self.episode_seed), "stepped past the end of an episode"
        self.t += 1
        over = self.t == episode_length(self.episode_seed)
        terminated = over and self.episode_seed % 2 == 0
        truncated = over and not terminated
        info = {"success": terminated} if over and self.report_success else {}
        return self._observation(), float(1 + self.episode_seed % 3), terminated, truncated, info

    def render(self):
        return np.full((16, 16, 3), (40 * self.t + self.episode_seed) % 256, dtype=np.uint8)


def episode_length(seed):
    return 1 + seed % 4


def expected_episodes(seed, num_episodes):
    seeds = np.array(episode_seeds(seed, num_episodes))
    lengths = 1 + seeds % 4
    return {"return": lengths * (1 + seeds % 3), "length": lengths, "success": (seeds % 2 == 0).astype(float)}


def make_counting_env_without_render_mode():
    return CountingEnv()


def random_policy(obs, action_dim):
    return torch.rand(obs.shape[0], action_dim, device=obs.device) * 2 - 1


def hopper_policy(obs):
    # Elementwise only, so every row's action is bitwise the same whatever the batch size.
    return torch.tanh(0.5 * obs[:, :3] + obs[:, 3:6])


make_cube = functools.partial(gymnasium.make, "cube-single-singletask-task1-v0")
make_hopper = functools.partial(gymnasium.make, "Hopper-v5")


def without_speed(result):
    return {key: value for key, value in result.items() if key not in ("env_steps_per_second", "asynchronous", "video")}


def test_episode_seeds_rule():
    assert episode_seeds(0, 3) == [EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 1, EVAL_SEED_OFFSET + 2]
    assert episode_seeds(2, 1) == [EVAL_SEED_OFFSET + 2 * MAX_EVAL_EPISODES]
    # Consecutive evaluation seeds never share an episode seed.
    assert not set(episode_seeds(0, MAX_EVAL_EPISODES)) & set(episode_seeds(1, 10))
    with pytest.raises(ValueError, match="num_episodes"):
        episode_seeds(0, MAX_EVAL_EPISODES + 1)


@pytest.mark.parametrize("num_envs", [1, 2, 3, 7])
def test_run_episodes_counts_each_episode_once(num_envs):
    num_episodes, seed = 7, 5
    resets = []
    make_env = functools.partial(CountingEnv, resets=resets)
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: flatten_observation_env(make_env())] * num_envs,
        autoreset_mode=gymnasium.vector.AutoresetMode.DISABLED,
    )
    episodes = run_episodes(lambda obs: torch.zeros(obs.shape[0], 1), envs, episode_seeds(seed, num_episodes))
    envs.close()
    expected = expected_episodes(seed, num_episodes)
    np.testing.assert_array_equal(episodes["return"], expected["return"])
    np.testing.assert_array_equal(episodes["length"], expected["length"])
    np.testing.assert_array_equal(episodes["success"], expected["success"])
    # Every episode seed was used for exactly one reset; the other resets are the idle environments' (no seed).
    assert sorted(s for s in resets if s is not None) == episode_seeds(seed, num_episodes)


@pytest.mark.parametrize("num_envs", [1, 3, 8])
def test_evaluate_toy_means(num_envs):
    expected = expected_episodes(3, 5)
    result = evaluate(lambda obs: torch.zeros(obs.shape[0], 1), CountingEnv, 5, num_envs=num_envs, seed=3)
    assert result["num_episodes"] == 5
    assert result["return"] == pytest.approx(expected["return"].mean())
    assert result["episode_length"] == pytest.approx(expected["length"].mean())
    assert result["success"] == pytest.approx(expected["success"].mean())
    assert result["normalized_score"] is None
    assert result["env_steps_per_second"] > 0


def test_evaluate_flattens_dict_observations():
    seen = []

    def policy(obs):
        seen.append(obs.clone())
        return torch.zeros(obs.shape[0], 1)

    evaluate(policy, CountingEnv, 2, num_envs=2, seed=0)
    space = CountingEnv().observation_space
    assert all(obs.dtype == torch.float32 and obs.shape == (2, gymnasium.spaces.flatdim(space)) for obs in seen)
    first = {"a": np.array([0.0]), "b": np.array([EVAL_SEED_OFFSET % 97, 7.0])}
    np.testing.assert_array_equal(seen[0][0].numpy(), gymnasium.spaces.flatten(space, first))


def test_flatten_observations_matches_gymnasium():
    space = gymnasium.spaces.Dict(
        {
            "pos": gymnasium.spaces.Box(-1, 1, (2, 2)),
            "goal": gymnasium.spaces.Tuple((gymnasium.spaces.Box(-1, 1, (3,)), gymnasium.spaces.Discrete(4, start=1))),
        },
        seed=0,
    )
    samples = [space.sample() for _ in range(5)]
    batch = {
        "pos": np.stack([s["pos"] for s in samples]),
        "goal": (np.stack([s["goal"][0] for s in samples]), np.array([s["goal"][1] for s in samples])),
    }
    expected = np.stack([gymnasium.spaces.flatten(space, s) for s in samples])
    np.testing.assert_allclose(flatten_observations(space, batch), expected)


def test_evaluate_reports_no_success_when_env_has_none():
    make_env = functools.partial(CountingEnv, report_success=False)
    assert evaluate(lambda obs: torch.zeros(obs.shape[0], 1), make_env, 3, num_envs=2)["success"] is None


def test_evaluate_ogbench_cube_random_policy():
    result = evaluate(functools.partial(random_policy, action_dim=5), make_cube, 3, num_envs=2, seed=0)
    assert result["num_episodes"] == 3
    assert 0.0 <= result["success"] <= 1.0
    assert result["normalized_score"] is None
    assert -200.0 <= result["return"] <= 0.0
    if result["success"] == 0.0:  # no episode solved: every one ran the full 200-step horizon
        assert result["episode_length"] == 200.0 and result["return"] == -200.0
    else:
        assert result["episode_length"] <= 200.0


def test_evaluate_mujoco_return_and_normalized_score():
    refs = reference_scores("mujoco/hopper/medium-v0")
    result = evaluate(functools.partial(random_policy, action_dim=3), make_hopper, 4, num_envs=2, ref_scores=refs)
    assert result["success"] is None
    assert result["num_episodes"] == 4
    assert np.isfinite(result["return"]) and 1 <= result["episode_length"] <= 1000
    assert result["normalized_score"] == pytest.approx(normalized_score(result["return"], *refs))


def test_evaluate_is_deterministic_and_leaves_caller_rng_alone():
    policy = functools.partial(random_policy, action_dim=3)
    rng_state, num_threads = torch.get_rng_state(), torch.get_num_threads()
    first = evaluate(policy, make_hopper, 3, num_envs=2, seed=1)
    torch.manual_seed(123)  # the caller's RNG does not matter: evaluate seeds its own fork
    second = evaluate(policy, make_hopper, 3, num_envs=2, seed=1)
    assert without_speed(first) == without_speed(second)
    other = evaluate(policy, make_hopper, 3, num_envs=2, seed=2)
    assert other["return"] != first["return"]
    torch.set_rng_state(rng_state)
    first_again = evaluate(policy, make_hopper, 3, num_envs=2, seed=1)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.get_num_threads() == num_threads
    assert without_speed(first_again) == without_speed(first)


def test_evaluate_does_not_depend_on_num_envs():
    results = [without_speed(evaluate(hopper_policy, make_hopper, 3, num_envs=n, seed=4)) for n in (1, 3, 5)]
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize(("cores", "num_envs", "expected"), [(2, 8, False), (16, 8, True), (16, 1, False)])
def test_evaluate_goes_asynchronous_when_cores_are_spare(monkeypatch, cores, num_envs, expected):
    monkeypatch.setattr("offrl.evaluation.os.cpu_count", lambda: cores)
    result = evaluate(lambda obs: torch.zeros(obs.shape[0], 1), CountingEnv, num_envs, num_envs=num_envs, seed=3)
    assert result["asynchronous"] is expected


def test_evaluate_asynchronous_matches_sync():
    sync = evaluate(hopper_policy, make_hopper, 3, num_envs=2, seed=4, asynchronous=False)
    asynchronous = evaluate(hopper_policy, make_hopper, 3, num_envs=2, seed=4, asynchronous=True)
    assert without_speed(asynchronous) == without_speed(sync)
    expected = expected_episodes(3, 5)
    toy = evaluate(lambda obs: torch.zeros(obs.shape[0], 1), CountingEnv, 5, num_envs=2, seed=3, asynchronous=True)
    assert toy["return"] == pytest.approx(expected["return"].mean())
    assert toy["episode_length"] == pytest.approx(expected["length"].mean())


@pytest.mark.parametrize(
    ("num_episodes", "num_envs", "message"),
    [(0, 2, "num_episodes must be positive, got 0"), (-3, 2, "num_episodes"), (2, 0, "num_envs must be positive")],
)
def test_evaluate_rejects_bad_counts(num_episodes, num_envs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(lambda obs: torch.zeros(obs.shape[0], 1), CountingEnv, num_episodes, num_envs=num_envs)


def test_evaluate_rejects_bad_actions():
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(2, 1\)"):
        evaluate(lambda obs: torch.zeros(obs.shape[0], 2), CountingEnv, 3, num_envs=2)
    with pytest.raises(ValueError, match=r"shape \(1,\), expected \(2, 1\)"):
        evaluate(lambda obs: torch.zeros(1), CountingEnv, 3, num_envs=2)
    with pytest.raises(ValueError, match=r"non-finite actions \(NaN or inf\) for batch rows \[1\]"):
        evaluate(lambda obs: torch.tensor([[0.0], [float("nan")]]), CountingEnv, 3, num_envs=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        evaluate(lambda obs: np.zeros((obs.shape[0], 1)), CountingEnv, 3, num_envs=2)


def test_video_written_and_results_unchanged(tmp_path):
    policy = lambda obs: torch.zeros(obs.shape[0], 1)  # noqa: E731
    plain = evaluate(policy, CountingEnv, 4, num_envs=2, seed=6)
    with_video = evaluate(policy, CountingEnv, 4, num_envs=2, seed=6, video_path=tmp_path / "videos" / "ep.gif")
    assert without_speed(with_video) == without_speed(plain)
    import imageio.v3 as iio

    frames = iio.imread(tmp_path / "videos" / "ep.gif")
    # Episode 0's frames: the reset frame plus one per step.
    assert frames.shape == (episode_length(episode_seeds(6, 1)[0]) + 1, 16, 16, 3)


def test_video_records_the_evaluated_episode_without_replaying_it(tmp_path):
    policy = lambda obs: torch.zeros(obs.shape[0], 1)  # noqa: E731
    plain_resets, video_resets = [], []
    evaluate(policy, functools.partial(CountingEnv, resets=plain_resets), 5, num_envs=2, seed=3, asynchronous=False)
    result = evaluate(
        policy, functools.partial(CountingEnv, resets=video_resets), 5, num_envs=2, seed=3, asynchronous=False,
        video_path=tmp_path / "ep.gif",
    )  # fmt: skip
    assert video_resets == plain_resets  # the same episodes and nothing more: no episode is run again for the video
    assert result["video"] == str(tmp_path / "ep.gif")


def test_video_mp4_or_gif_fallback(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate(lambda obs: torch.zeros(obs.shape[0], 1), CountingEnv, 1, num_envs=1, video_path=tmp_path / "ep.mp4")
    written = sorted(path.name for path in tmp_path.iterdir())
    try:
        import imageio_ffmpeg  # noqa: F401

        assert written == ["ep.mp4"]
    except ImportError:
        assert written == ["ep.gif"]
        assert any("writing a gif instead" in str(warning.message) for warning in caught)


def test_video_failure_warns_and_evaluation_goes_on(tmp_path):
    policy = lambda obs: torch.zeros(obs.shape[0], 1)  # noqa: E731
    with pytest.warns(UserWarning, match="evaluation video skipped"):
        result = evaluate(policy, make_counting_env_without_render_mode, 3, num_envs=2, video_path=tmp_path / "ep.gif")
    assert without_speed(result) == without_speed(evaluate(policy, CountingEnv, 3, num_envs=2))
    assert not list(tmp_path.iterdir())


MUJOCO_VIDEO_SCRIPT = """
import functools, sys, warnings
import gymnasium, torch
from offrl.evaluation import evaluate

make = functools.partial(gymnasium.make, "InvertedPendulum-v5", width=96, height=96)
policy = lambda obs: torch.zeros(obs.shape[0], 1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = evaluate(policy, make, 2, num_envs=2, video_path=sys.argv[1])
skipped = [str(w.message) for w in caught if "evaluation video skipped" in str(w.message)]
plain = evaluate(policy, make, 2, num_envs=2)
same = all(result[k] == plain[k] for k in ("success", "return", "episode_length"))
print("SKIPPED" if skipped else "RENDERED", "SAME" if same else "DIFFERENT", skipped, result["episode_length"])
"""

CHOOSE_BACKEND_SCRIPT = """
import os, sys
from offrl.video import choose_gl_backend
backend, why = choose_gl_backend()
print(repr(backend), repr(os.environ.get("MUJOCO_GL")), "mujoco" in sys.modules, why)
"""


REPO_ROOT = Path(__file__).resolve().parents[1]


def run_python(code, *args, **env_vars):
    """Run `code` in a fresh interpreter: MuJoCo picks its GL backend once, when it is first imported."""
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, **env_vars}
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=240
    )


@functools.cache
def headless_gl_backend():
    """The first MUJOCO_GL backend that can make an offscreen context here, or None."""
    probe = "import mujoco; context = mujoco.GLContext(16, 16); context.make_current(); context.free()"
    for backend in dict.fromkeys(filter(None, [os.environ.get("MUJOCO_GL"), "egl", "osmesa"])):
        if run_python(probe, MUJOCO_GL=backend).returncode == 0:
            return backend
    return None


def test_mujoco_video(tmp_path):
    backend = headless_gl_backend()
    if backend is None:
        pytest.skip("no headless GL backend for MuJoCo (MUJOCO_GL=egl needs libEGL, osmesa needs libOSMesa)")
    path = tmp_path / "pendulum.gif"
    process = run_python(MUJOCO_VIDEO_SCRIPT, str(path), MUJOCO_GL=backend)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.startswith("RENDERED SAME"), process.stdout
    import imageio.v3 as iio

    frames = iio.imread(path)
    assert frames.ndim == 4 and frames.shape[0] >= 2 and frames.shape[1:] == (96, 96, 3)
    assert frames.std() > 0  # not a blank image


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glfw needs no display only on Linux")
def test_mujoco_video_without_display_warns(tmp_path):
    path = tmp_path / "pendulum.gif"
    process = run_python(MUJOCO_VIDEO_SCRIPT, str(path), MUJOCO_GL="glfw", DISPLAY=None, WAYLAND_DISPLAY=None)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.startswith("SKIPPED"), process.stdout
    assert "MUJOCO_GL=egl" in process.stdout
    assert not path.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the candidates (glfw, egl, osmesa) are Linux's")
def test_choose_gl_backend_headless_picks_one_that_renders_or_says_why():
    process = run_python(CHOOSE_BACKEND_SCRIPT, MUJOCO_GL=None, DISPLAY=None, WAYLAND_DISPLAY=None)
    assert process.returncode == 0, process.stderr[-3000:]
    backend, environment, mujoco_imported, why = process.stdout.split(" ", 3)
    assert mujoco_imported == "False"  # probed in child processes; this one can still choose
    expected = headless_gl_backend()
    if expected is None:
        assert backend == "None" and environment == "None"
        assert "MUJOCO_GL=egl:" in why and "MUJOCO_GL=osmesa:" in why and "glfw" not in why  # no display, no glfw
    else:
        assert backend == environment == repr(expected) and not why.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glfw needs no display only on Linux")
def test_choose_gl_backend_keeps_the_users_choice_and_says_why_it_fails():
    process = run_python(CHOOSE_BACKEND_SCRIPT, MUJOCO_GL="glfw", DISPLAY=None, WAYLAND_DISPLAY=None)
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.startswith("None 'glfw' False MUJOCO_GL=glfw: no display (DISPLAY is not set)")


def test_members_are_evaluated_together_each_with_its_single_runs_episodes():
    """Three members in one vector env of 3 x 2 environments, one policy call per step for all of them; each member's
    results are those `evaluate` gives a single run of its seed (this env's episodes depend on their seeds only)."""
    shapes = []

    def policy(obs):  # (K, N, S) -> (K, N, 1)
        shapes.append(tuple(obs.shape))
        return torch.zeros(*obs.shape[:2], 1)

    seeds = [0, 1, 5]
    results = evaluate_members(policy, CountingEnv, 5, num_envs=2, seeds=seeds, asynchronous=False)
    assert set(shapes) == {(3, 2, 3)}
    for seed, result in zip(seeds, results, strict=True):
        alone = evaluate(lambda obs: torch.zeros(obs.shape[0], 1), CountingEnv, 5, num_envs=2, seed=seed)
        assert {k: v for k, v in result.items() if k != "env_steps_per_second"} == {
            k: v for k, v in alone.items() if k != "env_steps_per_second"
        }
    assert len({r["return"] for r in results}) == 3  # the seeds' episodes differ, so do the members' returns
