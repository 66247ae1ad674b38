"""Evaluate a saved run's checkpoint without training, and export its acting policy as one torch-only file.

    python -m offrl.tools.evaluate runs/cube-single-...__fql__0__20261201-120000          # 50 episodes, run's seed
    python -m offrl.tools.evaluate RUN_DIR --episodes 100 --eval-envs 16 --seed 1 --video  # other episodes, a video
    python -m offrl.tools.evaluate RUN_DIR --export policy.pt2 --no-eval                   # only the export

The run's script (`results.json` names it; `--script` overrides) rebuilds the agent with the run's settings; the
networks come from `<RUN_DIR>/checkpoint.pt`. The evaluation is the one a run makes (`offrl.evaluation.evaluate`:
same episode seeds for the same `--seed`, same metrics): with the run's seed and episode count it reproduces the
run's evaluation at the checkpoint's step. It is printed and written to
`<RUN_DIR>/evaluations/step_<step>-seed_<seed>-episodes_<n>.json`; a video goes to `<RUN_DIR>/videos/`.

`--export PATH` writes the acting policy (observations (B, S) -> actions (B, A) in [-1, 1], the policy a run
evaluates, sampler included) with `torch.export` to one file that needs only torch to load and act:

    import torch
    policy = torch.export.load("policy.pt2").module()
    actions = policy(torch.as_tensor(observations, dtype=torch.float32))      # any batch size

A stochastic policy (FQL, FAN, IDQL) draws its noise from torch's generator, in the same order as the live policy:
with the same `torch.manual_seed` the two give the same actions. The export is made on `--device` (default: the
one the run would pick); `--device cpu` makes a file that runs on any machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import signal
import sys
import time
from typing import Any

import torch

from offrl.args import import_script, saved_args
from offrl.atomic import atomic_write
from offrl.checkpoint import checkpoint_path, read_checkpoint
from offrl.datasets import load_data
from offrl.devices import resolve_device
from offrl.evaluation import evaluate
from offrl.video import settle_gl_backend

__all__ = ["ActingPolicy", "export_policy", "find_script", "load_agent", "main"]

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


def find_script(run_dir: pathlib.Path, algo: str, results: dict[str, Any], script: str | None = None) -> pathlib.Path:
    """The `train_<algo>.py` that made the run: `script` if given, else the path results.json records, else
    `train_<algo>.py` in the current directory or beside the `offrl` package. One-line `SystemExit` if none is."""
    if script is not None:
        path = pathlib.Path(script)
        if not path.is_file():
            raise SystemExit(f"error: --script {script}: no such file.")
        return path
    candidates = [pathlib.Path(p) for p in [results.get("script")] if p]
    candidates += [pathlib.Path.cwd() / f"train_{algo}.py", PROJECT_ROOT / f"train_{algo}.py"]
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(
        f"error: {run_dir} was trained by train_{algo}.py, which is not at {candidates[0]} nor here; pass --script "
        "PATH to the script (a copy of it with the same Args and build() works)."
    )


def load_agent(run_dir: str | pathlib.Path, script: str | None = None, **overrides: Any):
    """Rebuild a run's agent from its checkpoint: (agent, args, data, step, algo).

    `overrides` replace the run's saved settings (e.g. device="cpu", dataset_dir=..., compile=False). The networks
    (`agent.nets`) get the checkpoint's weights and are put in eval mode; optimizer state and RNG states are not
    touched. Errors (no run, no checkpoint, another script) are one-line `SystemExit`s.
    """
    run_dir = pathlib.Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".pt":  # RUN_DIR/checkpoint.pt, as --resume takes it
        run_dir = run_dir.parent
    if not run_dir.is_dir():
        raise SystemExit(f"error: {run_dir}: no such run directory (or checkpoint file in one).")
    checkpoint = checkpoint_path(str(run_dir))
    if not checkpoint.is_file():
        raise SystemExit(
            f"error: {run_dir} has no checkpoint.pt (a run saves one every --save-every steps and at its end); "
            "nothing to evaluate yet."
        )
    results: dict[str, Any] = {}
    if (run_dir / "results.json").is_file():
        try:
            results = json.loads((run_dir / "results.json").read_text())
        except (OSError, json.JSONDecodeError):
            results = {}
    payload = read_checkpoint(checkpoint, what="checkpoint")
    algo = results.get("algo") or payload.get("algo")
    if algo is None:
        raise SystemExit(f"error: {run_dir}/results.json is missing or unreadable, so the algorithm is unknown.")
    module = import_script(find_script(run_dir, algo, results, script))
    args = dataclasses.replace(saved_args(module.Args, payload.get("args", {})), **overrides)
    device = resolve_device(args.device)
    data = load_data(args, device)
    agent = module.build(args, data, device)
    for name, net in agent.nets.items():
        try:
            net.load_state_dict(payload["state"][name])
        except (RuntimeError, KeyError) as error:
            detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise SystemExit(
                f"error: {checkpoint}: its '{name}' does not fit {module.__name__.removeprefix('offrl_script_')}.py's "
                f"network ({detail}); is --script the script that trained the run?"
            ) from None
        net.eval()
    return agent, args, data, payload["step"], algo


class ActingPolicy(torch.nn.Module):
    """A run's `agent.policy` as a module (what `torch.export` takes): its networks are submodules, so they are
    exported as the module's parameters. forward: observations (B, S) -> actions (B, A)."""

    def __init__(self, nets: dict[str, torch.nn.Module], policy) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleDict(nets)
        self._policy = policy

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self._policy(observations)


def export_policy(agent, observation_dim: int, path: str | pathlib.Path, device: torch.device) -> pathlib.Path:
    """Write `agent.policy` (built with compile off) to `path` with `torch.export`, the batch size left free.

    The file loads with `torch.export.load(path).module()` and needs only torch. Returns the path written.
    """
    path = pathlib.Path(path)
    module = ActingPolicy(agent.nets, agent.policy).eval()
    example = torch.zeros(4, observation_dim, device=device)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes={"observations": {0: batch}})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: torch.export.save(program, file), mode="wb")
    return path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m offrl.tools.evaluate",
        description="Evaluate a run's checkpoint without training (the metrics a run writes, in "
        "RUN_DIR/evaluations/), and/or export its acting policy to one file that loads with only torch.",
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a run directory holding checkpoint.pt and results.json (or its checkpoint.pt)",
    )
    parser.add_argument(
        "--episodes", type=int, default=None, help="episodes to run (default: the run's --eval-episodes)"
    )
    parser.add_argument("--eval-envs", type=int, default=None, help="environments side by side (default: the run's)")
    parser.add_argument(
        "--seed", type=int, default=None, help="evaluation seed (default: the run's, which gives the run's episodes)"
    )
    parser.add_argument("--video", action="store_true", help="record the first episode to RUN_DIR/videos/")
    parser.add_argument("--device", default=None, help="torch device (default: auto, cuda when available)")
    parser.add_argument("--dataset-dir", default=None, help="where the run's dataset lives (default: the run's)")
    parser.add_argument(
        "--script", default=None, help="the train_<algo>.py to rebuild the agent with (default: the run's)"
    )
    parser.add_argument(
        "--export", metavar="PATH", default=None, help="write the acting policy to PATH (torch.export, e.g. policy.pt2)"
    )
    parser.add_argument("--no-eval", action="store_true", help="only export; run no episodes")
    args = parser.parse_args(argv)
    for name in ("episodes", "eval_envs"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.no_eval and args.export is None:
        parser.error("--no-eval without --export does nothing")
    return args


def main(argv: list[str] | None = None) -> int:
    """Ctrl-C or SIGTERM stops it at once with one line (exit 130 or 143); what was written before stays (the
    evaluation's file is written atomically at its end, the export likewise)."""
    options = _parse(argv)
    previous = {signum: signal.signal(signum, _stop_at_once) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _evaluate_and_export(options)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_at_once(signum: int, frame: Any) -> None:
    # Exit from the handler: an exception raised here could land inside the simulator or a library that swallows it
    # (the evaluation would then go on), and there is nothing to save.
    os.write(2, f"\n[evaluate] interrupted ({signal.Signals(signum).name}); nothing more was written\n".encode())
    os._exit(128 + signum)


def _evaluate_and_export(options: argparse.Namespace) -> int:
    run_dir = pathlib.Path(options.run_dir)
    if run_dir.is_file() and run_dir.suffix == ".pt":
        run_dir = run_dir.parent
    overrides: dict[str, Any] = {"device": options.device or "auto"}
    if options.dataset_dir is not None:
        overrides["dataset_dir"] = options.dataset_dir
    if options.export is not None:
        overrides.update(compile=False, cudagraphs=False)  # torch.export traces the eager policy
    video = settle_gl_backend(options.video, "evaluate") if not options.no_eval else False
    agent, args, data, step, algo = load_agent(run_dir, options.script, **overrides)
    device = resolve_device(args.device)
    if options.export is not None:
        start = time.perf_counter()
        try:
            path = export_policy(agent, data.observation_dim, options.export, device)
        except OSError as error:
            raise SystemExit(f"error: could not write {options.export}: {error.strerror or error}") from None
        print(
            f"[{algo}] exported the policy of step {step:,} to {path} ({time.perf_counter() - start:.1f} s); load it "
            f"with torch.export.load({str(path)!r}).module()"
        )
    if options.no_eval:
        return 0
    episodes = options.episodes or args.eval_episodes
    seed = args.seed if options.seed is None else options.seed
    ref = data.metadata.get("ref_min_score"), data.metadata.get("ref_max_score")
    video_path = run_dir / "videos" / f"evaluate_step_{step}-seed_{seed}.mp4" if video else None
    start = time.perf_counter()
    result = evaluate(
        agent.policy,
        data.make_env,
        episodes,
        num_envs=options.eval_envs or args.eval_envs,
        seed=seed,
        device=device,
        ref_scores=ref if ref[0] is not None else None,
        video_path=video_path,
    )
    seconds = time.perf_counter() - start
    row = {
        "step": step,
        **{k: result[k] for k in ("success", "return", "normalized_score", "episode_length")},
        "num_episodes": episodes,
        "seed": seed,
        "env_name": args.env_name,
        "seconds": seconds,
        "env_steps_per_second": result["env_steps_per_second"],
        "video": result["video"],
    }
    out = run_dir / "evaluations" / f"step_{step}-seed_{seed}-episodes_{episodes}.json"
    try:
        out.parent.mkdir(exist_ok=True)
        atomic_write(out, lambda file: file.write(json.dumps(row, indent=2)))
    except OSError as error:
        raise SystemExit(f"error: could not write {out}: {error.strerror or error}") from None
    shown = ", ".join(
        f"{k} {row[k]:.3f}" for k in ("success", "normalized_score", "return", "episode_length") if row[k] is not None
    )
    print(f"[{algo}] step {step:,}, {episodes} episodes, seed {seed}: {shown} ({seconds:.0f} s); written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
