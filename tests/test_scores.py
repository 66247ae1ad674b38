"""Score conventions: OGBench success in percent, D4RL normalized returns and their reference table."""

import numpy as np
import pytest

from offrl.scores import D4RL_REFERENCE_SCORES, normalized_score, reference_scores


def test_normalized_score_by_hand():
    # Hopper: random -20.272305, expert 3234.3; halfway is (3234.3 - 20.272305) / 2 = 1607.0138475.
    assert normalized_score(1607.0138475, -20.272305, 3234.3) == pytest.approx(50.0, abs=1e-6)
    assert normalized_score(-20.272305, -20.272305, 3234.3) == pytest.approx(0.0)
    assert normalized_score(3234.3, -20.272305, 3234.3) == pytest.approx(100.0)
    # Above the expert and below random are allowed.
    assert normalized_score(3.0, 1.0, 2.0) == pytest.approx(200.0)
    assert normalized_score(0.0, 1.0, 2.0) == pytest.approx(-100.0)
    assert isinstance(normalized_score(1.5, 1.0, 2.0), float)


def test_normalized_score_on_arrays():
    returns = np.array([[0.0, 1.0], [2.0, 4.0]])
    np.testing.assert_allclose(normalized_score(returns, 0.0, 4.0), [[0.0, 25.0], [50.0, 100.0]])
    np.testing.assert_allclose(normalized_score([0.0, 2.0], 0.0, 4.0), [0.0, 50.0])


def test_normalized_score_rejects_equal_references():
    with pytest.raises(ValueError, match="must differ"):
        normalized_score(1.0, 2.0, 2.0)


@pytest.mark.parametrize(
    ("dataset_id", "expected"),
    [
        ("mujoco/hopper/medium-v0", (-20.272305, 3234.3)),
        ("mujoco/halfcheetah/expert-v0", (-280.178953, 12135.0)),
        ("mujoco/walker2d/simple-v0", (1.629008, 4592.3)),
        ("mujoco/ant/medium-v0", (-325.6, 3879.7)),
        ("D4RL/antmaze/large-diverse-v1", (0.0, 1.0)),
        ("D4RL/pen/human-v2", (-96.262799, 3076.8335)),
        ("D4RL/hammer/expert-v2", (-274.856578, 12794.134825)),
        ("D4RL/door/cloned-v2", (-56.512833, 2880.569098)),
        ("D4RL/relocate/human-v2", (-6.425911, 4233.877797)),
        ("D4RL/kitchen/complete-v2", (0.0, 4.0)),
        ("D4RL/pointmaze/umaze-v2", (23.85, 161.86)),
        ("D4RL/pointmaze/medium-v2", (13.13, 277.39)),
        ("D4RL/pointmaze/large-v2", (6.7, 273.99)),
        # The longest prefix wins: dense mazes have their own references.
        ("D4RL/pointmaze/umaze-dense-v2", (68.537689, 193.66285642381482)),
        ("D4RL/pointmaze/large-dense-v2", (30.569041, 303.4857382709002)),
        # The bare prefix and other letter case match too.
        ("mujoco/hopper", (-20.272305, 3234.3)),
        ("d4rl/kitchen/mixed-v2", (0.0, 4.0)),
    ],
)
def test_reference_scores_from_table(dataset_id, expected):
    assert reference_scores(dataset_id) == expected


@pytest.mark.parametrize(
    "dataset_id",
    [
        "cube-single-play-singletask-task1-v0",  # OGBench reports success, not normalized returns
        "mujoco/humanoid/medium-v0",
        "mujoco/hopperx/medium-v0",  # a prefix must end at a "/" or "-" boundary
        "D4RL/pointmaze/open-v2",
        "",
    ],
)
def test_reference_scores_unknown_is_none(dataset_id):
    assert reference_scores(dataset_id) is None


def test_reference_scores_prefers_metadata():
    metadata = {"ref_min_score": np.float32(96.25), "ref_max_score": 3076.75, "other": 1}
    assert reference_scores("D4RL/pen/human-v2", metadata) == (96.25, 3076.75)
    assert reference_scores("some/unknown/dataset-v0", metadata) == (96.25, 3076.75)
    assert all(isinstance(value, float) for value in reference_scores("x", metadata))


def test_reference_scores_incomplete_metadata_falls_back_to_table():
    assert reference_scores("mujoco/hopper/medium-v0", {"ref_min_score": 1.0}) == (-20.272305, 3234.3)
    assert reference_scores("mujoco/hopper/medium-v0", {}) == (-20.272305, 3234.3)
    assert reference_scores("unknown/env/x-v0", {"ref_max_score": 1.0}) is None


def test_table_is_well_formed():
    for prefix, (ref_min, ref_max) in D4RL_REFERENCE_SCORES.items():
        assert ref_min < ref_max, prefix
        assert not prefix.endswith(("/", "-")) and "-v" not in prefix, prefix
