"""offrl.compile.CUDAGraphed: warm-up, one capture per input signature, replays; and `compiled`'s wiring.

On CPU the CUDA calls are replaced by a recording stand-in, which checks the bookkeeping (what runs when, which
buffers the graph reads and returns). With CUDA, the real capture is checked against eager updates, and every script
trains with --cudagraphs.
"""

import contextlib
import copy
import json

import pytest
import torch

from offrl.compile import CUDAGraphed, compiled, warmup_calls
from tests.helpers import run_script

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class FakeCUDA:
    """Stands in for torch.cuda's graph and stream calls and records them. In a real capture the kernels are only
    recorded, not run; here the captured function runs once, which is enough to check the bookkeeping."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.capturing = False
        fake = self

        class Graph:
            def replay(self) -> None:
                fake.events.append("replay")

        class Stream:
            def wait_stream(self, other) -> None:
                pass

        self.CUDAGraph, self.Stream = Graph, Stream

    def current_stream(self):
        return self.Stream()

    @contextlib.contextmanager
    def stream(self, stream):
        self.events.append("side-stream")
        yield

    @contextlib.contextmanager
    def graph(self, cuda_graph):
        self.events.append("capture")
        self.capturing = True
        try:
            yield
        finally:
            self.capturing = False

    def synchronize(self) -> None:
        pass

    def install(self, monkeypatch) -> None:
        for name in ("CUDAGraph", "Stream", "current_stream", "stream", "graph", "synchronize"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))


def test_warmup_then_one_capture_then_replays(monkeypatch):
    fake = FakeCUDA()
    fake.install(monkeypatch)
    seen = []

    def fn(x):
        seen.append((x, fake.capturing))
        return {"double": 2 * x}

    graphed = CUDAGraphed(fn, warmup=2)
    assert warmup_calls(graphed) == 3
    first, second = torch.ones(3), torch.full((3,), 2.0)
    assert torch.equal(graphed(first)["double"], 2 * first)  # warm-up: ordinary calls on a side stream
    graphed(second)
    assert fake.events == ["side-stream", "side-stream"] and [s[0] for s in seen] == [first, second]

    third = torch.full((3,), 3.0)
    outputs = graphed(third)  # captures (fn runs once, into static buffers), then replays
    assert fake.events[2:] == ["capture", "replay"]
    static_input, captured = seen[-1]
    assert captured and static_input is not third and torch.equal(static_input, third)

    fourth = torch.full((3,), 4.0)
    again = graphed(fourth)  # a replay: fn is not called, the argument is copied into the static buffer
    assert len(seen) == 3 and fake.events[-1] == "replay"
    assert torch.equal(static_input, fourth) and again is outputs  # the same static outputs every replay

    graphed(torch.ones(5))  # a new shape: its own warm-up (then its own capture)
    assert fake.events[-1] == "side-stream" and len(seen) == 4 and not seen[-1][1]


def test_a_failed_capture_says_how_to_go_on(monkeypatch):
    fake = FakeCUDA()
    fake.install(monkeypatch)

    def fn():
        if fake.capturing:
            raise RuntimeError("operation not permitted when stream is capturing")
        return torch.zeros(())

    graphed = CUDAGraphed(fn, warmup=1)
    graphed()
    with pytest.raises(RuntimeError, match="(?s)capturing the update in a CUDA graph failed.*without --cudagraphs"):
        graphed()


def test_compiled_wiring_on_cpu():
    def fn():
        return torch.ones(())

    with pytest.warns(UserWarning, match="--cudagraphs needs a CUDA device"):
        plain = compiled(fn, False, True, torch.device("cpu"))
    assert plain is fn and warmup_calls(plain) == 1
    assert warmup_calls(compiled(fn, True, False, torch.device("cpu"))) == 1


def _tiny_regression(device):
    """A deterministic full-batch update (MLP, Adam, Polyak target), the shape of the scripts' updates."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.LayerNorm(32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    net = net.to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=torch.tensor(1e-2, device=device), capturable=True)
    x = torch.randn(256, 4, device=device)
    y = x.sum(-1, keepdim=True).sin()

    def update():
        loss = (net(x) + 0.1 * target(x) - y).square().mean()
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), 0.05)
        return {"loss": loss.detach()}

    return net, update


@needs_cuda
def test_graph_replays_match_eager_updates():
    eager_net, eager_update = _tiny_regression("cuda")
    graph_net, graph_update = _tiny_regression("cuda")
    graphed = CUDAGraphed(graph_update)
    for _ in range(20):
        eager_loss = eager_update()["loss"].item()
        graph_loss = graphed()["loss"].item()
        assert graph_loss == pytest.approx(eager_loss, rel=1e-4, abs=1e-6)
    for a, b in zip(eager_net.parameters(), graph_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert eager_loss < 0.5 * _tiny_regression("cuda")[1]()["loss"].item()  # it learned


@needs_cuda
def test_replays_draw_new_random_numbers():
    graphed = CUDAGraphed(lambda: {"indices": torch.randint(1_000_000, (64,), device="cuda")})
    draws = [graphed()["indices"].clone() for _ in range(6)]
    assert all(not torch.equal(a, b) for a, b in zip(draws[2:], draws[3:], strict=False))


@pytest.mark.slow
@needs_cuda
@pytest.mark.parametrize("script", ["train_iql.py", "train_sacbc.py", "train_fql.py", "train_fan.py", "train_idql.py"])
def test_scripts_train_with_cudagraphs(script, minari_dir, tmp_path):
    from tests.test_scripts import tiny

    run_dir = tmp_path / "run"
    run_script(
        script, "--env-name", "test/pendulum/random-v0", "--dataset-dir", str(minari_dir), "--device", "cuda",
        "--compile", "--cudagraphs", "--total-steps", "20", "--log-every", "5", "--eval-every", "10",
        "--run-dir", str(run_dir), *tiny(script),
    )  # fmt: skip
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["final_step"] == 20
