"""Fixtures shared by the script tests: tiny datasets of both families, built once per test session (per worker).

The suite runs on every core (pytest-xdist, `-n auto` in pyproject.toml), so each worker and every training process
a test starts gets one thread: several workers with a thread per core each would fight over the cores. A thread
count set by the caller is kept.
"""

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before torch is imported: this process and the ones it starts

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from offrl import generate  # noqa: E402
from tests.helpers import collect_minari  # noqa: E402


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
