"""Offline datasets: one entry point for OGBench single-task and Minari (D4RL's successor).

`load_dataset(name)` returns an `OfflineDataset`: train transitions (and the validation split where the source
has one) as tensors on the requested device, an evaluation-environment factory and the metadata that evaluation
and scoring need. `sample_batch(data, batch_size)` draws a batch on the device and can be called inside a
`torch.compile`d update.

Transition tensors (N transitions, S observation dim, A action dim), all float32:
    observations (N, S), actions (N, A), rewards (N,), next_observations (N, S), masks (N,), terminals (N,)
`masks` is 0 where bootstrapping stops (the task is solved, or a Minari termination); `terminals` marks the end of
a stored trajectory and is not meant for the TD target.

OGBench data comes from the official download (`ogbench.make_env_and_datasets`, same `dataset_dir`). When the file
is not on disk and cannot be downloaded, manipulation and pointmaze datasets are regenerated locally with OGBench's
own oracles (`offrl.generate`) and stored under `<dataset_dir>/generated/`, a name that cannot be mistaken for the
official file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import re
import socket
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import torch

from offrl import generate, scores
from offrl.evaluation import flatten_observation_env, flatten_observations
from offrl.replay import ReplayBuffer

__all__ = [
    "DatasetError",
    "OfflineDataset",
    "d4rl_to_minari",
    "load_dataset",
    "prepare_dataset",
    "sample_batch",
    "ACTION_CLIP",
    "OGBENCH_DEFAULT_DIR",
]

ACTION_CLIP = 1.0 - 1e-5
OGBENCH_DEFAULT_DIR = generate.DEFAULT_DATASET_DIR
_LOCOMOTION = ("halfcheetah", "hopper", "walker2d", "ant/")
REWARD_MODES = ("auto", "none", "antmaze", "locomotion")
KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "terminals")

_EXAMPLES = (
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
    """

    name: str
    family: str
    train: dict[str, torch.Tensor]
    val: dict[str, torch.Tensor] | None
    make_env: Callable[[], gymnasium.Env]
    metadata: dict[str, Any] = field(default_factory=dict)
    replay: ReplayBuffer | None = None
    balanced_sampling: bool = False

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
        buffer: uniform over the offline and online transitions, or half and half with `balanced_sampling`."""
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
        return _load_minari(name, dataset_dir, device, reward_mode, download)
    env_kwargs = ogbench_success_timing_kwargs(success_timing)
    return _load_ogbench(
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
        dataset = _open_minari(name, dataset_dir, download)
        return str(getattr(dataset.spec, "data_path", name))
    dataset_name, _ = parse_ogbench_name(name)
    directory = pathlib.Path(dataset_dir or OGBENCH_DEFAULT_DIR).expanduser()
    path, _ = _resolve_ogbench_path(dataset_name, directory, generate_episodes, download, generate_workers)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------
# OGBench


SUCCESS_TIMINGS = ("pre", "post")


def _ogbench_version() -> tuple[int, ...]:
    from importlib import metadata

    return tuple(int(part) for part in re.findall(r"\d+", metadata.version("ogbench"))[:3])


def ogbench_success_timing_kwargs(success_timing: str | None) -> dict[str, str]:
    """The environment keyword OGBench's single-task environments take for `success_timing` ({} for None, the
    installed OGBench's default). OGBench 1.1 has no such keyword and always computes 'post'."""
    if success_timing is None:
        return {}
    if success_timing not in SUCCESS_TIMINGS:
        raise DatasetError(f"success_timing must be 'pre' or 'post', got {success_timing!r}.")
    if _ogbench_version() < (1, 2):
        if success_timing == "post":
            return {}  # OGBench 1.1's only behaviour
        raise DatasetError("success_timing 'pre' needs ogbench >= 1.2 (pip install -U ogbench); 1.1 computes 'post'.")
    return {"success_timing": success_timing}


def default_success_timing() -> str:
    """What the installed OGBench's single-task environments do without the keyword: 'pre' since 1.2.0, else 'post'."""
    return "pre" if _ogbench_version() >= (1, 2) else "post"


def _d4rl_ports() -> dict[str, str]:
    """Every D4RL dataset (name without its -v<k>) that Minari serves, and its Minari id."""
    ports = {}
    for env in ("halfcheetah", "hopper", "walker2d", "ant"):  # Minari re-collected these (expert, medium, simple)
        for dataset in ("medium", "expert"):
            ports[f"{env}-{dataset}"] = f"mujoco/{env}/{dataset}-v0"
    for dataset in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse"):
        ports[f"antmaze-{dataset}"] = f"D4RL/antmaze/{dataset}-v1"
    for env in ("pen", "door", "hammer", "relocate"):
        for dataset in ("human", "cloned", "expert"):
            ports[f"{env}-{dataset}"] = f"D4RL/{env}/{dataset}-v2"
    for dataset in ("complete", "partial", "mixed"):
        ports[f"kitchen-{dataset}"] = f"D4RL/kitchen/{dataset}-v2"
    for maze in ("open", "umaze", "medium", "large"):
        for dense in ("", "-dense"):
            ports[f"maze2d-{maze}{dense}"] = f"D4RL/pointmaze/{maze}{dense}-v2"
    return ports


D4RL_PORTS = _d4rl_ports()
"""D4RL dataset name without its version (e.g. 'hopper-medium') -> the Minari dataset that stands for it. Sources:
the Minari dataset list, https://minari.farama.org (namespaces `mujoco` and `D4RL`); D4RL's names,
https://github.com/Farama-Foundation/D4RL/wiki/Tasks."""
D4RL_ENVS = frozenset(name.split("-", 1)[0] for name in D4RL_PORTS)


def _closest_d4rl(stem: str) -> str:
    import difflib

    env = stem.split("-", 1)[0]
    same_env = [name for name in D4RL_PORTS if name.split("-", 1)[0] == env] or list(D4RL_PORTS)
    return (difflib.get_close_matches(stem, same_env, n=1, cutoff=0.0) or same_env)[0]


def d4rl_to_minari(name: str) -> str | None:
    """The Minari id standing for a D4RL dataset name ('hopper-medium-v2' -> 'mujoco/hopper/medium-v0',
    'antmaze-large-play-v2' -> 'D4RL/antmaze/large-play-v1', 'pen-human-v1' -> 'D4RL/pen/human-v2'); None when
    `name` is not a D4RL name (its first word is no D4RL environment). Any D4RL version maps to the one Minari
    dataset. A D4RL dataset that Minari does not serve (e.g. 'hopper-medium-replay-v2') raises `DatasetError`
    naming the closest Minari id. Minari's datasets are not byte-identical to D4RL's (`d4rl_note` says how)."""
    match = re.fullmatch(r"(?P<stem>[a-z0-9]+(?:-[a-z0-9]+)*)-v\d+", name)
    if match is None or match["stem"].split("-", 1)[0] not in D4RL_ENVS:
        return None
    stem = match["stem"]
    if stem in D4RL_PORTS:
        return D4RL_PORTS[stem]
    closest = _closest_d4rl(stem)
    raise DatasetError(
        f"D4RL's {name!r} has no Minari port; the closest Minari dataset is {D4RL_PORTS[closest]!r} (D4RL's "
        f"'{closest}'). Pass --env-name {D4RL_PORTS[closest]} to train on it."
    )


def d4rl_note(d4rl_name: str, minari_id: str) -> str:
    """The line a run prints when it resolves a D4RL name to a Minari id."""
    if minari_id.startswith("mujoco/"):
        how = (
            "Minari re-collected it with Gymnasium's v5 MuJoCo environments, so its data and scores differ from D4RL's"
        )
    else:
        how = "Minari's port of the D4RL data, not byte-identical to D4RL's file"
    return f"D4RL name {d4rl_name} -> Minari dataset {minari_id} ({how})"


def _check_widths(data: dict[str, np.ndarray], env: gymnasium.Env, where: str) -> None:
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


def parse_ogbench_name(name: str) -> tuple[str, str]:
    """Split a single-task name into (dataset name, env id).

    'cube-single-play-singletask-task1-v0' -> ('cube-single-play-v0', 'cube-single-singletask-task1-v0').
    Raises DatasetError with an explanation for goal-conditioned names and unknown environments.
    """
    import ogbench  # noqa: F401  (registers the environments)

    match = re.fullmatch(r"(?P<domain>.+)-(?P<type>[a-z]+)-singletask(?P<task>-task\d+)?-(?P<version>v\d+)", name)
    if match is None:
        goal_conditioned = re.fullmatch(r"(?P<domain>.+)-[a-z]+-(?P<version>v\d+)", name)
        if goal_conditioned and f"{goal_conditioned['domain']}-{goal_conditioned['version']}" in gymnasium.registry:
            stem = name.rsplit("-", 1)[0]
            raise DatasetError(
                f"{name!r} is an OGBench goal-conditioned dataset name, but the offrl scripts train single-task "
                f"agents (one fixed task, with rewards). Add 'singletask' and a task: e.g. "
                f"'{stem}-singletask-task1-v0' (tasks 1-5), or '{stem}-singletask-v0' for the domain's default task."
            )
        import difflib

        stem = name.rsplit("-v", 1)[0]
        close = difflib.get_close_matches(stem, list(D4RL_PORTS), n=1, cutoff=0.8)
        hint = f" Did you mean D4RL's '{close[0]}' (Minari's {D4RL_PORTS[close[0]]!r})?" if close else ""
        raise DatasetError(f"Unknown dataset name {name!r}.{hint}\n{_EXAMPLES}")
    domain, version = match["domain"], match["version"]
    env_id = f"{domain}-singletask{match['task'] or ''}-{version}"
    if env_id not in gymnasium.registry:
        raise DatasetError(
            f"Unknown OGBench task {name!r}: no environment {env_id!r} is registered by ogbench.\n{_EXAMPLES}"
        )
    return f"{domain}-{match['type']}-{version}", env_id


def _val_path(train_path: pathlib.Path) -> pathlib.Path:
    return train_path.with_name(train_path.name.removesuffix(".npz") + "-val.npz")


def _both_exist(train_path: pathlib.Path) -> bool:
    return train_path.is_file() and _val_path(train_path).is_file()


def _network_reachable(url: str, timeout: float = 5.0) -> bool:
    host = re.sub(r"^https?://", "", url).split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download_ogbench(dataset_name: str, dataset_dir: pathlib.Path) -> str | None:
    """Try the official download; returns None on success, else the reason it failed."""
    import ogbench

    if not _network_reachable(generate.DATASET_URL):
        return f"{generate.DATASET_URL} is not reachable (no network?)"
    try:
        ogbench.download_datasets([dataset_name], str(dataset_dir))
    except Exception as error:  # noqa: BLE001  (any network or HTTP failure means: fall back)
        return f"download failed: {error}"
    finally:
        for suffix in (".npz.tmp", "-val.npz.tmp"):  # ogbench's partial files
            with contextlib.suppress(FileNotFoundError):
                (dataset_dir / f"{dataset_name}{suffix}").unlink()
    return None


def _resolve_ogbench_path(
    dataset_name: str,
    dataset_dir: pathlib.Path,
    generate_episodes: int | None,
    download: bool,
    workers: int | None,
) -> tuple[pathlib.Path, str]:
    """Find (or download, or generate) the train file of an OGBench dataset. Returns (path, source)."""
    if generate_episodes is not None:
        if generate_episodes <= 0:
            raise DatasetError(f"generate_episodes must be a positive number of episodes, got {generate_episodes}.")
        if not generate.can_generate(dataset_name):
            reason = generate.download_only_reason(dataset_name) or "it cannot be generated locally"
            raise DatasetError(generate.download_only_message(dataset_name, reason, dataset_dir))
        path = generate.generated_path(dataset_dir, dataset_name, generate_episodes)
        if not _both_exist(path):
            _generate(dataset_name, dataset_dir, generate_episodes, workers, reason="a generated set was asked for")
        return path, "generated"

    official = dataset_dir / f"{dataset_name}.npz"
    if _both_exist(official):
        return official, "official"
    reason = "download disabled"
    if download:
        reason = _download_ogbench(dataset_name, dataset_dir)
        if reason is None and _both_exist(official):
            return official, "official"
    if not generate.can_generate(dataset_name):
        why = generate.download_only_reason(dataset_name) or "it cannot be generated locally"
        raise DatasetError(generate.download_only_message(dataset_name, f"not on disk, {reason}; {why}", dataset_dir))
    num_episodes = generate.official_num_episodes(dataset_name)
    path = generate.generated_path(dataset_dir, dataset_name, num_episodes)
    if not _both_exist(path):
        _generate(dataset_name, dataset_dir, num_episodes, workers, f"the official file is not on disk ({reason})")
    return path, "generated"


def _generate(
    dataset_name: str, dataset_dir: pathlib.Path, num_episodes: int, workers: int | None, reason: str
) -> None:
    workers = workers or os.cpu_count() or 1
    minutes = generate.estimate_seconds(dataset_name, num_episodes, workers) / 60.0
    path = generate.generated_path(dataset_dir, dataset_name, num_episodes)
    print(
        f"[offrl] {reason}: generating {dataset_name!r} locally with OGBench's own oracles, following OGBench's "
        f"data-collection procedure ({num_episodes} episodes, {workers} worker(s), about {minutes:.0f} min). "
        f"Output: {path} (a regenerated set, not the official file).",
        file=sys.stderr,
        flush=True,
    )
    try:
        generate.generate_dataset(dataset_name, dataset_dir, num_episodes=num_episodes, workers=workers)
    except generate.GenerationError as error:
        raise DatasetError(str(error)) from error


@contextlib.contextmanager
def _quiet_ogbench():
    """Silence gymnasium's notice that OGBench's float64 Box bounds are cast to float32 (harmless, repeated)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32.*")
        yield


def _load_npz_with_ogbench(
    name: str, train_path: pathlib.Path, env_kwargs: dict[str, Any] | None = None
) -> tuple[gymnasium.Env, dict, dict]:
    import ogbench

    try:
        with _quiet_ogbench():
            return ogbench.make_env_and_datasets(name, dataset_path=str(train_path), **(env_kwargs or {}))
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError, IndexError) as error:
        raise DatasetError(
            f"Could not read the OGBench dataset {train_path} (or its -val.npz): the file is corrupt, truncated or "
            f"not an OGBench dataset ({type(error).__name__}: {error}). Delete both files and run again to "
            f"download or regenerate them."
        ) from error


def _load_ogbench(
    name: str,
    dataset_dir: str | os.PathLike | None,
    device: str | torch.device,
    reward_mode: str,
    dataset_path: str | os.PathLike | None,
    generate_episodes: int | None,
    download: bool,
    workers: int | None,
    env_kwargs: dict[str, Any] | None = None,
) -> OfflineDataset:
    env_kwargs = dict(env_kwargs or {})
    dataset_name, env_id = parse_ogbench_name(name)
    directory = pathlib.Path(dataset_dir or OGBENCH_DEFAULT_DIR).expanduser()
    if dataset_path is not None:
        train_path, source = pathlib.Path(dataset_path).expanduser(), "file"
        if not _both_exist(train_path):
            raise DatasetError(f"Dataset file {train_path} or its validation file {_val_path(train_path)} is missing.")
    else:
        train_path, source = _resolve_ogbench_path(dataset_name, directory, generate_episodes, download, workers)

    start = time.perf_counter()
    env, train, val = _load_npz_with_ogbench(name, train_path, env_kwargs)
    _check_widths(train, env, f"OGBench dataset file {train_path}")
    _check_widths(val, env, f"OGBench dataset file {_val_path(train_path)}")
    mode = "none" if reward_mode == "auto" else reward_mode
    train_tensors, scale = _to_tensors(train, mode, device)
    val_tensors, _ = _to_tensors(val, mode, device, scale)
    metadata = {
        "observation_dim": int(train["observations"].shape[1]),
        "action_dim": int(train["actions"].shape[1]),
        "max_episode_steps": env.spec.max_episode_steps if env.spec else None,
        "ref_min_score": None,
        "ref_max_score": None,
        "source": source,
        "path": str(train_path),
        "dataset_name": dataset_name,
        "env_id": env_id,
        "reward_mode": mode,
        "reward_scale": scale,
        "success_timing": env_kwargs.get("success_timing", default_success_timing()),
        "load_seconds": time.perf_counter() - start,
    }
    env.close()
    return OfflineDataset(
        name=name,
        family="ogbench",
        train=train_tensors,
        val=val_tensors,
        make_env=functools.partial(make_ogbench_env, name, **env_kwargs),
        metadata=metadata,
    )


def make_ogbench_env(name: str, **kwargs: Any) -> gymnasium.Env:
    """The single-task evaluation environment of an OGBench name (terminates at the goal; info['success'])."""
    import ogbench

    with _quiet_ogbench():
        return ogbench.make_env_and_datasets(name, env_only=True, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Minari


@contextlib.contextmanager
def _minari_root(dataset_dir: str | os.PathLike | None):
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


def _open_minari(name: str, dataset_dir: str | os.PathLike | None, download: bool):
    import minari
    from minari.storage import get_dataset_path

    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*/[\w.-]+-v\d+", name):
        raise DatasetError(f"{name!r} is not a valid Minari dataset id.\n{_EXAMPLES}")
    with _minari_root(dataset_dir):
        local_path = pathlib.Path(get_dataset_path(name))
        if not (local_path / "data").exists():
            if not download:
                raise DatasetError(f"Minari dataset {name!r} is not in {local_path.parent} and download is disabled.")
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


def _load_minari(
    name: str,
    dataset_dir: str | os.PathLike | None,
    device: str | torch.device,
    reward_mode: str,
    download: bool,
) -> OfflineDataset:
    start = time.perf_counter()
    dataset = _open_minari(name, dataset_dir, download)
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
    train, scale = _to_tensors(transitions, reward_mode, device, scale)
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
        _check_widths(transitions, probe, f"Minari dataset {name!r}")
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

    with _minari_root(dataset_dir):
        env = minari.load_dataset(name).recover_environment(eval_env=True, **kwargs)
    return flatten_observation_env(env)


# ----------------------------------------------------------------------------------------------------------------
# Shared processing


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


def _to_tensors(
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


def main(argv: list[str] | None = None) -> int:
    """`python -m offrl.datasets NAME`: load a dataset the way the training scripts do and summarise it."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m offrl.datasets",
        description="Load an offline dataset exactly as the training scripts do (downloading it, or regenerating an "
        "OGBench manipulation/pointmaze dataset locally when it cannot be downloaded) and print a summary.",
    )
    parser.add_argument("name", help="OGBench single-task name or Minari id, e.g. cube-single-play-singletask-task1-v0")
    parser.add_argument("--dataset-dir", default=None, help="where datasets live (default: each library's own)")
    parser.add_argument("--device", default="cpu", help="device the tensors are loaded onto (default: cpu)")
    parser.add_argument(
        "--generate-episodes",
        type=int,
        default=None,
        help="OGBench: use a small locally generated set of this many episodes instead of the official file",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes for local generation (default: all)")
    parser.add_argument("--no-download", action="store_true", help="never try the official download")
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        data = load_dataset(
            args.name,
            dataset_dir=args.dataset_dir,
            device=args.device,
            generate_episodes=args.generate_episodes,
            download=not args.no_download,
            generate_workers=args.workers,
        )
        if data.train["observations"].is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    except (DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    meta = data.metadata
    print(
        f"{data.name} ({data.family}, {meta['source']}: {meta['path']})\n"
        f"  train transitions: {len(data):,}   val: {'none' if data.val is None else f'{len(data.val[KEYS[0]]):,}'}\n"
        f"  observation dim {data.observation_dim}, action dim {data.action_dim}, "
        f"max episode steps {meta['max_episode_steps']}\n"
        f"  rewards: mode {meta['reward_mode']}, mean {data.train['rewards'].mean().item():.4f}; "
        f"mask=0 on {int((data.train['masks'] == 0).sum().item()):,} transitions\n"
        f"  loaded onto {args.device} in {seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
