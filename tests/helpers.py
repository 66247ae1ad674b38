"""Helpers shared by the tests: building Minari datasets, running the training scripts, reading their logs."""

import os
import pathlib
import subprocess
import sys

import gymnasium
import minari
import numpy as np
import torch
from torch import nn

from offrl.datasets.minari import minari_root

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def collect_minari(root: pathlib.Path, dataset_id: str, env_id: str, episodes: int, **make_kwargs):
    """Build a Minari dataset from random-action episodes with `minari.create_dataset_from_buffers`."""
    from minari.data_collector import EpisodeBuffer

    env = gymnasium.make(env_id, **make_kwargs)
    env.action_space.seed(0)
    buffers = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=episode)
        steps = {"observations": [observation], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            action = env.action_space.sample()
            observation, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(steps, (observation, action, reward, terminated, truncated), strict=True):
                steps[key].append(value)
            done = terminated or truncated
        observations = steps.pop("observations")
        if isinstance(observations[0], dict):
            observations = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
        else:
            observations = np.stack(observations)
        buffers.append(EpisodeBuffer(id=episode, seed=episode, observations=observations, **steps))
    with minari_root(root):
        dataset = minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env, algorithm_name="random", ref_min_score=-10.0, ref_max_score=90.0
        )
    env.close()
    return dataset


def run_script(
    script: str, *args: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `python <script> <args>` from the repository root, the way a user would (`env`: extra variables)."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, **(env or {})}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def run_tiny_ogbench(script: str, ogbench_dir, run_dir, *args: str) -> subprocess.CompletedProcess:
    """20 steps of `script` on the 2-episode regenerated cube-single set, evaluating and saving every 10 steps."""
    return run_script(
        script, "--dataset-dir", str(ogbench_dir), "--generate-episodes", "2", "--total-steps", "20",
        "--eval-every", "10", "--log-every", "5", "--save-every", "10", "--run-dir", str(run_dir), *args,
    )  # fmt: skip


def run_full_and_resumed(script: str, minari_dir, tmp_path, *args: str, resume_checkpoint_file: bool = False):
    """Train 30 steps in one go (`full`), and 10 steps then `--resume` to 30 (`part`); returns both run dirs.

    Eager, CPU, on the Minari pendulum set; evaluation and checkpoint every 10 steps, logs every 5. The resume
    points at the checkpoint file or at the run directory (both are accepted).
    """
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--eval-every", "10", "--log-every", "5", "--save-every", "10", *args]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    run_script(script, *common, "--total-steps", "30", "--run-dir", str(full))
    run_script(script, *common, "--total-steps", "10", "--run-dir", str(part))
    resume = part / "checkpoint.pt" if resume_checkpoint_file else part
    run_script(script, *common, "--total-steps", "30", "--resume", str(resume))
    return full, part


def read_scalars(run_dir: pathlib.Path) -> dict[str, dict[int, float]]:
    """All TensorBoard scalars of a run: {tag: {step: value}} (the latest event wins for a repeated step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, dict[int, float]] = {}
    for events in sorted(pathlib.Path(run_dir).glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    return scalars


class Constant(nn.Module):
    """A network that returns fixed values per row (critic: (2, B, 1); value: (B, 1)), ignoring its input."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.weight = nn.Parameter(torch.zeros(()))  # something to differentiate

    def forward(self, x):
        return (self.values + self.weight).unsqueeze(-1)


def hand_batch() -> dict[str, torch.Tensor]:
    """A two-transition batch for loss tests: observation dim 1, action dim 2; the second transition ends the task
    (mask 0) and is also the end of a stored trajectory (terminal 1), which must not matter: backups use masks."""
    return {
        "observations": torch.tensor([[0.0], [1.0]]),
        "actions": torch.tensor([[0.5, 0.5], [-1.0, 0.0]]),
        "rewards": torch.tensor([-1.0, 0.0]),
        "next_observations": torch.tensor([[2.0], [3.0]]),
        "masks": torch.tensor([1.0, 0.0]),
        "terminals": torch.tensor([0.0, 1.0]),
    }


def value_hand_batch() -> dict[str, torch.Tensor]:
    """The batch of the IQL-critic loss tests (IQL, IDQL): observation dim 2 (its first feature is V(s) for the
    tests' value network), action dim 1; the second transition has mask 0 and terminal 1 (backups use masks)."""
    return {
        "observations": torch.tensor([[1.0, 0.0], [2.0, 0.0]]),
        "actions": torch.tensor([[0.5], [-0.5]]),
        "rewards": torch.tensor([-1.0, 0.0]),
        "next_observations": torch.tensor([[3.0, 0.0], [5.0, 0.0]]),
        "masks": torch.tensor([1.0, 0.0]),
        "terminals": torch.tensor([0.0, 1.0]),
    }


class ValueOf(nn.Module):
    """V(s) = the first feature of s, plus a trainable offset: (B, S) -> (B, 1)."""

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, obs):
        return obs[:, :1] + self.offset


def random_data(obs_dim: int, action_dim: int, size: int = 32, val: bool = True):
    """An `OfflineDataset` of `size` random transitions (no environment): what `build()` needs to make an agent."""
    from offrl.datasets import OfflineDataset

    def split(n):
        return {
            "observations": torch.randn(n, obs_dim),
            "actions": torch.rand(n, action_dim) * 2 - 1,
            "rewards": -torch.rand(n),
            "next_observations": torch.randn(n, obs_dim),
            "masks": torch.ones(n),
            "terminals": torch.zeros(n),
        }

    return OfflineDataset("random", "test", split(size), split(size) if val else None, make_env=None)
