"""Recommended hyperparameters per algorithm and domain: the one table `offrl.sweep` reads.

The scripts' defaults are the reference settings for OGBench manipulation (cube, scene). Other domains need other
values (FQL's alpha is 1000 on puzzle and 10 on antsoccer; antsoccer and humanoidmaze use discount 0.995), and
`recommended(algo, env_name)` returns them as `{Args field: value}`, so a sweep over
`puzzle-3x3-play-singletask-task4-v0` trains FQL with alpha 1000 without anyone looking it up. Every rule below names
where its numbers come from; fields a rule does not name keep the script's default.

    python -m offrl.hparams fql puzzle-3x3-play-singletask-task4-v0     # prints: --alpha 1000
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Any

ALGOS = ("sacbc", "iql", "fql", "fan", "idql")


@dataclass(frozen=True)
class Rule:
    """`values` apply to `algos` on every env whose domain fully matches the regular expression `domain`."""

    algos: tuple[str, ...]
    domain: str
    values: dict[str, Any]
    source: str


_FQL_README = "FQL repository README (seohongpark/fql), per-task commands"
_FAN_SCRIPTS = "FAN repository bash_scripts (brianlsy98/FAN)"
_OGBENCH_LONG_HORIZON = r"antsoccer-.*|humanoidmaze-.*|antmaze-giant"
_ADROIT = "D4RL/(pen|door|hammer|relocate)"

# Later rules override earlier ones where both match.
RULES: tuple[Rule, ...] = (
    # Discounts shared by every algorithm (REFERENCE: 0.995 for antsoccer, humanoidmaze, antmaze-giant).
    Rule(ALGOS, _OGBENCH_LONG_HORIZON, {"discount": 0.995}, "FQL paper / repository defaults"),
    Rule(("fan",), r"(D4RL|mujoco)/.*", {"discount": 0.99}, "FAN paper: 0.99 on D4RL (its default 0.995 is OGBench's)"),
    # FQL
    Rule(("fql",), r"cube-.*|scene", {"alpha": 300.0}, _FQL_README),
    Rule(("fql",), r"puzzle-.*", {"alpha": 1000.0}, _FQL_README),
    Rule(("fql",), r"antmaze-.*|antsoccer-.*", {"alpha": 10.0}, _FQL_README),
    Rule(("fql",), r"antmaze-(large|giant)", {"q_agg": "min"}, _FQL_README),
    Rule(("fql",), r"humanoidmaze-.*", {"alpha": 30.0}, _FQL_README),
    Rule(("fql",), r"D4RL/antmaze", {"alpha": 10.0}, _FQL_README),
    Rule(("fql",), _ADROIT, {"q_agg": "min", "alpha": 30000.0}, _FQL_README),
    # SAC+BC and IQL: the seed post's best settings (REFERENCE.md), IQL's D4RL settings from the IQL/IDQL papers.
    Rule(("sacbc",), r"cube-single", {"alpha": 300.0}, "seed 000: best of {30, 100, 300, 1000}"),
    Rule(("sacbc",), r"antsoccer-.*", {"alpha": 3.0}, "seed 000"),
    Rule(("iql",), r"cube-single", {"alpha": 10.0}, "seed 000: best of {5, 10, 15, 30}"),
    Rule(("iql",), r"antsoccer-.*", {"alpha": 30.0}, "seed 000"),
    Rule(("iql",), r"humanoidmaze-.*", {"alpha": 10.0}, _FQL_README),
    Rule(("iql", "idql"), r"mujoco/.*", {"expectile": 0.7}, "IQL and IDQL papers: locomotion"),
    Rule(("iql",), r"mujoco/.*", {"alpha": 3.0}, "IQL paper: locomotion temperature 3"),
    Rule(("iql", "idql"), r"D4RL/antmaze", {"expectile": 0.9}, "IQL and IDQL papers: antmaze"),
    Rule(("iql",), r"D4RL/antmaze", {"alpha": 10.0}, "IQL paper: antmaze temperature 10"),
    Rule(("iql",), r"(D4RL|mujoco)/.*", {"actor_cosine_decay": True}, "IQL paper: actor cosine decay on D4RL"),
    # IDQL: candidates per state (paper: 32 antmaze, 128 locomotion).
    Rule(("idql",), r"mujoco/.*", {"num_candidates": 128}, "IDQL paper"),
    Rule(("idql",), r"D4RL/antmaze|antmaze-.*", {"num_candidates": 32}, "IDQL paper"),
    # FAN: (alpha1, alpha2) per domain; no published cube-single setting, the script default (100, 0) stands.
    Rule(("fan",), r"antsoccer-.*", {"alpha1": 10.0, "alpha2": 0.1}, _FAN_SCRIPTS),
    Rule(("fan",), r"cube-double", {"alpha1": 100.0, "alpha2": 0.0}, _FAN_SCRIPTS),
    Rule(("fan",), r"puzzle-.*|scene", {"alpha1": 100.0, "alpha2": 3.0}, _FAN_SCRIPTS),
    Rule(("fan",), r"D4RL/antmaze", {"alpha1": 3.0, "alpha2": 0.03, "z_agg": "min"}, _FAN_SCRIPTS),
    # D4RL-style benchmarks train 500k steps in the FQL and FAN papers (OGBench: 1M, the scripts' default).
    Rule(("fql", "fan"), r"D4RL/.*", {"total_steps": 500_000}, "FQL and FAN papers: 500k steps on D4RL"),
)

# Per-dataset FQL alphas on Adroit (FQL README); the rule above gives the common value.
_FQL_ADROIT_ALPHA = {
    "D4RL/pen/human": 10000.0,
    "D4RL/pen/cloned": 10000.0,
    "D4RL/pen/expert": 3000.0,
    "D4RL/hammer/cloned": 10000.0,
    "D4RL/relocate/human": 10000.0,
}


def domain_of(env_name: str) -> str:
    """The benchmark domain of an env name, the unit the papers average over.

    'cube-single-play-singletask-task1-v0' -> 'cube-single'; 'puzzle-3x3-play-singletask-v0' -> 'puzzle-3x3';
    'D4RL/antmaze/medium-play-v1' -> 'D4RL/antmaze'; 'mujoco/hopper/medium-v0' -> 'mujoco/hopper'.
    Other names are their own domain.
    """
    if "/" in env_name:
        return env_name.rsplit("/", 1)[0]
    match = re.fullmatch(r"(?P<domain>.+)-[a-z]+-singletask(-task\d+)?-v\d+", env_name)
    return match["domain"] if match else env_name


def recommended(algo: str, env_name: str) -> dict[str, Any]:
    """The recommended `{Args field: value}` for `algo` on `env_name` (empty where the defaults are the reference)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose from {', '.join(ALGOS)}")
    domain = domain_of(env_name)
    values: dict[str, Any] = {}
    for rule in RULES:
        if algo in rule.algos and re.fullmatch(rule.domain, domain):
            values.update(rule.values)
    if algo == "fql":
        dataset = env_name.rsplit("-v", 1)[0]
        if dataset in _FQL_ADROIT_ALPHA:
            values["alpha"] = _FQL_ADROIT_ALPHA[dataset]
    return values


def to_flags(values: dict[str, Any]) -> list[str]:
    """`{Args field: value}` as the scripts' command-line flags: {'q_agg': 'min', 'layer_norm': False} ->
    ['--q-agg', 'min', '--no-layer-norm']; tuples become several values (`--hidden-dims 256 256`)."""
    flags: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, (tuple, list)):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m offrl.hparams",
        description="Print the recommended hyperparameters of an algorithm on an env as command-line flags.",
    )
    parser.add_argument("algo", choices=ALGOS, help="algorithm")
    parser.add_argument("env_name", help="OGBench single-task name or Minari id")
    args = parser.parse_args(argv)
    print(" ".join(to_flags(recommended(args.algo, args.env_name))) or "(the script's defaults)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
