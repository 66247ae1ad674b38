"""One update of offrl and of the authors' JAX code from the same weights, on the same batch and the same noise.

The authors' agent is created (flax initialisation), its weights are copied into offrl's networks, one batch is drawn
from the dataset both load, and the random numbers the authors' update draws (recorded by running its loss eagerly)
are handed to offrl's update in the order it draws them. Then both take one step: every logged loss and statistic,
every gradient and every parameter after the Adam step and the target update are compared.

    python parity/one_update.py fql --repo PATH/TO/fql --dataset-dir DIR
    python parity/one_update.py iql --repo PATH/TO/fql --dataset-dir DIR
    python parity/one_update.py fan --repo PATH/TO/FAN --dataset-dir DIR

`--repo` is a checkout of https://github.com/seohongpark/fql (FQL, IQL) or https://github.com/brianlsy98/FAN (FAN);
DIR holds `cube-single-play-v0.npz` and `cube-single-play-v0-val.npz` (the official files, or ones regenerated with
`python -m offrl.generate cube-single-play-v0 --dataset-dir DIR --output-name cube-single-play-v0`). Needs jax, flax,
optax, distrax and ml_collections next to offrl. `--torch-numerics` repeats the comparison with torch's default GELU
(exact) and LayerNorm epsilon (1e-5), the numerics offrl used before it adopted flax's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from offrl.datasets import load_dataset  # noqa: E402
from offrl.networks import EnsembleLayerNorm, EnsembleLinear  # noqa: E402

# offrl metric -> the authors' metric, where both log the same quantity.
METRICS = {
    "fql": {
        "loss/critic": "critic/critic_loss",
        "critic/q_mean": "critic/q_mean",
        "critic/q_max": "critic/q_max",
        "critic/q_min": "critic/q_min",
        "loss/actor": "actor/actor_loss",
        "loss/flow": "actor/bc_flow_loss",
        "loss/distill": "actor/distill_loss",
        "loss/q": "actor/q_loss",
        "actor/policy_q": "actor/q",
    },
    "iql": {
        "loss/value": "value/value_loss",
        "value/v_mean": "value/v_mean",
        "loss/critic": "critic/critic_loss",
        "loss/actor": "actor/actor_loss",
        "actor/advantage_mean": "actor/adv",
        "actor/log_prob": "actor/bc_log_prob",
    },
    "fan": {
        "loss/critic": "critic/q_loss",
        "loss/z": "critic/z_loss",
        "critic/q_mean": "critic/q_mean",
        "critic/q_max": "critic/q_max",
        "critic/q_min": "critic/q_min",
        "critic/z_mean": "critic/z_mean",
        "critic/next_anchor": "critic/br_mse",
        "loss/actor": "actor/actor_loss",
        "loss/flow": "actor/bc_flow_loss",
        "loss/anchor": "actor/br_loss",
        "actor/policy_q": "actor/q",
        "actor/policy_z": "actor/z",
    },
}

# offrl network -> the authors' parameter subtrees, in layer order.
NETWORKS = {
    "fql": {
        "critic": [("modules_critic", "value_net")],
        "target_critic": [("modules_target_critic", "value_net")],
        "flow": [("modules_actor_bc_flow", "mlp")],
        "actor": [("modules_actor_onestep_flow", "mlp")],
    },
    "iql": {
        "critic": [("modules_critic", "value_net")],
        "target_critic": [("modules_target_critic", "value_net")],
        "value": [("modules_value", "value_net")],
        "actor": [("modules_actor", "actor_net"), ("modules_actor", "mean_net")],
    },
    "fan": {
        "critic": [("modules_critic", "value_net")],
        "target_critic": [("modules_target_critic", "value_net")],
        "z": [("modules_critic_z", "value_net")],
        "flow": [("modules_actor_bc_flow", "mlp")],
        "actor": [("modules_actor_onestep_flow", "mlp")],
    },
}

SCRIPTS = {"fql": "train_fql", "iql": "train_iql", "fan": "train_fan"}
AGENTS = {"fql": "fql", "iql": "iql", "fan": "fan"}  # the authors' agent names
ENV_NAME = "cube-single-play-singletask-task1-v0"


def flax_layers(params: dict, subtrees: list[tuple[str, str]]) -> list[tuple[str, dict]]:
    """The Dense / LayerNorm parameter dicts of the given subtrees, in the order the layers run."""
    layers = []
    for module, name in subtrees:
        tree = params[module][name]
        if "kernel" in tree:  # a single Dense (the Gaussian mean head)
            layers.append(("dense", tree))
            continue
        i = 0
        while f"Dense_{i}" in tree:
            layers.append(("dense", tree[f"Dense_{i}"]))
            if f"LayerNorm_{i}" in tree:
                layers.append(("norm", tree[f"LayerNorm_{i}"]))
            i += 1
    return layers


def torch_layers(net: nn.Module) -> list[nn.Module]:
    kinds = (nn.Linear, EnsembleLinear, nn.LayerNorm, EnsembleLayerNorm)
    return [m for m in net.modules() if isinstance(m, kinds)]


def paired(net: nn.Module, params: dict, subtrees: list[tuple[str, str]]) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """(offrl parameter, the authors' array in offrl's layout) for every parameter of `net`."""
    modules, layers = torch_layers(net), flax_layers(params, subtrees)
    if len(modules) != len(layers):
        raise SystemExit(f"layer count differs: offrl {len(modules)}, reference {len(layers)}")
    for module, (kind, tree) in zip(modules, layers, strict=True):
        if kind == "dense":
            kernel, bias = np.asarray(tree["kernel"]), np.asarray(tree["bias"])
            if isinstance(module, EnsembleLinear):  # (E, in, out), bias (E, 1, out)
                yield module.weight, kernel
                yield module.bias, bias[:, None, :]
            else:  # nn.Linear (out, in)
                yield module.weight, kernel.T
                yield module.bias, bias
        else:
            scale, bias = np.asarray(tree["scale"]), np.asarray(tree["bias"])
            if isinstance(module, EnsembleLayerNorm):
                yield module.weight, scale[:, None, :]
                yield module.bias, bias[:, None, :]
            else:
                yield module.weight, scale
                yield module.bias, bias


@contextlib.contextmanager
def recorded_draws(jax) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Record every jax.random.normal / uniform draw (run the reference eagerly inside: jax.disable_jit)."""
    draws: list[tuple[str, np.ndarray]] = []
    normal, uniform = jax.random.normal, jax.random.uniform

    def recording_normal(key, shape=(), *args, **kwargs):
        out = normal(key, shape, *args, **kwargs)
        draws.append(("normal", np.asarray(out)))
        return out

    def recording_uniform(key, shape=(), *args, **kwargs):
        out = uniform(key, shape, *args, **kwargs)
        draws.append(("uniform", np.asarray(out)))
        return out

    jax.random.normal, jax.random.uniform = recording_normal, recording_uniform
    try:
        with jax.disable_jit():
            yield draws
    finally:
        jax.random.normal, jax.random.uniform = normal, uniform


@contextlib.contextmanager
def replayed_draws(draws: list[tuple[str, np.ndarray]]) -> Iterator[list[tuple[str, np.ndarray]]]:
    """offrl's torch.randn_like / torch.rand_like return the recorded draws, in order (kind and shape checked)."""
    queue = list(draws)
    randn_like, rand_like = torch.randn_like, torch.rand_like

    def take(kind: str, like: torch.Tensor) -> torch.Tensor:
        if not queue:
            raise SystemExit(f"offrl drew more random tensors than the reference ({kind} {tuple(like.shape)})")
        got, value = queue.pop(0)
        if got != kind or value.shape != tuple(like.shape):
            raise SystemExit(f"draw order differs: offrl {kind} {tuple(like.shape)}, reference {got} {value.shape}")
        return torch.as_tensor(value, dtype=like.dtype)

    torch.randn_like = lambda like, **kwargs: take("normal", like)
    torch.rand_like = lambda like, **kwargs: take("uniform", like)
    try:
        yield queue
    finally:
        torch.randn_like, torch.rand_like = randn_like, rand_like


@contextlib.contextmanager
def ogbench_home(dataset_dir: Path) -> Iterator[None]:
    """The authors' loader reads ~/.ogbench/data: point HOME at a folder whose .ogbench/data is `dataset_dir`."""
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / ".ogbench").mkdir()
        (Path(home) / ".ogbench" / "data").symlink_to(dataset_dir.resolve())
        old = os.environ.get("HOME")
        os.environ["HOME"] = home
        try:
            yield
        finally:
            if old is not None:
                os.environ["HOME"] = old


class FixedBatch:
    """What a script's build() reads from its dataset, serving one fixed batch."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch, self.val, self.replay = batch, None, None
        self.observation_dim = batch["observations"].shape[1]
        self.action_dim = batch["actions"].shape[1]

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        return self.batch


def reference_config(algo: str, agents_module, hidden_dims: tuple[int, ...]):
    config = importlib.import_module(f"agents.{AGENTS[algo]}").get_config()
    config["actor_hidden_dims"] = config["value_hidden_dims"] = hidden_dims
    if algo == "fql":
        config["alpha"] = 300.0  # the cube-single setting of both
    if algo == "fan":
        config["discount"] = 0.99
    return config


def offrl_args(algo: str, script, config) -> object:
    fields = {"hidden_dims": tuple(config["value_hidden_dims"]), "lr": config["lr"], "tau": config["tau"]}
    fields["discount"] = config["discount"]
    if algo == "fql":
        fields.update(alpha=config["alpha"], flow_steps=config["flow_steps"], q_agg=config["q_agg"])
    elif algo == "iql":
        fields.update(alpha=config["alpha"], expectile=config["expectile"], actor_cosine_decay=False)
    else:
        fields.update(alpha1=config["alpha1"], alpha2=config["alpha2"], expectile=config["expectile"])
    return script.Args(env_name=ENV_NAME, compile=False, **fields)


def compare(algo: str, repo: Path, dataset_dir: Path, hidden_dims: tuple[int, ...], seed: int, torch_numerics: bool):
    sys.path.insert(0, str(repo.resolve()))
    import jax  # noqa: PLC0415

    agents_module = importlib.import_module("agents")
    env_utils = importlib.import_module("envs.env_utils")
    script = importlib.import_module(SCRIPTS[algo])
    torch.manual_seed(seed)

    # The data: both loaders on the same file must give the same transitions.
    data = load_dataset(ENV_NAME, dataset_dir=dataset_dir)
    with ogbench_home(dataset_dir):
        _, _, reference_train, _ = env_utils.make_env_and_datasets(ENV_NAME)
    data_check = {}
    for key in ("observations", "actions", "rewards", "masks", "next_observations"):
        ours, theirs = data.train[key].numpy(), np.asarray(reference_train[key], dtype=np.float32)
        data_check[key] = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else f"shape {ours.shape}"

    rows = np.random.default_rng(seed).integers(len(data), size=256)
    batch = {k: data.train[k][rows].clone() for k in ("observations", "actions", "rewards", "next_observations")}
    batch["masks"] = data.train["masks"][rows].clone()
    jax_batch = {k: jax.numpy.asarray(v.numpy()) for k, v in batch.items()}

    config = reference_config(algo, agents_module, hidden_dims)
    agent_class = agents_module.agents[config["agent_name"]]
    if algo == "fan":
        agent = agent_class.create(seed, {k: v[:1] for k, v in jax_batch.items()}, config)
    else:
        agent = agent_class.create(seed, jax_batch["observations"][:1], jax_batch["actions"][:1], config)
    params = jax.device_get(agent.network.params)

    # The draws of the reference's update: the same key its update() passes to total_loss().
    _, update_rng = jax.random.split(agent.rng)
    with recorded_draws(jax) as draws:
        agent.total_loss(jax_batch, agent.network.params, rng=update_rng)
    grads = jax.device_get(
        jax.grad(lambda p: agent.total_loss(jax_batch, p, rng=update_rng), has_aux=True)(agent.network.params)[0]
    )
    new_agent, info = agent.update(jax_batch)
    new_params = jax.device_get(new_agent.network.params)

    ours = script.build(offrl_args(algo, script, config), FixedBatch(batch), torch.device("cpu"))
    if torch_numerics:
        for module in (m for net in ours.nets.values() for m in net.modules()):
            if isinstance(module, nn.GELU):
                module.approximate = "none"
            if isinstance(module, (nn.LayerNorm, EnsembleLayerNorm)):
                module.eps = 1e-5
    pairs = {name: list(paired(ours.nets[name], params, subtrees)) for name, subtrees in NETWORKS[algo].items()}
    with torch.no_grad():
        for name, net_pairs in pairs.items():
            for param, value in net_pairs:
                if param.shape != value.shape:
                    raise SystemExit(f"{name}: offrl {tuple(param.shape)} vs reference {value.shape}")
                param.copy_(torch.as_tensor(value.copy()))
    with replayed_draws(draws) as unused:
        metrics = ours.update()

    report = {"algo": algo, "torch_numerics": torch_numerics, "data": data_check, "metrics": {}, "grads": {}}
    report["unused_reference_draws"] = [(kind, list(v.shape)) for kind, v in unused]
    for ours_key, theirs_key in METRICS[algo].items():
        a, b = float(metrics[ours_key]), float(info[theirs_key])
        report["metrics"][ours_key] = {"offrl": a, "reference": b, "abs_diff": abs(a - b), "rel_diff": relative(a, b)}
    grad_norm = 0.0
    for name, subtrees in NETWORKS[algo].items():
        if name == "target_critic":
            continue
        reference = [v for _, v in paired(ours.nets[name], grads, subtrees)]
        ours_grads = [p.grad for p, _ in pairs[name]]
        grad_norm += float(torch.stack([g.norm() for g in ours_grads]).sum())
        diff = max(float((g - torch.as_tensor(r)).abs().max()) for g, r in zip(ours_grads, reference, strict=True))
        scale = max(float(np.abs(r).max()) for r in reference)
        report["grads"][name] = {"max_abs_diff": diff, "max_abs_grad": scale}
    # The same sum of per-tensor norms in float64, from both sides' gradients: the float32 reductions above round
    # differently (XLA's order against torch's) by a few 1e-6 of the total.
    ours_norm64 = sum(
        float(p.grad.double().norm()) for name in NETWORKS[algo] if name != "target_critic" for p, _ in pairs[name]
    )
    reference_norm64 = sum(
        float(np.linalg.norm(np.asarray(r, dtype=np.float64)))
        for name, subtrees in NETWORKS[algo].items()
        if name != "target_critic"
        for _, r in paired(ours.nets[name], grads, subtrees)
    )
    reference_norm = float(info["grad/norm"])
    report["metrics"]["grad/norm"] = {
        "offrl": grad_norm,
        "reference": reference_norm,
        "abs_diff": abs(grad_norm - reference_norm),
        "rel_diff": relative(grad_norm, reference_norm),
    }
    report["metrics"]["grad/norm in float64"] = {
        "offrl": ours_norm64,
        "reference": reference_norm64,
        "abs_diff": abs(ours_norm64 - reference_norm64),
        "rel_diff": relative(ours_norm64, reference_norm64),
    }
    # After the step: offrl's parameters against the reference's, and (to tell the optimizer from the gradients)
    # torch's Adam applied to the reference's own gradients.
    report["params_after_update"], report["adam_on_reference_grads"] = {}, {}
    lr = float(config["lr"])
    for name, subtrees in NETWORKS[algo].items():
        after = [torch.as_tensor(v) for _, v in paired(ours.nets[name], new_params, subtrees)]
        with torch.no_grad():
            diff = max(float((p - r).abs().max()) for (p, _), r in zip(pairs[name], after, strict=True))
        report["params_after_update"][name] = diff
        if name == "target_critic":
            continue
        start = [torch.tensor(v, requires_grad=True) for _, v in pairs[name]]
        for p, (_, g) in zip(start, paired(ours.nets[name], grads, subtrees), strict=True):
            p.grad = torch.as_tensor(g).clone()
        torch.optim.Adam(start, lr=lr, fused=True).step()
        with torch.no_grad():
            worst = max(zip(start, after, strict=True), key=lambda pair: float((pair[0] - pair[1]).abs().max()))
            index = int((worst[0] - worst[1]).abs().argmax())
            report["adam_on_reference_grads"][name] = {
                "max_abs_diff": float((worst[0] - worst[1]).abs().max()),
                "gradient_there": float(worst[0].grad.flatten()[index]),
            }
    report["lr"] = lr
    return report


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def print_report(report: dict) -> None:
    numerics = "torch defaults (exact GELU, LayerNorm eps 1e-5)" if report["torch_numerics"] else "offrl's"
    print(f"# {report['algo'].upper()}: one update, offrl ({numerics} numerics) vs the authors' code\n")
    print(
        "data (max |offrl - reference| over the training set): "
        + ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}" for k, v in report["data"].items())
    )
    print("\n| quantity | offrl | reference | abs diff | rel diff |\n|---|---|---|---|---|")
    for key, row in report["metrics"].items():
        print(
            f"| {key} | {row['offrl']:.7g} | {row['reference']:.7g} | {row['abs_diff']:.1e} | {row['rel_diff']:.1e} |"
        )
    print(
        "\n| network | max abs gradient diff | max abs gradient | max abs parameter diff after the step"
        " | the reference's update against its own gradients (a separate jax.grad) through torch's Adam |"
    )
    print("|---|---|---|---|---|")
    for name, diff in report["params_after_update"].items():
        grad = report["grads"].get(name)
        grad_cells = f"{grad['max_abs_diff']:.1e} | {grad['max_abs_grad']:.1e}" if grad else "(no gradient) | -"
        adam = report["adam_on_reference_grads"].get(name)
        adam_cell = (
            "-" if adam is None else f"{adam['max_abs_diff']:.1e} (where the gradient is {adam['gradient_there']:.1e})"
        )
        print(f"| {name} | {grad_cells} | {diff:.1e} | {adam_cell} |")
    print(f"\n(one Adam step moves a parameter by at most lr = {report['lr']:g})")
    if report["unused_reference_draws"]:
        print(f"\nreference draws offrl does not make (logging only): {report['unused_reference_draws']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("algo", choices=sorted(SCRIPTS))
    parser.add_argument("--repo", type=Path, required=True, help="checkout of the authors' code")
    parser.add_argument("--dataset-dir", type=Path, required=True, help="folder with cube-single-play-v0.npz")
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[512, 512, 512, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-numerics", action="store_true", help="torch's default GELU and LayerNorm eps")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if not (args.repo / "agents").is_dir():
        parser.error(f"--repo {args.repo}: no agents/ folder; pass a checkout of the authors' repository")
    if not (args.dataset_dir / "cube-single-play-v0.npz").is_file():
        parser.error(f"--dataset-dir {args.dataset_dir}: no cube-single-play-v0.npz there")
    torch.set_num_threads(1)
    report = compare(args.algo, args.repo, args.dataset_dir, tuple(args.hidden_dims), args.seed, args.torch_numerics)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
