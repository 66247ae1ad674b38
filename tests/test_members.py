"""offrl.members: several members trained as one vectorized update, with every script's own build() and losses.

On a small random dataset and small networks: a group of one is the single run bit for bit, members start where
their single runs start and never read each other's parameters or batches, coefficients differ per member only where
a script declares them so, and the group's policy is each member's own.
"""

import dataclasses

import pytest
import torch

from offrl.args import import_script, per_member_fields
from offrl.checkpoint import load_checkpoint, save_checkpoint
from offrl.datasets import OfflineDataset
from offrl.members import MemberBatch, build_members, guard_args, member_state, varying_fields
from tests.helpers import REPO_ROOT

SCRIPTS = ("sacbc", "iql", "fql", "fan", "idql")
SMALL = {"hidden_dims": (16, 16), "batch_size": 8}
SMALL_IDQL = {"denoiser_hidden_dim": 16, "denoiser_blocks": 1, "denoiser_time_dim": 8, "num_candidates": 4}
CPU = torch.device("cpu")


def toy_data() -> OfflineDataset:
    generator = torch.Generator().manual_seed(0)
    n, obs_dim, action_dim = 200, 6, 2

    def split() -> dict[str, torch.Tensor]:
        return {
            "observations": torch.randn(n, obs_dim, generator=generator),
            "actions": torch.rand(n, action_dim, generator=generator) * 2 - 1,
            "rewards": torch.randn(n, generator=generator),
            "next_observations": torch.randn(n, obs_dim, generator=generator),
            "masks": torch.ones(n),
        }

    return OfflineDataset("toy", "ogbench", split(), split(), make_env=None)


def script_and_args(algo: str, **values):
    module = import_script(REPO_ROOT / f"train_{algo}.py")
    extra = SMALL_IDQL if algo == "idql" else {}
    return module, module.Args(**{**SMALL, **extra, "compile": False, **values})


def seed(value: int) -> None:
    torch.manual_seed(value)


def group(module, member_args, data=None):
    data = data or toy_data()
    agent, members = build_members(module.build, member_args, per_member_fields(module.Args), data, CPU, seed)
    return agent, members, data


def parameters(agent) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().clone() for name, net in agent.nets.items() for k, v in net.named_parameters()}


@pytest.mark.parametrize("algo", SCRIPTS)
def test_a_vectorized_group_of_one_computes_the_single_run(algo):
    """The same samples, noise and arithmetic; only the batched kernels round differently (a run of one seed does not
    take this path: `Run` trains it as a single run, bit for bit)."""
    module, args = script_and_args(algo)
    seed(0)
    single = module.build(args, toy_data(), CPU)
    torch.manual_seed(1)
    single_metrics = [single.update() for _ in range(3)]
    one, _, _ = group(module, [args])
    torch.manual_seed(1)
    group_metrics = [one.update() for _ in range(3)]
    expected, got = parameters(single), parameters(one)
    assert all(got[name].shape == (1, *value.shape) for name, value in expected.items())
    for name, value in expected.items():
        torch.testing.assert_close(got[name][0], value, rtol=1e-5, atol=1e-6, msg=name)
    for name, value in single_metrics[-1].items():
        torch.testing.assert_close(group_metrics[-1][name].reshape(-1)[0], value, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("algo", SCRIPTS)
def test_members_start_as_their_single_runs_and_never_read_each_other(algo):
    module, args = script_and_args(algo)
    member_args = [dataclasses.replace(args, seed=s) for s in (0, 1, 2)]
    seed(2)
    alone = parameters(module.build(member_args[2], toy_data(), CPU))
    agent, members, data = group(module, member_args)
    assert members.count == 3 and data.members == 3
    assert all(torch.equal(parameters(agent)[name][2], value) for name, value in alone.items())

    def one_update(perturb: bool) -> dict[str, torch.Tensor]:
        agent, _, data = group(module, member_args)
        sample = data.sample
        if perturb:  # member 2: other parameters, another batch
            with torch.no_grad():
                for net in agent.nets.values():
                    for param in net.parameters():
                        param[2].add_(0.5)

            def sample_another(batch_size: int) -> MemberBatch:
                batch = sample(batch_size)
                batch["observations"][2] += 1.0
                return batch

            data.sample = sample_another
        torch.manual_seed(7)
        metrics = agent.update()
        assert metrics["loss/critic"].shape == (3,)
        return parameters(agent)

    plain, perturbed = one_update(False), one_update(True)
    for name in plain:
        assert torch.equal(plain[name][:2], perturbed[name][:2]), name  # members 0 and 1 untouched
    assert any(not torch.equal(plain[name][2], perturbed[name][2]) for name in plain)


def test_coefficients_are_each_members_own():
    module, args = script_and_args("fql")
    mixed = [dataclasses.replace(args, seed=s, alpha=a) for s, a in ((0, 300.0), (1, 10.0))]
    ten = [dataclasses.replace(m, alpha=10.0) for m in mixed]
    three_hundred = [dataclasses.replace(m, alpha=300.0) for m in mixed]
    results = {}
    for name, member_args in (("mixed", mixed), ("10", ten), ("300", three_hundred)):
        agent, _, _ = group(module, member_args)
        torch.manual_seed(3)
        for _ in range(2):
            agent.update()
        results[name] = parameters(agent)
    for name, value in results["mixed"].items():
        assert torch.equal(value[0], results["300"][name][0]) and torch.equal(value[1], results["10"][name][1])

    _, members, _ = group(module, mixed)
    assert members.varying["alpha"].tolist() == [300.0, 10.0]
    guarded = guard_args(mixed[0], ["alpha"])  # what build() got: the first member's args, alpha guarded
    assert isinstance(guarded, module.Args) and guarded.lr == args.lr and guarded.seed == 0
    with pytest.raises(AttributeError, match="--alpha differs between the members of this group"):
        _ = guarded.alpha  # outside the losses it would silently be the first member's


def test_a_group_refuses_members_that_differ_in_a_shared_field():
    module, args = script_and_args("iql")
    fields = per_member_fields(module.Args)
    assert set(fields) == {"discount", "alpha", "expectile"}
    varying = varying_fields([args, dataclasses.replace(args, seed=1, expectile=0.7)], fields)
    assert varying == {"expectile": [0.9, 0.7]}  # the seed is every member's own, not a coefficient
    refused = r"differ in --lr, which they must share .* --discount, --expectile, --alpha\)"
    with pytest.raises(SystemExit, match=refused):
        varying_fields([args, dataclasses.replace(args, lr=1e-3)], fields)


@pytest.mark.parametrize("algo", ["iql", "sacbc"])
def test_the_groups_policy_is_each_members_own(algo):
    module, args = script_and_args(algo)
    member_args = [dataclasses.replace(args, seed=s) for s in (0, 1)]
    agent, _, _ = group(module, member_args)
    obs = torch.randn(2, 5, 6)
    actions = agent.policy(obs)
    assert actions.shape == (2, 5, 2)
    for member, member_seed in enumerate((0, 1)):
        seed(member_seed)
        alone = module.build(member_args[member], toy_data(), CPU)
        assert torch.allclose(actions[member], alone.policy(obs[member]), atol=1e-6)


@pytest.mark.parametrize("algo", SCRIPTS)
def test_a_members_checkpoint_is_a_single_runs(algo, tmp_path):
    """Member 1's part of the group's state, saved alone, loads into a single run's build(): its networks and its
    optimizer moments are member 1's, so evaluate/export/--resume use it as an ordinary run's."""
    module, args = script_and_args(algo)
    member_args = [dataclasses.replace(args, seed=s) for s in (0, 1)]
    agent, members, _ = group(module, member_args)
    torch.manual_seed(4)
    for _ in range(2):
        agent.update()
    save_checkpoint(tmp_path / "checkpoint.pt", 2, member_state(members, agent.state, 1))
    seed(9)
    alone = module.build(member_args[1], toy_data(), CPU)
    assert load_checkpoint(tmp_path, alone.state, CPU)["step"] == 2
    got = parameters(alone)
    for name, value in parameters(agent).items():
        assert torch.equal(got[name], value[1]), name
    optimizer, group_optimizer = alone.state["optimizer"], agent.state["optimizer"]
    stacked = [p for g in group_optimizer.param_groups for p in g["params"]]
    for param, single_param, stacked_param in zip(
        [p for g in optimizer.param_groups for p in g["params"]], stacked, stacked, strict=True
    ):
        assert torch.equal(optimizer.state[param]["exp_avg"], group_optimizer.state[stacked_param]["exp_avg"][1])
        assert single_param.shape[1:] == param.shape
