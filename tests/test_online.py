"""Offline-to-online fine-tuning (--online-steps) in every script: both phases end to end, the online transitions in
the replay buffer, resume in the online phase equal to an uninterrupted run, and no recompilation as the buffer
grows."""

import json
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from offrl.args import import_script, parse_args
from offrl.datasets import load_data
from offrl.online import OnlineEnv, online_episode_seed
from tests import toy_task
from tests.helpers import REPO_ROOT, read_scalars, run_script, run_tiny_ogbench
from tests.test_scripts import ROW_KEYS, SCRIPTS, tiny

ONLINE_ROW_KEYS = ROW_KEYS | {"phase", "env_steps"}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_offline_then_online_on_ogbench(script, ogbench_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_tiny_ogbench(script, ogbench_dir, run_dir, "--online-steps", "15", "--no-compile", *tiny(script))
    assert "20 offline steps, then 15 online steps" in result.stdout
    assert "step 30 (online, 10 env steps): success" in result.stdout and "final score at step 35" in result.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["final_step"] == 35 and results["env_steps"] == 15
    rows = [(e["step"], e["phase"], e["env_steps"]) for e in results["evals"]]
    assert rows == [(0, "offline", 0), (10, "offline", 0), (20, "offline", 0), (30, "online", 10), (35, "online", 15)]
    assert all(set(row) == ONLINE_ROW_KEYS for row in results["evals"])
    assert results["online_steps_per_second"] > 0 and results["train_steps_per_second"] > 0
    scalars = read_scalars(run_dir)
    assert scalars["online/env_steps"] == {5: 0, 10: 0, 15: 0, 20: 0, 25: 5, 30: 10, 35: 15}
    assert sorted(scalars["time/online_steps_per_second"]) == [25, 30, 35]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 35 and checkpoint["state"]["replay_buffer"]["num_online"] == 15


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("toy")
    toy_task.make_toy_dataset(directory, num_episodes=100)
    return directory


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "dataset"),
    [("train_iql.py", "pendulum"), ("train_fql.py", "toy")],  # episodes that fall, episodes that run out of time
)
def test_online_transitions_in_order_with_masks_from_termination_only(script, dataset, minari_dir, toy_dir, tmp_path):
    """InvertedPendulum episodes end by falling (terminated); the toy task's mostly at its 20-step horizon
    (truncated): a mask is 0 only for the first, a terminal flag marks both, and each logged episode ends where its
    terminal flag is."""
    run_dir = tmp_path / "run"
    env_name, directory = (
        ("test/pendulum/random-v0", minari_dir) if dataset == "pendulum" else (toy_task.DATASET_ID, toy_dir)
    )
    run_script(
        script, "--env-name", env_name, "--dataset-dir", str(directory), "--total-steps", "10", "--online-steps",
        "80", "--balanced-sampling", "--eval-every", "50", "--log-every", "10", "--no-compile", "--run-dir",
        str(run_dir), *tiny(script),
    )  # fmt: skip
    results = json.loads((run_dir / "results.json").read_text())
    episodes = results["online_episodes"]
    assert len(episodes) >= 3 and [e["episode"] for e in episodes] == list(range(len(episodes)))
    ends = np.cumsum([e["length"] for e in episodes])
    assert [e["step"] for e in episodes] == [10 + int(end) for end in ends]  # logged at the step that ended it
    online = torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["replay_buffer"]
    assert online["num_online"] == 80
    terminals, masks, rewards = (online[key].numpy() for key in ("terminals", "masks", "rewards"))
    assert np.flatnonzero(terminals).tolist() == [int(end) - 1 for end in ends]
    if dataset == "pendulum":  # no success signal: it terminated iff it fell before the horizon
        terminated = np.array([e["length"] < toy_task.MAX_EPISODE_STEPS for e in episodes])
        assert terminated.any()
    else:
        terminated = np.array([e["success"] == 1.0 for e in episodes])
        assert not terminated.all()
    assert masks[ends - 1].tolist() == [0.0 if t else 1.0 for t in terminated]  # a truncation keeps bootstrapping
    assert masks.sum() == 80 - terminated.sum()  # no other row is masked
    inside = terminals[:-1] == 0  # within an episode, each transition starts where the previous one ended
    np.testing.assert_array_equal(online["observations"][1:][inside], online["next_observations"][:-1][inside])
    assert sum(e["return"] for e in episodes) == pytest.approx(float(rewards[: int(ends[-1])].sum()))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_resume_in_the_online_phase_matches_uninterrupted_run(script, ogbench_dir, tmp_path):
    """10 offline + 20 online steps in one go, or stopped after 5 online steps (in the middle of an episode) and
    resumed: the same metrics at every logged step and the same evaluations (CPU, eager)."""
    extra = ["--no-actor-cosine-decay"] if script == "train_idql.py" else []  # its schedule spans all the steps
    common = ["--dataset-dir", str(ogbench_dir), "--generate-episodes", "2", "--total-steps", "10", "--eval-every",
              "10", "--log-every", "5", "--save-every", "10", "--no-compile", *tiny(script), *extra]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    run_script(script, *common, "--online-steps", "20", "--run-dir", str(full))
    run_script(script, *common, "--online-steps", "5", "--run-dir", str(part))
    online_env = torch.load(part / "checkpoint.pt", weights_only=False)["state"]["online_env"]
    assert online_env["in_progress"] and online_env["episode_start"] == 0  # stopped inside the first episode
    resumed = run_script(script, *common, "--online-steps", "20", "--resume", str(part))
    assert "resuming at step 15" in resumed.stdout
    full_scalars, part_scalars = read_scalars(full), read_scalars(part)
    for tag in (tag for tag in SCRIPTS[script][0]):
        assert part_scalars[tag] == full_scalars[tag], tag  # every step 5..30, exactly
    strip = lambda evals: [{k: v for k, v in e.items() if k != "wall_time"} for e in evals if e["step"] != 15]  # noqa: E731
    full_evals = json.loads((full / "results.json").read_text())["evals"]
    part_evals = json.loads((part / "results.json").read_text())["evals"]
    assert strip(part_evals) == strip(full_evals) and [e["step"] for e in full_evals] == [0, 10, 20, 30]
    full_buffer = torch.load(full / "checkpoint.pt", weights_only=False)["state"]["replay_buffer"]
    part_buffer = torch.load(part / "checkpoint.pt", weights_only=False)["state"]["replay_buffer"]
    for key, value in full_buffer.items():
        assert torch.equal(torch.as_tensor(part_buffer[key]), torch.as_tensor(value)), key


@pytest.mark.slow
def test_a_changed_total_steps_in_the_online_phase_is_refused(minari_dir, tmp_path):
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--eval-every", "100", *tiny("train_iql.py")]  # fmt: skip
    run_script("train_iql.py", *common, "--total-steps", "10", "--online-steps", "5", "--run-dir", str(tmp_path))
    refused = run_script(
        "train_iql.py", *common, "--total-steps", "12", "--online-steps", "5", "--resume", str(tmp_path), check=False
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "has 5 online steps, which does not fit --total-steps 12 (the run had 10)" in refused.stderr
    fewer = run_script(
        "train_iql.py", *common, "--total-steps", "10", "--online-steps", "3", "--resume", str(tmp_path), check=False
    )
    assert fewer.returncode != 0 and "Traceback" not in fewer.stderr
    assert "5 online steps were taken; --online-steps 3 leaves room for 3" in fewer.stderr
    assert "Resume with --online-steps 5 or more" in fewer.stderr


@pytest.mark.slow
def test_an_offline_run_can_be_fine_tuned_by_resuming_it_with_online_steps(minari_dir, tmp_path):
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--total-steps", "10", "--eval-every", "100", *tiny("train_fql.py")]  # fmt: skip
    run_script("train_fql.py", *common, "--run-dir", str(tmp_path))
    resumed = run_script("train_fql.py", *common, "--online-steps", "6", "--resume", str(tmp_path))
    assert "final score at step 16" in resumed.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(e["step"], e.get("phase")) for e in results["evals"]] == [(0, "offline"), (10, "offline"), (16, "online")]


def test_online_steps_must_not_be_negative(minari_dir, tmp_path):
    result = run_script("train_iql.py", "--online-steps", "-1", check=False)
    assert result.returncode != 0 and "--online-steps must be at least 0, got -1" in result.stderr


def _agent_on_a_growing_buffer(script: str, minari_dir, balanced: bool, *extra: str):
    module = import_script(REPO_ROOT / script)
    argv = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--online-steps", "50",
            *(["--balanced-sampling"] if balanced else []), *tiny(script), *extra]  # fmt: skip
    args = parse_args(module.Args, module.PRESETS, argv).args
    data = load_data(args, torch.device("cpu"))
    data.start_replay(args.online_steps, args.balanced_sampling)
    return module.build(args, data, torch.device("cpu")), data


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_compiled_update_never_recompiles_as_the_online_rows_arrive(script, minari_dir):
    """Compiled with an empty online part (the offline phase), then one online row after another, balanced batches
    (the case that switches from offline-only to half/half)."""
    extra = ["--online-alpha1", "30"] if script == "train_fan.py" else []  # FAN's coefficients switch online too
    agent, data = _agent_on_a_growing_buffer(script, minari_dir, True, *extra)
    torch._dynamo.reset()
    update = torch.compile(agent.update, dynamic=False)
    update()
    update()
    online = {key: value[:1].clone() for key, value in data.train.items()}
    with torch.compiler.set_stance("fail_on_recompile"):
        for _ in range(3):
            data.replay.add(online)
            metrics = update()
    assert data.replay.num_online == 3 and all(torch.isfinite(v).all() for v in metrics.values())


def test_the_episode_in_progress_is_rebuilt_by_replaying_its_actions(minari_dir):
    data = load_data(
        parse_args(import_script(REPO_ROOT / "train_iql.py").Args, (), ["--env-name", "test/pendulum/random-v0",
                   "--dataset-dir", str(minari_dir)]).args, torch.device("cpu"),
    )  # fmt: skip
    replay = data.start_replay(100)
    small_actions = lambda obs: torch.full((obs.shape[0], data.action_dim), 0.01)  # noqa: E731  (keeps it upright)
    first = OnlineEnv(data.make_env, replay, data.process_rewards, seed=3, device=torch.device("cpu"))
    for _ in range(4):
        assert first.step(small_actions) is None
    state = first.state_dict()
    assert state == {"episode": 1, "episode_start": 0, "in_progress": True}
    rebuilt = OnlineEnv(data.make_env, replay, data.process_rewards, seed=3, device=torch.device("cpu"))
    rebuilt.load_state_dict(state)
    np.testing.assert_array_equal(rebuilt.observation, first.observation)
    assert (rebuilt.episode_length, rebuilt.episode_return) == (4, first.episode_return)
    assert online_episode_seed(3, 0) not in range(1_000_000_000, 3_000_000_000)  # never an evaluation seed
    # another simulator would not reproduce the stored observations: the episode is ended, with a warning
    replay.storage["next_observations"][replay.num_offline + 2] += 1.0
    broken = OnlineEnv(data.make_env, replay, data.process_rewards, seed=3, device=torch.device("cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broken.load_state_dict(state)
    assert any("did not reproduce its stored observations" in str(w.message) for w in caught)
    assert broken.observation is None and broken.episode == 1
    broken.step(small_actions)
    assert broken.episode == 2 and broken.episode_start == 4


def test_fan_switches_to_its_online_coefficients_at_the_first_online_update(minari_dir):
    """alpha1 read back from the actor loss: L_pi = L_flow + alpha1 * anchor - mean Q - mean Z."""
    torch.manual_seed(0)
    agent, data = _agent_on_a_growing_buffer("train_fan.py", minari_dir, False, "--alpha1", "100", "--online-alpha1",
                                             "30")  # fmt: skip

    def alpha1(metrics):
        rest = metrics["loss/actor"] - metrics["loss/flow"] + metrics["actor/policy_q"] + metrics["actor/policy_z"]
        return (rest / metrics["loss/anchor"]).item()

    assert alpha1(agent.update()) == pytest.approx(100.0, rel=1e-3)  # the offline phase
    data.replay.add({key: value[:1].clone() for key, value in data.train.items()})
    assert alpha1(agent.update()) == pytest.approx(30.0, rel=1e-3)  # from the first online transition on


@pytest.mark.slow
def test_sigterm_in_the_online_phase_then_resume_matches_uninterrupted_run(minari_dir, tmp_path):
    """SIGTERM lands at some step of the online phase, wherever the episode in progress is; the resumed run then
    logs the same metrics and evaluations as one that was never stopped (CPU, eager)."""
    script = "train_fql.py"
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
              "--total-steps", "10", "--online-steps", "1500", "--eval-every", "500", "--log-every", "50",
              "--save-every", "100000", *tiny(script)]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    run_script(script, *common, "--run-dir", str(full))
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / script), *common, "--run-dir", str(part)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["step"] == 10 for e in _evals(part)):  # the offline phase is over
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stdout
    stopped = torch.load(part / "checkpoint.pt", weights_only=False)
    assert 10 < stopped["step"] < 1510, stopped["step"]  # stopped in the online phase
    run_script(script, *common, "--resume", str(part))
    full_scalars, part_scalars = read_scalars(full), read_scalars(part)
    for tag in [*SCRIPTS[script][0], "online/return", "online/length", "online/env_steps"]:
        if not tag.startswith("val/"):  # the Minari set has no validation split
            assert part_scalars[tag] == full_scalars[tag], tag
    strip = lambda evals: [{k: v for k, v in e.items() if k != "wall_time"} for e in evals]  # noqa: E731
    assert strip(_evals(part)) == strip(_evals(full))
    full_results, part_results = (json.loads((d / "results.json").read_text()) for d in (full, part))
    assert part_results["online_episodes"] == full_results["online_episodes"]


def _evals(run_dir) -> list[dict]:
    try:
        return json.loads((run_dir / "results.json").read_text())["evals"]
    except (OSError, ValueError, KeyError):
        return []
