"""OGBench single-task datasets: names, success timing, the official download, local regeneration, loading.

OGBench data comes from the official download (`ogbench.make_env_and_datasets`, same `dataset_dir`). When the file
is not on disk and cannot be downloaded, manipulation and pointmaze datasets are regenerated locally with OGBench's
own oracles (`offrl.generate`) and stored under `<dataset_dir>/generated/`, a name that cannot be mistaken for the
official file.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import pathlib
import re
import sys
import time
import warnings
import zipfile
from importlib import metadata as package_metadata
from typing import Any

import gymnasium
import torch

from offrl import generate
from offrl.datasets.d4rl import D4RL_PORTS
from offrl.datasets.dataset import (
    NAME_EXAMPLES,
    DatasetError,
    OfflineDataset,
    check_widths,
    network_reachable,
    to_tensors,
)

__all__ = [
    "OGBENCH_DEFAULT_DIR",
    "SUCCESS_TIMINGS",
    "default_success_timing",
    "load_ogbench",
    "make_ogbench_env",
    "ogbench_success_timing_kwargs",
    "parse_ogbench_name",
    "resolve_ogbench_path",
]

OGBENCH_DEFAULT_DIR = generate.DEFAULT_DATASET_DIR
SUCCESS_TIMINGS = ("pre", "post")


def _ogbench_version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", package_metadata.version("ogbench"))[:3])


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
        stem = name.rsplit("-v", 1)[0]
        close = difflib.get_close_matches(stem, list(D4RL_PORTS), n=1, cutoff=0.8)
        hint = f" Did you mean D4RL's '{close[0]}' (Minari's {D4RL_PORTS[close[0]]!r})?" if close else ""
        raise DatasetError(f"Unknown dataset name {name!r}.{hint}\n{NAME_EXAMPLES}")
    domain, version = match["domain"], match["version"]
    env_id = f"{domain}-singletask{match['task'] or ''}-{version}"
    if env_id not in gymnasium.registry:
        raise DatasetError(
            f"Unknown OGBench task {name!r}: no environment {env_id!r} is registered by ogbench.\n{NAME_EXAMPLES}"
        )
    return f"{domain}-{match['type']}-{version}", env_id


def _val_path(train_path: pathlib.Path) -> pathlib.Path:
    return train_path.with_name(train_path.name.removesuffix(".npz") + "-val.npz")


def _both_exist(train_path: pathlib.Path) -> bool:
    return train_path.is_file() and _val_path(train_path).is_file()


def _download_ogbench(dataset_name: str, dataset_dir: pathlib.Path) -> str | None:
    """Try the official download; returns None on success, else the reason it failed."""
    import ogbench

    if not network_reachable(generate.DATASET_URL):
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


def resolve_ogbench_path(
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
    except OSError as error:  # a full disk or a quota while writing: the files are written all or none
        where = error.filename or dataset_dir
        raise DatasetError(
            f"could not write the generated dataset to {where}: {error.strerror or error}; nothing was written. Free "
            "some space, or pass another --dataset-dir."
        ) from None


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


def load_ogbench(
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
        train_path, source = resolve_ogbench_path(dataset_name, directory, generate_episodes, download, workers)
    provenance = generate.read_provenance(train_path)  # a regenerated file says so, whatever its name
    if provenance is not None:
        source = "generated"

    start = time.perf_counter()
    env, train, val = _load_npz_with_ogbench(name, train_path, env_kwargs)
    check_widths(train, env, f"OGBench dataset file {train_path}")
    check_widths(val, env, f"OGBench dataset file {_val_path(train_path)}")
    mode = "none" if reward_mode == "auto" else reward_mode
    train_tensors, scale = to_tensors(train, mode, device)
    val_tensors, _ = to_tensors(val, mode, device, scale)
    metadata = {
        "observation_dim": int(train["observations"].shape[1]),
        "action_dim": int(train["actions"].shape[1]),
        "max_episode_steps": env.spec.max_episode_steps if env.spec else None,
        "ref_min_score": None,
        "ref_max_score": None,
        "source": source,
        "provenance": provenance,
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
