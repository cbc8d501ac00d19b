"""Eager and PT2E quantization of converted models."""

import pathlib
import sys

import pytest
import torch
from torch import nn

from learnable_ops import quantization
from learnable_ops.convert import convert

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import model_zoo  # noqa: E402


def float_model(target=None, **kwargs):
    torch.manual_seed(0)
    model = model_zoo.QuantizableMobileNetV2Stack().eval()
    if target is not None:
        model_zoo.require(target)
        assert convert(model, target, **kwargs).num_replaced == 3
    return model


def data(n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 12, 12, generator=gen)


def calibrate(model):
    for batch in data(64, seed=1).split(16):
        model(batch)


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_quant_mapping_extends_torch_defaults():
    from learnable_ops.nn import Shift1d, Shift2d, Shift3d
    from learnable_ops.nn import quantized as qnn

    defaults = torch.ao.quantization.get_default_static_quant_module_mappings()
    mapping = quantization.quant_mapping
    assert all(mapping[k] is v for k, v in defaults.items())
    assert mapping[Shift1d] is qnn.Shift1d and mapping[Shift2d] is qnn.Shift2d and mapping[Shift3d] is qnn.Shift3d
    assert quantization.get_quant_mapping() == mapping and quantization.get_quant_mapping() is not mapping


def test_sparse_shifts_become_quantized_shifts():
    from learnable_ops.nn import quantized as qnn

    model = float_model("shift")
    x = data()
    expected = model(x)
    quantized = quantization.quantize(model, calibrate)
    assert sum(isinstance(m, qnn.Shift2d) for m in quantized.modules()) == 3
    assert sum(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in quantized.modules()) == 6
    assert not any(isinstance(m, quantization.FloatFallback) for m in quantized.modules())
    out = quantized(x)
    assert relative_error(out, expected) < 0.1
    # the model passed in is untouched
    assert not any(isinstance(m, qnn.Shift2d) for m in model.modules())


def test_quantized_shift_equals_the_float_shift_of_its_dequantized_input():
    from learnable_ops.nn import quantized as qnn

    quantized = quantization.quantize(float_model("shift"), calibrate)
    seen = []
    for m in quantized.modules():
        if isinstance(m, qnn.Shift2d):
            m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0], out)))
    quantized(data())
    assert len(seen) == 3
    for module, q_in, q_out in seen:
        assert q_out.q_scale() == q_in.q_scale() and q_out.q_zero_point() == q_in.q_zero_point()
        reference = torch.ops.learnable_ops.shift(q_in.dequantize(), module.shifts, module.padding_mode, "sparse")
        if not module._output_pad and not module._stride:
            torch.testing.assert_close(q_out.dequantize(), reference, atol=0, rtol=0)


@pytest.mark.parametrize("target,kwargs", [("dcls", {}), ("dcls", {"version": "gauss"}), ("shift", {"mode": "active"}), ("diffconv", {})])
def test_layers_without_integer_kernels_run_in_float(target, kwargs):
    model = float_model(target, **kwargs)
    x = data()
    expected = model(x)
    prepared = quantization.prepare(model)
    assert len([m for m in prepared.modules() if isinstance(m, quantization.FloatFallback)]) == 3
    calibrate(prepared)
    quantized = quantization.convert(prepared)
    fallbacks = [m for m in quantized.modules() if isinstance(m, quantization.FloatFallback)]
    assert len(fallbacks) == 3
    assert all(isinstance(f.quant, torch.ao.nn.quantized.Quantize) for f in fallbacks)
    assert all(isinstance(f.dequant, torch.ao.nn.quantized.DeQuantize) for f in fallbacks)
    assert sum(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in quantized.modules()) == 6
    assert relative_error(quantized(x), expected) < 0.1


def test_wrap_float_layers_leaves_sparse_shifts_alone():
    model_zoo.require("dcls")
    model = float_model("shift")
    convert(model, "dcls", filter_fn=lambda m, n: n == "stem.0")
    assert quantization.wrap_float_layers(model) == ["stem.0"]
    assert quantization.wrap_float_layers(model) == []
    x = data()
    torch.testing.assert_close(model(x), model(x))


def test_bad_input():
    with pytest.raises(ValueError, match="backend='tpu' is not a quantized engine"):
        quantization.prepare(float_model(), backend="tpu")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        quantization.prepare("model")


def test_pt2e_unavailable_is_explained(monkeypatch):
    monkeypatch.setattr(quantization, "_pt2e", lambda: None)
    assert not quantization.pt2e_available()
    with pytest.raises(RuntimeError, match="install torchao"):
        quantization.quantize_pt2e(nn.Conv2d(1, 1, 1), (torch.randn(1, 1, 2, 2),), lambda m: None)


class ShiftNet(nn.Module):
    """A float model for PT2E (no stubs needed): conv, depthwise conv, pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv_dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.pw(self.conv_dw(self.relu(self.conv(x))))
        return self.head(x.mean((2, 3)))


@pytest.mark.skipif(not quantization.pt2e_available(), reason="PT2E needs torchao on torch 2.13")
def test_pt2e_quantizes_around_the_shift():
    model_zoo.require("shift")
    torch.manual_seed(0)
    model = ShiftNet().eval()
    convert(model, "shift")
    x = data()
    expected = model(x)
    quantized = quantization.quantize_pt2e(model, (x,), calibrate)
    shifts = [n for n in quantized.graph.nodes if n.op == "call_function" and "learnable_ops.shift" in str(n.target)]
    assert len(shifts) == 1
    # the shift consumes a dequantized tensor and its output is quantized with the same parameters
    source, user = shifts[0].args[0], next(iter(shifts[0].users))
    assert "dequantize_per_tensor" in str(source.target) and "quantize_per_tensor" in str(user.target)
    assert source.args[1:3] == user.args[1:3]
    assert relative_error(quantized(x), expected) < 0.1
