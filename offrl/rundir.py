"""The run directory: its default name, one run per directory (a lock held while it trains), and a clean slate when a
new run is interrupted before it trained."""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import re
import time
from typing import TextIO

from offrl.checkpoint import CHECKPOINT_NAME
from offrl.records import read_status

__all__ = ["GROUP_NAME", "LOCK_NAME", "default_run_dir", "forget_fresh_run", "read_group", "take_run_dir"]

LOCK_NAME = ".lock"
"""The lock file a live run holds in its run directory (`offrl.tools.sweep` reads it to tell a running job)."""

GROUP_NAME = "group.json"
"""In a group's folder (`offrl.member_runs`): its args, its members' run directories and its last saved step."""


def read_group(path: str | os.PathLike) -> dict | None:
    """The group record in the folder `path` (`GROUP_NAME`), or None when `path` is not a group's folder."""
    record = pathlib.Path(path) / GROUP_NAME
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"error: --resume {path}: its {GROUP_NAME} is not readable ({error})") from None


def default_run_dir(
    env_name: str, algo: str, seed: int, root: str | os.PathLike = "runs", label: str = ""
) -> pathlib.Path:
    """`runs/<env>__<algo>__<seed><label>__<YYYYmmdd-HHMMSS>` (slashes in Minari ids become '-'); `label` tells the
    members of a group apart beyond their seed, e.g. '__alpha30'."""
    safe_env = re.sub(r"[^\w.-]+", "-", env_name)
    return pathlib.Path(root) / f"{safe_env}__{algo}__{seed}{label}__{time.strftime('%Y%m%d-%H%M%S')}"


def take_run_dir(run_dir: pathlib.Path, resuming: bool) -> TextIO:
    """Create and lock `run_dir` for this process; refuse one that holds another run (unless resuming it).

    Returns the lock file, held open for the run's life (closing it releases the lock). Errors are one-line
    `SystemExit`s that say what to do.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / LOCK_NAME, "a")  # noqa: SIM115  (held open for the run's whole life)
    except OSError as error:
        raise SystemExit(f"error: cannot write to the run directory {run_dir}: {error.strerror or error}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise SystemExit(
            f"error: {run_dir} holds a run in progress (another process is training in it); wait for it, or pick "
            "another --run-dir."
        ) from None
    if not resuming and ((run_dir / "results.json").exists() or (run_dir / CHECKPOINT_NAME).exists()):
        lock.close()
        status = read_status(run_dir) or "unknown status"
        if (run_dir / CHECKPOINT_NAME).exists() and status != "finished":
            hint = f"continue it with --resume {run_dir}, or pick another --run-dir"
        elif status == "finished":
            hint = "pick another --run-dir (or leave --run-dir out for a new timestamped one)"
        else:
            hint = "it has no checkpoint to resume from: remove the directory, or pick another --run-dir"
        raise SystemExit(f"error: {run_dir} already holds a run ({status}); {hint}.")
    return lock


def forget_fresh_run(run_dir: pathlib.Path) -> None:
    """Interrupted before any training: remove what this run wrote, so the same command can start it again."""
    for path in [run_dir / "results.json", *run_dir.glob("events.out.tfevents.*")]:
        path.unlink(missing_ok=True)
