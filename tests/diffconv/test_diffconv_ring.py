"""The ring path of diff_conv2d (stride 1, no edge weight or bias): F.conv2d's
zero-padded convolution plus the boundary correction of two thin strips.
Checked against the padded path (the `diff_conv2d` op: polynomial pad + valid
convolution) and the transformed-kernel definition, in float64."""

import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing
from learnable_ops.ops.diffconv import _saves_ring_strips

from test_diffconv import make, reference

ring = torch.ops.learnable_ops.diff_conv2d_ring.default
ring_backward = torch.ops.learnable_ops.diff_conv2d_ring_backward.default
padded = torch.ops.learnable_ops.diff_conv2d.default


def padded_path(x, w, b=None, dilation=(1, 1), groups=1, order=None):
    kh, kw = w.shape[2:]
    order = order or (kh - 1, kw - 1)
    return padded(x, w, b, None, None, [1, 1], list(dilation), groups, list(order), True)


def ring_path(x, w, b=None, dilation=(1, 1), groups=1, order=None, save_strips=False):
    kh, kw = w.shape[2:]
    order = order or (kh - 1, kw - 1)
    return ring(x, w, b, list(dilation), groups, list(order), save_strips)[0]


# (input shape, weight shape, dilation, groups, order); images down to the kernel's span.
CASES = [
    ((2, 3, 9, 10), (4, 3, 3, 3), (1, 1), 1, None),
    ((1, 2, 5, 5), (3, 2, 5, 5), (1, 1), 1, None),  # image exactly K
    ((1, 2, 8, 9), (3, 2, 7, 7), (1, 1), 1, None),  # K + 1, K + 2
    ((1, 2, 9, 9), (2, 2, 9, 9), (1, 1), 1, None),  # exactly K, K = 9
    ((1, 4, 11, 14), (4, 2, 3, 5), (1, 1), 2, None),  # rectangular, groups
    ((1, 4, 12, 13), (4, 1, 5, 3), (1, 1), 4, None),  # depthwise
    ((1, 3, 14, 13), (6, 1, 3, 5), (2, 2), 3, None),  # depthwise multiplier 2, dilated
    ((1, 2, 15, 17), (2, 2, 3, 3), (2, 3), 1, None),  # dilation
    ((1, 2, 15, 17), (2, 2, 7, 1), (1, 1), 1, (3, 0)),  # 7x1: no ring along W, lower order
    ((1, 2, 9, 13), (2, 2, 1, 5), (1, 2), 1, None),  # 1x5: no ring along H
    ((1, 2, 13, 12), (3, 2, 5, 3), (1, 1), 1, (1, 2)),  # lower order: as many nodes as the pad
    ((1, 2, 9, 10), (2, 2, 7, 5), (1, 2), 1, (0, 1)),  # fewer nodes than the pad (replicate, linear)
]


@pytest.mark.parametrize("shape_x,shape_w,dilation,groups,order", CASES)
@pytest.mark.parametrize("save_strips", [False, True])
def test_ring_path_equals_padded_path(shape_x, shape_w, dilation, groups, order, save_strips):
    x, w = make(shape_x, shape_w, seed=shape_x[2] + shape_w[2])
    b = torch.randn(shape_w[0], dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(
        lambda x, w, b: ring_path(x, w, b, dilation, groups, order, save_strips),
        lambda x, w, b: padded_path(x, w, b, dilation, groups, order),
        [x, w, b],
        atol=1e-9,
        rtol=1e-9,
    )


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_ring_path_equals_the_definition(k):
    x, w = make((1, 2, k + 1, k + 3), (3, 2, k, k), seed=k)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(
        lambda x, w, b: ring_path(x, w, b, save_strips=True), lambda x, w, b: reference(x, w, b), [x, w, b],
        atol=1e-9, rtol=1e-9,
    )


def test_wrapper_takes_the_ring_path_for_stride_one_only(monkeypatch):
    calls = []
    real = torch.ops.learnable_ops.diff_conv2d_ring.default

    def spy(*args):
        calls.append(args[-1])
        return real(*args)

    x, w = make((2, 4, 16, 16), (4, 4, 3, 3))
    monkeypatch.setattr(torch.ops.learnable_ops.diff_conv2d_ring, "default", spy)
    lo.diff_conv2d(x.detach(), w.detach())
    lo.diff_conv2d(x, w, stride=2)
    lo.diff_conv2d(x, w, edge_weight=w.detach().clone())
    lo.diff_conv2d(x, w, keep_img_grad_at_invalid=False)
    # Only the first call (no grad needed: nothing saved) reached the raw op;
    # the others took the padded or strip paths.
    assert calls == [False]


def test_strips_saved_only_when_small():
    assert _saves_ring_strips((16, 64, 128, 128), (64, 64, 3, 3), (1, 1))
    assert _saves_ring_strips((16, 64, 256, 256), (64, 1, 5, 5), (1, 1))
    assert not _saves_ring_strips((16, 64, 128, 128), (64, 1, 5, 5), (1, 1))  # 12.7%
    assert not _saves_ring_strips((1, 2, 9, 9), (2, 2, 3, 3), (1, 1))
    x, w = make((1, 2, 40, 40), (2, 2, 3, 3))
    out, rows, cols = ring(x.detach(), w.detach(), None, [1, 1], 1, [2, 2], True)
    assert rows.shape == (1, 2, 4, 42) and cols.shape == (1, 2, 4, 40)
    _, rows, cols = ring(x.detach(), w.detach(), None, [1, 1], 1, [2, 2], False)
    assert rows.shape == cols.shape == (0,)


def test_backward_op_masks_and_saved_strips():
    x, w = make((2, 4, 13, 12), (4, 2, 5, 3), seed=5)
    x, w = x.detach(), w.detach()
    g = torch.randn(2, 4, 13, 12, dtype=torch.float64)
    args = ([1, 2], 2, [4, 2])
    _, rows, cols = ring(x, w, None, *args, True)
    rebuilt = ring_backward(g, x, w, None, None, *args, [True, True, True])
    saved = ring_backward(g, x, w, rows, cols, *args, [True, True, True])
    # Saved strips take the compact backward, rebuilt ones the lean one (cpp/diffconv.cpp): the
    # same values up to rounding.
    for a, b in zip(rebuilt, saved):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    for mask in ([True, False, False], [False, True, False], [False, False, True]):
        part = ring_backward(g, x, w, None, None, *args, mask)
        for got, expected, needed in zip(part, rebuilt, mask):
            if needed:
                torch.testing.assert_close(got, expected, atol=0, rtol=0)
            else:
                assert got is None


def test_gradcheck():
    x, w = make((1, 2, 7, 8), (2, 1, 3, 5))
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda x, w, b: lo.diff_conv2d(x, w, b, groups=2), [x, w, b])
    testing.check_gradcheck(lambda x, w, b: ring_path(x, w, b, (2, 1), 2, None, True), [x, w, b], fast_mode=True)
    x, w = make((1, 2, 5, 6), (3, 2, 5, 3))
    testing.check_gradcheck(lambda x, w: ring_path(x, w, order=(2, 1)), [x, w])


def test_opcheck():
    x, w = make((2, 2, 9, 8), (4, 1, 3, 5))
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    testing.check_opcheck(ring, (x, w, b, [1, 1], 2, [2, 4], True))
    testing.check_opcheck(ring, (x, w, None, [2, 1], 2, [1, 2], False))
    g = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    x, w = x.detach(), w.detach()
    _, rows, cols = ring(x, w, None, [1, 1], 2, [2, 4], True)
    testing.check_opcheck(ring_backward, (g, x, w, rows, cols, [1, 1], 2, [2, 4], [True, True, True]))
    testing.check_opcheck(ring_backward, (g, x, w, None, None, [2, 1], 2, [1, 2], [True, False, True]))


def test_compile_fullgraph():
    x, w = make((2, 2, 9, 11), (3, 2, 3, 5))
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    testing.check_compile(lambda x, w, b: lo.diff_conv2d(x.sin(), w, b, dilation=(1, 2)).relu(), [x, w, b])


def test_double_backward_raises():
    x, w = make((1, 1, 6, 6), (1, 1, 3, 3))
    (gx,) = torch.autograd.grad(ring_path(x, w).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()


def test_layouts_and_empty_batch():
    x, w = make((2, 4, 9, 10), (3, 4, 3, 3))
    want = padded_path(x, w)
    torch.testing.assert_close(ring_path(x.to(memory_format=torch.channels_last), w), want)
    torch.testing.assert_close(ring_path(x.transpose(2, 3).contiguous().transpose(2, 3), w), want)
    torch.testing.assert_close(ring_path(x, w.to(memory_format=torch.channels_last)), want)
    g = torch.randn(2, 3, 10, 9, dtype=torch.float64).transpose(2, 3)  # a non-contiguous output gradient
    torch.testing.assert_close(
        torch.autograd.grad(ring_path(x, w, save_strips=True), [x, w], g), torch.autograd.grad(want, [x, w], g)
    )
    empty = x[:0].detach().requires_grad_()
    y = lo.diff_conv2d(empty, w)
    assert y.shape == (0, 3, 9, 10)
    (gw,) = torch.autograd.grad(y.sum(), [w])
    assert torch.equal(gw, torch.zeros_like(w))
    assert ring(empty.detach(), w.detach(), None, [1, 1], 1, [2, 2], True)[1].shape == (0, 4, 4, 12)


def test_float32_close_to_float64():
    x, w = make((2, 8, 32, 32), (8, 8, 3, 3))
    want = ring_path(x, w).float()
    torch.testing.assert_close(ring_path(x.float(), w.float()), want, atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("shape_x,shape_w,dilation,groups,order", CASES)
def test_cuda_ring_path_equals_cpu(shape_x, shape_w, dilation, groups, order):
    x, w = make(shape_x, shape_w, seed=shape_x[2])
    b = torch.randn(shape_w[0], dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape_x[0], shape_w[0], *shape_x[2:], dtype=torch.float64)
    for save in (False, True):
        want = torch.autograd.grad(ring_path(x, w, b, dilation, groups, order, save), [x, w, b], g)
        xc, wc, bc = (t.detach().cuda().requires_grad_() for t in (x, w, b))
        y = ring_path(xc, wc, bc, dilation, groups, order, save)
        torch.testing.assert_close(y.cpu(), ring_path(x, w, b, dilation, groups, order).detach())
        for got, expected in zip(torch.autograd.grad(y, [xc, wc, bc], g.cuda()), want):
            torch.testing.assert_close(got.cpu(), expected)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_ring_float32_benchmark_shape_equals_padded_path():
    torch.manual_seed(0)
    for groups, k in ((1, 3), (64, 5), (1, 7), (64, 7)):
        x = torch.randn(4, 64, 64, 64, device="cuda", requires_grad=True)
        w = (torch.randn(64, 64 // groups, k, k, device="cuda") / k).requires_grad_()
        g = torch.randn(4, 64, 64, 64, device="cuda")
        with torch.backends.cudnn.flags(allow_tf32=False):
            want_y = padded_path(x, w, groups=groups, order=(1, 1))
            want = torch.autograd.grad(want_y, [x, w], g)
            y = lo.diff_conv2d(x, w, groups=groups, order=1)
            got = torch.autograd.grad(y, [x, w], g)
        torch.testing.assert_close(y, want_y, atol=1e-4, rtol=1e-4)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_opcheck_gradcheck_compile():
    x, w = (t.cuda().detach().requires_grad_() for t in make((2, 4, 9, 11), (4, 1, 3, 5)))
    b = torch.randn(4, dtype=torch.float64, device="cuda", requires_grad=True)
    testing.check_opcheck(ring, (x, w, b, [1, 2], 4, [2, 4], True))
    testing.check_opcheck(ring, (x, w, None, [1, 1], 4, [1, 3], False))
    g = torch.randn(2, 4, 9, 11, dtype=torch.float64, device="cuda")
    testing.check_opcheck(ring_backward, (g, x.detach(), w.detach(), None, None, [1, 1], 4, [2, 4], [True, True, True]))
    testing.check_gradcheck(lambda x, w, b: lo.diff_conv2d(x, w, b, groups=4), [x, w, b], fast_mode=True)
    testing.check_compile(lambda x, w: lo.diff_conv2d(x, w, groups=4, dilation=(1, 2)).sin(), [x, w])


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_never_takes_the_ring_path(monkeypatch):
    # On CUDA the padded path is the faster one for every layer (measured: ops/diffconv.py
    # _ring_pays); the ring op stays available and tested.
    calls = []
    real = torch.ops.learnable_ops.diff_conv2d_ring.default

    def spy(*args):
        calls.append(args[4])  # groups
        return real(*args)

    monkeypatch.setattr(torch.ops.learnable_ops.diff_conv2d_ring, "default", spy)
    x = torch.randn(2, 4, 16, 16, device="cuda")
    lo.diff_conv2d(x, torch.randn(4, 4, 3, 3, device="cuda"))
    lo.diff_conv2d(x, torch.randn(4, 2, 3, 3, device="cuda"), groups=2)
    lo.diff_conv2d(x, torch.randn(4, 1, 5, 5, device="cuda"), groups=4)
    assert calls == []
