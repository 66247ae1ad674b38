"""Score conventions: OGBench success rates and D4RL normalized returns.

OGBench reports the success rate in percent. D4RL (and Minari, its maintained successor) reports the
normalized score `100 * (R - R_random) / (R_expert - R_random)`, where R is the mean undiscounted episode return
and (R_random, R_expert) are fixed per-task reference returns. Minari datasets imported from D4RL carry those
references in their metadata (`ref_min_score`, `ref_max_score`); `D4RL_REFERENCE_SCORES` holds the original D4RL
constants as a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# (random, expert) returns: the `REF_MIN_SCORE` / `REF_MAX_SCORE` constants of D4RL (`d4rl/infos.py`, and the
# maze2d registrations), keyed by Minari dataset-id prefix, i.e. the id without its dataset type and version
# ("mujoco/hopper/medium-v0" -> "mujoco/hopper"). All datasets of one environment share the references, except
# maze2d, whose three mazes and sparse/dense rewards each have their own.
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    # Locomotion (the same references for every dataset type: random, medium, expert, ...).
    "mujoco/hopper": (-20.272305, 3234.3),
    "mujoco/halfcheetah": (-280.178953, 12135.0),
    "mujoco/walker2d": (1.629008, 4592.3),
    "mujoco/ant": (-325.6, 3879.7),
    # AntMaze: a 0/1 sparse reward, so the normalized score is the success rate in percent.
    "D4RL/antmaze": (0.0, 1.0),
    # Adroit (the v0 constants of `d4rl/infos.py`; Minari's metadata, when present, takes precedence).
    "D4RL/pen": (-96.262799, 3076.8335),
    "D4RL/hammer": (-274.856578, 12794.134825),
    "D4RL/door": (-56.512833, 2880.569098),
    "D4RL/relocate": (-6.425911, 4233.877797),
    # Kitchen: one reward per completed subtask, 4 subtasks.
    "D4RL/kitchen": (0.0, 4.0),
    # Maze2d (pointmaze), v1 mazes: sparse and dense rewards differ.
    "D4RL/pointmaze/umaze": (23.85, 161.86),
    "D4RL/pointmaze/medium": (13.13, 277.39),
    "D4RL/pointmaze/large": (6.7, 273.99),
    "D4RL/pointmaze/umaze-dense": (68.537689, 193.66285642381482),
    "D4RL/pointmaze/medium-dense": (44.264742, 297.4552547777125),
    "D4RL/pointmaze/large-dense": (30.569041, 303.4857382709002),
}


def normalized_score(
    returns: float | Sequence[float] | np.ndarray, ref_min: float, ref_max: float
) -> float | np.ndarray:
    """D4RL normalized score `100 * (returns - ref_min) / (ref_max - ref_min)`.

    Args:
        returns: an undiscounted episode return, or an array (any shape) or sequence of them.
        ref_min: the reference return of a random policy (normalized to 0).
        ref_max: the reference return of an expert policy (normalized to 100).

    Returns:
        The normalized score(s), same shape as `returns` (a float for a scalar input).
    """
    if ref_max == ref_min:
        raise ValueError(f"ref_max and ref_min must differ, got both equal to {ref_min}")
    if not np.isscalar(returns):
        returns = np.asarray(returns, dtype=np.float64)
    return 100.0 * (returns - ref_min) / (ref_max - ref_min)


def _matches_prefix(dataset_id: str, prefix: str) -> bool:
    """Whether `prefix` is `dataset_id` or a prefix of it ending at a "/" or "-" boundary (case-insensitive)."""
    dataset_id, prefix = dataset_id.lower(), prefix.lower()
    return dataset_id == prefix or (dataset_id.startswith(prefix) and dataset_id[len(prefix)] in "/-")


def reference_scores(dataset_id: str, metadata: Mapping[str, Any] | None = None) -> tuple[float, float] | None:
    """The (random, expert) reference returns of a dataset, or None if it has none.

    Args:
        dataset_id: a Minari dataset id, e.g. "mujoco/hopper/medium-v0" or "D4RL/pointmaze/umaze-dense-v2".
        metadata: the dataset's metadata (`minari.MinariDataset.storage.metadata`); its "ref_min_score" and
            "ref_max_score" entries, when both are present, are preferred: they are what
            `minari.get_normalized_score` uses.

    Returns:
        `(ref_min, ref_max)` from the metadata, else from `D4RL_REFERENCE_SCORES` by the longest prefix of
        `dataset_id` ending at a "/" or "-" boundary, else None (e.g. for OGBench task names).
    """
    if metadata is not None:
        ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
        if ref_min is not None and ref_max is not None:
            return float(ref_min), float(ref_max)
    matches = [prefix for prefix in D4RL_REFERENCE_SCORES if _matches_prefix(dataset_id, prefix)]
    if not matches:
        return None
    return D4RL_REFERENCE_SCORES[max(matches, key=len)]
