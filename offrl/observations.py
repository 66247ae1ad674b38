"""Observations as flat vectors: Dict/Tuple spaces (e.g. Minari's AntMaze) flattened in gymnasium's order.

`flatten_observation_env` wraps an environment, `flatten_observations` flattens a stored batch the same way, so the
dataset, the evaluation and the online phase all give the networks the same vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np

__all__ = ["flatten_observation_env", "flatten_observations"]


def flatten_observation_env(env: gymnasium.Env) -> gymnasium.Env:
    """Wrap `env` so its observations are flat vectors, or return it unchanged if they already are.

    A 1-D Box stays as it is; any other space (Dict, Tuple, an n-D Box) goes through
    `gymnasium.wrappers.FlattenObservation`, i.e. `gymnasium.spaces.flatten` order (Dict entries in the order of
    `space.spaces`). `evaluate` applies this to every environment it makes.
    """
    space = env.observation_space
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        return env
    return gymnasium.wrappers.FlattenObservation(env)


def flatten_observations(space: gymnasium.spaces.Space, observations: Any) -> np.ndarray:
    """Flatten a batch of observations row by row, exactly as `gymnasium.spaces.flatten` flattens one.

    Args:
        space: the single-observation space (Box, Discrete, Dict or Tuple of those, nested).
        observations: a batch matching `space`: an array (N, *shape) for a Box, ints (N,) for a Discrete,
            a mapping / sequence of such batches for a Dict / Tuple (as Minari stores Dict observations).

    Returns:
        (N, flatdim(space)) array; rows equal `gymnasium.spaces.flatten(space, observation)`.
    """
    if isinstance(space, gymnasium.spaces.Box):
        observations = np.asarray(observations, dtype=space.dtype)
        return observations.reshape(observations.shape[0], -1)
    if isinstance(space, gymnasium.spaces.Discrete):
        indices = np.asarray(observations) - space.start
        one_hot = np.zeros((indices.shape[0], space.n), dtype=space.dtype)
        one_hot[np.arange(indices.shape[0]), indices] = 1
        return one_hot
    if isinstance(space, gymnasium.spaces.Dict):
        assert isinstance(observations, Mapping), f"a Dict space needs a mapping of batches, got {type(observations)}"
        parts = [flatten_observations(subspace, observations[key]) for key, subspace in space.spaces.items()]
        return np.concatenate(parts, axis=1)
    if isinstance(space, gymnasium.spaces.Tuple):
        assert isinstance(observations, Sequence), (
            f"a Tuple space needs a sequence of batches, got {type(observations)}"
        )
        parts = [
            flatten_observations(subspace, batch) for subspace, batch in zip(space.spaces, observations, strict=True)
        ]
        return np.concatenate(parts, axis=1)
    raise NotImplementedError(f"cannot flatten a batch of {type(space).__name__} observations")
