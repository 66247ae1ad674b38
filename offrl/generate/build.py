"""Regenerate OGBench datasets offline with the scripted agents that ship inside the `ogbench` package.

OGBench builds its manipulation datasets (cube, scene, puzzle) with scripted oracles and its point-maze
datasets with a BFS subgoal oracle; both ship with `pip install ogbench`, so those datasets can be rebuilt
without network access. This module follows OGBench's own procedure (`data_gen_scripts/generate_manipspace.py`,
`generate_locomaze.py` and the per-dataset flags in `commands.sh`):

- manipulation: env `<domain>-v0` with `terminate_at_goal=False, mode='data_collection'`; 'play' uses the plan
  oracles (noise 0.1, smoothing 0.5), 'noisy' the Markov oracles (min_norm 0.4) plus Gaussian action noise with
  per-episode level xi ~ U(0, 0.1) and per-dimension scales [xi, xi, xi, 3 xi, 10 xi], and a uniformly random
  action with probability 0.1 (cube, scene) or 0.2 (puzzle). Whenever the oracle finishes, the env samples a new
  target with a per-episode cube-stacking probability. Scene episodes that leave the cube out of view are redone.
- point maze: action = unit vector towards the oracle subgoal + N(0, 0.5) noise, clipped to [-1, 1]; 'navigate'
  samples a new vertex-cell goal whenever the goal is reached, 'stitch' uses one goal 4 cells away (BFS).

Output is OGBench's file format: `<name>.npz` (N train episodes) and `<name>-val.npz` (max(1, N // 10) val
episodes; OGBench uses N // 10, the floor of one keeps tiny sets loadable) with `observations` (float32),
`actions` (float32), `terminals` (bool), `qpos`, `qvel` (float32) and, for scene and puzzle, `button_states`
(int64). They load with `ogbench.make_env_and_datasets(name, dataset_path=...)`.

Unlike the official scripts (whose seed flag is never used), every episode is seeded from (seed, episode index):
numpy's global RNG (used by the oracles and the maze env), `env.reset(seed=...)` and the random-action sampler,
and every manipulation episode starts from the env state of a new process (targets and MuJoCo model restored;
`env.reset` alone keeps the targets of earlier episodes). A seed therefore gives identical arrays for any number
of worker processes, and the first k train episodes do not depend on N. The data follow the official distribution
but are not the arrays of the downloadable files.

Usage:
    python -m offrl.generate cube-single-play-v0 --workers 2
    python -m offrl.generate scene-play-v0 --num-episodes 20 --max-episode-steps 200 --dataset-dir ./datasets
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pathlib
import signal
import sys
import time
import zipfile
from importlib import metadata

import numpy as np
from tqdm import tqdm

from offrl.atomic import atomic_write_files
from offrl.generate.episodes import EpisodeRunner
from offrl.generate.specs import DatasetSpec, GenerationError, check_int, generated_path, lookup, num_val_episodes
from offrl.progress import progress_display

__all__ = ["PROVENANCE_KEY", "generate_dataset", "read_provenance"]


_BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas_in_children():
    """Start worker processes with one BLAS thread each (unless the user set a count).

    Each worker already keeps a core busy; with multi-threaded BLAS the workers' small IK solves spin-wait on
    each other's cores and 2 workers ran slower than 1 on a 2-core machine.
    """
    saved = {name: os.environ.get(name) for name in _BLAS_THREAD_VARIABLES}
    os.environ.update({name: "1" for name, value in saved.items() if value is None})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _init_worker(spec: DatasetSpec, seed: int, max_episode_steps: int) -> None:
    global _worker_runner
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the parent
    _worker_runner = EpisodeRunner(spec, seed, max_episode_steps)


def _run_in_worker(episode: int) -> tuple[dict[str, np.ndarray], int]:
    return _worker_runner.run(episode)


def _allocate(episode: dict[str, np.ndarray], num_episodes: int) -> dict[str, np.ndarray]:
    """Empty arrays for `num_episodes` episodes shaped like `episode`: (num_episodes * T, ...) per key."""
    return {key: np.empty((num_episodes * len(v), *v.shape[1:]), dtype=v.dtype) for key, v in episode.items()}


def _output_paths(dataset_dir: str | os.PathLike, stem: str) -> tuple[pathlib.Path, pathlib.Path]:
    stem = stem.removesuffix(".npz")
    if not stem or os.sep in stem or "/" in stem or stem in (".", ".."):
        raise GenerationError(f"output name must be a plain file stem like 'my-cube-single-play-v0', got {stem!r}")
    if stem.endswith("-val"):
        raise GenerationError(f"output name {stem!r} must not end in '-val' (that suffix marks the val file)")
    directory = pathlib.Path(dataset_dir).expanduser()
    return directory / f"{stem}.npz", directory / f"{stem}-val.npz"


PROVENANCE_KEY = "offrl_provenance"
"""The key of a generated file that holds where it came from: a JSON string (generator, versions, episodes, seed)."""


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance `generate_dataset` wrote into a dataset file, or None (an official file, or unreadable)."""
    try:
        with np.load(path) as file:
            return json.loads(str(file[PROVENANCE_KEY])) if PROVENANCE_KEY in file else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _write_npz_files(files: list[tuple[pathlib.Path, dict[str, np.ndarray]]]) -> None:
    """Write the files together (`offrl.atomic.atomic_write_files`): all or none, renamed in the given order, so
    list the file a loader checks for (the train file) last."""
    writers = [(path, lambda file, arrays=arrays: np.savez_compressed(file, **arrays)) for path, arrays in files]
    atomic_write_files(writers, mode="wb")


def generate_dataset(
    dataset_name: str,
    dataset_dir: str | os.PathLike,
    num_episodes: int | None = None,
    seed: int = 0,
    workers: int = 1,
    max_episode_steps: int | None = None,
    output_name: str | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Generate an OGBench dataset offline and write `<dataset_dir>/<stem>.npz` and `<stem>-val.npz`.

    Args:
        dataset_name: OGBench dataset name, e.g. `cube-single-play-v0` (see `can_generate`).
        dataset_dir: Directory for the files (`~` is expanded; created if missing).
        num_episodes: Train episodes N (default: the official count); N // 10 (at least 1) val episodes are added.
        seed: Non-negative seed; episode i is seeded from (seed, i), so the output does not depend on `workers`.
        workers: Worker processes (1 = generate in this process).
        max_episode_steps: Steps T per episode (default: the official length, 1001 for most datasets).
        output_name: File stem to write in `dataset_dir` (`<output_name>.npz`); default `generated_path(...)`:
            `<dataset_dir>/generated/<name>-<N>ep-seed<S>.npz`, never the official file name.
        progress: Show a tqdm bar over episodes and print a closing summary line.

    Returns:
        Path of the train file; the val file is the same path ending in `-val.npz`. Each file holds
        observations (E*T, obs_dim) float32, actions (E*T, A) float32, terminals (E*T,) bool,
        qpos (E*T, nq) float32, qvel (E*T, nv) float32 and, for scene/puzzle, button_states (E*T, B) int64,
        with E the episode count of that split.

    Raises:
        GenerationError: unknown, download-only or single-task name, or an invalid count/setting.
    """
    spec = lookup(dataset_name)
    num_episodes = spec.num_episodes if num_episodes is None else check_int("num_episodes", num_episodes, 1)
    max_episode_steps = (
        spec.max_episode_steps
        if max_episode_steps is None
        else check_int("max_episode_steps", max_episode_steps, 2, " (an episode of one step has no transition)")
    )
    seed = check_int("seed", seed, 0)
    workers = check_int("workers", workers, 1)
    if output_name is None:
        default = generated_path(dataset_dir, dataset_name, num_episodes, seed, max_episode_steps)
        train_path, val_path = _output_paths(default.parent, default.stem)
    else:
        train_path, val_path = _output_paths(dataset_dir, output_name)
    try:  # fail now rather than after hours of generation
        train_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GenerationError(f"cannot create the dataset directory {train_path.parent}: {error}") from error
    if not os.access(train_path.parent, os.W_OK):
        raise GenerationError(f"the dataset directory {train_path.parent} is not writable")

    num_val = num_val_episodes(num_episodes)
    total = num_episodes + num_val
    workers = min(workers, total)
    # Every episode lasts exactly max_episode_steps (no early termination), so each one is copied straight into
    # preallocated train/val arrays: the full dataset is held in memory once, in its final dtypes.
    splits: list[dict[str, np.ndarray]] = []
    retries = 0
    start = time.perf_counter()
    # a bar in a terminal, a status line a minute in a log file (a sweep's, a Slurm job's)
    shown = progress_display(total, 0, dataset_name, stream=sys.stderr, unit="episode") if progress else None
    with shown or tqdm(disable=True) as bar:
        if workers == 1:
            runner = EpisodeRunner(spec, seed, max_episode_steps)
            results = map(runner.run, range(total))
            pool = contextlib.closing(runner)
        else:
            context = multiprocessing.get_context("spawn")
            with _single_threaded_blas_in_children():  # the workers read these variables when they start
                pool = context.Pool(workers, initializer=_init_worker, initargs=(spec, seed, max_episode_steps))
            results = pool.imap(_run_in_worker, range(total))
        with pool:
            for episode, (arrays, attempts) in enumerate(results):
                if len(arrays["terminals"]) != max_episode_steps:
                    raise RuntimeError(
                        f"episode {episode} has {len(arrays['terminals'])} steps, not {max_episode_steps}"
                    )
                if not splits:
                    splits = [_allocate(arrays, num_episodes), _allocate(arrays, num_val)]
                split, row = (splits[0], episode) if episode < num_episodes else (splits[1], episode - num_episodes)
                for key, value in arrays.items():
                    split[key][row * max_episode_steps : (row + 1) * max_episode_steps] = value
                retries += attempts - 1
                bar.update(1)
                steps_per_second = (episode + 1) * max_episode_steps / (time.perf_counter() - start)
                bar.set_postfix(steps_per_s=f"{steps_per_second:.0f}", refresh=False)
    generation_seconds = time.perf_counter() - start
    total_steps = total * max_episode_steps

    provenance = {
        "generator": "offrl.generate", "offrl": _version("offrl"), "ogbench": _version("ogbench"),
        "dataset_name": dataset_name, "num_episodes": num_episodes, "val_episodes": num_val, "seed": seed,
        "max_episode_steps": max_episode_steps,
    }  # fmt: skip
    for split in splits:  # a key OGBench's loader does not read
        split[PROVENANCE_KEY] = np.array(json.dumps(provenance))
    _write_npz_files([(val_path, splits[1]), (train_path, splits[0])])
    if progress:
        retried = f", {retries} unhealthy scene episodes redone" if retries else ""
        print(
            f"{dataset_name}: {total_steps} steps ({num_episodes} train + {num_val} val episodes) in "
            f"{generation_seconds:.1f} s, {total_steps / generation_seconds:.0f} steps/s with {workers} "
            f"worker(s){retried}; wrote {train_path} and {val_path}",
            flush=True,
        )
    return train_path
