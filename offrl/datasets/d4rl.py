"""D4RL dataset names and the Minari datasets that stand for them ('hopper-medium-v2' -> 'mujoco/hopper/medium-v0')."""

from __future__ import annotations

import difflib
import re

from offrl.datasets.dataset import DatasetError

__all__ = ["D4RL_PORTS", "d4rl_note", "d4rl_to_minari"]


def _d4rl_ports() -> dict[str, str]:
    """Every D4RL dataset (name without its -v<k>) that Minari serves, and its Minari id."""
    ports = {}
    for env in ("halfcheetah", "hopper", "walker2d", "ant"):  # Minari re-collected these (expert, medium, simple)
        for dataset in ("medium", "expert"):
            ports[f"{env}-{dataset}"] = f"mujoco/{env}/{dataset}-v0"
    for dataset in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse"):
        ports[f"antmaze-{dataset}"] = f"D4RL/antmaze/{dataset}-v1"
    for env in ("pen", "door", "hammer", "relocate"):
        for dataset in ("human", "cloned", "expert"):
            ports[f"{env}-{dataset}"] = f"D4RL/{env}/{dataset}-v2"
    for dataset in ("complete", "partial", "mixed"):
        ports[f"kitchen-{dataset}"] = f"D4RL/kitchen/{dataset}-v2"
    for maze in ("open", "umaze", "medium", "large"):
        for dense in ("", "-dense"):
            ports[f"maze2d-{maze}{dense}"] = f"D4RL/pointmaze/{maze}{dense}-v2"
    return ports


D4RL_PORTS = _d4rl_ports()
"""D4RL dataset name without its version (e.g. 'hopper-medium') -> the Minari dataset that stands for it. Sources:
the Minari dataset list, https://minari.farama.org (namespaces `mujoco` and `D4RL`); D4RL's names,
https://github.com/Farama-Foundation/D4RL/wiki/Tasks."""
D4RL_ENVS = frozenset(name.split("-", 1)[0] for name in D4RL_PORTS)


TYPO_SIMILARITY = 0.9
"""A name this similar to a port's (difflib ratio) is taken for a misspelling of it ('pen-humans' for 'pen-human')."""


def _closest_d4rl(stem: str) -> str:
    env = stem.split("-", 1)[0]
    same_env = [name for name in D4RL_PORTS if name.split("-", 1)[0] == env] or list(D4RL_PORTS)
    return (difflib.get_close_matches(stem, same_env, n=1, cutoff=0.0) or same_env)[0]


def d4rl_to_minari(name: str) -> str | None:
    """The Minari id standing for a D4RL dataset name ('hopper-medium-v2' -> 'mujoco/hopper/medium-v0',
    'antmaze-large-play-v2' -> 'D4RL/antmaze/large-play-v1', 'pen-human-v1' -> 'D4RL/pen/human-v2'); None when
    `name` is not a D4RL name (its first word is no D4RL environment). Any D4RL version maps to the one Minari
    dataset. A D4RL dataset that Minari does not serve (e.g. 'walker2d-random-v2') raises `DatasetError` listing
    what Minari serves for that environment (a misspelt name: the port it is closest to). Minari's datasets are not
    byte-identical to D4RL's (`d4rl_note` says how)."""
    match = re.fullmatch(r"(?P<stem>[a-z0-9]+(?:-[a-z0-9]+)*)-v\d+", name)
    if match is None or match["stem"].split("-", 1)[0] not in D4RL_ENVS:
        return None
    stem = match["stem"]
    if stem in D4RL_PORTS:
        return D4RL_PORTS[stem]
    closest = _closest_d4rl(stem)
    if difflib.SequenceMatcher(None, stem, closest).ratio() >= TYPO_SIMILARITY:  # a misspelt name of a port
        raise DatasetError(
            f"D4RL's {name!r} has no Minari port; the closest Minari dataset is {D4RL_PORTS[closest]!r} (D4RL's "
            f"'{closest}'). Pass --env-name {D4RL_PORTS[closest]} to train on it."
        )
    env = stem.split("-", 1)[0]
    served = [f"{port.split('-', 1)[1]} ({D4RL_PORTS[port]})" for port in D4RL_PORTS if port.startswith(env + "-")]
    raise DatasetError(
        f"D4RL's {name!r} has no Minari port, nor does anything stand in for it: for {env}, Minari serves "
        f"{', '.join(served)} only. Pass one of those ids as --env-name, or load D4RL's own file yourself."
    )


def d4rl_note(d4rl_name: str, minari_id: str) -> str:
    """The line a run prints when it resolves a D4RL name to a Minari id."""
    if minari_id.startswith("mujoco/"):
        how = (
            "Minari re-collected it with Gymnasium's v5 MuJoCo environments, so its data and scores differ from D4RL's"
        )
    else:
        how = "Minari's port of the D4RL data, not byte-identical to D4RL's file"
    return f"D4RL name {d4rl_name} -> Minari dataset {minari_id} ({how})"
