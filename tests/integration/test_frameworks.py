"""Converted models under torch.compile, torch.export, state_dict round trips across devices,
deterministic algorithms and bf16 autocast."""

import io
import pathlib
import sys

import pytest
import torch

from learnable_ops import testing
from learnable_ops.convert import convert

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import model_zoo  # noqa: E402

CONFIGS = list(model_zoo.CONFIGS)
# every family in every dimension it supports
CASES = [(c, m) for c in CONFIGS for m in ("convnext_stage", "audio_convnet", "video_block") if not (c == "diffconv" and m != "convnext_stage")]


def converted(config: str, name: str, dtype=torch.float64, seed: int = 0):
    model_zoo.require_config(config)
    target, kwargs = model_zoo.CONFIGS[config]
    model, x = model_zoo.build(name, dtype=dtype, seed=seed)
    report = convert(model, target, **kwargs)
    assert report.num_replaced > 0
    return model, x


def outputs_and_grads(model, x):
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.square().sum().backward()
    grads = [p.grad.clone() if p.grad is not None else None for p in model.parameters()]
    return out.detach(), x.grad.clone(), grads


@pytest.mark.parametrize("config", CONFIGS)
def test_compile_parity_without_graph_breaks(config):
    model, x = converted(config, "convnext_stage")
    model.train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, gx, grads = outputs_and_grads(model, x)
    cout, cgx, cgrads = outputs_and_grads(compiled, x)
    torch.testing.assert_close(cout, out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(cgx, gx, atol=1e-10, rtol=1e-10)
    for a, b in zip(cgrads, grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    torch._dynamo.reset()


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("config", CONFIGS)
def test_compile_inductor_cuda(config):
    model, x = converted(config, "convnext_stage", dtype=torch.float32)
    model, x = model.cuda().train(), x.cuda()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    out, gx, grads = outputs_and_grads(model, x)
    cout, cgx, cgrads = outputs_and_grads(compiled, x)
    torch.testing.assert_close(cout, out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cgx, gx, atol=1e-4, rtol=1e-4)
    for a, b in zip(cgrads, grads):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    torch._dynamo.reset()


@pytest.mark.parametrize("config,name", CASES)
def test_export(config, name):
    model, x = converted(config, name)
    exported = torch.export.export(model, (x,))
    names = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert names
    torch.testing.assert_close(exported.module()(x), model(x), atol=1e-12, rtol=1e-12)
    other = torch.randn_like(x)
    torch.testing.assert_close(exported.module()(other), model(other), atol=1e-12, rtol=1e-12)


def _round_trip(config: str, source: str, destination: str):
    model, x = converted(config, "convnext_stage", dtype=torch.float32)
    model.to(source)
    with torch.no_grad():  # make the state differ from a fresh conversion
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh, _ = converted(config, "convnext_stage", dtype=torch.float32, seed=1)
    fresh.to(destination)
    fresh.load_state_dict(torch.load(buffer, map_location=destination))
    assert all(p.device.type == destination for p in fresh.parameters())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x.to(destination)).cpu(), model(x.to(source)).cpu(), atol=1e-5, rtol=1e-5)
    for (n, a), (_, b) in zip(fresh.state_dict().items(), model.state_dict().items()):
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=0, rtol=0, msg=n)


@pytest.mark.parametrize("config", CONFIGS)
def test_state_dict_round_trip_cpu(config):
    _round_trip(config, "cpu", "cpu")


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("source,destination", [("cpu", "cuda"), ("cuda", "cpu")])
def test_state_dict_round_trip_across_devices(config, source, destination):
    _round_trip(config, source, destination)


@pytest.mark.parametrize("device", testing.devices())
@pytest.mark.parametrize("config", CONFIGS)
def test_deterministic_algorithms(config, device):
    model, x = converted(config, "convnext_stage", dtype=torch.float32)
    model, x = model.to(device).train(), x.to(device)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = outputs_and_grads(model, x)
        second = outputs_and_grads(model, x)
    finally:
        torch.use_deterministic_algorithms(before)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    for a, b in zip(first[2], second[2]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("config,name", CASES)
def test_autocast_bf16_cpu(config, name):
    model, x = converted(config, name, dtype=torch.float32)
    model.train()
    reference = model(x)
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == reference.shape
    assert torch.isfinite(out.float()).all()
    scale = reference.abs().max()
    assert (out.float() - reference).abs().max() <= 0.1 * scale + 0.05
    out.float().square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("config,name", CASES)
def test_meta_device_forward(config, name):
    """A converted model on the meta device (shape inference, deferred initialisation) runs its
    forward to the same output shape as on the CPU; the autocast check of Dcls and DiffConv2d
    used to raise on meta tensors."""
    model, x = converted(config, name, dtype=torch.float32)
    expected = model(x).shape
    model.to("meta")
    out = model(x.to("meta"))
    assert out.device.type == "meta" and out.shape == expected
