"""One entry point for every source: `load_dataset(name)` and `prepare_dataset(name)` pick OGBench or Minari by name.

`load_dataset` returns an `OfflineDataset`: train transitions (and the validation split where the source has one) as
tensors on the requested device, an evaluation-environment factory and the metadata evaluation and scoring need.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import torch

from offrl.datasets.d4rl import d4rl_to_minari
from offrl.datasets.dataset import REWARD_MODES, DatasetError, OfflineDataset
from offrl.datasets.minari import load_minari, open_minari
from offrl.datasets.ogbench import (
    OGBENCH_DEFAULT_DIR,
    load_ogbench,
    ogbench_success_timing_kwargs,
    parse_ogbench_name,
    resolve_ogbench_path,
)

__all__ = ["load_data", "load_dataset", "prepare_dataset"]


def load_dataset(
    name: str,
    dataset_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    reward_mode: str = "auto",
    dataset_path: str | os.PathLike | None = None,
    generate_episodes: int | None = None,
    download: bool = True,
    generate_workers: int | None = None,
    success_timing: str | None = None,
) -> OfflineDataset:
    """Load an OGBench single-task dataset or a Minari dataset as transition tensors on `device`.

    Args:
        name: OGBench single-task name (`cube-single-play-singletask-task1-v0`) or Minari id
            (`mujoco/hopper/medium-v0`).
        dataset_dir: where datasets live. OGBench default `~/.ogbench/data`; Minari default its own
            (`MINARI_DATASETS_PATH` or `~/.minari/datasets`).
        device: where the tensors go.
        reward_mode: "auto" picks the reference implementations' processing from the family: OGBench rewards as
            relabelled by OGBench, Minari antmaze `r - 1`, D4RL locomotion (halfcheetah, hopper, walker2d, ant)
            `r * 1000 / (max episode return - min episode return)`, others unchanged. "none", "antmaze" or
            "locomotion" force one.
        dataset_path: OGBench only: an explicit train `.npz` (its `-val.npz` beside it), skipping lookup.
        generate_episodes: OGBench only: use a locally generated set of this many episodes (a small set for quick
            runs), generated now if missing, instead of the official file.
        download: try the official download when the dataset is not on disk.
        generate_workers: processes for local generation (default: all cores).
        success_timing: OGBench only: "pre" (OGBench >= 1.2's default: reward, success and termination from the
            state before the action) or "post" (OGBench 1.1: after it, as in the FQL paper); None: the installed
            OGBench's default. Recorded as metadata["success_timing"].
    """
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
    if generate_workers is not None and generate_workers < 1:
        raise DatasetError(f"generate_workers must be at least 1, got {generate_workers}.")
    name = d4rl_to_minari(name) or name
    if "/" in name:
        if dataset_path is not None or generate_episodes is not None or success_timing is not None:
            raise DatasetError(
                f"dataset_path, generate_episodes and success_timing apply to OGBench names only, not {name!r}."
            )
        return load_minari(name, dataset_dir, device, reward_mode, download)
    env_kwargs = ogbench_success_timing_kwargs(success_timing)
    return load_ogbench(
        name, dataset_dir, device, reward_mode, dataset_path, generate_episodes, download, generate_workers, env_kwargs
    )


def prepare_dataset(
    name: str,
    dataset_dir: str | os.PathLike | None = None,
    generate_episodes: int | None = None,
    download: bool = True,
    generate_workers: int | None = None,
) -> str:
    """Make sure a dataset is on disk, downloading or generating it as `load_dataset` would, without loading it.

    A sweep calls this once per dataset before it starts its jobs, so that concurrent jobs never download or
    generate the same file at the same time. Returns where the data is (a file or folder path).
    """
    if generate_workers is not None and generate_workers < 1:
        raise DatasetError(f"generate_workers must be at least 1, got {generate_workers}.")
    name = d4rl_to_minari(name) or name
    if "/" in name:
        if generate_episodes is not None:
            raise DatasetError(f"generate_episodes applies to OGBench names only, not {name!r}.")
        dataset = open_minari(name, dataset_dir, download)
        return str(getattr(dataset.spec, "data_path", name))
    dataset_name, _ = parse_ogbench_name(name)
    directory = pathlib.Path(dataset_dir or OGBENCH_DEFAULT_DIR).expanduser()
    path, _ = resolve_ogbench_path(dataset_name, directory, generate_episodes, download, generate_workers)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------
# OGBench


def load_data(args: Any, device: torch.device) -> OfflineDataset:
    """The run's dataset on `device` (`offrl.datasets.load_dataset`); a one-line `SystemExit` says what is wrong."""
    try:
        return load_dataset(
            args.env_name,
            dataset_dir=args.dataset_dir,
            device=device,
            reward_mode=args.reward_mode,
            generate_episodes=args.generate_episodes,
            success_timing=args.success_timing,
        )
    except (DatasetError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
