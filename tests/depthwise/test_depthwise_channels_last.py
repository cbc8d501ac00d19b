"""depthwise_conv2d on channels_last input on the CPU: the kernels vectorised over channels
(cpp/depthwise_nhwc.cpp: forward and weight gradient), with a channels_last result, as
F.conv2d gives.

Shapes cover channel counts off the vector width (tails of 1 to 7 channels), kernels wider
than the plane, strides, asymmetric and over-wide padding; the input gradient of stride 1 runs
the same kernel with the taps flipped, other strides the NCHW adjoint laid out channels_last."""

import random

import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing


def reference(x, w, b, stride, padding):
    top, bottom, left, right = padding
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride, groups=x.shape[1])


def channels_last(t):
    return t.detach().to(memory_format=torch.channels_last).requires_grad_()


def is_strictly_channels_last(t):
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def sampled_cases(count, seed=0):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        c = rng.choice([1, 3, 5, 8, 13, 16, 24, 37])
        h, w = rng.randint(1, 15), rng.randint(1, 15)
        kh, kw = rng.randint(1, 17), rng.randint(1, 17)
        sh, sw = rng.choice([1, 2]), rng.choice([1, 2, 3])
        pad = tuple(rng.randint(0, k) for k in (kh, kh, kw, kw))
        if h + pad[0] + pad[1] >= kh and w + pad[2] + pad[3] >= kw:
            cases.append((c, h, w, kh, kw, (sh, sw), pad, rng.random() < 0.5))
    return cases


@pytest.mark.parametrize("c,h,w,kh,kw,stride,pad,bias", sampled_cases(40))
def test_matches_reference_with_gradients(c, h, w, kh, kw, stride, pad, bias):
    x = channels_last(torch.randn(2, c, h, w, dtype=torch.float64))
    k = torch.randn(c, 1, kh, kw, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c, dtype=torch.float64, requires_grad=True) if bias else None
    out = lo.depthwise_conv2d(x, k, b, stride, pad)
    ref = reference(x, k, b, stride, pad)
    torch.testing.assert_close(out, ref)
    # A layout-preserving op: channels_last in, channels_last out (where the two differ).
    if is_strictly_channels_last(x) and ref.is_contiguous(memory_format=torch.channels_last):
        assert out.is_contiguous(memory_format=torch.channels_last)
    go = torch.randn_like(ref).to(memory_format=torch.channels_last)
    inputs = [t for t in (x, k, b) if t is not None]
    for got, want in zip(torch.autograd.grad(out, inputs, go), torch.autograd.grad(ref, inputs, go)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_lower_precision(dtype):
    x = torch.randn(2, 21, 14, 14).to(memory_format=torch.channels_last)
    k, b = torch.randn(21, 1, 7, 7), torch.randn(21)
    ref = reference(x.to(dtype).double(), k.to(dtype).double(), b.to(dtype).double(), (1, 1), (3, 3, 3, 3))
    out = lo.depthwise_conv2d(x.to(dtype), k.to(dtype), b.to(dtype), 1, 3)
    assert out.dtype == dtype and is_strictly_channels_last(out)
    tol = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-2, 1e-2), torch.bfloat16: (0.1, 2e-2)}[dtype]
    torch.testing.assert_close(out.double(), ref, atol=tol[0], rtol=tol[1])


@pytest.mark.parametrize("stride,padding", [(1, "same"), (2, (1, 2, 0, 3))])
def test_gradcheck_and_gradgradcheck(stride, padding):
    x = channels_last(torch.randn(1, 10, 6, 7, dtype=torch.float64))
    k = torch.randn(10, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(10, dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda x, w, b: lo.depthwise_conv2d(x, w, b, stride, padding), [x, k, b], gradgrad=True)


def test_opcheck_forward_and_input_gradient():
    """The fake kernels give the CPU kernels' layout (opcheck compares strides)."""
    x = channels_last(torch.randn(2, 9, 7, 8, dtype=torch.float64))
    w = torch.randn(9, 3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, dtype=torch.float64, requires_grad=True)
    ops = torch.ops.learnable_ops
    testing.check_opcheck(ops.depthwise_conv2d.default, (x, w, b, [1, 1], [1, 1, 2, 2]))
    testing.check_opcheck(ops.depthwise_conv2d.default, (x, w, b, [1, 2], [1, 1, 2, 2]))
    for stride, wo in (([1, 1], 8), ([1, 2], 4)):
        go = channels_last(torch.randn(2, 9, 7, wo, dtype=torch.float64))
        testing.check_opcheck(ops.depthwise_conv2d_backward_input.default, (go, w, [2, 9, 7, 8], stride, [1, 1, 2, 2]))
        assert is_strictly_channels_last(ops.depthwise_conv2d_backward_input.default(go, w, [2, 9, 7, 8], stride, [1, 1, 2, 2]))
        # The weight gradient reads both channels_last (cpp/depthwise_nhwc.cpp), bias sum or not.
        for bias_grad in (True, False):
            args = (go, x, [3, 5], stride, [1, 1, 2, 2], bias_grad)
            testing.check_opcheck(ops.depthwise_conv2d_backward_weight.default, args)
            gw, gb = ops.depthwise_conv2d_backward_weight.default(*args)
            gw_nchw, gb_nchw = ops.depthwise_conv2d_backward_weight.default(
                go.contiguous(), x.contiguous(), *args[2:]
            )
            torch.testing.assert_close(gw, gw_nchw)
            torch.testing.assert_close(gb, gb_nchw)


def test_compile_fullgraph():
    x = channels_last(torch.randn(2, 12, 9, 8, dtype=torch.float64))
    k = torch.randn(12, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    testing.check_compile(lambda x, w: lo.depthwise_conv2d(x.sin(), w) * 2, [x, k])


def test_thread_count_independent():
    x = channels_last(torch.randn(3, 27, 23, 19))
    k, b = torch.randn(27, 1, 9, 7, requires_grad=True), torch.randn(27, requires_grad=True)
    testing.check_thread_independence(lambda x, w, b: lo.depthwise_conv2d(x, w, b), [x, k, b])
    testing.check_thread_independence(lambda x, w, b: lo.depthwise_conv2d(x, w, b, 2, 3), [x, k, b])


def test_layers_on_channels_last_input():
    """DiffConv2d (depthwise, on our depthwise ops) and a depthwise Dcls2d give the NCHW results."""
    x = torch.randn(2, 16, 12, 12, dtype=torch.float64)
    xc = x.to(memory_format=torch.channels_last)
    diff = lo.nn.DiffConv2d(16, 16, 5, groups=16, dtype=torch.float64)
    strided = lo.nn.DiffConv2d(16, 16, 3, stride=2, groups=16, dtype=torch.float64)
    dcls = lo.nn.Dcls2d(16, 16, kernel_count=5, dilated_kernel_size=9, padding=4, groups=16, dtype=torch.float64)
    for layer in (diff, strided, dcls):
        torch.testing.assert_close(layer(xc), layer(x))
        go = torch.randn_like(layer(x))
        a, b = x.clone().requires_grad_(), xc.clone().requires_grad_()
        ga = torch.autograd.grad(layer(a), [a, *layer.parameters()], go)
        gb = torch.autograd.grad(layer(b), [b, *layer.parameters()], go)
        for got, want in zip(gb, ga):
            torch.testing.assert_close(got, want)
