"""Datasets: OGBench (generated locally) against OGBench's own loader, Minari round trips, sampling, bad input."""

import pathlib

import gymnasium
import minari
import numpy as np
import ogbench
import pytest
import torch

from offrl import datasets, generate
from offrl.datasets import ACTION_CLIP, DatasetError, load_dataset, sample_batch
from offrl.datasets import minari as minari_data
from offrl.datasets import ogbench as ogbench_data
from offrl.datasets.dataset import source_description
from offrl.datasets.minari import minari_root
from tests.helpers import collect_minari

KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "terminals")
OFFICIAL = ("observations", "actions", "terminals", "qpos", "qvel", "button_states")  # the keys of OGBench's files


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: the official download always reports 'unreachable'."""
    monkeypatch.setattr(ogbench_data, "network_reachable", lambda url, timeout=5.0: False)
    monkeypatch.setattr(minari_data, "network_reachable", lambda url, timeout=5.0: False)


@pytest.fixture(scope="module")
def ogbench_dir(tmp_path_factory) -> pathlib.Path:
    """Tiny regenerated OGBench sets (2 train + 1 val episodes of 150 steps) for four domains."""
    directory = tmp_path_factory.mktemp("ogbench")
    for name in ("cube-single-play-v0", "scene-play-v0", "puzzle-3x3-play-v0", "pointmaze-medium-navigate-v0"):
        generate.generate_dataset(name, directory, num_episodes=2, max_episode_steps=150, output_name=name)
    return directory


@pytest.mark.parametrize(
    "name",
    [
        "cube-single-play-singletask-task1-v0",
        "cube-single-play-singletask-task3-v0",
        "scene-play-singletask-task2-v0",
        "puzzle-3x3-play-singletask-task1-v0",
        "pointmaze-medium-navigate-singletask-task1-v0",
    ],
)
def test_ogbench_matches_official_loader(ogbench_dir, name):
    dataset_name = name.split("-singletask")[0] + "-v0"
    path = ogbench_dir / f"{dataset_name}.npz"
    data = load_dataset(name, dataset_path=path)
    _, train, val = ogbench.make_env_and_datasets(name, dataset_path=str(path))
    assert data.family == "ogbench" and data.metadata["source"] == "generated"  # the file says where it came from
    assert data.metadata["provenance"]["generator"] == "offrl.generate" and data.metadata["provenance"]["seed"] == 0
    for split, reference in ((data.train, train), (data.val, val)):
        assert set(split) == set(KEYS)
        for key in KEYS:
            expected = reference[key].astype(np.float32)
            if key == "actions":
                expected = np.clip(expected, -ACTION_CLIP, ACTION_CLIP)
            np.testing.assert_array_equal(split[key].numpy(), expected, err_msg=key)
            assert split[key].dtype == torch.float32
    assert len(data) == len(train["observations"]) == 2 * 149  # OGBench drops each episode's last state
    assert data.train["actions"].abs().max() <= ACTION_CLIP
    assert data.metadata["observation_dim"] == data.observation_dim
    assert data.metadata["max_episode_steps"] > 0
    env = data.make_env()
    assert env.observation_space.shape == (data.observation_dim,)
    env.close()


def test_ogbench_tasks_relabel_differently(ogbench_dir):
    path = ogbench_dir / "cube-single-play-v0.npz"
    task1 = load_dataset("cube-single-play-singletask-task1-v0", dataset_path=path)
    task3 = load_dataset("cube-single-play-singletask-task3-v0", dataset_path=path)
    torch.testing.assert_close(task1.train["observations"], task3.train["observations"])
    assert set(task1.train["rewards"].unique().tolist()) <= {-1.0, 0.0}
    # masks are 1 - success, rewards success - 1: solved exactly where the mask is 0
    torch.testing.assert_close(task1.train["masks"], task1.train["rewards"] + 1.0 == 0.0, check_dtype=False)


def test_missing_ogbench_dataset_is_generated_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generate, "official_num_episodes", lambda name: 2)
    calls = []
    real = generate.generate_dataset

    def small(name, dataset_dir, **kwargs):  # the official procedure, with 60-step episodes to keep the test short
        calls.append(kwargs)
        target = generate.generated_path(dataset_dir, name, kwargs["num_episodes"])
        return real(name, target.parent, **{**kwargs, "max_episode_steps": 60, "output_name": target.stem})

    monkeypatch.setattr(generate, "generate_dataset", small)
    data = load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path, generate_workers=1)
    message = capsys.readouterr().err
    assert "generating 'cube-single-play-v0' locally" in message and "OGBench" in message
    assert data.metadata["source"] == "generated"
    generated = tmp_path / "generated" / "cube-single-play-v0-2ep-seed0.npz"
    assert pathlib.Path(data.metadata["path"]) == generated
    assert generated.is_file() and (tmp_path / "generated" / "cube-single-play-v0-2ep-seed0-val.npz").is_file()
    assert not (tmp_path / "cube-single-play-v0.npz").exists()  # never stored under the official name
    assert len(data) == 2 * 59
    # Second call finds the generated set and does not generate again.
    load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path)
    assert len(calls) == 1


def test_small_generated_set_on_request(tmp_path):
    data = load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path, generate_episodes=1)
    assert data.metadata["source"] == "generated"
    assert pathlib.Path(data.metadata["path"]).name == "cube-single-play-v0-1ep-seed0.npz"
    assert len(data) == 1000  # one official-length (1001-step) episode


def test_official_file_is_preferred(ogbench_dir, tmp_path):
    """A file under the official name is used as it is; it is announced as official unless it carries the provenance
    of a regenerated set (`offrl.generate --output-name cube-single-play-v0` was announced as official)."""
    for suffix in (".npz", "-val.npz"):
        with np.load(ogbench_dir / f"cube-single-play-v0{suffix}") as generated:  # as the download has it
            np.savez(tmp_path / f"cube-single-play-v0{suffix}", **{k: generated[k] for k in generated if k in OFFICIAL})
    data = load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path)
    assert data.metadata["source"] == "official" and data.metadata["provenance"] is None
    assert not (tmp_path / "generated").exists()
    regenerated = tmp_path / "regenerated"
    for suffix in (".npz", "-val.npz"):
        regenerated.mkdir(exist_ok=True)
        (regenerated / f"cube-single-play-v0{suffix}").write_bytes(
            (ogbench_dir / f"cube-single-play-v0{suffix}").read_bytes()
        )
    data = load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=regenerated)
    assert data.metadata["source"] == "generated" and data.metadata["provenance"]["num_episodes"] == 2
    assert source_description(data.metadata).startswith("generated by offrl.generate: 2 episodes, seed 0, OGBench ")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hafcheetah-medium-v2", "Unknown dataset name"),
        ("halfcheetah-medium-replay-v2", "no Minari port, nor does anything stand in for it: for halfcheetah"),
        ("cube-single-play-v0", "single-task"),
        ("cube-single-play-singletask-task9-v0", "no environment 'cube-single-singletask-task9-v0'"),
        ("mujoco/hopper", "not a valid Minari dataset id"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(name)
    if "Unknown" in message or "valid Minari" in message:
        assert "cube-single-play-singletask-task1-v0" in str(info.value)  # lists the accepted families
        assert "mujoco/hopper/medium-v0" in str(info.value)


def test_download_only_domain_explains_where_to_put_the_file(tmp_path):
    with pytest.raises(DatasetError, match="download-only") as info:
        load_dataset("antsoccer-arena-navigate-singletask-task1-v0", dataset_dir=tmp_path)
    text = str(info.value)
    assert "antsoccer-arena-navigate-v0.npz" in text and str(tmp_path) in text and "not reachable" in text
    assert list(tmp_path.iterdir()) == []


def test_corrupt_and_truncated_files(ogbench_dir, tmp_path):
    good = (ogbench_dir / "cube-single-play-v0.npz").read_bytes()
    (tmp_path / "cube-single-play-v0-val.npz").write_bytes((ogbench_dir / "cube-single-play-v0-val.npz").read_bytes())
    for content in (b"not a zip file at all", good[: len(good) // 2]):
        (tmp_path / "cube-single-play-v0.npz").write_bytes(content)
        with pytest.raises(DatasetError, match="corrupt, truncated"):
            load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path)
    np.savez(tmp_path / "cube-single-play-v0.npz", something_else=np.zeros(3))
    with pytest.raises(DatasetError, match="not an OGBench dataset"):
        load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path)
    with pytest.raises(DatasetError, match="missing"):
        load_dataset("cube-single-play-singletask-task1-v0", dataset_path=tmp_path / "nowhere.npz")


def test_bad_numbers():
    with pytest.raises(DatasetError, match="positive"):
        load_dataset("cube-single-play-singletask-task1-v0", generate_episodes=0)
    with pytest.raises(DatasetError, match="generate_workers must be at least 1"):
        load_dataset("cube-single-play-singletask-task1-v0", generate_episodes=2, generate_workers=0)
    with pytest.raises(ValueError, match="reward_mode"):
        load_dataset("cube-single-play-singletask-task1-v0", reward_mode="scaled")


# ----------------------------------------------------------------------------------------------------------------
# Minari


@pytest.fixture(scope="module")
def minari_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("minari")
    # Episodes end by termination (the pole falls) or truncation at 8 steps: both must be handled.
    collect_minari(root, "test/pendulum/random-v0", "InvertedPendulum-v5", 40, max_episode_steps=8)
    collect_minari(root, "mujoco/hopper/random-v0", "Hopper-v5", 8, max_episode_steps=40)
    collect_minari(root, "mujoco/walker2d/medium-v0", "Walker2d-v5", 3, max_episode_steps=10)
    return root


def test_minari_round_trip(minari_dir):
    with minari_root(minari_dir):
        source = minari.load_dataset("test/pendulum/random-v0")
    episodes = list(source.iterate_episodes())
    data = load_dataset("test/pendulum/random-v0", dataset_dir=minari_dir)
    assert data.family == "minari" and data.val is None
    assert len(data) == sum(len(e.actions) for e in episodes) == source.total_steps
    assert any(e.terminations[-1] for e in episodes) and any(e.truncations[-1] for e in episodes)
    start = 0
    for episode in episodes:
        n = len(episode.actions)
        obs = data.train["observations"][start : start + n].numpy()
        nxt = data.train["next_observations"][start : start + n].numpy()
        np.testing.assert_allclose(obs, episode.observations[:-1])
        np.testing.assert_allclose(nxt, episode.observations[1:])  # aligned across the episode boundary
        np.testing.assert_allclose(data.train["rewards"][start : start + n].numpy(), episode.rewards)
        # mask is 0 exactly on terminations; a truncation keeps bootstrapping
        np.testing.assert_array_equal(data.train["masks"][start : start + n].numpy(), 1.0 - episode.terminations)
        assert data.train["terminals"][start : start + n].tolist() == [0.0] * (n - 1) + [1.0]
        start += n
    assert data.metadata["reward_mode"] == "none"
    assert (data.metadata["ref_min_score"], data.metadata["ref_max_score"]) == (-10.0, 90.0)
    assert data.metadata["max_episode_steps"] == 8
    env = data.make_env()
    assert env.observation_space.shape == (data.observation_dim,)
    env.close()


def test_minari_reward_processing(minari_dir):
    with minari_root(minari_dir):
        source = minari.load_dataset("mujoco/hopper/random-v0")
    returns = [float(np.sum(e.rewards)) for e in source.iterate_episodes()]
    raw = np.concatenate([e.rewards for e in source.iterate_episodes()]).astype(np.float32)
    scaled = load_dataset("mujoco/hopper/random-v0", dataset_dir=minari_dir)  # auto: D4RL locomotion scaling
    assert scaled.metadata["reward_mode"] == "locomotion"
    expected = raw * np.float32(1000.0 / (max(returns) - min(returns)))
    np.testing.assert_allclose(scaled.train["rewards"].numpy(), expected, rtol=1e-6)
    plain = load_dataset("mujoco/hopper/random-v0", dataset_dir=minari_dir, reward_mode="none")
    np.testing.assert_allclose(plain.train["rewards"].numpy(), raw)
    shifted = load_dataset("mujoco/hopper/random-v0", dataset_dir=minari_dir, reward_mode="antmaze")
    np.testing.assert_allclose(shifted.train["rewards"].numpy(), raw - 1.0)


def test_minari_dict_observations_are_flattened_like_the_eval_env(tmp_path):
    import gymnasium_robotics

    gymnasium.register_envs(gymnasium_robotics)
    collect_minari(tmp_path, "test/pointmaze/random-v0", "PointMaze_UMaze-v3", 2, max_episode_steps=30)
    data = load_dataset("test/pointmaze/random-v0", dataset_dir=tmp_path)
    env = data.make_env()
    flat, _ = env.reset(seed=0)
    assert flat.shape == (data.observation_dim,) == (8,)  # achieved_goal 2 + desired_goal 2 + observation 4
    raw_env = gymnasium.make("PointMaze_UMaze-v3")
    raw, _ = raw_env.reset(seed=0)
    np.testing.assert_allclose(flat, gymnasium.spaces.flatten(raw_env.observation_space, raw))
    with minari_root(tmp_path):
        first = next(minari.load_dataset("test/pointmaze/random-v0").iterate_episodes()).observations
    expected = np.concatenate([first["achieved_goal"][0], first["desired_goal"][0], first["observation"][0]])
    np.testing.assert_allclose(data.train["observations"][0].numpy(), expected)


def test_missing_minari_dataset_without_network(tmp_path, monkeypatch):
    """No network: said at once, without the hub client's retries (25 s before); a download that fails: said too."""
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("no network")

    monkeypatch.setattr(minari, "load_dataset", offline)
    with pytest.raises(DatasetError, match="https://huggingface.co .* is not reachable") as info:
        load_dataset("mujoco/hopper/medium-v0", dataset_dir=tmp_path)
    assert "minari download mujoco/hopper/medium-v0" in str(info.value) and calls == []
    monkeypatch.setattr(minari_data, "network_reachable", lambda url, timeout=5.0: True)
    with pytest.raises(DatasetError, match="could not be downloaded") as info:
        load_dataset("mujoco/hopper/medium-v0", dataset_dir=tmp_path)
    assert "minari download mujoco/hopper/medium-v0" in str(info.value) and len(calls) == 1


# ----------------------------------------------------------------------------------------------------------------
# Sampling


@pytest.mark.slow
def test_sample_batch_shapes_dtypes_device_and_compile(minari_dir):
    data = load_dataset("test/pendulum/random-v0", dataset_dir=minari_dir, device="cpu")
    batch = sample_batch(data.train, 64)
    assert set(batch) == set(KEYS)
    for key, value in batch.items():
        assert value.shape[0] == 64 and value.dtype == torch.float32 and value.device.type == "cpu", key
    assert batch["observations"].shape == (64, data.observation_dim)
    assert batch["actions"].shape == (64, data.action_dim)
    # rows are real transitions: (obs, next_obs) pairs appear together in the dataset
    rows = {tuple(r) for r in torch.cat([data.train["observations"], data.train["next_observations"]], 1).tolist()}
    assert all(tuple(r) in rows for r in torch.cat([batch["observations"], batch["next_observations"]], 1).tolist())

    @torch.compile(fullgraph=True)
    def mean_reward(train):
        return sample_batch(train, 256)["rewards"].mean()

    assert torch.isfinite(mean_reward(data.train))


def test_a_dataset_that_does_not_fit_its_environment_is_refused_when_loaded(ogbench_dir, tmp_path):
    for suffix in ("", "-val"):  # an official file whose actions lost a column
        arrays = dict(np.load(ogbench_dir / f"cube-single-play-v0{suffix}.npz"))
        arrays["actions"] = arrays["actions"][:, :4]
        np.savez(tmp_path / f"cube-single-play-v0{suffix}.npz", **arrays)
    with pytest.raises(DatasetError, match="actions have 4 columns") as info:
        load_dataset("cube-single-play-singletask-task1-v0", dataset_dir=tmp_path, download=False)
    assert str(tmp_path / "cube-single-play-v0.npz") in str(info.value)


@pytest.mark.parametrize(
    ("d4rl_name", "minari_id"),
    [("hopper-medium-v2", "mujoco/hopper/medium-v0"), ("antmaze-large-play-v2", "D4RL/antmaze/large-play-v1"),
     ("antmaze-umaze-v0", "D4RL/antmaze/umaze-v1"), ("pen-human-v1", "D4RL/pen/human-v2"),
     ("kitchen-mixed-v0", "D4RL/kitchen/mixed-v2"), ("maze2d-large-dense-v1", "D4RL/pointmaze/large-dense-v2")],
)  # fmt: skip
def test_a_d4rl_name_maps_to_its_minari_id(d4rl_name, minari_id):
    assert datasets.d4rl_to_minari(d4rl_name) == minari_id


@pytest.mark.parametrize(
    ("d4rl_name", "closest"),
    [("pen-humans-v1", "D4RL/pen/human-v2"), ("antmaze-umaze-diversee-v2", "D4RL/antmaze/umaze-diverse-v1")],
)
def test_a_misspelt_d4rl_name_gets_the_closest_minari_id(d4rl_name, closest):
    with pytest.raises(DatasetError, match="has no Minari port; the closest Minari dataset is") as info:
        datasets.d4rl_to_minari(d4rl_name)
    assert f"'{closest}" in str(info.value)


@pytest.mark.parametrize(
    ("d4rl_name", "served"),
    [("walker2d-random-v2", "medium (mujoco/walker2d/medium-v0), expert (mujoco/walker2d/expert-v0) only"),
     ("hopper-medium-replay-v2", "medium (mujoco/hopper/medium-v0), expert (mujoco/hopper/expert-v0) only"),
     ("antmaze-huge-diverse-v2", "umaze (D4RL/antmaze/umaze-v1), umaze-diverse")],
)  # fmt: skip
def test_a_d4rl_dataset_minari_does_not_serve_is_said_plainly(d4rl_name, served):
    """walker2d-random-v2 was answered with the medium dataset as its 'closest': there is no port of it."""
    with pytest.raises(DatasetError, match="has no Minari port, nor does anything stand in for it") as info:
        datasets.d4rl_to_minari(d4rl_name)
    assert served in str(info.value) and "closest" not in str(info.value)


def test_names_that_are_not_d4rl_are_left_alone():
    for name in ("cube-single-play-singletask-task1-v0", "mujoco/hopper/medium-v0", "hoper-medium-v2"):
        assert datasets.d4rl_to_minari(name) is None
    with pytest.raises(DatasetError, match="Did you mean D4RL's 'hopper-medium'"):
        load_dataset("hoper-medium-v2")


def test_a_d4rl_name_loads_its_minari_dataset(minari_dir):
    """Real resolution against a Minari dataset built here: D4RL's name loads the same transitions as the Minari id."""
    by_d4rl_name = load_dataset("walker2d-medium-v2", dataset_dir=minari_dir)
    by_minari_id = load_dataset("mujoco/walker2d/medium-v0", dataset_dir=minari_dir)
    assert by_d4rl_name.name == "mujoco/walker2d/medium-v0"
    for key in KEYS:
        torch.testing.assert_close(by_d4rl_name.train[key], by_minari_id.train[key])
    with pytest.raises(DatasetError, match="has no Minari port, nor does anything stand in for it"):
        load_dataset("hopper-random-v2", dataset_dir=minari_dir)  # built here as mujoco/hopper/random-v0: no D4RL port
