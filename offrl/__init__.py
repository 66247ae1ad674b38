"""offrl: offline reinforcement learning in PyTorch, one readable file per algorithm.

The package holds the building blocks the `train_*.py` scripts share: datasets (`offrl.datasets`), offline
regeneration of OGBench datasets (`offrl.generate`), networks (`offrl.networks`), evaluation
(`offrl.evaluation`) and score normalization (`offrl.scores`).
"""

__version__ = "0.1.0"
