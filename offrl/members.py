"""Several members (seeds, and loss coefficients) trained in one process as one vectorized update.

A script's losses, networks and update are written for one run. For a group (`--seeds 0 1 2 3`), the script's
`build()` is called once per member (each after seeding with its own seed, so each member starts where its single
run would), then `stack_members` turns the first member's parameters into stacked tensors with a leading member
dimension K. They stay the same `Parameter` objects, so the optimizer, the target-network lists and the checkpoint
keep referring to them:

    parameter (K, *shape)   optimizer state (K, *shape)   batch {key: (K, B, ...)}   metrics {name: (K,)}

The losses, marked `@per_member` in the script, then run once for all members under `torch.func.vmap` with
`randomness="different"` (each member its own batch and its own noise), every network called with that member's
slice of its parameters (`torch.func.functional_call`). The loss they return is summed over members, so one
`loss.backward()` gives each member exactly the gradient of its own loss; the optimizer (elementwise: Adam, AdamW)
and the target updates (`polyak_update_`) act on the stacked tensors as they are. A member's update never reads
another member's parameters, batch or noise.

Loss coefficients may differ between members (fields declared `arg(..., per_member=True)`): inside the members'
computation `args.alpha` is that member's value (a 0-dim tensor); read anywhere else it is refused with the name of
the field (`guard_args`). Everything else (network sizes, learning rate, batch size) is shared by the members.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "MemberBatch",
    "MemberGroup",
    "build_members",
    "guard_args",
    "member_state",
    "per_member",
    "stack_members",
    "stacked_state",
    "varying_fields",
]


class MemberBatch(dict):
    """A batch with a leading member dimension, {key: (K, B, ...)}: `@per_member` losses see member k's (B, ...)."""


_MEMBER_VALUES: list[Mapping[str, torch.Tensor]] = []
"""The coefficients of the member being computed, while `MemberGroup.call` runs: what guarded args read."""


class _Runner(nn.Module):
    """Calls a function with the group's networks as its submodules, so that one `functional_call` swaps a member's
    parameters into all of them at once."""

    def __init__(self, nets: Mapping[str, nn.Module]):
        super().__init__()
        self.nets = nn.ModuleDict(dict(nets))

    def forward(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        return fn(*args, **kwargs)


class MemberGroup:
    """K members trained together: their networks (stacked parameters) and the coefficients that differ.

    nets: the first member's networks, whose parameters hold every member's, (K, *shape).
    varying: {field: (K,) tensor} for the args fields that differ between members.
    """

    def __init__(self, count: int, nets: Mapping[str, nn.Module], varying: Mapping[str, torch.Tensor]):
        self.count = count
        self.nets = dict(nets)
        self.varying = dict(varying)
        self._runner = _Runner(self.nets)
        self._parameters = dict(self._runner.named_parameters())  # the same Parameter objects for the group's life
        for module in self.nets.values():
            module._offrl_member_group = self  # how `@per_member` recognizes a group's networks

    def parameters(self) -> dict[str, torch.Tensor]:
        """{name: (K, *shape)}: every stacked parameter, by its name under the group's runner (gathered once, not at
        every update)."""
        return self._parameters

    def call(self, fn: Callable[..., Any], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        """fn(*args, **kwargs) once per member, vectorized: `MemberBatch` arguments are split along their first
        dimension, the networks use each member's parameters, guarded args (`guard_args`) give each member's
        coefficients. Returns fn's outputs with a leading member dimension."""
        kwargs = dict(kwargs or {})
        given = dict(enumerate(args)) | kwargs
        split = {key: dict(value) for key, value in given.items() if isinstance(value, MemberBatch)}

        def one_member(params: dict[str, torch.Tensor], batches: dict[Any, Any], values: dict[str, Any]) -> Any:
            call = {**given, **batches}
            positional, named = [call[i] for i in range(len(args))], {key: call[key] for key in kwargs}
            _MEMBER_VALUES.append(values)
            try:
                return torch.func.functional_call(self._runner, params, (fn, positional, named))
            finally:
                _MEMBER_VALUES.pop()

        vmapped = torch.func.vmap(one_member, in_dims=(0, 0, 0), randomness="different")
        return vmapped(self.parameters(), split, self.varying)


def guard_args(args: Any, varying: Sequence[str]) -> Any:
    """The args `build()` gets for a group whose members differ in the fields `varying`: inside the members'
    computation (`MemberGroup.call`: the `@per_member` losses, the policy) such a field is the member's own value, a
    0-dim tensor; read anywhere else it is refused, naming the field (it would silently be the first member's)."""
    if not varying:
        return args

    def per_member_value(name: str) -> property:
        def get(self: Any) -> Any:
            if _MEMBER_VALUES:
                return _MEMBER_VALUES[-1][name]
            raise AttributeError(
                f"--{name.replace('_', '-')} differs between the members of this group, so it can only be read in "
                "their losses (marked @per_member) or their policy, where it is each member's own value"
            )

        return property(get)

    cls = type(args)
    guarded = object.__new__(type(cls.__name__, (cls,), {name: per_member_value(name) for name in varying}))
    guarded.__dict__.update({key: value for key, value in vars(args).items() if key not in varying})
    return guarded


def _group_of(args: Sequence[Any], kwargs: Mapping[str, Any]) -> MemberGroup | None:
    """The group whose networks are among the arguments (directly or in a dict), if any."""
    for value in [*args, *kwargs.values()]:
        for module in value.values() if isinstance(value, Mapping) else [value]:
            group = getattr(module, "_offrl_member_group", None) if isinstance(module, nn.Module) else None
            if group is not None:
                return group
    return None


def per_member(losses: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a script's losses as one member's: for a single run they are called as they are; for a group (their
    networks stacked by `stack_members`), once for all members, vectorized (`MemberGroup.call`). The first output,
    the loss, is then summed over the members (its backward gives each member the gradient of its own loss); the
    other outputs keep their leading member dimension."""

    @functools.wraps(losses)
    def call(*args: Any, **kwargs: Any) -> Any:
        group = _group_of(args, kwargs)
        if group is None or _MEMBER_VALUES:  # a single run, or already inside one member's computation
            return losses(*args, **kwargs)
        loss, *rest = group.call(losses, args, kwargs)
        return (loss.sum(), *rest)

    call.per_member = True  # what `build_members` looks for in the script
    return call


def stack_members(nets: Sequence[Mapping[str, nn.Module]], varying: Mapping[str, torch.Tensor]) -> MemberGroup:
    """Stack the members' networks into the first member's: each of its parameters becomes (K, *shape), in place
    (`Parameter.data`), so whatever holds it (optimizer, target lists, checkpoint state) now holds all members.
    Buffers stay the first member's and must be equal in every member."""
    first, others = nets[0], nets[1:]
    stacked: set[int] = set()  # a module listed under two names is stacked once
    for name, module in first.items():
        for (_, param), *theirs in zip(
            module.named_parameters(), *(other[name].named_parameters() for other in others), strict=True
        ):
            if id(param) not in stacked:
                param.data = torch.stack([param.data, *(p.data for _, p in theirs)])
                stacked.add(id(param))
        for (buffer_name, buffer), *theirs in zip(
            module.named_buffers(), *(other[name].named_buffers() for other in others), strict=True
        ):
            if not all(torch.equal(buffer, b) for _, b in theirs):
                raise ValueError(f"the buffer {name}.{buffer_name} differs between members; it cannot be shared")
    return MemberGroup(len(nets), first, varying)


class MemberState:
    """One member's part of a group's checkpoint object (`state_dict()` only): a network's stacked parameters or an
    optimizer's per-parameter state (moments) indexed at the member; buffers, step counts, learning rates and other
    objects' state as they are. Loaded into a single run's `build()`, it is that member as a run of its own."""

    def __init__(self, obj: Any, member: int, stacked: set[int]):
        self.obj, self.member, self.stacked = obj, member, stacked

    def state_dict(self) -> dict[str, Any]:
        state = self.obj.state_dict()
        if isinstance(self.obj, nn.Module):
            names = {name for name, param in self.obj.named_parameters() if id(param) in self.stacked}
            return {key: value[self.member].clone() if key in names else value for key, value in state.items()}
        if isinstance(self.obj, torch.optim.Optimizer):
            params = [param for group in self.obj.param_groups for param in group["params"]]
            per_param = {
                index: {
                    key: value[self.member].clone()
                    if isinstance(value, torch.Tensor) and id(params[index]) in self.stacked and key != "step"
                    and value.shape == params[index].shape else value
                    for key, value in param_state.items()
                }
                for index, param_state in state["state"].items()
            }  # fmt: skip
            return {**state, "state": per_param}
        return copy.deepcopy(state)


def member_state(group: MemberGroup, objects: Mapping[str, Any], member: int) -> dict[str, MemberState]:
    """{name: member `member`'s part of objects[name]} (`MemberState`), for its own checkpoint."""
    stacked = {id(param) for param in group.parameters().values()}
    return {name: MemberState(obj, member, stacked) for name, obj in objects.items()}


def stacked_state(group: MemberGroup, objects: Mapping[str, Any], states: Sequence[Mapping[str, Any]]) -> dict:
    """The group's state dicts made from its members' saved ones (`MemberState`'s inverse): {name: state dict} whose
    stacked parameters and optimizer moments hold every member's, in order; the rest is the first member's."""
    stacked = {id(param) for param in group.parameters().values()}
    result = {}
    for name, obj in objects.items():
        first = states[0][name]
        if isinstance(obj, nn.Module):
            names = {key for key, param in obj.named_parameters() if id(param) in stacked}
            result[name] = {
                key: torch.stack([state[name][key] for state in states]) if key in names else value
                for key, value in first.items()
            }
        elif isinstance(obj, torch.optim.Optimizer):
            params = [param for param_group in obj.param_groups for param in param_group["params"]]
            per_param = {}
            for index, param_state in first["state"].items():
                per_param[index] = {
                    key: torch.stack([state[name]["state"][index][key] for state in states])
                    if isinstance(value, torch.Tensor) and id(params[index]) in stacked and key != "step"
                    and value.shape == params[index].shape[1:] else value
                    for key, value in param_state.items()
                }  # fmt: skip
            result[name] = {**first, "state": per_param}
        else:
            result[name] = first
    return result


SEPARATE_FIELDS = ("seed", "seeds", "member_values", "run_dir", "resume")
"""Fields every member has its own of, whatever the script declares."""


def varying_fields(member_args: Sequence[Any], per_member_fields: Sequence[str]) -> dict[str, list[Any]]:
    """{field: [each member's value]} for the coefficients that differ between members; a difference in any other
    field (network sizes, learning rate, batch size: what shapes the networks or the optimizer) is refused in one
    line, naming the field."""
    values = [dataclasses.asdict(args) for args in member_args]
    differ = [name for name in values[0] if name not in SEPARATE_FIELDS and len({repr(v[name]) for v in values}) > 1]
    shared = [name for name in differ if name not in per_member_fields]
    if shared:
        allowed = ", ".join(f"--{name.replace('_', '-')}" for name in per_member_fields) or "none"
        raise SystemExit(
            f"error: the members of a group differ in {', '.join('--' + n.replace('_', '-') for n in shared)}, which "
            f"they must share (only these may differ, one value per member: {allowed}); run such settings as "
            "separate processes"
        )
    return {name: [v[name] for v in values] for name in differ}


def build_members(
    build: Callable[[Any, Any, torch.device], Any],
    member_args: Sequence[Any],
    per_member_fields: Sequence[str],
    data: Any,
    device: torch.device,
    seed: Callable[[int], None],
) -> tuple[Any, MemberGroup]:
    """The script's `build(args, data, device)` once per member, each after `seed(its seed)`, stacked into one agent
    whose update trains every member (the first member's update, on stacked parameters) and whose policy maps
    observations (K, N, S) to actions (K, N, A). `data` then samples a batch per member. Returns (agent, group)."""
    script = sys.modules.get(build.__module__)
    if script is not None and not any(getattr(value, "per_member", False) is True for value in vars(script).values()):
        raise SystemExit(
            f"error: {getattr(script, '__file__', build.__module__)} marks none of its loss functions @per_member: a "
            "group of members (--seeds with several seeds, --member-values) runs the losses once for all members "
            "through them. Add `from offrl.members import per_member` and `@per_member` above each loss function, "
            "or run each seed alone (--seed)"
        )
    varying = varying_fields(member_args, per_member_fields)
    agents = []
    for index, args in enumerate(member_args):
        seed(args.seed)
        agents.append(build(guard_args(args, list(varying)) if index == 0 else args, data, device))
    coefficients = {name: torch.tensor(values, dtype=torch.float32, device=device) for name, values in varying.items()}
    group = stack_members([agent.nets for agent in agents], coefficients)
    data.members = len(member_args)
    first = agents[0]

    def policy(obs: torch.Tensor) -> torch.Tensor:  # (K, N, S) -> (K, N, A), each member its own policy
        return group.call(lambda batch: first.policy(batch["observations"]), [MemberBatch(observations=obs)])

    return dataclasses.replace(first, policy=policy, explore=None), group
