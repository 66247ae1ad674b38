"""`Run`: one training run of a script, from its command line to its exit code, around the script's visible loop.

    with Run(__file__, Args, PRESETS, argv) as run:        # flags > presets > defaults; run dir, dataset, logger
        agent = run.build(build)                          # build(args, data, device): networks, update(), policy()
        update = compiled(agent.update, run.args.compile, run.args.cudagraphs, run.device)
        run.start(agent)                                  # --resume: restores the checkpoint; else evaluates at 0
        for step in run.steps():                          # until the last step, or Ctrl-C/SIGTERM
            metrics = update()
            if run.log_due(step):
                run.log(step, metrics, agent.validation)  # reads metrics back, checks them for NaN
            if run.eval_due(step):
                run.evaluate(step, agent.policy)
            if run.save_due(step):
                run.save(step)
    return run.exit_code

`Run` holds the run directory (one run per directory, held by a lock), the dataset, the logger, timing with
compilation excluded, the stop request, the online phase's environment and the exit code; the pieces it uses live in
their own rooms (`offrl.args`, `offrl.checkpoint`, `offrl.records`, `offrl.stopping`, `offrl.video`). With --seeds
(several) or --member-values, the run is a group of members trained as one (`offrl.members`), each member an
ordinary run directory (`offrl.member_runs`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from offrl.args import BOOKKEEPING, Preset, algo_name, flag, member_args, parse_args, per_member_fields, shown
from offrl.checkpoint import CHECKPOINT_NAME, checkpoint_path, load_checkpoint, save_checkpoint, seed_everything
from offrl.compile import WARMUP_CALLS
from offrl.datasets import OfflineDataset, d4rl_note, load_data
from offrl.datasets.dataset import source_description
from offrl.devices import resolve_device
from offrl.evaluation import evaluate
from offrl.member_runs import MemberRuns
from offrl.members import MemberGroup, build_members
from offrl.networks import eval_mode
from offrl.online import OnlineEnv
from offrl.progress import ESTIMATE_AFTER_STEPS, TrainingClock, long_run_note, progress_display
from offrl.records import RunLogger, git_commit, software_versions, start_tracking
from offrl.rundir import default_run_dir, forget_fresh_run, take_run_dir
from offrl.stopping import (
    Interrupted,
    NonFiniteLossError,
    StopRequest,
    all_finite,
    check_finite,
    failure,
    stop_with_parent,
)
from offrl.video import settle_gl_backend

__all__ = ["Agent", "Run"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Agent:
    """What a script's `build()` returns.

    nets: the networks by name (put in eval mode while evaluating).
    update: one gradient step, eager (`offrl.compile.compiled` compiles it): () -> detached metrics {name: tensor}.
    policy: the acting policy at evaluation: observations (B, S) -> actions (B, A) in [-1, 1].
    state: everything a checkpoint holds (networks, optimizer, schedules): {name: object with a state_dict}.
    validation: the losses on a validation batch, () -> {"val/<loss>": scalar tensor}, called only when the dataset
        has a validation split; or None.
    explore: the acting policy of the online phase, observations (B, S) -> actions (B, A) (None: `policy`).
    """

    nets: dict[str, torch.nn.Module]
    update: Callable[[], dict[str, torch.Tensor]]
    policy: Callable[[torch.Tensor], torch.Tensor]
    state: dict[str, Any]
    validation: Callable[[], dict[str, torch.Tensor]] | None = None
    explore: Callable[[torch.Tensor], torch.Tensor] | None = None


class Run:
    """One training run of a script, from its command line to its exit code (see the module docstring).

    Args:
        script: the script's `__file__`; its name names the algorithm ('train_fql.py' -> 'fql').
        args_type: the script's `Args` dataclass (a `RunArgs` with the algorithm's fields after the common ones).
        presets: the script's `PRESETS`, applied for --env-name unless --no-presets or a flag says otherwise.
        argv: the command line without the program name (default: `sys.argv[1:]`).

    Attributes: args, device, data (after entering), run_dir, step, start_step, final_step (total_steps +
    online_steps), online_env (the `offrl.online.OnlineEnv` of the online phase, or None), exit_code (after leaving).
    """

    def __init__(
        self,
        script: str | os.PathLike,
        args_type: type,
        presets: Sequence[Preset] = (),
        argv: Sequence[str] | None = None,
    ) -> None:
        self.algo = algo_name(script)
        self.script = pathlib.Path(script).resolve()
        self.parsed = parse_args(args_type, presets, argv)
        self.per_member_fields = per_member_fields(args_type)
        self.member_args = member_args(self.parsed.args, self.per_member_fields)  # --seeds, --member-values
        self.args = args = self.parsed.args if len(self.member_args) > 1 else self.member_args[0]
        self.device = resolve_device(args.device)
        for warning in self.parsed.warnings:
            print(f"[{self.algo}] warning: {warning}", file=sys.stderr, flush=True)
        self.resuming = bool(args.resume)
        if self.resuming:
            self.run_dir = checkpoint_path(args.resume).parent
        else:
            self.run_dir = pathlib.Path(args.run_dir or default_run_dir(args.env_name, self.algo, args.seed))
        self.group: MemberGroup | None = None  # several members trained as one (offrl.members), or a single run
        self.member_runs = MemberRuns.plan(args, self.member_args, self.per_member_fields, self.algo)
        if self.member_runs is not None:  # the group's folder holds its members' run directories
            self.member_args = [member.args for member in self.member_runs]
            self.run_dir = self.member_runs.folder
        self.data = None
        self.logger: RunLogger | None = None
        self.agent: Agent | None = None
        self.stop = StopRequest()
        self.step = self.start_step = 0
        self.final_step = args.total_steps + args.online_steps
        self.online_env = None
        self._checkpointed: dict[str, Any] = {}  # what a checkpoint holds: the agent's state (+ the online phase's)
        self.exit_code = 0
        self.last_eval: dict[str, Any] | None = None
        self.video = bool(args.video)
        self.tracker = None  # the W&B run of --track
        self._score_postfix: dict[str, str] = {}
        self.saved_step: int | None = None
        self.clock = TrainingClock(self.device)  # updates/s with compilation, evaluation and logging left out
        self._lock = None
        self._bar = None
        self._last_checked = 0
        self._wall_start = time.perf_counter()

    # ------------------------------------------------------------------------------------------------------------
    # Entering: the run directory, the signals, the dataset, the first lines

    def build(self, build: Callable[[Any, OfflineDataset, torch.device], Agent]) -> Agent:
        """The script's `build(args, data, device)`; for a group (--seeds with several seeds, --member-values), once
        per member, stacked into one agent whose update trains them all (`offrl.members.build_members`)."""
        if self.member_runs is None:
            return build(self.args, self.data, self.device)
        agent, self.group = build_members(
            build, self.member_args, self.per_member_fields, self.data, self.device, seed_everything
        )
        return agent

    def __enter__(self) -> Run:
        stop_with_parent()
        if self.member_runs is not None:
            self.member_runs.take()
        else:
            self._lock = take_run_dir(self.run_dir, self.resuming)
        self.stop.__enter__()
        try:
            seed_everything(self.args.seed)
            if self.parsed.d4rl_name:
                print(f"[{self.algo}] {d4rl_note(self.parsed.d4rl_name, self.args.env_name)}", flush=True)
            with self.stop.at_once():
                self.video = settle_gl_backend(self.video, self.algo)
                self.data = load_data(self.args, self.device)
            if self.args.batch_size > len(self.data):
                print(
                    f"[{self.algo}] warning: --batch-size {self.args.batch_size:,} is larger than the dataset "
                    f"({len(self.data):,} transitions): every batch repeats transitions",
                    file=sys.stderr,
                    flush=True,
                )
            if self.args.online_steps:  # the dataset becomes the start of the replay buffer (before build())
                self.data.start_replay(self.args.online_steps, self.args.balanced_sampling)
        except Interrupted as interrupted:
            self._release()
            print(f"\n[{self.algo}] interrupted while loading the dataset; nothing was trained.", file=sys.stderr)
            raise SystemExit(128 + interrupted.signal) from None
        except BaseException:
            self._release()
            raise
        self._print_first_lines()
        return self

    def _release(self) -> None:
        self.stop.__exit__()
        if self.member_runs is not None:
            self.member_runs.release()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def _print_first_lines(self) -> None:
        name, parsed = self.algo, self.parsed
        if parsed.presets_applied:
            settings = ", ".join(f"{flag(k)} {shown(v['value'])}" for k, v in parsed.presets_applied.items())
            sources = "; ".join(dict.fromkeys(v["source"] for v in parsed.presets_applied.values()))
            print(f"[{name}] presets for {self.args.env_name}: {settings} (from {sources}; --no-presets: off)")
        for field, value in parsed.presets_overridden.items():
            print(f"[{name}] preset {flag(field)} {shown(value['preset'])} not applied: {shown(value['given'])} given")
        data = self.data
        source = source_description(data.metadata)
        where = self.member_runs.description() if self.member_runs is not None else f"run dir {self.run_dir}"
        print(f"[{name}] {data.name}: {len(data):,} transitions ({source}), {where}")
        if self.args.online_steps:
            sampling = "half dataset, half online" if self.args.balanced_sampling else "uniform over both"
            print(
                f"[{name}] {self.args.total_steps:,} offline steps, then {self.args.online_steps:,} online steps "
                f"(one environment step and one update each; batches {sampling})"
            )
        sys.stdout.flush()

    # ------------------------------------------------------------------------------------------------------------
    # The loop

    def start(self, agent: Agent) -> None:
        """Start the training of `agent` (what `build()` returned): with --resume, restore its checkpoint into
        `agent.state` (and, with --online-steps, the replay buffer and the episode in progress); a new run evaluates
        `agent.policy` at step 0. Also makes the online phase's environment and opens the logger (and W&B)."""
        self.agent, args = agent, self.args
        self._wall_start = time.perf_counter()  # wall times of the evaluations count from here (data loaded)
        fields: dict[str, Any] = {}
        self._checkpointed = dict(agent.state)
        if args.online_steps:
            self.online_env = OnlineEnv(
                self.data.make_env, self.data.replay, self.data.process_rewards, args.seed, self.device
            )
            self._checkpointed.update(replay_buffer=self.data.replay, online_env=self.online_env)
        if self.resuming and self.member_runs is not None:  # every member from its checkpoint of the group's step
            self.start_step = self.saved_step = self.member_runs.resume(self.group, self._checkpointed, self.device)
            self._print_resume()
        elif self.resuming:
            payload = load_checkpoint(
                args.resume, self._checkpointed, self.device, optional=("replay_buffer", "online_env")
            )
            self.start_step = self.saved_step = payload["step"]
            if self.online_env is not None:  # its online phase must go on where it stopped
                self.online_env.check_resume(payload, self.start_step, args.total_steps, self.run_dir)
            self._print_resume()
        else:
            fields = {
                "presets_applied": self.parsed.presets_applied,
                "presets_overridden": self.parsed.presets_overridden,
                "d4rl_name": self.parsed.d4rl_name,
            }
        self.step = self._last_checked = self.start_step
        made_by = {"versions": software_versions(), "git": git_commit(self.script)}  # what produced this result
        fields.update(
            script=str(self.script), success_timing=self.data.metadata.get("success_timing"), **made_by
        )  # fmt: skip
        if args.track:  # before the TensorBoard writer exists, so that W&B follows it
            self.tracker = start_tracking(self.run_dir, self.algo, args, {**fields, "dataset": self.data.metadata})
            fields["wandb_id"] = self.tracker.id
        if self.member_runs is not None:  # each member an ordinary run directory; the first one's logger times
            own_values = [
                spec.split("=")[0].strip().removeprefix("--").replace("-", "_") for spec in args.member_values or ()
            ]
            self.member_runs.open(self.algo, fields, own_values, self.start_step if self.resuming else None, args)
            self.logger = self.member_runs.members[0].logger
        else:
            self.logger = RunLogger(
                self.run_dir, self.algo, args.env_name, dataclasses.asdict(args),
                resume_step=self.start_step if self.resuming else None, **fields,
            )  # fmt: skip
        if args.online_steps:  # an offline run continued online: its earlier evaluations were offline ones
            for row in self.logger.results["evals"]:
                row.setdefault("phase", "online" if self.in_online_phase(row["step"]) else "offline")
                row.setdefault("env_steps", max(0, row["step"] - args.total_steps))
        segments = [s for s in self.logger.results.get("segments", []) if s["start_step"] < self.start_step]
        changed = self.parsed.resume_changes if self.resuming else {}
        segment = {"start_step": self.start_step, "changed": changed, **made_by}
        for member in self.member_runs or [self]:
            member.logger.write_results(status="running", segments=[*segments, segment])
        if self.start_step == 0:
            with self.stop.at_once():
                self.evaluate(0, agent.policy)
        else:
            self.last_eval = (self.logger.results["evals"] or [None])[-1]

    def steps(self) -> Iterator[int]:
        """Yield the steps to train after `start`: 1..total_steps + online_steps (after a resume: from the
        checkpoint's step + 1); the steps after total_steps are the online phase (`in_online_phase`, `act`).

        Between steps: the training clock (the first `WARMUP_CALLS` steps of this process, which compile or capture
        the update, and of the online phase, whose acting policy may compile, are timed apart), the progress bar, and
        a stop requested by Ctrl-C/SIGTERM (the loop ends; leaving the `with` saves the checkpoint).
        """
        if self.logger is None:
            raise RuntimeError("Run.steps() before Run.start(agent)")
        args, warmup = self.args, WARMUP_CALLS
        self._bar = progress_display(self.final_step, self.start_step, self._phase_name(self.start_step + 1))
        while self.step < self.final_step and not self.stop.requested:
            self.step += 1
            if self.step == args.total_steps + 1 and args.online_steps:
                self._bar.set_description(self._phase_name(self.step), refresh=False)
            # the first `warmup` steps of this process and of the online phase (whose acting policy may compile)
            warming = self.step - self.start_step <= warmup or 0 < self.step - args.total_steps <= warmup
            self.clock.start_step(warming, self.in_online_phase(self.step))
            yield self.step
            self.clock.end_step()
            if not warming and self.clock.timed == ESTIMATE_AFTER_STEPS:
                self._say_if_long()
            self._bar.update(1)

    def _phase_name(self, step: int) -> str:
        if not self.args.online_steps:
            return self.algo
        return f"{self.algo} {'online' if self.in_online_phase(step) else 'offline'}"

    def in_online_phase(self, step: int) -> bool:
        """Whether `step` is in the online phase (after the --total-steps offline steps): act before updating."""
        return step > self.args.total_steps

    def act(self, explore: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """The online step's interaction, before its update: `explore` (observations (1, S) -> actions (1, A), the
        networks in eval mode; None: the agent's evaluation policy) acts once in the environment; the transition
        joins the replay buffer, and an episode that ends is logged (TensorBoard `online/*`, results.json
        `online_episodes`)."""
        with eval_mode(self.agent.nets):
            finished = self.online_env.step(explore or self.agent.policy)
        if finished is not None:
            self.logger.online_episode(self.step, self.online_env.episode - 1, finished)

    def _say_if_long(self) -> None:
        """After the first timed steps: say once, above the progress bar, if the rest would take hours."""
        self.clock.catch_up()
        rate, args = self.clock.online_steps_per_second or self.clock.steps_per_second, self.args
        per_episode = self.logger.results.get("eval_seconds_per_episode") or 0.0
        left = self.final_step - self.step
        note = long_run_note(rate, left, args.eval_every, args.eval_episodes, per_episode, self.device.type)
        if note is not None:
            self._bar.write(f"[{self.algo}] note: {note}", file=sys.stderr)

    def _print_resume(self) -> None:
        print(f"[{self.algo}] resuming at step {self.start_step} in {self.run_dir}", flush=True)
        changed = {k: v for k, v in self.parsed.resume_changes.items() if k not in BOOKKEEPING}
        if changed:
            text = ", ".join(f"{flag(k)} {shown(old)} -> {shown(new)}" for k, (old, new) in changed.items())
            print(
                f"[{self.algo}] warning: resumed with other settings than the run had ({text}); the change is "
                "recorded in results.json under 'segments'.",
                file=sys.stderr,
                flush=True,
            )

    def log_due(self, step: int) -> bool:
        """A log step: every --log-every steps, and at every evaluation and checkpoint (metrics are checked first)."""
        return step % self.args.log_every == 0 or self.eval_due(step) or self.save_due(step)

    def eval_due(self, step: int) -> bool:
        """Every --eval-every steps, at the end of the offline phase and at the end."""
        return step % self.args.eval_every == 0 or step in (self.args.total_steps, self.final_step)

    def save_due(self, step: int) -> bool:
        """Every --save-every steps, at the end of the offline phase and at the end."""
        return step % self.args.save_every == 0 or step in (self.args.total_steps, self.final_step)

    def log(
        self,
        step: int,
        metrics: Mapping[str, torch.Tensor],
        validation: Callable[[], Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        """Read the update's metrics back (the only host sync), check them for NaN/inf, add the validation losses
        (when the dataset has a validation split) and the throughput, and log them to TensorBoard."""
        self.clock.pause()
        if self.member_runs is not None:
            return self._log_members(step, metrics, validation)
        values = {name: value.item() for name, value in metrics.items()}
        check_finite(values, step, self._last_checked)
        self._last_checked = step
        if validation is not None and self.data.val is not None:
            values.update({name: value.item() for name, value in validation().items()})
        rate, online_rate = self.clock.steps_per_second, self.clock.online_steps_per_second
        values["time/train_seconds"] = self.clock.train_seconds + self.clock.online_seconds
        if rate is not None:
            values["time/steps_per_second"] = rate
        if online_rate is not None:
            values["time/online_steps_per_second"] = online_rate
        if self.online_env is not None:
            values["online/env_steps"] = self.online_env.env_steps
        shown = online_rate if self.in_online_phase(step) else rate
        if shown is not None:
            self._bar.set_postfix({"sps": f"{shown:.0f}", **self._score_postfix}, refresh=False)
        self.logger.scalars(step, values)

    def _log_members(
        self, step: int, metrics: Mapping[str, torch.Tensor], validation: Callable[[], Mapping] | None
    ) -> None:
        """`log` for a group: each member's metrics (and validation losses) to its own run, with the group's
        throughput; a member whose metrics are not finite is stopped alone (`MemberRuns.log`)."""
        if validation is not None and self.data.val is not None:
            metrics = {**metrics, **validation()}
        rate = self.clock.steps_per_second
        shared = {"time/train_seconds": self.clock.train_seconds, **({"time/steps_per_second": rate} if rate else {})}
        for line in self.member_runs.log(step, metrics, shared, self._last_checked):
            self._bar.write(f"[{self.algo}] {line}", file=sys.stderr)  # a member stopped alone
        self._last_checked = step
        if not self.member_runs.training:
            raise NonFiniteLossError(f"every member's metrics became non-finite by step {step}.")
        if rate is not None:
            self._bar.set_postfix({"sps": f"{rate:.0f}", **self._score_postfix}, refresh=False)

    def _evaluate_members(self, step: int, policy: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
        """`evaluate` for a group (`MemberRuns.evaluate`): one line for all members."""
        write = self._bar.write if self._bar is not None else print
        with eval_mode(self.agent.nets):
            line, self._score_postfix = self.member_runs.evaluate(
                step, policy, self.data, self.args, self.device, self.video, time.perf_counter() - self._wall_start,
                lambda text: write(f"[{self.algo}] {text}", file=sys.stderr),
            )  # fmt: skip
        write(f"[{self.algo}] {line}")
        if not self.member_runs.training:
            raise NonFiniteLossError(f"every member's policy acted non-finite by step {step}.")
        self.last_eval = self.member_runs.members[0].last_eval or {}
        return self.last_eval

    def evaluate(self, step: int, policy: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any]:
        """Run --eval-episodes episodes of `policy` (the networks in eval mode) and record them (results.json,
        TensorBoard); returns the results.json row."""
        self.clock.pause()
        if self.member_runs is not None:
            return self._evaluate_members(step, policy)
        args, data = self.args, self.data
        start = time.perf_counter()
        nets = self.agent.nets if self.agent is not None else {}
        ref = data.metadata.get("ref_min_score"), data.metadata.get("ref_max_score")
        with eval_mode(nets):
            result = evaluate(
                policy,
                data.make_env,
                args.eval_episodes,
                num_envs=args.eval_envs,
                seed=args.seed,
                device=self.device,
                ref_scores=ref if ref[0] is not None else None,
                video_path=self.run_dir / "videos" / f"step_{step}.mp4" if self.video else None,
            )
        if self.tracker is not None and result["video"] is not None:
            import wandb

            self.tracker.log({"videos/evaluation": wandb.Video(result["video"]), "global_step": step})
        if self.video and result["video"] is None:  # a backend that failed once is not tried again in this process
            self.video = False
            print(f"[{self.algo}] --video off for the rest of this run (the warning above says why)", file=sys.stderr)
        seconds = time.perf_counter() - start
        phase: dict[str, Any] = {}
        if args.online_steps:
            online = self.in_online_phase(step)
            phase = {"phase": "online" if online else "offline", "env_steps": max(0, step - args.total_steps)}
        self.last_eval = self.logger.evaluation(
            step, result, wall_time=time.perf_counter() - self._wall_start, seconds=seconds, **phase
        )
        # the score the dataset family has: success, else normalized score, else return; a line per evaluation
        name = next(k for k in ("success", "normalized_score", "return") if self.last_eval[k] is not None)
        shown = {"normalized_score": "normalized"}.get(name, name)
        self._score_postfix = {shown: f"{self.last_eval[name]:.3f}"}
        where = f" (online, {phase['env_steps']:,} env steps)" if phase.get("phase") == "online" else ""
        line = f"[{self.algo}] step {step:,}{where}: {shown} {self.last_eval[name]:.3f} ({seconds:.0f} s)"
        if self._bar is not None:
            rate = self.clock.online_steps_per_second if self.in_online_phase(step) else self.clock.steps_per_second
            self._bar.set_postfix({"sps": f"{rate or 0:.0f}", **self._score_postfix})
            self._bar.write(line)
        else:
            print(line, flush=True)
        return self.last_eval

    def save(self, step: int) -> None:
        """Write the checkpoint (`agent.state`, in the online phase's runs also the replay buffer's online rows and
        the episode in progress; RNG states, step and args) atomically to <run_dir>/checkpoint.pt."""
        self.clock.pause()
        if self.member_runs is not None:  # each member's part, as a single run's checkpoint in its own directory
            self.member_runs.save(step, self.group, self._checkpointed or self.agent.state, self.args)
            self.saved_step = step
            return
        if not all_finite(self.agent.nets):  # metrics are read before the last update: check what is saved too
            raise NonFiniteLossError(f"the networks' parameters became non-finite by step {step}.")
        save_checkpoint(
            self.run_dir / CHECKPOINT_NAME, step, self._checkpointed or self.agent.state, run_dir=str(self.run_dir),
            args=dataclasses.asdict(self.args),
        )  # fmt: skip
        self.saved_step = step

    # ------------------------------------------------------------------------------------------------------------
    # Leaving: status, results.json, messages, exit code

    def __exit__(self, exc_type, exc, traceback) -> bool:
        name, messages, errors = self.algo, [], []
        handled, status = True, "failed"
        kept = (
            f"the checkpoint of step {self.saved_step} is kept" if self.saved_step is not None
            else "no checkpoint had been saved yet"
        )  # fmt: skip
        try:
            if exc_type is None and self.stop.requested and self.step < self.final_step:
                status, self.exit_code = "interrupted", 128 + self.stop.signal
                self.stop.saving = True  # from here on, further signals wait for the checkpoint
                if self.agent is not None and (self.member_runs is not None or all_finite(self.agent.nets)):
                    try:
                        self.save(self.step)
                        messages.append(
                            f"interrupted at step {self.step}; checkpoint saved. Continue with --resume {self.run_dir}"
                        )
                    except OSError as error:
                        errors.append(f"error: interrupted at step {self.step}, but saving failed: {error}; {kept}.")
                else:
                    messages.append(
                        f"interrupted at step {self.step}; parameters are not finite, so not saved ({kept})"
                    )
            elif exc_type is None:
                status, self.exit_code = "finished", 0
            else:  # a failure; None when not ours to handle (a refusal's SystemExit, a defect's traceback)
                ending = failure(exc, self.step, kept, self.device)
                handled, self.exit_code = ending is not None, 1
                if ending is not None:
                    status, self.exit_code, line = ending
                    (errors if line.startswith("error:") else messages).append(line)
        finally:
            if self._bar is not None:
                self._bar.close()
            self.clock.pause()
            if self.logger is not None:
                self._finish_results(status, errors)
                if status == "interrupted" and self.step == 0 and not self.resuming:
                    forget_fresh_run(self.run_dir)
            if self.online_env is not None:
                self.online_env.close()
            if self.tracker is not None:
                self.tracker.summary.update({"status": status})
                self.tracker.finish(exit_code=self.exit_code)  # after the TensorBoard writer closed: W&B has it all
            self._release()
        for message in messages:
            print(f"\n[{name}] {message}", flush=True)
        for error in errors:
            print(f"\n[{name}] {error}", file=sys.stderr, flush=True)
        for member in self.member_runs.training if self.member_runs is not None else [self]:
            if status == "finished" and member.last_eval is not None and not errors:
                evaluation = member.last_eval
                score = {
                    k: evaluation[k] for k in ("success", "return", "normalized_score") if evaluation[k] is not None
                }
                print(f"[{name}] final score at step {self.step}: {score}; run dir {member.run_dir}", flush=True)
        return handled

    def _finish_results(self, status: str, errors: list[str]) -> None:
        if self.member_runs is not None:
            fields = {"final_step": self.step, "train_steps_per_second": self.clock.steps_per_second,
                      "compile_seconds": self.clock.compile_seconds, "dataset": self.data.metadata,
                      "torch_threads": torch.get_num_threads(), "group_size": len(self.member_runs)}  # fmt: skip
            errors += self.member_runs.finish(status, fields)
            if any(member.failed for member in self.member_runs):  # stopped alone earlier (their lines said why)
                self.exit_code = self.exit_code or 1
            return
        before = self.logger.results  # a resumed run that timed no step of a phase keeps the earlier rate
        online = {}
        if self.online_env is not None:
            rate = self.clock.online_steps_per_second or before.get("online_steps_per_second")
            online = {"online_steps_per_second": rate, "env_steps": self.online_env.env_steps}
        try:
            self.logger.write_results(
                status=status,
                final_step=self.step,
                train_steps_per_second=self.clock.steps_per_second or before.get("train_steps_per_second"),
                **online,
                compile_seconds=self.clock.compile_seconds,
                dataset=self.data.metadata,
                torch_threads=torch.get_num_threads(),
            )
        except OSError as error:
            errors.append(f"error: could not write {self.logger.results_path}: {error.strerror or error}")
            self.exit_code = self.exit_code or 1
        finally:
            self.logger.close()
