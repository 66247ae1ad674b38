"""The online phase of offline-to-online fine-tuning: one environment, stepped by the agent's exploration policy,
each transition appended to the replay buffer (`offrl.replay.ReplayBuffer`).

The protocol is the FQL repository's (https://github.com/seohongpark/fql, `main.py`): after the offline updates,
every online step takes one environment step and then one update. A transition's mask is `1 - terminated` (a
truncation keeps bootstrapping) and its terminal flag `terminated or truncated`; its reward is processed as the
dataset's rewards were (e.g. r - 1 on D4RL AntMaze, as FQL does online too); its action is the policy's, clipped to
the dataset's range (+-ACTION_CLIP), and the environment receives that same action.

Episode seeds. Online episode j of a run with seed s resets with `ONLINE_SEED_OFFSET + s * MAX_ONLINE_EPISODES + j`:
never an evaluation seed (`offrl.evaluation.episode_seeds`) or a training seed.

Resuming. The checkpoint holds the online rows of the buffer, the number of episodes started and the row where the
episode in progress began. `load_state_dict` resets the environment with that episode's seed and replays its stored
actions, which brings a deterministic simulator (MuJoCo, OGBench) back to the state it was in, so a resumed run goes
on as the uninterrupted one. If a replayed observation differs from the stored one (another simulator build), the
episode in progress is dropped (its transitions stay in the buffer) and the next one starts, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np
import torch

from offrl.datasets import ACTION_CLIP
from offrl.evaluation import flatten_observation_env
from offrl.replay import ReplayBuffer

__all__ = ["MAX_ONLINE_EPISODES", "ONLINE_SEED_OFFSET", "OnlineEnv", "online_episode_seed"]

ONLINE_SEED_OFFSET = 3_000_000_000
"""Added to every online episode seed: above the training seeds and the evaluation seeds (from 1e9)."""

MAX_ONLINE_EPISODES = 100_000_000
"""Online episodes per run seed: the seed blocks of consecutive run seeds do not overlap."""


def online_episode_seed(seed: int, episode: int) -> int:
    """The reset seed of online episode `episode` (0, 1, ...) of a run with seed `seed`."""
    if seed < 0 or not 0 <= episode < MAX_ONLINE_EPISODES:
        raise ValueError(f"online episode seeds need seed >= 0 and 0 <= episode < {MAX_ONLINE_EPISODES}")
    return ONLINE_SEED_OFFSET + seed * MAX_ONLINE_EPISODES + episode


class OnlineEnv:
    """The environment of the online phase and its episode in progress (module docstring).

    Args:
        make_env: the dataset's environment factory (`OfflineDataset.make_env`); observations are flattened.
        replay: the replay buffer the transitions go to.
        process_rewards: the dataset's reward processing, numpy (K,) -> (K,) (`OfflineDataset.process_rewards`).
        seed: the run's seed (episode seeds derive from it).
        device: where the policy's observations go.

    Attributes: episode (episodes started so far), env_steps (online transitions taken), episode_return and
    episode_length (of the episode in progress, raw environment rewards; the length is the buffer's rows since it
    began).
    """

    def __init__(
        self,
        make_env: Callable[[], gymnasium.Env],
        replay: ReplayBuffer,
        process_rewards: Callable[[np.ndarray], np.ndarray],
        seed: int,
        device: torch.device,
    ) -> None:
        self.env = flatten_observation_env(make_env())
        self.replay, self.process_rewards, self.seed, self.device = replay, process_rewards, seed, device
        self.episode = 0
        self.episode_start = 0  # the online row where the episode in progress began
        self.observation: np.ndarray | None = None  # None: no episode in progress
        self.episode_return = 0.0

    @property
    def env_steps(self) -> int:
        return self.replay.num_online

    @property
    def episode_length(self) -> int:
        return self.replay.num_online - self.episode_start

    def _reset(self) -> None:
        self.observation, _ = self.env.reset(seed=online_episode_seed(self.seed, self.episode))
        self.episode += 1
        self.episode_start = self.replay.num_online
        self.episode_return = 0.0

    def step(self, explore: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, Any] | None:
        """One environment step with `explore` (observations (1, S) -> actions (1, A)), its transition appended to
        the buffer. Returns the episode's {"return", "length", "success"} when this step ended it, else None."""
        if self.observation is None:
            self._reset()
        observation = torch.as_tensor(self.observation, dtype=torch.float32, device=self.device)[None]
        with torch.no_grad():
            action = explore(observation).clamp(-ACTION_CLIP, ACTION_CLIP)
        action_np = action[0].cpu().numpy()
        next_observation, reward, terminated, truncated, info = self.env.step(action_np)
        rows = {
            "observations": observation,
            "actions": action.reshape(1, -1),
            "rewards": torch.as_tensor(self.process_rewards(np.asarray([reward]))),
            "next_observations": torch.as_tensor(next_observation, dtype=torch.float32)[None],
            "masks": torch.tensor([0.0 if terminated else 1.0]),
            "terminals": torch.tensor([1.0 if terminated or truncated else 0.0]),
        }
        self.replay.add({key: value.to(self.device, torch.float32) for key, value in rows.items()})
        self.observation = next_observation
        self.episode_return += float(reward)
        if not (terminated or truncated):
            return None
        self.observation = None
        success = info.get("success")
        return {
            "return": self.episode_return,
            "length": self.episode_length,
            "success": None if success is None else float(success),
        }

    def state_dict(self) -> dict[str, Any]:
        """The episode count and the episode in progress (its transitions are the buffer's last rows)."""
        return {
            "episode": self.episode,
            "episode_start": self.episode_start,
            "in_progress": self.observation is not None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the episode count and rebuild the episode in progress by replaying its actions (load the replay
        buffer first)."""
        self.episode, self.episode_start = int(state["episode"]), int(state["episode_start"])
        self.observation, self.episode_return = None, 0.0
        if not state["in_progress"]:
            return
        rows = slice(self.replay.num_offline + self.episode_start, self.replay.num_offline + self.replay.num_online)
        actions = self.replay.storage["actions"][rows].cpu().numpy()
        stored = self.replay.storage["next_observations"][rows].cpu().numpy()
        observation, _ = self.env.reset(seed=online_episode_seed(self.seed, self.episode - 1))
        episode_return = 0.0
        for action, expected in zip(actions, stored, strict=True):
            observation, reward, terminated, truncated, _ = self.env.step(action)
            episode_return += float(reward)
            if terminated or truncated or not np.allclose(np.float32(observation), expected, rtol=1e-5, atol=1e-5):
                warnings.warn(
                    f"resuming: replaying the {len(actions)} steps of online episode {self.episode - 1} did not "
                    "reproduce its stored observations (another simulator version?); that episode is ended and the "
                    "next one starts",
                    stacklevel=2,
                )
                return
        self.observation, self.episode_return = observation, episode_return

    def check_resume(self, payload: Mapping[str, Any], step: int, total_steps: int, run_dir: Any) -> None:
        """Refuse a resume at `step` whose online phase would not continue where it stopped (a changed
        --total-steps), in one line."""
        taken = self.env_steps if "online_env" in payload["state"] else 0
        if taken != max(0, step - total_steps):
            saved = payload.get("args", {}).get("total_steps")
            raise SystemExit(
                f"error: --resume {run_dir}: the checkpoint of step {step} has {taken:,} online steps, which does not "
                f"fit --total-steps {total_steps:,} (the run had {saved}); resume with --total-steps {saved} and the "
                "--online-steps you want."
            )

    def close(self) -> None:
        self.env.close()
