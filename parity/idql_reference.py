"""The authors' IDQL learner trained and evaluated on an OGBench task, for `parity/learning.py --algo idql`.

    python parity/idql_reference.py --repo PATH/TO/IDQL --dataset-dir DIR --save-dir OUT --seed 0

The IDQL code (https://github.com/philippe-eecs/IDQL) trains on D4RL only; this driver gives its newest learner
(`jaxrl5/agents/ddpm_iql_simple`, imported from the checkout unchanged) the OGBench transitions as offrl loads them
(the one-update comparison showed offrl's OGBench loader equal to the FQL code's, to the last bit), updates it as its
own training script does (one `agent.update(batch)` a step: denoiser, then V, then Q), and evaluates it as the FQL
code evaluates on OGBench (one environment reset without a seed, the episode's final `info["success"]`), acting with
the learner's own `eval_actions` (N candidates from the EMA denoiser, the one the target critic values most).
Settings follow IDQL's offline launcher where OGBench does not fix them: dropout 0.1 in the denoiser, the actor's
learning rate decayed with a cosine over the whole run, expectile (`critic_hyperparam`) 0.9. It writes
`OUT/eval.csv` (columns `step`, `evaluation/success`), which `parity/learning.py` reads.

Needs gym next to jax, flax, optax, distrax (which brings TensorFlow Probability) and offrl.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import random
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def import_learner(repo: Path) -> ModuleType:
    """The IDQL code's `ddpm_iql_learner` module, imported from a checkout (`repo`) as it is."""
    sys.path.insert(0, str(repo.resolve()))
    import tensorflow_probability.substrates.jax  # noqa: F401, PLC0415  (jaxrl5 expects it imported)

    return importlib.import_module("jaxrl5.agents.ddpm_iql_simple.ddpm_iql_learner")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="checkout of the IDQL code")
    parser.add_argument("--env-name", default="cube-single-play-singletask-task1-v0")
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--save-dir", type=Path, required=True, help="eval.csv goes here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[256, 256], help="critic and value widths")
    parser.add_argument("--expectile", type=float, default=0.9)
    args = parser.parse_args(argv)
    if not (args.repo / "jaxrl5").is_dir():
        parser.error(f"--repo {args.repo}: no jaxrl5 folder; pass a checkout of philippe-eecs/IDQL")

    import gym  # noqa: PLC0415  (the IDQL code's spaces)
    import jax  # noqa: PLC0415

    from offrl.datasets import load_dataset  # noqa: PLC0415

    learner = import_learner(args.repo)
    random.seed(args.seed)
    np.random.seed(args.seed)
    data = load_dataset(args.env_name, dataset_dir=args.dataset_dir, download=False)
    train = {k: v.numpy() for k, v in data.train.items()}
    keys = ("observations", "actions", "rewards", "masks", "next_observations")
    agent = learner.DDPMIQLLearner.create(
        args.seed,
        gym.spaces.Box(-np.inf, np.inf, (data.observation_dim,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (data.action_dim,), np.float32),
        critic_hidden_dims=tuple(args.hidden_dims),
        critic_hyperparam=args.expectile,
        actor_dropout_rate=0.1,
        decay_steps=args.steps,
    )
    env = data.make_env()
    args.save_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    started = time.time()
    with open(args.save_dir / "eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "evaluation/success"])
        for step in tqdm.trange(1, args.steps + 1, desc="idql (reference)", smoothing=0.1, dynamic_ncols=True):
            rows = rng.integers(len(data), size=args.batch_size)
            agent, _ = agent.update({k: jax.numpy.asarray(train[k][rows]) for k in keys})
            if step % args.eval_every:
                continue
            successes = []
            for _ in range(args.eval_episodes):
                observation, _ = env.reset()
                done = False
                while not done:
                    action, agent = agent.eval_actions(np.asarray(observation, np.float32))
                    observation, _, terminated, truncated, info = env.step(np.clip(action, -1, 1))
                    done = terminated or truncated
                successes.append(float(info["success"]))
            writer.writerow([step, float(np.mean(successes))])
            f.flush()
            tqdm.tqdm.write(f"step {step}: success {np.mean(successes):.3f} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
