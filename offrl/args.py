"""A script's command line: the shared fields (`RunArgs`), per-field checks (`arg`), presets, parsing and resume.

A script's `Args` is a `RunArgs` with the algorithm's fields after the common ones; a field that needs a check declares
it where it is defined, so a copied script carries its checks and nothing here names an algorithm's field:

    flow_steps: int = arg(10, at_least=1)                          # refused below 1, in one line
    hidden_dims: tuple[int, ...] = arg((512, 512), at_least=1, shape=True)   # shape: a resume must keep it

`parse_args` applies flags given > the script's `PRESETS` for --env-name > its defaults; with --resume the
checkpoint's settings are the defaults, and a flag that changes the run's identity (env name, seed, data) or a `shape`
field is refused. `import_script` loads a `train_<algo>.py` for the tools (sweep, bench, evaluate).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NamedTuple

import tyro

from offrl.checkpoint import checkpoint_path, read_checkpoint
from offrl.datasets import DatasetError, d4rl_to_minari
from offrl.records import jsonable
from offrl.rundir import read_group

__all__ = [
    "ParsedArgs",
    "Preset",
    "RunArgs",
    "algo_name",
    "apply_presets",
    "arg",
    "check_args",
    "find_scripts",
    "import_script",
    "member_args",
    "parse_args",
    "per_member_fields",
    "saved_args",
]


def arg(
    default: Any,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    shape: bool = False,
    per_member: bool = False,
) -> Any:
    """A dataclass field with `default` and the checks `parse_args` applies to it (a one-line error when one fails).

    at_least, above, at_most, below: bounds of the value (of every value, for a tuple field, which must also have one
    or more); shape: the field sets the networks' shapes, so a resumed run must keep it; per_member: the field only
    enters the losses marked `@per_member`, so the members of a group (`offrl.members`) may each have their own value.
    """
    checks = {"at_least": at_least, "above": above, "at_most": at_most, "below": below, "shape": shape}
    checks["per_member"] = per_member
    return dataclasses.field(default=default, metadata={"offrl": checks})


@dataclasses.dataclass
class RunArgs:
    """The command-line fields every `train_<algo>.py` shares; a script's `Args` adds its algorithm's after them."""

    env_name: str = "cube-single-play-singletask-task1-v0"
    """dataset: an OGBench single-task name, a Minari id (mujoco/hopper/medium-v0) or a D4RL name (hopper-medium-v2)"""
    dataset_dir: Annotated[
        str | None, tyro.conf.arg(help_behavior_hint="(default: ~/.ogbench/data for OGBench, Minari's own for Minari)")
    ] = None
    """where datasets live"""
    generate_episodes: Annotated[
        int | None, tyro.conf.arg(help_behavior_hint="(default: the official dataset, regenerated if not on disk)")
    ] = arg(None, at_least=1)
    """OGBench: train on a small set of this many episodes generated here with OGBench's oracles (quick runs)"""
    reward_mode: Literal["auto", "none", "antmaze", "locomotion"] = "auto"
    """reward processing: auto (per dataset family), none, antmaze (r - 1), locomotion (1000 / return range)"""
    presets: bool = True
    """apply the script's recommended settings for --env-name (its PRESETS table); flags given always win"""
    seed: int = arg(0, at_least=0, at_most=2**32 - 1)
    """random seed (networks, sampling; evaluation seeds are derived from it but never equal training seeds)"""
    seeds: Annotated[tuple[int, ...] | None, tyro.conf.arg(help_behavior_hint="(default: one run, of --seed)")] = arg(
        None, at_least=0, at_most=2**32 - 1
    )
    """train several seeds in this one process, as members of one vectorized update (each member is an ordinary run
    directory, as a run of its seed would be); with --member-values, every value for every seed"""
    member_values: Annotated[tuple[str, ...] | None, tyro.conf.arg(help_behavior_hint="(default: none)")] = None
    """FIELD=V1,V2,...: members with each of these values of a field the script declares per member (a loss
    coefficient, e.g. alpha=30,100,300), for each of --seeds; several fields: every combination"""
    device: str = "auto"
    """torch device; auto = cuda when available, else cpu"""
    total_steps: int = arg(1_000_000, at_least=1)
    """offline gradient steps"""
    online_steps: int = arg(0, at_least=0)
    """offline-to-online fine-tuning: after the offline steps, this many online steps, each one environment step with
    the exploration policy and one gradient step on the replay buffer (the dataset plus the online transitions);
    0 = offline only"""
    balanced_sampling: Annotated[bool, tyro.conf.arg(help_behavior_hint="(default: uniform over both together)")] = (
        False
    )
    """online phase: draw half of each batch from the dataset and half from the online transitions"""
    batch_size: int = arg(256, at_least=1)
    """transitions per gradient step"""
    eval_every: int = arg(100_000, at_least=1)
    """evaluate every this many steps (and at step 0 and at the end)"""
    eval_episodes: int = arg(50, at_least=1)
    """episodes per evaluation"""
    eval_envs: int = arg(8, at_least=1)
    """environments run side by side during evaluation"""
    log_every: int = arg(5_000, at_least=1)
    """read metrics back from the device, log them and check them for NaN every this many steps (and at every
    evaluation and checkpoint)"""
    compile: bool = True
    """compile the update with torch.compile"""
    cudagraphs: bool = False
    """replay the whole update as one CUDA graph, captured at its third call (CUDA only; ignored on CPU)"""
    run_dir: Annotated[
        str | None, tyro.conf.arg(help_behavior_hint="(default: runs/<env>__<algo>__<seed>__<time>)")
    ] = None
    """where this run writes (for a group of seeds: the folder that holds its members' run directories)"""
    save_every: int = arg(100_000, at_least=1)
    """checkpoint every this many steps (and at the end)"""
    resume: Annotated[str | None, tyro.conf.arg(help_behavior_hint="(default: a new run)")] = None
    """continue an interrupted run in this run directory (or from this checkpoint file, in its directory); its
    settings carry over and flags given override them, except that a change of --env-name, --seed, the data or
    a network size is refused (it would be another experiment)"""
    track: bool = False
    """log the run to Weights & Biases (pip install 'offrl[track]'): its config, the TensorBoard scalars and the
    videos; with WANDB_MODE=offline the run is kept on this machine, in <run_dir>/wandb (upload it later with
    `wandb sync`)"""
    wandb_project: str = "offrl"
    """W&B project of --track"""
    wandb_entity: Annotated[
        str | None, tyro.conf.arg(help_behavior_hint="(default: the one your W&B settings name)")
    ] = None
    """W&B entity (user or team) of --track"""
    success_timing: Annotated[
        Literal["pre", "post"] | None, tyro.conf.arg(help_behavior_hint="(default: the installed OGBench's own)")
    ] = None
    """OGBench single-task: whether reward, success and termination are computed from the state before the action
    ('pre', as OGBench does since 1.2.0) or after it ('post', OGBench 1.1, with which the FQL paper's numbers were
    made)"""
    video: bool = False
    """record the first episode of each evaluation to <run_dir>/videos; the OpenGL backend (MUJOCO_GL if set, else
    glfw with a display, egl or osmesa) is tried before training, and without one the run trains without video"""


RESUME_MUST_MATCH = ("env_name", "seed", "generate_episodes", "reward_mode")
"""The fields that identify a run: resuming with another value would continue a different experiment."""
BOOKKEEPING = frozenset(
    ("total_steps", "eval_every", "eval_episodes", "eval_envs", "log_every", "save_every", "compile", "cudagraphs",
     "device", "video", "run_dir", "resume", "dataset_dir", "presets", "track", "wandb_project", "wandb_entity",
     "online_steps", "seeds", "member_values")
)  # fmt: skip
"""Fields about the bookkeeping, not the optimisation: they may change on resume without a warning."""


class Preset(NamedTuple):
    """Recommended settings of one algorithm for the env names that `pattern` matches (`re.match`, from the start).

    values: `{Args field: value}`; source: where the values come from (paper, repository, post, with a link);
    online: None (every run), True (only runs with --online-steps > 0: offline-to-online settings) or False (only
    offline runs).
    """

    pattern: str
    values: dict[str, Any]
    source: str
    online: bool | None = None


def algo_name(script: str | os.PathLike) -> str:
    """The algorithm a script trains, from its file name: 'train_fql.py' -> 'fql' (a copy names its runs itself)."""
    return pathlib.Path(script).stem.removeprefix("train_")


def find_scripts(folder: str | os.PathLike) -> list[str]:
    """The algorithms of every `train_<algo>.py` in `folder`, sorted (a copied script is found like the others)."""
    return sorted(algo_name(path) for path in pathlib.Path(folder).glob("train_*.py"))


def apply_presets(presets: Sequence[Preset], env_name: str, online: bool = False) -> dict[str, tuple[Any, str]]:
    """`{field: (value, source)}` of every preset whose pattern matches `env_name` (and whose `online` is None or
    equals `online`, whether the run fine-tunes online); later presets win."""
    chosen: dict[str, tuple[Any, str]] = {}
    for preset in presets:
        if re.match(preset.pattern, env_name) and preset.online in (None, online):
            chosen.update({name: (value, preset.source) for name, value in preset.values.items()})
    return chosen


def flag(name: str) -> str:
    """The command-line flag of a field: 'hidden_dims' -> '--hidden-dims'."""
    return "--" + name.replace("_", "-")


def shown(value: Any) -> str:
    """A value as it is typed on the command line (a tuple as its items separated by spaces)."""
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _fields_of(args_type: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(args_type)}


def _checks(field: dataclasses.Field) -> dict[str, Any]:
    return field.metadata.get("offrl", {})


def per_member_fields(args_type: type) -> tuple[str, ...]:
    """The fields declared `arg(..., per_member=True)`: those the members of a group may set each their own way."""
    return tuple(name for name, field in _fields_of(args_type).items() if _checks(field).get("per_member"))


def saved_args(args_type: type, saved: Mapping[str, Any]) -> Any:
    """An `args_type` instance from a checkpoint's saved args (JSON-like: lists back to tuples; unknown keys
    dropped; fields the saved run did not have keep their defaults)."""
    fields = _fields_of(args_type)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in fields}
    return args_type(**values)


class ParsedArgs(NamedTuple):
    """What `parse_args` found: the args, the presets applied and overridden, and on resume what changed."""

    args: Any
    presets_applied: dict[str, dict[str, Any]]
    presets_overridden: dict[str, dict[str, Any]]
    resume_changes: dict[str, list[Any]]
    d4rl_name: str | None = None
    warnings: tuple[str, ...] = ()


def _resolve_d4rl(args: Any) -> tuple[Any, str | None]:
    """args with a D4RL --env-name replaced by its Minari id, and the D4RL name (None when none was given)."""
    try:
        minari_id = d4rl_to_minari(args.env_name)
    except DatasetError as error:
        raise SystemExit(f"error: --env-name: {error}") from None
    if minari_id is None:
        return args, None
    return dataclasses.replace(args, env_name=minari_id), args.env_name


def parse_args(args_type: type, presets: Sequence[Preset] = (), argv: Sequence[str] | None = None) -> ParsedArgs:
    """Parse a script's command line: flags given > presets for --env-name > the script's defaults.

    With `--resume`, the checkpoint's saved settings replace the defaults (and presets are not applied again): a
    flag given that changes the env name, seed, data or a `shape` field is refused; a changed optimisation setting is
    kept with a warning and recorded. Then every field's `arg` checks (`check_args`). Errors are one-line
    `SystemExit`s.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    plain = tyro.cli(args_type, args=argv)  # --help exits here, with the script's own defaults
    plain, d4rl_name = _resolve_d4rl(plain)  # a D4RL name means its Minari dataset (and that dataset's presets)
    applied: dict[str, dict[str, Any]] = {}
    overridden: dict[str, dict[str, Any]] = {}
    changes: dict[str, list[Any]] = {}
    fields = _fields_of(args_type)
    if plain.resume:
        group = read_group(plain.resume)  # a group's folder: the group's own args (seeds, member values), last step
        payload = group if group is not None else read_checkpoint(checkpoint_path(plain.resume))
        # the run directory is where the checkpoint is, wherever the run was started from
        saved = dataclasses.replace(saved_args(args_type, payload.get("args", {})), run_dir=None, resume=None)
        args, _ = _resolve_d4rl(tyro.cli(args_type, args=argv, default=saved))
        for name, field in fields.items():
            before, after = getattr(saved, name), getattr(args, name)
            if before == after or name in ("resume", "run_dir"):
                continue
            if name in RESUME_MUST_MATCH or _checks(field).get("shape"):
                what = name.replace("_", " ") if name in RESUME_MUST_MATCH else "network size"
                raise SystemExit(
                    f"error: --resume {plain.resume}: the run was trained with {flag(name)} {shown(before)}, not "
                    f"{shown(after)}; a resumed run keeps its {what}. Drop the flag, or start a new run."
                )
            changes[name] = [jsonable(before), jsonable(after)]
        if (
            plain.dataset_dir is None
            and saved.dataset_dir
            and not pathlib.Path(saved.dataset_dir).expanduser().is_dir()
        ):
            raise SystemExit(  # a run copied from another machine: its data folder is not made (and filled) here
                f"error: --resume {plain.resume}: the run's --dataset-dir {saved.dataset_dir} does not exist on this "
                "machine; pass --dataset-dir with the folder that holds (or is to hold) the data here."
            )
        taken = max(0, (payload.get("step") or 0) - saved.total_steps)  # the online steps the run has taken
        if taken > args.online_steps:
            raise SystemExit(
                f"error: --resume {plain.resume}: {taken:,} online steps were taken; --online-steps "
                f"{args.online_steps:,} leaves room for {args.online_steps:,}. Resume with --online-steps {taken:,} or "
                "more."
            )
    else:
        chosen = apply_presets(presets, plain.env_name, online=plain.online_steps > 0) if plain.presets else {}
        unknown = sorted(set(chosen) - set(fields))
        if unknown:
            raise SystemExit(f"error: PRESETS name {unknown}, which are not fields of {args_type.__name__}.")
        defaults = dataclasses.replace(args_type(), **{name: value for name, (value, _) in chosen.items()})
        args = dataclasses.replace(tyro.cli(args_type, args=argv, default=defaults), env_name=plain.env_name)
        for name, (value, source) in chosen.items():
            if getattr(args, name) == value:
                applied[name] = {"value": jsonable(value), "source": source}
            else:
                overridden[name] = {"preset": jsonable(value), "given": jsonable(getattr(args, name))}
    check_args(args)
    return ParsedArgs(args, applied, overridden, changes, d4rl_name, ignored_flags(args))


def ignored_flags(args: Any) -> tuple[str, ...]:
    """Warnings for flags given that do nothing with the others given (almost surely a mistake in the command)."""
    warnings = []
    if args.balanced_sampling and not args.online_steps:
        warnings.append(
            "--balanced-sampling does nothing without --online-steps (it splits the online phase's batches)"
        )
    if args.wandb_entity is not None and not args.track:
        warnings.append("--wandb-entity does nothing without --track")
    return tuple(warnings)


def _bound_broken(value: float, checks: Mapping[str, Any]) -> str | None:
    """What `value` should be when it breaks one of the bounds in `checks` ('positive', 'at most 1', ...), else None."""
    if checks.get("at_least") is not None and value < checks["at_least"]:
        return "positive" if checks["at_least"] == 1 and isinstance(value, int) else f"at least {checks['at_least']}"
    if checks.get("above") is not None and value <= checks["above"]:
        return f"greater than {checks['above']}"
    if checks.get("at_most") is not None and value > checks["at_most"]:
        return f"at most {checks['at_most']}"
    if checks.get("below") is not None and value >= checks["below"]:
        return f"less than {checks['below']}"
    return None


def check_args(args: Any) -> None:
    """The checks each field declared with `arg` (bounds; a tuple field needs one or more values), and that --resume
    and --run-dir agree. Errors are one-line `SystemExit`s naming the flag."""
    for name, field in _fields_of(type(args)).items():
        checks, value = _checks(field), getattr(args, name)
        if not checks or value is None:
            continue
        if isinstance(value, tuple):
            broken = [why for why in map(lambda v: _bound_broken(v, checks), value) if why]
            if not value or broken:
                need = f", each {broken[0]}" if broken else ""
                raise SystemExit(f"error: {flag(name)} needs one or more values{need}; got '{shown(value)}'")
        elif why := _bound_broken(value, checks):
            raise SystemExit(f"error: {flag(name)} must be {why}, got {value}")
    if args.resume and args.run_dir:
        resumed_dir = checkpoint_path(args.resume).parent.resolve()
        if pathlib.Path(args.run_dir).resolve() != resumed_dir:
            raise SystemExit(f"error: --resume continues in {resumed_dir}; drop --run-dir {args.run_dir}.")


def import_script(path: str | os.PathLike):
    """Import a `train_<algo>.py` file as a module (its `Args`, `PRESETS`, `build`), without running its `main`."""
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no script {path}")
    name = f"offrl_script_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def member_args(args: Any, per_member_fields: Sequence[str]) -> list[Any]:
    """Each member's args from --seeds and --member-values (FIELD=V1,V2,... for fields in `per_member_fields`):
    every combination of the values, for every seed, in that order; [args] for a single run. A field the script
    does not declare per member, or a value out of its range, is refused in one line."""
    points: list[dict[str, float]] = [{}]
    for spec in args.member_values or ():
        name, sep, values = spec.partition("=")
        name = name.strip().removeprefix("--").replace("-", "_")
        if name not in per_member_fields:
            allowed = ", ".join(per_member_fields) or "none"
            raise SystemExit(
                f"error: --member-values {spec}: {name!r} is not a field members may set each their own way (this "
                f"script's: {allowed}); give other settings to separate runs"
            )
        try:
            numbers = [float(value) for value in values.split(",") if value.strip()]
        except ValueError:
            numbers = []
        if not sep or not numbers:
            raise SystemExit(f"error: --member-values {spec}: expected FIELD=V1,V2,... with numbers, e.g. alpha=30,100")
        points = [{**point, name: number} for point in points for number in numbers]
    seeds = args.seeds or (args.seed,)
    members = [
        dataclasses.replace(args, seed=seed, seeds=None, member_values=None, **point)
        for point in points
        for seed in seeds
    ]
    if len(set(seeds)) < len(seeds) or len({repr(p) for p in points}) < len(points):
        raise SystemExit("error: --seeds or --member-values name a member twice (the same seed, or the same value)")
    for member in members:
        check_args(member)
    return members
