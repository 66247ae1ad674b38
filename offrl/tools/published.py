"""Published success rates that `offrl.tools.report` sets beside results: each with its source, the evaluation it
corresponds to (which of the report's columns to read it against) and how many tasks it averages.

FQL paper (S. Park, Q. Li, S. Levine, "Flow Q-Learning", ICML 2025, https://arxiv.org/abs/2502.02538): Table 2 holds
5-task means per domain, Table 3 every task. OGBench state-based tasks: 1M gradient steps, 50 evaluation episodes
every 100K steps, a seed's score the mean success of the evaluations at 800K, 900K and 1M steps; 8 seeds, "±" the
standard deviation over seeds; OGBench 1.1, whose single-task environments check success after the action
(`--success-timing post` here). Its IQL and IDQL columns are the paper's own runs of those baselines, tuned per
domain, with the same network size and discount as FQL.
"""

from __future__ import annotations

from dataclasses import dataclass

FQL_PAPER = "FQL paper"
FAN_PAPER = "FAN paper"
OGATA = "Ogata's post"
SOURCES = {
    FQL_PAPER: 'S. Park, Q. Li, S. Levine, "Flow Q-Learning", ICML 2025, https://arxiv.org/abs/2502.02538: Table 2 '
    "(5-task means per domain) and Table 3 (each task). 1M gradient steps; a seed's score is the mean success of the "
    "evaluations at 800K, 900K and 1M steps (50 episodes each), the report's **last 3** with `--eval-every 100000`; "
    "8 seeds, ± the standard deviation over seeds; OGBench 1.1 (success checked after the action: "
    "`--success-timing post`). Its IQL and IDQL columns are the paper's own runs of those baselines.",
    FAN_PAPER: '"Flow-Anchored Noise-conditioned Q-Learning (FAN)", ICML 2026, https://arxiv.org/abs/2605.01663; '
    "code https://github.com/brianlsy98/FAN: 5-task means per domain.",
    OGATA: 'M. Ogata, "Offline RL: SAC+BC, IQL, and Flow Q-Learning" (blog post): one run per algorithm on '
    "cube-single task 1 and antsoccer-arena task 1, its final or its best evaluation.",
}


@dataclass(frozen=True)
class Published:
    """One published success rate (percent)."""

    value: str  # '96 ± 1', or '100' for a single run
    source: str  # a key of SOURCES
    where: str  # 'Table 2'
    evaluation: str  # the report's column it corresponds to: 'final', 'last 3', 'best' ('' when not stated)
    tasks: int  # tasks averaged: 5 for a domain mean, 1 for one task
    note: str = ""  # the setting and the number of runs, e.g. 'alpha 30, 1 run'

    def cell(self) -> str:
        """'97 ± 2, last 3 (FQL paper Table 3)': the value, the report's column to read it against, where from."""
        where = f"{self.source} {self.where}".strip() + (f", {self.note}" if self.note else "")
        return f"{self.value}{', ' + self.evaluation if self.evaluation else ''} ({where})"


# FQL paper Table 2: (IQL, IDQL, FQL) 5-task means per domain.
_FQL_DOMAINS = {
    "cube-single": ("83 ± 3", "95 ± 2", "96 ± 1"),
    "cube-double": ("7 ± 1", "15 ± 6", "29 ± 2"),
    "scene": ("28 ± 1", "46 ± 3", "56 ± 2"),
    "puzzle-3x3": ("9 ± 1", "10 ± 2", "30 ± 1"),
    "puzzle-4x4": ("7 ± 1", "29 ± 3", "17 ± 2"),
    "antsoccer-arena": ("8 ± 2", "12 ± 4", "60 ± 2"),
}
# FQL paper Table 3: (IQL, IDQL, FQL) per task, tasks 1 to 5 of each dataset.
_FQL_TASKS = {
    "cube-single-play": [
        ("88 ± 3", "95 ± 2", "97 ± 2"), ("85 ± 8", "96 ± 2", "97 ± 2"), ("91 ± 5", "99 ± 1", "98 ± 2"),
        ("73 ± 6", "93 ± 4", "94 ± 3"), ("78 ± 9", "90 ± 6", "93 ± 3"),
    ],
    "cube-double-play": [
        ("27 ± 5", "39 ± 19", "61 ± 9"), ("1 ± 1", "16 ± 10", "36 ± 6"), ("0 ± 0", "17 ± 8", "22 ± 5"),
        ("0 ± 0", "0 ± 1", "5 ± 2"), ("4 ± 3", "1 ± 1", "19 ± 10"),
    ],
    "scene-play": [
        ("94 ± 3", "100 ± 0", "100 ± 0"), ("12 ± 3", "33 ± 14", "76 ± 9"), ("32 ± 7", "94 ± 4", "98 ± 1"),
        ("0 ± 1", "4 ± 3", "5 ± 1"), ("0 ± 0", "0 ± 0", "0 ± 0"),
    ],
    "puzzle-3x3-play": [
        ("33 ± 6", "52 ± 12", "90 ± 4"), ("4 ± 3", "0 ± 1", "16 ± 5"), ("3 ± 2", "0 ± 0", "10 ± 3"),
        ("2 ± 1", "0 ± 0", "16 ± 5"), ("3 ± 2", "0 ± 0", "16 ± 3"),
    ],
    "puzzle-4x4-play": [
        ("12 ± 2", "48 ± 5", "34 ± 8"), ("7 ± 4", "14 ± 5", "16 ± 5"), ("9 ± 3", "34 ± 5", "18 ± 5"),
        ("5 ± 2", "26 ± 6", "11 ± 3"), ("4 ± 1", "24 ± 11", "7 ± 3"),
    ],
    "antsoccer-arena-navigate": [
        ("14 ± 5", "44 ± 12", "77 ± 4"), ("17 ± 7", "15 ± 12", "88 ± 3"), ("6 ± 4", "0 ± 0", "61 ± 6"),
        ("3 ± 2", "0 ± 1", "39 ± 6"), ("2 ± 2", "0 ± 0", "36 ± 9"),
    ],
}  # fmt: skip
_FQL_ALGOS = ("iql", "idql", "fql")

DOMAIN: dict[tuple[str, str], Published] = {
    **{
        (domain, algo): Published(value, FQL_PAPER, "Table 2", "last 3", 5)
        for domain, values in _FQL_DOMAINS.items()
        for algo, value in zip(_FQL_ALGOS, values, strict=True)
    },
    **{
        (domain, "fan"): Published(value, FAN_PAPER, "", "", 5)
        for domain, value in {
            "cube-double": "46",
            "scene": "58",
            "puzzle-3x3": "100",
            "puzzle-4x4": "42",
            "antsoccer-arena": "60",
        }.items()
    },  # fmt: skip
}
"""(domain, algorithm) -> the published 5-task mean."""

TASK: dict[tuple[str, str], list[Published]] = {
    (f"{dataset}-singletask-task{task}-v0", algo): [Published(value, FQL_PAPER, "Table 3", "last 3", 1)]
    for dataset, rows in _FQL_TASKS.items()
    for task, values in enumerate(rows, start=1)
    for algo, value in zip(_FQL_ALGOS, values, strict=True)
}
"""(env name, algorithm) -> the published results on that one task."""
_CUBE1, _SOCCER1 = "cube-single-play-singletask-task1-v0", "antsoccer-arena-navigate-singletask-task1-v0"
for _key, _entry in {
    (_CUBE1, "sacbc"): Published("88", OGATA, "", "final", 1, "alpha 300, 1 run"),
    (_CUBE1, "iql"): Published("84", OGATA, "", "final", 1, "alpha 10, 1 run"),
    (_CUBE1, "fql"): Published("100", OGATA, "", "final", 1, "alpha 300, 1 run"),
    (_SOCCER1, "sacbc"): Published("44", OGATA, "", "best", 1, "alpha 3, 1 run"),
    (_SOCCER1, "iql"): Published("32", OGATA, "", "best", 1, "alpha 30, 1 run"),
    (_SOCCER1, "fql"): Published("56", OGATA, "", "best", 1, "alpha 3, 1 run"),
}.items():
    TASK.setdefault(_key, []).append(_entry)
