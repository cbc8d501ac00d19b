import random

import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing
from learnable_ops.ops.depthwise import _padding4, same_padding


def reference(x, w, b, stride, padding):
    """F.conv2d on an explicitly padded input (handles asymmetric 'same')."""
    w4 = w if w.dim() == 4 else w.unsqueeze(1)
    s = (stride, stride) if isinstance(stride, int) else tuple(stride)
    top, bottom, left, right = _padding4(padding, tuple(w4.shape[2:]), s)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w4, b, s, groups=x.shape[1])


def make(n, c, h, w, kh, kw, dtype=torch.float64, bias=True):
    x = torch.randn(n, c, h, w, dtype=dtype, requires_grad=True)
    k = torch.randn(c, 1, kh, kw, dtype=dtype, requires_grad=True)
    b = torch.randn(c, dtype=dtype, requires_grad=True) if bias else None
    return x, k, b


@pytest.mark.parametrize("k", range(1, 32))
def test_every_square_size_same_padding(k):
    x, w, b = make(1, 2, k + 2, k + 5, k, k)
    testing.assert_matches_reference(
        lambda x, w, b: lo.depthwise_conv2d(x, w, b), lambda x, w, b: reference(x, w, b, 1, "same"), [x, w, b]
    )


def test_sampled_sizes_strides_paddings():
    rng = random.Random(5)
    for _ in range(24):
        kh, kw = rng.randint(1, 31), rng.randint(1, 31)
        stride = rng.choice([1, 2, (1, 2), (2, 1)])
        padding = rng.choice(
            ["valid", rng.randint(0, 4), (rng.randint(0, 5), rng.randint(0, 5)), tuple(rng.randint(0, 6) for _ in range(4))]
            + (["same"] if stride == 1 else [])
        )
        top, bottom, left, right = _padding4(padding, (kh, kw), (1, 1))
        h = max(kh - top - bottom, 1) + rng.randint(0, 6)
        w = max(kw - left - right, 1) + rng.randint(0, 6)
        x, k, b = make(2, 3, h, w, kh, kw, bias=rng.random() < 0.5)
        args = [x, k] + ([b] if b is not None else [])
        testing.assert_matches_reference(
            lambda x, k, *b: lo.depthwise_conv2d(x, k, b[0] if b else None, stride, padding),
            lambda x, k, *b: reference(x, k, b[0] if b else None, stride, padding),
            args,
        )


@pytest.mark.parametrize(
    "h,w,kh,kw,stride,padding",
    [
        (7, 7, 17, 17, 1, "same"),  # ConvNeXt stage 4: only the central 13x13 taps reach the plane
        (3, 9, 17, 5, 1, "same"),  # cropped along H only
        (5, 4, 23, 31, 2, (11, 12, 15, 15)),  # stride 2, asymmetric padding
        (2, 2, 9, 9, 1, (8, 0, 0, 8)),  # one-sided: taps cropped on one side of each axis
        (1, 1, 31, 31, 1, "same"),  # a single pixel: only the centre tap
    ],
)
def test_taps_that_only_read_padding(h, w, kh, kw, stride, padding):
    # The ops skip kernel rows and columns that multiply zero padding for every output;
    # values and gradients are unchanged and those taps' weight gradients are exactly 0.
    x, k, b = make(2, 3, h, w, kh, kw)
    testing.assert_matches_reference(
        lambda x, k, b: lo.depthwise_conv2d(x, k, b, stride, padding),
        lambda x, k, b: reference(x, k, b, stride, padding),
        [x, k, b],
    )
    top, bottom, left, right = _padding4(padding, (kh, kw), (stride, stride))
    ho = (h + top + bottom - kh) // stride + 1
    wo = (w + left + right - kw) // stride + 1
    lo.depthwise_conv2d(x, k, b, stride, padding).square().sum().backward()
    u = torch.arange(kh)
    v = torch.arange(kw)
    rows = (u >= max(0, top - (ho - 1) * stride)) & (u <= h - 1 + top)
    cols = (v >= max(0, left - (wo - 1) * stride)) & (v <= w - 1 + left)
    assert rows.sum() < kh or cols.sum() < kw
    dead = ~(rows[:, None] & cols[None, :])
    assert (k.grad[:, 0][:, dead] == 0).all()
    assert (k.grad[:, 0][:, ~dead] != 0).any()
    # Skipped, not multiplied by zero: inf in an unreachable tap gives no NaN (F.conv2d gives NaN).
    k2 = k.detach().clone()
    k2[:, 0][:, dead] = float("inf")
    torch.testing.assert_close(
        lo.depthwise_conv2d(x.detach(), k2, None, stride, padding), reference(x.detach(), k.detach(), None, stride, padding)
    )


def test_same_padding_even_kernel_puts_extra_cell_bottom_right():
    assert same_padding((4, 7)) == (1, 2, 3, 3)
    x = torch.randn(1, 2, 9, 10, dtype=torch.float64)
    w = torch.randn(2, 1, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(lo.depthwise_conv2d(x, w), F.conv2d(x, w, padding="same", groups=2))


def test_kernel_without_singleton_axis_and_1d():
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64)
    w = torch.randn(3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(lo.depthwise_conv2d(x, w, padding=2), reference(x, w.unsqueeze(1), None, 1, 2))
    x1 = torch.randn(2, 3, 20, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(3, 1, 7, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(
        lambda x, w: lo.depthwise_conv1d(x, w, stride=2, padding=3),
        lambda x, w: F.conv1d(x, w, stride=2, padding=3, groups=3),
        [x1, w1],
    )
    testing.assert_matches_reference(
        lambda x, w: lo.depthwise_conv1d(x, w), lambda x, w: F.conv1d(x, w, padding="same", groups=3), [x1, w1]
    )


@pytest.mark.parametrize("stride,padding", [(1, "same"), (2, (1, 2, 0, 3))])
def test_gradcheck_and_gradgradcheck(stride, padding):
    x, w, b = make(1, 2, 6, 7, 3, 4)
    testing.check_gradcheck(lambda x, w, b: lo.depthwise_conv2d(x, w, b, stride, padding), [x, w, b], gradgrad=True)


def test_opcheck_forward_and_backward_ops():
    x, w, b = make(2, 3, 7, 8, 3, 5)
    ops = torch.ops.learnable_ops
    testing.check_opcheck(ops.depthwise_conv2d.default, (x, w.squeeze(1), b, [1, 2], [1, 1, 2, 2]))
    go = torch.randn(2, 3, 7, 4, dtype=torch.float64, requires_grad=True)
    w3 = w.detach().squeeze(1).requires_grad_()
    testing.check_opcheck(ops.depthwise_conv2d_backward_input.default, (go, w3, [2, 3, 7, 8], [1, 2], [1, 1, 2, 2]))
    testing.check_opcheck(ops.depthwise_conv2d_backward_weight.default, (go, x, [3, 5], [1, 2], [1, 1, 2, 2]))
    testing.check_opcheck(ops.depthwise_conv2d_backward_weight.default, (go, x, [3, 5], [1, 2], [1, 1, 2, 2], False))


def test_weight_gradient_without_the_bias_sum():
    # bias_grad=False (the layers without a bias, or whose bias needs no gradient): the same
    # weight gradient, an empty bias result, and gradients through it to second order.
    x, w, _ = make(2, 3, 7, 8, 3, 5)
    go = torch.randn(2, 3, 7, 4, dtype=torch.float64, requires_grad=True)
    op = torch.ops.learnable_ops.depthwise_conv2d_backward_weight.default
    gw, gb = op(go, x, [3, 5], [1, 2], [1, 1, 2, 2])
    gw_only, empty = op(go, x, [3, 5], [1, 2], [1, 1, 2, 2], False)
    assert empty.shape == (0,) and gb.shape == (3,)
    torch.testing.assert_close(gw_only, gw, rtol=0, atol=0)
    testing.check_gradcheck(lambda go, x: op(go, x, [3, 5], [1, 2], [1, 1, 2, 2], False)[0], [go, x], gradgrad=True)
    # A layer without a bias asks for no bias sum; with one, it gets the sum.
    for bias in (None, torch.randn(3, dtype=torch.float64, requires_grad=True)):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            lo.depthwise_conv2d(x, w, bias, (1, 2), (1, 1, 2, 2)).sum().backward()
        calls = [e for e in prof.events() if e.name == "learnable_ops::depthwise_conv2d_backward_weight"]
        assert calls and all(e.concrete_inputs and e.concrete_inputs[-1] is (bias is not None) for e in calls), calls


def test_compile_fullgraph():
    x, w, b = make(2, 3, 9, 8, 5, 5)
    testing.check_compile(lambda x, w, b: lo.depthwise_conv2d(x.sin(), w, b) * 2, [x, w, b])


def test_thread_count_independent():
    x, w, b = make(3, 5, 23, 37, 9, 7, dtype=torch.float32)
    testing.check_thread_independence(lambda x, w, b: lo.depthwise_conv2d(x, w, b), [x, w, b])
    testing.check_thread_independence(lambda x, w, b: lo.depthwise_conv2d(x, w, b, 2, 3), [x, w, b])


def test_layouts_and_empty_batch():
    x, w, b = make(2, 4, 10, 11, 5, 3)
    ref = lo.depthwise_conv2d(x, w, b)
    cl = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    torch.testing.assert_close(lo.depthwise_conv2d(cl, w, b), ref)
    nc = x.detach().transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(lo.depthwise_conv2d(nc, w, b), ref)
    torch.testing.assert_close(lo.depthwise_conv2d(x[:, ::2], w[::2], b[::2]), ref[:, ::2])
    testing.assert_matches_reference(
        lambda x, w, b: lo.depthwise_conv2d(x, w, b), lambda x, w, b: reference(x, w, b, 1, "same"), [cl, w, b]
    )
    empty = torch.randn(0, 4, 10, 11, requires_grad=True)
    out = lo.depthwise_conv2d(empty, w.detach().float())
    assert out.shape == (0, 4, 10, 11)
    out.sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    x, w, b = make(2, 3, 12, 13, 7, 6, dtype=torch.float32)
    ref = reference(x, w, b, 1, "same")
    go = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, w, b), go)
    xh, wh, bh = (t.detach().to(dtype).requires_grad_() for t in (x, w, b))
    out = lo.depthwise_conv2d(xh, wh, bh)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    for got, want in zip(torch.autograd.grad(out, (xh, wh, bh), go.to(dtype)), ref_grads):
        torch.testing.assert_close(got.float(), want, atol=0.5, rtol=0.05)


def test_bad_input():
    x = torch.randn(1, 3, 8, 8)
    w = torch.randn(3, 1, 3, 3)
    with pytest.raises(ValueError, match="weight"):
        lo.depthwise_conv2d(x, torch.randn(4, 1, 3, 3))
    with pytest.raises(ValueError, match="weight"):
        lo.depthwise_conv2d(x, torch.randn(3, 2, 3, 3))
    with pytest.raises(TypeError, match="weight"):
        lo.depthwise_conv2d(x, w.double())
    with pytest.raises(TypeError, match="input"):
        lo.depthwise_conv2d(x.long(), w)
    with pytest.raises(ValueError, match="input"):
        lo.depthwise_conv2d(x[0], w)
    with pytest.raises(ValueError, match="padding"):
        lo.depthwise_conv2d(x, w, padding=-1)
    with pytest.raises(ValueError, match="padding"):
        lo.depthwise_conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="same"):
        lo.depthwise_conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="stride"):
        lo.depthwise_conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="bias"):
        lo.depthwise_conv2d(x, w, torch.randn(4))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        lo.depthwise_conv2d(x, torch.randn(3, 1, 11, 3), padding=0)
    with pytest.raises(ValueError, match="weight"):
        torch.ops.learnable_ops.depthwise_conv2d(x, torch.randn(2, 3, 3), None, [1, 1], [1, 1, 1, 1])


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("kh,kw,stride,padding", [(7, 7, 1, "same"), (17, 17, 1, "same"), (4, 9, 1, "same"), (5, 3, 2, (2, 1, 0, 3)), (31, 31, 1, 15), (3, 3, 2, 1), (1, 1, 1, 0)])
def test_cuda_matches_cpu(kh, kw, stride, padding):
    x, w, b = make(2, 5, 37, 70, kh, kw)
    testing.check_cpu_cuda(lambda x, w, b: lo.depthwise_conv2d(x, w, b, stride, padding), [x, w, b], atol=1e-9, rtol=1e-9)
    x32, w32, b32 = (t.detach().float().requires_grad_() for t in (x, w, b))
    testing.check_cpu_cuda(lambda x, w, b: lo.depthwise_conv2d(x, w, b, stride, padding), [x32, w32, b32], atol=1e-3, rtol=1e-3)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize(
    "n,c,h,w,kh,kw,stride,padding",
    [
        # The ConvNeXt-T stage planes: evened-out row tiles (2 x 28 rows, 1 x 28), padded
        # row pitches (forward on 14x14 and 7x7, weight gradient on every width).
        (2, 3, 56, 56, 17, 17, 1, "same"),
        (2, 4, 28, 28, 17, 17, 1, "same"),
        (3, 5, 14, 14, 17, 17, 1, "same"),
        (3, 70, 7, 7, 17, 17, 1, "same"),
        (2, 3, 56, 56, 7, 7, 1, "same"),
        (3, 70, 7, 7, 7, 7, 1, "same"),
        # Narrow, odd and one-row planes, uneven tiles, a pitch search over wide kernels.
        (2, 3, 40, 1, 5, 5, 1, "same"),
        (2, 3, 1, 33, 3, 3, 1, 1),
        (1, 3, 67, 130, 9, 9, 1, "same"),
        (2, 3, 13, 29, 17, 17, 2, 8),
        (2, 3, 9, 40, 17, 17, (1, 2), 8),  # the register-window path with stride 2 along W
        (2, 70, 3, 3, 3, 3, 1, 1),
        # Several images staged per weight-gradient iteration, with a partial last batch
        # (11 = 8 + 3) and with batch chunks (21 images in chunks of 3).
        (11, 5, 7, 7, 17, 17, 1, "same"),
        (21, 70, 7, 7, 17, 17, 1, "same"),
        (13, 40, 10, 9, 5, 5, 1, "same"),
        # Kernels cropped to the taps that reach the plane (17x17 -> 13x5 and 3x3).
        (4, 6, 7, 3, 17, 17, 1, "same"),
        (2, 5, 2, 2, 17, 17, 1, "same"),
        (2, 3, 5, 4, 23, 31, 2, (11, 12, 15, 15)),
    ],
)
def test_cuda_matches_cpu_tilings(n, c, h, w, kh, kw, stride, padding):
    x, k, b = make(n, c, h, w, kh, kw)
    fn = lambda x, k, b: lo.depthwise_conv2d(x, k, b, stride, padding)  # noqa: E731
    testing.check_cpu_cuda(fn, [x, k, b], atol=1e-9, rtol=1e-9)
    # Non-contiguous input on both devices: every other channel of a wider tensor.
    strided = lambda x, k, b: fn(torch.stack([x, x], 2).flatten(1, 2)[:, ::2], k, b)  # noqa: E731
    testing.check_cpu_cuda(strided, [x, k, b], atol=1e-9, rtol=1e-9)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_and_channels_last(dtype):
    x, w, b = make(4, 8, 28, 28, 17, 17, dtype=torch.float32)
    # The reference sees the same rounded inputs in float32: what is left is the
    # fp32-accumulated sum's rounding to float16/bfloat16, not the inputs' rounding.
    x, w, b = (t.detach().to(dtype).float().cuda().requires_grad_() for t in (x, w, b))
    ref = F.conv2d(x, w, b, padding=8, groups=8)
    go = torch.randn_like(ref).to(dtype).float()
    ref_grads = torch.autograd.grad(ref, (x, w, b), go)
    xh, wh, bh = (t.detach().to(dtype).requires_grad_() for t in (x, w, b))
    xh_cl = xh.detach().to(memory_format=torch.channels_last).requires_grad_()
    for inp in (xh, xh_cl):
        out = lo.depthwise_conv2d(inp, wh, bh)
        torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
        for got, want in zip(torch.autograd.grad(out, (inp, wh, bh), go.to(dtype)), ref_grads):
            torch.testing.assert_close(got.float(), want, atol=1.0, rtol=0.05)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_opcheck_and_gradcheck():
    x, w, b = (t.detach().cuda().requires_grad_() for t in make(2, 3, 9, 10, 5, 4))
    testing.check_opcheck(torch.ops.learnable_ops.depthwise_conv2d.default, (x, w.squeeze(1), b, [1, 1], [2, 2, 1, 2]))
    testing.check_gradcheck(lambda x, w, b: lo.depthwise_conv2d(x, w, b, 2, 1), [x, w, b])


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_weight_gradient_without_the_bias_sum():
    # bias_grad=False on CUDA skips the bias kernels: the same weight gradient as with them
    # and as the CPU's, an empty bias result.
    x, _, _ = make(2, 3, 9, 10, 5, 4)
    go = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    op = torch.ops.learnable_ops.depthwise_conv2d_backward_weight.default
    args = ([5, 4], [1, 1], [2, 2, 1, 2])
    gw, gb = op(go.cuda(), x.detach().cuda(), *args)
    gw_only, empty = op(go.cuda(), x.detach().cuda(), *args, False)
    assert empty.shape == (0,) and empty.is_cuda and gb.shape == (3,)
    torch.testing.assert_close(gw_only, gw, rtol=0, atol=0)
    torch.testing.assert_close(gw_only.cpu(), op(go, x.detach(), *args, False)[0], rtol=1e-10, atol=1e-10)
    testing.check_opcheck(op, (go.cuda(), x.detach().cuda(), *args, False))
