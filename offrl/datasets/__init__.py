"""Offline datasets by source: OGBench single-task (`ogbench`), Minari (`minari`) and D4RL names (`d4rl`), all loaded
by `load_dataset` (`load`) into the common `OfflineDataset` (`dataset`). `python -m offrl.datasets NAME` summarises one.
"""

from offrl.datasets.d4rl import d4rl_note, d4rl_to_minari
from offrl.datasets.dataset import ACTION_CLIP, DatasetError, OfflineDataset, process_rewards, sample_batch
from offrl.datasets.load import load_data, load_dataset, prepare_dataset

__all__ = [
    "load_data",
    "ACTION_CLIP",
    "DatasetError",
    "OfflineDataset",
    "d4rl_note",
    "d4rl_to_minari",
    "load_dataset",
    "prepare_dataset",
    "process_rewards",
    "sample_batch",
]
