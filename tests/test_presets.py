"""Each script's PRESETS: every value is a field of its Args, and a single run applies them (flags win)."""

import importlib
import json

import pytest

from offrl.args import apply_presets, parse_args
from tests.helpers import run_script

SCRIPTS = ("train_iql", "train_sacbc", "train_fql", "train_fan", "train_idql")


def recommended(script: str, env_name: str, online: bool = False) -> dict:
    module = importlib.import_module(script)
    return {name: value for name, (value, _) in apply_presets(module.PRESETS, env_name, online).items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_preset_names_fields_of_its_script_and_a_source(script):
    module = importlib.import_module(script)
    fields = set(module.Args.__dataclass_fields__)
    for preset in module.PRESETS:
        assert set(preset.values) <= fields, preset
        assert "http" in preset.source or "post" in preset.source, preset


def test_presets_follow_the_published_settings():
    # FQL README: the exact flags of each published run
    assert recommended("train_fql", "puzzle-3x3-play-singletask-task4-v0") == {"alpha": 1000.0}
    assert recommended("train_fql", "cube-double-play-singletask-task2-v0") == {"alpha": 300.0}
    assert recommended("train_fql", "antsoccer-arena-navigate-singletask-task1-v0") == {
        "discount": 0.995,
        "alpha": 10.0,
    }
    assert recommended("train_fql", "antmaze-large-navigate-singletask-v0") == {"alpha": 10.0, "q_agg": "min"}
    assert recommended("train_fql", "antmaze-giant-navigate-singletask-v0") == {
        "discount": 0.995, "alpha": 10.0, "q_agg": "min"}  # fmt: skip
    assert recommended("train_fql", "humanoidmaze-medium-navigate-singletask-v0") == {"discount": 0.995, "alpha": 30.0}
    assert recommended("train_fql", "D4RL/antmaze/large-play-v1") == {"total_steps": 500_000, "alpha": 3.0}
    assert recommended("train_fql", "D4RL/antmaze/medium-play-v1") == {"total_steps": 500_000, "alpha": 10.0}
    assert recommended("train_fql", "D4RL/pen/expert-v2") == {"total_steps": 500_000, "q_agg": "min", "alpha": 3000.0}
    assert recommended("train_fql", "D4RL/door/human-v2")["alpha"] == 30000.0
    assert recommended("train_fql", "D4RL/relocate/human-v2")["alpha"] == 10000.0
    # FQL README, offline-to-online runs: other alphas in two domains and adroit-cloned, 1M offline steps on D4RL
    assert recommended("train_fql", "humanoidmaze-medium-navigate-singletask-v0", online=True) == {
        "discount": 0.995, "alpha": 100.0}  # fmt: skip
    assert recommended("train_fql", "antsoccer-arena-navigate-singletask-v0", online=True)["alpha"] == 30.0
    assert recommended("train_fql", "cube-double-play-singletask-v0", online=True) == {"alpha": 300.0}
    assert recommended("train_fql", "D4RL/antmaze/large-play-v1", online=True) == {"alpha": 3.0}
    assert recommended("train_fql", "D4RL/pen/cloned-v2", online=True) == {"q_agg": "min", "alpha": 1000.0}
    assert recommended("train_fql", "D4RL/relocate/cloned-v2", online=True) == {"q_agg": "min", "alpha": 10000.0}
    # FAN repository, offline-to-online scripts: other coefficients from the first online update on
    assert recommended("train_fan", "cube-double-play-singletask-v0", online=True) == {
        "alpha1": 100.0, "alpha2": 0.0, "online_alpha1": 30.0, "online_alpha2": 0.0}  # fmt: skip
    assert recommended("train_fan", "antsoccer-arena-navigate-singletask-v0", online=True) == {
        "alpha1": 10.0, "alpha2": 0.0, "online_alpha1": 10.0, "online_alpha2": 0.0}  # fmt: skip
    assert recommended("train_fan", "puzzle-4x4-play-singletask-v0", online=True)["online_alpha1"] == 100.0
    assert recommended("train_fan", "scene-play-singletask-v0", online=True)["online_alpha1"] == 10.0
    # FAN repository scripts
    assert recommended("train_fan", "scene-play-singletask-task2-v0") == {"alpha1": 100.0, "alpha2": 3.0}
    assert recommended("train_fan", "D4RL/antmaze/large-play-v1") == {
        "discount": 0.99, "z_agg": "min", "total_steps": 500_000, "alpha1": 3.0, "alpha2": 0.03}  # fmt: skip
    # IQL and IDQL papers, Ogata's post
    assert recommended("train_iql", "mujoco/hopper/medium-v0") == {
        "expectile": 0.7, "alpha": 3.0, "actor_cosine_decay": True}  # fmt: skip
    assert recommended("train_idql", "D4RL/antmaze/medium-play-v1") == {"expectile": 0.9, "num_candidates": 32}
    assert recommended("train_sacbc", "antsoccer-arena-navigate-singletask-task1-v0") == {
        "discount": 0.995, "alpha": 3.0}  # fmt: skip
    assert recommended("train_iql", "some-unknown-env") == {}


def test_flags_win_over_presets_and_no_presets_turns_them_off():
    import train_fql

    env = ["--env-name", "puzzle-4x4-play-singletask-task1-v0"]
    parsed = parse_args(train_fql.Args, train_fql.PRESETS, env)
    assert parsed.args.alpha == 1000.0 and parsed.presets_applied["alpha"]["value"] == 1000.0
    parsed = parse_args(train_fql.Args, train_fql.PRESETS, [*env, "--alpha=5"])
    assert parsed.args.alpha == 5.0 and parsed.presets_overridden == {"alpha": {"preset": 1000.0, "given": 5.0}}
    parsed = parse_args(train_fql.Args, train_fql.PRESETS, [*env, "--no-presets"])
    assert parsed.args.alpha == train_fql.Args().alpha and parsed.presets_applied == {}
    maze = ["--env-name", "humanoidmaze-medium-navigate-singletask-v0"]
    assert parse_args(train_fql.Args, train_fql.PRESETS, maze).args.alpha == 30.0
    assert parse_args(train_fql.Args, train_fql.PRESETS, [*maze, "--online-steps", "10"]).args.alpha == 100.0


def test_a_sweep_applies_the_offline_to_online_presets_of_its_online_runs():
    from offrl.tools.jobs import _fine_tunes_online

    assert _fine_tunes_online(["--online-steps", "1000", "--no-compile"]) and _fine_tunes_online(["--online-steps=5"])
    assert not _fine_tunes_online(["--online-steps", "0"]) and not _fine_tunes_online(["--total-steps", "10"])


@pytest.mark.slow
def test_a_single_run_applies_its_presets_and_records_them(tmp_path):
    common = ["--env-name", "puzzle-3x3-play-singletask-task4-v0", "--dataset-dir", str(tmp_path / "data"),
              "--generate-episodes", "2", "--total-steps", "2", "--eval-every", "2", "--eval-episodes", "1",
              "--eval-envs", "1", "--hidden-dims", "16", "--batch-size", "8", "--no-compile"]  # fmt: skip
    result = run_script("train_fql.py", *common, "--run-dir", str(tmp_path / "preset"))
    first_lines = result.stdout.splitlines()[:3]
    assert any("presets for puzzle-3x3-play-singletask-task4-v0: --alpha 1000.0" in line for line in first_lines)
    results = json.loads((tmp_path / "preset" / "results.json").read_text())
    assert results["args"]["alpha"] == 1000.0 and results["presets_applied"]["alpha"]["value"] == 1000.0
    result = run_script("train_fql.py", *common, "--alpha", "5", "--run-dir", str(tmp_path / "flag"))
    assert "preset --alpha 1000.0 not applied: 5.0 given" in result.stdout
    results = json.loads((tmp_path / "flag" / "results.json").read_text())
    assert results["args"]["alpha"] == 5.0 and results["presets_applied"] == {}
