"""--video as a user runs it on a headless machine: the run picks a GL backend that renders, or trains without video.

Each test runs a real training script (IQL, 20 steps, three evaluations) on the Minari pendulum set.
"""

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, run_script
from tests.test_evaluation import headless_gl_backend

TINY = ["--hidden-dims", "32", "32", "--batch-size", "64", "--eval-episodes", "2", "--eval-envs", "2"]


def video_run(minari_dir, run_dir, **gl_env):
    """20 steps of IQL on the Minari pendulum set with --video and three evaluations, GL variables as given (None
    removes one); the real headless path: MuJoCo and OGBench imported by the script, the backend by the run."""
    env = {key: value for key, value in os.environ.items() if key not in gl_env}
    env.update({key: value for key, value in gl_env.items() if value is not None})
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train_iql.py"), "--env-name", "test/pendulum/random-v0", "--dataset-dir",
         str(minari_dir), "--no-compile", "--total-steps", "20", "--eval-every", "10", "--log-every", "5",
         "--run-dir", str(run_dir), "--video", *TINY],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def check_trained_with_or_without_video(result, run_dir, rendered: bool):
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and [e["step"] for e in results["evals"]] == [0, 10, 20]
    videos = sorted(path.stem for path in (run_dir / "videos").glob("step_*")) if (run_dir / "videos").is_dir() else []
    if rendered:
        assert videos == ["step_0", "step_10", "step_20"] and "--video off" not in result.stderr
    else:
        assert videos == [] and result.stderr.count("--video off") == 1


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="headless Linux")
def test_video_with_no_backend_set_on_a_headless_machine_never_kills_the_run(minari_dir, tmp_path):
    """MUJOCO_GL unset and no display: the run picks egl or osmesa if one renders, else trains without video."""
    result = video_run(minari_dir, tmp_path / "run", MUJOCO_GL=None, DISPLAY=None, WAYLAND_DISPLAY=None)
    check_trained_with_or_without_video(result, tmp_path / "run", rendered=headless_gl_backend() is not None)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="headless Linux")
def test_video_with_a_backend_that_cannot_work_trains_without_video(minari_dir, tmp_path):
    result = video_run(minari_dir, tmp_path / "glfw", MUJOCO_GL="glfw", DISPLAY=None, WAYLAND_DISPLAY=None)
    check_trained_with_or_without_video(result, tmp_path / "glfw", rendered=False)
    assert "MUJOCO_GL=glfw: no display" in result.stderr and "unset MUJOCO_GL" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="libOSMesa is installed here")
def test_osmesa_without_libosmesa_is_one_line_with_or_without_video(minari_dir, tmp_path):
    result = video_run(minari_dir, tmp_path / "video", MUJOCO_GL="osmesa")
    check_trained_with_or_without_video(result, tmp_path / "video", rendered=False)
    assert "MUJOCO_GL=osmesa: libOSMesa not found" in result.stderr
    result = run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
        "--total-steps", "10", "--eval-every", "10", "--run-dir", str(tmp_path / "plain"), *TINY,
        env={"MUJOCO_GL": "osmesa"},
    )  # fmt: skip
    assert "MUJOCO_GL=osmesa ignored (libOSMesa not found)" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="headless Linux")
def test_evaluating_a_checkpoint_records_a_video(minari_dir, tmp_path):
    """`python -m offrl.tools.evaluate RUN_DIR --video`: the run's episode 0 at the checkpoint, next to the run's
    videos."""
    run_dir = tmp_path / "run"
    run_script(
        "train_iql.py", "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--no-compile",
        "--total-steps", "10", "--eval-every", "10", "--run-dir", str(run_dir), *TINY,
    )  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-m", "offrl.tools.evaluate", str(run_dir), "--video", "--episodes", "2", "--seed", "3"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    written = json.loads((run_dir / "evaluations" / "step_10-seed_3-episodes_2.json").read_text())
    if headless_gl_backend() is not None:
        assert written["video"] and os.path.getsize(written["video"]) > 0
        assert written["video"].endswith("videos/evaluate_step_10-seed_3.mp4")
    else:
        assert written["video"] is None and "--video off" in result.stderr
