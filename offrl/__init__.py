"""offrl: offline reinforcement learning in PyTorch, one readable file per algorithm.

The package holds the building blocks the `train_*.py` scripts share: the run bookkeeping (`offrl.runs`), datasets
(`offrl.datasets`), offline regeneration of OGBench datasets (`offrl.generate`), networks (`offrl.networks`),
evaluation (`offrl.evaluation`) and score normalization (`offrl.scores`).
"""

import warnings

__version__ = "0.1.0"

# Two warnings that every headless run printed and that never concern the user: dm_control (under OGBench) probes
# for an X display when it is imported, and OGBench's float64 space bounds are cast to float32 by gymnasium. A run
# that records video says itself whether rendering works.
warnings.filterwarnings("ignore", message=r".*The DISPLAY environment variable is missing")
warnings.filterwarnings("ignore", message=r".*precision lowered by casting to float32")
