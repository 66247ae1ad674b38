"""Network building blocks shared by the training scripts.

Conventions (those of the FQL authors' JAX code, https://github.com/seohongpark/fql, `utils/networks.py`): hidden
layers are `Linear -> activation [-> LayerNorm]` (LayerNorm after the activation, used by critics and values, not by
actors); weights use variance-scaling(1, fan_avg, uniform)
initialisation, i.e. Xavier/Glorot uniform, and biases start at zero; Gaussian heads start with scale 1e-2.
The numerics are flax's defaults, which that code (and FAN's, and IDQL's LayerNorm) leaves in place: GELU is the tanh
approximation (`flax.linen.gelu(approximate=True)`) and LayerNorm's epsilon is 1e-6 (torch's defaults: exact GELU,
1e-5). With torch's defaults one update differs from the reference's by 5e-5 to 1.5e-3; with these, by < 1e-6.

Shapes: B batch, E ensemble members, D input features, A action dimension.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "LAYER_NORM_EPS",
    "EnsembleLinear",
    "EnsembleMLP",
    "GaussianActor",
    "TanhGELU",
    "call_frozen",
    "eval_mode",
    "gelu",
    "glorot_linear",
    "polyak_update_",
    "variance_scaling_",
]


LAYER_NORM_EPS = 1e-6
"""LayerNorm's epsilon: flax's default (`flax.linen.LayerNorm(epsilon=1e-6)`), torch's is 1e-5."""


def gelu() -> nn.Module:
    """GELU with the tanh approximation, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))): flax's `nn.gelu` default."""
    return TanhGELU()


class TanhGELU(nn.GELU):
    """`nn.GELU(approximate="tanh")`, compiled as x * sigmoid(2 u) with u = sqrt(2 / pi) (x + 0.044715 x^3).

    The same function (0.5 (1 + tanh(u)) = sigmoid(2 u)), rounded differently: Inductor's CPU code evaluates tanh with
    a 1-ULP SLEEF routine, slower than its exp-based sigmoid, and the activations were the largest share of a compiled
    update's own kernels (docs/speed.md). Eager calls keep torch's GELU
    kernel; `approximate="none"` (exact GELU) is computed as `nn.GELU` does.
    """

    def __init__(self) -> None:
        super().__init__(approximate="tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "tanh" and torch.compiler.is_compiling():
            return x * torch.sigmoid(_TWO_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
        return F.gelu(x, approximate=self.approximate)


_TWO_SQRT_2_OVER_PI = 2.0 * math.sqrt(2.0 / math.pi)


def variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Initialise `weight` in place from U(-l, l) with l = sqrt(3 * scale / fan_avg).

    `scale=1` is Xavier/Glorot uniform. Works for a `Linear` weight (out, in) and an ensemble weight (E, in, out):
    fans are read from the last two dimensions, in the layout each layer uses.
    """
    if weight.dim() == 2:  # nn.Linear layout (out, in)
        fan_out, fan_in = weight.shape
    else:  # ensemble layout (E, in, out)
        fan_in, fan_out = weight.shape[-2], weight.shape[-1]
    limit = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        return weight.uniform_(-limit, limit)


def glorot_linear(in_dim: int, out_dim: int, init_scale: float = 1.0) -> nn.Linear:
    """`nn.Linear(in_dim, out_dim)` with variance-scaling(init_scale, fan_avg, uniform) weights and zero biases."""
    layer = nn.Linear(in_dim, out_dim)
    variance_scaling_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """Multi-layer perceptron: `[Linear -> activation (-> LayerNorm)] * len(hidden_dims) -> Linear`.

    Args:
        in_dim: input features D.
        hidden_dims: widths of the hidden layers, e.g. (512, 512, 512, 512).
        out_dim: output features; None ends the network on the last hidden layer (a trunk for separate heads).
        activation: makes the activation module (default `gelu`, the tanh approximation).
        layer_norm: LayerNorm after each hidden activation (critics and values use it; actors do not).
        final_init_scale: variance-scaling factor of the last layer (1e-2 for Gaussian mean heads).

    Input (..., D) -> output (..., out_dim).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int | None,
        activation: Callable[[], nn.Module] = gelu,
        layer_norm: bool = False,
        final_init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden_dims:
            layers += [glorot_linear(dim, width), activation()]
            if layer_norm:
                layers.append(nn.LayerNorm(width, eps=LAYER_NORM_EPS))
            dim = width
        if out_dim is not None:
            layers.append(glorot_linear(dim, out_dim, final_init_scale))
        self.out_dim = dim if out_dim is None else out_dim
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., out_dim) (or (..., hidden_dims[-1]) when out_dim is None)."""
        return self.net(x)


class EnsembleLinear(nn.Module):
    """E independent linear layers evaluated as one batched matrix multiply.

    Weight (E, D, out), bias (E, 1, out). Input (B, D) is shared by all members; input (E, B, D) gives each member
    its own rows. Output (E, B, out).

    A layer with one output (a critic's or value's head) is computed as an elementwise product and a sum over D:
    on CPU, a batched matrix multiply with a single output column, and its backward, ran several times slower than
    that (docs/speed.md).
    """

    def __init__(self, num_members: int, in_dim: int, out_dim: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, out_dim))
        variance_scaling_(self.weight, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) or (E, B, D) -> (E, B, out)."""
        if self.weight.shape[-1] == 1:  # a critic's head: y = x . w + b, as a product and a sum
            return (x * self.weight.transpose(-1, -2)).sum(-1, keepdim=True) + self.bias
        if x.dim() == 2:
            return torch.baddbmm(self.bias, x.expand(self.weight.shape[0], *x.shape), self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with separate affine parameters per ensemble member: (E, B, H)."""

    def __init__(self, num_members: int, dim: int, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num_members, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(E, B, H) -> (E, B, H)."""
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """E MLPs with the same architecture, computed together (no Python loop over members).

    Each hidden layer is `EnsembleLinear -> activation (-> per-member LayerNorm)`. Used for critic ensembles:
    `EnsembleMLP(2, obs_dim + act_dim, (512,) * 4, 1, layer_norm=True)`.

    Input (B, D) (shared) or (E, B, D) -> output (E, B, out_dim).
    """

    def __init__(
        self,
        num_members: int,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: Callable[[], nn.Module] = gelu,
        layer_norm: bool = False,
        final_init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_members = num_members
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden_dims:
            layers += [EnsembleLinear(num_members, dim, width), activation()]
            if layer_norm:
                layers.append(EnsembleLayerNorm(num_members, width))
            dim = width
        layers.append(EnsembleLinear(num_members, dim, out_dim, final_init_scale))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) or (E, B, D) -> (E, B, out_dim)."""
        return self.net(x)


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy pi(a | s), optionally tanh-squashed.

    Args:
        obs_dim, action_dim: S and A.
        hidden_dims: MLP trunk widths (no LayerNorm, as the reference actors).
        tanh_squash: squash samples with tanh (SAC-style actor); log-probabilities include the tanh correction.
        std: "constant" (log-std fixed at `log_std_init`, IQL's actor) or "state" (a head predicts log-std from the
            state, SAC's actor).
        log_std_min, log_std_max: clamp range of the log-std ([-5, 2] as in the FQL code).
        log_std_init: the constant log-std.
        mean_init_scale: variance-scaling factor of the mean (and log-std) head; 1e-2 as in the FQL code.

    `forward(obs)` returns `(mean, log_std)`, each (B, A), before any tanh.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (512, 512, 512, 512),
        tanh_squash: bool = False,
        std: str = "constant",
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        log_std_init: float = 0.0,
        activation: Callable[[], nn.Module] = gelu,
        mean_init_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        if std not in ("constant", "state"):
            raise ValueError(f"std must be 'constant' or 'state', got {std!r}")
        self.tanh_squash = tanh_squash
        self.std = std
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.trunk = MLP(obs_dim, hidden_dims, None, activation)
        self.mean_head = glorot_linear(hidden_dims[-1], action_dim, mean_init_scale)
        if std == "state":
            self.log_std_head = glorot_linear(hidden_dims[-1], action_dim, mean_init_scale)
        else:
            self.register_buffer("log_std", torch.full((action_dim,), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (B, S) -> mean (B, A), log_std (B, A) (pre-tanh)."""
        features = self.trunk(obs)
        mean = self.mean_head(features)
        if self.std == "state":
            log_std = self.log_std_head(features)
        else:
            log_std = self.log_std.expand_as(mean)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample: obs (B, S) -> actions (B, A), log_prob (B,)."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        log_prob = _normal_log_prob(noise, log_std)
        if not self.tanh_squash:
            return pre_tanh, log_prob
        return torch.tanh(pre_tanh), log_prob - _tanh_log_det(pre_tanh)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(actions | obs): obs (B, S), actions (B, A) -> (B,).

        With tanh squashing, actions must lie in (-1, 1) (dataset actions are clipped to +-(1 - 1e-5)).
        """
        mean, log_std = self(obs)
        pre_tanh = torch.atanh(actions) if self.tanh_squash else actions
        log_prob = _normal_log_prob((pre_tanh - mean) / log_std.exp(), log_std)
        if not self.tanh_squash:
            return log_prob
        return log_prob - _tanh_log_det(pre_tanh)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action (the mean, squashed if tanh): obs (B, S) -> (B, A)."""
        mean, _ = self(obs)
        return torch.tanh(mean) if self.tanh_squash else mean


def call_frozen(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """`module(*inputs)` with its parameters treated as constants: gradients reach the inputs, not the module.

    This is how an actor loss uses the online critic (`-Q(s, pi(s))`): the actor learns through the critic's
    input while the critic's parameters get no gradient from it, inside one optimizer step and without toggling
    `requires_grad` (which a compiled update would have to recompile for).
    """
    parameters = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, parameters, inputs)


@torch.no_grad()
def polyak_update_(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], rate: float) -> None:
    """target <- (1 - rate) * target + rate * online, in place, one fused `_foreach_lerp_`, outside autograd.

    The no-grad matters: an in-place lerp toward parameters that require grad would make the target parameters part
    of the autograd graph, which then grows by one node per parameter per step (memory) and, under torch.compile,
    changes their requires_grad after the first step (a recompilation).
    """
    torch._foreach_lerp_(list(target), list(online), rate)


@contextlib.contextmanager
def eval_mode(nets: Mapping[str, nn.Module]) -> Iterator[None]:
    """The networks in eval mode for the block (acting, evaluating), then each back in the mode it had."""
    training = {name: net.training for name, net in nets.items()}
    for net in nets.values():
        net.eval()
    try:
        yield
    finally:
        for name, net in nets.items():
            net.train(training[name])


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _normal_log_prob(standardized: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Sum over A of log N(x; mu, sigma) given z = (x - mu) / sigma: (B, A) -> (B,)."""
    return (-0.5 * standardized.square() - log_std - _LOG_SQRT_2PI).sum(-1)


def _tanh_log_det(pre_tanh: torch.Tensor) -> torch.Tensor:
    """sum_A log(1 - tanh(u)^2), computed stably as 2 (log 2 - u - softplus(-2u)): (B, A) -> (B,)."""
    return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
