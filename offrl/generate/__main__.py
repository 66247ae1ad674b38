"""`python -m offrl.generate NAME`: regenerate an OGBench dataset offline (see `offrl.generate.build`)."""

from __future__ import annotations

import argparse
import os
import sys

from offrl.generate.build import generate_dataset
from offrl.generate.specs import DEFAULT_DATASET_DIR, GenerationError


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m offrl.generate NAME [--num-episodes N] [--dataset-dir DIR] [--workers W] ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m offrl.generate",
        description="Regenerate an OGBench dataset offline with OGBench's own oracles and generation procedure.",
    )
    parser.add_argument("name", help="dataset name, e.g. cube-single-play-v0 or pointmaze-medium-navigate-v0")
    parser.add_argument("--num-episodes", type=int, default=None, help="train episodes (default: official count)")
    parser.add_argument("--dataset-dir", default=DEFAULT_DATASET_DIR, help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed; files depend only on it (default: %(default)s)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores, %(default)s)"
    )
    parser.add_argument("--max-episode-steps", type=int, default=None, help="steps per episode (default: official)")
    parser.add_argument(
        "--output-name",
        default=None,
        help="write DIR/<output-name>.npz (default: DIR/generated/<name>-<N>ep-seed<S>.npz, where offrl.datasets "
        "looks for generated sets; never the official file name)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or summary line")
    args = parser.parse_args(argv)
    try:
        generate_dataset(
            args.name,
            args.dataset_dir,
            num_episodes=args.num_episodes,
            seed=args.seed,
            workers=args.workers,
            max_episode_steps=args.max_episode_steps,
            output_name=args.output_name,
            progress=not args.no_progress,
        )
    except GenerationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a quota: nothing half-written is left (the files are written atomically)
        where = error.filename or args.dataset_dir
        print(
            f"error: could not write the dataset to {where}: {error.strerror or error}; nothing was written",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted: no dataset file was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
