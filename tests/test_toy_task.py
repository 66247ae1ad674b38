"""The toy task of the learning tests: environment, behaviour dataset, and how offrl loads and evaluates it."""

import functools
import os
import pathlib
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from offrl.datasets import load_dataset
from offrl.evaluation import evaluate
from tests import toy_task

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("toy")
    assert toy_task.make_toy_dataset(directory) == toy_task.DATASET_ID
    return directory


@pytest.fixture(scope="module")
def toy_data(toy_dir):
    return load_dataset(toy_task.DATASET_ID, dataset_dir=toy_dir)


def test_env_api():
    env = gymnasium.make(toy_task.ENV_ID)
    assert env.spec.max_episode_steps == toy_task.MAX_EPISODE_STEPS
    assert env.observation_space.shape == (4,) and env.action_space.shape == (2,)
    check_env(env.unwrapped, skip_render_check=True)
    first, info = env.reset(seed=3)
    assert info["success"] is False and first.dtype == np.float32
    np.testing.assert_array_equal(first, env.reset(seed=3)[0])
    assert not np.array_equal(first, env.reset(seed=4)[0])
    assert np.linalg.norm(first[2:]) == pytest.approx(toy_task.GOAL_DISTANCE, abs=1e-6)  # the goal is on the circle
    assert np.abs(first[:2]).max() <= toy_task.START_SPREAD
    env.reset(seed=3)
    for _ in range(toy_task.MAX_EPISODE_STEPS):  # standing still never succeeds: truncated at the horizon
        _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        assert reward == -1.0 and not terminated and info["success"] is False
    assert truncated
    observation, _ = env.reset(seed=3)
    for step in range(toy_task.OPTIMAL_STEPS):
        action = toy_task.optimal_policy(torch.as_tensor(observation[None]))[0].numpy()
        observation, reward, terminated, truncated, info = env.step(action)
        last = step == toy_task.OPTIMAL_STEPS - 1
        assert (reward, terminated, info["success"]) == ((0.0, True, True) if last else (-1.0, False, False))
    env.close()


def test_dataset_loads_through_offrl(toy_data):
    data = toy_data
    assert data.family == "minari" and (data.observation_dim, data.action_dim) == (4, 2)
    meta = data.metadata
    assert meta["max_episode_steps"] == toy_task.MAX_EPISODE_STEPS and meta["reward_mode"] == "none"
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (toy_task.REF_MIN_SCORE, toy_task.REF_MAX_SCORE)
    assert meta["num_episodes"] == toy_task.NUM_EPISODES
    train = data.train
    assert set(train["rewards"].unique().tolist()) == {-1.0, 0.0}
    # success - 1 rewards, the episode terminates at the goal: bootstrapping stops exactly where the reward is 0
    torch.testing.assert_close(train["masks"], -train["rewards"])
    assert train["actions"].abs().max() <= 1.0


def test_behaviour_is_multimodal(toy_dir, toy_data):
    success = toy_task.behaviour_success(toy_dir)
    assert abs(success - toy_task.BEHAVIOUR_SUCCESS) < 0.05
    assert (toy_data.train["masks"] == 0).sum().item() == round(success * toy_task.NUM_EPISODES)
    # The first actions of the episodes split evenly between the modes' directions (the goal and its rotations).
    train = toy_data.train
    starts = torch.cat([torch.ones(1, dtype=torch.bool), train["terminals"][:-1] == 1]).numpy()
    goals, actions = train["observations"][starts, 2:].numpy(), train["actions"][starts].numpy()
    directions = np.stack([toy_task.mode_targets(goals, k) for k in range(toy_task.NUM_MODES)], axis=1)
    modes = np.argmax(np.einsum("ekd,ed->ek", directions, actions), axis=1)
    shares = np.bincount(modes, minlength=toy_task.NUM_MODES) / len(modes)
    np.testing.assert_allclose(shares, 1.0 / toy_task.NUM_MODES, atol=0.06)
    # A Gaussian fit of the first actions (what behaviour cloning learns at the start) goes nowhere.
    assert abs(np.einsum("ed,ed->e", actions, goals).mean()) < 0.1


def test_scripted_policies_through_evaluate(toy_data):
    ref_scores = (toy_data.metadata["ref_min_score"], toy_data.metadata["ref_max_score"])
    run = functools.partial(evaluate, make_env=toy_data.make_env, num_episodes=50, ref_scores=ref_scores)
    optimal = run(toy_task.optimal_policy)
    assert optimal["success"] == 1.0 and optimal["return"] == toy_task.REF_MAX_SCORE
    assert optimal["normalized_score"] == pytest.approx(100.0)
    assert optimal["episode_length"] == toy_task.OPTIMAL_STEPS
    for mode in range(1, toy_task.NUM_MODES):
        wrong = run(functools.partial(toy_task.distractor_policy, mode=mode))
        assert wrong["success"] == 0.0 and wrong["normalized_score"] == pytest.approx(0.0)
    idle = run(lambda observations: torch.zeros(observations.shape[0], 2))
    assert idle["success"] == 0.0 and idle["episode_length"] == toy_task.MAX_EPISODE_STEPS


def test_eval_env_in_a_fresh_process(toy_dir):
    """A training script run as a subprocess from the repository root recovers the environment from the data."""
    code = (
        "from offrl.datasets import load_dataset\n"
        f"data = load_dataset({toy_task.DATASET_ID!r}, dataset_dir={str(toy_dir)!r})\n"
        "env = data.make_env()\n"
        "observation, info = env.reset(seed=0)\n"
        "print(env.unwrapped.__class__.__name__, env.spec.max_episode_steps, info['success'])\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["ToyPointEnv", str(toy_task.MAX_EPISODE_STEPS), "False"]


def test_dataset_is_deterministic(tmp_path):
    def transitions(directory, seed):
        toy_task.make_toy_dataset(directory, num_episodes=30, seed=seed)
        return load_dataset(toy_task.DATASET_ID, dataset_dir=directory).train

    first, again, other = transitions(tmp_path / "a", 0), transitions(tmp_path / "b", 0), transitions(tmp_path / "c", 1)
    for key in first:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
    assert not torch.equal(first["observations"][:10], other["observations"][:10])
    # Writing again into the same folder replaces the dataset.
    toy_task.make_toy_dataset(tmp_path / "a", num_episodes=20, seed=0)
    assert load_dataset(toy_task.DATASET_ID, dataset_dir=tmp_path / "a").metadata["num_episodes"] == 20
