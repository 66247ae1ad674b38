"""OGBench datasets regenerated offline with the scripted agents that ship inside the `ogbench` package.

`specs`: what can be generated and where it is stored; `episodes`: one episode of OGBench's data collection;
`build`: `generate_dataset`, the files written (the procedure, in its docstring); `python -m offrl.generate NAME`.
"""

from offrl.generate.build import generate_dataset, read_provenance
from offrl.generate.specs import (
    DATASET_URL,
    DEFAULT_DATASET_DIR,
    OFFICIAL_SPECS,
    GenerationError,
    can_generate,
    download_only_message,
    download_only_reason,
    estimate_seconds,
    generated_path,
    num_val_episodes,
    official_num_episodes,
)

__all__ = [
    "DATASET_URL",
    "DEFAULT_DATASET_DIR",
    "OFFICIAL_SPECS",
    "GenerationError",
    "can_generate",
    "download_only_message",
    "download_only_reason",
    "estimate_seconds",
    "generate_dataset",
    "generated_path",
    "num_val_episodes",
    "official_num_episodes",
    "read_provenance",
]
