"""DiffConv2d's layout op `diff_conv2d_pad_layout`: the polynomial pad (or its adjoint,
the fold) with the result in NCHW or channels_last, which the padded path uses on CUDA to
hand cuDNN channels_last tensors.

``diffconv_layout_emulation.cpp`` compiles the CUDA kernel bodies of
``cuda/diffconv_layout.cuh`` with the host compiler and replays every thread of every
block; those tests compare it, in float64, with the pad op and its backward for both
directions, every pair of layouts, several orders and dilations, tiles cut at the channel
and column edges, and transposes (padding 0). The op itself is checked on the CPU against
the pad op, with opcheck, and on CUDA against the CPU."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("diffconv_layout_emulation.cpp")
layout_op = torch.ops.learnable_ops.diff_conv2d_pad_layout.default


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffconv_layout")
    return testing.compile_kernel_emulator(SOURCE, out, [ROOT / "cpp" / "include", ROOT / "cuda"])


def to_layout(t, channels_last):
    return t.permute(0, 2, 3, 1).contiguous() if channels_last else t.contiguous()


def from_layout(flat, shape, channels_last):
    n, c, h, w = shape
    t = torch.from_numpy(flat)
    return t.view(n, h, w, c).permute(0, 3, 1, 2) if channels_last else t.view(n, c, h, w)


def emulate(binary, src, adjoint, src_cl, dst_cl, padding, order, dilation, precision="f64", rows="narrow",
            copy_only=False):
    n, c, h, w = src.shape
    ph, pw = padding[0] * dilation[0], padding[1] * dilation[1]
    if adjoint:
        h, w = h - 2 * ph, w - 2 * pw
    dst_shape = (n, c, h + 2 * ph, w + 2 * pw) if not adjoint else (n, c, h, w)
    args = [str(binary), "fold" if adjoint else "pad", "nhwc" if src_cl else "nchw", "nhwc" if dst_cl else "nchw"]
    args += [str(v) for v in (n, c, h, w, ph, pw, *order, *dilation)] + [precision, rows]
    args += ["copy"] if copy_only else []
    data = to_layout(src.double(), src_cl).numpy().tobytes()
    result = subprocess.run(args, input=data, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    return from_layout(np.frombuffer(result.stdout, dtype=np.float64).copy(), dst_shape, dst_cl)


def reference(src, adjoint, padding, order, dilation):
    ph, pw = padding[0] * dilation[0], padding[1] * dilation[1]
    pads = [pw, pw, ph, ph]
    if not adjoint:
        return lo.pad(src, pads, "polynomial", order=list(order), dilation=list(dilation))
    n, c, hp, wp = src.shape
    return torch.ops.learnable_ops.pad_backward(
        src, [n, c, hp - 2 * ph, wp - 2 * pw], pads, "polynomial", list(order), list(dilation)
    )


# (N, C, H, W), padding (in kernel rows, before dilation), order, dilation: channel and
# column counts that cut tiles (33, 70), K = 3, 5, 7, 9, 31, lower orders, dilation 2,
# images of exactly the nodes, transposes (padding 0).
CASES = [
    ((2, 3, 9, 10), (1, 1), (2, 2), (1, 1)),
    ((1, 33, 12, 40), (2, 2), (4, 4), (1, 1)),
    ((1, 5, 7, 70), (3, 1), (6, 2), (1, 1)),
    ((2, 4, 9, 9), (4, 4), (8, 8), (1, 1)),
    ((1, 2, 31, 33), (15, 15), (30, 30), (1, 1)),
    ((1, 3, 11, 14), (1, 3), (1, 3), (1, 1)),
    ((1, 3, 12, 13), (2, 1), (2, 2), (2, 3)),
    ((2, 40, 5, 6), (0, 0), (0, 0), (1, 1)),
    ((1, 3, 6, 37), (0, 2), (0, 4), (1, 1)),
]


@pytest.mark.parametrize("rows", ["narrow", "wide"])
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("src_cl,dst_cl", [(False, True), (True, False), (False, False), (True, True)])
@pytest.mark.parametrize("shape,padding,order,dilation", CASES)
def test_emulated_kernels_equal_the_pad_op(emulator, shape, padding, order, dilation, adjoint, src_cl, dst_cl, rows):
    # rows: blocks of kRowsWide destination rows (the default launch) or of one
    # (LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS=1).
    gen = torch.Generator().manual_seed(sum(shape))
    if adjoint:
        shape = (shape[0], shape[1], shape[2] + 2 * padding[0] * dilation[0], shape[3] + 2 * padding[1] * dilation[1])
    src = torch.randn(shape, generator=gen, dtype=torch.float64)
    got = emulate(emulator, src, adjoint, src_cl, dst_cl, padding, order, dilation, rows=rows)
    torch.testing.assert_close(got, reference(src, adjoint, padding, order, dilation), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("rows", ["narrow", "wide"])
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("src_cl,dst_cl", [(False, True), (True, False), (False, False), (True, True)])
@pytest.mark.parametrize("shape,padding,order,dilation", CASES)
def test_emulated_copy_only_kernels_copy_the_image_part(emulator, shape, padding, order, dilation, adjoint, src_cl,
                                                       dst_cl, rows):
    # copy_only axes (the split layout pass, LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT=1): the pad
    # writes the image into the middle of the padded tensor, the adjoint copies the middle out.
    gen = torch.Generator().manual_seed(sum(shape) + 2)
    ph, pw = padding[0] * dilation[0], padding[1] * dilation[1]
    if adjoint:
        shape = (shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw)
    src = torch.randn(shape, generator=gen, dtype=torch.float64)
    got = emulate(emulator, src, adjoint, src_cl, dst_cl, padding, order, dilation, rows=rows, copy_only=True)
    if adjoint:
        torch.testing.assert_close(got, src[:, :, ph : shape[2] - ph, pw : shape[3] - pw], atol=0, rtol=0)
    else:
        torch.testing.assert_close(got[:, :, ph : ph + shape[2], pw : pw + shape[3]], src, atol=0, rtol=0)


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("src_cl,dst_cl", [(False, True), (True, False)])
@pytest.mark.parametrize("shape,padding,order,dilation", [c for c in CASES if max(c[2]) <= 6])
def test_emulated_float32_kernels_equal_the_pad_op(emulator, shape, padding, order, dilation, adjoint, src_cl, dst_cl):
    # The float32 instantiation with blocks of kRowsWide<float> rows (4, against 2 for double).
    gen = torch.Generator().manual_seed(sum(shape) + 1)
    if adjoint:
        shape = (shape[0], shape[1], shape[2] + 2 * padding[0] * dilation[0], shape[3] + 2 * padding[1] * dilation[1])
    src = torch.randn(shape, generator=gen, dtype=torch.float64).float().double()
    got = emulate(emulator, src, adjoint, src_cl, dst_cl, padding, order, dilation, "f32", "wide")
    want = reference(src, adjoint, padding, order, dilation)
    torch.testing.assert_close(got, want, atol=1e-5 * want.abs().max().item(), rtol=1e-5)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape,padding,order,dilation", CASES[:4] + CASES[6:8])
def test_op_equals_the_pad_op(monkeypatch, shape, padding, order, dilation, adjoint, channels_last, split):
    # split: LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT=1 (the default), a plain layout copy plus
    # the ring passes in place (learnable_ops/diffconv_fold.h), in either layout; 0: the
    # one-pass kernels (CUDA) or the pad op plus a layout copy (CPU).
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT", "1" if split else "0")
    gen = torch.Generator().manual_seed(1)
    if adjoint:
        shape = (shape[0], shape[1], shape[2] + 2 * padding[0] * dilation[0], shape[3] + 2 * padding[1] * dilation[1])
    src = torch.randn(shape, generator=gen, dtype=torch.float64)
    wider = torch.zeros(*shape[:3], shape[3] + 1, dtype=torch.float64)
    wider[..., : shape[3]] = src
    # NCHW, channels_last, and a view that is dense in neither layout.
    for source in (src, src.contiguous(memory_format=torch.channels_last), wider[..., : shape[3]]):
        absolute = [p * d for p, d in zip(padding, dilation)]
        before = source.clone()
        got = layout_op(source, absolute, list(order), list(dilation), adjoint, channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert got.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(got, reference(src, adjoint, padding, order, dilation), atol=1e-12, rtol=1e-12)
        assert torch.equal(source, before)  # the split adjoint folds a copy, not its input


@pytest.mark.parametrize("split", ["0", "1"])
def test_opcheck(monkeypatch, split):
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT", split)
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    for adjoint, channels_last in ((False, True), (True, False)):
        src = x if not adjoint else torch.randn(2, 3, 11, 12, dtype=torch.float64)
        testing.check_opcheck(layout_op, (src, [1, 1], [2, 2], [1, 1], adjoint, channels_last))


def test_bad_arguments():
    x = torch.randn(2, 3, 9, 10)
    with pytest.raises(ValueError, match="input"):
        layout_op(x[0], [1, 1], [2, 2], [1, 1], False, True)
    with pytest.raises(ValueError, match="padding"):
        layout_op(x, [-1, 1], [2, 2], [1, 1], False, True)
    with pytest.raises(ValueError, match="smaller than the padding"):
        layout_op(x[:, :, :1], [1, 1], [0, 0], [1, 1], True, False)
    with pytest.raises(TypeError, match="floating"):
        layout_op(x.long(), [1, 1], [2, 2], [1, 1], False, True)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("shape,padding,order,dilation", CASES)
def test_cuda_equals_cpu(monkeypatch, shape, padding, order, dilation, adjoint, channels_last, dtype, split):
    # split: the CUDA op with LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT=1 (copy kernel plus ring
    # passes) against the CPU op without it.
    if dtype != torch.float64 and max(order) > 8:
        pytest.skip("order 30's weights reach 1e8: only float64 resolves them")
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT", "0")
    gen = torch.Generator().manual_seed(2)
    if adjoint:
        shape = (shape[0], shape[1], shape[2] + 2 * padding[0] * dilation[0], shape[3] + 2 * padding[1] * dilation[1])
    src = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    for source in (src, src.contiguous(memory_format=torch.channels_last)):
        absolute = [p * d for p, d in zip(padding, dilation)]
        want = layout_op(source, absolute, list(order), list(dilation), adjoint, channels_last)
        monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT", "1" if split else "0")
        got = layout_op(source.cuda(), absolute, list(order), list(dilation), adjoint, channels_last)
        monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT", "0")
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert got.is_contiguous(memory_format=fmt)
        tol = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 2e-2}[dtype]
        scale = max(1.0, want.double().abs().max().item())
        torch.testing.assert_close(got.cpu().double(), want.double(), atol=tol * scale, rtol=tol)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("groups,stride", [(1, (1, 1)), (1, (2, 1)), (2, (1, 1))])
def test_cuda_padded_path_hands_cudnn_channels_last(monkeypatch, groups, stride):
    """Dense and grouped layers on CUDA: the padded path pads straight into channels_last
    (and folds back from it), with the same values as the CPU and as the NCHW route."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 20, 24, dtype=torch.float64, generator=gen)
    w = torch.randn(6, 8 // groups, 5, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(6, dtype=torch.float64, generator=gen)
    fn = lambda x, w, b: lo.diff_conv2d(x, w, b, stride=stride, groups=groups)  # noqa: E731
    testing.check_cpu_cuda(fn, [t.requires_grad_() for t in (x, w, b)], atol=1e-9, rtol=1e-9)
    xc, wc, bc = (t.detach().cuda().requires_grad_() for t in (x, w, b))
    y, kernels = testing.cuda_kernels(lambda: fn(xc, wc, bc))
    assert any("pad_layout_kernel" in k for k in kernels), kernels
    assert y.is_contiguous()
    grads = torch.autograd.grad(y, [xc, wc, bc], torch.ones_like(y))
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST", "0")
    y0, kernels = testing.cuda_kernels(lambda: fn(xc, wc, bc))
    assert not any("pad_layout_kernel" in k for k in kernels), kernels
    torch.testing.assert_close(y0, y, atol=1e-9, rtol=1e-9)
    for got, want in zip(torch.autograd.grad(y0, [xc, wc, bc], torch.ones_like(y0)), grads):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("switch", [None, "0"])
def test_cuda_padded_backward_opcheck_both_routes(monkeypatch, switch):
    """The padded backward's input gradient is a new NCHW tensor on the channels_last route
    and a view of the folded padded gradient otherwise; the fake mirrors both."""
    if switch is not None:
        monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST", switch)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64, generator=gen).cuda()
    w = torch.randn(6, 4, 3, 5, dtype=torch.float64, generator=gen).cuda()
    g = torch.randn(2, 6, 9, 10, dtype=torch.float64, generator=gen).cuda()
    back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
    testing.check_opcheck(back, (g, x, w, [1, 1], [1, 1], 1, [2, 4], [True, True, True]))
    grad_input = back(g, x, w, [1, 1], [1, 1], 1, [2, 4], [True, False, False])[0]
    assert grad_input.is_contiguous() == (switch is None)
    testing.check_opcheck(layout_op, (x, [1, 2], [2, 4], [1, 1], False, True))
    testing.check_opcheck(layout_op, (x.contiguous(memory_format=torch.channels_last), [0, 0], [0, 0], [1, 1], True, False))


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_layout_pad_switch(monkeypatch):
    """LEARNABLE_OPS_DIFFCONV_LAYOUT_PAD=1: the NCHW padded input of the padded path (here a
    depthwise layer) from the layout op's kernel; the same values."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 8, 20, 24, dtype=torch.float64, generator=gen).cuda().requires_grad_()
    w = torch.randn(8, 1, 5, 5, dtype=torch.float64, generator=gen).cuda().requires_grad_()
    y = lo.diff_conv2d(x, w, groups=8)
    grads = torch.autograd.grad(y, [x, w], torch.ones_like(y))
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_PAD", "1")
    y1, kernels = testing.cuda_kernels(lambda: lo.diff_conv2d(x, w, groups=8))
    assert any("pad_layout_kernel" in k for k in kernels), kernels
    torch.testing.assert_close(y1, y, atol=1e-10, rtol=1e-10)
    for a, b in zip(torch.autograd.grad(y1, [x, w], torch.ones_like(y1)), grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_layout_split_switch(monkeypatch, dtype):
    """LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT (on by default): the channels_last route's pad and
    fold as a plain layout copy plus the ring passes in place, against the one-pass layout
    kernels (=0); the same values and gradients, and opcheck."""
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT", "0")
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 40, 21, 37, dtype=torch.float64, generator=gen).to("cuda", dtype).requires_grad_()
    w = torch.randn(8, 40, 3, 5, dtype=torch.float64, generator=gen).to("cuda", dtype).requires_grad_()
    b = torch.randn(8, dtype=torch.float64, generator=gen).to("cuda", dtype).requires_grad_()
    y = lo.diff_conv2d(x, w, b)
    grads = torch.autograd.grad(y, [x, w, b], torch.ones_like(y))
    monkeypatch.delenv("LEARNABLE_OPS_DIFFCONV_LAYOUT_SPLIT")  # the default
    y1, kernels = testing.cuda_kernels(lambda: lo.diff_conv2d(x, w, b))
    assert any("in_place_kernel" in k for k in kernels), kernels
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(y1, y, atol=tol, rtol=tol)
    for got, want in zip(torch.autograd.grad(y1, [x, w, b], torch.ones_like(y1)), grads):
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    if dtype == torch.float64:
        back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
        g = torch.randn_like(y1)
        testing.check_opcheck(back, (g, x.detach(), w.detach(), [1, 1], [1, 1], 1, [2, 4], [True, True, True]))


def _copy_pad_case(device, dtype, groups, stride):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 6, 19, 23, dtype=torch.float64, generator=gen).to(device, dtype).requires_grad_()
    w = torch.randn(6, 6 // groups, 7, 5, dtype=torch.float64, generator=gen).to(device, dtype).requires_grad_()
    b = torch.randn(6, dtype=torch.float64, generator=gen).to(device, dtype).requires_grad_()
    return x, w, b, lambda: lo.diff_conv2d(x, w, b, stride=stride, groups=groups, dilation=(1, 2))


@pytest.mark.parametrize("groups,stride", [(1, 2), (6, 2), (3, (2, 1))])
def test_copy_pad_switch(monkeypatch, groups, stride):
    """LEARNABLE_OPS_DIFFCONV_COPY_PAD=1: the padded path's NCHW pad as a strided copy plus the
    ring passes in place; the same values and gradients (the CPU's padded path: stride > 1)."""
    x, w, b, run = _copy_pad_case("cpu", torch.float64, groups, stride)
    y = run()
    grads = torch.autograd.grad(y, [x, w, b], torch.ones_like(y))
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_COPY_PAD", "1")
    y1 = run()
    torch.testing.assert_close(y1, y, atol=1e-11, rtol=1e-11)
    for got, want in zip(torch.autograd.grad(y1, [x, w, b], torch.ones_like(y1)), grads):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-11)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("groups,stride", [(1, 1), (6, 1), (1, 2)])
def test_cuda_copy_pad_switch(monkeypatch, groups, stride):
    """The same on CUDA, where the NCHW route (dense 7x7, depthwise layers) pads at stride 1."""
    x, w, b, run = _copy_pad_case("cuda", torch.float64, groups, stride)
    y = run()
    grads = torch.autograd.grad(y, [x, w, b], torch.ones_like(y))
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_COPY_PAD", "1")
    y1, kernels = testing.cuda_kernels(run)
    assert any("in_place_kernel" in k for k in kernels), kernels
    torch.testing.assert_close(y1, y, atol=1e-10, rtol=1e-10)
    for got, want in zip(torch.autograd.grad(y1, [x, w, b], torch.ones_like(y1)), grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
