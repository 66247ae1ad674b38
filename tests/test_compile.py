"""offrl.compile: the optimizer a compiled update steps."""

import pytest
import torch

from offrl.compile import make_optimizer

CPU = torch.device("cpu")


def _params(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in [(7, 5), (5,), (3, 7), (3,)]]


@pytest.mark.parametrize(
    ("optimizer_type", "options"),
    [(torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.01}), (torch.optim.Adam, {"amsgrad": True})],
)
def test_the_cpu_step_equals_torch_adam_bit_for_bit(monkeypatch, optimizer_type, options):
    """make_optimizer's CPU step (lists gathered once) against torch's fused Adam.step, two groups, over steps that
    keep the lists, replace a gradient, leave a parameter without one, and load a state dict."""
    torch_steps = []
    torch_step = optimizer_type.step
    monkeypatch.setattr(optimizer_type, "step", lambda self, closure=None: torch_steps.append(1) or torch_step(self))
    ours, reference = _params(0), _params(0)
    groups = lambda params: [{"params": params[:2], "lr": 1e-2}, {"params": params[2:], "lr": 3e-3}]  # noqa: E731
    optimizer = make_optimizer(optimizer_type, groups(ours), CPU, **options)
    expected = optimizer_type(  # make_optimizer holds each learning rate in a tensor
        [{**group, "lr": torch.tensor(group["lr"])} for group in groups(reference)], fused=True, **options
    )
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        if step == 5:  # a gradient set to None (the parameter skipped), then a new gradient tensor
            ours[3].grad = reference[3].grad = None
        if step == 8:
            optimizer.load_state_dict(optimizer.state_dict())
        for ours_param, reference_param in zip(ours, reference, strict=True):
            if step == 5 and ours_param is ours[3]:
                continue
            grad = torch.randn(ours_param.shape, generator=generator)
            for param in (ours_param, reference_param):
                if param.grad is None:
                    param.grad = grad.clone()
                else:
                    param.grad.copy_(grad)
        optimizer.step()
        expected.step()
        for ours_param, reference_param in zip(ours, reference, strict=True):
            assert torch.equal(ours_param, reference_param), step
            for key, value in expected.state[reference_param].items():
                assert torch.equal(optimizer.state[ours_param][key], value), (step, key)
    # torch's step: the first, the one with a gradient gone, the one after it got a new one, the one after loading
    assert len(torch_steps) - 12 == 4
