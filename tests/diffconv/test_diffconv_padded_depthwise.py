"""The padded path of diff_conv2d (polynomial pad + valid convolution, the `diff_conv2d`
op) runs the valid convolution of depthwise layers, forward and both gradients, on our
depthwise ops (learnable_ops::depthwise_conv2d and its backward ops) for strides 1 and 2,
and on ATen's convolutions otherwise (dilation, grouped but not depthwise, larger
strides). Checked against the transformed-kernel definition in float64, by the ops the
dispatcher ran, and on CUDA against the CPU and by the kernels that ran."""

import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

from test_diffconv import reference
from test_diffconv_ring_depthwise import depthwise, ops_run

padded = torch.ops.learnable_ops.diff_conv2d.default

OURS = {
    "learnable_ops::depthwise_conv2d",
    "learnable_ops::depthwise_conv2d_backward_input",
    "learnable_ops::depthwise_conv2d_backward_weight",
}


def padded_path(x, w, b, stride=(1, 1), dilation=(1, 1), order=None):
    kh, kw = w.shape[2:]
    order = order or (kh - 1, kw - 1)
    return padded(x, w, b, None, None, list(stride), list(dilation), x.shape[1], list(order), True)


# (input shape, kernel size, stride, order): odd and even sizes against the stride, an
# image exactly K, rectangular kernels, no ring along one axis, a lower order.
CASES = [
    ((2, 3, 9, 10), (3, 3), (1, 1), None),
    ((2, 3, 9, 10), (3, 3), (2, 2), None),
    ((1, 2, 5, 5), (5, 5), (2, 2), None),
    ((2, 4, 12, 13), (5, 3), (1, 2), None),
    ((1, 3, 11, 14), (3, 7), (2, 1), (2, 3)),
    ((1, 2, 15, 17), (7, 1), (2, 2), (3, 0)),
    ((1, 2, 9, 9), (9, 9), (1, 1), None),
]


def pad_then_conv(x, w, b, stride, order):
    """The pad op (its own autograd) plus F.conv2d: the padded path written out."""
    kh, kw = w.shape[2:]
    order = order or (kh - 1, kw - 1)
    poly = lo.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), "polynomial", order=list(order))
    return torch.nn.functional.conv2d(poly, w, b, stride=stride, groups=x.shape[1])


@pytest.mark.parametrize("shape_x,kernel_size,stride,order", CASES)
def test_native_padded_path_equals_pad_then_conv(shape_x, kernel_size, stride, order):
    x, w, b = depthwise(shape_x, kernel_size, seed=shape_x[2] + kernel_size[0])
    fn = lambda x, w, b: padded_path(x, w, b, stride, order=order)  # noqa: E731
    testing.assert_matches_reference(
        fn, lambda x, w, b: pad_then_conv(x, w, b, stride, order), [x, w, b], atol=1e-9, rtol=1e-9
    )
    if order is None:
        c = shape_x[1]
        testing.assert_matches_reference(
            fn, lambda x, w, b: reference(x, w, b, stride=stride, groups=c), [x, w, b], atol=1e-9, rtol=1e-9
        )
    ran = ops_run(lambda: fn(x, w, b).sum().backward())
    assert OURS <= ran and not any("convolution" in name for name in ran), ran


@pytest.mark.parametrize("stride,dilation", [((3, 3), (1, 1)), ((1, 1), (2, 2))])
def test_other_layers_keep_aten(stride, dilation):
    x, w, b = depthwise((1, 3, 14, 15), (3, 3))
    ran = ops_run(lambda: padded_path(x, w, b, stride, dilation).sum().backward())
    assert not ran & OURS and "aten::convolution" in ran, ran
    testing.assert_matches_reference(
        lambda x, w, b: padded_path(x, w, b, stride, dilation),
        lambda x, w, b: reference(x, w, b, stride=stride, dilation=dilation, groups=3),
        [x, w, b],
        atol=1e-9,
        rtol=1e-9,
    )


def test_gradcheck_stride_2():
    x, w, b = depthwise((1, 2, 7, 8), (3, 5), seed=5)
    assert torch.autograd.gradcheck(lambda x, w, b: padded_path(x, w, b, (2, 2)), (x, w, b))


def test_only_some_gradients():
    x, w, b = depthwise((2, 3, 9, 10), (3, 3), seed=7)
    g = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    want = torch.autograd.grad(reference(x, w, b, stride=(2, 2), groups=3), [x, w, b], g)
    for i in range(3):
        got = torch.autograd.grad(padded_path(x, w, b, (2, 2)), [(x, w, b)[i]], g)[0]
        torch.testing.assert_close(got, want[i], atol=1e-9, rtol=1e-9)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("shape_x,kernel_size,stride,order", CASES)
def test_cuda_native_padded_path_equals_cpu(shape_x, kernel_size, stride, order):
    x, w, b = depthwise(shape_x, kernel_size, seed=shape_x[2])
    testing.check_cpu_cuda(lambda x, w, b: padded_path(x, w, b, stride, order=order), [x, w, b], atol=1e-9, rtol=1e-9)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_padded_depthwise_runs_our_kernels_only():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 64, 64, device="cuda", requires_grad=True)
    w = (torch.randn(16, 1, 3, 3, device="cuda") / 3).requires_grad_()
    b = torch.randn(16, device="cuda", requires_grad=True)

    def forward_backward():
        y = padded_path(x, w, b)
        return y, torch.autograd.grad(y, [x, w, b], torch.ones_like(y))

    forward_backward()
    torch.cuda.synchronize()
    (y, grads), kernels = testing.cuda_kernels(forward_backward)
    assert any("tap_forward_kernel" in k for k in kernels), kernels
    assert not any("conv_depthwise2d" in k for k in kernels), kernels
    want = torch.nn.functional.conv2d(lo.pad(x, (1, 1, 1, 1), "polynomial", order=[2, 2]), w, b, groups=16)
    torch.testing.assert_close(y, want, atol=1e-4, rtol=1e-4)
