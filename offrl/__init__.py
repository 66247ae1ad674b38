"""offrl: offline reinforcement learning in PyTorch, one readable file per algorithm.

The package holds what the `train_*.py` scripts share, a module per job: the run around a script's loop (`offrl.run`,
with `args`, `compile`, `devices`, `checkpoint`, `records`, `rundir`, `stopping`, `atomic`), several seeds trained as
one (`offrl.members`, `offrl.member_runs`), datasets by source
(`offrl.datasets`, `offrl.generate`), networks and losses, evaluation and video, scores. The tools that work around
runs (sweep, report, evaluate, bench) are commands in `offrl.tools`; no run imports them.
"""

import warnings

__version__ = "0.1.0"

# Two warnings that every headless run printed and that never concern the user: dm_control (under OGBench) probes
# for an X display when it is imported, and OGBench's float64 space bounds are cast to float32 by gymnasium. A run
# that records video says itself whether rendering works.
warnings.filterwarnings("ignore", message=r".*The DISPLAY environment variable is missing")
warnings.filterwarnings("ignore", message=r".*precision lowered by casting to float32")
