"""The ring path of diff_conv2d on our depthwise ops (learnable_ops::depthwise_conv2d and
its backward ops) instead of ATen's convolutions, for depthwise layers (groups == C_in ==
C_out, undilated). The ops' internal `native_depthwise` argument picks the route: True
takes our ops wherever they apply, False ATen's, None (the wrapper) the default, ours.
Both routes are checked against each other, the padded path and the definition, in
float64; on CUDA the profile must show our kernels and none of ATen's depthwise ones."""

import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

from test_diffconv import make, reference
from test_diffconv_ring import padded_path, ring, ring_backward


def ring_path(x, w, b=None, dilation=(1, 1), groups=1, order=None, save_strips=False, native=True):
    kh, kw = w.shape[2:]
    order = order or (kh - 1, kw - 1)
    return ring(x, w, b, list(dilation), groups, list(order), save_strips, native)[0]


def ops_run(fn):
    """Names of the learnable_ops and convolution ops the dispatcher ran under fn (the CPU
    profiler records ops that kernels call through the dispatcher too)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if "depthwise" in e.key or "convolution" in e.key}


# Depthwise (input shape, kernel size, order): images down to the kernel, rectangular
# kernels, no ring along one axis, lower orders (fewer nodes than the pad included).
CASES = [
    ((2, 3, 9, 10), (3, 3), None),
    ((1, 2, 5, 5), (5, 5), None),  # image exactly K
    ((1, 2, 8, 9), (7, 7), None),  # K + 1, K + 2
    ((1, 2, 9, 9), (9, 9), None),  # exactly K, K = 9
    ((2, 4, 12, 13), (5, 3), None),  # rectangular
    ((1, 3, 11, 14), (3, 7), (2, 3)),  # rectangular, lower order along W
    ((1, 2, 15, 17), (7, 1), (3, 0)),  # 7x1: no ring along W
    ((1, 2, 9, 13), (1, 5), None),  # 1x5: no ring along H
    ((1, 2, 9, 10), (7, 5), (0, 1)),  # fewer nodes than the pad (replicate, linear)
    ((2, 3, 40, 36), (3, 3), None),  # strips small enough that the wrapper saves them
]


def depthwise(shape_x, kernel_size, seed=0):
    x, w = make(shape_x, (shape_x[1], 1, *kernel_size), seed=seed)
    b = torch.randn(shape_x[1], dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    return x, w, b.requires_grad_()


@pytest.mark.parametrize("shape_x,kernel_size,order", CASES)
@pytest.mark.parametrize("save_strips", [False, True])
def test_native_depthwise_route_equals_aten_route_and_padded_path(shape_x, kernel_size, order, save_strips):
    x, w, b = depthwise(shape_x, kernel_size, seed=shape_x[2] + kernel_size[0])
    c = shape_x[1]
    native = lambda x, w, b: ring_path(x, w, b, groups=c, order=order, save_strips=save_strips, native=True)
    testing.assert_matches_reference(
        native,
        lambda x, w, b: ring_path(x, w, b, groups=c, order=order, save_strips=save_strips, native=False),
        [x, w, b],
        atol=1e-9,
        rtol=1e-9,
    )
    testing.assert_matches_reference(
        native, lambda x, w, b: padded_path(x, w, b, groups=c, order=order), [x, w, b], atol=1e-9, rtol=1e-9
    )


@pytest.mark.parametrize("k", [3, 5, 7])
def test_native_depthwise_route_equals_the_definition(k):
    x, w, b = depthwise((2, 3, k + 2, k + 4), (k, k), seed=k)
    testing.assert_matches_reference(
        lambda x, w, b: ring_path(x, w, b, groups=3, save_strips=True),
        lambda x, w, b: reference(x, w, b, groups=3),
        [x, w, b],
        atol=1e-9,
        rtol=1e-9,
    )


def test_routes_run_the_ops_they_name():
    x, w, b = (t.detach() for t in depthwise((2, 3, 12, 12), (5, 5)))
    g = torch.randn(2, 3, 12, 12, dtype=torch.float64)

    def forward_backward(native, save):
        _, rows, cols = ring(x, w, b, [1, 1], 3, [4, 4], save, native)
        ring_backward(g, x, w, rows, cols, [1, 1], 3, [4, 4], [True, True, True], native)

    ours = {
        "learnable_ops::depthwise_conv2d",
        "learnable_ops::depthwise_conv2d_backward_input",
        "learnable_ops::depthwise_conv2d_backward_weight",
    }
    for save in (False, True):
        for native in (True, None):  # None, the wrapper's call, takes ours on the CPU too
            ran = ops_run(lambda: forward_backward(native, save))
            assert ours <= ran and not any("convolution" in name for name in ran), ran
        ran = ops_run(lambda: forward_backward(False, save))
        assert not ran & ours and "aten::convolution" in ran, ran


def test_wrapper_takes_the_native_route_for_depthwise_layers():
    x, w, b = depthwise((2, 4, 16, 16), (7, 7))
    want = ring_path(x, w, b, groups=4).detach()
    assert torch.equal(lo.diff_conv2d(x.detach(), w.detach(), b.detach(), groups=4), want)
    ran = ops_run(lambda: lo.diff_conv2d(x, w, b, groups=4).sum().backward())
    assert "learnable_ops::depthwise_conv2d_backward_weight" in ran
    assert not any("convolution" in name for name in ran), ran


@pytest.mark.parametrize(
    "shape_x,shape_w,dilation,groups",
    [
        ((1, 4, 12, 13), (4, 1, 5, 3), (2, 1), 4),  # dilated
        ((1, 3, 14, 13), (6, 1, 3, 5), (1, 1), 3),  # channel multiplier 2
        ((1, 4, 11, 14), (4, 2, 3, 5), (1, 1), 2),  # grouped
        ((2, 3, 9, 10), (4, 3, 3, 3), (1, 1), 1),  # dense
        ((1, 2, 34, 33), (2, 1, 33, 33), (1, 1), 2),  # kernel past the ops' limit (31)
    ],
)
def test_layers_outside_the_depthwise_ops_keep_aten(shape_x, shape_w, dilation, groups):
    x, w = make(shape_x, shape_w, seed=shape_w[2])
    order = (1, 1) if shape_w[2] > 31 else None  # extrapolating K = 33 with order 32 overflows float64
    ran = ops_run(lambda: ring_path(x, w, None, dilation, groups, order, native=True))
    assert "aten::convolution" in ran and not any("depthwise_conv2d" in name for name in ran), ran
    testing.assert_matches_reference(
        lambda x, w: ring_path(x, w, None, dilation, groups, order, native=True),
        lambda x, w: padded_path(x, w, None, dilation, groups, order),
        [x, w],
        atol=1e-9,
        rtol=1e-9,
    )


def test_backward_masks_and_saved_strips():
    x, w, _ = (t.detach() for t in depthwise((2, 4, 13, 12), (5, 3), seed=5))
    g = torch.randn(2, 4, 13, 12, dtype=torch.float64)
    args = ([1, 1], 4, [4, 2])
    _, rows, cols = ring(x, w, None, *args, True, True)
    assert rows.shape == (2, 4, 8, 14) and cols.shape == (2, 4, 4, 13)
    rebuilt = ring_backward(g, x, w, None, None, *args, [True, True, True], True)
    saved = ring_backward(g, x, w, rows, cols, *args, [True, True, True], True)
    aten = ring_backward(g, x, w, None, None, *args, [True, True, True], False)
    for a, b, c in zip(rebuilt, saved, aten):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(a, c, atol=1e-10, rtol=1e-10)
    assert rebuilt[1].shape == w.shape and rebuilt[1].is_contiguous()
    torch.testing.assert_close(rebuilt[2], g.sum((0, 2, 3)), atol=1e-12, rtol=0)
    for mask in ([True, False, False], [False, True, False], [False, False, True], [True, False, True]):
        part = ring_backward(g, x, w, None, None, *args, mask, True)
        # The bias gradient comes with the weight gradient's kernel where that runs, else
        # from a sum: the same up to rounding.
        for got, expected, needed, atol in zip(part, rebuilt, mask, (0, 0, 1e-12)):
            if needed:
                torch.testing.assert_close(got, expected, atol=atol, rtol=0)
            else:
                assert got is None


def test_gradcheck():
    x, w, b = depthwise((1, 2, 7, 8), (3, 5))
    testing.check_gradcheck(lambda x, w, b: ring_path(x, w, b, groups=2, save_strips=True), [x, w, b])
    testing.check_gradcheck(lambda x, w, b: ring_path(x, w, b, groups=2), [x, w, b], fast_mode=True)
    x, w, _ = depthwise((1, 2, 6, 5), (5, 3))
    testing.check_gradcheck(lambda x, w: ring_path(x, w, groups=2, order=(2, 1)), [x, w])
    testing.check_gradcheck(lambda x, w: lo.diff_conv2d(x, w, groups=2), [x, w], fast_mode=True)


def test_opcheck():
    x, w, b = depthwise((2, 3, 9, 8), (3, 5))
    testing.check_opcheck(ring, (x, w, b, [1, 1], 3, [2, 4], True, True))
    testing.check_opcheck(ring, (x, w, None, [1, 1], 3, [1, 2], False, True))
    testing.check_opcheck(ring, (x, w, b, [1, 1], 3, [2, 4], False, None))
    g = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    x, w = x.detach(), w.detach()
    _, rows, cols = ring(x, w, None, [1, 1], 3, [2, 4], True, True)
    testing.check_opcheck(ring_backward, (g, x, w, rows, cols, [1, 1], 3, [2, 4], [True, True, True], True))
    testing.check_opcheck(ring_backward, (g, x, w, None, None, [1, 1], 3, [1, 2], [True, False, True], True))


def test_compile_fullgraph():
    x, w, b = depthwise((2, 3, 9, 11), (5, 3))
    testing.check_compile(lambda x, w, b: lo.diff_conv2d(x.sin(), w, b, groups=3).relu(), [x, w, b])


def test_layouts_and_empty_batch():
    x, w, _ = depthwise((2, 4, 9, 10), (3, 5))
    want = padded_path(x, w, groups=4)
    torch.testing.assert_close(ring_path(x.to(memory_format=torch.channels_last), w, groups=4), want)
    torch.testing.assert_close(ring_path(x.transpose(2, 3).contiguous().transpose(2, 3), w, groups=4), want)
    torch.testing.assert_close(ring_path(x, w.transpose(2, 3).contiguous().transpose(2, 3), groups=4), want)
    g = torch.randn(2, 4, 10, 9, dtype=torch.float64).transpose(2, 3)  # a non-contiguous output gradient
    want_grads = torch.autograd.grad(want, [x, w], g)
    for save in (False, True):
        torch.testing.assert_close(
            torch.autograd.grad(ring_path(x, w, groups=4, save_strips=save), [x, w], g), want_grads
        )
    empty = x[:0].detach().requires_grad_()
    y = ring_path(empty, w, groups=4, save_strips=True)
    assert y.shape == (0, 4, 9, 10)
    gx, gw = torch.autograd.grad(y.sum(), [empty, w])
    assert gx.shape == empty.shape and torch.equal(gw, torch.zeros_like(w))


def test_thread_independence():
    x, w, b = depthwise((2, 4, 20, 21), (5, 5))
    testing.check_thread_independence(lambda x, w, b: ring_path(x, w, b, groups=4), [x, w, b])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_close_to_aten_route(dtype):
    x, w, b = (t.detach() for t in depthwise((2, 8, 24, 24), (3, 3)))
    w = w / 3
    g = torch.randn(2, 8, 24, 24, dtype=torch.float64)
    want = [ring_path(x, w, b, groups=8, native=False)] + list(
        ring_backward(g, x, w, None, None, [1, 1], 8, [2, 2], [True, True, True], False)
    )
    xl, wl, bl, gl = (t.to(dtype) for t in (x, w, b, g))
    got = [ring_path(xl, wl, bl, groups=8)] + list(
        ring_backward(gl, xl, wl, None, None, [1, 1], 8, [2, 2], [True, True, True], True)
    )
    tol = {torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 2e-1}[dtype]
    for a, e in zip(got, want):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), e, atol=tol * max(1.0, e.abs().max().item()), rtol=tol)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("shape_x,kernel_size,order", CASES)
def test_cuda_native_depthwise_route_equals_cpu(shape_x, kernel_size, order):
    x, w, b = depthwise(shape_x, kernel_size, seed=shape_x[2])
    c = shape_x[1]
    g = torch.randn(*shape_x, dtype=torch.float64)
    for save in (False, True):
        want_y = ring_path(x, w, b, groups=c, order=order, save_strips=save, native=False)
        want = torch.autograd.grad(want_y, [x, w, b], g)
        xc, wc, bc = (t.detach().cuda().requires_grad_() for t in (x, w, b))
        y = ring_path(xc, wc, bc, groups=c, order=order, save_strips=save, native=None)
        torch.testing.assert_close(y.cpu(), want_y.detach())
        for got, expected in zip(torch.autograd.grad(y, [xc, wc, bc], g.cuda()), want):
            torch.testing.assert_close(got.cpu(), expected)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("save_strips", [False, True])
def test_cuda_depthwise_k7_runs_our_kernels_only(save_strips):
    torch.manual_seed(0)
    x = torch.randn(4, 16, 64, 64, device="cuda", requires_grad=True)
    w = (torch.randn(16, 1, 7, 7, device="cuda") / 7).requires_grad_()
    b = torch.randn(16, device="cuda", requires_grad=True)
    g = torch.randn(4, 16, 64, 64, device="cuda")

    def forward_backward():
        y = ring(x, w, b, [1, 1], 16, [6, 6], save_strips)[0]
        return y, torch.autograd.grad(y, [x, w, b], g)

    forward_backward()  # warm-up
    torch.cuda.synchronize()
    (y, grads), kernels = testing.cuda_kernels(forward_backward)
    assert any("tap_forward_kernel" in k for k in kernels), kernels
    assert not any("conv_depthwise2d" in k for k in kernels), kernels
    # The same values as the CPU (ATen route, float64), to float32 rounding of K = 7's
    # extrapolation (weights summing to 2815 in absolute value): relative to each result's
    # largest value. test_cuda_native_depthwise_route_equals_cpu compares float64 tightly.
    x64, w64, b64 = (t.detach().cpu().double().requires_grad_() for t in (x, w, b))
    want_y = ring_path(x64, w64, b64, groups=16, native=False)
    want = torch.autograd.grad(want_y, [x64, w64, b64], g.cpu().double())
    for got, expected in zip((y, *grads), (want_y.detach(), *want)):
        torch.testing.assert_close(got.cpu().double(), expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-3)


@pytest.mark.parametrize(
    "shape_x,kernel_size",
    [
        ((5, 3, 16, 18), (7, 7)),  # bands folded in slices of the batch (cpp/diffconv.cpp fold_pieces)
        ((1, 6, 20, 16), (5, 7)),  # a batch of one: slices of the channels
        ((2, 2, 128, 128), (3, 3)),  # bands under 6% of the image: one piece
    ],
)
@pytest.mark.parametrize("in_place", ["0", "1"])
def test_padded_depthwise_route_folds_bands_in_slices(monkeypatch, shape_x, kernel_size, in_place):
    # The padded path's band fold (LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE=0) folds each edge
    # band of the padded gradient in slices of its leading dimension for the depthwise
    # route, to keep the band buffers small; neither that nor the fold in place (the
    # default) may change the result: values and both gradients equal the ring path's.
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE", in_place)
    x, w, b = depthwise(shape_x, kernel_size, seed=kernel_size[0])
    g = torch.randn(shape_x, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = padded_path(x, w, b, groups=shape_x[1])
    want = ring_path(x, w, b, groups=shape_x[1])
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10 * want.abs().max().item())
    for a, e in zip(torch.autograd.grad(got, (x, w, b), g), torch.autograd.grad(want, (x, w, b), g)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10 * e.abs().max().item())
