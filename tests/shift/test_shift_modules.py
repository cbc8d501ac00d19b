"""Shift modules: construction, init, sparsity loss, from_conv, script/trace/compile/export,
quantization and the torchshifts compatibility layer."""

import warnings

import pytest
import torch
from torch import nn

import learnable_ops as lo
from learnable_ops import testing
from learnable_ops.compat import torchshifts as ts

from reference import reference_shift

MODULES = {1: lo.nn.Shift1d, 2: lo.nn.Shift2d, 3: lo.nn.Shift3d}
CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
SIZES = {1: (13,), 2: (11, 13), 3: (7, 9, 10)}


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_forward_is_the_op(ndim):
    layer = MODULES[ndim](4, padding_mode="reflect", mode="active", init_shift=2.0, dtype=torch.float64)
    assert layer.weight.shape == (4, ndim)
    x = torch.randn(2, 4, *SIZES[ndim], dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference_shift(x, layer.weight.detach(), "reflect", "active"))


def test_init_rules_and_reset():
    torch.manual_seed(1)
    layer = lo.nn.Shift2d(4000, init_shift=(3.0, 0.5))
    w = layer.weight.detach()
    assert (w[:, 0].abs() <= 3).all() and (w[:, 1].abs() <= 0.5).all()
    assert w[:, 0].min() < -2.5 and w[:, 0].max() > 2.5 and w[:, 1].max() > 0.45
    sign = lo.nn.Shift2d(4000, init_shift=2.0, init_rule="uniform_sign").weight.detach()
    assert (sign.abs() <= 2).all() and (sign > 0).any() and (sign < 0).any()
    # the sign is drawn per channel and axis, not once for all channels
    assert ((sign[:, 0] > 0) != (sign[:, 1] > 0)).any()
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.weight)


def test_device_dtype_and_repr():
    layer = lo.nn.Shift3d(3, padding_mode="circular", mode="active", sparsity=0.1, device="cpu", dtype=torch.float64)
    assert layer.weight.dtype == torch.float64 and layer.padding_mode == "periodic"
    assert repr(layer) == "Shift3d(3, padding_mode='periodic', mode='active', sparsity=0.1)"


def test_sparsity_loss():
    a, b = lo.nn.Shift2d(3, sparsity=0.5), lo.nn.Shift1d(2, sparsity=0.0)
    assert a.sparsity_loss().item() == pytest.approx(0.5 * a.weight.abs().sum().item())
    model = nn.Sequential(nn.Conv2d(3, 3, 1), a, nn.Sequential(b, lo.nn.Shift2d(3, sparsity=2.0)))
    expected = a.sparsity_loss() + 2.0 * model[2][1].weight.abs().sum()
    total = lo.sparsity_loss(model)
    torch.testing.assert_close(total, expected)
    total.backward()
    torch.testing.assert_close(a.weight.grad, 0.5 * torch.sign(a.weight.detach()))
    assert lo.sparsity_loss(nn.Linear(2, 2)).item() == 0.0


def conv_cases(ndim):
    k3 = (3,) * ndim
    yield dict(kernel_size=3, padding=1)
    yield dict(kernel_size=3, padding=0)
    yield dict(kernel_size=3, padding=2)
    yield dict(kernel_size=5, padding=1, stride=2)
    yield dict(kernel_size=3, padding=1, stride=3, dilation=2)
    yield dict(kernel_size=4, padding="same", dilation=1)
    yield dict(kernel_size=k3, padding="valid", padding_mode="reflect")
    yield dict(kernel_size=3, padding=1, padding_mode="circular")
    yield dict(kernel_size=3, padding=1, padding_mode="replicate", stride=2)
    if ndim >= 2:
        yield dict(kernel_size=(3, 5) + (1,) * (ndim - 2), padding=(1, 0) + (0,) * (ndim - 2))
        yield dict(kernel_size=(1, 3) + (3,) * (ndim - 2), stride=(2, 1) + (1,) * (ndim - 2), dilation=(1, 3) + (1,) * (ndim - 2), padding=(0, 2) + (1,) * (ndim - 2))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_from_conv_reproduces_output_shape(ndim):
    x = torch.randn(2, 4, *SIZES[ndim])
    for kwargs in conv_cases(ndim):
        conv = CONVS[ndim](4, 4, groups=4, **kwargs)
        layer = MODULES[ndim].from_conv(conv, mode="active")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = conv(x).shape
        assert layer(x).shape == expected, kwargs
        k = conv.kernel_size
        bound = torch.tensor([d * (kk // 2) for kk, d in zip(k, conv.dilation)], dtype=torch.float32)
        assert (layer.weight.detach().abs() <= bound).all()
        assert layer.padding_mode == {"zeros": "zeros", "reflect": "reflect", "circular": "periodic", "replicate": "border"}[conv.padding_mode]


def test_from_conv_crop_is_centred_and_stride_pools():
    """k=5, p=1: the conv's output o is centred on input o + 1; stride 2 averages pairs."""
    conv = nn.Conv1d(2, 2, 5, padding=1, groups=2)
    layer = lo.nn.Shift1d.from_conv(conv)
    x = torch.randn(1, 2, 9)
    assert torch.equal(layer(x), lo.shift(x, layer.weight, "zeros")[..., 1:8])
    conv = nn.Conv1d(2, 2, 3, padding=1, stride=2, groups=2)
    layer = lo.nn.Shift1d.from_conv(conv)
    shifted = lo.shift(x, layer.weight, "zeros")
    expected = torch.cat([shifted, shifted[..., -1:]], -1).view(1, 2, 5, 2).mean(-1)
    expected[..., -1] = shifted[..., -1]  # ceil_mode: the last window holds one element
    torch.testing.assert_close(layer(x), expected)
    assert "output_pad" not in repr(layer) and "stride=(2,)" in repr(layer)


def test_from_conv_rejects_non_depthwise():
    with pytest.raises(ValueError, match="depthwise"):
        lo.nn.Shift2d.from_conv(nn.Conv2d(4, 8, 3, groups=4))
    with pytest.raises(ValueError, match="depthwise"):
        lo.nn.Shift2d.from_conv(nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match="2 spatial dimensions"):
        lo.nn.Shift2d.from_conv(nn.Conv1d(4, 4, 3, groups=4))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        lo.nn.Shift2d.from_conv(nn.Linear(4, 4))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        lo.nn.Shift2d.from_conv(nn.ConvTranspose2d(4, 4, 3, groups=4))


def test_module_bad_arguments():
    with pytest.raises(ValueError, match="in_channels"):
        lo.nn.Shift2d(0)
    with pytest.raises(ValueError, match="padding_mode"):
        lo.nn.Shift2d(2, padding_mode="mirror")
    with pytest.raises(ValueError, match="mode"):
        lo.nn.Shift2d(2, mode="bilinear")
    with pytest.raises(ValueError, match="init_rule"):
        lo.nn.Shift2d(2, init_rule="normal")
    with pytest.raises(ValueError, match="init_shift must have 2 entries"):
        lo.nn.Shift2d(2, init_shift=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="init_shift must be finite"):
        lo.nn.Shift2d(2, init_shift=float("inf"))
    with pytest.raises(ValueError, match="sparsity"):
        lo.nn.Shift2d(2, sparsity=-1.0)
    with pytest.raises(ValueError, match="shifts must have shape"):
        lo.nn.Shift2d(3)(torch.randn(1, 4, 5, 5))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
def test_script_trace_compile_export(mode):
    conv = nn.Conv2d(3, 3, 3, padding=2, stride=2, groups=3, padding_mode="reflect")
    layer = lo.nn.Shift2d.from_conv(conv, mode=mode).double()
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    expected = layer(x)
    scripted = torch.jit.script(layer)
    assert torch.equal(scripted(x), expected)
    (gs,) = torch.autograd.grad(scripted(x).sum(), layer.weight)
    (ge,) = torch.autograd.grad(layer(x).sum(), layer.weight)
    assert torch.equal(gs, ge)
    traced = torch.jit.trace(layer, x)
    assert torch.equal(traced(x), expected)
    testing.check_compile(layer, [x])
    exported = torch.export.export(layer, (x.detach(),))
    assert "learnable_ops.shift.default" in exported.graph_module.code
    assert torch.equal(exported.module()(x.detach()), expected.detach())
    plain = lo.nn.Shift3d(2, mode=mode)
    x3 = torch.randn(1, 2, 3, 4, 5)
    assert torch.equal(torch.jit.script(plain)(x3), plain(x3))


class QuantModel(nn.Module):
    def __init__(self, shift):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = nn.Conv2d(3, 3, 1)
        self.shift = shift
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.shift(self.conv(self.quant(x))))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_quantized_convert_of_a_small_model(padding_mode):
    torch.manual_seed(0)
    model = QuantModel(lo.nn.Shift2d(3, padding_mode=padding_mode, init_shift=3.0)).eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    prepared = torch.ao.quantization.prepare(model)
    x = torch.randn(2, 3, 8, 9)
    prepared(x)
    converted = torch.ao.quantization.convert(prepared, mapping=lo.nn.quantized.quant_mapping)
    assert isinstance(converted.shift, lo.nn.quantized.Shift2d)
    q_in = converted.conv(converted.quant(x))
    q_out = converted.shift(q_in)
    assert q_out.q_scale() == q_in.q_scale() and q_out.q_zero_point() == q_in.q_zero_point()
    assert torch.equal(q_out.dequantize(), lo.shift(q_in.dequantize(), model.shift.weight.detach(), padding_mode, "sparse"))
    assert torch.equal(converted(x), q_out.dequantize())


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", [torch.quint8, torch.qint8])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_quantized_kernel_is_an_integer_gather(ndim, dtype):
    x = torch.randn(2, 3, *SIZES[ndim])
    s = torch.tensor([[2.5, -1.5, 7.0], [-0.5, 30.0, 1.49], [1e9, 0.51, -3.0]])[:, :ndim]
    zero_point = 7 if dtype == torch.quint8 else -5
    q = torch.quantize_per_tensor(x, 0.05, zero_point, dtype)
    for padding_mode in lo.PAD_MODES:
        out = lo.shift(q, s, padding_mode, "sparse")
        assert out.dtype == dtype and out.q_scale() == 0.05 and out.q_zero_point() == zero_point
        centred = q.int_repr().double() - zero_point
        expected = lo.shift(centred, s, padding_mode, "sparse") + zero_point
        assert torch.equal(out.int_repr(), expected.to(out.int_repr().dtype))
        assert torch.equal(out.dequantize(), lo.shift(q.dequantize(), s, padding_mode, "sparse"))
    # zeros padding fills the zero point: shift everything out of the input
    out = lo.shift(q, torch.full((3, ndim), 1e6), "zeros", "sparse")
    assert (out.int_repr() == zero_point).all()


@pytest.mark.filterwarnings("ignore")
def test_quantized_from_conv_layer_crops_and_pools():
    layer = lo.nn.Shift2d.from_conv(nn.Conv2d(3, 3, 5, padding=1, stride=2, groups=3))
    q = lo.nn.quantized.Shift2d.from_float(layer)
    assert "stride" not in repr(q) and q.shifts.shape == (3, 2)
    x = torch.quantize_per_tensor(torch.randn(2, 3, 11, 12), 0.02, 128, torch.quint8)
    out = q(x)
    assert out.q_scale() == 0.02 and out.q_zero_point() == 128
    expected = torch.quantize_per_tensor(layer(x.dequantize()), 0.02, 128, torch.quint8)
    assert torch.equal(out.int_repr(), expected.int_repr())


@pytest.mark.filterwarnings("ignore")
def test_quantized_bad_input():
    q = torch.quantize_per_tensor(torch.randn(1, 2, 5), 0.1, 0, torch.quint8)
    with pytest.raises(ValueError, match="sparse"):
        lo.shift(q, torch.zeros(2, 1), "zeros", "active")
    with pytest.raises(ValueError, match="finite"):
        lo.shift(q, torch.tensor([[float("nan")], [0.0]]), "zeros", "sparse")
    with pytest.raises(ValueError, match="only sparse"):
        lo.nn.quantized.Shift2d.from_float(lo.nn.Shift2d(2, mode="active"))
    with pytest.raises(TypeError, match="Shift2d"):
        lo.nn.quantized.Shift2d.from_float(lo.nn.Shift1d(2))


def test_pt2e_export_keeps_the_op():
    """torch 2.13 has no torch.ao PT2E quantizer (it moved to torchao); the exported
    graph keeps our op, which a quantizer can annotate to share the input's qparams."""
    layer = lo.nn.Shift2d(3)
    exported = torch.export.export(layer, (torch.randn(1, 3, 6, 6),))
    targets = [n.target for n in exported.graph.nodes if n.op == "call_function"]
    assert targets == [torch.ops.learnable_ops.shift.default]


class TestCompat:
    def test_forward_returns_out_and_loss(self):
        layer = ts.Shift2d(4, padding="Reflect", sparsity_term=0.5, active_flag=True)
        x = torch.randn(2, 4, 6, 7)
        out, loss = layer(x)
        torch.testing.assert_close(out, lo.shift(x, layer.weight, "reflect", "active"))
        torch.testing.assert_close(loss, 0.5 * layer.weight.abs().sum())
        assert ts.Shift1d(3, sparsity_term=0)(torch.randn(1, 3, 5))[1] is None
        assert ts.Shift3d(2, padding=4).padding_mode == "symmetric"

    def test_emulate_dw_matches_conv_shapes(self):
        x = torch.randn(1, 4, 17, 17)
        for args in (dict(kernel_size=3, padding=1, dilation=2), dict(kernel_size=(3, 5), padding=(1, 0)), dict(kernel_size=3, padding=2), dict(kernel_size=3, stride=2, padding=1)):
            conv = nn.Conv2d(4, 4, groups=4, **args)
            out, _ = ts.Shift2d(4, emulate_dw=dict(args), init_thumb_rule=2)(x)
            assert out.shape == conv(x).shape, args

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="padding"):
            ts.Shift2d(2, padding="mirror")
        with pytest.raises(ValueError, match="init_thumb_rule"):
            ts.Shift2d(2, init_thumb_rule=3)
        with pytest.raises(ValueError, match="kernel_size"):
            ts.Shift2d(2, emulate_dw=dict(padding=1))

    @pytest.mark.filterwarnings("ignore")
    def test_quant_mapping(self):
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.quant = torch.ao.quantization.QuantStub()
                self.shift = ts.Shift2d(3, init_shift=2, active_flag=True)
                self.dequant = torch.ao.quantization.DeQuantStub()

            def forward(self, x):
                out, _ = self.shift(self.quant(x))
                return self.dequant(out)

        model = Model().eval()
        model.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        prepared = torch.ao.quantization.prepare(model)
        x = torch.randn(1, 3, 6, 7)
        prepared(x)
        converted = torch.ao.quantization.convert(prepared, mapping=ts.quant_mapping)
        assert isinstance(converted.shift, ts.QuantizedShift2d)
        q = converted.quant(x)
        out, loss = converted.shift(q)
        assert loss is None
        assert torch.equal(out.dequantize(), lo.shift(q.dequantize(), model.shift.weight.detach(), "zeros", "sparse"))


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_module():
    layer = lo.nn.Shift2d.from_conv(nn.Conv2d(4, 4, 3, padding=1, stride=2, groups=4).cuda(), mode="active")
    assert layer.weight.is_cuda
    x = torch.randn(2, 4, 9, 9, device="cuda", requires_grad=True)
    testing.check_compile(layer, [x], atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.jit.script(layer)(x), layer(x))
