"""Making an update fast: `torch.compile`, CUDA graphs, and an optimizer and schedule that fit inside both.

`compiled(fn, ...)` compiles a function of tensors (an update, an acting policy) with `torch.compile` and, with
`--cudagraphs` on CUDA, replays it as one CUDA graph (`CUDAGraphed`). `make_optimizer` sets up a torch optimizer for
it; `CosineDecay` is a learning-rate schedule computed on the device.

What a captured function may do (the rules a modified update must keep). Every tensor it touches keeps its address
between calls: parameters, gradients (`optimizer.zero_grad(set_to_none=False)`), optimizer state
(`make_optimizer`: `capturable=True` on CUDA), the dataset, learning rates held in tensors and changed in place
(`CosineDecay`). It draws random numbers from the device's generator (each replay draws new ones). It never reads a
tensor back to the host (no `.item()`, `float(t)`, `if tensor:`) and makes no Python decision that changes between
calls; batch sizes are constant. It returns detached metrics, which the next call overwrites. The train_*.py updates
are written that way; tests/test_cudagraphs.py checks them on CUDA.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["WARMUP_CALLS", "CUDAGraphed", "CosineDecay", "FusedAdamStep", "compiled", "make_optimizer", "warmup_calls"]


def compiled(fn: Callable, enabled: bool, cudagraphs: bool, device: torch.device, name: str = "update") -> Callable:
    """`fn` (a function of tensors: an update, an acting policy) compiled by `torch.compile` when `enabled`; with
    `cudagraphs` on CUDA, also replayed as one CUDA graph.

    `cudagraphs` wraps the (compiled or eager) function in `CUDAGraphed`: after a few ordinary calls the whole call
    (forward, backward, optimizer step, target update) is captured once and then replayed with a single launch, which
    removes the per-kernel launch cost that dominates small RL networks. CUDA graphs need CUDA: on another device the
    flag is ignored with a warning. `warmup_calls(result)` tells how many first calls compile or capture.
    """
    if cudagraphs and device.type != "cuda":
        warnings.warn(f"--cudagraphs needs a CUDA device; ignored on {device.type}", stacklevel=2)
        cudagraphs = False
    if enabled:
        fn = torch.compile(fn, dynamic=False, options={"fallback_random": _aten_random_numbers(device)})
    return CUDAGraphed(fn, name=name) if cudagraphs else fn


def _aten_random_numbers(device: torch.device) -> bool:
    """Whether a compiled update on `device` draws its random numbers with ATen's generator (`fallback_random`).

    On CPU it does: Inductor's own CPU generator computes each number with a scalar Philox call inside the kernels
    that use it (again in each kernel that reads it), which cost FQL's compiled 2 x 64 update about a tenth of its
    time; ATen fills each tensor with one vectorized call, and draws the same numbers as an eager update would from the
    same state. Under `fallback_random` torch 2.13 merges identical `randn_like` calls into one tensor (its graph
    simplification does not count `randn_like` among the random operations it must keep apart; FQL's three noises
    became one): they are added to that list here, and where the list is not found, Inductor's generator is kept.
    tests/test_runs.py checks that FQL's compiled noises differ. On CUDA Inductor's generator is kept (fused, fast).
    """
    if device.type == "cuda":
        return False
    from torch._functorch import compile_utils  # noqa: PLC0415

    kept_apart = getattr(compile_utils, "rand_ops", None)
    if not isinstance(kept_apart, list):
        return False
    for op in (torch.ops.aten.randn_like, torch.ops.aten.rand_like, torch.ops.aten.randint_like):
        if op not in kept_apart:
            kept_apart.append(op)
    return True


WARMUP_CALLS = 3
"""The most first calls of a `compiled` function that compile or capture (a `CUDAGraphed`'s two ordinary calls and
its capture): a run times its first `WARMUP_CALLS` steps apart from training."""


def warmup_calls(update: Callable) -> int:
    """How many first calls of a `compiled` result compile or capture (timed apart from training): 1, or the
    warm-up calls plus the capturing call of a `CUDAGraphed`."""
    return getattr(update, "warmup_calls", 1)


class CUDAGraphed:
    """Call `fn(*tensors)` through a CUDA graph: ordinary calls first, then one capture, then replays.

    For each signature of the positional tensor arguments (shapes, dtypes, devices): the first `warmup` calls run
    `fn` normally on a side stream (compilation, lazy optimizer state and cuBLAS workspaces happen there, as capture
    requires); the next call captures `fn` into a `torch.cuda.CUDAGraph` and replays it; every later call copies its
    arguments into the graph's static input buffers and replays. A replay re-runs every kernel of the captured call
    (compiled or eager, the backward pass and the optimizer step included) from one CPU call.

    A function is safe to capture when every tensor it touches keeps its address between calls (parameters, gradients
    kept with `zero_grad(set_to_none=False)`, optimizer state with `capturable=True`, the dataset, learning rates
    held in tensors and changed in place), it draws random numbers from the CUDA generator (graph-safe: each replay
    draws new ones), never reads a tensor back to the host, and makes no Python decision that changes between calls.
    The train_*.py updates are written that way.

    The returned tensors are the graph's static outputs: the next call overwrites them, so read (or clone) them first.
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = 2, name: str = "update") -> None:
        self.fn, self.warmup, self.name = fn, warmup, name
        self.warmup_calls = warmup + 1
        self._ordinary_calls: dict[tuple, int] = {}
        self._graphs: dict[tuple, tuple[list[torch.Tensor], Any, torch.cuda.CUDAGraph]] = {}

    def __call__(self, *args: torch.Tensor) -> Any:
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        graph = self._graphs.get(key)
        if graph is None:
            calls = self._ordinary_calls.get(key, 0)
            if calls < self.warmup:
                self._ordinary_calls[key] = calls + 1
                return self._side_stream_call(args)
            graph = self._graphs[key] = self._capture(args)
        static_inputs, static_outputs, cuda_graph = graph
        for buffer, value in zip(static_inputs, args, strict=True):
            buffer.copy_(value)
        cuda_graph.replay()
        return static_outputs

    def _side_stream_call(self, args: tuple[torch.Tensor, ...]) -> Any:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            outputs = self.fn(*args)
        torch.cuda.current_stream().wait_stream(stream)
        return outputs

    def _capture(self, args: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], Any, torch.cuda.CUDAGraph]:
        static_inputs = [a.clone() for a in args]
        cuda_graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        try:
            with torch.cuda.graph(cuda_graph):
                static_outputs = self.fn(*static_inputs)
        except RuntimeError as error:
            raise RuntimeError(
                f"capturing the {self.name} in a CUDA graph failed: {error}\nRun without --cudagraphs (the "
                "compiled update is unaffected), and please report this with the command that produced it."
            ) from error
        return static_inputs, static_outputs, cuda_graph


def make_optimizer(
    optimizer_type: type[torch.optim.Optimizer],
    param_groups: Sequence[Mapping[str, Any]],
    device: torch.device,
    **options: Any,
) -> torch.optim.Optimizer:
    """An optimizer set up for a compiled update on `device`; the update calls a plain `optimizer.step()`.

    Each group's learning rate is held in a tensor (`group["lr"]`), so a schedule changes it in place without
    recompiling the update, and a resume keeps that tensor (`load_checkpoint` copies the saved value into it).
    CUDA: `capturable=True`, so the step counts live on the GPU and the step can run inside torch.compile's graph and
    CUDA graphs. CPU: `fused=True`, one fused kernel over all parameters (the default is a Python loop over the
    parameter tensors, several times slower at 4 x 512 sizes: about 14 ms against 3 ms per step for IQL's 3.2M
    parameters), run eagerly even inside a compiled update (`torch.compiler.disable`): torch.compile's traced version
    of the CPU step was slower than the fused kernel it replaces (IQL on 2 CPU cores: 14.5 against 19.4 updates/s).

    param_groups: `[{"params": [...], "lr": 3e-4, ...}, ...]`, as torch.optim takes them.
    """
    groups = [{**group, "lr": torch.tensor(float(group["lr"]), device=device)} for group in param_groups]
    device_options = {"capturable": True} if device.type == "cuda" else {"fused": True}
    optimizer = optimizer_type(groups, **device_options, **options)
    if device.type != "cuda":
        step = FusedAdamStep(optimizer) if isinstance(optimizer, torch.optim.Adam) else optimizer.step
        optimizer.step = torch.compiler.disable(step)
    return optimizer


class FusedAdamStep:
    """`optimizer.step()` for a fused CPU `Adam` or `AdamW`: torch's own fused kernel (`torch._fused_adam_`, the one
    `Adam.step` ends in), called on tensor lists gathered once instead of at every step.

    `Adam.step` walks every parameter in Python (its gradient, its state, its step count), then groups the lists by
    device and dtype, before the one kernel call: at small widths that costs more than the kernel (FQL at 2 x 64 on
    one core: `python -m offrl.tools.bench --profile fql`). The first step, and any step after the lists stop holding
    (a gradient set to None or replaced, parameters added, a loaded state dict, a closure), goes through `Adam.step`
    and gathers the lists again; every other step computes what `Adam.step` computes, bit for bit
    (tests/test_compile.py).
    """

    def __init__(self, optimizer: torch.optim.Adam) -> None:
        self.optimizer = optimizer
        self.torch_step = optimizer.step
        self.lists: list[dict[str, Any]] | None = None
        optimizer.register_load_state_dict_post_hook(self._forget)

    def _forget(self, optimizer: torch.optim.Optimizer) -> None:
        self.lists = None

    def __call__(self, closure: Callable[[], Any] | None = None) -> Any:
        if closure is not None or not self._lists_hold():
            result = self.torch_step(closure)
            self.lists = self._gather()
            return result
        with torch.no_grad():
            for group, lists in zip(self.optimizer.param_groups, self.lists, strict=True):
                if not lists["params"]:
                    continue
                beta1, beta2 = group["betas"]
                kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
                torch._foreach_add_(lists["steps"], 1)
                kernel(
                    lists["params"], lists["grads"], lists["exp_avgs"], lists["exp_avg_sqs"],
                    lists["max_exp_avg_sqs"], lists["steps"], amsgrad=group["amsgrad"], lr=group["lr"],
                    beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"], grad_scale=None, found_inf=None,
                )  # fmt: skip
        return None

    def _gather(self) -> list[dict[str, Any]] | None:
        """Each group's parameters that have a gradient and state, with their gradients, moments and step counts."""
        lists = []
        for group in self.optimizer.param_groups:
            if not group.get("fused") or group.get("differentiable") or "decoupled_weight_decay" not in group:
                return None
            if any(isinstance(beta, torch.Tensor) for beta in group["betas"]):
                return None
            params = [p for p in group["params"] if p.grad is not None and p in self.optimizer.state]
            states = [self.optimizer.state[p] for p in params]
            lists.append(
                {
                    "all_params": list(group["params"]),
                    "all_grads": [p.grad for p in group["params"]],
                    "params": params,
                    "grads": [p.grad for p in params],
                    "exp_avgs": [state["exp_avg"] for state in states],
                    "exp_avg_sqs": [state["exp_avg_sq"] for state in states],
                    "max_exp_avg_sqs": [state["max_exp_avg_sq"] for state in states] if group["amsgrad"] else [],
                    "steps": [state["step"] for state in states],
                }
            )
        return lists

    def _lists_hold(self) -> bool:
        """Whether every group still has the same parameters, each with the same gradient tensor (or none) as when
        the lists were gathered."""
        if self.lists is None or len(self.lists) != len(self.optimizer.param_groups):
            return False
        for group, lists in zip(self.optimizer.param_groups, self.lists, strict=True):
            params = group["params"]
            if len(params) != len(lists["all_params"]):
                return False
            for param, known, grad in zip(params, lists["all_params"], lists["all_grads"], strict=True):
                if param is not known or param.grad is not grad:
                    return False
        return True


class CosineDecay(torch.nn.Module):
    """Cosine decay of one optimizer group's learning rate to 0 over `total_steps`, computed on the device.

    Calling it (inside the update, after `optimizer.step()`) counts one step k and sets
    lr <- lr0 * (1 + cos(pi * min(k, K) / K)) / 2 in place: no host sync, no recompilation, safe in a CUDA graph.
    The step count is a buffer, so the schedule goes into the checkpoint (`Agent.state`) and a resume continues it
    (loading it sets the learning rate that its step implies).
    """

    def __init__(self, group: dict[str, Any], initial_lr: float, total_steps: int) -> None:
        super().__init__()
        self.lr = group["lr"]  # the optimizer's own tensor, changed in place
        self.initial_lr, self.total_steps = initial_lr, total_steps
        self.register_buffer("step_count", torch.zeros((), device=self.lr.device))

    def forward(self) -> None:
        self.step_count += 1
        self._set_lr()

    def _set_lr(self) -> None:
        progress = self.step_count.clamp(max=self.total_steps) / self.total_steps
        self.lr.copy_(self.initial_lr * 0.5 * (1.0 + torch.cos(math.pi * progress)))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Restore the step count and set the learning rate it implies (with this run's initial lr)."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        with torch.no_grad():
            self._set_lr()
        return result
