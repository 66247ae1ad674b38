"""`python -m offrl.datasets NAME`: fetch (download or generate) a dataset ahead of training and summarise it."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from offrl.datasets.dataset import KEYS, DatasetError
from offrl.datasets.load import load_dataset


def main(argv: list[str] | None = None) -> int:
    """`python -m offrl.datasets NAME`: load a dataset the way the training scripts do and summarise it."""
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
