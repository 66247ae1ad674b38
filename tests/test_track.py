"""--track: a real offline Weights & Biases run (WANDB_MODE=offline, no network), read back from the file W&B writes.

W&B keeps an offline run in <run_dir>/wandb/offline-run-*/run-<id>.wandb: a LevelDB-style log of protobuf records
(`wandb.proto.wandb_internal_pb2.Record`). `wandb_records` reads it, so the test checks what would be uploaded:
the run's id and project, its config, the TensorBoard scalars and the videos.
"""

import json
import pathlib

import pytest

from tests.helpers import REPO_ROOT, run_script
from tests.test_evaluation import headless_gl_backend

pytest.importorskip("wandb")

TINY = ["--hidden-dims", "16", "16", "--batch-size", "32", "--eval-episodes", "2", "--eval-envs", "2", "--no-compile"]
OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
OFFLINE_LOUD = {"WANDB_MODE": "offline"}


def wandb_records(path: pathlib.Path) -> list:
    """The records of a .wandb file: a 7-byte header (':W&B', magic, version), then 32 KiB blocks of chunks, each
    with a 7-byte header (checksum 4, length 2 little-endian, type 1: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, records, pending = 7, 32 * 1024, [], b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
            if kind == 4:
                records.append(pending)
    return [wandb_internal_pb2.Record.FromString(record) for record in records]


def offline_run(run_dir: pathlib.Path) -> tuple[dict, dict[str, list[tuple[float, str]]], list[str]]:
    """(run record fields and config, {history key: [(global_step, value)]}, media files) of all offline runs."""
    run, history, files = {}, {}, []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
                run = {"id": record.run.run_id, "project": record.run.project, "config": config}
            elif kind == "history":
                items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
                step = float(json.loads(items.get("global_step", "nan")))
                for key, value in items.items():
                    history.setdefault(key, []).append((step, value))
    files = sorted(p.name for p in run_dir.glob("wandb/offline-run-*/files/media/videos/**/*") if p.is_file())
    return run, history, files


@pytest.mark.slow
def test_track_logs_config_scalars_and_videos_offline_and_a_resume_continues_the_run(minari_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = [
        "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), *TINY, "--eval-every", "10",
        "--log-every", "5", "--save-every", "10", "--track", "--wandb-project", "offrl-tests", "--video",
    ]  # fmt: skip
    # not silenced: the run directory lies outside the working directory, which W&B warned about on every run
    first = run_script("train_iql.py", *common, "--total-steps", "20", "--run-dir", str(run_dir), env=OFFLINE_LOUD)
    assert "outside of given root_logdir" not in first.stdout + first.stderr
    results = json.loads((run_dir / "results.json").read_text())
    run, history, videos = offline_run(run_dir)
    assert run["id"] == results["wandb_id"] and run["project"] == "offrl-tests"
    config = run["config"]
    assert config["algo"] == "iql" and config["env_name"] == "test/pendulum/random-v0" and config["lr"] == 3e-4
    assert config["versions"]["torch"] == results["versions"]["torch"]  # what produced the run, tracked too
    assert sorted(step for step, _ in history["eval/return"]) == [0.0, 10.0, 20.0]
    logged = dict(history["eval/return"])
    for row in results["evals"]:
        assert float(logged[float(row["step"])]) == pytest.approx(row["return"])  # the same numbers as results.json
    assert sorted(step for step, _ in history["loss/critic"]) == [5.0, 10.0, 15.0, 20.0]
    if headless_gl_backend() is not None:
        assert len(videos) == 3 and all(name.endswith(".mp4") for name in videos)
        assert sorted(step for step, _ in history["videos/evaluation/path"]) == [0.0, 10.0, 20.0]

    run_script("train_iql.py", *common, "--total-steps", "30", "--resume", str(run_dir), env=OFFLINE)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 2  # one per process, the same W&B run
    resumed, history, _ = offline_run(run_dir)
    assert resumed["id"] == run["id"] and 30.0 in [step for step, _ in history["eval/return"]]


def test_track_without_wandb_or_a_login_is_one_line(minari_dir, tmp_path):
    fake = tmp_path / "site"
    (fake / "wandb").mkdir(parents=True)
    (fake / "wandb" / "__init__.py").write_text("raise ImportError('not installed')\n")
    common = ["--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), *TINY, "--total-steps", "2",
              "--track"]  # fmt: skip
    missing = run_script(
        "train_iql.py", *common, "--run-dir", str(tmp_path / "a"), check=False,
        env={"PYTHONPATH": f"{fake}:{REPO_ROOT}"},
    )  # fmt: skip
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "--track needs wandb: pip install 'offrl[track]'" in missing.stderr
    (tmp_path / "home").mkdir()
    no_login = run_script(
        "train_iql.py", *common, "--run-dir", str(tmp_path / "b"), check=False,
        env={"WANDB_MODE": "online", "WANDB_API_KEY": "", "HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert no_login.returncode == 1 and "Traceback" not in no_login.stderr
    assert "error: --track: W&B could not start" in no_login.stderr and "WANDB_MODE=offline" in no_login.stderr
