"""Tests for `offrl.generate`: OGBench file format, loading with OGBench's own loader, determinism, CLI, errors.

Every set is tiny (a few episodes of 60-150 steps) so the file runs in well under two minutes on two cores.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import ogbench
import pytest

from offrl import generate
from offrl.generate import GenerationError, generate_dataset
from offrl.generate import build as generate_build
from offrl.generate import episodes as generate_episodes

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 100
TRAIN_EPISODES = 3

# dataset name -> (observation dim, has button_states)
FORMAT_CASES = {
    "cube-single-play-v0": (28, False),
    "scene-play-v0": (40, True),
    "puzzle-3x3-play-v0": (55, True),
    "pointmaze-medium-navigate-v0": (2, False),
    "cube-single-noisy-v0": (28, False),
}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="session")
def generated(data_dir) -> dict[str, pathlib.Path]:
    """Each format case generated once: 3 train + 1 val episodes of 100 steps, seed 0, in this process."""
    return {
        name: generate_dataset(name, data_dir, TRAIN_EPISODES, seed=0, max_episode_steps=STEPS, progress=False)
        for name in FORMAT_CASES
    }


def load_npz(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path) as file:
        return {key: file[key] for key in file.files}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("name", list(FORMAT_CASES))
def test_format_matches_ogbench_files(generated, data_dir, name):
    obs_dim, has_buttons = FORMAT_CASES[name]
    train_path = generated[name]
    val_path = train_path.with_name(f"{train_path.stem}-val.npz")
    assert train_path == data_dir / "generated" / f"{name}-{TRAIN_EPISODES}ep-seed0-{STEPS}steps.npz"
    assert train_path == generate.generated_path(data_dir, name, TRAIN_EPISODES, 0, STEPS) and val_path.exists()
    for path, episodes in ((train_path, TRAIN_EPISODES), (val_path, 1)):
        data = load_npz(path)
        expected = ["observations", "actions", "terminals", "qpos", "qvel"] + (["button_states"] if has_buttons else [])
        assert list(data) == [*expected, "offrl_provenance"]  # OGBench's keys, then where the file came from
        provenance = json.loads(str(data["offrl_provenance"]))
        assert provenance["generator"] == "offrl.generate" and provenance["dataset_name"] == name
        assert (provenance["num_episodes"], provenance["seed"], provenance["max_episode_steps"]) == (
            TRAIN_EPISODES,
            0,
            STEPS,
        )
        size = episodes * STEPS
        assert data["observations"].shape == (size, obs_dim) and data["observations"].dtype == np.float32
        assert data["actions"].shape[0] == size and data["actions"].dtype == np.float32
        assert np.abs(data["actions"]).max() <= 1.0
        assert data["terminals"].dtype == np.bool_
        np.testing.assert_array_equal(np.flatnonzero(data["terminals"]), np.arange(1, episodes + 1) * STEPS - 1)
        assert data["qpos"].dtype == np.float32 and data["qvel"].dtype == np.float32
        assert data["qpos"].shape[0] == data["qvel"].shape[0] == size
        if has_buttons:
            assert data["button_states"].dtype == np.int64 and data["button_states"].shape[0] == size
        for key in expected:
            assert np.isfinite(data[key]).all(), key


@pytest.mark.filterwarnings("ignore:.*precision lowered by casting")  # raised inside OGBench's env constructor
@pytest.mark.parametrize("name", list(FORMAT_CASES))
def test_loads_with_ogbench_single_task(generated, name):
    task_name = name.replace("-v0", "-singletask-task1-v0")  # e.g. cube-single-play-singletask-task1-v0
    env, train, val = ogbench.make_env_and_datasets(task_name, dataset_path=str(generated[name]))
    env.close()
    for dataset, episodes in ((train, TRAIN_EPISODES), (val, 1)):
        transitions = episodes * (STEPS - 1)  # OGBench drops the last state of every episode
        for key in ("observations", "next_observations", "actions", "terminals", "rewards", "masks"):
            assert len(dataset[key]) == transitions, key
        assert dataset["terminals"].sum() == episodes
        assert (dataset["rewards"] <= 0).all()
        assert set(np.unique(dataset["masks"])) <= {0.0, 1.0}


def test_pointmaze_data_moves_and_reaches_goals(generated):
    data = load_npz(generated["pointmaze-medium-navigate-v0"])
    np.testing.assert_array_equal(data["observations"], data["qpos"])  # point maze observes its position
    steps = np.linalg.norm(np.diff(data["qpos"][:STEPS], axis=0), axis=1)
    assert steps.mean() > 0.05  # the oracle moves the point; it does not sit still


def test_scene_records_button_states(generated):
    data = load_npz(generated["scene-play-v0"])
    assert data["button_states"].shape[1] == 2 and set(np.unique(data["button_states"])) <= {0, 1}


def test_same_seed_is_identical_and_worker_count_does_not_matter(generated, data_dir):
    name = "cube-single-noisy-v0"
    reference = load_npz(generated[name])
    for workers, stem in ((1, "again"), (2, "two-workers")):
        path = generate_dataset(
            name, data_dir, TRAIN_EPISODES, seed=0, workers=workers, max_episode_steps=STEPS,
            output_name=f"{name}-{stem}", progress=False,
        )  # fmt: skip
        assert path.name == f"{name}-{stem}.npz"
        assert_same_arrays(load_npz(path), reference)
        assert_same_arrays(
            load_npz(path.with_name(f"{name}-{stem}-val.npz")),
            load_npz(generated[name].with_name(f"{generated[name].stem}-val.npz")),
        )


# Every dataset type, at 500 steps for manipulation (a few task switches per episode) and the official length for
# point maze (fast).
WORKER_CASES = {
    "cube-single-play-v0": 500,
    "cube-single-noisy-v0": 500,
    "scene-play-v0": 500,
    "scene-noisy-v0": 500,
    "puzzle-3x3-play-v0": 500,
    "puzzle-3x3-noisy-v0": 500,
    "pointmaze-medium-navigate-v0": None,
    "pointmaze-medium-stitch-v0": None,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WORKER_CASES))
def test_files_do_not_depend_on_the_number_of_workers(tmp_path, name):
    """3 train + 1 val episodes made in 1, 2 and 3 processes: one process makes episode 3 after 0-2, three make
    episodes 0-2 each in a new process. Any state an episode leaves behind in the env shows up as a difference."""
    files = {}
    for workers in (1, 2, 3):
        path = generate_dataset(
            name, tmp_path, TRAIN_EPISODES, seed=0, workers=workers, max_episode_steps=WORKER_CASES[name],
            output_name=f"workers-{workers}", progress=False,
        )  # fmt: skip
        files[workers] = (load_npz(path), load_npz(path.with_name(f"workers-{workers}-val.npz")))
    for workers in (2, 3):
        for reference, other in zip(files[1], files[workers], strict=True):
            assert_same_arrays(other, reference)


def test_different_seed_gives_different_data(generated, data_dir):
    name = "pointmaze-medium-navigate-v0"
    path = generate_dataset(
        name, data_dir, TRAIN_EPISODES, seed=1, max_episode_steps=STEPS, output_name="seed-1", progress=False
    )
    assert not np.array_equal(load_npz(path)["observations"], load_npz(generated[name])["observations"])


def test_train_episodes_do_not_depend_on_the_requested_count(generated, data_dir):
    name = "pointmaze-medium-navigate-v0"
    path = generate_dataset(name, data_dir, 1, max_episode_steps=STEPS, output_name="one-episode", progress=False)
    one = load_npz(path)
    three = load_npz(generated[name])
    assert one["observations"].shape[0] == STEPS
    np.testing.assert_array_equal(one["observations"], three["observations"][:STEPS])


def test_progress_prints_summary_line(data_dir, capsys):
    path = generate_dataset(
        "pointmaze-large-stitch-v0", data_dir, 2, max_episode_steps=60, output_name="summary", progress=True
    )
    captured = capsys.readouterr()
    out = captured.out
    assert "180 steps (2 train + 1 val episodes)" in out and "steps/s" in out
    assert "\r" not in captured.err  # not a terminal (a sweep's log): status lines, no progress-bar redraws
    assert str(path) in out and str(path.with_name("summary-val.npz")) in out


def test_unhealthy_scene_episode_is_redone_with_a_new_seed(monkeypatch):
    runner = generate_episodes.EpisodeRunner(generate.OFFICIAL_SPECS["scene-play-v0"], seed=0, max_episode_steps=60)
    first_attempt, _ = runner._run_manipspace(0, attempt=0)
    verdicts = iter([False])  # the first attempt is judged unhealthy, every later one healthy
    monkeypatch.setattr(generate_episodes, "_scene_is_healthy", lambda qpos: next(verdicts, True))
    arrays, attempts = runner.run(0)
    assert attempts == 2
    assert not np.array_equal(arrays["observations"], first_attempt["observations"])
    np.testing.assert_array_equal(arrays["observations"], runner._run_manipspace(0, attempt=1)[0]["observations"])


def test_scene_health_check():
    qpos = np.zeros((5, 25), dtype=np.float32)
    assert generate_episodes._scene_is_healthy(qpos)
    right = qpos.copy()
    right[2, 15] = 0.3
    assert not generate_episodes._scene_is_healthy(right)
    left_on_table = qpos.copy()
    left_on_table[2, 15:17] = (-0.35, 0.02)
    assert not generate_episodes._scene_is_healthy(left_on_table)
    left_in_drawer = qpos.copy()
    left_in_drawer[2, 15:17] = (-0.35, 0.07)
    assert generate_episodes._scene_is_healthy(left_in_drawer)


def test_maze_cells_and_stitch_goals():
    maze = np.array(
        [
            [1, 1, 1, 1, 1, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 1, 1, 1, 0, 1],
            [1, 0, 0, 0, 0, 1],
            [1, 1, 1, 1, 1, 1],
        ]
    )
    free, vertices = generate_episodes._maze_cells(maze)
    assert len(free) == 9
    assert (1, 2) not in vertices and (1, 3) not in vertices  # straight corridor pieces
    assert (1, 1) in vertices and (1, 4) in vertices and (2, 4) not in vertices
    assert generate_episodes._cells_at_distance(maze, (1, 1), 4) == [(2, 4)]
    assert generate_episodes._cells_at_distance(maze, (1, 1), 20) == []


def test_public_helpers():
    assert generate.can_generate("cube-single-play-v0") and generate.can_generate("pointmaze-giant-stitch-v0")
    assert not generate.can_generate("antmaze-large-navigate-v0")
    assert not generate.can_generate("cube-single-play-singletask-task1-v0")
    assert generate.official_num_episodes("cube-quadruple-noisy-v0") == 5000
    assert generate.official_num_episodes("pointmaze-giant-navigate-v0") == 500
    assert generate.OFFICIAL_SPECS["pointmaze-giant-navigate-v0"].max_episode_steps == 2001
    assert generate.OFFICIAL_SPECS["puzzle-4x4-noisy-v0"].p_random_action == 0.2
    assert generate.OFFICIAL_SPECS["scene-noisy-v0"].p_random_action == 0.1
    assert generate.num_val_episodes(3) == 1 and generate.num_val_episodes(1000) == 100
    one_core = generate.estimate_seconds("cube-single-play-v0")
    assert 600 < one_core < 7200  # the official 1.1M-step set takes tens of minutes on one core
    assert generate.estimate_seconds("cube-single-play-v0", 10) < one_core
    with pytest.raises(GenerationError):
        generate.official_num_episodes("humanoidmaze-giant-navigate-v0")


BAD_INPUTS = [
    (dict(dataset_name="cube-sinlge-play-v0"), "unknown dataset 'cube-sinlge-play-v0'.*e.g. 'cube-single-play-v0'"),
    (
        dict(dataset_name="antmaze-large-navigate-v0"),
        r"download-only.*https://rail.eecs.berkeley.edu/datasets/ogbench/antmaze-large-navigate-v0.npz"
        r".*<dataset_dir>/antmaze-large-navigate-v0.npz.*-val.npz.*~/.ogbench/data",
    ),
    (dict(dataset_name="humanoidmaze-medium-stitch-v0"), "download-only"),
    (dict(dataset_name="antsoccer-arena-navigate-v0"), "download-only"),
    (dict(dataset_name="visual-cube-single-play-v0"), "download-only"),
    (dict(dataset_name="powderworld-easy-play-v0"), "download-only"),
    (dict(dataset_name="cube-single-play-singletask-task1-v0"), "Pass the dataset name 'cube-single-play-v0'"),
    (dict(dataset_name="scene-play-singletask-v0"), "Pass the dataset name 'scene-play-v0'"),
    (dict(num_episodes=0), "num_episodes must be at least 1, got 0"),
    (dict(num_episodes=-5), "num_episodes must be at least 1, got -5"),
    (dict(workers=0), "workers must be at least 1, got 0"),
    (dict(workers=-2), "workers must be at least 1, got -2"),
    (dict(max_episode_steps=0), "max_episode_steps must be at least 2.*got 0"),
    (dict(max_episode_steps=-1), "max_episode_steps must be at least 2.*got -1"),
    (dict(seed=-1), "seed must be at least 0, got -1"),
    (dict(output_name="a/b"), "plain file stem"),
]


@pytest.mark.parametrize("overrides, message", BAD_INPUTS)
def test_bad_input_raises_specific_error(tmp_path, overrides, message):
    kwargs = dict(dataset_name="pointmaze-medium-navigate-v0", dataset_dir=tmp_path, num_episodes=1)
    kwargs.update(overrides)
    with pytest.raises(GenerationError, match=message):
        generate_dataset(**kwargs, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unusable_dataset_dir_fails_before_generating(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(GenerationError, match="cannot create the dataset directory"):
        generate_dataset("cube-single-play-v0", blocker / "data", 1, progress=False)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, "-m", "offrl.generate", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


def test_cli_generates_files(tmp_path):
    result = run_cli(
        "pointmaze-teleport-navigate-v0", "--num-episodes", "2", "--max-episode-steps", "80",
        "--dataset-dir", str(tmp_path), "--seed", "3", "--workers", "2", "--output-name", "cli",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "240 steps" in result.stdout and "steps/s" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli-val.npz", "cli.npz"]
    assert load_npz(tmp_path / "cli.npz")["terminals"].sum() == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["cube-single-play-singletask-task1-v0"], "Pass the dataset name 'cube-single-play-v0'"),
        (["antsoccer-arena-stitch-v0"], "download-only"),
        (["no-such-dataset-v0"], "unknown dataset 'no-such-dataset-v0'"),
        (["cube-single-play-v0", "--num-episodes", "0"], "num_episodes must be at least 1"),
        (["cube-single-play-v0", "--workers", "0"], "workers must be at least 1"),
        (["cube-single-play-v0", "--max-episode-steps", "-3"], "max_episode_steps must be at least 2"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(tmp_path, args, message):
    result = run_cli(*args, "--dataset-dir", str(tmp_path))
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_partial_or_temporary_files(tmp_path, monkeypatch, failure):
    name = "pointmaze-medium-stitch-v0"
    (tmp_path / f"{name}.npz").write_bytes(b"previous file")
    real_savez = np.savez_compressed
    calls = []

    def fail_on_second_file(file, **arrays):
        calls.append(file)
        real_savez(file, **arrays)
        if len(calls) == 2:
            file.write(b"half")
            raise failure

    monkeypatch.setattr(generate_build.np, "savez_compressed", fail_on_second_file)
    with pytest.raises(type(failure)):
        generate_dataset(name, tmp_path, 2, max_episode_steps=50, output_name=name, progress=False)
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.npz"]
    assert (tmp_path / f"{name}.npz").read_bytes() == b"previous file"
