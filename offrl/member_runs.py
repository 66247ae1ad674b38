"""The run directories of a group's members (`offrl.members`): each member is an ordinary run on disk.

`Run` trains a group as one process; `MemberRuns` keeps what each member has of its own: its run directory (locked
while the group runs) inside the group's folder, its TensorBoard events and results.json (`RunLogger`), its
evaluations, its checkpoint (its part of the group's state, loadable by a single run: `offrl.members.member_state`)
and its status. The folder's record (`GROUP_NAME`) holds the group's args, its members and the step of its last
checkpoint; checkpoints are saved in two phases (`NEXT_NAME`, the record, the renames), so `--resume FOLDER` always
finds every member at the record's step, however the process died. A member whose
metrics turn NaN or inf is stopped alone: marked `failed` with its last checkpoint kept, while the others train on
(its computation goes on inside the vectorized update, which no other member reads, and is no longer recorded).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import torch

from offrl.atomic import atomic_write
from offrl.checkpoint import CHECKPOINT_NAME, read_checkpoint, save_checkpoint, set_rng_state
from offrl.evaluation import evaluate_members
from offrl.members import MemberGroup, member_state, stacked_state
from offrl.records import RunLogger, jsonable, read_status
from offrl.rundir import GROUP_NAME, default_run_dir, forget_fresh_run, read_group, take_run_dir

__all__ = ["NEXT_NAME", "MemberRun", "MemberRuns", "member_dir"]

NEXT_NAME = "checkpoint-next.pt"
"""A member's checkpoint being saved, until the group's record names its step (`MemberRuns.save`)."""


@dataclasses.dataclass
class MemberRun:
    """One member: its args (seed, coefficients), run directory, lock, logger, last evaluation and checkpoint."""

    args: Any
    run_dir: pathlib.Path
    label: str  # e.g. "0 alpha=30": its seed, and the coefficients that differ
    lock: TextIO | None = None
    logger: RunLogger | None = None
    last_eval: dict[str, Any] | None = None
    saved_step: int | None = None
    failed: str | None = None  # why it stopped, while the others went on


def member_dir(
    folder: str | os.PathLike, env_name: str, algo: str, seed: int, values: Mapping[str, float]
) -> pathlib.Path:
    """A member's run directory in its group's folder, named as a single run of its seed and of the coefficients
    that differ between the group's members (`values`), without the time: `<env>__<algo>__<seed>[__alpha30]`."""
    label = "".join(f"__{name}{float(value):g}" for name, value in values.items())
    return pathlib.Path(folder) / default_run_dir(env_name, algo, seed, label=label).name.rsplit("__", 1)[0]


class MemberRuns:
    """The members of one group, in the order of the stacked parameters."""

    def __init__(self, folder: pathlib.Path, resuming: bool = False):
        self.folder, self.resuming = pathlib.Path(folder), resuming
        self.members: list[MemberRun] = []

    @classmethod
    def plan(
        cls, args: Any, member_args: Sequence[Any], per_member_fields: Sequence[str], algo: str
    ) -> MemberRuns | None:
        """A group's members, in the group's folder (--run-dir, or runs/<env>__<algo>__seeds<...>__<time>), each in a
        run directory named as a single run of its seed (and of the coefficients that differ, e.g. `__alpha30`).
        With --resume FOLDER, its members (those not failed). None for a single run. What a group cannot do yet is
        refused in one line."""
        if len(member_args) == 1 and not (args.resume and read_group(args.resume)):
            return None
        for given, why in ((args.online_steps, "--online-steps"), (args.track, "--track")):
            if given:
                raise SystemExit(
                    f"error: {why} is not available for a group of members (--seeds with several seeds, "
                    "--member-values) yet: run each seed as its own process"
                )
        seeds = "-".join(dict.fromkeys(str(member.seed) for member in member_args))
        folder = pathlib.Path(args.resume or args.run_dir or default_run_dir(args.env_name, algo, f"seeds{seeds}"))
        varying = [name for name in per_member_fields if len({getattr(m, name) for m in member_args}) > 1]
        group = cls(folder, resuming=bool(args.resume))
        for member in member_args:
            run_dir = member_dir(folder, args.env_name, algo, member.seed, {n: getattr(member, n) for n in varying})
            if args.resume and read_status(run_dir) == "failed":
                continue  # stopped alone earlier: it stays as it was
            shown = f"{member.seed}" + "".join(f" {name}={getattr(member, name):g}" for name in varying)
            group.members.append(MemberRun(member, run_dir, shown))
        return group

    def description(self) -> str:
        """For the run's first lines: how many members, and where each writes."""
        names = ", ".join(m.run_dir.name for m in self.members)
        return f"{len(self)} members trained as one, in {self.folder}: {names}"

    def __iter__(self):
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def training(self) -> list[MemberRun]:
        """The members still recorded (not failed)."""
        return [member for member in self.members if member.failed is None]

    def take(self) -> None:
        """Create and lock every member's run directory (`offrl.rundir.take_run_dir`); on a refusal, release those
        already taken."""
        try:
            for member in self.members:
                member.lock = take_run_dir(member.run_dir, resuming=self.resuming)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for member in self.members:
            if member.lock is not None:
                member.lock.close()
                member.lock = None

    def open(
        self,
        algo: str,
        fields: Mapping[str, Any],
        own_values: Sequence[str],
        resume_step: int | None = None,
        group_args: Any = None,
    ) -> None:
        """Each member's logger (TensorBoard events, results.json with its own args). A preset of a field the members
        set each their own way (`own_values`, from --member-values) is recorded as overridden, with their value."""
        presets = fields.get("presets_applied") or {}
        for member in self.members:
            overridden = {
                name: {"preset": preset["value"], "given": getattr(member.args, name)}
                for name, preset in presets.items() if name in own_values
            }  # fmt: skip
            own = dict(fields)
            if overridden:
                own["presets_applied"] = {k: v for k, v in presets.items() if k not in overridden}
                own["presets_overridden"] = {**(fields.get("presets_overridden") or {}), **overridden}
            args = dataclasses.asdict(member.args)
            member.logger = RunLogger(
                member.run_dir, algo, member.args.env_name, args, resume_step=resume_step, **own
            )  # fmt: skip
        if resume_step is None and group_args is not None:  # a new group: its record, no checkpoint yet
            self.record(group_args, None)

    def log(
        self, step: int, metrics: Mapping[str, torch.Tensor], shared: Mapping[str, float], last_step: int
    ) -> list[str]:
        """Log each member's metrics (its entry of each (K,) tensor; 0-dim ones are every member's) with the shared
        values (throughput); a member with a non-finite metric is stopped. Returns the lines saying so."""
        values = {name: value.detach().reshape(-1).cpu().tolist() for name, value in metrics.items()}
        lines = []
        for index, member in enumerate(self.members):
            if member.failed is not None:
                continue
            own = {name: value[index] if len(value) > 1 else value[0] for name, value in values.items()}
            broken = next((name for name, value in own.items() if not math.isfinite(value)), None)
            if broken is not None:
                member.failed = f"{broken} became {own[broken]} between steps {last_step} and {step}"
                lines.append(self.stop_member(member, step))
                continue
            member.logger.scalars(step, {**own, **shared})
        return lines

    def stop_member(self, member: MemberRun, step: int) -> str:
        """Record a failed member now (results.json `failed`), release its directory; the line that says so."""
        kept = (
            f"its checkpoint of step {member.saved_step} is kept" if member.saved_step is not None else "no checkpoint"
        )
        member.logger.write_results(status="failed", final_step=step, error=member.failed)
        member.logger.close()
        if member.lock is not None:
            member.lock.close()
            member.lock = None
        return f"error: {member.run_dir.name}: {member.failed}; it is stopped ({kept}), the others go on"

    def evaluate(
        self,
        step: int,
        policy: Callable[[torch.Tensor], torch.Tensor],
        data: Any,
        args: Any,
        device: torch.device,
        video: bool,
        wall_time: float,
        say: Callable[[str], None],
    ) -> tuple[str, dict[str, str]]:
        """Evaluate every member at once (`evaluate_members`: one vector env, each member with the episode seeds of a
        single run of its seed) and record each training member's results in its run. A member whose policy acts
        NaN or inf is stopped (`say` tells). Returns the line for all members and the progress bar's score."""
        ref = data.metadata.get("ref_min_score"), data.metadata.get("ref_max_score")
        videos = [m.run_dir / "videos" / f"step_{step}.mp4" if video else None for m in self.members]
        failed = torch.tensor([m.failed is not None for m in self.members], device=device)
        broken = torch.zeros_like(failed)  # members whose policy acted NaN or inf in this evaluation

        def acting(obs: torch.Tensor) -> torch.Tensor:  # a failed or broken member (not recorded) idles
            actions = policy(obs)
            broken.logical_or_(~actions.isfinite().flatten(1).all(1))
            return actions.masked_fill((failed | broken).view(-1, *[1] * (actions.dim() - 1)), 0.0)

        start = time.perf_counter()
        results = evaluate_members(
            acting, data.make_env, args.eval_episodes, args.eval_envs, [m.args.seed for m in self.members],
            device=device, ref_scores=ref if ref[0] is not None else None, video_paths=videos,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        for member, bad, result in zip(self.members, broken.tolist(), results, strict=True):
            if bad and member.failed is None:
                member.failed = f"its policy's actions became non-finite by step {step}"
                say(self.stop_member(member, step))
            if member.failed is None:
                member.last_eval = member.logger.evaluation(step, result, wall_time=wall_time, seconds=seconds)
        name = next(k for k in ("success", "normalized_score", "return") if results[0][k] is not None)
        shown = {"normalized_score": "normalized"}.get(name, name)
        scores = [m.last_eval[name] for m in self.training]
        each = " ".join(f"{m.last_eval[name]:.3f}" if m.failed is None else "failed" for m in self.members)
        names = ", ".join(m.label for m in self.members)
        mean = sum(scores) / max(len(scores), 1)
        return f"step {step:,}: {shown} {each} (seeds {names}; {seconds:.0f} s)", {shown: f"{mean:.3f}"}

    def record(self, group_args: Any, step: int | None) -> None:
        """The group's record in its folder (`GROUP_NAME`): its args, its members, its last saved step."""
        record = {"args": jsonable(dataclasses.asdict(group_args)), "step": step,
                  "members": [member.run_dir.name for member in self.members]}  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / GROUP_NAME, lambda file: file.write(json.dumps(record, indent=2)))

    def save(self, step: int, group: MemberGroup, objects: Mapping[str, Any], group_args: Any) -> None:
        """Each training member's part of the group's state, as a single run's checkpoint in its run directory, in
        two phases so that the members' checkpoints are always of one step, whenever the process is killed: every
        `NEXT_NAME` first, then the group's record names the step, then each replaces its `checkpoint.pt`."""
        for index, member in enumerate(self.members):
            if member.failed is None:
                save_checkpoint(
                    member.run_dir / NEXT_NAME, step, member_state(group, objects, index),
                    run_dir=str(member.run_dir), args=dataclasses.asdict(member.args),
                )  # fmt: skip
        self.record(group_args, step)
        for member in self.training:
            os.replace(member.run_dir / NEXT_NAME, member.run_dir / CHECKPOINT_NAME)
            member.saved_step = step

    def resume(self, group: MemberGroup, objects: Mapping[str, Any], device: torch.device) -> int:
        """Restore the group's state from its members' checkpoints of the step its record names (a checkpoint the
        record does not name, left by a process killed while saving, is finished or dropped), and the process's RNG
        states as they were at that step. Returns the step."""
        step = read_group(self.folder)["step"]
        if step is None:
            raise SystemExit(f"error: --resume {self.folder}: the group had saved no checkpoint yet; start it anew.")
        for member in self.members:
            pending = member.run_dir / NEXT_NAME
            if pending.is_file():
                if read_checkpoint(pending, "cpu")["step"] == step:  # killed between the record and the rename
                    os.replace(pending, member.run_dir / CHECKPOINT_NAME)
                else:  # killed before the record: that step never was the group's
                    pending.unlink()
        payloads = [read_checkpoint(member.run_dir / CHECKPOINT_NAME, device) for member in self.members]
        for member, payload in zip(self.members, payloads, strict=True):
            if payload["step"] != step:
                raise SystemExit(
                    f"error: --resume {self.folder}: {member.run_dir.name}'s checkpoint is of step {payload['step']}, "
                    f"the group's of step {step}; resume that member alone with --resume {member.run_dir}."
                )
            member.saved_step = step
        state = stacked_state(group, objects, [payload["state"] for payload in payloads])
        for name, obj in objects.items():
            settings = [{k: v for k, v in g.items() if k != "params"} for g in getattr(obj, "param_groups", [])]
            obj.load_state_dict(state[name])
            for param_group, own in zip(getattr(obj, "param_groups", []), settings, strict=True):
                param_group.update(own)  # this command line's settings (lr tensors), as `load_checkpoint` keeps
        set_rng_state(payloads[0]["rng"])
        return step

    def finish(self, status: str, fields: Mapping[str, Any]) -> list[str]:
        """Every member still training ends with `status`; results.json rewritten, loggers closed. Returns errors."""
        errors = []
        for member in self.training:
            try:
                member.logger.write_results(status=status, **fields)
            except OSError as error:
                errors.append(f"error: could not write {member.logger.results_path}: {error.strerror or error}")
            finally:
                member.logger.close()
            if status == "interrupted" and fields.get("final_step") == 0:  # stopped before training: nothing kept
                forget_fresh_run(member.run_dir)
        return errors
