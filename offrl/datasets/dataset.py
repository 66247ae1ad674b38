"""The offline dataset a run trains on (`OfflineDataset`), batches from it, and what every source shares.

Transition tensors (N transitions, S observation dim, A action dim), all float32:
    observations (N, S), actions (N, A), rewards (N,), next_observations (N, S), masks (N,), terminals (N,)
`masks` is 0 where bootstrapping stops (the task is solved, or a Minari termination); `terminals` marks the end of
a stored trajectory and is not meant for the TD target. `sample_batch(data, batch_size)` draws a batch on the device
and can be called inside a `torch.compile`d update. Reward processing (`process_rewards`) and the check that a file
fits its environment (`check_widths`) are shared by the OGBench and Minari loaders.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

from offrl.members import MemberBatch
from offrl.observations import flatten_observation_env
from offrl.replay import ReplayBuffer

__all__ = [
    "ACTION_CLIP",
    "KEYS",
    "NAME_EXAMPLES",
    "REWARD_MODES",
    "DatasetError",
    "OfflineDataset",
    "check_widths",
    "network_reachable",
    "process_rewards",
    "sample_batch",
    "source_description",
    "to_tensors",
]

ACTION_CLIP = 1.0 - 1e-5
"""Dataset actions are clipped to [-ACTION_CLIP, ACTION_CLIP] (tanh policies' log-probabilities stay finite)."""
REWARD_MODES = ("auto", "none", "antmaze", "locomotion")
KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "terminals")

NAME_EXAMPLES = (
    "Accepted names:\n"
    "  - OGBench single-task: '<domain>-<type>-singletask-task<k>-v0' or '<domain>-<type>-singletask-v0',\n"
    "    e.g. 'cube-single-play-singletask-task1-v0', 'puzzle-3x3-play-singletask-task4-v0'\n"
    "  - Minari dataset ids: '<namespace>/<env>/<dataset>-v<k>',\n"
    "    e.g. 'mujoco/hopper/medium-v0', 'D4RL/antmaze/medium-play-v1', 'D4RL/pen/human-v2'\n"
    "  - D4RL names, which map to their Minari datasets: e.g. 'hopper-medium-v2', 'antmaze-large-play-v2'"
)


class DatasetError(RuntimeError):
    """A dataset could not be loaded; the message says why and what to do."""


@dataclass
class OfflineDataset:
    """An offline dataset ready for training.

    Attributes:
        name: the name it was loaded by (OGBench single-task name or Minari id).
        family: "ogbench" or "minari".
        train: transition tensors on the device (see the module docstring for keys and shapes).
        val: the validation split in the same format, or None when the source has none (Minari).
        make_env: picklable factory of the evaluation environment (flat Box observations).
        metadata: observation_dim, action_dim, max_episode_steps, ref_min_score / ref_max_score (None if unknown),
            source ("official", "generated", "minari", or "file"), path, reward_mode, reward_scale.
        replay: the replay buffer of offline-to-online fine-tuning (`start_replay`), or None (offline only).
        balanced_sampling: with a replay buffer, draw half of each batch from the offline transitions and half from
            the online ones (`offrl.replay.ReplayBuffer.sample`).
        members: for a group of members trained as one (`offrl.members`), their number: `sample` then draws each
            member its own batch, {key: (members, batch_size, ...)}; 0 for a single run.
    """

    name: str
    family: str
    train: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor] | None
    make_env: Callable[[], gymnasium.Env]
    metadata: dict[str, Any] = field(default_factory=dict)
    replay: ReplayBuffer | None = None
    balanced_sampling: bool = False
    members: int = 0

    @property
    def observation_dim(self) -> int:
        return int(self.train["observations"].shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.train["actions"].shape[1])

    def __len__(self) -> int:
        return int(self.train["observations"].shape[0])

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A training batch on the device, drawn with replacement: {key: (batch_size, ...)}; safe inside a compiled
        update (no host sync). Uniform over the training transitions; with a replay buffer (`start_replay`), from the
        buffer: uniform over the offline and online transitions, or half and half with `balanced_sampling`. For a
        group (`members`), a `MemberBatch` of independent batches, {key: (members, batch_size, ...)}."""
        if self.members:
            batch = sample_batch(self.train, self.members * batch_size)
            return MemberBatch({key: value.unflatten(0, (self.members, batch_size)) for key, value in batch.items()})
        if self.replay is None:
            return sample_batch(self.train, batch_size)
        return self.replay.sample(batch_size, balanced=self.balanced_sampling)

    def start_replay(self, capacity: int, balanced_sampling: bool = False) -> ReplayBuffer:
        """Make the replay buffer of fine-tuning: the training transitions and room for `capacity` online ones.
        `train` then views the buffer's offline rows (the data is not held twice)."""
        self.replay = ReplayBuffer(self.train, capacity)
        self.balanced_sampling = balanced_sampling
        self.train = {key: value[: len(self)] for key, value in self.replay.storage.items()}
        return self.replay

    def process_rewards(self, rewards: np.ndarray) -> np.ndarray:
        """The environment's rewards processed as the dataset's were (`reward_mode`): for online transitions."""
        return process_rewards(rewards, self.metadata.get("reward_mode", "none"), self.metadata.get("reward_scale"))


def sample_batch(data: dict[str, torch.Tensor], batch_size: int) -> dict[str, torch.Tensor]:
    """Uniformly sample `batch_size` transitions (with replacement) on the data's device.

    Indices come from `torch.randint` on the same device, so this is safe inside a compiled function and needs no
    host synchronization. data: {key: (N, ...)} -> {key: (batch_size, ...)}.
    """
    observations = data["observations"]
    indices = torch.randint(observations.shape[0], (batch_size,), device=observations.device)
    return {key: value[indices] for key, value in data.items()}


def check_widths(data: dict[str, np.ndarray], env: gymnasium.Env, where: str) -> None:
    """A dataset whose observations or actions do not fit its evaluation environment is refused now, naming it."""
    obs_space = flatten_observation_env(env).observation_space
    for key, space, what in (("observations", obs_space, "observation"), ("actions", env.action_space, "action")):
        width, expected = int(np.asarray(data[key]).shape[1]), int(np.prod(space.shape))
        if width != expected:
            raise DatasetError(
                f"{where}: its {key} have {width} columns, but the evaluation environment's {what} space has "
                f"{expected} ({space}). The file is from another dataset or corrupt: delete it (and its -val file) "
                "to download or regenerate it, or pass the right --env-name."
            )


def process_rewards(rewards: np.ndarray, reward_mode: str, scale: float | None = None) -> np.ndarray:
    """Rewards (N,) -> float32 (N,): unchanged ("none"), r - 1 ("antmaze"), r * scale ("locomotion")."""
    rewards = np.asarray(rewards, dtype=np.float32)
    if reward_mode == "antmaze":
        return rewards - 1.0
    if reward_mode == "locomotion":
        if scale is None:
            raise ValueError("locomotion reward scaling needs the scale computed from episode returns")
        return rewards * np.float32(scale)
    return rewards


def to_tensors(
    data: dict[str, np.ndarray], reward_mode: str, device: str | torch.device, scale: float | None = None
) -> tuple[dict[str, torch.Tensor], float | None]:
    """Select the transition keys, process rewards, clip actions and move everything to `device` as float32."""
    rewards = process_rewards(data["rewards"], reward_mode, scale)
    arrays = {
        "observations": data["observations"],
        "actions": np.clip(data["actions"], -ACTION_CLIP, ACTION_CLIP),
        "rewards": rewards,
        "next_observations": data["next_observations"],
        "masks": data["masks"],
        "terminals": data["terminals"],
    }
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)).to(device) for k, v in arrays.items()}
    return tensors, scale


# ----------------------------------------------------------------------------------------------------------------
# Command line: fetch (download or generate) a dataset ahead of training and print what a script will see.


def source_description(metadata: dict[str, Any]) -> str:
    """Where a dataset came from, for a run's first lines: 'official', 'minari', or 'generated by offrl.generate:
    1,000 episodes, seed 0, OGBench 1.2.2' (from the provenance a generated file carries)."""
    provenance = metadata.get("provenance")
    if not provenance:
        return metadata["source"]
    return (
        f"generated by {provenance.get('generator')}: {provenance.get('num_episodes'):,} episodes, seed "
        f"{provenance.get('seed')}, OGBench {provenance.get('ogbench')}"
    )


def network_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to `url`'s host (port 443) opens within `timeout` seconds: asked before a download,
    so that a machine without network is told at once instead of after a library's retries."""
    host = re.sub(r"^https?://", "", url).split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
