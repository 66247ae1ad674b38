"""The replay buffer of offline-to-online fine-tuning: the offline transitions, then room for the online ones.

Everything is preallocated on the device when the buffer is made, and the number of filled rows is a device scalar,
so a compiled (or CUDA-graph captured) update that samples from the buffer sees the same tensors at every step and
never recompiles as the buffer grows. Sampling follows the FQL repository (https://github.com/seohongpark/fql,
`main.py`): uniform over every filled row (offline and online together), or, with `balanced=True`, half of each
batch from the offline rows and half from the online rows (all offline while there are no online rows yet, so the
same compiled update serves the offline phase too). Row indices are `randint(0, 2^62) % size`, exact integers: the
modulo bias is below 1e-11 for any size that fits in memory.

Transition tensors as in `offrl.datasets` (N rows, S observation dim, A action dim), all float32:
    observations (N, S), actions (N, A), rewards (N,), next_observations (N, S), masks (N,), terminals (N,)
An online transition's mask is `1 - terminated` (a truncation keeps bootstrapping); `terminals` marks the end of an
episode (terminated or truncated).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """The offline transitions followed by `capacity` preallocated rows for online ones, on the offline data's device.

    Args:
        offline: the offline transitions {key: (N, ...)} (e.g. `OfflineDataset.train`); copied, not aliased.
        capacity: how many online transitions fit (e.g. --online-steps); adding more is an error.

    Attributes: storage {key: (N + capacity, ...)}, num_offline, num_online (a Python int), filled (a device scalar,
    int64: N + num_online).
    """

    def __init__(self, offline: Mapping[str, torch.Tensor], capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be at least 0, got {capacity}")
        first = next(iter(offline.values()))
        self.num_offline, self.capacity, self.num_online = int(first.shape[0]), int(capacity), 0
        self.storage = {
            key: torch.cat([value, value.new_zeros((self.capacity, *value.shape[1:]))])
            for key, value in offline.items()
        }
        if self.num_offline == 0:
            raise ValueError("the replay buffer needs at least one offline transition")
        self.filled = torch.tensor(self.num_offline, dtype=torch.int64, device=first.device)

    def __len__(self) -> int:
        return self.num_offline + self.num_online

    def add(self, transitions: Mapping[str, torch.Tensor]) -> None:
        """Append K online transitions in order: {key: (K, ...)} with the storage's keys (K = number of envs)."""
        if set(transitions) != set(self.storage):
            raise KeyError(f"transitions have keys {sorted(transitions)}, the buffer {sorted(self.storage)}")
        count = int(next(iter(transitions.values())).shape[0])
        if self.num_online + count > self.capacity:
            raise ValueError(f"the replay buffer holds {self.capacity} online transitions; {count} more do not fit")
        start = self.num_offline + self.num_online
        for key, value in transitions.items():
            self.storage[key][start : start + count] = value
        self.num_online += count
        self.filled.fill_(len(self))

    def sample(self, batch_size: int, balanced: bool = False) -> dict[str, torch.Tensor]:
        """A batch drawn on the device, with replacement: {key: (batch_size, ...)}. Can be called inside a
        `torch.compile`d update: the sizes are device scalars, so growing the buffer does not recompile.

        balanced=False: uniform over the filled rows. balanced=True: the first batch_size // 2 rows uniform over the
        offline transitions, the rest uniform over the online ones (over the offline ones while there are none).
        """
        device = self.filled.device
        if not balanced:
            rows = self._uniform(batch_size, self.filled, device)
        else:
            half = batch_size // 2
            offline = self._uniform(half, self.num_offline, device)
            num_online = self.filled - self.num_offline  # a device scalar: no branch on the host
            online = torch.where(
                num_online > 0,
                self.num_offline + self._uniform(batch_size - half, num_online.clamp(min=1), device),
                self._uniform(batch_size - half, self.num_offline, device),
            )
            rows = torch.cat([offline, online])
        return {key: value[rows] for key, value in self.storage.items()}

    @staticmethod
    def _uniform(count: int, size: torch.Tensor | int, device: torch.device) -> torch.Tensor:
        """`count` row indices uniform over [0, size) (size >= 1, an int64 device scalar or an int): (count,) int64."""
        return torch.randint(0, 2**62, (count,), device=device) % size

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """The online rows and their count (the offline rows come from the dataset again), for a checkpoint."""
        rows = slice(self.num_offline, self.num_offline + self.num_online)
        return {"num_online": self.num_online, **{key: value[rows].clone() for key, value in self.storage.items()}}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | int]) -> None:
        """Put a checkpoint's online rows back (the buffer must have been made from the same offline data)."""
        self.num_online = 0
        count = int(state["num_online"])
        if count:
            self.add({key: state[key] for key in self.storage})
        else:
            self.filled.fill_(self.num_offline)
