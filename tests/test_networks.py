"""Networks: shapes, initialisation, ensemble equivalence, Gaussian log-probabilities."""

import math

import pytest
import torch
from torch import nn

from offrl.networks import (
    MLP,
    EnsembleLinear,
    EnsembleMLP,
    GaussianActor,
    TanhGELU,
    polyak_update_,
    variance_scaling_,
)


def test_mlp_layout_and_init():
    torch.manual_seed(0)
    mlp = MLP(10, (64, 64), 3, layer_norm=True)
    kinds = [type(m) for m in mlp.net]
    # LayerNorm comes after the activation on every hidden layer; none after the output layer.
    assert kinds == [nn.Linear, TanhGELU, nn.LayerNorm, nn.Linear, TanhGELU, nn.LayerNorm, nn.Linear]
    assert mlp(torch.randn(7, 10)).shape == (7, 3)
    assert mlp(torch.randn(2, 7, 10)).shape == (2, 7, 3)
    first = mlp.net[0]
    limit = math.sqrt(6.0 / (10 + 64))  # Xavier/Glorot uniform
    assert first.weight.abs().max() <= limit
    assert first.weight.abs().max() > 0.9 * limit
    assert torch.all(first.bias == 0)
    trunk = MLP(10, (32, 16), None)
    assert trunk(torch.randn(4, 10)).shape == (4, 16)
    assert isinstance(trunk.net[-1], nn.GELU)


def test_variance_scaling_bound_and_std():
    w = variance_scaling_(torch.empty(400, 600), scale=1e-2)
    limit = math.sqrt(3 * 1e-2 / 500)
    assert w.abs().max() <= limit
    assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)


@pytest.mark.parametrize("out_dim", [4, 1])  # one output: computed as a product and a sum, not a batched matmul
def test_ensemble_linear_matches_separate_layers(out_dim):
    torch.manual_seed(0)
    layer = EnsembleLinear(3, 5, out_dim)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(8, 5)
    out = layer(x)
    assert out.shape == (3, 8, out_dim)
    for e in range(3):
        torch.testing.assert_close(out[e], x @ layer.weight[e] + layer.bias[e])
    per_member = torch.randn(3, 8, 5)
    out = layer(per_member)
    for e in range(3):
        torch.testing.assert_close(out[e], per_member[e] @ layer.weight[e] + layer.bias[e])


def test_ensemble_members_differ_and_match_single_mlp():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(2, 6, (32, 32), 1, layer_norm=True)
    x = torch.randn(16, 6)
    q = ensemble(x)
    assert q.shape == (2, 16, 1)
    assert not torch.allclose(q[0], q[1])  # independent initialisation
    # Member 1 equals a plain MLP with the same weights (LayerNorm affine per member).
    with torch.no_grad():
        for layer in ensemble.net:
            if hasattr(layer, "weight") and layer.weight.dim() == 3:
                layer.weight[1].normal_()
            if hasattr(layer, "bias") and layer.bias is not None:
                layer.bias[1].normal_()
    single = MLP(6, (32, 32), 1, layer_norm=True)
    ensemble_layers = [m for m in ensemble.net if not isinstance(m, nn.GELU)]
    single_layers = [m for m in single.net if not isinstance(m, nn.GELU)]
    with torch.no_grad():
        for ens, sgl in zip(ensemble_layers, single_layers, strict=True):
            if isinstance(sgl, nn.Linear):
                sgl.weight.copy_(ens.weight[1].T)
                sgl.bias.copy_(ens.bias[1, 0])
            else:
                sgl.weight.copy_(ens.weight[1, 0])
                sgl.bias.copy_(ens.bias[1, 0])
    torch.testing.assert_close(ensemble(x)[1], single(x))


def test_ensemble_has_no_python_loop_over_members():
    """One batched matmul per layer: the number of matmul ops does not grow with the ensemble size."""
    from torch.profiler import ProfilerActivity, profile

    def count_mm(members: int) -> int:
        net = EnsembleMLP(members, 4, (8, 8), 2)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            net(torch.randn(3, 4))
        return sum(e.count for e in prof.key_averages() if e.key in ("aten::baddbmm", "aten::bmm", "aten::mm"))

    assert count_mm(2) == count_mm(10) == 3


def test_gaussian_actor_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    obs, actions = torch.randn(5, 7), torch.rand(5, 3) * 1.8 - 0.9
    for std in ("constant", "state"):
        actor = GaussianActor(7, 3, (32, 32), tanh_squash=False, std=std)
        mean, log_std = actor(obs)
        expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
        torch.testing.assert_close(actor.log_prob(obs, actions), expected)
    squashed = GaussianActor(7, 3, (32, 32), tanh_squash=True, std="state")
    mean, log_std = squashed(obs)
    base = torch.distributions.Normal(mean, log_std.exp())
    dist = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    torch.testing.assert_close(squashed.log_prob(obs, actions), dist.log_prob(actions).sum(-1), rtol=1e-4, atol=1e-4)


def test_gaussian_actor_sample_mode_and_std_kinds():
    torch.manual_seed(0)
    obs = torch.randn(4096, 7)
    constant = GaussianActor(7, 2, (16,), std="constant", log_std_init=0.0)
    assert not any(p is constant.log_std for p in constant.parameters())  # fixed, not trained
    actions, log_prob = constant.sample(obs)
    assert actions.shape == (4096, 2) and log_prob.shape == (4096,)
    assert (actions - constant.mode(obs)).std().item() == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="'constant' or 'state'"):
        GaussianActor(7, 2, (16,), std="learned")
    squashed = GaussianActor(7, 2, (16,), tanh_squash=True, std="state")
    actions, log_prob = squashed.sample(obs)
    assert actions.abs().max() <= 1.0
    torch.testing.assert_close(
        log_prob, squashed.log_prob(obs, actions.clamp(-1 + 1e-6, 1 - 1e-6)), rtol=1e-3, atol=1e-3
    )
    # mean head starts small (init scale 1e-2), so the initial deterministic action is near 0
    assert squashed.mode(obs).abs().mean() < 0.1
    with torch.no_grad():
        squashed.log_std_head.bias.fill_(10.0)
    assert squashed(obs)[1].max() == 2.0  # clamped to log_std_max
    with pytest.raises(ValueError, match="std must be"):
        GaussianActor(7, 2, std="bogus")


@pytest.mark.slow
def test_networks_compile_on_cpu():
    torch.manual_seed(0)
    critic = EnsembleMLP(2, 9, (32, 32), 1, layer_norm=True)
    actor = GaussianActor(7, 2, (32, 32), tanh_squash=True, std="state")

    def step(obs, actions):
        q = critic(torch.cat([obs, actor.mode(obs)], -1)).mean()
        return q + actor.log_prob(obs, actions).mean(), actor.sample(obs)[0]

    obs, actions = torch.randn(8, 7), torch.rand(8, 2) - 0.5
    eager, _ = step(obs, actions)
    compiled, sampled = torch.compile(step)(obs, actions)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert sampled.shape == (8, 2) and sampled.abs().max() <= 1.0


def test_call_frozen_passes_gradient_to_inputs_only():
    torch.manual_seed(0)
    critic = EnsembleMLP(2, 3, (8,), 1)
    x = torch.randn(5, 3, requires_grad=True)
    from offrl.networks import call_frozen

    out = call_frozen(critic, x)
    torch.testing.assert_close(out, critic(x))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


@pytest.mark.slow
def test_polyak_update_stays_out_of_autograd_and_compiles_once():
    torch.manual_seed(0)
    online = MLP(3, (8,), 1)
    target = MLP(3, (8,), 1).requires_grad_(False)
    optimizer = torch.optim.SGD(online.parameters(), lr=0.1)
    online_params, target_params = list(online.parameters()), list(target.parameters())

    def step(x):
        loss = online(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        polyak_update_(target_params, online_params, 0.25)

    before = [p.clone() for p in target_params]
    step(torch.randn(4, 3))
    for old, new, source in zip(before, target_params, online_params, strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * source.detach())
        assert not new.requires_grad and new.grad_fn is None  # no autograd chain from step to step
    compiled = torch.compile(step)
    compiled(torch.randn(4, 3))
    with torch.compiler.set_stance("fail_on_recompile"):  # requires_grad of the targets must not flip
        compiled(torch.randn(4, 3))
        compiled(torch.randn(4, 3))


def test_numerics_are_flax_defaults():
    """GELU is the tanh approximation and LayerNorm's epsilon 1e-6, as flax's defaults the reference JAX code uses."""
    torch.manual_seed(0)
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    mlp = MLP(3, (101,), 1, layer_norm=True).double()
    torch.testing.assert_close(mlp.net[1](x), tanh_gelu, rtol=0, atol=1e-12)
    # A row with a small spread: (h - mean) / sqrt(var + eps) tells eps = 1e-6 from torch's 1e-5.
    h = 1e-3 * torch.randn(5, 101, dtype=torch.float64)
    flax_layer_norm = (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-6)
    torch.testing.assert_close(mlp.net[2](h), flax_layer_norm, rtol=0, atol=1e-9)
    ensemble = EnsembleMLP(2, 3, (101,), 1, layer_norm=True).double()
    torch.testing.assert_close(
        ensemble.net[2](h.expand(2, 5, 101)), flax_layer_norm.expand(2, 5, 101), rtol=0, atol=1e-9
    )


@pytest.mark.slow
def test_the_compiled_gelu_is_the_tanh_formula_and_matches_eager_in_float32():
    """Compiled, the tanh GELU is x * sigmoid(2 u): the tanh formula in float64, and the same values and gradients as
    torch's kernel in float32, to rounding."""
    x64 = torch.linspace(-4, 4, 101, dtype=torch.float64)
    tanh_gelu = 0.5 * x64 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
    torch.testing.assert_close(torch.compile(TanhGELU(), dynamic=False)(x64), tanh_gelu, rtol=0, atol=1e-12)
    x = torch.linspace(-8, 8, 4001).requires_grad_(True)
    gelu = TanhGELU()
    eager = gelu(x)
    (eager_grad,) = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(gelu, dynamic=False)(x)
    (compiled_grad,) = torch.autograd.grad(compiled.sum(), x)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-5)
