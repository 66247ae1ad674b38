"""Atomic file writes: a crash or a full disk leaves the old file or the new one, never a part of either.

`atomic_write` writes one file through a temporary file beside it; `atomic_write_files` writes several that belong
together (a dataset and its validation split), replacing all of them or none. Checkpoints, results.json, generated
datasets and the sweep's records are written this way.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["atomic_write", "atomic_write_files"]


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write a file through `write(file)` into a temporary file beside `path`, then rename it over `path`.

    The data reach the disk (fsync) before the rename, so a crash leaves the old file or the new one, never a part;
    on failure the temporary file is removed. The file gets the permissions of an ordinary new file (0666 less the
    umask), not the temporary file's 0600.
    """
    atomic_write_files([(path, write)], mode)


def atomic_write_files(files: Sequence[tuple[str | os.PathLike, Callable[[Any], None]]], mode: str = "w") -> None:
    """`atomic_write` for several files that belong together: every file is written to its temporary file first,
    then all are renamed, in the given order; if any write fails, none of the files is replaced."""
    umask = os.umask(0)
    os.umask(umask)
    temporary: list[tuple[str, pathlib.Path]] = []
    try:
        for path, write in files:
            path = pathlib.Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temporary.append((name, path))
            with os.fdopen(descriptor, mode) as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(name, 0o666 & ~umask)
        for name, path in temporary:
            os.replace(name, path)
    except BaseException:
        for name, _ in temporary:
            pathlib.Path(name).unlink(missing_ok=True)
        raise
