"""Fixtures shared by the script tests: tiny datasets of both families, built once per test session."""

import pytest

from offrl import generate
from tests.helpers import collect_minari


@pytest.fixture(scope="session")
def ogbench_dir(tmp_path_factory):
    """A regenerated cube-single-play set of 2 episodes x 120 steps, where `--generate-episodes 2` finds it."""
    directory = tmp_path_factory.mktemp("ogbench")
    target = generate.generated_path(directory, "cube-single-play-v0", 2)
    generate.generate_dataset(
        "cube-single-play-v0", target.parent, num_episodes=2, max_episode_steps=120, output_name=target.stem
    )
    return directory


@pytest.fixture(scope="session")
def minari_dir(tmp_path_factory):
    """A Minari dataset `test/pendulum/random-v0` of 30 random InvertedPendulum episodes (at most 20 steps)."""
    root = tmp_path_factory.mktemp("minari")
    collect_minari(root, "test/pendulum/random-v0", "InvertedPendulum-v5", 30, max_episode_steps=20)
    return root
