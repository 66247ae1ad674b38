"""What OGBench data can be regenerated here: each official dataset's specification, the generation constants, time
estimates, and where a generated set is stored (`generated_path`, a name never mistaken for the official file)."""

from __future__ import annotations

import os
import pathlib
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DATASET_URL",
    "DEFAULT_DATASET_DIR",
    "OFFICIAL_SPECS",
    "DatasetSpec",
    "GenerationError",
    "can_generate",
    "download_only_message",
    "download_only_reason",
    "estimate_seconds",
    "generated_path",
    "lookup",
    "num_val_episodes",
    "official_num_episodes",
]

DEFAULT_DATASET_DIR = "~/.ogbench/data"
DATASET_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"

# Official generation constants (commands.sh and the generator flags' defaults).
PLAN_NOISE = 0.1
PLAN_NOISE_SMOOTHING = 0.5
MARKOV_MIN_NORM = 0.4
MARKOV_MAX_NOISE = 0.1
MARKOV_NOISE_SCALES = np.array([1.0, 1.0, 1.0, 3.0, 10.0])  # x, y, z, yaw, gripper
SCENE_CUBE_MARKOV_MAX_STEP = 100
POINT_ACTION_NOISE = 0.5
STITCH_GOAL_DISTANCE = 4  # in maze cells
MAX_SCENE_ATTEMPTS = 1000  # unhealthy scene episodes are rare; this only guards against an endless loop


class GenerationError(ValueError):
    """Raised for a dataset name or setting that cannot be generated; the message says what to do instead."""


@dataclass(frozen=True)
class DatasetSpec:
    """How OGBench generated one dataset: its env, agent, type and official size."""

    env_name: str
    """Gymnasium id of the environment the data is collected in, e.g. `cube-single-v0`."""
    family: str
    """`manipspace` (cube, scene, puzzle) or `pointmaze`."""
    dataset_type: str
    """`play` or `noisy` (manipulation), `navigate` or `stitch` (point maze)."""
    num_episodes: int
    """Official number of train episodes."""
    max_episode_steps: int
    """Official episode length in stored steps."""
    p_random_action: float = 0.0
    """Probability of replacing the oracle's action with a uniformly random one (noisy manipulation)."""


def _official_specs() -> dict[str, DatasetSpec]:
    specs = {}
    manipulation_episodes = {
        "cube-single": 1000,
        "cube-double": 1000,
        "cube-triple": 3000,
        "cube-quadruple": 5000,
        "scene": 1000,
        "puzzle-3x3": 1000,
        "puzzle-4x4": 1000,
        "puzzle-4x5": 3000,
        "puzzle-4x6": 5000,
    }
    for domain, episodes in manipulation_episodes.items():
        env_name = f"{domain}-v0"
        p_random_action = 0.2 if domain.startswith("puzzle") else 0.1
        specs[f"{domain}-play-v0"] = DatasetSpec(env_name, "manipspace", "play", episodes, 1001)
        specs[f"{domain}-noisy-v0"] = DatasetSpec(env_name, "manipspace", "noisy", episodes, 1001, p_random_action)
    for maze in ("medium", "large", "giant", "teleport"):
        env_name = f"pointmaze-{maze}-v0"
        episodes, steps = (500, 2001) if maze == "giant" else (1000, 1001)
        specs[f"pointmaze-{maze}-navigate-v0"] = DatasetSpec(env_name, "pointmaze", "navigate", episodes, steps)
        specs[f"pointmaze-{maze}-stitch-v0"] = DatasetSpec(env_name, "pointmaze", "stitch", 5000, 201)
    return specs


OFFICIAL_SPECS: dict[str, DatasetSpec] = _official_specs()

# Single-core steps/s measured on a 2-core x86 CPU (only used for the time estimate shown to users).
_STEPS_PER_SECOND = {
    "cube-single": 500.0,
    "cube-double": 480.0,
    "cube-triple": 350.0,
    "cube-quadruple": 300.0,
    "scene": 420.0,
    "puzzle-3x3": 450.0,
    "puzzle-4x4": 350.0,
    "puzzle-4x5": 330.0,
    "puzzle-4x6": 330.0,
    "pointmaze-medium": 6000.0,
    "pointmaze-large": 4000.0,
    "pointmaze-giant": 3500.0,
    "pointmaze-teleport": 5000.0,
}

_DOWNLOAD_ONLY = [
    (re.compile(r"^visual-.+-v0$"), "visual datasets store rendered images, which this generator does not produce"),
    (
        re.compile(r"^(antmaze|humanoidmaze)-(arena|medium|large|giant|teleport)-(navigate|stitch|explore)-v0$"),
        "it is collected by a trained expert locomotion policy whose weights do not ship with ogbench",
    ),
    (
        re.compile(r"^antsoccer-(arena|medium)-(navigate|stitch)-v0$"),
        "it is collected by trained expert ant and ball policies whose weights do not ship with ogbench",
    ),
    (re.compile(r"^powderworld-(easy|medium|hard)-play-v0$"), "powderworld is not covered by this generator"),
]


def download_only_message(dataset_name: str, reason: str, dataset_dir: str | os.PathLike | None = None) -> str:
    """What to do with a download-only OGBench dataset (no oracle here to regenerate it), and why (`reason`)."""
    directory = dataset_dir if dataset_dir is not None else f"the default {DEFAULT_DATASET_DIR}"
    return (
        f"OGBench dataset '{dataset_name}' is download-only ({reason}): get {DATASET_URL}/{dataset_name}.npz and "
        f"{DATASET_URL}/{dataset_name}-val.npz on a machine with network and put them at "
        f"<dataset_dir>/{dataset_name}.npz and <dataset_dir>/{dataset_name}-val.npz, <dataset_dir> being {directory} "
        "(or pass --dataset-dir to where they are; ogbench.make_env_and_datasets downloads them there when online)."
    )


def download_only_reason(dataset_name: str) -> str | None:
    """Why a dataset cannot be generated offline (expert policies that do not ship, images), or None."""
    return next((reason for pattern, reason in _DOWNLOAD_ONLY if pattern.match(dataset_name)), None)


def lookup(dataset_name: str) -> DatasetSpec:
    """Return the spec of a generatable dataset or raise a `GenerationError` that says what to do instead."""
    if not isinstance(dataset_name, str):
        raise GenerationError(f"dataset name must be a string, got {dataset_name!r}")
    if dataset_name in OFFICIAL_SPECS:
        return OFFICIAL_SPECS[dataset_name]
    splits = dataset_name.split("-")
    for marker in ("singletask", "oraclerep"):
        if marker in splits:
            position = splits.index(marker)
            base = "-".join(splits[:position] + splits[-1:])
            raise GenerationError(
                f"'{dataset_name}' is an environment/task name, not a dataset name: all {marker} variants share "
                f"one dataset file. Pass the dataset name '{base}' instead."
            )
    reason = download_only_reason(dataset_name)
    if reason is not None:
        raise GenerationError(download_only_message(dataset_name, reason))
    raise GenerationError(
        f"unknown dataset '{dataset_name}'. Offline generation supports OGBench's "
        "cube-{single,double,triple,quadruple}, scene and puzzle-{3x3,4x4,4x5,4x6} datasets of type play or noisy, "
        "and pointmaze-{medium,large,giant,teleport} of type navigate or stitch, "
        "e.g. 'cube-single-play-v0', 'puzzle-3x3-noisy-v0' or 'pointmaze-medium-navigate-v0'."
    )


def can_generate(dataset_name: str) -> bool:
    """True if `dataset_name` (e.g. `cube-single-play-v0`) can be regenerated offline by this module."""
    return isinstance(dataset_name, str) and dataset_name in OFFICIAL_SPECS


def official_num_episodes(dataset_name: str) -> int:
    """Number of train episodes in the official dataset; raises `GenerationError` if it is not generatable."""
    return lookup(dataset_name).num_episodes


def num_val_episodes(num_episodes: int) -> int:
    """Validation episodes generated alongside `num_episodes` train episodes: OGBench's N // 10, at least 1."""
    return max(1, num_episodes // 10)


def estimate_seconds(dataset_name: str, num_episodes: int | None = None, workers: int = 1) -> float:
    """Rough wall-clock seconds to generate train + val episodes at the official episode length.

    Based on single-core steps/s measured on a small x86 CPU; parallel speed-up is capped by the CPU count.
    """
    spec = lookup(dataset_name)
    num_episodes = spec.num_episodes if num_episodes is None else check_int("num_episodes", num_episodes, 1)
    workers = check_int("workers", workers, 1)
    steps = (num_episodes + num_val_episodes(num_episodes)) * spec.max_episode_steps
    parallel = max(1, min(workers, os.cpu_count() or 1, num_episodes))
    speedup = 1 + 0.75 * (parallel - 1)  # 2 workers on 2 cores measured 1.75x faster than 1
    startup = 3.0  # imports and building the MuJoCo model, once per process
    compress = steps * 1.5e-5  # savez_compressed runs at roughly 60k-120k steps/s
    return startup + steps / (_STEPS_PER_SECOND[spec.env_name.removesuffix("-v0")] * speedup) + compress


def check_int(name: str, value, minimum: int, why: str = "") -> int:
    """`value` as an int when it is one and at least `minimum`, else a `GenerationError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GenerationError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise GenerationError(f"{name} must be at least {minimum}{why}, got {value}")
    return int(value)


GENERATED_SUBDIR = "generated"


def generated_path(
    dataset_dir: str | os.PathLike,
    dataset_name: str,
    num_episodes: int | None = None,
    seed: int = 0,
    max_episode_steps: int | None = None,
) -> pathlib.Path:
    """Default location of a generated set: `<dataset_dir>/generated/<name>-<N>ep-seed<S>[-<T>steps].npz`.

    The episode count and seed (and a non-official episode length) are part of the name, and the folder is separate,
    so a regenerated set is never mistaken for the official download `<dataset_dir>/<name>.npz`. `offrl.datasets`
    looks for generated sets here.
    """
    spec = lookup(dataset_name)
    stem = f"{dataset_name}-{spec.num_episodes if num_episodes is None else num_episodes}ep-seed{seed}"
    if max_episode_steps is not None and max_episode_steps != spec.max_episode_steps:
        stem += f"-{max_episode_steps}steps"
    return pathlib.Path(dataset_dir).expanduser() / GENERATED_SUBDIR / f"{stem}.npz"
