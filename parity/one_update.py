"""One update of offrl and of the authors' JAX code from the same weights, on the same batch and the same noise.

The authors' agent is created (flax initialisation), its weights are copied into offrl's networks, one batch is drawn
from the dataset both load, and the random numbers the authors' update draws (recorded by running its loss eagerly)
are handed to offrl's update in the order it draws them. Then both take one step: every logged loss and statistic,
every gradient and every parameter after the Adam step and the target update are compared.

    python parity/one_update.py fql --repo PATH/TO/fql --dataset-dir DIR
    python parity/one_update.py iql --repo PATH/TO/fql --dataset-dir DIR
    python parity/one_update.py fan --repo PATH/TO/FAN --dataset-dir DIR
    python parity/one_update.py idql --repo PATH/TO/IDQL --dataset-dir DIR

`--repo` is a checkout of https://github.com/seohongpark/fql (FQL, IQL), https://github.com/brianlsy98/FAN (FAN) or
https://github.com/philippe-eecs/IDQL (IDQL: its `ddpm_iql_simple` learner; needs gym;
offrl's critic and value networks take the reference's architecture for the comparison, dropout is off);
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

SCRIPTS = {"fql": "train_fql", "iql": "train_iql", "fan": "train_fan", "idql": "train_idql"}
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
    return paired_layers(net, flax_layers(params, subtrees))


def paired_layers(net: nn.Module, layers: list[tuple[str, dict]]) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """(offrl parameter, the authors' array in offrl's layout) for each Linear / LayerNorm of `net`, in order."""
    modules = torch_layers(net)
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
    normal, uniform, randint = jax.random.normal, jax.random.uniform, jax.random.randint

    def recording_normal(key, shape=(), *args, **kwargs):
        out = normal(key, shape, *args, **kwargs)
        draws.append(("normal", np.asarray(out)))
        return out

    def recording_uniform(key, shape=(), *args, **kwargs):
        out = uniform(key, shape, *args, **kwargs)
        draws.append(("uniform", np.asarray(out)))
        return out

    def recording_randint(key, shape, *args, **kwargs):
        out = randint(key, shape, *args, **kwargs)
        draws.append(("randint", np.asarray(out)))
        return out

    jax.random.normal, jax.random.uniform, jax.random.randint = recording_normal, recording_uniform, recording_randint
    try:
        with jax.disable_jit():
            yield draws
    finally:
        jax.random.normal, jax.random.uniform, jax.random.randint = normal, uniform, randint


@contextlib.contextmanager
def replayed_draws(draws: list[tuple[str, np.ndarray]]) -> Iterator[list[tuple[str, np.ndarray]]]:
    """offrl's torch.randn_like / torch.rand_like return the recorded draws, in order (kind and shape checked)."""
    queue = list(draws)
    randn_like, rand_like, randint = torch.randn_like, torch.rand_like, torch.randint

    def take(kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if not queue:
            raise SystemExit(f"offrl drew more random tensors than the reference ({kind} {shape})")
        got, value = queue.pop(0)
        if got != kind or value.shape != shape:
            raise SystemExit(f"draw order differs: offrl {kind} {shape}, reference {got} {value.shape}")
        return torch.as_tensor(value.copy(), dtype=dtype)

    torch.randn_like = lambda like, **kwargs: take("normal", tuple(like.shape), like.dtype)
    torch.rand_like = lambda like, **kwargs: take("uniform", tuple(like.shape), like.dtype)
    torch.randint = lambda high, size, **kwargs: take("randint", tuple(size), torch.int64)
    try:
        yield queue
    finally:
        torch.randn_like, torch.rand_like, torch.randint = randn_like, rand_like, randint


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


def update_from_reference(ours, pairs: dict[str, list[tuple[torch.Tensor, np.ndarray]]], draws: list) -> tuple:
    """Load the reference's weights into offrl's networks, then take offrl's one update with the reference's draws.

    Returns (offrl's metrics, the reference draws offrl did not use)."""
    with torch.no_grad():
        for name, net_pairs in pairs.items():
            for param, value in net_pairs:
                if param.shape != value.shape:
                    raise SystemExit(f"{name}: offrl {tuple(param.shape)} vs reference {value.shape}")
                param.copy_(torch.as_tensor(value.copy()))
    with replayed_draws(draws) as unused:
        metrics = ours.update()
    return metrics, unused


def reference_config(algo: str, hidden_dims: tuple[int, ...]):
    """The authors' default config of the agent, with the network widths and the settings offrl compares at."""
    config = importlib.import_module(f"agents.{AGENTS[algo]}").get_config()
    config["actor_hidden_dims"] = config["value_hidden_dims"] = hidden_dims
    if algo == "fql":
        config["alpha"] = 300.0  # the cube-single setting of both
    if algo == "fan":
        config["discount"] = 0.99
    return config


def offrl_args(algo: str, script, config) -> object:
    """offrl's Args with the same settings as the authors' config (no presets: the fields are given)."""
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
    keys = ("observations", "actions", "rewards", "next_observations", "masks")
    batch = {k: data.train[k][rows].clone() for k in keys}
    jax_batch = {k: jax.numpy.asarray(v.numpy()) for k, v in batch.items()}

    config = reference_config(algo, hidden_dims)
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
    metrics, unused = update_from_reference(ours, pairs, draws)

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


# IDQL (philippe-eecs/IDQL, jaxrl5/agents/ddpm_iql_simple): layer paths of its critic (under the ensemble's vmap),
# value network (LayerNorm at the input) and LN-ResNet denoiser.
IDQL_CRITIC = [("MLP_0", "Dense_0"), ("MLP_0", "Dense_1"), ("Dense_0",)]
IDQL_VALUE = [("MLP_0", "LayerNorm_0"), ("MLP_0", "Dense_0"), ("MLP_0", "Dense_1"), ("OutputVDense",)]


def idql_denoiser_paths(num_blocks: int) -> list[tuple[str, ...]]:
    paths = [("MLP_0", "Dense_0"), ("MLP_0", "Dense_1"), ("MLPResNet_0", "Dense_0")]
    for i in range(num_blocks):
        paths += [("MLPResNet_0", f"MLPResNetBlock_{i}", layer) for layer in ("LayerNorm_0", "Dense_0", "Dense_1")]
    return [*paths, ("MLPResNet_0", "Dense_1")]


def layers_at(tree: dict, paths: list[tuple[str, ...]]) -> list[tuple[str, dict]]:
    layers = []
    for path in paths:
        node = tree
        for key in path:
            node = node[key]
        layers.append(("norm" if path[-1].startswith("LayerNorm") else "dense", node))
    return layers


def compare_idql(repo: Path, dataset_dir: Path, seed: int, torch_numerics: bool) -> dict:
    """IDQL's update against the authors' DDPM-IQL learner, with offrl's critic and value networks given the
    reference's architecture (2 x 256 ReLU, LayerNorm at V's input) and dropout off, so that the same weights fit."""
    import gym  # noqa: PLC0415  (the IDQL code's spaces)
    import jax  # noqa: PLC0415
    from flax.training.train_state import TrainState  # noqa: PLC0415
    from idql_reference import import_learner  # noqa: PLC0415  (beside this file)

    learner = import_learner(repo)
    script = importlib.import_module("train_idql")
    torch.manual_seed(seed)
    data = load_dataset(ENV_NAME, dataset_dir=dataset_dir)
    rows = np.random.default_rng(seed).integers(len(data), size=256)
    batch = {
        k: data.train[k][rows].clone() for k in ("observations", "actions", "rewards", "next_observations", "masks")
    }
    jax_batch = {k: jax.numpy.asarray(v.numpy()) for k, v in batch.items()}
    obs_dim, action_dim = data.observation_dim, data.action_dim

    agent = learner.DDPMIQLLearner.create(
        seed,
        gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32),
        critic_hidden_dims=(256, 256),
        critic_hyperparam=0.9,  # the expectile of both on OGBench
        actor_dropout_rate=None,
    )
    grads: list = []
    apply_gradients = TrainState.apply_gradients

    def recording_apply_gradients(self, **kwargs):
        grads.append(jax.device_get(kwargs["grads"]))
        return apply_gradients(self, **kwargs)

    TrainState.apply_gradients = recording_apply_gradients
    try:
        # The three updates from the same starting point (offrl takes one step on the sum of the losses).
        with recorded_draws(jax) as draws:
            after_actor, info_actor = agent.update_actor(jax_batch)
        after_value, info_value = agent.update_v(jax_batch)
        after_critic, info_critic = agent.update_q(jax_batch)
        # The reference's own order: actor, then V, then Q with the V just updated.
        _, info_sequential = after_actor.update_v(jax_batch)[0].update_q(jax_batch)
    finally:
        TrainState.apply_gradients = apply_gradients
    denoiser_grads, value_grads, critic_grads = grads[:3]

    args = script.Args(
        env_name=ENV_NAME, compile=False, hidden_dims=(256, 256), layer_norm=False, dropout=0.0, expectile=0.9
    )
    ours = script.build(args, FixedBatch(batch), torch.device("cpu"))
    for name in ("critic", "target_critic", "value"):
        sequential = ours.nets[name].net
        for i, module in enumerate(sequential):
            if isinstance(module, nn.GELU):
                sequential[i] = nn.ReLU()
    input_norm = nn.LayerNorm(obs_dim, eps=1e-6)
    ours.nets["value"].net = nn.Sequential(input_norm, *ours.nets["value"].net)
    ours.state["optimizer"].param_groups[0]["params"].extend(input_norm.parameters())
    if torch_numerics:
        for module in (m for net in ours.nets.values() for m in net.modules()):
            if isinstance(module, nn.LayerNorm):
                module.eps = 1e-5

    blocks = args.denoiser_blocks
    critic_tree = lambda params: params["VmapStateActionValue_0"]  # noqa: E731
    layers = {
        "critic": lambda which: layers_at(critic_tree(which["critic"]), IDQL_CRITIC),
        "target_critic": lambda which: layers_at(critic_tree(which["target_critic"]), IDQL_CRITIC),
        "value": lambda which: layers_at(which["value"], IDQL_VALUE),
        "denoiser": lambda which: layers_at(which["denoiser"], idql_denoiser_paths(blocks)),
        "ema_denoiser": lambda which: layers_at(which["ema_denoiser"], idql_denoiser_paths(blocks)),
    }

    def pairs_for(name: str, which: dict) -> list[tuple[torch.Tensor, np.ndarray]]:
        pairs = list(paired_layers(ours.nets[name], layers[name](which)))
        if "denoiser" in name:
            pairs.append((ours.nets[name].time_features.weight, np.asarray(which[name]["FourierFeatures_0"]["kernel"])))
        return pairs

    start = {
        "critic": agent.critic.params,
        "target_critic": agent.target_critic.params,
        "value": agent.value.params,
        "denoiser": agent.score_model.params,
        "ema_denoiser": agent.target_score_model.params,
    }
    start = jax.device_get(start)
    pairs = {name: pairs_for(name, start) for name in layers}
    metrics, unused = update_from_reference(ours, pairs, draws)

    report = {"algo": "idql", "torch_numerics": torch_numerics, "data": {}, "metrics": {}, "grads": {}, "lr": 3e-4}
    report["unused_reference_draws"] = [(kind, list(v.shape)) for kind, v in unused]
    reference_metrics = {
        "loss/value": float(info_value["value_loss"]),
        "value/v_mean": float(info_value["v"]),
        "loss/critic": 2 * float(info_critic["critic_loss"]),  # offrl sums over the two critics, IDQL averages
        "critic/q_mean": float(info_critic["q"]),
        "loss/diffusion": float(info_actor["actor_loss"]),
    }
    for key, b in reference_metrics.items():
        a = float(metrics[key])
        report["metrics"][key] = {"offrl": a, "reference": b, "abs_diff": abs(a - b), "rel_diff": relative(a, b)}
    report["critic_loss_in_the_references_order"] = 2 * float(info_sequential["critic_loss"])
    for name, tree in (("denoiser", denoiser_grads), ("value", value_grads), ("critic", critic_grads)):
        reference = [v for _, v in pairs_for(name, {name: tree})]
        scale = 0.5 if name == "critic" else 1.0  # offrl's critic loss is the sum over both critics, IDQL's the mean
        ours_grads = [scale * p.grad for p, _ in pairs[name]]
        diff = max(float((g - torch.as_tensor(r)).abs().max()) for g, r in zip(ours_grads, reference, strict=True))
        report["grads"][name] = {"max_abs_diff": diff, "max_abs_grad": max(float(np.abs(r).max()) for r in reference)}
    after = jax.device_get(
        {
            "critic": after_critic.critic.params,
            "target_critic": after_critic.target_critic.params,
            "value": after_value.value.params,
            "denoiser": after_actor.score_model.params,
            "ema_denoiser": after_actor.target_score_model.params,
        }
    )
    report["params_after_update"] = {}
    report["adam_on_reference_grads"] = {}
    with torch.no_grad():
        for name in layers:
            reference = [torch.as_tensor(v) for _, v in pairs_for(name, after)]
            report["params_after_update"][name] = max(
                float((p - r).abs().max()) for (p, _), r in zip(pairs[name], reference, strict=True)
            )
    return report


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def print_report(report: dict) -> None:
    numerics = "torch defaults (exact GELU, LayerNorm eps 1e-5)" if report["torch_numerics"] else "offrl's"
    print(f"# {report['algo'].upper()}: one update, offrl ({numerics} numerics) vs the authors' code\n")
    if report["data"]:
        data = ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}" for k, v in report["data"].items())
        print(f"data (max |offrl - reference| over the training set): {data}")
    else:
        print("data: not compared (the reference has no OGBench loader; both sides got the same batch)")
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
    if "critic_loss_in_the_references_order" in report:
        print(
            "\nloss/critic in the reference's own order (V updated before Q's target reads it): "
            f"{report['critic_loss_in_the_references_order']:.7g}"
        )
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
    if not (args.repo / ("jaxrl5" if args.algo == "idql" else "agents")).is_dir():
        parser.error(f"--repo {args.repo}: not a checkout of the authors' repository for {args.algo}")
    if not (args.dataset_dir / "cube-single-play-v0.npz").is_file():
        parser.error(f"--dataset-dir {args.dataset_dir}: no cube-single-play-v0.npz there")
    torch.set_num_threads(1)
    if args.algo == "idql":
        report = compare_idql(args.repo, args.dataset_dir, args.seed, args.torch_numerics)
    else:
        hidden_dims = tuple(args.hidden_dims)
        report = compare(args.algo, args.repo, args.dataset_dir, hidden_dims, args.seed, args.torch_numerics)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
