"""Minari datasets (D4RL's successor): opening or downloading one, its transitions, its evaluation environment."""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import re
import sys
import time
from typing import Any

import gymnasium
import numpy as np
import torch

from offrl import scores
from offrl.datasets.dataset import (
    NAME_EXAMPLES,
    DatasetError,
    OfflineDataset,
    check_widths,
    network_reachable,
    to_tensors,
)
from offrl.observations import flatten_observation_env, flatten_observations

__all__ = ["MINARI_REMOTE", "load_minari", "make_minari_env", "minari_root", "open_minari"]

MINARI_REMOTE = "https://huggingface.co"
"""Where Minari (0.5) downloads its datasets from (the `farama-minari` Hugging Face organisation)."""

_LOCOMOTION = ("halfcheetah", "hopper", "walker2d", "ant/")


@contextlib.contextmanager
def minari_root(dataset_dir: str | os.PathLike | None):
    """Point Minari at `dataset_dir` for the duration of a call (Minari reads MINARI_DATASETS_PATH)."""
    if dataset_dir is None:
        yield
        return
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(pathlib.Path(dataset_dir).expanduser())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def open_minari(name: str, dataset_dir: str | os.PathLike | None, download: bool):
    import minari
    from minari.storage import get_dataset_path

    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*/[\w.-]+-v\d+", name):
        raise DatasetError(f"{name!r} is not a valid Minari dataset id.\n{NAME_EXAMPLES}")
    with minari_root(dataset_dir):
        local_path = pathlib.Path(get_dataset_path(name))
        if not (local_path / "data").exists():
            if not download:
                raise DatasetError(f"Minari dataset {name!r} is not in {local_path.parent} and download is disabled.")
            if not network_reachable(MINARI_REMOTE):  # fail now, not after the hub client's retries
                raise DatasetError(
                    f"Minari dataset {name!r} is not in {local_path.parent}, and {MINARI_REMOTE} (where Minari "
                    f"downloads from) is not reachable (no network?). Download it on a machine with network "
                    f"(`minari download {name}`) and copy {local_path} here, then pass --dataset-dir (or set "
                    "MINARI_DATASETS_PATH) to the folder holding it."
                )
            try:
                print(f"[offrl] Minari dataset {name!r} not found locally; downloading it.", file=sys.stderr)
                return minari.load_dataset(name, download=True)
            except Exception as error:  # noqa: BLE001  (network, unknown id, hub errors: explain them all)
                raise DatasetError(
                    f"Minari dataset {name!r} is not in {local_path.parent} and could not be downloaded "
                    f"({type(error).__name__}: {error}). Check the id (`minari list remote`), or download it on a "
                    f"machine with network (`minari download {name}`) and copy {local_path} to this machine, "
                    f"then pass --dataset-dir (or set MINARI_DATASETS_PATH) to the folder holding it."
                ) from error
        try:
            return minari.load_dataset(name)
        except Exception as error:  # noqa: BLE001
            raise DatasetError(
                f"Could not read the Minari dataset at {local_path}: it is corrupt or incomplete "
                f"({type(error).__name__}: {error}). Delete that folder and download it again."
            ) from error


def _minari_transitions(dataset) -> tuple[dict[str, np.ndarray], list[float]]:
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "next_observations")}
    columns.update(masks=[], terminals=[])
    returns = []
    space = dataset.observation_space
    for episode in dataset.iterate_episodes():
        observations = flatten_observations(space, episode.observations).astype(np.float32)  # (T + 1, S)
        length = len(episode.actions)
        terminations = np.asarray(episode.terminations, dtype=bool)
        columns["observations"].append(observations[:-1])
        columns["next_observations"].append(observations[1:])
        columns["actions"].append(np.asarray(episode.actions, dtype=np.float32).reshape(length, -1))
        columns["rewards"].append(np.asarray(episode.rewards, dtype=np.float32))
        columns["masks"].append(1.0 - terminations.astype(np.float32))  # a truncation is not a terminal
        end = np.zeros(length, dtype=np.float32)
        end[-1] = 1.0
        columns["terminals"].append(end)
        returns.append(float(np.sum(episode.rewards)))
    if not returns:
        raise DatasetError(f"Minari dataset {dataset.id!r} has no episodes.")
    return {k: np.concatenate(v) for k, v in columns.items()}, returns


def load_minari(
    name: str,
    dataset_dir: str | os.PathLike | None,
    device: str | torch.device,
    reward_mode: str,
    download: bool,
) -> OfflineDataset:
    start = time.perf_counter()
    dataset = open_minari(name, dataset_dir, download)
    if not isinstance(dataset.action_space, gymnasium.spaces.Box):
        raise DatasetError(f"Minari dataset {name!r} has action space {dataset.action_space}; offrl needs a Box.")
    transitions, returns = _minari_transitions(dataset)
    if reward_mode == "auto":
        lowered = name.lower()
        if "antmaze" in lowered:
            reward_mode = "antmaze"
        elif any(key in lowered for key in _LOCOMOTION):
            reward_mode = "locomotion"
        else:
            reward_mode = "none"
    scale = None
    if reward_mode == "locomotion":
        spread = max(returns) - min(returns)
        scale = 1000.0 / spread if spread > 0 else 1.0
    train, scale = to_tensors(transitions, reward_mode, device, scale)
    metadata_raw = dict(dataset.storage.metadata)
    reference = scores.reference_scores(name, metadata_raw)
    make_env = functools.partial(make_minari_env, name, None if dataset_dir is None else str(dataset_dir))
    try:
        probe = make_env()
    except Exception as error:  # noqa: BLE001  (a missing env package is the usual cause)
        raise DatasetError(
            f"Could not create the evaluation environment of Minari dataset {name!r} "
            f"({type(error).__name__}: {error}). D4RL antmaze/adroit/kitchen environments need "
            f"`pip install gymnasium-robotics`."
        ) from error
    max_episode_steps = probe.spec.max_episode_steps if probe.spec else None
    try:
        check_widths(transitions, probe, f"Minari dataset {name!r}")
    finally:
        probe.close()
    metadata = {
        "observation_dim": int(transitions["observations"].shape[1]),
        "action_dim": int(transitions["actions"].shape[1]),
        "max_episode_steps": max_episode_steps,
        "ref_min_score": None if reference is None else reference[0],
        "ref_max_score": None if reference is None else reference[1],
        "source": "minari",
        "path": str(dataset.spec.data_path),
        "num_episodes": len(returns),
        "reward_mode": reward_mode,
        "reward_scale": scale,
        "load_seconds": time.perf_counter() - start,
    }
    return OfflineDataset(
        name=name,
        family="minari",
        train=train,
        val=None,
        make_env=make_env,
        metadata=metadata,
    )


def make_minari_env(name: str, dataset_dir: str | None = None, **kwargs: Any) -> gymnasium.Env:
    """The evaluation environment of a local Minari dataset (`recover_environment(eval_env=True)`), with Dict
    observations flattened in the same order as the dataset's transitions."""
    import minari

    with minari_root(dataset_dir):
        env = minari.load_dataset(name).recover_environment(eval_env=True, **kwargs)
    return flatten_observation_env(env)


# ----------------------------------------------------------------------------------------------------------------
# Shared processing
