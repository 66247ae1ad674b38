"""The fine-tuning replay buffer: online rows appended in order after the offline ones, sampling only filled rows,
balanced batches half offline / half online, no recompilation as it grows, and its checkpoint state."""

import pytest
import torch

from offrl.replay import ReplayBuffer

KEYS = ("observations", "actions", "rewards", "next_observations", "masks", "terminals")


def transitions(first: int, count: int) -> dict[str, torch.Tensor]:
    """`count` transitions whose rewards (and first observation column) number them first, first + 1, ..."""
    ids = torch.arange(first, first + count, dtype=torch.float32)
    return {
        "observations": ids[:, None].repeat(1, 3),
        "actions": torch.zeros(count, 2),
        "rewards": ids,
        "next_observations": ids[:, None].repeat(1, 3) + 0.5,
        "masks": torch.ones(count),
        "terminals": torch.zeros(count),
    }


def test_online_transitions_follow_the_offline_ones_in_order():
    buffer = ReplayBuffer(transitions(0, 10), capacity=6)
    assert len(buffer) == 10 and buffer.storage["rewards"].shape == (16,)
    buffer.add(transitions(100, 2))
    buffer.add(transitions(102, 3))
    assert len(buffer) == 15 and buffer.num_online == 5 and buffer.filled.item() == 15.0
    assert buffer.storage["rewards"][:15].tolist() == [*range(10), 100, 101, 102, 103, 104]
    assert buffer.storage["observations"][14].tolist() == [104.0] * 3
    with pytest.raises(ValueError, match="holds 6 online transitions; 2 more do not fit"):
        buffer.add(transitions(105, 2))
    with pytest.raises(KeyError):
        buffer.add({"rewards": torch.zeros(1)})


def test_sampling_draws_only_filled_rows_and_balanced_batches_split_in_halves():
    torch.manual_seed(0)
    buffer = ReplayBuffer(transitions(0, 10), capacity=100)
    assert set(buffer.sample(4000)["rewards"].tolist()) == set(map(float, range(10)))  # no empty row, every row
    buffer.add(transitions(100, 5))
    uniform = buffer.sample(6000)["rewards"]
    assert set(uniform.tolist()) == {*map(float, range(10)), *map(float, range(100, 105))}
    assert (uniform >= 100).float().mean().item() == pytest.approx(5 / 15, abs=0.03)  # online rows as often as others
    balanced = buffer.sample(256, balanced=True)["rewards"]
    assert (balanced[:128] < 10).all() and (balanced[128:] >= 100).all()
    assert set(balanced[128:].tolist()) == set(map(float, range(100, 105)))


@pytest.mark.slow
def test_a_compiled_update_sampling_from_a_growing_buffer_never_recompiles():
    buffer = ReplayBuffer(transitions(0, 10), capacity=50)

    @torch.compile(dynamic=False)
    def batch_sums(balanced_half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return buffer.sample(64)["rewards"].max(), buffer.sample(64, balanced=True)["rewards"][
            32:
        ].min() + balanced_half

    buffer.add(transitions(100, 1))
    batch_sums(torch.zeros(()))  # compiles once
    with torch.compiler.set_stance("fail_on_recompile"):
        for step in range(20):
            buffer.add(transitions(101 + step, 1))
            largest, online_smallest = batch_sums(torch.zeros(()))
            assert largest.item() <= 101 + step and online_smallest.item() >= 100


def test_the_online_rows_survive_a_checkpoint():
    offline = transitions(0, 10)
    buffer = ReplayBuffer(offline, capacity=8)
    buffer.add(transitions(100, 3))
    state = buffer.state_dict()
    assert state["num_online"] == 3 and state["rewards"].tolist() == [100.0, 101.0, 102.0]
    restored = ReplayBuffer(offline, capacity=8)
    restored.load_state_dict(state)
    for key in KEYS:
        torch.testing.assert_close(restored.storage[key], buffer.storage[key])
    assert restored.filled.item() == 13.0 and len(restored) == 13
