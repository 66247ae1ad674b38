"""offrl.members: several members trained as one vectorized update, with every script's own build() and losses.

On a small random dataset and small networks: a group of one is the single run bit for bit, members start where
their single runs start and never read each other's parameters or batches, coefficients differ per member only where
a script declares them so, and the group's policy is each member's own.
"""

import dataclasses
import json

import pytest
import torch

from offrl.args import import_script, per_member_fields
from offrl.checkpoint import load_checkpoint, save_checkpoint
from offrl.datasets import OfflineDataset
from offrl.members import MemberBatch, build_members, guard_args, member_state, varying_fields
from tests.helpers import REPO_ROOT, run_script

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


def test_a_script_whose_losses_are_not_marked_per_member_is_refused_as_a_group(tmp_path):
    """Without @per_member the losses would meet the stacked parameters (a shape error deep inside torch)."""
    source = (REPO_ROOT / "train_iql.py").read_text()
    assert "\n@per_member" in source
    (tmp_path / "train_plain.py").write_text(source.replace("\n@per_member", "\n"))
    module = import_script(tmp_path / "train_plain.py")
    args = module.Args(**{**SMALL, "compile": False})
    with pytest.raises(SystemExit, match=r"train_plain.py marks none of its loss functions @per_member"):
        group(module, [args, dataclasses.replace(args, seed=1)])
    module, args = script_and_args("iql")
    group(module, [args, dataclasses.replace(args, seed=1)])  # the script itself passes


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


def pendulum_group(minari_dir, run_dir, *args: str) -> list[str]:
    return [
        "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--hidden-dims", "16", "16",
        "--batch-size", "16", "--eval-episodes", "2", "--eval-envs", "2", "--no-compile", "--total-steps", "20",
        "--eval-every", "10", "--log-every", "5", "--save-every", "10", "--run-dir", str(run_dir), *args,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_group_writes_each_member_as_an_ordinary_run(minari_dir, tmp_path):
    """--seeds 0 1 --member-values alpha=3,10: four members in one process, each its own run directory (named as a
    single run, its own args, evaluations, TensorBoard events and a checkpoint that offrl.tools.evaluate takes)."""
    from offrl.tools import evaluate as evaluate_tool

    result = run_script("train_iql.py", *pendulum_group(minari_dir, tmp_path, "--seeds", "0", "1",
                        "--member-values", "alpha=3,10"))  # fmt: skip
    names = sorted(path.name for path in tmp_path.iterdir() if path.is_dir())
    assert json.loads((tmp_path / "group.json").read_text())["step"] == 20
    prefix = "test-pendulum-random-v0__iql__"
    assert names == sorted(f"{prefix}{seed}__alpha{alpha}" for alpha in (3, 10) for seed in (0, 1))
    assert "4 members trained as one" in result.stdout and result.stdout.count("final score at step 20") == 4
    for name in names:
        member = tmp_path / name
        saved = json.loads((member / "results.json").read_text())
        seed, alpha = int(name.split("__")[2]), float(name.split("__alpha")[1])
        assert saved["status"] == "finished" and saved["group_size"] == 4
        assert (saved["args"]["seed"], saved["args"]["alpha"], saved["args"]["seeds"]) == (seed, alpha, None)
        assert [row["step"] for row in saved["evals"]] == [0, 10, 20]
        assert "alpha" in saved["presets_overridden"] or "alpha" not in saved["presets_applied"]
        assert list(member.glob("events.out.tfevents.*"))
        assert evaluate_tool.main([str(member), "--episodes", "2", "--dataset-dir", str(minari_dir)]) == 0


@pytest.mark.slow
def test_a_group_of_one_seed_is_the_single_run(minari_dir, tmp_path):
    run_script("train_iql.py", *pendulum_group(minari_dir, tmp_path / "single", "--seed", "3"))
    run_script("train_iql.py", *pendulum_group(minari_dir, tmp_path / "seeds", "--seeds", "3"))
    single = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=False)
    group_of_one = torch.load(tmp_path / "seeds" / "checkpoint.pt", weights_only=False)
    for name, state in single["state"]["critic"].items():
        assert torch.equal(group_of_one["state"]["critic"][name], state)  # bit for bit: the same path


@pytest.mark.slow
def test_a_member_whose_losses_turn_nan_stops_alone(tmp_path, minari_dir):
    """FQL with alpha inf for the second member: its actor loss is inf; it is marked failed with its last checkpoint
    kept, the first member finishes (nothing of the second reaches it), and the process says so and exits 1."""
    result = run_script(
        "train_fql.py", *pendulum_group(minari_dir, tmp_path, "--member-values", "alpha=300,inf"), check=False
    )
    ok, broken = (tmp_path / f"test-pendulum-random-v0__fql__0__alpha{a}" for a in ("300", "inf"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {broken.name}: loss/" in result.stderr and "it is stopped" in result.stderr
    assert json.loads((ok / "results.json").read_text())["status"] == "finished"
    failed = json.loads((broken / "results.json").read_text())
    assert failed["status"] == "failed" and "became" in failed["error"]
    assert "final score at step 20" in result.stdout


def test_a_group_refuses_what_it_cannot_do_yet_in_one_line(minari_dir, tmp_path):
    for extra, phrase in (
        (["--online-steps", "10"], "--online-steps is not available for a group"),
        (["--track"], "--track is not available for a group"),
        (["--member-values", "lr=1e-3,1e-4"], "'lr' is not a field members may set each their own way"),
        (["--member-values", "alpha=abc"], "expected FIELD=V1,V2,... with numbers"),
        (["--member-values", "alpha=-1,3"], "--alpha must be at least 0, got -1.0"),
        (["--seeds", "1", "1"], "name a member twice"),
    ):
        result = run_script("train_iql.py", *pendulum_group(minari_dir, tmp_path, "--seeds", "0", "1", *extra),
                            check=False)  # fmt: skip
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert phrase in result.stderr, (phrase, result.stderr)


@pytest.mark.slow
def test_a_group_resumes_as_if_never_stopped(minari_dir, tmp_path):
    """Two members trained 30 steps in one go, and 10 steps then `--resume FOLDER --total-steps 30`: every member's
    parameters are bit for bit the same (CPU, eager). A checkpoint left half-saved by a killed process (written, but
    not yet named by the group's record) is dropped on resume."""
    common = ["--seeds", "0", "1", "--member-values", "alpha=3,10"]
    flags = pendulum_group(minari_dir, tmp_path / "full", *common)
    run_script("train_iql.py", *flags[: flags.index("--total-steps")], *flags[flags.index("--total-steps") + 2 :],
               "--total-steps", "30")  # fmt: skip
    part = tmp_path / "part"
    run_script("train_iql.py", *pendulum_group(minari_dir, part, *common), "--total-steps", "10")
    record = json.loads((part / "group.json").read_text())
    assert record["step"] == 10 and len(record["members"]) == 4
    stale = part / record["members"][1] / "checkpoint-next.pt"  # a later save that never completed
    torch.save({**torch.load(stale.with_name("checkpoint.pt"), weights_only=False), "step": 20}, stale)
    resumed = run_script("train_iql.py", "--resume", str(part), "--total-steps", "30", "--dataset-dir", str(minari_dir))
    assert "resuming at step 10" in resumed.stdout and not stale.exists()
    for name in record["members"]:
        full = torch.load(tmp_path / "full" / name / "checkpoint.pt", weights_only=False)
        again = torch.load(part / name / "checkpoint.pt", weights_only=False)
        assert full["step"] == again["step"] == 30
        for net in ("critic", "actor", "value"):
            for key, value in full["state"][net].items():
                assert torch.equal(again["state"][net][key], value), (name, net, key)
        saved = json.loads((part / name / "results.json").read_text())
        assert saved["status"] == "finished" and [row["step"] for row in saved["evals"]] == [0, 10, 20, 30]
